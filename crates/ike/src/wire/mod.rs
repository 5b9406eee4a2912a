//! IKEv2 message codec (RFC 7296 §3).
//!
//! Decoding checks every length, "last substructure" flag and count, and rejects bytes
//! left over inside any structure. Encoding produces exactly the bytes decoding read, with
//! two documented exceptions that RFC 7296 §3.2 tells receivers to ignore: the generic
//! payload header's RESERVED bits and the critical bit of payloads we understand are
//! sent as zero. Every other reserved field is either kept (KE, ID, AUTH) or ignored on
//! receipt and sent as zero (proposal/transform/TS payload RESERVED, §3.3.1, §3.13).

mod header;
mod id;
mod message;
mod payload;
mod reader;
mod sa;
mod ts;

#[cfg(test)]
mod tests;

pub use header::{Flags, Header, HEADER_LEN};
pub use id::IdPayload;
pub use message::Message;
pub use payload::{
    decode_chain, encode_chain, AuthPayload, CertPayload, CertReqPayload, DeletePayload,
    EncryptedFragmentPayload, EncryptedPayload, KePayload, NotifyPayload, Payload,
};
pub use reader::Reader;
pub use sa::{Attribute, AttributeValue, Proposal, SaPayload, Transform, ATTR_KEY_LENGTH};
pub use ts::{is_subset, narrow, TrafficSelector, TsPayload};

/// Why bytes from a peer could not be decoded. Every variant except
/// [`DecodeError::UnsupportedVersion`] is answered with INVALID_SYNTAX (RFC 7296 §2.21.1)
/// or dropped, as the caller decides.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// A fixed-size field runs past the end of its enclosing structure.
    #[error("truncated")]
    Truncated,
    /// A length field is too small for its structure or points past its enclosing one.
    #[error("bad length field")]
    BadLength,
    /// Bytes remain after a structure was fully decoded.
    #[error("trailing bytes")]
    TrailingBytes,
    /// The bytes are well-delimited but break a rule of RFC 7296 §3.
    #[error("invalid syntax: {0}")]
    InvalidSyntax(&'static str),
    /// The header's major version is not 2 (§2.5: answer INVALID_MAJOR_VERSION).
    #[error("unsupported IKE major version {0}")]
    UnsupportedVersion(u8),
}

/// Append a 16-bit length placeholder; returns its position for [`patch_len16`].
fn push_len16(out: &mut Vec<u8>) -> usize {
    let pos = out.len();
    out.extend_from_slice(&[0, 0]);
    pos
}

/// Write `out.len() - start` into the placeholder at `pos`. A structure too large for its
/// 16-bit length field is a bug of ours; the field saturates (the peer will reject it)
/// rather than panic.
fn patch_len16(out: &mut [u8], pos: usize, start: usize) {
    let len = out.len().saturating_sub(start);
    debug_assert!(
        len <= usize::from(u16::MAX),
        "structure too long for its length field"
    );
    let v = u16::try_from(len).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(slot) = out.get_mut(pos..pos + 2) {
        slot.copy_from_slice(&v);
    }
}

/// A count or size our own data must fit in one octet (saturating, see [`patch_len16`]).
fn u8_len(n: usize) -> u8 {
    debug_assert!(n <= usize::from(u8::MAX), "count too large for its octet");
    u8::try_from(n).unwrap_or(u8::MAX)
}

/// As [`u8_len`] for a 16-bit field.
fn u16_len(n: usize) -> u16 {
    debug_assert!(n <= usize::from(u16::MAX), "count too large for its field");
    u16::try_from(n).unwrap_or(u16::MAX)
}
