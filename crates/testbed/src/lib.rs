//! The one test bed of routevpn: network namespaces, veth links, processes inside
//! namespaces, and the peers a test, the lab or the benchmark runs there — routevpn
//! daemons, strongSwan (charon + kernel-libipsec), BIRD and FRR. Every resource is an
//! RAII guard, so namespaces, processes and files are removed even when a test panics;
//! on a panic the guards dump their logs first.
//!
//! Start each test with `if !testbed::require_root() { return; }`. The routevpn binary
//! comes from the caller: `ROUTEVPN_BIN`, else the `routevpn` beside the running test
//! executable (see [`routevpn_bin`]).
//!
//! Safety rules (DEVELOPERS.md): transport links use RFC 5737 addresses only, private
//! subnets live only inside namespaces created here, and only processes started here
//! are killed, by PID.

pub mod bgpfeed;
mod bird;
mod frr;
pub mod hostile;
pub mod ikeflood;
mod nat;
mod netns;
pub mod ns;
pub mod pcap;
mod routevpn;
mod strongswan;
mod tcp;

pub use bird::Bird;
pub use frr::Frr;
pub use nat::Nat;
pub use netns::{veth, Netns, Proc, Topology};
pub use routevpn::{routevpn_bin, toml_str, Routevpn, RvConfig, RvTunnel, BIN_ENV};
pub use strongswan::{
    charon_binary, parse_list_sas_raw, swanctl_conf, ChildSa, IkeSa, Strongswan, SwanConn,
    STRONGSWAN_CONF,
};
pub use tcp::{in_netns, pseudo_random, tcp_send, tcp_sink, udp_flows, udp_send, Digest};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Set to `1` (CI does) to turn a skipped namespace test into a failure.
pub const REQUIRE_ENV: &str = "ROUTEVPN_REQUIRE_NETNS";
/// Set to `1` to keep the per-test directories (configs, logs) after the test.
pub const KEEP_ENV: &str = "ROUTEVPN_KEEP_TEST_DIRS";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A name unique to this test process: `rv<pid>-<counter>-<role>`. Leftovers of a
/// crashed earlier run carry another pid, so parallel and repeated runs never collide.
pub fn unique_name(role: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("rv{}-{}-{}", std::process::id(), n, role)
}

/// The name of the running test (libtest names each test's thread after it).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .filter(|n| *n != "main")
        .unwrap_or("this test")
        .to_string()
}

fn skip_or_panic(what: &str, reason: &str) -> bool {
    let test = test_name();
    if std::env::var(REQUIRE_ENV).as_deref() == Ok("1") {
        panic!("{test} needs {what} ({reason}) and {REQUIRE_ENV}=1 forbids skipping");
    }
    // Straight to fd 2, not eprintln!: libtest captures the macros' output of passing
    // tests, and a skip must be visible.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*****\nSKIPPED: {test} needs {what} ({reason})\n*****"
    );
    false
}

fn is_root() -> bool {
    // Effective uid is the second field of the "Uid:" line.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn probe_netns() -> Result<(), String> {
    if !is_root() {
        return Err("not running as root".into());
    }
    let name = unique_name("probe");
    let add = Command::new("ip").args(["netns", "add", &name]).output();
    match add {
        Err(e) => Err(format!("cannot run `ip`: {e}")),
        Ok(o) if !o.status.success() => Err(format!(
            "`ip netns add` failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Ok(_) => {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            reap_stale();
            Ok(())
        }
    }
}

/// True when the test can use root and network namespaces. Otherwise prints a loud
/// `SKIPPED: <test> needs root and network namespaces` and returns false, or panics
/// when `ROUTEVPN_REQUIRE_NETNS=1` (in CI a skip is a failure).
pub fn require_root() -> bool {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    match PROBE.get_or_init(probe_netns) {
        Ok(()) => true,
        Err(reason) => skip_or_panic("root and network namespaces", reason),
    }
}

/// Like [`require_root`], and also checks that each program is installed (an absolute
/// path, or a name looked up in `PATH`).
pub fn require_programs(programs: &[&str]) -> bool {
    if !require_root() {
        return false;
    }
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| find_program(p).is_none())
        .collect();
    if missing.is_empty() {
        true
    } else {
        skip_or_panic(
            "root, network namespaces and some programs",
            &format!("missing: {}", missing.join(", ")),
        )
    }
}

/// A program a test uses for one of its checks (a capture, a throughput figure): its
/// path, or None with a loud note; with `ROUTEVPN_REQUIRE_NETNS=1` a missing program is
/// a failure, so CI never passes a check that did not run.
pub fn optional_program(program: &str, check: &str) -> Option<PathBuf> {
    let found = find_program(program);
    if found.is_none() {
        skip_or_panic(
            program,
            &format!("{program} not installed: {check} not done"),
        );
    }
    found
}

/// [`require_root`] plus charon, swanctl and ping.
pub fn require_strongswan() -> bool {
    if !require_root() {
        return false;
    }
    if strongswan::charon_binary().is_none() {
        return skip_or_panic(
            "strongSwan",
            "no /usr/lib/ipsec/charon or /usr/sbin/charon-systemd",
        );
    }
    require_programs(&["swanctl", "ping"])
}

