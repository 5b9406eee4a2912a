//! Traffic selectors enforced on the packets of one CHILD SA.
//!
//! RFC 4301 §5.2 step 4: after an inbound packet is decrypted, its addresses (and
//! protocol and ports) must match the selectors the SA was negotiated for, or it is
//! dropped and audited. Outbound (§5.1) the SA must only carry what it was negotiated
//! for, so a narrowed SA cannot be used to leak other traffic to the peer.
//!
//! Route-based tunnels negotiate 0.0.0.0/0 and ::/0 with any protocol and port; that
//! case is precomputed so the per-packet check is one branch.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One negotiated selector: an address range of one family, an IP protocol (0 = any)
/// and a port range (RFC 7296 §3.13.1). For ICMP and ICMPv6 the "port" is the type in
/// the high octet and the code in the low octet (RFC 4301 §4.4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selector {
    pub start: IpAddr,
    pub end: IpAddr,
    pub protocol: u8,
    pub start_port: u16,
    pub end_port: u16,
}

impl Selector {
    /// Every address of `start`'s family, any protocol and port.
    pub fn any(v6: bool) -> Selector {
        let (start, end) = if v6 {
            (
                Ipv6Addr::UNSPECIFIED.into(),
                Ipv6Addr::from(u128::MAX).into(),
            )
        } else {
            (Ipv4Addr::UNSPECIFIED.into(), Ipv4Addr::BROADCAST.into())
        };
        Selector {
            start,
            end,
            protocol: 0,
            start_port: 0,
            end_port: u16::MAX,
        }
    }

    fn is_any(&self) -> bool {
        *self == Selector::any(self.start.is_ipv6())
    }

    fn matches_addr(&self, addr: IpAddr) -> bool {
        match (self.start, self.end, addr) {
            (IpAddr::V4(s), IpAddr::V4(e), IpAddr::V4(a)) => s <= a && a <= e,
            (IpAddr::V6(s), IpAddr::V6(e), IpAddr::V6(a)) => s <= a && a <= e,
            _ => false,
        }
    }

    fn matches_upper(&self, protocol: u8, port: Option<u16>) -> bool {
        if self.protocol != 0 && self.protocol != protocol {
            return false;
        }
        if self.start_port == 0 && self.end_port == u16::MAX {
            return true;
        }
        match port {
            Some(p) => self.start_port <= p && p <= self.end_port,
            // RFC 4301 §4.4.1.1 OPAQUE (start > end): only packets whose ports are
            // unavailable, such as non-initial fragments.
            None => self.start_port > self.end_port,
        }
    }
}

/// The two selector lists of a CHILD SA, from our point of view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selectors {
    local: Vec<Selector>,
    remote: Vec<Selector>,
    /// Every IPv4 / IPv6 packet is permitted in both directions (0/0 ⇄ 0/0).
    all_v4: bool,
    all_v6: bool,
}

impl Default for Selectors {
    /// 0.0.0.0/0 and ::/0 on both sides: the route-based default.
    fn default() -> Self {
        let both = vec![Selector::any(false), Selector::any(true)];
        Selectors::new(both.clone(), both)
    }
}

impl Selectors {
    /// `local` covers our side (TSi when we initiated), `remote` the peer's.
    pub fn new(local: Vec<Selector>, remote: Vec<Selector>) -> Selectors {
        let all = |v6: bool| {
            let any = |l: &[Selector]| l.iter().any(|s| s.start.is_ipv6() == v6 && s.is_any());
            any(&local) && any(&remote)
        };
        Selectors {
            all_v4: all(false),
            all_v6: all(true),
            local,
            remote,
        }
    }

    /// True when no packet is ever refused (the route-based 0/0 ⇄ 0/0 case).
    pub fn permits_everything(&self) -> bool {
        self.all_v4 && self.all_v6
    }

    /// A decrypted packet from the peer: source in the remote selectors, destination
    /// in the local ones (RFC 4301 §5.2).
    pub fn permits_inbound(&self, packet: &[u8]) -> bool {
        self.permits(packet, &self.remote, &self.local)
    }

