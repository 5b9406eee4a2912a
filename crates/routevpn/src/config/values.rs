//! Value parsers shared by the `[[tunnel]]` and `[bgp]` tables: durations, identities,
//! pre-shared keys, prefixes and string lists.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use ike::iana::IdType;
use ipnet::IpNet;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;
use zeroize::Zeroizing;

/// Parses "100ms", "10s", "5m", "4h", "1d" and compounds like "1h30m" (humantime's
/// units); a bare number means seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = s.parse::<u64>() {
            return Ok(Duration::from_secs(n));
        }
    }
    humantime::parse_duration(s).map_err(|e| match e {
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("invalid duration unit {unit:?} in {s:?} (use ms, s, m, h or d)")
        }
        _ => format!(
            "invalid duration {s:?} (examples: \"100ms\", \"10s\", \"5m\", \"4h\", \"1h30m\")"
        ),
    })
}

/// An IKE identity (RFC 7296 §3.5), written as in strongSwan.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    Ipv4(Ipv4Addr),
    Ipv6(Ipv6Addr),
    Fqdn(String),
    Rfc822(String),
    KeyId(Vec<u8>),
    /// ID_DER_ASN1_DN, kept as DER; written as in strongSwan: "C=CH, O=Lab, CN=routerB".
    Dn(Vec<u8>),
}

impl Identity {
    /// strongSwan rules: an IP address is ID_IPV4_ADDR/ID_IPV6_ADDR; `@#hex` is
    /// ID_KEY_ID; `@@user@host` and `user@host` are ID_RFC822_ADDR; `@name` and
    /// anything else is ID_FQDN (the leading `@` only forces the FQDN type).
    pub fn parse(s: &str) -> Result<Identity, String> {
        if s.is_empty() {
            return Err("empty identity".into());
        }
        if s.chars().any(|c| c.is_control()) {
            return Err(format!("identity {s:?} contains control characters"));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Identity::from_addr(ip));
        }
        let non_empty = |rest: &str, what: &str| {
            if rest.is_empty() {
                Err(format!("identity {s:?}: empty {what}"))
            } else {
                Ok(rest.to_string())
            }
        };
        if let Some(digits) = s.strip_prefix("@#") {
            let bytes = hex::decode(digits)
                .map_err(|_| format!("identity {s:?}: \"@#\" must be followed by hex digits"))?;
            if bytes.is_empty() {
                return Err(format!("identity {s:?}: empty key id"));
            }
            return Ok(Identity::KeyId(bytes));
        }
        if let Some(rest) = s.strip_prefix("@@") {
            return non_empty(rest, "email address").map(Identity::Rfc822);
        }
        if let Some(rest) = s.strip_prefix('@') {
            return non_empty(rest, "name").map(Identity::Fqdn);
        }
        if s.contains('@') {
            return Ok(Identity::Rfc822(s.to_string()));
        }
        if ike::cert::Dn::looks_like_dn(s) {
            let dn = ike::cert::Dn::parse(s)
                .map_err(|e| format!("identity {s:?} is not a distinguished name: {e}"))?;
            return Ok(Identity::Dn(dn.to_der()));
        }
        Ok(Identity::Fqdn(s.to_string()))
    }

    /// The identity of an IP address.
    pub fn from_addr(ip: IpAddr) -> Identity {
        match ip {
            IpAddr::V4(a) => Identity::Ipv4(a),
            IpAddr::V6(a) => Identity::Ipv6(a),
        }
    }

    /// The ID payload's ID Type (RFC 7296 §3.5).
    pub fn id_type(&self) -> IdType {
        match self {
            Identity::Ipv4(_) => IdType::IPV4_ADDR,
            Identity::Ipv6(_) => IdType::IPV6_ADDR,
            Identity::Fqdn(_) => IdType::FQDN,
            Identity::Rfc822(_) => IdType::RFC822_ADDR,
            Identity::KeyId(_) => IdType::KEY_ID,
            Identity::Dn(_) => IdType::DER_ASN1_DN,
        }
    }

    /// The ID payload's Identification Data.
    pub fn data(&self) -> Vec<u8> {
        match self {
            Identity::Ipv4(a) => a.octets().to_vec(),
            Identity::Ipv6(a) => a.octets().to_vec(),
            Identity::Fqdn(s) | Identity::Rfc822(s) => s.as_bytes().to_vec(),
            Identity::KeyId(k) | Identity::Dn(k) => k.clone(),
        }
    }

    /// Decode a received ID payload; `None` for types we don't handle or malformed data.
    pub fn from_payload(id_type: IdType, data: &[u8]) -> Option<Identity> {
        match id_type {
            IdType::IPV4_ADDR => <[u8; 4]>::try_from(data)
                .ok()
                .map(|o| Identity::Ipv4(o.into())),
            IdType::IPV6_ADDR => <[u8; 16]>::try_from(data)
                .ok()
                .map(|o| Identity::Ipv6(o.into())),
            IdType::FQDN => String::from_utf8(data.to_vec()).ok().map(Identity::Fqdn),
            IdType::RFC822_ADDR => String::from_utf8(data.to_vec()).ok().map(Identity::Rfc822),
            IdType::KEY_ID => Some(Identity::KeyId(data.to_vec())),
            IdType::DER_ASN1_DN => {
                ike::cert::Dn::from_der(data).map(|_| Identity::Dn(data.to_vec()))
            }
            _ => None,
        }
    }
}

