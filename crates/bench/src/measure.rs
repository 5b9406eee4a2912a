//! CPU accounting from /proc and one result record per iperf3 run.
//!
//! Units: 1 GB = 10^9 bytes of TCP payload received by the iperf3 server; CPU seconds
//! are USER_HZ ticks / CLK_TCK.

use crate::json::{round, Obj};
use std::path::Path;
use std::time::{Duration, Instant};

const GB: f64 = 1e9;

/// USER_HZ: the unit of /proc/stat and /proc/PID/stat times.
pub fn clk_tck() -> i64 {
    // SAFETY: sysconf only reads a configuration value.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as i64
    } else {
        100
    }
}

/// CPUs online (what the busy percentage is relative to).
pub fn cpu_count() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 {
        n as f64
    } else {
        1.0
    }
}

/// utime+stime of a whole process (all its threads), or None if it is gone.
pub fn proc_ticks(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: split after the last ')'.
    let rest: Vec<&str> = s.get(s.rfind(')')? + 2..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); utime is field 14, stime field 15.
    Some(rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?)
}

/// `key:  value kB` (or a plain number) from /proc/PID/status.
pub fn status_field(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// The machine-wide "cpu" line of /proc/stat: user nice system idle iowait irq softirq
/// steal guest guest_nice.
pub fn cpu_ticks() -> [u64; 10] {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut vals = [0u64; 10];
    if let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) {
        for (slot, v) in vals.iter_mut().zip(line.split_whitespace().skip(1)) {
            *slot = v.parse().unwrap_or(0);
        }
    }
    vals
}

/// Guest time is already in user/nice; steal is not ours.
fn busy_of(d: &[u64; 10]) -> u64 {
    d[0] + d[1] + d[2] + d[5] + d[6]
}

/// CPU counters at one instant: the machine's and each daemon PID's.
#[derive(Clone, Debug)]
pub struct Snap {
    at: Instant,
    cpu: [u64; 10],
    pids: Vec<(u32, Option<u64>)>,
}

impl Snap {
    /// CPU seconds the PIDs used since `before`; None if one exited or there are none.
    pub fn daemon_cpu_since(&self, before: &Snap) -> Option<f64> {
        let mut total = 0;
        for (pid, t0) in &before.pids {
            let t1 = self.pids.iter().find(|(p, _)| p == pid)?.1?;
            total += t1.checked_sub((*t0)?)?;
        }
        (!before.pids.is_empty()).then(|| total as f64 / clk_tck() as f64)
    }
}

pub fn snap(pids: &[u32]) -> Snap {
    Snap {
        at: Instant::now(),
        cpu: cpu_ticks(),
        pids: pids.iter().map(|&p| (p, proc_ticks(p))).collect(),
    }
}

/// Busy % of the whole machine over `d` (the background load before a case).
pub fn baseline(d: Duration) -> f64 {
    let (t0, c0) = (Instant::now(), cpu_ticks());
    std::thread::sleep(d);
    let (t1, c1) = (Instant::now(), cpu_ticks());
    let delta: [u64; 10] = std::array::from_fn(|i| c1[i].saturating_sub(c0[i]));
    let busy = busy_of(&delta) as f64 / clk_tck() as f64;
    100.0 * busy / ((t1 - t0).as_secs_f64() * cpu_count())
}

fn per_gb(seconds: f64, nbytes: f64) -> f64 {
    seconds / (nbytes / GB)
}

