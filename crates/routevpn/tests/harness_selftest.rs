//! Self-test of the integration harness in crates/testbed: namespaces and veth links,
//! a strongSwan↔strongSwan tunnel over kernel-libipsec, cleanup (also after a panic),
//! and the pure helpers. Needs root; skips loudly without it unless
//! `ROUTEVPN_REQUIRE_NETNS=1`.

use std::path::PathBuf;
use std::time::{Duration, Instant};
use testbed::{
    netns_list, wait_until, Netns, Routevpn, RvConfig, RvTunnel, Strongswan, SwanConn, TestDir,
    Topology,
};

const T: Duration = Duration::from_secs(10);

fn swan_pair() -> (SwanConn, SwanConn) {
    let left = SwanConn {
        local_addr: Topology::LEFT_WAN.into(),
        remote_addr: Topology::RIGHT_WAN.into(),
        local_id: "routerA".into(),
        remote_id: "routerB".into(),
        local_ts: format!("{},{}", Topology::LEFT_NET, Topology::LEFT_NET6),
        remote_ts: format!("{},{}", Topology::RIGHT_NET, Topology::RIGHT_NET6),
        ..SwanConn::default()
    };
    let right = SwanConn {
        local_addr: Topology::RIGHT_WAN.into(),
        remote_addr: Topology::LEFT_WAN.into(),
        local_id: "routerB".into(),
        remote_id: "routerA".into(),
        local_ts: left.remote_ts.clone(),
        remote_ts: left.local_ts.clone(),
        ..SwanConn::default()
    };
    (left, right)
}

#[test]
fn two_sites_topology_links_work() {
    if !testbed::require_root() {
        return;
    }
    let t0 = Instant::now();
    let topo = Topology::two_sites();
    let built = t0.elapsed();
    // Transport link, both families.
    topo.left.wait_ping(Topology::RIGHT_WAN, T).unwrap();
    topo.left.wait_ping(Topology::RIGHT_WAN6, T).unwrap();
    // Each host reaches its router, both families.
    topo.left_host
        .wait_ping(Topology::LEFT_ROUTER_LAN, T)
        .unwrap();
    topo.left_host
        .wait_ping(Topology::LEFT_ROUTER_LAN6, T)
        .unwrap();
    topo.right_host
        .wait_ping(Topology::RIGHT_ROUTER_LAN, T)
        .unwrap();
    topo.right_host
        .wait_ping(Topology::RIGHT_ROUTER_LAN6, T)
        .unwrap();
    // Forwarding: a host reaches the far router's transport address via its router.
    topo.right.must(&[
        "ip",
        "route",
        "add",
        Topology::LEFT_NET,
        "via",
        Topology::LEFT_WAN,
    ]);
    topo.left_host.wait_ping(Topology::RIGHT_WAN, T).unwrap();
    // Without a tunnel the sites cannot reach each other (the left router answers
    // "network unreachable" at once).
    assert!(topo.left_host.ping(Topology::RIGHT_HOST).is_err());
    eprintln!(
        "two_sites: built in {built:?}, checks done in {:?}",
        t0.elapsed()
    );
}

#[test]
fn strongswan_to_strongswan_over_libipsec() {
    if !testbed::require_strongswan() {
        return;
    }
    let t0 = Instant::now();
    let topo = Topology::two_sites();
    let (lconn, rconn) = swan_pair();
    let right = Strongswan::start(&topo.right, &[rconn]).unwrap();
    let left = Strongswan::start(&topo.left, &[lconn]).unwrap();
    let started = t0.elapsed();

    left.initiate("net").unwrap();
    let lsa = left.wait_established("tun", T).unwrap();
    let rsa = right.wait_established("tun", T).unwrap();
    let established = t0.elapsed();
    assert_eq!(lsa.get("initiator"), Some("yes"));
    assert_eq!(lsa.get("encr-alg"), Some("AES_GCM_16"));
    assert_eq!(lsa.get("encr-keysize"), Some("256"));
    assert_eq!(lsa.get("prf-alg"), Some("PRF_HMAC_SHA2_384"));
    assert_eq!(lsa.get("dh-group"), Some("CURVE_25519"));
    assert_eq!(rsa.get("remote-id"), Some("routerA"));
    let lchild = lsa.installed().next().unwrap().clone();
    let rchild = rsa.installed().next().unwrap().clone();
    assert_eq!(lchild.name, "net");
    assert_eq!(lchild.get("encap"), Some("yes"), "libipsec does ESP in UDP");
    assert_eq!(lchild.get("spi-in"), rchild.get("spi-out"));
    assert_eq!(lchild.get("spi-out"), rchild.get("spi-in"));
    assert!(left.log().contains("IKE_SA tun[1] established between"));

    // Host to host through the tunnel, IPv4 and IPv6.
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    topo.left_host.wait_ping(Topology::RIGHT_HOST6, T).unwrap();
    topo.right_host.wait_ping(Topology::LEFT_HOST, T).unwrap();
    let pinged = t0.elapsed();
    let sa = left.wait_established("tun", T).unwrap();
    let out_packets: u64 = sa
        .installed()
        .next()
        .unwrap()
        .get("packets-out")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        out_packets >= 2,
        "pings went through the CHILD SA: {out_packets}"
    );

    // Rekey helpers: a new CHILD SA (new SPI), then a new IKE SA (new uniqueid).
    let old_spi = lchild.get("spi-in").unwrap().to_string();
    left.rekey_child("net").unwrap();
    wait_until(T, Duration::from_millis(20), || {
        let sas = left.sas()?;
        let fresh = sas
            .iter()
            .flat_map(|s| s.installed())
            .any(|c| c.get("spi-in") != Some(old_spi.as_str()));
        fresh.then_some(()).ok_or_else(|| left.list_sas())
    })
    .unwrap();
    let old_ike = lsa.get("uniqueid").unwrap().to_string();
    left.rekey_ike("tun").unwrap();
    wait_until(T, Duration::from_millis(20), || {
        let sas = left.sas()?;
        sas.iter()
            .any(|s| s.is_established() && s.get("uniqueid") != Some(old_ike.as_str()))
            .then_some(())
            .ok_or_else(|| left.list_sas())
    })
    .unwrap();
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    left.wait_log("rekeyed", T).unwrap();
    eprintln!(
        "strongswan: charons up {started:?}, established {established:?}, \
         pinged {pinged:?}, rekeyed {:?}",
        t0.elapsed()
    );
}

