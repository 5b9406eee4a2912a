//! RFC 9611 per-resource CHILD SAs: negotiation in IKE_AUTH, the extras the IKE SA's
//! initiator creates, their lanes and keys, TS_MAX_QUEUE, rekeys, and peers without it.

use super::super::Queued;
use super::*;
use crate::iana::ExchangeType;
use crate::wire::Header;

const IKE: &str = "aes128gcm16-prfsha256-x25519";
const ESP: &str = "aes128gcm16";

/// A and B with these `resources`; with `lanes`, A's home lane is 0 and B's 1 of 2.
fn pair(a_res: u32, b_res: u32, lanes: bool) -> Pair {
    let mut a = config("a", "routerA", "routerB", &[IKE], &[ESP], "s3cret", true);
    let mut b = config("b", "routerB", "routerA", &[IKE], &[ESP], "s3cret", false);
    a.resources = a_res;
    b.resources = b_res;
    if lanes {
        a.esp_spi_lane = Some(SpiLane { lane: 0, lanes: 2 });
        b.esp_spi_lane = Some(SpiLane { lane: 1, lanes: 2 });
    }
    let mut p = Pair::new(a, b);
    p.start();
    assert!(p.a.is_established() && p.b.is_established());
    p
}

/// The resources of one side's CHILD SAs, sorted.
fn resources(s: &Session, now: Instant) -> Vec<u32> {
    let mut r: Vec<u32> = s
        .status(now)
        .children
        .iter()
        .map(|(c, _)| c.resource)
        .collect();
    r.sort();
    r
}

/// The notifies of a protected datagram, opened with the receiver `to`'s keys.
fn notifies(to: &Session, d: &Datagram) -> Vec<NotifyType> {
    notifies_of(to, d).expect("a protected message `to` can open")
}

/// Datagrams of `exchange` sent by A (`from_a`) or B, requests or responses.
fn sent(p: &Pair, from_a: bool, exchange: ExchangeType, response: bool) -> Vec<Datagram> {
    p.wire_log
        .iter()
        .filter(|(a, d)| {
            *a == from_a
                && Header::decode(&d.data)
                    .is_ok_and(|h| h.exchange == exchange && h.flags.response() == response)
        })
        .map(|(_, d)| d.clone())
        .collect()
}

/// Every CHILD SA A installed has its mirror at B: SPIs, keys, selectors and resource.
fn assert_installs_mirror(p: &Pair) {
    let (a, b) = (Pair::children(&p.events_a), Pair::children(&p.events_b));
    assert_eq!(a.len(), b.len());
    for x in a {
        let y = b
            .iter()
            .find(|y| y.spi_in == x.spi_out)
            .expect("B has A's peer SA");
        assert_eq!(y.spi_out, x.spi_in);
        assert_eq!(*x.keys_out, *y.keys_in, "A→B keys agree");
        assert_eq!(*x.keys_in, *y.keys_out, "B→A keys agree");
        assert_eq!((&x.local_ts, &x.remote_ts), (&y.remote_ts, &y.local_ts));
        assert_eq!(
            x.resource, y.resource,
            "both ends number the resource alike"
        );
    }
}

/// Each live CHILD SA's inbound SPI is in the lane of its resource (home lane `home`).
fn assert_lanes(s: &Session, now: Instant, home: u32) {
    for (c, _) in s.status(now).children {
        assert_eq!(
            c.spi_in % 2,
            (home + c.resource) % 2,
            "{}: SPI {:08x} of resource {}",
            s.cfg.name,
            c.spi_in,
            c.resource
        );
    }
}

