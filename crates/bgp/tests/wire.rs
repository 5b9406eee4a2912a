//! Codec: round trips, RFC 7606 outcomes, session error paths driven by hand.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bgp::session::{Event, StateName};
use bgp::wire::{
    announce_updates, withdraw_updates, AsPath, AttrFlags, AttrType, Capability, Message,
    MpNextHop, Open, OptParam, ParsedUpdate, PathAttributes, RawAttribute, Update, UpdateContext,
};
use bgp::{
    resolve_collision, BgpError, CollisionWinner, Prefix, Session, SessionConfig, UpdateSubcode,
};
use proptest::prelude::*;

fn p(s: &str) -> Prefix {
    s.parse().unwrap()
}

fn ctx() -> UpdateContext {
    UpdateContext {
        ebgp: true,
        peer_as: 65002,
    }
}

fn base_attrs() -> Vec<RawAttribute> {
    let a = PathAttributes {
        as_path: AsPath::sequence(vec![65002, 65010]),
        communities: vec![0xfde8_0001],
        med: Some(5),
        ..Default::default()
    };
    a.to_raw(Some(Ipv4Addr::new(192, 0, 2, 2)))
}

fn update_with(attrs: Vec<RawAttribute>) -> Update {
    Update {
        withdrawn: vec![p("10.9.0.0/16")],
        attributes: attrs,
        malformed_attr_tail: None,
        nlri: vec![p("10.2.0.0/16"), p("10.3.3.0/24")],
    }
}

fn roundtrip(u: &Update) -> Update {
    let b = Message::Update(u.clone()).encode().unwrap();
    let Message::Update(d) = Message::decode(&b).unwrap() else {
        panic!()
    };
    assert_eq!(Message::Update(d.clone()).encode().unwrap(), b);
    d
}

#[test]
fn update_roundtrip_and_parse() {
    let u = update_with(base_attrs());
    assert_eq!(roundtrip(&u), u);
    let pu = ParsedUpdate::from_update(&u, ctx()).unwrap();
    assert!(pu.treat_as_withdraw.is_none());
    assert_eq!(pu.withdrawn, vec![p("10.9.0.0/16")]);
    assert_eq!(pu.announced.len(), 2);
    assert_eq!(
        pu.announced[0].1.addr,
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2))
    );
    assert_eq!(pu.attrs.med, Some(5));
    assert_eq!(pu.attrs.communities, vec![0xfde8_0001]);
}

#[test]
fn mp_reach_v6_with_link_local_roundtrip() {
    let a = PathAttributes {
        as_path: AsPath::sequence(vec![65002]),
        ..Default::default()
    };
    let nh = MpNextHop {
        addr: "2001:db8::2".parse().unwrap(),
        link_local: Some("fe80::2".parse().unwrap()),
    };
    let us = announce_updates(&a, nh, &[p("2001:db8:2::/48"), p("2001:db8:3::/64")]);
    assert_eq!(us.len(), 1);
    let d = roundtrip(&us[0]);
    let pu = ParsedUpdate::from_update(&d, ctx()).unwrap();
    assert_eq!(
        pu.announced,
        vec![(p("2001:db8:2::/48"), nh), (p("2001:db8:3::/64"), nh)]
    );
    let w = withdraw_updates(&[p("2001:db8:2::/48"), p("10.0.0.0/8")]);
    assert_eq!(w.len(), 2);
    let mut got: Vec<Prefix> = w
        .iter()
        .flat_map(|u| {
            ParsedUpdate::from_update(&roundtrip(u), ctx())
                .unwrap()
                .withdrawn
        })
        .collect();
    got.sort();
    assert_eq!(got, vec![p("10.0.0.0/8"), p("2001:db8:2::/48")]);
}

#[test]
fn announce_splits_at_4096() {
    let a = PathAttributes {
        as_path: AsPath::sequence(vec![65002]),
        ..Default::default()
    };
    let nh = MpNextHop {
        addr: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        link_local: None,
    };
    let prefixes: Vec<Prefix> = (0..2000u32)
        .map(|i| Prefix::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 8))), 24).unwrap())
        .collect();
    let us = announce_updates(&a, nh, &prefixes);
    assert!(us.len() > 1);
    let total: usize = us
        .iter()
        .map(|u| {
            let b = Message::Update(u.clone()).encode().unwrap();
            assert!(b.len() <= 4096);
            u.nlri.len()
        })
        .sum();
    assert_eq!(total, 2000);
}