#[test]
fn guards_clean_up_namespaces_processes_and_files() {
    if !testbed::require_strongswan() {
        return;
    }
    let t0 = Instant::now();
    let (names, pid, dirs) = {
        let topo = Topology::two_sites();
        let (_, rconn) = swan_pair();
        let sw = Strongswan::start(&topo.right, &[rconn]).unwrap();
        let dir = TestDir::new("selftest");
        let sleeper = topo.left.spawn(&["sleep", "600"], &dir.join("sleep.log"));
        // A process the test did not wrap in a guard: the namespace's Drop kills it.
        topo.left_host.sh("sleep 600 >/dev/null 2>&1 &");
        assert_eq!(topo.left_host.pids().len(), 1);
        assert!(sleeper.is_running());
        let names = topo.names();
        let listed = netns_list();
        for n in &names {
            assert!(listed.contains(n), "{n} missing from {listed:?}");
        }
        (
            names,
            sw.pid(),
            vec![dir.path().to_path_buf(), sw.dir().to_path_buf()],
        )
    };
    let listed = netns_list();
    for n in &names {
        assert!(!listed.contains(n), "{n} still in {listed:?}");
    }
    assert!(
        !PathBuf::from(format!("/proc/{pid}")).exists(),
        "charon {pid} survived"
    );
    for d in &dirs {
        assert!(!d.exists(), "{} survived", d.display());
    }
    let normal = t0.elapsed();

    // The same after a panic inside the test.
    let seen = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let ns = Netns::new("panic");
        seen.lock().unwrap().push(ns.name().to_string());
        let _p = ns.spawn(
            &["sleep", "600"],
            &std::env::temp_dir().join("rv-selftest-ignore.log"),
        );
        panic!("deliberate panic to test cleanup");
    }));
    let _ = std::fs::remove_file(std::env::temp_dir().join("rv-selftest-ignore.log"));
    assert!(result.is_err());
    let listed = netns_list();
    for n in seen.lock().unwrap().iter() {
        assert!(!listed.contains(n), "{n} survived a panic");
    }
    eprintln!(
        "cleanup: normal drop checked in {normal:?}, panic path in {:?}",
        t0.elapsed() - normal
    );
}

#[test]
fn strongswan_start_reports_bad_config() {
    if !testbed::require_strongswan() {
        return;
    }
    let ns = Netns::new("badcfg");
    let conn = SwanConn {
        ike_proposals: "no-such-algorithm".into(),
        local_addr: "192.0.2.1".into(),
        remote_addr: "192.0.2.2".into(),
        ..SwanConn::default()
    };
    let err = Strongswan::start(&ns, &[conn]).unwrap_err();
    assert!(err.contains("load-all"), "{err}");
}

#[test]
fn routevpn_runner_reports_a_daemon_that_exits() {
    if !testbed::require_root() {
        return;
    }
    let ns = Netns::new("rvd");
    // Not TOML at all: any daemon must exit (and the stub daemon exits anyway).
    let cfg = RvConfig {
        extra_tail: "this is [not toml".into(),
        ..RvConfig::default()
    };
    let err = Routevpn::start(&ns, &cfg).unwrap_err();
    assert!(err.contains("exited"), "{err}");
}

