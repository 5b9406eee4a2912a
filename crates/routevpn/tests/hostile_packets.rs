//! Two routevpn daemons with a tunnel, each bombarded for a few seconds with mutated IKE
//! and ESP claiming its peer's address (`testbed::hostile`: bit flips, truncations,
//! length fields that lie, random payload chains, replays of captured IKE — the daemons'
//! own and strongSwan's — with changes, to 500 and to 4500 behind the non-ESP marker;
//! ESP with a live SPI and garbage, random SPIs, truncated headers, replays of sniffed
//! ESP as captured and with a flipped bit). Afterwards both daemons must still run, the
//! tunnel must be up on the same SAs (nothing in the attack is authenticated), traffic
//! must flow, and the drops must show in `status`.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use testbed::hostile::{self, Hostile, HostileReport, KINDS};
use testbed::pcap::{Capture, Segment, Transport};
use testbed::{json_str, wait_until, Routevpn, RvConfig, RvTunnel, Topology};

const T: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
/// Per attacker (one against each daemon), for ATTACK_FOR.
const RATE: u32 = 1_000;
const ATTACK_FOR: Duration = Duration::from_secs(4);

fn tunnel(left: bool) -> RvTunnel {
    RvTunnel {
        psk: "hostile-packets-test-psk".into(),
        ike: vec!["aes256gcm16-prfsha384-x25519".into()],
        esp: vec!["aes256gcm16".into()],
        ..RvTunnel::two_sites(left)
    }
}

fn cfg(t: RvTunnel) -> RvConfig {
    RvConfig {
        tunnels: vec![t],
        ..RvConfig::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// IKE messages (marker stripped) and ESP packets from `src` in a capture.
fn split(segs: &[Segment], src: IpAddr) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut ike, mut esp) = (Vec::new(), Vec::new());
    for s in segs {
        if s.transport != Transport::Udp || s.src.ip() != src {
            continue;
        }
        match s.dst.port() {
            500 => ike.push(s.payload.clone()),
            4500 if s.payload.starts_with(&[0; 4]) => ike.push(s.payload[4..].to_vec()),
            4500 if s.payload.len() > 8 => esp.push(s.payload.clone()),
            _ => {}
        }
    }
    (ike, esp)
}

/// strongSwan's IKE messages from the fuzz seeds (see tests/capture_seeds.rs).
fn strongswan_ike() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/ike_message");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("strongswan-") {
            out.push(std::fs::read(e.path()).unwrap());
        }
    }
    assert!(!out.is_empty(), "strongSwan seeds present");
    out
}

fn sas(st: &Value) -> (String, String, String) {
    (
        json_str(st, "/tunnels/0/ike_sas/0/spi_i"),
        json_str(st, "/tunnels/0/ike_sas/0/spi_r"),
        json_str(st, "/tunnels/0/child_sas/0/spi_in"),
    )
}

