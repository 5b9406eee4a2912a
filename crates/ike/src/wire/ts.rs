//! Traffic Selector payloads TSi/TSr (RFC 7296 §3.13).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{patch_len16, push_len16, u8_len, DecodeError, Reader};
use crate::iana::TsType;

/// TSi / TSr payload body (§3.13).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TsPayload {
    pub selectors: Vec<TrafficSelector>,
}

/// One traffic selector (§3.13.1).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TrafficSelector {
    /// TS_IPV4_ADDR_RANGE or TS_IPV6_ADDR_RANGE; `start`/`end` are of the type's family.
    Range {
        ts_type: TsType,
        /// 0 = any protocol.
        ip_protocol: u8,
        start_port: u16,
        end_port: u16,
        start: IpAddr,
        end: IpAddr,
    },
    /// A selector type we do not parse. `body` is the selector without its TS Type and
    /// Selector Length fields: the second octet followed by everything after the length.
    Unknown { ts_type: TsType, body: Vec<u8> },
}

/// §3.13.1 Selector Length of the two address-range types.
const V4_LEN: usize = 16;
const V6_LEN: usize = 40;

impl TrafficSelector {
    /// 0.0.0.0–255.255.255.255, any protocol, ports 0–65535.
    pub fn any_v4() -> Self {
        Self::from_prefix(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    }

    /// ::–ffff:…:ffff, any protocol, ports 0–65535.
    pub fn any_v6() -> Self {
        Self::from_prefix(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0)
    }

    /// The range covering `addr/prefix_len` (host bits ignored; the length is clamped to
    /// the family's width), any protocol, ports 0–65535.
    pub fn from_prefix(addr: IpAddr, prefix_len: u8) -> Self {
        let (ts_type, start, end) = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(prefix_len.min(32)))
                    .unwrap_or(0);
                let a = u32::from(a);
                (
                    TsType::IPV4_ADDR_RANGE,
                    IpAddr::V4(Ipv4Addr::from(a & mask)),
                    IpAddr::V4(Ipv4Addr::from(a | !mask)),
                )
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(prefix_len.min(128)))
                    .unwrap_or(0);
                let a = u128::from(a);
                (
                    TsType::IPV6_ADDR_RANGE,
                    IpAddr::V6(Ipv6Addr::from(a & mask)),
                    IpAddr::V6(Ipv6Addr::from(a | !mask)),
                )
            }
        };
        TrafficSelector::Range {
            ts_type,
            ip_protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
            start,
            end,
        }
    }

    /// The TS Type field.
    pub fn ts_type(&self) -> TsType {
        match self {
            TrafficSelector::Range { ts_type, .. } | TrafficSelector::Unknown { ts_type, .. } => {
                *ts_type
            }
        }
    }

    /// `(network, prefix length)` if this is an address range that is exactly one prefix.
    pub fn prefix(&self) -> Option<(IpAddr, u8)> {
        let TrafficSelector::Range { start, end, .. } = self else {
            return None;
        };
        let (s, e, width) = match (start, end) {
            (IpAddr::V4(s), IpAddr::V4(e)) => {
                (u128::from(u32::from(*s)), u128::from(u32::from(*e)), 32)
            }
            (IpAddr::V6(s), IpAddr::V6(e)) => (u128::from(*s), u128::from(*e), 128),
            _ => return None,
        };
        let host = s ^ e;
        // host bits must be a run of low ones, all zero in start and all one in end.
        if host & host.wrapping_add(1) != 0 || s & host != 0 || e < s {
            return None;
        }
        let len = width - host.count_ones();
        Some((*start, u8::try_from(len).ok()?))
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let ts_type = TsType(r.u8()?);
        let second = r.u8()?;
        let len = usize::from(r.u16()?);
        let mut s = r.sub(len.checked_sub(4).ok_or(DecodeError::BadLength)?)?;
        let addr_len = match ts_type {
            TsType::IPV4_ADDR_RANGE if len == V4_LEN => 4,
            TsType::IPV6_ADDR_RANGE if len == V6_LEN => 16,
            TsType::IPV4_ADDR_RANGE | TsType::IPV6_ADDR_RANGE => {
                return Err(DecodeError::BadLength)
            }
            _ => {
                let mut body = vec![second];
                body.extend_from_slice(s.rest());
                return Ok(TrafficSelector::Unknown { ts_type, body });
            }
        };
        let start_port = s.u16()?;
        let end_port = s.u16()?;
        let (start, end) = if addr_len == 4 {
            (
                IpAddr::V4(Ipv4Addr::from(s.array::<4>()?)),
                IpAddr::V4(Ipv4Addr::from(s.array::<4>()?)),
            )
        } else {
            (
                IpAddr::V6(Ipv6Addr::from(s.array::<16>()?)),
                IpAddr::V6(Ipv6Addr::from(s.array::<16>()?)),
            )
        };
        s.finish()?;
        Ok(TrafficSelector::Range {
            ts_type,
            ip_protocol: second,
            start_port,
            end_port,
            start,
            end,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let begin = out.len();
        match self {
            TrafficSelector::Range {
                ts_type,
                ip_protocol,
                start_port,
                end_port,
                start,
                end,
            } => {
                out.push(ts_type.0);
                out.push(*ip_protocol);
                let len = push_len16(out);
                out.extend_from_slice(&start_port.to_be_bytes());
                out.extend_from_slice(&end_port.to_be_bytes());
                for a in [start, end] {
                    match a {
                        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
                    }
                }
                patch_len16(out, len, begin);
            }
            TrafficSelector::Unknown { ts_type, body } => {
                out.push(ts_type.0);
                let (second, rest) = body.split_first().map_or((0, &[][..]), |(s, r)| (*s, r));
                out.push(second);
                let len = push_len16(out);
                out.extend_from_slice(rest);
                patch_len16(out, len, begin);
            }
        }
    }
}

fn proto_name(p: u8) -> Option<&'static str> {
    Some(match p {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        58 => "ipv6-icmp",
        _ => return None,
    })
}

