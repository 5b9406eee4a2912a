//! `scripts/bench --routes 2000,20000,100000`: how fast routevpn puts a neighbour's
//! prefixes into the kernel, and takes them out again.
//!
//! ```text
//! namespace rt-rv: routevpn   veth 198.51.100.1/24 ══ 198.51.100.2/24   namespace rt-feed
//!   [bgp] asn 65001, neighbour .2 (max_prefix = 0)           raw BGP speaker (testbed::bgpfeed)
//! ```
//!
//! For each count N, fresh namespaces and a fresh daemon: the feed opens the session
//! (hold time 9 s, so the daemon owes a message every 3 s) and writes N /26 prefixes in
//! back-to-back UPDATEs. Install time runs from the first UPDATE written until the
//! kernel holds N routes of protocol 251 (`ip -4 route show proto 251`, polled); then
//! the feed closes the session and withdraw time runs until none is left. Each phase is
//! bounded by `--routes-timeout`; the namespaces go with the case, also on failure.

use crate::json::{round, Obj};
use crate::{log, measure, signal};
use std::path::Path;
use std::time::{Duration, Instant};
use testbed::bgpfeed::{BgpFeed, FeedConfig};
use testbed::{veth, Netns, Routevpn, RvConfig};

const RV_ADDR: &str = "198.51.100.1";
const FEED_ADDR: &str = "198.51.100.2";
/// routevpn's routing protocol number for BGP routes.
const PROTO_BGP: &str = "251";
/// The feed's hold time unless told otherwise: the daemon owes a message every 3 s.
pub const FEED_HOLD: u16 = 9;
/// Between two counts of the kernel table.
const POLL: Duration = Duration::from_millis(100);

/// One count's figures.
pub struct RouteRun {
    pub prefixes: usize,
    pub install_s: Option<f64>,
    pub withdraw_s: Option<f64>,
    pub rss_mb: Option<f64>,
    pub peak_rss_mb: Option<f64>,
    pub daemon_cpu_s: Option<f64>,
    /// Longest time the daemon sent nothing while installing (it owes a KEEPALIVE
    /// every 3 s).
    pub longest_silence_s: Option<f64>,
    pub error: Option<String>,
}

/// Routes of protocol 251 in `ns`'s IPv4 main table.
fn count(ns: &Netns) -> Result<usize, String> {
    let out = ns.exec(&["ip", "-4", "route", "show", "proto", PROTO_BGP]);
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(out.stdout.iter().filter(|&&b| b == b'\n').count())
}

/// Polls until `done(count)`; the instant it was first seen, or an error at `limit`.
fn wait_count(
    ns: &Netns,
    limit: Duration,
    what: &str,
    done: impl Fn(usize) -> bool,
) -> Result<Instant, String> {
    let end = Instant::now() + limit;
    let mut last = 0;
    loop {
        if let Some(sig) = signal::caught() {
            return Err(format!("interrupted (signal {sig})"));
        }
        last = count(ns).unwrap_or(last);
        let at = Instant::now();
        if done(last) {
            return Ok(at);
        }
        if at >= end {
            return Err(format!(
                "{what}: {last} routes in the kernel after {} s",
                limit.as_secs()
            ));
        }
        std::thread::sleep(POLL);
    }
}

/// VmRSS and VmHWM of `pid` in MB.
fn rss_mb(pid: u32) -> (Option<f64>, Option<f64>) {
    let mb =
        |key: &str| crate::measure::status_field(pid, key).map(|k| round(k as f64 / 1024.0, 1));
    (mb("VmRSS:"), mb("VmHWM:"))
}

fn config(work: &Path, n: usize) -> RvConfig {
    RvConfig {
        control_socket: Some(work.join(format!("routes-{n}.sock"))),
        extra_tail: format!(
            "[bgp]\nasn = 65001\nrouter_id = \"{RV_ADDR}\"\n\n[[bgp.neighbor]]\n\
             address = \"{FEED_ADDR}\"\nasn = 65002\npassive = true\nmax_prefix = 0\n"
        ),
        ..RvConfig::default()
    }
}

/// One count, in its own namespaces.
pub fn run_one(bin: &str, work: &Path, n: usize, limit: Duration, hold: u16) -> RouteRun {
    let mut run = RouteRun {
        prefixes: n,
        install_s: None,
        withdraw_s: None,
        rss_mb: None,
        peak_rss_mb: None,
        daemon_cpu_s: None,
        longest_silence_s: None,
        error: None,
    };
    if let Err(e) = measure_one(bin, work, n, limit, hold, &mut run) {
        log(&format!("  routes {n}: {e}"));
        run.error = Some(e);
    }
    run
}

fn measure_one(
    bin: &str,
    work: &Path,
    n: usize,
    limit: Duration,
    hold: u16,
    run: &mut RouteRun,
) -> Result<(), String> {
    // Declared first, dropped last: the daemon and the feed go before the namespaces.
    let rv_ns = Netns::new("rt-rv");
    let feed_ns = Netns::new("rt-feed");
    veth(
        &rv_ns,
        "feed0",
        &[&format!("{RV_ADDR}/24")],
        &feed_ns,
        "rv0",
        &[&format!("{FEED_ADDR}/24")],
    );
    let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let env = [("NO_COLOR", "1"), ("RUST_LOG", rust_log.as_str())];
    let rv = Routevpn::spawn_with(bin, &rv_ns, &config(work, n), &env);
    let r = measure_daemon(&rv, &feed_ns, n, limit, hold, run);
    // The daemon's log stays with the bench's (kept on failure or --keep-logs).
    let _ = std::fs::copy(rv.log_path(), work.join(format!("routes-{n}.log")));
    r
}

