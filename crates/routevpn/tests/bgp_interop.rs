//! The embedded BGP speaker and BFD against real implementations (BIRD 2, FRR), and
//! `routing = "external"`: BIRD on both routers peering over routevpn tunnel interfaces.
//!
//! For routevpn↔BIRD the peer sits directly on the transport veth (`wan0`, no IPsec: the
//! point is our BGP/BFD against theirs), with one IPv4 and one IPv6 session (each carries
//! its own family). Each router announces its site LAN, so host A pinging host B proves
//! routes went both ways.

use std::time::{Duration, Instant};
use testbed::{wait_until, Bird, Frr, Netns, Routevpn, RvConfig, RvTunnel, Topology};

const T: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(20);

/// BIRD on the right router of [`Topology::two_sites`]: eBGP to routevpn on `wan0`
/// (separate IPv4 and IPv6 sessions, GTSM: routevpn's default for a directly connected
/// eBGP neighbour), BFD 100 ms × 3, exports its LAN, installs what it learns into the
/// kernel.
const BIRD_PEER_CONF: &str = r#"
router id 10.2.0.1;
protocol device { scan time 1; }
protocol direct { ipv4; ipv6; interface "lan0"; }
protocol kernel { ipv4 { import none; export all; }; }
protocol kernel { ipv6 { import none; export all; }; }
protocol bfd { interface "wan0" { interval 100 ms; multiplier 3; }; }
protocol bgp rv4 {
  local 192.0.2.2 as 65002; neighbor 192.0.2.1 as 65001;
  hold time 9; connect retry time 1; bfd on; ttl security on;
  ipv4 { import all; export where source = RTS_DEVICE; };
}
protocol bgp rv6 {
  local 2001:db8::2 as 65002; neighbor 2001:db8::1 as 65001;
  hold time 9; connect retry time 1; bfd on; ttl security on;
  ipv6 { import all; export where source = RTS_DEVICE; };
}
"#;

/// [`BIRD_PEER_CONF`] with a TCP MD5 password on both sessions and meticulous keyed
/// SHA1 on BFD (key ID 1).
fn bird_secured_conf(password: &str, bfd_key: &str) -> String {
    BIRD_PEER_CONF
        .replace(
            "interval 100 ms; multiplier 3;",
            &format!(
                "interval 100 ms; multiplier 3; authentication meticulous keyed sha1; password \"{bfd_key}\" {{ id 1; }};"
            ),
        )
        .replace("ttl security on;", &format!("ttl security on; password \"{password}\";"))
}

/// `routing = "external"`: the BIRD config for each router (README material). Router A
/// (`left`): AS 65001, tunnel address 169.254.12.1/30 + fd00:12::1/64 on `vti0`; router B
/// swaps the numbers. One IPv4 session over the tunnel carries IPv6 too (`next hop
/// address` = our IPv6 tunnel address). The routevpn tunnels have `address` but no
/// `routes`.
fn bird_external_conf(left: bool) -> String {
    let (rid, las, ras, la, ra, la6) = if left {
        (
            "10.1.0.1",
            65001,
            65002,
            "169.254.12.1",
            "169.254.12.2",
            "fd00:12::1",
        )
    } else {
        (
            "10.2.0.1",
            65002,
            65001,
            "169.254.12.2",
            "169.254.12.1",
            "fd00:12::2",
        )
    };
    format!(
        r#"
router id {rid};
protocol device {{ scan time 1; }}
protocol direct {{ ipv4; ipv6; interface "lan0"; }}
protocol kernel {{ ipv4 {{ import none; export all; }}; }}
protocol kernel {{ ipv6 {{ import none; export all; }}; }}
protocol bgp tunnel {{
  local {la} as {las}; neighbor {ra} as {ras};
  hold time 9; connect retry time 1;
  ipv4 {{ import all; export where source = RTS_DEVICE; }};
  ipv6 {{ import all; export where source = RTS_DEVICE; next hop address {la6}; }};
}}
"#
    )
}

fn bgp_route(ns: &Netns, dst: &str) -> Option<String> {
    let fam = if dst.contains(':') { "-6" } else { "-4" };
    ns.run(&["ip", fam, "-o", "route", "show", dst])
        .ok()
        .filter(|s| !s.trim().is_empty())
}

