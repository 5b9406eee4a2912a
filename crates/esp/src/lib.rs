//! Sans-IO ESP (RFC 4303) for a userspace, UDP-encapsulated (RFC 3948)
//! tunnel-mode dataplane.
//!
//! - [`OutboundSa::seal`] / [`OutboundSa::seal_in_place`] and
//!   [`InboundSa::open`] work in caller-provided buffers and never allocate,
//!   so a driver can process batches from reusable buffers.
//! - [`udp::classify`] demultiplexes port 4500 into keepalive / IKE / ESP.
//! - [`ReplayWindow`] is the RFC 4303 §3.4.3 anti-replay bitmap.
//!
//! No clocks, sockets or RNGs: CBC IVs are derived from the sequence number
//! under the SA key and GCM IVs are the sequence number (see [`alg`]).

#![forbid(unsafe_code)]

pub mod alg;
pub mod error;
pub mod header;
pub mod limits;
pub mod replay;
pub mod sa;
pub mod selector;
pub mod udp;

#[cfg(test)]
mod tests;

pub use alg::{keymat_len, AesKeySize, Algorithm, Integrity};
pub use error::EspError;
pub use header::{EspHeader, EspPacket};
pub use replay::{ReplayWindow, Replayed};
pub use sa::{Counters, Decapsulated, InboundSa, OutboundSa, SaParams};
pub use selector::{Selector, Selectors};
pub use udp::{classify, Datagram};
/// Re-exported so callers can build [`SaParams`] without depending on `zeroize`.
pub use zeroize::Zeroizing;
