//! End to end: `routevpn lab --json` builds the three-router triangle, cuts the A–B
//! link, and must see traffic recover via C and return to A–B after the restore.
//!
//! Only recovery is asserted. The timings are printed; the outage (BFD 100 ms × 3, about
//! 0.3 s here) is checked only against a generous 5 s bound so a loaded CI machine does
//! not fail the test (DEVELOPERS.md: timings belong in benchmarks).

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
        .args(["lab", "--json"])
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
    let outage = report["outage_ms"].as_u64().expect("outage_ms");
    assert!(
        outage < 5000,
        "outage {outage} ms (generous bound): {}",
        ctx()
    );
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
    // Nothing is left behind.
    let left: Vec<String> = testbed::netns_list()
        .into_iter()
        .filter(|n| n.starts_with("rvlab-"))
        .collect();
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    assert!(
        !std::path::Path::new("/run/routevpn-lab").exists(),
        "state dir left behind"
    );
}
