//! Encrypted payload protection (RFC 7296 §3.14): AES-CBC + HMAC, and the AEAD ciphers
//! AES-GCM (RFC 5282) and ChaCha20-Poly1305 (RFC 7634).

use core::fmt;

use aws_lc_rs::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    self, DecryptingKey, DecryptionContext, EncryptingKey, EncryptionContext, UnboundCipherKey,
};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use zeroize::Zeroizing;

use super::keys::{encr_key_len, is_aead, AEAD_SALT_LEN};
use super::{ct_eq, CryptoError};
use crate::iana::{EncrId, IntegId};

/// RFC 3602 §3 / RFC 7296 §3.14: the AES-CBC IV is one cipher block.
const CBC_IV_LEN: usize = 16;
/// AES block size: CBC plaintext (incl. pad-length octet) is a multiple of it.
const AES_BLOCK_LEN: usize = 16;
/// RFC 5282 §3.1 / RFC 7634 §2: 8-octet explicit IV; nonce = salt(4) | IV(8).
const AEAD_IV_LEN: usize = 8;
/// RFC 5282 §3 (AES_GCM_16) / RFC 7634 §2: 16-octet ICV.
const AEAD_TAG_LEN: usize = 16;

/// AES-CBC + HMAC state; boxed so the expanded key schedules are not copied on moves.
struct CbcKeys {
    enc: EncryptingKey,
    dec: DecryptingKey,
    mac: hmac::Key,
    icv_len: usize,
}

enum Inner {
    Cbc(Box<CbcKeys>),
    Aead {
        key: LessSafeKey,
        salt: Zeroizing<[u8; AEAD_SALT_LEN]>,
    },
}

/// Protection of SK payloads in one direction, e.g. built from SK_ei + SK_ai for
/// initiator → responder. `Debug` names the transforms only.
pub struct SkCipher {
    encr: EncrId,
    integ: IntegId,
    inner: Inner,
}

impl fmt::Debug for SkCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SkCipher")
            .field("encr", &self.encr)
            .field("integ", &self.integ)
            .finish_non_exhaustive()
    }
}

/// (HMAC algorithm, key length, truncated ICV length) of an integrity transform.
fn integ_params(integ: IntegId) -> Result<(hmac::Algorithm, usize, usize), CryptoError> {
    match integ {
        // RFC 2404.
        IntegId::HMAC_SHA1_96 => Ok((hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, 20, 12)),
        // RFC 4868 §2.1: key = hash output length, ICV = half of it.
        IntegId::HMAC_SHA2_256_128 => Ok((hmac::HMAC_SHA256, 32, 16)),
        IntegId::HMAC_SHA2_384_192 => Ok((hmac::HMAC_SHA384, 48, 24)),
        IntegId::HMAC_SHA2_512_256 => Ok((hmac::HMAC_SHA512, 64, 32)),
        _ => Err(CryptoError::UnsupportedAlgorithm(format!("INTEG {integ}"))),
    }
}

