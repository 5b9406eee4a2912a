//! Speakers on a virtual clock connected by in-memory byte pipes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use bgp::session::DownReason;
use bgp::wire::Message;
use bgp::{
    BgpError, PeerId, PeerPolicy, Prefix, RibChange, RibConfig, SessionConfig, Speaker,
    SpeakerEvent,
};

struct Node {
    sp: Speaker,
    asn: u32,
    changes: Vec<RibChange>,
    downs: Vec<(PeerId, DownReason)>,
    established: Vec<PeerId>,
    sent: Vec<(PeerId, Message)>,
}

struct Link {
    a: (usize, PeerId),
    b: (usize, PeerId),
    addr_a: IpAddr,
    addr_b: IpAddr,
    up: bool,
    blackhole: bool,
    connected: bool,
    closing: bool,
}

struct Net {
    t: Instant,
    nodes: Vec<Node>,
    links: Vec<Link>,
}

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

impl Net {
    fn new() -> Self {
        Self {
            t: Instant::now(),
            nodes: vec![],
            links: vec![],
        }
    }

    fn node(&mut self, asn: u32, id: u8, networks: &[&str]) -> usize {
        let cfg = RibConfig {
            local_as: asn,
            router_id: Ipv4Addr::new(10, 255, 0, id),
            networks: networks.iter().map(|s| p(s)).collect(),
            max_paths: 1,
        };
        self.nodes.push(Node {
            sp: Speaker::new(cfg),
            asn,
            changes: vec![],
            downs: vec![],
            established: vec![],
            sent: vec![],
        });
        self.nodes.len() - 1
    }

