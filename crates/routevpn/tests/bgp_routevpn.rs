//! Two routevpn daemons with a tunnel between them and eBGP + BFD over it ("the triangle
//! heals itself", one edge): sessions come up, each router learns the other's site
//! networks (IPv4 and IPv6, no static routes), hosts ping through, SIGTERM withdraws at
//! once, and a silent underlay drop is detected by BFD.

use std::time::{Duration, Instant};
use testbed::{wait_until, Netns, Routevpn, RvConfig, RvTunnel, Topology};

const T: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(20);

fn tunnel(left: bool) -> RvTunnel {
    let (local, remote, addr, addr6) = if left {
        (
            Topology::LEFT_WAN,
            Topology::RIGHT_WAN,
            "169.254.12.1/30",
            "fd00:12::1/64",
        )
    } else {
        (
            Topology::RIGHT_WAN,
            Topology::LEFT_WAN,
            "169.254.12.2/30",
            "fd00:12::2/64",
        )
    };
    RvTunnel {
        local: local.into(),
        remote: remote.into(),
        psk: "bgp-test".into(),
        ike: vec!["aes128gcm16-prfsha256-x25519".into()],
        esp: vec!["aes128gcm16".into()],
        start: left,
        address: vec![addr.into(), addr6.into()],
        // No `routes`: BGP provides them.
        ..RvTunnel::default()
    }
}

/// `[bgp]` for one side: one IPv4 session over the tunnel (IPv6 rides along, next hop
/// our fd00:12:: address), BFD 100 ms × 3.
fn bgp(left: bool) -> String {
    let (asn, peer_asn, rid, net, net6, nbr) = if left {
        (
            65001,
            65002,
            "10.1.0.1",
            Topology::LEFT_NET,
            Topology::LEFT_NET6,
            "169.254.12.2",
        )
    } else {
        (
            65002,
            65001,
            "10.2.0.1",
            Topology::RIGHT_NET,
            Topology::RIGHT_NET6,
            "169.254.12.1",
        )
    };
    format!(
        "[bgp]\nasn = {asn}\nrouter_id = \"{rid}\"\nnetworks = [\"{net}\", \"{net6}\"]\n\
         hold_time = \"9s\"\nconnect_retry = \"1s\"\n\
         [[bgp.neighbor]]\naddress = \"{nbr}\"\nasn = {peer_asn}\n\
         bfd = {{ interval = \"100ms\", multiplier = 3 }}\n"
    )
}

fn start(ns: &Netns, left: bool) -> Routevpn {
    let cfg = RvConfig {
        tunnels: vec![tunnel(left)],
        extra_tail: bgp(left),
        ..RvConfig::default()
    };
    Routevpn::start(ns, &cfg).unwrap_or_else(|e| panic!("{e}"))
}

/// `ip -o route show proto 251` lines mentioning `dst`.
fn bgp_route(ns: &Netns, dst: &str) -> Option<String> {
    let fam = if dst.contains(':') { "-6" } else { "-4" };
    ns.run(&["ip", fam, "-o", "route", "show", "proto", "251"])
        .ok()?
        .lines()
        .find(|l| l.starts_with(dst))
        .map(str::to_string)
}

fn wait_route(rv: &Routevpn, dst: &str, via: &str) -> String {
    wait_until(T, POLL, || {
        bgp_route(rv.netns(), dst)
            .filter(|l| l.contains(via) && l.contains("dev vti0"))
            .ok_or_else(|| format!("no proto 251 route {dst} via {via} dev vti0"))
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nstatus: {:?}\nlog:\n{}",
            rv.status_json(),
            testbed::tail(&rv.log(), 80)
        )
    })
}

