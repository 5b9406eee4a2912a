#![no_main]
// The body and its invariants: fuzz/src/bgp_update.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| routevpn_fuzz::bgp_update(data));
