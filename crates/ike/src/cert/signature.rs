//! AUTH by signature (RFC 7296 §2.15 / §3.8 methods 1, 9, 10; RFC 7427 method 14) and
//! the SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 §4).

use super::credentials::{Credentials, SigningKey};
use super::identity::Dn;
use super::CertError;
use crate::crypto::Prf;
use crate::iana::AuthMethod;
pub use crate::iana::HashAlgorithm;
use crate::wire::AuthPayload;
use aws_lc_rs::signature::{self as sig, UnparsedPublicKey};
use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm};
use webpki::aws_lc_rs as algs;
use webpki::EndEntityCert;
use x509_parser::prelude::FromDer;
use x509_parser::x509::AlgorithmIdentifier;

/// The hashes we announce: SHA-256/384/512 and Identity for Ed25519 (RFC 8420).
const OUR_HASHES: [HashAlgorithm; 4] = [
    HashAlgorithm::SHA2_256,
    HashAlgorithm::SHA2_384,
    HashAlgorithm::SHA2_512,
    HashAlgorithm::IDENTITY,
];

/// SIGNATURE_HASH_ALGORITHMS notify data: 16-bit hash identifiers (RFC 7427 §4).
pub fn hash_algorithms_notify() -> Vec<u8> {
    OUR_HASHES.iter().flat_map(|h| h.0.to_be_bytes()).collect()
}

/// The peer's SIGNATURE_HASH_ALGORITHMS; an odd trailing octet is ignored.
pub fn parse_hash_algorithms(data: &[u8]) -> Vec<HashAlgorithm> {
    data.chunks_exact(2)
        .filter_map(|c| Some(HashAlgorithm(u16::from_be_bytes(c.try_into().ok()?))))
        .collect()
}

/// §2.15: what is signed: the peer-side message, the peer's nonce and prf(SK_p, ID body)
/// (the same octets the PSK AUTH covers).
pub fn signed_octets(prf: Prf, msg: &[u8], nonce: &[u8], sk_p: &[u8], id_body: &[u8]) -> Vec<u8> {
    let maced = prf.prf(sk_p, id_body);
    let mut out = Vec::with_capacity(msg.len() + nonce.len() + maced.len());
    out.extend_from_slice(msg);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&maced);
    out
}

// RFC 7427 Appendix A: DER AlgorithmIdentifiers.
const ECDSA_SHA256: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
];
const ECDSA_SHA384: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03,
];
const ED25519: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];

fn rsa_pkcs1_alg(h: HashAlgorithm) -> Vec<u8> {
    let last = match h {
        HashAlgorithm::SHA2_384 => 0x0c,
        HashAlgorithm::SHA2_512 => 0x0d,
        _ => 0x0b,
    };
    vec![
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, last, 0x05, 0x00,
    ]
}

/// RSASSA-PSS-params (RFC 4055 §3.1) with hash `h`, MGF1 with `h`, salt = hash length.
fn rsa_pss_alg(h: HashAlgorithm) -> Vec<u8> {
    let (n, salt) = match h {
        HashAlgorithm::SHA2_384 => (2u8, 48u8),
        HashAlgorithm::SHA2_512 => (3, 64),
        _ => (1, 32),
    };
    let hash = [
        0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, n, 0x05, 0x00,
    ];
    let mut params = vec![0xa0, 0x0f];
    params.extend_from_slice(&hash);
    params.extend_from_slice(&[0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09]);
    params.extend_from_slice(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08]);
    params.extend_from_slice(&hash);
    params.extend_from_slice(&[0xa2, 0x03, 0x02, 0x01, salt]);
    let mut body = vec![
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a,
    ];
    body.push(0x30);
    body.push(params.len() as u8);
    body.extend_from_slice(&params);
    let mut out = vec![0x30, body.len() as u8];
    out.extend_from_slice(&body);
    out
}

fn digital_signature(alg: &[u8], signature: &[u8]) -> AuthPayload {
    // RFC 7427 §3: length of the AlgorithmIdentifier, itself, then the signature.
    let mut data = vec![alg.len() as u8];
    data.extend_from_slice(alg);
    data.extend_from_slice(signature);
    AuthPayload {
        method: AuthMethod::DIGITAL_SIGNATURE,
        reserved: [0; 3],
        data,
    }
}

