//! Network namespaces, processes inside them, veth links and the two-site topology.

use crate::{ns, output_result, unique_name, wait_until};
use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A network namespace owned by the test. Cloning shares it; when the last clone is
/// dropped every process still inside is killed (by PID, from `ip netns pids`) and the
/// namespace is deleted, which also destroys its veth ends.
#[derive(Clone, Debug)]
pub struct Netns(Arc<NetnsInner>);

#[derive(Debug)]
struct NetnsInner {
    name: String,
}

impl Netns {
    /// Creates `rv<pid>-<n>-<role>` with `lo` up. Panics when that fails.
    pub fn new(role: &str) -> Netns {
        let name = unique_name(role);
        let created = ns::run("ip", &["netns", "add", &name]);
        created.unwrap_or_else(|e| panic!("{e}"));
        // The guard exists from here on, so a failure below still deletes the namespace.
        let ns = Netns(Arc::new(NetnsInner { name }));
        ns.must(&["ip", "link", "set", "lo", "up"]);
        // No IPv6 duplicate address detection at all, also not for the link-local
        // addresses that neighbour discovery uses: addresses work at once.
        ns.must(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// `ip netns exec NAME cmd...`, output captured.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        self.command(cmd)
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {cmd:?}: {e}", self.name()))
    }

    /// Runs `cmd` in the namespace; Ok(stdout) if it exited 0.
    pub fn run(&self, cmd: &[&str]) -> Result<String, String> {
        output_result(
            &format!("[{}] {}", self.name(), cmd.join(" ")),
            self.command(cmd).output(),
        )
    }

    /// Runs `cmd` in the namespace and panics unless it exits 0; returns stdout.
    pub fn must(&self, cmd: &[&str]) -> String {
        self.run(cmd).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `sh -c script` in the namespace, output captured.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["sh", "-c", script])
    }

    /// A `Command` for `ip netns exec NAME cmd...` (the caller adds env, stdio...).
    pub fn command(&self, cmd: &[&str]) -> Command {
        ns::command(self.name(), cmd)
    }

    /// Starts `cmd` in the namespace with stdout and stderr appended to `log`.
    pub fn spawn(&self, cmd: &[&str], log: &Path) -> Proc {
        self.spawn_env(cmd, &[], log)
    }

    /// [`Netns::spawn`] with extra environment variables.
    pub fn spawn_env(&self, cmd: &[&str], env: &[(&str, &str)], log: &Path) -> Proc {
        let mut c = self.command(cmd);
        c.envs(env.iter().copied());
        Proc::spawn_command(
            c,
            &format!("[{}] {}", self.name(), cmd.join(" ")),
            log,
            Some(self.clone()),
        )
    }

    /// Starts `tcpdump ARGS` in the namespace (its output and diagnostics to `log`) and
    /// returns once it is capturing ("listening on" in its diagnostics), not after a sleep.
    pub fn tcpdump(&self, args: &[&str], log: &Path) -> Proc {
        let mut cmd = vec!["tcpdump"];
        cmd.extend_from_slice(args);
        let p = self.spawn(&cmd, log);
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            let s = std::fs::read_to_string(log).unwrap_or_default();
            s.contains("listening on")
                .then_some(())
                .ok_or_else(|| format!("[{}] tcpdump not capturing yet: {s}", self.name()))
        })
        .unwrap_or_else(|e| panic!("{e}"));
        p
    }

    /// Starts `cmd` in the namespace with stdout to `stdout` and stderr to `stderr`
    /// (both truncated), e.g. a JSON report apart from its diagnostics.
    pub fn spawn_split(&self, cmd: &[&str], stdout: &Path, stderr: &Path) -> Proc {
        let label = format!("[{}] {}", self.name(), cmd.join(" "));
        let open = |p: &Path| {
            std::fs::File::create(p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()))
        };
        let mut c = self.command(cmd);
        c.stdout(open(stdout)).stderr(open(stderr));
        Proc::spawn_prepared(c, &label, Some(self.clone()))
    }

    /// Sets a sysctl inside the namespace (`net.ipv4.ip_forward=1` style).
    pub fn sysctl(&self, key: &str, value: &str) {
        self.must(&["sysctl", "-qw", &format!("{key}={value}")]);
    }

    /// Adds an address (`10.1.0.1/24`, `fd00:1::1/64`) to `ifname`; IPv6 without DAD.
    pub fn addr_add(&self, ifname: &str, cidr: &str) {
        ns::addr_add(self.name(), ifname, cidr).unwrap_or_else(|e| panic!("[{}] {e}", self.name()));
    }

    /// `ip route add DST via GW` (IPv6 chosen by the gateway's form).
    pub fn route_add(&self, dst: &str, via: &str) {
        let fam = if via.contains(':') { "-6" } else { "-4" };
        self.must(&["ip", fam, "route", "add", dst, "via", via]);
    }

    /// One `ping -c1 -W1` to `dst` (IPv4 or IPv6).
    pub fn ping(&self, dst: &str) -> Result<(), String> {
        self.run(&["ping", "-n", "-c", "1", "-W", "1", dst])
            .map(|_| ())
    }

    /// Pings `dst` until one answer arrives or `timeout` passes.
    pub fn wait_ping(&self, dst: &str, timeout: Duration) -> Result<(), String> {
        wait_until(timeout, Duration::from_millis(50), || self.ping(dst))
    }

    /// PIDs of all processes in the namespace.
    pub fn pids(&self) -> Vec<u32> {
        ns::pids(self.name())
    }

    /// Addresses and routes, for failure reports.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        for cmd in [
            &["ip", "-br", "addr"][..],
            &["ip", "-4", "route", "show", "table", "all"][..],
            &["ip", "-6", "route"][..],
        ] {
            let o = self.exec(cmd);
            s.push_str(&format!(
                "$ {}\n{}",
                cmd.join(" "),
                String::from_utf8_lossy(&o.stdout)
            ));
        }
        s
    }
}

