//! `routevpn lab`: three routers in network namespaces, a routevpn daemon in each with
//! tunnels to both others and eBGP + BFD over every tunnel; a host behind each router.
//! The lab probes host A → host B at 100 packets/s, cuts the A–B transport link
//! (nftables drop of IKE and ESP-in-UDP in router A), measures how long until traffic
//! flows again via C, restores the link and measures the fail-back.
//!
//! It installs nothing, needs root, and removes everything it made (namespaces, the
//! daemons it started — by PID — and the nft table) on success, failure and
//! SIGINT/SIGTERM, unless `--keep`; `routevpn lab --down` removes a kept lab.

pub mod configs;
pub mod probe;
pub mod status;
pub mod topology;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::Serialize;
use serde_json::Value;

use crate::control::{Request, Response};
use configs::Routing;
use probe::{Prober, Responder};
use topology::{link, router, ROUTERS};

/// Bound on bringing up all tunnels and BGP sessions.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on the traffic and route recovering after the cut.
pub const RECOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on the route returning to the A–B tunnel after the restore.
pub const FAILBACK_TIMEOUT: Duration = Duration::from_secs(60);
/// Probe rate: 100 packets/s.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// UDP port of the echo responder in host B.
pub const PROBE_PORT: u16 = 7777;
/// Number of tunnel ends (3 tunnels × 2) and BGP session ends (3 sessions × 2).
pub const TUNNEL_ENDS: usize = 6;
pub const BGP_SESSION_ENDS: usize = 6;
const POLL: Duration = Duration::from_millis(10);

/// Command-line options of `routevpn lab`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// One JSON object on stdout (the timeline still goes to stderr).
    pub json: bool,
    /// Leave the lab running afterwards.
    pub keep: bool,
    /// Remove a kept lab and exit.
    pub down: bool,
}

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

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    // Only an atomic store: async-signal-safe. Every wait loop checks the flag.
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Sleeps `d`, waking early with an error on SIGINT/SIGTERM.
fn nap(d: Duration) -> anyhow::Result<()> {
    let end = Instant::now() + d;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if interrupted() {
            bail!("interrupted");
        }
        std::thread::sleep(left.min(Duration::from_millis(20)));
    }
    Ok(())
}

/// Timestamped progress lines on stderr.
struct Timeline {
    start: Instant,
}

impl Timeline {
    fn ms(&self, t: Instant) -> u64 {
        ms(t.saturating_duration_since(self.start))
    }
    fn now_ms(&self) -> u64 {
        self.ms(Instant::now())
    }
    fn say(&self, msg: impl AsRef<str>) {
        let mut err = std::io::stderr().lock();
        for (i, line) in msg.as_ref().lines().enumerate() {
            let _ = if i == 0 {
                writeln!(err, "[{:>7} ms] {line}", self.now_ms())
            } else {
                writeln!(err, "             {line}")
            };
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The daemons this run started; stopped by PID when dropped (unless kept).
struct Daemons {
    children: Vec<(char, Child)>,
    keep: bool,
}

impl Daemons {
    fn spawn(&mut self, r: &topology::Router) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("locating the routevpn executable")?;
        let log = File::create(r.log_path())
            .with_context(|| format!("creating {}", r.log_path().display()))?;
        let child = testbed::ns::command(&r.ns(), &[])
            .arg(&exe)
            .arg("daemon")
            .arg("--config")
            .arg(r.config_path())
            .env("NO_COLOR", "1")
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own process group: a terminal's Ctrl-C reaches only the lab, which then
            // stops the daemons itself (and a kept lab survives the shell).
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting the daemon of router {}", r.letter))?;
        // `ip netns exec` execs the daemon, so this is the daemon's PID.
        std::fs::write(r.pid_path(), format!("{}\n", child.id()))?;
        self.children.push((r.letter, child));
        Ok(())
    }

    /// Error if a daemon has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for (letter, c) in &mut self.children {
            if let Some(st) = c.try_wait()? {
                let r = router(*letter);
                bail!(
                    "the daemon of router {letter} exited ({st}); last log lines:\n{}",
                    log_tail(&r.log_path(), 15)
                );
            }
        }
        Ok(())
    }

