#![no_main]
// The body and its invariants: fuzz/src/config_parse.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| routevpn_fuzz::config_parse(data));