#[test]
fn routevpn_config_is_valid_toml() {
    let cfg = RvConfig {
        control_socket: Some("/run/x/routevpn.sock".into()),
        tunnels: vec![RvTunnel {
            local: "192.0.2.1".into(),
            remote: "192.0.2.2".into(),
            local_id: "routerA".into(),
            remote_id: "routerB".into(),
            psk: "quote\" and \\ backslash".into(),
            local_ts: vec!["10.1.0.0/24".into()],
            remote_ts: vec!["10.2.0.0/24".into(), "fd00:2::/64".into()],
            routes: vec!["10.2.0.0/24".into()],
            mtu: Some(1400),
            ..RvTunnel::default()
        }],
        ..RvConfig::default()
    };
    let dir = TestDir::new("rvcfg");
    let path = dir.join("routevpn.toml");
    let text = cfg.to_toml(std::path::Path::new("/unused"));
    std::fs::write(&path, &text).unwrap();
    // The daemon's own parser must accept it.
    let check = std::process::Command::new(testbed::routevpn_bin())
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(check.status.success(), "{text}\n{check:?}");
    let v: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(v["control_socket"].as_str(), Some("/run/x/routevpn.sock"));
    let t = &v["tunnel"][0];
    assert_eq!(t["name"].as_str(), Some("vti0"));
    assert_eq!(t["psk"].as_str(), Some("quote\" and \\ backslash"));
    assert_eq!(t["ike"][0].as_str(), Some("aes256gcm16-prfsha384-x25519"));
    assert_eq!(t["esp"][0].as_str(), Some("aes256gcm16"));
    assert_eq!(t["start"].as_bool(), Some(true));
    assert_eq!(t["remote_ts"][1].as_str(), Some("fd00:2::/64"));
    assert_eq!(t["mtu"].as_integer(), Some(1400));
    assert!(t.get("local_port").is_none());
}

#[test]
fn list_sas_raw_parser() {
    let raw = "list-sa event {tun {uniqueid=1 version=2 state=ESTABLISHED local-host=192.0.2.1 \
        local-port=4500 local-id=routerA remote-host=192.0.2.2 remote-port=4500 remote-id=routerB \
        initiator=yes initiator-spi=51a1477a848b743b responder-spi=6e40d106210c9b65 nat-remote=yes \
        nat-any=yes encr-alg=AES_GCM_16 encr-keysize=256 prf-alg=PRF_HMAC_SHA2_384 \
        dh-group=CURVE_25519 established=1 rekey-time=12962 child-sas {net-1 {name=net uniqueid=1 \
        reqid=1 state=INSTALLED mode=TUNNEL protocol=ESP encap=yes spi-in=03a43bcc spi-out=968550d5 \
        encr-alg=AES_GCM_16 encr-keysize=256 bytes-in=0 packets-in=0 bytes-out=0 packets-out=0 \
        rekey-time=3452 life-time=3959 install-time=1 local-ts=[10.1.0.0/24 fd00:1::/64] \
        remote-ts=[10.2.0.0/24 fd00:2::/64]}}}}\nlist-sas reply {}\n";
    let sas = testbed::parse_list_sas_raw(raw).unwrap();
    assert_eq!(sas.len(), 1);
    let sa = &sas[0];
    assert_eq!(sa.name, "tun");
    assert!(sa.is_established());
    assert_eq!(sa.get("remote-port"), Some("4500"));
    assert_eq!(sa.children.len(), 1);
    let c = &sa.children[0];
    assert_eq!(
        (c.key.as_str(), c.name.as_str(), c.state.as_str()),
        ("net-1", "net", "INSTALLED")
    );
    assert_eq!(c.get("local-ts"), Some("10.1.0.0/24 fd00:1::/64"));
    assert_eq!(c.get("spi-out"), Some("968550d5"));
    assert!(testbed::parse_list_sas_raw("list-sas reply {}\n")
        .unwrap()
        .is_empty());
    assert!(testbed::parse_list_sas_raw("list-sa event {tun {a=b").is_err());
    // Selectors with protocol and port (as in tests/esp_selectors.rs).
    let ports = "list-sa event {tun {state=ESTABLISHED child-sas {net-1 {name=net \
        state=INSTALLED packets-out=5 local-ts=[10.2.0.0/24[icmp/0]] \
        remote-ts=[10.1.0.0/24[icmp] fd00:1::/64]}}}}\n";
    let sas = testbed::parse_list_sas_raw(ports).unwrap();
    let c = &sas[0].children[0];
    assert_eq!(c.get("local-ts"), Some("10.2.0.0/24[icmp/0]"));
    assert_eq!(c.get("remote-ts"), Some("10.1.0.0/24[icmp] fd00:1::/64"));
    assert_eq!(c.get("packets-out"), Some("5"));
}

#[test]
fn wait_until_returns_value_or_last_error() {
    let mut n = 0;
    let v = wait_until(Duration::from_secs(5), Duration::from_millis(1), || {
        n += 1;
        if n == 3 {
            Ok(n)
        } else {
            Err(format!("try {n}"))
        }
    });
    assert_eq!(v, Ok(3));
    let mut m = 0;
    let e = wait_until(
        Duration::from_millis(30),
        Duration::from_millis(5),
        || -> Result<(), String> {
            m += 1;
            Err(format!("try {m}"))
        },
    )
    .unwrap_err();
    assert!(e.starts_with("timed out after 30ms: try "), "{e}");
    assert!(e.ends_with(&format!("try {m}")), "{e}");
}
