//! Import guard: a neighbour may only announce routes that leave our own infrastructure
//! (tunnel subnets, neighbour, local, underlay and IKE peer addresses) where it is, and
//! only with a next hop it can speak for.
//!
//! "Would take traffic" is decided as the kernel's longest-prefix match would: a route
//! equal to or more specific than a protected subnet steals (part of) it; a less
//! specific one (a /8 over a connected /30) does not and is allowed. Entries with
//! `steal_len` 0 (IKE peers) refuse every covering route, a default route included.

use std::fmt;
use std::net::IpAddr;

use crate::prefix::Prefix;
use crate::wire::MpNextHop;

/// Something of ours a route must not take traffic for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protected {
    /// What is protected (a subnet, or a host prefix).
    pub net: Prefix,
    /// Routes overlapping `net` at least this long are refused: `net.len()` for a
    /// connected subnet (longest match), 0 for "any covering route" (IKE peers).
    pub steal_len: u8,
    /// What it is, for logs.
    pub what: ProtectedKind,
}

/// Kinds of protected prefixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtectedKind {
    /// One of our tunnel interface subnets.
    TunnelSubnet,
    /// A BGP neighbour's address.
    Neighbor,
    /// A local interface subnet or address (including the underlay).
    Local,
    /// A tunnel's IKE peer (underlay) address.
    IkePeer,
}

/// Why a route was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// It would take traffic for something protected.
    Covers(Protected),
    /// Its next hop is not reachable through the announcing neighbour's own link.
    ThirdPartyNextHop(IpAddr),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Covers(p) => write!(f, "overlaps {:?} {}", p.what, p.net),
            Refusal::ThirdPartyNextHop(a) => {
                write!(f, "third-party next hop {a} (not on the neighbour's link)")
            }
        }
    }
}

/// Per-neighbour guard, checked at import before the Adj-RIB-In.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportGuard {
    /// Prefixes no route may steal traffic from.
    pub protected: Vec<Protected>,
    /// Where the next hop must lie (the neighbour's link subnets and its address);
    /// empty = no next-hop check.
    pub next_hop_nets: Vec<Prefix>,
}

/// Whether two prefixes share an address.
fn overlaps(a: &Prefix, b: &Prefix) -> bool {
    a.contains(b) || b.contains(a)
}

