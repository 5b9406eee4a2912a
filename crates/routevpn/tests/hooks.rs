//! `on_up` / `on_down` hooks between two routevpn daemons in network namespaces: the
//! records the hooks write (their whole ROUTEVPN_* environment, the interface as they
//! saw it), a down hook on both ends after `routevpn down`, and a hook that outlives
//! `hook_timeout` being killed while the daemon keeps answering.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use testbed::{wait_until, Routevpn, RvConfig, RvTunnel, TestDir, Topology};

const T: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

/// A hook script: records its environment and the interface into
/// `<dir>/<event>.env`, written whole (via a rename) so a poller never sees half.
fn recorder(dir: &Path) -> String {
    let path = dir.join("record.sh");
    let script = format!(
        "#!/bin/sh\nset -e\nout={dir}/$ROUTEVPN_EVENT\n\
         {{ env | grep '^ROUTEVPN_' | sort; echo \"ARG=$1\"; \
         ip -o link show dev \"$ROUTEVPN_INTERFACE\" | sed 's/^/LINK=/'; \
         ip -o -4 addr show dev \"$ROUTEVPN_INTERFACE\" | sed 's/^/ADDR=/'; }} > $out.tmp\n\
         mv $out.tmp $out.env\n",
        dir = dir.display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

fn tunnel(left: bool, extra: Vec<String>) -> RvTunnel {
    RvTunnel {
        psk: "hooks-test-pre-shared-key".into(),
        routes: vec![],
        extra,
        ..RvTunnel::two_sites(left)
    }
}

fn cfg(t: RvTunnel) -> RvConfig {
    RvConfig {
        tunnels: vec![t],
        ..RvConfig::default()
    }
}

/// Polls for a hook's record and returns it.
fn record(path: &Path, rv: &Routevpn) -> String {
    wait_until(T, POLL, || {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&rv.log(), 40)))
}

fn var<'a>(rec: &'a str, key: &str) -> &'a str {
    rec.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} missing in\n{rec}"))
}

#[test]
fn up_and_down_hooks_get_the_tunnel_environment() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::two_sites();
    let (da, db) = (TestDir::new("hooks-a"), TestDir::new("hooks-b"));
    let hooks = |dir: &Path| {
        let prog = recorder(dir);
        vec![
            format!("on_up = [\"{prog}\", \"first arg\"]"),
            format!("on_down = [\"{prog}\", \"down arg\"]"),
        ]
    };
    let b = Routevpn::start(&topo.right, &cfg(tunnel(false, hooks(db.path())))).unwrap();
    let a = Routevpn::start(&topo.left, &cfg(tunnel(true, hooks(da.path())))).unwrap();

    let up = record(&da.join("up.env"), &a);
    testbed::report(&format!("on_up record on A:\n{up}"));
    let expect = [
        ("ROUTEVPN_EVENT", "up"),
        ("ROUTEVPN_TUNNEL", "vti0"),
        ("ROUTEVPN_INTERFACE", "vti0"),
        ("ROUTEVPN_LOCAL", Topology::LEFT_WAN),
        ("ROUTEVPN_REMOTE", Topology::RIGHT_WAN),
        ("ROUTEVPN_LOCAL_ID", "routerA"),
        ("ROUTEVPN_REMOTE_ID", "routerB"),
        ("ARG", "first arg"),
    ];
    for (k, v) in expect {
        assert_eq!(var(&up, k), v, "{k} in\n{up}");
    }
    assert_eq!(
        up.lines().filter(|l| l.starts_with("ROUTEVPN_")).count(),
        7,
        "exactly the seven ROUTEVPN_ variables:\n{up}"
    );
    // The hook ran once the interface was usable: up, with its address.
    assert!(var(&up, "LINK").contains(",UP"), "{up}");
    assert!(var(&up, "ADDR").contains("169.254.12.1/30"), "{up}");
    let b_up = record(&db.join("up.env"), &b);
    assert_eq!(var(&b_up, "ROUTEVPN_LOCAL_ID"), "routerB", "{b_up}");
    assert_eq!(var(&b_up, "ROUTEVPN_REMOTE"), Topology::LEFT_WAN, "{b_up}");
    assert!(!da.join("down.env").exists(), "no down hook yet");

    down(&a);
    let down = record(&da.join("down.env"), &a);
    testbed::report(&format!("on_down record on A:\n{down}"));
    assert_eq!(var(&down, "ROUTEVPN_EVENT"), "down", "{down}");
    assert_eq!(var(&down, "ROUTEVPN_TUNNEL"), "vti0", "{down}");
    assert_eq!(var(&down, "ARG"), "down arg", "{down}");
    assert!(
        !var(&down, "LINK").contains(",UP"),
        "down when the hook runs: {down}"
    );
    // The peer's tunnel went down too (it was told by a DELETE): its hook ran.
    let b_down = record(&db.join("down.env"), &b);
    assert_eq!(var(&b_down, "ROUTEVPN_EVENT"), "down", "{b_down}");
    assert!(a.log().contains("hook finished"), "{}", a.log());

    // Up again, then the daemon stops (SIGTERM): going down with it runs on_down too.
    for f in ["up.env", "down.env"] {
        std::fs::remove_file(da.join(f)).unwrap();
    }
    let sock = a.socket().to_string_lossy().into_owned();
    a.cli(&["up", "vti0", "--socket", &sock]).unwrap();
    let up = record(&da.join("up.env"), &a);
    assert_eq!(var(&up, "ROUTEVPN_EVENT"), "up", "{up}");
    a.signal("TERM").unwrap();
    let down = record(&da.join("down.env"), &a);
    assert_eq!(var(&down, "ROUTEVPN_EVENT"), "down", "{down}");
    a.wait_exit(T).unwrap();
}

