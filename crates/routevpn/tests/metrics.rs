//! `/metrics` of two routevpn daemons with a tunnel, eBGP and BFD between them, scraped
//! inside their namespaces and parsed with the Prometheus project's own Python parsers
//! (text format 0.0.4 and OpenMetrics): values follow the tunnel's state and traffic,
//! and a tunnel removed on reload leaves the output.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use testbed::{wait_until, Netns, Routevpn, RvConfig, RvTunnel, Topology};

const T: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
/// Debian's interpreter: `python3-prometheus-client` installs into its dist-packages.
const PYTHON: &str = "/usr/bin/python3";

/// Fetches http://ADDR/metrics, checks status and content type, parses the body with
/// both parsers and prints {"text", "prometheus": {sample: value}, "openmetrics": {...}}.
const SCRAPE: &str = r#"
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families as prom
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om
r = urllib.request.urlopen("http://" + sys.argv[1] + "/metrics", timeout=5)
assert r.status == 200, r.status
ctype = r.headers["Content-Type"]
assert ctype.startswith("application/openmetrics-text; version=1.0.0"), ctype
text = r.read().decode()
def samples(families):
    out = {}
    for f in families:
        for s in f.samples:
            labels = ",".join('%s="%s"' % kv for kv in sorted(s.labels.items()))
            out[s.name + "{" + labels + "}"] = s.value
    return out
print(json.dumps({"text": text, "prometheus": samples(prom(text)), "openmetrics": samples(om(text))}))
"#;

/// One scrape: sample name with sorted labels (`name{a="x",b="y"}`) → value.
struct Scrape {
    text: String,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn get(&self, key: &str) -> f64 {
        *self
            .samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in\n{}", self.text))
    }
}

fn scrape(ns: &Netns, addr: &str) -> Result<Scrape, String> {
    let out = ns.run(&[PYTHON, "-c", SCRAPE, addr])?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("scraper output ({e}): {out}"))?;
    let map = |k: &str| -> BTreeMap<String, f64> {
        v[k].as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap_or(f64::NAN)))
            .collect()
    };
    let (prom, om) = (map("prometheus"), map("openmetrics"));
    let text = v["text"].as_str().unwrap_or_default().to_string();
    // Both parsers must read the same series with the same values.
    if prom != om {
        return Err(format!(
            "the parsers disagree:\nprometheus {prom:?}\nopenmetrics {om:?}\n{text}"
        ));
    }
    Ok(Scrape { text, samples: om })
}

/// True when Debian's python3 with the prometheus_client parsers is there; otherwise a
/// loud skip, or a failure under ROUTEVPN_REQUIRE_NETNS=1.
fn require_parser() -> bool {
    let ok = Path::new(PYTHON).is_file()
        && std::process::Command::new(PYTHON)
            .args([
                "-c",
                "import prometheus_client.parser, prometheus_client.openmetrics.parser",
            ])
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        let why = "python3-prometheus-client (Debian) is not installed";
        if std::env::var(testbed::REQUIRE_ENV).as_deref() == Ok("1") {
            panic!("{why} and {}=1 forbids skipping", testbed::REQUIRE_ENV);
        }
        eprintln!("\n*****\nSKIPPED: metrics test: {why}\n*****");
    }
    ok
}

