#![no_main]
// The body and its invariants: fuzz/src/esp_open.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| routevpn_fuzz::esp_open(data));