impl FromStr for Identity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Identity::parse(s)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Ipv4(a) => a.fmt(f),
            Identity::Ipv6(a) => a.fmt(f),
            Identity::Fqdn(s) | Identity::Rfc822(s) => f.write_str(s),
            Identity::Dn(der) => match ike::cert::Dn::from_der(der) {
                Some(dn) => write!(f, "{dn}"),
                None => write!(f, "asn1dn:#{}", hex::encode(der)),
            },
            Identity::KeyId(k) => {
                f.write_str("@#")?;
                f.write_str(&hex::encode(k))
            }
        }
    }
}

/// A pre-shared key; zeroized on drop, never printed.
#[derive(Clone)]
pub struct Psk(Zeroizing<Vec<u8>>);

impl PartialEq for Psk {
    fn eq(&self, other: &Psk) -> bool {
        aws_lc_rs::constant_time::verify_slices_are_equal(&self.0, &other.0).is_ok()
    }
}

impl Psk {
    pub fn new(bytes: Vec<u8>) -> Psk {
        Psk(Zeroizing::new(bytes))
    }

    /// strongSwan syntax: `0x` followed by hex digits is binary, anything else is taken
    /// literally.
    pub fn from_config_str(s: &str) -> Result<Psk, String> {
        let psk = match s.strip_prefix("0x") {
            Some(digits) => {
                Psk::new(hex::decode(digits).map_err(|_| "psk: invalid hex after \"0x\"")?)
            }
            None => Psk::new(s.as_bytes().to_vec()),
        };
        if psk.as_bytes().is_empty() {
            return Err("psk is empty".into());
        }
        Ok(psk)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key in its zeroizing buffer (clone it to hand it to the IKE core).
    pub fn secret(&self) -> &Zeroizing<Vec<u8>> {
        &self.0
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A list of strings also accepted as a single string; elements keep their spans.
#[derive(Debug)]
pub(super) struct StrList(pub(super) Vec<Spanned<String>>);

impl<'de> Deserialize<'de> for StrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StrList, E> {
                // No span of its own: the caller falls back to the key's span.
                Ok(StrList(vec![Spanned::new(0..0, v.to_string())]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrList, A::Error> {
                let mut v = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<String>>()? {
                    v.push(s);
                }
                Ok(StrList(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// The span of a list element, or of the whole key for a bare string.
pub(super) fn item_span(item: &Spanned<String>, outer: Range<usize>) -> Range<usize> {
    if item.span().is_empty() {
        outer
    } else {
        item.span()
    }
}

/// `addr/len` or a bare address (a host prefix).
pub(super) fn parse_prefix(s: &str) -> Result<IpNet, String> {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let addr: IpAddr = addr
        .trim()
        .parse()
        .map_err(|_| format!("invalid prefix \"{s}\": expected an address like 10.0.0.0/24"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(l) => match l.trim().parse::<u8>() {
            Ok(l) if l <= max => l,
            _ => {
                return Err(format!(
                    "invalid prefix length in \"{s}\": expected 0..={max}"
                ))
            }
        },
    };
    IpNet::new(addr, len)
        .map_err(|_| format!("invalid prefix length in \"{s}\": expected 0..={max}"))
}

/// A prefix naming a network: host bits must be zero (likely a typo otherwise).
pub(super) fn parse_network(s: &str) -> Result<IpNet, String> {
    let net = parse_prefix(s)?;
    if net.trunc() != net {
        return Err(format!(
            "\"{s}\" has host bits set (did you mean {}?)",
            net.trunc()
        ));
    }
    Ok(net)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok: &[(&str, Duration)] = &[
            ("100ms", Duration::from_millis(100)),
            ("10s", Duration::from_secs(10)),
            ("10", Duration::from_secs(10)),
            (" 5m ", Duration::from_secs(300)),
            ("4h", Duration::from_secs(4 * 3600)),
            ("1d", Duration::from_secs(86400)),
            ("1h30m", Duration::from_secs(5400)),
        ];
        for (s, d) in ok {
            assert_eq!(parse_duration(s), Ok(*d), "{s:?}");
        }
        for bad in ["", "s", "-1s", "10q", "1.5.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
        assert!(parse_duration("10q").unwrap_err().contains("unit"));
    }

    #[test]
    fn identities() {
        let cases: &[(&str, Identity, IdType, &str)] = &[
            (
                "192.0.2.1",
                Identity::Ipv4("192.0.2.1".parse().unwrap()),
                IdType::IPV4_ADDR,
                "192.0.2.1",
            ),
            (
                "2001:db8::1",
                Identity::Ipv6("2001:db8::1".parse().unwrap()),
                IdType::IPV6_ADDR,
                "2001:db8::1",
            ),
            (
                "routerA",
                Identity::Fqdn("routerA".into()),
                IdType::FQDN,
                "routerA",
            ),
            (
                "@vpn.example.org",
                Identity::Fqdn("vpn.example.org".into()),
                IdType::FQDN,
                "vpn.example.org",
            ),
            (
                "@192.0.2.1",
                Identity::Fqdn("192.0.2.1".into()),
                IdType::FQDN,
                "192.0.2.1",
            ),
            (
                "alice@example.org",
                Identity::Rfc822("alice@example.org".into()),
                IdType::RFC822_ADDR,
                "alice@example.org",
            ),
            (
                "@@alice@example.org",
                Identity::Rfc822("alice@example.org".into()),
                IdType::RFC822_ADDR,
                "alice@example.org",
            ),
            (
                "@#0a0B",
                Identity::KeyId(vec![0x0a, 0x0b]),
                IdType::KEY_ID,
                "@#0a0b",
            ),
        ];
        for (s, id, ty, shown) in cases {
            let got = Identity::parse(s).unwrap();
            assert_eq!(&got, id, "{s}");
            assert_eq!(got.id_type(), *ty, "{s}");
            assert_eq!(got.to_string(), *shown, "{s}");
            assert_eq!(
                Identity::from_payload(got.id_type(), &got.data()).as_ref(),
                Some(id)
            );
        }
        assert_eq!(
            Identity::parse("192.0.2.1").unwrap().data(),
            vec![192, 0, 2, 1]
        );
        assert_eq!(Identity::parse("@a.b").unwrap().data(), b"a.b".to_vec());
        for bad in [
            "",
            "@",
            "@@",
            "@#",
            "@#abc",
            "@#zz",
            "a\nb",
            "XX=x, O=y",
            "CN=",
        ] {
            assert!(Identity::parse(bad).is_err(), "{bad:?}");
        }
        // A DN in strongSwan's syntax is ID_DER_ASN1_DN.
        let dn = Identity::parse("c=CH,O=Lab, CN=routerB").unwrap();
        assert_eq!(dn.id_type(), IdType::DER_ASN1_DN);
        assert_eq!(dn.to_string(), "C=CH, O=Lab, CN=routerB");
        assert_eq!(
            Identity::from_payload(IdType::DER_ASN1_DN, &dn.data()),
            Some(dn)
        );
        assert_eq!(Identity::from_payload(IdType::IPV4_ADDR, &[1, 2, 3]), None);
        assert_eq!(Identity::from_payload(IdType::DER_ASN1_DN, &[1]), None);
        assert_eq!(Identity::from_payload(IdType::FQDN, &[0xff]), None);
    }
}