#[test]
fn unknown_optional_transitive_kept_with_partial_bit() {
    let mut attrs = base_attrs();
    attrs.push(RawAttribute::new(
        AttrFlags::OPT_TRANS,
        AttrType(99),
        vec![1, 2, 3],
    ));
    attrs.push(RawAttribute::new(
        AttrFlags::OPT_NON_TRANS,
        AttrType(98),
        vec![4],
    ));
    let pu = ParsedUpdate::from_update(&update_with(attrs), ctx()).unwrap();
    assert_eq!(pu.attrs.unknown.len(), 1);
    assert_eq!(pu.attrs.unknown[0].type_code, AttrType(99));
    assert_eq!(pu.attrs.unknown[0].flags.0, 0xe0);
    // and it is re-encoded
    assert!(pu
        .attrs
        .to_raw(None)
        .iter()
        .any(|a| a.type_code == AttrType(99)));
}

fn taw(attrs: Vec<RawAttribute>) -> ParsedUpdate {
    let pu = ParsedUpdate::from_update(&update_with(attrs), ctx()).unwrap();
    assert!(pu.announced.is_empty());
    assert!(pu.withdrawn.contains(&p("10.2.0.0/16")) && pu.withdrawn.contains(&p("10.3.3.0/24")));
    pu
}

fn replace(ty: u8, a: RawAttribute) -> Vec<RawAttribute> {
    base_attrs()
        .into_iter()
        .map(|x| if x.type_code.0 == ty { a.clone() } else { x })
        .collect()
}

#[test]
fn rfc7606_treat_as_withdraw_cases() {
    // §7.1 bad ORIGIN value
    let pu = taw(replace(
        1,
        RawAttribute::new(AttrFlags::WELL_KNOWN, AttrType::ORIGIN, vec![7]),
    ));
    assert_eq!(
        pu.treat_as_withdraw.unwrap().subcode,
        UpdateSubcode::INVALID_ORIGIN
    );
    // §7.2 malformed AS_PATH (segment overrun)
    taw(replace(
        2,
        RawAttribute::new(AttrFlags::WELL_KNOWN, AttrType::AS_PATH, vec![2, 3, 0, 0]),
    ));
    // AS_PATH not starting with the eBGP peer's AS
    taw(replace(
        2,
        RawAttribute::new(
            AttrFlags::WELL_KNOWN,
            AttrType::AS_PATH,
            AsPath::sequence(vec![65099]).encode(),
        ),
    ));
    // §7.3 NEXT_HOP length
    taw(replace(
        3,
        RawAttribute::new(AttrFlags::WELL_KNOWN, AttrType::NEXT_HOP, vec![1, 2, 3]),
    ));
    // §7.4 MED length
    taw(replace(
        4,
        RawAttribute::new(AttrFlags::OPT_NON_TRANS, AttrType::MED, vec![1]),
    ));
    // §7.8 COMMUNITIES length
    taw(replace(
        8,
        RawAttribute::new(
            AttrFlags::OPT_TRANS,
            AttrType::COMMUNITIES,
            vec![1, 2, 3, 4, 5],
        ),
    ));
    // §3 c flags conflict
    let pu = taw(replace(
        1,
        RawAttribute::new(AttrFlags::OPT_TRANS, AttrType::ORIGIN, vec![0]),
    ));
    assert_eq!(
        pu.treat_as_withdraw.unwrap().subcode,
        UpdateSubcode::ATTRIBUTE_FLAGS
    );
    // §3 d missing NEXT_HOP
    let pu = taw(base_attrs()
        .into_iter()
        .filter(|a| a.type_code != AttrType::NEXT_HOP)
        .collect());
    assert_eq!(
        pu.treat_as_withdraw.unwrap().subcode,
        UpdateSubcode::MISSING_WELL_KNOWN
    );
    // §4 attribute overrunning the attribute field
    let mut u = update_with(base_attrs());
    u.malformed_attr_tail = Some(vec![0x40, 1, 9, 0]);
    let d = roundtrip(&u);
    assert_eq!(d, u);
    let pu = ParsedUpdate::from_update(&d, ctx()).unwrap();
    assert!(pu.treat_as_withdraw.is_some() && pu.announced.is_empty());
}

