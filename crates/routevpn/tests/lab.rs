//! End to end: `routevpn lab --json` builds the three-router triangle, cuts the A–B
//! link, and must see traffic recover via C and return to A–B after the restore.
//!
//! Recovery is asserted, not timings: the outage (BFD 50 ms × 3 by default) is
//! printed; it is a benchmark figure, not a pass/fail bound (DEVELOPERS.md). The lab runs
//! with `--keep` so that, besides its own report, the test checks the kept triangle
//! independently (kernel routes, pings between the hosts, each daemon's status) and then
//! removes it with `lab --down`.

use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn triangle_heals_around_a_cut_link_and_fails_back() {
    if !testbed::require_programs(&["ip", "nft"]) {
        return;
    }
    // The lab uses fixed namespace names; another lab (a kept one) means we cannot run.
    let existing: Vec<String> = testbed::netns_list()
        .into_iter()
        .filter(|n| n.starts_with("rvlab-"))
        .collect();
    assert!(
        existing.is_empty(),
        "a routevpn lab is already running ({existing:?}); remove it with `routevpn lab --down`"
    );
    let mut child = Command::new(testbed::routevpn_bin())
        .args(["lab", "--json", "--keep"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start routevpn lab");
    // Drain stderr (the timeline) on a thread so the pipe never fills.
    let mut err = child.stderr.take().expect("stderr");
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut err, &mut s);
        s
    });
    let start = Instant::now();
    // Whatever happens below, the kept lab is removed.
    let _down = LabDown;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > TIMEOUT {
            // SIGTERM lets the lab clean its namespaces and daemons up.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let st = child.wait().expect("wait after SIGTERM");
            panic!(
                "routevpn lab did not finish within {TIMEOUT:?} ({st}); timeline:\n{}",
                err_reader.join().unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut out)
        .expect("read stdout");
    let timeline = err_reader.join().unwrap_or_default();
    let report: Value = serde_json::from_str(out.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {out}\n{timeline}"));
    eprintln!("{timeline}");
    eprintln!(
        "lab: outage {} ms, route detour {} ms, fail-back {} ms, {} of {} probes lost",
        report["outage_ms"],
        report["detour_route_ms"],
        report["failback_ms"],
        report["lost_packets"],
        report["probes_sent"]
    );
    let ctx = || format!("report: {report:#}\ntimeline:\n{timeline}");
    assert_eq!(report["ok"], true, "{}", ctx());
    assert!(status.success(), "exit status {status} with ok=true");
    assert_eq!(report["error"], Value::Null, "{}", ctx());
    assert_eq!(report["routing"], "bgp", "{}", ctx());
    assert_eq!(report["tunnels_up"], 6, "{}", ctx());
    assert_eq!(report["bgp_established"], 6, "{}", ctx());
    assert_eq!(report["detour_dev"], "ac", "traffic went via C: {}", ctx());
    assert!(report["outage_ms"].as_u64().is_some(), "{}", ctx());
    // The lab runs BFD with the ESP hint by default, and says what took A–B down
    // (which of the two wins depends on timing, so either is fine here).
    assert_eq!(report["bfd"], "50ms x 3, ESP hint", "{}", ctx());
    assert!(
        matches!(
            report["detected_by"].as_str(),
            Some("ESP hint" | "BFD Detection Time")
        ),
        "{}",
        ctx()
    );
    // Fail-back is make-before-break: the path via C carries traffic until A–B is back.
    assert_eq!(report["lost_after_restore"], 0, "{}", ctx());
    assert!(report["failback_ms"].as_u64().is_some(), "{}", ctx());
    let steps = report["steps"].as_array().expect("steps");
    assert!(
        steps.len() >= 6 && steps.iter().all(|s| s["ok"] == true),
        "{}",
        ctx()
    );
    // Every probe sent after the restore was answered, and routes returned to A–B.
    let during = &report["routes"]["during_cut"]["A"];
    assert!(
        during.as_array().is_some_and(|r| r.iter().any(|l| l
            .as_str()
            .is_some_and(|l| l.starts_with("10.2.0.0/24") && l.contains("dev ac")))),
        "{}",
        ctx()
    );
    let after = &report["routes"]["after_failback"]["A"];
    assert!(
        after.as_array().is_some_and(|r| r.iter().any(|l| l
            .as_str()
            .is_some_and(|l| l.starts_with("10.2.0.0/24") && l.contains("dev ab")))),
        "{}",
        ctx()
    );
    check_kept_lab();
    // `lab --down` removes everything: daemons, namespaces, state directory.
    let pids: Vec<u32> = ['A', 'B', 'C']
        .iter()
        .map(|r| {
            let p = format!("{STATE}/{r}/routevpn.pid");
            std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("kept lab has no {p}: {e}"))
                .trim()
                .parse()
                .expect("pid")
        })
        .collect();
    let down = Command::new(testbed::routevpn_bin())
        .args(["lab", "--down"])
        .output()
        .expect("run lab --down");
    assert!(
        down.status.success(),
        "lab --down: {}",
        String::from_utf8_lossy(&down.stderr)
    );
    for pid in pids {
        // A zombie awaiting its reaper (init: the lab has exited) has stopped running.
        let state = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let running = state
            .lines()
            .find(|l| l.starts_with("State:"))
            .is_some_and(|l| !l.contains("Z (zombie)"));
        assert!(!running, "daemon {pid} still running after lab --down");
    }
    // Nothing is left behind.
    let left: Vec<String> = testbed::netns_list()
        .into_iter()
        .filter(|n| n.starts_with("rvlab-"))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(
        !std::path::Path::new(STATE).exists(),
        "state dir left behind"
    );
}