#[test]
fn ebgp_bfd_over_routevpn_tunnel() {
    if !testbed::require_programs(&["ping", "nft"]) {
        return;
    }
    let topo = Topology::two_sites();
    let left = start(&topo.left, true);
    let mut right = start(&topo.right, false);
    for rv in [&left, &right] {
        rv.wait_neighbor_up(T);
    }
    let l4 = wait_route(&left, Topology::RIGHT_NET, "via 169.254.12.2");
    let l6 = wait_route(&left, Topology::RIGHT_NET6, "via fd00:12::2");
    let r4 = wait_route(&right, Topology::LEFT_NET, "via 169.254.12.1");
    let r6 = wait_route(&right, Topology::LEFT_NET6, "via fd00:12::1");
    eprintln!("left:  {l4}\nleft:  {l6}\nright: {r4}\nright: {r6}");
    let st = left.status().unwrap();
    let n = &st["bgp"]["neighbors"][0];
    assert_eq!(n["asn"], 65002);
    assert_eq!(n["prefixes_received"], 2, "{st}");
    assert_eq!(n["prefixes_sent"], 2, "{st}");
    assert_eq!(
        st["bgp"]["routes"].as_array().map(Vec::len),
        Some(2),
        "{st}"
    );
    let human = left
        .cli(&["status", "--socket", left.socket().to_str().unwrap()])
        .unwrap();
    assert!(
        human.contains("neighbor 169.254.12.2 AS 65002: Established"),
        "{human}"
    );
    assert!(human.contains("BFD Up"), "{human}");

    topo.left_host
        .wait_ping(Topology::RIGHT_HOST, Duration::from_secs(5))
        .expect("IPv4 ping over BGP routes");
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST6, Duration::from_secs(5))
        .expect("IPv6 ping over BGP routes");

    // Silent drop of ESP-in-UDP leaving the right router: BFD must notice.
    let t0 = Instant::now();
    topo.right
        .sh("nft add table inet t && nft add chain inet t c '{ type filter hook output priority 0; }' && nft add rule inet t c udp dport 4500 drop");
    assert!(
        topo.right
            .run(&["nft", "list", "table", "inet", "t"])
            .is_ok(),
        "nft rule in place"
    );
    wait_until(
        Duration::from_secs(5),
        Duration::from_millis(5),
        || match bgp_route(left.netns(), Topology::RIGHT_NET) {
            None => Ok(()),
            Some(l) => Err(format!("still there: {l}")),
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&left.log(), 60)));
    let failover = t0.elapsed();
    eprintln!("BFD failover (drop -> route withdrawn on the left): {failover:?}");
    assert!(left.log().contains("BFD down"), "BFD took the session down");
    assert!(
        !left.log().contains("hold timer expired"),
        "BFD, not the hold timer"
    );

    // Heal the underlay: the session and routes return.
    topo.right.must(&["nft", "delete", "table", "inet", "t"]);
    wait_route(&left, Topology::RIGHT_NET, "via 169.254.12.2");
    wait_route(&right, Topology::LEFT_NET, "via 169.254.12.1");

    // SIGTERM on the right: the left withdraws at once (Cease, then IKE DELETE), and the
    // right removes its own BGP routes on the way out: they must vanish while vti0 is
    // still up (the daemon deletes routes before it closes the SAs), not merely when the
    // kernel drops the routes of a downed or closed TUN.
    let t0 = Instant::now();
    right.signal("TERM").unwrap();
    wait_until(Duration::from_secs(5), Duration::from_millis(5), || match (
        bgp_route(left.netns(), Topology::RIGHT_NET),
        bgp_route(left.netns(), Topology::RIGHT_NET6),
    ) {
        (None, None) => Ok(()),
        other => Err(format!("still there: {other:?}")),
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&left.log(), 60)));
    eprintln!(
        "SIGTERM -> routes withdrawn on the left: {:?}",
        t0.elapsed()
    );
    let pid = right.pid();
    let flushed = wait_until(Duration::from_secs(5), Duration::from_millis(5), || {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .is_ok_and(|st| !st.contains("State:\tZ"));
        let dev = testbed::link_up(&topo.right, "vti0");
        let routes = (
            bgp_route(&topo.right, Topology::LEFT_NET),
            bgp_route(&topo.right, Topology::LEFT_NET6),
        );
        match (alive && dev, routes) {
            (true, (None, None)) => Ok(()),
            (true, r) => Err(format!("right still has {r:?}")),
            (false, r) => Err(format!("vti0 went down first (routes then: {r:?})")),
        }
    });
    right
        .wait_exit(Duration::from_secs(5))
        .expect("right exits");
    right.stop();
    flushed.unwrap_or_else(|e| {
        panic!(
            "right flushed its routes before its tunnel went down: {e}\n{}",
            testbed::tail(&right.log(), 40)
        )
    });
}

