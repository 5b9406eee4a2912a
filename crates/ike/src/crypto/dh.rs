//! Key exchange methods (Transform Type 4): MODP group 14 (RFC 3526 §3), ECP groups 19/20
//! (RFC 5903) and Curve25519 (RFC 8031).

use core::cmp::Ordering;
use core::fmt;

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey};
use crypto_bigint::modular::{FixedMontyForm, FixedMontyParams};
use crypto_bigint::{Odd, U2048, U512};
use zeroize::{Zeroize, Zeroizing};

use super::{ct_eq, CryptoError};
use crate::iana::DhId;
use crate::Rng;

/// Groups we implement, in our order of preference.
static SUPPORTED: [DhId; 4] = [
    DhId::CURVE25519,
    DhId::ECP_256,
    DhId::ECP_384,
    DhId::MODP_2048,
];

/// The key exchange methods [`KeyExchange::generate`] accepts, most preferred first.
pub fn supported_groups() -> &'static [DhId] {
    &SUPPORTED
}

/// RFC 3526 §3: the 2048-bit MODP group prime p = 2^2048 - 2^1984 - 1 + 2^64 * { [2^1918 pi] + 124476 }.
const MODP_2048_P: &str = concat!(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
    "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
    "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
    "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
    "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
    "3995497CEA956AE515D2261898FA051015728E5A8AACAA68FFFFFFFFFFFFFFFF",
);
/// RFC 3526 §3: generator 2.
const MODP_GENERATOR: u64 = 2;
/// RFC 7296 §3.4: MODP public values and g^ir are the length of the prime.
const MODP_2048_LEN: usize = 256;
/// Private exponent size: 512 bits, well above the 2 x 112-bit strength floor of
/// NIST SP 800-56A for a 2048-bit group and RFC 3526 §8's 320-bit upper estimate.
const MODP_EXP_LEN: usize = 64;

/// Fresh private scalars tried before giving up on the RNG (an out-of-range ECP scalar
/// happens with probability < 2^-32 per try).
const MAX_KEYGEN_TRIES: usize = 16;

type Modp2048 = FixedMontyForm<{ U2048::LIMBS }>;

fn modp_params() -> FixedMontyParams<{ U2048::LIMBS }> {
    // The modulus is public: variable-time setup is fine.
    FixedMontyParams::new_vartime(Odd::<U2048>::from_be_hex(MODP_2048_P))
}

/// base^exp mod p in constant time (the exponent width is fixed at 512 bits), as
/// 256 big-endian octets. Temporaries holding secret values are wiped.
fn modp_pow(base: &U2048, exp: &[u8; MODP_EXP_LEN]) -> Zeroizing<Vec<u8>> {
    let params = modp_params();
    let mut x = U512::from_be_slice(exp);
    let mut r: Modp2048 = FixedMontyForm::new(base, &params).pow(&x);
    let mut value = r.retrieve();
    let mut encoded = value.to_be_bytes();
    let out = Zeroizing::new(encoded.as_ref().to_vec());
    x.as_mut_words().zeroize();
    r.as_montgomery_mut().as_mut_words().zeroize();
    value.as_mut_words().zeroize();
    encoded.as_mut_slice().zeroize();
    out
}

/// RFC 7296 §5 (and NIST SP 800-56A §5.6.2.3.1 partial validation): reject y ∉ (1, p-1),
/// which would confine the shared secret to {1, p-1}.
fn modp_peer_value(peer: &[u8]) -> Result<U2048, CryptoError> {
    if peer.len() != MODP_2048_LEN {
        return Err(CryptoError::InvalidPublicValue);
    }
    let y = U2048::from_be_slice(peer);
    let p_minus_1 = U2048::from_be_hex(MODP_2048_P).wrapping_sub(&U2048::ONE);
    // The peer's public value is public: variable-time comparisons are fine.
    if y.cmp_vartime(&U2048::ONE) != Ordering::Greater
        || y.cmp_vartime(&p_minus_1) != Ordering::Less
    {
        return Err(CryptoError::InvalidPublicValue);
    }
    Ok(y)
}

enum Secret {
    /// ECP and Curve25519 private keys live inside aws-lc.
    Agreement(PrivateKey),
    /// MODP private exponent, big-endian.
    Modp(Zeroizing<[u8; MODP_EXP_LEN]>),
}

