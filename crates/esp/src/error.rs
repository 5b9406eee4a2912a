//! Typed errors of the ESP dataplane.

use crate::replay::Replayed;

/// Everything that can go wrong building an SA or processing a packet.
///
/// Inbound errors map onto the [`crate::Counters`] of the SA: `Replayed` →
/// `replayed`, `IcvFailure` → `icv_failures`, `SelectorMismatch` → `ts_mismatch`, every other packet error →
/// `malformed`. All inbound errors mean "drop the packet" (RFC 4303 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EspError {
    /// The key material does not have the length the algorithm needs.
    #[error("key material is {got} bytes, the algorithm needs {want}")]
    KeymatLength { got: usize, want: usize },
    /// The replay window size is out of range (or 0 together with ESN,
    /// which needs a window to infer the high-order bits, RFC 4303 App. A).
    #[error("replay window {0} is not supported")]
    InvalidReplayWindow(u32),
    /// SPI 0 and the IANA-reserved 1..=255 are not valid SA identifiers
    /// (RFC 4303 §2.1).
    #[error("SPI {0:#x} is reserved")]
    ReservedSpi(u32),
    /// The crypto library rejected a key or an operation.
    #[error("crypto backend failure")]
    Crypto,
    /// The sequence-number space of the SA is used up; rekey (RFC 4303 §3.3.3).
    #[error("sequence number space exhausted, SA must be rekeyed")]
    SequenceExhausted,
    /// The caller's output buffer cannot hold the result.
    #[error("buffer too small: {need} bytes needed, {have} available")]
    BufferTooSmall { need: usize, have: usize },
    /// Outbound payload is neither IPv4 nor IPv6, or is shorter than its header.
    #[error("inner packet is not a well-formed IPv4/IPv6 packet")]
    NotIp,
    /// Too short to hold header, IV, minimal trailer and ICV.
    #[error("ESP packet truncated")]
    Truncated,
    /// The packet's SPI is not this SA's.
    #[error("SPI {got:#010x} does not belong to this SA")]
    SpiMismatch { got: u32 },
    /// Replay check failed (RFC 4303 §3.4.3).
    #[error("sequence number rejected by the anti-replay window: {0:?}")]
    Replayed(Replayed),
    /// Integrity check failed (RFC 4303 §3.4.4); the replay window did not move.
    #[error("integrity check failed")]
    IcvFailure,
    /// Ciphertext length is not a multiple of the cipher's block size.
    #[error("ciphertext length is not block aligned")]
    BadCiphertextLength,
    /// An authentic inner packet (inbound) or a packet to seal (outbound) lies outside
    /// the SA's negotiated traffic selectors (RFC 4301 §5.1, §5.2).
    #[error("packet outside the SA's traffic selectors")]
    SelectorMismatch,
    /// Pad Length exceeds the payload or pad bytes are not 1, 2, 3, …
    /// (RFC 4303 §2.4).
    #[error("invalid ESP padding")]
    BadPadding,
    /// Next Header is neither 4 (IPv4), 41 (IPv6) nor 59 (dummy); only
    /// tunnel mode is supported.
    #[error("unsupported next header {0}")]
    UnsupportedNextHeader(u8),
    /// The decrypted inner packet's IP header disagrees with the Next Header
    /// or claims more bytes than were carried.
    #[error("inner packet length or version inconsistent")]
    BadInnerPacket,
}
