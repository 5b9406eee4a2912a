//! Sans-IO Bidirectional Forwarding Detection: RFC 5880 in Asynchronous mode, for the
//! single-hop IPv4/IPv6 encapsulation of RFC 5881.
//!
//! Nothing here reads a clock, opens a socket or creates randomness: packets, `now` and an
//! [`Rng`] go in ([`Session::handle_packet`], [`Session::handle_timeout`]); packets,
//! deadlines and events come out ([`Session::poll_transmit`], [`Session::poll_timeout`],
//! [`Session::poll_event`]). The driver sends with TTL 255 from a port in 49152..=65535 to
//! UDP 3784 and drops received packets whose TTL is not 255 (RFC 5881 §4, §5; see
//! [`limits`]). It demultiplexes by Your Discriminator, or by address and interface while
//! that is zero (§6.3).
#![forbid(unsafe_code)]

pub mod auth;
pub mod hint;
pub mod limits;
pub mod packet;
pub mod session;

pub use auth::{AuthConfig, AuthError, AuthType, Sha1Mode};
pub use hint::{Hint, SilenceWatch};
pub use packet::{ControlPacket, Diag, PacketError, State};
pub use session::{ConfigError, Discard, Event, Session, SessionConfig};

/// Source of randomness for transmit jitter (§6.8.7), supplied by the caller (the daemon
/// passes a CSPRNG; tests a deterministic one). Same shape as `ike::Rng` so one
/// implementation serves both.
pub trait Rng {
    /// Fill `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]);
}
