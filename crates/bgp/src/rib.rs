//! Adj-RIB-In per peer, Loc-RIB with best-path selection (RFC 4271 §9.1), and export
//! to peers through an Adj-RIB-Out (RFC 4271 §9.2).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::error::BgpError;
use crate::guard::{ImportGuard, Refusal};
use crate::limits::DEFAULT_LOCAL_PREF;
use crate::prefix::{Prefix, PrefixList};
use crate::wire::{announce_updates, withdraw_updates};
use crate::wire::{Afi, MpNextHop, ParsedUpdate, PathAttributes, Safi, Update};

/// Driver-chosen peer handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u32);

/// RIB-wide configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RibConfig {
    /// Our AS.
    pub local_as: u32,
    /// Our BGP Identifier.
    pub router_id: Ipv4Addr,
    /// Locally originated prefixes, announced to every peer.
    pub networks: Vec<Prefix>,
    /// Maximum ECMP paths (1 = no multipath).
    pub max_paths: usize,
}

/// Per-peer routing policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerPolicy {
    /// The peer's AS.
    pub peer_as: u32,
    /// The peer's transport address (last best-path tie-breaker, RFC 4271 §9.1.2.2 g).
    pub address: IpAddr,
    /// Import filter (None = accept all).
    pub import: Option<PrefixList>,
    /// Export filter (None = announce all).
    pub export: Option<PrefixList>,
    /// Maximum accepted prefixes (Cease/1 when exceeded, RFC 4486).
    pub max_prefix: Option<u32>,
    /// Degree of preference for routes from this (external) peer (RFC 4271 §9.1.1).
    pub local_pref: u32,
    /// IPv4 next hop we announce; default: our transport address if IPv4.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// IPv6 next hop we announce; default: our transport address if IPv6.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// Routes that would take traffic for our infrastructure, or with a third-party
    /// next hop, are refused at import (default: none).
    pub guard: ImportGuard,
}

impl PeerPolicy {
    /// Accept and announce everything, no limit.
    pub fn new(peer_as: u32, address: IpAddr) -> Self {
        Self {
            peer_as,
            address,
            import: None,
            export: None,
            max_prefix: None,
            local_pref: DEFAULT_LOCAL_PREF,
            next_hop_v4: None,
            next_hop_v6: None,
            guard: ImportGuard::default(),
        }
    }
}

/// Routes a peer announced that the import guard refused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refused {
    /// How many, since the peer was added.
    pub count: u64,
    /// The last one and why.
    pub last: Option<(Prefix, Refusal)>,
}

/// What is known about a peer once its session is Established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerUp {
    /// Peer's BGP Identifier.
    pub bgp_id: Ipv4Addr,
    /// IPv4 unicast negotiated.
    pub ipv4: bool,
    /// IPv6 unicast negotiated.
    pub ipv6: bool,
    /// Our end of the TCP connection (next hop self).
    pub local_addr: Option<IpAddr>,
}

/// A route in the RIB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination.
    pub prefix: Prefix,
    /// Next hop (unspecified for locally originated routes).
    pub next_hop: MpNextHop,
    /// Learned from this peer; None = locally originated.
    pub peer: Option<PeerId>,
    /// Peer's transport address.
    pub peer_addr: Option<IpAddr>,
    /// Peer's BGP Identifier (ours for local routes).
    pub peer_bgp_id: Ipv4Addr,
    /// Learned over eBGP.
    pub ebgp: bool,
    /// Effective LOCAL_PREF.
    pub local_pref: u32,
    /// Path attributes as received.
    pub attrs: Arc<PathAttributes>,
}

impl Route {
    /// Whether we originate this route.
    pub fn is_local(&self) -> bool {
        self.peer.is_none()
    }
}

/// A Loc-RIB change for the daemon to install into the kernel. `best == None` means
/// remove. `ecmp` holds all multipath routes, best first (just `[best]` without
/// multipath). A best route with `peer == None` is our own network: install nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RibChange {
    /// Destination.
    pub prefix: Prefix,
    /// Selected route.
    pub best: Option<Route>,
    /// Equal-cost routes, best first.
    pub ecmp: Vec<Route>,
}

