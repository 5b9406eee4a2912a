//! The control socket under abuse (issue 9): a client sending 1 MB without a newline and
//! 100 idle connections must neither grow the daemon's memory by the megabyte nor stop
//! `routevpn status` from answering; the daemon drops the abusers by itself.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};
use testbed::{Netns, Routevpn, RvConfig};

/// Resident memory of a process, in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// True once the daemon has closed `s` (EOF or reset) within `within`.
fn closed_by_daemon(s: &mut UnixStream, within: Duration) -> Result<(), String> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(_) => {} // an error response: read on to the end
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return Ok(())
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(format!("still open after {:?}", start.elapsed()))
            }
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

#[test]
fn abusive_clients_neither_block_status_nor_grow_memory() {
    if !testbed::require_root() {
        return;
    }
    let ns = Netns::new("ctl");
    // No tunnels: only the control socket matters here.
    let rv = Routevpn::start(&ns, &RvConfig::default()).expect("daemon ready");
    let pid = rv.pid();
    rv.status().expect("status before the abuse");
    // The daemon warns at start, as `check` does, about a config others can read.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(rv.config_path())
        .unwrap()
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        rv.wait_log(
            "the configuration file is accessible by group or others",
            Duration::from_secs(5),
        )
        .expect("start-up warning");
    }
    let before = rss_kib(pid);

    // 1 MB without a newline, written from a thread: the daemon may stop reading (and
    // close) long before the end.
    let mut big = UnixStream::connect(rv.socket()).expect("connect");
    let mut writer = big.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let flood = std::thread::spawn(move || {
        let chunk = vec![b'a'; 64 * 1024];
        let mut sent = 0usize;
        for _ in 0..16 {
            match writer.write_all(&chunk) {
                Ok(()) => sent += chunk.len(),
                Err(_) => break,
            }
        }
        sent
    });
    // 100 idle connections held open; some may be refused at once (connection cap).
    let mut idle: Vec<UnixStream> = (0..100)
        .filter_map(|_| UnixStream::connect(rv.socket()).ok())
        .collect();
    let sent = flood.join().unwrap();

    let start = Instant::now();
    let status = rv.status();
    let took = start.elapsed();
    testbed::report(&format!(
        "control socket: status answered in {took:?} with {} idle connections open and {sent} bytes sent without a newline",
        idle.len()
    ));
    status.expect("status must answer while abusive clients are connected");
    assert!(took < Duration::from_secs(4), "status took {took:?}");

    let after = rss_kib(pid);
    testbed::report(&format!(
        "control socket: daemon RSS {before} KiB before, {after} KiB after"
    ));
    assert!(
        after < before + 1024,
        "daemon memory grew by {} KiB (1 MB request without a newline buffered?)",
        after.saturating_sub(before)
    );

    // The daemon drops the abusers itself: the long line at its cap, idle ones at the
    // read timeout.
    closed_by_daemon(&mut big, Duration::from_secs(8)).expect("1 MB client dropped");
    for (i, s) in idle.iter_mut().enumerate() {
        closed_by_daemon(s, Duration::from_secs(8))
            .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
    }
    // And serves normally afterwards.
    rv.status().expect("status after the abuse");
}
