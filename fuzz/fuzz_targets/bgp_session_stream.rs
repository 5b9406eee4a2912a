#![no_main]
// The body and its invariants: fuzz/src/bgp_session_stream.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| routevpn_fuzz::bgp_session_stream(data));