    /// A packet we are about to send to the peer: source local, destination remote.
    pub fn permits_outbound(&self, packet: &[u8]) -> bool {
        self.permits(packet, &self.local, &self.remote)
    }

    fn permits(&self, packet: &[u8], src_sel: &[Selector], dst_sel: &[Selector]) -> bool {
        // 0/0 for this family: one branch on the version nibble, nothing parsed.
        match packet.first().map(|b| b >> 4) {
            Some(4) if self.all_v4 => return true,
            Some(6) if self.all_v6 => return true,
            _ => {}
        }
        let Some(ip) = IpView::parse(packet) else {
            return false;
        };
        let (src_port, dst_port) = ip.ports(packet);
        let ok = |list: &[Selector], addr, port| {
            list.iter()
                .any(|s| s.matches_addr(addr) && s.matches_upper(ip.protocol, port))
        };
        ok(src_sel, ip.src, src_port) && ok(dst_sel, ip.dst, dst_port)
    }
}

/// Addresses and where the upper-layer header starts, read through `get` so a short
/// or lying header can only make the check fail.
struct IpView {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    /// Offset of the upper-layer header; None for a non-initial fragment.
    upper_at: Option<usize>,
}

/// RFC 8200 §4: at most this many extension headers are walked to find ports.
const MAX_EXTENSION_HEADERS: usize = 8;

impl IpView {
    fn parse(p: &[u8]) -> Option<IpView> {
        match p.first()? >> 4 {
            4 => {
                let ihl = usize::from(p.first()? & 0x0f) * 4;
                let frag = u16::from_be_bytes(p.get(6..8)?.try_into().ok()?) & 0x1fff;
                let src: [u8; 4] = p.get(12..16)?.try_into().ok()?;
                let dst: [u8; 4] = p.get(16..20)?.try_into().ok()?;
                Some(IpView {
                    src: IpAddr::from(src),
                    dst: IpAddr::from(dst),
                    protocol: *p.get(9)?,
                    upper_at: (frag == 0 && ihl >= 20).then_some(ihl),
                })
            }
            6 => {
                let src: [u8; 16] = p.get(8..24)?.try_into().ok()?;
                let dst: [u8; 16] = p.get(24..40)?.try_into().ok()?;
                let (mut next, mut at) = (*p.get(6)?, 40usize);
                let mut upper_at = Some(at);
                for _ in 0..MAX_EXTENSION_HEADERS {
                    match next {
                        // Hop-by-hop, routing, destination options: (len + 1) × 8.
                        0 | 43 | 60 => {
                            let len = (usize::from(*p.get(at + 1)?) + 1) * 8;
                            next = *p.get(at)?;
                            at += len;
                        }
                        // Fragment: a non-initial one carries no ports.
                        44 => {
                            let off = u16::from_be_bytes(p.get(at + 2..at + 4)?.try_into().ok()?);
                            next = *p.get(at)?;
                            at += 8;
                            if off >> 3 != 0 {
                                upper_at = None;
                                break;
                            }
                        }
                        _ => break,
                    }
                    upper_at = Some(at);
                }
                Some(IpView {
                    src: IpAddr::from(src),
                    dst: IpAddr::from(dst),
                    protocol: next,
                    upper_at,
                })
            }
            _ => None,
        }
    }

