//! Runs the routevpn daemon under test inside a namespace and queries its control socket.

use crate::{dump_log, output_result, tail, wait_until, Netns, Proc, TestDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// Environment variable naming the routevpn binary to run.
pub const BIN_ENV: &str = "ROUTEVPN_BIN";

/// The routevpn binary: `$ROUTEVPN_BIN` if set, else `routevpn` beside the running
/// executable or one directory up (cargo puts integration tests in `target/*/deps/`
/// and builds the package's binary into `target/*/` before running them).
pub fn routevpn_bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os(BIN_ENV) {
            return p.to_string_lossy().into_owned();
        }
        let exe = std::env::current_exe().expect("locating the running executable");
        exe.parent()
            .into_iter()
            .flat_map(|d| [d.join("routevpn"), d.join("../routevpn")])
            .find(|p| p.is_file())
            .and_then(|p| p.canonicalize().ok())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| {
                panic!(
                    "no routevpn binary beside {}; build it or set {BIN_ENV}",
                    exe.display()
                )
            })
    })
}

/// One `[[tunnel]]` table of the routevpn config (see src/config.rs). Empty strings,
/// empty lists and `None` leave the key out, so the daemon's default applies.
#[derive(Clone, Debug)]
pub struct RvTunnel {
    pub name: String,
    pub local: String,
    pub remote: String,
    pub local_id: String,
    pub remote_id: String,
    pub psk: String,
    pub psk_file: Option<PathBuf>,
    pub ike: Vec<String>,
    pub esp: Vec<String>,
    pub start: bool,
    pub local_port: Option<u16>,
    pub remote_port: Option<u16>,
    /// Tunnel interface addresses, `169.254.12.1/30`, `fd00:12::1/64`.
    pub address: Vec<String>,
    pub mtu: Option<u16>,
    /// Prefixes routed into the tunnel (use `extra` for `{ prefix, metric }` tables).
    pub routes: Vec<String>,
    pub local_ts: Vec<String>,
    pub remote_ts: Vec<String>,
    /// Extra raw TOML lines appended to this table (`key = value`).
    pub extra: Vec<String>,
}

impl RvTunnel {
    /// The tunnel between the two routers of [`crate::Topology::two_sites`], seen from the
    /// left (`left`) or right router: underlay addresses, IDs `routerA`/`routerB`, inner
    /// address 169.254.12.1/30 or .2/30, a route to the far site, AES-GCM-128 with x25519
    /// for IKE; the left one initiates. Tests override what they need.
    pub fn two_sites(left: bool) -> RvTunnel {
        use crate::Topology as T;
        let (local, remote, lid, rid, addr, net) = if left {
            (
                T::LEFT_WAN,
                T::RIGHT_WAN,
                "routerA",
                "routerB",
                "169.254.12.1/30",
                T::RIGHT_NET,
            )
        } else {
            (
                T::RIGHT_WAN,
                T::LEFT_WAN,
                "routerB",
                "routerA",
                "169.254.12.2/30",
                T::LEFT_NET,
            )
        };
        RvTunnel {
            local: local.into(),
            remote: remote.into(),
            local_id: lid.into(),
            remote_id: rid.into(),
            psk: "two-sites-test-pre-shared-key".into(),
            ike: vec!["aes128gcm16-prfsha256-x25519".into()],
            esp: vec!["aes128gcm16".into()],
            start: left,
            address: vec![addr.into()],
            routes: vec![net.into()],
            ..RvTunnel::default()
        }
    }
}

impl Default for RvTunnel {
    fn default() -> Self {
        RvTunnel {
            name: "vti0".into(),
            local: String::new(),
            remote: String::new(),
            local_id: String::new(),
            remote_id: String::new(),
            psk: "supersecret".into(),
            psk_file: None,
            ike: vec!["aes256gcm16-prfsha384-x25519".into()],
            esp: vec!["aes256gcm16".into()],
            start: true,
            local_port: None,
            remote_port: None,
            address: Vec::new(),
            mtu: None,
            routes: Vec::new(),
            local_ts: Vec::new(),
            remote_ts: Vec::new(),
            extra: Vec::new(),
        }
    }
}

/// The routevpn config file.
#[derive(Clone, Debug, Default)]
pub struct RvConfig {
    /// None: `routevpn.sock` in the instance's private directory.
    pub control_socket: Option<PathBuf>,
    /// Extra raw top-level `key = value` lines (written before the first table).
    pub extra_top: Vec<String>,
    pub tunnels: Vec<RvTunnel>,
    /// Extra raw TOML appended at the end (further tables).
    pub extra_tail: String,
}