/// strongSwan-like: `10.0.0.0/24`, `10.0.0.1..10.0.0.5`, `192.0.2.0/24[tcp/80]`.
impl fmt::Display for TrafficSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrafficSelector::Range {
                ip_protocol,
                start_port,
                end_port,
                start,
                end,
                ..
            } => {
                match self.prefix() {
                    Some((net, len)) => write!(f, "{net}/{len}")?,
                    None => write!(f, "{start}..{end}")?,
                }
                let any_port = *start_port == 0 && *end_port == u16::MAX;
                if *ip_protocol == 0 && any_port {
                    return Ok(());
                }
                match proto_name(*ip_protocol) {
                    Some(n) => write!(f, "[{n}")?,
                    None => write!(f, "[{ip_protocol}")?,
                }
                if any_port {
                    f.write_str("]")
                } else if start_port == end_port {
                    write!(f, "/{start_port}]")
                } else {
                    write!(f, "/{start_port}-{end_port}]")
                }
            }
            TrafficSelector::Unknown { ts_type, body } => {
                write!(f, "({ts_type}, {} octets)", body.len())
            }
        }
    }
}

impl TsPayload {
    pub(super) fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let n = r.u8()?;
        let _reserved = r.bytes(3)?; // §3.13: ignored on receipt
        let selectors = (0..n)
            .map(|_| TrafficSelector::read(&mut r))
            .collect::<Result<Vec<_>, _>>()?;
        // §3.13: Number of TSs must account for the whole payload.
        r.finish()?;
        Ok(TsPayload { selectors })
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8_len(self.selectors.len()));
        out.extend_from_slice(&[0; 3]);
        for s in &self.selectors {
            s.encode(out);
        }
    }
}

// ---- narrowing (§2.9) ----------------------------------------------------------------

fn ip_to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

/// Intersection of two selectors, `None` if empty or of different families (§2.9).
pub fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    let (
        TrafficSelector::Range {
            ts_type: ta,
            ip_protocol: pa,
            start_port: spa,
            end_port: epa,
            start: sa,
            end: ea,
        },
        TrafficSelector::Range {
            ts_type: tb,
            ip_protocol: pb,
            start_port: spb,
            end_port: epb,
            start: sb,
            end: eb,
        },
    ) = (a, b)
    else {
        return None;
    };
    if ta != tb || sa.is_ipv4() != sb.is_ipv4() {
        return None;
    }
    let proto = match (*pa, *pb) {
        (0, p) | (p, 0) => p,
        (x, y) if x == y => x,
        _ => return None,
    };
    let start_port = (*spa).max(*spb);
    let end_port = (*epa).min(*epb);
    if start_port > end_port {
        return None;
    }
    let start = if ip_to_u128(*sa) >= ip_to_u128(*sb) {
        *sa
    } else {
        *sb
    };
    let end = if ip_to_u128(*ea) <= ip_to_u128(*eb) {
        *ea
    } else {
        *eb
    };
    if ip_to_u128(start) > ip_to_u128(end) {
        return None;
    }
    Some(TrafficSelector::Range {
        ts_type: *ta,
        ip_protocol: proto,
        start_port,
        end_port,
        start,
        end,
    })
}

