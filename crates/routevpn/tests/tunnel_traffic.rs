//! Traffic through route-based tunnels in network namespaces: host A ↔ host B through
//! routevpn↔routevpn and routevpn↔strongSwan (libipsec), IPv4 and IPv6 inner traffic,
//! content-checked TCP, what the transport link carries, replayed and tampered ESP,
//! DELETE on SIGTERM, and static failover between two tunnels by route metric.

use std::time::{Duration, Instant};
use testbed::{wait_until, Netns, Routevpn, RvConfig, RvTunnel, Strongswan, SwanConn, Topology};

const T: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);
const IKE: &str = "aes128gcm16-prfsha256-x25519";

/// A routevpn tunnel between the two routers with interface addresses and routes to
/// the far site (IPv4 and IPv6).
fn tunnel(left: bool, esp: &str, start: bool) -> RvTunnel {
    let (local, remote, lid, rid, addr, addr6, net, net6) = if left {
        (
            Topology::LEFT_WAN,
            Topology::RIGHT_WAN,
            "routerA",
            "routerB",
            "169.254.12.1/30",
            "fd00:12::1/64",
            Topology::RIGHT_NET,
            Topology::RIGHT_NET6,
        )
    } else {
        (
            Topology::RIGHT_WAN,
            Topology::LEFT_WAN,
            "routerB",
            "routerA",
            "169.254.12.2/30",
            "fd00:12::2/64",
            Topology::LEFT_NET,
            Topology::LEFT_NET6,
        )
    };
    RvTunnel {
        local: local.into(),
        remote: remote.into(),
        local_id: lid.into(),
        remote_id: rid.into(),
        psk: "traffic-test".into(),
        ike: vec![IKE.into()],
        esp: vec![esp.into()],
        start,
        address: vec![addr.into(), addr6.into()],
        routes: vec![net.into(), net6.into()],
        ..RvTunnel::default()
    }
}

fn tunnel_json_of(rv: &Routevpn) -> Result<serde_json::Value, String> {
    Ok(rv.status()?["tunnels"][0].clone())
}

fn cfg(t: RvTunnel) -> RvConfig {
    RvConfig {
        tunnels: vec![t],
        ..RvConfig::default()
    }
}

/// Sends `len` pseudo-random bytes over TCP from `client` to `server_addr` (listening
/// in `server`) and checks the digest the receiver computes. Bounded by timeouts.
fn tcp_transfer(server: &Netns, client: &Netns, server_addr: &str, len: usize) {
    let port = 5201;
    let t = Duration::from_secs(20);
    let srv = testbed::tcp_sink(server, server_addr, port, t).expect("server listening");
    let mut data = Some(testbed::pseudo_random(7, len));
    let sent =
        testbed::tcp_send(client, server_addr, port, t, move || data.take()).expect("client");
    let got = srv.join().expect("server thread").expect("server finished");
    assert_eq!(
        sent.trim(),
        got.trim(),
        "content arrived intact ({server_addr})"
    );
}

fn pair(esp: &str) -> (Topology, Routevpn, Routevpn) {
    let topo = Topology::two_sites();
    let b = Routevpn::start(&topo.right, &cfg(tunnel(false, esp, false))).unwrap();
    let a = Routevpn::start(&topo.left, &cfg(tunnel(true, esp, true))).unwrap();
    testbed::wait_tunnel_up(&a, T);
    testbed::wait_tunnel_up(&b, T);
    (topo, a, b)
}