/// One result record from an iperf3 `-J` file and the snapshots around the run.
pub fn run_record(
    case: &str,
    streams: u32,
    iperf_json: &Path,
    before: &Snap,
    after: &Snap,
    iperf3_exit: i32,
) -> Obj {
    let mut rec = Obj::new()
        .with("case", case)
        .with("streams", streams)
        .with("iperf3_exit", i64::from(iperf3_exit));
    let fail = |mut rec: Obj, error: String| {
        rec.set("status", "failed");
        rec.set("error", error);
        rec
    };
    let ip: serde_json::Value = match std::fs::read_to_string(iperf_json)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => return fail(rec, format!("no usable iperf3 JSON ({e})")),
    };
    if let Some(e) = ip.get("error").filter(|e| !e.is_null()) {
        let e = e.as_str().map_or_else(|| e.to_string(), str::to_string);
        return fail(rec, format!("iperf3: {e}"));
    }
    let end = &ip["end"];
    let recv = &end["sum_received"];
    let sent = &end["sum_sent"];
    let nbytes = recv["bytes"].as_u64().unwrap_or(0);
    if nbytes == 0 {
        return fail(rec, "iperf3 received 0 bytes".into());
    }
    let nb = nbytes as f64;
    let tck = clk_tck() as f64;
    let d: [u64; 10] = std::array::from_fn(|i| after.cpu[i].saturating_sub(before.cpu[i]));
    let wall = (after.at - before.at).as_secs_f64();
    let busy = busy_of(&d) as f64 / tck;
    let kernel = (d[2] + d[5] + d[6]) as f64 / tck;
    let mut daemon = None;
    let mut by_pid = Obj::new();
    if !before.pids.is_empty() {
        let mut total = 0u64;
        for (pid, t0) in &before.pids {
            let t1 = after.pids.iter().find(|(p, _)| p == pid).and_then(|x| x.1);
            let (Some(t0), Some(t1)) = (t0, t1) else {
                return fail(rec, format!("VPN daemon PID {pid} exited during the run"));
            };
            by_pid.set(&pid.to_string(), round((t1 - t0) as f64 / tck, 3));
            total += t1 - t0;
        }
        daemon = Some(total as f64 / tck);
    }
    let cpu_util = &end["cpu_utilization_percent"];
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
    let kernel_per_gb = round(per_gb(kernel, nb), 4);
    let daemon_per_gb = daemon.map(|s| round(per_gb(s, nb), 4));
    rec.set("status", "ok");
    rec.set("seconds", round(num(&recv["seconds"]), 3));
    rec.set("bytes", nbytes);
    rec.set("gbit_s", round(num(&recv["bits_per_second"]) / 1e9, 4));
    rec.set("retransmits", sent["retransmits"].as_i64());
    rec.set("daemon_cpu_s", daemon.map(|s| round(s, 3)));
    rec.set("daemon_cpu_s_by_pid", by_pid);
    rec.set("daemon_cpu_s_per_gb", daemon_per_gb);
    rec.set("kernel_cpu_s", round(kernel, 3));
    rec.set("kernel_cpu_s_per_gb", kernel_per_gb);
    rec.set("machine_wall_s", round(wall, 3));
    rec.set("machine_cpu_s", round(busy, 3));
    rec.set("machine_user_s", round((d[0] + d[1]) as f64 / tck, 3));
    rec.set("machine_system_s", round(d[2] as f64 / tck, 3));
    rec.set(
        "machine_irq_softirq_s",
        round((d[5] + d[6]) as f64 / tck, 3),
    );
    rec.set("machine_steal_s", round(d[7] as f64 / tck, 3));
    rec.set(
        "machine_util_pct",
        (wall > 0.0).then(|| round(100.0 * busy / (wall * cpu_count()), 1)),
    );
    rec.set("machine_cpu_s_per_gb", round(per_gb(busy, nb), 4));
    rec.set(
        "iperf3_cpu_percent",
        Obj::new()
            .with("client", round(num(&cpu_util["host_total"]), 1))
            .with("server", round(num(&cpu_util["remote_total"]), 1)),
    );
    // The "CPU seconds per GB" of the dataplane: the VPN daemons' processes for a
    // tunnel; for the plain path (no daemon) the kernel's share of the machine.
    rec.set(
        "dataplane_cpu_s_per_gb",
        daemon_per_gb.unwrap_or(kernel_per_gb),
    );
    rec
}

/// A one-line progress summary of a result record.
pub fn brief(r: &Obj) -> String {
    if r.str("status") == "ok" {
        let mut s = format!(
            "    {:.3} Gbit/s, machine {:.3} s/GB",
            r.num("gbit_s").unwrap_or(0.0),
            r.num("machine_cpu_s_per_gb").unwrap_or(0.0)
        );
        if let Some(d) = r.num("daemon_cpu_s_per_gb") {
            s.push_str(&format!(", daemons {d:.3} s/GB"));
        }
        s
    } else {
        format!("    FAILED: {}", r.str("error"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::J;

    #[test]
    fn own_process_has_cpu_ticks() {
        assert!(proc_ticks(std::process::id()).is_some());
        assert!(cpu_ticks().iter().any(|&t| t > 0));
    }

    #[test]
    fn record_from_iperf_json() {
        let dir = std::env::temp_dir().join(format!("bench-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("iperf.json");
        std::fs::write(
            &f,
            r#"{"end":{"sum_received":{"bytes":2000000000,"seconds":2.0,"bits_per_second":8e9},
                "sum_sent":{"retransmits":7},
                "cpu_utilization_percent":{"host_total":50.04,"remote_total":20.0}}}"#,
        )
        .unwrap();
        let s = snap(&[]);
        let r = run_record("veth", 4, &f, &s, &s, 0);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(r.str("status"), "ok");
        assert_eq!(r.num("gbit_s"), Some(8.0));
        assert_eq!(r.get("retransmits"), Some(&J::Int(7)));
        assert_eq!(r.get("daemon_cpu_s"), Some(&J::Null));
        assert_eq!(
            r.num("dataplane_cpu_s_per_gb"),
            r.num("kernel_cpu_s_per_gb")
        );
        let keys: Vec<&str> = r.iter().take(4).map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["case", "streams", "iperf3_exit", "status"]);
    }
}
