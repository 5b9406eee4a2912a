//! Two in-memory peers on a virtual clock with deterministic randomness: every exchange
//! and every error path of the session, without sockets.

use super::*;
use crate::iana::NotifyType;
use crate::proposal::{parse, Protocol};
use crate::wire::{IdPayload, TrafficSelector};
use std::net::{IpAddr, Ipv4Addr};

/// splitmix64: reproducible bytes for SPIs, nonces, IVs and private keys.
pub(crate) struct TestRng(u64);

impl Rng for TestRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *b = (z ^ (z >> 31)) as u8;
        }
    }
}

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

fn fqdn(s: &str) -> IdPayload {
    IdPayload {
        id_type: crate::iana::IdType::FQDN,
        reserved: [0; 3],
        data: s.as_bytes().to_vec(),
    }
}

fn config(
    name: &str,
    local: &str,
    remote: &str,
    ike: &[&str],
    esp: &[&str],
    psk: &str,
    initiate: bool,
) -> SessionConfig {
    SessionConfig {
        name: name.into(),
        local_id: fqdn(local),
        remote_id: fqdn(remote),
        psk: Zeroizing::new(psk.as_bytes().to_vec()),
        ike: ike
            .iter()
            .map(|s| parse(s, Protocol::Ike).unwrap())
            .collect(),
        esp: esp
            .iter()
            .map(|s| parse(s, Protocol::Esp).unwrap())
            .collect(),
        local_ts: vec![TrafficSelector::any_v4(), TrafficSelector::any_v6()],
        remote_ts: vec![TrafficSelector::any_v4(), TrafficSelector::any_v6()],
        initiate,
        force_encap: true,
        ike_lifetime: Duration::from_secs(4 * 3600),
        child_lifetime: Duration::from_secs(3600),
        dpd: None,
        dpd_restart: true,
        fragment_size: limits::FRAGMENT_SIZE,
        retransmit_timeout: limits::RETRANSMIT_TIMEOUT,
        retransmit_tries: limits::RETRANSMIT_TRIES,
    }
}

/// A datagram as the receiver sees it: our remote is its local.
fn mirrored(d: Datagram) -> Datagram {
    Datagram {
        local: d.remote,
        remote: d.local,
        data: d.data,
    }
}

/// Both peers, a virtual clock and a wire that can drop datagrams.
struct Pair {
    a: Session,
    b: Session,
    now: Instant,
    events_a: Vec<Event>,
    events_b: Vec<Event>,
    /// Datagrams from A to B to drop, by sequence number of A's transmissions.
    drop_a: Vec<usize>,
    sent_a: usize,
    wire_log: Vec<(bool, Datagram)>,
}

impl Pair {
    fn new(a: SessionConfig, b: SessionConfig) -> Pair {
        let now = Instant::now();
        Pair {
            a: Session::new(a, A, B, Box::new(TestRng(1)), now),
            b: Session::new(b, B, A, Box::new(TestRng(2)), now),
            now,
            events_a: vec![],
            events_b: vec![],
            drop_a: vec![],
            sent_a: 0,
            wire_log: vec![],
        }
    }

    /// Delivers datagrams until both sides are quiet; returns how many moved.
    fn run(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let mut progress = false;
            while let Some(d) = self.a.poll_transmit() {
                self.sent_a += 1;
                progress = true;
                self.wire_log.push((true, d.clone()));
                if self.drop_a.contains(&self.sent_a) {
                    continue;
                }
                moved += 1;
                self.b.handle_datagram(self.now, mirrored(d));
            }
            while let Some(d) = self.b.poll_transmit() {
                progress = true;
                moved += 1;
                self.wire_log.push((false, d.clone()));
                self.a.handle_datagram(self.now, mirrored(d));
            }
            while let Some(e) = self.a.poll_event() {
                self.events_a.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                self.events_b.push(e);
            }
            if !progress {
                return moved;
            }
        }
    }

    /// Advances the virtual clock to the next deadline and runs timers.
    fn step_timer(&mut self) -> bool {
        let next = [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) => {
                self.now = self.now.max(t);
                self.a.handle_timeout(self.now);
                self.b.handle_timeout(self.now);
                self.run();
                true
            }
            None => false,
        }
    }

    fn start(&mut self) {
        self.a.handle_timeout(self.now);
        self.run();
    }

    fn children(events: &[Event]) -> Vec<&ChildSaInfo> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::ChildInstalled(c) => Some(c.as_ref()),
                _ => None,
            })
            .collect()
    }
}

fn closed_with(events: &[Event]) -> Option<NotifyType> {
    events.iter().find_map(|e| match e {
        Event::IkeClosed {
            reason: CloseReason::Failed(n, _),
            ..
        } => Some(*n),
        _ => None,
    })
}

fn establish(ike: &str, esp: &str) -> Pair {
    let mut p = Pair::new(
        config(
            "a",
            "routerA",
            "routerB",
            &[ike],
            &[esp],
            "supersecret",
            true,
        ),
        config(
            "b",
            "routerB",
            "routerA",
            &[ike],
            &[esp],
            "supersecret",
            false,
        ),
    );
    p.start();
    p
}

fn assert_child_pair(p: &Pair) {
    let ca = Pair::children(&p.events_a);
    let cb = Pair::children(&p.events_b);
    assert_eq!(ca.len(), 1, "A installed one CHILD SA");
    assert_eq!(cb.len(), 1, "B installed one CHILD SA");
    let (a, b) = (ca[0], cb[0]);
    assert_eq!(a.spi_in, b.spi_out);
    assert_eq!(a.spi_out, b.spi_in);
    assert_eq!(*a.keys_out, *b.keys_in, "A→B keys agree");
    assert_eq!(*a.keys_in, *b.keys_out, "B→A keys agree");
    assert_ne!(*a.keys_in, *a.keys_out, "directions use distinct keys");
    assert_eq!(a.proposal, b.proposal);
    assert_eq!(
        a.local.port(),
        limits::NATT_PORT,
        "forced encapsulation floats to 4500"
    );
}