#[derive(Debug)]
struct PeerEntry {
    policy: PeerPolicy,
    up: Option<PeerUp>,
    adj_in: BTreeMap<Prefix, Route>,
    adj_out: BTreeMap<Prefix, (PathAttributes, MpNextHop)>,
    pending_announce: BTreeMap<Prefix, (PathAttributes, MpNextHop)>,
    pending_withdraw: BTreeSet<Prefix>,
    refused: Refused,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Selected {
    best: Route,
    ecmp: Vec<Route>,
}

/// The routing tables.
#[derive(Debug)]
pub struct Rib {
    cfg: RibConfig,
    networks: BTreeSet<Prefix>,
    peers: BTreeMap<PeerId, PeerEntry>,
    loc: BTreeMap<Prefix, Selected>,
    changes: VecDeque<RibChange>,
}

impl Rib {
    /// New RIB; configured networks enter the Loc-RIB at once.
    pub fn new(cfg: RibConfig) -> Self {
        let nets = cfg.networks.clone();
        let mut rib = Self {
            cfg,
            networks: BTreeSet::new(),
            peers: BTreeMap::new(),
            loc: BTreeMap::new(),
            changes: VecDeque::new(),
        };
        for n in nets {
            rib.add_network(n);
        }
        rib
    }

    /// Configuration.
    pub fn config(&self) -> &RibConfig {
        &self.cfg
    }

    /// Originate `prefix`.
    pub fn add_network(&mut self, prefix: Prefix) {
        if self.networks.insert(prefix) {
            self.recompute(prefix);
        }
    }

    /// Stop originating `prefix`.
    pub fn remove_network(&mut self, prefix: Prefix) {
        if self.networks.remove(&prefix) {
            self.recompute(prefix);
        }
    }

    /// Register a peer (no routes until [`Rib::peer_up`]).
    pub fn add_peer(&mut self, id: PeerId, policy: PeerPolicy) {
        self.peers.insert(
            id,
            PeerEntry {
                policy,
                up: None,
                adj_in: BTreeMap::new(),
                adj_out: BTreeMap::new(),
                pending_announce: BTreeMap::new(),
                pending_withdraw: BTreeSet::new(),
                refused: Refused::default(),
            },
        );
    }

    /// Forget a peer and its routes.
    pub fn remove_peer(&mut self, id: PeerId) {
        self.peer_down(id);
        self.peers.remove(&id);
    }

    /// Session Established: announce the Loc-RIB to the peer.
    pub fn peer_up(&mut self, id: PeerId, up: PeerUp) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        p.up = Some(up);
        p.adj_out.clear();
        p.pending_announce.clear();
        p.pending_withdraw.clear();
        let prefixes: Vec<Prefix> = self.loc.keys().copied().collect();
        for prefix in prefixes {
            self.export_prefix(id, prefix);
        }
    }

