//! routevpn::netlink and routevpn::sockopt against the real kernel, inside network
//! namespaces: link state and MTU, addresses, our routes (protocol, metric, replace,
//! delete, flush), what the kernel does to routes and addresses on link down, and
//! SO_BINDTODEVICE keeping underlay packets out of a tunnel route. Needs root; skips
//! loudly without it unless `ROUTEVPN_REQUIRE_NETNS=1`.

use routevpn::netlink::{
    Hops, Netlink, NetlinkError, RouteBatch, RouteInfo, RTPROT_ROUTEVPN, RTPROT_ROUTEVPN_BGP,
};
use routevpn::sys::bind_to_device;
use std::future::Future;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;
use testbed::{veth, Netns};

/// Enters `ns` on the calling thread (network namespace only).
fn enter(ns_name: &str) {
    let path = format!("/run/netns/{ns_name}");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: `file` is an open namespace fd for the duration of the call; setns only
    // switches this thread's network namespace.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

/// Runs `f` on a fresh thread inside `ns` with a current-thread tokio runtime, so that
/// the netlink socket `Netlink::new` opens talks to that namespace.
fn in_netns<F, Fut, T>(ns: &Netns, f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let name = ns.name().to_string();
    std::thread::spawn(move || {
        enter(&name);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(f())
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// Runs a blocking `f` on a thread inside `ns`; sockets and fds it creates stay in `ns`
/// after they are handed back.
fn blocking_in<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let name = ns.name().to_string();
    std::thread::spawn(move || {
        enter(&name);
        f()
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// A namespace with a persistent (fd-less) TUN `tun0`, administratively down.
fn ns_with_tun(role: &str) -> Netns {
    let ns = Netns::new(role);
    ns.must(&["ip", "tuntap", "add", "dev", "tun0", "mode", "tun"]);
    ns
}

/// The flags between `<` and `>` of `ip -o link show DEV`.
fn link_flags(ns: &Netns, dev: &str) -> Vec<String> {
    let out = ns.must(&["ip", "-o", "link", "show", "dev", dev]);
    let start = out.find('<').expect("flags") + 1;
    let end = out.find('>').expect("flags");
    out[start..end].split(',').map(str::to_string).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn routes_shown(ns: &Netns, fam: &str, proto: u8) -> String {
    ns.must(&["ip", fam, "route", "show", "proto", &proto.to_string()])
}

#[test]
fn link_up_down_mtu_and_index() {
    if !testbed::require_root() {
        return;
    }
    let ns = ns_with_tun("nl-link");
    let n = ns.clone();
    in_netns(&ns, move || async move {
        let nl = Netlink::new().unwrap();
        let idx = nl.link_index("tun0").await.unwrap().expect("tun0 exists");
        assert!(idx > 1);
        assert_eq!(nl.link_index("nosuch0").await.unwrap(), None);

        assert!(!link_flags(&n, "tun0").contains(&"UP".to_string()));
        nl.set_link_up("tun0", true).await.unwrap();
        let flags = link_flags(&n, "tun0");
        assert!(flags.contains(&"UP".to_string()), "{flags:?}");
        // No process holds the TUN open, so it has no carrier: admin-up, oper-down.
        assert!(flags.contains(&"NO-CARRIER".to_string()), "{flags:?}");

        nl.set_mtu("tun0", 1400).await.unwrap();
        let out = n.must(&["ip", "-o", "link", "show", "dev", "tun0"]);
        assert!(out.contains("mtu 1400"), "{out}");

        nl.set_link_up("tun0", false).await.unwrap();
        let flags = link_flags(&n, "tun0");
        assert!(!flags.contains(&"UP".to_string()), "{flags:?}");
        // Idempotent both ways.
        nl.set_link_up("tun0", false).await.unwrap();

        let e = nl.set_link_up("nosuch0", true).await.unwrap_err();
        assert!(matches!(e, NetlinkError::NoSuchInterface { .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            "setting interface nosuch0 up: no interface named \"nosuch0\""
        );
        let e = nl.set_mtu("tun0", 10).await.unwrap_err();
        assert_eq!(e.errno(), Some(libc::EINVAL), "{e}");
        assert!(
            e.to_string()
                .starts_with("setting mtu 10 on interface tun0: "),
            "{e}"
        );
    });
}

#[test]
fn addresses_v4_v6_and_lookup() {
    if !testbed::require_root() {
        return;
    }
    let ns = ns_with_tun("nl-addr");
    let n = ns.clone();
    in_netns(&ns, move || async move {
        let nl = Netlink::new().unwrap();
        nl.set_link_up("tun0", true).await.unwrap();
        nl.add_address("tun0", ip("169.254.12.1"), 30)
            .await
            .unwrap();
        nl.add_address("tun0", ip("fd00:12::1"), 64).await.unwrap();
        // Idempotent: EEXIST is success.
        nl.add_address("tun0", ip("169.254.12.1"), 30)
            .await
            .unwrap();
        nl.add_address("tun0", ip("fd00:12::1"), 64).await.unwrap();

        let out = n.must(&["ip", "-o", "addr", "show", "dev", "tun0"]);
        assert!(out.contains("inet 169.254.12.1/30"), "{out}");
        let v6 = out
            .lines()
            .find(|l| l.contains("inet6 fd00:12::1/64"))
            .unwrap_or_else(|| panic!("no v6 address: {out}"));
        // IFA_F_NODAD: never tentative, usable at once.
        assert!(v6.contains("nodad"), "{v6}");
        assert!(!v6.contains("tentative"), "{v6}");

        assert_eq!(
            nl.interface_of_address(ip("169.254.12.1")).await.unwrap(),
            Some("tun0".to_string())
        );
        assert_eq!(
            nl.interface_of_address(ip("fd00:12::1")).await.unwrap(),
            Some("tun0".to_string())
        );
        assert_eq!(
            nl.interface_of_address(ip("127.0.0.1")).await.unwrap(),
            Some("lo".to_string())
        );
        assert_eq!(
            nl.interface_of_address(ip("192.0.2.99")).await.unwrap(),
            None
        );

        let e = nl
            .add_address("nosuch0", ip("169.254.12.1"), 30)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "adding address 169.254.12.1/30 to nosuch0: no interface named \"nosuch0\""
        );

        // Kernel behaviour on admin-down: IPv4 addresses stay, IPv6 addresses are
        // deleted (net.ipv6.conf.tun0.keep_addr_on_down=0, the default).
        nl.set_link_up("tun0", false).await.unwrap();
        let out = n.must(&["ip", "-o", "addr", "show", "dev", "tun0"]);
        assert!(out.contains("inet 169.254.12.1/30"), "{out}");
        assert!(!out.contains("fd00:12::1"), "{out}");
        nl.set_link_up("tun0", true).await.unwrap();
        let out = n.must(&["ip", "-o", "addr", "show", "dev", "tun0"]);
        assert!(!out.contains("fd00:12::1"), "not restored on up: {out}");
        // So the daemon re-adds after bringing the link up.
        nl.add_address("tun0", ip("169.254.12.1"), 30)
            .await
            .unwrap();
        nl.add_address("tun0", ip("fd00:12::1"), 64).await.unwrap();
        let out = n.must(&["ip", "-o", "addr", "show", "dev", "tun0"]);
        assert!(out.contains("inet6 fd00:12::1/64"), "{out}");
    });
}

#[test]
fn routes_with_metric_and_protocol_replace() {
    if !testbed::require_root() {
        return;
    }
    let ns = ns_with_tun("nl-route");
    ns.must(&["ip", "tuntap", "add", "dev", "tun1", "mode", "tun"]);
    let n = ns.clone();
    in_netns(&ns, move || async move {
        let nl = Netlink::new().unwrap();
        for dev in ["tun0", "tun1"] {
            nl.set_link_up(dev, true).await.unwrap();
        }
        nl.add_address("tun0", ip("169.254.12.1"), 30)
            .await
            .unwrap();
        let tun0 = nl.link_index("tun0").await.unwrap().unwrap();
        let tun1 = nl.link_index("tun1").await.unwrap().unwrap();
        let p = RTPROT_ROUTEVPN;

        nl.replace_route(ip("10.2.0.0"), 24, "tun0", Some(200), p)
            .await
            .unwrap();
        // Replacing the same route again is fine (no EEXIST).
        nl.replace_route(ip("10.2.0.0"), 24, "tun0", Some(200), p)
            .await
            .unwrap();
        // Another metric is another route.
        nl.replace_route(ip("10.2.0.0"), 24, "tun0", None, p)
            .await
            .unwrap();
        nl.replace_route(ip("fd00:2::"), 64, "tun0", Some(200), p)
            .await
            .unwrap();
        nl.replace_route(ip("fd00:2::"), 64, "tun0", Some(200), p)
            .await
            .unwrap();

        let v4 = routes_shown(&n, "-4", p);
        assert!(
            v4.contains("10.2.0.0/24 dev tun0 scope link metric 200"),
            "{v4}"
        );
        assert!(
            v4.lines()
                .any(|l| l.starts_with("10.2.0.0/24 dev tun0 scope link") && !l.contains("metric")),
            "{v4}"
        );
        assert_eq!(v4.lines().count(), 2, "{v4}");
        let v6 = routes_shown(&n, "-6", p);
        assert!(v6.contains("fd00:2::/64 dev tun0 metric 200"), "{v6}");
        assert_eq!(v6.lines().count(), 1, "{v6}");
        // The kernel's own routes are not listed under our protocol.
        assert!(!v4.contains("169.254.12.0/30"), "{v4}");

        let mut ours = nl.routes_by_protocol(p).await.unwrap();
        ours.sort_by_key(|r| (r.dst, r.metric));
        assert_eq!(
            ours,
            vec![
                RouteInfo {
                    dst: ip("10.2.0.0"),
                    prefix_len: 24,
                    oif: Some(tun0),
                    gateway: None,
                    metric: None
                },
                RouteInfo {
                    dst: ip("10.2.0.0"),
                    prefix_len: 24,
                    oif: Some(tun0),
                    gateway: None,
                    metric: Some(200)
                },
                RouteInfo {
                    dst: ip("fd00:2::"),
                    prefix_len: 64,
                    oif: Some(tun0),
                    gateway: None,
                    metric: Some(200)
                },
            ]
        );

        // NLM_F_REPLACE keyed on (dst, metric): the route moves to tun1, no duplicate.
        nl.replace_route(ip("10.2.0.0"), 24, "tun1", Some(200), p)
            .await
            .unwrap();
        nl.replace_route(ip("fd00:2::"), 64, "tun1", Some(200), p)
            .await
            .unwrap();
        let v4 = routes_shown(&n, "-4", p);
        assert!(
            v4.contains("10.2.0.0/24 dev tun1 scope link metric 200"),
            "{v4}"
        );
        assert!(!v4.contains("dev tun0 scope link metric 200"), "{v4}");
        let v6 = routes_shown(&n, "-6", p);
        assert_eq!(v6.trim_end().lines().count(), 1, "{v6}");
        assert!(v6.contains("fd00:2::/64 dev tun1 metric 200"), "{v6}");
        let ours = nl.routes_by_protocol(p).await.unwrap();
        assert!(ours
            .iter()
            .any(|r| r.dst == ip("fd00:2::") && r.oif == Some(tun1)));

        // Gateway routes (BGP next hops later), under BGP's own protocol number.
        nl.replace_route_via(
            ip("10.3.0.0"),
            24,
            ip("169.254.12.2"),
            Some("tun0"),
            Some(20),
            RTPROT_ROUTEVPN_BGP,
        )
        .await
        .unwrap();
        nl.replace_route_via(
            ip("10.4.0.0"),
            24,
            ip("169.254.12.2"),
            None,
            None,
            RTPROT_ROUTEVPN_BGP,
        )
        .await
        .unwrap();
        let bgp = routes_shown(&n, "-4", RTPROT_ROUTEVPN_BGP);
        assert!(
            bgp.contains("10.3.0.0/24 via 169.254.12.2 dev tun0 metric 20"),
            "{bgp}"
        );
        assert!(
            bgp.contains("10.4.0.0/24 via 169.254.12.2 dev tun0"),
            "{bgp}"
        );
        let r = nl.routes_by_protocol(RTPROT_ROUTEVPN_BGP).await.unwrap();
        assert!(r.iter().any(|r| r.dst == ip("10.3.0.0")
            && r.gateway == Some(ip("169.254.12.2"))
            && r.oif == Some(tun0)
            && r.metric == Some(20)));
        let e = nl
            .replace_route_via(ip("fd00:3::"), 64, ip("169.254.12.2"), None, None, p)
            .await
            .unwrap_err();
        assert!(matches!(e, NetlinkError::Invalid { .. }), "{e:?}");

        // Errors name the operation and object.
        let e = nl
            .replace_route(ip("10.2.0.0"), 24, "vti0", Some(200), p)
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "adding route 10.2.0.0/24 dev vti0 metric 200: no interface named \"vti0\""
        );
        // A route via a link that is administratively down: ENETDOWN, both families.
        nl.set_link_up("tun1", false).await.unwrap();
        for (dst, len) in [(ip("10.5.0.0"), 24), (ip("fd00:5::"), 64)] {
            let e = nl
                .replace_route(dst, len, "tun1", Some(7), p)
                .await
                .unwrap_err();
            assert_eq!(e.errno(), Some(libc::ENETDOWN), "{e}");
            assert_eq!(
                e.to_string(),
                format!("adding route {dst}/{len} dev tun1 metric 7: Network is down")
            );
        }
    });
}

#[test]
fn link_down_removes_routes_and_replace_restores_them() {
    if !testbed::require_root() {
        return;
    }
    let ns = ns_with_tun("nl-down");
    let n = ns.clone();
    in_netns(&ns, move || async move {
        let nl = Netlink::new().unwrap();
        let p = RTPROT_ROUTEVPN;
        let install = || async {
            nl.replace_route(ip("10.2.0.0"), 24, "tun0", Some(200), p)
                .await
                .unwrap();
            nl.replace_route(ip("fd00:2::"), 64, "tun0", Some(200), p)
                .await
                .unwrap();
        };
        nl.set_link_up("tun0", true).await.unwrap();
        nl.add_address("tun0", ip("169.254.12.1"), 30)
            .await
            .unwrap();
        install().await;
        // A route of another protocol through the same link, for comparison.
        n.must(&[
            "ip",
            "route",
            "add",
            "10.9.0.0/24",
            "dev",
            "tun0",
            "proto",
            "static",
        ]);
        assert_eq!(nl.routes_by_protocol(p).await.unwrap().len(), 2);

        // Admin-down: the kernel deletes every IPv4 and IPv6 route through the link at
        // once, ours and others' (fib_disable_ip / rt6_sync_down_dev), not merely marks
        // them linkdown.
        nl.set_link_up("tun0", false).await.unwrap();
        assert_eq!(nl.routes_by_protocol(p).await.unwrap(), vec![]);
        assert_eq!(routes_shown(&n, "-4", p), "");
        assert_eq!(routes_shown(&n, "-6", p), "");
        assert_eq!(routes_shown(&n, "-4", 4), "", "static route also gone");

        // Up again: nothing comes back by itself (only the IPv4 address's kernel
        // prefix route).
        nl.set_link_up("tun0", true).await.unwrap();
        assert_eq!(nl.routes_by_protocol(p).await.unwrap(), vec![]);
        let kernel = n.must(&["ip", "-4", "route", "show", "dev", "tun0"]);
        assert!(kernel.contains("169.254.12.0/30 proto kernel"), "{kernel}");

        // replace_route re-installs them.
        install().await;
        let v4 = routes_shown(&n, "-4", p);
        let v6 = routes_shown(&n, "-6", p);
        assert!(
            v4.contains("10.2.0.0/24 dev tun0 scope link metric 200"),
            "{v4}"
        );
        assert!(v6.contains("fd00:2::/64 dev tun0 metric 200"), "{v6}");
    });
}

#[test]
fn delete_and_flush_touch_only_our_protocol() {
    if !testbed::require_root() {
        return;
    }
    let ns = ns_with_tun("nl-flush");
    let n = ns.clone();
    in_netns(&ns, move || async move {
        let nl = Netlink::new().unwrap();
        let p = RTPROT_ROUTEVPN;
        nl.set_link_up("tun0", true).await.unwrap();
        nl.add_address("tun0", ip("169.254.12.1"), 30)
            .await
            .unwrap();
        // Someone else's routes, some with our destinations.
        for cmd in [
            &[
                "ip",
                "route",
                "add",
                "10.9.0.0/24",
                "dev",
                "tun0",
                "proto",
                "static",
            ][..],
            &[
                "ip",
                "route",
                "add",
                "10.2.0.0/24",
                "dev",
                "tun0",
                "metric",
                "300",
                "proto",
                "static",
            ],
            &[
                "ip",
                "-6",
                "route",
                "add",
                "fd00:9::/64",
                "dev",
                "tun0",
                "proto",
                "static",
            ],
            &[
                "ip",
                "-6",
                "route",
                "add",
                "fd00:2::/64",
                "dev",
                "tun0",
                "metric",
                "300",
                "proto",
                "static",
            ],
        ] {
            n.must(cmd);
        }
        let static_before = (routes_shown(&n, "-4", 4), routes_shown(&n, "-6", 4));
        assert_eq!(static_before.0.lines().count(), 2, "{static_before:?}");
        assert_eq!(static_before.1.lines().count(), 2, "{static_before:?}");

        // We never take over a foreign route with the same destination and metric.
        let e = nl
            .replace_route(ip("10.9.0.0"), 24, "tun0", None, p)
            .await
            .unwrap_err();
        assert!(
            matches!(e, NetlinkError::ForeignRoute { protocol: 4, .. }),
            "{e:?}"
        );
        let e = nl
            .replace_route(ip("fd00:2::"), 64, "tun0", Some(300), p)
            .await
            .unwrap_err();
        assert!(
            matches!(e, NetlinkError::ForeignRoute { protocol: 4, .. }),
            "{e:?}"
        );

        // Deleting a route we do not have (only a static one matches dst/dev): success,
        // and the static route stays.
        nl.delete_route(ip("10.9.0.0"), 24, "tun0", None, p)
            .await
            .unwrap();
        nl.delete_route(ip("fd00:9::"), 64, "tun0", None, p)
            .await
            .unwrap();
        // Deleting via an interface that does not exist: nothing to delete.
        nl.delete_route(ip("10.2.0.0"), 24, "nosuch0", None, p)
            .await
            .unwrap();
        assert_eq!(
            (routes_shown(&n, "-4", 4), routes_shown(&n, "-6", 4)),
            static_before
        );

        // Ours next to the static routes with the same destination.
        nl.replace_route(ip("10.2.0.0"), 24, "tun0", Some(200), p)
            .await
            .unwrap();
        nl.replace_route(ip("fd00:2::"), 64, "tun0", Some(200), p)
            .await
            .unwrap();
        // Without a metric, delete matches ours of any metric, never the static one.
        nl.delete_route(ip("10.2.0.0"), 24, "tun0", None, p)
            .await
            .unwrap();
        nl.delete_route(ip("fd00:2::"), 64, "tun0", Some(200), p)
            .await
            .unwrap();
        assert_eq!(nl.routes_by_protocol(p).await.unwrap(), vec![]);
        // Twice is fine (ESRCH/ENOENT).
        nl.delete_route(ip("10.2.0.0"), 24, "tun0", Some(200), p)
            .await
            .unwrap();
        nl.delete_route(ip("fd00:2::"), 64, "tun0", Some(200), p)
            .await
            .unwrap();
        assert_eq!(
            (routes_shown(&n, "-4", 4), routes_shown(&n, "-6", 4)),
            static_before
        );

        // flush_protocol: all of ours in both families, nothing else.
        nl.replace_route(ip("10.2.0.0"), 24, "tun0", Some(200), p)
            .await
            .unwrap();
        nl.replace_route(ip("10.2.0.0"), 24, "tun0", None, p)
            .await
            .unwrap();
        nl.replace_route(ip("fd00:2::"), 64, "tun0", Some(200), p)
            .await
            .unwrap();
        nl.replace_route(ip("fd00:2::"), 64, "tun0", None, p)
            .await
            .unwrap();
        nl.replace_route_via(
            ip("10.3.0.0"),
            24,
            ip("169.254.12.2"),
            None,
            None,
            RTPROT_ROUTEVPN_BGP,
        )
        .await
        .unwrap();
        assert_eq!(nl.flush_protocol(p).await.unwrap(), 4);
        assert_eq!(nl.routes_by_protocol(p).await.unwrap(), vec![]);
        assert_eq!(routes_shown(&n, "-4", p), "");
        assert_eq!(routes_shown(&n, "-6", p), "");
        assert_eq!(
            (routes_shown(&n, "-4", 4), routes_shown(&n, "-6", 4)),
            static_before
        );
        assert_eq!(
            nl.routes_by_protocol(RTPROT_ROUTEVPN_BGP)
                .await
                .unwrap()
                .len(),
            1
        );
        assert_eq!(nl.flush_protocol(RTPROT_ROUTEVPN_BGP).await.unwrap(), 1);
        assert_eq!(nl.flush_protocol(p).await.unwrap(), 0);
        assert!(nl.flush_protocol(0).await.is_err());
        let kernel = n.must(&["ip", "-4", "route", "show", "proto", "kernel"]);
        assert!(kernel.contains("169.254.12.0/30"), "{kernel}");
    });
}

/// Waits up to 2 s for one datagram on a blocking socket with a read timeout.
fn recv_one(sock: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    match sock.recv_from(&mut buf) {
        Ok((n, from)) => Some((buf[..n].to_vec(), from)),
        Err(_) => None,
    }
}

/// Reads IP packets from the TUN for up to 2 s; returns the first UDP payload sent to
/// `dst_port`, with the packet's destination address.
fn tun_read_udp(tun: &tun_rs::SyncDevice, dst_port: u16) -> Option<([u8; 4], Vec<u8>)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 2048];
    while std::time::Instant::now() < deadline {
        match tun.recv(&mut buf) {
            Ok(n) => {
                let pkt = &buf[..n];
                // IPv4, UDP, no options expected from the local stack.
                if pkt.len() >= 28 && pkt[0] >> 4 == 4 && pkt[9] == 17 {
                    let ihl = usize::from(pkt[0] & 0x0f) * 4;
                    let udp = &pkt[ihl..];
                    if u16::from_be_bytes([udp[2], udp[3]]) == dst_port {
                        let dst = [pkt[16], pkt[17], pkt[18], pkt[19]];
                        return Some((dst, udp[8..].to_vec()));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("tun recv: {e}"),
        }
    }
    None
}

#[test]
fn bind_to_device_keeps_packets_on_the_underlay() {
    if !testbed::require_root() {
        return;
    }
    let a = Netns::new("nl-bind-a");
    let b = Netns::new("nl-bind-b");
    veth(&a, "wan0", &["192.0.2.1/24"], &b, "wan0", &["192.0.2.2/24"]);
    a.must(&["ip", "tuntap", "add", "dev", "tun0", "mode", "tun"]);
    // Attach to the TUN (gives it carrier) so packets routed into it can be read.
    let tun = blocking_in(&a, || {
        let dev = tun_rs::DeviceBuilder::new()
            .name("tun0")
            .build_sync()
            .expect("open tun0");
        dev.set_nonblocking(true).unwrap();
        dev
    });
    in_netns(&a, || async {
        let nl = Netlink::new().unwrap();
        nl.set_link_up("tun0", true).await.unwrap();
        // The tunnel route that would swallow the peer's own address.
        nl.replace_route(ip("192.0.2.2"), 32, "tun0", None, RTPROT_ROUTEVPN)
            .await
            .unwrap();
    });
    let get = a.must(&["ip", "route", "get", "192.0.2.2", "from", "192.0.2.1"]);
    assert!(get.contains("dev tun0"), "{get}");
    let get = a.must(&[
        "ip",
        "route",
        "get",
        "192.0.2.2",
        "from",
        "192.0.2.1",
        "oif",
        "wan0",
    ]);
    assert!(get.contains("dev wan0"), "{get}");

    const PORT: u16 = 4500;
    let rx = blocking_in(&b, || UdpSocket::bind(("192.0.2.2", PORT)).unwrap());
    rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (bound, unbound) = blocking_in(&a, || {
        let bound = UdpSocket::bind("192.0.2.1:0").unwrap();
        bind_to_device(&bound, "wan0").unwrap();
        let unbound = UdpSocket::bind("192.0.2.1:0").unwrap();
        (bound, unbound)
    });
    let peer: SocketAddr = "192.0.2.2:4500".parse().unwrap();

    // Bound to wan0: the FIB lookup only considers wan0's routes, so 192.0.2.0/24 on the
    // veth wins over the more specific /32 into tun0; the peer namespace gets it.
    bound.send_to(b"bound", peer).unwrap();
    let (data, from) = recv_one(&rx).expect("bound socket's datagram reaches the peer");
    assert_eq!(data, b"bound");
    assert_eq!(from, bound.local_addr().unwrap());
    assert!(
        tun_read_udp(&tun, PORT).is_none(),
        "bound datagram went into tun0"
    );

    // Unbound: the /32 route sends it into the tunnel; the peer never sees it.
    unbound.send_to(b"unbound", peer).unwrap();
    let (dst, payload) = tun_read_udp(&tun, PORT).expect("unbound datagram in tun0");
    assert_eq!(dst, [192, 0, 2, 2]);
    assert_eq!(payload, b"unbound");
    assert!(recv_one(&rx).is_none(), "unbound datagram reached the peer");

    // An unknown device is ENODEV.
    let e = bind_to_device(&bound, "nosuch0").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENODEV), "{e}");
    drop(tun);
}

/// `ip -4 route show proto P` as (destination, device) pairs, sorted.
fn routes_by_dev(ns: &Netns, proto: u8) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = routes_shown(ns, "-4", proto)
        .lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let dev = w.iter().position(|x| *x == "dev")?;
            Some((w.first()?.to_string(), w.get(dev + 1)?.to_string()))
        })
        .collect();
    v.sort();
    v
}

/// A namespace with TUNs `tun0` (169.254.12.1/30) and `tun1` (169.254.13.1/30), up.
fn ns_with_two_tuns(role: &str) -> Netns {
    let ns = ns_with_tun(role);
    ns.must(&["ip", "tuntap", "add", "dev", "tun1", "mode", "tun"]);
    for (dev, addr) in [("tun0", "169.254.12.1/30"), ("tun1", "169.254.13.1/30")] {
        ns.must(&["ip", "link", "set", dev, "up"]);
        ns.must(&["ip", "addr", "add", addr, "dev", dev]);
    }
    ns
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

/// The i-th test prefix: 10.100.x.y/30.
fn nth(i: u32) -> ipnet::IpNet {
    let a = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 100, 0, 0)) + (i << 2));
    ipnet::IpNet::new(IpAddr::V4(a), 30).unwrap()
}

fn via(dev: &str) -> Option<Hops> {
    let gw = if dev == "tun0" {
        "169.254.12.2"
    } else {
        "169.254.13.2"
    };
    Some(vec![(ip(gw), dev.to_string())])
}

/// Changes of one prefix reach the kernel in the order they were asked for, with many
/// requests in flight: rounds of add / move / withdraw over 300 prefixes, each round
/// started while the previous one is still in flight, end in the last state asked for
/// (add-then-withdraw within one batch leaves no route).
#[test]
fn route_batch_keeps_per_prefix_order() {
    if !testbed::require_root() {
        return;
    }
    let ns = ns_with_two_tuns("nl-batch-order");
    let n = ns.clone();
    in_netns(&ns, move || async move {
        let nl = Netlink::new().unwrap();
        let batch = RouteBatch::spawn(nl, RTPROT_ROUTEVPN_BGP);
        const N: u32 = 300;
        // Round r, prefix i: what to ask for. The last round decides the outcome.
        let plan = |r: u32, i: u32| -> Option<&'static str> {
            match (r + i) % 3 {
                0 => Some("tun0"),
                1 => Some("tun1"),
                _ => None,
            }
        };
        const ROUNDS: u32 = 7;
        for r in 0..ROUNDS {
            for i in 0..N {
                batch.set(nth(i), plan(r, i).and_then(via));
            }
            // Let requests of this round go out before the next round is asked for.
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
        }
        // Add then withdraw within one batch: no route.
        batch.set(net("10.101.0.0/24"), via("tun0"));
        batch.set(net("10.101.0.0/24"), None);
        // Withdraw then add again: the route, on the last device asked for.
        batch.set(net("10.101.1.0/24"), via("tun0"));
        batch.set(net("10.101.1.0/24"), None);
        batch.set(net("10.101.1.0/24"), via("tun1"));
        batch.flush().await;

        let mut want: Vec<(String, String)> = (0..N)
            .filter_map(|i| plan(ROUNDS - 1, i).map(|d| (nth(i).to_string(), d.to_string())))
            .collect();
        want.push(("10.101.1.0/24".into(), "tun1".into()));
        want.sort();
        assert_eq!(routes_by_dev(&n, RTPROT_ROUTEVPN_BGP), want);
        let s = batch.stats();
        assert_eq!(s.failed, 0, "{s:?}");
        assert!(s.removed > 0 && s.installed > want.len() as u64, "{s:?}");
    });
}