#[test]
fn establishes_with_every_suite() {
    for (ike, esp) in [
        ("aes256gcm16-prfsha384-x25519", "aes256gcm16"),
        ("aes128gcm16-prfsha256-ecp256", "aes128gcm16-esn"),
        ("aes256-sha384-ecp384", "aes256-sha384"),
        ("aes128-sha256-modp2048", "aes128-sha256"),
        ("aes256-sha512-x25519", "aes256-sha512-esn"),
    ] {
        let p = establish(ike, esp);
        assert!(p.a.is_established(), "{ike}: initiator established");
        assert!(p.b.is_established(), "{ike}: responder established");
        assert_child_pair(&p);
        let st = p.a.status(p.now);
        assert_eq!(st.ike_sas.len(), 1);
        assert_eq!(st.children.len(), 1);
        assert!(st.last_error.is_none());
    }
}

#[test]
fn esn_is_negotiated() {
    let p = establish("aes256gcm16-prfsha384-x25519", "aes256gcm16-esn");
    assert!(Pair::children(&p.events_a)[0].esn);
    let p = establish("aes256gcm16-prfsha384-x25519", "aes256gcm16-noesn");
    assert!(!Pair::children(&p.events_a)[0].esn);
}

#[test]
fn wrong_psk_fails_on_both_ends() {
    let mut p = Pair::new(
        config(
            "a",
            "routerA",
            "routerB",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "secret-one",
            true,
        ),
        config(
            "b",
            "routerB",
            "routerA",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "secret-two",
            false,
        ),
    );
    p.start();
    assert_eq!(
        closed_with(&p.events_b),
        Some(NotifyType::AUTHENTICATION_FAILED)
    );
    assert_eq!(
        closed_with(&p.events_a),
        Some(NotifyType::AUTHENTICATION_FAILED)
    );
    assert!(!p.a.is_established() && !p.b.is_established());
    assert!(Pair::children(&p.events_a).is_empty() && Pair::children(&p.events_b).is_empty());
    let err = p.b.status(p.now).last_error.unwrap();
    assert!(err.contains("pre-shared keys differ"), "{err}");
}

#[test]
fn wrong_identity_fails() {
    let mut p = Pair::new(
        config(
            "a",
            "routerA",
            "routerB",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            true,
        ),
        config(
            "b",
            "routerB",
            "routerX",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            false,
        ),
    );
    p.start();
    assert_eq!(
        closed_with(&p.events_a),
        Some(NotifyType::AUTHENTICATION_FAILED)
    );
    let err = p.b.status(p.now).last_error.unwrap();
    assert!(err.contains("routerX"), "{err}");
}

#[test]
fn disjoint_ike_proposals_fail_with_no_proposal_chosen() {
    let mut p = Pair::new(
        config(
            "a",
            "routerA",
            "routerB",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            true,
        ),
        config(
            "b",
            "routerB",
            "routerA",
            &["aes128-sha256-modp2048"],
            &["aes256gcm16"],
            "s",
            false,
        ),
    );
    p.start();
    assert_eq!(
        closed_with(&p.events_a),
        Some(NotifyType::NO_PROPOSAL_CHOSEN)
    );
    let err = p.b.status(p.now).last_error.unwrap();
    assert!(
        err.contains("peer offered") && err.contains("we accept"),
        "{err}"
    );
    assert!(
        p.b.status(p.now).ike_sas.is_empty(),
        "responder keeps no state"
    );
}

#[test]
fn disjoint_esp_proposals_fail_the_child_and_the_tunnel() {
    let mut p = Pair::new(
        config(
            "a",
            "routerA",
            "routerB",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            true,
        ),
        config(
            "b",
            "routerB",
            "routerA",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes128-sha256"],
            "s",
            false,
        ),
    );
    p.start();
    assert!(p.events_a.iter().any(|e| matches!(
        e,
        Event::ChildFailed {
            reason: CloseReason::Failed(NotifyType::NO_PROPOSAL_CHOSEN, _)
        }
    )));
    assert!(Pair::children(&p.events_b).is_empty());
    // A deletes the useless IKE SA; B sees the delete.
    assert!(!p.a.is_established());
    assert!(!p.b.is_established());
}

#[test]
fn unacceptable_traffic_selectors() {
    let mut a = config(
        "a",
        "routerA",
        "routerB",
        &["aes256gcm16-prfsha384-x25519"],
        &["aes256gcm16"],
        "s",
        true,
    );
    a.local_ts = vec![TrafficSelector::from_prefix(
        "10.1.0.0".parse().unwrap(),
        24,
    )];
    let mut b = config(
        "b",
        "routerB",
        "routerA",
        &["aes256gcm16-prfsha384-x25519"],
        &["aes256gcm16"],
        "s",
        false,
    );
    b.remote_ts = vec![TrafficSelector::from_prefix(
        "10.9.0.0".parse().unwrap(),
        24,
    )];
    let mut p = Pair::new(a, b);
    p.start();
    assert!(p.events_a.iter().any(|e| matches!(
        e,
        Event::ChildFailed {
            reason: CloseReason::Failed(NotifyType::TS_UNACCEPTABLE, _)
        }
    )));
}

#[test]
fn responder_narrows_traffic_selectors() {
    let a = config(
        "a",
        "routerA",
        "routerB",
        &["aes256gcm16-prfsha384-x25519"],
        &["aes256gcm16"],
        "s",
        true,
    );
    let mut b = config(
        "b",
        "routerB",
        "routerA",
        &["aes256gcm16-prfsha384-x25519"],
        &["aes256gcm16"],
        "s",
        false,
    );
    b.local_ts = vec![TrafficSelector::from_prefix(
        "10.2.0.0".parse().unwrap(),
        24,
    )];
    b.remote_ts = vec![TrafficSelector::from_prefix(
        "10.1.0.0".parse().unwrap(),
        24,
    )];
    let mut p = Pair::new(a, b);
    p.start();
    let ca = Pair::children(&p.events_a);
    assert_eq!(ca.len(), 1);
    assert_eq!(ts_to_string(&ca[0].local_ts[0]), "10.1.0.0/24");
    assert_eq!(ts_to_string(&ca[0].remote_ts[0]), "10.2.0.0/24");
}

