#![no_main]
// The body and its invariants: fuzz/src/bgp_open.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| routevpn_fuzz::bgp_open(data));
