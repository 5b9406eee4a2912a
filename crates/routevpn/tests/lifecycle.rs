//! Tunnels over time, in network namespaces: dozens of rekeys of both kinds with
//! lifetimes of a few seconds while a bounded TCP transfer and a ping run
//! (routevpn↔routevpn and routevpn↔strongSwan), a `kill -9` detected by liveness
//! checks, and a restarted peer coming back by itself.

use serde_json::Value;
use std::time::{Duration, Instant};
use testbed::{wait_until, Routevpn, RvConfig, RvTunnel, Strongswan, SwanConn, Topology};

const T: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);
const IKE: &str = "aes128gcm16-prfsha256-x25519";

fn tunnel(left: bool, start: bool, extra: &[&str]) -> RvTunnel {
    RvTunnel {
        psk: "lifecycle".into(),
        ike: vec![IKE.into()],
        esp: vec!["aes128gcm16-x25519".into()],
        start,
        extra: extra.iter().map(|s| s.to_string()).collect(),
        ..RvTunnel::two_sites(left)
    }
}

fn cfg(t: RvTunnel) -> RvConfig {
    RvConfig {
        tunnels: vec![t],
        ..RvConfig::default()
    }
}

fn tunnel_json(rv: &Routevpn) -> Result<Value, String> {
    Ok(rv.status()?["tunnels"][0].clone())
}

/// (CHILD SA rekeys, IKE SA rekeys) of the first tunnel, from `status --json`.
fn rekeys(rv: &Routevpn) -> (u64, u64) {
    let t = tunnel_json(rv).unwrap_or_else(|e| panic!("status: {e}"));
    let n = |k: &str| {
        t[k].as_u64()
            .unwrap_or_else(|| panic!("no {k} in the status: {t}"))
    };
    (n("child_rekeys"), n("ike_rekeys"))
}

/// A bounded TCP transfer of `secs` seconds of data with a content check, and a ping
/// at 20/s alongside; returns (bytes, ping sent, ping received).
fn traffic_while(topo: &Topology, secs: u64) -> (u64, u64, u64) {
    let dir = testbed::TestDir::new("soak");
    let ping_log = dir.join("ping.log");
    let t = Duration::from_secs(30);
    let server =
        testbed::tcp_sink(&topo.right_host, "10.2.0.2", 5301, t).expect("server listening");
    let ping = topo.left_host.spawn(
        &[
            "ping",
            "-i",
            "0.05",
            "-w",
            &secs.to_string(),
            "-W",
            "1",
            Topology::RIGHT_HOST,
        ],
        &ping_log,
    );
    let blk = testbed::pseudo_random(3, 65536);
    let end = Instant::now() + Duration::from_secs(secs);
    let sent = testbed::tcp_send(&topo.left_host, "10.2.0.2", 5301, t, move || {
        (Instant::now() < end).then(|| {
            std::thread::sleep(Duration::from_millis(2));
            blk.clone()
        })
    })
    .expect("transfer ran without error");
    let got = server.join().expect("server thread").expect("server done");
    ping.wait_exit(Duration::from_secs(secs + 10))
        .expect("ping done");
    assert_eq!(
        sent.trim(),
        got.trim(),
        "every byte arrived, in order, intact"
    );
    let bytes: u64 = sent.split_whitespace().next().unwrap().parse().unwrap();
    let pings = std::fs::read_to_string(&ping_log).unwrap();
    let stat = pings
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default()
        .to_string();
    let nums: Vec<u64> = stat
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    (
        bytes,
        nums.first().copied().unwrap_or(0),
        nums.get(1).copied().unwrap_or(0),
    )
}

