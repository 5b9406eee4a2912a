//! Where a tunnel loses packets when its dataplane falls behind, as `status` shows it:
//! router A's daemon is stopped (SIGSTOP, so its workers read nothing) while both sites
//! send. The kernel then drops in front of it, where the daemon's own counters cannot
//! see: in A's TUN queue (traffic from site A into the tunnel) and at A's port-4500
//! socket (ESP from B). After SIGCONT, `status --json` must count both, the text
//! status must say so on the tunnel's line, and the log within its 10 s watch.

use std::time::Duration;

use testbed::{wait_until, Netns, Routevpn, RvConfig, RvTunnel, Topology};

const UP: Duration = Duration::from_secs(20);

/// Sends `count` UDP datagrams of `size` octets to `dst` port 9, in bursts of 500 with
/// a millisecond between them (so that a running router keeps up).
const BLAST: &str = r#"
import socket, sys, time
dst, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
data = b"x" * size
for i in range(count):
    if i % 500 == 499:
        time.sleep(0.001)
    try:
        s.sendto(data, (dst, 9))
    except OSError:
        pass
"#;

fn blast(ns: &Netns, dst: &str, count: u32, size: u32) {
    ns.run(&[
        "python3",
        "-c",
        BLAST,
        dst,
        &count.to_string(),
        &size.to_string(),
    ])
    .unwrap_or_else(|e| panic!("sending from {}: {e}", ns.name()));
}

fn cfg(left: bool) -> RvConfig {
    RvConfig {
        tunnels: vec![RvTunnel::two_sites(left)],
        ..RvConfig::default()
    }
}

fn counter(st: &serde_json::Value, pointer: &str) -> u64 {
    st.pointer(pointer)
        .and_then(serde_json::Value::as_u64)
        .unwrap_or_else(|| panic!("no counter {pointer} in {st}"))
}

#[test]
fn drops_in_front_of_a_stalled_dataplane_are_counted() {
    if !testbed::require_programs(&["python3"]) {
        return;
    }
    let topo = Topology::two_sites();
    let a = Routevpn::start(&topo.left, &cfg(true)).unwrap();
    let b = Routevpn::start(&topo.right, &cfg(false)).unwrap();
    testbed::wait_tunnel_up(&a, UP);
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST, UP)
        .expect("traffic through the tunnel");
    let st = a.status().unwrap();
    assert_eq!(
        counter(&st, "/tunnels/0/dataplane/tun_queue_drops"),
        0,
        "{st}"
    );
    assert_eq!(counter(&st, "/dataplane/socket_drops"), 0, "{st}");
    // The drop watch has taken its first counters (1 s after start).
    wait_until(UP, Duration::from_millis(100), || {
        let up = a.status()?["uptime_secs"].as_u64().unwrap_or(0);
        (up >= 2).then_some(()).ok_or(format!("up {up} s"))
    })
    .unwrap();

    a.signal("STOP").unwrap();
    // Site A into the tunnel: 6,000 datagrams against a TUN queue of 4,096.
    blast(&topo.left_host, Topology::RIGHT_HOST, 6_000, 200);
    // Site B to site A: B seals them and sends ESP to A's socket (8 MiB of receive
    // buffer, 16 MiB charged), in UDP GSO batches that A's socket takes whole and
    // counts once when it drops one.
    blast(&topo.right_host, Topology::LEFT_HOST, 150_000, 1_300);
    a.signal("CONT").unwrap();

    let st = wait_until(UP, Duration::from_millis(100), || a.status())
        .unwrap_or_else(|e| panic!("status after SIGCONT: {e}\n{}", a.log()));
    let queue = counter(&st, "/tunnels/0/dataplane/tun_queue_drops");
    let socket = counter(&st, "/dataplane/socket_drops");
    let sb = b.status().unwrap();
    testbed::report(&format!(
        "A stalled: {queue} dropped in its TUN queue, {socket} at its port-4500 socket \
         (B, running: {} in its TUN queue)",
        counter(&sb, "/tunnels/0/dataplane/tun_queue_drops")
    ));
    // 6,000 sent, at most 4,096 queued (a few may have gone before the stop took hold).
    assert!((1_800..=6_000).contains(&queue), "{st}");
    assert!(socket > 0, "{st}");
    let text = a
        .cli(&["status", "--socket", a.socket().to_str().unwrap()])
        .unwrap();
    assert!(
        text.contains(&format!("vti0: up; dropped {queue} (TUN queue full)")),
        "{text}"
    );
    assert!(
        text.contains("dropped by the kernel at the port-4500 sockets"),
        "{text}"
    );
    // The tunnel carries traffic again.
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST, UP)
        .expect("traffic after the stall");
    // The log says it too, within the watch's 10 s.
    let line = format!("packets dropped in the last 10s: {queue} in its full TUN queue");
    a.wait_log(&line, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&a.log(), 30)));
    a.wait_log(
        "ESP packets dropped at the port-4500 sockets",
        Duration::from_secs(1),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&a.log(), 30)));
}