#[test]
fn routevpn_pair_carries_ipv4_and_ipv6_and_only_esp_on_the_wire() {
    if !testbed::require_programs(&["tcpdump", "ping"]) {
        return;
    }
    for esp in ["aes128gcm16", "aes256-sha256-esn"] {
        let (topo, a, b) = pair(esp);
        // A capture on the transport link for the whole exchange.
        let dir = testbed::TestDir::new("cap");
        let cap = dir.join("wan.txt");
        let tcpdump = topo.left.tcpdump(
            &[
                "-i", "wan0", "-nn", "-l", "-c", "2000", "not", "arp", "and", "not", "icmp6",
            ],
            &cap,
        );
        topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
        topo.right_host.wait_ping(Topology::LEFT_HOST, T).unwrap();
        topo.left_host.wait_ping(Topology::RIGHT_HOST6, T).unwrap();
        topo.right_host.wait_ping(Topology::LEFT_HOST6, T).unwrap();
        tcp_transfer(
            &topo.right_host,
            &topo.left_host,
            Topology::RIGHT_HOST,
            4_000_000,
        );
        tcp_transfer(
            &topo.left_host,
            &topo.right_host,
            Topology::LEFT_HOST6,
            2_000_000,
        );
        std::thread::sleep(Duration::from_millis(300));
        drop(tcpdump);
        let text = std::fs::read_to_string(&cap).unwrap();
        // IPv6 neighbour discovery / MLD of the link itself is not tunnel traffic.
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" IP") && !l.contains(" > ff02::"))
            .collect();
        assert!(
            lines.len() > 100,
            "captured the traffic: {} lines",
            lines.len()
        );
        for l in &lines {
            let udp_encap = l.contains(".4500 > ") || l.contains(".500 > ");
            assert!(
                udp_encap
                    && !l.contains("ICMP")
                    && !l.contains("10.1.0.")
                    && !l.contains("10.2.0."),
                "{esp}: plaintext or non-IKE/ESP on the wire: {l}"
            );
        }
        let t = testbed::wait_tunnel_up(&a, T);
        let c = &t["child_sas"][0];
        assert!(
            c["packets_out"].as_u64().unwrap() > 100 && c["packets_in"].as_u64().unwrap() > 100,
            "{c}"
        );
        assert!(c["bytes_out"].as_u64().unwrap() > 4_000_000, "{c}");
        assert_eq!(c["esn"], esp.ends_with("-esn"));
        let _ = b;
    }
}

/// Finds one ESP-in-UDP datagram from A to B in a pcap (Linux cooked or Ethernet).
fn esp_payloads(pcap: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if pcap.len() < 24 {
        return out;
    }
    let linktype = u32::from_le_bytes(pcap[20..24].try_into().unwrap());
    let l2 = if linktype == 1 { 14 } else { 16 };
    let mut off = 24;
    while off + 16 <= pcap.len() {
        let caplen = u32::from_le_bytes(pcap[off + 8..off + 12].try_into().unwrap()) as usize;
        let pkt = &pcap[off + 16..(off + 16 + caplen).min(pcap.len())];
        off += 16 + caplen;
        let Some(ip) = pkt.get(l2..) else { continue };
        if ip.first().map(|b| b >> 4) != Some(4) {
            continue;
        }
        let ihl = ((ip[0] & 0xf) as usize) * 4;
        let Some(udp) = ip.get(ihl..) else { continue };
        if ip[9] != 17 || udp.len() < 8 + 8 || u16::from_be_bytes([udp[2], udp[3]]) != 4500 {
            continue;
        }
        let payload = &udp[8..];
        if payload[..4] != [0, 0, 0, 0] && payload.len() > 40 {
            out.push(payload.to_vec());
        }
    }
    out
}

