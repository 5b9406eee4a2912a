//! `scripts/bench`: throughput and CPU cost of the routevpn dataplane, next to the plain
//! routed path, a strongSwan (kernel-libipsec) tunnel and two userspace WireGuard
//! tunnels (boringtun, wireguard-go) on the same topology.
//!
//! iperf3 TCP runs host A → host B in every case, so the sender, the receiver, both
//! routers' forwarding and the four veths are identical; only what carries 10.1/24 ↔
//! 10.2/24 between the routers differs:
//! - `veth`: plain IP routing over the transport veth (the path's limit);
//! - `strongswan`: charon + kernel-libipsec on both routers (userspace ESP-in-UDP, TUN ipsec0);
//! - `routevpn`: routevpn daemon on both routers (userspace ESP-in-UDP, TUN rvb0,
//!   169.254.12.1/30 ↔ .2/30, `routes = ["10.x.0.0/24"]`);
//! - `boringtun`, `wireguard-go`: that userspace WireGuard on both routers, set up with
//!   `wg` on the same addresses and routes as routevpn (wireguard.rs).
//!
//! IPsec tunnels: IKE aes128gcm16-prfsha256-x25519, ESP aes128gcm16; every tunnel's MTU
//! is 1400 (kernel-libipsec's default; set the same on routevpn and WireGuard).
//!
//! A binary of its own crate rather than one in `testbed`: its command line and
//! reporting would otherwise become dependencies of the test bed, which routevpn links
//! into its shipped binary for `routevpn lab`.

mod cases;
mod json;
mod latency;
mod markdown;
mod measure;
mod report;
mod routes;
mod signal;
mod tunnels;
mod wireguard;

use clap::{Parser, ValueEnum};
use json::{round, Obj, J};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

/// Exit status: 0 if every requested case ran, 1 if any failed (the others still run
/// and are reported), 2 on bad usage / missing prerequisites, 130 on Ctrl-C.
#[derive(Parser, Debug)]
#[command(
    name = "scripts/bench",
    about = "Throughput and CPU cost of the routevpn dataplane, next to plain routing, strongSwan kernel-libipsec, boringtun and wireguard-go",
    after_help = "Needs root, iproute2, iperf3; strongSwan (charon-systemd or charon, swanctl, \
                  libcharon-extra-plugins) for that case; wg (wireguard-tools) with boringtun-cli \
                  or wireguard-go for theirs (scripts/bench installs them when missing); cargo \
                  for the routevpn build.\n\
                  Exit status: 0 if every requested case ran or was skipped for a missing tool \
                  (printed as SKIPPED), 1 if any failed (the others still run and are reported), \
                  2 on bad usage / missing prerequisites, 130 on Ctrl-C."
)]
struct Args {
    /// Seconds per iperf3 run.
    #[arg(long, visible_alias = "seconds", value_name = "S", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..))]
    duration: u64,
    /// Three seconds per run.
    #[arg(long)]
    quick: bool,
    /// Where to write the JSON report [default: ./bench-results.json].
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Also write the throughput table as Markdown (for the README) to FILE.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
    /// Cases to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "veth,strongswan,routevpn,boringtun,wireguard-go"
    )]
    only: Vec<Case>,
    /// Leave out the WireGuard comparison (boringtun, wireguard-go).
    #[arg(long)]
    no_wireguard: bool,
    /// The boringtun-cli binary [default: target/bench-tools/bin/boringtun-cli, where
    /// scripts/bench installs it, else boringtun-cli on PATH].
    #[arg(long, value_name = "PATH")]
    boringtun_bin: Option<PathBuf>,
    /// iperf3 parallel stream counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4",
          value_parser = clap::value_parser!(u32).range(1..))]
    streams: Vec<u32>,
    /// The routevpn binary to run (no build).
    #[arg(long, value_name = "PATH", conflicts_with = "no_build")]
    routevpn_bin: Option<PathBuf>,
    /// Use target/release/routevpn as it is.
    #[arg(long)]
    no_build: bool,
    /// Keep configs and logs after the run.
    #[arg(long)]
    keep_logs: bool,
    /// Instead of the dataplane cases: how fast BGP routes reach the kernel, for these
    /// prefix counts (comma-separated, e.g. 2000,20000,100000).
    #[arg(long, value_delimiter = ',', value_name = "N,...",
          value_parser = clap::value_parser!(u64).range(1..=131_072))]
    routes: Vec<u64>,
    /// Bound on each phase (install, withdraw) of a --routes run, in seconds.
    #[arg(long, value_name = "S", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..))]
    routes_timeout: u64,
    /// Hold time the BGP feed of a --routes run proposes, in seconds (RFC 4271: 0 or
    /// at least 3).
    #[arg(long, value_name = "S", default_value_t = routes::FEED_HOLD,
          value_parser = clap::value_parser!(u16).range(3..))]
    routes_hold: u16,
    /// Instead of the dataplane cases: set-up time, memory, threads and idle CPU of
    /// one daemon holding N tunnels to another (comma-separated, e.g. 100,1000).
    #[arg(long, value_delimiter = ',', value_name = "N,...", conflicts_with = "routes",
          value_parser = clap::value_parser!(u64).range(1..=tunnels::MAX_TUNNELS))]
    tunnels: Vec<u64>,
    /// A top-level line added to both routevpn configs, e.g. `dataplane_threads = 1`
    /// or `dataplane_busy_poll = "0"` (repeatable; to compare settings).
    #[arg(long, value_name = "KEY = VALUE")]
    routevpn_option: Vec<String>,
    /// Run both routevpn daemons at this nice value (`nice -n`; negative: ahead of
    /// iperf3 and everything else on the cores), to see what a run waits for.
    #[arg(long, value_name = "N", allow_negative_numbers = true,
          value_parser = clap::value_parser!(i32).range(-20..=19))]
    routevpn_nice: Option<i32>,
    /// Bound on the set-up of each --tunnels count, in seconds.
    #[arg(long, value_name = "S", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..))]
    tunnels_timeout: u64,
}