#[test]
fn invalid_ke_payload_retry() {
    // A starts with ECP-256; B only accepts Curve25519 and asks for it.
    let mut p = Pair::new(
        config(
            "a",
            "routerA",
            "routerB",
            &["aes256gcm16-prfsha384-ecp256-x25519"],
            &["aes256gcm16"],
            "s",
            true,
        ),
        config(
            "b",
            "routerB",
            "routerA",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            false,
        ),
    );
    p.start();
    assert!(p.a.is_established() && p.b.is_established());
    let inits = p
        .wire_log
        .iter()
        .filter(|(from_a, d)| *from_a && d.local.port() == 500)
        .count();
    assert_eq!(
        inits, 2,
        "one IKE_SA_INIT with ECP-256, one retry with Curve25519"
    );
    assert!(p.a.status(p.now).ike_sas[0]
        .proposal
        .contains("CURVE_25519"));
}

#[test]
fn lost_request_is_retransmitted() {
    let mut p = Pair::new(
        config(
            "a",
            "routerA",
            "routerB",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            true,
        ),
        config(
            "b",
            "routerB",
            "routerA",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            false,
        ),
    );
    p.drop_a = vec![1, 3]; // first IKE_SA_INIT and first IKE_AUTH
    p.start();
    assert!(!p.a.is_established());
    let t0 = p.now;
    while !p.a.is_established() && p.step_timer() {}
    assert!(p.a.is_established() && p.b.is_established());
    assert_eq!(
        p.now - t0,
        limits::RETRANSMIT_TIMEOUT * 2,
        "two retransmissions after 1 s each"
    );
    assert_child_pair(&p);
}

#[test]
fn retransmitted_request_gets_the_cached_response() {
    let mut p = establish("aes256gcm16-prfsha384-x25519", "aes256gcm16");
    // Replay A's IKE_AUTH request: B must answer with the identical cached bytes and
    // must not install a second CHILD SA.
    let auth_req = p
        .wire_log
        .iter()
        .find(|(a, d)| *a && d.local.port() == 4500)
        .unwrap()
        .1
        .clone();
    let auth_resp = p
        .wire_log
        .iter()
        .find(|(a, d)| !*a && d.local.port() == 4500)
        .unwrap()
        .1
        .data
        .clone();
    p.b.handle_datagram(p.now, auth_req);
    let again = p.b.poll_transmit().expect("cached response re-sent");
    assert_eq!(again.data, auth_resp);
    assert_eq!(p.b.status(p.now).children.len(), 1);
}

#[test]
fn retransmitted_init_gets_the_cached_response() {
    let mut p = Pair::new(
        config(
            "a",
            "routerA",
            "routerB",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            true,
        ),
        config(
            "b",
            "routerB",
            "routerA",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            false,
        ),
    );
    p.drop_a = vec![2]; // lose IKE_AUTH so B sits half-open
    p.start();
    let init_req = p
        .wire_log
        .iter()
        .find(|(a, d)| *a && d.local.port() == 500)
        .unwrap()
        .1
        .clone();
    let init_resp = p
        .wire_log
        .iter()
        .find(|(a, d)| !*a && d.local.port() == 500)
        .unwrap()
        .1
        .data
        .clone();
    p.b.handle_datagram(p.now, init_req);
    assert_eq!(p.b.poll_transmit().unwrap().data, init_resp);
    assert_eq!(p.b.status(p.now).ike_sas.len(), 1, "no second half-open SA");
    while !p.a.is_established() && p.step_timer() {}
    assert!(p.b.is_established());
}

#[test]
fn unanswered_initiator_gives_up_and_retries_later() {
    let mut p = Pair::new(
        config(
            "a",
            "routerA",
            "routerB",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            true,
        ),
        config(
            "b",
            "routerB",
            "routerA",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            false,
        ),
    );
    p.drop_a = (1..=6).collect();
    p.start();
    let t0 = p.now;
    while closed_with_timeout(&p.events_a).is_none() && p.step_timer() {}
    assert!(closed_with_timeout(&p.events_a).is_some());
    assert_eq!(p.sent_a, 1 + limits::RETRANSMIT_TRIES as usize);
    assert!(p.now - t0 >= Duration::from_secs(30));
    // It re-initiates by itself and, the path restored, comes up.
    while !p.a.is_established() && p.step_timer() {}
    assert!(p.a.is_established());
}

fn closed_with_timeout(events: &[Event]) -> Option<()> {
    events
        .iter()
        .find(|e| {
            matches!(
                e,
                Event::IkeClosed {
                    reason: CloseReason::Timeout,
                    ..
                }
            )
        })
        .map(|_| ())
}

#[test]
fn delete_takes_down_both_ends() {
    let mut p = establish("aes256gcm16-prfsha384-x25519", "aes256gcm16");
    p.a.close(p.now);
    p.run();
    assert!(!p.b.is_established());
    assert!(p.events_b.iter().any(|e| matches!(
        e,
        Event::IkeClosed {
            reason: CloseReason::DeletedByPeer,
            ..
        }
    )));
    assert!(p
        .events_b
        .iter()
        .any(|e| matches!(e, Event::ChildDeleted { .. })));
    assert!(p
        .events_a
        .iter()
        .any(|e| matches!(e, Event::ChildDeleted { .. })));
    assert!(p.b.status(p.now).children.is_empty());
}

#[test]
fn garbage_never_panics_or_disturbs_the_sa() {
    let mut p = establish("aes256gcm16-prfsha384-x25519", "aes256gcm16");
    let mut rng = TestRng(99);
    let template = p.wire_log.last().unwrap().1.clone();
    for len in [0usize, 1, 27, 28, 29, 60, 200] {
        for _ in 0..50 {
            let mut data = vec![0u8; len];
            rng.fill(&mut data);
            p.b.handle_datagram(
                p.now,
                Datagram {
                    data,
                    ..template.clone()
                },
            );
        }
    }
    // Bit flips of a real message.
    for i in 0..template.data.len() {
        let mut d = template.clone();
        d.data[i] ^= 0x40;
        p.a.handle_datagram(p.now, d.clone());
        p.b.handle_datagram(p.now, d);
    }
    assert!(p.a.is_established() && p.b.is_established());
    assert_eq!(p.b.status(p.now).children.len(), 1);
}

