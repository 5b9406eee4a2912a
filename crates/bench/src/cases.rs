//! The cases on the same four-namespace path (testbed's two-site topology):
//!
//! ```text
//! host A ── router A ══ transport veth 192.0.2.0/24 ══ router B ── host B
//! 10.1.0.2   10.1.0.1 / 192.0.2.1         192.0.2.2 / 10.2.0.1      10.2.0.2
//! ```
//!
//! iperf3 TCP runs host A → host B in every case; only what carries 10.1/24 ↔ 10.2/24
//! between the routers differs.

use crate::measure::{brief, run_record, snap};
use crate::{log, signal, Case, Ctx};
use std::path::Path;
use std::time::{Duration, Instant};
use testbed::{Netns, Routevpn, RvConfig, RvTunnel, Strongswan, SwanConn, Topology};

/// Tunnel up, and then traffic passing, each within this long.
pub const UP_TIMEOUT: Duration = Duration::from_secs(20);
pub const TUN_MTU: u16 = 1400;
pub const IKE: &str = "aes128gcm16-prfsha256-x25519";
pub const ESP: &str = "aes128gcm16";
const IPERF_PORT: &str = "5201";
const KERNEL_LIBIPSEC: &str = "/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so";

/// Why a case stopped early.
#[derive(Debug)]
pub enum Stop {
    /// The case failed; the message goes into the report.
    Failed(String),
    /// A tool the case needs is not installed; the report says so instead of a figure.
    Skipped(String),
    /// Ctrl-C or SIGTERM: exit with this status once everything is cleaned up.
    Signal(i32),
}

/// Ends the current case with a message the report shows.
pub fn die(msg: impl Into<String>) -> Stop {
    let msg = msg.into();
    log(&format!("bench: {msg}"));
    Stop::Failed(msg)
}

pub fn check_signal() -> Result<(), Stop> {
    signal::caught().map_or(Ok(()), |s| Err(Stop::Signal(s)))
}

pub fn run(ctx: &mut Ctx, case: Case) -> Result<(), Stop> {
    match case {
        Case::Veth => veth(ctx),
        Case::Strongswan => strongswan(ctx),
        Case::Routevpn => routevpn(ctx),
        Case::Boringtun | Case::WireguardGo => crate::wireguard::run(ctx, case),
    }
}

/// The two sites, IPv4 forwarding without reverse-path checks, transport link checked.
pub fn build_topology() -> Result<Topology, Stop> {
    let t = Topology::two_sites();
    for r in [&t.left, &t.right] {
        for scope in ["all", "default"] {
            r.sysctl(&format!("net.ipv4.conf.{scope}.rp_filter"), "0");
        }
    }
    // The transport link must work before anything else.
    t.left
        .run(&["ping", "-c1", "-W2", "-q", Topology::RIGHT_WAN])
        .map_err(|_| die("transport veth 192.0.2.1 -> 192.0.2.2 does not pass traffic"))?;
    Ok(t)
}

pub fn wait_ping(ns: &Netns, dst: &str, timeout: Duration) -> bool {
    ns.wait_ping(dst, timeout).is_ok()
}

/// MTU of `dev` in `ns`, if it exists.
pub fn mtu(ns: &Netns, dev: &str) -> Option<u32> {
    let out = ns.run(&["ip", "-o", "link", "show", dev]).ok()?;
    let mut words = out.split_whitespace();
    words.find(|w| *w == "mtu")?;
    words.next()?.parse().ok()
}

/// iperf3 host A → host B for each stream count; one record per run.
pub fn iperf_runs(ctx: &mut Ctx, case: Case, t: &Topology, pids: &[u32]) -> Result<(), Stop> {
    let c = case.name();
    let lim = ctx.duration + 20;
    let (server_lim, client_lim, dur) = (
        (lim + 10).to_string(),
        lim.to_string(),
        ctx.duration.to_string(),
    );
    for n in ctx.streams.clone() {
        check_signal()?;
        let out = ctx.work.join(format!("{c}-P{n}.json"));
        let server = t.right_host.spawn(
            &[
                "timeout",
                &server_lim,
                "iperf3",
                "-s",
                "-1",
                "-B",
                Topology::RIGHT_HOST,
                "-p",
                IPERF_PORT,
            ],
            &ctx.work.join(format!("{c}-P{n}-server.log")),
        );
        let sport = format!("sport = :{IPERF_PORT}");
        testbed::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            let ss = t.right_host.run(&["ss", "-Hltn", &sport])?;
            ss.contains("LISTEN").then_some(()).ok_or_default()
        })
        .map_err(|_| {
            die(format!(
                "{c}: iperf3 server in {} did not start listening",
                t.right_host.name()
            ))
        })?;
        log(&format!(
            "  {c}: iperf3 TCP, {n} stream(s), {} s ...",
            ctx.duration
        ));
        let before = snap(pids);
        let n_s = n.to_string();
        let client = t.left_host.spawn_split(
            &[
                "timeout",
                &client_lim,
                "iperf3",
                "-c",
                Topology::RIGHT_HOST,
                "-p",
                IPERF_PORT,
                "-t",
                &dur,
                "-P",
                &n_s,
                "-J",
            ],
            &out,
            &ctx.work.join(format!("{c}-P{n}-client.err")),
        );
        let status = loop {
            if let Some(st) = client.try_wait() {
                break st;
            }
            check_signal()?;
            std::thread::sleep(Duration::from_millis(50));
        };
        let after = snap(pids);
        let rc = status.code().unwrap_or_else(|| {
            128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
        });
        if rc == 124 {
            log(&format!("  {c}: iperf3 client timed out after {lim} s"));
        }
        // The one-off server exits after its test; bounded wait, then it is stopped.
        let _ = server.wait_exit(Duration::from_secs(5));
        drop(server);
        let rec = run_record(c, n, &out, &before, &after, rc);
        log(&brief(&rec));
        ctx.records.push(rec);
    }
    check_signal()?;
    crate::latency::probe(ctx, case, t, pids);
    Ok(())
}

