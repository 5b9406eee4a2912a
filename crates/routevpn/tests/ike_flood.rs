//! A responder under an IKE_SA_INIT flood (RFC 7296 §2.6): requests claiming the real
//! peer's address from many source ports, well-formed and malformed (1-octet KE), for
//! every key-exchange group routevpn supports. The real peer's tunnel must come up while
//! the flood goes on, and the responder must stay well under a core. Figures printed.

use std::time::{Duration, Instant};

use ike::iana::DhId;
use testbed::ikeflood::{self, Flood};
use testbed::{Routevpn, RvConfig, RvTunnel, Topology};

const FLOOD_RATE: u32 = 2_000;
const FLOOD_FOR: Duration = Duration::from_secs(6);
/// The real peer starts this long after the flood.
const PEER_AFTER: Duration = Duration::from_secs(1);

fn tunnel(left: bool, ike: &str) -> RvTunnel {
    let (local, remote, lid, rid) = if left {
        (
            Topology::LEFT_WAN,
            Topology::RIGHT_WAN,
            "routerA",
            "routerB",
        )
    } else {
        (
            Topology::RIGHT_WAN,
            Topology::LEFT_WAN,
            "routerB",
            "routerA",
        )
    };
    RvTunnel {
        local: local.into(),
        remote: remote.into(),
        local_id: lid.into(),
        remote_id: rid.into(),
        psk: "flood-test-psk-long-enough".into(),
        ike: vec![ike.into()],
        esp: vec!["aes128gcm16".into()],
        start: !left,
        ..RvTunnel::default()
    }
}

/// utime + stime of `pid` (/proc/PID/stat fields 14 and 15), in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name (field 2) may hold spaces; count fields after its ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn peer_establishes_and_responder_stays_cheap_under_an_ike_sa_init_flood() {
    if !testbed::require_root() {
        return;
    }
    let mut figures = Vec::new();
    let groups = [
        ("aes128gcm16-prfsha256-modp2048", DhId(14)),
        ("aes128gcm16-prfsha256-ecp256", DhId(19)),
        ("aes128gcm16-prfsha256-ecp384", DhId(20)),
        ("aes128gcm16-prfsha256-x25519", DhId(31)),
    ];
    // Every request malformed (refused before any state: never counts towards COOKIEs
    // unless refusals do), and half of them well-formed (random public values).
    for ((ike, group), malformed_every) in groups.into_iter().flat_map(|g| [(g, 1), (g, 2)]) {
        let topo = Topology::two_sites();
        // Logging as in production: a per-packet debug line would measure the logger.
        let responder = Routevpn::spawn_with(
            testbed::routevpn_bin(),
            &topo.left,
            &RvConfig {
                tunnels: vec![tunnel(true, ike)],
                ..RvConfig::default()
            },
            &[("RUST_LOG", "info")],
        );
        responder.wait_ready(Duration::from_secs(10)).unwrap();
        let cpu0 = cpu_seconds(responder.pid());
        let t0 = Instant::now();
        let right = topo.right.clone();
        let flood = std::thread::spawn(move || {
            ikeflood::run(
                &right,
                Flood {
                    target: format!("{}:500", Topology::LEFT_WAN).parse().unwrap(),
                    source: Topology::RIGHT_WAN.parse().unwrap(),
                    rate: FLOOD_RATE,
                    duration: FLOOD_FOR,
                    group,
                    malformed_every,
                },
            )
        });
        std::thread::sleep(PEER_AFTER);
        let peer = Routevpn::start(
            &topo.right,
            &RvConfig {
                tunnels: vec![tunnel(false, ike)],
                ..RvConfig::default()
            },
        )
        .unwrap();
        let started = Instant::now();
        // Up while the flood still runs (it lasts FLOOD_FOR from t0).
        let up = testbed::wait_until(
            FLOOD_FOR.saturating_sub(t0.elapsed()),
            Duration::from_millis(20),
            || {
                let t = peer.status()?["tunnels"][0].clone();
                (t["state"] == "up")
                    .then_some(())
                    .ok_or_else(|| format!("tunnel not up: {}", t["last_error"]))
            },
        );
        let setup = started.elapsed();
        let report = flood.join().unwrap().unwrap();
        let cpu = cpu_seconds(responder.pid()) - cpu0;
        let cores = cpu / report.elapsed.as_secs_f64();
        figures.push(format!(
            "{ike}, 1 in {malformed_every} malformed: {} requests in {:.1?}, peer up after {setup:.2?}, responder {cpu:.2} CPU-s ({cores:.2} of a core)",
            report.sent, report.elapsed
        ));
        if let Err(e) = up {
            panic!(
                "{ike}: the real peer did not establish during the flood: {e}\n{}\nresponder log:\n{}",
                figures.join("\n"),
                testbed::tail(&responder.log(), 30)
            );
        }
        assert!(
            report.sent > u64::from(FLOOD_RATE),
            "the flood ran: {report:?}"
        );
        assert!(
            cores < 0.6,
            "{ike}: responder used {cores:.2} of a core under the flood\n{}",
            figures.join("\n")
        );
    }
    testbed::report(&format!(
        "IKE_SA_INIT flood at {FLOOD_RATE}/s:\n{}",
        figures.join("\n")
    ));
}