fn child_spis(s: &Session, now: Instant) -> Vec<(u32, u32)> {
    s.status(now)
        .children
        .iter()
        .map(|(c, _)| (c.spi_in, c.spi_out))
        .collect()
}

/// Every CHILD SA one side has is mirrored on the other.
fn assert_children_mirror(p: &Pair) {
    let a = child_spis(&p.a, p.now);
    let mut b: Vec<(u32, u32)> = child_spis(&p.b, p.now)
        .into_iter()
        .map(|(i, o)| (o, i))
        .collect();
    let mut a2 = a.clone();
    a2.sort();
    b.sort();
    assert_eq!(a2, b, "CHILD SAs mirror each other");
}

fn rekey_pair(a_esp: &str, b_esp: &str) -> Pair {
    let mut p = Pair::new(
        config(
            "a",
            "routerA",
            "routerB",
            &["aes256gcm16-prfsha384-x25519"],
            &[a_esp],
            "s",
            true,
        ),
        config(
            "b",
            "routerB",
            "routerA",
            &["aes256gcm16-prfsha384-x25519"],
            &[b_esp],
            "s",
            false,
        ),
    );
    p.start();
    assert!(p.a.is_established() && p.b.is_established());
    p
}

#[test]
fn child_rekey_without_and_with_pfs_from_either_side() {
    for (a_esp, b_esp, pfs) in [
        ("aes256gcm16", "aes256gcm16", false),
        ("aes256gcm16-x25519", "aes256gcm16", true),
        ("aes128-sha256-modp2048", "aes128-sha256-modp2048", true),
    ] {
        for a_initiates in [true, false] {
            let mut p = rekey_pair(a_esp, b_esp);
            let before = child_spis(&p.a, p.now);
            let initiator = if a_initiates { &mut p.a } else { &mut p.b };
            assert!(initiator.rekey_child(p.now));
            p.run();
            if a_esp != b_esp && !a_initiates {
                // B offers no PFS but A requires it: refused, the old SA stays.
                assert_eq!(child_spis(&p.a, p.now), before);
                let err = p.a.status(p.now).last_error.unwrap();
                assert!(err.contains("NO_PROPOSAL_CHOSEN"), "{err}");
                assert!(p.a.is_established() && p.b.is_established());
                continue;
            }
            let after = child_spis(&p.a, p.now);
            assert_eq!(
                after.len(),
                1,
                "{a_esp}/{b_esp}: old CHILD SA deleted after the rekey"
            );
            assert_ne!(
                after,
                before,
                "new SPIs; A: {:?} B: {:?}",
                p.a.status(p.now).last_error,
                p.b.status(p.now).last_error
            );
            assert_children_mirror(&p);
            let installs_a = Pair::children(&p.events_a);
            let installs_b = Pair::children(&p.events_b);
            let (na, nb) = (installs_a.last().unwrap(), installs_b.last().unwrap());
            assert_eq!(*na.keys_out, *nb.keys_in);
            assert_eq!(*na.keys_in, *nb.keys_out);
            assert!(na.replaces.is_some());
            assert_eq!(
                na.proposal.contains("CURVE_25519") || na.proposal.contains("MODP_2048"),
                pfs,
                "{}",
                na.proposal
            );
            // Make-before-break: the new SA was installed before the old one was deleted.
            let order: Vec<&str> = p
                .events_a
                .iter()
                .filter_map(|e| match e {
                    Event::ChildInstalled(_) => Some("install"),
                    Event::ChildDeleted { .. } => Some("delete"),
                    _ => None,
                })
                .collect();
            assert_eq!(order, ["install", "install", "delete"]);
        }
    }
}

#[test]
fn ike_rekey_from_either_side_keeps_children_and_works_after() {
    for a_initiates in [true, false] {
        let mut p = rekey_pair("aes256gcm16", "aes256gcm16");
        let old = p.a.status(p.now).ike_sas[0].clone();
        let children_before = child_spis(&p.a, p.now);
        if a_initiates {
            assert!(p.a.rekey_ike(p.now));
        } else {
            assert!(p.b.rekey_ike(p.now));
        }
        p.run();
        let sa = p.a.status(p.now);
        assert_eq!(sa.ike_sas.len(), 1, "old IKE SA deleted: {:?}", sa.ike_sas);
        assert_ne!(sa.ike_sas[0].spi_i, old.spi_i);
        assert_eq!(sa.ike_sas[0].rekeys, 1);
        assert_eq!(
            sa.ike_sas[0].initiator, a_initiates,
            "the rekey's initiator is the new original initiator"
        );
        assert_eq!(p.b.status(p.now).ike_sas.len(), 1);
        assert_eq!(
            child_spis(&p.a, p.now),
            children_before,
            "CHILD SAs survive the IKE rekey"
        );
        assert!(!p
            .events_a
            .iter()
            .any(|e| matches!(e, Event::ChildDeleted { .. })));
        // The new IKE SA carries further exchanges: a CHILD rekey and a liveness check.
        assert!(p.b.rekey_child(p.now));
        p.run();
        assert_children_mirror(&p);
        assert!(p.a.send_liveness(p.now));
        let sent = p.run();
        assert_eq!(sent, 2, "liveness request and its response");
        assert!(p.a.is_established() && p.b.is_established());
    }
}

#[test]
fn repeated_rekeys_of_both_kinds() {
    let mut p = rekey_pair("aes256gcm16-x25519", "aes256gcm16-x25519");
    for i in 0..10 {
        let who_a = i % 2 == 0;
        let s = if who_a { &mut p.a } else { &mut p.b };
        if i % 3 == 0 {
            assert!(s.rekey_ike(p.now));
        } else {
            assert!(s.rekey_child(p.now));
        }
        p.run();
        assert_eq!(child_spis(&p.a, p.now).len(), 1);
        assert_children_mirror(&p);
        assert_eq!(p.a.status(p.now).ike_sas.len(), 1);
    }
    assert!(!p.events_a.iter().any(|e| matches!(
        e,
        Event::IkeClosed {
            reason: CloseReason::Failed(..) | CloseReason::Timeout,
            ..
        }
    )));
}

