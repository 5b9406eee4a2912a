//! Trust anchors, CRLs and path validation of the peer's certificates (RFC 5280 §6 via
//! `rustls-webpki`), and the CERTREQ hashes that name our anchors (RFC 7296 §3.7).

use super::credentials::pem_certificates;
use super::identity::{format_unix_date, Dn};
use super::CertError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, TrustAnchor, UnixTime};
use webpki::{
    CertRevocationList, EndEntityCert, KeyPurposeIdIter, OwnedCertRevocationList,
    RevocationCheckDepth, RevocationOptionsBuilder, UnknownStatusPolicy,
};

/// The peer's validated leaf certificate, as logs and `status` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub subject: Dn,
    pub issuer: Dn,
    /// notAfter, seconds since the Unix epoch.
    pub not_after: i64,
}

/// The configured CAs of one tunnel and their CRLs.
pub struct TrustStore {
    anchors: Vec<TrustAnchor<'static>>,
    names: Vec<Dn>,
    /// SHA-1 of each anchor's SubjectPublicKeyInfo (CERTREQ, §3.7).
    key_hashes: Vec<[u8; 20]>,
    crls: Vec<CertRevocationList<'static>>,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self.names.iter().map(Dn::to_string).collect();
        f.debug_struct("TrustStore")
            .field("cas", &names)
            .field("crls", &self.crls.len())
            .finish()
    }
}

/// RFC 4945 §5.1.3.12: IKE does not ask for an extended key usage; strongSwan accepts
/// any, so do we.
struct AnyUsage;

impl webpki::ExtendedKeyUsageValidator for AnyUsage {
    fn validate(&self, mut iter: KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        iter.try_for_each(|k| k.map(|_| ()))
    }
}

fn parse_err(what: &str, e: impl std::fmt::Display) -> CertError {
    CertError::Parse(format!("{what}: {e}"))
}

impl TrustStore {
    /// Trust anchors from PEM files (each may hold several CA certificates) and CRLs
    /// (PEM or DER).
    pub fn new(ca_pems: &[Vec<u8>], crl_files: &[Vec<u8>]) -> Result<TrustStore, CertError> {
        let mut store = TrustStore {
            anchors: Vec::new(),
            names: Vec::new(),
            key_hashes: Vec::new(),
            crls: Vec::new(),
        };
        for pem in ca_pems {
            for der in pem_certificates(pem).map_err(CertError::Parse)? {
                let (_, cert) = x509_parser::parse_x509_certificate(&der)
                    .map_err(|e| parse_err("cannot parse a ca certificate", e))?;
                let spki = cert.public_key().raw;
                let d =
                    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, spki);
                let mut h = [0u8; 20];
                h.copy_from_slice(d.as_ref());
                store.key_hashes.push(h);
                store.names.push(Dn::from_name(cert.subject()));
                let c = CertificateDer::from(der.clone());
                let anchor = webpki::anchor_from_trusted_cert(&c)
                    .map_err(|e| parse_err("unusable ca certificate", format!("{e:?}")))?
                    .to_owned();
                store.anchors.push(anchor);
            }
        }
        for file in crl_files {
            let ders: Vec<Vec<u8>> = if file.starts_with(b"-----") {
                CertificateRevocationListDer::pem_slice_iter(file)
                    .map(|c| c.map(|c| c.as_ref().to_vec()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| parse_err("not a PEM CRL", e))?
            } else {
                vec![file.clone()]
            };
            for der in ders {
                let crl = OwnedCertRevocationList::from_der(&der)
                    .map_err(|e| parse_err("cannot parse a crl", format!("{e:?}")))?;
                store.crls.push(CertRevocationList::Owned(crl));
            }
        }
        Ok(store)
    }

    /// CERTREQ data (encoding 4): the concatenated SHA-1 hashes of our anchors' keys.
    pub fn certreq_data(&self) -> Vec<u8> {
        self.key_hashes.concat()
    }

    /// True if `data` (a CERTREQ's hashes) names one of our anchors, or is empty.
    pub fn names_ca(&self, data: &[u8]) -> bool {
        data.chunks(20)
            .any(|h| self.key_hashes.iter().any(|k| k == h))
    }

    /// The configured CAs' subjects, for messages.
    pub fn ca_names(&self) -> &[Dn] {
        &self.names
    }