/// A TOML basic string.
pub fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_list(items: &[String]) -> String {
    let parts: Vec<String> = items.iter().map(|s| toml_str(s)).collect();
    format!("[{}]", parts.join(", "))
}

impl RvConfig {
    /// The config as TOML, with `socket` as control socket if none is set.
    pub fn to_toml(&self, socket: &Path) -> String {
        let sock = self.control_socket.as_deref().unwrap_or(socket);
        let mut s = format!("control_socket = {}\n", toml_str(&sock.to_string_lossy()));
        for l in &self.extra_top {
            s.push_str(l);
            s.push('\n');
        }
        for t in &self.tunnels {
            s.push_str("\n[[tunnel]]\n");
            let mut kv = |k: &str, v: String| s.push_str(&format!("{k} = {v}\n"));
            kv("name", toml_str(&t.name));
            kv("local", toml_str(&t.local));
            kv("remote", toml_str(&t.remote));
            let strings = [
                ("local_id", &t.local_id),
                ("remote_id", &t.remote_id),
                ("psk", &t.psk),
            ];
            for (k, v) in strings {
                if !v.is_empty() {
                    kv(k, toml_str(v));
                }
            }
            if let Some(f) = &t.psk_file {
                kv("psk_file", toml_str(&f.to_string_lossy()));
            }
            let lists = [
                ("ike", &t.ike),
                ("esp", &t.esp),
                ("address", &t.address),
                ("routes", &t.routes),
                ("local_ts", &t.local_ts),
                ("remote_ts", &t.remote_ts),
            ];
            for (k, v) in lists {
                if !v.is_empty() {
                    kv(k, toml_list(v));
                }
            }
            kv("start", t.start.to_string());
            let numbers = [
                ("local_port", t.local_port),
                ("remote_port", t.remote_port),
                ("mtu", t.mtu),
            ];
            for (k, v) in numbers {
                if let Some(v) = v {
                    kv(k, v.to_string());
                }
            }
            for l in &t.extra {
                s.push_str(l);
                s.push('\n');
            }
        }
        if !self.extra_tail.is_empty() {
            s.push('\n');
            s.push_str(&self.extra_tail);
            s.push('\n');
        }
        s
    }
}

/// A routevpn daemon (`routevpn daemon --config FILE`, `RUST_LOG=debug`) in a
/// namespace, logging to a file. Drop stops it (SIGTERM, SIGKILL after 3 s) and dumps
/// its log first if the test is panicking.
#[derive(Debug)]
pub struct Routevpn {
    bin: String,
    ns: Netns,
    proc: Option<Proc>,
    config_path: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    label: String,
    // Last field: removed after the process is gone.
    dir: TestDir,
}

impl Routevpn {
    /// Writes the config and spawns the daemon without waiting for it.
    pub fn spawn(ns: &Netns, cfg: &RvConfig) -> Routevpn {
        Routevpn::spawn_with(
            routevpn_bin(),
            ns,
            cfg,
            &[("RUST_LOG", "debug"), ("RUST_BACKTRACE", "1")],
        )
    }

    /// [`Routevpn::spawn`] of binary `bin` with the environment `env`.
    pub fn spawn_with(bin: &str, ns: &Netns, cfg: &RvConfig, env: &[(&str, &str)]) -> Routevpn {
        let dir = TestDir::new("rvd");
        let default_socket = dir.join("routevpn.sock");
        let socket = cfg.control_socket.clone().unwrap_or(default_socket.clone());
        let config_path = dir.join("routevpn.toml");
        std::fs::write(&config_path, cfg.to_toml(&default_socket))
            .unwrap_or_else(|e| panic!("write {}: {e}", config_path.display()));
        let log = dir.join("routevpn.log");
        let conf_s = config_path.to_string_lossy().into_owned();
        let proc = ns.spawn_env(&[bin, "daemon", "--config", &conf_s], env, &log);
        Routevpn {
            bin: bin.to_string(),
            ns: ns.clone(),
            proc: Some(proc),
            config_path,
            socket,
            log,
            label: format!("routevpn in {}", ns.name()),
            dir,
        }
    }

    /// [`Routevpn::spawn`], then waits up to 10 s until `status --json` answers.
    pub fn start(ns: &Netns, cfg: &RvConfig) -> Result<Routevpn, String> {
        let rv = Routevpn::spawn(ns, cfg);
        rv.wait_ready(Duration::from_secs(10))?;
        Ok(rv)
    }