#[test]
fn unanswered_liveness_check_declares_the_peer_dead() {
    let mut p = establish("aes256gcm16-prfsha384-x25519", "aes256gcm16");
    p.drop_a = (p.sent_a + 1..p.sent_a + 20).collect();
    assert!(p.a.send_liveness(p.now));
    p.run();
    while closed_with_timeout(&p.events_a).is_none() && p.step_timer() {}
    assert!(closed_with_timeout(&p.events_a).is_some());
    assert!(
        p.events_a
            .iter()
            .any(|e| matches!(e, Event::ChildDeleted { .. })),
        "tunnel goes down"
    );
}

#[test]
fn rekey_of_unknown_child_is_refused_with_child_sa_not_found() {
    let mut p = rekey_pair("aes256gcm16", "aes256gcm16");
    // B deletes its CHILD SA state behind A's back, then A rekeys it.
    p.b.children.clear();
    assert!(p.a.rekey_child(p.now));
    p.run();
    let err = p.a.status(p.now).last_error.unwrap();
    assert!(err.contains("CHILD_SA_NOT_FOUND"), "{err}");
    // A drops the SA the peer forgot and, left without one, creates a fresh CHILD SA.
    assert_eq!(child_spis(&p.a, p.now).len(), 1);
    assert_children_mirror(&p);
    assert!(p
        .events_a
        .iter()
        .any(|e| matches!(e, Event::ChildDeleted { .. })));
}

fn no_failures(events: &[Event]) -> bool {
    !events.iter().any(|e| {
        matches!(
            e,
            Event::IkeClosed {
                reason: CloseReason::Failed(..) | CloseReason::Timeout,
                ..
            } | Event::ChildFailed { .. }
        )
    })
}

