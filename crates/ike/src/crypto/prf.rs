//! Pseudorandom functions (RFC 7296 §2.13, RFC 4868 §2.1, RFC 8247 §2.3).

use aws_lc_rs::hmac;
use zeroize::Zeroizing;

use super::CryptoError;
use crate::iana::PrfId;

/// RFC 7296 §2.13: prf+ appends a one-octet counter, so at most 255 blocks.
const PRF_PLUS_MAX_BLOCKS: usize = 255;

/// Largest PRF output we support (HMAC-SHA-512).
const MAX_PRF_OUTPUT: usize = 64;

/// A negotiated IKE PRF. Only HMAC-based PRFs are supported; they take keys of any
/// length, so Ni | Nr is used whole as the SKEYSEED key (§2.14).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prf(PrfId);

impl Prf {
    /// Select a PRF transform. PRF_HMAC_SHA1 is kept for interoperability
    /// (RFC 8247 §2.3 still lists it as MUST-); MD5 and AES-XCBC/CMAC are refused.
    pub fn new(id: PrfId) -> Result<Prf, CryptoError> {
        match id {
            PrfId::HMAC_SHA1
            | PrfId::HMAC_SHA2_256
            | PrfId::HMAC_SHA2_384
            | PrfId::HMAC_SHA2_512 => Ok(Prf(id)),
            _ => Err(CryptoError::UnsupportedAlgorithm(format!("PRF {id}"))),
        }
    }

    /// The transform ID.
    pub fn id(&self) -> PrfId {
        self.0
    }

    /// Output length in octets; also the preferred key length (RFC 4868 §2.1.1), i.e. the
    /// length of SK_d, SK_pi and SK_pr (§2.14).
    pub fn output_len(&self) -> usize {
        self.algorithm().digest_algorithm().output_len
    }

    fn algorithm(&self) -> hmac::Algorithm {
        match self.0 {
            PrfId::HMAC_SHA1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            PrfId::HMAC_SHA2_384 => hmac::HMAC_SHA384,
            PrfId::HMAC_SHA2_512 => hmac::HMAC_SHA512,
            // `new` admits nothing else.
            _ => hmac::HMAC_SHA256,
        }
    }

    /// prf(key, data).
    pub fn prf(&self, key: &[u8], data: &[u8]) -> Zeroizing<Vec<u8>> {
        self.prf_parts(key, &[data])
    }

    /// prf(key, part0 | part1 | ...) without building the concatenation.
    pub(crate) fn prf_parts(&self, key: &[u8], parts: &[&[u8]]) -> Zeroizing<Vec<u8>> {
        let key = hmac::Key::new(self.algorithm(), key);
        let mut ctx = hmac::Context::with_key(&key);
        for part in parts {
            ctx.update(part);
        }
        // The Tag is a stack copy aws-lc-rs gives us no way to wipe; the returned
        // buffer is zeroized on drop.
        Zeroizing::new(ctx.sign().as_ref().to_vec())
    }

