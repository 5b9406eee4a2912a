//! Daemon log formats: `--log-format json` writes one JSON object per line carrying the
//! tunnel, peer and SPI as fields; text logs to a file or pipe carry no ANSI colours.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use testbed::{routevpn_bin, veth, Netns, Routevpn, RvConfig, RvTunnel, TestDir};

/// Every line of `log` as a JSON object with the members every record has.
fn json_lines(log: &str) -> Vec<Value> {
    assert!(!log.trim().is_empty(), "no log at all");
    log.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l:?}"));
            for k in ["timestamp", "level", "target", "message"] {
                assert!(v[k].is_string(), "no {k} in {l}");
            }
            v
        })
        .collect()
}

#[test]
fn fatal_error_is_a_json_line_and_text_has_no_colour() {
    let dir = TestDir::new("logfmt");
    let cfg = dir.join("bad.toml");
    std::fs::write(&cfg, "[[tunnel]]\nname = 1\n").unwrap();
    let cfg = cfg.to_str().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(routevpn_bin())
            .args(args)
            .env_remove("NO_COLOR")
            .env_remove("ROUTEVPN_LOG_FORMAT")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let lines = json_lines(&run(&["--log-format", "json", "daemon", "-c", cfg]));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["level"], "ERROR");
    let m = lines[0]["message"].as_str().unwrap();
    assert!(m.contains("bad.toml:2:8: name: expected a string"), "{m}");
    let text = run(&["daemon", "-c", cfg]);
    assert!(text.contains("bad.toml:2:8:"), "{text}");
    assert!(!text.contains('\x1b'), "ANSI escape in {text:?}");
}

#[test]
fn daemon_logs_json_with_fields_and_plain_text_without_colour() {
    if !testbed::require_root() {
        return;
    }
    let (a, b) = (Netns::new("logja"), Netns::new("logjb"));
    veth(&a, "wan", &["192.0.2.1/24"], &b, "wan", &["192.0.2.2/24"]);
    let tunnel = |local: &str, remote: &str, start: bool| RvConfig {
        tunnels: vec![RvTunnel {
            local: local.into(),
            remote: remote.into(),
            psk: "log-format".into(),
            ike: vec!["aes128gcm16-prfsha256-x25519".into()],
            esp: vec!["aes128gcm16".into()],
            start,
            address: vec![if start {
                "169.254.7.1/30"
            } else {
                "169.254.7.2/30"
            }
            .into()],
            ..RvTunnel::default()
        }],
        ..RvConfig::default()
    };
    // NO_COLOR unset: only "stderr is not a terminal" may keep colours out.
    let env = |format: &'static str| {
        [
            ("RUST_LOG", "debug"),
            ("ROUTEVPN_LOG_FORMAT", format),
            ("NO_COLOR", ""),
        ]
    };
    let mut right = Routevpn::spawn_with(
        routevpn_bin(),
        &b,
        &tunnel("192.0.2.2", "192.0.2.1", false),
        &env("text"),
    );
    right.wait_ready(Duration::from_secs(10)).unwrap();
    let mut left = Routevpn::spawn_with(
        routevpn_bin(),
        &a,
        &tunnel("192.0.2.1", "192.0.2.2", true),
        &env("json"),
    );
    left.wait_ready(Duration::from_secs(10)).unwrap();
    testbed::wait_tunnel_up(&left, Duration::from_secs(20));
    left.stop();
    right.stop();

    let lines = json_lines(&left.log());
    let has = |field: &str, pred: &dyn Fn(&Value) -> bool| lines.iter().any(|l| pred(&l[field]));
    assert!(
        has("tunnel", &|v| v == "vti0"),
        "no tunnel field:\n{}",
        left.log()
    );
    assert!(
        has("peer", &|v| v
            .as_str()
            .is_some_and(|s| s.starts_with("192.0.2.2"))),
        "no peer field:\n{}",
        left.log()
    );
    assert!(
        has("spi_in", &|v| v.as_str().is_some_and(|s| s.len() >= 8)),
        "no spi_in field:\n{}",
        left.log()
    );
    assert!(has("spi_i", &|v| v.is_string()), "no spi_i field");
    // The message stays free of the fields.
    assert!(lines
        .iter()
        .any(|l| l["message"] == "initiating IKE SA" && l["tunnel"] == "vti0"));

    let text = right.log();
    assert!(text.contains("tunnel=vti0"), "{text}");
    assert!(!text.contains('\x1b'), "ANSI escape in the text log");
}

/// Under systemd (JOURNAL_STREAM naming our stderr) but without the journal's socket,
/// lines carry a `<N>` syslog priority
/// and no timestamp (journald adds its own). A daemon without tunnels opens no sockets
/// but its control socket, so this runs anywhere.
#[test]
fn journal_stream_gets_priority_prefixes_without_timestamps() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = TestDir::new("logjournal");
    let cfg = dir.join("r.toml");
    let sock = dir.join("r.sock");
    std::fs::write(
        &cfg,
        format!("control_socket = {:?}\n", sock.to_str().unwrap()),
    )
    .unwrap();
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let m = log.metadata().unwrap();
    // A private /run: no journal socket, even on a host running systemd-journald, so
    // this is the fallback to stderr (the native path is the next test).
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t tmpfs tmpfs /run && exec \"$0\" daemon -c \"$1\"")
        .args([routevpn_bin(), cfg.to_str().unwrap()])
        .env("JOURNAL_STREAM", format!("{}:{}", m.dev(), m.ino()))
        .env_remove("ROUTEVPN_LOG_FORMAT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let started = testbed::wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        text.contains("routevpn daemon started")
            .then_some(())
            .ok_or(text)
    });
    // By pid: the child this test spawned and has not reaped.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    let text = std::fs::read_to_string(&log_path).unwrap();
    started.unwrap_or_else(|e| panic!("daemon did not start: {e}"));
    assert!(status.success(), "{status}: {text}");
    for l in text.lines() {
        assert!(
            l.starts_with("<6>") || l.starts_with("<4>"),
            "no priority: {l}"
        );
        assert!(
            !l.contains("Z ") && !l.contains('\x1b'),
            "timestamp or colour: {l}"
        );
    }
    assert!(
        text.contains("<6> INFO routevpn::daemon::setup: routevpn daemon started"),
        "{text}"
    );
}