fn wait_kernel_route(ns: &Netns, dst: &str, needle: &str) -> String {
    wait_until(T, POLL, || {
        bgp_route(ns, dst)
            .filter(|l| l.contains(needle))
            .ok_or_else(|| format!("no route {dst} with {needle:?} in {}", ns.name()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", ns.describe()))
}

/// routevpn on the left router peering with `wan0` neighbors (IPv4 and IPv6), BFD on
/// the IPv4 session and, if `bfd_v6`, on the IPv6 one.
fn routevpn_peer_config(peer_asn: u32, v4: &str, v6: &str, bfd_v6: bool) -> RvConfig {
    secured_peer_config(peer_asn, v4, v6, bfd_v6, "", "")
}

/// [`routevpn_peer_config`] with `extra` in each neighbor and `bfd_extra` in each `bfd`
/// table (e.g. a password, BFD authentication).
fn secured_peer_config(
    peer_asn: u32,
    v4: &str,
    v6: &str,
    bfd_v6: bool,
    extra: &str,
    bfd_extra: &str,
) -> RvConfig {
    let bfd = format!("{{ interval = \"100ms\", multiplier = 3{bfd_extra} }}");
    let v6_bfd = if bfd_v6 { bfd.as_str() } else { "false" };
    RvConfig {
        extra_tail: format!(
            "[bgp]\nasn = 65001\nrouter_id = \"10.1.0.1\"\n\
             networks = [\"{}\", \"{}\"]\nhold_time = \"9s\"\nconnect_retry = \"1s\"\n\
             [[bgp.neighbor]]\naddress = \"{v4}\"\nasn = {peer_asn}\nbfd = {bfd}\n{extra}\
             [[bgp.neighbor]]\naddress = \"{v6}\"\nasn = {peer_asn}\nbfd = {v6_bfd}\n{extra}",
            Topology::LEFT_NET,
            Topology::LEFT_NET6
        ),
        ..RvConfig::default()
    }
}

fn wait_rv_neighbors(rv: &Routevpn, bfd_v6: bool) {
    wait_until(T, Duration::from_millis(50), || {
        let st = rv.status()?;
        let ns = st["bgp"]["neighbors"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let bfd_ok = |n: &serde_json::Value| {
            n["bfd"] == "Up" || (!bfd_v6 && n["address"].as_str().is_some_and(|a| a.contains(':')))
        };
        (ns.len() == 2 && ns.iter().all(|n| n["state"] == "Established" && bfd_ok(n)))
            .then_some(())
            .ok_or_else(|| format!("{}", st["bgp"]))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&rv.log(), 80)));
}

/// Silent drop of everything the right router sends on wan0; returns how long until
/// routevpn on the left withdrew the IPv4 route (and the IPv6 one, if `v6_too`).
fn cut_and_measure(topo: &Topology, v6_too: bool) -> Duration {
    let t0 = Instant::now();
    let o = topo.right.sh(
        "nft add table inet t && nft add chain inet t c '{ type filter hook output priority 0; }' && nft add rule inet t c oifname wan0 drop",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    wait_until(Duration::from_secs(5), Duration::from_millis(5), || match (
        bgp_route(&topo.left, Topology::RIGHT_NET),
        bgp_route(&topo.left, Topology::RIGHT_NET6).filter(|_| v6_too),
    ) {
        (None, None) => Ok(()),
        other => Err(format!("still there: {other:?}")),
    })
    .unwrap_or_else(|e| panic!("{e}"));
    t0.elapsed()
}

#[test]
fn routevpn_bird_bgp_bfd() {
    if !testbed::require_programs(&["bird", "birdc", "ping", "nft"]) {
        return;
    }
    let topo = Topology::two_sites();
    let bird = Bird::start(&topo.right, BIRD_PEER_CONF);
    let rv = Routevpn::start(
        &topo.left,
        &routevpn_peer_config(65002, "192.0.2.2", "2001:db8::2", true),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    bird.wait_established("rv4");
    bird.wait_established("rv6");
    wait_rv_neighbors(&rv, true);
    // routevpn installed BIRD's routes (proto 251), BIRD installed ours (proto bird).
    let l4 = wait_kernel_route(&topo.left, Topology::RIGHT_NET, "proto 251");
    let l6 = wait_kernel_route(&topo.left, Topology::RIGHT_NET6, "proto 251");
    let r4 = wait_kernel_route(&topo.right, Topology::LEFT_NET, "via 192.0.2.1");
    let r6 = wait_kernel_route(&topo.right, Topology::LEFT_NET6, "via 2001:db8::1");
    eprintln!("routevpn: {l4}\nroutevpn: {l6}\nbird: {r4}\nbird: {r6}");
    let bfd = bird.birdc(&["show", "bfd", "sessions"]).unwrap();
    assert_eq!(bfd.matches(" Up ").count(), 2, "{bfd}");
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST, Duration::from_secs(5))
        .expect("IPv4 ping via BGP routes");
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST6, Duration::from_secs(5))
        .expect("IPv6 ping via BGP routes");
    // GTSM (RFC 5082), on by default for these directly connected eBGP neighbors: a
    // host two hops away cannot even open a TCP connection to our port 179 (its SYN
    // arrives with TTL 63 and the kernel drops it).
    let o = topo.right_host.exec(&[
        "timeout",
        "3",
        "bash",
        "-c",
        "exec 3<>/dev/tcp/192.0.2.1/179",
    ]);
    assert!(
        !o.status.success(),
        "a TCP connection to port 179 from two hops away was accepted"
    );

    let d = cut_and_measure(&topo, true);
    eprintln!("routevpn<->BIRD: BFD failover (drop -> routevpn withdrew): {d:?}");
    // BFD, not the BGP hold timer, took the session down (the time is a figure only).
    assert!(
        rv.log().contains("BFD down"),
        "{}",
        testbed::tail(&rv.log(), 40)
    );
    assert!(!rv.log().contains("hold timer expired"));
}

/// TCP MD5 (RFC 2385) on both BGP sessions and meticulous keyed SHA1 on BFD (RFC 5880
/// §6.7), against BIRD; then BIRD with another password and another BFD key: neither BGP
/// nor BFD may come up.
#[test]
fn routevpn_bird_md5_and_bfd_auth() {
    if !testbed::require_programs(&["bird", "birdc"]) {
        return;
    }
    let rv_cfg = secured_peer_config(
        65002,
        "192.0.2.2",
        "2001:db8::2",
        true,
        "password = \"md5-secret\"\n",
        ", auth = \"meticulous-keyed-sha1\", key_id = 1, key = \"bfd-secret\"",
    );
    {
        let topo = Topology::two_sites();
        let bird = Bird::start(&topo.right, &bird_secured_conf("md5-secret", "bfd-secret"));
        let rv = Routevpn::start(&topo.left, &rv_cfg).unwrap_or_else(|e| panic!("{e}"));
        bird.wait_established("rv4");
        bird.wait_established("rv6");
        wait_rv_neighbors(&rv, true);
        wait_kernel_route(&topo.left, Topology::RIGHT_NET, "proto 251");
        let bfd = bird.birdc(&["show", "bfd", "sessions"]).unwrap();
        assert_eq!(bfd.matches(" Up ").count(), 2, "{bfd}");
        let st = rv.status().unwrap();
        for n in st["bgp"]["neighbors"].as_array().unwrap() {
            assert_eq!(n["bfd_auth"], "meticulous-keyed-sha1", "{st}");
        }
        let text = format!("{st}{}", rv.log());
        assert!(!text.contains("md5-secret") && !text.contains("bfd-secret"));
    }
    {
        let topo = Topology::two_sites();
        let bird = Bird::start(&topo.right, &bird_secured_conf("other-md5", "other-bfd"));
        let rv = Routevpn::start(&topo.left, &rv_cfg).unwrap_or_else(|e| panic!("{e}"));
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(6) {
            let st = rv.status().unwrap_or_default();
            for n in st["bgp"]["neighbors"]
                .as_array()
                .cloned()
                .unwrap_or_default()
            {
                assert_ne!(n["state"], "Established", "wrong password: {st}");
                assert_ne!(n["bfd"], "Up", "wrong BFD key: {st}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let bfd = bird.birdc(&["show", "bfd", "sessions"]).unwrap();
        assert_eq!(bfd.matches(" Up ").count(), 0, "{bfd}");
        assert!(bgp_route(&topo.left, Topology::RIGHT_NET).is_none());
    }
}

/// bgpd of the FRR peer on the right router (see `testbed::Frr`).
const FRR_BGPD_CONF: &str = r#"
router bgp 65002
 bgp router-id 10.2.0.1
 no bgp ebgp-requires-policy
 timers bgp 3 9
 neighbor 192.0.2.1 remote-as 65001
 neighbor 192.0.2.1 bfd
 neighbor 192.0.2.1 bfd profile fast
 neighbor 192.0.2.1 timers connect 1
 neighbor 192.0.2.1 password frr-md5-key
 neighbor 2001:db8::1 remote-as 65001
 neighbor 2001:db8::1 bfd
 neighbor 2001:db8::1 bfd profile fast
 neighbor 2001:db8::1 timers connect 1
 neighbor 2001:db8::1 password frr-md5-key
 address-family ipv4 unicast
  redistribute connected
  no neighbor 2001:db8::1 activate
 exit-address-family
 address-family ipv6 unicast
  redistribute connected
  neighbor 2001:db8::1 activate
 exit-address-family
"#;

const FRR_BFDD_CONF: &str = r#"
bfd
 profile fast
  transmit-interval 100
  receive-interval 100
  detect-multiplier 3
"#;

/// BFD on both sessions. FRR's bfdd advertises a slow Required Min RX until Up; our BFD
/// used to keep its 1 s schedule after that and FRR timed us out 300 ms after every Up
/// (fixed in crates/bfd, test `faster_remote_rx_pulls_the_schedule_in`).
#[test]
fn routevpn_frr_bgp_bfd() {
    if !testbed::require_programs(&[
        "/usr/lib/frr/bgpd",
        "/usr/lib/frr/bfdd",
        "/usr/lib/frr/zebra",
        "vtysh",
        "ping",
        "nft",
    ]) {
        return;
    }
    let topo = Topology::two_sites();
    let frr = Frr::start(&topo.right, FRR_BGPD_CONF, FRR_BFDD_CONF);
    // TCP MD5 (RFC 2385) on both sessions. GTSM off: with `ttl-security hops 1`, FRR
    // 8.4 runs the neighbor's BFD as multihop (port 4784) and single-hop BFD never
    // comes up; GTSM interop is tested with BIRD.
    let rv = Routevpn::start(
        &topo.left,
        &secured_peer_config(
            65002,
            "192.0.2.2",
            "2001:db8::2",
            true,
            "password = \"frr-md5-key\"\ngtsm = false\n",
            "",
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wait_rv_neighbors(&rv, true);
    let l4 = wait_kernel_route(&topo.left, Topology::RIGHT_NET, "proto 251");
    let l6 = wait_kernel_route(&topo.left, Topology::RIGHT_NET6, "proto 251");
    let r4 = wait_kernel_route(&topo.right, Topology::LEFT_NET, "via 192.0.2.1");
    let r6 = wait_kernel_route(&topo.right, Topology::LEFT_NET6, "2001:db8::1");
    eprintln!("routevpn: {l4}\nroutevpn: {l6}\nfrr: {r4}\nfrr: {r6}");
    let peers = frr
        .vtysh("show bfd peers brief")
        .unwrap_or_else(|e| panic!("{e}\n{}", frr.logs()));
    assert_eq!(peers.matches(" up ").count(), 2, "{peers}");
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST, Duration::from_secs(5))
        .expect("IPv4 ping via BGP routes");
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST6, Duration::from_secs(5))
        .expect("IPv6 ping via BGP routes");
    let d = cut_and_measure(&topo, true);
    eprintln!("routevpn<->FRR: BFD failover (drop -> routevpn withdrew): {d:?}");
    // BFD, not the BGP hold timer, took the session down (the time is a figure only).
    assert!(
        rv.log().contains("BFD down"),
        "{}",
        testbed::tail(&rv.log(), 40)
    );
    assert!(!rv.log().contains("hold timer expired"));
}

/// `routing = "external"`: a routevpn tunnel between the two routers that only provides
/// the interface (addresses, no routes, no `[bgp]`); the left initiates.
fn external_tunnel_pair(topo: &Topology, psk: &str) -> Vec<Routevpn> {
    [(&topo.left, true), (&topo.right, false)]
        .into_iter()
        .map(|(ns, left)| {
            let (local, remote, a4, a6) = if left {
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
            let cfg = RvConfig {
                extra_top: vec!["routing = \"external\"".into()],
                tunnels: vec![RvTunnel {
                    local: local.into(),
                    remote: remote.into(),
                    psk: psk.into(),
                    start: left,
                    address: vec![a4.into(), a6.into()],
                    ..RvTunnel::default()
                }],
                ..RvConfig::default()
            };
            Routevpn::start(ns, &cfg).unwrap_or_else(|e| panic!("{e}"))
        })
        .collect()
}

#[test]
fn external_routing_bird_over_routevpn_tunnels() {
    if !testbed::require_programs(&["bird", "birdc", "ping"]) {
        return;
    }
    let topo = Topology::two_sites();
    let rvs = external_tunnel_pair(&topo, "external");
    let birds: Vec<Bird> = [(&topo.left, true), (&topo.right, false)]
        .into_iter()
        .map(|(ns, left)| Bird::start(ns, &bird_external_conf(left)))
        .collect();
    for b in &birds {
        b.wait_established("tunnel");
    }
    assert!(
        rvs[0].status().unwrap().get("bgp").is_none(),
        "embedded speaker is off"
    );
    let l4 = wait_kernel_route(&topo.left, Topology::RIGHT_NET, "dev vti0 proto bird");
    let l6 = wait_kernel_route(&topo.left, Topology::RIGHT_NET6, "dev vti0 proto bird");
    eprintln!("left: {l4}\nleft: {l6}");
    wait_kernel_route(&topo.right, Topology::LEFT_NET, "dev vti0 proto bird");
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST, Duration::from_secs(5))
        .expect("IPv4 ping via BIRD routes over the routevpn tunnel");
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST6, Duration::from_secs(5))
        .expect("IPv6 ping via BIRD routes over the routevpn tunnel");
    // README: routevpn takes the tunnel interface down with its CHILD SA, so BIRD drops
    // the session at once because its neighbour is gone, not when the hold timer
    // (9 s) expires. Both ends: the left by `down`, the right by the IKE DELETE.
    let sock = rvs[0].socket().to_str().unwrap().to_string();
    rvs[0].cli(&["down", "vti0", "--socket", &sock]).unwrap();
    for (b, side) in birds.iter().zip(["left", "right"]) {
        let why = wait_until(T, Duration::from_millis(50), || {
            let p = b.birdc(&["show", "protocols", "all", "tunnel"])?;
            (!p.contains("Established"))
                .then(|| p.clone())
                .ok_or_else(|| format!("still established: {p}"))
        })
        .unwrap_or_else(|e| panic!("{side}: {e}"));
        eprintln!("{side} BIRD after `routevpn down`:\n{why}");
        assert!(
            why.contains("Neighbor lost") && !why.contains("Hold timer expired"),
            "{side}: BIRD did not drop the session for its lost neighbour:\n{why}"
        );
        let gone = bgp_route(
            if side == "left" {
                &topo.left
            } else {
                &topo.right
            },
            if side == "left" {
                Topology::RIGHT_NET
            } else {
                Topology::LEFT_NET
            },
        );
        assert!(
            gone.is_none(),
            "{side}: BIRD route still installed: {gone:?}"
        );
    }
}

/// 4-octet AS numbers in a live session (RFC 6793: both ASes above 65535, so the OPEN
/// carries AS_TRANS and the capability) and ROUTE-REFRESH (RFC 2918): BIRD's
/// `reload in` asks routevpn to send its routes again, and routevpn does.
#[test]
fn four_octet_as_and_route_refresh_with_bird() {
    if !testbed::require_programs(&["bird", "birdc"]) {
        return;
    }
    let topo = Topology::two_sites();
    let conf = BIRD_PEER_CONF
        .replace(
            "as 65002; neighbor 192.0.2.1 as 65001;",
            "as 4200000002; neighbor 192.0.2.1 as 4200000001;",
        )
        .replace(
            "as 65002; neighbor 2001:db8::1 as 65001;",
            "as 4200000002; neighbor 2001:db8::1 as 4200000001;",
        );
    assert_eq!(conf.matches("4200000001").count(), 2, "{conf}");
    let bird = Bird::start(&topo.right, &conf);
    let mut cfg = routevpn_peer_config(4_200_000_002, "192.0.2.2", "2001:db8::2", true);
    cfg.extra_tail = cfg
        .extra_tail
        .replace("asn = 65001\n", "asn = 4200000001\n");
    assert!(cfg.extra_tail.contains("asn = 4200000001\n"));
    let rv = Routevpn::start(&topo.left, &cfg).unwrap_or_else(|e| panic!("{e}"));
    bird.wait_established("rv4");
    bird.wait_established("rv6");
    wait_rv_neighbors(&rv, true);
    let st = rv.status().unwrap();
    assert_eq!(st["bgp"]["neighbors"][0]["asn"], 4_200_000_002u64, "{st}");
    // BIRD sees our 4-octet AS in the AS_PATH of the route it learned.
    wait_kernel_route(&topo.right, Topology::LEFT_NET, "via 192.0.2.1");
    let r = bird
        .birdc(&["show", "route", Topology::LEFT_NET, "all"])
        .unwrap();
    assert!(r.contains("BGP.as_path: 4200000001"), "{r}");
    // And we see BIRD's in the route we installed.
    wait_kernel_route(&topo.left, Topology::RIGHT_NET, "proto 251");
    let received = |b: &Bird| -> u64 {
        let p = b.birdc(&["show", "protocols", "all", "rv4"]).unwrap();
        p.lines()
            .find(|l| l.trim_start().starts_with("Import updates:"))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no import stats in:\n{p}"))
    };
    let before = received(&bird);
    assert!(before >= 1, "BIRD received our route");
    // ROUTE-REFRESH: BIRD asks again; routevpn re-sends its Adj-RIB-Out.
    let out = bird.birdc(&["reload", "in", "rv4"]).unwrap();
    eprintln!("birdc reload in rv4: {}", out.trim());
    wait_until(T, Duration::from_millis(50), || {
        let now = received(&bird);
        (now > before)
            .then_some(())
            .ok_or(format!("BIRD import updates still {now} (before {before})"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&rv.log(), 40)));
    let n = &rv.status().unwrap()["bgp"]["neighbors"][0];
    assert_eq!(
        n["state"], "Established",
        "the refresh kept the session: {n}"
    );
}

/// `routing = "external"` with FRR: BIRD on the left router and FRR 8.4 on the right
/// peer over the routevpn tunnel interface (eBGP, IPv4 session carrying IPv6 too);
/// routevpn only provides the interface. Host A reaches host B over their routes.
#[test]
fn external_routing_frr_over_routevpn_tunnel() {
    if !testbed::require_programs(&["bird", "birdc", "vtysh", "ping"]) {
        return;
    }
    let topo = Topology::two_sites();
    let frr_conf = r#"
router bgp 65002
 bgp router-id 10.2.0.1
 no bgp ebgp-requires-policy
 timers bgp 3 9
 neighbor 169.254.12.1 remote-as 65001
 neighbor 169.254.12.1 timers connect 1
 address-family ipv4 unicast
  network 10.2.0.0/24
 exit-address-family
 address-family ipv6 unicast
  network fd00:2::/64
  neighbor 169.254.12.1 activate
 exit-address-family
"#;
    let _rvs = external_tunnel_pair(&topo, "external-frr");
    let bird = Bird::start(&topo.left, &bird_external_conf(true));
    let frr = Frr::start(&topo.right, frr_conf, "");
    bird.wait_established("tunnel");
    let l4 = wait_kernel_route(&topo.left, Topology::RIGHT_NET, "dev vti0 proto bird");
    let l6 = wait_kernel_route(&topo.left, Topology::RIGHT_NET6, "dev vti0 proto bird");
    let r4 = wait_kernel_route(&topo.right, Topology::LEFT_NET, "dev vti0 proto bgp");
    let r6 = wait_kernel_route(&topo.right, Topology::LEFT_NET6, "proto bgp");
    eprintln!("BIRD: {l4}\nBIRD: {l6}\nFRR: {r4}\nFRR: {r6}");
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}\n{}", frr.logs()));
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST6, Duration::from_secs(5))
        .expect("IPv6 ping via BGP routes over the routevpn tunnel");
    let sum = frr.vtysh("show bgp ipv4 unicast summary").unwrap();
    assert!(sum.contains("169.254.12.1"), "{sum}");
}
