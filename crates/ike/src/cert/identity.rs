//! Distinguished names in strongSwan's syntax ("C=CH, O=Lab, CN=routerB") and whether
//! an IKE identity belongs to a certificate (RFC 7296 §3.5, RFC 4945 §3.1, as
//! strongSwan checks it: a DN equals the subject, other types are subjectAltNames).

use crate::iana::IdType;
use crate::wire::IdPayload;
use std::fmt;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::x509::X509Name;

/// Attribute types we name, as strongSwan does: (name, OID content octets).
const ATTRIBUTES: &[(&str, &[u8])] = &[
    ("C", &[0x55, 0x04, 0x06]),
    ("ST", &[0x55, 0x04, 0x08]),
    ("L", &[0x55, 0x04, 0x07]),
    ("O", &[0x55, 0x04, 0x0a]),
    ("OU", &[0x55, 0x04, 0x0b]),
    ("CN", &[0x55, 0x04, 0x03]),
    ("SN", &[0x55, 0x04, 0x04]),
    ("serialNumber", &[0x55, 0x04, 0x05]),
    ("T", &[0x55, 0x04, 0x0c]),
    ("G", &[0x55, 0x04, 0x2a]),
    ("E", &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01]),
    (
        "DC",
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19],
    ),
    (
        "UID",
        &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
    ),
];

/// Aliases accepted in configurations (strongSwan's too).
const ALIASES: &[(&str, &str)] = &[("emailAddress", "E"), ("S", "ST"), ("GN", "G")];

/// One attribute: its OID (content octets) and value.
#[derive(Debug, Clone)]
struct Attribute {
    oid: Vec<u8>,
    value: String,
}

/// A distinguished name as an ordered list of attributes (one per RDN).
#[derive(Debug, Clone, Default)]
pub struct Dn(Vec<Attribute>);

/// Values compare case-insensitively, types by OID (strongSwan compares DNs the same way).
impl PartialEq for Dn {
    fn eq(&self, other: &Dn) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .zip(&other.0)
                .all(|(a, b)| a.oid == b.oid && a.value.eq_ignore_ascii_case(&b.value))
    }
}
impl Eq for Dn {}

fn push_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    push_len(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

impl Dn {
    /// Parses strongSwan's DN syntax: "C=CH, O=Lab, CN=routerB" (',' separated, types
    /// case-insensitive). Values containing ',' are not supported.
    pub fn parse(s: &str) -> Result<Dn, String> {
        let mut attrs = Vec::new();
        for part in s.split(',') {
            let (ty, value) = part
                .split_once('=')
                .ok_or_else(|| format!("\"{}\" is not TYPE=value", part.trim()))?;
            let ty = ty.trim();
            let ty = ALIASES
                .iter()
                .find(|(a, _)| a.eq_ignore_ascii_case(ty))
                .map_or(ty, |(_, t)| t);
            let (_, oid) = ATTRIBUTES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(ty))
                .ok_or_else(|| {
                    format!("unknown attribute type \"{ty}\" (use C, ST, L, O, OU, CN, E, DC, …)")
                })?;
            let value = value.trim();
            if value.is_empty() {
                return Err(format!("empty value for {ty}"));
            }
            attrs.push(Attribute {
                oid: oid.to_vec(),
                value: value.to_string(),
            });
        }
        Ok(Dn(attrs))
    }

    /// True if `s` looks like a DN rather than an FQDN, address or email.
    pub fn looks_like_dn(s: &str) -> bool {
        s.contains('=')
    }

    pub(super) fn from_name(name: &X509Name<'_>) -> Dn {
        Dn(name
            .iter_attributes()
            .map(|a| Attribute {
                oid: a.attr_type().as_bytes().to_vec(),
                value: match a.as_str() {
                    Ok(s) => s.to_string(),
                    // T61/BMP strings etc.: shown and compared as hex, like strongSwan's "#..".
                    Err(_) => format!("#{}", hex_string(a.as_slice())),
                },
            })
            .collect())
    }

    /// A DER Name (ID_DER_ASN1_DN data); None if it is not one.
    pub fn from_der(der: &[u8]) -> Option<Dn> {
        match X509Name::from_der(der) {
            Ok(([], name)) => Some(Dn::from_name(&name)),
            _ => None,
        }
    }

    /// DER Name: one RDN per attribute, values as UTF8String (PrintableString for C).
    pub fn to_der(&self) -> Vec<u8> {
        let mut rdns = Vec::new();
        for a in &self.0 {
            let string_tag = if a.oid == [0x55, 0x04, 0x06] {
                0x13
            } else {
                0x0c
            };
            let mut atv = tlv(0x06, &a.oid);
            atv.extend(tlv(string_tag, a.value.as_bytes()));
            rdns.extend(tlv(0x31, &tlv(0x30, &atv)));
        }
        tlv(0x30, &rdns)
    }
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn oid_dotted(oid: &[u8]) -> String {
    x509_parser::der_parser::oid::Oid::new(oid.into()).to_id_string()
}

impl fmt::Display for Dn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match ATTRIBUTES.iter().find(|(_, o)| *o == a.oid.as_slice()) {
                Some((n, _)) => f.write_str(n)?,
                None => f.write_str(&oid_dotted(&a.oid))?,
            }
            // Peer-chosen text: control characters would forge log lines.
            let v: String = a
                .value
                .chars()
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            write!(f, "={v}")?;
        }
        Ok(())
    }
}