    /// Link node `a` and `b`; each sees the other as peer id = other's index.
    fn link_with(
        &mut self,
        a: usize,
        b: usize,
        tweak: impl Fn(usize, &mut SessionConfig, &mut PeerPolicy),
    ) -> usize {
        let k = self.links.len() as u8 + 1;
        let addr_a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, k * 10 + a as u8));
        let addr_b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, k * 10 + b as u8));
        let t = self.t;
        for (me, other, my_addr, other_addr) in [(a, b, addr_a, addr_b), (b, a, addr_b, addr_a)] {
            let my_as = self.nodes[me].asn;
            let other_as = self.nodes[other].asn;
            let mut sc =
                SessionConfig::new(my_as, other_as, Ipv4Addr::new(10, 255, 0, me as u8 + 1));
            sc.hold_time = 9;
            sc.connect_retry = Duration::from_secs(5);
            sc.idle_hold = Duration::from_secs(1);
            let mut pol = PeerPolicy::new(other_as, other_addr);
            let IpAddr::V4(v4) = my_addr else {
                unreachable!()
            };
            let o = v4.octets();
            pol.next_hop_v6 = Some(Ipv6Addr::new(
                0x2001,
                0xdb8,
                0xff,
                0,
                0,
                0,
                u16::from(o[3]),
                1,
            ));
            tweak(me, &mut sc, &mut pol);
            self.nodes[me].sp.add_peer(t, PeerId(other as u32), sc, pol);
        }
        self.links.push(Link {
            a: (a, PeerId(b as u32)),
            b: (b, PeerId(a as u32)),
            addr_a,
            addr_b,
            up: true,
            blackhole: false,
            connected: false,
            closing: false,
        });
        self.links.len() - 1
    }

    fn link(&mut self, a: usize, b: usize) -> usize {
        self.link_with(a, b, |_, _, _| {})
    }

    fn find(&self, node: usize, peer: PeerId) -> (usize, bool) {
        for (i, l) in self.links.iter().enumerate() {
            if l.a == (node, peer) {
                return (i, true);
            }
            if l.b == (node, peer) {
                return (i, false);
            }
        }
        panic!("no link");
    }

    fn settle(&mut self) {
        for _ in 0..10_000 {
            let mut progressed = false;
            for n in 0..self.nodes.len() {
                while let Some(ev) = self.nodes[n].sp.poll_event() {
                    progressed = true;
                    match ev {
                        SpeakerEvent::Connect(peer) => {
                            let (li, is_a) = self.find(n, peer);
                            let l = &self.links[li];
                            let (me, other) = if is_a { (l.a, l.b) } else { (l.b, l.a) };
                            let (ma, oa) = if is_a {
                                (l.addr_a, l.addr_b)
                            } else {
                                (l.addr_b, l.addr_a)
                            };
                            if l.connected {
                                continue;
                            }
                            let t = self.t;
                            if l.up && self.nodes[other.0].sp.accepts_connection(other.1) {
                                self.links[li].connected = true;
                                assert!(self.nodes[me.0].sp.handle_connected(t, me.1, ma));
                                assert!(self.nodes[other.0].sp.handle_connected(t, other.1, oa));
                            } else {
                                self.nodes[me.0].sp.handle_disconnected(t, me.1);
                            }
                        }
                        SpeakerEvent::Down(peer, r) => {
                            let (li, _) = self.find(n, peer);
                            self.links[li].closing = true;
                            self.nodes[n].downs.push((peer, r));
                        }
                        SpeakerEvent::Established(peer, _) => self.nodes[n].established.push(peer),
                        SpeakerEvent::RibChange(c) => self.nodes[n].changes.push(c),
                    }
                }
            }
            for n in 0..self.nodes.len() {
                while let Some((peer, bytes)) = self.nodes[n].sp.poll_transmit() {
                    progressed = true;
                    self.nodes[n]
                        .sent
                        .push((peer, Message::decode(&bytes).unwrap()));
                    let (li, is_a) = self.find(n, peer);
                    let l = &self.links[li];
                    if !l.connected || l.blackhole {
                        continue;
                    }
                    let other = if is_a { l.b } else { l.a };
                    let t = self.t;
                    // Deliver in odd-sized pieces to exercise framing.
                    for c in bytes.chunks(7) {
                        self.nodes[other.0].sp.handle_bytes(t, other.1, c);
                    }
                }
            }
            for li in 0..self.links.len() {
                if self.links[li].closing {
                    let l = &mut self.links[li];
                    l.closing = false;
                    if l.connected {
                        l.connected = false;
                        let (a, b) = (l.a, l.b);
                        let t = self.t;
                        self.nodes[a.0].sp.handle_disconnected(t, a.1);
                        self.nodes[b.0].sp.handle_disconnected(t, b.1);
                        progressed = true;
                    }
                }
            }
            if !progressed {
                return;
            }
        }
        panic!("network does not settle");
    }

    fn run(&mut self, d: Duration) {
        let until = self.t + d;
        loop {
            self.settle();
            let next = self.nodes.iter().filter_map(|n| n.sp.poll_timeout()).min();
            match next {
                Some(x) if x <= until => {
                    self.t = self.t.max(x);
                    let t = self.t;
                    for n in &mut self.nodes {
                        n.sp.handle_timeout(t);
                    }
                }
                _ => break,
            }
        }
        self.t = until;
    }

    fn cut(&mut self, li: usize) {
        let l = &mut self.links[li];
        l.up = false;
        if l.connected {
            l.connected = false;
            let (a, b) = (l.a, l.b);
            let t = self.t;
            self.nodes[a.0].sp.handle_disconnected(t, a.1);
            self.nodes[b.0].sp.handle_disconnected(t, b.1);
        }
    }

    fn restore(&mut self, li: usize) {
        self.links[li].up = true;
        self.links[li].blackhole = false;
    }

    fn est(&self, n: usize, peer: usize) -> bool {
        self.nodes[n]
            .sp
            .session(PeerId(peer as u32))
            .is_some_and(|s| s.is_established())
    }

    fn best_via(&self, n: usize, prefix: &str) -> Option<Option<u32>> {
        self.nodes[n]
            .sp
            .rib()
            .best(&p(prefix))
            .map(|r| r.peer.map(|x| x.0))
    }
}

#[test]
fn session_comes_up_and_keepalives_keep_it_up() {
    let mut net = Net::new();
    let a = net.node(65001, 1, &[]);
    let b = net.node(65002, 2, &[]);
    net.link(a, b);
    net.run(Duration::from_secs(1));
    assert!(net.est(a, b) && net.est(b, a));
    net.run(Duration::from_secs(600));
    assert!(net.est(a, b) && net.est(b, a));
    assert!(net.nodes[a].downs.is_empty() && net.nodes[b].downs.is_empty());
    let kas = net.nodes[a]
        .sent
        .iter()
        .filter(|(_, m)| *m == Message::Keepalive)
        .count();
    // hold 9 s → keepalive every 3 s
    assert!(kas >= 190, "{kas}");
}

#[test]
fn hold_timer_expiry_sends_4_0_and_goes_down() {
    let mut net = Net::new();
    let a = net.node(65001, 1, &[]);
    let b = net.node(65002, 2, &[]);
    let l = net.link(a, b);
    net.run(Duration::from_secs(1));
    assert!(net.est(a, b));
    net.links[l].blackhole = true;
    net.run(Duration::from_secs(10));
    let (_, r) = &net.nodes[a].downs[0];
    assert_eq!(*r, DownReason::Error(BgpError::HoldTimerExpired));
    let last = net.nodes[a]
        .sent
        .iter()
        .rev()
        .find(|(_, m)| matches!(m, Message::Notification(_)));
    let Some((_, Message::Notification(n))) = last else {
        panic!()
    };
    assert_eq!((n.code, n.subcode), (4, 0));
    assert!(!net.est(a, b));
}

