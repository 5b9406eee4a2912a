#![no_main]
// The body and its invariants: fuzz/src/ike_cert.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| routevpn_fuzz::ike_cert(data));
