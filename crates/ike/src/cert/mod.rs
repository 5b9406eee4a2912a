//! Certificate authentication (RFC 7296 §2.15, §3.6–3.7; RFC 7427): our credentials,
//! path validation of the peer's chain, identity matching, and signature AUTH.
//!
//! Sans-IO like the rest of the crate: certificates and keys come in as bytes and the
//! wall-clock time comes from the caller ([`crate::Session::set_unix_time`]).
//!
//! - `credentials.rs`: our certificate chain and private key (PEM);
//! - `trust.rs`: trust anchors, CRLs, CERTREQ hashes, path validation (`rustls-webpki`);
//! - `identity.rs`: distinguished names in strongSwan's syntax, ID ↔ certificate;
//! - `signature.rs`: AUTH methods 1, 9, 10 and 14 and SIGNATURE_HASH_ALGORITHMS.

mod credentials;
mod identity;
mod signature;
mod trust;

pub use credentials::{pem_certificates, Credentials, KeyKind};
pub use identity::{describe_id, format_unix_date, id_in_cert, id_in_cert_der, ids_equal, Dn};
pub use signature::{
    hash_algorithms_notify, parse_hash_algorithms, sign_auth, signed_octets, verify_auth,
    HashAlgorithm,
};
pub use trust::{CertInfo, TrustStore};

/// What a tunnel authenticating with certificates needs besides the PSK fields.
#[derive(Debug)]
pub struct CertAuth {
    pub credentials: Credentials,
    pub trust: TrustStore,
    /// Sign RSA AUTH with RSASSA-PSS rather than PKCS#1 v1.5 (RFC 7427 both).
    pub rsa_pss: bool,
}

/// Why a certificate, key or signature was refused. The text is for engineers: it names
/// the certificate and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("{0}")]
    Parse(String),
    #[error("peer sent no certificate (no CERT payload with an X.509 certificate)")]
    NoCertificate,
    #[error(
        "peer certificate \"{subject}\" not issued by any configured ca (issuer \"{issuer}\")"
    )]
    UnknownCa { subject: String, issuer: String },
    #[error("peer certificate \"{subject}\" expired on {not_after}")]
    Expired { subject: String, not_after: String },
    #[error("peer certificate \"{subject}\" is not valid before {not_before}")]
    NotYetValid { subject: String, not_before: String },
    #[error("peer certificate \"{subject}\" is revoked by a configured crl")]
    Revoked { subject: String },
    #[error("peer certificate \"{subject}\" is refused: {why}")]
    Invalid { subject: String, why: String },
    #[error("peer identity \"{id}\" is not in its certificate \"{subject}\" (neither its subject nor a subjectAltName)")]
    IdNotInCert { id: String, subject: String },
    #[error("peer's AUTH signature does not verify with the key of certificate \"{subject}\" (wrong key?)")]
    BadSignature { subject: String },
    #[error("peer's AUTH uses {0}, which we do not support")]
    UnsupportedSignature(String),
    #[error("cannot sign AUTH: {0}")]
    Sign(String),
}

/// A certificate or key from testdata/certs (made by testdata/certs/make.sh).
#[cfg(test)]
pub(crate) fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/certs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