/// Under systemd with the journal's socket there, entries go to journald natively with
/// the event fields as journal fields (`journalctl TUNNEL=vti0`). Run in private mount and
/// network namespaces: a stand-in journal socket on a private /run, a tunnel towards a
/// loopback address nobody answers (its IKE attempts are logged with their fields).
#[test]
fn journald_gets_native_entries_with_fields() {
    if !testbed::require_programs(&["unshare", "/usr/bin/python3", "stat", "ip"]) {
        return;
    }
    let dir = TestDir::new("logjournald");
    let d = dir.path().to_str().unwrap().to_string();
    std::fs::write(
        dir.join("r.toml"),
        format!(
            "control_socket = \"{d}/r.sock\"\n\n[[tunnel]]\nname = \"vti0\"\nlocal = \"127.0.0.1\"\n\
             remote = \"127.0.0.2\"\npsk = \"journald-test-psk-123456\"\nstart = true\n"
        ),
    )
    .unwrap();
    let script = r#"set -e
mount -t tmpfs tmpfs /run
mkdir -p /run/systemd/journal
ip link set lo up
/usr/bin/python3 "$DIR/listener.py" /run/systemd/journal/socket "$DIR/journal.bin" "$DIR/ready" &
L=$!
for i in $(seq 100); do [ -e "$DIR/ready" ] && break; sleep 0.05; done
exec 2>"$DIR/stderr.log"
export JOURNAL_STREAM=$(stat -L -c '%d:%i' "$DIR/stderr.log")
RUST_LOG=debug "$BIN" daemon -c "$DIR/r.toml" &
R=$!
for i in $(seq 200); do grep -qa 'TUNNEL' "$DIR/journal.bin" 2>/dev/null && break; sleep 0.05; done
kill $R; wait $R || true
kill $L
"#;
    // Each datagram stored behind its length (u32 little-endian).
    std::fs::write(
        dir.join("listener.py"),
        "import socket, struct, sys\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n\
         s.bind(sys.argv[1])\n\
         open(sys.argv[3], 'w').close()\n\
         f = open(sys.argv[2], 'ab')\n\
         while True:\n    d = s.recv(1 << 20)\n    f.write(struct.pack('<I', len(d)) + d)\n    f.flush()\n",
    )
    .unwrap();
    let out = Command::new("unshare")
        .args([
            "--mount",
            "--net",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
        ])
        .env("DIR", &d)
        .env("BIN", routevpn_bin())
        .env_remove("ROUTEVPN_LOG_FORMAT")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let raw = std::fs::read(dir.join("journal.bin")).unwrap_or_default();
    let entries = journal_entries(&raw);
    let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
    let ctx = || format!("{out:?}\njournal: {entries:?}\nstderr:\n{stderr}");
    let field =
        |e: &Vec<(String, String)>, k: &str| e.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert!(
        entries
            .iter()
            .any(|e| field(e, "MESSAGE").as_deref() == Some("routevpn daemon started")),
        "{}",
        ctx()
    );
    assert!(
        entries.iter().all(|e| {
            field(e, "SYSLOG_IDENTIFIER").as_deref() == Some("routevpn")
                && field(e, "PRIORITY").is_some()
        }),
        "{}",
        ctx()
    );
    // The tunnel is a journal field of its own, not only text in MESSAGE.
    assert!(
        entries
            .iter()
            .any(|e| field(e, "TUNNEL").as_deref() == Some("vti0")),
        "{}",
        ctx()
    );
    assert!(
        !stderr.contains("routevpn daemon started"),
        "logged to stderr instead of the journal: {}",
        ctx()
    );
}

/// journald's native protocol (systemd.journal-fields(7), "Native Journal Protocol"):
/// `NAME=value\n`, or `NAME\n` + u64 LE length + value + `\n`; datagrams stored behind
/// a u32 LE length by the test's stand-in socket.
fn journal_entries(mut raw: &[u8]) -> Vec<Vec<(String, String)>> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut out = Vec::new();
    while let Some(n) = raw.get(..4) {
        let n = u32::from_le_bytes(n.try_into().unwrap()) as usize;
        let Some(mut d) = raw.get(4..4 + n) else {
            break;
        };
        raw = &raw[4 + n..];
        let mut fields = Vec::new();
        while !d.is_empty() {
            let nl = d.iter().position(|b| *b == b'\n').unwrap_or(d.len());
            let line = &d[..nl];
            if let Some(eq) = line.iter().position(|b| *b == b'=') {
                fields.push((text(&line[..eq]), text(&line[eq + 1..])));
                d = d.get(nl + 1..).unwrap_or_default();
            } else {
                let rest = d.get(nl + 1..).unwrap_or_default();
                let Some(len) = rest.get(..8) else { break };
                let len = u64::from_le_bytes(len.try_into().unwrap()) as usize;
                let Some(value) = rest.get(8..8 + len) else {
                    break;
                };
                fields.push((text(line), text(value)));
                d = rest.get(8 + len + 1..).unwrap_or_default();
            }
        }
        if !fields.is_empty() {
            out.push(fields);
        }
    }
    out
}