/// Signs `octets` with our key. With `peer_hashes` (the peer sent
/// SIGNATURE_HASH_ALGORITHMS) we use RFC 7427 with a hash it takes; without, the
/// classic ECDSA methods 9/10.
pub fn sign_auth(
    creds: &Credentials,
    peer_hashes: Option<&[HashAlgorithm]>,
    rsa_pss: bool,
    octets: &[u8],
) -> Result<AuthPayload, CertError> {
    // aws-lc-rs draws ECDSA/PSS randomness itself and ignores this argument.
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let failed = |_| CertError::Sign("the signature operation failed".into());
    let Some(hashes) = peer_hashes else {
        return match &creds.key {
            SigningKey::Ecdsa { fixed, p384, .. } => Ok(AuthPayload {
                method: if *p384 { AuthMethod::ECDSA_384 } else { AuthMethod::ECDSA_256 },
                reserved: [0; 3],
                data: fixed.sign(&rng, octets).map_err(failed)?.as_ref().to_vec(),
            }),
            _ => Err(CertError::Sign(format!(
                "the peer does not announce RFC 7427 signatures (SIGNATURE_HASH_ALGORITHMS) and we cannot sign with a {} key otherwise",
                creds.key_kind()
            ))),
        };
    };
    let takes = |h: HashAlgorithm| hashes.contains(&h);
    let need = |h: HashAlgorithm| {
        if takes(h) {
            Ok(())
        } else {
            Err(CertError::Sign(format!(
                "the peer's SIGNATURE_HASH_ALGORITHMS lacks {h}, which a {} key needs",
                creds.key_kind()
            )))
        }
    };
    match &creds.key {
        SigningKey::Ecdsa { asn1, p384, .. } => {
            let (h, alg) = if *p384 {
                (HashAlgorithm::SHA2_384, ECDSA_SHA384)
            } else {
                (HashAlgorithm::SHA2_256, ECDSA_SHA256)
            };
            need(h)?;
            let s = asn1.sign(&rng, octets).map_err(failed)?;
            Ok(digital_signature(alg, s.as_ref()))
        }
        SigningKey::Ed25519(k) => {
            need(HashAlgorithm::IDENTITY)?;
            Ok(digital_signature(ED25519, k.sign(octets).as_ref()))
        }
        SigningKey::Rsa(k) => {
            let h = [
                HashAlgorithm::SHA2_256,
                HashAlgorithm::SHA2_384,
                HashAlgorithm::SHA2_512,
            ]
            .into_iter()
            .find(|h| takes(*h))
            .ok_or_else(|| {
                CertError::Sign("the peer takes none of SHA2_256/384/512 for RSA".into())
            })?;
            let (enc, alg): (&'static dyn sig::RsaEncoding, Vec<u8>) = match (rsa_pss, h) {
                (true, HashAlgorithm::SHA2_384) => (&sig::RSA_PSS_SHA384, rsa_pss_alg(h)),
                (true, HashAlgorithm::SHA2_512) => (&sig::RSA_PSS_SHA512, rsa_pss_alg(h)),
                (true, _) => (&sig::RSA_PSS_SHA256, rsa_pss_alg(h)),
                (false, HashAlgorithm::SHA2_384) => (&sig::RSA_PKCS1_SHA384, rsa_pkcs1_alg(h)),
                (false, HashAlgorithm::SHA2_512) => (&sig::RSA_PKCS1_SHA512, rsa_pkcs1_alg(h)),
                (false, _) => (&sig::RSA_PKCS1_SHA256, rsa_pkcs1_alg(h)),
            };
            let mut s = vec![0u8; k.public_modulus_len()];
            k.sign(enc, &rng, octets, &mut s).map_err(failed)?;
            Ok(digital_signature(&alg, &s))
        }
    }
}

// OID content octets (RFC 7427 Appendix A, RFC 8410).
const OID_ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const OID_ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];
const OID_ECDSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04];
const OID_RSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const OID_RSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const OID_RSA_SHA512: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const OID_RSA_PSS: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a];
const OID_ED25519: &[u8] = &[0x2b, 0x65, 0x70];
const OID_SHA2: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02];