/// An identity as users write it: a DN for ID_DER_ASN1_DN, else as [`IdPayload`] shows it.
pub fn describe_id(id: &IdPayload) -> String {
    if id.id_type == IdType::DER_ASN1_DN {
        if let Some(dn) = Dn::from_der(&id.data) {
            return dn.to_string();
        }
    }
    id.to_string()
}

/// Two identities are the same (DNs compared as names, others octet for octet).
pub fn ids_equal(a: &IdPayload, b: &IdPayload) -> bool {
    if a.id_type != b.id_type {
        return false;
    }
    if a.id_type == IdType::DER_ASN1_DN {
        if let (Some(x), Some(y)) = (Dn::from_der(&a.data), Dn::from_der(&b.data)) {
            return x == y;
        }
    }
    a.data == b.data
}

/// True if `id` belongs to `cert`: a DN equal to its subject, or an FQDN / RFC822 / IP
/// address among its subjectAltNames.
pub fn id_in_cert(id: &IdPayload, cert: &X509Certificate<'_>) -> bool {
    if id.id_type == IdType::DER_ASN1_DN {
        return Dn::from_der(&id.data).is_some_and(|d| d == Dn::from_name(cert.subject()));
    }
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    san.value
        .general_names
        .iter()
        .any(|g| match (id.id_type, g) {
            (IdType::FQDN, GeneralName::DNSName(n))
            | (IdType::RFC822_ADDR, GeneralName::RFC822Name(n)) => {
                n.as_bytes().eq_ignore_ascii_case(&id.data)
            }
            (IdType::IPV4_ADDR | IdType::IPV6_ADDR, GeneralName::IPAddress(a)) => {
                *a == id.data.as_slice()
            }
            _ => false,
        })
}

/// [`id_in_cert`] for a DER certificate; false if it does not parse.
pub fn id_in_cert_der(id: &IdPayload, der: &[u8]) -> bool {
    x509_parser::parse_x509_certificate(der).is_ok_and(|(_, c)| id_in_cert(id, &c))
}

/// "2025-06-01 12:00:00 UTC" for seconds since the Unix epoch.
pub fn format_unix_date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        tod / 3600,
        tod % 3600 / 60,
        tod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_parse_encode_display_round_trip() {
        let dn = Dn::parse("c=CH,  O=Lab, CN=routerB").unwrap();
        assert_eq!(dn.to_string(), "C=CH, O=Lab, CN=routerB");
        assert_eq!(Dn::from_der(&dn.to_der()).unwrap(), dn);
        assert_eq!(dn, Dn::parse("C=ch, O=LAB, CN=routerb").unwrap());
        assert_ne!(dn, Dn::parse("C=CH, O=Lab, CN=routerA").unwrap());
        assert_ne!(dn, Dn::parse("O=Lab, C=CH, CN=routerB").unwrap());
        assert!(Dn::parse("C=CH, XX=1").unwrap_err().contains("XX"));
        assert!(Dn::parse("routerB").is_err());
        assert_eq!(Dn::from_der(&[0x30, 0x01]), None);
    }

    #[test]
    fn dates() {
        assert_eq!(format_unix_date(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(format_unix_date(1_609_459_200), "2021-01-01 00:00:00 UTC");
        assert_eq!(
            format_unix_date(951_782_400 + 3661),
            "2000-02-29 01:01:01 UTC"
        );
    }

    #[test]
    fn ids_against_a_certificate() {
        let pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/certs/b-p256.pem"
        ))
        .unwrap();
        let der = super::super::credentials::pem_certificates(&pem)
            .unwrap()
            .remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let dn = Dn::parse("C=CH, O=Lab, CN=routerB").unwrap();
        assert!(id_in_cert(
            &IdPayload::new(IdType::DER_ASN1_DN, dn.to_der()),
            &cert
        ));
        assert!(id_in_cert(
            &IdPayload::new(IdType::DER_ASN1_DN, cert.subject().as_raw().to_vec()),
            &cert
        ));
        assert!(id_in_cert(&IdPayload::fqdn("routerB.example"), &cert));
        assert!(id_in_cert(&IdPayload::rfc822("routerb@lab.example"), &cert));
        assert!(id_in_cert(
            &IdPayload::ip("192.0.2.2".parse().unwrap()),
            &cert
        ));
        assert!(!id_in_cert(&IdPayload::fqdn("routerA.example"), &cert));
        assert!(!id_in_cert(
            &IdPayload::ip("192.0.2.1".parse().unwrap()),
            &cert
        ));
        let other = Dn::parse("C=CH, O=Lab, CN=routerA").unwrap();
        assert!(!id_in_cert(
            &IdPayload::new(IdType::DER_ASN1_DN, other.to_der()),
            &cert
        ));
        // The CN alone is not a subjectAltName (strongSwan does not match it either).
        assert!(!id_in_cert(&IdPayload::fqdn("routerB"), &cert));
    }
}
