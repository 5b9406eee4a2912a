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
    #[error(
        "fragments add up to more than {} octets",
        crate::limits::MAX_REASSEMBLY_BYTES
    )]
    TooLarge,
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

/// Protects `inner` as one SK message, or — when it would exceed `max_len` octets and
/// the peer supports it — as SKF fragments (RFC 7383 §2.5), each under `max_len`.
pub fn seal_fragmented(
    header: Header,
    inner: &[Payload],
    cipher: &SkCipher,
    rng: &mut dyn Rng,
    max_len: Option<usize>,
) -> Result<Vec<Vec<u8>>, crate::crypto::CryptoError> {
    let whole = seal(header, inner, cipher, rng)?;
    let Some(max_len) = max_len.filter(|m| whole.len() > *m) else {
        return Ok(vec![whole]);
    };
    let mut plain = Zeroizing::new(Vec::new());
    let first_inner = wire::encode_chain(inner, &mut plain);
    // Room for payload octets in one fragment: the limit less header, SKF header
    // (8 octets), IV, ICV and at least the pad-length octet, rounded to the block.
    let block = cipher.block_len().max(1);
    let overhead = HEADER_LEN + 8 + cipher.iv_len() + cipher.icv_len();
    let room = max_len.saturating_sub(overhead);
    let chunk = (room / block * block).saturating_sub(1).max(1);
    let total = plain.len().div_ceil(chunk);
    if total > crate::limits::MAX_FRAGMENTS {
        return Err(crate::crypto::CryptoError::Internal(
            "message needs too many fragments",
        ));
    }
    let mut out = Vec::with_capacity(total);
    for (i, part) in plain.chunks(chunk).enumerate() {
        let mut pt = Zeroizing::new(part.to_vec());
        let pad_len = (block - (pt.len() + 1) % block) % block;
        pt.extend(std::iter::repeat_n(0u8, pad_len));
        pt.push(pad_len as u8);
        let skf_len = 8 + cipher.iv_len() + pt.len() + cipher.icv_len();
        let mut h = header;
        h.next_payload = PayloadType::SKF;
        h.length = (HEADER_LEN + skf_len) as u32;
        let mut msg = Vec::with_capacity(h.length as usize);
        h.encode(&mut msg);
        // §2.5: only the first fragment names the first inner payload.
        msg.push(if i == 0 { first_inner.0 } else { 0 });
        msg.push(0);
        msg.extend_from_slice(&(skf_len as u16).to_be_bytes());
        msg.extend_from_slice(&((i + 1) as u16).to_be_bytes());
        msg.extend_from_slice(&(total as u16).to_be_bytes());
        let mut iv = vec![0u8; cipher.iv_len()];
        rng.fill(&mut iv);
        let sealed = cipher.seal(&msg, &iv, &pt)?;
        msg.extend_from_slice(&iv);
        msg.extend_from_slice(&sealed);
        out.push(msg);
    }
    Ok(out)
}

/// One verified fragment: its number, the total, the first inner payload type (fragment
/// 1 only) and its decrypted payload octets.
pub struct Fragment {
    pub number: u16,
    pub total: u16,
    pub first_inner: PayloadType,
    pub data: Zeroizing<Vec<u8>>,
}

/// Verifies and decrypts one SKF payload (RFC 7383 §2.6: each fragment is checked on
/// its own before it is kept).
pub fn open_fragment(raw: &[u8], msg: &Message, cipher: &SkCipher) -> Result<Fragment, OpenError> {
    let skf = match msg.payloads.last() {
        Some(Payload::EncryptedFragment(f)) => f,
        _ => return Err(OpenError::NotEncrypted),
    };
    if skf.fragment_number == 0 || skf.fragment_number > skf.total_fragments {
        return Err(OpenError::BadLength);
    }
    let aad_len = raw
        .len()
        .checked_sub(skf.body.len())
        .ok_or(OpenError::BadLength)?;
    let aad = raw.get(..aad_len).ok_or(OpenError::BadLength)?;
    let iv_len = cipher.iv_len();
    if skf.body.len() < iv_len + cipher.icv_len() + 1 {
        return Err(OpenError::BadLength);
    }
    let (iv, rest) = skf.body.split_at(iv_len);
    let plain = cipher
        .open(aad, iv, rest)
        .map_err(|_| OpenError::Integrity)?;
    let (&pad_len, body) = plain.split_last().ok_or(OpenError::Padding)?;
    let len = body
        .len()
        .checked_sub(pad_len as usize)
        .ok_or(OpenError::Padding)?;
    Ok(Fragment {
        number: skf.fragment_number,
        total: skf.total_fragments,
        first_inner: skf.first_inner,
        data: Zeroizing::new(body.get(..len).ok_or(OpenError::Padding)?.to_vec()),
    })
}

/// Collects the fragments of one message (RFC 7383 §2.6.1).
pub struct Reassembly {
    pub msg_id: u32,
    pub response: bool,
    total: u16,
    first_inner: PayloadType,
    parts: Vec<Option<Zeroizing<Vec<u8>>>>,
    /// Octets held in `parts` (RFC 7383 §7: bounded).
    bytes: usize,
}

impl Reassembly {
    pub fn new(msg_id: u32, response: bool, total: u16) -> Reassembly {
        Reassembly {
            msg_id,
            response,
            total,
            first_inner: PayloadType::NONE,
            parts: vec![None; total as usize],
            bytes: 0,
        }
    }

    /// Adds a fragment; returns the inner payloads once all are there.
    pub fn add(&mut self, f: Fragment) -> Option<Result<Vec<Payload>, OpenError>> {
        if f.total != self.total {
            return None;
        }
        if f.number == 1 {
            self.first_inner = f.first_inner;
        }
        let slot = self.parts.get_mut(usize::from(f.number).checked_sub(1)?)?;
        let held = slot.as_ref().map_or(0, |d| d.len());
        self.bytes = self.bytes - held + f.data.len();
        *slot = Some(f.data);
        // RFC 7383 §7: a peer must not make us hold more than a bounded amount.
        if self.bytes > crate::limits::MAX_REASSEMBLY_BYTES {
            return Some(Err(OpenError::TooLarge));
        }
        if self.parts.iter().any(|p| p.is_none()) {
            return None;
        }
        let mut all = Zeroizing::new(Vec::new());
        for p in self.parts.iter().flatten() {
            all.extend_from_slice(p);
        }
        Some(wire::decode_chain(self.first_inner, &all).map_err(OpenError::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frag(number: u16, total: u16, len: usize) -> Fragment {
        Fragment {
            number,
            total,
            first_inner: PayloadType::NONE,
            data: Zeroizing::new(vec![0; len]),
        }
    }

    /// RFC 7383 §7: the octets held for one message are bounded, also when a peer
    /// resends a slot; fragment number 0 is ignored rather than underflowing.
    #[test]
    fn reassembly_holds_a_bounded_number_of_octets() {
        let mut r = Reassembly::new(1, false, 40);
        assert!(r.add(frag(0, 40, 100)).is_none());
        let per = 4000;
        let fit = crate::limits::MAX_REASSEMBLY_BYTES / per;
        for n in 1..=fit as u16 {
            assert!(r.add(frag(n, 40, per)).is_none(), "fragment {n}");
        }
        // Replacing a held fragment does not count twice.
        assert!(r.add(frag(1, 40, per)).is_none());
        assert!(matches!(
            r.add(frag(fit as u16 + 1, 40, per)),
            Some(Err(OpenError::TooLarge))
        ));
    }
}
