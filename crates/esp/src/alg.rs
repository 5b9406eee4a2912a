//! ESP transforms: AES-GCM-16 (RFC 4106) and AES-CBC (RFC 3602) with
//! HMAC-SHA2 (RFC 4868), over aws-lc-rs.

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey,
};
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use zeroize::Zeroizing;

use crate::error::EspError;
use crate::limits::{
    AES_BLOCK_LEN, CBC_IV_LEN, ESP_MIN_ALIGN, GCM_ICV_LEN, GCM_IV_LEN, GCM_SALT_LEN,
};

/// AES key size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AesKeySize {
    Aes128,
    Aes256,
}

impl AesKeySize {
    /// Key length in octets.
    pub const fn key_len(self) -> usize {
        match self {
            Self::Aes128 => 16,
            Self::Aes256 => 32,
        }
    }
}

/// HMAC-SHA2 integrity transforms of RFC 4868 (truncated to half the hash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Integrity {
    /// AUTH_HMAC_SHA2_256_128 (IKEv2 transform 12).
    HmacSha256_128,
    /// AUTH_HMAC_SHA2_384_192 (IKEv2 transform 13).
    HmacSha384_192,
    /// AUTH_HMAC_SHA2_512_256 (IKEv2 transform 14).
    HmacSha512_256,
}

impl Integrity {
    /// Key length: equal to the hash output length (RFC 4868 §2.1.1).
    pub const fn key_len(self) -> usize {
        match self {
            Self::HmacSha256_128 => 32,
            Self::HmacSha384_192 => 48,
            Self::HmacSha512_256 => 64,
        }
    }

    /// Truncated ICV length: half the hash output (RFC 4868 §2.1.2).
    pub const fn icv_len(self) -> usize {
        self.key_len() / 2
    }

    fn hmac_alg(self) -> hmac::Algorithm {
        match self {
            Self::HmacSha256_128 => hmac::HMAC_SHA256,
            Self::HmacSha384_192 => hmac::HMAC_SHA384,
            Self::HmacSha512_256 => hmac::HMAC_SHA512,
        }
    }
}

/// An ESP protection suite, as negotiated by IKEv2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ENCR_AES_GCM_16 (IKEv2 transform 20), 16-octet ICV, RFC 4106.
    AesGcm16(AesKeySize),
    /// ENCR_AES_CBC (transform 12) with an RFC 4868 integrity transform.
    AesCbc(AesKeySize, Integrity),
}

impl Algorithm {
    /// Every supported suite (for tests and capability listings).
    pub const ALL: [Algorithm; 8] = [
        Algorithm::AesGcm16(AesKeySize::Aes128),
        Algorithm::AesGcm16(AesKeySize::Aes256),
        Algorithm::AesCbc(AesKeySize::Aes128, Integrity::HmacSha256_128),
        Algorithm::AesCbc(AesKeySize::Aes256, Integrity::HmacSha256_128),
        Algorithm::AesCbc(AesKeySize::Aes128, Integrity::HmacSha384_192),
        Algorithm::AesCbc(AesKeySize::Aes256, Integrity::HmacSha384_192),
        Algorithm::AesCbc(AesKeySize::Aes128, Integrity::HmacSha512_256),
        Algorithm::AesCbc(AesKeySize::Aes256, Integrity::HmacSha512_256),
    ];

    /// Octets of IKEv2 KEYMAT this suite consumes per direction: the AES
    /// key then the 4-octet salt for GCM (RFC 4106 §8.1); the encryption key
    /// then the integrity key for CBC (RFC 7296 §2.17).
    pub const fn keymat_len(self) -> usize {
        match self {
            Self::AesGcm16(k) => k.key_len() + GCM_SALT_LEN,
            Self::AesCbc(k, i) => k.key_len() + i.key_len(),
        }
    }

    /// Length of the IV carried in every packet.
    pub const fn iv_len(self) -> usize {
        match self {
            Self::AesGcm16(_) => GCM_IV_LEN,
            Self::AesCbc(..) => CBC_IV_LEN,
        }
    }

    /// Length of the ICV appended to every packet.
    pub const fn icv_len(self) -> usize {
        match self {
            Self::AesGcm16(_) => GCM_ICV_LEN,
            Self::AesCbc(_, i) => i.icv_len(),
        }
    }

    /// Alignment of payload ‖ padding ‖ pad length ‖ next header
    /// (RFC 4303 §2.4: cipher block size, at least 4).
    pub const fn block_len(self) -> usize {
        match self {
            Self::AesGcm16(_) => ESP_MIN_ALIGN,
            Self::AesCbc(..) => AES_BLOCK_LEN,
        }
    }
}

/// Free-function form of [`Algorithm::keymat_len`].
pub const fn keymat_len(alg: Algorithm) -> usize {
    alg.keymat_len()
}