#[test]
fn replayed_and_tampered_esp_is_dropped_and_counted() {
    if !testbed::require_programs(&["tcpdump", "ping"]) {
        return;
    }
    let (topo, _a, b) = pair("aes128gcm16");
    let dir = testbed::TestDir::new("replay");
    let pcap = dir.join("esp.pcap");
    let tcpdump = topo.right.tcpdump(
        &[
            "-i",
            "wan0",
            "-nn",
            "-U",
            "-c",
            "5",
            "-w",
            pcap.to_str().unwrap(),
            "udp",
            "port",
            "4500",
            "and",
            "src",
            "host",
            Topology::LEFT_WAN,
        ],
        &dir.join("tcpdump.log"),
    );
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    for _ in 0..5 {
        let _ = topo
            .left_host
            .run(&["ping", "-c", "1", "-W", "1", Topology::RIGHT_HOST]);
    }
    tcpdump
        .wait_exit(Duration::from_secs(10))
        .expect("capture done");
    let esp = esp_payloads(&std::fs::read(&pcap).unwrap());
    assert!(!esp.is_empty(), "captured ESP");
    let before = testbed::wait_tunnel_up(&b, T)["child_sas"][0].clone();
    // Re-inject the captured packet (a replay) and a copy with one ciphertext bit flipped.
    let mut tampered = esp[0].clone();
    let n = tampered.len();
    tampered[n - 20] ^= 0x01;
    // A fresh sequence number so the anti-replay check passes and the ICV decides.
    tampered[4..8].copy_from_slice(&0x7fff_0000u32.to_be_bytes());
    let send = |bytes: &[u8]| {
        testbed::udp_send(&topo.left, Topology::RIGHT_WAN, 4500, bytes).unwrap();
    };
    send(&esp[0]);
    send(&tampered);
    let after = wait_until(T, POLL, || {
        let c = b.status()?["tunnels"][0]["child_sas"][0].clone();
        (c["replayed"].as_u64() >= Some(1) && c["icv_failures"].as_u64() >= Some(1))
            .then_some(c.clone())
            .ok_or(format!("{c}"))
    })
    .unwrap();
    assert_eq!(
        after["packets_in"], before["packets_in"],
        "neither was accepted"
    );
    // The real traffic still flows.
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
}

#[test]
fn sigterm_deletes_sas_and_takes_the_peer_interface_down_at_once() {
    if !testbed::require_root() {
        return;
    }
    let (topo, mut a, b) = pair("aes128gcm16");
    assert!(testbed::link_up(&topo.right, "vti0"));
    assert!(topo
        .right
        .run(&["ip", "route", "show", Topology::LEFT_NET])
        .unwrap()
        .contains("vti0"));
    let t0 = Instant::now();
    a.stop();
    wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
        (!testbed::link_up(&topo.right, "vti0"))
            .then_some(())
            .ok_or("vti0 still up".to_string())
    })
    .unwrap();
    let took = t0.elapsed();
    eprintln!("peer interface down {took:?} after SIGTERM");
    assert!(
        !topo
            .right
            .run(&["ip", "route", "show", Topology::LEFT_NET])
            .unwrap()
            .contains("vti0"),
        "route withdrawn"
    );
    assert!(
        b.log().contains("peer deleted IKE SA"),
        "by the DELETE, not a timeout"
    );
    assert_eq!(b.status().unwrap()["tunnels"][0]["state"], "down");
}