/// §2.9 narrowing: every non-empty intersection of the peer's selectors with ours.
pub fn narrow(peer: &[TrafficSelector], ours: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for p in peer {
        for o in ours {
            if let Some(i) = intersect(p, o) {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
        }
    }
    out
}

/// True if every selector in `inner` lies within one of `outer` (the initiator's check
/// that the responder only narrowed, §2.9).
pub fn is_subset(inner: &[TrafficSelector], outer: &[TrafficSelector]) -> bool {
    inner
        .iter()
        .all(|i| outer.iter().any(|o| intersect(i, o).as_ref() == Some(i)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pfx(a: &str, l: u8) -> TrafficSelector {
        TrafficSelector::from_prefix(a.parse().unwrap(), l)
    }

    #[test]
    fn narrowing_intersects_ranges() {
        let any = [TrafficSelector::any_v4(), TrafficSelector::any_v6()];
        let peer = [pfx("10.1.0.0", 24)];
        assert_eq!(narrow(&peer, &any), vec![pfx("10.1.0.0", 24)]);
        assert_eq!(narrow(&any, &peer), vec![pfx("10.1.0.0", 24)]);
        assert!(narrow(&[pfx("10.1.0.0", 24)], &[pfx("10.2.0.0", 24)]).is_empty());
        assert!(is_subset(&[pfx("10.1.0.0", 24)], &any));
        assert!(!is_subset(&any, &[pfx("10.1.0.0", 24)]));
    }

    fn enc(ts: &TsPayload) -> Vec<u8> {
        let mut out = Vec::new();
        ts.encode(&mut out);
        out
    }

    #[test]
    fn constructors() {
        assert_eq!(TrafficSelector::any_v4().to_string(), "0.0.0.0/0");
        assert_eq!(TrafficSelector::any_v6().to_string(), "::/0");
        let s = TrafficSelector::from_prefix("10.1.2.3".parse().unwrap(), 16);
        assert_eq!(s.to_string(), "10.1.0.0/16");
        let TrafficSelector::Range { end, .. } = &s else {
            panic!()
        };
        assert_eq!(end.to_string(), "10.1.255.255");
        let s = TrafficSelector::from_prefix("2001:db8::1".parse().unwrap(), 200);
        assert_eq!(s.prefix(), Some(("2001:db8::1".parse().unwrap(), 128)));
        assert_eq!(s.to_string(), "2001:db8::1/128");
        let r = TrafficSelector::Range {
            ts_type: TsType::IPV4_ADDR_RANGE,
            ip_protocol: 6,
            start_port: 80,
            end_port: 80,
            start: "10.0.0.1".parse().unwrap(),
            end: "10.0.0.5".parse().unwrap(),
        };
        assert_eq!(r.prefix(), None);
        assert_eq!(r.to_string(), "10.0.0.1..10.0.0.5[tcp/80]");
    }

    #[test]
    fn layout_and_round_trip() {
        let ts = TsPayload {
            selectors: vec![
                TrafficSelector::from_prefix("192.0.2.0".parse().unwrap(), 24),
                TrafficSelector::any_v6(),
                TrafficSelector::Unknown {
                    ts_type: TsType(10),
                    body: vec![0, 1, 2, 3],
                },
            ],
        };
        let b = enc(&ts);
        // §3.13 + §3.13.1: Number of TSs, RESERVED, then type 7, proto 0, length 16,
        // ports 0-65535, start, end.
        assert_eq!(
            hex::encode(&b[..20]),
            "03000000070000100000ffffc0000200c00002ff"
        );
        assert_eq!(TsPayload::decode(&b).unwrap(), ts);
        assert_eq!(enc(&TsPayload::decode(&b).unwrap()), b);
    }

    #[test]
    fn errors() {
        let ts = TsPayload {
            selectors: vec![TrafficSelector::any_v4()],
        };
        let b = enc(&ts);
        // Count too large / too small.
        let mut x = b.clone();
        x[0] = 2;
        assert_eq!(TsPayload::decode(&x), Err(DecodeError::Truncated));
        let mut x = b.clone();
        x[0] = 0;
        assert_eq!(TsPayload::decode(&x), Err(DecodeError::TrailingBytes));
        // IPv4 range with an IPv6-sized length, and a length below the header.
        let mut x = b.clone();
        x[7] = 40;
        assert_eq!(TsPayload::decode(&x), Err(DecodeError::BadLength));
        let mut x = b.clone();
        x[7] = 3;
        assert_eq!(TsPayload::decode(&x), Err(DecodeError::BadLength));
        let mut x = b.clone();
        x.push(0);
        assert_eq!(TsPayload::decode(&x), Err(DecodeError::TrailingBytes));
    }
}