#[test]
fn hold_time_zero_means_no_keepalives() {
    let mut net = Net::new();
    let a = net.node(65001, 1, &[]);
    let b = net.node(65002, 2, &[]);
    net.link_with(a, b, |_, sc, _| sc.hold_time = 0);
    net.run(Duration::from_secs(1000));
    assert!(net.est(a, b));
    let kas = net.nodes[a]
        .sent
        .iter()
        .filter(|(_, m)| *m == Message::Keepalive)
        .count();
    assert_eq!(kas, 1); // only the one confirming the OPEN
}

#[test]
fn wrong_peer_as_gets_2_2() {
    let mut net = Net::new();
    let a = net.node(65001, 1, &[]);
    let b = net.node(65002, 2, &[]);
    net.link_with(a, b, |me, sc, _| {
        if me == 0 {
            sc.peer_as = 65099;
        }
    });
    net.run(Duration::from_millis(10));
    assert!(matches!(
        net.nodes[a].downs[0].1,
        DownReason::Error(BgpError::BadPeerAs {
            expected: 65099,
            got: 65002
        })
    ));
    let DownReason::PeerNotification(n) = &net.nodes[b].downs[0].1 else {
        panic!()
    };
    assert_eq!((n.code, n.subcode), (2, 2));
}

#[test]
fn routes_exchanged_v4_and_v6() {
    let mut net = Net::new();
    let a = net.node(65001, 1, &["10.1.0.0/16", "2001:db8:1::/48"]);
    let b = net.node(65002, 2, &["10.2.0.0/16", "2001:db8:2::/48"]);
    let l = net.link(a, b);
    net.run(Duration::from_secs(1));
    let ra = net.nodes[a]
        .sp
        .rib()
        .best(&p("10.2.0.0/16"))
        .unwrap()
        .clone();
    assert_eq!(ra.next_hop.addr, net.links[l].addr_b);
    assert_eq!(ra.attrs.as_path.segments[0].asns, vec![65002]);
    let r6 = net.nodes[a]
        .sp
        .rib()
        .best(&p("2001:db8:2::/48"))
        .unwrap()
        .clone();
    assert_eq!(
        r6.next_hop.addr,
        "2001:db8:ff::b:1".parse::<IpAddr>().unwrap()
    );
    let rb = net.nodes[b]
        .sp
        .rib()
        .best(&p("2001:db8:1::/48"))
        .unwrap()
        .clone();
    assert_eq!(rb.peer, Some(PeerId(a as u32)));
    assert!(net.nodes[a]
        .changes
        .iter()
        .any(|c| c.prefix == p("2001:db8:2::/48") && c.best.is_some()));
    // Withdraw a network; the peer removes it.
    let t = net.t;
    net.nodes[b].sp.remove_network(t, p("2001:db8:2::/48"));
    net.run(Duration::from_secs(1));
    assert!(net.nodes[a].sp.rib().best(&p("2001:db8:2::/48")).is_none());
    let last = net.nodes[a].changes.last().unwrap();
    assert_eq!(
        (last.prefix, last.best.is_none()),
        (p("2001:db8:2::/48"), true)
    );
}

#[test]
fn triangle_fails_over_and_back() {
    let mut net = Net::new();
    let a = net.node(65001, 1, &["10.1.0.0/16"]);
    let b = net.node(65002, 2, &["10.2.0.0/16"]);
    let c = net.node(65003, 3, &["10.3.0.0/16"]);
    let ab = net.link(a, b);
    net.link(b, c);
    net.link(a, c);
    net.run(Duration::from_secs(2));
    assert_eq!(net.best_via(a, "10.2.0.0/16"), Some(Some(b as u32)));
    assert_eq!(net.best_via(b, "10.1.0.0/16"), Some(Some(a as u32)));
    assert_eq!(net.best_via(c, "10.1.0.0/16"), Some(Some(a as u32)));

    net.cut(ab);
    net.run(Duration::from_secs(1));
    assert_eq!(net.best_via(a, "10.2.0.0/16"), Some(Some(c as u32)));
    assert_eq!(net.best_via(b, "10.1.0.0/16"), Some(Some(c as u32)));
    let r = net.nodes[a]
        .sp
        .rib()
        .best(&p("10.2.0.0/16"))
        .unwrap()
        .clone();
    assert_eq!(r.attrs.as_path.segments[0].asns, vec![65003, 65002]);

    net.restore(ab);
    net.run(Duration::from_secs(30));
    assert!(net.est(a, b));
    assert_eq!(net.best_via(a, "10.2.0.0/16"), Some(Some(b as u32)));
    assert_eq!(net.best_via(b, "10.1.0.0/16"), Some(Some(a as u32)));
    // The kernel saw: direct, via C, direct again.
    let hops: Vec<Option<u32>> = net.nodes[a]
        .changes
        .iter()
        .filter(|c| c.prefix == p("10.2.0.0/16"))
        .map(|c| c.best.as_ref().and_then(|r| r.peer.map(|x| x.0)))
        .collect();
    assert_eq!(hops, vec![Some(1), Some(2), Some(1)]);
}