fn describe(r: &HostileReport) -> String {
    KINDS
        .iter()
        .zip(r.sent)
        .map(|(k, n)| format!("{k:?} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn daemons_survive_mutated_ike_and_esp_claiming_the_peers_address() {
    if !testbed::require_programs(&["tcpdump", "ping"]) {
        return;
    }
    let topo = Topology::two_sites();
    let cap = Capture::start(&topo.left, Topology::WAN_IF).unwrap();
    let b = Routevpn::start(&topo.right, &cfg(tunnel(false))).unwrap();
    let a = Routevpn::start(&topo.left, &cfg(tunnel(true))).unwrap();
    testbed::wait_tunnel_up(&a, T);
    testbed::wait_tunnel_up(&b, T);
    for _ in 0..3 {
        topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
        topo.right_host.wait_ping(Topology::LEFT_HOST, T).unwrap();
    }
    let (left_wan, right_wan) = (ip(Topology::LEFT_WAN), ip(Topology::RIGHT_WAN));
    cap.wait_for(T, "ESP both ways", |segs| {
        !split(segs, left_wan).1.is_empty() && !split(segs, right_wan).1.is_empty()
    })
    .unwrap();
    let segs = cap.finish().unwrap();
    let (ike_from_a, esp_to_b) = split(&segs, left_wan);
    let (ike_from_b, esp_to_a) = split(&segs, right_wan);
    let mut ike_samples = strongswan_ike();
    ike_samples.extend(ike_from_a);
    ike_samples.extend(ike_from_b);

    let before_a = a.status().unwrap();
    let before_b = b.status().unwrap();
    let spi = |st: &Value| {
        u32::from_str_radix(&json_str(st, "/tunnels/0/child_sas/0/spi_in"), 16).unwrap()
    };
    // A's attacker sits in B's namespace with B's address, and the other way round.
    let attack = |ns: &testbed::Netns,
                  target: IpAddr,
                  source: IpAddr,
                  esp: Vec<Vec<u8>>,
                  live: u32,
                  seed| {
        let ns = ns.clone();
        let h = Hostile {
            target,
            source,
            rate: RATE,
            duration: ATTACK_FOR,
            ike_samples: ike_samples.clone(),
            esp_samples: esp,
            live_spis: vec![live],
            seed,
        };
        std::thread::spawn(move || hostile::run(&ns, h))
    };
    let on_a = attack(
        &topo.right,
        left_wan,
        right_wan,
        esp_to_a,
        spi(&before_a),
        11,
    );
    let on_b = attack(
        &topo.left,
        right_wan,
        left_wan,
        esp_to_b,
        spi(&before_b),
        23,
    );
    let report_a = on_a.join().unwrap().unwrap();
    let report_b = on_b.join().unwrap().unwrap();
    for r in [&report_a, &report_b] {
        assert!(r.sent.iter().all(|&n| n > 0), "every kind sent: {r:?}");
    }

    for (name, rv) in [("A", &a), ("B", &b)] {
        assert!(
            rv.exit_status().is_none(),
            "daemon {name} died under the attack:\n{}",
            testbed::tail(&rv.log(), 40)
        );
    }
    let after_a = testbed::wait_tunnel_up(&a, T);
    testbed::wait_tunnel_up(&b, T);
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    topo.right_host.wait_ping(Topology::LEFT_HOST, T).unwrap();
    let _ = after_a;

    let mut figures = Vec::new();
    for (name, rv, before, report) in [
        ("A", &a, &before_a, &report_a),
        ("B", &b, &before_b, &report_b),
    ] {
        // The drops are counted: ESP for unknown SPIs daemon-wide, replays and ICV
        // failures on the CHILD SA the attack aimed at.
        let st = wait_until(T, POLL, || {
            let st = rv.status()?;
            let c = &st["tunnels"][0]["child_sas"][0];
            let moved = st["dataplane"]["unknown_spi"].as_u64() > Some(0)
                && c["replayed"].as_u64() > Some(0)
                && c["icv_failures"].as_u64() > Some(0);
            moved
                .then_some(st.clone())
                .ok_or(format!("{name}: drops not counted yet: {st}"))
        })
        .unwrap();
        assert_eq!(
            sas(&st),
            sas(before),
            "{name}: the unauthenticated attack replaced the IKE or CHILD SA:\n{}",
            testbed::tail(&rv.log(), 40)
        );
        let c = &st["tunnels"][0]["child_sas"][0];
        figures.push(format!(
            "daemon {name}: {} packets in {:.1?} ({}); unknown_spi {}, invalid {}, replayed {}, icv_failures {}, malformed {}",
            report.total(),
            report.elapsed,
            describe(report),
            st["dataplane"]["unknown_spi"],
            st["dataplane"]["invalid"],
            c["replayed"],
            c["icv_failures"],
            c["malformed"],
        ));
    }
    testbed::report(&format!(
        "hostile packets at {RATE}/s per daemon for {ATTACK_FOR:?}:\n{}",
        figures.join("\n")
    ));
}
