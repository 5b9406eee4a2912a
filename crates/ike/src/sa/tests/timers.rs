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