/// One side's ephemeral key exchange: our private value and the public value for the KE
/// payload. `Debug` shows the group only.
pub struct KeyExchange {
    group: DhId,
    public: Vec<u8>,
    secret: Secret,
}

impl fmt::Debug for KeyExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyExchange")
            .field("group", &self.group)
            .field("public_len", &self.public.len())
            .finish_non_exhaustive()
    }
}

/// (aws-lc-rs algorithm, coordinate / key length) for the elliptic-curve groups.
fn ec_alg(group: DhId) -> Option<(&'static agreement::Algorithm, usize)> {
    match group {
        DhId::ECP_256 => Some((&agreement::ECDH_P256, 32)),
        DhId::ECP_384 => Some((&agreement::ECDH_P384, 48)),
        DhId::CURVE25519 => Some((&agreement::X25519, 32)),
        _ => None,
    }
}

impl KeyExchange {
    /// Draw a fresh private value from `rng` and compute the public value.
    ///
    /// ECP: a scalar from `rng` octets via `PrivateKey::from_private_key`, redrawn if out of
    /// range; Curve25519: 32 `rng` octets (clamped by X25519 itself, RFC 7748 §5); MODP: a
    /// 512-bit exponent from `rng`.
    pub fn generate(group: DhId, rng: &mut dyn Rng) -> Result<KeyExchange, CryptoError> {
        if group == DhId::MODP_2048 {
            let mut exp = Zeroizing::new([0u8; MODP_EXP_LEN]);
            rng.fill(&mut exp[..]);
            let public = modp_pow(&U2048::from_u64(MODP_GENERATOR), &exp).to_vec();
            return Ok(KeyExchange {
                group,
                public,
                secret: Secret::Modp(exp),
            });
        }
        let (alg, len) = ec_alg(group)
            .ok_or_else(|| CryptoError::UnsupportedAlgorithm(format!("key exchange {group}")))?;
        let mut scalar = Zeroizing::new([0u8; 48]);
        for _ in 0..MAX_KEYGEN_TRIES {
            rng.fill(&mut scalar[..len]);
            // Rejects 0 and values ≥ the group order, which we then redraw.
            let Ok(key) = PrivateKey::from_private_key(alg, &scalar[..len]) else {
                continue;
            };
            let point = key
                .compute_public_key()
                .map_err(|_| CryptoError::Internal("public key computation"))?;
            let public = if group == DhId::CURVE25519 {
                // RFC 8031 §2.1: the 32-octet u-coordinate as is.
                point.as_ref().to_vec()
            } else {
                // RFC 5903 §7: x | y, without SEC 1's 0x04 prefix.
                match point.as_ref().split_first() {
                    Some((0x04, xy)) if xy.len() == 2 * len => xy.to_vec(),
                    _ => return Err(CryptoError::Internal("unexpected ECP point encoding")),
                }
            };
            return Ok(KeyExchange {
                group,
                public,
                secret: Secret::Agreement(key),
            });
        }
        Err(CryptoError::Internal("RNG yielded no valid private key"))
    }

    /// The key exchange method.
    pub fn group(&self) -> DhId {
        self.group
    }

    /// The public value in its IKE encoding (KE payload data): MODP big-endian padded to
    /// 256 octets (§3.4); ECP x | y (RFC 5903 §7); X25519 32 octets (RFC 8031 §2.1).
    pub fn public_value(&self) -> &[u8] {
        &self.public
    }

    /// The shared secret g^ir from the peer's KE payload data, after validating it:
    /// MODP 256 octets (§3.4), ECP the x coordinate (RFC 5903 §7), X25519 32 octets
    /// (RFC 8031 §2.1). Any length or validity failure is [`CryptoError::InvalidPublicValue`].
    pub fn agree(&self, peer_public: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        match &self.secret {
            Secret::Modp(exp) => {
                let y = modp_peer_value(peer_public)?;
                Ok(modp_pow(&y, exp))
            }
            Secret::Agreement(key) => {
                let (alg, len) = ec_alg(self.group).ok_or(CryptoError::Internal("group"))?;
                let shared = if self.group == DhId::CURVE25519 {
                    if peer_public.len() != len {
                        return Err(CryptoError::InvalidPublicValue);
                    }
                    agree(key, alg, peer_public)?
                } else {
                    if peer_public.len() != 2 * len {
                        return Err(CryptoError::InvalidPublicValue);
                    }
                    // RFC 5903 §7: restore the uncompressed-point form; aws-lc then checks
                    // that the point is on the curve.
                    let mut sec1 = Vec::with_capacity(1 + peer_public.len());
                    sec1.push(0x04);
                    sec1.extend_from_slice(peer_public);
                    agree(key, alg, &sec1)?
                };
                // RFC 8031 §2.2 (Recipient Tests): an all-zero X25519 result means a
                // low-order peer point.
                // (aws-lc already refuses it; the check keeps the guarantee local.)
                if self.group == DhId::CURVE25519 && ct_eq(&shared, &[0u8; 32]) {
                    return Err(CryptoError::InvalidPublicValue);
                }
                Ok(shared)
            }
        }
    }
}