trait OkOrDefault {
    fn ok_or_default(self) -> Result<(), String>;
}

impl OkOrDefault for Option<()> {
    fn ok_or_default(self) -> Result<(), String> {
        self.ok_or_else(|| "not yet".to_string())
    }
}

/// Plain IP routing over the transport veth: the path's limit.
fn veth(ctx: &mut Ctx) -> Result<(), Stop> {
    let t = build_topology()?;
    t.left.route_add(Topology::RIGHT_NET, Topology::RIGHT_WAN);
    t.right.route_add(Topology::LEFT_NET, Topology::LEFT_WAN);
    if !wait_ping(&t.left_host, Topology::RIGHT_HOST, Duration::from_secs(5)) {
        return Err(die("veth: host A cannot reach host B over the plain path"));
    }
    ctx.records
        .push(crate::report::info(Case::Veth).with("path_mtu", 1500u32));
    iperf_runs(ctx, Case::Veth, &t, &[])
}

fn swan_conn(ctx: &Ctx, left: bool) -> SwanConn {
    let (la, ra, li, ri, lts, rts) = if left {
        (
            "192.0.2.1",
            "192.0.2.2",
            "routerA",
            "routerB",
            "10.1.0.0/24",
            "10.2.0.0/24",
        )
    } else {
        (
            "192.0.2.2",
            "192.0.2.1",
            "routerB",
            "routerA",
            "10.2.0.0/24",
            "10.1.0.0/24",
        )
    };
    SwanConn {
        name: "bench".into(),
        child: "net".into(),
        local_addr: la.into(),
        remote_addr: ra.into(),
        local_id: li.into(),
        remote_id: ri.into(),
        psk: ctx.psk.clone(),
        ike_proposals: IKE.into(),
        esp_proposals: ESP.into(),
        local_ts: lts.into(),
        remote_ts: rts.into(),
        start_action: "none".into(),
        ..SwanConn::default()
    }
}

/// Every non-overlapping match of `prefix` followed by non-blanks, as `grep -o 'P[^ ]*'`.
fn words_from<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let tail = &rest[i..];
        let end = tail.find([' ', '\n']).unwrap_or(tail.len());
        out.push(&tail[..end]);
        rest = &tail[end..];
    }
    out
}

