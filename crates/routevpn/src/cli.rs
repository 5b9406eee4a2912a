//! Command line: `routevpn daemon | check | status | up | down | lab`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::config::{self, DEFAULT_CONTROL_SOCKET};
use crate::control::{self, Request, Response, StatusReport};
use crate::logging::{self, LogFormat};

/// `routevpn --version`: the package version and the git commit it was built from
/// (`-dirty` with uncommitted changes, `unknown` outside git; see build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("ROUTEVPN_GIT_COMMIT"),
    ")"
);

#[derive(Debug, Parser)]
#[command(
    name = "routevpn",
    version = VERSION,
    after_long_help = "The configuration file is described in routevpn.toml(5); \
                       the systemd unit and the non-root setup in the README's Install section.",
    about = "Route-based IPsec VPN (IKEv2 + ESP-in-UDP)"
)]
pub struct Cli {
    /// Control socket [default: control_socket from --config, else /run/routevpn/routevpn.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Daemon log format on stderr: `text` (colours only on a terminal, none with
    /// NO_COLOR; no timestamps under systemd) or `json` (one object per line).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "ROUTEVPN_LOG_FORMAT",
        default_value_t
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the VPN daemon in the foreground.
    Daemon {
        /// Configuration file (TOML).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Log filter, e.g. `info`, `debug`, `routevpn=trace,ike=debug` [default: $RUST_LOG, else info]
        #[arg(long, value_name = "LEVEL")]
        log_level: Option<String>,
    },
    /// Validate a configuration file and exit: errors and warnings go to stderr, each
    /// with its file:line:column and the line itself.
    Check {
        /// Configuration file (TOML).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Treat warnings as errors (exit status 1).
        #[arg(long)]
        strict: bool,
    },
    /// Show the running daemon's tunnels and SAs.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Configuration file, to find the control socket.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Initiate a tunnel now.
    Up {
        /// Tunnel name.
        name: String,
        /// Configuration file, to find the control socket.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Tear a tunnel's SAs down.
    Down {
        /// Tunnel name.
        name: String,
        /// Configuration file, to find the control socket.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Re-read the daemon's configuration file (same as SIGHUP): only tunnels whose
    /// settings changed are torn down and set up again.
    Reload {
        /// Configuration file, to find the control socket.
        #[arg(long, short, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Three routers in network namespaces healing around a dead link (needs root).
    Lab {
        /// Print one JSON object on stdout (the timeline goes to stderr).
        #[arg(long)]
        json: bool,
        /// Leave the lab running afterwards, to look around.
        #[arg(long, conflicts_with = "down")]
        keep: bool,
        /// Remove a lab left running by --keep, and exit.
        #[arg(long)]
        down: bool,
        /// BFD transmit interval on every tunnel (detection takes 3 of them), 10ms to 60s.
        #[arg(long, value_name = "DURATION", default_value = "50ms", value_parser = lab_bfd_interval)]
        bfd_interval: std::time::Duration,
        /// Plain BFD: no ESP-silence hint (`esp_hint`), to compare the outage.
        #[arg(long)]
        no_esp_hint: bool,
    },
    /// Write manual pages or shell completions (for packaging).
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
}

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// routevpn.8, routevpn-SUBCOMMAND.8 and routevpn.toml.5 into DIR.
    Man { dir: PathBuf },
    /// routevpn.bash, _routevpn (zsh) and routevpn.fish into DIR.
    Completions { dir: PathBuf },
}

/// `--bfd-interval`: a duration the config's BFD settings accept (RFC 5880 §4.1).
fn lab_bfd_interval(s: &str) -> Result<std::time::Duration, String> {
    let d = crate::config::parse_duration(s)?;
    if d < std::time::Duration::from_millis(10) || d > std::time::Duration::from_secs(60) {
        return Err("the BFD interval must be between 10ms and 60s".into());
    }
    Ok(d)
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    run(Cli::parse())
}

/// Run a parsed command line; errors go to stderr and exit with status 1.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Daemon { config, log_level } => {
            daemon(&config, cli.socket, log_level.as_deref(), cli.log_format)
        }
        Command::Check { config, strict } => return check_command(&config, strict),
        Command::Status { json, config } => {
            socket_path(cli.socket, config.as_deref()).and_then(|s| status(&s, json))
        }
        Command::Up { name, config } => socket_path(cli.socket, config.as_deref())
            .and_then(|s| simple(&s, &Request::Up { name })),
        Command::Down { name, config } => socket_path(cli.socket, config.as_deref())
            .and_then(|s| simple(&s, &Request::Down { name })),
        Command::Reload { config } => {
            socket_path(cli.socket, config.as_deref()).and_then(|s| simple(&s, &Request::Reload))
        }
        Command::Lab {
            json,
            keep,
            down,
            bfd_interval,
            no_esp_hint,
        } => {
            return crate::lab::main(&crate::lab::Options {
                json,
                keep,
                down,
                bfd: crate::lab::configs::Bfd {
                    interval: bfd_interval,
                    esp_hint: !no_esp_hint,
                },
            })
        }
        Command::Generate { what } => generate(what),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Configuration errors already read `file:line: message`.
            let message = match e.downcast_ref::<config::ConfigError>() {
                Some(ce) => ce.to_string(),
                None => format!("routevpn: {e:#}"),
            };
            if logging::json_active() {
                // Keeps stderr one JSON object per line.
                tracing::error!("{message}");
            } else {
                eprintln!("{message}");
            }
            ExitCode::FAILURE
        }
    }
}