    /// Waits until the control socket answers `status --json` with JSON; fails early (with the
    /// log) if the daemon exits.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let mut exited = None;
        let r = wait_until(timeout, Duration::from_millis(20), || {
            if let Some(st) = self.exit_status() {
                exited = Some(st);
                return Ok(());
            }
            self.status().map(|_| ())
        });
        match (r, exited) {
            (Ok(()), None) => Ok(()),
            (_, Some(st)) => Err(format!(
                "{} exited ({st}) before it was ready\n{}",
                self.label,
                tail(&self.log(), 100)
            )),
            (Err(e), None) => Err(format!("{}: {e}\n{}", self.label, tail(&self.log(), 100))),
        }
    }

    /// The daemon's exit status once it has ended, None while it runs.
    pub fn exit_status(&self) -> Option<std::process::ExitStatus> {
        self.proc.as_ref().and_then(Proc::try_wait)
    }

    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().map(Proc::pid).unwrap_or(0)
    }

    /// The daemon's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Runs `routevpn ARGS` (in the daemon's namespace); Ok(stdout) on exit 0.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = vec![self.bin.as_str()];
        cmd.extend_from_slice(args);
        self.ns.run(&cmd)
    }

    /// `routevpn status --json --socket PATH`.
    pub fn status_json(&self) -> Result<String, String> {
        let sock = self.socket.to_string_lossy().into_owned();
        let out = Command::new(&self.bin)
            .args(["status", "--json", "--socket", &sock])
            .output();
        let text = output_result("routevpn status --json", out)?;
        if text.trim().is_empty() {
            return Err("routevpn status --json printed nothing".into());
        }
        Ok(text)
    }

    /// [`Routevpn::status_json`] parsed.
    pub fn status(&self) -> Result<serde_json::Value, String> {
        let text = self.status_json()?;
        serde_json::from_str(&text).map_err(|e| format!("status is not JSON ({e}): {text}"))
    }

    /// The first BGP neighbour in `status --json` (Null when there is none yet).
    pub fn neighbor(&self) -> serde_json::Value {
        self.status()
            .map(|s| s["bgp"]["neighbors"][0].clone())
            .unwrap_or_default()
    }

    /// Waits until the first BGP neighbour is Established with BFD Up; panics with the
    /// log's tail otherwise.
    pub fn wait_neighbor_up(&self, timeout: Duration) {
        wait_until(timeout, Duration::from_millis(20), || {
            let n = self.neighbor();
            (n["state"] == "Established" && n["bfd"] == "Up")
                .then_some(())
                .ok_or_else(|| format!("neighbor {n}"))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", tail(&self.log(), 80)));
    }

    /// The daemon's log (stdout and stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the first tunnel's `last_error` in `status --json` contains `needle`;
    /// returns that error.
    pub fn wait_last_error(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        wait_until(timeout, Duration::from_millis(50), || {
            let status = self.status()?;
            match status["tunnels"][0]["last_error"].as_str() {
                Some(e) if e.contains(needle) => Ok(e.to_string()),
                other => Err(format!("last_error {other:?}, want {needle}")),
            }
        })
    }

    /// Waits until the log contains `needle`; returns the whole log.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Result<String, String> {
        wait_until(timeout, Duration::from_millis(20), || {
            let log = self.log();
            if log.contains(needle) {
                Ok(log)
            } else {
                Err(format!("{}: log has no {needle:?}", self.label))
            }
        })
    }

    /// Sends a signal by PID (`"TERM"`, `"HUP"`, ...).
    pub fn signal(&self, sig: &str) -> Result<(), String> {
        self.proc
            .as_ref()
            .ok_or_else(|| format!("{} was stopped", self.label))?
            .signal(sig)
    }

    /// Stops the daemon (SIGTERM, SIGKILL after 3 s); returns its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.proc.take().and_then(|p| p.stop())
    }

    /// Waits for the daemon to exit by itself (e.g. after a bad config).
    pub fn wait_exit(&self, timeout: Duration) -> Result<std::process::ExitStatus, String> {
        self.proc
            .as_ref()
            .ok_or_else(|| format!("{} was stopped", self.label))?
            .wait_exit(timeout)
    }
}

impl Drop for Routevpn {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Ok(s) = self.status_json() {
                dump_log(&format!("{} status --json", self.label), &s);
            }
            dump_log(&format!("{} log", self.label), &self.log());
        }
        self.stop();
    }
}
