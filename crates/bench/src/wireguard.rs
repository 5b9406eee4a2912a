//! The userspace tunnels a user might pick instead of routevpn: boringtun and
//! wireguard-go, on the same four-namespace path as the other cases.
//!
//! Each router runs the implementation as a foreground process that creates its TUN and
//! a UAPI socket; `wg` (wireguard-tools) configures it with keys made for this run. The
//! tunnel interface gets routevpn's addresses (169.254.12.1/30 ↔ .2/30), MTU and route
//! to the far host net, so only the implementation differs. Its CPU is measured like
//! routevpn's daemons: utime+stime of both ends' processes over each iperf3 run.

use crate::cases::{build_topology, check_signal, die, iperf_runs, mtu, wait_ping, Stop};
use crate::cases::{TUN_MTU, UP_TIMEOUT};
use crate::measure::status_field;
use crate::{log, Case, Ctx};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use testbed::{Netns, Proc, Topology};

/// Where both implementations put their UAPI socket (`wg` looks there).
const UAPI_DIR: &str = "/var/run/wireguard";
/// The WireGuard UDP port on both routers.
const PORT: u16 = 51820;
/// The TUN and UAPI socket appear within this long after the process starts.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Why every tunnel here has MTU 1400, for the report.
pub const MTU_NOTE: &str = "1400 like the IPsec rows (same TCP MSS and packets per GB); \
WireGuard adds 60 octets over IPv4 (80 over IPv6), so 1460-octet packets on the 1500 veth; \
wg-quick would pick 1420";
/// Where scripts/bench installs boringtun-cli (`cargo install --root`), under target/.
pub const BENCH_TOOLS: &str = "bench-tools";

/// One router's side of the tunnel.
struct Side {
    ns: Netns,
    ifname: String,
    addr: &'static str,
    peer_inner: &'static str,
    far_net: &'static str,
    endpoint: &'static str,
}

/// A running implementation on one router; dropping it stops the process and removes
/// the UAPI socket it may leave behind.
struct Daemon {
    proc: Proc,
    ifname: String,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.proc.stop();
        let _ = std::fs::remove_file(uapi_socket(&self.ifname));
    }
}

fn uapi_socket(ifname: &str) -> PathBuf {
    Path::new(UAPI_DIR).join(format!("{ifname}.sock"))
}

/// The version in a tool's `--version` output: the second word of its first line,
/// without a leading `v` ("wireguard-go v0.0.20220316" → "0.0.20220316").
pub fn parse_version(text: &str) -> Option<String> {
    let word = text.lines().next()?.split_whitespace().nth(1)?;
    let v = word.strip_prefix('v').unwrap_or(word);
    v.starts_with(|c: char| c.is_ascii_digit())
        .then(|| v.to_string())
}

/// `wg show IF transfer`: (peer public key, bytes received, bytes sent), one line per
/// peer, tab-separated. A line that does not fit is an error, never a zero.
pub fn parse_transfer(text: &str) -> Result<Vec<(String, u64, u64)>, String> {
    let mut peers = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
        let peer = match cols[..] {
            [key, rx, tx] if key.len() == 44 => rx
                .parse()
                .ok()
                .zip(tx.parse().ok())
                .map(|(rx, tx)| (key.to_string(), rx, tx)),
            _ => None,
        };
        peers.push(peer.ok_or_else(|| format!("unexpected wg show transfer line: {line:?}"))?);
    }
    Ok(peers)
}

/// (bytes received, bytes sent) of the peer with public key `peer` on `side`.
fn transfer(wg: &str, side: &Side, peer: &str) -> Result<(u64, u64), String> {
    let text = side.ns.run(&[wg, "show", &side.ifname, "transfer"])?;
    let peers = parse_transfer(&text)?;
    peers
        .iter()
        .find(|(k, _, _)| k == peer)
        .map(|(_, rx, tx)| (*rx, *tx))
        .ok_or_else(|| format!("wg show {} transfer lists no such peer", side.ifname))
}

