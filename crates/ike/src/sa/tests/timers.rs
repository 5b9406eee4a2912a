//! Scheduled rekeys and liveness checks over hours of virtual time.

use super::*;

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

/// Found by the `ike_session` fuzz target: after the peer rekeyed the IKE SA, the old SA
/// stays established until the peer's Delete arrives; its rekey deadline may only fire
/// for the current SA, yet `poll_timeout` reported it, so once it passed the deadline
/// stayed in the past for ever and a daemon waiting on it would spin.
#[test]
fn no_deadline_in_the_past_after_handle_timeout_with_a_lingering_old_ike_sa() {
    let mut p = rekey_pair("aes256gcm16", "aes256gcm16");
    // A: 1 IKE_SA_INIT, 2 IKE_AUTH, 3 CREATE_CHILD_SA (rekey), 4 the Delete of the old
    // IKE SA, which is lost.
    p.drop_a = vec![4];
    assert!(p.a.rekey_ike(p.now));
    p.run();
    assert_eq!(
        p.b.status(p.now).ike_sas.len(),
        2,
        "B still holds the old SA"
    );
    // Both SAs' lifetimes (4 h less jitter) pass before the Delete is retransmitted.
    p.now += Duration::from_secs(5 * 3600);
    p.b.handle_timeout(p.now);
    if let Some(t) = p.b.poll_timeout() {
        assert!(t > p.now, "deadline {:?} in the past", p.now - t);
    }
}
