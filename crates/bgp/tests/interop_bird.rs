//! Bytes captured from BIRD 2.0.12 and fed through our framer, codec and FSM.
//!
//! Captured 2026-11-28: BIRD in netns A (198.51.100.1, AS 65001) with an eBGP session to
//! 198.51.100.2 (AS 65002) in netns B, where a small Python listener on TCP 179 answered
//! with an OPEN (MP IPv4+IPv6, 4-octet AS 65002, hold 90) + KEEPALIVE and recorded every
//! byte BIRD sent for 6 s. BIRD config: static 203.0.113.0/24, 192.0.2.128/25 and
//! 2001:db8:1::/48 (blackhole), `export all`, IPv6 `next hop address 2001:db8:ff::1`.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use bgp::session::{Event, StateName};
use bgp::wire::{Capability, Framer, Message, ParsedUpdate, UpdateContext};
use bgp::{Prefix, Session, SessionConfig};

const BIRD_STREAM: &str = "ffffffffffffffffffffffffffffffff003b0104fde900f0c63364011e021c01040001000101040002000102004002007841040000fde946004700ffffffffffffffffffffffffffffffff001304ffffffffffffffffffffffffffffffff003402000000144001010040020602010000fde9400304c633640119c000028018cb0071ffffffffffffffffffffffffffffffff00170200000000ffffffffffffffffffffffffffffffff0054020000003d900e002c0002012020010db800ff00000000000000000001fe800000000000002826e6fffef7934f003020010db800014001010040020602010000fde9ffffffffffffffffffffffffffffffff001d0200000006800f03000201";

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn messages() -> Vec<Message> {
    let bytes = hex::decode(BIRD_STREAM).unwrap();
    let mut f = Framer::default();
    f.push(&bytes);
    let mut out = Vec::new();
    while let Some(m) = f.next_message().unwrap() {
        // exact re-encoding of everything BIRD sent
        out.push(m);
    }
    assert_eq!(f.buffered(), 0);
    out
}

#[test]
fn decode_bird_open_and_updates() {
    let bytes = hex::decode(BIRD_STREAM).unwrap();
    let msgs = messages();
    let reencoded: Vec<u8> = msgs.iter().flat_map(|m| m.encode().unwrap()).collect();
    assert_eq!(reencoded, bytes);

    let Message::Open(o) = &msgs[0] else { panic!() };
    assert_eq!((o.version, o.my_as, o.hold_time), (4, 65001, 240));
    assert_eq!(o.bgp_id, Ipv4Addr::new(198, 51, 100, 1));
    assert_eq!(o.peer_as(), 65001);
    let caps: Vec<&Capability> = o.capabilities().collect();
    assert!(caps.contains(&&Capability::RouteRefresh));
    assert!(caps
        .iter()
        .any(|c| matches!(c, Capability::Unknown { code: 64, .. }))); // graceful restart kept raw
    assert_eq!(msgs[1], Message::Keepalive);

    let ctx = UpdateContext {
        ebgp: true,
        peer_as: 65001,
    };
    let mut announced = Vec::new();
    for m in &msgs[2..] {
        let Message::Update(u) = m else {
            panic!("{m:?}")
        };
        let pu = ParsedUpdate::from_update(u, ctx).unwrap();
        assert!(pu.treat_as_withdraw.is_none() && pu.discarded.is_empty());
        for (prefix, nh) in pu.announced {
            assert_eq!(pu.attrs.as_path.first_as(), Some(65001));
            announced.push((prefix, nh));
        }
    }
    assert_eq!(announced.len(), 3);
    assert!(announced.contains(&(
        p("203.0.113.0/24"),
        bgp::wire::MpNextHop {
            addr: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)),
            link_local: None
        }
    )));
    assert!(announced.iter().any(|(q, _)| *q == p("192.0.2.128/25")));
    let (_, nh6) = announced
        .iter()
        .find(|(q, _)| *q == p("2001:db8:1::/48"))
        .unwrap();
    assert_eq!(nh6.addr, "2001:db8:ff::1".parse::<IpAddr>().unwrap());
    assert!(nh6.link_local.is_some_and(|l| l.segments()[0] == 0xfe80));
}

#[test]
fn bird_stream_drives_session_to_established() {
    let t = Instant::now();
    let mut cfg = SessionConfig::new(65002, 65001, Ipv4Addr::new(198, 51, 100, 2));
    cfg.passive = true;
    let mut s = Session::new(cfg);
    s.start(t);
    assert!(s.handle_connected(t));
    let bytes = hex::decode(BIRD_STREAM).unwrap();
    for c in bytes.chunks(13) {
        s.handle_bytes(t, c);
    }
    assert_eq!(s.state(), StateName::Established);
    assert_eq!(s.peer().unwrap().hold_time, 90);
    let evs: Vec<Event> = std::iter::from_fn(|| s.poll_event()).collect();
    assert!(matches!(evs[0], Event::Established(_)));
    assert_eq!(
        evs.iter().filter(|e| matches!(e, Event::Update(_))).count(),
        4
    );
}
