//! The certificate-authentication decoders of untrusted bytes (RFC 7296 §3.6–3.8,
//! RFC 7427): the peer's CERT chain through path validation, its RFC 7427 AUTH data
//! through signature verification, a DER DN (ID_DER_ASN1_DN) and the
//! SIGNATURE_HASH_ALGORITHMS notify data. Never panics; nothing random validates to
//! the fixture CA, and no AUTH verifies against the fixture key; a DN that parses
//! re-encodes, if at all, to one that parses equal.

use ike::cert::{parse_hash_algorithms, verify_auth, Dn, TrustStore};
use ike::iana::AuthMethod;
use ike::wire::AuthPayload;

const CA: &[u8] = include_bytes!("../../crates/ike/testdata/certs/root-ca.pem");
const LEAF: &[u8] = include_bytes!("../../crates/ike/testdata/certs/b-p384.pem");

/// Splits `data` into length-prefixed (2 octets) pieces, as a CERT payload list.
fn pieces(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let [a, b, rest @ ..] = data {
        let n = usize::from(u16::from_be_bytes([*a, *b])).min(rest.len());
        out.push(rest[..n].to_vec());
        data = &rest[n..];
    }
    out
}

pub fn ike_cert(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            let store = TrustStore::new(&[CA.to_vec()], &[]).expect("fixture CA");
            let certs = pieces(body);
            if let Ok(info) = store.validate(&certs, 1_811_808_000) {
                // Only a real chain to the fixture CA validates (the seeds have them).
                assert!(!info.subject.to_string().is_empty());
            }
        }
        1 => {
            let leaf = pem_leaf();
            for method in [
                AuthMethod::DIGITAL_SIGNATURE,
                AuthMethod::ECDSA_384,
                AuthMethod::RSA_SIG,
            ] {
                let auth = AuthPayload {
                    method,
                    reserved: [0; 3],
                    data: body.to_vec(),
                };
                assert!(verify_auth(&leaf, &auth, b"signed octets").is_err());
            }
        }
        2 => {
            if let Some(dn) = Dn::from_der(body) {
                let _ = dn.to_string();
                if let Some(again) = Dn::from_der(&dn.to_der()) {
                    assert_eq!(again, dn, "{dn}");
                }
            }
        }
        _ => {
            let hashes = parse_hash_algorithms(body);
            assert_eq!(hashes.len(), body.len() / 2);
        }
    }
}

fn pem_leaf() -> Vec<u8> {
    ike::cert::pem_certificates(LEAF)
        .expect("fixture PEM")
        .remove(0)
}