/// `ip -o route show DST` in `ns` (all protocols), first line.
fn route_line(ns: &Netns, dst: &str) -> Option<String> {
    let fam = if dst.contains(':') { "-6" } else { "-4" };
    ns.run(&["ip", fam, "-o", "route", "show", dst])
        .ok()?
        .lines()
        .next()
        .map(str::to_string)
}

/// A tunnel `name` over the underlay `local`→`remote` with tunnel addresses `addr`.
fn tunnel_on(name: &str, local: &str, remote: &str, addr: &[String], start: bool) -> RvTunnel {
    RvTunnel {
        name: name.into(),
        local: local.into(),
        remote: remote.into(),
        psk: "bgp-test".into(),
        ike: vec!["aes128gcm16-prfsha256-x25519".into()],
        esp: vec!["aes128gcm16".into()],
        start,
        address: addr.to_vec(),
        ..RvTunnel::default()
    }
}

/// Two transport links and two tunnels between the same two routers, an eBGP session
/// over each; the left keeps `max_paths = 2`, so the right's network is one multipath
/// route through both tunnels, and one next hop again when one tunnel is down.
#[test]
fn ecmp_multipath_route_over_two_tunnels() {
    if !testbed::require_programs(&["ip"]) {
        return;
    }
    let topo = Topology::two_sites();
    testbed::veth(
        &topo.left,
        "wan1",
        &["198.51.100.1/24"],
        &topo.right,
        "wan1",
        &["198.51.100.2/24"],
    );
    let side = |left: bool| {
        let (a, b, pre) = if left {
            (Topology::LEFT_WAN, Topology::RIGHT_WAN, ("1", "2"))
        } else {
            (Topology::RIGHT_WAN, Topology::LEFT_WAN, ("2", "1"))
        };
        let (a1, b1) = if left {
            ("198.51.100.1", "198.51.100.2")
        } else {
            ("198.51.100.2", "198.51.100.1")
        };
        let tunnels = vec![
            tunnel_on(
                "vti0",
                a,
                b,
                &[
                    format!("169.254.12.{}/30", pre.0),
                    format!("fd00:12::{}/64", pre.0),
                ],
                left,
            ),
            tunnel_on(
                "vti1",
                a1,
                b1,
                &[
                    format!("169.254.13.{}/30", pre.0),
                    format!("fd00:13::{}/64", pre.0),
                ],
                left,
            ),
        ];
        let (asn, peer_asn, rid, net, net6) = if left {
            (
                65001,
                65002,
                "10.1.0.1",
                Topology::LEFT_NET,
                Topology::LEFT_NET6,
            )
        } else {
            (
                65002,
                65001,
                "10.2.0.1",
                Topology::RIGHT_NET,
                Topology::RIGHT_NET6,
            )
        };
        let max_paths = if left { 2 } else { 1 };
        let mut bgp = format!(
            "[bgp]\nasn = {asn}\nrouter_id = \"{rid}\"\nnetworks = [\"{net}\", \"{net6}\"]\n\
             hold_time = \"9s\"\nconnect_retry = \"1s\"\nmax_paths = {max_paths}\n"
        );
        for subnet in ["12", "13"] {
            bgp.push_str(&format!(
                "[[bgp.neighbor]]\naddress = \"169.254.{subnet}.{}\"\nasn = {peer_asn}\n",
                pre.1
            ));
        }
        RvConfig {
            tunnels,
            extra_tail: bgp,
            ..RvConfig::default()
        }
    };
    let left = Routevpn::start(&topo.left, &side(true)).unwrap_or_else(|e| panic!("{e}"));
    let right = Routevpn::start(&topo.right, &side(false)).unwrap_or_else(|e| panic!("{e}"));

    let two_hops = |l: &String| {
        l.contains("proto 251")
            && l.contains("nexthop via 169.254.12.2 dev vti0")
            && l.contains("nexthop via 169.254.13.2 dev vti1")
    };
    let fail = |e: String| -> ! {
        panic!(
            "{e}\nstatus: {:?}\nleft log:\n{}\nright log:\n{}",
            left.status_json(),
            testbed::tail(&left.log(), 80),
            testbed::tail(&right.log(), 40)
        )
    };
    let line = wait_until(T, POLL, || {
        route_line(&topo.left, Topology::RIGHT_NET)
            .filter(two_hops)
            .ok_or_else(|| {
                format!(
                    "no multipath route: {:?}",
                    route_line(&topo.left, Topology::RIGHT_NET)
                )
            })
    })
    .unwrap_or_else(|e| fail(e));
    eprintln!("left, both tunnels up: {line}");
    // IPv6 rides along on each session: a multipath IPv6 route too.
    let two_hops6 = |l: &String| {
        l.contains("proto 251")
            && l.contains("nexthop via fd00:12::2 dev vti0")
            && l.contains("nexthop via fd00:13::2 dev vti1")
    };
    let line6 = wait_until(T, POLL, || {
        route_line(&topo.left, Topology::RIGHT_NET6)
            .filter(two_hops6)
            .ok_or_else(|| {
                format!(
                    "no IPv6 multipath route: {:?}",
                    route_line(&topo.left, Topology::RIGHT_NET6)
                )
            })
    })
    .unwrap_or_else(|e| fail(e));
    eprintln!("left, both tunnels up: {line6}");
    // The right keeps one path (max_paths = 1): a plain route.
    let r = wait_route(&right, Topology::LEFT_NET, "via 169.254.12.1");
    assert!(!r.contains("nexthop"), "{r}");
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST, Duration::from_secs(5))
        .expect("ping over the multipath route");

    // One tunnel down: its session goes with it, and the route keeps one next hop.
    let sock = left.socket().to_str().unwrap().to_string();
    left.cli(&["down", "vti1", "--socket", &sock])
        .unwrap_or_else(|e| fail(e));
    let line = wait_until(T, Duration::from_millis(5), || {
        route_line(&topo.left, Topology::RIGHT_NET)
            .filter(|l| {
                l.contains("proto 251")
                    && l.contains("via 169.254.12.2 dev vti0")
                    && !l.contains("nexthop")
                    && !l.contains("vti1")
            })
            .ok_or_else(|| {
                format!(
                    "no single-path route: {:?}",
                    route_line(&topo.left, Topology::RIGHT_NET)
                )
            })
    })
    .unwrap_or_else(|e| fail(e));
    eprintln!("left, vti1 down: {line}");
    let line6 = wait_until(T, Duration::from_millis(5), || {
        route_line(&topo.left, Topology::RIGHT_NET6)
            .filter(|l| {
                l.contains("proto 251")
                    && l.contains("via fd00:12::2 dev vti0")
                    && !l.contains("nexthop")
                    && !l.contains("vti1")
            })
            .ok_or_else(|| {
                format!(
                    "no single-path IPv6 route: {:?}",
                    route_line(&topo.left, Topology::RIGHT_NET6)
                )
            })
    })
    .unwrap_or_else(|e| fail(e));
    eprintln!("left, vti1 down: {line6}");

    // Back up: multipath again.
    let _ = left.cli(&["up", "vti1", "--socket", &sock]);
    let line = wait_until(T, POLL, || {
        route_line(&topo.left, Topology::RIGHT_NET)
            .filter(two_hops)
            .ok_or_else(|| "no multipath route after vti1 came back".to_string())
    })
    .unwrap_or_else(|e| fail(e));
    eprintln!("left, vti1 up again: {line}");
    wait_until(T, POLL, || {
        route_line(&topo.left, Topology::RIGHT_NET6)
            .filter(two_hops6)
            .ok_or_else(|| "no IPv6 multipath route after vti1 came back".to_string())
    })
    .unwrap_or_else(|e| fail(e));
}