#[test]
fn soak_routevpn_pair_rekeys_under_traffic() {
    if !testbed::require_programs(&["ping"]) {
        return;
    }
    let topo = Topology::two_sites();
    // Both ends rekey on their own timers (collisions included).
    let short = [
        "ike_lifetime = \"7s\"",
        "child_lifetime = \"3s\"",
        "dpd = \"2s\"",
    ];
    let b = Routevpn::start(&topo.right, &cfg(tunnel(false, false, &short))).unwrap();
    let a = Routevpn::start(&topo.left, &cfg(tunnel(true, true, &short))).unwrap();
    testbed::wait_tunnel_up(&a, T);
    testbed::wait_tunnel_up(&b, T);
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    let t0 = Instant::now();
    let (bytes, sent, recv) = traffic_while(&topo, 40);
    let (ca, ia) = rekeys(&a);
    let (cb, ib) = rekeys(&b);
    eprintln!(
        "soak routevpn↔routevpn: {:.1} s, {} MB moved, ping {recv}/{sent} received ({} lost), CHILD SA rekeys A {ca} B {cb}, IKE SA rekeys A {ia} B {ib}",
        t0.elapsed().as_secs_f64(),
        bytes / 1_000_000,
        sent - recv
    );
    // Both ends count every rekey of the pair, whichever end started it.
    assert!(ca >= 10 && cb >= 10, "CHILD SA rekeys: {ca}/{cb}");
    assert!(ia >= 4 && ib >= 4, "IKE SA rekeys: {ia}/{ib}");
    // No duplicate SAs left: one IKE SA and one CHILD SA on each side, mirrored.
    let (ta, tb) = (
        testbed::wait_tunnel_up(&a, T),
        testbed::wait_tunnel_up(&b, T),
    );
    wait_until(T, POLL, || {
        let (ta, tb) = (tunnel_json(&a)?, tunnel_json(&b)?);
        let n = |t: &Value, k: &str| t[k].as_array().map(|a| a.len()).unwrap_or(0);
        (n(&ta, "ike_sas") == 1
            && n(&tb, "ike_sas") == 1
            && n(&ta, "child_sas") == 1
            && n(&tb, "child_sas") == 1)
            .then_some(())
            .ok_or(format!("A {ta}\nB {tb}"))
    })
    .unwrap();
    let _ = (ta, tb);
    let (ta, tb) = (tunnel_json(&a).unwrap(), tunnel_json(&b).unwrap());
    assert_eq!(
        testbed::json_str(&ta, "/child_sas/0/spi_in"),
        testbed::json_str(&tb, "/child_sas/0/spi_out")
    );
    assert!(!a.log().contains("ERROR") && !b.log().contains("ERROR"));
}

#[test]
fn soak_routevpn_with_strongswan_rekeys_under_traffic() {
    if !testbed::require_strongswan() {
        return;
    }
    let topo = Topology::two_sites();
    let rv = Routevpn::start(
        &topo.left,
        &cfg(tunnel(
            true,
            true,
            &["ike_lifetime = \"9s\"", "child_lifetime = \"4s\""],
        )),
    )
    .unwrap();
    let conn = SwanConn {
        local_addr: Topology::RIGHT_WAN.into(),
        remote_addr: Topology::LEFT_WAN.into(),
        local_id: "routerB".into(),
        remote_id: "routerA".into(),
        psk: "lifecycle".into(),
        ike_proposals: IKE.into(),
        esp_proposals: "aes128gcm16-x25519".into(),
        local_ts: Topology::RIGHT_NET.into(),
        remote_ts: Topology::LEFT_NET.into(),
        start_action: "none".into(),
        // strongSwan rekeys too, on its own schedule.
        ike_rekey_time: Some("11s".into()),
        ike_over_time: Some("10s".into()),
        child_rekey_time: Some("5s".into()),
        child_life_time: Some("15s".into()),
        dpd_delay: Some("2s".into()),
        ..SwanConn::default()
    };
    let sw = Strongswan::start(&topo.right, &[conn]).unwrap();
    sw.wait_established("tun", T).unwrap();
    testbed::wait_tunnel_up(&rv, T);
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    let (bytes, sent, recv) = traffic_while(&topo, 40);
    let (children, ike) = rekeys(&rv);
    eprintln!("soak routevpn↔strongSwan: {} MB moved, ping {recv}/{sent} received ({} lost), CHILD SA rekeys {children}, IKE SA rekeys {ike}", bytes / 1_000_000, sent - recv);
    assert!(children >= 8, "{children} CHILD SA rekeys");
    assert!(ike >= 3, "{ike} IKE rekeys");
    let sa = sw.wait_established("tun", T).unwrap();
    assert_eq!(
        sw.sas()
            .unwrap()
            .iter()
            .filter(|s| s.is_established())
            .count(),
        1,
        "one IKE SA at strongSwan"
    );
    assert!(
        sa.installed().count() <= 2,
        "no duplicate CHILD SAs at strongSwan: {}",
        sw.list_sas()
    );
    wait_until(T, POLL, || {
        let t = tunnel_json(&rv)?;
        (t["child_sas"].as_array().map(|a| a.len()) == Some(1))
            .then_some(())
            .ok_or(format!("{t}"))
    })
    .unwrap();
}