    /// Validates the peer's `certs` (leaf first, then any intermediates in any order)
    /// to one of our anchors at `unix_time`: signatures, validity, basicConstraints,
    /// keyUsage, name constraints, and the CRLs if any were configured.
    pub fn validate(&self, certs: &[Vec<u8>], unix_time: u64) -> Result<CertInfo, CertError> {
        let leaf = certs.first().ok_or(CertError::NoCertificate)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| parse_err("peer sent a certificate we cannot parse", e))?;
        let info = CertInfo {
            subject: Dn::from_name(parsed.subject()),
            issuer: Dn::from_name(parsed.issuer()),
            not_after: parsed.validity().not_after.timestamp(),
        };
        // Dates first, per certificate, so the message names the one that is out of date.
        let now = i64::try_from(unix_time).unwrap_or(i64::MAX);
        for der in certs {
            let Ok((_, c)) = x509_parser::parse_x509_certificate(der) else {
                continue;
            };
            let subject = Dn::from_name(c.subject()).to_string();
            if c.validity().not_after.timestamp() < now {
                let not_after = format_unix_date(c.validity().not_after.timestamp());
                return Err(CertError::Expired { subject, not_after });
            }
            if c.validity().not_before.timestamp() > now {
                let not_before = format_unix_date(c.validity().not_before.timestamp());
                return Err(CertError::NotYetValid {
                    subject,
                    not_before,
                });
            }
        }
        let leaf_der = CertificateDer::from(leaf.as_slice());
        let ee = EndEntityCert::try_from(&leaf_der)
            .map_err(|e| parse_err("peer sent a certificate we cannot parse", format!("{e:?}")))?;
        let intermediates: Vec<CertificateDer<'_>> = certs
            .iter()
            .skip(1)
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        let crls: Vec<&CertRevocationList<'_>> = self.crls.iter().collect();
        // strongSwan's default: a certificate no CRL speaks about is accepted.
        let revocation = RevocationOptionsBuilder::new(&crls).ok().map(|b| {
            b.with_depth(RevocationCheckDepth::Chain)
                .with_status_policy(UnknownStatusPolicy::Allow)
                .build()
        });
        let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(unix_time));
        let subject = info.subject.to_string();
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            &intermediates,
            time,
            AnyUsage,
            revocation,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::UnknownIssuer => {
                // The issuer the chain we got stops at.
                let top = certs
                    .last()
                    .and_then(|d| x509_parser::parse_x509_certificate(d).ok())
                    .map(|(_, c)| Dn::from_name(c.issuer()).to_string())
                    .unwrap_or_default();
                CertError::UnknownCa {
                    subject: subject.clone(),
                    issuer: top,
                }
            }
            webpki::Error::CertRevoked => CertError::Revoked {
                subject: subject.clone(),
            },
            webpki::Error::CaUsedAsEndEntity => CertError::Invalid {
                subject: subject.clone(),
                why: "it is a CA certificate".into(),
            },
            e => CertError::Invalid {
                subject: subject.clone(),
                why: format!("{e:?}"),
            },
        })?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cert::fixture;

    fn chain(name: &str) -> Vec<Vec<u8>> {
        pem_certificates(&fixture(name)).unwrap()
    }

    /// 2027-06-01 (the fixtures were made on 2026-12-01).
    const NOW: u64 = 1_811_808_000;

    #[test]
    fn validates_chains_and_names_what_is_wrong() {
        let store = TrustStore::new(&[fixture("root-ca.pem")], &[]).unwrap();
        let info = store.validate(&chain("b-p256.pem"), NOW).unwrap();
        assert_eq!(info.subject.to_string(), "C=CH, O=Lab, CN=routerB");
        assert_eq!(
            info.issuer.to_string(),
            "C=CH, O=Lab, CN=Lab Intermediate CA"
        );
        for n in ["b-p384.pem", "b-rsa.pem", "b-ed25519.pem"] {
            store.validate(&chain(n), NOW).unwrap();
        }
        // Without its intermediate the leaf does not chain.
        let leaf_only = vec![chain("b-p256.pem").remove(0)];
        let e = store.validate(&leaf_only, NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "peer certificate \"C=CH, O=Lab, CN=routerB\" not issued by any configured ca (issuer \"C=CH, O=Lab, CN=Lab Intermediate CA\")"
        );
        let e = store.validate(&chain("other-b.pem"), NOW).unwrap_err();
        assert!(matches!(e, CertError::UnknownCa { .. }), "{e}");
        let e = store.validate(&chain("expired-b.pem"), NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "peer certificate \"C=CH, O=Lab, CN=routerB\" expired on 2021-01-01 00:00:00 UTC"
        );
        // The same chain is fine while it was valid, and not before.
        store
            .validate(&chain("expired-b.pem"), 1_600_000_000)
            .unwrap();
        let e = store
            .validate(&chain("expired-b.pem"), 1_500_000_000)
            .unwrap_err();
        assert!(matches!(e, CertError::NotYetValid { .. }), "{e}");
        // A CA certificate is not a peer certificate.
        let e = store.validate(&chain("inter-ca.pem"), NOW).unwrap_err();
        assert!(matches!(e, CertError::Invalid { .. }), "{e}");
        assert_eq!(store.validate(&[], NOW), Err(CertError::NoCertificate));
        assert!(store.validate(&[vec![0x30, 0x03, 1, 2, 3]], NOW).is_err());
    }

    #[test]
    fn crl_revokes_and_is_silent_about_others() {
        let store = TrustStore::new(&[fixture("root-ca.pem")], &[fixture("root-ca.crl")]).unwrap();
        let e = store.validate(&chain("b-p384.pem"), NOW).unwrap_err();
        assert_eq!(
            e.to_string(),
            "peer certificate \"C=CH, O=Lab, CN=routerB\" is revoked by a configured crl"
        );
        // Not on the list, or issued by a CA without a CRL (the intermediate): accepted.
        store.validate(&chain("b-rsa.pem"), NOW).unwrap();
        store.validate(&chain("b-p256.pem"), NOW).unwrap();
        assert!(TrustStore::new(&[fixture("root-ca.pem")], &[b"garbage".to_vec()]).is_err());
    }

    #[test]
    fn certreq_hashes_name_our_cas() {
        let store =
            TrustStore::new(&[fixture("root-ca.pem"), fixture("other-ca.pem")], &[]).unwrap();
        let data = store.certreq_data();
        assert_eq!(data.len(), 40);
        assert!(store.names_ca(&data[20..]));
        assert!(!store.names_ca(&[0; 20]));
        let root = TrustStore::new(&[fixture("root-ca.pem")], &[]).unwrap();
        assert_eq!(root.certreq_data(), data[..20]);
    }
}