fn aes_cipher_alg(k: AesKeySize) -> &'static aws_lc_rs::cipher::Algorithm {
    match k {
        AesKeySize::Aes128 => &aws_lc_rs::cipher::AES_128,
        AesKeySize::Aes256 => &aws_lc_rs::cipher::AES_256,
    }
}

fn aes_gcm_alg(k: AesKeySize) -> &'static aead::Algorithm {
    match k {
        AesKeySize::Aes128 => &aead::AES_128_GCM,
        AesKeySize::Aes256 => &aead::AES_256_GCM,
    }
}

fn check_keymat(alg: Algorithm, keymat: &[u8]) -> Result<(), EspError> {
    if keymat.len() != alg.keymat_len() {
        return Err(EspError::KeymatLength {
            got: keymat.len(),
            want: alg.keymat_len(),
        });
    }
    Ok(())
}

/// Associated data bytes: SPI ‖ [ESN high] ‖ seq low (RFC 4106 §5), or for
/// HMAC the trailing ESN high bits (RFC 4303 §3.3.2.1).
pub(crate) struct SeqInfo {
    pub spi: u32,
    pub seq: u64,
    pub esn: bool,
}

impl SeqInfo {
    fn gcm_aad(&self, buf: &mut [u8; 12]) -> usize {
        buf[..4].copy_from_slice(&self.spi.to_be_bytes());
        if self.esn {
            buf[4..12].copy_from_slice(&self.seq.to_be_bytes());
            12
        } else {
            buf[4..8].copy_from_slice(&(self.seq as u32).to_be_bytes());
            8
        }
    }
}

/// Outbound crypto state.
pub(crate) enum Sealer {
    Gcm {
        key: LessSafeKey,
        salt: Zeroizing<[u8; GCM_SALT_LEN]>,
    },
    /// Boxed: the CBC and HMAC key schedules are large.
    Cbc(Box<CbcSealer>),
}

/// The AES-GCM key and its 4-octet salt from ESP key material (RFC 4106 §8.1: key then
/// salt); `keymat` has been length-checked.
fn gcm_key(
    k: AesKeySize,
    keymat: &[u8],
) -> Result<(LessSafeKey, Zeroizing<[u8; GCM_SALT_LEN]>), EspError> {
    let (ek, salt) = keymat.split_at(k.key_len());
    let key = UnboundKey::new(aes_gcm_alg(k), ek).map_err(|_| EspError::Crypto)?;
    let mut s = Zeroizing::new([0u8; GCM_SALT_LEN]);
    s.copy_from_slice(salt);
    Ok((LessSafeKey::new(key), s))
}

pub(crate) struct CbcSealer {
    enc: EncryptingKey,
    /// Same AES key in ECB mode, used only to derive IVs.
    iv_gen: EncryptingKey,
    mac: hmac::Key,
    icv_len: usize,
}

impl Sealer {
    pub(crate) fn new(alg: Algorithm, keymat: &[u8]) -> Result<Self, EspError> {
        check_keymat(alg, keymat)?;
        match alg {
            Algorithm::AesGcm16(k) => {
                let (key, salt) = gcm_key(k, keymat)?;
                Ok(Self::Gcm { key, salt })
            }
            Algorithm::AesCbc(k, i) => {
                let (ek, ik) = keymat.split_at(k.key_len());
                let unbound =
                    |b| UnboundCipherKey::new(aes_cipher_alg(k), b).map_err(|_| EspError::Crypto);
                Ok(Self::Cbc(Box::new(CbcSealer {
                    enc: EncryptingKey::cbc(unbound(ek)?).map_err(|_| EspError::Crypto)?,
                    iv_gen: EncryptingKey::ecb(unbound(ek)?).map_err(|_| EspError::Crypto)?,
                    mac: hmac::Key::new(i.hmac_alg(), ik),
                    icv_len: i.icv_len(),
                })))
            }
        }
    }

    /// Write the IV for sequence number `seq` into `iv`.
    ///
    /// GCM: the 64-bit sequence number itself, unique per key (RFC 4106
    /// §3.1 allows a counter). CBC needs an unpredictable IV (RFC 3602 §3):
    /// we use E_K(seq ‖ 0) — the forward cipher applied to a unique nonce
    /// under the encryption key, NIST SP 800-38A Appendix C — which needs no
    /// RNG and never repeats for a key.
    pub(crate) fn make_iv(&self, seq: u64, iv: &mut [u8]) -> Result<(), EspError> {
        match self {
            Self::Gcm { .. } => {
                iv.copy_from_slice(&seq.to_be_bytes());
                Ok(())
            }
            Self::Cbc(c) => {
                let iv_gen = &c.iv_gen;
                let mut block = [0u8; CBC_IV_LEN];
                block[..8].copy_from_slice(&seq.to_be_bytes());
                iv_gen
                    .less_safe_encrypt(&mut block, EncryptionContext::None)
                    .map_err(|_| EspError::Crypto)?;
                iv.copy_from_slice(&block);
                Ok(())
            }
        }
    }

