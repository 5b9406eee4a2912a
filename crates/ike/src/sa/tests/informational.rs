//! INFORMATIONAL: delete, liveness checks and dead peer handling.

use super::*;

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