#[test]
fn two_resources_on_both_ends_give_two_child_sas_in_their_lanes() {
    let p = pair(2, 2, true);
    for (s, home) in [(&p.a, 0), (&p.b, 1)] {
        assert_eq!(resources(s, p.now), [0, 1], "{}", s.cfg.name);
        let st = s.status(p.now);
        let (c0, c1) = (&st.children[0].0, &st.children[1].0);
        assert_eq!((&c0.local_ts, &c0.remote_ts), (&c1.local_ts, &c1.remote_ts));
        assert_lanes(s, p.now, home);
        assert!(st.last_error.is_none(), "{:?}", st.last_error);
    }
    assert!(p.a.sas[0].rsa.supported && p.b.sas[0].rsa.supported);
    assert_installs_mirror(&p);
    for events in [&p.events_a, &p.events_b] {
        let mut r: Vec<u32> = Pair::children(events).iter().map(|c| c.resource).collect();
        r.sort();
        assert_eq!(r, [0, 1], "ChildInstalled carries the resource");
        assert!(no_failures(events));
    }
    // One extra: one CREATE_CHILD_SA, answered with SA_RESOURCE_INFO (RFC 9611 §3).
    let resp = sent(&p, false, ExchangeType::CREATE_CHILD_SA, true);
    assert_eq!(resp.len(), 1);
    assert!(notifies(&p.a, &resp[0]).contains(&NotifyType::SA_RESOURCE_INFO));
}

#[test]
fn three_resources_against_a_responder_that_only_supports_them() {
    let p = pair(3, 1, false);
    assert_eq!(resources(&p.a, p.now), [0, 1, 2]);
    assert_eq!(resources(&p.b, p.now), [0, 1, 2]);
    assert_children_mirror(&p);
    assert_installs_mirror(&p);
    assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
}

#[test]
fn a_peer_without_support_gets_the_one_child_sa_of_today() {
    // B stands for strongSwan 5.9: it ignores SA_RESOURCE_INFO (RFC 7296 §3.10.1).
    let p = pair(4, 0, false);
    let req = sent(&p, true, ExchangeType::IKE_AUTH, false);
    let resp = sent(&p, false, ExchangeType::IKE_AUTH, true);
    assert!(notifies(&p.b, &req[0]).contains(&NotifyType::SA_RESOURCE_INFO));
    assert!(!notifies(&p.a, &resp[0]).contains(&NotifyType::SA_RESOURCE_INFO));
    assert!(sent(&p, true, ExchangeType::CREATE_CHILD_SA, false).is_empty());
    assert!(sent(&p, false, ExchangeType::CREATE_CHILD_SA, false).is_empty());
    assert_eq!(resources(&p.a, p.now), [0]);
    assert_eq!(resources(&p.b, p.now), [0]);
    assert!(!p.a.sas[0].rsa.supported);
    // Off on our side: not even announced.
    let p = pair(0, 4, false);
    let req = sent(&p, true, ExchangeType::IKE_AUTH, false);
    assert!(!notifies(&p.b, &req[0]).contains(&NotifyType::SA_RESOURCE_INFO));
    assert_eq!(resources(&p.a, p.now), [0]);
}

#[test]
fn ts_max_queue_caps_the_extras_without_an_error() {
    let max = limits::MAX_RESOURCE_SAS;
    let p = pair(max as u32 + 2, 1, false);
    assert_eq!(child_spis(&p.a, p.now).len(), max);
    assert_eq!(child_spis(&p.b, p.now).len(), max);
    assert_children_mirror(&p);
    // The refusal came, and nothing was asked after it.
    let resp = sent(&p, false, ExchangeType::CREATE_CHILD_SA, true);
    let last = resp.last().unwrap();
    assert!(notifies(&p.a, last).contains(&NotifyType::TS_MAX_QUEUE));
    assert_eq!(
        resp.len(),
        max,
        "{} extras accepted, then one refusal",
        max - 1
    );
    assert!(p.a.sas[0].rsa.refused);
    assert!(p.a.is_established() && p.b.is_established());
    assert_eq!(p.a.status(p.now).last_error, None);
    assert_eq!(p.b.status(p.now).last_error, None);
    assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
}

