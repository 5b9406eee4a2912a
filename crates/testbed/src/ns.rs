//! Namespace commands by name, with no ownership: create, delete, run inside, sysctl,
//! veth pairs. The RAII [`crate::Netns`] of the tests and the long-lived namespaces of
//! `routevpn lab` are both built from these.

use std::fmt;
use std::process::{Command, Stdio};

/// A command that could not run or exited non-zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdError {
    /// The program could not be started at all.
    Spawn { prog: String, error: String },
    /// It ran and exited with a failure status.
    Failed {
        cmdline: String,
        status: String,
        stderr: String,
    },
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::Spawn { prog, error } => write!(f, "cannot run {prog}: {error}"),
            CmdError::Failed {
                cmdline,
                status,
                stderr,
            } => write!(f, "`{cmdline}` failed ({status}): {stderr}"),
        }
    }
}

impl std::error::Error for CmdError {}

/// Runs a program to completion in the current namespace; Ok(stdout) when it exits 0.
pub fn run(prog: &str, args: &[&str]) -> Result<String, CmdError> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CmdError::Spawn {
            prog: prog.to_string(),
            error: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(CmdError::Failed {
            cmdline: format!("{prog} {}", args.join(" ")),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A `Command` for `ip netns exec NS cmd...` (the caller adds env, stdio...).
/// `ip netns exec` execs the program itself, so the child's PID is the program's.
pub fn command(ns: &str, cmd: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(cmd);
    c.stdin(Stdio::null());
    c
}

/// Runs `cmd` inside namespace `ns` (`ip netns exec`); Ok(stdout) when it exits 0.
pub fn exec(ns: &str, cmd: &[&str]) -> Result<String, CmdError> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(cmd);
    run("ip", &full)
}

/// Runs an `ip` command inside namespace `ns` (`ip -n NS ...`).
pub fn ip_n(ns: &str, args: &[&str]) -> Result<String, CmdError> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Creates namespace `name` and brings its `lo` up.
pub fn add(name: &str) -> Result<(), CmdError> {
    run("ip", &["netns", "add", name])?;
    ip_n(name, &["link", "set", "lo", "up"]).map(|_| ())
}

/// Deletes namespace `name` (its veth ends, routes and nft rules go with it).
pub fn del(name: &str) -> Result<(), CmdError> {
    run("ip", &["netns", "del", name]).map(|_| ())
}

/// Names listed by `ip netns list`.
pub fn list() -> Vec<String> {
    run("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

/// PIDs of all processes in namespace `name`.
pub fn pids(name: &str) -> Vec<u32> {
    run("ip", &["netns", "pids", name])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Sets a sysctl inside `ns` (`net.ipv4.ip_forward`, `1`); without a `sysctl` binary
/// it writes /proc/sys from inside the namespace.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), CmdError> {
    exec(ns, &["sysctl", "-q", "-w", &format!("{key}={value}")])
        .or_else(|_| {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            exec(ns, &["sh", "-c", &format!("echo {value} > {path}")])
        })
        .map(|_| ())
}

/// Creates a veth pair `a_if` in `a` ↔ `b_if` in `b`, both ends down and without
/// addresses. Created inside `a` with the peer placed straight into `b`: no name ever
/// appears in the root namespace.
pub fn veth_pair(a: &str, a_if: &str, b: &str, b_if: &str) -> Result<(), CmdError> {
    ip_n(
        a,
        &[
            "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b,
        ],
    )
    .map(|_| ())
}

/// Adds an address (`10.1.0.1/24`, `fd00:1::1/64`) to `ifname` in `ns`; IPv6 without DAD.
pub fn addr_add(ns: &str, ifname: &str, cidr: &str) -> Result<(), CmdError> {
    if cidr.contains(':') {
        ip_n(ns, &["-6", "addr", "add", cidr, "dev", ifname, "nodad"])
    } else {
        ip_n(ns, &["addr", "add", cidr, "dev", ifname])
    }
    .map(|_| ())
}

/// `ip link set IF up` in `ns`.
pub fn link_set_up(ns: &str, ifname: &str) -> Result<(), CmdError> {
    ip_n(ns, &["link", "set", ifname, "up"]).map(|_| ())
}

/// A veth pair with its addresses, both ends up: `a_if` in `a` ↔ `b_if` in `b`. Both
/// ends go up before any address: an IPv6 address added while the link has no carrier
/// is not answered for by neighbour discovery for up to a second.
pub fn veth(
    a: &str,
    a_if: &str,
    a_addrs: &[&str],
    b: &str,
    b_if: &str,
    b_addrs: &[&str],
) -> Result<(), CmdError> {
    veth_pair(a, a_if, b, b_if)?;
    link_set_up(a, a_if)?;
    link_set_up(b, b_if)?;
    for (ns, ifname, addrs) in [(a, a_if, a_addrs), (b, b_if, b_addrs)] {
        for cidr in addrs {
            addr_add(ns, ifname, cidr)?;
        }
    }
    Ok(())
}
