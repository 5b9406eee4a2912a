//! IKE_AUTH: suites, authentication and identity errors, the first CHILD SA, duplicates.

use super::*;

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

/// §2.9 narrowing can multiply selectors (each of the peer's with each of ours); a
/// result that a TS payload cannot carry (more than 255) is refused with
/// TS_UNACCEPTABLE instead of being encoded wrong.
#[test]
fn narrowing_past_255_selectors_is_refused() {
    let mut a = config(
        "a",
        "routerA",
        "routerB",
        &["aes256gcm16-prfsha384-x25519"],
        &["aes256gcm16"],
        "s",
        true,
    );
    a.local_ts = (0..200u8)
        .map(|i| TrafficSelector::from_prefix(std::net::Ipv4Addr::new(10, 0, 0, i).into(), 32))
        .collect();
    let mut b = config(
        "b",
        "routerB",
        "routerA",
        &["aes256gcm16-prfsha384-x25519"],
        &["aes256gcm16"],
        "s",
        false,
    );
    // Two selectors that each narrow every one of A's 200 to a different result.
    let udp_only = match TrafficSelector::from_prefix("10.0.0.0".parse().unwrap(), 8) {
        TrafficSelector::Range {
            ts_type,
            start_port,
            end_port,
            start,
            end,
            ..
        } => TrafficSelector::Range {
            ts_type,
            ip_protocol: 17,
            start_port,
            end_port,
            start,
            end,
        },
        other => other,
    };
    b.remote_ts = vec![TrafficSelector::any_v4(), udp_only];
    let mut p = Pair::new(a, b);
    p.start();
    assert!(
        p.events_a.iter().any(|e| matches!(
            e,
            Event::ChildFailed {
                reason: CloseReason::Failed(NotifyType::TS_UNACCEPTABLE, _)
            }
        )),
        "{:?}",
        p.events_a
    );
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