/// Absolute path of `program` (itself if it contains a `/`, else searched in `PATH`).
pub fn find_program(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Calls `f` until it returns `Ok`, sleeping `poll` between tries; after `timeout`
/// returns the last error. `f` always runs at least once.
pub fn wait_until<T>(
    timeout: Duration,
    poll: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) => {
                if start.elapsed() >= timeout {
                    return Err(format!("timed out after {timeout:?}: {e}"));
                }
            }
        }
        std::thread::sleep(poll);
    }
}

/// Ok(stdout) when the command exited 0, else an error with its status and output.
pub fn output_result(what: &str, out: std::io::Result<Output>) -> Result<String, String> {
    match out {
        Err(e) => Err(format!("{what}: cannot run: {e}")),
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(format!(
            "{what}: {}\nstdout: {}\nstderr: {}",
            o.status,
            String::from_utf8_lossy(&o.stdout).trim(),
            String::from_utf8_lossy(&o.stderr).trim()
        )),
    }
}

/// Runs a command in the root namespace; Ok(stdout) on success.
pub fn run(cmd: &[&str]) -> Result<String, String> {
    let (prog, args) = cmd.split_first().expect("empty command");
    output_result(&cmd.join(" "), Command::new(prog).args(args).output())
}

/// Names listed by `ip netns list`.
pub fn netns_list() -> Vec<String> {
    ns::list()
}

/// The string at JSON `pointer` (e.g. "/ike_sas/0/spi_i") of a `status --json` value;
/// panics naming the path if it is missing, so a renamed field can never turn a
/// comparison into `null == null`.
pub fn json_str(v: &serde_json::Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
        .to_string()
}

/// The path of every key in `v`, arrays written `[]` (`tunnels[].ike_sas[].spi_i`):
/// what a documented JSON schema must cover.
pub fn json_key_paths(v: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(v, &p, out);
                    out.push(p);
                }
            }
            serde_json::Value::Array(a) => {
                for v in a {
                    walk(v, &format!("{prefix}[]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, "", &mut out);
    out
}

/// Prints a figure for the reader of the test log, straight to fd 2 (libtest captures
/// the print macros of passing tests).
pub fn report(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Returns the last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(n);
    lines[skip..].join("\n")
}

/// Prints a log to stderr between markers (used by the guards when a test fails).
/// Write errors are ignored: a panic inside a Drop during unwinding would abort the
/// test process before the remaining guards clean up.
pub fn dump_log(label: &str, text: &str) {
    use std::io::Write;
    const MAX_LINES: usize = 600;
    let total = text.lines().count();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "===== {label} ({total} lines, last {MAX_LINES} shown) ====="
    );
    let _ = writeln!(err, "{}", tail(text, MAX_LINES));
    let _ = writeln!(err, "===== end of {label} =====");
}

/// The pid in a name made by [`unique_name`] (`rv<pid>-<n>-<role>`).
fn harness_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("rv")?;
    let (pid, rest) = rest.split_once('-')?;
    let (n, _role) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Removes namespace names and temp dirs left by earlier test processes of this harness
/// that died without unwinding (abort, SIGKILL): their names carry a pid that no longer
/// exists. Processes are never touched here.
pub fn reap_stale() {
    let dead = |name: &str| {
        harness_pid(name).is_some_and(|pid| {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        })
    };
    for ns in netns_list() {
        if dead(&ns) {
            let _ = run(&["ip", "netns", "del", &ns]);
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            if e.file_name().to_str().is_some_and(dead) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// A private directory for one test resource (configs, logs, sockets); removed on drop
/// unless `ROUTEVPN_KEEP_TEST_DIRS=1`.
#[derive(Debug)]
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(role: &str) -> TestDir {
        let path = std::env::temp_dir().join(unique_name(role));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var(KEEP_ENV).as_deref() == Ok("1") {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "keeping test dir {}",
                self.path.display()
            );
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Waits until the daemon reports its first tunnel `up` (IKE SA established, CHILD SA
/// installed); returns that tunnel's status. Panics with the daemon's log otherwise.
pub fn wait_tunnel_up(rv: &Routevpn, timeout: Duration) -> serde_json::Value {
    wait_until(timeout, Duration::from_millis(50), || {
        let t = rv.status()?["tunnels"][0].clone();
        (t["state"] == "up")
            .then_some(t.clone())
            .ok_or_else(|| format!("tunnel not up: {t}"))
    })
    .unwrap_or_else(|e| panic!("{e}\nrouteVPN log:\n{}", tail(&rv.log(), 60)))
}

/// `(transmitted, received)` from ping's summary line.
pub fn ping_summary(out: &str) -> Option<(u64, u64)> {
    let line = out.lines().find(|l| l.contains("packets transmitted"))?;
    let mut nums = line
        .split(',')
        .filter_map(|part| part.split_whitespace().next()?.parse::<u64>().ok());
    Some((nums.next()?, nums.next()?))
}

/// True if `dev` in `ns` is administratively up.
pub fn link_up(ns: &Netns, dev: &str) -> bool {
    ns.run(&["ip", "-o", "link", "show", dev])
        .map(|s| {
            s.split('<').nth(1).is_some_and(|f| {
                f.split('>')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .any(|x| x == "UP")
            })
        })
        .unwrap_or(false)
}
