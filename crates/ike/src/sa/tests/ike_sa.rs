//! Message transport: retransmission, cached responses, garbage, fragmentation.

use super::*;

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

/// §2.1: only the same bytes are a retransmission. A datagram that merely carries the
/// last request's SPIs and message ID (spoofable by anyone on the path, no key needed)
/// gets nothing: the cached response is not a free reflector.
#[test]
fn same_message_id_with_other_bytes_is_not_answered_from_the_cache() {
    let mut p = establish("aes256gcm16-prfsha384-x25519", "aes256gcm16");
    let auth_req = p
        .wire_log
        .iter()
        .find(|(a, d)| *a && d.local.port() == 4500)
        .unwrap()
        .1
        .clone();
    // Same header, one flipped octet at the end (the ICV): not the request.
    let mut forged = auth_req.clone();
    *forged.data.last_mut().unwrap() ^= 0x01;
    p.b.handle_datagram(p.now, forged);
    assert!(
        p.b.poll_transmit().is_none(),
        "forged retransmission answered"
    );
    // Just the header with the same message ID and no body.
    let mut header_only = auth_req.clone();
    header_only.data.truncate(28);
    p.b.handle_datagram(p.now, header_only);
    assert!(
        p.b.poll_transmit().is_none(),
        "header-only retransmission answered"
    );
    // The genuine retransmission still is.
    p.b.handle_datagram(p.now, auth_req);
    assert!(p.b.poll_transmit().is_some());
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