#[test]
fn another_refusal_of_an_extra_is_reported_and_stops_the_extras() {
    // IKE_AUTH's CHILD SA has no key exchange (§1.2), so B's PFS-only ESP refuses only
    // the extras: the first refusal ends them.
    let mut a = config("a", "routerA", "routerB", &[IKE], &[ESP], "s", true);
    let b_esp = ["aes128gcm16-x25519"];
    let mut b = config("b", "routerB", "routerA", &[IKE], &b_esp, "s", false);
    (a.resources, b.resources) = (4, 1);
    let mut p = Pair::new(a, b);
    p.start();
    assert!(p.a.is_established());
    assert_eq!(
        sent(&p, true, ExchangeType::CREATE_CHILD_SA, false).len(),
        1
    );
    assert_eq!(resources(&p.a, p.now), [0]);
    let err = p.a.status(p.now).last_error.unwrap();
    assert!(err.contains("NO_PROPOSAL_CHOSEN"), "{err}");
}

#[test]
fn per_resource_child_sas_rekey_into_their_own_resource_and_lane() {
    let mut p = pair(2, 2, true);
    let old_a: Vec<(u32, u32)> = child_spis(&p.a, p.now);
    let start = p.now;
    // Past child_lifetime (3600 s less up to 10 %), before the IKE SA's (4 h).
    let until = start + Duration::from_secs(3700);
    let next = |p: &Pair| {
        [p.a.poll_timeout(), p.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    };
    while next(&p).is_some_and(|t| t <= until) {
        assert!(p.step_timer());
    }
    let now_a = child_spis(&p.a, p.now);
    assert_eq!(now_a.len(), 2, "{now_a:?}");
    assert!(
        now_a.iter().all(|c| !old_a.contains(c)),
        "both were rekeyed"
    );
    for (s, home) in [(&p.a, 0), (&p.b, 1)] {
        assert_eq!(resources(s, p.now), [0, 1], "{}", s.cfg.name);
        assert_lanes(s, p.now, home);
    }
    assert_children_mirror(&p);
    assert_installs_mirror(&p);
    // Each rekey's new SA has the resource of the one it replaced, at both ends.
    for events in [&p.events_a, &p.events_b] {
        let installs = Pair::children(events);
        let rekeys: Vec<_> = installs.iter().filter(|c| c.replaces.is_some()).collect();
        assert_eq!(rekeys.len(), 2, "{events:?}");
        for new in rekeys {
            let old = installs
                .iter()
                .find(|c| Some(c.spi_in) == new.replaces)
                .unwrap();
            assert_eq!(new.resource, old.resource);
        }
        let deleted = events
            .iter()
            .filter(|e| matches!(e, Event::ChildDeleted { .. }))
            .count();
        assert_eq!(deleted, 2, "the old SAs are gone");
        assert!(no_failures(events) && never_empty(events));
    }
    // The rekeys said SA_RESOURCE_INFO too (RFC 9611 §3).
    let by_b = sent(&p, false, ExchangeType::CREATE_CHILD_SA, false);
    for d in sent(&p, true, ExchangeType::CREATE_CHILD_SA, false) {
        assert!(notifies(&p.b, &d).contains(&NotifyType::SA_RESOURCE_INFO));
    }
    for d in &by_b {
        assert!(notifies(&p.a, d).contains(&NotifyType::SA_RESOURCE_INFO));
    }
    // The timers had B start them; now A (the other role) rekeys resource 1.
    assert!(!by_b.is_empty());
    let st = p.a.status(p.now);
    let one = st.children.iter().find(|(c, _)| c.resource == 1).unwrap();
    assert!(p.a.rekey_child_spi(p.now, one.0.spi_in));
    p.run();
    let new = *Pair::children(&p.events_a).last().unwrap();
    assert_eq!((new.replaces, new.resource), (Some(one.0.spi_in), 1));
    assert_eq!(Pair::children(&p.events_b).last().unwrap().resource, 1);
    for (s, home) in [(&p.a, 0), (&p.b, 1)] {
        assert_eq!(resources(s, p.now), [0, 1], "{}", s.cfg.name);
        assert_lanes(s, p.now, home);
    }
    assert_children_mirror(&p);
}

#[test]
fn resource_info_to_a_responder_with_it_off_is_an_ordinary_new_child_sa() {
    // A believes B supports it (as if B had echoed); B has it off.
    let mut p = pair(2, 0, false);
    p.a.sas[0].rsa.supported = true;
    assert!(p.a.enqueue(p.now, Queued::ResourceChild(1)));
    p.run();
    let req = sent(&p, true, ExchangeType::CREATE_CHILD_SA, false);
    assert_eq!(req.len(), 1);
    assert!(notifies(&p.b, &req[0]).contains(&NotifyType::SA_RESOURCE_INFO));
    // As before this change: B accepts a second CHILD SA with the same selectors as
    // a plain new one (resource 0, nothing deleted) and does not echo the notify.
    let resp = sent(&p, false, ExchangeType::CREATE_CHILD_SA, true);
    assert!(!notifies(&p.a, &resp[0]).contains(&NotifyType::SA_RESOURCE_INFO));
    assert_eq!(resources(&p.b, p.now), [0, 0]);
    assert_eq!(resources(&p.a, p.now), [0, 1]);
    assert_children_mirror(&p);
    assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
}

#[test]
fn an_ike_rekey_keeps_the_child_sas_and_a_new_ike_sa_makes_them_again() {
    let mut p = pair(2, 2, true);
    let before = child_spis(&p.a, p.now);
    let requests = sent(&p, true, ExchangeType::CREATE_CHILD_SA, false).len();
    assert!(p.a.rekey_ike(p.now));
    p.run();
    assert_eq!(
        child_spis(&p.a, p.now),
        before,
        "children move, none created"
    );
    let after = sent(&p, true, ExchangeType::CREATE_CHILD_SA, false).len();
    assert_eq!(after, requests + 1, "only the IKE SA rekey itself");
    // The rekeyed IKE SA still speaks RFC 9611: a CHILD SA rekey on it says so.
    let cur = p.a.current().unwrap();
    assert!(p.a.sas[cur].rsa.supported);
    assert!(p.b.rekey_child(p.now));
    p.run();
    let req = sent(&p, false, ExchangeType::CREATE_CHILD_SA, false);
    assert!(notifies(&p.a, req.last().unwrap()).contains(&NotifyType::SA_RESOURCE_INFO));
    assert_eq!(resources(&p.a, p.now), [0, 1]);
    // Closed and brought up again: the new IKE SA gets its extra again.
    p.a.close(p.now);
    p.run();
    assert!(child_spis(&p.a, p.now).is_empty());
    p.a.initiate(p.now);
    p.run();
    for (s, home) in [(&p.a, 0), (&p.b, 1)] {
        assert_eq!(resources(s, p.now), [0, 1], "{}", s.cfg.name);
        assert_lanes(s, p.now, home);
    }
    assert_children_mirror(&p);
}

#[test]
fn both_ends_initiating_leaves_one_set_of_per_resource_child_sas() {
    let mut a = config("a", "routerA", "routerB", &[IKE], &[ESP], "s", true);
    let mut b = config("b", "routerB", "routerA", &[IKE], &[ESP], "s", true);
    (a.resources, b.resources) = (2, 2);
    a.esp_spi_lane = Some(SpiLane { lane: 0, lanes: 2 });
    b.esp_spi_lane = Some(SpiLane { lane: 1, lanes: 2 });
    let mut p = Pair::new(a, b);
    p.a.handle_timeout(p.now);
    p.b.handle_timeout(p.now);
    p.run();
    // Settle the duplicate IKE SA (§2.8.2) and let its children go.
    while p.a.status(p.now).ike_sas.len() + p.b.status(p.now).ike_sas.len() > 2 {
        assert!(p.step_timer());
    }
    for (s, home) in [(&p.a, 0), (&p.b, 1)] {
        assert_eq!(resources(s, p.now), [0, 1], "{}", s.cfg.name);
        assert_lanes(s, p.now, home);
    }
    assert_children_mirror(&p);
    assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
}

#[test]
fn a_restarted_peer_gets_its_per_resource_child_sas_again() {
    let mut p = pair(2, 2, false);
    let old = child_spis(&p.b, p.now);
    p.now += Duration::from_secs(60);
    // A loses all state and comes back (INITIAL_CONTACT): B drops the old SAs.
    let mut a = config("a", "routerA", "routerB", &[IKE], &[ESP], "s3cret", true);
    a.resources = 2;
    p.a = Session::new(a, A, B, Box::new(TestRng(77)), p.now);
    p.start();
    assert_eq!(resources(&p.a, p.now), [0, 1]);
    assert_eq!(resources(&p.b, p.now), [0, 1]);
    assert!(child_spis(&p.b, p.now).iter().all(|c| !old.contains(c)));
    assert_children_mirror(&p);
}

/// A's and B's CREATE_CHILD_SA requests so far.
fn create_requests(p: &Pair) -> (usize, usize) {
    (
        sent(p, true, ExchangeType::CREATE_CHILD_SA, false).len(),
        sent(p, false, ExchangeType::CREATE_CHILD_SA, false).len(),
    )
}

/// Runs timers until `until` (virtual time), at most a bounded number of steps.
fn run_until(p: &mut Pair, until: Instant) {
    for _ in 0..100 {
        match [p.a.poll_timeout(), p.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
        {
            Some(t) if t <= until => assert!(p.step_timer()),
            _ => break,
        }
    }
    p.now = p.now.max(until);
}

#[test]
fn a_responder_with_more_resources_tops_up_once_the_initiator_is_done() {
    let mut p = pair(2, 4, true);
    let t0 = p.now;
    // At once: only the initiator's extra.
    assert_eq!(create_requests(&p), (1, 0));
    assert_eq!(resources(&p.b, p.now), [0, 1]);
    run_until(&mut p, t0 + limits::RESOURCE_TOP_UP_DELAY);
    // Then B creates its resources 2 and 3; A numbers them after its own (RFC 9611 §3).
    assert_eq!(create_requests(&p), (1, 2));
    for req in sent(&p, false, ExchangeType::CREATE_CHILD_SA, false) {
        assert!(notifies(&p.a, &req).contains(&NotifyType::SA_RESOURCE_INFO));
    }
    for (s, home) in [(&p.a, 0), (&p.b, 1)] {
        assert_eq!(resources(s, p.now), [0, 1, 2, 3], "{}", s.cfg.name);
        assert_lanes(s, p.now, home);
    }
    assert_children_mirror(&p);
    assert_installs_mirror(&p);
    assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
    assert!(p.b.refill.at.is_none(), "a top-up happens once");
    // Nothing more later.
    let later = p.now + Duration::from_secs(30);
    run_until(&mut p, later);
    assert_eq!(create_requests(&p), (1, 2));
}

#[test]
fn a_responder_with_no_more_resources_than_the_initiator_creates_none() {
    for (a_res, b_res) in [(2, 2), (3, 2), (4, 1)] {
        let mut p = pair(a_res, b_res, false);
        let t0 = p.now;
        run_until(&mut p, t0 + limits::RESOURCE_TOP_UP_DELAY * 3);
        assert_eq!(create_requests(&p).1, 0, "{a_res} against {b_res}");
        let want: Vec<u32> = (0..a_res).collect();
        assert_eq!(resources(&p.b, p.now), want);
    }
    // The initiator never tops up: its extras are made at once.
    let p = pair(2, 3, false);
    assert!(p.a.refill.at.is_none());
    assert!(p.b.refill.at.is_some());
}

#[test]
fn the_top_up_waits_while_the_initiator_is_still_creating_over_a_slow_link() {
    // 300 ms each way: A's 5 extras take 3 s, longer than the top-up delay. B must wait
    // for the last of them, or both ends would create the same resources.
    let mut a = config("a", "routerA", "routerB", &[IKE], &[ESP], "s3cret", true);
    let mut b = config("b", "routerB", "routerA", &[IKE], &[ESP], "s3cret", false);
    (a.resources, b.resources) = (6, 8);
    let mut p = Pair::new(a, b);
    let hop = Duration::from_millis(300);
    p.a.handle_timeout(p.now);
    // One datagram of `from_a`'s side, if any, arrives `hop` later.
    let deliver = |p: &mut Pair, from_a: bool| {
        let (from, to) = if from_a {
            (&mut p.a, &mut p.b)
        } else {
            (&mut p.b, &mut p.a)
        };
        let Some(d) = from.poll_transmit() else {
            return false;
        };
        p.now += hop;
        p.wire_log.push((from_a, d.clone()));
        to.handle_timeout(p.now);
        to.handle_datagram(p.now, mirrored(d));
        true
    };
    for _ in 0..200 {
        let moved = deliver(&mut p, true) | deliver(&mut p, false);
        while let Some(e) = p.a.poll_event() {
            p.events_a.push(e);
        }
        while let Some(e) = p.b.poll_event() {
            p.events_b.push(e);
        }
        let next = [p.a.poll_timeout(), p.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            _ if moved => {}
            Some(t) if t < p.now + Duration::from_secs(30) => {
                p.now = p.now.max(t);
                p.a.handle_timeout(p.now);
                p.b.handle_timeout(p.now);
            }
            _ => break,
        }
    }
    assert_eq!(create_requests(&p), (5, 2), "A's 5 extras, then B's 2");
    let want: Vec<u32> = (0..8).collect();
    assert_eq!(resources(&p.a, p.now), want);
    assert_eq!(resources(&p.b, p.now), want);
    assert_children_mirror(&p);
    assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
}

/// `by`'s end deletes its CHILD SA of `resource` outside a rekey (RFC 7296 §1.4.1, as
/// `swanctl --terminate --child` or strongSwan's hard lifetime does).
fn peer_deletes(p: &mut Pair, by_a: bool, resource: u32) {
    let s = if by_a { &p.a } else { &p.b };
    let st = s.status(p.now);
    let spi_in = st
        .children
        .iter()
        .find(|(c, _)| c.resource == resource)
        .map(|(c, _)| c.spi_in)
        .expect("a CHILD SA of that resource");
    let s = if by_a { &mut p.a } else { &mut p.b };
    assert!(s.delete_child(p.now, spi_in));
    p.run();
}

/// Steps timers until `s` (A or B) has `n` CHILD SAs; how long that took.
fn time_to_children(p: &mut Pair, a: bool, n: usize) -> Duration {
    let start = p.now;
    for _ in 0..100 {
        let s = if a { &p.a } else { &p.b };
        if s.status(p.now).children.len() == n {
            return p.now - start;
        }
        assert!(p.step_timer(), "no timer left");
    }
    panic!("never got {n} CHILD SAs");
}

/// The peer deletes the tunnel's only CHILD SA and keeps its IKE SA: the other end
/// creates it again with the configured selectors, after 1 s, then 2 s, 4 s … up to 64 s
/// if the peer keeps deleting, and from 1 s again once a CHILD SA lived to its rekey. The end
/// that deleted never re-creates it itself.
#[test]
fn a_child_sa_the_peer_deletes_is_created_again_with_back_off() {
    let mut p = pair(0, 0, false);
    let mut waits = vec![];
    assert_eq!(p.a.status(p.now).child_refill_in, None);
    for _ in 0..9 {
        peer_deletes(&mut p, false, 0);
        assert!(p.a.status(p.now).children.is_empty(), "A lost its CHILD SA");
        let due = p.a.status(p.now).child_refill_in;
        assert!(p.a.is_established() && p.b.is_established(), "IKE SA stays");
        let requests = create_requests(&p);
        waits.push(time_to_children(&mut p, true, 1));
        assert_eq!(due, waits.last().copied(), "status said when");
        assert_eq!(
            create_requests(&p),
            (requests.0 + 1, requests.1),
            "A made it"
        );
        assert_children_mirror(&p);
    }
    let s = |n| Duration::from_secs(n);
    // Doubling up to limits::CHILD_REFILL_MAX, then staying there.
    let want = [1, 2, 4, 8, 16, 32, 64, 64, 64].map(s);
    assert_eq!(waits, want);
    assert_eq!(p.a.status(p.now).child_refill_in, None, "nothing due");
    let c = *Pair::children(&p.events_a).last().unwrap();
    assert_eq!((c.replaces, c.resource), (None, 0));
    assert_eq!(c.local_ts, p.a.cfg.local_ts, "the configured selectors");
    assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
    // A rekey (the SA lived its lifetime) starts the back-off over.
    assert!(p.b.rekey_child(p.now));
    p.run();
    peer_deletes(&mut p, false, 0);
    assert_eq!(time_to_children(&mut p, true, 1), s(1));
    assert_children_mirror(&p);
    // And a rekey's own delete of the old SA creates nothing more.
    let requests = create_requests(&p);
    assert!(p.b.rekey_child(p.now));
    p.run();
    let later = p.now + s(120);
    run_until(&mut p, later);
    assert_eq!(create_requests(&p), (requests.0, requests.1 + 1));
    assert_eq!(child_spis(&p.a, p.now).len(), 1);
}

/// With per-resource CHILD SAs, a deleted extra comes back on its resource and lane,
/// whichever end of the IKE SA lost it; the others are untouched.
#[test]
fn a_per_resource_child_sa_the_peer_deletes_is_created_again() {
    for (a_deletes, resource) in [(false, 1), (true, 2), (true, 0)] {
        let mut p = pair(3, 3, true);
        let before = child_spis(&p.a, p.now);
        peer_deletes(&mut p, a_deletes, resource);
        let loser = !a_deletes;
        let lost = if loser { &p.a } else { &p.b };
        assert_eq!(lost.status(p.now).children.len(), 2);
        assert_eq!(time_to_children(&mut p, loser, 3), Duration::from_secs(1));
        for (s, home) in [(&p.a, 0), (&p.b, 1)] {
            assert_eq!(
                resources(s, p.now),
                [0, 1, 2],
                "{} lost {resource}",
                s.cfg.name
            );
            assert_lanes(s, p.now, home);
        }
        let kept = child_spis(&p.a, p.now)
            .iter()
            .filter(|c| before.contains(c))
            .count();
        assert_eq!(kept, 2, "the other two stay");
        assert_children_mirror(&p);
        assert_installs_mirror(&p);
        assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
    }
}

/// A re-creation the peer refuses (here NO_PROPOSAL_CHOSEN: its ESP proposals changed)
/// is reported and tried again with the back-off, until the peer takes it.
#[test]
fn a_refused_re_creation_is_tried_again_with_back_off() {
    let mut p = pair(0, 0, false);
    let ours = p.b.cfg.esp.clone();
    p.b.cfg.esp =
        vec![crate::proposal::parse("aes256gcm16", crate::proposal::Protocol::Esp).unwrap()];
    peer_deletes(&mut p, false, 0);
    let t0 = p.now;
    let mut tries = vec![];
    while tries.len() < 3 {
        let before = create_requests(&p).0;
        assert!(p.step_timer());
        if create_requests(&p).0 > before {
            tries.push(p.now - t0);
        }
    }
    let s = Duration::from_secs;
    assert_eq!(tries, [s(1), s(1 + 2), s(1 + 2 + 4)]);
    let err = p.a.status(p.now).last_error.unwrap_or_default();
    assert!(err.starts_with("NO_PROPOSAL_CHOSEN"), "{err}");
    assert!(p.a.status(p.now).children.is_empty());
    assert!(p.a.is_established(), "the IKE SA stays");
    p.b.cfg.esp = ours;
    assert_eq!(time_to_children(&mut p, true, 1), s(8));
    assert_children_mirror(&p);
}

/// The IKE SA is rekeyed, by either end, between the loss of the CHILD SA and its
/// re-creation: the new IKE SA creates it, on time.
#[test]
fn a_re_creation_survives_an_ike_rekey() {
    for a_rekeys in [true, false] {
        let mut p = pair(0, 0, false);
        peer_deletes(&mut p, false, 0);
        let old_ike = p.a.status(p.now).ike_sas[0].spi_i;
        let s = if a_rekeys { &mut p.a } else { &mut p.b };
        assert!(s.rekey_ike(p.now));
        p.run();
        let st = p.a.status(p.now);
        assert_eq!(st.ike_sas.len(), 1);
        assert_ne!(st.ike_sas[0].spi_i, old_ike, "rekeyed");
        assert_eq!(time_to_children(&mut p, true, 1), Duration::from_secs(1));
        assert_children_mirror(&p);
    }
}

/// B deletes the CHILD SA while A's IKE SA rekey is on its way: the DELETE arrives on
/// the IKE SA the rekey is retiring. The loss belongs to the session, so A's new IKE SA
/// still creates the CHILD SA again.
#[test]
fn a_loss_learnt_on_a_retiring_ike_sa_is_still_refilled() {
    let mut p = pair(0, 0, false);
    let spi_b = child_spis(&p.b, p.now)[0].0;
    assert!(p.a.rekey_ike(p.now));
    let rekey = p.a.poll_transmit().expect("A's IKE rekey request");
    assert!(p.b.delete_child(p.now, spi_b));
    let delete = p.b.poll_transmit().expect("B's DELETE");
    p.b.handle_datagram(p.now, mirrored(rekey));
    let answer = p.b.poll_transmit().expect("B's answer to the rekey");
    p.a.handle_datagram(p.now, mirrored(answer));
    // A now has its new IKE SA; B's DELETE comes on the old one.
    p.a.handle_datagram(p.now, mirrored(delete));
    p.run();
    assert!(p.a.status(p.now).children.is_empty(), "A lost its CHILD SA");
    assert_eq!(p.a.status(p.now).ike_sas.len(), 1, "the old IKE SA is gone");
    assert_eq!(time_to_children(&mut p, true, 1), Duration::from_secs(1));
    assert_children_mirror(&p);
    assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
}

/// The peer forgot a per-resource CHILD SA without a DELETE reaching us (strongSwan
/// forgets an SA when it sends its DELETE, and that can be lost): our next rekey of it
/// meets CHILD_SA_NOT_FOUND. The SA goes here too, and is created again like any loss.
#[test]
fn an_extra_the_peer_forgot_silently_is_created_again() {
    let mut p = pair(2, 2, true);
    // Past B's top-up check (it would make the SA again itself).
    let later = p.now + limits::RESOURCE_TOP_UP_DELAY * 2;
    run_until(&mut p, later);
    let (a_in, a_out) = *child_spis(&p.a, p.now)
        .iter()
        .find(|(i, _)| {
            p.a.status(p.now)
                .children
                .iter()
                .any(|(c, _)| c.spi_in == *i && c.resource == 1)
        })
        .unwrap();
    // B forgets the SA of resource 1 (its DELETE lost on the way).
    p.b.children.retain(|c| c.spi_in != a_out);
    assert!(p.a.rekey_child_spi(p.now, a_in));
    p.run();
    assert_eq!(resources(&p.a, p.now), [0], "A dropped it too");
    assert!(p.a.status(p.now).last_error.is_some(), "reported");
    assert_eq!(time_to_children(&mut p, true, 2), Duration::from_secs(1));
    for (s, home) in [(&p.a, 0), (&p.b, 1)] {
        assert_eq!(resources(s, p.now), [0, 1], "{}", s.cfg.name);
        assert_lanes(s, p.now, home);
    }
    assert_children_mirror(&p);
}
