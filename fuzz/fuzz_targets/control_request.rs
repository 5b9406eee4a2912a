#![no_main]
// The body and its invariants: fuzz/src/control_request.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| routevpn_fuzz::control_request(data));
