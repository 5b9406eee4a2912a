//! Identification payloads IDi/IDr (RFC 7296 §3.5).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{DecodeError, Reader};
use crate::iana::IdType;

/// IDi / IDr payload body (§3.5).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdPayload {
    pub id_type: IdType,
    /// Kept as received: the AUTH computation covers it (§2.15).
    pub reserved: [u8; 3],
    pub data: Vec<u8>,
}

impl IdPayload {
    /// An identity of `id_type` with `data`, reserved octets zero.
    pub fn new(id_type: IdType, data: Vec<u8>) -> Self {
        Self {
            id_type,
            reserved: [0; 3],
            data,
        }
    }

    /// ID_IPV4_ADDR.
    pub fn ipv4(addr: Ipv4Addr) -> Self {
        Self::new(IdType::IPV4_ADDR, addr.octets().to_vec())
    }

    /// ID_IPV6_ADDR.
    pub fn ipv6(addr: Ipv6Addr) -> Self {
        Self::new(IdType::IPV6_ADDR, addr.octets().to_vec())
    }

    /// ID_IPV4_ADDR or ID_IPV6_ADDR.
    pub fn ip(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(a) => Self::ipv4(a),
            IpAddr::V6(a) => Self::ipv6(a),
        }
    }

    /// ID_FQDN (no terminator, §3.5).
    pub fn fqdn(name: &str) -> Self {
        Self::new(IdType::FQDN, name.as_bytes().to_vec())
    }

    /// ID_RFC822_ADDR, e.g. "user@example.com".
    pub fn rfc822(addr: &str) -> Self {
        Self::new(IdType::RFC822_ADDR, addr.as_bytes().to_vec())
    }

    /// ID_KEY_ID: opaque octets.
    pub fn key_id(id: &[u8]) -> Self {
        Self::new(IdType::KEY_ID, id.to_vec())
    }

    /// "RestOfInitIDPayload"/"RestOfRespIDPayload" (§2.15): ID Type, RESERVED and the
    /// identification data, i.e. the payload without its generic header.
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.data.len());
        self.encode(&mut out);
        out
    }

    pub(super) fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        Ok(Self {
            id_type: IdType(r.u8()?),
            reserved: r.array()?,
            data: r.rest().to_vec(),
        })
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.id_type.0);
        out.extend_from_slice(&self.reserved);
        out.extend_from_slice(&self.data);
    }

    /// The address of an ID_IPV4_ADDR / ID_IPV6_ADDR of the right size.
    pub fn ip_addr(&self) -> Option<IpAddr> {
        match self.id_type {
            IdType::IPV4_ADDR => <[u8; 4]>::try_from(self.data.as_slice())
                .ok()
                .map(|a| IpAddr::from(Ipv4Addr::from(a))),
            IdType::IPV6_ADDR => <[u8; 16]>::try_from(self.data.as_slice())
                .ok()
                .map(|a| IpAddr::from(Ipv6Addr::from(a))),
            _ => None,
        }
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, data: &[u8]) -> fmt::Result {
    data.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// Peer-chosen text printed with non-printable characters replaced, so a hostile ID
/// cannot forge log lines.
fn write_printable(f: &mut fmt::Formatter<'_>, data: &[u8]) -> fmt::Result {
    data.iter().try_for_each(|&b| {
        let c = if b.is_ascii_graphic() || b == b' ' {
            char::from(b)
        } else {
            '?'
        };
        write!(f, "{c}")
    })
}

/// Like strongSwan's identities: "192.0.2.1", "2001:db8::1", "routerA",
/// "user@example.com", "@#0a0b" (KEY_ID); DNs and general names are printed in
/// strongSwan's `asn1dn:#hex` / `asn1gn:#hex` input syntax.
impl fmt::Display for IdPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id_type {
            IdType::IPV4_ADDR | IdType::IPV6_ADDR => match self.ip_addr() {
                Some(a) => write!(f, "{a}"),
                None => write!(f, "(invalid {})", self.id_type),
            },
            IdType::FQDN | IdType::RFC822_ADDR => write_printable(f, &self.data),
            IdType::KEY_ID => {
                f.write_str("@#")?;
                write_hex(f, &self.data)
            }
            IdType::DER_ASN1_DN => {
                f.write_str("asn1dn:#")?;
                write_hex(f, &self.data)
            }
            IdType::DER_ASN1_GN => {
                f.write_str("asn1gn:#")?;
                write_hex(f, &self.data)
            }
            IdType(t) => {
                write!(f, "({t}:#")?;
                write_hex(f, &self.data)?;
                f.write_str(")")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_like_strongswan() {
        assert_eq!(
            IdPayload::ipv4(Ipv4Addr::new(192, 0, 2, 1)).to_string(),
            "192.0.2.1"
        );
        assert_eq!(
            IdPayload::ipv6("2001:db8::1".parse().unwrap()).to_string(),
            "2001:db8::1"
        );
        assert_eq!(IdPayload::fqdn("routerA").to_string(), "routerA");
        assert_eq!(
            IdPayload::rfc822("a@example.com").to_string(),
            "a@example.com"
        );
        assert_eq!(IdPayload::key_id(&[0x0a, 0xb0]).to_string(), "@#0ab0");
        assert_eq!(IdPayload::fqdn("a\nb").to_string(), "a?b");
        assert_eq!(
            IdPayload::new(IdType::IPV4_ADDR, vec![1, 2]).to_string(),
            "(invalid ID_IPV4_ADDR)"
        );
        assert_eq!(
            IdPayload::new(IdType(200), vec![1]).to_string(),
            "(200:#01)"
        );
        assert_eq!(
            IdPayload::new(IdType::DER_ASN1_DN, vec![0x30, 0]).to_string(),
            "asn1dn:#3000"
        );
    }

    #[test]
    fn body_is_rest_of_id_payload() {
        // §2.15 / §3.5: ID Type, 3 RESERVED octets, data.
        let mut id = IdPayload::ipv4(Ipv4Addr::new(198, 51, 100, 7));
        assert_eq!(hex::encode(id.body()), "01000000c6336407");
        id.reserved = [1, 2, 3];
        let body = id.body();
        assert_eq!(IdPayload::decode(&body).unwrap(), id);
        assert_eq!(IdPayload::decode(&[1, 0, 0]), Err(DecodeError::Truncated));
        assert_eq!(id.ip_addr(), Some(IpAddr::from([198, 51, 100, 7])));
    }
}