#[test]
fn kill_9_is_detected_and_the_restarted_peer_returns() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::two_sites();
    let fast = [
        "dpd = \"1s\"",
        "retransmit_timeout = \"500ms\"",
        "retransmit_tries = 2",
    ];
    let b = Routevpn::start(&topo.right, &cfg(tunnel(false, false, &fast))).unwrap();
    let a_cfg = cfg(tunnel(true, true, &fast));
    let a = Routevpn::start(&topo.left, &a_cfg).unwrap();
    testbed::wait_tunnel_up(&a, T);
    testbed::wait_tunnel_up(&b, T);
    assert!(testbed::link_up(&topo.right, "vti0"));
    // kill -9: no DELETE is sent.
    let t0 = Instant::now();
    a.signal("KILL").unwrap();
    wait_until(Duration::from_secs(20), Duration::from_millis(20), || {
        (!testbed::link_up(&topo.right, "vti0"))
            .then_some(())
            .ok_or("vti0 still up".to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&b.log(), 30)));
    let detect = t0.elapsed();
    assert!(
        !topo
            .right
            .run(&["ip", "route", "show", Topology::LEFT_NET])
            .unwrap()
            .contains("vti0"),
        "route withdrawn"
    );
    assert!(
        b.log().contains("not responding"),
        "declared dead by liveness checks"
    );
    eprintln!(
        "kill -9: peer interface down after {detect:?} (dpd 1 s + retransmits 0.5 s + 1 s + 2 s)"
    );
    drop(a);
    // The killed peer starts again: the tunnel comes back by itself.
    let t1 = Instant::now();
    let a2 = Routevpn::start(&topo.left, &a_cfg).unwrap();
    testbed::wait_tunnel_up(&a2, T);
    testbed::wait_tunnel_up(&b, T);
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    eprintln!(
        "restart: tunnel carrying traffic again {:?} after the daemon started",
        t1.elapsed()
    );
    assert_eq!(
        tunnel_json(&b).unwrap()["ike_sas"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn restarted_peer_replaces_stale_sas_before_dpd_notices() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::two_sites();
    let slow_dpd = ["dpd = \"60s\""];
    let b = Routevpn::start(&topo.right, &cfg(tunnel(false, false, &slow_dpd))).unwrap();
    let a_cfg = cfg(tunnel(true, true, &slow_dpd));
    let a = Routevpn::start(&topo.left, &a_cfg).unwrap();
    testbed::wait_tunnel_up(&a, T);
    let old = testbed::wait_tunnel_up(&b, T);
    std::thread::sleep(Duration::from_millis(2500)); // past the INITIAL_CONTACT grace
    a.signal("KILL").unwrap();
    drop(a);
    let a2 = Routevpn::start(&topo.left, &a_cfg).unwrap();
    testbed::wait_tunnel_up(&a2, T);
    let t = wait_until(T, POLL, || {
        let t = tunnel_json(&b)?;
        let fresh = t["ike_sas"].as_array().map(|a| a.len()) == Some(1)
            && t["ike_sas"][0]["spi_i"] != old["ike_sas"][0]["spi_i"];
        fresh.then_some(t.clone()).ok_or(format!("{t}"))
    })
    .unwrap();
    assert_eq!(
        t["child_sas"].as_array().unwrap().len(),
        1,
        "stale CHILD SA replaced: {t}"
    );
    assert!(b.log().contains("INITIAL_CONTACT"));
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
}

#[test]
fn reload_touches_only_changed_tunnels() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::two_sites();
    let b = Routevpn::start(&topo.right, &cfg(tunnel(false, false, &[]))).unwrap();
    let mut a_cfg = cfg(tunnel(true, true, &[]));
    let a = Routevpn::start(&topo.left, &a_cfg).unwrap();
    let before = testbed::wait_tunnel_up(&a, T);
    // Add a second tunnel (to a peer that does not answer) and reload with SIGHUP.
    let mut extra = tunnel(true, true, &[]);
    extra.name = "vti9".into();
    extra.remote = "192.0.2.99".into();
    extra.address = vec!["169.254.99.1/30".into()];
    extra.routes = vec![];
    a_cfg.tunnels.push(extra);
    std::fs::write(a.config_path(), a_cfg.to_toml(a.socket())).unwrap();
    a.signal("HUP").unwrap();
    wait_until(T, POLL, || {
        let st = a.status()?;
        (st["tunnels"].as_array().map(|t| t.len()) == Some(2))
            .then_some(())
            .ok_or(format!("{st}"))
    })
    .unwrap();
    assert!(
        topo.left.run(&["ip", "link", "show", "vti9"]).is_ok(),
        "new interface created"
    );
    let same = testbed::wait_tunnel_up(&a, T);
    assert_eq!(
        testbed::json_str(&same, "/ike_sas/0/spi_i"),
        testbed::json_str(&before, "/ike_sas/0/spi_i"),
        "unchanged tunnel left alone"
    );
    assert_eq!(
        testbed::json_str(&same, "/child_sas/0/spi_in"),
        testbed::json_str(&before, "/child_sas/0/spi_in")
    );
    // Change the first tunnel's ESP proposal and remove the second: `routevpn reload`.
    a_cfg.tunnels.pop();
    a_cfg.tunnels[0].esp = vec!["aes256gcm16".into(), "aes128gcm16-x25519".into()];
    // The worker pool is set at start: a reload says so instead of ignoring it.
    a_cfg.extra_top.push("per_resource_sas = true".into());
    std::fs::write(a.config_path(), a_cfg.to_toml(a.socket())).unwrap();
    let out = a
        .cli(&["reload", "--socket", a.socket().to_str().unwrap()])
        .unwrap();
    assert!(
        out.contains("1 changed") && out.contains("1 removed"),
        "{out}"
    );
    assert!(
        out.contains("per_resource_sas changes apply after a restart"),
        "{out}"
    );
    // The file the test wrote is world-readable: each reload warns as start-up does.
    let mode = std::fs::metadata(a.config_path()).unwrap().permissions();
    assert_ne!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o077, 0);
    let readable = "accessible by group or others";
    assert!(
        a.log()
            .lines()
            .filter(|l| l.contains("reload: ") && l.contains(readable))
            .count()
            >= 2,
        "both reloads warn about the readable config:\n{}",
        testbed::tail(&a.log(), 30)
    );
    let after = testbed::wait_tunnel_up(&a, T);
    assert_ne!(
        testbed::json_str(&after, "/ike_sas/0/spi_i"),
        testbed::json_str(&before, "/ike_sas/0/spi_i"),
        "changed tunnel re-established"
    );
    assert!(
        topo.left.run(&["ip", "link", "show", "vti9"]).is_err(),
        "removed interface gone"
    );
    testbed::wait_tunnel_up(&b, T);
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    // A broken file changes nothing.
    std::fs::write(a.config_path(), "[[tunnel]]\nname = 1\n").unwrap();
    let err = a
        .cli(&["reload", "--socket", a.socket().to_str().unwrap()])
        .unwrap_err();
    assert!(err.contains("nothing changed"), "{err}");
    assert_eq!(
        testbed::json_str(&testbed::wait_tunnel_up(&a, T), "/ike_sas/0/spi_i"),
        testbed::json_str(&after, "/ike_sas/0/spi_i")
    );
}