#[test]
fn rfc7606_attribute_discard_cases() {
    let mut attrs = base_attrs();
    attrs.push(RawAttribute::new(
        AttrFlags::WELL_KNOWN,
        AttrType::ATOMIC_AGGREGATE,
        vec![1],
    ));
    attrs.push(RawAttribute::new(
        AttrFlags::OPT_TRANS,
        AttrType::AGGREGATOR,
        vec![1, 2, 3],
    ));
    attrs.push(RawAttribute::new(
        AttrFlags::WELL_KNOWN,
        AttrType::LOCAL_PREF,
        vec![0, 0, 0, 200],
    ));
    attrs.push(RawAttribute::new(
        AttrFlags::OPT_NON_TRANS,
        AttrType::MED,
        vec![0, 0, 0, 9],
    ));
    let pu = ParsedUpdate::from_update(&update_with(attrs), ctx()).unwrap();
    assert!(pu.treat_as_withdraw.is_none());
    assert_eq!(pu.announced.len(), 2);
    assert_eq!(pu.discarded.len(), 4); // atomic, aggregator, eBGP LOCAL_PREF, duplicate MED
    assert!(
        !pu.attrs.atomic_aggregate
            && pu.attrs.aggregator.is_none()
            && pu.attrs.local_pref.is_none()
    );
    assert_eq!(pu.attrs.med, Some(5));
}

#[test]
fn rfc7606_session_reset_cases() {
    // malformed MP_REACH → 3/9
    let mut attrs = base_attrs();
    attrs.insert(
        0,
        RawAttribute::new(
            AttrFlags::OPT_NON_TRANS,
            AttrType::MP_REACH_NLRI,
            vec![0, 2, 1, 5, 1, 2],
        ),
    );
    let e = ParsedUpdate::from_update(&update_with(attrs), ctx()).unwrap_err();
    assert_eq!(e.subcode, UpdateSubcode::OPTIONAL_ATTRIBUTE);
    // unrecognized well-known → 3/2
    let mut attrs = base_attrs();
    attrs.push(RawAttribute::new(
        AttrFlags::WELL_KNOWN,
        AttrType(77),
        vec![],
    ));
    let e = ParsedUpdate::from_update(&update_with(attrs), ctx()).unwrap_err();
    assert_eq!(e.subcode, UpdateSubcode::UNRECOGNIZED_WELL_KNOWN);
    // withdrawn length beyond message → 3/1
    assert_eq!(
        Update::decode(&[0, 9, 0, 0]).unwrap_err().subcode,
        UpdateSubcode::MALFORMED_ATTRIBUTE_LIST
    );
    // bad NLRI → 3/10
    assert_eq!(
        Update::decode(&[0, 0, 0, 0, 40, 1]).unwrap_err().subcode,
        UpdateSubcode::INVALID_NETWORK_FIELD
    );
}

// ---- one session driven by hand ----

fn peer_open(asn: u32, hold: u16, id: [u8; 4]) -> Vec<u8> {
    Message::Open(Open {
        version: 4,
        my_as: u16::try_from(asn).unwrap_or(23456),
        hold_time: hold,
        bgp_id: Ipv4Addr::from(id),
        params: vec![OptParam::Capabilities(vec![
            Capability::Multiprotocol {
                afi: bgp::wire::Afi::IPV4,
                safi: bgp::wire::Safi::UNICAST,
            },
            Capability::FourOctetAs(asn),
        ])],
    })
    .encode()
    .unwrap()
}

