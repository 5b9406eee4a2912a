//! The final JSON (meta, cases with their runs, ratios) and the table on stdout.

use crate::json::{round, Obj, J};
use crate::{Case, CASES};
use std::path::Path;

fn ratio(a: Option<f64>, b: Option<f64>) -> J {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => J::Num(round(a / b, 4)),
        _ => J::Null,
    }
}

fn fmt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".to_string(), |x| format!("{x:.prec$}"))
}

/// Groups the records by case: each case's runs, plus its case-level facts (setup
/// details, background load, failure) as fields in the order they were recorded.
fn cases(meta: &Obj, records: &[Obj]) -> Obj {
    let requested: Vec<&str> = match meta.get("cases_requested") {
        Some(J::Arr(a)) => a
            .iter()
            .filter_map(|j| match j {
                J::Str(s) => Some(s.as_str()),
                _ => None,
            })
            .collect(),
        _ => CASES.iter().map(|c| c.name()).collect(),
    };
    let empty = |label: &str, description: &str| {
        Obj::new()
            .with("label", label)
            .with("description", description)
            .with("status", "not run")
            .with("runs", J::Arr(Vec::new()))
    };
    let mut cases = Obj::new();
    for c in CASES.iter().filter(|c| requested.contains(&c.name())) {
        cases.set(c.name(), empty(c.label(), &c.description()));
    }
    for r in records {
        let name = r.str("case");
        if !cases.contains(name) {
            cases.set(name, empty(name, ""));
        }
        let Some(J::Obj(c)) = cases.get_mut(name) else {
            continue;
        };
        if r.contains("streams") {
            if let Some(J::Arr(runs)) = c.get_mut("runs") {
                runs.push(J::Obj(r.clone()));
            }
        } else {
            for (k, v) in r.iter().filter(|(k, _)| k != "case") {
                c.set(k, v.clone());
            }
        }
    }
    for (_, c) in cases.iter_mut() {
        let J::Obj(c) = c else { continue };
        let runs_ok: Vec<bool> = runs(c).map(|r| r.str("status") == "ok").collect();
        if c.str("status") == "not run" && !runs_ok.is_empty() {
            let all = runs_ok.iter().all(|&ok| ok);
            c.set("status", if all { "ok" } else { "failed" });
        }
        if c.str("status") == "ok" && runs_ok.iter().any(|&ok| !ok) {
            c.set("status", "failed");
        }
    }
    cases
}

pub fn runs(c: &Obj) -> impl Iterator<Item = &Obj> {
    let list = match c.get("runs") {
        Some(J::Arr(a)) => a.as_slice(),
        _ => &[],
    };
    list.iter().filter_map(|j| match j {
        J::Obj(o) => Some(o),
        _ => None,
    })
}

/// The successful run of `case` with `streams` streams.
pub fn run_of<'a>(cases: &'a Obj, case: &str, streams: i64) -> Option<&'a Obj> {
    let Some(J::Obj(c)) = cases.get(case) else {
        return None;
    };
    runs(c).find(|r| r.get("streams") == Some(&J::Int(streams)) && r.str("status") == "ok")
}

/// The ratio entries: (JSON key, text label, case a, case b, all four figures or only
/// Gbit/s and machine s/GB).
const RATIOS: [(&str, &str, &str, &str, bool); 7] = [
    (
        "routevpn_vs_strongswan",
        "routevpn / strongSwan",
        "routevpn",
        "strongswan",
        true,
    ),
    (
        "routevpn_vs_plain",
        "routevpn / plain veth",
        "routevpn",
        "veth",
        true,
    ),
    (
        "strongswan_vs_plain",
        "strongSwan / plain veth",
        "strongswan",
        "veth",
        false,
    ),
    (
        "routevpn_vs_boringtun",
        "routevpn / boringtun",
        "routevpn",
        "boringtun",
        true,
    ),
    (
        "routevpn_vs_wireguard_go",
        "routevpn / wireguard-go",
        "routevpn",
        "wireguard-go",
        true,
    ),
    (
        "boringtun_vs_plain",
        "boringtun / plain veth",
        "boringtun",
        "veth",
        false,
    ),
    (
        "wireguard_go_vs_plain",
        "wireguard-go / plain veth",
        "wireguard-go",
        "veth",
        false,
    ),
];

fn ratios(cases: &Obj, streams: &[i64]) -> Obj {
    let mut out = Obj::new();
    for &s in streams {
        let field = |r: Option<&Obj>, k: &str| r.and_then(|r| r.num(k));
        let block = |a: Option<&Obj>, b: Option<&Obj>, keys: &[&str]| {
            keys.iter().fold(Obj::new(), |o, k| {
                o.with(k, ratio(field(a, k), field(b, k)))
            })
        };
        let four = [
            "gbit_s",
            "machine_cpu_s_per_gb",
            "dataplane_cpu_s_per_gb",
            "kernel_cpu_s_per_gb",
        ];
        let mut entry = Obj::new();
        for (key, _, a, b, all) in RATIOS {
            let keys: &[&str] = if all { &four } else { &four[..2] };
            entry.set(key, block(run_of(cases, a, s), run_of(cases, b, s), keys));
        }
        out.set(&s.to_string(), entry);
    }
    out
}