/// strongSwan ↔ strongSwan, kernel-libipsec (shared/interop/README.md).
fn strongswan(ctx: &mut Ctx) -> Result<(), Stop> {
    let charon = testbed::charon_binary().ok_or_else(|| {
        die("strongswan: no charon binary (install charon-systemd libcharon-extra-plugins strongswan-swanctl)")
    })?;
    if testbed::find_program("swanctl").is_none() {
        return Err(die(
            "strongswan: swanctl not installed (strongswan-swanctl)",
        ));
    }
    if !Path::new(KERNEL_LIBIPSEC).exists() {
        return Err(die(
            "strongswan: kernel-libipsec plugin missing (libcharon-extra-plugins)",
        ));
    }
    let t = build_topology()?;
    // Concrete subnets (a 0/0 remote_ts would route charon's own IKE into ipsec0); each
    // router owns an address inside its local_ts (10.x.0.1 on its LAN veth).
    let start = |ns: &Netns, conn: SwanConn| {
        Strongswan::start(ns, &[conn]).map_err(|e| {
            log(&e);
            die(format!(
                "strongswan: {}",
                e.lines().next().unwrap_or("charon did not start")
            ))
        })
    };
    let sw_b = start(&t.right, swan_conn(ctx, false))?;
    let sw_a = start(&t.left, swan_conn(ctx, true))?;
    let diag = |sw: &Strongswan| {
        log(&format!(
            "--- {}: charon log (tail) ---",
            sw.dir().display()
        ));
        log(&testbed::tail(&sw.log(), 40));
    };
    if let Err(e) = sw_a.initiate("net") {
        log(&e);
        diag(&sw_a);
        diag(&sw_b);
        return Err(die(
            "strongswan: tunnel did not come up (swanctl --initiate failed)",
        ));
    }
    if !wait_ping(&t.left_host, Topology::RIGHT_HOST, UP_TIMEOUT) {
        log(&sw_a.list_sas());
        diag(&sw_a);
        diag(&sw_b);
        return Err(die(format!(
            "strongswan: tunnel is up but host A -> host B traffic did not pass within {} s",
            UP_TIMEOUT.as_secs()
        )));
    }
    let sas = sw_a.list_sas();
    let _ = std::fs::write(ctx.work.join("swan-a-list-sas.before"), &sas);
    if !sas.contains("AES_GCM_16-128") {
        log(&sas);
        return Err(die("strongswan: the CHILD SA is not AES_GCM_16-128"));
    }
    let ike = words_from(&sas, "AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519")
        .first()
        .map(|_| "AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519")
        .unwrap_or_default();
    let esp = words_from(&sas, "AES_GCM_16-128")
        .get(1)
        .copied()
        .unwrap_or_default();
    ctx.records.push(
        crate::report::info(Case::Strongswan)
            .with("charon", charon.to_string_lossy().into_owned())
            .with("tunnel_mtu", mtu(&t.left, "ipsec0"))
            .with("ike_proposal", ike)
            .with("esp_proposal", esp),
    );
    iperf_runs(ctx, Case::Strongswan, &t, &[sw_a.pid(), sw_b.pid()])?;
    // Sanity: the bytes really went through the ESP SAs.
    let after = sw_b.list_sas();
    let _ = std::fs::write(ctx.work.join("swan-b-list-sas.after"), &after);
    let inbound = after
        .lines()
        .find_map(|l| {
            let i = l.find("in  ")?;
            let tail = &l[i..];
            let end = tail.find(" bytes")? + " bytes".len();
            Some(tail[..end].to_string())
        })
        .unwrap_or_default();
    log(&format!(
        "  strongswan: router B CHILD SA after the runs: {inbound}"
    ));
    Ok(())
}

fn rv_config(ctx: &Ctx, left: bool) -> RvConfig {
    let (local, remote, lid, rid, addr, far) = if left {
        (
            "192.0.2.1",
            "192.0.2.2",
            "routerA",
            "routerB",
            "169.254.12.1/30",
            "10.2.0.0/24",
        )
    } else {
        (
            "192.0.2.2",
            "192.0.2.1",
            "routerB",
            "routerA",
            "169.254.12.2/30",
            "10.1.0.0/24",
        )
    };
    RvConfig {
        tunnels: vec![RvTunnel {
            name: "rvb0".into(),
            local: local.into(),
            remote: remote.into(),
            local_id: lid.into(),
            remote_id: rid.into(),
            psk: ctx.psk.clone(),
            ike: vec![IKE.into()],
            esp: vec![ESP.into()],
            start: left,
            address: vec![addr.into()],
            routes: vec![far.into()],
            mtu: Some(TUN_MTU),
            ..RvTunnel::default()
        }],
        extra_top: ctx.rv_options.clone(),
        ..RvConfig::default()
    }
}

/// The first tunnel's `state last_error` from `status --json`.
fn status_state(rv: &Routevpn) -> (bool, String) {
    match rv.status() {
        Ok(st) => {
            let t = &st["tunnels"][0];
            let state = t["state"].as_str().unwrap_or("unknown");
            let err = t["last_error"].as_str().unwrap_or("");
            (state == "up", format!("{state} {err}"))
        }
        Err(_) => (false, "no-answer-on-control-socket".into()),
    }
}

fn rv_diag(rv: &Routevpn, name: &str) {
    let ns = rv.netns();
    let sock = rv.socket().to_string_lossy().into_owned();
    log(&format!("--- routevpn {name} ({}): status ---", ns.name()));
    log(&rv.cli(&["status", "--socket", &sock]).unwrap_or_else(|e| e));
    log(&format!(
        "--- routevpn {name} ({}): links / routes ---",
        ns.name()
    ));
    log(&ns.run(&["ip", "-br", "addr"]).unwrap_or_else(|e| e));
    log(&ns.run(&["ip", "route"]).unwrap_or_else(|e| e));
    log(&format!(
        "--- routevpn {name} ({}): daemon log (tail) ---",
        ns.name()
    ));
    log(&testbed::tail(&rv.log(), 30));
}