/// Checks a peer's KE payload data for `group` without any private-key work: the length
/// (RFC 7296 §3.4, RFC 5903 §7, RFC 8031 §2.1), MODP range (§5) and, for ECP, that the
/// point is on the curve. A responder runs this before generating its own value, so a
/// malformed KE costs no key generation (RFC 7296 §2.6 DoS considerations).
pub fn validate_peer_public(group: DhId, peer: &[u8]) -> Result<(), CryptoError> {
    if group == DhId::MODP_2048 {
        return modp_peer_value(peer).map(|_| ());
    }
    let (alg, len) = ec_alg(group).ok_or(CryptoError::InvalidPublicValue)?;
    if group == DhId::CURVE25519 {
        return if peer.len() == len {
            Ok(())
        } else {
            Err(CryptoError::InvalidPublicValue)
        };
    }
    if peer.len() != 2 * len {
        return Err(CryptoError::InvalidPublicValue);
    }
    let mut sec1 = Vec::with_capacity(1 + peer.len());
    sec1.push(0x04);
    sec1.extend_from_slice(peer);
    agreement::ParsedPublicKey::try_from(&UnparsedPublicKey::new(alg, &sec1))
        .map(|_| ())
        .map_err(|_| CryptoError::InvalidPublicValue)
}

fn agree(
    key: &PrivateKey,
    alg: &'static agreement::Algorithm,
    peer: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    agreement::agree(
        key,
        UnparsedPublicKey::new(alg, peer),
        CryptoError::InvalidPublicValue,
        |secret| Ok(Zeroizing::new(secret.to_vec())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    /// Hands out fixed octets (a known private key), then a counter stream.
    struct ReplayRng {
        data: Vec<u8>,
        pos: usize,
        counter: u8,
    }

    impl ReplayRng {
        fn new(data: Vec<u8>) -> Self {
            ReplayRng {
                data,
                pos: 0,
                counter: 1,
            }
        }
    }

    impl Rng for ReplayRng {
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                if let Some(&v) = self.data.get(self.pos) {
                    *b = v;
                    self.pos += 1;
                } else {
                    *b = self.counter;
                    self.counter = self.counter.wrapping_mul(31).wrapping_add(7);
                }
            }
        }
    }

    fn fixed(group: DhId, private: &[u8]) -> KeyExchange {
        KeyExchange::generate(group, &mut ReplayRng::new(private.to_vec())).unwrap()
    }

    /// Every group: a valid public value passes, wrong lengths, off-curve points and
    /// out-of-range MODP values do not, all without a private key.
    #[test]
    fn peer_public_values_are_validated_without_key_generation() {
        for &group in supported_groups() {
            let mine = KeyExchange::generate(group, &mut ReplayRng::new(vec![])).unwrap();
            let good = mine.public_value();
            assert_eq!(validate_peer_public(group, good), Ok(()), "{group:?}");
            assert!(validate_peer_public(group, &[0x42]).is_err(), "{group:?}");
            assert!(
                validate_peer_public(group, &good[1..]).is_err(),
                "{group:?}"
            );
        }
        // ECP: a point off the curve (y + 1).
        for group in [DhId::ECP_256, DhId::ECP_384] {
            let mine = KeyExchange::generate(group, &mut ReplayRng::new(vec![])).unwrap();
            let mut off = mine.public_value().to_vec();
            *off.last_mut().unwrap() ^= 1;
            assert!(validate_peer_public(group, &off).is_err(), "{group:?}");
        }
        // MODP: 0, 1 and p - 1 are refused.
        let mut one = vec![0u8; MODP_2048_LEN];
        assert!(validate_peer_public(DhId::MODP_2048, &one).is_err());
        one[MODP_2048_LEN - 1] = 1;
        assert!(validate_peer_public(DhId::MODP_2048, &one).is_err());
        let mut p_minus_1 = h(MODP_2048_P);
        p_minus_1[MODP_2048_LEN - 1] -= 1;
        assert!(validate_peer_public(DhId::MODP_2048, &p_minus_1).is_err());
        assert!(validate_peer_public(DhId(99), &[0; 32]).is_err());
    }

    // RFC 5903 §8.1: 256-bit random ECP group.
    #[test]
    fn rfc5903_ecp256() {
        let i = h("C88F01F5 10D9AC3F 70A292DA A2316DE5 44E9AAB8 AFE84049 C62A9C57 862D1433");
        let gi = h(
            "DAD0B653 94221CF9 B051E1FE CA5787D0 98DFE637 FC90B9EF 945D0C37 72581180
                    5271A046 1CDB8252 D61F1C45 6FA3E59A B1F45B33 ACCF5F58 389E0577 B8990BB3",
        );
        let r = h("C6EF9C5D 78AE012A 011164AC B397CE20 88685D8F 06BF9BE0 B283AB46 476BEE53");
        let gr = h(
            "D12DFB52 89C8D4F8 1208B702 70398C34 2296970A 0BCCB74C 736FC755 4494BF63
                    56FBF3CA 366CC23E 8157854C 13C58D6A AC23F046 ADA30F83 53E74F33 039872AB",
        );
        let girx = h("D6840F6B 42F6EDAF D13116E0 E1256520 2FEF8E9E CE7DCE03 812464D0 4B9442DE");
        let ini = fixed(DhId::ECP_256, &i);
        let resp = fixed(DhId::ECP_256, &r);
        assert_eq!(ini.public_value(), gi);
        assert_eq!(resp.public_value(), gr);
        assert_eq!(*ini.agree(&gr).unwrap(), girx);
        assert_eq!(*resp.agree(&gi).unwrap(), girx);
    }

    // RFC 5903 §8.2: 384-bit random ECP group.
    #[test]
    fn rfc5903_ecp384() {
        let i = h(
            "099F3C70 34D4A2C6 99884D73 A375A67F 7624EF7C 6B3C0F16 0647B674 14DCE655
                   E35B5380 41E649EE 3FAEF896 783AB194",
        );
        let gi = h(
            "667842D7 D180AC2C DE6F74F3 7551F557 55C7645C 20EF73E3 1634FE72 B4C55EE6
                    DE3AC808 ACB4BDB4 C88732AE E95F41AA
                    9482ED1F C0EEB9CA FC498462 5CCFC23F 65032149 E0E144AD A0241815 35A0F38E
                    EB9FCFF3 C2C947DA E69B4C63 4573A81C",
        );
        let gr = h(
            "E558DBEF 53EECDE3 D3FCCFC1 AEA08A89 A987475D 12FD950D 83CFA417 32BC509D
                    0D1AC43A 0336DEF9 6FDA41D0 774A3571
                    DCFBEC7A ACF31964 72169E83 8430367F 66EEBE3C 6E70C416 DD5F0C68 759DD1FF
                    F83FA401 42209DFF 5EAAD96D B9E6386C",
        );
        let girx = h(
            "11187331 C279962D 93D60424 3FD592CB 9D0A926F 422E4718 7521287E 7156C5C4
                      D6031355 69B9E9D0 9CF5D4A2 70F59746",
        );
        let ini = fixed(DhId::ECP_384, &i);
        assert_eq!(ini.public_value(), gi);
        assert_eq!(*ini.agree(&gr).unwrap(), girx);
    }

    // RFC 7748 §6.1: Curve25519 Diffie-Hellman.
    #[test]
    fn rfc7748_x25519() {
        let a = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let a_pub = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let b = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let b_pub = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let k = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        let alice = fixed(DhId::CURVE25519, &a);
        let bob = fixed(DhId::CURVE25519, &b);
        assert_eq!(alice.public_value(), a_pub);
        assert_eq!(bob.public_value(), b_pub);
        assert_eq!(*alice.agree(&b_pub).unwrap(), k);
        assert_eq!(*bob.agree(&a_pub).unwrap(), k);
    }

    #[test]
    fn x25519_rejects_low_order_points_and_bad_lengths() {
        let alice = fixed(DhId::CURVE25519, &[0x42; 32]);
        // u = 0 and u = 1 are of small order: the result is all-zero (RFC 7748 §6.1).
        let mut one = [0u8; 32];
        one[0] = 1;
        for low in [[0u8; 32], one] {
            assert_eq!(alice.agree(&low), Err(CryptoError::InvalidPublicValue));
        }
        assert_eq!(alice.agree(&[9; 31]), Err(CryptoError::InvalidPublicValue));
        assert_eq!(alice.agree(&[9; 33]), Err(CryptoError::InvalidPublicValue));
    }

    #[test]
    fn ecp_rejects_bad_points_and_lengths() {
        let k = fixed(DhId::ECP_256, &[0x11; 32]);
        let mut good = fixed(DhId::ECP_256, &[0x22; 32]).public_value().to_vec();
        assert!(k.agree(&good).is_ok());
        // The SEC 1 form (65 octets) is not the IKE encoding.
        let tagged = [&[4u8][..], &good].concat();
        assert_eq!(k.agree(&tagged), Err(CryptoError::InvalidPublicValue));
        assert_eq!(k.agree(&good[..63]), Err(CryptoError::InvalidPublicValue));
        assert_eq!(k.agree(&[]), Err(CryptoError::InvalidPublicValue));
        // Right length, not on the curve.
        good[63] ^= 1;
        assert_eq!(k.agree(&good), Err(CryptoError::InvalidPublicValue));
        assert_eq!(k.agree(&[0u8; 64]), Err(CryptoError::InvalidPublicValue));
        // A P-384 key given a P-256-length value.
        let k384 = fixed(DhId::ECP_384, &[0x33; 48]);
        assert_eq!(
            k384.agree(&[0xaa; 64]),
            Err(CryptoError::InvalidPublicValue)
        );
    }

    #[test]
    fn ecp_keygen_redraws_out_of_range_scalars() {
        // First 32 octets: zero (invalid); next 32: all-ones (≥ n, invalid); then 0x11s.
        let mut data = vec![0u8; 32];
        data.extend([0xff; 32]);
        data.extend([0x11; 32]);
        let k = KeyExchange::generate(DhId::ECP_256, &mut ReplayRng::new(data)).unwrap();
        assert_eq!(
            k.public_value(),
            fixed(DhId::ECP_256, &[0x11; 32]).public_value()
        );
    }

    // MODP-2048 known answer: exponents 0x01..0x40 and 0x41..0x80 (64 octets each),
    // expected values computed independently with Python's pow(2, x, p) over the
    // RFC 3526 §3 prime.
    #[test]
    fn modp2048_known_answer() {
        let xa: Vec<u8> = (0x01..=0x40).collect();
        let xb: Vec<u8> = (0x41..=0x80).collect();
        let a = fixed(DhId::MODP_2048, &xa);
        let b = fixed(DhId::MODP_2048, &xb);
        let ga = h(
            "ca737546c70b3a25a43d745a3e31526b3fc9f28dca1b890fed9c1cc46a1d2302
                    2c597a3f9dcc6de91383f788f139e35c290558305a7935d242e1ca4d830a0b94
                    abdc8b3f1bc6b0c43c6e8330b29a5f61ae8ac3ebddebbd69206d41fe819e975e
                    982b4d290a93c8ecb87ec2c2e363544fe5b9f44af371e15c9f5d3c83e7904001
                    bb9cf1667538acd767c24f2bed29ae165c5e3ad7ca009d9c801eb75febd18c50
                    477ac0ae9562c684efd4d0c696046f8a95603d228c6c407f8d15d6aba62f433c
                    6b023e8f2d9722cd34bd355dc2496693ee66a3cdc55d1ee1d7766554428a0b12
                    99b5882359f9de57ca7a3ba3c3ca2d552ac6584a7ce9fd4846140888a7b411f8",
        );
        let gb = h(
            "5448e3a6c6817c0e87db52f89e93b67d5cdfcdff0e40fc249061a2f539d0a468
                    0b1ed8a01376bd9920da6064d15aaee4499db38affd6c51b8c18a42c03739728
                    e183a76bbe738026deac2a3a45ab82c14ad34fdb99f4dae915d69524ca98b286
                    0c49ac121d580cd032d6c509619dad4a7a0abba48e5c2e46877fce39a19e7399
                    48b3eaf722e90aee3a390f1563e562c4babb34becbea8223821e0ccf7f610351
                    6f03e0ed1df08f2b03d504c042a7d49afabb8d52f3c1fc7a178a2b0f320e4189
                    39606d0a7c29f403f1b65541190844ea71dfff8bfb2746f6db379454764b5943
                    7d516357d9514dda032b930e7b5fffb1f35f3431d1761e5c1e720f04f6654c1e",
        );
        let gab = h(
            "5f523c4927d90fced27733dbef5c25ecbe14cf151880b0327bddf3bd09d16b1c
                     b135e96ae99adb23d44bfc3fbef02da486d98d395d65d227207a6787915aa97b
                     88da0e933cfba8ed187c8d9b392434afc93fa5498684f608621d5e297e2948f8
                     7662141d6eeb551ae3f9b351e927a8bb0a6551289bc9c091bcedd2099eb7816a
                     43dd2a95cd738b923c9450822919b2d8323b6d6265e4b2b2acf7ab6a8cd54174
                     9db0f104952b6825faea1d3a31e488f65583c72772fae0ddf3490f20b46a00fb
                     3eb057a1dfd29d8913dce2c905e2d585a027066129859a464e64271351435dc6
                     5d0533d7459ab3e7f7489ca76848fa084fbc12b3861c0746f8ee398fba1c4b7d",
        );
        assert_eq!(a.public_value(), ga);
        assert_eq!(b.public_value(), gb);
        assert_eq!(*a.agree(&gb).unwrap(), gab);
        assert_eq!(*b.agree(&ga).unwrap(), gab);
    }

    #[test]
    fn modp2048_validation() {
        let k = fixed(DhId::MODP_2048, &[0x5a; 64]);
        let p = h(MODP_2048_P);
        let mut p_minus_1 = p.clone();
        p_minus_1[255] -= 1;
        let mut p_minus_2 = p.clone();
        p_minus_2[255] -= 2;
        let mut one = vec![0u8; 256];
        one[255] = 1;
        let mut two = vec![0u8; 256];
        two[255] = 2;
        for bad in [&vec![0u8; 256], &one, &p_minus_1, &p, &vec![0xff; 256]] {
            assert_eq!(k.agree(bad), Err(CryptoError::InvalidPublicValue));
        }
        // Wrong lengths: unpadded and over-long encodings of a valid value.
        assert_eq!(k.agree(&[2]), Err(CryptoError::InvalidPublicValue));
        assert_eq!(
            k.agree(&[&[0u8][..], &two].concat()),
            Err(CryptoError::InvalidPublicValue)
        );
        // The extremes of the valid range.
        assert_eq!(k.agree(&two).unwrap().len(), 256);
        assert_eq!(k.agree(&p_minus_2).unwrap().len(), 256);
    }

    #[test]
    fn every_group_agrees_both_ways() {
        let mut rng = ReplayRng::new(Vec::new());
        for &g in supported_groups() {
            let a = KeyExchange::generate(g, &mut rng).unwrap();
            let b = KeyExchange::generate(g, &mut rng).unwrap();
            assert_eq!(a.group(), g);
            let expected_len = match g {
                DhId::MODP_2048 => 256,
                DhId::ECP_256 => 64,
                DhId::ECP_384 => 96,
                _ => 32,
            };
            assert_eq!(a.public_value().len(), expected_len, "{g}");
            let s1 = a.agree(b.public_value()).unwrap();
            let s2 = b.agree(a.public_value()).unwrap();
            assert_eq!(s1, s2, "{g}");
            let shared_len = match g {
                DhId::MODP_2048 => 256,
                DhId::ECP_384 => 48,
                _ => 32,
            };
            assert_eq!(s1.len(), shared_len, "{g}");
            let dbg = format!("{a:?}");
            assert!(dbg.contains("KeyExchange"), "{dbg}");
        }
    }

    #[test]
    fn unsupported_groups() {
        let mut rng = ReplayRng::new(Vec::new());
        for g in [
            DhId::NONE,
            DhId::MODP_1024,
            DhId::ECP_521,
            DhId::CURVE448,
            DhId(999),
        ] {
            assert!(matches!(
                KeyExchange::generate(g, &mut rng),
                Err(CryptoError::UnsupportedAlgorithm(_))
            ));
        }
    }
}
