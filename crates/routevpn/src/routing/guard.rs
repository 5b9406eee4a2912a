//! The import guard of each neighbour, built from what we know of our own
//! infrastructure, and its rate-limited log.
//!
//! Protected (a route equal to or more specific than these is refused, see
//! [`bgp::guard`]): every tunnel interface subnet, every connected subnet in the main
//! table at start (local and underlay addresses), every neighbour address (at the length
//! of the connected subnet holding it; any covering route when none does) and every
//! IKE peer address (any covering route). The next hop must lie in the neighbour's own
//! tunnel subnets (or, outside tunnels, its connected subnet) or be the neighbour.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bgp::{ImportGuard, PeerId, Prefix, Protected, ProtectedKind};
use ipnet::IpNet;
use tracing::warn;

use super::{Driver, TunnelInfo};
use crate::config::NeighborConfig;

/// At most one "routes refused" line per neighbour in this interval.
pub(super) const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Our infrastructure, as the guards of all neighbours share it.
pub(super) struct Infrastructure {
    /// Connected subnets: the tunnels' and the kernel's (proto kernel, no gateway).
    pub(super) subnets: Vec<(Prefix, ProtectedKind)>,
    /// IKE peer addresses.
    pub(super) ike_peers: Vec<IpAddr>,
    /// Every neighbour address.
    pub(super) neighbors: Vec<IpAddr>,
}

fn net_prefix(n: &IpNet) -> Option<Prefix> {
    Prefix::new(n.trunc().addr(), n.prefix_len()).ok()
}

fn host(a: IpAddr) -> Option<Prefix> {
    Prefix::new(a, if a.is_ipv4() { 32 } else { 128 }).ok()
}

impl Infrastructure {
    pub(super) fn new(
        tunnels: &[TunnelInfo],
        connected: &[IpNet],
        neighbors: &[NeighborConfig],
    ) -> Self {
        let mut subnets: Vec<(Prefix, ProtectedKind)> = Vec::new();
        let tunnel_nets = tunnels.iter().flat_map(|t| t.addresses.iter());
        for p in tunnel_nets.filter_map(net_prefix) {
            if !subnets.iter().any(|(q, _)| *q == p) {
                subnets.push((p, ProtectedKind::TunnelSubnet));
            }
        }
        for p in connected.iter().filter_map(net_prefix) {
            if !subnets.iter().any(|(q, _)| *q == p) {
                subnets.push((p, ProtectedKind::Local));
            }
        }
        Self {
            subnets,
            ike_peers: tunnels.iter().filter_map(|t| t.remote).collect(),
            neighbors: neighbors.iter().map(|n| n.address).collect(),
        }
    }

    /// The longest connected subnet holding `a`.
    fn subnet_of(&self, a: IpAddr) -> Option<Prefix> {
        let h = host(a)?;
        self.subnets
            .iter()
            .map(|(p, _)| *p)
            .filter(|p| p.contains(&h))
            .max_by_key(|p| p.len())
    }

    /// The guard for the neighbour at `address`, reached through `tunnel` if any.
    pub(super) fn guard(&self, address: IpAddr, tunnel: Option<&TunnelInfo>) -> ImportGuard {
        let mut protected: Vec<Protected> = self
            .subnets
            .iter()
            .map(|(p, what)| Protected {
                net: *p,
                steal_len: p.len(),
                what: *what,
            })
            .collect();
        for a in &self.neighbors {
            if let Some(net) = host(*a) {
                protected.push(Protected {
                    net,
                    steal_len: self.subnet_of(*a).map_or(0, |s| s.len()),
                    what: ProtectedKind::Neighbor,
                });
            }
        }
        for a in &self.ike_peers {
            if let Some(net) = host(*a) {
                protected.push(Protected {
                    net,
                    steal_len: 0,
                    what: ProtectedKind::IkePeer,
                });
            }
        }
        let mut next_hop_nets: Vec<Prefix> = match tunnel {
            Some(t) => t.addresses.iter().filter_map(net_prefix).collect(),
            None => self.subnet_of(address).into_iter().collect(),
        };
        next_hop_nets.extend(host(address));
        ImportGuard {
            protected,
            next_hop_nets,
        }
    }
}

/// What was last logged about a neighbour's refused routes.
#[derive(Default)]
pub(super) struct RefusalLog {
    logged: u64,
    at: Option<Instant>,
}

impl Driver {
    /// Logs routes the guard refused since the last line, at most once per
    /// [`REFUSAL_LOG_INTERVAL`] per neighbour.
    pub(super) fn log_refusals(&mut self, now: Instant) {
        for i in 0..self.neighbors.len() {
            let id: PeerId = self.neighbors[i].id;
            let r = self.speaker.rib().refused(id);
            let n = &mut self.neighbors[i];
            let log = &mut n.refusals;
            if r.count < log.logged {
                // The peer was re-added: its counter restarted.
                log.logged = 0;
            }
            let due = log
                .at
                .is_none_or(|t| now.saturating_duration_since(t) >= REFUSAL_LOG_INTERVAL);
            if r.count > log.logged && due {
                if let Some((prefix, why)) = r.last {
                    warn!(neighbor = %n.cfg.address, refused = r.count - log.logged, total = r.count, last = %prefix, reason = %why, "refused routes that would take traffic for our own infrastructure");
                }
                log.logged = r.count;
                log.at = Some(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bgp::wire::MpNextHop;

    #[test]
    fn guards_from_tunnels_connected_and_neighbors() {
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let tunnel = |name: &str, a: &str, remote: &str| TunnelInfo {
            name: name.into(),
            addresses: vec![net(a)],
            remote: Some(ip(remote)),
        };
        let tunnels = [
            tunnel("vti0", "169.254.12.1/30", "192.0.2.2"),
            tunnel("vti1", "169.254.13.1/30", "192.0.2.3"),
        ];
        let nb = |a: &str| NeighborConfig {
            address: ip(a),
            asn: 65002,
            bfd: None,
            passive: false,
            import: None,
            export: None,
            max_prefix: None,
            local_pref: 100,
            gtsm: None,
            password: None,
        };
        let infra = Infrastructure::new(
            &tunnels,
            &[net("192.0.2.0/24"), net("169.254.12.0/30")],
            &[nb("169.254.12.2"), nb("169.254.13.2")],
        );
        let g = infra.guard(ip("169.254.12.2"), Some(&tunnels[0]));
        let check = |p: &str, hop: &str| {
            g.check(
                &p.parse().unwrap(),
                &MpNextHop {
                    addr: ip(hop),
                    link_local: None,
                },
            )
            .is_ok()
        };
        assert!(check("10.2.0.0/24", "169.254.12.2"));
        assert!(check("169.254.0.0/16", "169.254.12.2"));
        assert!(!check("169.254.13.2/32", "169.254.12.2"));
        assert!(!check("169.254.12.0/31", "169.254.12.2"));
        assert!(!check("192.0.2.0/25", "169.254.12.2"));
        assert!(!check("192.0.0.0/16", "169.254.12.2"));
        assert!(!check("10.2.0.0/24", "169.254.13.2"));
        assert!(!check("10.2.0.0/24", "192.0.2.9"));
    }
}
