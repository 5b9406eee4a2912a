//! A speaker with one peer brought to Established by a genuine second speaker, then fed
//! arbitrary bytes on that connection (UPDATEs, ROUTE-REFRESH, NOTIFICATION, garbage) in
//! arbitrary chunks with clock steps: the FSM, RFC 7606 error handling, the RIB and the
//! max-prefix limit must never panic, the Adj-RIB-In never holds more of the peer's routes
//! than the limit, and every change names its best route first among the equal ones.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bgp::{PeerId, PeerPolicy, RibConfig, SessionConfig, Speaker, SpeakerEvent};

const LIMIT: u32 = 20;

fn speaker(asn: u32, id: u8, networks: &[&str], max_paths: usize) -> Speaker {
    Speaker::new(RibConfig {
        local_as: asn,
        router_id: Ipv4Addr::new(10, 255, 0, id),
        networks: networks.iter().map(|n| n.parse().unwrap()).collect(),
        max_paths,
    })
}

fn drain(s: &mut Speaker) {
    while let Some(ev) = s.poll_event() {
        if let SpeakerEvent::RibChange(c) = ev {
            if let Some(best) = &c.best {
                assert!(c.ecmp.is_empty() || c.ecmp[0] == *best, "{c:?}");
            }
        }
    }
}

pub fn bgp_speaker(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let t = Instant::now();
    let (a_addr, b_addr) = (
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
    );
    let mut a = speaker(65001, 1, &["10.1.0.0/16"], 1 + usize::from(sel & 1));
    let mut b = speaker(65002, 2, &["10.2.0.0/16"], 1);
    let mut pol = PeerPolicy::new(65002, b_addr);
    pol.max_prefix = Some(LIMIT);
    a.add_peer(
        t,
        PeerId(2),
        SessionConfig::new(65001, 65002, Ipv4Addr::new(10, 255, 0, 1)),
        pol,
    );
    b.add_peer(
        t,
        PeerId(1),
        SessionConfig::new(65002, 65001, Ipv4Addr::new(10, 255, 0, 2)),
        PeerPolicy::new(65001, a_addr),
    );
    drain(&mut a);
    drain(&mut b);
    assert!(a.handle_connected(t, PeerId(2), a_addr));
    assert!(b.handle_connected(t, PeerId(1), b_addr));
    for _ in 0..8 {
        while let Some((_, bytes)) = a.poll_transmit() {
            b.handle_bytes(t, PeerId(1), &bytes);
        }
        while let Some((_, bytes)) = b.poll_transmit() {
            a.handle_bytes(t, PeerId(2), &bytes);
        }
        drain(&mut a);
        drain(&mut b);
    }
    assert!(a.session(PeerId(2)).unwrap().is_established());

    let step = usize::from(sel >> 1).max(1);
    for (i, chunk) in rest.chunks(step).enumerate() {
        let now = t + Duration::from_millis(i as u64 * 50);
        a.handle_bytes(now, PeerId(2), chunk);
        a.handle_timeout(now);
        while a.poll_transmit().is_some() {}
        drain(&mut a);
        let from_peer = a.rib().adj_rib_in(PeerId(2)).count();
        assert!(
            from_peer <= LIMIT as usize,
            "{from_peer} routes past max_prefix"
        );
    }
}
