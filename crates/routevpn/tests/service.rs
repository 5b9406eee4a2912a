//! routevpn as a system service: the systemd unit verifies, the packaged example
//! configuration passes `check`, the daemon runs as a non-root user holding only
//! CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE and carries traffic,
//! `control_socket_group` lets the group's members (and nobody else) use the control
//! socket, and sd_notify messages reach a socket standing in for systemd in order.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use testbed::{routevpn_bin, wait_until, Netns, Routevpn, RvConfig, RvTunnel, TestDir, Topology};

const T: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn require_env() -> bool {
    std::env::var(testbed::REQUIRE_ENV).as_deref() == Ok("1")
}

// ---------------------------------------------------------------------------------
// The unit file and the example configuration (no root needed).

/// `systemd-analyze verify` on the unit, with the binary path pointing at the built
/// binary; Err(output) when it complains. None when systemd-analyze is missing.
fn verify_unit(unit_text: &str) -> Option<Result<(), String>> {
    let analyze = testbed::find_program("systemd-analyze")?;
    let dir = TestDir::new("unit");
    let unit = dir.join("routevpn.service");
    std::fs::write(
        &unit,
        unit_text.replace("/usr/sbin/routevpn", routevpn_bin()),
    )
    .unwrap();
    // --man=no: the manual pages are installed by the package, not on this host.
    let out = Command::new(analyze)
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("run systemd-analyze");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Unknown keys are only warnings (exit 0): any line about our unit is a failure.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("routevpn.service"))
        .collect();
    Some(if out.status.success() && ours.is_empty() {
        Ok(())
    } else {
        Err(format!("exit {}: {text}", out.status))
    })
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(repo_file("packaging/routevpn.service")).unwrap();
    match verify_unit(&unit) {
        None if require_env() => panic!(
            "systemd-analyze is missing and {}=1 forbids skipping (apt-get install systemd)",
            testbed::REQUIRE_ENV
        ),
        None => {
            eprintln!("SKIPPED: systemd-analyze not installed");
            return;
        }
        Some(r) => r.unwrap_or_else(|e| panic!("systemd-analyze verify: {e}")),
    }
    // The check can fail: a misspelt key is reported.
    let broken = unit.replace("ProtectHome=yes", "ProtectHom=yes");
    assert!(
        verify_unit(&broken).unwrap().is_err(),
        "a misspelt key must be reported"
    );

    // What the issue asks of the unit, setting by setting.
    let setting = |k: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
            .collect()
    };
    let caps = "CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE";
    for (k, v) in [
        ("Type", "notify"),
        ("NotifyAccess", "main"),
        ("User", "routevpn"),
        ("Group", "routevpn"),
        ("AmbientCapabilities", caps),
        ("CapabilityBoundingSet", caps),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("RuntimeDirectory", "routevpn"),
        (
            "RestrictAddressFamilies",
            "AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        ),
        ("DeviceAllow", "/dev/net/tun rw"),
    ] {
        assert_eq!(setting(k), vec![v.to_string()], "{k}=");
    }
    assert!(setting("SystemCallFilter").contains(&"@system-service".to_string()));
    assert!(setting("WatchdogSec").len() == 1);
    assert!(
        setting("ExecStartPre")[0].ends_with("routevpn check --config /etc/routevpn/routevpn.toml")
    );
    assert!(setting("ExecReload")[0].contains("routevpn reload"));
    // The control socket's default directory is the unit's RuntimeDirectory.
    assert_eq!(
        Path::new(routevpn::config::DEFAULT_CONTROL_SOCKET).parent(),
        Some(Path::new("/run/routevpn"))
    );
    assert_eq!(setting("ReadWritePaths"), vec!["/run/routevpn".to_string()]);
}

