//! RFC 9611 per-resource CHILD SAs between real daemons (issue 13, "every core for one
//! tunnel"): two routevpn daemons with two dataplane workers each negotiate one CHILD SA
//! per worker with identical traffic selectors, each SA's inbound SPI in its worker's
//! lane, and flows spread over the SAs; strongSwan 5.9, which does not know
//! SA_RESOURCE_INFO, gets exactly one CHILD SA and carries everything over it. Rekeys
//! under traffic, with per-resource SAs and with one CHILD SA, lose no datagram. A
//! responder with more workers than the initiator creates the SAs it lacks itself.

use std::time::Duration;
use testbed::{wait_until, Routevpn, RvConfig, RvTunnel, Strongswan, SwanConn, Topology};

const T: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);
const IKE: &str = "aes128gcm16-prfsha256-x25519";
const ESP: &str = "aes128gcm16";
/// One-way UDP flows: with two queues, all landing on one has probability 2^-31.
const FLOWS: usize = 32;
const PER_FLOW: usize = 10;

fn tunnel(left: bool, start: bool) -> RvTunnel {
    let (local, remote, lid, rid, addr, net) = if left {
        (
            Topology::LEFT_WAN,
            Topology::RIGHT_WAN,
            "routerA",
            "routerB",
            "169.254.12.1/30",
            Topology::RIGHT_NET,
        )
    } else {
        (
            Topology::RIGHT_WAN,
            Topology::LEFT_WAN,
            "routerB",
            "routerA",
            "169.254.12.2/30",
            Topology::LEFT_NET,
        )
    };
    RvTunnel {
        local: local.into(),
        remote: remote.into(),
        local_id: lid.into(),
        remote_id: rid.into(),
        psk: "per-resource".into(),
        ike: vec![IKE.into()],
        esp: vec![ESP.into()],
        start,
        address: vec![addr.into()],
        routes: vec![net.into()],
        ..RvTunnel::default()
    }
}

fn per_resource(t: RvTunnel) -> RvConfig {
    RvConfig {
        tunnels: vec![t],
        extra_top: vec![
            "dataplane_threads = 2".into(),
            "per_resource_sas = true".into(),
        ],
        ..RvConfig::default()
    }
}

