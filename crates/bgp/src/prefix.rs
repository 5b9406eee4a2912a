//! IP prefixes, their NLRI encoding (RFC 4271 §4.3, RFC 4760 §5) and prefix lists.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::limits::{MAX_PREFIX_LEN_V4, MAX_PREFIX_LEN_V6};
use crate::wire::{Afi, DecodeError, Reader};

/// An IPv4 or IPv6 prefix with host bits cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Prefix {
    addr: IpAddr,
    len: u8,
}

/// Errors building or parsing a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// Length exceeds 32 (IPv4) or 128 (IPv6).
    #[error("prefix length {0} too long")]
    BadLength(u8),
    /// Text is not `addr/len`.
    #[error("invalid prefix syntax: {0}")]
    Syntax(String),
}

fn mask_v4(a: Ipv4Addr, len: u8) -> Ipv4Addr {
    let bits = u32::from(a);
    let m = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    Ipv4Addr::from(bits & m)
}

fn mask_v6(a: Ipv6Addr, len: u8) -> Ipv6Addr {
    let bits = u128::from(a);
    let m = if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    };
    Ipv6Addr::from(bits & m)
}

impl Prefix {
    /// Build a prefix, clearing host bits.
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, PrefixError> {
        match addr {
            IpAddr::V4(a) if len <= MAX_PREFIX_LEN_V4 => Ok(Self {
                addr: IpAddr::V4(mask_v4(a, len)),
                len,
            }),
            IpAddr::V6(a) if len <= MAX_PREFIX_LEN_V6 => Ok(Self {
                addr: IpAddr::V6(mask_v6(a, len)),
                len,
            }),
            _ => Err(PrefixError::BadLength(len)),
        }
    }

    /// Network address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Prefix length in bits.
    #[allow(clippy::len_without_is_empty)] // a prefix length, not a container
    pub fn len(&self) -> u8 {
        self.len
    }

    /// Whether this is the zero-length default route.
    pub fn is_default(&self) -> bool {
        self.len == 0
    }

    /// Address family of the prefix.
    pub fn afi(&self) -> Afi {
        match self.addr {
            IpAddr::V4(_) => Afi::IPV4,
            IpAddr::V6(_) => Afi::IPV6,
        }
    }

    /// Maximum length for this family.
    pub fn max_len(&self) -> u8 {
        match self.addr {
            IpAddr::V4(_) => MAX_PREFIX_LEN_V4,
            IpAddr::V6(_) => MAX_PREFIX_LEN_V6,
        }
    }

    /// Whether `other` lies inside this prefix (or equals it).
    pub fn contains(&self, other: &Prefix) -> bool {
        if other.len < self.len {
            return false;
        }
        match (self.addr, other.addr) {
            (IpAddr::V4(_), IpAddr::V4(b)) => IpAddr::V4(mask_v4(b, self.len)) == self.addr,
            (IpAddr::V6(_), IpAddr::V6(b)) => IpAddr::V6(mask_v6(b, self.len)) == self.addr,
            _ => false,
        }
    }

    /// Read one NLRI entry `<length, prefix>` of family `afi` (RFC 4271 §4.3). Trailing
    /// host bits are cleared.
    pub fn read(r: &mut Reader<'_>, afi: Afi) -> Result<Self, DecodeError> {
        let len = r.u8()?;
        let max = if afi == Afi::IPV6 {
            MAX_PREFIX_LEN_V6
        } else {
            MAX_PREFIX_LEN_V4
        };
        if len > max {
            return Err(DecodeError::BadPrefixLength(len));
        }
        let nbytes = usize::from(len).div_ceil(8);
        let bytes = r.bytes(nbytes)?;
        if afi == Afi::IPV6 {
            let mut a = [0u8; 16];
            a.get_mut(..nbytes)
                .ok_or(DecodeError::Truncated)?
                .copy_from_slice(bytes);
            Ok(Self::new(IpAddr::V6(Ipv6Addr::from(a)), len)
                .map_err(|_| DecodeError::BadPrefixLength(len))?)
        } else {
            let mut a = [0u8; 4];
            a.get_mut(..nbytes)
                .ok_or(DecodeError::Truncated)?
                .copy_from_slice(bytes);
            Ok(Self::new(IpAddr::V4(Ipv4Addr::from(a)), len)
                .map_err(|_| DecodeError::BadPrefixLength(len))?)
        }
    }

    /// Read NLRI entries of family `afi` until `buf` is exhausted.
    pub fn read_all(buf: &[u8], afi: Afi) -> Result<Vec<Self>, DecodeError> {
        let mut r = Reader::new(buf);
        let mut out = Vec::new();
        while !r.is_empty() {
            out.push(Self::read(&mut r, afi)?);
        }
        Ok(out)
    }

    /// Encoded size in octets.
    pub fn encoded_len(&self) -> usize {
        1 + usize::from(self.len).div_ceil(8)
    }