const STATE: &str = "/run/routevpn-lab";

/// The kept lab, seen from outside: A's kernel routes, reachability between every pair of
/// hosts, and each daemon's own status.
fn check_kept_lab() {
    let ns = |n: &str| format!("rvlab-{n}");
    for n in ["A", "B", "C", "hostA", "hostB", "hostC"] {
        assert!(
            testbed::netns_list().contains(&ns(n)),
            "--keep kept namespace {}",
            ns(n)
        );
    }
    let routes = testbed::ns::exec(&ns("A"), &["ip", "route", "show", "10.2.0.0/24"])
        .expect("ip route in rvlab-A");
    assert!(
        routes.contains("dev ab") && routes.contains("proto"),
        "A reaches B's site directly again: {routes}"
    );
    for (from, to) in [
        ("hostA", "10.2.0.2"),
        ("hostA", "10.3.0.2"),
        ("hostB", "10.3.0.2"),
    ] {
        let r = testbed::ns::exec(&ns(from), &["ping", "-c", "3", "-i", "0.2", "-W", "2", to]);
        assert!(r.is_ok(), "{from} → {to} through the kept lab: {r:?}");
    }
    for r in ['A', 'B', 'C'] {
        let out = Command::new(testbed::routevpn_bin())
            .args([
                "status",
                "--json",
                "--socket",
                &format!("{STATE}/{r}/routevpn.sock"),
            ])
            .output()
            .expect("routevpn status");
        assert!(out.status.success(), "status of {r}: {out:?}");
        let st: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        let tunnels = st["tunnels"].as_array().expect("tunnels");
        assert_eq!(tunnels.len(), 2, "{r}: {st:#}");
        for t in tunnels {
            assert_eq!(
                testbed::json_str(t, "/state"),
                "up",
                "{r}: every tunnel up: {st:#}"
            );
        }
    }
}

/// Removes a kept lab when the test ends, whether it passed or not.
struct LabDown;

impl Drop for LabDown {
    fn drop(&mut self) {
        if testbed::netns_list()
            .iter()
            .any(|n| n.starts_with("rvlab-"))
        {
            let _ = Command::new(testbed::routevpn_bin())
                .args(["lab", "--down"])
                .status();
        }
    }
}