/// The tunnel's CHILD SAs once there are `n` of them.
fn wait_children(rv: &Routevpn, n: usize) -> Vec<serde_json::Value> {
    wait_until(T, POLL, || {
        let st = rv.status()?;
        let c = st["tunnels"][0]["child_sas"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (c.len() == n)
            .then_some(c.clone())
            .ok_or(format!("{} CHILD SAs: {st}", c.len()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&rv.log(), 40)))
}

fn num(c: &serde_json::Value, key: &str) -> u64 {
    c[key].as_u64().unwrap_or_else(|| panic!("no {key} in {c}"))
}

fn spi(c: &serde_json::Value, key: &str) -> u32 {
    u32::from_str_radix(c[key].as_str().expect("SPI string"), 16).expect("hex SPI")
}

/// `flows` one-way UDP flows of [`PER_FLOW`] datagrams, left host to right host;
/// returns how many datagrams arrived.
fn flows_left_to_right(topo: &Topology, flows: usize) -> usize {
    testbed::udp_flows(
        &topo.left_host,
        &topo.right_host,
        Topology::RIGHT_HOST,
        flows,
        PER_FLOW,
    )
    .unwrap()
}

fn tx_queues(ns: &testbed::Netns, dev: &str) -> usize {
    ns.must(&["ls", &format!("/sys/class/net/{dev}/queues")])
        .split_whitespace()
        .filter(|q| q.starts_with("tx-"))
        .count()
}

#[test]
fn routevpn_pair_negotiates_a_child_sa_per_worker() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::two_sites();
    let b = Routevpn::start(&topo.right, &per_resource(tunnel(false, false))).unwrap();
    let a = Routevpn::start(&topo.left, &per_resource(tunnel(true, true))).unwrap();
    let (ca, cb) = (wait_children(&a, 2), wait_children(&b, 2));
    for (side, children) in [("A", &ca), ("B", &cb)] {
        let mut res: Vec<u64> = children.iter().map(|c| num(c, "resource")).collect();
        res.sort_unstable();
        assert_eq!(res, [0, 1], "{side}: a fallback and one per-resource SA");
        for c in children.iter() {
            assert_eq!(
                c["local_ts"], children[0]["local_ts"],
                "{side}: same selectors"
            );
            assert_eq!(c["remote_ts"], children[0]["remote_ts"]);
            // The tunnel's home is worker 0: resource r's ESP is steered to worker r.
            assert_eq!(
                u64::from(spi(c, "spi_in") % 2),
                num(c, "resource"),
                "{side}: inbound SPI in its resource's lane: {c}"
            );
        }
    }
    // Each SA of A pairs with one of B (its SPIs mirrored).
    for c in &ca {
        assert!(
            cb.iter()
                .any(|d| spi(d, "spi_in") == spi(c, "spi_out")
                    && spi(d, "spi_out") == spi(c, "spi_in")),
            "A's {c} has no partner in B: {cb:?}"
        );
    }
    assert_eq!(tx_queues(&topo.left, "vti0"), 2, "a TUN queue per SA");

    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    let got = flows_left_to_right(&topo, FLOWS);
    assert_eq!(got, FLOWS * PER_FLOW, "every datagram arrived");
    let ca = wait_children(&a, 2);
    let sent: Vec<u64> = ca.iter().map(|c| num(c, "packets_out")).collect();
    testbed::report(&format!("per-resource SAs: A sent {sent:?} packets"));
    assert!(
        sent.iter().all(|&p| p > 0),
        "flows spread over both CHILD SAs: {ca:?}"
    );
    let sock = a.socket().display().to_string();
    let text = a.cli(&["status", "--socket", &sock]).unwrap();
    assert!(
        text.contains(", fallback") && text.contains(", resource 1"),
        "{text}"
    );
}

#[test]
fn a_responder_with_more_workers_tops_up_its_per_resource_sas() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::two_sites();
    // B answers with two workers; A initiates with one, so A creates no extra.
    let b = Routevpn::start(&topo.right, &per_resource(tunnel(false, false))).unwrap();
    let mut a_cfg = per_resource(tunnel(true, true));
    a_cfg.extra_top = vec![
        "dataplane_threads = 1".into(),
        "per_resource_sas = true".into(),
    ];
    let a = Routevpn::start(&topo.left, &a_cfg).unwrap();
    // B's top-up, 2 s after A went quiet (RFC 9611 §3: either end may create them).
    let (ca, cb) = (wait_children(&a, 2), wait_children(&b, 2));
    for (side, children) in [("A", &ca), ("B", &cb)] {
        let mut res: Vec<u64> = children.iter().map(|c| num(c, "resource")).collect();
        res.sort_unstable();
        assert_eq!(res, [0, 1], "{side}");
    }
    assert!(
        b.log()
            .contains("creating the CHILD SAs this tunnel lacks tunnel=vti0 resources=[1]"),
        "{}",
        testbed::tail(&b.log(), 30)
    );
    assert_eq!(tx_queues(&topo.right, "vti0"), 2, "B: a TUN queue per SA");
    assert_eq!(tx_queues(&topo.left, "vti0"), 1, "A: one worker, one queue");

    topo.right_host.wait_ping(Topology::LEFT_HOST, T).unwrap();
    let got = testbed::udp_flows(
        &topo.right_host,
        &topo.left_host,
        Topology::LEFT_HOST,
        FLOWS,
        PER_FLOW,
    )
    .unwrap();
    assert_eq!(got, FLOWS * PER_FLOW, "every datagram arrived");
    let cb = wait_children(&b, 2);
    let sent: Vec<u64> = cb.iter().map(|c| num(c, "packets_out")).collect();
    testbed::report(&format!("top-up: B sent {sent:?} packets"));
    assert!(sent.iter().all(|&p| p > 0), "B sends on both: {cb:?}");
    // A has no queue for resource 1: it receives on it and sends on the fallback only.
    let ca = wait_children(&a, 2);
    let extra = ca.iter().find(|c| num(c, "resource") == 1).unwrap();
    assert!(num(extra, "packets_in") > 0, "{extra}");
    assert_eq!(num(extra, "packets_out"), 0, "{extra}");
}

