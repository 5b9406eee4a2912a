//! CREATE_CHILD_SA for CHILD SAs: rekeys, errors, collisions (§2.8.1).

use super::*;

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
