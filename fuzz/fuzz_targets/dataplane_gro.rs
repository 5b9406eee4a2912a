#![no_main]
// The body and its invariants: fuzz/src/dataplane_gro.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| routevpn_fuzz::dataplane_gro(data));
