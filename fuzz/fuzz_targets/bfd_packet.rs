#![no_main]
// The body and its invariants: fuzz/src/bfd_packet.rs.
libfuzzer_sys::fuzz_target!(|data: &[u8]| routevpn_fuzz::bfd_packet(data));