/// Writes the JSON to `out_path` (and the Markdown table to `markdown_out`), prints the
/// table; Ok(true) when every case ran or was skipped for a missing tool.
pub fn report(
    meta: &Obj,
    records: &[Obj],
    out_path: &Path,
    markdown_out: Option<&Path>,
    finished: &str,
) -> std::io::Result<bool> {
    let streams: Vec<i64> = match meta.get("streams") {
        Some(J::Arr(a)) => a
            .iter()
            .filter_map(|j| match j {
                J::Int(i) => Some(*i),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let cases = cases(meta, records);
    let ratios = ratios(&cases, &streams);
    let mut out = meta.clone();
    out.remove("case_descriptions");
    out.set("cases", cases.clone());
    out.set("ratios", ratios.clone());
    out.set("finished", finished);
    let tmp = out_path.with_file_name(format!(
        "{}.tmp",
        out_path.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&tmp, J::Obj(out).pretty() + "\n")?;
    std::fs::rename(&tmp, out_path)?;
    if let Some(md) = markdown_out {
        std::fs::write(md, crate::markdown::table(&cases, &streams))?;
    }

    let hdr = format!(
        "{:<12} {:>7} {:>8} {:>6} {:>12} {:>11} {:>11} {:>13} {:>12} {:>6}",
        "case",
        "streams",
        "Gbit/s",
        "retr",
        "daemon CPU s",
        "daemon s/GB",
        "kernel s/GB",
        "machine CPU s",
        "machine s/GB",
        "busy %"
    );
    println!("{hdr}");
    println!("{}", "-".repeat(hdr.chars().count()));
    for (_, c) in cases.iter() {
        let J::Obj(c) = c else { continue };
        let label = c.str("label");
        let status = c.str("status").to_uppercase();
        if runs(c).next().is_none() {
            println!("{label:<12} {status}: {}", c.str("error"));
            continue;
        }
        for r in runs(c) {
            let n = r.get("streams").and_then(J::as_f64).unwrap_or(0.0) as i64;
            if r.str("status") != "ok" {
                println!("{label:<12} {n:>7} FAILED: {}", r.str("error"));
                continue;
            }
            let v = |k: &str| r.num(k);
            println!(
                "{label:<12} {n:>7} {:>8.3} {:>6} {:>12} {:>11} {:>11.3} {:>13.2} {:>12.3} {:>6}",
                v("gbit_s").unwrap_or(0.0),
                fmt(v("retransmits"), 0),
                fmt(v("daemon_cpu_s"), 2),
                fmt(v("daemon_cpu_s_per_gb"), 3),
                v("kernel_cpu_s_per_gb").unwrap_or(0.0),
                v("machine_cpu_s").unwrap_or(0.0),
                v("machine_cpu_s_per_gb").unwrap_or(0.0),
                fmt(v("machine_util_pct"), 0),
            );
        }
        if c.str("status") != "ok" && !c.str("error").is_empty() {
            println!("{:<12} {status}: {}", "", c.str("error"));
        }
    }
    crate::latency::print_table(&cases);
    println!();
    println!("ratios (a/b; throughput: higher is better for a, s/GB: lower is better for a)");
    println!(
        "{:<28} {:>7} {:>8} {:>12} {:>14}",
        "", "streams", "Gbit/s", "machine s/GB", "dataplane s/GB"
    );
    for s in &streams {
        let Some(J::Obj(e)) = ratios.get(&s.to_string()) else {
            continue;
        };
        for (name, label, ..) in RATIOS {
            let Some(J::Obj(x)) = e.get(name) else {
                continue;
            };
            println!(
                "{label:<28} {s:>7} {:>8} {:>12} {:>14}",
                fmt(x.num("gbit_s"), 3),
                fmt(x.num("machine_cpu_s_per_gb"), 3),
                fmt(x.num("dataplane_cpu_s_per_gb"), 3),
            );
        }
    }
    println!();
    println!(
        "daemon = utime+stime of the VPN processes of both ends (routevpn, charon, boringtun-cli, \
         wireguard-go); kernel = machine-wide \
         system+irq+softirq;\nmachine = all busy CPU from /proc/stat (user+nice+system+irq+softirq), \
         iperf3 included; busy % of all CPUs.\n1 GB = 10^9 bytes received by iperf3. \
         dataplane s/GB = daemon s/GB for a tunnel, kernel s/GB for plain veth."
    );
    let noisy: Vec<String> = cases
        .iter()
        .filter_map(|(_, c)| match c {
            J::Obj(c) => Some(c),
            _ => None,
        })
        .filter_map(|c| {
            let bg = c.num("background_busy_pct_before")?;
            (bg > 20.0 && runs(c).next().is_some()).then(|| format!("{} {bg:.0}%", c.str("label")))
        })
        .collect();
    if !noisy.is_empty() {
        println!(
            "WARNING: the machine was already busy before these cases ({} of all CPUs, measured \
             over 1 s):\nthroughput is CPU-starved and kernel/machine s/GB include that other \
             load; daemon s/GB counts only the daemons' own CPU time\n(still slowed by \
             contention, but not inflated by other processes).",
            noisy.join(", ")
        );
    }
    println!("JSON written to {}", out_path.display());
    if let Some(md) = markdown_out {
        println!("Markdown table written to {}", md.display());
    }
    let skipped: Vec<&str> = cases
        .iter()
        .filter_map(|(_, c)| match c {
            J::Obj(c) if c.str("status") == "skipped" => Some(c.str("label")),
            _ => None,
        })
        .collect();
    if !skipped.is_empty() {
        println!(
            "SKIPPED (tool missing, no figures): {}; see the SKIPPED lines above",
            skipped.join(", ")
        );
    }
    // A skipped comparison is reported, not failed: this is a benchmark, not a test.
    let all_ok = cases
        .iter()
        .all(|(_, c)| matches!(c, J::Obj(c) if matches!(c.str("status"), "ok" | "skipped")));
    Ok(all_ok)
}

/// A case-level record: setup facts or a failure.
pub fn info(case: Case) -> Obj {
    Obj::new().with("case", case.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_collect_runs_and_facts_and_ratios_divide() {
        let meta = Obj::new().with("streams", vec![J::Int(1)]).with(
            "cases_requested",
            vec![J::from("veth"), J::from("routevpn")],
        );
        let run = |case: &str, g: f64| {
            Obj::new()
                .with("case", case)
                .with("streams", 1u32)
                .with("status", "ok")
                .with("gbit_s", g)
        };
        let recs = vec![
            info(Case::Veth).with("path_mtu", 1500u32),
            run("veth", 4.0),
            run("routevpn", 2.0),
            info(Case::Routevpn)
                .with("status", "failed")
                .with("error", "x"),
        ];
        let c = cases(&meta, &recs);
        let Some(J::Obj(v)) = c.get("veth") else {
            panic!()
        };
        assert_eq!(v.str("status"), "ok");
        assert_eq!(v.num("path_mtu"), Some(1500.0));
        let Some(J::Obj(r)) = c.get("routevpn") else {
            panic!()
        };
        assert_eq!(r.str("status"), "failed");
        let rat = ratios(&c, &[1]);
        let Some(J::Obj(e)) = rat.get("1") else {
            panic!()
        };
        let Some(J::Obj(x)) = e.get("routevpn_vs_plain") else {
            panic!()
        };
        assert_eq!(x.num("gbit_s"), Some(0.5));
    }

    #[test]
    fn wireguard_rows_get_ratios_and_a_skip_stays_a_skip() {
        let meta = Obj::new().with("streams", vec![J::Int(4)]).with(
            "cases_requested",
            vec![
                J::from("veth"),
                J::from("routevpn"),
                J::from("boringtun"),
                J::from("wireguard-go"),
            ],
        );
        let run = |case: &str, g: f64, d: f64| {
            Obj::new()
                .with("case", case)
                .with("streams", 4u32)
                .with("status", "ok")
                .with("gbit_s", g)
                .with("dataplane_cpu_s_per_gb", d)
        };
        let recs = vec![
            run("veth", 20.0, 0.5),
            run("routevpn", 6.0, 2.0),
            run("wireguard-go", 0.75, 16.0),
            info(Case::Boringtun)
                .with("status", "skipped")
                .with("error", "boringtun-cli not found"),
        ];
        let c = cases(&meta, &recs);
        let Some(J::Obj(b)) = c.get("boringtun") else {
            panic!()
        };
        assert_eq!(b.str("status"), "skipped");
        let Some(J::Obj(w)) = c.get("wireguard-go") else {
            panic!()
        };
        assert_eq!(w.str("status"), "ok");
        let rat = ratios(&c, &[4]);
        let Some(J::Obj(e)) = rat.get("4") else {
            panic!()
        };
        let pick = |key: &str, field: &str| match e.get(key) {
            Some(J::Obj(x)) => x.get(field).cloned(),
            _ => None,
        };
        assert_eq!(
            pick("routevpn_vs_wireguard_go", "gbit_s"),
            Some(J::Num(8.0))
        );
        assert_eq!(
            pick("routevpn_vs_wireguard_go", "dataplane_cpu_s_per_gb"),
            Some(J::Num(0.125))
        );
        assert_eq!(
            pick("wireguard_go_vs_plain", "gbit_s"),
            Some(J::Num(0.0375))
        );
        // No boringtun figure: its ratios are null, not 0 or missing.
        assert_eq!(pick("routevpn_vs_boringtun", "gbit_s"), Some(J::Null));
        assert_eq!(pick("boringtun_vs_plain", "gbit_s"), Some(J::Null));
    }
}