    /// Session (or BFD, or the tunnel) down: withdraw everything learned from the peer.
    pub fn peer_down(&mut self, id: PeerId) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        p.up = None;
        p.adj_out.clear();
        p.pending_announce.clear();
        p.pending_withdraw.clear();
        let gone = std::mem::take(&mut p.adj_in);
        for prefix in gone.into_keys() {
            self.recompute(prefix);
        }
    }

    /// Re-send everything to a peer (ROUTE-REFRESH received).
    pub fn refresh(&mut self, id: PeerId) {
        if let Some(up) = self.peers.get(&id).and_then(|p| p.up.clone()) {
            self.peer_up(id, up);
        }
    }

    /// Apply an UPDATE from `id`. `Err` (max-prefix exceeded) means the session must be
    /// closed with that error; the routes are withdrawn by the following `peer_down`.
    pub fn handle_update(&mut self, id: PeerId, u: &ParsedUpdate) -> Result<(), BgpError> {
        let local_as = self.cfg.local_as;
        let Some(p) = self.peers.get_mut(&id) else {
            return Ok(());
        };
        let Some(up) = p.up.clone() else {
            return Ok(());
        };
        let ebgp = p.policy.peer_as != local_as;
        let mut touched = BTreeSet::new();
        for w in &u.withdrawn {
            if p.adj_in.remove(w).is_some() {
                touched.insert(*w);
            }
        }
        let attrs = Arc::new(u.attrs.clone());
        let local_pref = if ebgp {
            p.policy.local_pref
        } else {
            u.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
        };
        let mut last_afi = Afi::IPV4;
        let mut over = None;
        for (prefix, nh) in &u.announced {
            let afi_ok = match prefix.afi() {
                Afi::IPV4 => up.ipv4,
                Afi::IPV6 => up.ipv6,
                _ => false,
            };
            // RFC 4271 §9.1.2: a route whose AS_PATH contains our AS is unfeasible.
            let looped = u.attrs.as_path.contains(local_as);
            let denied = p.policy.import.as_ref().is_some_and(|l| !l.permits(prefix));
            let guarded = match p.policy.guard.check(prefix, nh) {
                Ok(()) => false,
                Err(why) => {
                    p.refused.count += 1;
                    p.refused.last = Some((*prefix, why));
                    true
                }
            };
            if !afi_ok || looped || denied || guarded {
                // An implicit withdraw of what we had (RFC 4271 §9).
                if p.adj_in.remove(prefix).is_some() {
                    touched.insert(*prefix);
                }
                continue;
            }
            last_afi = prefix.afi();
            // RFC 4486 §4: past the limit the session ends; the excess never reaches the
            // Loc-RIB (nor the kernel).
            if let Some(limit) = p.policy.max_prefix {
                if !p.adj_in.contains_key(prefix) && p.adj_in.len() >= limit as usize {
                    over = Some(limit);
                    continue;
                }
            }
            p.adj_in.insert(
                *prefix,
                Route {
                    prefix: *prefix,
                    next_hop: *nh,
                    peer: Some(id),
                    peer_addr: Some(p.policy.address),
                    peer_bgp_id: up.bgp_id,
                    ebgp,
                    local_pref,
                    attrs: attrs.clone(),
                },
            );
            touched.insert(*prefix);
        }
        for prefix in touched {
            self.recompute(prefix);
        }
        match over {
            Some(limit) => Err(BgpError::MaxPrefixes {
                afi: last_afi,
                safi: Safi::UNICAST,
                limit,
            }),
            None => Ok(()),
        }
    }

    /// Routes from `id` the import guard refused.
    pub fn refused(&self, id: PeerId) -> Refused {
        self.peers.get(&id).map(|p| p.refused).unwrap_or_default()
    }

    /// Next Loc-RIB change.
    pub fn poll_change(&mut self) -> Option<RibChange> {
        self.changes.pop_front()
    }

    /// Best route for `prefix`.
    pub fn best(&self, prefix: &Prefix) -> Option<&Route> {
        self.loc.get(prefix).map(|s| &s.best)
    }

    /// Multipath routes for `prefix`, best first.
    pub fn ecmp(&self, prefix: &Prefix) -> &[Route] {
        self.loc
            .get(prefix)
            .map(|s| s.ecmp.as_slice())
            .unwrap_or(&[])
    }

    /// The Loc-RIB: each prefix with its best route.
    pub fn loc_rib(&self) -> impl Iterator<Item = (&Prefix, &Route)> {
        self.loc.iter().map(|(p, s)| (p, &s.best))
    }

    /// Accepted routes from `id`.
    pub fn adj_rib_in(&self, id: PeerId) -> impl Iterator<Item = &Route> {
        self.peers
            .get(&id)
            .into_iter()
            .flat_map(|p| p.adj_in.values())
    }

    /// What we currently announce to `id`.
    pub fn adj_rib_out(&self, id: PeerId) -> impl Iterator<Item = &Prefix> {
        self.peers
            .get(&id)
            .into_iter()
            .flat_map(|p| p.adj_out.keys())
    }

    /// UPDATE messages waiting for `id` (announcements grouped by attributes).
    pub fn take_updates(&mut self, id: PeerId) -> Vec<Update> {
        let Some(p) = self.peers.get_mut(&id) else {
            return vec![];
        };
        let withdraw: Vec<Prefix> = std::mem::take(&mut p.pending_withdraw)
            .into_iter()
            .collect();
        let mut out = withdraw_updates(&withdraw);
        let mut groups: BTreeMap<(Afi, PathAttributes, MpNextHop), Vec<Prefix>> = BTreeMap::new();
        for (prefix, (a, nh)) in std::mem::take(&mut p.pending_announce) {
            groups
                .entry((prefix.afi(), a, nh))
                .or_default()
                .push(prefix);
        }
        for ((_, a, nh), prefixes) in groups {
            out.extend(announce_updates(&a, nh, &prefixes));
        }
        out
    }

    fn local_route(&self, prefix: Prefix) -> Route {
        let unspec = match prefix.addr() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        Route {
            prefix,
            next_hop: MpNextHop {
                addr: unspec,
                link_local: None,
            },
            peer: None,
            peer_addr: None,
            peer_bgp_id: self.cfg.router_id,
            ebgp: false,
            local_pref: DEFAULT_LOCAL_PREF,
            attrs: Arc::new(PathAttributes::default()),
        }
    }

    fn recompute(&mut self, prefix: Prefix) {
        let mut cands: Vec<Route> = Vec::new();
        if self.networks.contains(&prefix) {
            cands.push(self.local_route(prefix));
        }
        for p in self.peers.values() {
            if let Some(r) = p.adj_in.get(&prefix) {
                cands.push(r.clone());
            }
        }
        let new = select(cands, self.cfg.local_as, self.cfg.max_paths.max(1));
        let old = self.loc.get(&prefix);
        if old == new.as_ref() {
            return;
        }
        match &new {
            Some(s) => {
                self.loc.insert(prefix, s.clone());
            }
            None => {
                self.loc.remove(&prefix);
            }
        }
        self.changes.push_back(RibChange {
            prefix,
            best: new.as_ref().map(|s| s.best.clone()),
            ecmp: new.map(|s| s.ecmp).unwrap_or_default(),
        });
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.export_prefix(id, prefix);
        }
    }

    /// Desired announcement of `prefix` to `id` (RFC 4271 §9.1.3, §5.1).
    fn export_route(&self, id: PeerId, prefix: Prefix) -> Option<(PathAttributes, MpNextHop)> {
        let p = self.peers.get(&id)?;
        let up = p.up.as_ref()?;
        let best = &self.loc.get(&prefix)?.best;
        let carries = match prefix.afi() {
            Afi::IPV4 => up.ipv4,
            Afi::IPV6 => up.ipv6,
            _ => false,
        };
        if !carries || best.peer == Some(id) {
            return None;
        }
        let to_ebgp = p.policy.peer_as != self.cfg.local_as;
        // RFC 4271 §9.2: routes learned over iBGP are not sent to iBGP peers.
        if !to_ebgp && !best.ebgp && !best.is_local() {
            return None;
        }
        if p.policy
            .export
            .as_ref()
            .is_some_and(|l| !l.permits(&prefix))
        {
            return None;
        }
        let mut attrs = (*best.attrs).clone();
        if to_ebgp {
            // Sender-side loop avoidance: the peer would reject it anyway.
            if attrs.as_path.contains(p.policy.peer_as) {
                return None;
            }
            attrs.as_path.prepend(self.cfg.local_as); // §5.1.2 b
            attrs.local_pref = None; // §5.1.5: not sent to external peers
            if !best.is_local() {
                attrs.med = None; // §5.1.4: not propagated to other ASes
            }
        } else {
            attrs.local_pref = Some(best.local_pref);
        }
        // Next hop self (§5.1.3).
        let addr = match prefix.afi() {
            Afi::IPV4 => p
                .policy
                .next_hop_v4
                .map(IpAddr::V4)
                .or(up.local_addr.filter(IpAddr::is_ipv4))?,
            _ => p
                .policy
                .next_hop_v6
                .map(IpAddr::V6)
                .or(up.local_addr.filter(IpAddr::is_ipv6))?,
        };
        Some((
            attrs,
            MpNextHop {
                addr,
                link_local: None,
            },
        ))
    }

    fn export_prefix(&mut self, id: PeerId, prefix: Prefix) {
        let want = self.export_route(id, prefix);
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.up.is_none() {
            return;
        }
        match want {
            Some(w) => {
                if p.adj_out.get(&prefix) != Some(&w) {
                    p.adj_out.insert(prefix, w.clone());
                    p.pending_withdraw.remove(&prefix);
                    p.pending_announce.insert(prefix, w);
                }
            }
            None => {
                if p.adj_out.remove(&prefix).is_some() {
                    p.pending_announce.remove(&prefix);
                    p.pending_withdraw.insert(prefix);
                }
            }
        }
    }
}

