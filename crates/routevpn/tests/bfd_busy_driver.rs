//! BFD timing in the daemon, two routevpn daemons with eBGP + BFD over a tunnel:
//! - BFD keeps its timing while the BGP driver is busy: BFD 50 ms × 3 (150 ms
//!   detection); the left's routing task is blocked for 2 s (the
//!   `ROUTEVPN_TEST_STALL_ROUTING` hook, as a burst of UPDATEs or a slow netlink call
//!   would) and neither end may see the BFD session leave Up. With BFD timers run by
//!   the driver task itself, the left stops transmitting for 2 s and both ends flap.
//! - `esp_hint`: a busy tunnel cut in the middle is taken down by the ESP-silence hint
//!   (about 2 intervals), not by the Detection Time (5 intervals here).

use std::time::Duration;
use testbed::{wait_until, Netns, Routevpn, RvConfig, RvTunnel, Topology};

const T: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);
/// The stall: more than ten detection times.
const STALL_MS: &str = "2000";

fn tunnel(left: bool) -> RvTunnel {
    let (local, remote, addr) = if left {
        (Topology::LEFT_WAN, Topology::RIGHT_WAN, "169.254.12.1/30")
    } else {
        (Topology::RIGHT_WAN, Topology::LEFT_WAN, "169.254.12.2/30")
    };
    RvTunnel {
        local: local.into(),
        remote: remote.into(),
        psk: "bfd-busy-test".into(),
        ike: vec!["aes128gcm16-prfsha256-x25519".into()],
        esp: vec!["aes128gcm16".into()],
        start: left,
        address: vec![addr.into()],
        ..RvTunnel::default()
    }
}

fn bgp(left: bool, bfd: &str) -> String {
    let (asn, peer_asn, rid, nbr) = if left {
        (65001, 65002, "10.1.0.1", "169.254.12.2")
    } else {
        (65002, 65001, "10.2.0.1", "169.254.12.1")
    };
    format!(
        "[bgp]\nasn = {asn}\nrouter_id = \"{rid}\"\n\
         hold_time = \"9s\"\nconnect_retry = \"1s\"\n\
         [[bgp.neighbor]]\naddress = \"{nbr}\"\nasn = {peer_asn}\n\
         bfd = {bfd}\n"
    )
}

const FAST: &str = "{ interval = \"50ms\", multiplier = 3 }";

fn start(ns: &Netns, left: bool, env: &[(&str, &str)], bfd: &str) -> Routevpn {
    let cfg = RvConfig {
        tunnels: vec![tunnel(left)],
        extra_tail: bgp(left, bfd),
        ..RvConfig::default()
    };
    let rv = Routevpn::spawn_with(testbed::routevpn_bin(), ns, &cfg, env);
    rv.wait_ready(Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e}"));
    rv
}