/// One way of carrying the sites' traffic between the routers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Case {
    Veth,
    Strongswan,
    Routevpn,
    Boringtun,
    WireguardGo,
}

/// Report order.
pub const CASES: [Case; 5] = [
    Case::Veth,
    Case::Strongswan,
    Case::Routevpn,
    Case::Boringtun,
    Case::WireguardGo,
];

impl Case {
    pub fn name(self) -> &'static str {
        match self {
            Case::Veth => "veth",
            Case::Strongswan => "strongswan",
            Case::Routevpn => "routevpn",
            Case::Boringtun => "boringtun",
            Case::WireguardGo => "wireguard-go",
        }
    }

    /// The userspace WireGuard cases.
    pub fn is_wireguard(self) -> bool {
        matches!(self, Case::Boringtun | Case::WireguardGo)
    }

    pub fn label(self) -> &'static str {
        match self {
            Case::Veth => "plain veth",
            Case::Strongswan => "strongSwan",
            Case::Routevpn => "routevpn",
            Case::Boringtun => "boringtun",
            Case::WireguardGo => "wireguard-go",
        }
    }

    pub fn description(self) -> String {
        match self {
            Case::Veth => "plain IP routing over the transport veth (no tunnel): the path's limit; CPU is the kernel's".into(),
            Case::Strongswan => format!(
                "strongSwan charon ({}) with kernel-libipsec on both routers (userspace ESP-in-UDP via TUN ipsec0); daemon CPU = both charons",
                testbed::charon_binary().map(|p| p.display().to_string()).unwrap_or_default()
            ),
            Case::Routevpn => "routevpn daemon on both routers (userspace ESP-in-UDP via TUN rvb0, 169.254.12.1/30 <-> .2/30, routes to the far host net); daemon CPU = both daemons".into(),
            Case::Boringtun | Case::WireguardGo => format!(
                "{} on both routers (userspace WireGuard, ChaCha20-Poly1305, via its TUN; set up with wg; same addresses, routes and MTU as routevpn); daemon CPU = both processes",
                self.name()
            ),
        }
    }
}

/// What the cases share: settings, the work directory and the records so far.
pub struct Ctx {
    pub duration: u64,
    pub streams: Vec<u32>,
    pub work: PathBuf,
    pub rv_bin: Option<String>,
    pub boringtun_bin: Option<PathBuf>,
    pub psk: String,
    pub records: Vec<Obj>,
    /// `--routevpn-option` lines.
    pub rv_options: Vec<String>,
    /// `--routevpn-nice`.
    pub rv_nice: Option<i32>,
}

/// Progress and diagnostics go to stderr; the table to stdout.
pub fn log(msg: &str) {
    eprintln!("{msg}");
}

/// The workspace root (for `cargo build` and target/).
fn root() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    p.canonicalize().unwrap_or(p)
}

