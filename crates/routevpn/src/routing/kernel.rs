//! The Loc-RIB into the kernel: each best route (or ECMP set) installed `via NEXT_HOP
//! dev DEVICE proto 251`. What may not be installed (routes covering an IKE peer, our
//! subnets, neighbours) never got past the import guard (`guard.rs`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::MutexGuard;

use bgp::{Prefix, RibChange};
use ipnet::IpNet;
use tracing::{debug, warn};

use super::Driver;

/// An installed route: its next hops (gateway, device), best first; more than one
/// means a multipath route.
#[derive(PartialEq, Eq)]
pub(super) struct Installed {
    pub(super) hops: Vec<(IpAddr, String)>,
}

/// Whether `addr` lies in `net/len` (false across families).
pub(super) fn prefix_contains(net: IpAddr, len: u8, addr: IpAddr) -> bool {
    ipnet::IpNet::new(net, len).is_ok_and(|n| n.contains(&addr))
}

fn net_of(prefix: &Prefix) -> Option<IpNet> {
    IpNet::new(prefix.addr(), prefix.len()).ok()
}

impl Driver {
    /// The routes asked for; the lock is only ever held for one map operation.
    pub(super) fn installed(&self) -> MutexGuard<'_, BTreeMap<Prefix, Installed>> {
        self.installed.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn installed_len(&self) -> usize {
        self.installed().len()
    }

    /// Withdraws our route to `prefix`. The change is queued for the route task
    /// (`netlink::RouteBatch`): the loop never waits for the kernel.
    pub(super) fn uninstall(&mut self, prefix: &Prefix) {
        if self.installed().remove(prefix).is_none() {
            return;
        }
        if let Some(net) = net_of(prefix) {
            self.routes.set(net, None);
        }
    }

    /// Gateway and device for a route learned from a peer.
    fn next_hop_of(&self, route: &bgp::Route) -> Option<(IpAddr, String)> {
        let gateway = match route.next_hop.addr {
            a if a.is_unspecified() => IpAddr::V6(route.next_hop.link_local?),
            a => a,
        };
        let peer_dev = route
            .peer
            .and_then(|p| self.neighbors.get(p.0 as usize))
            .and_then(|n| n.device.clone());
        let tunnel_dev = self
            .tunnels
            .iter()
            .find(|t| t.addresses.iter().any(|a| a.contains(&gateway)))
            .map(|t| t.name.clone());
        Some((gateway, tunnel_dev.or(peer_dev)?))
    }

    /// Queues the kernel change for one Loc-RIB change (never waits for the kernel).
    pub(super) fn apply(&mut self, c: RibChange) {
        let prefix = c.prefix;
        let Some(best) = c.best.filter(|b| !b.is_local()) else {
            self.uninstall(&prefix);
            return;
        };
        // The best path first, then the other equal paths (ECMP) when configured.
        let mut hops: Vec<(IpAddr, String)> = Vec::new();
        let Some(first) = self.next_hop_of(&best) else {
            warn!(%prefix, next_hop = %best.next_hop.addr, "no interface for the BGP next hop; route not installed");
            return;
        };
        hops.push(first);
        if self.cfg.max_paths > 1 {
            for r in c.ecmp.iter().filter(|r| !r.is_local() && **r != best) {
                match self.next_hop_of(r) {
                    Some(h) if !hops.contains(&h) => hops.push(h),
                    Some(_) => {}
                    None => {
                        debug!(%prefix, next_hop = %r.next_hop.addr, "no interface for an equal path; left out")
                    }
                }
            }
            hops.truncate(self.cfg.max_paths);
        }
        let new = Installed { hops };
        let Some(net) = net_of(&prefix) else {
            return;
        };
        // The route task skips what the kernel already has (so a route that failed is
        // retried here), deletes first where a replace cannot do it (a device move,
        // IPv6 single <-> multipath) and reports failures per route.
        self.routes.set(net, Some(new.hops.clone()));
        self.installed().insert(prefix, new);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(prefix_contains(a("169.254.12.1"), 30, a("169.254.12.2")));
        assert!(!prefix_contains(a("169.254.12.1"), 30, a("169.254.12.5")));
        assert!(prefix_contains(a("fd00:12::1"), 64, a("fd00:12::2")));
        assert!(!prefix_contains(a("fd00:12::1"), 64, a("169.254.12.2")));
        assert!(prefix_contains(a("0.0.0.0"), 0, a("192.0.2.2")));
        assert_eq!(super::super::canon(a("::ffff:10.0.0.1")), a("10.0.0.1"));
    }

    #[test]
    fn hop_description() {
        use crate::netlink::hops_desc;
        let hops = vec![
            ("169.254.12.2".parse().unwrap(), "vti0".to_string()),
            ("169.254.13.2".parse().unwrap(), "vti1".to_string()),
        ];
        assert_eq!(
            hops_desc(&hops),
            "169.254.12.2 dev vti0, 169.254.13.2 dev vti1"
        );
    }
}
