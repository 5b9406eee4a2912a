//! The outcome of a run: the JSON report (`--json`) and the human summary table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{BGP_SESSION_ENDS, TUNNEL_ENDS};

/// One step of the run, in the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    pub start_ms: u64,
    pub end_ms: u64,
    pub ok: bool,
    pub detail: String,
}

/// The outcome of a run (`--json` prints it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Every step worked (with BGP routing).
    pub ok: bool,
    pub error: Option<String>,
    /// `bgp`, or `static` when this build's daemon has no BGP speaker yet.
    pub routing: String,
    /// BFD on every neighbour, e.g. `50ms x 3, ESP hint`.
    pub bfd: String,
    /// What took A's BFD session with B down at the cut: `ESP hint` or `BFD Detection
    /// Time` (from A's status counters).
    pub detected_by: Option<String>,
    /// Tunnel ends up (of 6: three tunnels, two ends each).
    pub tunnels_up: usize,
    /// BGP session ends in Established (of 6), counted from the daemons' status.
    pub bgp_established: usize,
    /// Cut → first reply to a probe sent after the cut.
    pub outage_ms: Option<u64>,
    /// Cut → A's route to 10.2.0.0/24 leaves the A–B tunnel.
    pub detour_route_ms: Option<u64>,
    /// Device of A's route to 10.2.0.0/24 during the cut (`ac`: via C).
    pub detour_dev: Option<String>,
    /// Restore → A's route to 10.2.0.0/24 is on the A–B tunnel again.
    pub failback_ms: Option<u64>,
    /// Probes never answered over the whole run.
    pub lost_packets: Option<u64>,
    pub lost_after_cut: Option<u64>,
    pub lost_after_restore: Option<u64>,
    pub probes_sent: Option<u64>,
    pub probes_received: Option<u64>,
    /// Longest gap between two replies.
    pub max_gap_ms: Option<u64>,
    pub steps: Vec<Step>,
    /// Site routes of each router: before the cut, during it, after fail-back.
    pub routes: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    pub state_dir: String,
    pub kept: bool,
}

fn opt_ms(v: Option<u64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v} ms"))
}

/// The human summary printed on stdout.
pub fn summary_table(r: &Report) -> String {
    let mut s = String::new();
    let rows = [
        ("routing", r.routing.clone()),
        ("tunnel ends up", format!("{}/{TUNNEL_ENDS}", r.tunnels_up)),
        (
            "BGP sessions established",
            format!("{}/{BGP_SESSION_ENDS} ends", r.bgp_established),
        ),
        ("BFD", r.bfd.clone()),
        ("outage (cut -> replies via C)", opt_ms(r.outage_ms)),
        (
            "A's BFD to B went down on",
            r.detected_by.clone().unwrap_or_else(|| "-".into()),
        ),
        (
            "route detour (A -> 10.2.0.0/24)",
            match (&r.detour_dev, r.detour_route_ms) {
                (Some(d), Some(t)) => format!("dev {d} after {t} ms"),
                _ => "-".into(),
            },
        ),
        ("fail-back (restore -> dev ab)", opt_ms(r.failback_ms)),
        (
            "packets lost",
            match (r.lost_packets, r.probes_sent) {
                (Some(l), Some(s)) => format!("{l} of {s}"),
                _ => "-".into(),
            },
        ),
        ("longest reply gap", opt_ms(r.max_gap_ms)),
        (
            "result",
            if r.ok {
                "OK".to_string()
            } else {
                format!("FAILED: {}", r.error.as_deref().unwrap_or("?"))
            },
        ),
    ];
    let _ = writeln!(s, "\nrouteVPN lab summary");
    for (k, v) in rows {
        let _ = writeln!(s, "  {k:<32} {v}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_json_has_the_documented_fields() {
        let r = Report {
            ok: true,
            routing: "bgp".into(),
            tunnels_up: 6,
            bgp_established: 6,
            outage_ms: Some(350),
            failback_ms: Some(1200),
            lost_packets: Some(40),
            ..Report::default()
        };
        let v = serde_json::to_value(&r).unwrap();
        for k in [
            "ok",
            "error",
            "tunnels_up",
            "bgp_established",
            "outage_ms",
            "failback_ms",
            "lost_packets",
            "steps",
            "routes",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
        assert_eq!(v["outage_ms"], 350);
        let t = summary_table(&r);
        assert!(
            t.contains("6/6") && t.contains("350 ms") && t.contains("OK"),
            "{t}"
        );
    }
}