#[test]
fn a_hook_past_its_timeout_is_killed_and_the_daemon_keeps_answering() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::two_sites();
    let dir = TestDir::new("hooks-slow");
    let pidfile = dir.join("sleep.pid");
    let slow = dir.join("slow.sh");
    // Starts a child and waits for it: only killing the process group ends both.
    std::fs::write(
        &slow,
        format!(
            "#!/bin/sh\nsleep 600 &\necho $! > {}.tmp\nmv {0}.tmp {0}\nwait\n",
            pidfile.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).unwrap();
    let down_rec = recorder(dir.path());
    let extra = vec![
        format!("on_up = [\"{}\"]", slow.display()),
        format!("on_down = [\"{down_rec}\"]"),
        // Long enough that the checks below happen while it runs, whatever the load.
        "hook_timeout = \"15s\"".to_string(),
    ];
    let _b = Routevpn::start(&topo.right, &cfg(tunnel(false, vec![]))).unwrap();
    let a = Routevpn::start(&topo.left, &cfg(tunnel(true, extra))).unwrap();

    let pid: u32 = record(&pidfile, &a).trim().parse().unwrap();
    let _reap = Reap(pid);
    // The hook is running: the daemon still answers and still acts.
    testbed::wait_tunnel_up(&a, T);
    let status = a.status().unwrap();
    assert_eq!(status["tunnels"][0]["name"], "vti0", "{status}");
    down(&a);
    wait_until(T, POLL, || {
        (!testbed::link_up(&topo.left, "vti0"))
            .then_some(())
            .ok_or("vti0 still up".to_string())
    })
    .unwrap();
    assert!(alive(pid), "the up hook is still running");
    // Ordered: the down hook waits for the up hook, which nothing but the timeout ends.
    assert!(
        !dir.join("down.env").exists(),
        "down hook ran before the up hook ended"
    );

    a.wait_log("killed it and its process group", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&a.log(), 40)));
    wait_until(T, POLL, || {
        (!alive(pid))
            .then_some(())
            .ok_or(format!("hook's child {pid} still alive"))
    })
    .unwrap();
    let down = record(&dir.join("down.env"), &a);
    assert_eq!(var(&down, "ROUTEVPN_EVENT"), "down", "{down}");
}

/// `routevpn down vti0` on `rv`'s control socket.
fn down(rv: &Routevpn) {
    let sock = rv.socket().to_string_lossy().into_owned();
    rv.cli(&["down", "vti0", "--socket", &sock]).unwrap();
}

/// Running (not gone, not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(PathBuf::from(format!("/proc/{pid}/stat")))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Kills the hook's child should the test fail before the daemon does.
struct Reap(u32);

impl Drop for Reap {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = std::process::Command::new("kill")
                .arg(self.0.to_string())
                .status();
        }
    }
}