#[test]
fn two_tunnels_with_metrics_fail_over() {
    if !testbed::require_root() {
        return;
    }
    let topo = Topology::two_sites();
    // A second transport link; one routevpn daemon per tunnel on the right so one
    // peer can be stopped on its own.
    testbed::veth(
        &topo.left,
        "wan1",
        &["198.51.100.1/24"],
        &topo.right,
        "wan1",
        &["198.51.100.2/24"],
    );
    let mk = |left: bool, name: &str, la: &str, ra: &str, addr: &str, metric: u32, start: bool| {
        RvTunnel {
            name: name.into(),
            local: la.into(),
            remote: ra.into(),
            local_id: la.into(),
            remote_id: ra.into(),
            psk: "failover".into(),
            ike: vec![IKE.into()],
            esp: vec!["aes128gcm16".into()],
            start,
            address: vec![addr.into()],
            extra: vec![format!(
                "routes = [{{ prefix = \"{}\", metric = {metric} }}]",
                if left {
                    Topology::RIGHT_NET
                } else {
                    Topology::LEFT_NET
                }
            )],
            ..RvTunnel::default()
        }
    };
    let a = Routevpn::start(
        &topo.left,
        &RvConfig {
            tunnels: vec![
                mk(
                    true,
                    "vti0",
                    Topology::LEFT_WAN,
                    Topology::RIGHT_WAN,
                    "169.254.12.1/30",
                    100,
                    true,
                ),
                mk(
                    true,
                    "vti1",
                    "198.51.100.1",
                    "198.51.100.2",
                    "169.254.13.1/30",
                    200,
                    true,
                ),
            ],
            // Four workers, so four sockets per address steered by SPI (issue 13).
            extra_top: vec!["dataplane_threads = 4".into()],
            ..RvConfig::default()
        },
    )
    .unwrap();
    let mut b0 = Routevpn::start(
        &topo.right,
        &cfg(mk(
            false,
            "vti0",
            Topology::RIGHT_WAN,
            Topology::LEFT_WAN,
            "169.254.12.2/30",
            100,
            false,
        )),
    )
    .unwrap();
    let b1 = Routevpn::start(
        &topo.right,
        &cfg(mk(
            false,
            "vti1",
            "198.51.100.2",
            "198.51.100.1",
            "169.254.13.2/30",
            200,
            false,
        )),
    )
    .unwrap();
    wait_until(T, POLL, || {
        let st = a.status()?;
        let ups = st["tunnels"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["state"] == "up")
            .count();
        (ups == 2).then_some(()).ok_or(format!("{ups} tunnels up"))
    })
    .unwrap();
    testbed::wait_tunnel_up(&b0, T);
    testbed::wait_tunnel_up(&b1, T);
    // Issue 13: a tunnel's inbound SPIs are in its worker's lane (tunnel i of four
    // workers: SPI mod 4 = i), so the kernel hands its ESP to the worker reading its TUN.
    let st = a.status().unwrap();
    for (i, t) in st["tunnels"].as_array().unwrap().iter().enumerate() {
        for c in t["child_sas"].as_array().unwrap() {
            let spi = u32::from_str_radix(c["spi_in"].as_str().unwrap(), 16).unwrap();
            assert_eq!(spi % 4, i as u32, "{}: SPI {spi:08x}", t["name"]);
        }
    }
    let route = || {
        topo.left
            .run(&["ip", "route", "get", Topology::RIGHT_HOST])
            .unwrap()
    };
    assert!(
        route().contains("dev vti0"),
        "preferred tunnel: {}",
        route()
    );
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    // Count replies from a steady ping across the switch.
    let dir = testbed::TestDir::new("ping");
    let log = dir.join("ping.log");
    let ping = topo.left_host.spawn(
        &[
            "ping",
            "-i",
            "0.05",
            "-w",
            "6",
            "-W",
            "1",
            Topology::RIGHT_HOST,
        ],
        &log,
    );
    std::thread::sleep(Duration::from_millis(1500));
    b0.stop();
    wait_until(T, POLL, || {
        route().contains("dev vti1").then_some(()).ok_or(route())
    })
    .unwrap();
    ping.wait_exit(Duration::from_secs(10)).unwrap();
    let out = std::fs::read_to_string(&log).unwrap();
    eprintln!("{}", testbed::tail(&out, 3));
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    let st = a.status().unwrap();
    assert_ne!(
        st["tunnels"][0]["state"], "up",
        "vti0 lost its peer (A keeps retrying it)"
    );
    assert_eq!(st["tunnels"][1]["state"], "up");
    let lost = out
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default()
        .to_string();
    eprintln!("failover ping: {lost}");
    let c = &st["tunnels"][1]["child_sas"][0];
    assert!(
        c["packets_out"].as_u64().unwrap() > 10,
        "traffic moved to vti1: {c}"
    );
}

fn swan(ike: &str, esp: &str) -> SwanConn {
    SwanConn::router_b("traffic-test", ike, esp)
}

