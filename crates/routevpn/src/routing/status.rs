//! The routing part of `routevpn status`, published after every turn of the loop.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bgp::{PeerId, Prefix, StateName};

use super::bfd_thread::PeerStatus;
use super::kernel::Installed;
use super::Driver;
use crate::control::{BgpRouteStatus, NeighborStatus, RoutingStatus};

fn state_name(s: StateName) -> &'static str {
    match s {
        StateName::Idle => "Idle",
        StateName::Connect => "Connect",
        StateName::Active => "Active",
        StateName::OpenSent => "OpenSent",
        StateName::OpenConfirm => "OpenConfirm",
        StateName::Established => "Established",
    }
}

fn bfd_state_name(s: bfd::State) -> String {
    format!("{s:?}")
}

/// Up to this many routes the status is rebuilt after every turn of the loop; above,
/// at most every [`PUBLISH_EVERY`] and never more than a tenth of the time (each
/// rebuild formats every route: per UPDATE of a 100,000-prefix feed that would cost
/// more than installing them, and stall BGP keepalives and BFD).
const PUBLISH_ALWAYS_BELOW: usize = 2_000;
const PUBLISH_EVERY: Duration = Duration::from_millis(500);
const PUBLISH_COST_SHARE: u32 = 10;

/// The routes for `status`: built when a client asks, not on every turn of the loop
/// (with 100,000 routes that alone would stall BGP keepalives and BFD).
pub(super) fn route_list(installed: &BTreeMap<Prefix, Installed>) -> Vec<BgpRouteStatus> {
    installed
        .iter()
        .filter_map(|(p, r)| {
            // The best path (the first next hop of a multipath route).
            let (gateway, device) = r.hops.first()?;
            Some(BgpRouteStatus {
                prefix: p.to_string(),
                next_hop: gateway.to_string(),
                device: device.clone(),
                also_via: r.hops[1..]
                    .iter()
                    .map(|(g, d)| format!("{g} dev {d}"))
                    .collect(),
            })
        })
        .collect()
}

/// BFD state and counters as the `bfd` thread last published them (fresh even while
/// the driver is busy), over each neighbour that has BFD.
pub(super) fn overlay_bfd(s: &mut RoutingStatus, bfd: &[PeerStatus]) {
    for (n, b) in s.neighbors.iter_mut().zip(bfd) {
        if n.bfd.is_some() {
            n.bfd = Some(b.state.map_or_else(|| "Paused".into(), bfd_state_name));
            n.bfd_wrong_interface = b.wrong_link;
            n.bfd_flaps = b.flaps;
            n.bfd_esp_hint_downs = b.esp_hint_downs;
        }
    }
}

impl Driver {
    /// Publishes now, or (with many routes) at the latest [`PUBLISH_EVERY`] after the
    /// last time; [`Driver::publish_deadline`] wakes the loop for it.
    pub(super) fn publish_throttled(&mut self, now: Instant) {
        let big = self.installed_len() >= PUBLISH_ALWAYS_BELOW;
        let due = self
            .published
            .is_none_or(|t| now.saturating_duration_since(t) >= PUBLISH_EVERY);
        if !big || due {
            self.publish(now);
            let cost = now.elapsed();
            // The next one no sooner than PUBLISH_EVERY, and ten times this one's cost.
            self.published = Some(now + (cost * PUBLISH_COST_SHARE).saturating_sub(PUBLISH_EVERY));
            self.status_stale = false;
        } else {
            self.status_stale = true;
        }
    }

    /// When a held-back status is due.
    pub(super) fn publish_deadline(&self) -> Option<Instant> {
        self.status_stale
            .then(|| self.published.map(|t| t + PUBLISH_EVERY))
            .flatten()
    }

    pub(super) fn publish(&self, now: Instant) {
        let loc: Vec<(Prefix, Option<PeerId>)> = self
            .speaker
            .rib()
            .loc_rib()
            .map(|(p, r)| (*p, r.peer))
            .collect();
        let neighbors = self
            .neighbors
            .iter()
            .map(|n| {
                let state = match self.speaker.session(n.id) {
                    Some(s) if n.active => state_name(s.state()).to_string(),
                    _ => "Paused".to_string(),
                };
                let received = self.speaker.rib().adj_rib_in(n.id).count() as u64;
                let accepted = loc.iter().filter(|(_, p)| *p == Some(n.id)).count() as u64;
                NeighborStatus {
                    address: n.cfg.address.to_string(),
                    asn: n.cfg.asn,
                    state,
                    uptime_secs: n
                        .established_at
                        .map(|t| now.saturating_duration_since(t).as_secs()),
                    prefixes_received: received,
                    prefixes_accepted: accepted,
                    prefixes_sent: self.speaker.rib().adj_rib_out(n.id).count() as u64,
                    prefixes_refused: self.speaker.rib().refused(n.id).count,
                    // The `bfd` thread's view replaces these in `Handle::status`.
                    bfd: n.cfg.bfd.as_ref().map(|_| "Paused".to_string()),
                    bfd_auth: n.cfg.bfd.as_ref().and_then(|b| b.auth.as_ref()).map(|a| {
                        match a.mode {
                            bfd::Sha1Mode::Keyed => "keyed-sha1",
                            bfd::Sha1Mode::Meticulous => "meticulous-keyed-sha1",
                        }
                        .to_string()
                    }),
                    bfd_wrong_interface: 0,
                    bfd_flaps: 0,
                    bfd_esp_hint: n.cfg.bfd.as_ref().is_some_and(|b| b.esp_hint),
                    bfd_esp_hint_downs: 0,
                }
            })
            .collect();
        if let Ok(mut s) = self.status.lock() {
            *s = RoutingStatus {
                asn: self.cfg.asn,
                router_id: self.cfg.router_id.to_string(),
                neighbors,
                // Filled in by `Handle::status` when asked for (route_list).
                routes: Vec::new(),
                route_failures: self.routes.stats().failed,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::NeighborStatus;

    /// The thread's state and counters reach the neighbours with BFD, and only those.
    #[test]
    fn bfd_overlay_fills_neighbours_with_bfd_only() {
        let with = NeighborStatus {
            bfd: Some("Paused".into()),
            ..NeighborStatus::default()
        };
        let mut s = RoutingStatus {
            neighbors: vec![with.clone(), NeighborStatus::default(), with],
            ..RoutingStatus::default()
        };
        let thread = [
            PeerStatus {
                state: Some(bfd::State::Up),
                wrong_link: 3,
                flaps: 2,
                esp_hint_downs: 1,
            },
            PeerStatus {
                state: Some(bfd::State::Up),
                wrong_link: 9,
                flaps: 9,
                esp_hint_downs: 9,
            },
            PeerStatus::default(),
        ];
        overlay_bfd(&mut s, &thread);
        let n = &s.neighbors;
        assert_eq!(
            (
                n[0].bfd.as_deref(),
                n[0].bfd_wrong_interface,
                n[0].bfd_flaps,
                n[0].bfd_esp_hint_downs
            ),
            (Some("Up"), 3, 2, 1)
        );
        assert_eq!((n[1].bfd.as_deref(), n[1].bfd_flaps), (None, 0));
        assert_eq!(n[2].bfd.as_deref(), Some("Paused"));
    }
}