/// The tunnel never goes without a CHILD SA: every delete follows an install that
/// left at least one SA in place.
fn never_empty(events: &[Event]) -> bool {
    let mut n: i32 = 0;
    let mut seen_up = false;
    for e in events {
        match e {
            Event::ChildInstalled(_) => {
                n += 1;
                seen_up = true;
            }
            Event::ChildDeleted { .. } => {
                n -= 1;
                if seen_up && n < 1 {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

#[test]
fn simultaneous_child_rekey_leaves_one_child_sa() {
    for pfs in ["aes256gcm16", "aes256gcm16-x25519"] {
        let mut p = rekey_pair(pfs, pfs);
        assert!(p.a.rekey_child(p.now));
        assert!(p.b.rekey_child(p.now));
        p.run();
        assert_eq!(
            child_spis(&p.a, p.now).len(),
            1,
            "{:?}",
            child_spis(&p.a, p.now)
        );
        assert_eq!(child_spis(&p.b, p.now).len(), 1);
        assert_children_mirror(&p);
        assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
        assert!(
            never_empty(&p.events_a) && never_empty(&p.events_b),
            "tunnel never flaps"
        );
        // And the survivor rekeys normally afterwards.
        assert!(p.b.rekey_child(p.now));
        p.run();
        assert_children_mirror(&p);
        assert_eq!(child_spis(&p.a, p.now).len(), 1);
    }
}

#[test]
fn simultaneous_ike_rekey_leaves_one_ike_sa() {
    let mut p = rekey_pair("aes256gcm16", "aes256gcm16");
    let children = child_spis(&p.a, p.now);
    assert!(p.a.rekey_ike(p.now));
    assert!(p.b.rekey_ike(p.now));
    p.run();
    let (sa, sb) = (p.a.status(p.now), p.b.status(p.now));
    assert_eq!(sa.ike_sas.len(), 1, "{:?}", sa.ike_sas);
    assert_eq!(sb.ike_sas.len(), 1, "{:?}", sb.ike_sas);
    assert_eq!(
        (sa.ike_sas[0].spi_i, sa.ike_sas[0].spi_r),
        (sb.ike_sas[0].spi_i, sb.ike_sas[0].spi_r)
    );
    assert_eq!(child_spis(&p.a, p.now), children, "CHILD SAs survive");
    assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
    // The surviving SA works.
    assert!(p.a.rekey_child(p.now));
    p.run();
    assert_children_mirror(&p);
    assert!(p.b.send_liveness(p.now));
    assert_eq!(p.run(), 2);
}

#[test]
fn both_ends_initiating_leaves_one_tunnel() {
    let mut p = Pair::new(
        config(
            "a",
            "routerA",
            "routerB",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            true,
        ),
        config(
            "b",
            "routerB",
            "routerA",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            true,
        ),
    );
    p.a.handle_timeout(p.now);
    p.b.handle_timeout(p.now);
    p.run();
    let (sa, sb) = (p.a.status(p.now), p.b.status(p.now));
    assert_eq!(sa.ike_sas.len(), 1, "{:?}", sa.ike_sas);
    assert_eq!(sb.ike_sas.len(), 1, "{:?}", sb.ike_sas);
    assert_eq!(child_spis(&p.a, p.now).len(), 1);
    assert_children_mirror(&p);
    assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
    assert!(
        never_empty(&p.events_a) && never_empty(&p.events_b),
        "tunnel never flaps"
    );
}

#[test]
fn rekey_crossing_a_delete_ends_cleanly() {
    let mut p = rekey_pair("aes256gcm16", "aes256gcm16");
    assert!(p.a.rekey_child(p.now));
    p.b.close(p.now);
    p.run();
    for _ in 0..10 {
        p.step_timer();
    }
    assert!(child_spis(&p.b, p.now).is_empty());
    assert!(child_spis(&p.a, p.now).is_empty() || p.a.is_established());
}

#[test]
fn scheduled_rekeys_and_liveness_over_hours_of_virtual_time() {
    let mut a = config(
        "a",
        "routerA",
        "routerB",
        &["aes256gcm16-prfsha384-x25519"],
        &["aes256gcm16-x25519"],
        "s",
        true,
    );
    let mut b = config(
        "b",
        "routerB",
        "routerA",
        &["aes256gcm16-prfsha384-x25519"],
        &["aes256gcm16-x25519"],
        "s",
        false,
    );
    for c in [&mut a, &mut b] {
        c.ike_lifetime = Duration::from_secs(300);
        c.child_lifetime = Duration::from_secs(60);
        c.dpd = Some(Duration::from_secs(20));
    }
    let mut p = Pair::new(a, b);
    p.start();
    let t0 = p.now;
    while p.now - t0 < Duration::from_secs(3 * 3600) {
        assert!(p.step_timer());
        assert!(p.a.is_established() && p.b.is_established());
        assert!(
            !child_spis(&p.a, p.now).is_empty(),
            "a CHILD SA at all times"
        );
    }
    let child_installs = Pair::children(&p.events_a).len();
    let ike_rekeys = p
        .events_a
        .iter()
        .filter(|e| matches!(e, Event::IkeRekeyed { .. }))
        .count();
    assert!(
        child_installs >= 3 * 60 - 10,
        "{child_installs} CHILD SAs in 3 h with a 60 s lifetime"
    );
    assert!(
        ike_rekeys >= 3 * 12 - 2,
        "{ike_rekeys} IKE rekeys in 3 h with a 300 s lifetime"
    );
    assert_eq!(child_spis(&p.a, p.now).len(), 1);
    assert_children_mirror(&p);
    assert_eq!(p.a.status(p.now).ike_sas.len(), 1);
    assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
    assert!(never_empty(&p.events_a) && never_empty(&p.events_b));
}

#[test]
fn dead_peer_is_detected_by_liveness_checks_and_restarted() {
    let mut a = config(
        "a",
        "routerA",
        "routerB",
        &["aes256gcm16-prfsha384-x25519"],
        &["aes256gcm16"],
        "s",
        true,
    );
    a.dpd = Some(Duration::from_secs(10));
    let b = config(
        "b",
        "routerB",
        "routerA",
        &["aes256gcm16-prfsha384-x25519"],
        &["aes256gcm16"],
        "s",
        false,
    );
    let mut p = Pair::new(a, b);
    p.start();
    let t0 = p.now;
    p.drop_a = (p.sent_a + 1..p.sent_a + 7).collect();
    while closed_with_timeout(&p.events_a).is_none() && p.step_timer() {}
    let detect = p.now - t0;
    assert!(
        detect >= Duration::from_secs(10) && detect <= Duration::from_secs(10 + 50),
        "{detect:?}"
    );
    assert!(p
        .events_a
        .iter()
        .any(|e| matches!(e, Event::ChildDeleted { .. })));
    // The path works again: A re-initiates on its own; its INITIAL_CONTACT makes B
    // drop the stale SAs.
    while !p.a.is_established() && p.step_timer() {}
    assert!(p.a.is_established());
    assert_eq!(child_spis(&p.a, p.now).len(), 1);
    assert_eq!(p.b.status(p.now).ike_sas.len(), 1);
    assert_children_mirror(&p);
}

#[test]
fn restarted_peer_replaces_old_sas_at_once() {
    let mut p = rekey_pair("aes256gcm16", "aes256gcm16");
    let old_children = child_spis(&p.b, p.now);
    p.now += Duration::from_secs(60);
    // A loses all state and comes back (INITIAL_CONTACT in its IKE_AUTH).
    p.a = Session::new(
        config(
            "a",
            "routerA",
            "routerB",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            true,
        ),
        A,
        B,
        Box::new(TestRng(77)),
        p.now,
    );
    p.start();
    assert!(p.a.is_established());
    let sb = p.b.status(p.now);
    assert_eq!(
        sb.ike_sas.len(),
        1,
        "B dropped the stale IKE SA: {:?}",
        sb.ike_sas
    );
    assert_eq!(child_spis(&p.b, p.now).len(), 1);
    assert_ne!(child_spis(&p.b, p.now), old_children);
    assert!(p.events_b.iter().any(|e| matches!(
        e,
        Event::IkeClosed {
            reason: CloseReason::PeerRestarted,
            ..
        }
    )));
    assert_children_mirror(&p);
}

#[test]
fn ike_fragmentation_both_ways() {
    let mut a = config(
        "a",
        "routerA",
        "routerB",
        &["aes256-sha256-modp2048"],
        &["aes256-sha256", "aes128gcm16", "aes256gcm16-esn"],
        "s",
        true,
    );
    let mut b = config(
        "b",
        "routerB",
        "routerA",
        &["aes256-sha256-modp2048"],
        &["aes128-sha512"],
        "s",
        false,
    );
    // Tiny fragments so even PSK messages split; a long ID and many selectors help.
    a.fragment_size = 150;
    b.fragment_size = 150;
    a.local_id = fqdn(&"a".repeat(200));
    b.remote_id = a.local_id.clone();
    a.local_ts = (0..20u8)
        .map(|i| TrafficSelector::from_prefix(IpAddr::V4(Ipv4Addr::new(10, i, 0, 0)), 16))
        .collect();
    b.esp.push(parse("aes256-sha256", Protocol::Esp).unwrap());
    let mut p = Pair::new(a, b);
    p.start();
    assert!(p.a.is_established() && p.b.is_established());
    assert_child_pair(&p);
    let frags_a = p
        .wire_log
        .iter()
        .filter(|(from_a, d)| *from_a && d.data.get(16) == Some(&53))
        .count();
    let frags_b = p
        .wire_log
        .iter()
        .filter(|(from_a, d)| !*from_a && d.data.get(16) == Some(&53))
        .count();
    assert!(
        frags_a >= 3,
        "A sent its IKE_AUTH in {frags_a} SKF fragments"
    );
    assert!(frags_b >= 2, "B answered in {frags_b} fragments");
    assert!(p
        .wire_log
        .iter()
        .all(|(_, d)| d.data.len() <= 150 || d.local.port() == 500));
    p.drop_a = vec![p.sent_a + 2];
    assert!(p.a.rekey_child(p.now));
    p.run();
    // A lost fragment: the whole set is retransmitted and the rekey completes.
    while Pair::children(&p.events_b).len() < 2 && p.step_timer() {}
    assert_children_mirror(&p);
    assert_eq!(child_spis(&p.a, p.now).len(), 1);
}

#[test]
fn half_open_flood_triggers_cookies_and_real_peer_still_gets_in() {
    let ike = ["aes256gcm16-prfsha384-x25519"];
    let mut p = Pair::new(
        config("a", "routerA", "routerB", &ike, &["aes256gcm16"], "s", true),
        config(
            "b",
            "routerB",
            "routerA",
            &ike,
            &["aes256gcm16"],
            "s",
            false,
        ),
    );
    // A flood of IKE_SA_INITs that never continue (spoofed from A's address).
    for seed in 0..10u64 {
        let mut bogus = Session::new(
            config("x", "x", "routerB", &ike, &["aes256gcm16"], "s", true),
            A,
            B,
            Box::new(TestRng(1000 + seed)),
            p.now,
        );
        bogus.handle_timeout(p.now);
        while let Some(d) = bogus.poll_transmit() {
            p.b.handle_datagram(p.now, d);
        }
    }
    let half_open = p.b.status(p.now).ike_sas.len();
    assert_eq!(
        half_open,
        limits::COOKIE_THRESHOLD,
        "state kept only up to the threshold"
    );
    let mut cookies = 0;
    while let Some(d) = p.b.poll_transmit() {
        let m = crate::wire::Message::decode(&d.data).unwrap();
        if matches!(m.payloads.first(), Some(crate::wire::Payload::Notify(n)) if n.ty == NotifyType::COOKIE)
        {
            cookies += 1;
        }
    }
    assert_eq!(cookies, 10 - limits::COOKIE_THRESHOLD);
    // The real initiator echoes the cookie and gets through.
    p.start();
    assert!(p.a.is_established() && p.b.is_established());
    let cookie_echoed = p
        .wire_log
        .iter()
        .filter(|(a, d)| *a && d.local.port() == 500)
        .count();
    assert_eq!(
        cookie_echoed, 2,
        "IKE_SA_INIT, then IKE_SA_INIT with the COOKIE"
    );
    assert_child_pair(&p);
}

#[test]
fn nat_keepalives_only_when_behind_a_nat() {
    let mut p = establish("aes256gcm16-prfsha384-x25519", "aes256gcm16");
    p.now += Duration::from_secs(65);
    p.a.handle_timeout(p.now);
    let sent = p.a.poll_transmit();
    assert!(
        sent.is_none(),
        "no NAT in front of A: no keepalives: {sent:?}"
    );

    // A behind a NAT: B sees A's packets from another address.
    let nat = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9)), 40001);
    let mut a = Session::new(
        config(
            "a",
            "routerA",
            "routerB",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            true,
        ),
        A,
        B,
        Box::new(TestRng(5)),
        p.now,
    );
    let mut b = Session::new(
        config(
            "b",
            "routerB",
            "routerA",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            false,
        ),
        B,
        nat.ip(),
        Box::new(TestRng(6)),
        p.now,
    );
    a.handle_timeout(p.now);
    for _ in 0..10 {
        while let Some(mut d) = a.poll_transmit() {
            d.remote = SocketAddr::new(B, d.remote.port());
            d.local = nat;
            let mut d2 = d.clone();
            std::mem::swap(&mut d2.local, &mut d2.remote);
            b.handle_datagram(
                p.now,
                Datagram {
                    local: d.remote,
                    remote: nat,
                    data: d.data,
                },
            );
        }
        while let Some(d) = b.poll_transmit() {
            a.handle_datagram(
                p.now,
                Datagram {
                    local: SocketAddr::new(A, d.remote.port().max(500)),
                    remote: d.local,
                    data: d.data,
                },
            );
        }
    }
    assert!(a.is_established(), "established through the NAT");
    let t = a.poll_timeout().unwrap();
    assert!(t <= p.now + limits::NATT_KEEPALIVE);
    a.handle_timeout(p.now + limits::NATT_KEEPALIVE);
    let ka = std::iter::from_fn(|| a.poll_transmit()).find(|d| d.data == [0xff]);
    let ka = ka.expect("keepalive sent");
    assert_eq!(ka.remote.port(), limits::NATT_PORT);
}

/// What each side starts at the same moment in the collision matrix.
#[derive(Clone, Copy, Debug)]
enum Act {
    RekeyChild,
    RekeyIke,
    Liveness,
    /// Tear the whole IKE SA down (a DELETE crossing the other side's rekey).
    Close,
}

fn start_act(s: &mut Session, now: Instant, act: Act) {
    match act {
        Act::RekeyChild => assert!(s.rekey_child(now)),
        Act::RekeyIke => assert!(s.rekey_ike(now)),
        Act::Liveness => assert!(s.send_liveness(now)),
        Act::Close => s.close(now),
    }
}

/// Delivers queued datagrams one at a time, choosing the sender by the bits of
/// `pattern` whenever both have something in flight: every interleaving of two
/// concurrent exchanges is reachable this way (§2.8.1/§2.8.2 and strongSwan's
/// collision tests enumerate the same orderings).
fn run_interleaved(p: &mut Pair, mut pattern: u32) {
    let mut qa: std::collections::VecDeque<Datagram> = Default::default();
    let mut qb: std::collections::VecDeque<Datagram> = Default::default();
    for _ in 0..200 {
        qa.extend(std::iter::from_fn(|| p.a.poll_transmit()));
        qb.extend(std::iter::from_fn(|| p.b.poll_transmit()));
        p.events_a.extend(std::iter::from_fn(|| p.a.poll_event()));
        p.events_b.extend(std::iter::from_fn(|| p.b.poll_event()));
        let from_a = match (qa.is_empty(), qb.is_empty()) {
            (true, true) => return,
            (false, true) => true,
            (true, false) => false,
            (false, false) => {
                let bit = pattern & 1 == 1;
                pattern >>= 1;
                bit
            }
        };
        if from_a {
            let d = qa.pop_front().expect("non-empty");
            p.b.handle_datagram(p.now, mirrored(d));
        } else {
            let d = qb.pop_front().expect("non-empty");
            p.a.handle_datagram(p.now, mirrored(d));
        }
    }
    panic!("exchange did not settle");
}

/// Starting from `n` CHILD SAs, the count never drops to zero.
fn stays_up(events: &[Event], mut n: i32) -> bool {
    for e in events {
        match e {
            Event::ChildInstalled(_) => n += 1,
            Event::ChildDeleted { .. } => {
                n -= 1;
                if n < 1 {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

#[test]
fn collision_matrix_every_interleaving() {
    use Act::*;
    let pairs = [
        (RekeyChild, RekeyChild),
        (RekeyIke, RekeyIke),
        (RekeyChild, RekeyIke),
        (RekeyIke, RekeyChild),
        (RekeyChild, Liveness),
        (RekeyIke, Liveness),
        (RekeyChild, Close),
        (RekeyIke, Close),
        (Close, RekeyChild),
        (Close, RekeyIke),
        (Liveness, RekeyChild),
        (Liveness, RekeyIke),
    ];
    let mut cases = 0;
    for (act_a, act_b) in pairs {
        for pfs in ["aes256gcm16", "aes256gcm16-x25519"] {
            for seed in 0..3u64 {
                for pattern in 0..64u32 {
                    let mut p = Pair::new(
                        config(
                            "a",
                            "routerA",
                            "routerB",
                            &["aes256gcm16-prfsha384-x25519"],
                            &[pfs],
                            "s",
                            true,
                        ),
                        config(
                            "b",
                            "routerB",
                            "routerA",
                            &["aes256gcm16-prfsha384-x25519"],
                            &[pfs],
                            "s",
                            false,
                        ),
                    );
                    // Different seeds: different nonces, so either side may win.
                    p.a = Session::new(
                        config(
                            "a",
                            "routerA",
                            "routerB",
                            &["aes256gcm16-prfsha384-x25519"],
                            &[pfs],
                            "s",
                            true,
                        ),
                        A,
                        B,
                        Box::new(TestRng(100 + seed)),
                        p.now,
                    );
                    p.start();
                    assert!(p.a.is_established() && p.b.is_established());
                    p.events_a.clear();
                    p.events_b.clear();
                    start_act(&mut p.a, p.now, act_a);
                    start_act(&mut p.b, p.now, act_b);
                    run_interleaved(&mut p, pattern);
                    // Let retransmissions and queued follow-ups (deletes) finish.
                    for _ in 0..3 {
                        p.run();
                    }
                    let what =
                        format!("{act_a:?}/{act_b:?} {pfs} seed {seed} pattern {pattern:06b}");
                    let (sa, sb) = (p.a.status(p.now), p.b.status(p.now));
                    if matches!(act_a, Close) || matches!(act_b, Close) {
                        assert!(
                            !p.a.is_established() && !p.b.is_established(),
                            "{what}: closed"
                        );
                        assert!(sa.children.is_empty() && sb.children.is_empty(), "{what}");
                    } else {
                        assert_eq!(sa.ike_sas.len(), 1, "{what}: A IKE SAs {:?}", sa.ike_sas);
                        assert_eq!(sb.ike_sas.len(), 1, "{what}: B IKE SAs {:?}", sb.ike_sas);
                        assert_eq!(
                            (sa.ike_sas[0].spi_i, sa.ike_sas[0].spi_r),
                            (sb.ike_sas[0].spi_i, sb.ike_sas[0].spi_r),
                            "{what}"
                        );
                        assert_eq!(
                            sa.children.len(),
                            1,
                            "{what}: A CHILD SAs {:?}",
                            sa.children
                        );
                        let (ca, cb) = (child_spis(&p.a, p.now), child_spis(&p.b, p.now));
                        assert_eq!(
                            ca.iter().map(|(i, o)| (*o, *i)).collect::<Vec<_>>(),
                            cb,
                            "{what}: CHILD SAs mirror"
                        );
                        assert!(
                            stays_up(&p.events_a, 1) && stays_up(&p.events_b, 1),
                            "{what}: the tunnel never went without a CHILD SA"
                        );
                        // The surviving SAs still work.
                        assert!(p.a.rekey_child(p.now), "{what}");
                        p.run();
                        assert_children_mirror(&p);
                        assert!(p.b.send_liveness(p.now));
                        assert_eq!(p.run(), 2, "{what}: liveness answered");
                    }
                    assert!(
                        no_failures(&p.events_a) && no_failures(&p.events_b),
                        "{what}: no failures"
                    );
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, pairs.len() * 2 * 3 * 64);
}

#[test]
fn dpd_action_clear_stays_down_until_told() {
    let mut a = config(
        "a",
        "routerA",
        "routerB",
        &["aes256gcm16-prfsha384-x25519"],
        &["aes256gcm16"],
        "s",
        true,
    );
    a.dpd = Some(Duration::from_secs(10));
    a.dpd_restart = false;
    let b = config(
        "b",
        "routerB",
        "routerA",
        &["aes256gcm16-prfsha384-x25519"],
        &["aes256gcm16"],
        "s",
        false,
    );
    let mut p = Pair::new(a, b);
    p.start();
    p.drop_a = (p.sent_a + 1..p.sent_a + 7).collect();
    while closed_with_timeout(&p.events_a).is_none() && p.step_timer() {}
    assert!(closed_with_timeout(&p.events_a).is_some());
    let sent = p.sent_a;
    // Hours pass: nothing is sent, the tunnel stays down.
    for _ in 0..20 {
        p.now += Duration::from_secs(600);
        p.a.handle_timeout(p.now);
        p.run();
    }
    assert_eq!(p.sent_a, sent, "no re-initiation with dpd_action = clear");
    assert!(!p.a.is_established());
    // An explicit `up` brings it back.
    p.a.initiate(p.now);
    p.run();
    assert!(p.a.is_established());
}