#[test]
fn routevpn_and_strongswan_carry_traffic_in_both_roles() {
    if !testbed::require_strongswan() {
        return;
    }
    for (routevpn_initiates, esp) in [(true, "aes128gcm16"), (false, "aes256-sha256")] {
        let topo = Topology::two_sites();
        let mut t = tunnel(true, esp, routevpn_initiates);
        t.address = vec!["169.254.12.1/30".into()];
        let rv = Routevpn::start(&topo.left, &cfg(t)).unwrap();
        let sw = Strongswan::start(&topo.right, &[swan(IKE, esp)]).unwrap();
        if !routevpn_initiates {
            sw.initiate("net").unwrap();
        }
        sw.wait_established("tun", T).unwrap();
        testbed::wait_tunnel_up(&rv, T);
        topo.left_host
            .wait_ping(Topology::RIGHT_HOST, T)
            .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&rv.log(), 40)));
        topo.right_host.wait_ping(Topology::LEFT_HOST, T).unwrap();
        topo.left_host.wait_ping(Topology::RIGHT_HOST6, T).unwrap();
        tcp_transfer(
            &topo.right_host,
            &topo.left_host,
            Topology::RIGHT_HOST,
            3_000_000,
        );
        tcp_transfer(
            &topo.left_host,
            &topo.right_host,
            Topology::LEFT_HOST,
            3_000_000,
        );
        let sa = sw.wait_established("tun", T).unwrap();
        let child = sa.installed().next().unwrap();
        let bytes_in: u64 = child.get("bytes-in").unwrap().parse().unwrap();
        assert!(
            bytes_in > 3_000_000,
            "strongSwan received it through its SA: {bytes_in}"
        );
    }
}

/// A default route and a host route to the peer both pointing into the tunnel must not
/// capture IKE or ESP themselves (the sockets are pinned to the underlay interface). With
/// those routes in place the tunnel rekeys (IKE SA and CHILD SA) while carrying traffic:
/// every IKE and ESP packet is on wan0, none enters vti0.
#[test]
fn ike_and_esp_never_route_into_the_tunnel() {
    if !testbed::require_programs(&["tcpdump", "ping"]) {
        return;
    }
    let topo = Topology::two_sites();
    let b = Routevpn::start(&topo.right, &cfg(tunnel(false, "aes128gcm16", false))).unwrap();
    let mut left = tunnel(true, "aes128gcm16", true);
    left.extra = vec![
        "ike_lifetime = \"6s\"".into(),
        "child_lifetime = \"2s\"".into(),
    ];
    let a = Routevpn::start(&topo.left, &cfg(left)).unwrap();
    let t0 = testbed::wait_tunnel_up(&a, T);
    testbed::wait_tunnel_up(&b, T);
    let sock = a.socket().to_str().unwrap().to_string();
    topo.left
        .must(&["ip", "route", "add", "default", "dev", "vti0"]);
    topo.left.must(&[
        "ip",
        "route",
        "add",
        &format!("{}/32", Topology::RIGHT_WAN),
        "dev",
        "vti0",
    ]);
    let via = topo
        .left
        .run(&["ip", "route", "get", Topology::RIGHT_WAN])
        .unwrap();
    assert!(
        via.contains("dev vti0"),
        "the routing table sends the peer into the tunnel: {via}"
    );
    let dir = testbed::TestDir::new("capture-routes");
    let (in_tun, on_wan) = (dir.join("vti0.txt"), dir.join("wan0.txt"));
    let cap_tun = topo.left.tcpdump(
        &["-i", "vti0", "-nn", "-l", "udp port 500 or udp port 4500"],
        &in_tun,
    );
    let cap_wan = topo.left.tcpdump(
        &[
            "-i",
            "wan0",
            "-nn",
            "-l",
            // IKE: port 500, or 4500 behind the non-ESP marker (RFC 3948 §2.2).
            "udp port 500 or (udp port 4500 and udp[8:4] = 0)",
        ],
        &on_wan,
    );
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    // Both kinds of rekey happen while the capturing routes are in place.
    let spi0 = testbed::json_str(&t0, "/ike_sas/0/spi_i");
    let rekeyed = wait_until(Duration::from_secs(30), POLL, || {
        let t = tunnel_json_of(&a)?;
        let ike_rekeys = t["ike_sas"][0]["rekeys"].as_u64().unwrap_or(0);
        let new_ike = t["ike_sas"][0]["spi_i"].as_str() != Some(&spi0);
        (ike_rekeys >= 1 && new_ike && t["state"] == "up")
            .then_some(t.clone())
            .ok_or(format!("{t}"))
    })
    .unwrap_or_else(|e| panic!("no IKE rekey with the routes in place: {e}"));
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    drop(cap_tun);
    drop(cap_wan);
    let tun = std::fs::read_to_string(&in_tun).unwrap();
    let wan = std::fs::read_to_string(&on_wan).unwrap();
    let ike_on_wan = wan.lines().filter(|l| l.contains(" IP ")).count();
    eprintln!(
        "capturing routes: {ike_on_wan} IKE packets on wan0 during the rekeys, status {rekeyed}"
    );
    assert!(
        !tun.lines().any(|l| l.contains(" IP ")),
        "IKE or ESP entered the tunnel:\n{tun}"
    );
    // An IKE SA rekey and CHILD SA rekeys: at least four messages each way.
    assert!(ike_on_wan >= 8, "the rekeys went over wan0:\n{wan}");
    // Traffic still flows through the (frequently rekeyed) CHILD SA: a rekey between
    // the ping and the status may show a fresh one at zero, so ping and look again.
    wait_until(T, POLL, || {
        let _ = topo.left_host.ping(Topology::RIGHT_HOST);
        let t = tunnel_json_of(&a)?;
        let carried = t["child_sas"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["packets_in"].as_u64().is_some_and(|n| n > 0))
        });
        (t["state"] == "up" && carried)
            .then_some(())
            .ok_or(format!("{t}"))
    })
    .unwrap_or_else(|e| panic!("no traffic through the tunnel after the rekeys: {e}"));
    // With the route into the tunnel in place, IKE still reaches the peer: its DELETE
    // takes the far end down at once.
    a.cli(&["down", "vti0", "--socket", &sock]).unwrap();
    wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
        (!testbed::link_up(&topo.right, "vti0"))
            .then_some(())
            .ok_or("peer still up".to_string())
    })
    .unwrap();
}