/// A script that runs `bin` at nice `n` (`exec`, so the daemon keeps the PID the
/// benchmark measures).
fn niced(ctx: &Ctx, bin: &str, n: i32) -> Result<String, Stop> {
    let path = ctx.work.join("routevpn-niced");
    let script = format!("#!/bin/sh\nexec nice -n {n} '{bin}' \"$@\"\n");
    std::fs::write(&path, script)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
        })
        .map_err(|e| die(format!("routevpn: cannot write {}: {e}", path.display())))?;
    Ok(path.to_string_lossy().into_owned())
}

/// routevpn ↔ routevpn: TUN rvb0, 169.254.12.1/30 ↔ .2/30, routes to the far host net.
fn routevpn(ctx: &mut Ctx) -> Result<(), Stop> {
    let bin = ctx.rv_bin.clone().unwrap_or_default();
    if !Path::new(&bin).is_file() {
        return Err(die(format!("routevpn: binary {bin} missing")));
    }
    let t = build_topology()?;
    let (cfg_a, cfg_b) = (rv_config(ctx, true), rv_config(ctx, false));
    for (x, cfg) in [("a", &cfg_a), ("b", &cfg_b)] {
        let path = ctx.work.join(format!("{x}.toml"));
        let _ = std::fs::write(&path, cfg.to_toml(&ctx.work.join(format!("{x}.sock"))));
        let p = path.to_string_lossy().into_owned();
        if let Err(e) = testbed::run(&[&bin, "check", "--config", &p]) {
            log(&e);
            return Err(die(format!(
                "routevpn: 'routevpn check' rejects the bench config {p}"
            )));
        }
    }
    let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let env = [("NO_COLOR", "1"), ("RUST_LOG", rust_log.as_str())];
    let daemon = match ctx.rv_nice {
        Some(n) => niced(ctx, &bin, n)?,
        None => bin.clone(),
    };
    let rv_b = Routevpn::spawn_with(&daemon, &t.right, &cfg_b, &env);
    let rv_a = Routevpn::spawn_with(&daemon, &t.left, &cfg_a, &env);
    let end = Instant::now() + UP_TIMEOUT;
    loop {
        check_signal()?;
        for (rv, name, letter) in [(&rv_a, "a", 'A'), (&rv_b, "b", 'B')] {
            if rv.exit_status().is_some() {
                rv_diag(rv, name);
                return Err(die(format!("routevpn: daemon in router {letter} exited")));
            }
        }
        let (up_a, sa) = status_state(&rv_a);
        let (up_b, sb) = status_state(&rv_b);
        if up_a && up_b {
            break;
        }
        if Instant::now() >= end {
            rv_diag(&rv_a, "a");
            rv_diag(&rv_b, "b");
            return Err(die(format!(
                "routevpn: tunnel not up within {} s (router A: {sa}; router B: {sb})",
                UP_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    log("  routevpn: tunnel up");
    if !wait_ping(&t.left_host, Topology::RIGHT_HOST, UP_TIMEOUT) {
        rv_diag(&rv_a, "a");
        rv_diag(&rv_b, "b");
        let has_tun = |ns: &Netns| ns.run(&["ip", "link", "show", "rvb0"]).is_ok();
        let why = if !has_tun(&t.left) || !has_tun(&t.right) {
            " (interface rvb0 missing on a router: the daemon has not created its TUN device)"
        } else if !t
            .left
            .run(&["ip", "route", "get", Topology::RIGHT_HOST])
            .is_ok_and(|r| r.contains("dev rvb0"))
        {
            " (router A does not route 10.2.0.0/24 into rvb0)"
        } else {
            ""
        };
        return Err(die(format!(
            "routevpn: tunnel is up but host A -> host B traffic (10.1.0.2 -> 10.2.0.2 via rvb0) did not pass within {} s{why}",
            UP_TIMEOUT.as_secs()
        )));
    }
    let st = rv_a.status().unwrap_or_default();
    let tun = &st["tunnels"][0];
    let proposal =
        |list: &str| -> String { tun[list][0]["proposal"].as_str().unwrap_or("").to_string() };
    ctx.records.push(
        crate::report::info(Case::Routevpn)
            .with("binary", bin.as_str())
            .with("tunnel_mtu", mtu(&t.left, "rvb0"))
            .with("ike_proposal", proposal("ike_sas"))
            .with("esp_proposal", proposal("child_sas")),
    );
    iperf_runs(ctx, Case::Routevpn, &t, &[rv_a.pid(), rv_b.pid()])?;
    let sock = rv_b.socket().to_string_lossy().into_owned();
    let after = rv_b
        .cli(&["status", "--socket", &sock])
        .unwrap_or_else(|e| e);
    let _ = std::fs::write(ctx.work.join("b.status.after"), after);
    Ok(())
}