fn opened(t: Instant) -> Session {
    let mut s = Session::new(SessionConfig::new(65001, 65002, Ipv4Addr::new(10, 0, 0, 1)));
    s.start(t);
    assert_eq!(s.poll_event(), Some(Event::Connect));
    assert!(s.handle_connected(t));
    let Message::Open(o) = Message::decode(&s.poll_transmit().unwrap()).unwrap() else {
        panic!()
    };
    assert_eq!(o.peer_as(), 65001);
    s
}

fn down_notification(s: &mut Session) -> (u8, u8) {
    let mut note = None;
    while let Some(b) = s.poll_transmit() {
        if let Message::Notification(n) = Message::decode(&b).unwrap() {
            note = Some((n.code, n.subcode));
        }
    }
    assert!(std::iter::from_fn(|| s.poll_event()).any(|e| matches!(e, Event::Down { .. })));
    note.unwrap()
}

#[test]
fn open_errors() {
    let t = Instant::now();
    let mut s = opened(t);
    s.handle_bytes(t, &peer_open(65002, 2, [10, 0, 0, 2]));
    assert_eq!(down_notification(&mut s), (2, 6));
    let mut s = opened(t);
    s.handle_bytes(t, &peer_open(65002, 90, [0, 0, 0, 0]));
    assert_eq!(down_notification(&mut s), (2, 3));
    let mut s = opened(t);
    let mut o = peer_open(65002, 90, [10, 0, 0, 2]);
    o[19] = 3; // version
    s.handle_bytes(t, &o);
    assert_eq!(down_notification(&mut s), (2, 1));
    // OPEN without the 4-octet AS capability
    let mut s = opened(t);
    let o = Message::Open(Open {
        version: 4,
        my_as: 65002,
        hold_time: 90,
        bgp_id: Ipv4Addr::new(1, 1, 1, 1),
        params: vec![],
    });
    s.handle_bytes(t, &o.encode().unwrap());
    assert_eq!(down_notification(&mut s), (2, 7));
    // KEEPALIVE in OpenSent → 5/1
    let mut s = opened(t);
    s.handle_bytes(t, &Message::Keepalive.encode().unwrap());
    assert_eq!(down_notification(&mut s), (5, 1));
    // garbage marker → 1/1
    let mut s = opened(t);
    s.handle_bytes(t, &[0u8; 19]);
    assert_eq!(down_notification(&mut s), (1, 1));
}

fn established(t: Instant) -> Session {
    let mut s = opened(t);
    s.handle_bytes(t, &peer_open(65002, 30, [10, 0, 0, 2]));
    assert_eq!(s.state(), StateName::OpenConfirm);
    assert_eq!(
        Message::decode(&s.poll_transmit().unwrap()).unwrap(),
        Message::Keepalive
    );
    assert_eq!(s.peer().unwrap().hold_time, 30);
    s.handle_bytes(t, &Message::Keepalive.encode().unwrap());
    assert!(matches!(s.poll_event(), Some(Event::Established(_))));
    s
}

#[test]
fn treat_as_withdraw_keeps_session_up_and_reset_cases_close_it() {
    let t = Instant::now();
    let mut s = established(t);
    let bad = update_with(replace(
        1,
        RawAttribute::new(AttrFlags::WELL_KNOWN, AttrType::ORIGIN, vec![9]),
    ));
    s.handle_bytes(t, &Message::Update(bad).encode().unwrap());
    let Some(Event::Update(pu)) = s.poll_event() else {
        panic!()
    };
    assert!(pu.treat_as_withdraw.is_some());
    assert!(s.is_established());
    let mut attrs = base_attrs();
    attrs.push(RawAttribute::new(
        AttrFlags::WELL_KNOWN,
        AttrType(77),
        vec![],
    ));
    s.handle_bytes(t, &Message::Update(update_with(attrs)).encode().unwrap());
    assert_eq!(down_notification(&mut s), (3, 2));
}

