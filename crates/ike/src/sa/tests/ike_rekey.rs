//! IKE SA rekeys and their collisions (§2.8.2), with the full collision matrix.

use super::*;

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
                        // A collision is no error to show the operator (§2.25).
                        assert_eq!(
                            (&sa.last_error, &sb.last_error),
                            (&None, &None),
                            "{what}: last_error"
                        );
                        // A collision's redundant SA going is no loss to refill.
                        assert!(
                            p.a.refill.at.is_none() && p.b.refill.at.is_none(),
                            "{what}: refill armed"
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

/// §2.8.2 with a lost response (seen against strongSwan on a lossy link): both ends
/// rekey the IKE SA, A's request is lost, A answers B's request but that response is
/// lost too, then A's retransmitted request completes and A, the winner, deletes the old
/// SA. B never learns of the SA its own request created there, so B cannot delete it;
/// A must not keep it for ever (it would rekey it later, against a peer that has no
/// such SA): A deletes it itself once the peer had time to.
#[test]
fn collision_loser_the_peer_never_learned_of_is_deleted_by_us() {
    let mut orphans = 0;
    for seed in 0..12u64 {
        let cfg_a = || {
            config(
                "a",
                "routerA",
                "routerB",
                &["aes256gcm16-prfsha384-x25519"],
                &["aes256gcm16"],
                "s",
                true,
            )
        };
        // B retransmits later than A (strongSwan's first timeout is 4 s by default).
        let mut cfg_b = config(
            "b",
            "routerB",
            "routerA",
            &["aes256gcm16-prfsha384-x25519"],
            &["aes256gcm16"],
            "s",
            false,
        );
        cfg_b.retransmit_timeout = Duration::from_secs(3);
        let mut p = Pair::new(cfg_a(), cfg_b);
        // Different seeds: different nonces, so either side may win.
        p.a = Session::new(cfg_a(), A, B, Box::new(TestRng(300 + seed)), p.now);
        p.start();
        assert!(p.a.is_established() && p.b.is_established());
        let t0 = p.now;
        assert!(p.a.rekey_ike(p.now));
        assert!(p.b.rekey_ike(p.now));
        // A's request is lost; B's reaches A; A's response is lost.
        while p.a.poll_transmit().is_some() {}
        while let Some(d) = p.b.poll_transmit() {
            p.a.handle_datagram(p.now, mirrored(d));
        }
        while p.a.poll_transmit().is_some() {}
        // From here on nothing is lost: retransmissions settle it.
        let settle = |p: &mut Pair, until: Instant| loop {
            let next = [p.a.poll_timeout(), p.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            if next.is_none_or(|t| t > until) || !p.step_timer() {
                break;
            }
        };
        settle(&mut p, t0 + Duration::from_secs(10));
        if p.a.status(p.now).ike_sas.len() > 1 {
            orphans += 1;
        }
        settle(&mut p, t0 + Duration::from_secs(120));
        let (sa, sb) = (p.a.status(p.now), p.b.status(p.now));
        let what = format!("seed {seed}: A {:?}\nB {:?}", sa.ike_sas, sb.ike_sas);
        assert_eq!(sa.ike_sas.len(), 1, "{what}");
        assert_eq!(sb.ike_sas.len(), 1, "{what}");
        assert_eq!(
            (sa.ike_sas[0].spi_i, sa.ike_sas[0].spi_r),
            (sb.ike_sas[0].spi_i, sb.ike_sas[0].spi_r),
            "{what}"
        );
        assert!(p.a.is_established() && p.b.is_established(), "{what}");
        assert_eq!(child_spis(&p.a, p.now).len(), 1, "{what}");
        assert_children_mirror(&p);
    }
    assert!(
        orphans > 0,
        "the lossy collision left an orphan at least once"
    );
}

/// Runs timers (retransmissions) until neither end has a request outstanding.
fn step_until_answered(p: &mut Pair) {
    let pending = |p: &Pair| p.a.sas.iter().chain(&p.b.sas).any(|s| s.pending.is_some());
    for _ in 0..5 {
        if !pending(p) {
            return;
        }
        assert!(p.step_timer());
    }
    assert!(!pending(p), "answered");
}

/// §2.25, seen against strongSwan under loss: A's rekey request of a CHILD SA is lost,
/// B rekeys the same SA meanwhile and deletes it, and A's retransmitted request meets
/// CHILD_SA_NOT_FOUND. B's new SA carries the tunnel: no error for the operator, and
/// nothing left to remove or create.
#[test]
fn a_rekey_overtaken_by_the_peer_s_finished_rekey_is_no_error() {
    let mut p = establish("aes256gcm16-prfsha384-x25519", "aes256gcm16");
    p.drop_a = vec![p.sent_a + 1];
    assert!(p.a.rekey_child(p.now));
    p.run();
    assert!(p.b.rekey_child(p.now));
    p.run();
    assert_eq!(child_spis(&p.a, p.now).len(), 1, "B's rekey is done");
    let after_b = child_spis(&p.a, p.now);
    // A's retransmission meets an SA B no longer has.
    step_until_answered(&mut p);
    let st = p.a.status(p.now);
    assert_eq!(st.last_error, None);
    assert_eq!(child_spis(&p.a, p.now), after_b, "B's new SA stays");
    assert_children_mirror(&p);
    assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
    assert!(p.a.refill.at.is_none());
}

/// §2.25: A's rekey request of a CHILD SA is lost, B rekeys the same SA and deletes the
/// old one, A's answer to that DELETE is lost too, and A's retransmitted request finds
/// the SA still being deleted at B: TEMPORARY_FAILURE. Routine, like strongSwan's when
/// it rekeys the same SA: no warning, no `last_error`, and the tunnel keeps B's new SA.
#[test]
fn a_rekey_the_peer_answers_temporary_failure_is_no_error() {
    let mut p = establish("aes256gcm16-prfsha384-x25519", "aes256gcm16");
    // A's 1st datagram is its rekey request, its 3rd the answer to B's DELETE.
    p.drop_a = vec![p.sent_a + 1, p.sent_a + 3];
    assert!(p.a.rekey_child(p.now));
    p.run();
    assert!(p.b.rekey_child(p.now));
    p.run();
    let after_b = child_spis(&p.a, p.now);
    assert_eq!(after_b.len(), 1, "B's rekey is done at A");
    step_until_answered(&mut p);
    let refused = p.wire_log.iter().any(|(from_a, d)| {
        !from_a && notifies_of(&p.a, d).is_some_and(|n| n.contains(&NotifyType::TEMPORARY_FAILURE))
    });
    assert!(refused, "B answered TEMPORARY_FAILURE");
    assert_eq!(p.a.status(p.now).last_error, None);
    assert_eq!(child_spis(&p.a, p.now), after_b);
    assert_children_mirror(&p);
    assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
}

/// §2.8.1, seen against strongSwan: both ends rekey the same CHILD SA at once and A's
/// new SA wins, so B deletes the SA its own request created at A. B's DELETE never
/// arrives (strongSwan's went with an IKE SA being rekeyed). That SA is B's to delete:
/// when its rekey falls due, A deletes it. A used to rekey it, and B, which no longer
/// had it, answered CHILD_SA_NOT_FOUND: an error shown to the operator.
#[test]
fn a_collision_loser_whose_delete_is_lost_is_deleted_not_rekeyed() {
    let cfg = |a: bool| {
        let (name, local, remote) = if a {
            ("a", "routerA", "routerB")
        } else {
            ("b", "routerB", "routerA")
        };
        let ike = ["aes256gcm16-prfsha384-x25519"];
        config(name, local, remote, &ike, &["aes256gcm16"], "s", a)
    };
    let mut won = 0;
    for seed in 0..12u64 {
        let mut p = Pair::new(cfg(true), cfg(false));
        // Different seeds: different nonces, so either side may win.
        p.a = Session::new(cfg(true), A, B, Box::new(TestRng(500 + seed)), p.now);
        p.start();
        let old = p.a.children[0].spi_in;
        assert!(p.a.rekey_child(p.now) && p.b.rekey_child(p.now));
        // The requests cross: each end answers the other's before its own is answered.
        let to_b: Vec<_> = std::iter::from_fn(|| p.a.poll_transmit()).collect();
        let to_a: Vec<_> = std::iter::from_fn(|| p.b.poll_transmit()).collect();
        to_b.into_iter()
            .for_each(|d| p.b.handle_datagram(p.now, mirrored(d)));
        to_a.into_iter()
            .for_each(|d| p.a.handle_datagram(p.now, mirrored(d)));
        // The SA B's request created at A.
        let bs = p.a.children.last().expect("B's new SA").spi_in;
        // From here B's requests are lost (its DELETEs), its answers arrive, and only
        // A's clock runs, so B never retransmits.
        p.lose_b_requests = true;
        p.run();
        // A won when it deleted the old SA itself; otherwise B's SA won (not this case).
        if p.a.children.iter().any(|c| c.spi_in == old) {
            continue;
        }
        won += 1;
        let what = format!("seed {seed}");
        let ours: Vec<u32> =
            p.a.children
                .iter()
                .map(|c| c.spi_in)
                .filter(|&s| s != bs)
                .collect();
        assert_eq!(ours.len(), 1, "{what}: A's winning SA");
        assert!(
            p.a.children.iter().any(|c| c.spi_in == bs),
            "{what}: B's DELETE was lost"
        );
        // B's SA falls due first.
        for c in p.a.children.iter_mut() {
            if c.spi_in != bs {
                c.rekey_at = Some(p.now + Duration::from_secs(24 * 3600));
            }
        }
        let due =
            p.a.children
                .iter()
                .find(|c| c.spi_in == bs)
                .and_then(|c| c.rekey_at);
        p.now = due.expect("B's SA has a rekey time");
        p.a.handle_timeout(p.now);
        p.run();
        let st = p.a.status(p.now);
        assert_eq!(st.last_error, None, "{what}");
        let left: Vec<u32> = p.a.children.iter().map(|c| c.spi_in).collect();
        assert_eq!(
            left, ours,
            "{what}: B's SA deleted, nothing rekeyed or created"
        );
        assert!(no_failures(&p.events_a), "{what}");
    }
    assert!(won > 0, "A's SA won in some seeds");
}

/// §2.8, seen against strongSwan under IKE blackouts: B rekeys a CHILD SA, A answers,
/// the answer is lost, and A's rekey of the new SA falls due before B retransmits. B
/// does not have that SA yet and answers CHILD_SA_NOT_FOUND. A keeps the SA (B's
/// retransmission brings our answer again) and tries its rekey later; it used to remove
/// the SA and report the refusal as the tunnel's `last_error`.
#[test]
fn a_rekey_of_an_sa_whose_creating_answer_was_lost_is_tried_again() {
    let mut p = rekey_pair("aes256gcm16", "aes256gcm16");
    let old = p.a.children[0].spi_in;
    // B rekeys; A's answer is lost.
    p.drop_a = vec![p.sent_a + 1];
    assert!(p.b.rekey_child(p.now));
    p.run();
    let new = p.a.children.last().expect("B's new SA at A").spi_in;
    assert_ne!(new, old);
    assert!(
        p.a.children.iter().any(|c| c.spi_in == old),
        "B never deleted the old SA"
    );
    // A's rekey of the new SA falls due before B retransmits.
    for c in p.a.children.iter_mut() {
        c.rekey_at = Some(p.now + Duration::from_secs(24 * 3600));
    }
    p.a.children
        .iter_mut()
        .find(|c| c.spi_in == new)
        .unwrap()
        .rekey_at = Some(p.now);
    p.a.handle_timeout(p.now);
    p.run();
    assert_eq!(p.a.status(p.now).last_error, None);
    assert!(
        p.a.children.iter().any(|c| c.spi_in == new),
        "A keeps the SA B's retransmission completes"
    );
    // B retransmits and gets the answer; A's rekey is tried again later and works.
    for _ in 0..20 {
        if !p.step_timer() {
            break;
        }
    }
    assert_eq!(p.a.status(p.now).last_error, None);
    assert_eq!(p.b.status(p.now).last_error, None);
    assert_children_mirror(&p);
    assert_eq!(child_spis(&p.a, p.now).len(), 1, "one CHILD SA pair");
    assert!(no_failures(&p.events_a) && no_failures(&p.events_b));
}