#[test]
fn packaged_example_configuration_passes_check() {
    let text = std::fs::read_to_string(repo_file("packaging/routevpn.toml")).unwrap();
    assert!(text.contains("\ncontrol_socket_group = \"routevpn\"\n"));
    // The package creates group routevpn; this host need not have it.
    let dir = TestDir::new("example");
    let path = dir.join("routevpn.toml");
    std::fs::write(
        &path,
        text.replace(
            "control_socket_group = \"routevpn\"",
            "control_socket_group = \"root\"",
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(routevpn_bin())
        .args(["check", "--strict", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Every commented key in it is one the configuration reference knows.
    let known: Vec<&str> = routevpn::config::reference::SECTIONS
        .iter()
        .flat_map(|s| s.keys.iter().map(|k| k.name))
        .collect();
    for line in text.lines() {
        let l = line.trim_start_matches('#').trim();
        if let Some((k, _)) = l.split_once(" = ") {
            if !k.contains(' ') {
                assert!(known.contains(&k), "example mentions unknown key {k:?}");
            }
        }
    }
}

#[test]
fn version_names_the_git_commit() {
    let out = Command::new(routevpn_bin())
        .arg("--version")
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    let commit = v
        .trim()
        .strip_prefix(&format!("routevpn {} (git ", env!("CARGO_PKG_VERSION")))
        .and_then(|r| r.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected --version: {v}"));
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(h) => assert_eq!(commit.trim_end_matches("-dirty"), h),
        None => assert_eq!(commit, "unknown"),
    }
}

// ---------------------------------------------------------------------------------
// Throwaway users and groups, and /dev/net/tun access, undone even on failure.

/// useradd/userdel/groupadd of parallel tests take turns on /etc/passwd's lock.
static ACCOUNTS: Mutex<()> = Mutex::new(());

fn accounts() -> std::sync::MutexGuard<'static, ()> {
    ACCOUNTS.lock().unwrap_or_else(|p| p.into_inner())
}

/// A system user (with its own group) created for one test; Drop deletes both.
struct TempUser {
    name: String,
    uid: u32,
    gid: u32,
}

impl TempUser {
    /// `useradd --system --user-group NAME`, plus supplementary `groups`.
    fn new(role: &str, groups: &[&str]) -> TempUser {
        // useradd names: at most 32 characters, lowercase.
        let name = format!("rvt{}{role}", std::process::id() % 100_000);
        let _lock = accounts();
        let _ = Command::new("userdel").arg(&name).output(); // a crashed earlier run
        let mut cmd = Command::new("useradd");
        cmd.args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ]);
        if !groups.is_empty() {
            cmd.args(["--groups", &groups.join(",")]);
        }
        let out = cmd.arg(&name).output().expect("run useradd");
        assert!(
            out.status.success(),
            "useradd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = |flag: &str| -> u32 {
            let o = Command::new("id").args([flag, &name]).output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
        };
        let (uid, gid) = (id("-u"), id("-g"));
        TempUser { name, uid, gid }
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _lock = accounts();
        let _ = Command::new("userdel").arg(&self.name).output();
        let _ = Command::new("groupdel").arg(&self.name).output();
    }
}

/// A group created for one test; Drop deletes it.
struct TempGroup {
    name: String,
}

impl TempGroup {
    fn new(role: &str) -> TempGroup {
        let name = format!("rvg{}{role}", std::process::id() % 100_000);
        let _lock = accounts();
        let _ = Command::new("groupdel").arg(&name).output();
        let out = Command::new("groupadd")
            .args(["--system", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "groupadd {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        TempGroup { name }
    }
}

impl Drop for TempGroup {
    fn drop(&mut self) {
        let _lock = accounts();
        let _ = Command::new("groupdel").arg(&self.name).output();
    }
}

/// Gives group `gid` read-write access to /dev/net/tun (as Debian's udev default 0666,
/// or the package's udev rule, would); Drop restores the owner group and mode.
struct TunAccess {
    gid: u32,
    mode: u32,
}

const TUN: &str = "/dev/net/tun";

impl TunAccess {
    fn grant(gid: u32) -> TunAccess {
        let meta = std::fs::metadata(TUN).expect("/dev/net/tun");
        let saved = TunAccess {
            gid: meta.gid(),
            mode: meta.permissions().mode() & 0o7777,
        };
        std::os::unix::fs::chown(TUN, None, Some(gid)).unwrap();
        std::fs::set_permissions(TUN, std::fs::Permissions::from_mode(saved.mode | 0o060)).unwrap();
        saved
    }
}

impl Drop for TunAccess {
    fn drop(&mut self) {
        let _ = std::os::unix::fs::chown(TUN, None, Some(self.gid));
        let _ = std::fs::set_permissions(TUN, std::fs::Permissions::from_mode(self.mode));
    }
}

fn require_user_tools() -> bool {
    testbed::require_root()
        && testbed::require_programs(&["useradd", "groupadd", "setpriv", "ping"])
}

/// A directory the user owns (mode 0755), for its control socket.
fn user_dir(dir: &TestDir, name: &str, u: &TempUser) -> PathBuf {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(u.uid), Some(u.gid)).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// CapEff from /proc/PID/status, and the four uids of its Uid: line.
fn caps_and_uids(pid: u32) -> (String, Vec<u32>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in /proc/{pid}/status"))
            .trim()
            .to_string()
    };
    let uids = field("Uid:")
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect();
    (field("CapEff:"), uids)
}

// ---------------------------------------------------------------------------------

/// Embedded BGP with BFD over the tunnel; announces the side's LAN (no static routes).
fn bgp(left: bool) -> String {
    let (asn, peer_asn, rid, net, nbr) = if left {
        (65001, 65002, "10.1.0.1", Topology::LEFT_NET, "169.254.12.2")
    } else {
        (
            65002,
            65001,
            "10.2.0.1",
            Topology::RIGHT_NET,
            "169.254.12.1",
        )
    };
    format!(
        "[bgp]\nasn = {asn}\nrouter_id = \"{rid}\"\nnetworks = [\"{net}\"]\nhold_time = \"9s\"\n\
         connect_retry = \"1s\"\n\n[[bgp.neighbor]]\naddress = \"{nbr}\"\nasn = {peer_asn}\nbfd = true\n"
    )
}

/// The two-site tunnel, with address-derived IDs (no local_id/remote_id lines).
fn tunnel(left: bool) -> RvTunnel {
    RvTunnel {
        local_id: String::new(),
        remote_id: String::new(),
        psk: "service-test-psk-0123456789".into(),
        ..RvTunnel::two_sites(left)
    }
}

#[test]
fn non_root_daemon_with_three_capabilities_carries_traffic() {
    if !require_user_tools() {
        return;
    }
    let user = TempUser::new("d", &[]);
    let _tun = TunAccess::grant(user.gid);
    let dir = TestDir::new("nonroot");
    let run = user_dir(&dir, "run", &user);
    // Exactly the unit's capabilities, as ambient capabilities of a non-root user.
    let wrapper = dir.join("as-user.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec setpriv --reuid={} --regid={} --init-groups \
             --inh-caps=+net_admin,+net_raw,+net_bind_service \
             --ambient-caps=+net_admin,+net_raw,+net_bind_service {} \"$@\"\n",
            user.uid,
            user.gid,
            routevpn_bin()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let topo = Topology::two_sites();
    // Routes come from BGP only: the LANs reach each other once the session is up.
    let bgp_tunnel = |left| RvTunnel {
        routes: vec![],
        ..tunnel(left)
    };
    let right = Routevpn::start(
        &topo.right,
        &RvConfig {
            tunnels: vec![bgp_tunnel(false)],
            extra_tail: bgp(false),
            ..RvConfig::default()
        },
    )
    .unwrap();
    let left_cfg = RvConfig {
        control_socket: Some(run.join("routevpn.sock")),
        tunnels: vec![bgp_tunnel(true)],
        extra_tail: bgp(true),
        ..RvConfig::default()
    };
    let left = Routevpn::spawn_with(
        &wrapper.to_string_lossy(),
        &topo.left,
        &left_cfg,
        &[("RUST_LOG", "debug")],
    );
    left.wait_ready(T).unwrap();

    // The process is the daemon itself (ip netns exec, sh and setpriv all exec).
    let pid = left.pid();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "routevpn");
    let (cap_eff, uids) = caps_and_uids(pid);
    // CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13).
    assert_eq!(
        cap_eff,
        format!("{:016x}", (1u64 << 10) | (1 << 12) | (1 << 13))
    );
    assert_eq!(uids, vec![user.uid; 4], "real, effective, saved and fs uid");
    assert_ne!(user.uid, 0);

    testbed::wait_tunnel_up(&left, T);
    testbed::wait_tunnel_up(&right, T);
    // BGP (port 179, routes installed over netlink) and BFD work without root too.
    wait_until(T, POLL, || {
        let n = left.status()?["bgp"]["neighbors"][0].clone();
        (n["state"] == "Established" && n["bfd"] == "Up" && n["prefixes_received"] == 1)
            .then_some(())
            .ok_or_else(|| format!("neighbor {n}"))
    })
    .unwrap();
    let routes = topo.left.must(&["ip", "route", "show", "proto", "251"]);
    assert!(
        routes.contains(Topology::RIGHT_NET),
        "BGP route installed: {routes}"
    );
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    topo.right_host.wait_ping(Topology::LEFT_HOST, T).unwrap();
    // Runtime changes need the same privileges: down and up again, then traffic.
    left.cli(&["down", "vti0", "--socket", &left.socket().to_string_lossy()])
        .unwrap();
    wait_until(T, POLL, || {
        let s = left.status()?;
        (s["tunnels"][0]["state"] != "up")
            .then_some(())
            .ok_or_else(|| format!("still up: {s}"))
    })
    .unwrap();
    left.cli(&["up", "vti0", "--socket", &left.socket().to_string_lossy()])
        .unwrap();
    testbed::wait_tunnel_up(&left, T);
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    let log = left.log();
    assert!(
        !log.contains("Operation not permitted") && !log.contains("Permission denied"),
        "{log}"
    );
}

#[test]
fn control_socket_group_admits_its_members_only() {
    if !require_user_tools() {
        return;
    }
    let group = TempGroup::new("s");
    let member = TempUser::new("m", &[&group.name]);
    let outsider = TempUser::new("o", &[]);
    let ns = Netns::new("sockgrp");
    let rv = Routevpn::start(
        &ns,
        &RvConfig {
            extra_top: vec![format!(
                "control_socket_group = {}",
                testbed::toml_str(&group.name)
            )],
            ..RvConfig::default()
        },
    )
    .unwrap();
    let meta = std::fs::metadata(rv.socket()).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    let gid: u32 = {
        let o = Command::new("getent")
            .args(["group", &group.name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .split(':')
            .nth(2)
            .unwrap()
            .parse()
            .unwrap()
    };
    assert_eq!(meta.gid(), gid);

    let status_as = |u: &TempUser| {
        Command::new("setpriv")
            .args([
                &format!("--reuid={}", u.uid),
                &format!("--regid={}", u.gid),
                "--init-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                routevpn_bin(),
                "status",
                "--json",
                "--socket",
            ])
            .arg(rv.socket())
            .output()
            .unwrap()
    };
    let ok = status_as(&member);
    assert!(
        ok.status.success(),
        "member: {}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap();
    assert_eq!(v["daemon_pid"], rv.pid());
    let refused = status_as(&outsider);
    assert!(!refused.status.success(), "an outsider must be refused");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("Permission denied"), "{err}");
}

/// Collects every datagram sent to a socket standing in for systemd's.
struct FakeSystemd {
    path: PathBuf,
    got: Arc<Mutex<Vec<String>>>,
    _dir: TestDir,
}

impl FakeSystemd {
    fn new() -> FakeSystemd {
        let dir = TestDir::new("notify");
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = Arc::downgrade(&got);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends when the test drops the collector.
            while let Some(g) = g.upgrade() {
                if let Ok(n) = sock.recv(&mut buf) {
                    g.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            }
        });
        FakeSystemd {
            path,
            got,
            _dir: dir,
        }
    }

    fn messages(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }

    /// Waits for a message containing `needle`; returns its index.
    fn wait_for(&self, needle: &str, after: usize) -> usize {
        wait_until(T, Duration::from_millis(10), || {
            self.messages()
                .iter()
                .enumerate()
                .skip(after)
                .find(|(_, m)| m.contains(needle))
                .map(|(i, _)| i)
                .ok_or_else(|| format!("no {needle:?} after #{after} in {:?}", self.messages()))
        })
        .unwrap()
    }
}

#[test]
fn sd_notify_ready_status_watchdog_reload_and_stop_in_order() {
    if !testbed::require_root() {
        return;
    }
    let systemd = FakeSystemd::new();
    let topo = Topology::two_sites();
    let right = Routevpn::start(
        &topo.right,
        &RvConfig {
            tunnels: vec![tunnel(false)],
            ..RvConfig::default()
        },
    )
    .unwrap();
    let sock = systemd.path.to_string_lossy().into_owned();
    let mut left = Routevpn::spawn_with(
        routevpn_bin(),
        &topo.left,
        &RvConfig {
            tunnels: vec![tunnel(true)],
            ..RvConfig::default()
        },
        // Pings every 0.25 s (half of WATCHDOG_USEC).
        &[
            ("RUST_LOG", "debug"),
            ("NOTIFY_SOCKET", &sock),
            ("WATCHDOG_USEC", "500000"),
        ],
    );
    let ready = systemd.wait_for("READY=1", 0);
    let msgs = systemd.messages();
    assert_eq!(ready, 0, "READY=1 is the first message: {msgs:?}");
    // READY=1 comes only once the tunnel is initiated (its status line says so) ...
    assert!(
        msgs[0].contains("STATUS=0/1 tunnels up, 1 connecting\n")
            || msgs[0].contains("STATUS=1/1 tunnels up\n"),
        "{msgs:?}"
    );
    // ... and the control socket answers.
    left.status().unwrap();

    let up = systemd.wait_for("STATUS=1/1 tunnels up", 0);
    testbed::wait_tunnel_up(&right, T);
    let w1 = systemd.wait_for("WATCHDOG=1", ready + 1);
    systemd.wait_for("WATCHDOG=1", w1 + 1);
    // STATUS= is sent on change only: one "1/1 up" while nothing changes.
    let n_up = systemd
        .messages()
        .iter()
        .filter(|m| m.contains("STATUS=1/1 tunnels up"))
        .count();
    assert_eq!(n_up, 1, "{:?}", systemd.messages());
    assert!(up > ready);

    left.cli(&["reload", "--socket", &left.socket().to_string_lossy()])
        .unwrap();
    let reloading = systemd.wait_for("RELOADING=1", 0);
    assert!(systemd.messages()[reloading].contains("MONOTONIC_USEC="));
    systemd.wait_for("READY=1", reloading + 1);

    left.signal("TERM").unwrap();
    let stopping = systemd.wait_for("STOPPING=1", reloading + 1);
    left.wait_exit(T).unwrap();
    left.stop();
    let all = systemd.messages();
    assert!(
        all[stopping + 1..].iter().all(|m| !m.contains("READY=1")),
        "{all:?}"
    );
}