    /// (source port, destination port), None where the packet has none or they are
    /// not in this fragment.
    fn ports(&self, p: &[u8]) -> (Option<u16>, Option<u16>) {
        let word = |at: usize| -> Option<u16> {
            Some(u16::from_be_bytes(p.get(at..at + 2)?.try_into().ok()?))
        };
        let Some(at) = self.upper_at else {
            return (None, None);
        };
        match self.protocol {
            // TCP, UDP, DCCP, SCTP, UDP-Lite start with source and destination port.
            6 | 17 | 33 | 132 | 136 => (word(at), word(at + 2)),
            // ICMP / ICMPv6: type and code as one 16-bit "port" (RFC 7296 §3.13.1).
            1 | 58 => (word(at), word(at)),
            _ => (None, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(src: [u8; 4], dst: [u8; 4], proto: u8, sport: u16, dport: u16) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, proto, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
        p
    }

    fn v6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, tail: &[u8]) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0];
        p.extend_from_slice(&(tail.len() as u16).to_be_bytes());
        p.extend_from_slice(&[next, 64]);
        p.extend_from_slice(&src.octets());
        p.extend_from_slice(&dst.octets());
        p.extend_from_slice(tail);
        p
    }

    fn net(a: &str, b: &str) -> Selector {
        Selector {
            start: a.parse().unwrap(),
            end: b.parse().unwrap(),
            ..Selector::any(a.contains(':'))
        }
    }

    #[test]
    fn route_based_default_permits_everything_without_parsing() {
        let s = Selectors::default();
        assert!(s.permits_everything());
        assert!(s.permits_inbound(&v4([1, 2, 3, 4], [5, 6, 7, 8], 6, 1, 2)));
        assert!(s.permits_outbound(&v6(
            "2001:db8::1".parse().unwrap(),
            "::1".parse().unwrap(),
            17,
            &[0; 8]
        )));
        // Not an IP packet at all.
        assert!(!s.permits_inbound(&[0x15, 0, 0]));
        assert!(!s.permits_inbound(&[]));
    }

    /// Found by the `esp_open` fuzz target: under 0/0 the check parsed the packet
    /// first, so an authentic IPv6 packet whose extension header runs past its payload
    /// length was sealed by the sender (untrimmed buffer) and dropped by the receiver
    /// (trimmed to the IP length) as a selector mismatch.
    #[test]
    fn route_based_default_does_not_parse_extension_headers() {
        // Hop-by-hop (next header 0) cut after its first octet: no length to read.
        let p = v6(
            "2001:db8::1".parse().unwrap(),
            "2001:db8::2".parse().unwrap(),
            0,
            &[17],
        );
        let s = Selectors::default();
        assert!(s.permits_inbound(&p) && s.permits_outbound(&p));
        let narrowed = Selectors::new(
            vec![net("2001:db8::", "2001:db8::ffff")],
            vec![net("2001:db8::", "2001:db8::ffff")],
        );
        assert!(
            !narrowed.permits_inbound(&p),
            "truncated header: no ports to check"
        );
    }

    #[test]
    fn inbound_source_must_be_remote_and_destination_local() {
        let s = Selectors::new(
            vec![net("10.1.0.0", "10.1.0.255")],
            vec![net("10.2.0.0", "10.2.0.255")],
        );
        assert!(!s.permits_everything());
        let good = v4([10, 2, 0, 9], [10, 1, 0, 7], 17, 5000, 53);
        assert!(s.permits_inbound(&good));
        // The peer spoofing a source outside what it negotiated.
        assert!(!s.permits_inbound(&v4([10, 3, 0, 9], [10, 1, 0, 7], 17, 5000, 53)));
        // A destination outside our side.
        assert!(!s.permits_inbound(&v4([10, 2, 0, 9], [192, 0, 2, 1], 17, 5000, 53)));
        // Reversed, it is an outbound packet.
        assert!(!s.permits_outbound(&good));
        assert!(s.permits_outbound(&v4([10, 1, 0, 7], [10, 2, 0, 9], 6, 1, 2)));
        // No IPv6 selector was negotiated: no IPv6 traffic.
        let p6 = v6(
            "fd00::1".parse().unwrap(),
            "fd00::2".parse().unwrap(),
            17,
            &[0; 8],
        );
        assert!(!s.permits_inbound(&p6));
        // Truncated header: refused, never a panic.
        assert!(!s.permits_inbound(&good[..15]));
    }

    #[test]
    fn one_family_any_does_not_open_the_other() {
        let s = Selectors::new(
            vec![Selector::any(false), net("fd00:1::", "fd00:1::ffff")],
            vec![Selector::any(false), net("fd00:2::", "fd00:2::ffff")],
        );
        assert!(s.permits_inbound(&v4([8, 8, 8, 8], [9, 9, 9, 9], 1, 0, 0)));
        let ok = v6(
            "fd00:2::5".parse().unwrap(),
            "fd00:1::6".parse().unwrap(),
            58,
            &[128, 0, 0, 0],
        );
        assert!(s.permits_inbound(&ok));
        let bad = v6(
            "fd00:3::5".parse().unwrap(),
            "fd00:1::6".parse().unwrap(),
            58,
            &[128, 0, 0, 0],
        );
        assert!(!s.permits_inbound(&bad));
    }

    #[test]
    fn protocol_and_ports_including_icmp_type_and_extension_headers() {
        let dns = |v6: bool| Selector {
            protocol: 17,
            start_port: 53,
            end_port: 53,
            ..Selector::any(v6)
        };
        let s = Selectors::new(
            vec![dns(false), dns(true)],
            vec![Selector::any(false), Selector::any(true)],
        );
        // Inbound: the destination (ours) must be UDP port 53.
        assert!(s.permits_inbound(&v4([1, 1, 1, 1], [2, 2, 2, 2], 17, 40000, 53)));
        assert!(!s.permits_inbound(&v4([1, 1, 1, 1], [2, 2, 2, 2], 17, 40000, 54)));
        assert!(!s.permits_inbound(&v4([1, 1, 1, 1], [2, 2, 2, 2], 6, 40000, 53)));
        // Outbound: the source (ours) must be port 53.
        assert!(s.permits_outbound(&v4([2, 2, 2, 2], [1, 1, 1, 1], 17, 53, 40000)));
        assert!(!s.permits_outbound(&v4([2, 2, 2, 2], [1, 1, 1, 1], 17, 40000, 53)));
        // A non-initial IPv4 fragment has no ports: refused by a port selector.
        let mut frag = v4([1, 1, 1, 1], [2, 2, 2, 2], 17, 40000, 53);
        frag[7] = 10;
        assert!(!s.permits_inbound(&frag));
        // IPv6 UDP behind a destination-options header (8 octets), then the fragment
        // header of an initial fragment.
        let (a, b): (Ipv6Addr, Ipv6Addr) = ("fd00::1".parse().unwrap(), "fd00::2".parse().unwrap());
        let mut tail = vec![44, 0, 0, 0, 0, 0, 0, 0]; // dest opts → fragment
        tail.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 1]); // fragment, offset 0 → UDP
        tail.extend_from_slice(&[0x9c, 0x40, 0, 53, 0, 8, 0, 0]);
        assert!(s.permits_inbound(&v6(a, b, 60, &tail)));
        // The same with a non-zero fragment offset: no ports, refused.
        tail[10] = 0x01;
        assert!(!s.permits_inbound(&v6(a, b, 60, &tail)));
        // ICMP echo request (type 8, code 0) against an echo-only selector.
        let echo = Selector {
            protocol: 1,
            start_port: 0x0800,
            end_port: 0x0800,
            ..Selector::any(false)
        };
        let s = Selectors::new(vec![echo], vec![echo]);
        let mut ping = v4([1, 1, 1, 1], [2, 2, 2, 2], 1, 0x0800, 0);
        assert!(s.permits_inbound(&ping));
        ping[20] = 0; // echo reply
        assert!(!s.permits_inbound(&ping));
    }

    #[test]
    fn opaque_ports_match_only_packets_without_ports() {
        let opaque = Selector {
            start_port: u16::MAX,
            end_port: 0,
            ..Selector::any(false)
        };
        let s = Selectors::new(vec![opaque], vec![Selector::any(false)]);
        assert!(!s.permits_inbound(&v4([1, 1, 1, 1], [2, 2, 2, 2], 17, 1, 2)));
        assert!(s.permits_inbound(&v4([1, 1, 1, 1], [2, 2, 2, 2], 47, 1, 2)));
    }
}