impl SkCipher {
    /// Build one direction's cipher. `encr_key` is SK_e (for AEAD: key | 4-octet salt,
    /// RFC 5282 §7.1); `integ_key` is SK_a (empty for AEAD, with `integ` = NONE).
    pub fn new(
        encr: EncrId,
        encr_key_bits: Option<u16>,
        integ: IntegId,
        encr_key: &[u8],
        integ_key: &[u8],
    ) -> Result<SkCipher, CryptoError> {
        if encr_key.len() != encr_key_len(encr, encr_key_bits)? {
            return Err(CryptoError::BadKeyLength);
        }
        let inner = if is_aead(encr) {
            // RFC 5282 §8: no separate integrity transform with a combined-mode cipher.
            if integ != IntegId::NONE {
                return Err(CryptoError::UnsupportedAlgorithm(format!(
                    "INTEG {integ} with combined-mode {encr}"
                )));
            }
            if !integ_key.is_empty() {
                return Err(CryptoError::BadKeyLength);
            }
            let (key, salt) = encr_key.split_at(encr_key.len() - AEAD_SALT_LEN);
            let alg = match (encr, key.len()) {
                (EncrId::CHACHA20_POLY1305, _) => &aead::CHACHA20_POLY1305,
                (_, 16) => &aead::AES_128_GCM,
                (_, 24) => &aead::AES_192_GCM,
                _ => &aead::AES_256_GCM,
            };
            let unbound =
                UnboundKey::new(alg, key).map_err(|_| CryptoError::Internal("AEAD key setup"))?;
            let mut salt_arr = Zeroizing::new([0u8; AEAD_SALT_LEN]);
            salt_arr.copy_from_slice(salt);
            Inner::Aead {
                key: LessSafeKey::new(unbound),
                salt: salt_arr,
            }
        } else {
            if integ == IntegId::NONE {
                return Err(CryptoError::UnsupportedAlgorithm(format!(
                    "{encr} without an integrity transform"
                )));
            }
            let (mac_alg, mac_key_len, icv_len) = integ_params(integ)?;
            if integ_key.len() != mac_key_len {
                return Err(CryptoError::BadKeyLength);
            }
            let alg = match encr_key.len() {
                16 => &cipher::AES_128,
                24 => &cipher::AES_192,
                _ => &cipher::AES_256,
            };
            let setup = |_| CryptoError::Internal("AES-CBC key setup");
            let enc = EncryptingKey::cbc(UnboundCipherKey::new(alg, encr_key).map_err(setup)?)
                .map_err(setup)?;
            let dec = DecryptingKey::cbc(UnboundCipherKey::new(alg, encr_key).map_err(setup)?)
                .map_err(setup)?;
            Inner::Cbc(Box::new(CbcKeys {
                enc,
                dec,
                mac: hmac::Key::new(mac_alg, integ_key),
                icv_len,
            }))
        };
        Ok(SkCipher { encr, integ, inner })
    }

    /// Length of the Initialization Vector that precedes the ciphertext: 16 for AES-CBC,
    /// 8 for the AEAD ciphers (RFC 5282 §3.1, RFC 7634 §2).
    pub fn iv_len(&self) -> usize {
        match self.inner {
            Inner::Cbc(_) => CBC_IV_LEN,
            Inner::Aead { .. } => AEAD_IV_LEN,
        }
    }

    /// Length of the Integrity Checksum Data after the ciphertext.
    pub fn icv_len(&self) -> usize {
        match self.inner {
            Inner::Cbc(ref c) => c.icv_len,
            Inner::Aead { .. } => AEAD_TAG_LEN,
        }
    }

    /// Alignment of plaintext | padding | pad-length octet: 16 for CBC, 1 for AEAD.
    pub fn block_len(&self) -> usize {
        match self.inner {
            Inner::Cbc(_) => AES_BLOCK_LEN,
            Inner::Aead { .. } => 1,
        }
    }

    /// Truncated HMAC over the concatenation of `parts`.
    fn icv(mac: &hmac::Key, icv_len: usize, parts: &[&[u8]]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(mac);
        for p in parts {
            ctx.update(p);
        }
        let tag = ctx.sign();
        tag.as_ref()[..icv_len].to_vec()
    }

    /// RFC 5282 §5 / RFC 7634 §2: nonce = salt | IV.
    fn nonce(salt: &[u8; AEAD_SALT_LEN], iv: &[u8]) -> Result<Nonce, CryptoError> {
        let mut n = [0u8; aead::NONCE_LEN];
        let (s, i) = n.split_at_mut(AEAD_SALT_LEN);
        s.copy_from_slice(salt);
        if iv.len() != i.len() {
            return Err(CryptoError::Internal("SK IV length"));
        }
        i.copy_from_slice(iv);
        Ok(Nonce::assume_unique_for_key(n))
    }

