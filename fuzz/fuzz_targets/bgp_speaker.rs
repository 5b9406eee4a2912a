#![no_main]
// The body and its invariants: fuzz/src/bgp_speaker.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| routevpn_fuzz::bgp_speaker(data));
