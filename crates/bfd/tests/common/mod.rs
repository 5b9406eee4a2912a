//! Shared by the in-memory session tests.

use bfd::Rng;

/// Deterministic xorshift64 for the transmit jitter.
pub struct TestRng(pub u64);

impl Rng for TestRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            *b = self.0 as u8;
        }
    }
}
