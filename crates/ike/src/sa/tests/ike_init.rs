//! IKE_SA_INIT: proposals, INVALID_KE_PAYLOAD, cookies, NAT detection.

use super::*;

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
    // Carries A's datagrams through the NAT to B and B's answers back, until quiet.
    let pump = |a: &mut Session, b: &mut Session, now: Instant| {
        for _ in 0..10 {
            while let Some(d) = a.poll_transmit() {
                if d.data == [0xff] {
                    continue;
                }
                b.handle_datagram(
                    now,
                    Datagram {
                        local: SocketAddr::new(B, d.remote.port()),
                        remote: nat,
                        data: d.data,
                    },
                );
            }
            while let Some(d) = b.poll_transmit() {
                a.handle_datagram(
                    now,
                    Datagram {
                        local: SocketAddr::new(A, d.remote.port().max(500)),
                        remote: d.local,
                        data: d.data,
                    },
                );
            }
        }
    };
    pump(&mut a, &mut b, p.now);
    assert!(a.is_established(), "established through the NAT");
    let t = a.poll_timeout().unwrap();
    assert!(t <= p.now + limits::NATT_KEEPALIVE);
    a.handle_timeout(p.now + limits::NATT_KEEPALIVE);
    let ka = std::iter::from_fn(|| a.poll_transmit()).find(|d| d.data == [0xff]);
    let ka = ka.expect("keepalive sent");
    assert_eq!(ka.remote.port(), limits::NATT_PORT);

    // RFC 3948 §4: the NAT is still there after the IKE SA is rekeyed (by either end), so
    // the successor SA must keep the mapping open too.
    for rekeying_a in [true, false] {
        let now = p.now + limits::NATT_KEEPALIVE;
        let before = a.status(now).ike_sas.iter().map(|s| s.rekeys).max();
        if rekeying_a {
            assert!(a.rekey_ike(now));
        } else {
            assert!(b.rekey_ike(now));
            // B's request has to reach A through the NAT mapping: deliver B first.
            while let Some(d) = b.poll_transmit() {
                a.handle_datagram(
                    now,
                    Datagram {
                        local: SocketAddr::new(A, d.remote.port().max(500)),
                        remote: d.local,
                        data: d.data,
                    },
                );
            }
        }
        pump(&mut a, &mut b, now);
        let after = a.status(now).ike_sas.iter().map(|s| s.rekeys).max();
        assert!(
            after > before,
            "IKE SA rekeyed ({rekeying_a}): {before:?} -> {after:?}"
        );
        let later = now + limits::NATT_KEEPALIVE * 2;
        a.handle_timeout(later);
        let ka = std::iter::from_fn(|| a.poll_transmit()).find(|d| d.data == [0xff]);
        assert!(
            ka.is_some(),
            "keepalive after the IKE SA was rekeyed (rekeyed by A: {rekeying_a})"
        );
        p.now = later;
    }
}