    fn stop_all(&mut self) {
        for (_, c) in &self.children {
            // SAFETY: plain kill(2) on the PID of a child we spawned and have not reaped.
            unsafe {
                libc::kill(c.id() as libc::pid_t, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for (_, c) in &mut self.children {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.children.clear();
    }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        if !self.keep {
            self.stop_all();
        }
    }
}

fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One status request to a daemon, as JSON.
fn status(rt: &tokio::runtime::Runtime, socket: &Path) -> anyhow::Result<Value> {
    match rt.block_on(crate::control::request(socket, &Request::Status))? {
        Response::Status(r) => Ok(serde_json::to_value(r)?),
        Response::Error { message } => bail!("{message}"),
        Response::Ok { message } => bail!("unexpected answer: {message}"),
    }
}

/// Entry point of `routevpn lab`.
pub fn main(opts: &Options) -> ExitCode {
    if opts.down {
        return match down() {
            Ok(msg) => {
                println!("{msg}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("routevpn lab --down: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let tl = Timeline {
        start: Instant::now(),
    };
    let mut report = Report {
        state_dir: topology::STATE_DIR.to_string(),
        ..Report::default()
    };
    let result = run(opts, &tl, &mut report);
    if let Err(e) = &result {
        report.ok = false;
        report.error = Some(format!("{e:#}"));
        if opts.json || !report.steps.is_empty() {
            tl.say(format!("FAILED: {e:#}"));
        }
    }
    if opts.json {
        match serde_json::to_string(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("routevpn lab: cannot encode the report: {e}"),
        }
    } else if report.steps.is_empty() {
        // Nothing ran (no root, missing programs, a lab already up): the error says it.
        eprintln!(
            "routevpn lab: {}",
            report.error.as_deref().unwrap_or("failed")
        );
    } else {
        print!("{}", summary_table(&report));
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(opts: &Options, tl: &Timeline, report: &mut Report) -> anyhow::Result<()> {
    if !topology::is_root() {
        bail!("routevpn lab needs root (network namespaces, veth links, nftables): run it with sudo, or use ./scripts/lab as root");
    }
    topology::check_programs()?;
    let existing = topology::lab_namespaces();
    if !existing.is_empty() {
        bail!(
            "a lab already exists (namespaces {}); remove it with `routevpn lab --down`",
            existing.join(", ")
        );
    }
    let routing = match configs::bgp_supported() {
        Ok(()) => Routing::Bgp,
        Err(why) => {
            tl.say(format!(
                "BGP IS NOT AVAILABLE in this build (the config parser rejects [bgp]: {why});\n\
                 running with static routes and DPD failover instead; the run will be reported as failed"
            ));
            Routing::Static
        }
    };
    report.routing = match routing {
        Routing::Bgp => "bgp",
        Routing::Static => "static",
    }
    .into();
    install_signal_handlers();

    let state = Path::new(topology::STATE_DIR);
    if state.exists() {
        std::fs::remove_dir_all(state)
            .with_context(|| format!("removing the old {}", state.display()))?;
    }
    for r in &ROUTERS {
        std::fs::create_dir_all(r.dir())?;
    }
    let mut daemons = Daemons {
        children: Vec::new(),
        keep: false,
    };
    let result = (|| {
        steps(opts, tl, report, routing, &mut daemons)?;
        if routing != Routing::Bgp {
            bail!("BGP is not available in this build: the lab ran with static routes (DPD failover), not BGP + BFD");
        }
        Ok(())
    })();
    report.ok = result.is_ok();
    if opts.keep && !interrupted() {
        daemons.keep = true;
        report.kept = true;
        tl.say(keep_help());
    } else {
        if result.is_err() {
            for r in &ROUTERS {
                let tail = log_tail(&r.log_path(), 12);
                if !tail.is_empty() {
                    tl.say(format!(
                        "router {} daemon log (last lines):\n{tail}",
                        r.letter
                    ));
                }
            }
        }
        tl.say("cleaning up: stopping the daemons, deleting the namespaces");
        daemons.stop_all();
        let errors = topology::delete_namespaces();
        if !errors.is_empty() {
            tl.say(format!("cleanup problems: {}", errors.join("; ")));
        }
        if result.is_ok() {
            let _ = std::fs::remove_dir_all(state);
        } else {
            tl.say(format!(
                "configs and logs kept in {} (removed by the next run or `routevpn lab --down`)",
                state.display()
            ));
        }
    }
    result
}

fn keep_help() -> String {
    let a = router('A');
    format!(
        "the lab keeps running. Look around:\n\
         \x20 ip netns list | grep rvlab-\n\
         \x20 ip netns exec {} ip route\n\
         \x20 ip netns exec {} ping 10.2.0.2\n\
         \x20 routevpn status --socket {}\n\
         \x20 cat {}\n\
         remove it with: routevpn lab --down",
        a.ns(),
        a.host_ns(),
        a.socket_path().display(),
        a.log_path().display()
    )
}

/// Runs `f` as a named step, recording it in the report.
fn step<T>(
    tl: &Timeline,
    report: &mut Report,
    name: &str,
    f: impl FnOnce(&mut Report) -> anyhow::Result<(T, String)>,
) -> anyhow::Result<T> {
    let start = tl.now_ms();
    tl.say(format!("== {name}"));
    let r = f(report);
    let (ok, detail) = match &r {
        Ok((_, d)) => (true, d.clone()),
        Err(e) => (false, format!("{e:#}")),
    };
    if ok {
        tl.say(format!("   ok: {detail}"));
    }
    report.steps.push(Step {
        name: name.to_string(),
        start_ms: start,
        end_ms: tl.now_ms(),
        ok,
        detail,
    });
    r.map(|(v, _)| v)
}

fn all_routes() -> BTreeMap<String, Vec<String>> {
    ROUTERS
        .iter()
        .map(|r| (r.letter.to_string(), topology::site_routes(&r.ns())))
        .collect()
}

fn show_routes(tl: &Timeline, routes: &BTreeMap<String, Vec<String>>) {
    let mut s = String::from("site routes:");
    for (r, lines) in routes {
        let _ = write!(s, "\n  router {r}:");
        if lines.is_empty() {
            s.push_str(" (none)");
        }
        for l in lines {
            let _ = write!(s, "\n    {l}");
        }
    }
    tl.say(s);
}

fn steps(
    opts: &Options,
    tl: &Timeline,
    report: &mut Report,
    routing: Routing,
    daemons: &mut Daemons,
) -> anyhow::Result<()> {
    let _ = opts;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let ab = link('A', 'B').tunnel();
    let ac = link('A', 'C').tunnel();
    let (a, b) = (router('A'), router('B'));

    step(
        tl,
        report,
        "topology: 3 routers, 3 hosts, 3 transport links",
        |_| {
            topology::build()?;
            Ok((
                (),
                "namespaces rvlab-{A,B,C} and rvlab-host{A,B,C}".to_string(),
            ))
        },
    )?;

    step(tl, report, "start one routevpn daemon per router", |_| {
        for r in &ROUTERS {
            std::fs::write(r.config_path(), configs::router_config(r, routing))?;
            daemons.spawn(r)?;
        }
        let pids: Vec<String> = daemons
            .children
            .iter()
            .map(|(l, c)| format!("{l}={}", c.id()))
            .collect();
        Ok((
            (),
            format!(
                "pids {}; logs in {}/*/routevpn.log",
                pids.join(" "),
                topology::STATE_DIR
            ),
        ))
    })?;

    // Step 1: convergence.
    let wait_name = match routing {
        Routing::Bgp => "step 1: wait for 6 tunnel ends up and 6 BGP sessions Established",
        Routing::Static => "step 1: wait for 6 tunnel ends up (no BGP in this build)",
    };
    step(tl, report, wait_name, |report| {
        let start = Instant::now();
        let mut last = String::new();
        let mut last_print = Instant::now();
        loop {
            daemons.check_alive()?;
            let mut up = 0;
            let mut est = 0;
            let mut no_bgp = Vec::new();
            let mut progress = Vec::new();
            for r in &ROUTERS {
                match status(&rt, &r.socket_path()) {
                    Ok(v) => {
                        let s = status::summarize(&v);
                        up += s.tunnels_up.len();
                        est += s.bgp_established();
                        let bgp = match &s.bgp {
                            None => {
                                no_bgp.push(r.letter);
                                "no bgp field".to_string()
                            }
                            Some(n) => n
                                .iter()
                                .map(|n| format!("{}={}", n.address, n.state))
                                .collect::<Vec<_>>()
                                .join(" "),
                        };
                        progress.push(format!("{}: {} | bgp {bgp}", r.letter, s.tunnels.join(" ")));
                    }
                    Err(e) => progress.push(format!("{}: {e:#}", r.letter)),
                }
            }
            report.tunnels_up = up;
            report.bgp_established = est;
            // Routes: every router reaches both other sites through the direct tunnel.
            let direct = ROUTERS.iter().all(|r| {
                ROUTERS.iter().filter(|p| p.letter != r.letter).all(|p| {
                    topology::route_dev(&r.ns(), &p.host_addr()).as_deref()
                        == Some(link(r.letter, p.letter).tunnel().as_str())
                })
            });
            let bgp_ok = routing == Routing::Static || est == BGP_SESSION_ENDS;
            if up == TUNNEL_ENDS && bgp_ok && direct {
                break;
            }
            let now = progress.join("; ");
            if now != last || last_print.elapsed() > Duration::from_secs(5) {
                tl.say(format!("   {up}/{TUNNEL_ENDS} tunnel ends up, {est}/{BGP_SESSION_ENDS} BGP established: {now}"));
                last = now.clone();
                last_print = Instant::now();
            }
            if routing == Routing::Bgp && no_bgp.len() == ROUTERS.len() && up == TUNNEL_ENDS {
                bail!("the daemons' status has no `bgp` field: the BGP speaker is not wired into the daemon yet");
            }
            if start.elapsed() > CONVERGE_TIMEOUT {
                bail!(
                    "not converged within {CONVERGE_TIMEOUT:?}: {up}/{TUNNEL_ENDS} tunnel ends up, \
                     {est}/{BGP_SESSION_ENDS} BGP sessions established, direct routes {}; {now}",
                    if direct { "present" } else { "missing" }
                );
            }
            nap(Duration::from_millis(100))?;
        }
        Ok(((), format!("{} tunnel ends up, {} BGP session ends established, direct routes in place after {} ms",
            report.tunnels_up, report.bgp_established, ms(start.elapsed()))))
    })?;
    let before = all_routes();
    show_routes(tl, &before);
    report.routes.insert("before".into(), before);

    // Step 2: probe.
    let responder = Responder::start(
        Some(b.host_ns()),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, PROBE_PORT),
    )?;
    let target = SocketAddr::V4(SocketAddrV4::new(
        b.host_addr().parse().context("host B address")?,
        PROBE_PORT,
    ));
    let prober = step(
        tl,
        report,
        "step 2: probe host A -> host B at 100 packets/s (UDP echo)",
        |_| {
            let p = Prober::start(Some(a.host_ns()), target, PROBE_INTERVAL)?;
            probe::wait_flowing(&p, 50, Duration::from_secs(10), &interrupted)?;
            nap(Duration::from_secs(1))?;
            let l = p.snapshot();
            Ok((
                p,
                format!("{} sent, {} answered so far", l.sent.len(), l.received()),
            ))
        },
    )?;

    // Step 3: cut A–B.
    let t_cut =
        step(
            tl,
            report,
            "step 3: cut the A-B transport link (nft drop of UDP 500/4500 in router A)",
            |report| {
                topology::cut()?;
                // The cut is in force once nft has returned; probes sent from now on cannot
                // take the A-B path.
                let t_cut = Instant::now();
                tl.say(format!("   link cut at {} ms", tl.ms(t_cut)));
                let mut detour: Option<(Instant, String)> = None;
                let mut replied: Option<Instant> = None;
                loop {
                    daemons.check_alive()?;
                    if detour.is_none() {
                        match topology::route_dev(&a.ns(), &b.host_addr()) {
                            Some(dev) if dev != ab => {
                                let now = Instant::now();
                                tl.say(format!(
                                    "   A's route to {} moved to dev {dev} (+{} ms)",
                                    b.net(),
                                    ms(now - t_cut)
                                ));
                                detour = Some((now, dev));
                            }
                            _ => {}
                        }
                    }
                    if replied.is_none() {
                        if let Some((seq, t)) = prober.snapshot().first_reply_sent_after(t_cut) {
                            tl.say(format!(
                                "   probes answered again from seq {seq} (+{} ms)",
                                ms(t.saturating_duration_since(t_cut))
                            ));
                            replied = Some(t);
                        }
                    }
                    if detour.is_some() && replied.is_some() {
                        break;
                    }
                    if t_cut.elapsed() > RECOVER_TIMEOUT {
                        bail!(
                    "no recovery within {RECOVER_TIMEOUT:?} of the cut: route {}, probes {}",
                    if detour.is_some() { "moved" } else { "still on the A-B tunnel" },
                    if replied.is_some() { "answered" } else { "unanswered" }
                );
                    }
                    nap(POLL)?;
                }
                let (t_detour, dev) = detour.expect("checked above");
                let t_reply = replied.expect("checked above");
                report.detour_route_ms = Some(ms(t_detour - t_cut));
                report.outage_ms = Some(ms(t_reply.saturating_duration_since(t_cut)));
                report.detour_dev = Some(dev.clone());
                if dev != ac {
                    bail!(
                        "A's route to {} moved to dev {dev}, expected the A-C tunnel {ac}",
                        b.net()
                    );
                }
                // Let the detour settle and show it.
                nap(Duration::from_secs(2))?;
                Ok((
                    t_cut,
                    format!(
                        "outage {} ms, route via {dev} after {} ms",
                        report.outage_ms.unwrap_or_default(),
                        report.detour_route_ms.unwrap_or_default()
                    ),
                ))
            },
        )?;
    let during = all_routes();
    show_routes(tl, &during);
    report.routes.insert("during_cut".into(), during);

    // Step 4: restore.
    let t_restore = step(
        tl,
        report,
        "step 4: restore the A-B link, wait for fail-back",
        |report| {
            topology::restore()?;
            let t_restore = Instant::now();
            tl.say(format!("   link restored at {} ms", tl.ms(t_restore)));
            let t_back = loop {
                daemons.check_alive()?;
                if topology::route_dev(&a.ns(), &b.host_addr()).as_deref() == Some(ab.as_str()) {
                    break Instant::now();
                }
                if t_restore.elapsed() > FAILBACK_TIMEOUT {
                    bail!(
                        "A's route to {} not back on {ab} within {FAILBACK_TIMEOUT:?}",
                        b.net()
                    );
                }
                nap(POLL)?;
            };
            report.failback_ms = Some(ms(t_back - t_restore));
            tl.say(format!(
                "   A's route to {} back on dev {ab} (+{} ms)",
                b.net(),
                ms(t_back - t_restore)
            ));
            nap(Duration::from_secs(1))?;
            let recent = prober
                .snapshot()
                .replies_since(t_back + Duration::from_millis(200));
            if recent == 0 {
                bail!("no probe answered after the fail-back");
            }
            Ok((
                t_restore,
                format!(
                    "fail-back {} ms; {recent} probes answered since",
                    ms(t_back - t_restore)
                ),
            ))
        },
    )?;
    let after = all_routes();
    show_routes(tl, &after);
    report.routes.insert("after_failback".into(), after);

    // Step 5: totals.
    let log = prober.finish();
    drop(responder);
    let end = Instant::now() + Duration::from_secs(3600);
    let lost = log.sent.len() - log.received();
    report.probes_sent = Some(log.sent.len() as u64);
    report.probes_received = Some(log.received() as u64);
    report.lost_packets = Some(lost as u64);
    report.lost_after_cut = Some(log.lost_between(t_cut, t_restore) as u64);
    report.lost_after_restore = Some(log.lost_between(t_restore, end) as u64);
    report.max_gap_ms = Some(ms(log.max_reply_gap()));
    tl.say(format!(
        "== step 5: {} probes sent, {} answered, {lost} lost ({} during the cut, {} after the restore)",
        log.sent.len(),
        log.received(),
        report.lost_after_cut.unwrap_or_default(),
        report.lost_after_restore.unwrap_or_default()
    ));
    Ok(())
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
        ("outage (cut -> replies via C)", opt_ms(r.outage_ms)),
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

/// `routevpn lab --down`: stops the kept lab's daemons (PIDs from the state dir, each
/// checked to be a routevpn daemon running a lab config), deletes the `rvlab-*`
/// namespaces and the state dir.
pub fn down() -> anyhow::Result<String> {
    if !topology::is_root() {
        bail!("needs root");
    }
    let mut stopped = Vec::new();
    for r in &ROUTERS {
        let Some(pid) = std::fs::read_to_string(r.pid_path())
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            continue;
        };
        if !is_lab_daemon(pid, &r.config_path()) {
            continue;
        }
        // SAFETY: kill(2) on a PID just verified to be this lab's daemon.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while is_lab_daemon(pid, &r.config_path()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if is_lab_daemon(pid, &r.config_path()) {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        stopped.push(format!("{}={pid}", r.letter));
    }
    let namespaces = topology::lab_namespaces();
    let errors = topology::delete_namespaces();
    let state = PathBuf::from(topology::STATE_DIR);
    if state.exists() {
        std::fs::remove_dir_all(&state).with_context(|| format!("removing {}", state.display()))?;
    }
    if !errors.is_empty() {
        bail!("could not delete: {}", errors.join("; "));
    }
    Ok(format!(
        "lab removed: daemons stopped [{}], namespaces deleted [{}]",
        stopped.join(" "),
        namespaces.join(" ")
    ))
}

/// `pid` is alive and its command line is `... daemon --config <config>`.
fn is_lab_daemon(pid: i32, config: &Path) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
    let cfg = config.as_os_str().as_encoded_bytes();
    args.contains(&&b"daemon"[..]) && args.contains(&cfg)
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

    #[test]
    fn lab_daemon_check_rejects_other_processes() {
        let me = std::process::id() as i32;
        assert!(!is_lab_daemon(
            me,
            Path::new("/run/routevpn-lab/A/routevpn.toml")
        ));
        assert!(!is_lab_daemon(i32::MAX, Path::new("/x")));
    }

    #[test]
    fn nap_sleeps() {
        let t = Instant::now();
        nap(Duration::from_millis(30)).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(30));
    }
}