/// Per-route errors: a route the kernel refuses (unreachable gateway, missing
/// interface) or that would take over another protocol's route fails alone, is
/// counted, and the rest of the batch goes in; our own leftover route (EEXIST) is
/// replaced.
#[test]
fn route_batch_errors_are_per_route() {
    if !testbed::require_root() {
        return;
    }
    let ns = ns_with_two_tuns("nl-batch-err");
    ns.must(&[
        "ip",
        "route",
        "add",
        "10.102.0.0/24",
        "dev",
        "tun0",
        "proto",
        "static",
    ]);
    ns.must(&[
        "ip",
        "route",
        "add",
        "10.102.1.0/24",
        "via",
        "169.254.12.2",
        "proto",
        "251",
    ]);
    let n = ns.clone();
    in_netns(&ns, move || async move {
        let nl = Netlink::new().unwrap();
        let batch = RouteBatch::spawn(nl, RTPROT_ROUTEVPN_BGP);
        // Gateway on no connected subnet: ENETUNREACH.
        batch.set(
            net("10.102.2.0/24"),
            Some(vec![(ip("192.0.2.99"), "tun0".to_string())]),
        );
        batch.set(
            net("10.102.3.0/24"),
            Some(vec![(ip("169.254.12.2"), "nosuch0".to_string())]),
        );
        // Someone else's route: left alone.
        batch.set(net("10.102.0.0/24"), via("tun1"));
        // Our own leftover (EEXIST): replaced.
        batch.set(net("10.102.1.0/24"), via("tun1"));
        for i in 0..50 {
            batch.set(nth(i), via("tun0"));
        }
        batch.flush().await;
        let s = batch.stats();
        assert_eq!(s.failed, 3, "{s:?}");
        assert_eq!(s.installed, 51, "{s:?}");
        let ours = routes_by_dev(&n, RTPROT_ROUTEVPN_BGP);
        assert_eq!(ours.len(), 51, "{ours:?}");
        assert!(
            ours.contains(&("10.102.1.0/24".into(), "tun1".into())),
            "{ours:?}"
        );
        let statics = routes_shown(&n, "-4", 4);
        assert!(statics.contains("10.102.0.0/24 dev tun0"), "{statics}");
        // Withdrawing a route that never went in asks nothing of the kernel.
        batch.set(net("10.102.2.0/24"), None);
        batch.flush().await;
        assert_eq!(batch.stats().failed, 3);
        assert_eq!(batch.stats().removed, 0);
    });
}

