//! `scripts/bench --tunnels 100,1000`: what N tunnels cost one daemon — set-up time,
//! memory, threads and idle CPU.
//!
//! ```text
//! namespace tn-hub: routevpn             veth hub0 ══ spoke0            namespace tn-spoke: routevpn
//!   tunnel i: 100.64.0.0 + (i+1)  /10   <── IKE + ESP ──>   100.96.0.0 + (i+1) /10 (responder)
//!   t<i>, inner 169.254.x.y/30 (.1)                           t<i>, inner .2/30
//! ```
//!
//! Each tunnel has its own pair of underlay addresses, all on the one veth: RFC 5737 has
//! too few (2 × N up to 20,000), so they come from the shared address space 100.64.0.0/10
//! (RFC 6598), which exists only inside these namespaces. Neighbour entries are static
//! (`nud permanent`): the kernel's ARP table is shared by all namespaces and by default
//! holds at most 1,024 learned entries (gc_thresh3), which 2 × N would overflow.
//!
//! For each N, fresh namespaces and daemons; a 1-tunnel run goes first as the baseline.
//! The spoke (responder) starts first and is waited for until its control socket
//! answers (its IKE sockets are bound by then): otherwise the hub's first IKE_SA_INITs
//! are lost and the set-up time measures the 1 s, 2 s, 4 s ... retransmission timer.
//! Set-up time runs from spawning the hub until its `status --json` shows all N tunnels
//! `up` (polled, bounded by `--tunnels-timeout`). Then nothing is polled
//! for 10 s, and each daemon's utime+stime over that window is its idle CPU; RSS,
//! threads and open files are read from /proc after it.

use crate::json::{round, Obj, J};
use crate::{log, measure, signal};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};
use testbed::{Netns, Routevpn, RvConfig, RvTunnel};

/// Between two `status --json` polls of the hub.
const POLL: Duration = Duration::from_millis(200);
/// The idle window with every tunnel up.
pub const IDLE: Duration = Duration::from_secs(10);
/// Two underlay addresses and one inner /30 per tunnel must fit their ranges.
pub const MAX_TUNNELS: u64 = 10_000;
/// Locally administered MACs, so the static neighbour entries are known in advance.
const HUB_MAC: &str = "02:00:5e:00:64:01";
const SPOKE_MAC: &str = "02:00:5e:00:64:02";

/// Underlay address of tunnel `i` on the hub or the spoke (RFC 6598 space).
fn underlay(i: usize, hub: bool) -> Ipv4Addr {
    let base = if hub {
        u32::from(Ipv4Addr::new(100, 64, 0, 0))
    } else {
        u32::from(Ipv4Addr::new(100, 96, 0, 0))
    };
    Ipv4Addr::from(base + i as u32 + 1)
}

/// Inner /30 address of tunnel `i` (169.254.0.0/16 holds 16,384 of them).
fn inner(i: usize, hub: bool) -> String {
    let net = u32::from(Ipv4Addr::new(169, 254, 0, 0)) + 4 * i as u32;
    format!("{}/30", Ipv4Addr::from(net + if hub { 1 } else { 2 }))
}

/// One daemon's figures with every tunnel up.
#[derive(Default)]
pub struct Usage {
    pub rss_mb: Option<f64>,
    pub threads: Option<u64>,
    pub fds: Option<u64>,
    pub idle_cpu_pct: Option<f64>,
}

/// One count's figures.
pub struct TunnelRun {
    pub tunnels: usize,
    /// Spoke spawned -> its control socket answers.
    pub spoke_ready_s: Option<f64>,
    pub setup_s: Option<f64>,
    /// CPU seconds both daemons used from their start until all were up: steadier than
    /// the wall time on a shared machine.
    pub setup_cpu_s: Option<f64>,
    /// Hub tunnels up at the end of the idle window.
    pub up_after_idle: Option<usize>,
    pub hub: Usage,
    pub spoke: Usage,
    pub error: Option<String>,
}