/// The tunnel's static `routes` go through the daemon into the kernel with routevpn's
/// protocol number (README: `ip route show proto 250`), follow the tunnel down and up,
/// and a reload that drops one route removes exactly that one.
#[test]
fn static_routes_are_proto_250_and_follow_the_tunnel() {
    if !testbed::require_programs(&["ping"]) {
        return;
    }
    let topo = Topology::two_sites();
    let b = Routevpn::start(&topo.right, &cfg(tunnel(false, "aes128gcm16", false))).unwrap();
    let mut left = cfg(tunnel(true, "aes128gcm16", true));
    let a = Routevpn::start(&topo.left, &left).unwrap();
    testbed::wait_tunnel_up(&a, T);
    testbed::wait_tunnel_up(&b, T);
    let sock = a.socket().to_str().unwrap().to_string();
    let ours = |fam: &str| {
        topo.left
            .run(&["ip", fam, "-o", "route", "show", "proto", "250"])
            .unwrap_or_default()
    };
    let has = |fam: &str, net: &str| {
        ours(fam)
            .lines()
            .any(|l| l.starts_with(&format!("{net} ")) && l.contains("dev vti0"))
    };
    let wait_routes = |v4: bool, v6: bool| {
        wait_until(T, POLL, || {
            (has("-4", Topology::RIGHT_NET) == v4 && has("-6", Topology::RIGHT_NET6) == v6)
                .then_some(())
                .ok_or(format!("proto 250: {} {}", ours("-4"), ours("-6")))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&a.log(), 40)));
    };
    wait_routes(true, true);
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    topo.left_host.wait_ping(Topology::RIGHT_HOST6, T).unwrap();
    // Down: the interface goes and its routes with it; up: the daemon puts them back.
    a.cli(&["down", "vti0", "--socket", &sock]).unwrap();
    wait_routes(false, false);
    a.cli(&["up", "vti0", "--socket", &sock]).unwrap();
    testbed::wait_tunnel_up(&a, T);
    wait_routes(true, true);
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    // Reload without the IPv6 route: only that one goes.
    left.tunnels[0].routes = vec![Topology::RIGHT_NET.into()];
    std::fs::write(a.config_path(), left.to_toml(a.socket())).unwrap();
    a.cli(&["reload", "--socket", &sock]).unwrap();
    wait_routes(true, false);
    testbed::wait_tunnel_up(&a, T);
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
}