#[test]
fn triangle_fails_over_on_silent_drop() {
    let mut net = Net::new();
    let a = net.node(65001, 1, &["10.1.0.0/16"]);
    let b = net.node(65002, 2, &["10.2.0.0/16"]);
    let c = net.node(65003, 3, &["10.3.0.0/16"]);
    let ab = net.link(a, b);
    net.link(b, c);
    net.link(a, c);
    net.run(Duration::from_secs(2));
    net.links[ab].blackhole = true;
    net.links[ab].up = false;
    net.run(Duration::from_secs(12));
    assert_eq!(net.best_via(a, "10.2.0.0/16"), Some(Some(c as u32)));
}

#[test]
fn max_prefix_sends_cease_1() {
    let mut net = Net::new();
    let a = net.node(65001, 1, &[]);
    let b = net.node(65002, 2, &["10.2.0.0/16", "10.3.0.0/16", "10.4.0.0/16"]);
    net.link_with(a, b, |me, _, pol| {
        if me == 0 {
            pol.max_prefix = Some(2);
        }
    });
    net.run(Duration::from_millis(100));
    assert!(matches!(
        net.nodes[a].downs[0].1,
        DownReason::Error(BgpError::MaxPrefixes { limit: 2, .. })
    ));
    let DownReason::PeerNotification(n) = &net.nodes[b].downs[0].1 else {
        panic!()
    };
    assert_eq!((n.code, n.subcode), (6, 1));
    assert_eq!(net.nodes[a].sp.rib().loc_rib().count(), 0);
    // The prefix past the limit never entered the Loc-RIB, so it was never installed.
    let learned: std::collections::BTreeSet<_> =
        net.nodes[a].changes.iter().map(|c| c.prefix).collect();
    assert_eq!(learned.len(), 2, "{learned:?}");
}

#[test]
fn prefix_list_filters_import_and_export() {
    let mut net = Net::new();
    let a = net.node(65001, 1, &["10.1.0.0/16", "10.11.0.0/16"]);
    let b = net.node(65002, 2, &["10.2.0.0/16", "10.22.0.0/16"]);
    net.link_with(a, b, |me, _, pol| {
        if me == 0 {
            pol.import = Some(bgp::PrefixList::parse(["permit 10.2.0.0/15 le 24"]).unwrap());
            pol.export = Some(
                bgp::PrefixList::parse(["deny 10.11.0.0/16", "permit 0.0.0.0/0 le 32"]).unwrap(),
            );
        }
    });
    net.run(Duration::from_secs(1));
    assert!(net.nodes[a].sp.rib().best(&p("10.2.0.0/16")).is_some());
    assert!(net.nodes[a].sp.rib().best(&p("10.22.0.0/16")).is_none());
    assert!(net.nodes[b].sp.rib().best(&p("10.1.0.0/16")).is_some());
    assert!(net.nodes[b].sp.rib().best(&p("10.11.0.0/16")).is_none());
}

#[test]
fn ibgp_routes_not_reflected_and_local_pref_carried() {
    // A(65001) -eBGP- B(65002) -iBGP- C(65002)
    let mut net = Net::new();
    let a = net.node(65001, 1, &["10.1.0.0/16"]);
    let b = net.node(65002, 2, &[]);
    let c = net.node(65002, 3, &["10.3.0.0/16"]);
    net.link(a, b);
    net.link(b, c);
    net.run(Duration::from_secs(1));
    let r = net.nodes[c]
        .sp
        .rib()
        .best(&p("10.1.0.0/16"))
        .unwrap()
        .clone();
    assert!(!r.ebgp);
    assert_eq!(r.attrs.local_pref, Some(100));
    assert_eq!(r.attrs.as_path.segments[0].asns, vec![65001]);
    // A sees C's network through B with B's AS prepended once.
    let r = net.nodes[a]
        .sp
        .rib()
        .best(&p("10.3.0.0/16"))
        .unwrap()
        .clone();
    assert_eq!(r.attrs.as_path.segments[0].asns, vec![65002]);
}