/// The implementation's binary, or why the case is skipped.
fn implementation(ctx: &Ctx, case: Case) -> Result<PathBuf, Stop> {
    match case {
        Case::Boringtun => ctx
            .boringtun_bin
            .clone()
            .filter(|p| p.is_file())
            .or_else(|| {
                let bundled = crate::target_dir().join(BENCH_TOOLS).join("bin/boringtun-cli");
                bundled.is_file().then_some(bundled)
            })
            .or_else(|| testbed::find_program("boringtun-cli"))
            .ok_or_else(|| {
                Stop::Skipped(format!(
                    "boringtun-cli not found (neither --boringtun-bin nor {}/bin/boringtun-cli nor on PATH; \
                     scripts/bench installs it with cargo install boringtun-cli --locked --root {})",
                    crate::target_dir().join(BENCH_TOOLS).display(),
                    crate::target_dir().join(BENCH_TOOLS).display()
                ))
            }),
        _ => testbed::find_program("wireguard-go").ok_or_else(|| {
            Stop::Skipped("wireguard-go not found (Debian package wireguard-go)".into())
        }),
    }
}

fn version_of(bin: &Path) -> String {
    let out = Command::new(bin).arg("--version").output();
    out.ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned()
                + &String::from_utf8_lossy(&o.stderr);
            parse_version(&text)
        })
        .unwrap_or_default()
}

