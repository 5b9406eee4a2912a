//! IKEv2 cryptography: PRFs, key schedule, key exchange, SK payload protection.
//!
//! Everything here is built on `aws-lc-rs` (plus `crypto-bigint` for the MODP group).
//! Secrets are held in [`Zeroizing`] buffers and no `Debug` impl prints key bytes.
//! Randomness only ever comes from a caller-supplied [`crate::Rng`].
//!
//! [`Zeroizing`]: zeroize::Zeroizing

mod dh;
mod keys;
mod prf;
mod sk;

pub use dh::{supported_groups, validate_peer_public, KeyExchange};
pub use keys::{
    child_keymat, derive_ike_keys, derive_rekeyed_ike_keys, encr_key_len, integ_key_len, is_aead,
    psk_auth, IkeKeys, Suite,
};
pub use prf::Prf;
pub use sk::{sk_padding_len, sk_strip_padding, SkCipher};

/// Errors from the cryptographic layer. None of them carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The transform (or transform combination) is not implemented.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The peer's key exchange value failed validation (length, range, curve membership,
    /// or an all-zero X25519 result).
    #[error("peer key exchange value failed validation")]
    InvalidPublicValue,
    /// Key material (or a Key Length attribute) does not match the algorithm.
    #[error("key material has the wrong length")]
    BadKeyLength,
    /// The ICV / AEAD tag did not verify: the message must be discarded (RFC 7296 §2.21.2).
    #[error("integrity check failed")]
    IntegrityCheckFailed,
    /// The encrypted data is not a whole number of cipher blocks or its padding is
    /// malformed (RFC 7296 §3.14).
    #[error("invalid padding")]
    InvalidPadding,
    /// The crypto library failed, or a caller passed inconsistent sizes.
    #[error("internal crypto error: {0}")]
    Internal(&'static str),
}

/// Constant-time equality of two byte strings (different lengths compare unequal).
/// Use it for every comparison of AUTH values, ICVs and similar authenticators.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }
}