/// 1000 routes in, then all withdrawn: the table is clean, other routes untouched.
#[test]
fn route_batch_thousand_routes_then_withdraw_all() {
    if !testbed::require_root() {
        return;
    }
    let ns = ns_with_two_tuns("nl-batch-1k");
    ns.must(&[
        "ip",
        "route",
        "add",
        "10.103.0.0/24",
        "dev",
        "tun0",
        "proto",
        "static",
    ]);
    let n = ns.clone();
    in_netns(&ns, move || async move {
        let nl = Netlink::new().unwrap();
        let batch = RouteBatch::spawn(nl, RTPROT_ROUTEVPN_BGP);
        let before_other = n.must(&["ip", "-4", "route", "show"]);
        for i in 0..1000 {
            batch.set(nth(i), via(if i % 2 == 0 { "tun0" } else { "tun1" }));
        }
        batch.flush().await;
        assert_eq!(routes_by_dev(&n, RTPROT_ROUTEVPN_BGP).len(), 1000);
        assert_eq!(batch.stats().installed, 1000);
        for i in 0..1000 {
            batch.set(nth(i), None);
        }
        batch.flush().await;
        assert_eq!(routes_shown(&n, "-4", RTPROT_ROUTEVPN_BGP), "");
        assert_eq!(batch.stats().removed, 1000);
        assert_eq!(batch.stats().failed, 0);
        assert_eq!(n.must(&["ip", "-4", "route", "show"]), before_other);
    });
}