/// The hash of RSASSA-PSS-params: the first hash OID in them is hashAlgorithm [0]
/// (RFC 4055 §3.1); absent means SHA-1, which we do not take.
fn pss_hash(params: &[u8]) -> Option<u8> {
    params
        .windows(OID_SHA2.len() + 1)
        .find(|w| w[..OID_SHA2.len()] == *OID_SHA2)
        .map(|w| w[OID_SHA2.len()])
}

/// Verifies the peer's AUTH over `octets` with the key of its (validated) certificate.
pub fn verify_auth(leaf: &[u8], auth: &AuthPayload, octets: &[u8]) -> Result<(), CertError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| CertError::Parse(format!("cannot parse the peer certificate: {e}")))?;
    let subject = Dn::from_name(cert.subject()).to_string();
    let bad = || CertError::BadSignature {
        subject: subject.clone(),
    };
    let key = cert.public_key().subject_public_key.data.as_ref();
    let classic = |alg: &'static dyn sig::VerificationAlgorithm| {
        UnparsedPublicKey::new(alg, key)
            .verify(octets, &auth.data)
            .map_err(|_| bad())
    };
    match auth.method {
        AuthMethod::ECDSA_256 => return classic(&sig::ECDSA_P256_SHA256_FIXED),
        AuthMethod::ECDSA_384 => return classic(&sig::ECDSA_P384_SHA384_FIXED),
        AuthMethod::RSA_SIG => return classic(&sig::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY),
        AuthMethod::DIGITAL_SIGNATURE => {}
        m => return Err(CertError::UnsupportedSignature(format!("AUTH method {m}"))),
    }
    let malformed = || CertError::UnsupportedSignature("a malformed RFC 7427 AUTH".into());
    let (&len, rest) = auth.data.split_first().ok_or_else(malformed)?;
    let (alg, signature) = rest
        .split_at_checked(usize::from(len))
        .ok_or_else(malformed)?;
    let (tail, alg_id) = AlgorithmIdentifier::from_der(alg).map_err(|_| malformed())?;
    if !tail.is_empty() {
        return Err(malformed());
    }
    let oid = alg_id.algorithm.as_bytes();
    let candidates: &[&dyn SignatureVerificationAlgorithm] = match oid {
        OID_ECDSA_SHA256 => &[algs::ECDSA_P256_SHA256, algs::ECDSA_P384_SHA256],
        OID_ECDSA_SHA384 => &[algs::ECDSA_P256_SHA384, algs::ECDSA_P384_SHA384],
        OID_ECDSA_SHA512 => &[algs::ECDSA_P256_SHA512, algs::ECDSA_P384_SHA512],
        OID_RSA_SHA256 => &[algs::RSA_PKCS1_2048_8192_SHA256],
        OID_RSA_SHA384 => &[algs::RSA_PKCS1_2048_8192_SHA384],
        OID_RSA_SHA512 => &[algs::RSA_PKCS1_2048_8192_SHA512],
        OID_ED25519 => &[algs::ED25519],
        OID_RSA_PSS => match alg_id.parameters.as_ref().and_then(|p| pss_hash(p.data)) {
            Some(1) => &[algs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY],
            Some(2) => &[algs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY],
            Some(3) => &[algs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY],
            _ => {
                return Err(CertError::UnsupportedSignature(
                    "RSASSA-PSS with a hash other than SHA-256/384/512".into(),
                ))
            }
        },
        _ => {
            return Err(CertError::UnsupportedSignature(format!(
                "signature algorithm {}",
                alg_id.algorithm.to_id_string()
            )))
        }
    };
    let der = CertificateDer::from(leaf);
    let ee = EndEntityCert::try_from(&der).map_err(|_| bad())?;
    if candidates
        .iter()
        .any(|a| ee.verify_signature(*a, octets, signature).is_ok())
    {
        Ok(())
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::PrfId;

    use crate::cert::fixture;

    fn creds(n: &str) -> Credentials {
        Credentials::from_pem(&fixture(&format!("{n}.pem")), &fixture(&format!("{n}.key"))).unwrap()
    }

    #[test]
    fn every_algorithm_signs_and_verifies_and_a_wrong_key_fails() {
        let prf = Prf::new(PrfId::HMAC_SHA2_256).unwrap();
        let octets = signed_octets(prf, b"message", b"nonce", &[7; 32], b"\x09\0\0\0id");
        let all = parse_hash_algorithms(&hash_algorithms_notify());
        assert_eq!(all, OUR_HASHES);
        let sha384_only = [HashAlgorithm::SHA2_384];
        let cases: &[(&str, Option<&[HashAlgorithm]>, bool, AuthMethod)] = &[
            ("a-p256", Some(&all), false, AuthMethod::DIGITAL_SIGNATURE),
            ("a-p384", Some(&all), false, AuthMethod::DIGITAL_SIGNATURE),
            ("a-rsa", Some(&all), false, AuthMethod::DIGITAL_SIGNATURE),
            ("a-rsa", Some(&all), true, AuthMethod::DIGITAL_SIGNATURE),
            (
                "a-rsa",
                Some(&sha384_only),
                true,
                AuthMethod::DIGITAL_SIGNATURE,
            ),
            (
                "a-rsa",
                Some(&sha384_only),
                false,
                AuthMethod::DIGITAL_SIGNATURE,
            ),
            (
                "a-ed25519",
                Some(&all),
                false,
                AuthMethod::DIGITAL_SIGNATURE,
            ),
            ("a-p256", None, false, AuthMethod::ECDSA_256),
            ("a-p384", None, false, AuthMethod::ECDSA_384),
        ];
        let other = creds("b-p256");
        for (n, hashes, pss, method) in cases {
            let c = creds(n);
            let auth = sign_auth(&c, *hashes, *pss, &octets).unwrap();
            assert_eq!(auth.method, *method, "{n}");
            verify_auth(c.leaf(), &auth, &octets).unwrap();
            // Other octets, or another certificate's key, do not verify.
            let e = verify_auth(c.leaf(), &auth, b"other").unwrap_err();
            assert!(matches!(e, CertError::BadSignature { .. }), "{n}: {e}");
            let e = verify_auth(other.leaf(), &auth, &octets).unwrap_err();
            assert!(matches!(e, CertError::BadSignature { .. }), "{n}: {e}");
        }
        // Ed25519 needs Identity; RSA without RFC 7427 cannot be signed here.
        assert!(sign_auth(&creds("a-ed25519"), Some(&sha384_only), false, &octets).is_err());
        assert!(sign_auth(&creds("a-rsa"), None, false, &octets).is_err());
    }

    #[test]
    fn algorithm_identifiers_are_rfc_7427_appendix_a() {
        // A.4.3: RSASSA-PSS with SHA-256 (and MGF1-SHA-256, salt 32).
        assert_eq!(
            hex::encode(rsa_pss_alg(HashAlgorithm::SHA2_256)),
            "30 41 06 09 2a 86 48 86 f7 0d 01 01 0a 30 34 a0 0f 30 0d 06 09 60 86 48 01 65 03 04 02 01 05 00 a1 1c 30 1a 06 09 2a 86 48 86 f7 0d 01 01 08 30 0d 06 09 60 86 48 01 65 03 04 02 01 05 00 a2 03 02 01 20"
                .replace(' ', "")
        );
        assert_eq!(
            hex::encode(rsa_pkcs1_alg(HashAlgorithm::SHA2_256)),
            "300d06092a864886f70d01010b0500"
        );
        assert_eq!(
            pss_hash(&rsa_pss_alg(HashAlgorithm::SHA2_512)[15..]),
            Some(3)
        );
        // Malformed AUTH data is refused, not a panic.
        let c = creds("a-p256");
        for data in [vec![], vec![200, 1], vec![2, 0x30, 0x00, 1]] {
            let auth = AuthPayload {
                method: AuthMethod::DIGITAL_SIGNATURE,
                reserved: [0; 3],
                data,
            };
            assert!(matches!(
                verify_auth(c.leaf(), &auth, b"x"),
                Err(CertError::UnsupportedSignature(_))
            ));
        }
    }
}
