//! Our own certificate chain and private key, from PEM bytes.

use super::identity::Dn;
use super::CertError;
use aws_lc_rs::signature::{
    EcdsaKeyPair, EcdsaSigningAlgorithm, Ed25519KeyPair, KeyPair, RsaKeyPair,
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_ASN1_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The kind of our private key, which decides the AUTH methods we can sign with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Rsa,
    Ed25519,
}

impl std::fmt::Display for KeyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyKind::EcdsaP256 => "ECDSA P-256",
            KeyKind::EcdsaP384 => "ECDSA P-384",
            KeyKind::Rsa => "RSA",
            KeyKind::Ed25519 => "Ed25519",
        })
    }
}

/// A private key (aws-lc-rs keeps it in its own memory and frees it zeroized).
pub(super) enum SigningKey {
    /// ECDSA: DER signatures for RFC 7427, r||s for the classic methods 9/10.
    Ecdsa {
        asn1: EcdsaKeyPair,
        fixed: EcdsaKeyPair,
        p384: bool,
    },
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// Our certificate (leaf first, then intermediates) and its private key.
pub struct Credentials {
    /// DER certificates, leaf first: what goes into our CERT payloads.
    pub chain: Vec<Vec<u8>>,
    /// The leaf's subject (our default ID_DER_ASN1_DN), DER and parsed.
    pub subject_der: Vec<u8>,
    pub subject: Dn,
    pub issuer: Dn,
    /// The leaf's notAfter, seconds since the Unix epoch.
    pub not_after: i64,
    pub(super) key: SigningKey,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("subject", &self.subject.to_string())
            .field("key", &self.key_kind())
            .finish_non_exhaustive()
    }
}

/// Every certificate (DER) of a PEM file, in order.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err("no certificate (-----BEGIN CERTIFICATE-----) in the file".into());
    }
    Ok(certs)
}

fn ec_pair(der: &[u8], p384: bool) -> Option<SigningKey> {
    let (a, f): (
        &'static EcdsaSigningAlgorithm,
        &'static EcdsaSigningAlgorithm,
    ) = if p384 {
        (
            &ECDSA_P384_SHA384_ASN1_SIGNING,
            &ECDSA_P384_SHA384_FIXED_SIGNING,
        )
    } else {
        (
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &ECDSA_P256_SHA256_FIXED_SIGNING,
        )
    };
    Some(SigningKey::Ecdsa {
        asn1: EcdsaKeyPair::from_private_key_der(a, der).ok()?,
        fixed: EcdsaKeyPair::from_private_key_der(f, der).ok()?,
        p384,
    })
}

/// A private key from PEM: PKCS#8, SEC1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY").
pub(super) fn pem_key(pem: &[u8]) -> Result<SigningKey, String> {
    let key = PrivateKeyDer::from_pem_slice(pem)
        .map_err(|_| "no unencrypted PKCS#8, SEC1 or PKCS#1 private key in PEM".to_string())?;
    let der = key.secret_der();
    let parsed = match &key {
        PrivateKeyDer::Pkcs1(_) => RsaKeyPair::from_der(der).ok().map(SigningKey::Rsa),
        PrivateKeyDer::Sec1(_) => ec_pair(der, false).or_else(|| ec_pair(der, true)),
        PrivateKeyDer::Pkcs8(_) => Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .ok()
            .map(SigningKey::Ed25519)
            .or_else(|| ec_pair(der, false))
            .or_else(|| ec_pair(der, true))
            .or_else(|| RsaKeyPair::from_pkcs8(der).ok().map(SigningKey::Rsa)),
        _ => None,
    };
    parsed.ok_or_else(|| {
        "unsupported private key (we take ECDSA P-256/P-384, RSA and Ed25519)".to_string()
    })
}

impl SigningKey {
    fn public(&self) -> &[u8] {
        match self {
            SigningKey::Ecdsa { asn1, .. } => asn1.public_key().as_ref(),
            SigningKey::Rsa(k) => k.public_key().as_ref(),
            SigningKey::Ed25519(k) => k.public_key().as_ref(),
        }
    }

    fn kind(&self) -> KeyKind {
        match self {
            SigningKey::Ecdsa { p384: false, .. } => KeyKind::EcdsaP256,
            SigningKey::Ecdsa { p384: true, .. } => KeyKind::EcdsaP384,
            SigningKey::Rsa(_) => KeyKind::Rsa,
            SigningKey::Ed25519(_) => KeyKind::Ed25519,
        }
    }
}

impl Credentials {
    /// Our chain (`cert_pem`: leaf, then any intermediates) and its key; refuses a key
    /// that does not belong to the leaf.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Credentials, CertError> {
        let chain = pem_certificates(cert_pem).map_err(CertError::Parse)?;
        let key = pem_key(key_pem).map_err(CertError::Parse)?;
        let leaf = chain.first().ok_or(CertError::NoCertificate)?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| CertError::Parse(format!("cannot parse the certificate: {e}")))?;
        let subject = Dn::from_name(cert.subject());
        if cert.public_key().subject_public_key.data.as_ref() != key.public() {
            return Err(CertError::Parse(format!(
                "the private key ({}) does not belong to certificate \"{subject}\"",
                key.kind()
            )));
        }
        Ok(Credentials {
            subject_der: cert.subject().as_raw().to_vec(),
            issuer: Dn::from_name(cert.issuer()),
            not_after: cert.validity().not_after.timestamp(),
            subject,
            key,
            chain: chain.clone(),
        })
    }

    /// `cert_pem` with the key of `key_pem` even if it is not the certificate's: a peer
    /// that signs with the wrong key.
    #[cfg(test)]
    pub(crate) fn with_foreign_key(cert_pem: &[u8], key_pem: &[u8]) -> Credentials {
        let chain = pem_certificates(cert_pem).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&chain[0]).unwrap();
        Credentials {
            subject_der: cert.subject().as_raw().to_vec(),
            subject: Dn::from_name(cert.subject()),
            issuer: Dn::from_name(cert.issuer()),
            not_after: cert.validity().not_after.timestamp(),
            key: pem_key(key_pem).unwrap(),
            chain: chain.clone(),
        }
    }

    pub fn key_kind(&self) -> KeyKind {
        self.key.kind()
    }

    /// The leaf certificate (DER).
    pub fn leaf(&self) -> &[u8] {
        &self.chain[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cert::fixture;

    #[test]
    fn loads_each_key_format_and_refuses_a_foreign_key() {
        // SEC1, PKCS#1 and PKCS#8 (as `pki --gen` writes them).
        for (n, kind) in [
            ("a-p256", KeyKind::EcdsaP256),
            ("a-p384", KeyKind::EcdsaP384),
            ("a-rsa", KeyKind::Rsa),
            ("a-ed25519", KeyKind::Ed25519),
        ] {
            let c =
                Credentials::from_pem(&fixture(&format!("{n}.pem")), &fixture(&format!("{n}.key")))
                    .unwrap();
            assert_eq!(c.key_kind(), kind);
            assert_eq!(c.subject.to_string(), "C=CH, O=Lab, CN=routerA");
        }
        let c = Credentials::from_pem(&fixture("a-p256.pem"), &fixture("a-p256.key")).unwrap();
        assert_eq!(c.chain.len(), 2, "leaf and intermediate");
        let e = Credentials::from_pem(&fixture("a-p256.pem"), &fixture("b-p256.key")).unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
        assert!(!format!("{c:?}").contains("key: Ecdsa {"), "{c:?}");
    }
}