fn generate(what: Generate) -> anyhow::Result<()> {
    let (dir, files) = match what {
        Generate::Man { dir } => {
            let f = crate::generate::man_pages(&dir);
            (dir, f)
        }
        Generate::Completions { dir } => {
            let f = crate::generate::completions(&dir);
            (dir, f)
        }
    };
    for f in files.with_context(|| format!("writing into {}", dir.display()))? {
        println!("{}", f.display());
    }
    Ok(())
}

/// `--socket`, else the configuration's `control_socket`, else the default.
pub fn socket_path(socket: Option<PathBuf>, config: Option<&Path>) -> anyhow::Result<PathBuf> {
    Ok(match (socket, config) {
        (Some(s), _) => s,
        (None, Some(c)) => config::load(c)?.control_socket,
        (None, None) => PathBuf::from(DEFAULT_CONTROL_SOCKET),
    })
}

/// `routevpn check`: the summary line printed on success.
pub fn check(config: &Path) -> anyhow::Result<String> {
    let cfg = config::load(config)?;
    Ok(summary(&cfg, 0))
}

fn summary(cfg: &config::Config, warnings: usize) -> String {
    let n = cfg.tunnels.len();
    let mut s = format!("config OK: {n} tunnel{}", if n == 1 { "" } else { "s" });
    if warnings > 0 {
        let _ = write!(
            s,
            ", {warnings} warning{}",
            if warnings == 1 { "" } else { "s" }
        );
    }
    s
}

/// `routevpn check [--strict]`: the error, or each warning, rendered with its line on
/// stderr; the summary on stdout. Exit 1 on an error, or on a warning with `strict`.
pub fn check_command(config: &Path, strict: bool) -> ExitCode {
    let (checked, text) = match config::load_checked(config) {
        Ok(c) => c,
        Err(e) => {
            let text = std::fs::read_to_string(config).unwrap_or_default();
            eprint!("{}", e.render(&text, "error"));
            return ExitCode::FAILURE;
        }
    };
    let severity = if strict { "error" } else { "warning" };
    for w in &checked.warnings {
        eprint!("{}", w.render(&text, severity));
    }
    if strict && !checked.warnings.is_empty() {
        eprintln!(
            "{}: {} warning(s) treated as errors (--strict)",
            config.display(),
            checked.warnings.len()
        );
        return ExitCode::FAILURE;
    }
    println!("{}", summary(&checked.config, checked.warnings.len()));
    ExitCode::SUCCESS
}

fn daemon(
    config: &Path,
    socket: Option<PathBuf>,
    log_level: Option<&str>,
    log_format: LogFormat,
) -> anyhow::Result<()> {
    // Before the configuration, so its errors come out in the chosen format.
    logging::init(log_level, log_format)?;
    let (checked, _text) = config::load_checked(config)?;
    let cfg = checked.config;
    for w in &checked.warnings {
        tracing::warn!("{w}");
    }
    let socket = socket.unwrap_or_else(|| cfg.control_socket.clone());
    crate::daemon::run(cfg, socket, config.to_path_buf())
}