fn usage(pid: u32, idle_ticks: Option<u64>) -> Usage {
    let clk = measure::clk_tck() as f64;
    Usage {
        rss_mb: measure::status_field(pid, "VmRSS:").map(|k| round(k as f64 / 1024.0, 1)),
        threads: measure::status_field(pid, "Threads:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .ok()
            .map(|d| d.count() as u64),
        idle_cpu_pct: idle_ticks.map(|t| round(t as f64 / clk / IDLE.as_secs_f64() * 100.0, 1)),
    }
}

fn config(work: &Path, n: usize, hub: bool, psk: &str) -> RvConfig {
    let tunnels = (0..n)
        .map(|i| RvTunnel {
            name: format!("t{i}"),
            local: underlay(i, hub).to_string(),
            remote: underlay(i, !hub).to_string(),
            psk: psk.to_string(),
            ike: vec![crate::cases::IKE.into()],
            esp: vec![crate::cases::ESP.into()],
            start: hub,
            address: vec![inner(i, hub)],
            ..RvTunnel::default()
        })
        .collect();
    let role = if hub { "hub" } else { "spoke" };
    RvConfig {
        control_socket: Some(work.join(format!("tunnels-{n}-{role}.sock"))),
        tunnels,
        ..RvConfig::default()
    }
}

/// The veth with every underlay address and static neighbour entries, in one
/// `ip -batch` per side.
fn underlay_link(work: &Path, hub: &Netns, spoke: &Netns, n: usize) -> Result<(), String> {
    testbed::ns::veth_pair(hub.name(), "hub0", spoke.name(), "spoke0")
        .map_err(|e| e.to_string())?;
    for (ns, dev, is_hub, mac, peer_mac) in [
        (hub, "hub0", true, HUB_MAC, SPOKE_MAC),
        (spoke, "spoke0", false, SPOKE_MAC, HUB_MAC),
    ] {
        let mut batch = format!("link set dev {dev} address {mac}\nlink set dev {dev} up\n");
        for i in 0..n {
            let (mine, peer) = (underlay(i, is_hub), underlay(i, !is_hub));
            batch.push_str(&format!("address add {mine}/10 dev {dev}\n"));
            batch.push_str(&format!(
                "neighbour replace {peer} lladdr {peer_mac} dev {dev} nud permanent\n"
            ));
        }
        let file = work.join(format!("tunnels-{n}-{dev}.batch"));
        std::fs::write(&file, batch).map_err(|e| format!("{}: {e}", file.display()))?;
        ns.run(&["ip", "-batch", &file.to_string_lossy()])?;
    }
    Ok(())
}

/// Hub tunnels in state `up`; an error when the status cannot be read.
fn count_up(rv: &Routevpn) -> Result<usize, String> {
    let st = rv.status()?;
    Ok(st["tunnels"]
        .as_array()
        .map_or(0, |ts| ts.iter().filter(|t| t["state"] == "up").count()))
}

/// Sleeps `d` in short steps; an error on a signal.
fn idle(d: Duration) -> Result<(), String> {
    let end = Instant::now() + d;
    while Instant::now() < end {
        if let Some(sig) = signal::caught() {
            return Err(format!("interrupted (signal {sig})"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// One count, in its own namespaces; a panic of the test bed becomes the run's error
/// (the guards have removed the namespaces by then).
pub fn run_one(bin: &str, work: &Path, psk: &str, n: usize, limit: Duration) -> TunnelRun {
    let mut run = TunnelRun {
        tunnels: n,
        spoke_ready_s: None,
        setup_s: None,
        setup_cpu_s: None,
        up_after_idle: None,
        hub: Usage::default(),
        spoke: Usage::default(),
        error: None,
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        measure_one(bin, work, psk, n, limit, &mut run)
    }));
    let error = match outcome {
        Ok(r) => r.err(),
        Err(p) => Some(
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panic".into()),
        ),
    };
    if let Some(e) = error {
        log(&format!("  tunnels {n}: {e}"));
        run.error = Some(e);
    }
    run
}

fn measure_one(
    bin: &str,
    work: &Path,
    psk: &str,
    n: usize,
    limit: Duration,
    run: &mut TunnelRun,
) -> Result<(), String> {
    // Declared first, dropped last: the daemons go before the namespaces.
    let hub_ns = Netns::new("tn-hub");
    let spoke_ns = Netns::new("tn-spoke");
    underlay_link(work, &hub_ns, &spoke_ns, n)?;
    let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let env = [("NO_COLOR", "1"), ("RUST_LOG", rust_log.as_str())];
    log(&format!("  tunnels {n}: starting both daemons ..."));
    let t_spoke = Instant::now();
    let spoke = Routevpn::spawn_with(bin, &spoke_ns, &config(work, n, false, psk), &env);
    spoke.wait_ready(limit)?;
    run.spoke_ready_s = Some(round(t_spoke.elapsed().as_secs_f64(), 3));
    let t0 = Instant::now();
    let hub = Routevpn::spawn_with(bin, &hub_ns, &config(work, n, true, psk), &env);
    let r = measure_daemons(&hub, &spoke, n, t0, limit, run);
    // The logs stay with the bench's (kept on failure or --keep-logs).
    for (rv, role) in [(&hub, "hub"), (&spoke, "spoke")] {
        let _ = std::fs::copy(rv.log_path(), work.join(format!("tunnels-{n}-{role}.log")));
    }
    r
}

fn measure_daemons(
    hub: &Routevpn,
    spoke: &Routevpn,
    n: usize,
    t0: Instant,
    limit: Duration,
    run: &mut TunnelRun,
) -> Result<(), String> {
    let end = t0 + limit;
    let mut up = 0;
    let mut last_err = String::new();
    let done = loop {
        if let Some(sig) = signal::caught() {
            return Err(format!("interrupted (signal {sig})"));
        }
        for (rv, role) in [(hub, "hub"), (spoke, "spoke")] {
            if let Some(st) = rv.exit_status() {
                return Err(format!(
                    "the {role} daemon exited ({st})\n{}",
                    testbed::tail(&rv.log(), 20)
                ));
            }
        }
        match count_up(hub) {
            Ok(c) => up = c,
            Err(e) => last_err = e,
        }
        let at = Instant::now();
        if up >= n {
            break at;
        }
        if at >= end {
            let why = if last_err.is_empty() {
                String::new()
            } else {
                format!(" (last status error: {last_err})")
            };
            return Err(format!(
                "{up} of {n} tunnels up after {} s{why}",
                limit.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    };
    let setup = (done - t0).as_secs_f64();
    run.setup_s = Some(round(setup, 3));
    if let (Some(h), Some(s)) = (
        measure::proc_ticks(hub.pid()),
        measure::proc_ticks(spoke.pid()),
    ) {
        run.setup_cpu_s = Some(round((h + s) as f64 / measure::clk_tck() as f64, 2));
    }
    log(&format!(
        "  tunnels {n}: all up in {setup:.3} s; idle for {} s ...",
        IDLE.as_secs()
    ));
    let pids = [hub.pid(), spoke.pid()];
    let before = pids.map(measure::proc_ticks);
    idle(IDLE)?;
    let after = pids.map(measure::proc_ticks);
    let ticks = |k: usize| match (before[k], after[k]) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    run.hub = usage(pids[0], ticks(0));
    run.spoke = usage(pids[1], ticks(1));
    run.up_after_idle = count_up(hub).ok();
    Ok(())
}

/// Raises the soft RLIMIT_NOFILE to the hard one (the daemons inherit it: a TUN, sockets
/// per tunnel); returns the soft limit in force.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    // rlim_t is narrower on some 32-bit targets.
    #[allow(clippy::unnecessary_cast)]
    let soft = lim.rlim_cur as u64;
    soft
}

/// (RSS(N) − RSS(1)) / (N − 1) in kB, from the 1-tunnel baseline run.
fn per_tunnel_kb(rss: Option<f64>, base: Option<f64>, n: usize) -> Option<f64> {
    match (rss, base) {
        (Some(r), Some(b)) if n > 1 => Some(round((r - b) * 1024.0 / (n - 1) as f64, 0)),
        _ => None,
    }
}

/// Runs the 1-tunnel baseline and every count, prints the table and writes the JSON;
/// true when all of them completed.
pub fn run_all(
    bin: &str,
    work: &Path,
    psk: &str,
    counts: &[usize],
    limit: Duration,
    json: &Path,
) -> bool {
    let nofile = raise_nofile();
    println!("routevpn many-tunnels benchmark: {bin}");
    println!(
        "hub daemon with N tunnels (initiator) <-> spoke daemon with the other N ends (responder), \
         each tunnel on its own underlay address pair"
    );
    println!(
        "(100.64.0.0/10, RFC 6598) on one veth; IKE {}, ESP {}; one inner /30 per tunnel, no routes",
        crate::cases::IKE,
        crate::cases::ESP
    );
    println!(
        "spoke ready = spoke (responder) spawned -> its control socket answers; then set-up = hub spawned -> \
         all N `up` in the hub's status --json (polled every {} ms, bounded to {} s);",
        POLL.as_millis(),
        limit.as_secs()
    );
    println!(
        "then {} s idle with no traffic: idle CPU = utime+stime over it (% of one core); RSS, threads, fds after it",
        IDLE.as_secs()
    );
    println!("RLIMIT_NOFILE of the daemons: {nofile}");
    println!();
    let mut all = vec![1];
    all.extend(counts.iter().copied().filter(|&n| n != 1));
    let mut runs: Vec<TunnelRun> = Vec::new();
    for &n in &all {
        runs.push(run_one(bin, work, psk, n, limit));
        if signal::caught().is_some() {
            break;
        }
    }
    let (base_hub, base_spoke) = runs
        .first()
        .map_or((None, None), |r| (r.hub.rss_mb, r.spoke.rss_mb));
    print_table(&runs, base_hub, base_spoke);
    let mut arr = Vec::new();
    for r in &runs {
        let rate = r
            .setup_s
            .filter(|s| *s > 0.0)
            .map(|s| round(r.tunnels as f64 / s, 0));
        let mut o = Obj::new()
            .with("tunnels", r.tunnels as u64)
            .with("status", if r.error.is_none() { "ok" } else { "failed" });
        if let Some(s) = r.spoke_ready_s {
            o.set("spoke_ready_s", s);
        }
        if let Some(s) = r.setup_s {
            o.set("setup_s", s);
        }
        if let Some(v) = rate {
            o.set("tunnels_per_s", v);
        }
        if let Some(v) = r.setup_cpu_s {
            o.set("setup_cpu_s_both_daemons", v);
        }
        if let Some(v) = r.up_after_idle {
            o.set("hub_up_after_idle", v as u64);
        }
        for (role, u, base) in [("hub", &r.hub, base_hub), ("spoke", &r.spoke, base_spoke)] {
            let mut d = Obj::new();
            if let Some(v) = u.rss_mb {
                d.set("rss_mb", v);
            }
            if let Some(v) = per_tunnel_kb(u.rss_mb, base, r.tunnels) {
                d.set("rss_kb_per_tunnel", v);
            }
            if let Some(v) = u.threads {
                d.set("threads", v);
            }
            if let Some(v) = u.fds {
                d.set("open_files", v);
            }
            if let Some(v) = u.idle_cpu_pct {
                d.set("idle_cpu_pct_of_one_core", v);
            }
            o.set(role, d);
        }
        if let Some(e) = &r.error {
            o.set("error", e.as_str());
        }
        arr.push(J::Obj(o));
    }
    let out = Obj::new()
        .with("schema", "routevpn-bench-tunnels/1")
        .with("binary", bin)
        .with("idle_window_s", IDLE.as_secs())
        .with("rlimit_nofile", nofile)
        .with(
            "rss_kb_per_tunnel",
            "(RSS(N) - RSS(1)) / (N - 1), from the 1-tunnel run that goes first",
        )
        .with("runs", arr);
    match std::fs::write(json, J::Obj(out).pretty() + "\n") {
        Ok(()) => println!("JSON written to {}", json.display()),
        Err(e) => log(&format!("bench: cannot write {}: {e}", json.display())),
    }
    runs.iter().all(|r| r.error.is_none())
}

fn print_table(runs: &[TunnelRun], base_hub: Option<f64>, base_spoke: Option<f64>) {
    let hdr = format!(
        "{:>7} {:>9} {:>8} {:>9} {:>12} {:>10} {:>9} {:>10} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "tunnels",
        "spk rdy s",
        "setup s",
        "tunnels/s",
        "set-up CPU-s",
        "hub RSS MB",
        "hub kB/t",
        "spk RSS MB",
        "spk kB/t",
        "hub thr",
        "spk thr",
        "hub fd",
        "spk fd",
        "hub %",
        "spk %",
    );
    println!("{hdr}");
    println!("{}", "-".repeat(hdr.len()));
    let f = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |x| format!("{x:.p$}"));
    let u = |v: Option<u64>| v.map_or("-".to_string(), |x| x.to_string());
    for r in runs {
        let rate = r.setup_s.filter(|s| *s > 0.0).map(|s| r.tunnels as f64 / s);
        println!(
            "{:>7} {:>9} {:>8} {:>9} {:>12} {:>10} {:>9} {:>10} {:>9} {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
            r.tunnels,
            f(r.spoke_ready_s, 3),
            f(r.setup_s, 3),
            f(rate, 0),
            f(r.setup_cpu_s, 2),
            f(r.hub.rss_mb, 1),
            f(per_tunnel_kb(r.hub.rss_mb, base_hub, r.tunnels), 0),
            f(r.spoke.rss_mb, 1),
            f(per_tunnel_kb(r.spoke.rss_mb, base_spoke, r.tunnels), 0),
            u(r.hub.threads),
            u(r.spoke.threads),
            u(r.hub.fds),
            u(r.spoke.fds),
            f(r.hub.idle_cpu_pct, 1),
            f(r.spoke.idle_cpu_pct, 1),
        );
        if let Some(up) = r.up_after_idle.filter(|&c| c < r.tunnels) {
            println!("{:>7} only {up} still up after the idle window", "");
        }
        if let Some(e) = &r.error {
            println!("{:>7} FAILED: {e}", "");
        }
    }
    println!();
    println!(
        "set-up CPU-s: both daemons, from their start until all up; kB/t: RSS per tunnel = (RSS(N) - RSS(1)) / (N - 1), from the 1-tunnel run first; \
         thr: threads; fd: open files; %: idle CPU over {} s, % of one core",
        IDLE.as_secs()
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn address_plan_is_distinct_and_in_range_up_to_the_maximum() {
        let n = MAX_TUNNELS as usize;
        let mut seen = HashSet::new();
        for i in 0..n {
            for hub in [true, false] {
                let a = underlay(i, hub);
                let [o0, o1, ..] = a.octets();
                // Inside 100.64.0.0/10, the one on-link prefix both ends configure.
                assert!(o0 == 100 && (64..128).contains(&o1), "{a}");
                assert!(seen.insert(a), "{a} used twice");
                let x = inner(i, hub);
                assert!(x.starts_with("169.254."), "{x}");
                assert!(
                    seen.insert(x.trim_end_matches("/30").parse().unwrap()),
                    "{x}"
                );
            }
        }
        assert_eq!(underlay(0, true), Ipv4Addr::new(100, 64, 0, 1));
        assert_eq!(inner(1, false), "169.254.0.6/30");
    }
}