fn config(left: bool, metrics: &str, with_tunnel: bool) -> RvConfig {
    let (local, remote, addr, asn, peer_asn, rid, net, nbr) = if left {
        let (l, r) = (Topology::LEFT_WAN, Topology::RIGHT_WAN);
        (
            l,
            r,
            "169.254.12.1/30",
            65001,
            65002,
            "10.1.0.1",
            Topology::LEFT_NET,
            "169.254.12.2",
        )
    } else {
        let (l, r) = (Topology::RIGHT_WAN, Topology::LEFT_WAN);
        (
            l,
            r,
            "169.254.12.2/30",
            65002,
            65001,
            "10.2.0.1",
            Topology::RIGHT_NET,
            "169.254.12.1",
        )
    };
    let tunnel = RvTunnel {
        local: local.into(),
        remote: remote.into(),
        psk: "metrics-test".into(),
        ike: vec!["aes128gcm16-prfsha256-x25519".into()],
        esp: vec!["aes128gcm16".into()],
        start: left,
        address: vec![addr.into()],
        // The ping below spans several CHILD SA rekeys: totals must survive them.
        extra: if left {
            vec!["child_lifetime_packets = 200".into()]
        } else {
            vec![]
        },
        ..RvTunnel::default()
    };
    RvConfig {
        extra_top: vec![format!("metrics = \"{metrics}\"")],
        tunnels: if with_tunnel { vec![tunnel] } else { vec![] },
        extra_tail: format!(
            "[bgp]\nasn = {asn}\nrouter_id = \"{rid}\"\nnetworks = [\"{net}\"]\n\
             hold_time = \"9s\"\nconnect_retry = \"1s\"\n\
             [[bgp.neighbor]]\naddress = \"{nbr}\"\nasn = {peer_asn}\n\
             bfd = {{ interval = \"100ms\", multiplier = 3 }}\n"
        ),
        ..RvConfig::default()
    }
}

/// The live daemon's `status --json` keys are all in docs/status.md, and its text
/// status for this one tunnel fits a 24x100 screen.
fn check_status_docs_and_screen(rv: &Routevpn) {
    let st = rv.status().unwrap();
    assert_eq!(st["schema"], "routevpn-status/1", "{st}");
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/status.md"))
            .unwrap();
    let paths = testbed::json_key_paths(&st);
    assert!(
        paths.iter().any(|p| p == "bgp.neighbors[].bfd_flaps"),
        "{paths:?}"
    );
    let missing: Vec<&String> = paths
        .iter()
        .filter(|p| !doc.contains(&format!("| `{p}` |")))
        .collect();
    assert!(missing.is_empty(), "undocumented status keys: {missing:?}");
    let text = rv
        .cli(&["status", "--socket", rv.socket().to_str().unwrap()])
        .unwrap();
    eprintln!("routevpn status:\n{text}");
    assert!(text.lines().count() <= 24, "{text}");
    assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
}