fn sh(cmd: &str, args: &[&str]) -> String {
    testbed::ns::run(cmd, args)
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let duration = if args.quick { 3 } else { args.duration };
    let json_out = absolute(
        &args
            .json
            .clone()
            .unwrap_or_else(|| "bench-results.json".into()),
    );
    let wanted = wanted_cases(&args);
    if !testbed::ns::run("id", &["-u"]).is_ok_and(|u| u.trim() == "0") {
        log("bench: needs root (network namespaces)");
        return ExitCode::from(2);
    }
    for t in ["ip", "iperf3", "timeout", "ping", "ss", "unshare"] {
        if testbed::find_program(t).is_none() {
            log(&format!("bench: '{t}' not found"));
            return ExitCode::from(2);
        }
    }
    if args.keep_logs {
        std::env::set_var(testbed::KEEP_ENV, "1");
    }
    let work = std::env::temp_dir().join(format!(
        "rvbench.{}.{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    ));
    if let Err(e) = std::fs::create_dir_all(&work) {
        log(&format!("bench: cannot create {}: {e}", work.display()));
        return ExitCode::from(2);
    }
    signal::install();
    let mut ctx = Ctx {
        duration,
        streams: args.streams.clone(),
        work: work.clone(),
        rv_bin: None,
        boringtun_bin: args.boringtun_bin.as_deref().map(absolute),
        psk: format!("bench-psk-{}-{}", std::process::id(), random_u64()),
        records: Vec::new(),
        rv_options: args.routevpn_option.clone(),
        rv_nice: args.routevpn_nice,
    };
    let rc = if !args.routes.is_empty() {
        run_routes(&args, &mut ctx, &json_out)
    } else if !args.tunnels.is_empty() {
        run_tunnels(&args, &mut ctx, &json_out)
    } else {
        run(&args, &wanted, &mut ctx, &json_out)
    };
    if args.keep_logs || rc != 0 {
        log(&format!("bench: logs kept in {}", work.display()));
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    ExitCode::from(rc)
}

/// The cases to run: `--only` without repeats, less the WireGuard ones with
/// `--no-wireguard`.
fn wanted_cases(args: &Args) -> Vec<Case> {
    let mut wanted: Vec<Case> = Vec::new();
    for &c in &args.only {
        let dropped = args.no_wireguard && c.is_wireguard();
        if !dropped && !wanted.contains(&c) {
            wanted.push(c);
        }
    }
    wanted
}

/// A fresh PSK part per run, from the kernel's RNG.
fn random_u64() -> u64 {
    use std::io::Read as _;
    let mut b = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    u64::from_le_bytes(b)
}

/// Cargo's target directory (release builds, and the tools scripts/bench installs).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

/// The routevpn binary to measure, building it unless told otherwise.
fn routevpn_binary(args: &Args, ctx: &mut Ctx) {
    let target = target_dir();
    let bin = if let Some(p) = &args.routevpn_bin {
        Some(absolute(p))
    } else if args.no_build {
        Some(target.join("release/routevpn"))
    } else {
        log("== cargo build --release -p routevpn");
        let built = Command::new("cargo")
            .args(["build", "--release", "-p", "routevpn"])
            .current_dir(root())
            .stdout(std::io::stderr())
            .status()
            .is_ok_and(|s| s.success());
        if built {
            Some(target.join("release/routevpn"))
        } else {
            ctx.records.push(
                report::info(Case::Routevpn)
                    .with("status", "failed")
                    .with("error", "cargo build --release -p routevpn failed"),
            );
            None
        }
    };
    ctx.rv_bin = bin.map(|b| b.to_string_lossy().into_owned());
}

/// `--routes`: the route-install benchmark (routes.rs) on the routevpn binary.
fn run_routes(args: &Args, ctx: &mut Ctx, json_out: &Path) -> u8 {
    run_on_binary(args, ctx, |bin, ctx| {
        let counts: Vec<usize> = args.routes.iter().map(|&n| n as usize).collect();
        let limit = Duration::from_secs(args.routes_timeout);
        routes::run_all(bin, &ctx.work, &counts, limit, args.routes_hold, json_out)
    })
}

/// `--tunnels`: the many-tunnels benchmark (tunnels.rs) on the routevpn binary.
fn run_tunnels(args: &Args, ctx: &mut Ctx, json_out: &Path) -> u8 {
    run_on_binary(args, ctx, |bin, ctx| {
        let counts: Vec<usize> = args.tunnels.iter().map(|&n| n as usize).collect();
        let limit = Duration::from_secs(args.tunnels_timeout);
        tunnels::run_all(bin, &ctx.work, &ctx.psk, &counts, limit, json_out)
    })
}

/// Runs a benchmark of the routevpn binary alone; the exit status: 2 without a binary,
/// the signal that interrupted it, else whether it succeeded.
fn run_on_binary(args: &Args, ctx: &mut Ctx, bench: impl FnOnce(&str, &Ctx) -> bool) -> u8 {
    routevpn_binary(args, ctx);
    let Some(bin) = ctx.rv_bin.clone().filter(|b| Path::new(b).is_file()) else {
        log("bench: no routevpn binary to measure");
        return 2;
    };
    let ok = bench(&bin, ctx);
    match signal::caught() {
        Some(sig) => u8::try_from(sig).unwrap_or(1),
        None => u8::from(!ok),
    }
}

fn run(args: &Args, wanted: &[Case], ctx: &mut Ctx, json_out: &Path) -> u8 {
    if wanted.contains(&Case::Routevpn) {
        routevpn_binary(args, ctx);
    }
    let nproc = sh("nproc", &[]);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let kernel = sh("uname", &["-r"]);
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    let load = load.join(" ");
    let started = sh("date", &["+%Y-%m-%dT%H:%M:%S%z"]);
    let iperf_version = sh("iperf3", &["--version"]);
    let iperf_version = iperf_version
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("");
    let streams: Vec<String> = ctx.streams.iter().map(u32::to_string).collect();
    let streams = streams.join(",");
    println!("routevpn dataplane benchmark  {started}");
    let model = if cpu_model.is_empty() {
        "unknown CPU"
    } else {
        &cpu_model
    };
    // Caps the UDP receiver's socket buffer (not per network namespace).
    let rmem_max = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap_or_default();
    println!(
        "machine: {nproc} CPUs, {model}, kernel {kernel}, load {load}, net.core.rmem_max {}",
        rmem_max.trim()
    );
    println!(
        "iperf3 {iperf_version}, TCP host A 10.1.0.2 -> host B 10.2.0.2 via router A -> router B; {} s per run; streams {streams}",
        ctx.duration
    );
    println!(
        "tunnels: IKE {}, ESP {} (AES-GCM-128), tunnel MTU {}",
        cases::IKE,
        cases::ESP,
        cases::TUN_MTU
    );
    if !ctx.rv_options.is_empty() {
        println!("routevpn options: {}", ctx.rv_options.join("; "));
    }
    if let Some(n) = ctx.rv_nice {
        println!("routevpn daemons run at nice {n}");
    }
    if wanted.iter().any(|c| c.is_wireguard()) {
        println!(
            "WireGuard: ChaCha20-Poly1305 (its only cipher), keys from wg genkey for this run, tunnel MTU {}",
            cases::TUN_MTU
        );
        println!("           ({})", wireguard::MTU_NOTE);
    }
    println!("comparison: same 4-namespace path for all cases; only the router A <-> router B carriage differs");
    println!("            (plain routing over the transport veth | strongSwan kernel-libipsec | routevpn |");
    println!("             boringtun | wireguard-go)");
    println!();

    let mut descriptions = Obj::new();
    for c in CASES {
        descriptions.set(c.name(), c.description());
    }
    let meta = Obj::new()
        .with("schema", "routevpn-bench/1")
        .with("started", started.as_str())
        .with(
            "machine",
            Obj::new()
                .with("nproc", nproc.parse::<i64>().map_or(J::Null, J::Int))
                .with("cpu_model", cpu_model.as_str())
                .with("kernel", kernel.as_str())
                .with("loadavg_at_start", load.as_str())
                .with("net_core_rmem_max", rmem_max.trim())
                .with("clk_tck", measure::clk_tck()),
        )
        .with("duration_s", ctx.duration)
        .with(
            "streams",
            ctx.streams.iter().map(|&s| J::from(s)).collect::<Vec<_>>(),
        )
        .with(
            "cases_requested",
            wanted.iter().map(|c| J::from(c.name())).collect::<Vec<_>>(),
        )
        .with("topology", "host A 10.1.0.2/24 -- router A 10.1.0.1 | 192.0.2.1/24 == transport veth == 192.0.2.2/24 | router B 10.2.0.1 -- host B 10.2.0.2/24; iperf3 client on host A, server on host B, all cases")
        .with("cipher", Obj::new().with("ike", cases::IKE).with("esp", cases::ESP))
        .with("tunnel_mtu_configured", u32::from(cases::TUN_MTU))
        .with(
            "routevpn_options",
            ctx.rv_options.iter().map(|o| J::from(o.as_str())).collect::<Vec<_>>(),
        )
        .with("routevpn_nice", ctx.rv_nice.map_or(J::Null, |n| J::from(i64::from(n))))
        .with(
            "units",
            Obj::new()
                .with("GB", "1e9 bytes received by the iperf3 server")
                .with("cpu", "seconds of CPU time"),
        )
        .with("case_descriptions", descriptions);

    for c in CASES.into_iter().filter(|c| wanted.contains(c)) {
        if let Some(sig) = run_case(ctx, c) {
            return u8::try_from(sig).unwrap_or(1);
        }
    }
    println!();
    let finished = sh("date", &["+%Y-%m-%dT%H:%M:%S%z"]);
    let markdown = args.markdown.as_deref().map(absolute);
    match report::report(
        &meta,
        &ctx.records,
        json_out,
        markdown.as_deref(),
        &finished,
    ) {
        Ok(true) => 0,
        Ok(false) => 1,
        Err(e) => {
            log(&format!("bench: cannot write {}: {e}", json_out.display()));
            1
        }
    }
}

/// Runs one case; any failure ends just that case (after its own cleanup) and is
/// recorded. Some(exit status) when a signal arrived.
fn run_case(ctx: &mut Ctx, c: Case) -> Option<i32> {
    let build_failed = ctx.records.iter().any(|r| {
        r.str("case") == c.name() && !r.contains("streams") && r.str("status") == "failed"
    });
    if build_failed {
        return None;
    }
    let bg = round(measure::baseline(Duration::from_secs(1)), 1);
    log(&format!(
        "== {} (background machine load before: {bg:.1}% busy)",
        c.name()
    ));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cases::run(ctx, c)));
    let error = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(cases::Stop::Failed(msg))) => Some(msg),
        Ok(Err(cases::Stop::Skipped(why))) => {
            log(&format!("bench: SKIPPED {}: {why}", c.name()));
            ctx.records
                .push(report::info(c).with("status", "skipped").with("error", why));
            None
        }
        Ok(Err(cases::Stop::Signal(sig))) => {
            log(&format!(
                "bench: {}, cleaning up",
                if sig == 130 {
                    "interrupted"
                } else {
                    "terminated"
                }
            ));
            return Some(sig);
        }
        Err(panic) => Some(format!(
            "unexpected failure: {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("panic")
        )),
    };
    if let Some(sig) = signal::caught() {
        return Some(sig);
    }
    ctx.records
        .push(report::info(c).with("background_busy_pct_before", bg));
    if let Some(msg) = error {
        ctx.records
            .push(report::info(c).with("status", "failed").with("error", msg));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted(argv: &[&str]) -> Vec<&'static str> {
        let args = Args::try_parse_from([&["bench"], argv].concat()).unwrap();
        wanted_cases(&args).into_iter().map(Case::name).collect()
    }

    #[test]
    fn wireguard_comparison_is_in_the_full_run_and_can_be_left_out() {
        assert_eq!(
            wanted(&[]),
            [
                "veth",
                "strongswan",
                "routevpn",
                "boringtun",
                "wireguard-go"
            ]
        );
        assert_eq!(
            wanted(&["--no-wireguard"]),
            ["veth", "strongswan", "routevpn"]
        );
        assert_eq!(
            wanted(&["--only", "wireguard-go,routevpn,wireguard-go"]),
            ["wireguard-go", "routevpn"]
        );
        assert_eq!(
            wanted(&["--only", "boringtun,veth", "--no-wireguard"]),
            ["veth"]
        );
        assert!(Args::try_parse_from(["bench", "--only", "wireguard"]).is_err());
    }

    #[test]
    fn routevpn_nice_takes_a_negative_value_within_nice_s_range() {
        let nice = |v: &str| Args::try_parse_from(["bench", "--routevpn-nice", v]);
        assert_eq!(nice("-10").unwrap().routevpn_nice, Some(-10));
        assert_eq!(nice("19").unwrap().routevpn_nice, Some(19));
        assert!(nice("-21").is_err());
        assert!(nice("20").is_err());
        assert_eq!(Args::try_parse_from(["bench"]).unwrap().routevpn_nice, None);
    }
}
