//! Sans-IO IKEv2 (RFC 7296): wire codec, key schedule and SA state machines.
//!
//! Nothing here reads a clock, opens a socket or creates randomness: bytes, `now` and an
//! [`Rng`] go in, datagrams, deadlines and events come out.
#![forbid(unsafe_code)]

pub mod admission;
pub mod cert;
pub mod crypto;
pub mod iana;
pub mod limits;
pub mod proposal;
pub mod sa;
pub mod wire;

/// Source of randomness, supplied by the caller (the daemon passes a CSPRNG; tests a
/// deterministic one) so the protocol core stays reproducible.
pub use admission::Admission;

pub trait Rng {
    /// Fill `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}