fn neighbour_as(r: &Route, local_as: u32) -> u32 {
    r.attrs.as_path.first_as().unwrap_or(local_as)
}

/// Keep the elements minimal under `key`.
fn keep_min<K: Ord>(v: &mut Vec<Route>, key: impl Fn(&Route) -> K) {
    if let Some(m) = v.iter().map(&key).min() {
        v.retain(|r| key(r) == m);
    }
}

/// Decision process, phase 2 (RFC 4271 §9.1.2); multipath = the routes still equal
/// after the eBGP/iBGP step.
fn select(mut v: Vec<Route>, local_as: u32, max_paths: usize) -> Option<Selected> {
    // Locally originated routes win outright.
    if let Some(l) = v.iter().find(|r| r.is_local()) {
        return Some(Selected {
            best: l.clone(),
            ecmp: vec![l.clone()],
        });
    }
    keep_min(&mut v, |r| std::cmp::Reverse(r.local_pref)); // highest LOCAL_PREF
    keep_min(&mut v, |r| r.attrs.as_path.path_len()); // §9.1.2.2 a
    keep_min(&mut v, |r| r.attrs.origin); // b
                                          // c: MED compared only between routes from the same neighbouring AS; absent = 0.
    let snapshot = v.clone();
    v.retain(|r| {
        let med = r.attrs.med.unwrap_or(0);
        let nas = neighbour_as(r, local_as);
        !snapshot
            .iter()
            .any(|o| neighbour_as(o, local_as) == nas && o.attrs.med.unwrap_or(0) < med)
    });
    keep_min(&mut v, |r| !r.ebgp); // d: eBGP over iBGP
                                   // f, g: lowest BGP Identifier, then lowest peer address.
    v.sort_by(|a, b| {
        (u32::from(a.peer_bgp_id), a.peer_addr).cmp(&(u32::from(b.peer_bgp_id), b.peer_addr))
    });
    let best = v.first()?.clone();
    v.truncate(max_paths);
    Some(Selected { best, ecmp: v })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{AsPath, Origin};

    fn route(peer: u32, bgp_id: u8, ebgp: bool, f: impl FnOnce(&mut PathAttributes)) -> Route {
        let mut a = PathAttributes {
            as_path: AsPath::sequence(vec![65000 + peer]),
            ..Default::default()
        };
        f(&mut a);
        Route {
            prefix: "10.0.0.0/24".parse().unwrap(),
            next_hop: MpNextHop {
                addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, peer as u8)),
                link_local: None,
            },
            peer: Some(PeerId(peer)),
            peer_addr: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, peer as u8))),
            peer_bgp_id: Ipv4Addr::new(10, 0, 0, bgp_id),
            ebgp,
            local_pref: a.local_pref.unwrap_or(100),
            attrs: Arc::new(a),
        }
    }

    fn best(v: Vec<Route>) -> u32 {
        select(v, 65000, 1).unwrap().best.peer.unwrap().0
    }

    #[test]
    fn local_pref_first() {
        let a = route(1, 1, true, |_| {});
        let b = route(2, 2, true, |a| {
            a.local_pref = Some(200);
            a.as_path = AsPath::sequence(vec![1, 2, 3, 4]);
        });
        assert_eq!(best(vec![a, b]), 2);
    }

    #[test]
    fn shortest_as_path_with_set_counting_one() {
        let a = route(1, 1, true, |a| a.as_path = AsPath::sequence(vec![1, 2, 3]));
        let b = route(2, 2, true, |a| {
            a.as_path = AsPath::sequence(vec![2]);
            a.as_path.segments.push(crate::wire::AsSegment {
                kind: crate::wire::SegmentType::AS_SET,
                asns: vec![7, 8, 9, 10],
            });
        });
        assert_eq!(best(vec![a, b]), 2);
    }

    #[test]
    fn lowest_origin() {
        let a = route(1, 1, true, |a| a.origin = Origin::Incomplete);
        let b = route(2, 2, true, |a| a.origin = Origin::Egp);
        assert_eq!(best(vec![a, b]), 2);
    }

    #[test]
    fn med_only_within_same_neighbour_as() {
        let a = route(1, 1, true, |a| {
            a.as_path = AsPath::sequence(vec![65009]);
            a.med = Some(50);
        });
        let b = route(2, 2, true, |a| {
            a.as_path = AsPath::sequence(vec![65009]);
            a.med = Some(10);
        });
        assert_eq!(best(vec![a.clone(), b]), 2);
        // different neighbour AS: MED ignored, falls to router id
        let c = route(3, 3, true, |a| {
            a.as_path = AsPath::sequence(vec![65010]);
            a.med = Some(1);
        });
        assert_eq!(best(vec![a, c]), 1);
    }

    #[test]
    fn ebgp_over_ibgp() {
        let a = route(1, 1, false, |a| a.as_path = AsPath::sequence(vec![65009]));
        let b = route(2, 2, true, |a| a.as_path = AsPath::sequence(vec![65009]));
        assert_eq!(best(vec![a, b]), 2);
    }

    #[test]
    fn lowest_router_id_then_address() {
        let a = route(1, 9, true, |_| {});
        let b = route(2, 3, true, |_| {});
        assert_eq!(best(vec![a, b]), 2);
        let a = route(1, 3, true, |_| {});
        let b = route(2, 3, true, |_| {});
        assert_eq!(best(vec![b, a]), 1);
    }

    #[test]
    fn ecmp_set() {
        let a = route(1, 9, true, |_| {});
        let b = route(2, 3, true, |_| {});
        let c = route(3, 4, true, |a| a.as_path = AsPath::sequence(vec![1, 2]));
        let s = select(vec![a, b, c], 65000, 4).unwrap();
        assert_eq!(s.best.peer, Some(PeerId(2)));
        let ids: Vec<_> = s.ecmp.iter().map(|r| r.peer.unwrap().0).collect();
        assert_eq!(ids, vec![2, 1]);
    }

    fn rib_with_peers() -> Rib {
        let mut rib = Rib::new(RibConfig {
            local_as: 65001,
            router_id: Ipv4Addr::new(10, 0, 0, 1),
            networks: vec![],
            max_paths: 4,
        });
        for i in [2u32, 3] {
            rib.add_peer(
                PeerId(i),
                PeerPolicy::new(65000 + i, IpAddr::V4(Ipv4Addr::new(192, 0, 2, i as u8))),
            );
            rib.peer_up(
                PeerId(i),
                PeerUp {
                    bgp_id: Ipv4Addr::new(10, 0, 0, i as u8),
                    ipv4: true,
                    ipv6: true,
                    local_addr: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1))),
                },
            );
        }
        rib
    }

    fn upd(prefix: &str, path: Vec<u32>, nh: u8) -> ParsedUpdate {
        ParsedUpdate {
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
        }
    }

    #[test]
    fn loop_rejected_and_implicitly_withdraws() {
        let mut rib = rib_with_peers();
        let p: Prefix = "10.9.0.0/16".parse().unwrap();
        rib.handle_update(PeerId(2), &upd("10.9.0.0/16", vec![65002, 65009], 2))
            .unwrap();
        assert!(rib.best(&p).is_some());
        // Same prefix again, now with our AS in the path: unfeasible, replaces the old.
        rib.handle_update(PeerId(2), &upd("10.9.0.0/16", vec![65002, 65001, 65009], 2))
            .unwrap();
        assert!(rib.best(&p).is_none());
        assert_eq!(rib.adj_rib_in(PeerId(2)).count(), 0);
        let changes: Vec<_> = std::iter::from_fn(|| rib.poll_change()).collect();
        assert_eq!(changes.len(), 2);
        assert!(changes[1].best.is_none());
    }

    #[test]
    fn ecmp_change_and_peer_down() {
        let mut rib = rib_with_peers();
        let p: Prefix = "10.9.0.0/16".parse().unwrap();
        rib.handle_update(PeerId(2), &upd("10.9.0.0/16", vec![65002, 65009], 2))
            .unwrap();
        rib.handle_update(PeerId(3), &upd("10.9.0.0/16", vec![65003, 65009], 3))
            .unwrap();
        let changes: Vec<_> = std::iter::from_fn(|| rib.poll_change()).collect();
        let last = changes.last().unwrap();
        assert_eq!(last.ecmp.len(), 2);
        assert_eq!(last.best.as_ref().unwrap().peer, Some(PeerId(2)));
        // Best route re-advertised to the other eBGP peer only, with our AS prepended.
        assert_eq!(rib.adj_rib_out(PeerId(3)).count(), 1);
        let ups = rib.take_updates(PeerId(3));
        assert_eq!(ups.len(), 1);
        rib.peer_down(PeerId(2));
        let c = rib.poll_change().unwrap();
        assert_eq!(c.best.unwrap().peer, Some(PeerId(3)));
        assert_eq!(c.ecmp.len(), 1);
        assert!(rib.best(&p).is_some());
    }
}