    /// Encrypt and protect. `plaintext` is already padded (payloads | Padding | Pad
    /// Length, a multiple of [`Self::block_len`]); `aad` is the message from the IKE header
    /// through the SK payload's generic header, lengths final; `iv` is [`Self::iv_len`]
    /// octets, unpredictable for CBC and never repeated under one key for AEAD.
    /// Returns ciphertext | ICV.
    ///
    /// CBC: ICV = HMAC-trunc(SK_a, aad | IV | ciphertext) — §3.14: the checksum covers
    /// "the whole message from the IKE header through the encrypted data".
    /// AEAD (RFC 5282 §5.1): the AAD is the same header span; the tag is the ICV.
    pub fn seal(&self, aad: &[u8], iv: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if iv.len() != self.iv_len() {
            return Err(CryptoError::Internal("SK IV length"));
        }
        let mut out = Vec::with_capacity(plaintext.len() + self.icv_len());
        out.extend_from_slice(plaintext);
        match &self.inner {
            Inner::Cbc(c) => {
                if plaintext.is_empty() || !plaintext.len().is_multiple_of(AES_BLOCK_LEN) {
                    return Err(CryptoError::InvalidPadding);
                }
                let ctx = EncryptionContext::Iv128(
                    FixedLength::try_from(iv).map_err(|_| CryptoError::Internal("SK IV length"))?,
                );
                c.enc
                    .less_safe_encrypt(&mut out, ctx)
                    .map_err(|_| CryptoError::Internal("AES-CBC encryption"))?;
                let icv = Self::icv(&c.mac, c.icv_len, &[aad, iv, &out]);
                out.extend_from_slice(&icv);
            }
            Inner::Aead { key, salt } => {
                let tag = key
                    .seal_in_place_separate_tag(Self::nonce(salt, iv)?, Aad::from(aad), &mut out)
                    .map_err(|_| CryptoError::Internal("AEAD seal"))?;
                out.extend_from_slice(tag.as_ref());
            }
        }
        Ok(out)
    }

    /// Verify and decrypt; inverse of [`Self::seal`]. The ICV is checked (constant time)
    /// before anything is decrypted; for AEAD, plaintext is released only if the tag
    /// verifies. Returns the padded plaintext (payloads | Padding | Pad Length): strip it
    /// with [`sk_strip_padding`].
    ///
    /// Errors: input shorter than the ICV or a wrong ICV/tag → `IntegrityCheckFailed`;
    /// CBC ciphertext not a non-empty multiple of the block → `InvalidPadding`.
    pub fn open(
        &self,
        aad: &[u8],
        iv: &[u8],
        ciphertext_and_icv: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if iv.len() != self.iv_len() {
            return Err(CryptoError::Internal("SK IV length"));
        }
        let ct_len = ciphertext_and_icv
            .len()
            .checked_sub(self.icv_len())
            .ok_or(CryptoError::IntegrityCheckFailed)?;
        let (ct, icv) = ciphertext_and_icv.split_at(ct_len);
        match &self.inner {
            Inner::Cbc(c) => {
                let expected = Self::icv(&c.mac, c.icv_len, &[aad, iv, ct]);
                if !ct_eq(&expected, icv) {
                    return Err(CryptoError::IntegrityCheckFailed);
                }
                if ct.is_empty() || !ct.len().is_multiple_of(AES_BLOCK_LEN) {
                    return Err(CryptoError::InvalidPadding);
                }
                let ctx = DecryptionContext::Iv128(
                    FixedLength::try_from(iv).map_err(|_| CryptoError::Internal("SK IV length"))?,
                );
                let mut buf = Zeroizing::new(ct.to_vec());
                c.dec
                    .decrypt(&mut buf, ctx)
                    .map_err(|_| CryptoError::Internal("AES-CBC decryption"))?;
                Ok(buf)
            }
            Inner::Aead { key, salt } => {
                let mut buf = Zeroizing::new(ct.to_vec());
                key.open_in_place_separate_tag(
                    Self::nonce(salt, iv)?,
                    Aad::from(aad),
                    icv,
                    &mut buf,
                )
                .map_err(|_| CryptoError::IntegrityCheckFailed)?;
                Ok(buf)
            }
        }
    }
}