#[test]
fn keepalive_and_hold_timers() {
    let t = Instant::now();
    let mut s = established(t);
    assert_eq!(s.poll_timeout(), Some(t + Duration::from_secs(10)));
    s.handle_timeout(t + Duration::from_secs(10));
    assert_eq!(
        Message::decode(&s.poll_transmit().unwrap()).unwrap(),
        Message::Keepalive
    );
    s.handle_timeout(t + Duration::from_secs(30));
    assert_eq!(down_notification(&mut s), (4, 0));
    assert_eq!(s.state(), StateName::Idle);
    // restarts after the idle hold time
    s.handle_timeout(t + Duration::from_secs(36));
    assert_eq!(s.state(), StateName::Connect);
    assert_eq!(s.poll_event(), Some(Event::Connect));
}

#[test]
fn connect_retry_and_passive() {
    let t = Instant::now();
    let mut cfg = SessionConfig::new(65001, 65002, Ipv4Addr::new(10, 0, 0, 1));
    cfg.connect_retry = Duration::from_secs(7);
    let mut s = Session::new(cfg.clone());
    s.start(t);
    assert_eq!(s.poll_event(), Some(Event::Connect));
    s.handle_disconnected(t); // refused
    assert_eq!(s.state(), StateName::Active);
    assert_eq!(s.poll_timeout(), Some(t + Duration::from_secs(7)));
    s.handle_timeout(t + Duration::from_secs(7));
    assert_eq!(s.poll_event(), Some(Event::Connect));
    cfg.passive = true;
    let mut s = Session::new(cfg);
    s.start(t);
    assert_eq!(s.poll_event(), None);
    assert_eq!(s.state(), StateName::Active);
    assert!(s.handle_connected(t));
}

#[test]
fn collision_resolution() {
    let lo = Ipv4Addr::new(10, 0, 0, 1);
    let hi = Ipv4Addr::new(10, 0, 0, 2);
    assert_eq!(
        resolve_collision(lo, hi),
        CollisionWinner::RemotelyInitiated
    );
    assert_eq!(resolve_collision(hi, lo), CollisionWinner::LocallyInitiated);
    let t = Instant::now();
    let mut s = established(t);
    s.close(t, BgpError::Cease(bgp::CeaseSubcode::COLLISION_RESOLUTION));
    assert_eq!(down_notification(&mut s), (6, 7));
}

// ---- properties ----

fn arb_prefix() -> impl Strategy<Value = Prefix> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Prefix::new(IpAddr::V4(a.into()), l).unwrap()),
        (any::<u128>(), 0u8..=128).prop_map(|(a, l)| Prefix::new(IpAddr::V6(a.into()), l).unwrap()),
    ]
}

proptest! {
    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut b = vec![0xff; 16];
        b.extend_from_slice(&((bytes.len() + 19) as u16).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&bytes);
        if let Ok(Message::Update(u)) = Message::decode(&b) {
            prop_assert_eq!(Message::Update(u.clone()).encode().unwrap(), b);
            let _ = ParsedUpdate::from_update(&u, ctx());
        }
        let _ = Message::decode(&bytes);
        let _ = Open::decode(&bytes);
    }

    #[test]
    fn announce_roundtrip(
        v4 in proptest::collection::btree_set(arb_prefix(), 1..50),
        path in proptest::collection::vec(any::<u32>(), 0..=255),
        med in any::<Option<u32>>(),
        comms in proptest::collection::vec(any::<u32>(), 0..20),
    ) {
        let attrs = PathAttributes { as_path: AsPath::sequence(path), med, communities: comms, ..Default::default() };
        for fam in [true, false] {
            let ps: Vec<Prefix> = v4.iter().filter(|p| p.addr().is_ipv4() == fam).copied().collect();
            let nh = MpNextHop { addr: if fam { IpAddr::V4(Ipv4Addr::new(192,0,2,1)) } else { "2001:db8::1".parse().unwrap() }, link_local: None };
            let mut got = Vec::new();
            for u in announce_updates(&attrs, nh, &ps) {
                let d = roundtrip(&u);
                let pu = ParsedUpdate::from_update(&d, UpdateContext { ebgp: false, peer_as: 1 }).unwrap();
                prop_assert!(pu.treat_as_withdraw.is_none());
                prop_assert_eq!(&pu.attrs, &attrs);
                got.extend(pu.announced.into_iter().map(|(p, n)| { assert_eq!(n, nh); p }));
            }
            prop_assert_eq!(got, ps);
        }
    }
}