fn flaps(rv: &Routevpn) -> u64 {
    rv.neighbor()["bfd_flaps"].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn bfd_stays_up_while_the_bgp_driver_is_stalled() {
    if !testbed::require_programs(&["kill"]) {
        return;
    }
    let topo = Topology::two_sites();
    let env = [
        ("RUST_LOG", "debug"),
        ("RUST_BACKTRACE", "1"),
        ("ROUTEVPN_TEST_STALL_ROUTING", STALL_MS),
    ];
    let left = start(&topo.left, true, &env, FAST);
    let right = start(&topo.right, false, &env[..2], FAST);
    wait_up([&left, &right]);
    let before = (flaps(&left), flaps(&right));

    let pid = left.pid().to_string();
    let out = std::process::Command::new("kill")
        .args(["-USR1", &pid])
        .output()
        .expect("kill");
    assert!(out.status.success(), "kill -USR1 {pid}: {out:?}");
    left.wait_log("test hook: routing task stalled", T)
        .unwrap_or_else(|e| panic!("{e}"));
    left.wait_log("test hook: routing task resumed", T)
        .unwrap_or_else(|e| panic!("{e}"));
    // The right ran on throughout: had the left gone silent for a detection time
    // during the stall, it counted a flap then.
    let right_n = right.neighbor();
    assert_eq!(
        right_n["bfd_flaps"].as_u64(),
        Some(before.1),
        "the right saw BFD leave Up while the left's driver was stalled: {right_n}\n{}",
        testbed::tail(&right.log(), 60)
    );
    // The left's own view once its driver has run again.
    wait_until(T, POLL, || {
        let n = left.neighbor();
        (n["state"] == "Established")
            .then_some(())
            .ok_or_else(|| format!("neighbor {n}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&left.log(), 80)));
    for (rv, was, side) in [(&left, before.0, "left"), (&right, before.1, "right")] {
        let n = rv.neighbor();
        let log = rv.log();
        assert!(
            n["bfd"] == "Up" && n["bfd_flaps"].as_u64() == Some(was) && !log.contains("BFD down"),
            "{side}: BFD left Up around the stall: {n}\n{}",
            testbed::tail(&log, 60)
        );
    }
}

/// Both ends up with BFD and BGP.
fn wait_up(rvs: [&Routevpn; 2]) {
    for rv in rvs {
        rv.wait_neighbor_up(T);
    }
}

#[test]
fn a_busy_tunnel_cut_is_taken_down_by_the_esp_hint() {
    if !testbed::require_programs(&["nft", "ping"]) {
        return;
    }
    // 100 ms × 5: the Detection Time is at least 400 ms after a cut, the hint's Poll
    // goes out 100 ms after the last packet and the session goes down 100 ms later.
    const HINTED: &str = "{ interval = \"100ms\", multiplier = 5, esp_hint = true }";
    let topo = Topology::two_sites();
    let env = [("RUST_LOG", "debug"), ("RUST_BACKTRACE", "1")];
    let left = start(&topo.left, true, &env, HINTED);
    let right = start(&topo.right, false, &env, HINTED);
    wait_up([&left, &right]);
    assert_eq!(left.neighbor()["bfd_esp_hint"], true);

    // 200 pings a second through the tunnel for `secs` seconds.
    let ping = |secs: &str| {
        std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                topo.left.name(),
                "ping",
                "-q",
                "-i",
                "0.005",
            ])
            .args(["-w", secs, "169.254.12.2"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ping")
    };
    // Busy traffic that simply stops is no cut: at most a Poll, which is answered.
    let mut first = ping("1");
    let _ = first.wait();
    std::thread::sleep(Duration::from_secs(2));
    for rv in [&left, &right] {
        let n = rv.neighbor();
        assert!(
            n["bfd"] == "Up" && n["bfd_flaps"] == 0,
            "BFD left Up after the traffic stopped: {n}\n{}",
            testbed::tail(&rv.log(), 60)
        );
    }

    // Busy again, for longer than the rest of the test needs.
    let mut ping = ping("8");
    std::thread::sleep(Duration::from_secs(1));
    // Cut the path in the middle: the left drops ESP-in-UDP both ways.
    topo.left
        .run(&[
            "nft",
            "add table inet cut; \
             add chain inet cut in { type filter hook input priority 0; }; \
             add rule inet cut in udp sport 4500 drop; \
             add chain inet cut out { type filter hook output priority 0; }; \
             add rule inet cut out udp dport 4500 drop",
        ])
        .unwrap_or_else(|e| panic!("nft: {e}"));
    for (rv, side) in [(&left, "left"), (&right, "right")] {
        wait_until(T, POLL, || {
            let n = rv.neighbor();
            (n["bfd"] != "Up")
                .then_some(())
                .ok_or_else(|| format!("neighbor {n}"))
        })
        .unwrap_or_else(|e| panic!("{side}: {e}\n{}", testbed::tail(&rv.log(), 60)));
        let n = rv.neighbor();
        assert_eq!(
            n["bfd_esp_hint_downs"].as_u64(),
            Some(1),
            "{side}: BFD went down, but not on the ESP hint: {n}\n{}",
            testbed::tail(&rv.log(), 60)
        );
        assert!(
            rv.log().contains("BFD down on the ESP-silence hint"),
            "{side}"
        );
    }
    let _ = ping.kill();
    let _ = ping.wait();
}