    /// Append the NLRI encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.len);
        let n = usize::from(self.len).div_ceil(8);
        match self.addr {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..n]),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..n]),
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Prefix {
    type Err = PrefixError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| PrefixError::Syntax(s.to_string()))?;
        let addr: IpAddr = a.parse().map_err(|_| PrefixError::Syntax(s.to_string()))?;
        let len: u8 = l.parse().map_err(|_| PrefixError::Syntax(s.to_string()))?;
        Self::new(addr, len)
    }
}

/// Permit or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Accept the prefix.
    Permit,
    /// Reject the prefix.
    Deny,
}

/// One prefix-list line: `permit|deny PREFIX [ge N] [le M]`.
///
/// Without `ge`/`le` it matches exactly `PREFIX`; with them it matches every prefix inside
/// `PREFIX` whose length is in `[ge (default PREFIX.len), le (default max)]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrefixListEntry {
    /// What to do on a match.
    pub action: Action,
    /// Covering prefix.
    pub prefix: Prefix,
    /// Minimum length matched.
    pub ge: Option<u8>,
    /// Maximum length matched.
    pub le: Option<u8>,
}

impl PrefixListEntry {
    /// Whether `p` matches this line.
    pub fn matches(&self, p: &Prefix) -> bool {
        if !self.prefix.contains(p) {
            return false;
        }
        let (lo, hi) = match (self.ge, self.le) {
            (None, None) => (self.prefix.len, self.prefix.len),
            (Some(g), None) => (g, p.max_len()),
            (None, Some(l)) => (self.prefix.len, l),
            (Some(g), Some(l)) => (g, l),
        };
        p.len >= lo && p.len <= hi
    }
}

impl FromStr for PrefixListEntry {
    type Err = PrefixError;
    /// Parse `permit 10.0.0.0/8 le 24` (the action word is optional, default permit).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || PrefixError::Syntax(s.to_string());
        let mut words = s.split_whitespace().peekable();
        let action = match words.peek().copied() {
            Some("permit") => {
                words.next();
                Action::Permit
            }
            Some("deny") => {
                words.next();
                Action::Deny
            }
            _ => Action::Permit,
        };
        let prefix: Prefix = words.next().ok_or_else(bad)?.parse()?;
        let (mut ge, mut le) = (None, None);
        while let Some(k) = words.next() {
            let v: u8 = words.next().ok_or_else(bad)?.parse().map_err(|_| bad())?;
            if v > prefix.max_len() || v < prefix.len() {
                return Err(PrefixError::BadLength(v));
            }
            match k {
                "ge" => ge = Some(v),
                "le" => le = Some(v),
                _ => return Err(bad()),
            }
        }
        Ok(Self {
            action,
            prefix,
            ge,
            le,
        })
    }
}

/// Ordered prefix list; the first matching line decides, no match denies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrefixList {
    /// Lines in order.
    pub entries: Vec<PrefixListEntry>,
}

impl PrefixList {
    /// Parse one line per entry.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Self, PrefixError> {
        let entries = lines
            .into_iter()
            .map(str::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { entries })
    }

    /// Whether `p` is permitted.
    pub fn permits(&self, p: &Prefix) -> bool {
        self.entries
            .iter()
            .find(|e| e.matches(p))
            .is_some_and(|e| e.action == Action::Permit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    #[test]
    fn masks_host_bits_and_roundtrips_nlri() {
        let x = p("10.1.2.3/16");
        assert_eq!(x.to_string(), "10.1.0.0/16");
        let mut b = Vec::new();
        x.encode(&mut b);
        assert_eq!(b, [16, 10, 1]);
        assert_eq!(Prefix::read_all(&b, Afi::IPV4).unwrap(), vec![x]);
        let y = p("2001:db8::/33");
        let mut b = Vec::new();
        y.encode(&mut b);
        assert_eq!(b.len(), 6);
        assert_eq!(Prefix::read_all(&b, Afi::IPV6).unwrap(), vec![y]);
    }

    #[test]
    fn rejects_bad_nlri() {
        assert!(Prefix::read_all(&[33, 1, 2, 3, 4, 5], Afi::IPV4).is_err());
        assert!(Prefix::read_all(&[24, 1, 2], Afi::IPV4).is_err());
        assert!(Prefix::read_all(&[129], Afi::IPV6).is_err());
    }

    #[test]
    fn prefix_list_semantics() {
        let l = PrefixList::parse([
            "deny 10.0.0.0/8 ge 30",
            "permit 10.0.0.0/8 le 24",
            "permit 192.0.2.0/24",
            "permit 2001:db8::/32 ge 48 le 64",
        ])
        .unwrap();
        assert!(l.permits(&p("10.0.0.0/8")));
        assert!(l.permits(&p("10.9.0.0/24")));
        assert!(!l.permits(&p("10.9.0.0/25")));
        assert!(!l.permits(&p("10.9.0.0/30")));
        assert!(l.permits(&p("192.0.2.0/24")));
        assert!(!l.permits(&p("192.0.2.0/25")));
        assert!(l.permits(&p("2001:db8:1::/48")));
        assert!(!l.permits(&p("2001:db8::/32")));
        assert!(!l.permits(&p("198.51.100.0/24")));
        assert!("permit 10.0.0.0/8 le 4".parse::<PrefixListEntry>().is_err());
    }
}