/// A fresh key pair from `wg genkey` / `wg pubkey`: (private key file, public key). The
/// private key goes only to a 0600 file in the run's work directory (removed once `wg
/// set` has read it), never to a log.
fn keypair(wg: &Path, dir: &Path, name: &str) -> Result<(KeyFile, String), Stop> {
    let private = Command::new(wg)
        .arg("genkey")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .ok_or_else(|| die("wg genkey failed"))?
        .stdout;
    let mut child = Command::new(wg)
        .arg("pubkey")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| die(format!("wg pubkey: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&private);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| die(format!("wg pubkey: {e}")))?;
    let public = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || public.len() != 44 {
        return Err(die("wg pubkey failed"));
    }
    let path = KeyFile(dir.join(format!("{name}.key")));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path.0)
        .and_then(|mut f| f.write_all(&private));
    written.map_err(|e| die(format!("cannot write {}: {e}", path.0.display())))?;
    Ok((path, public))
}

/// A private key file, removed when dropped (also when the case stops early).
struct KeyFile(PathBuf);

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Starts the implementation in the side's namespace and waits for its TUN and UAPI
/// socket.
fn start(ctx: &Ctx, case: Case, bin: &Path, side: &Side) -> Result<Daemon, Stop> {
    let b = bin.to_string_lossy();
    let cmd: Vec<&str> = match case {
        // It would otherwise switch to user nobody, which cannot reach /dev/net/tun here.
        Case::Boringtun => vec![
            &b,
            "--foreground",
            "--disable-drop-privileges",
            &side.ifname,
        ],
        _ => vec![&b, "-f", &side.ifname],
    };
    let log_file = ctx.work.join(format!("{}.log", side.ifname));
    let env = [("WG_PROCESS_FOREGROUND", "1"), ("LOG_LEVEL", "error")];
    let d = Daemon {
        proc: side.ns.spawn_env(&cmd, &env, &log_file),
        ifname: side.ifname.clone(),
        log: log_file,
    };
    let ready = testbed::wait_until(START_TIMEOUT, Duration::from_millis(50), || {
        if !d.proc.is_running() {
            return Ok(false);
        }
        let tun = side.ns.run(&["ip", "link", "show", &side.ifname]).is_ok();
        (tun && uapi_socket(&side.ifname).exists())
            .then_some(true)
            .ok_or_else(|| "not yet".to_string())
    });
    if ready != Ok(true) {
        log(&testbed::tail(
            &std::fs::read_to_string(&d.log).unwrap_or_default(),
            20,
        ));
        return Err(die(format!(
            "{}: {} in {} did not create {} and its UAPI socket within {} s",
            case.name(),
            cmd.join(" "),
            side.ns.name(),
            side.ifname,
            START_TIMEOUT.as_secs()
        )));
    }
    Ok(d)
}

/// `wg set` plus routevpn's address, MTU and route on the side's tunnel interface.
fn configure(wg: &str, side: &Side, key: &Path, peer: &str) -> Result<(), Stop> {
    let port = PORT.to_string();
    let endpoint = format!("{}:{PORT}", side.endpoint);
    let allowed = format!("{},{}", side.peer_inner, side.far_net);
    let key = key.to_string_lossy();
    let i = side.ifname.as_str();
    let mtu = TUN_MTU.to_string();
    let steps: [&[&str]; 4] = [
        &[
            wg,
            "set",
            i,
            "private-key",
            &key,
            "listen-port",
            &port,
            "peer",
            peer,
            "endpoint",
            &endpoint,
            "allowed-ips",
            &allowed,
        ],
        &["ip", "addr", "add", side.addr, "dev", i],
        &["ip", "link", "set", i, "mtu", &mtu, "up"],
        &["ip", "route", "add", side.far_net, "dev", i],
    ];
    for cmd in steps {
        side.ns
            .run(cmd)
            .map_err(|e| die(format!("setting up {i}: {e}")))?;
    }
    Ok(())
}

/// What the report shows when the tunnel does not pass traffic.
fn diag(wg: &str, side: &Side, d: &Daemon) {
    log(&format!(
        "--- {} ({}): wg show ---",
        side.ifname,
        side.ns.name()
    ));
    // Plain `wg show` prints "private key: (hidden)".
    log(&side
        .ns
        .run(&[wg, "show", &side.ifname])
        .unwrap_or_else(|e| e));
    log(&format!("--- {}: log (tail) ---", side.ifname));
    log(&testbed::tail(
        &std::fs::read_to_string(&d.log).unwrap_or_default(),
        20,
    ));
}

/// boringtun or wireguard-go on both routers, measured like routevpn.
pub fn run(ctx: &mut Ctx, case: Case) -> Result<(), Stop> {
    let c = case.name();
    let wg = testbed::find_program("wg")
        .ok_or_else(|| Stop::Skipped("wg not found (Debian package wireguard-tools)".into()))?;
    let bin = implementation(ctx, case)?;
    let version = version_of(&bin);
    let wg_s = wg.to_string_lossy().into_owned();
    let t = build_topology()?;
    // Interface names are also UAPI socket names in the one /var/run: unique per run.
    let tag = format!("{}{}", &c[..2], std::process::id() % 100_000);
    let sides = [
        Side {
            ns: t.left.clone(),
            ifname: format!("{tag}a"),
            addr: "169.254.12.1/30",
            peer_inner: "169.254.12.2/32",
            far_net: Topology::RIGHT_NET,
            endpoint: Topology::RIGHT_WAN,
        },
        Side {
            ns: t.right.clone(),
            ifname: format!("{tag}b"),
            addr: "169.254.12.2/30",
            peer_inner: "169.254.12.1/32",
            far_net: Topology::LEFT_NET,
            endpoint: Topology::LEFT_WAN,
        },
    ];
    let (key_a, pub_a) = keypair(&wg, &ctx.work, &sides[0].ifname)?;
    let (key_b, pub_b) = keypair(&wg, &ctx.work, &sides[1].ifname)?;
    let d_b = start(ctx, case, &bin, &sides[1])?;
    let d_a = start(ctx, case, &bin, &sides[0])?;
    configure(&wg_s, &sides[1], &key_b.0, &pub_a)?;
    configure(&wg_s, &sides[0], &key_a.0, &pub_b)?;
    // The implementations hold the keys now; kept logs must not.
    drop((key_a, key_b));
    check_signal()?;
    if !wait_ping(&t.left_host, Topology::RIGHT_HOST, UP_TIMEOUT) {
        diag(&wg_s, &sides[0], &d_a);
        diag(&wg_s, &sides[1], &d_b);
        return Err(die(format!(
            "{c}: host A -> host B traffic did not pass through {} within {} s",
            sides[0].ifname,
            UP_TIMEOUT.as_secs()
        )));
    }
    // The pings' replies came back through the tunnel. (Not `latest-handshakes`:
    // boringtun 0.7 reports the time since the handshake there, not its UNIX time.)
    match transfer(&wg_s, &sides[0], &pub_b) {
        Ok((rx, tx)) if rx > 0 && tx > 0 => {}
        Ok((rx, tx)) => {
            return Err(die(format!(
                "{c}: traffic passes but router A's peer shows rx {rx} / tx {tx} bytes"
            )))
        }
        Err(e) => return Err(die(format!("{c}: {e}"))),
    }
    log(&format!("  {c}: tunnel up ({} {version})", bin.display()));
    ctx.records.push(
        crate::report::info(case)
            .with("binary", bin.to_string_lossy().into_owned())
            .with("version", version.as_str())
            .with("wg_version", version_of(&wg).as_str())
            .with("tunnel_mtu", mtu(&t.left, &sides[0].ifname))
            .with("tunnel_mtu_note", MTU_NOTE)
            .with("threads_router_a", status_field(d_a.proc.pid(), "Threads:"))
            .with("cipher", "ChaCha20-Poly1305 (WireGuard, Noise IK)"),
    );
    iperf_runs(ctx, case, &t, &[d_a.proc.pid(), d_b.proc.pid()])?;
    verify_carried(ctx, case, &wg_s, &sides[1], &pub_a)
}

/// The bytes iperf3 counted really went through the tunnel: router B's peer received
/// at least that many.
fn verify_carried(ctx: &mut Ctx, case: Case, wg: &str, b: &Side, pub_a: &str) -> Result<(), Stop> {
    let c = case.name();
    let counted: u64 = ctx
        .records
        .iter()
        .filter(|r| r.str("case") == c && r.str("status") == "ok")
        .filter_map(|r| r.num("bytes"))
        .map(|b| b as u64)
        .sum();
    let (rx, _) = transfer(wg, b, pub_a).map_err(|e| die(format!("{c}: {e}")))?;
    log(&format!(
        "  {c}: router B received {rx} bytes from router A's peer; iperf3 counted {counted}"
    ));
    if rx < counted {
        return Err(die(format!(
            "{c}: router B's tunnel received {rx} bytes, fewer than the {counted} iperf3 counted: the traffic did not all go through it"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const KEY_B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

    #[test]
    fn versions_of_the_three_tools() {
        assert_eq!(parse_version("boringtun 0.7.1\n").as_deref(), Some("0.7.1"));
        assert_eq!(
            parse_version(
                "wireguard-go v0.0.20220316\n\nUserspace WireGuard daemon for linux-amd64.\n"
            )
            .as_deref(),
            Some("0.0.20220316")
        );
        assert_eq!(
            parse_version("wireguard-tools v1.0.20210914 - https://git.zx2c4.com/wireguard-tools/")
                .as_deref(),
            Some("1.0.20210914")
        );
        assert_eq!(
            parse_version("error: unexpected argument '--version'"),
            None
        );
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn transfer_per_peer() {
        let text = format!("{KEY_A}\t1234\t5678\n{KEY_B}\t0\t18446744073709551615\n");
        assert_eq!(
            parse_transfer(&text).unwrap(),
            [
                (KEY_A.to_string(), 1234, 5678),
                (KEY_B.to_string(), 0, u64::MAX)
            ]
        );
        assert_eq!(parse_transfer("").unwrap(), []);
    }

    #[test]
    fn malformed_wg_show_is_an_error_not_zero() {
        // The human-readable `wg show` and short or non-numeric lines are not parsed as 0.
        assert!(parse_transfer("interface: wga0\n  public key: x").is_err());
        assert!(parse_transfer(&format!("{KEY_A}\t12\n")).is_err());
        assert!(parse_transfer(&format!("{KEY_A}\t12 KiB\t3\n")).is_err());
        assert!(parse_transfer("short\t1\t2\n").is_err());
        assert!(parse_transfer(&format!("{KEY_A}\t1\t2\t3\n")).is_err());
        assert!(parse_transfer(&format!("{KEY_A}\t-1\t2\n")).is_err());
    }
}
