//! The throughput table as Markdown (`--markdown FILE`), for the README's performance
//! section: the benchmark writes it, nobody retypes figures.

use crate::json::{Obj, J};
use crate::report::{run_of, runs};

fn cell(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "–".to_string(), |x| format!("{x:.prec$}"))
}

fn div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    a.zip(b).filter(|&(_, b)| b != 0.0).map(|(a, b)| a / b)
}

/// One row per case and stream count, with throughput against the plain path and
/// routevpn against each row (Gbit/s: routevpn ÷ row; CPU-s/GB: row ÷ routevpn, so
/// above 1 means routevpn is ahead in both).
pub fn table(cases: &Obj, streams: &[i64]) -> String {
    let mut out = String::from(
        "| case | streams | Gbit/s | dataplane CPU-s/GB | machine CPU-s/GB | Gbit/s ÷ plain | routevpn Gbit/s ÷ this | this CPU-s/GB ÷ routevpn's |\n\
         |------|--------:|-------:|-------------------:|-----------------:|---------------:|-----------------------:|---------------------------:|\n",
    );
    for (name, c) in cases.iter() {
        let J::Obj(c) = c else { continue };
        let label = c.str("label");
        if runs(c).next().is_none() {
            let why = c.str("error").replace('|', "/");
            out.push_str(&format!(
                "| {label} | – | {}: {why} | | | | | |\n",
                c.str("status").to_uppercase()
            ));
            continue;
        }
        for &s in streams {
            let Some(r) = run_of(cases, name, s) else {
                out.push_str(&format!("| {label} | {s} | FAILED | | | | | |\n"));
                continue;
            };
            let f = |case: &str, k: &str| run_of(cases, case, s).and_then(|r| r.num(k));
            let (g, d) = (r.num("gbit_s"), r.num("dataplane_cpu_s_per_gb"));
            out.push_str(&format!(
                "| {label} | {s} | {} | {} | {} | {} | {} | {} |\n",
                cell(g, 2),
                cell(d, 2),
                cell(r.num("machine_cpu_s_per_gb"), 2),
                cell(div(g, f("veth", "gbit_s")), 3),
                cell(div(f("routevpn", "gbit_s"), g), 2),
                cell(div(d, f("routevpn", "dataplane_cpu_s_per_gb")), 2),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(label: &str, runs: Vec<J>) -> J {
        J::Obj(
            Obj::new()
                .with("label", label)
                .with("status", "ok")
                .with("runs", J::Arr(runs)),
        )
    }

    fn run(s: u32, g: f64, d: f64, m: f64) -> J {
        J::Obj(
            Obj::new()
                .with("streams", s)
                .with("status", "ok")
                .with("gbit_s", g)
                .with("dataplane_cpu_s_per_gb", d)
                .with("machine_cpu_s_per_gb", m),
        )
    }

    #[test]
    fn rows_ratios_and_a_skipped_case() {
        let mut cases = Obj::new()
            .with("veth", case("plain veth", vec![run(1, 20.0, 0.5, 1.0)]))
            .with("routevpn", case("routevpn", vec![run(1, 5.0, 2.0, 4.0)]))
            .with(
                "wireguard-go",
                case("wireguard-go", vec![run(1, 0.5, 16.0, 30.0)]),
            );
        cases.set(
            "boringtun",
            Obj::new()
                .with("label", "boringtun")
                .with("status", "skipped")
                .with("error", "boringtun-cli not found")
                .with("runs", J::Arr(vec![])),
        );
        let t = table(&cases, &[1]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 6, "{t}");
        assert_eq!(
            lines[2],
            "| plain veth | 1 | 20.00 | 0.50 | 1.00 | 1.000 | 0.25 | 0.25 |"
        );
        assert_eq!(
            lines[3],
            "| routevpn | 1 | 5.00 | 2.00 | 4.00 | 0.250 | 1.00 | 1.00 |"
        );
        assert_eq!(
            lines[4],
            "| wireguard-go | 1 | 0.50 | 16.00 | 30.00 | 0.025 | 10.00 | 8.00 |"
        );
        assert_eq!(
            lines[5],
            "| boringtun | – | SKIPPED: boringtun-cli not found | | | | | |"
        );
    }

    #[test]
    fn a_failed_run_is_a_row_saying_so() {
        let mut failed = Obj::new().with("streams", 4u32).with("status", "failed");
        failed.set("gbit_s", 9.0);
        let cases = Obj::new().with("routevpn", case("routevpn", vec![J::Obj(failed)]));
        let t = table(&cases, &[4]);
        assert_eq!(
            t.lines().nth(2),
            Some("| routevpn | 4 | FAILED | | | | | |")
        );
    }
}