#[test]
fn down_and_up_commands_and_byte_lifetimes() {
    if !testbed::require_programs(&["ping"]) {
        return;
    }
    let topo = Topology::two_sites();
    // Rekey every 3 MB on A's side (RFC 7296 §2.8 byte lifetime).
    let b = Routevpn::start(&topo.right, &cfg(tunnel(false, false, &[]))).unwrap();
    let a = Routevpn::start(
        &topo.left,
        &cfg(tunnel(true, true, &["child_lifetime_bytes = 3000000"])),
    )
    .unwrap();
    testbed::wait_tunnel_up(&a, T);
    testbed::wait_tunnel_up(&b, T);
    let sock = a.socket().to_str().unwrap().to_string();
    let (before_a, before_b) = (rekeys(&a).0, rekeys(&b).0);
    // At least three lifetimes' worth (9 MB) in one direction, A to B.
    let mut bytes = 0;
    for _ in 0..10 {
        bytes += traffic_while(&topo, 3).0;
        if bytes >= 9_500_000 {
            break;
        }
    }
    assert!(bytes >= 9_500_000, "moved only {bytes} bytes");
    let (ra, rb) = (rekeys(&a).0 - before_a, rekeys(&b).0 - before_b);
    eprintln!(
        "byte lifetime: {} MB moved, CHILD SA rekeys A {ra} B {rb}",
        bytes / 1_000_000
    );
    // One rekey per 3 MB over both directions of an SA. Counted: the TCP payload plus
    // headers, ACKs and pings (a few percent more than `bytes`); each SA also carries
    // what is in flight while its rekey is negotiated. So within 20 % of bytes / 3 MB.
    // (Before lifetimes were counted on the packet path, a 1 s poll let each SA carry
    // up to a second of traffic: 3 rekeys for 34 MB.)
    let (lo, hi) = (bytes * 8 / 10 / 3_000_000, bytes * 11 / 10 / 3_000_000 + 1);
    for (side, r) in [("A", ra), ("B", rb)] {
        assert!(
            (lo..=hi).contains(&r),
            "{side}: {r} CHILD SA rekeys for {bytes} bytes, want {lo}..={hi}"
        );
    }
    // `routevpn down`: both ends go down at once (DELETE), and stay down.
    let out = a.cli(&["down", "vti0", "--socket", &sock]).unwrap();
    assert!(out.contains("closing vti0"), "{out}");
    wait_until(T, POLL, || {
        (!testbed::link_up(&topo.left, "vti0") && !testbed::link_up(&topo.right, "vti0"))
            .then_some(())
            .ok_or("still up".to_string())
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(tunnel_json(&a).unwrap()["state"], "down", "down stays down");
    // `routevpn up`: back, with traffic.
    a.cli(&["up", "vti0", "--socket", &sock]).unwrap();
    testbed::wait_tunnel_up(&a, T);
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    let err = a.cli(&["up", "nosuch", "--socket", &sock]).unwrap_err();
    assert!(err.contains("no tunnel named"), "{err}");
}

#[test]
fn dpd_action_clear_takes_the_tunnel_down_and_keeps_it_down() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::two_sites();
    let fast = [
        "dpd = \"1s\"",
        "retransmit_timeout = \"500ms\"",
        "retransmit_tries = 2",
    ];
    let b = Routevpn::start(&topo.right, &cfg(tunnel(false, false, &fast))).unwrap();
    let mut a_extra = fast.to_vec();
    a_extra.push("dpd_action = \"clear\"");
    let a = Routevpn::start(&topo.left, &cfg(tunnel(true, true, &a_extra))).unwrap();
    testbed::wait_tunnel_up(&a, T);
    b.signal("KILL").unwrap();
    wait_until(Duration::from_secs(20), POLL, || {
        (!testbed::link_up(&topo.left, "vti0"))
            .then_some(())
            .ok_or("vti0 still up".to_string())
    })
    .unwrap();
    let initiations = a.log().matches("initiating IKE SA").count();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        a.log().matches("initiating IKE SA").count(),
        initiations,
        "clear: no re-initiation"
    );
    assert_eq!(tunnel_json(&a).unwrap()["state"], "down");
}