/// Run one control request on a small single-threaded runtime.
fn ask(socket: &Path, req: &Request) -> anyhow::Result<Response> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(control::request(socket, req))
}

fn status(socket: &Path, json: bool) -> anyhow::Result<()> {
    match ask(socket, &Request::Status)? {
        Response::Status(r) if json => println!("{}", serde_json::to_string_pretty(&r)?),
        Response::Status(r) => print!("{}", format_status(&r)),
        Response::Ok { message } => println!("{message}"),
        Response::Error { message } => anyhow::bail!("{message}"),
    }
    Ok(())
}

fn simple(socket: &Path, req: &Request) -> anyhow::Result<()> {
    match ask(socket, req)? {
        Response::Ok { message } => println!("{message}"),
        Response::Status(r) => print!("{}", format_status(&r)),
        Response::Error { message } => anyhow::bail!("{message}"),
    }
    Ok(())
}

/// `1h02m03s`-style duration.
fn fmt_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m{s:02}s"),
        _ => format!("{d}d{h:02}h{m:02}m"),
    }
}

/// A tunnel's dataplane drops for its status line (on that line: one tunnel must fit a
/// screen); the errors summed, `status --json` has each.
fn tunnel_drops(d: &crate::control::TunnelDataplaneStatus) -> String {
    let errors = [
        d.seal_errors,
        d.send_errors,
        d.tun_read_errors,
        d.tun_write_errors,
    ]
    .iter()
    .fold(0u64, |a, &n| a.saturating_add(n));
    let shown: Vec<String> = [
        (d.tun_queue_drops, "TUN queue full"),
        (d.no_sa_drops, "no SA"),
        (errors, "errors"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} ({what})"))
    .collect();
    if shown.is_empty() {
        String::new()
    } else {
        format!("; dropped {}", shown.join(", "))
    }
}

/// Human-readable status, in the spirit of `swanctl --list-sas`.
pub fn format_status(r: &StatusReport) -> String {
    let mut o = String::new();
    let n = r.tunnels.len();
    let _ = writeln!(
        o,
        "routevpn daemon (pid {}), up {}, {} tunnel{}",
        r.daemon_pid,
        fmt_duration(r.uptime_secs),
        n,
        if n == 1 { "" } else { "s" }
    );
    let dp = &r.dataplane;
    if dp.unknown_spi + dp.invalid > 0 {
        let _ = writeln!(
            o,
            "dropped on port 4500: {} ESP for unknown SPIs, {} invalid",
            dp.unknown_spi, dp.invalid
        );
    }
    if dp.socket_drops > 0 {
        let _ = writeln!(
            o,
            "dropped by the kernel at the port-4500 sockets (receive buffers full): {}",
            dp.socket_drops
        );
    }
    for t in &r.tunnels {
        let _ = writeln!(o, "{}: {}{}", t.name, t.state, tunnel_drops(&t.dataplane));
        let _ = writeln!(o, "  local  '{}' @ {}", t.local_id, t.local);
        let _ = writeln!(o, "  remote '{}' @ {}", t.remote_id, t.remote);
        if let Some(e) = &t.last_error {
            let _ = writeln!(o, "  last error: {e}");
        }
        if let Some(ms) = t.child_sa_refill_in_ms {
            // Rounded up: "in 0s" would read as stuck.
            let secs = ms.div_ceil(1000);
            let what = if t.child_sas.is_empty() {
                "no CHILD SA (the peer deleted it): creating one"
            } else {
                "creating the missing CHILD SAs"
            };
            let _ = writeln!(o, "  {what} in {}", fmt_duration(secs));
        }
        if let Some(c) = &t.peer_cert {
            let _ = writeln!(o, "  peer certificate '{}'", c.subject);
            let _ = writeln!(o, "    issuer '{}', valid until {}", c.issuer, c.not_after);
        }
        if let Some(w) = &t.cert_warning {
            let _ = writeln!(o, "  warning: {w}");
        }
        for sa in &t.ike_sas {
            let (mark_i, mark_r) = if sa.initiator { ("*", "") } else { ("", "*") };
            // The peer goes with the age: an IPv6 peer with port would push the SPI
            // line past 100 columns.
            let _ = writeln!(
                o,
                "  IKE SA {}, {}_i{} {}_r{}",
                sa.state, sa.spi_i, mark_i, sa.spi_r, mark_r
            );
            let _ = writeln!(o, "    {}", sa.proposal);
            let _ = writeln!(
                o,
                "    {} {} ago, {} rekey{}, peer {}",
                if sa.state.eq_ignore_ascii_case("established") {
                    "established"
                } else {
                    "created"
                },
                fmt_duration(sa.age_secs),
                sa.rekeys,
                if sa.rekeys == 1 { "" } else { "s" },
                sa.peer
            );
        }
        let per_resource = t.child_sas.iter().any(|c| c.resource > 0);
        for c in &t.child_sas {
            // RFC 9611: say which SA is which once a tunnel has per-resource SAs.
            let role = match (per_resource, c.resource) {
                (false, _) => String::new(),
                (true, 0) => ", fallback".to_string(),
                (true, r) => format!(", resource {r}"),
            };
            let _ = writeln!(
                o,
                "  CHILD SA {} {} ago, ESP {}{}{role}",
                c.state,
                fmt_duration(c.age_secs),
                c.proposal,
                if c.esn { ", ESN" } else { "" }
            );
            let _ = writeln!(
                o,
                "    in  {}, {:>12} bytes, {:>9} packets",
                c.spi_in, c.bytes_in, c.packets_in
            );
            let _ = writeln!(
                o,
                "    out {}, {:>12} bytes, {:>9} packets",
                c.spi_out, c.bytes_out, c.packets_out
            );
            if c.replayed + c.icv_failures + c.malformed + c.ts_mismatch_in + c.ts_mismatch_out > 0
            {
                let _ = writeln!(
                    o,
                    "    dropped: {} replayed, {} ICV failures, {} malformed, {} outside selectors in / {} out",
                    c.replayed, c.icv_failures, c.malformed, c.ts_mismatch_in, c.ts_mismatch_out
                );
            }
            let _ = writeln!(o, "    local  {}", c.local_ts.join(" "));
            let _ = writeln!(o, "    remote {}", c.remote_ts.join(" "));
        }
    }
    if let Some(b) = &r.bgp {
        let _ = writeln!(o, "BGP AS {}, router id {}", b.asn, b.router_id);
        for n in &b.neighbors {
            let up = n
                .uptime_secs
                .map(|s| format!(" for {}", fmt_duration(s)))
                .unwrap_or_default();
            let hint = if n.bfd_esp_hint { " (ESP hint)" } else { "" };
            let bfd = n
                .bfd
                .as_deref()
                .map(|s| format!(", BFD {s}{hint}"))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  neighbor {} AS {}: {}{}{}",
                n.address, n.asn, n.state, up, bfd
            );
            let _ = writeln!(
                o,
                "    prefixes: {} received, {} accepted, {} sent",
                n.prefixes_received, n.prefixes_accepted, n.prefixes_sent
            );
        }
        for rt in &b.routes {
            let _ = writeln!(
                o,
                "  route {} via {} dev {}",
                rt.prefix, rt.next_hop, rt.device
            );
            for also in &rt.also_via {
                let _ = writeln!(
                    o,
                    "        {:width$} and via {also}",
                    "",
                    width = rt.prefix.len()
                );
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("routevpn").chain(args.iter().copied()))
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn version_names_the_git_commit() {
        let v = Cli::command().render_version();
        let commit = env!("ROUTEVPN_GIT_COMMIT");
        assert_eq!(
            v.trim(),
            format!("routevpn {} (git {commit})", env!("CARGO_PKG_VERSION"))
        );
        let head = std::process::Command::new("git")
            .args(["rev-parse", "--short=12", "HEAD"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        match head {
            // Built from this checkout: the hash (a later commit would rebuild us).
            Some(h) => assert_eq!(commit.trim_end_matches("-dirty"), h, "{v}"),
            None => assert_eq!(commit, "unknown"),
        }
    }

    #[test]
    fn arguments() {
        let c = parse(&["daemon", "--config", "a.toml", "--log-level", "debug"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Daemon { ref config, log_level: Some(ref l) } if config == Path::new("a.toml") && l == "debug"
        ));
        assert_eq!(c.socket, None);
        // --socket is accepted on every subcommand, before or after it.
        for args in [
            &["daemon", "-c", "a.toml", "--socket", "/s"][..],
            &["check", "--config", "a.toml", "--socket", "/s"],
            &["status", "--json", "--socket", "/s"],
            &["--socket", "/s", "up", "vti0"],
            &["down", "vti0", "--socket", "/s"],
        ] {
            let c = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(c.socket.as_deref(), Some(Path::new("/s")), "{args:?}");
        }
        let c = parse(&["status"]).unwrap();
        assert!(matches!(
            c.command,
            Command::Status {
                json: false,
                config: None
            }
        ));
        assert!(parse(&["daemon"]).is_err(), "daemon needs --config");
        assert!(parse(&["check"]).is_err(), "check needs --config");
        assert!(parse(&["up"]).is_err(), "up needs a name");
    }

    #[test]
    fn socket_resolution_and_check() {
        assert_eq!(
            socket_path(None, None).unwrap(),
            PathBuf::from(DEFAULT_CONTROL_SOCKET)
        );
        assert_eq!(
            socket_path(Some("/x".into()), Some(Path::new("/nonexistent"))).unwrap(),
            PathBuf::from("/x")
        );
        let dir = std::env::temp_dir().join(format!("routevpn-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = dir.join("r.toml");
        let tunnel = "[[tunnel]]\nname = \"t{}\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.{}\"\npsk = \"k\"\n";
        let two = format!(
            "control_socket = \"/tmp/x.sock\"\n{}{}",
            tunnel.replace("{}", "1"),
            tunnel.replace("{}", "2")
        );
        std::fs::write(&cfg, &two).unwrap();
        assert_eq!(
            socket_path(None, Some(&cfg)).unwrap(),
            PathBuf::from("/tmp/x.sock")
        );
        assert_eq!(check(&cfg).unwrap(), "config OK: 2 tunnels");
        std::fs::write(&cfg, tunnel.replace("{}", "1")).unwrap();
        assert_eq!(check(&cfg).unwrap(), "config OK: 1 tunnel");
        std::fs::write(
            &cfg,
            "[[tunnel]]\nname = \"t\"\nlocal = \"1.2.3.4\"\nremote = \"x\"\npsk = \"k\"\n",
        )
        .unwrap();
        let e = check(&cfg).unwrap_err();
        let ce = e
            .downcast_ref::<config::ConfigError>()
            .expect("a ConfigError");
        assert_eq!(ce.line, Some(4));
        assert!(ce.to_string().ends_with("r.toml:4:10: tunnel \"t\": invalid remote address \"x\": expected an IPv4 or IPv6 address, \"%any\" or a name"), "{ce}");
        assert_eq!(
            run(parse(&["check", "-c", cfg.to_str().unwrap()]).unwrap()),
            ExitCode::FAILURE
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn status_without_daemon_fails_cleanly() {
        let sock =
            std::env::temp_dir().join(format!("routevpn-cli-nodaemon-{}.sock", std::process::id()));
        let e = status(&sock, false).unwrap_err();
        assert!(
            format!("{e:#}").starts_with("cannot reach routevpn daemon at "),
            "{e:#}"
        );
    }

    #[test]
    fn human_format() {
        let s = format_status(&crate::control::tests::sample());
        assert!(
            s.starts_with("routevpn daemon (pid 4242), up 1h02m03s, 2 tunnels\n"),
            "{s}"
        );
        assert!(
            s.contains("vti0: established; dropped 17 (TUN queue full), 2 (no SA)\n"),
            "{s}"
        );
        assert!(
            s.contains("vti1: connecting\n"),
            "no drops: nothing added\n{s}"
        );
        assert!(
            !s.contains("receive buffers full"),
            "no socket drops: no line\n{s}"
        );
        assert!(
            s.contains("dropped on port 4500: 3 ESP for unknown SPIs, 1 invalid\n"),
            "{s}"
        );
        assert!(s.contains("  remote 'routerB' @ 192.0.2.2\n"), "{s}");
        assert!(
            s.contains("  IKE SA ESTABLISHED, 0123456789abcdef_i* fedcba9876543210_r\n"),
            "{s}"
        );
        assert!(
            s.contains(
                "    AES_GCM_16_256/PRF_HMAC_SHA2_384/CURVE_25519\n    established 1m05s ago, 1 rekey, peer 192.0.2.2:500\n"
            ),
            "{s}"
        );
        assert!(
            s.contains("  CHILD SA INSTALLED 5s ago, ESP AES_GCM_16_256/NO_EXT_SEQ\n"),
            "{s}"
        );
        assert!(
            s.contains("    in  c0ffee01,         1000 bytes,        10 packets\n"),
            "{s}"
        );
        assert!(s.contains("    local  0.0.0.0/0 ::/0\n"), "{s}");
        assert!(
            s.contains("vti1: connecting\n  local  '2001:db8::1' @ 2001:db8::1\n"),
            "{s}"
        );
        assert!(s.contains("  last error: AUTHENTICATION_FAILED\n"), "{s}");
        assert!(!s.contains("CHILD SA ("), "{s}");
        // A tunnel whose CHILD SA the peer deleted.
        let mut r = crate::control::tests::sample();
        let t = &mut r.tunnels[0];
        t.state = "ike-only".into();
        t.child_sas.clear();
        t.child_sa_refill_in_ms = Some(1_500);
        t.dataplane = Default::default();
        let s = format_status(&r);
        assert!(s.contains("vti0: ike-only\n"), "{s}");
        assert!(
            s.contains("  no CHILD SA (the peer deleted it): creating one in 2s\n"),
            "{s}"
        );
        assert!(s.contains("BGP AS 65001, router id 10.1.0.1\n"), "{s}");
        assert!(
            s.contains(
                "  neighbor 169.254.12.2 AS 65002: Established for 1m01s, BFD Up (ESP hint)\n"
            ),
            "{s}"
        );
        assert!(
            s.contains("    prefixes: 2 received, 2 accepted, 2 sent\n"),
            "{s}"
        );
        assert!(
            s.contains("  route 10.2.0.0/24 via 169.254.12.2 dev vti0\n"),
            "{s}"
        );
        assert_eq!(fmt_duration(0), "0s");
        assert_eq!(fmt_duration(90061), "1d01h01m");
    }

    /// `routevpn status` for one tunnel fits a 24x100 terminal: in steady state with
    /// BGP, and in the middle of a rekey (two IKE and two CHILD SAs) with drops.
    #[test]
    fn one_tunnel_is_one_screen() {
        let mut r = crate::control::tests::sample();
        r.tunnels.truncate(1);
        let t = &mut r.tunnels[0];
        t.local = "2001:db8:ffff:ffff:ffff:ffff:ffff:1".into();
        t.remote = "2001:db8:ffff:ffff:ffff:ffff:ffff:2".into();
        t.local_id = "router-a.site-1.example.net".into();
        t.remote_id = "router-b.site-2.example.net".into();
        t.last_error = Some("AUTHENTICATION_FAILED: peer sent AUTHENTICATION_FAILED".into());
        t.ike_sas[0].peer = "[2001:db8:ffff:ffff:ffff:ffff:ffff:2]:4500".into();
        t.ike_sas[0].proposal = "AES_CBC_256/HMAC_SHA2_512_256/PRF_HMAC_SHA2_512/MODP_4096".into();
        t.ike_sas[0].age_secs = 86_400 * 3;
        t.child_sas[0].proposal = "AES_CBC_256/HMAC_SHA2_512_256/MODP_4096/EXT_SEQ".into();
        t.child_sas[0].esn = true;
        t.child_sas[0].bytes_in = u64::MAX;
        t.child_sas[0].packets_in = u64::MAX;
        t.child_sas[0].replayed = 123_456_789;
        t.child_sas[0].local_ts = vec!["0.0.0.0/0".into(), "::/0".into()];
        let check = |r: &StatusReport, what: &str| {
            let s = format_status(r);
            let lines: Vec<&str> = s.lines().collect();
            assert!(lines.len() <= 24, "{what}: {} lines\n{s}", lines.len());
            for l in &lines {
                assert!(
                    l.chars().count() <= 100,
                    "{what}: {} columns: {l}",
                    l.chars().count()
                );
            }
        };
        check(
            &r,
            "steady state with BGP, certificates and an expiry warning",
        );
        // The rekey screen is the PSK tunnel's (a certificate adds three lines).
        let mut rekey = r.clone();
        rekey.bgp = None;
        let t = &mut rekey.tunnels[0];
        t.peer_cert = None;
        t.cert_warning = None;
        t.ike_sas.push(t.ike_sas[0].clone());
        t.child_sas.push(t.child_sas[0].clone());
        check(&rekey, "during a rekey");
    }
}
