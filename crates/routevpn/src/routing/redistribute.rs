//! `[bgp] redistribute`: the kernel's connected and static routes, read every
//! [`REDISTRIBUTE_SCAN`], originated like `networks`.

use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bgp::Prefix;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::kernel::prefix_contains;
use super::{Driver, Input, TunnelInfo};
use crate::config::{BgpConfig, Redistribute};
use crate::netlink::{KernelRoute, Netlink, RTPROT_BOOT, RTPROT_KERNEL, RTPROT_STATIC};

/// How often the kernel's routes are read again for `[bgp] redistribute`.
pub const REDISTRIBUTE_SCAN: Duration = Duration::from_secs(5);

/// Reads the kernel's routes now and every [`REDISTRIBUTE_SCAN`], and sends the
/// selected prefixes to the driver.
pub(super) fn spawn_redistribution(
    cfg: &BgpConfig,
    tunnels: &[TunnelInfo],
    nl: Netlink,
    tx: mpsc::Sender<Input>,
) {
    let classes = cfg.redistribute.clone();
    let tunnel_names: HashSet<String> = tunnels.iter().map(|t| t.name.clone()).collect();
    let underlay: Vec<IpAddr> = tunnels.iter().filter_map(|t| t.remote).collect();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REDISTRIBUTE_SCAN);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match nl.main_table_routes().await {
                Ok(routes) => {
                    let set = select_redistributed(&routes, &classes, &tunnel_names, &underlay);
                    if tx.send(Input::Redistribute(set)).await.is_err() {
                        return;
                    }
                }
                Err(e) => warn!(error = %e, "cannot read kernel routes for redistribution"),
            }
        }
    });
}

fn is_link_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// The prefixes of `routes` that `classes` redistributes: connected routes (proto
/// kernel, no gateway) and static ones (proto static/boot), never through loopback or
/// a tunnel, never link-local, default or covering an IKE peer address, and no
/// connected prefix of an underlay interface (the one routing to an IKE peer).
fn select_redistributed(
    routes: &[KernelRoute],
    classes: &[Redistribute],
    tunnels: &HashSet<String>,
    underlay: &[IpAddr],
) -> BTreeSet<Prefix> {
    let connected = classes.contains(&Redistribute::Connected);
    let statics = classes.contains(&Redistribute::Static);
    // The interfaces the tunnels' packets leave by (longest match for each IKE peer):
    // their connected prefixes are underlay, whatever the family.
    let underlay_devs: HashSet<&str> = underlay
        .iter()
        .filter_map(|u| {
            routes
                .iter()
                .filter(|r| prefix_contains(r.info.dst, r.info.prefix_len, *u))
                .max_by_key(|r| r.info.prefix_len)
                .and_then(|r| r.dev.as_deref())
        })
        .collect();
    routes
        .iter()
        .filter(|r| {
            let class_ok = match r.protocol {
                RTPROT_KERNEL => connected && r.info.gateway.is_none(),
                RTPROT_BOOT | RTPROT_STATIC => statics,
                _ => false,
            };
            let dev_ok = match &r.dev {
                Some(d) => {
                    d != "lo"
                        && !tunnels.contains(d)
                        && !(r.protocol == RTPROT_KERNEL && underlay_devs.contains(d.as_str()))
                }
                // Multipath or blackhole-like routes without one device: statics only.
                None => r.protocol != RTPROT_KERNEL,
            };
            class_ok
                && dev_ok
                && r.info.prefix_len > 0
                && !is_link_local(r.info.dst)
                && !r.info.dst.is_loopback()
                && !underlay
                    .iter()
                    .any(|u| prefix_contains(r.info.dst, r.info.prefix_len, *u))
        })
        .filter_map(|r| Prefix::new(r.info.dst, r.info.prefix_len).ok())
        .collect()
}

impl Driver {
    /// Originates the prefixes newly in `set`, stops originating those gone from it;
    /// configured `networks` are left alone.
    pub(super) fn redistribute(&mut self, now: Instant, set: BTreeSet<Prefix>) {
        let configured: BTreeSet<Prefix> = self
            .cfg
            .networks
            .iter()
            .filter_map(|n| Prefix::new(n.addr(), n.prefix_len()).ok())
            .collect();
        let set: BTreeSet<Prefix> = set.difference(&configured).copied().collect();
        for p in self.redistributed.difference(&set) {
            info!(prefix = %p, "no longer redistributing");
            self.speaker.remove_network(now, *p);
        }
        for p in set.difference(&self.redistributed) {
            info!(prefix = %p, "redistributing kernel route");
            self.speaker.add_network(now, *p);
        }
        self.redistributed = set;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netlink::RTPROT_ROUTEVPN_BGP;

    #[test]
    fn redistribution_selects_connected_and_static() {
        use crate::netlink::RouteInfo;
        let kr = |dst: &str, len: u8, gw: Option<&str>, proto: u8, dev: Option<&str>| KernelRoute {
            info: RouteInfo {
                dst: dst.parse().unwrap(),
                prefix_len: len,
                oif: dev.map(|_| 1),
                gateway: gw.map(|g| g.parse().unwrap()),
                metric: None,
            },
            protocol: proto,
            dev: dev.map(str::to_string),
        };
        let routes = vec![
            kr("10.9.0.0", 24, None, RTPROT_KERNEL, Some("lan1")),
            kr("fd00:9::", 64, None, RTPROT_KERNEL, Some("lan1")),
            kr("fe80::", 64, None, RTPROT_KERNEL, Some("lan1")),
            kr("169.254.12.0", 30, None, RTPROT_KERNEL, Some("vti0")),
            kr("10.7.0.0", 24, None, RTPROT_KERNEL, Some("vti0")),
            kr("127.0.0.0", 8, None, RTPROT_KERNEL, Some("lo")),
            kr("192.0.2.0", 24, None, RTPROT_KERNEL, Some("wan0")),
            kr("2001:db8::", 64, None, RTPROT_KERNEL, Some("wan0")),
            kr(
                "10.3.0.0",
                24,
                Some("192.0.2.9"),
                RTPROT_STATIC,
                Some("wan0"),
            ),
            kr("10.8.0.0", 24, Some("10.9.0.2"), RTPROT_BOOT, Some("lan1")),
            kr(
                "10.6.0.0",
                24,
                Some("10.9.0.2"),
                RTPROT_STATIC,
                Some("lan1"),
            ),
            kr("0.0.0.0", 0, Some("10.9.0.2"), RTPROT_BOOT, Some("lan1")),
            kr("10.5.0.0", 24, Some("10.9.0.2"), 186, Some("lan1")),
            kr(
                "10.4.0.0",
                24,
                Some("169.254.12.2"),
                RTPROT_ROUTEVPN_BGP,
                Some("vti0"),
            ),
        ];
        let tunnels: HashSet<String> = ["vti0".to_string()].into();
        let underlay = ["192.0.2.2".parse().unwrap()];
        let show = |classes: &[Redistribute]| -> Vec<String> {
            select_redistributed(&routes, classes, &tunnels, &underlay)
                .iter()
                .map(|p| p.to_string())
                .collect()
        };
        assert_eq!(
            show(&[Redistribute::Connected]),
            ["10.9.0.0/24", "fd00:9::/64"]
        );
        assert_eq!(
            show(&[Redistribute::Static]),
            ["10.3.0.0/24", "10.6.0.0/24", "10.8.0.0/24"]
        );
        assert_eq!(
            show(&[Redistribute::Static, Redistribute::Connected]).len(),
            5
        );
        assert!(show(&[]).is_empty());
    }
}