/// Packets `ping` got back, from its summary line.
fn received(ping_output: &str) -> u64 {
    ping_output
        .lines()
        .find_map(|l| {
            let i = l.find(" received")?;
            l[..i].rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no summary in ping output:\n{ping_output}"))
}

#[test]
fn metrics_follow_tunnel_state_and_traffic() {
    if !testbed::require_programs(&["ping"]) || !require_parser() {
        return;
    }
    let topo = Topology::two_sites();
    // IPv4 on one side, IPv6 on the other.
    let (l_addr, r_addr) = ("127.0.0.1:9477", "[::1]:9477");
    let left = Routevpn::start(&topo.left, &config(true, l_addr, true)).unwrap();
    let right = Routevpn::start(&topo.right, &config(false, r_addr, true)).unwrap();

    let vti = "{tunnel=\"vti0\"}";
    let nbr_l = "{neighbor=\"169.254.12.2\"}";
    let nbr_r = "{neighbor=\"169.254.12.1\"}";
    let before = wait_until(T, POLL, || {
        let s = scrape(&topo.left, l_addr)?;
        let ok = s.samples.get(&format!("routevpn_tunnel_up{vti}")) == Some(&1.0)
            && s.samples
                .get(&format!("routevpn_bgp_session_established{nbr_l}"))
                == Some(&1.0)
            && s.samples.get(&format!("routevpn_bfd_session_up{nbr_l}")) == Some(&1.0)
            && s.samples
                .get(&format!("routevpn_bgp_prefixes_received{nbr_l}"))
                == Some(&1.0);
        ok.then_some(s)
            .ok_or_else(|| "left: tunnel, BGP and BFD not all up yet".to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&left.log(), 60)));
    let r = wait_until(T, POLL, || {
        let s = scrape(&topo.right, r_addr)?;
        (s.samples.get(&format!("routevpn_bfd_session_up{nbr_r}")) == Some(&1.0))
            .then_some(s)
            .ok_or_else(|| "right: BFD not up yet".to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&right.log(), 60)));
    assert_eq!(r.get(&format!("routevpn_tunnel_up{vti}")), 1.0);
    assert_eq!(
        r.get(&format!("routevpn_bgp_session_established{nbr_r}")),
        1.0
    );
    assert!(r.get(&format!("routevpn_ike_sa_established_total{vti}")) >= 1.0);
    assert!(before.get(&format!("routevpn_ike_sa_established_total{vti}")) >= 1.0);
    assert_eq!(
        before.get("routevpn_ike_failures_total{reason=\"auth_failed\",tunnel=\"vti0\"}"),
        0.0
    );
    // The initiator timed its setup.
    assert!(before.get("routevpn_ike_setup_seconds_count{}") >= 1.0);
    assert_eq!(
        before.get("routevpn_bfd_flaps_total{neighbor=\"169.254.12.2\"}"),
        0.0
    );
    eprintln!("left /metrics before traffic:\n{}", before.text);
    check_status_docs_and_screen(&left);

    // Traffic: a few hundred pings of 200 octets (228-octet IPv4 packets) each way.
    let (count, size) = (300u64, 200u64);
    let out = topo
        .left_host
        .run(&[
            "ping",
            "-c",
            "300",
            "-i",
            "0.005",
            "-W",
            "2",
            "-s",
            "200",
            "-q",
            Topology::RIGHT_HOST,
        ])
        .unwrap_or_else(|e| panic!("ping through the tunnel: {e}"));
    let got = received(&out);
    assert!(got > 0, "{out}");
    let after = scrape(&topo.left, l_addr).unwrap();
    let delta = |name: &str| after.get(name) - before.get(name);
    let (po, pi) = (
        delta("routevpn_tunnel_packets_total{direction=\"out\",tunnel=\"vti0\"}"),
        delta("routevpn_tunnel_packets_total{direction=\"in\",tunnel=\"vti0\"}"),
    );
    let (bo, bi) = (
        delta("routevpn_tunnel_bytes_total{direction=\"out\",tunnel=\"vti0\"}"),
        delta("routevpn_tunnel_bytes_total{direction=\"in\",tunnel=\"vti0\"}"),
    );
    eprintln!("ping: {count} sent, {got} received; metrics: out +{po} pkts +{bo} B, in +{pi} pkts +{bi} B");
    assert!(
        after.get("routevpn_child_sa_rekeys_total{tunnel=\"vti0\"}") >= 1.0,
        "no CHILD SA rekey during the ping:\n{}",
        after.text
    );
    assert!(po >= count as f64, "out packets +{po} < {count}");
    assert!(bo >= (count * (size + 28)) as f64, "out bytes +{bo}");
    assert!(pi >= got as f64, "in packets +{pi} < {got}");
    assert!(bi >= (got * (size + 28)) as f64, "in bytes +{bi}");

    // `down`: the gauge drops to 0, the counters stay.
    left.cli(&["down", "vti0", "--socket", left.socket().to_str().unwrap()])
        .unwrap();
    let down = wait_until(T, POLL, || {
        let s = scrape(&topo.left, l_addr)?;
        (s.get(&format!("routevpn_tunnel_up{vti}")) == 0.0)
            .then_some(s)
            .ok_or_else(|| "tunnel_up still 1".to_string())
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&left.log(), 60)));
    for k in [
        "routevpn_tunnel_packets_total{direction=\"out\",tunnel=\"vti0\"}",
        "routevpn_tunnel_bytes_total{direction=\"in\",tunnel=\"vti0\"}",
        "routevpn_ike_sa_established_total{tunnel=\"vti0\"}",
    ] {
        assert!(
            down.get(k) >= after.get(k),
            "{k} went backwards:\n{}",
            down.text
        );
    }

    // Reload without the tunnel: its series leave the output.
    std::fs::write(
        left.config_path(),
        config(true, l_addr, false).to_toml(left.socket()),
    )
    .unwrap();
    left.cli(&["reload", "--socket", left.socket().to_str().unwrap()])
        .unwrap();
    let gone = scrape(&topo.left, l_addr).unwrap();
    assert!(
        !gone.text.contains("tunnel=\"vti0\""),
        "removed tunnel still exported:\n{}",
        gone.text
    );
    assert!(gone
        .samples
        .contains_key("routevpn_ike_setup_seconds_count{}"));
}