impl ImportGuard {
    /// `Err` when `prefix` announced with `next_hop` must be refused.
    pub fn check(&self, prefix: &Prefix, next_hop: &MpNextHop) -> Result<(), Refusal> {
        if let Some(p) = self
            .protected
            .iter()
            .find(|p| prefix.len() >= p.steal_len && overlaps(prefix, &p.net))
        {
            return Err(Refusal::Covers(*p));
        }
        if self.next_hop_nets.is_empty() {
            return Ok(());
        }
        // A link-local-only next hop (RFC 2545 §3) is on the session's own link.
        if next_hop.addr.is_unspecified() && next_hop.link_local.is_some() {
            return Ok(());
        }
        let nh = next_hop.addr;
        let on_link = self
            .next_hop_nets
            .iter()
            .any(|n| Prefix::new(nh, n.max_len()).is_ok_and(|h| n.contains(&h)));
        if on_link {
            Ok(())
        } else {
            Err(Refusal::ThirdPartyNextHop(nh))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Prefix {
        s.parse().unwrap()
    }

    fn nh(s: &str) -> MpNextHop {
        MpNextHop {
            addr: s.parse().unwrap(),
            link_local: None,
        }
    }

    /// Us: tunnel vti0 169.254.12.1/30 to neighbour .2, tunnel vti1 169.254.13.1/30 to
    /// neighbour 169.254.13.2, underlay 192.0.2.1/24, IKE peers 192.0.2.2 and 198.51.100.7.
    fn guard() -> ImportGuard {
        let prot = |s: &str, steal_len: u8, what| Protected {
            net: p(s),
            steal_len,
            what,
        };
        ImportGuard {
            protected: vec![
                prot("169.254.12.0/30", 30, ProtectedKind::TunnelSubnet),
                prot("169.254.13.0/30", 30, ProtectedKind::TunnelSubnet),
                prot("fd00:12::/64", 64, ProtectedKind::TunnelSubnet),
                prot("169.254.13.2/32", 30, ProtectedKind::Neighbor),
                prot("10.99.0.9/32", 0, ProtectedKind::Neighbor),
                prot("192.0.2.0/24", 24, ProtectedKind::Local),
                prot("192.0.2.2/32", 0, ProtectedKind::IkePeer),
                prot("198.51.100.7/32", 0, ProtectedKind::IkePeer),
            ],
            next_hop_nets: vec![
                p("169.254.12.0/30"),
                p("fd00:12::/64"),
                p("169.254.12.2/32"),
            ],
        }
    }

    #[test]
    fn decision_table() {
        let g = guard();
        let ok = nh("169.254.12.2");
        let cases: &[(&str, &str, bool)] = &[
            // Ordinary routes through the neighbour's own tunnel.
            ("10.2.0.0/24", "169.254.12.2", true),
            ("fd00:2::/64", "fd00:12::2", true),
            // Less specific than a connected subnet: longest match keeps the subnet.
            ("169.254.0.0/16", "169.254.12.2", true),
            ("192.0.0.0/8", "169.254.12.2", false), // covers an IKE peer (any length)
            ("172.16.0.0/12", "169.254.12.2", true),
            // Another neighbour's tunnel-inner address, and our subnets.
            ("169.254.13.2/32", "169.254.12.2", false),
            ("169.254.13.0/30", "169.254.12.2", false),
            ("169.254.12.0/31", "169.254.12.2", false),
            ("169.254.12.0/30", "169.254.12.2", false),
            ("fd00:12::1/128", "fd00:12::2", false),
            // A neighbour not on any known subnet: any covering route.
            ("10.99.0.0/16", "169.254.12.2", false),
            // Local / underlay subnet and IKE peers.
            ("192.0.2.128/25", "169.254.12.2", false),
            ("192.0.2.2/32", "169.254.12.2", false),
            ("198.51.100.0/24", "169.254.12.2", false),
            ("0.0.0.0/0", "169.254.12.2", false), // covers the IKE peers: today's rule
            ("198.51.0.0/16", "169.254.12.2", false),
            // Third-party next hops: another tunnel, the underlay, elsewhere.
            ("10.3.0.0/24", "169.254.13.2", false),
            ("10.3.0.0/24", "192.0.2.77", false),
            ("10.3.0.0/24", "10.0.0.1", false),
            ("fd00:3::/64", "fd00:13::2", false),
        ];
        for (prefix, hop, accept) in cases {
            let r = g.check(&p(prefix), &nh(hop));
            assert_eq!(r.is_ok(), *accept, "{prefix} via {hop}: {r:?}");
        }
        // A link-local-only IPv6 next hop is on the session's link.
        let ll = MpNextHop {
            addr: "::".parse().unwrap(),
            link_local: Some("fe80::2".parse().unwrap()),
        };
        assert!(g.check(&p("fd00:4::/64"), &ll).is_ok());
        // The empty guard accepts everything.
        assert!(ImportGuard::default()
            .check(&p("169.254.13.2/32"), &ok)
            .is_ok());
        let r = g.check(&p("10.3.0.0/24"), &nh("169.254.13.2")).unwrap_err();
        assert_eq!(
            r.to_string(),
            "third-party next hop 169.254.13.2 (not on the neighbour's link)"
        );
    }

    #[test]
    fn guard_refuses_before_the_adj_rib_in_and_counts() {
        use crate::rib::{PeerId, PeerPolicy, PeerUp, Rib, RibConfig};
        use crate::wire::{AsPath, ParsedUpdate, PathAttributes};
        use std::net::Ipv4Addr;
        let upd = |prefix: &str, path: Vec<u32>, nh: u8| ParsedUpdate {
            announced: vec![(
                prefix.parse().unwrap(),
                MpNextHop {
                    addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, nh)),
                    link_local: None,
                },
            )],
            attrs: PathAttributes {
                as_path: AsPath::sequence(path),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut rib = Rib::new(RibConfig {
            local_as: 65001,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            networks: vec![],
            max_paths: 1,
        });
        let mut policy = PeerPolicy::new(65002, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));
        policy.guard = ImportGuard {
            protected: vec![Protected {
                net: "192.0.2.0/24".parse().unwrap(),
                steal_len: 24,
                what: ProtectedKind::TunnelSubnet,
            }],
            next_hop_nets: vec!["192.0.2.0/24".parse().unwrap()],
        };
        rib.add_peer(PeerId(2), policy);
        rib.peer_up(
            PeerId(2),
            PeerUp {
                bgp_id: Ipv4Addr::new(10, 0, 0, 2),
                ipv4: true,
                ipv6: false,
                local_addr: None,
            },
        );
        let ok = "10.9.0.0/16".parse::<Prefix>().unwrap();
        rib.handle_update(PeerId(2), &upd("10.9.0.0/16", vec![65002], 2))
            .unwrap();
        // A more-specific of the protected subnet, and a third-party next hop.
        rib.handle_update(PeerId(2), &upd("192.0.2.1/32", vec![65002], 2))
            .unwrap();
        let mut third = upd("10.8.0.0/16", vec![65002], 2);
        third.announced[0].1.addr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));
        rib.handle_update(PeerId(2), &third).unwrap();
        let held: Vec<Prefix> = rib.adj_rib_in(PeerId(2)).map(|r| r.prefix).collect();
        assert_eq!(held, vec![ok]);
        let r = rib.refused(PeerId(2));
        assert_eq!(r.count, 2);
        assert_eq!(r.last.map(|(p, _)| p), Some("10.8.0.0/16".parse().unwrap()));
        // A refused announcement implicitly withdraws what the peer had sent before.
        let mut again = upd("10.9.0.0/16", vec![65002], 2);
        again.announced[0].1.addr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 9));
        rib.handle_update(PeerId(2), &again).unwrap();
        assert!(rib.best(&ok).is_none());
    }
}
