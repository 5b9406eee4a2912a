#![no_main]
// The body and its invariants: fuzz/src/esp_classify.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| routevpn_fuzz::esp_classify(data));