#[test]
fn strongswan_gets_one_child_sa_and_all_the_traffic() {
    if !testbed::require_strongswan() {
        return;
    }
    for routevpn_initiates in [true, false] {
        let topo = Topology::two_sites();
        let sw = Strongswan::start(&topo.right, &[SwanConn::router_b("per-resource", IKE, ESP)])
            .unwrap();
        // As initiator routevpn sends SA_RESOURCE_INFO in IKE_AUTH and strongSwan 5.9
        // ignores it; as responder it gets none and answers none.
        let rv =
            Routevpn::start(&topo.left, &per_resource(tunnel(true, routevpn_initiates))).unwrap();
        if !routevpn_initiates {
            sw.initiate("net").unwrap();
        }
        sw.wait_established("tun", T).unwrap();
        testbed::wait_tunnel_up(&rv, T);
        topo.left_host
            .wait_ping(Topology::RIGHT_HOST, T)
            .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&rv.log(), 40)));
        let got = flows_left_to_right(&topo, FLOWS);
        assert_eq!(got, FLOWS * PER_FLOW, "every datagram arrived");
        let c = wait_children(&rv, 1);
        assert_eq!(num(&c[0], "resource"), 0);
        assert!(
            num(&c[0], "packets_out") >= (FLOWS * PER_FLOW) as u64,
            "{c:?}"
        );
        assert_eq!(
            tx_queues(&topo.left, "vti0"),
            1,
            "no second queue without a second SA"
        );
        let sa = sw.wait_established("tun", T).unwrap();
        assert_eq!(sa.installed().count(), 1, "strongSwan has one CHILD SA");
    }
}

/// Both ends rekey every CHILD SA on their own short timers (collisions included) and
/// the IKE SA too, while flows run: each rekeyed SA keeps its resource and lane, no
/// datagram is lost, and the pair ends with one fallback and one per-resource SA each.
#[test]
fn per_resource_sas_rekey_under_traffic() {
    rekey_under_traffic(true);
}

/// The same with one CHILD SA per tunnel. No datagram may be lost at a rekey: the
/// initiator installs the new SA before its DELETE of the old one leaves, and the
/// responder sends on the new SA only once the initiator has it (RFC 7296 §2.8).
#[test]
fn single_sa_rekey_under_traffic_loses_nothing() {
    rekey_under_traffic(false);
}

fn rekey_under_traffic(per_resource_sas: bool) {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::two_sites();
    let children = if per_resource_sas { 2 } else { 1 };
    let short = |left: bool, start: bool| {
        let mut t = tunnel(left, start);
        t.extra = vec![
            "child_lifetime = \"3s\"".into(),
            "ike_lifetime = \"7s\"".into(),
        ];
        let mut c = per_resource(t);
        c.extra_top[1] = format!("per_resource_sas = {per_resource_sas}");
        c
    };
    let b = Routevpn::start(&topo.right, &short(false, false)).unwrap();
    let a = Routevpn::start(&topo.left, &short(true, true)).unwrap();
    wait_children(&a, children);
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    let end = std::time::Instant::now() + Duration::from_secs(12);
    let mut rounds = 0;
    while std::time::Instant::now() < end {
        let got = flows_left_to_right(&topo, 8);
        assert_eq!(
            got,
            8 * PER_FLOW,
            "round {rounds}: datagrams lost\n{}",
            testbed::tail(&a.log(), 30)
        );
        rounds += 1;
    }
    let rekeys = |rv: &Routevpn| {
        rv.status().unwrap()["tunnels"][0]["child_rekeys"]
            .as_u64()
            .unwrap_or(0)
    };
    let (ra, rb) = (rekeys(&a), rekeys(&b));
    testbed::report(&format!(
        "rekeys with {children} CHILD SA(s): {rounds} rounds of flows, CHILD SA rekeys A {ra} B {rb}"
    ));
    let least = 3 * children as u64;
    assert!(
        ra >= least && rb >= least,
        "every SA rekeyed several times: {ra}/{rb}"
    );
    // Settled: the CHILD SAs on each side, mirrored, each in its resource's lane.
    wait_until(T, POLL, || {
        let (ca, cb) = (
            a.status()?["tunnels"][0]["child_sas"].clone(),
            b.status()?["tunnels"][0]["child_sas"].clone(),
        );
        let (ca, cb) = (
            ca.as_array().cloned().unwrap_or_default(),
            cb.as_array().cloned().unwrap_or_default(),
        );
        let ok = ca.len() == children
            && cb.len() == children
            && ca.iter().all(|c| {
                u64::from(spi(c, "spi_in") % 2) == num(c, "resource")
                    && cb.iter().any(|d| {
                        spi(d, "spi_in") == spi(c, "spi_out")
                            && spi(d, "spi_out") == spi(c, "spi_in")
                            && num(d, "resource") == num(c, "resource")
                    })
            });
        ok.then_some(()).ok_or(format!("A {ca:?}\nB {cb:?}"))
    })
    .unwrap();
    assert!(!a.log().contains("ERROR") && !b.log().contains("ERROR"));
}