impl Drop for NetnsInner {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let ns_desc = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.name,
                    "sh",
                    "-c",
                    "ip -br addr; ip route; ip -6 route",
                ])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            crate::dump_log(&format!("namespace {}", self.name), &ns_desc);
        }
        // Processes left in the namespace were started by this test; kill them by PID.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let pids = ns::pids(&self.name);
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for pid in pids {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .output();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = ns::del(&self.name);
    }
}

/// A process started by the test. Drop stops it by PID: SIGTERM, then SIGKILL after a
/// grace period, and reaps it. Holds its namespace alive while it runs.
#[derive(Debug)]
pub struct Proc {
    // A Mutex so that status checks work through `&self`.
    child: Mutex<Option<Child>>,
    pid: u32,
    label: String,
    grace: Duration,
    _ns: Option<Netns>,
}

impl Proc {
    /// Spawns `cmd` with stdin null and stdout/stderr appended to `log`.
    pub fn spawn_command(mut cmd: Command, label: &str, log: &Path, ns: Option<Netns>) -> Proc {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open log {}: {e}", log.display()));
        let file2 = file.try_clone().expect("clone log file handle");
        cmd.stdout(file).stderr(file2);
        Proc::spawn_prepared(cmd, label, ns)
    }

    /// Spawns `cmd` as it is set up, with stdin null.
    fn spawn_prepared(mut cmd: Command, label: &str, ns: Option<Netns>) -> Proc {
        cmd.stdin(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {label}: {e}"));
        Proc {
            pid: child.id(),
            child: Mutex::new(Some(child)),
            label: label.to_string(),
            grace: Duration::from_secs(3),
            _ns: ns,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Child>> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// How long Drop/[`Proc::stop`] waits after SIGTERM before SIGKILL.
    pub fn set_grace(&mut self, grace: Duration) {
        self.grace = grace;
    }

    /// Exit status once the process has ended (it is reaped then), None while it runs.
    pub fn try_wait(&self) -> Option<ExitStatus> {
        self.lock()
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    pub fn is_running(&self) -> bool {
        self.lock().is_some() && self.try_wait().is_none()
    }

    /// Sends a signal by PID (`"TERM"`, `"HUP"`, `"USR1"` ...) if still running.
    pub fn signal(&self, sig: &str) -> Result<(), String> {
        if !self.is_running() {
            return Err(format!("{} is not running", self.label));
        }
        let pid = self.pid.to_string();
        output_result(
            "kill",
            Command::new("kill")
                .args([&format!("-{sig}"), &pid])
                .output(),
        )
        .map(|_| ())
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus, String> {
        wait_until(timeout, Duration::from_millis(10), || {
            self.try_wait()
                .ok_or_else(|| format!("{} still running", self.label))
        })
    }

    /// SIGTERM, wait up to the grace period, then SIGKILL. Returns the exit status;
    /// later calls return None.
    pub fn stop(&self) -> Option<ExitStatus> {
        let mut child = self.lock().take()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).output();
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Creates a veth pair `a_if` in `a` ↔ `b_if` in `b`, adds the addresses (IPv4 or IPv6
/// CIDRs; IPv6 with `nodad` so they are usable at once) and brings both ends up.
pub fn veth(a: &Netns, a_if: &str, a_addrs: &[&str], b: &Netns, b_if: &str, b_addrs: &[&str]) {
    ns::veth(a.name(), a_if, a_addrs, b.name(), b_if, b_addrs)
        .unwrap_or_else(|e| panic!("veth {}:{a_if} - {}:{b_if}: {e}", a.name(), b.name()));
}

/// Two sites joined by a transport link:
///
/// ```text
/// left_host eth0 ── lan0 left wan0 ══ 192.0.2.0/24 ══ wan0 right lan0 ── eth0 right_host
///  10.1.0.2          10.1.0.1   192.0.2.1     192.0.2.2   10.2.0.1          10.2.0.2
///  fd00:1::2         fd00:1::1  2001:db8::1   2001:db8::2 fd00:2::1         fd00:2::2
/// ```
///
/// Routers forward IPv4 and IPv6; hosts default-route via their router. The routers
/// have no route to the other site: that is the tunnel's job.
#[derive(Debug)]
pub struct Topology {
    pub left: Netns,
    pub right: Netns,
    pub left_host: Netns,
    pub right_host: Netns,
}

impl Topology {
    pub const LEFT_WAN: &'static str = "192.0.2.1";
    pub const RIGHT_WAN: &'static str = "192.0.2.2";
    /// RFC 3849 documentation prefix on the transport link, for IPv6-outer tests.
    pub const LEFT_WAN6: &'static str = "2001:db8::1";
    pub const RIGHT_WAN6: &'static str = "2001:db8::2";
    pub const WAN_IF: &'static str = "wan0";
    pub const LAN_IF: &'static str = "lan0";
    pub const HOST_IF: &'static str = "eth0";

    pub const LEFT_NET: &'static str = "10.1.0.0/24";
    pub const RIGHT_NET: &'static str = "10.2.0.0/24";
    pub const LEFT_NET6: &'static str = "fd00:1::/64";
    pub const RIGHT_NET6: &'static str = "fd00:2::/64";
    pub const LEFT_ROUTER_LAN: &'static str = "10.1.0.1";
    pub const RIGHT_ROUTER_LAN: &'static str = "10.2.0.1";
    pub const LEFT_ROUTER_LAN6: &'static str = "fd00:1::1";
    pub const RIGHT_ROUTER_LAN6: &'static str = "fd00:2::1";
    pub const LEFT_HOST: &'static str = "10.1.0.2";
    pub const RIGHT_HOST: &'static str = "10.2.0.2";
    pub const LEFT_HOST6: &'static str = "fd00:1::2";
    pub const RIGHT_HOST6: &'static str = "fd00:2::2";

    pub fn two_sites() -> Topology {
        let t = Topology {
            left: Netns::new("left"),
            right: Netns::new("right"),
            left_host: Netns::new("lhost"),
            right_host: Netns::new("rhost"),
        };
        veth(
            &t.left,
            Self::WAN_IF,
            &["192.0.2.1/24", "2001:db8::1/64"],
            &t.right,
            Self::WAN_IF,
            &["192.0.2.2/24", "2001:db8::2/64"],
        );
        veth(
            &t.left,
            Self::LAN_IF,
            &["10.1.0.1/24", "fd00:1::1/64"],
            &t.left_host,
            Self::HOST_IF,
            &["10.1.0.2/24", "fd00:1::2/64"],
        );
        veth(
            &t.right,
            Self::LAN_IF,
            &["10.2.0.1/24", "fd00:2::1/64"],
            &t.right_host,
            Self::HOST_IF,
            &["10.2.0.2/24", "fd00:2::2/64"],
        );
        for r in [&t.left, &t.right] {
            r.sysctl("net.ipv4.ip_forward", "1");
            r.sysctl("net.ipv6.conf.all.forwarding", "1");
        }
        t.left_host.route_add("default", Self::LEFT_ROUTER_LAN);
        t.left_host.route_add("default", Self::LEFT_ROUTER_LAN6);
        t.right_host.route_add("default", Self::RIGHT_ROUTER_LAN);
        t.right_host.route_add("default", Self::RIGHT_ROUTER_LAN6);
        t
    }

    /// The four namespace names (left, right, left_host, right_host).
    pub fn names(&self) -> Vec<String> {
        [&self.left, &self.right, &self.left_host, &self.right_host]
            .iter()
            .map(|n| n.name().to_string())
            .collect()
    }
}