    /// Encrypt and authenticate in place. `packet` is
    /// header ‖ IV ‖ plaintext ‖ room-for-ICV; header and IV are filled in.
    pub(crate) fn seal(
        &self,
        info: &SeqInfo,
        packet: &mut [u8],
        iv_len: usize,
    ) -> Result<(), EspError> {
        let hdr_iv = crate::limits::ESP_HEADER_LEN + iv_len;
        match self {
            Self::Gcm { key, salt } => {
                let (head, rest) = packet
                    .split_at_mut_checked(hdr_iv)
                    .ok_or(EspError::Crypto)?;
                let ct_len = rest
                    .len()
                    .checked_sub(GCM_ICV_LEN)
                    .ok_or(EspError::Crypto)?;
                let (body, icv) = rest.split_at_mut(ct_len);
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(&salt[..]);
                nonce[4..].copy_from_slice(head.get(8..16).ok_or(EspError::Crypto)?);
                let mut aad = [0u8; 12];
                let n = info.gcm_aad(&mut aad);
                let tag = key
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(nonce),
                        Aad::from(&aad[..n]),
                        body,
                    )
                    .map_err(|_| EspError::Crypto)?;
                icv.copy_from_slice(tag.as_ref());
                Ok(())
            }
            Self::Cbc(c) => {
                let (enc, mac, icv_len) = (&c.enc, &c.mac, &c.icv_len);
                let auth_len = packet.len().checked_sub(*icv_len).ok_or(EspError::Crypto)?;
                let (authed, icv) = packet.split_at_mut(auth_len);
                let (head, body) = authed
                    .split_at_mut_checked(hdr_iv)
                    .ok_or(EspError::Crypto)?;
                let mut iv = [0u8; CBC_IV_LEN];
                iv.copy_from_slice(head.get(8..24).ok_or(EspError::Crypto)?);
                enc.less_safe_encrypt(body, EncryptionContext::Iv128(FixedLength::from(iv)))
                    .map_err(|_| EspError::Crypto)?;
                let tag = cbc_icv(mac, info, authed);
                icv.copy_from_slice(tag.as_ref().get(..*icv_len).ok_or(EspError::Crypto)?);
                Ok(())
            }
        }
    }
}

/// HMAC over SPI ‖ seq ‖ IV ‖ ciphertext, with the ESN high-order bits
/// appended to the ICV input only (RFC 4303 §2.2.1, §3.3.2.1).
pub(crate) fn cbc_icv(mac: &hmac::Key, info: &SeqInfo, authed: &[u8]) -> hmac::Tag {
    let mut ctx = hmac::Context::with_key(mac);
    ctx.update(authed);
    if info.esn {
        ctx.update(&((info.seq >> 32) as u32).to_be_bytes());
    }
    ctx.sign()
}

/// Inbound crypto state.
pub(crate) enum Opener {
    Gcm {
        key: LessSafeKey,
        salt: Zeroizing<[u8; GCM_SALT_LEN]>,
    },
    /// Boxed: the CBC and HMAC key schedules are large.
    Cbc(Box<CbcOpener>),
}

pub(crate) struct CbcOpener {
    dec: DecryptingKey,
    mac: hmac::Key,
    icv_len: usize,
}

impl Opener {
    pub(crate) fn new(alg: Algorithm, keymat: &[u8]) -> Result<Self, EspError> {
        check_keymat(alg, keymat)?;
        match alg {
            Algorithm::AesGcm16(k) => {
                let (key, salt) = gcm_key(k, keymat)?;
                Ok(Self::Gcm { key, salt })
            }
            Algorithm::AesCbc(k, i) => {
                let (ek, ik) = keymat.split_at(k.key_len());
                let unbound =
                    UnboundCipherKey::new(aes_cipher_alg(k), ek).map_err(|_| EspError::Crypto)?;
                Ok(Self::Cbc(Box::new(CbcOpener {
                    dec: DecryptingKey::cbc(unbound).map_err(|_| EspError::Crypto)?,
                    mac: hmac::Key::new(i.hmac_alg(), ik),
                    icv_len: i.icv_len(),
                })))
            }
        }
    }