/// `redistribute = ["connected", "static"]`: the left announces its extra LAN
/// (10.9.0.0/24, connected, present at start) and a static route added while running
/// (10.8.0.0/24 via a LAN neighbor), withdraws the static route when it is deleted, and
/// never announces its underlay (192.0.2.0/24) or the tunnel subnet.
#[test]
fn redistribute_connected_and_static() {
    if !testbed::require_programs(&["ip"]) {
        return;
    }
    let topo = Topology::two_sites();
    let lan9 = Netns::new("lan9");
    testbed::veth(
        &topo.left,
        "lan1",
        &["10.9.0.1/24"],
        &lan9,
        "eth0",
        &["10.9.0.2/24"],
    );
    let mut tail = bgp(true);
    tail = tail.replacen(
        "hold_time",
        "redistribute = [\"connected\", \"static\"]\nhold_time",
        1,
    );
    let left = Routevpn::start(
        &topo.left,
        &RvConfig {
            tunnels: vec![tunnel(true)],
            extra_tail: tail,
            ..RvConfig::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let right = start(&topo.right, false);

    let r = wait_route(&right, "10.9.0.0/24", "via 169.254.12.1");
    eprintln!("right learned the connected LAN: {r}");
    // Configured networks still announced.
    wait_route(&right, Topology::LEFT_NET, "via 169.254.12.1");

    topo.left
        .must(&["ip", "route", "add", "10.8.0.0/24", "via", "10.9.0.2"]);
    let r = wait_route(&right, "10.8.0.0/24", "via 169.254.12.1");
    eprintln!("right learned the static route: {r}");

    let st = right.status().unwrap();
    let routes: Vec<String> = st["bgp"]["routes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| r["prefix"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    // The underlay (both families of wan0), the tunnel subnet and loopback never go.
    for never in [
        "192.0.2.0/24",
        "2001:db8::/64",
        "169.254.12.0/30",
        "127.0.0.0/8",
    ] {
        assert!(!routes.iter().any(|p| p == never), "{never} in {routes:?}");
    }
    assert_eq!(
        st["bgp"]["neighbors"][0]["prefixes_received"], 4,
        "10.1.0.0/24, fd00:1::/64 (configured and connected), 10.9.0.0/24, 10.8.0.0/24: {st}"
    );

    topo.left.must(&["ip", "route", "del", "10.8.0.0/24"]);
    wait_until(T, POLL, || match bgp_route(right.netns(), "10.8.0.0/24") {
        None => Ok(()),
        Some(l) => Err(format!("still there: {l}")),
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&left.log(), 60)));
    assert!(bgp_route(right.netns(), "10.9.0.0/24").is_some());
}

/// Issue 9, "a neighbour can only speak for itself": the left router has two tunnels
/// to the right one, an honest session over vti0 and a malicious one over vti1. The
/// malicious session announces a /32 of the honest neighbour's tunnel-inner address, a
/// more-specific of the left's vti0 subnet, and IPv6 routes with a third-party next hop
/// (an address on the left's vti0 subnet, i.e. another tunnel) besides one legitimate
/// route. The left must install only the legitimate one, count the others, keep both
/// sessions up, and traffic must still flow over the honest tunnel.
#[test]
fn import_guard_refuses_hijacks_from_a_neighbor() {
    if !testbed::require_programs(&["ip", "ping"]) {
        return;
    }
    let topo = Topology::two_sites();
    testbed::veth(
        &topo.left,
        "wan1",
        &["198.51.100.1/24"],
        &topo.right,
        "wan1",
        &["198.51.100.2/24"],
    );
    let left_cfg = RvConfig {
        tunnels: vec![
            tunnel_on(
                "vti0",
                Topology::LEFT_WAN,
                Topology::RIGHT_WAN,
                &["169.254.12.1/30".into(), "fd00:12::1/64".into()],
                true,
            ),
            tunnel_on(
                "vti1",
                "198.51.100.1",
                "198.51.100.2",
                &["169.254.13.1/30".into(), "fd00:13::1/64".into()],
                true,
            ),
        ],
        extra_tail: format!(
            "[bgp]\nasn = 65001\nrouter_id = \"10.1.0.1\"\nnetworks = [\"{}\", \"{}\"]\n\
             hold_time = \"9s\"\nconnect_retry = \"1s\"\n\
             [[bgp.neighbor]]\naddress = \"169.254.12.2\"\nasn = 65002\n\
             [[bgp.neighbor]]\naddress = \"169.254.13.2\"\nasn = 65002\n",
            Topology::LEFT_NET,
            Topology::LEFT_NET6
        ),
        ..RvConfig::default()
    };
    // The attacker's side: its vti1 IPv6 address lies in the left's vti0 subnet, so the
    // IPv6 routes it sends over vti1 carry a next hop that steers into vti0.
    let right_cfg = RvConfig {
        tunnels: vec![
            tunnel_on(
                "vti0",
                Topology::RIGHT_WAN,
                Topology::LEFT_WAN,
                &["169.254.12.2/30".into(), "fd00:12::2/64".into()],
                false,
            ),
            tunnel_on(
                "vti1",
                "198.51.100.2",
                "198.51.100.1",
                &["169.254.13.2/30".into(), "fd00:12::3/128".into()],
                false,
            ),
        ],
        extra_tail: format!(
            "[bgp]\nasn = 65002\nrouter_id = \"10.2.0.1\"\n\
             networks = [\"{}\", \"{}\", \"169.254.12.2/32\", \"169.254.12.0/31\", \"10.66.0.0/24\", \"fd00:66::/64\", \"128.0.0.0/1\"]\n\
             hold_time = \"9s\"\nconnect_retry = \"1s\"\n\
             [[bgp.neighbor]]\naddress = \"169.254.12.1\"\nasn = 65001\n\
             export = [\"permit {}\", \"permit {}\"]\n\
             [[bgp.neighbor]]\naddress = \"169.254.13.1\"\nasn = 65001\n\
             export = [\"permit 169.254.12.2/32\", \"permit 169.254.12.0/31\", \"permit 10.66.0.0/24\", \"permit fd00:66::/64\", \"permit 128.0.0.0/1\"]\n",
            Topology::RIGHT_NET,
            Topology::RIGHT_NET6,
            Topology::RIGHT_NET,
            Topology::RIGHT_NET6
        ),
        ..RvConfig::default()
    };
    let left = Routevpn::start(&topo.left, &left_cfg).unwrap_or_else(|e| panic!("{e}"));
    let right = Routevpn::start(&topo.right, &right_cfg).unwrap_or_else(|e| panic!("{e}"));
    let fail = |e: String| -> ! {
        panic!(
            "{e}\nstatus: {:?}\nleft log:\n{}\nright log:\n{}",
            left.status_json(),
            testbed::tail(&left.log(), 80),
            testbed::tail(&right.log(), 40)
        )
    };
    // The legitimate route of the malicious neighbour arrives: its UPDATEs are processed.
    let l = wait_until(T, POLL, || {
        route_line(&topo.left, "10.66.0.0/24")
            .filter(|l| l.contains("proto 251") && l.contains("via 169.254.13.2 dev vti1"))
            .ok_or_else(|| "no 10.66.0.0/24 via vti1".to_string())
    })
    .unwrap_or_else(|e| fail(e));
    eprintln!("left, legitimate route from the malicious neighbour: {l}");
    wait_route(&left, Topology::RIGHT_NET, "via 169.254.12.2");
    // The guard has decided on all four hijacks (refused routes never reach the kernel,
    // accepted ones are installed before the counter is read again).
    wait_until(T, POLL, || {
        let st = left.status()?;
        let refused = st["bgp"]["neighbors"]
            .as_array()
            .and_then(|ns| ns.iter().find(|n| n["address"] == "169.254.13.2"))
            .map(|n| n["prefixes_refused"].clone());
        (refused == Some(4.into()))
            .then_some(())
            .ok_or(format!("refused so far: {refused:?}"))
    })
    .unwrap_or_else(|e| fail(e));
    // 128.0.0.0/1 is less specific than every subnet of ours, but it covers the left's
    // IKE peers (192.0.2.2, 198.51.100.2): installed, it would pull the tunnels into
    // themselves.
    let hijacks = [
        "169.254.12.2/32",
        "169.254.12.0/31",
        "fd00:66::/64",
        "128.0.0.0/1",
    ];
    let mut installed = Vec::new();
    for h in hijacks {
        let fam = if h.contains(':') { "-6" } else { "-4" };
        let dst = h.trim_end_matches("/32");
        installed.extend(
            topo.left
                .run(&["ip", fam, "-o", "route", "show", "proto", "251"])
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with(&format!("{dst} ")))
                .map(str::to_string),
        );
    }
    if !installed.is_empty() {
        fail(format!("hijacking routes installed: {installed:?}"));
    }
    let st = left.status().unwrap();
    let ns = st["bgp"]["neighbors"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(ns.len(), 2, "{st}");
    for n in &ns {
        assert_eq!(n["state"], "Established", "{st}");
    }
    let bad = ns.iter().find(|n| n["address"] == "169.254.13.2").unwrap();
    assert_eq!(bad["prefixes_refused"], 4, "{st}");
    assert_eq!(bad["prefixes_received"], 1, "{st}");
    assert!(
        left.log()
            .contains("refused routes that would take traffic for our own infrastructure"),
        "{}",
        testbed::tail(&left.log(), 40)
    );
    // The honest session's own address still goes over vti0, and traffic flows.
    let r = topo
        .left
        .run(&["ip", "-4", "-o", "route", "get", "169.254.12.2"])
        .unwrap_or_default();
    assert!(r.contains("dev vti0"), "{r}");
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST, Duration::from_secs(5))
        .expect("ping over the honest tunnel");
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST6, Duration::from_secs(5))
        .expect("IPv6 ping over the honest tunnel");
}