/// Octets of Padding (not counting the Pad Length octet) that align `payload_len` octets
/// of inner payloads to `block_len` (RFC 7296 §3.14: the sender SHOULD use the minimum).
pub fn sk_padding_len(block_len: usize, payload_len: usize) -> usize {
    if block_len <= 1 {
        return 0;
    }
    (block_len - (payload_len + 1) % block_len) % block_len
}

/// Strip Padding and the Pad Length octet from decrypted SK contents (§3.14: the
/// recipient accepts any pad length that fits).
pub fn sk_strip_padding(padded: &[u8]) -> Result<&[u8], CryptoError> {
    let (&pad_len, rest) = padded.split_last().ok_or(CryptoError::InvalidPadding)?;
    let keep = rest
        .len()
        .checked_sub(usize::from(pad_len))
        .ok_or(CryptoError::InvalidPadding)?;
    rest.get(..keep).ok_or(CryptoError::InvalidPadding)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    /// AAD as it looks in IKE: 28-octet header + 4-octet SK generic header.
    fn aad() -> Vec<u8> {
        (0u8..32).collect()
    }

    // GCM spec (McGrew & Viega, "The Galois/Counter Mode of Operation", Appendix B)
    // Test Case 16 (AES-256) and Test Case 4 (AES-128): same IV, plaintext and AAD.
    // RFC 5282 split of the 96-bit IV: salt = cafebabe (last 4 octets of SK_e),
    // explicit IV = facedbaddecaf888.
    #[test]
    fn gcm_spec_test_cases_4_and_16() {
        let p = h(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72
                   1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let a = h("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let iv = h("facedbaddecaf888");
        let k = h("feffe9928665731c6d6a8f9467308308");
        let cases = [
            (
                256,
                [k.clone(), k.clone()].concat(),
                h(
                    "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa
                   8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                ),
                h("76fc6ece0f4e1768cddf8853bb2d551b"),
            ),
            (
                128,
                k.clone(),
                h(
                    "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e
                   21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091",
                ),
                h("5bc94fbc3221a5db94fae95ae7121a47"),
            ),
        ];
        for (bits, key, c, t) in cases {
            let material = [key, h("cafebabe")].concat();
            let sk = SkCipher::new(
                EncrId::AES_GCM_16,
                Some(bits),
                IntegId::NONE,
                &material,
                &[],
            )
            .unwrap();
            assert_eq!((sk.iv_len(), sk.icv_len(), sk.block_len()), (8, 16, 1));
            let sealed = sk.seal(&a, &iv, &p).unwrap();
            assert_eq!(sealed, [c, t].concat());
            assert_eq!(*sk.open(&a, &iv, &sealed).unwrap(), p);
        }
    }

    // RFC 8439 §2.8.2 AEAD vector, which is RFC 7634's construction:
    // nonce 07000000 | 4041424344454647 = salt | IV.
    #[test]
    fn chacha20_poly1305_rfc8439_vector() {
        let key: Vec<u8> = (0x80..=0x9f).collect();
        let material = [key, h("07000000")].concat();
        let sk = SkCipher::new(
            EncrId::CHACHA20_POLY1305,
            None,
            IntegId::NONE,
            &material,
            &[],
        )
        .unwrap();
        let pt = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
        let sealed = sk
            .seal(&h("50515253c0c1c2c3c4c5c6c7"), &h("4041424344454647"), pt)
            .unwrap();
        assert_eq!(
            sealed,
            h(
                "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6
               3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36
               92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc
               3ff4def08e4b7a9de576d26586cec64b6116
               1ae10b594f09e26a7e902ecbd0600691"
            )
        );
    }

    // RFC 3602 §4 Case #3 (AES-128-CBC, 48 octets). ICV: HMAC-SHA-256-128 with key
    // 0x0b * 32 over aad | IV | ciphertext, computed independently with Python
    // hmac/hashlib.
    #[test]
    fn aes_cbc_rfc3602_case3_with_icv() {
        let sk = SkCipher::new(
            EncrId::AES_CBC,
            Some(128),
            IntegId::HMAC_SHA2_256_128,
            &h("6c3ea0477630ce21a2ce334aa746c2cd"),
            &[0x0b; 32],
        )
        .unwrap();
        assert_eq!((sk.iv_len(), sk.icv_len(), sk.block_len()), (16, 16, 16));
        let iv = h("c782dc4c098c66cbd9cd27d825682c81");
        let pt = b"This is a 48-byte message (exactly 3 AES blocks)";
        let sealed = sk.seal(&aad(), &iv, pt).unwrap();
        assert_eq!(
            sealed,
            h(
                "d0a02b3836451753d493665d33f0e8862dea54cdb293abc7506939276772f8d5
               021c19216bad525c8579695d83ba2684
               2d16ca5b796cf46fb464f730f5d073d4"
            )
        );
        assert_eq!(*sk.open(&aad(), &iv, &sealed).unwrap(), pt);
    }

    // RFC 3602 §4 Case #2 (AES-128-CBC, 32 octets), encryption part.
    #[test]
    fn aes_cbc_rfc3602_case2() {
        let sk = SkCipher::new(
            EncrId::AES_CBC,
            Some(128),
            IntegId::HMAC_SHA1_96,
            &h("c286696d887c9aa0611bbb3e2025a45a"),
            &[1; 20],
        )
        .unwrap();
        let pt: Vec<u8> = (0..32).collect();
        let sealed = sk
            .seal(b"", &h("562e17996d093d28ddb3ba695a2e6f58"), &pt)
            .unwrap();
        assert_eq!(
            sealed[..32],
            h("d296cd94c2cccf8a3a863028b5e1dc0a7586602d253cfff91b8266bea6d61ab1")
        );
        assert_eq!(sealed.len(), 32 + 12);
    }

    // NIST SP 800-38A §F.2.5 CBC-AES256.Encrypt; ICV: HMAC-SHA-512-256 with key 0x0c * 64
    // over aad | IV | ciphertext, computed independently with Python hmac/hashlib.
    #[test]
    fn aes256_cbc_sp800_38a_with_icv() {
        let sk = SkCipher::new(
            EncrId::AES_CBC,
            Some(256),
            IntegId::HMAC_SHA2_512_256,
            &h("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4"),
            &[0x0c; 64],
        )
        .unwrap();
        let iv: Vec<u8> = (0..16).collect();
        let pt = h(
            "6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51
                    30c81c46a35ce411e5fbc1191a0a52eff69f2445df4f9b17ad2b417be66c3710",
        );
        let sealed = sk.seal(&aad(), &iv, &pt).unwrap();
        assert_eq!(
            sealed,
            h(
                "f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d
               39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b
               a3af47c237d524a496598ec829e8194711f739cc71a20d4c04b1fa5879a99f8c"
            )
        );
    }

    // RFC 4868 §2.7.2 AUTH test case 1 (key 0x0b * key length, "Hi There"), truncated to
    // the ICV length, plus RFC 2202 §3 case 5 for HMAC-SHA1-96 (RFC 2404).
    #[test]
    fn icv_truncation_rfc4868_auth_vectors() {
        for (integ, key, data, expected) in [
            (
                IntegId::HMAC_SHA2_256_128,
                vec![0x0b; 32],
                &b"Hi There"[..],
                h("198a607eb44bfbc69903a0f1cf2bbdc5"),
            ),
            (
                IntegId::HMAC_SHA2_384_192,
                vec![0x0b; 48],
                &b"Hi There"[..],
                h("b6a8d5636f5c6a7224f9977dcf7ee6c7fb6d0c48cbdee973"),
            ),
            (
                IntegId::HMAC_SHA2_512_256,
                vec![0x0b; 64],
                &b"Hi There"[..],
                h("637edc6e01dce7e6742a99451aae82df23da3e92439e590e43e761b33e910fb8"),
            ),
            (
                IntegId::HMAC_SHA1_96,
                vec![0x0c; 20],
                &b"Test With Truncation"[..],
                h("4c1a03424b55e07fe7f27be1"),
            ),
        ] {
            let (alg, key_len, icv_len) = integ_params(integ).unwrap();
            assert_eq!(key.len(), key_len);
            let mac = hmac::Key::new(alg, &key);
            // Split input: the ICV covers the concatenation of its parts.
            let (a, b) = data.split_at(3);
            assert_eq!(SkCipher::icv(&mac, icv_len, &[a, b]), expected, "{integ}");
        }
    }

    fn all_suites() -> Vec<(EncrId, Option<u16>, IntegId)> {
        let mut v = Vec::new();
        for bits in [128, 192, 256] {
            for integ in [
                IntegId::HMAC_SHA1_96,
                IntegId::HMAC_SHA2_256_128,
                IntegId::HMAC_SHA2_384_192,
                IntegId::HMAC_SHA2_512_256,
            ] {
                v.push((EncrId::AES_CBC, Some(bits), integ));
            }
            v.push((EncrId::AES_GCM_16, Some(bits), IntegId::NONE));
        }
        v.push((EncrId::CHACHA20_POLY1305, None, IntegId::NONE));
        v
    }

    fn build(encr: EncrId, bits: Option<u16>, integ: IntegId) -> SkCipher {
        let ek: Vec<u8> = (0..encr_key_len(encr, bits).unwrap() as u8).collect();
        let ik = vec![0x5a; super::super::integ_key_len(integ).unwrap()];
        SkCipher::new(encr, bits, integ, &ek, &ik).unwrap()
    }

    #[test]
    fn round_trip_and_tamper_every_suite() {
        for (encr, bits, integ) in all_suites() {
            let sk = build(encr, bits, integ);
            let payloads = b"inner payloads of some length";
            let pad = sk_padding_len(sk.block_len(), payloads.len());
            let mut pt = payloads.to_vec();
            pt.extend(std::iter::repeat_n(0u8, pad));
            pt.push(pad as u8);
            assert_eq!(pt.len() % sk.block_len(), 0);
            let iv = vec![0x42; sk.iv_len()];
            let sealed = sk.seal(&aad(), &iv, &pt).unwrap();
            assert_eq!(sealed.len(), pt.len() + sk.icv_len());
            let opened = sk.open(&aad(), &iv, &sealed).unwrap();
            assert_eq!(*opened, pt);
            assert_eq!(sk_strip_padding(&opened).unwrap(), payloads);

            let what = format!("{encr} {bits:?} {integ}");
            // Any flipped bit — header, IV, ciphertext, ICV — is caught.
            let mut bad_aad = aad();
            bad_aad[3] ^= 0x80;
            assert_eq!(
                sk.open(&bad_aad, &iv, &sealed),
                Err(CryptoError::IntegrityCheckFailed),
                "{what}"
            );
            let mut bad_iv = iv.clone();
            bad_iv[0] ^= 1;
            assert_eq!(
                sk.open(&aad(), &bad_iv, &sealed),
                Err(CryptoError::IntegrityCheckFailed),
                "{what}"
            );
            for pos in [0, sealed.len() - sk.icv_len(), sealed.len() - 1] {
                let mut bad = sealed.clone();
                bad[pos] ^= 0x01;
                assert_eq!(
                    sk.open(&aad(), &iv, &bad),
                    Err(CryptoError::IntegrityCheckFailed),
                    "{what} pos {pos}"
                );
            }
            // Truncated: shorter than the ICV, and ICV cut off.
            assert_eq!(
                sk.open(&aad(), &iv, &sealed[..sk.icv_len() - 1]),
                Err(CryptoError::IntegrityCheckFailed)
            );
            assert_eq!(
                sk.open(&aad(), &iv, &sealed[..sealed.len() - 1]),
                Err(CryptoError::IntegrityCheckFailed)
            );
            // Other keys (e.g. the other direction's) cannot open it.
            let other = {
                let ek = vec![0xee; encr_key_len(encr, bits).unwrap()];
                let ik = vec![0xa5; super::super::integ_key_len(integ).unwrap()];
                SkCipher::new(encr, bits, integ, &ek, &ik).unwrap()
            };
            assert_eq!(
                other.open(&aad(), &iv, &sealed),
                Err(CryptoError::IntegrityCheckFailed)
            );
            let dbg = format!("{sk:?}");
            assert!(dbg.starts_with("SkCipher"), "{dbg}");
        }
    }

    #[test]
    fn cbc_rejects_misaligned_data() {
        let sk = build(EncrId::AES_CBC, Some(128), IntegId::HMAC_SHA2_256_128);
        let iv = [0u8; 16];
        assert_eq!(
            sk.seal(&aad(), &iv, &[0u8; 15]),
            Err(CryptoError::InvalidPadding)
        );
        assert_eq!(sk.seal(&aad(), &iv, &[]), Err(CryptoError::InvalidPadding));
        // A correctly authenticated but misaligned ciphertext (a buggy peer).
        let ct = [7u8; 15];
        let mac = hmac::Key::new(hmac::HMAC_SHA256, &[0x5a; 32]);
        let icv = SkCipher::icv(&mac, 16, &[&aad(), &iv, &ct]);
        assert_eq!(
            sk.open(&aad(), &iv, &[&ct[..], &icv].concat()),
            Err(CryptoError::InvalidPadding)
        );
        // Wrong IV length is a caller error.
        assert!(matches!(
            sk.seal(&aad(), &[0u8; 8], &[0u8; 16]),
            Err(CryptoError::Internal(_))
        ));
    }

    #[test]
    fn constructor_validation() {
        let k16 = [1u8; 16];
        // Wrong key lengths.
        assert_eq!(
            SkCipher::new(
                EncrId::AES_CBC,
                Some(256),
                IntegId::HMAC_SHA2_256_128,
                &k16,
                &[0; 32]
            )
            .unwrap_err(),
            CryptoError::BadKeyLength
        );
        assert_eq!(
            SkCipher::new(
                EncrId::AES_CBC,
                Some(128),
                IntegId::HMAC_SHA2_256_128,
                &k16,
                &[0; 31]
            )
            .unwrap_err(),
            CryptoError::BadKeyLength
        );
        // GCM key without its salt.
        assert_eq!(
            SkCipher::new(EncrId::AES_GCM_16, Some(128), IntegId::NONE, &k16, &[]).unwrap_err(),
            CryptoError::BadKeyLength
        );
        // Combinations refused.
        assert!(matches!(
            SkCipher::new(EncrId::AES_CBC, Some(128), IntegId::NONE, &k16, &[]),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            SkCipher::new(
                EncrId::AES_GCM_16,
                Some(128),
                IntegId::HMAC_SHA2_256_128,
                &[0; 20],
                &[0; 32]
            ),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            SkCipher::new(
                EncrId::AES_CBC,
                Some(128),
                IntegId::HMAC_MD5_96,
                &k16,
                &[0; 16]
            ),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(
            SkCipher::new(
                EncrId::NULL,
                None,
                IntegId::HMAC_SHA2_256_128,
                &[],
                &[0; 32]
            ),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn padding_helpers() {
        assert_eq!(sk_padding_len(16, 0), 15);
        assert_eq!(sk_padding_len(16, 15), 0);
        assert_eq!(sk_padding_len(16, 16), 15);
        assert_eq!(sk_padding_len(16, 30), 1);
        assert_eq!(sk_padding_len(1, 123), 0);
        for n in 0..40 {
            assert_eq!((n + sk_padding_len(16, n) + 1) % 16, 0);
        }
        assert_eq!(sk_strip_padding(&[1, 2, 3, 0]).unwrap(), [1, 2, 3]);
        assert_eq!(sk_strip_padding(&[1, 9, 9, 2]).unwrap(), [1]);
        assert_eq!(sk_strip_padding(&[9, 9, 2]).unwrap(), b"");
        assert_eq!(sk_strip_padding(&[9, 3]), Err(CryptoError::InvalidPadding));
        assert_eq!(sk_strip_padding(&[]), Err(CryptoError::InvalidPadding));
    }
}