    /// prf+(key, seed) truncated to `len` octets (§2.13):
    /// T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n), prf+ = T1 | T2 | ...
    ///
    /// # Panics
    /// If `len` exceeds 255 blocks of PRF output. Lengths here come from our own
    /// algorithm tables (at most a few hundred octets), never from the peer.
    pub fn prf_plus(&self, key: &[u8], seed: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
        let out_len = self.output_len();
        assert!(
            len <= PRF_PLUS_MAX_BLOCKS * out_len,
            "prf+ asked for {len} octets, more than 255 blocks"
        );
        let key = hmac::Key::new(self.algorithm(), key);
        // Reserve everything up front so no reallocation leaves key stream behind.
        let mut out = Zeroizing::new(Vec::with_capacity(len + out_len));
        let mut input = Zeroizing::new(Vec::with_capacity(out_len + seed.len() + 1));
        let mut block = Zeroizing::new([0u8; MAX_PRF_OUTPUT]);
        let mut counter: u8 = 1;
        while out.len() < len {
            // Input for block n: Tn-1 (empty for n = 1) | S | n.
            let prev_start = out.len().saturating_sub(out_len);
            input.clear();
            if counter > 1 {
                input.extend_from_slice(&out[prev_start..]);
            }
            input.extend_from_slice(seed);
            input.push(counter);
            let t = hmac::sign_to_buffer(&key, &input, &mut block[..])
                .expect("buffer is large enough for every supported PRF");
            out.extend_from_slice(t);
            counter = counter.wrapping_add(1);
        }
        out.truncate(len);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    fn prf(id: PrfId) -> Prf {
        Prf::new(id).unwrap()
    }

    // RFC 4231 §4.2 Test Case 1 (also RFC 4868 §2.7.1 PRF-1).
    #[test]
    fn rfc4231_case1() {
        let key = [0x0b; 20];
        let data = b"Hi There";
        assert_eq!(
            *prf(PrfId::HMAC_SHA2_256).prf(&key, data),
            h("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        );
        assert_eq!(
            *prf(PrfId::HMAC_SHA2_384).prf(&key, data),
            h(
                "afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59c
               faea9ea9076ede7f4af152e8b2fa9cb6"
            )
        );
        assert_eq!(
            *prf(PrfId::HMAC_SHA2_512).prf(&key, data),
            h(
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cde
               daa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"
            )
        );
    }

    // RFC 4231 §4.3 Test Case 2: key shorter than the output ("Jefe").
    #[test]
    fn rfc4231_case2() {
        let data = b"what do ya want for nothing?";
        assert_eq!(
            *prf(PrfId::HMAC_SHA2_256).prf(b"Jefe", data),
            h("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        );
        assert_eq!(
            *prf(PrfId::HMAC_SHA2_384).prf(b"Jefe", data),
            h(
                "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e
               8e2240ca5e69e2c78b3239ecfab21649"
            )
        );
        assert_eq!(
            *prf(PrfId::HMAC_SHA2_512).prf(b"Jefe", data),
            h(
                "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554
               9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"
            )
        );
    }

    // RFC 4231 §4.7 Test Case 6: key longer than the hash block (131 octets), as happens
    // with long Ni | Nr.
    #[test]
    fn rfc4231_case6_long_key() {
        assert_eq!(
            *prf(PrfId::HMAC_SHA2_256).prf(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            h("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        );
    }

    // RFC 2202 §3 test case 1 for PRF_HMAC_SHA1.
    #[test]
    fn rfc2202_sha1_case1() {
        assert_eq!(
            *prf(PrfId::HMAC_SHA1).prf(&[0x0b; 20], b"Hi There"),
            h("b617318655057264e28bc0b6fb378c8ef146be00")
        );
    }

    #[test]
    fn output_lengths_and_support() {
        assert_eq!(prf(PrfId::HMAC_SHA1).output_len(), 20);
        assert_eq!(prf(PrfId::HMAC_SHA2_256).output_len(), 32);
        assert_eq!(prf(PrfId::HMAC_SHA2_384).output_len(), 48);
        assert_eq!(prf(PrfId::HMAC_SHA2_512).output_len(), 64);
        assert!(matches!(
            Prf::new(PrfId::HMAC_MD5),
            Err(CryptoError::UnsupportedAlgorithm(_))
        ));
        assert!(Prf::new(PrfId(9999)).is_err());
    }

    // prf+ against an expansion written out by hand from §2.13, using prf() alone.
    #[test]
    fn prf_plus_matches_hand_expansion() {
        for id in [
            PrfId::HMAC_SHA1,
            PrfId::HMAC_SHA2_256,
            PrfId::HMAC_SHA2_384,
            PrfId::HMAC_SHA2_512,
        ] {
            let p = prf(id);
            let key = b"prf+ key";
            let seed = b"some seed octets";
            let mut t1_in = seed.to_vec();
            t1_in.push(1);
            let t1 = p.prf(key, &t1_in);
            let mut t2_in = t1.to_vec();
            t2_in.extend_from_slice(seed);
            t2_in.push(2);
            let t2 = p.prf(key, &t2_in);
            let mut t3_in = t2.to_vec();
            t3_in.extend_from_slice(seed);
            t3_in.push(3);
            let t3 = p.prf(key, &t3_in);
            let mut expected = t1.to_vec();
            expected.extend_from_slice(&t2);
            expected.extend_from_slice(&t3);

            let n = p.output_len();
            // Whole blocks, a partial last block, and less than one block.
            assert_eq!(*p.prf_plus(key, seed, 3 * n), expected);
            assert_eq!(*p.prf_plus(key, seed, 2 * n + 5), expected[..2 * n + 5]);
            assert_eq!(*p.prf_plus(key, seed, 7), expected[..7]);
            assert!(p.prf_plus(key, seed, 0).is_empty());
        }
    }

    // prf+ of an independent implementation (Python hmac/hashlib), HMAC-SHA1,
    // key 0x0b * 20, seed "Hi There", 60 octets.
    #[test]
    fn prf_plus_independent_sha1() {
        assert_eq!(
            *prf(PrfId::HMAC_SHA1).prf_plus(&[0x0b; 20], b"Hi There", 60),
            h(
                "29e6e7119ecc3640f21fd6bd787a4a512a309f870712afe9b04b22bc233fa36f
               1766a6750ea37cb074047bec7a361429df72abf51101d23b75b4d2ca"
            )
        );
    }

    #[test]
    fn prf_plus_max_len_is_255_blocks() {
        let p = prf(PrfId::HMAC_SHA2_256);
        assert_eq!(p.prf_plus(b"k", b"s", 255 * 32).len(), 255 * 32);
    }

    #[test]
    #[should_panic(expected = "255 blocks")]
    fn prf_plus_rejects_256_blocks() {
        let p = prf(PrfId::HMAC_SHA2_256);
        let _ = p.prf_plus(b"k", b"s", 255 * 32 + 1);
    }
}