/// A route moving from one tunnel to another (fail-over, fail-back) is one atomic
/// replace: `ip monitor route` sees the new route and never a deletion, so no packet
/// forwarded in between meets a table without it. IPv4 and IPv6, single path; a
/// delete-then-add (the lab lost a probe to one under load) fails this.
#[test]
fn route_batch_moves_a_route_without_deleting_it() {
    if !testbed::require_root() {
        return;
    }
    let ns = ns_with_two_tuns("nl-batch-move");
    ns.addr_add("tun0", "fd00:12::1/64");
    ns.addr_add("tun1", "fd00:13::1/64");
    let dir = testbed::TestDir::new("nl-move");
    let log = dir.join("monitor.log");
    let monitor = ns.spawn(&["ip", "monitor", "route"], &log);
    // Adds marker route 10.104.k.0/32 and returns the monitor's log once it shows it.
    // A marker added before `ip monitor` subscribed is never shown: add another.
    let mut k = 0u32;
    let mut mark = || loop {
        k += 1;
        assert!(k < 100, "ip monitor never showed a marker route");
        let marker = format!("10.104.{k}.0");
        ns.must(&[
            "ip",
            "route",
            "add",
            &format!("{marker}/32"),
            "dev",
            "tun0",
            "proto",
            "static",
        ]);
        let shown = testbed::wait_until(
            Duration::from_millis(500),
            Duration::from_millis(20),
            || {
                let s = std::fs::read_to_string(&log).unwrap_or_default();
                s.contains(&marker).then_some(s).ok_or_else(String::new)
            },
        );
        if let Ok(s) = shown {
            return s;
        }
    };
    // The monitor is listening once it reports a route we add ourselves.
    mark();

    let n = ns.clone();
    in_netns(&ns, move || async move {
        let nl = Netlink::new().unwrap();
        let batch = RouteBatch::spawn(nl, RTPROT_ROUTEVPN_BGP);
        let v6 = |dev: &str| {
            let gw = if dev == "tun0" {
                "fd00:12::2"
            } else {
                "fd00:13::2"
            };
            Some(vec![(ip(gw), dev.to_string())])
        };
        batch.set(net("10.2.0.0/24"), via("tun0"));
        batch.set(net("fd10:2::/64"), v6("tun0"));
        batch.flush().await;
        // Fail over to tun1, fail back to tun0.
        for dev in ["tun1", "tun0"] {
            batch.set(net("10.2.0.0/24"), via(dev));
            batch.set(net("fd10:2::/64"), v6(dev));
            batch.flush().await;
        }
        assert_eq!(batch.stats().failed, 0, "{:?}", batch.stats());
        assert_eq!(
            routes_by_dev(&n, RTPROT_ROUTEVPN_BGP),
            vec![("10.2.0.0/24".to_string(), "tun0".to_string())]
        );
        let v6_routes = routes_shown(&n, "-6", RTPROT_ROUTEVPN_BGP);
        assert_eq!(v6_routes.lines().count(), 1, "{v6_routes}");
        assert!(v6_routes.contains("dev tun0"), "{v6_routes}");
    });
    // Everything the batch did is in the log once a later change of ours shows up.
    let shown = mark();
    drop(monitor);
    for prefix in ["10.2.0.0/24", "fd10:2::/64"] {
        let events: Vec<&str> = shown.lines().filter(|l| l.contains(prefix)).collect();
        assert!(
            events.iter().all(|l| !l.starts_with("Deleted")),
            "{prefix} was deleted on its way between tunnels: {events:#?}"
        );
        assert!(
            events.iter().any(|l| l.contains("dev tun1")),
            "{prefix} never moved to tun1: {events:#?}"
        );
    }
}
