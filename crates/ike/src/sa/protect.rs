//! SK payload protection of whole messages (RFC 7296 §3.14, RFC 5282 for AES-GCM).

use crate::crypto::SkCipher;
use crate::iana::PayloadType;
use crate::wire::{self, DecodeError, EncryptedPayload, Header, Message, Payload, HEADER_LEN};
use crate::Rng;
use zeroize::Zeroizing;

/// Why an SK payload could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("message has no SK payload")]
    NotEncrypted,
    #[error("SK payload too short or misaligned")]
    BadLength,
    #[error("integrity check failed")]
    Integrity,
    #[error("invalid padding")]
    Padding,
    #[error("inner payloads: {0}")]
    Decode(#[from] DecodeError),
}

/// Encodes `header` + SK{inner} and protects it with `cipher`; header lengths and
/// next-payload fields are filled in here.
pub fn seal(
    mut header: Header,
    inner: &[Payload],
    cipher: &SkCipher,
    rng: &mut dyn Rng,
) -> Result<Vec<u8>, crate::crypto::CryptoError> {
    let mut plain = Zeroizing::new(Vec::new());
    let first_inner = wire::encode_chain(inner, &mut plain);
    // §3.14: pad so that (payloads | padding | pad length) is a multiple of the block size.
    let block = cipher.block_len().max(1);
    let pad_len = (block - (plain.len() + 1) % block) % block;
    plain.extend(std::iter::repeat_n(0u8, pad_len));
    plain.push(pad_len as u8);

    let iv_len = cipher.iv_len();
    let sk_len = 4 + iv_len + plain.len() + cipher.icv_len();
    header.next_payload = PayloadType::SK;
    header.length = (HEADER_LEN + sk_len) as u32;
    let mut out = Vec::with_capacity(header.length as usize);
    header.encode(&mut out);
    out.push(first_inner.0);
    out.push(0);
    out.extend_from_slice(&(sk_len as u16).to_be_bytes());
    let mut iv = vec![0u8; iv_len];
    rng.fill(&mut iv);
    let sealed = cipher.seal(&out, &iv, &plain)?;
    out.extend_from_slice(&iv);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Verifies and decrypts the SK payload of `msg`, decoded from `raw`; returns the inner
/// payloads. The SK payload is always last (§3.14), so everything before its body is
/// authenticated data.
pub fn open(raw: &[u8], msg: &Message, cipher: &SkCipher) -> Result<Vec<Payload>, OpenError> {
    let sk: &EncryptedPayload = match msg.payloads.last() {
        Some(Payload::Encrypted(sk)) => sk,
        _ => return Err(OpenError::NotEncrypted),
    };
    let aad_len = raw
        .len()
        .checked_sub(sk.body.len())
        .ok_or(OpenError::BadLength)?;
    let aad = raw.get(..aad_len).ok_or(OpenError::BadLength)?;
    let iv_len = cipher.iv_len();
    if sk.body.len() < iv_len + cipher.icv_len() + 1 {
        return Err(OpenError::BadLength);
    }
    let (iv, rest) = sk.body.split_at(iv_len);
    let ct_len = rest.len() - cipher.icv_len();
    if ct_len == 0 || !ct_len.is_multiple_of(cipher.block_len().max(1)) {
        return Err(OpenError::BadLength);
    }
    let plain = cipher
        .open(aad, iv, rest)
        .map_err(|_| OpenError::Integrity)?;
    let (&pad_len, body) = plain.split_last().ok_or(OpenError::Padding)?;
    let inner_len = body
        .len()
        .checked_sub(pad_len as usize)
        .ok_or(OpenError::Padding)?;
    let inner = body.get(..inner_len).ok_or(OpenError::Padding)?;
    Ok(wire::decode_chain(sk.first_inner, inner)?)
}