fn measure_daemon(
    rv: &Routevpn,
    feed_ns: &Netns,
    n: usize,
    limit: Duration,
    hold: u16,
    run: &mut RouteRun,
) -> Result<(), String> {
    let rv_ns = rv.netns().clone();
    rv.wait_ready(Duration::from_secs(20))?;
    let pid = rv.pid();
    let cpu0 = measure::proc_ticks(pid);
    log(&format!("  routes {n}: session up, announcing ..."));
    let mut feed = BgpFeed::start(
        feed_ns,
        FeedConfig {
            peer: RV_ADDR.parse().map_err(|e| format!("{e}"))?,
            asn: 65002,
            router_id: FEED_ADDR.parse().map_err(|e| format!("{e}"))?,
            next_hop: FEED_ADDR.parse().map_err(|e| format!("{e}"))?,
            prefixes: n,
            timeout: Duration::from_secs(20),
            hold_time: hold,
        },
    )?;
    let t0 = feed.report().first_update;
    let done = wait_count(&rv_ns, limit, "install", |c| c >= n);
    run.longest_silence_s = Some(round(feed.longest_silence().as_secs_f64(), 2));
    let (rss, peak) = rss_mb(pid);
    (run.rss_mb, run.peak_rss_mb) = (rss, peak);
    let done = done.map_err(|e| match feed.ended() {
        Some(end) => format!("{e}; the session ended: {end}"),
        None => e,
    })?;
    run.install_s = Some(round((done - t0).as_secs_f64(), 3));
    if let Some(end) = feed.ended() {
        return Err(format!("the session ended while installing: {end}"));
    }
    log(&format!(
        "  routes {n}: installed in {:.3} s, withdrawing ...",
        (done - t0).as_secs_f64()
    ));
    // A dead peer: the daemon withdraws everything it learned from it.
    let t1 = Instant::now();
    feed.close();
    let gone = wait_count(&rv_ns, limit, "withdraw", |c| c == 0)?;
    run.withdraw_s = Some(round((gone - t1).as_secs_f64(), 3));
    let clk = measure::clk_tck() as f64;
    if let (Some(a), Some(b)) = (cpu0, measure::proc_ticks(pid)) {
        run.daemon_cpu_s = Some(round(b.saturating_sub(a) as f64 / clk, 2));
    }
    Ok(())
}

/// Runs every count and prints the table; true when all of them completed.
pub fn run_all(
    bin: &str,
    work: &Path,
    counts: &[usize],
    limit: Duration,
    hold: u16,
    json: &Path,
) -> bool {
    println!("routevpn route-install benchmark: {bin}");
    println!(
        "one eBGP neighbour (raw BGP speaker in another namespace, hold time {hold} s) announces N /26s; \
         install = first UPDATE written -> N routes of proto {PROTO_BGP} in the kernel;"
    );
    println!(
        "withdraw = session closed -> none left; polled every {} ms with `ip route`; each phase bounded to {} s",
        POLL.as_millis(),
        limit.as_secs()
    );
    println!();
    let mut runs = Vec::new();
    for &n in counts {
        runs.push(run_one(bin, work, n, limit, hold));
        if signal::caught().is_some() {
            break;
        }
    }
    let hdr = format!(
        "{:>9} {:>10} {:>10} {:>11} {:>8} {:>13} {:>12} {:>15}",
        "prefixes",
        "install s",
        "routes/s",
        "withdraw s",
        "RSS MB",
        "peak RSS MB",
        "daemon CPU s",
        "max silence s"
    );
    println!("{hdr}");
    println!("{}", "-".repeat(hdr.len()));
    let f = |v: Option<f64>, p: usize| v.map_or("-".to_string(), |x| format!("{x:.p$}"));
    let mut arr = Vec::new();
    for r in &runs {
        let rate = r
            .install_s
            .filter(|s| *s > 0.0)
            .map(|s| r.prefixes as f64 / s);
        println!(
            "{:>9} {:>10} {:>10} {:>11} {:>8} {:>13} {:>12} {:>15}",
            r.prefixes,
            f(r.install_s, 3),
            f(rate, 0),
            f(r.withdraw_s, 3),
            f(r.rss_mb, 1),
            f(r.peak_rss_mb, 1),
            f(r.daemon_cpu_s, 2),
            f(r.longest_silence_s, 2),
        );
        if let Some(e) = &r.error {
            println!("{:>9} FAILED: {e}", "");
        }
        let mut o = Obj::new()
            .with("prefixes", r.prefixes as u64)
            .with("status", if r.error.is_none() { "ok" } else { "failed" });
        for (k, v) in [
            ("install_s", r.install_s),
            ("routes_per_s", rate.map(|x| round(x, 0))),
            ("withdraw_s", r.withdraw_s),
            ("rss_mb", r.rss_mb),
            ("peak_rss_mb", r.peak_rss_mb),
            ("daemon_cpu_s", r.daemon_cpu_s),
            ("longest_silence_s", r.longest_silence_s),
        ] {
            if let Some(v) = v {
                o.set(k, v);
            }
        }
        if let Some(e) = &r.error {
            o.set("error", e.as_str());
        }
        arr.push(crate::json::J::Obj(o));
    }
    println!();
    println!(
        "max silence: longest gap between messages from the daemon while installing \
         (it owes one every {} s; longer means its BGP loop stalled)",
        hold / 3
    );
    let out = Obj::new()
        .with("schema", "routevpn-bench-routes/1")
        .with("binary", bin)
        .with("runs", arr);
    match std::fs::write(json, crate::json::J::Obj(out).pretty() + "\n") {
        Ok(()) => println!("JSON written to {}", json.display()),
        Err(e) => log(&format!("bench: cannot write {}: {e}", json.display())),
    }
    runs.iter().all(|r| r.error.is_none())
}
