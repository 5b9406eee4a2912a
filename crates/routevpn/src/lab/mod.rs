//! `routevpn lab`: three routers in network namespaces, a routevpn daemon in each with
//! tunnels to both others and eBGP + BFD over every tunnel; a host behind each router.
//! The lab probes host A → host B at 100 packets/s, cuts the A–B transport link
//! (nftables drop of IKE and ESP-in-UDP in router A), measures how long until traffic
//! flows again via C, restores the link and measures the fail-back.
//!
//! It installs nothing, needs root, and removes everything it made (namespaces, the
//! daemons it started — by PID — and the nft table) on success, failure and
//! SIGINT/SIGTERM, unless `--keep`; `routevpn lab --down` removes a kept lab.
//!
//! Here: the entry point and the run's frame. The steps are in `steps.rs`, the daemons in
//! `daemons.rs`, teardown and `--down` in `cleanup.rs`, signals in `interrupt.rs`,
//! progress lines in `timeline.rs`, the JSON report and summary table in `report.rs`.

pub mod configs;
pub mod probe;
pub mod status;
pub mod topology;

mod cleanup;
mod daemons;
mod interrupt;
mod report;
mod steps;
mod timeline;

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

pub use cleanup::down;
pub use report::{summary_table, Report, Step};

use configs::Routing;
use daemons::Daemons;
use timeline::Timeline;
use topology::ROUTERS;

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
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// One JSON object on stdout (the timeline still goes to stderr).
    pub json: bool,
    /// Leave the lab running afterwards.
    pub keep: bool,
    /// Remove a kept lab and exit.
    pub down: bool,
    /// BFD on every tunnel: interval (× 3 to detect a dead link) and the ESP hint.
    pub bfd: configs::Bfd,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            json: false,
            keep: false,
            down: false,
            bfd: configs::Bfd::DEFAULT,
        }
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
    report.bfd = opts.bfd.describe();
    report.routing = match routing {
        Routing::Bgp => "bgp",
        Routing::Static => "static",
    }
    .into();
    interrupt::install_signal_handlers();

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
        steps::run(opts, tl, report, routing, &mut daemons)?;
        if routing != Routing::Bgp {
            bail!("BGP is not available in this build: the lab ran with static routes (DPD failover), not BGP + BFD");
        }
        Ok(())
    })();
    report.ok = result.is_ok();
    cleanup::after_run(opts, tl, report, &mut daemons, state, &result);
    result
}