/// BFD packets count only when they arrive on the neighbour's own tunnel: an attacker on
/// another link of the left router, who knows both discriminators (read here off the
/// tunnel interface) and spoofs the neighbour's address with TTL 255, sends AdminDown.
/// The left must drop every one (counted) and keep BFD and BGP up.
#[test]
fn bfd_packet_on_another_interface_is_dropped() {
    if !testbed::require_programs(&["ip", "tcpdump", "python3"]) {
        return;
    }
    let topo = Topology::two_sites();
    let left = start(&topo.left, true);
    let right = start(&topo.right, false);
    for rv in [&left, &right] {
        rv.wait_neighbor_up(T);
    }
    // The discriminators, from one of the right's BFD packets as the left's vti0 sees it.
    let pcap = std::env::temp_dir().join(format!("rv-bfd-{}.pcap", std::process::id()));
    let pcap_s = pcap.to_str().unwrap();
    let o = topo.left.exec(&[
        "timeout",
        "5",
        "tcpdump",
        "-i",
        "vti0",
        "-c",
        "1",
        "-w",
        pcap_s,
        "src host 169.254.12.2 and udp dst port 3784",
    ]);
    let cap = std::fs::read(&pcap).unwrap_or_default();
    let _ = std::fs::remove_file(&pcap);
    // pcap header (24) + record header (16) + IPv4 (20) + UDP (8): the BFD packet.
    let bfd = cap
        .get(68..92)
        .unwrap_or_else(|| panic!("no BFD packet captured: {o:?}"));
    let (theirs, ours) = (&bfd[4..8], &bfd[8..12]);
    assert_ne!(ours, [0; 4], "the right knows our discriminator by now");
    // AdminDown (RFC 5880 §4.1: version 1, state 0), Detect Mult 3, both discriminators.
    let mut pkt = vec![0x20, 0x00, 3, 24];
    pkt.extend_from_slice(theirs);
    pkt.extend_from_slice(ours);
    pkt.extend_from_slice(&1_000_000u32.to_be_bytes());
    pkt.extend_from_slice(&1_000_000u32.to_be_bytes());
    pkt.extend_from_slice(&[0; 4]);
    let hex: String = pkt.iter().map(|b| format!("{b:02x}")).collect();

    let evil = Netns::new("bfdevil");
    testbed::veth(
        &topo.left,
        "evil0",
        &["203.0.113.1/24"],
        &evil,
        "eth0",
        &["203.0.113.2/24", "169.254.12.2/32"],
    );
    // A router with loose reverse-path filtering: the spoofed source is not refused.
    topo.left.sysctl("net.ipv4.conf.all.rp_filter", "0");
    topo.left.sysctl("net.ipv4.conf.evil0.rp_filter", "0");
    evil.must(&["ip", "route", "add", "169.254.12.1/32", "dev", "eth0"]);
    let script = "import socket, sys, time\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255)\n\
        s.bind(('169.254.12.2', 49999))\n\
        pkt = bytes.fromhex(sys.argv[1])\n\
        end = time.time() + 1.5\n\
        while time.time() < end:\n    s.sendto(pkt, ('169.254.12.1', 3784)); time.sleep(0.01)\n";
    let o = evil.exec(&["python3", "-c", script, &hex]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The daemon has read the injected packets (they arrive on the wrong interface).
    wait_until(T, POLL, || {
        let n = left.neighbor();
        (n["bfd_wrong_interface"].as_u64().unwrap_or(0) > 10)
            .then_some(())
            .ok_or(format!("{n}"))
    })
    .unwrap_or_else(|e| panic!("the injected packets were not seen: {e}"));

    let n = left.neighbor();
    let log = left.log();
    assert!(
        n["bfd"] == "Up" && n["state"] == "Established" && !log.contains("BFD down"),
        "injected AdminDown took the session down: {n}\n{}",
        testbed::tail(&log, 40)
    );
    assert!(
        n["bfd_wrong_interface"].as_u64().unwrap_or(0) > 10,
        "the injected packets were not seen: {n}"
    );
    wait_route(&left, Topology::RIGHT_NET, "via 169.254.12.2");
}

/// `max_prefix` at the daemon: the left accepts one route from the right, which
/// announces two (10.2.0.0/24 and fd00:2::/64). The left closes the session with
/// NOTIFICATION Cease/1 (RFC 4486) and never has more than one route from it in the
/// kernel.
#[test]
fn max_prefix_exceeded_closes_the_session() {
    if !testbed::require_programs(&["ip"]) {
        return;
    }
    let topo = Topology::two_sites();
    let tail = bgp(true).replacen(
        "bfd = { interval = \"100ms\", multiplier = 3 }",
        "max_prefix = 1",
        1,
    );
    let left = Routevpn::start(
        &topo.left,
        &RvConfig {
            tunnels: vec![tunnel(true)],
            extra_tail: tail,
            ..RvConfig::default()
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let right = start(&topo.right, false);
    let t0 = Instant::now();
    let mut most = 0;
    while t0.elapsed() < Duration::from_secs(5) {
        let n = [Topology::RIGHT_NET, Topology::RIGHT_NET6]
            .iter()
            .filter(|d| bgp_route(&topo.left, d).is_some())
            .count();
        most = most.max(n);
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(most <= 1, "both routes were installed");
    assert!(
        left.log().contains("MaxPrefixes"),
        "{}",
        testbed::tail(&left.log(), 40)
    );
    let rlog = right.log();
    assert!(
        rlog.contains("PeerNotification(Notification { code: 6, subcode: 1,"),
        "the right was not told (Cease/1):\n{}\nleft:\n{}",
        testbed::tail(&rlog, 40),
        testbed::tail(&left.log(), 40)
    );
}