    /// Verify the ICV and decrypt in place. `packet` is the whole ESP packet
    /// (header ‖ IV ‖ ciphertext ‖ ICV), already length-checked by the
    /// caller. Returns the plaintext (payload ‖ padding ‖ trailer).
    /// Nothing is decrypted unless the ICV verifies.
    pub(crate) fn open<'a>(
        &self,
        info: &SeqInfo,
        packet: &'a mut [u8],
        iv_len: usize,
    ) -> Result<&'a mut [u8], EspError> {
        let hdr_iv = crate::limits::ESP_HEADER_LEN + iv_len;
        match self {
            Self::Gcm { key, salt } => {
                let (head, rest) = packet
                    .split_at_mut_checked(hdr_iv)
                    .ok_or(EspError::Truncated)?;
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(&salt[..]);
                nonce[4..].copy_from_slice(head.get(8..16).ok_or(EspError::Truncated)?);
                let mut aad = [0u8; 12];
                let n = info.gcm_aad(&mut aad);
                key.open_in_place(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&aad[..n]),
                    rest,
                )
                .map_err(|_| EspError::IcvFailure)
            }
            Self::Cbc(c) => {
                let (dec, mac, icv_len) = (&c.dec, &c.mac, &c.icv_len);
                let auth_len = packet
                    .len()
                    .checked_sub(*icv_len)
                    .ok_or(EspError::Truncated)?;
                let (authed, icv) = packet.split_at_mut(auth_len);
                let tag = cbc_icv(mac, info, authed);
                let expected = tag.as_ref().get(..*icv_len).ok_or(EspError::Crypto)?;
                verify_slices_are_equal(expected, icv).map_err(|_| EspError::IcvFailure)?;
                let (head, body) = authed
                    .split_at_mut_checked(hdr_iv)
                    .ok_or(EspError::Truncated)?;
                if body.is_empty() || body.len() % AES_BLOCK_LEN != 0 {
                    return Err(EspError::BadCiphertextLength);
                }
                let mut iv = [0u8; CBC_IV_LEN];
                iv.copy_from_slice(head.get(8..24).ok_or(EspError::Truncated)?);
                dec.decrypt(body, DecryptionContext::Iv128(FixedLength::from(iv)))
                    .map_err(|_| EspError::Crypto)
            }
        }
    }

    /// [`Self::open`] with the plaintext written to `out` (at least as long as the
    /// ciphertext) instead of over the packet: the copy to where the plaintext is needed
    /// is then part of the decryption. Returns `out`'s plaintext prefix.
    pub(crate) fn open_into<'a>(
        &self,
        info: &SeqInfo,
        packet: &[u8],
        iv_len: usize,
        out: &'a mut [u8],
    ) -> Result<&'a mut [u8], EspError> {
        let hdr_iv = crate::limits::ESP_HEADER_LEN + iv_len;
        match self {
            Self::Gcm { key, salt } => {
                let (head, rest) = packet.split_at_checked(hdr_iv).ok_or(EspError::Truncated)?;
                let ct_len = rest
                    .len()
                    .checked_sub(key.algorithm().tag_len())
                    .ok_or(EspError::Truncated)?;
                let (ct, tag) = rest.split_at(ct_len);
                let plain = out.get_mut(..ct_len).ok_or(EspError::BufferTooSmall {
                    need: ct_len,
                    have: 0,
                })?;
                let mut nonce = [0u8; 12];
                nonce[..4].copy_from_slice(&salt[..]);
                nonce[4..].copy_from_slice(head.get(8..16).ok_or(EspError::Truncated)?);
                let mut aad = [0u8; 12];
                let n = info.gcm_aad(&mut aad);
                key.open_separate_gather(
                    Nonce::assume_unique_for_key(nonce),
                    Aad::from(&aad[..n]),
                    ct,
                    tag,
                    plain,
                )
                .map_err(|_| EspError::IcvFailure)?;
                Ok(plain)
            }
            Self::Cbc(c) => {
                // CBC decrypts in place: verify, copy the body, decrypt there.
                let auth_len = packet
                    .len()
                    .checked_sub(c.icv_len)
                    .ok_or(EspError::Truncated)?;
                let (authed, icv) = packet.split_at(auth_len);
                let tag = cbc_icv(&c.mac, info, authed);
                let expected = tag.as_ref().get(..c.icv_len).ok_or(EspError::Crypto)?;
                verify_slices_are_equal(expected, icv).map_err(|_| EspError::IcvFailure)?;
                let (head, body) = authed.split_at_checked(hdr_iv).ok_or(EspError::Truncated)?;
                if body.is_empty() || body.len() % AES_BLOCK_LEN != 0 {
                    return Err(EspError::BadCiphertextLength);
                }
                let plain = out.get_mut(..body.len()).ok_or(EspError::BufferTooSmall {
                    need: body.len(),
                    have: 0,
                })?;
                plain.copy_from_slice(body);
                let mut iv = [0u8; CBC_IV_LEN];
                iv.copy_from_slice(head.get(8..24).ok_or(EspError::Truncated)?);
                c.dec
                    .decrypt(plain, DecryptionContext::Iv128(FixedLength::from(iv)))
                    .map_err(|_| EspError::Crypto)
            }
        }
    }
}
