//! The certificate side of IKE_AUTH (RFC 7296 §2.15, §3.6–3.7; RFC 7427): our CERT,
//! CERTREQ and signature AUTH payloads, and checking the peer's.

use super::error::ExchangeError;
use super::ike_sa::Ctx;
use crate::cert::{self, CertAuth, CertInfo, HashAlgorithm};
use crate::crypto::Prf;
use crate::wire::{AuthPayload, CertPayload, CertReqPayload, IdPayload, Payload};

/// §3.6: Certificate Encoding 4, "X.509 Certificate - Signature".
pub(super) const X509_SIGNATURE: u8 = 4;

/// Our CERT payloads (leaf first, then intermediates) and a CERTREQ naming our CAs.
pub(super) fn our_cert_payloads(ca: &CertAuth, with_certreq: bool) -> Vec<Payload> {
    let mut out: Vec<Payload> = ca
        .credentials
        .chain
        .iter()
        .map(|der| {
            Payload::Cert(CertPayload {
                encoding: X509_SIGNATURE,
                data: der.clone(),
            })
        })
        .collect();
    if with_certreq {
        out.extend(certreq_payload(ca));
    }
    out
}

/// §3.7: CERTREQ with the SHA-1 hashes of our CAs' public keys (none without CAs).
pub(super) fn certreq_payload(ca: &CertAuth) -> Option<Payload> {
    let hashes = ca.trust.certreq_data();
    (!hashes.is_empty()).then_some(Payload::CertReq(CertReqPayload {
        encoding: X509_SIGNATURE,
        data: hashes,
    }))
}

/// Our signature AUTH over §2.15's octets: `msg` is our IKE_SA_INIT message, `nonce`
/// the peer's, `sk_p` our SK_p.
pub(super) fn sign(
    ca: &CertAuth,
    peer_hashes: Option<&[HashAlgorithm]>,
    prf: Prf,
    msg: &[u8],
    nonce: &[u8],
    sk_p: &[u8],
    id: &IdPayload,
) -> Result<Payload, ExchangeError> {
    let octets = cert::signed_octets(prf, msg, nonce, sk_p, &id.body());
    cert::sign_auth(&ca.credentials, peer_hashes, ca.rsa_pss, &octets)
        .map(Payload::Auth)
        .map_err(ExchangeError::from)
}

/// Checks the peer's certificate chain, that its identity (already matched against
/// remote_id) is in the certificate, and its AUTH signature; `msg` is the peer's
/// IKE_SA_INIT message, `nonce` ours, `sk_p` the peer's SK_p.
#[allow(clippy::too_many_arguments)]
pub(super) fn verify_peer(
    ctx: &Ctx<'_>,
    ca: &CertAuth,
    inner: &[Payload],
    id: &IdPayload,
    auth: &AuthPayload,
    prf: Prf,
    msg: &[u8],
    nonce: &[u8],
    sk_p: &[u8],
) -> Result<CertInfo, ExchangeError> {
    let certs: Vec<Vec<u8>> = inner
        .iter()
        .filter_map(|p| match p {
            Payload::Cert(c) if c.encoding == X509_SIGNATURE => Some(c.data.clone()),
            _ => None,
        })
        .collect();
    let info = ca.trust.validate(&certs, ctx.unix_time)?;
    let leaf_der = certs.first().ok_or(cert::CertError::NoCertificate)?;
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der)
        .map_err(|e| ExchangeError::Auth(format!("cannot parse the peer certificate: {e}")))?;
    if !cert::id_in_cert(id, &leaf) {
        return Err(cert::CertError::IdNotInCert {
            id: cert::describe_id(id),
            subject: info.subject.to_string(),
        }
        .into());
    }
    let octets = cert::signed_octets(prf, msg, nonce, sk_p, &id.body());
    cert::verify_auth(leaf_der, auth, &octets)?;
    Ok(info)
}
