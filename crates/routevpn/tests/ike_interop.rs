//! IKEv2 in network namespaces: routevpn↔routevpn and routevpn↔strongSwan 5.9
//! (kernel-libipsec), routevpn as initiator and as responder, several proposal sets,
//! the failure cases, and strongSwan rekeying and probing a routevpn peer.

use serde_json::Value;
use std::time::Duration;
use testbed::{wait_until, Routevpn, RvConfig, RvTunnel, Strongswan, SwanConn, Topology};

const T: Duration = Duration::from_secs(15);

/// (routevpn ike, routevpn esp, strongSwan ike, strongSwan esp, expected IKE algorithms)
const SUITES: &[(&str, &str, &str, &str, [&str; 3])] = &[
    (
        "aes256gcm16-prfsha384-x25519",
        "aes256gcm16",
        "aes256gcm16-prfsha384-x25519",
        "aes256gcm16",
        ["AES_GCM_16", "PRF_HMAC_SHA2_384", "CURVE_25519"],
    ),
    (
        "aes128-sha256-modp2048",
        "aes128-sha256",
        "aes128-sha256-modp2048",
        "aes128-sha256",
        ["AES_CBC", "PRF_HMAC_SHA2_256", "MODP_2048"],
    ),
    (
        "aes256-sha384-ecp384",
        // libipsec cannot do ESN ("IPsec SA: ESN not supported"); ESN is covered
        // routevpn↔routevpn below.
        "aes256-sha512",
        "aes256-sha384-ecp384",
        "aes256-sha512",
        ["AES_CBC", "PRF_HMAC_SHA2_384", "ECP_384"],
    ),
    (
        "aes128gcm16-prfsha256-ecp256",
        "aes128gcm16",
        "aes128gcm16-prfsha256-ecp256",
        "aes128gcm16",
        ["AES_GCM_16", "PRF_HMAC_SHA2_256", "ECP_256"],
    ),
];

fn rv_tunnel(left: bool, ike: &str, esp: &str, psk: &str, start: bool) -> RvTunnel {
    let (local, remote, lid, rid) = if left {
        (
            Topology::LEFT_WAN,
            Topology::RIGHT_WAN,
            "routerA",
            "routerB",
        )
    } else {
        (
            Topology::RIGHT_WAN,
            Topology::LEFT_WAN,
            "routerB",
            "routerA",
        )
    };
    RvTunnel {
        local: local.into(),
        remote: remote.into(),
        local_id: lid.into(),
        remote_id: rid.into(),
        psk: psk.into(),
        ike: vec![ike.into()],
        esp: vec![esp.into()],
        start,
        ..RvTunnel::default()
    }
}

fn rv_config(t: RvTunnel) -> RvConfig {
    RvConfig {
        tunnels: vec![t],
        ..RvConfig::default()
    }
}

/// strongSwan on the right router; its selectors are the two site networks (a libipsec
/// peer must not route 0/0 into its tunnel, see shared/interop/README.md).
fn swan_right(ike: &str, esp: &str, psk: &str, start_action: &str) -> SwanConn {
    SwanConn {
        start_action: start_action.into(),
        ..SwanConn::router_b(psk, ike, esp)
    }
}

fn tunnel(status: &Value) -> Value {
    status["tunnels"][0].clone()
}

fn wait_error(rv: &Routevpn, needle: &str) -> String {
    rv.wait_last_error(needle, T)
        .unwrap_or_else(|e| panic!("{e}\nrouteVPN log:\n{}", testbed::tail(&rv.log(), 60)))
}

#[test]
fn routevpn_to_routevpn() {
    if !testbed::require_root() {
        return;
    }
    let esn = (
        "aes256-sha384-ecp384",
        "aes256-sha512-esn",
        "",
        "",
        ["AES_CBC", "PRF_HMAC_SHA2_384", "ECP_384"],
    );
    for (ike, esp, _, _, algs) in SUITES.iter().chain([&esn]) {
        let topo = Topology::two_sites();
        let b = Routevpn::start(
            &topo.right,
            &rv_config(rv_tunnel(false, ike, esp, "s3cret", false)),
        )
        .unwrap();
        let a = Routevpn::start(
            &topo.left,
            &rv_config(rv_tunnel(true, ike, esp, "s3cret", true)),
        )
        .unwrap();
        let ta = testbed::wait_tunnel_up(&a, T);
        let tb = testbed::wait_tunnel_up(&b, T);
        let (ia, ib) = (&ta["ike_sas"][0], &tb["ike_sas"][0]);
        assert_eq!(ia["initiator"], true);
        assert_eq!(ib["initiator"], false);
        assert_eq!(ia["spi_i"], ib["spi_i"]);
        assert_eq!(ia["spi_r"], ib["spi_r"]);
        for alg in algs {
            assert!(
                ia["proposal"].as_str().unwrap().contains(alg),
                "{ike}: {ia}"
            );
        }
        let (ca, cb) = (&ta["child_sas"][0], &tb["child_sas"][0]);
        assert_eq!(ca["spi_in"], cb["spi_out"]);
        assert_eq!(ca["spi_out"], cb["spi_in"]);
        assert_eq!(
            ca["local_ts"],
            serde_json::json!(["0.0.0.0/0", "::/0"]),
            "route-based selectors"
        );
        assert_eq!(ca["esn"], esp.ends_with("-esn"), "{esp}");
        // The human-readable status works too.
        let text = a
            .cli(&["status", "--socket", a.socket().to_str().unwrap()])
            .unwrap();
        assert!(text.contains("vti0"), "{text}");
    }
}

#[test]
fn routevpn_initiates_to_strongswan() {
    if !testbed::require_strongswan() {
        return;
    }
    for (ike, esp, s_ike, s_esp, algs) in SUITES {
        let topo = Topology::two_sites();
        let swan =
            Strongswan::start(&topo.right, &[swan_right(s_ike, s_esp, "s3cret", "none")]).unwrap();
        let rv = Routevpn::start(
            &topo.left,
            &rv_config(rv_tunnel(true, ike, esp, "s3cret", true)),
        )
        .unwrap();
        let sa = swan
            .wait_established("tun", T)
            .unwrap_or_else(|e| panic!("{e}\nrouteVPN log:\n{}", testbed::tail(&rv.log(), 60)));
        let t = testbed::wait_tunnel_up(&rv, T);
        assert_eq!(
            sa.get("initiator"),
            None.or(sa.get("initiator")).filter(|v| *v != "yes"),
            "strongSwan is responder"
        );
        for alg in algs {
            let fields: Vec<&str> = sa.fields.values().map(|s| s.as_str()).collect();
            assert!(fields.contains(alg), "{ike}: strongSwan SA {:?}", sa.fields);
        }
        let child = sa.installed().next().unwrap();
        assert_eq!(child.get("encap"), Some("yes"));
        assert_eq!(
            child.get("spi-in").map(|s| s.trim_start_matches("0x")),
            Some(testbed::json_str(&t, "/child_sas/0/spi_out").as_str())
        );
        assert_eq!(
            child.get("spi-out").map(|s| s.trim_start_matches("0x")),
            Some(testbed::json_str(&t, "/child_sas/0/spi_in").as_str())
        );
        // strongSwan narrowed our 0/0 to its site networks.
        assert_eq!(t["child_sas"][0]["remote_ts"][0], Topology::RIGHT_NET);
    }
}

#[test]
fn strongswan_initiates_to_routevpn() {
    if !testbed::require_strongswan() {
        return;
    }
    for (ike, esp, s_ike, s_esp, algs) in SUITES {
        let topo = Topology::two_sites();
        let rv = Routevpn::start(
            &topo.left,
            &rv_config(rv_tunnel(true, ike, esp, "s3cret", false)),
        )
        .unwrap();
        let swan =
            Strongswan::start(&topo.right, &[swan_right(s_ike, s_esp, "s3cret", "none")]).unwrap();
        swan.initiate("net").unwrap();
        let sa = swan.wait_established("tun", T).unwrap();
        let t = testbed::wait_tunnel_up(&rv, T);
        assert_eq!(sa.get("initiator"), Some("yes"));
        assert_eq!(t["ike_sas"][0]["initiator"], false);
        for alg in algs {
            assert!(
                t["ike_sas"][0]["proposal"].as_str().unwrap().contains(alg),
                "{t}"
            );
        }
        let child = sa.installed().next().unwrap();
        assert_eq!(
            child.get("spi-in").map(|s| s.trim_start_matches("0x")),
            Some(testbed::json_str(&t, "/child_sas/0/spi_out").as_str())
        );
    }
}

#[test]
fn wrong_psk_fails_cleanly_both_ways() {
    if !testbed::require_strongswan() {
        return;
    }
    let (ike, esp) = ("aes256gcm16-prfsha384-x25519", "aes256gcm16");
    // routevpn initiates with the wrong key: strongSwan refuses, routevpn says why.
    let topo = Topology::two_sites();
    let swan =
        Strongswan::start(&topo.right, &[swan_right(ike, esp, "right-key", "none")]).unwrap();
    let rv = Routevpn::start(
        &topo.left,
        &rv_config(rv_tunnel(true, ike, esp, "wrong-key", true)),
    )
    .unwrap();
    let err = wait_error(&rv, "AUTHENTICATION_FAILED");
    assert!(err.contains("psk"), "{err}");
    swan.wait_log("tried 1 shared key", T)
        .or_else(|_| swan.wait_log("MAC mismatched", T))
        .unwrap();
    assert!(swan.sas().unwrap().iter().all(|s| !s.is_established()));
    assert!(
        !rv.log().contains("wrong-key"),
        "the PSK never reaches the log"
    );
    drop((rv, swan, topo));

    // strongSwan initiates with the wrong key: routevpn refuses and names the cause.
    let topo = Topology::two_sites();
    let rv = Routevpn::start(
        &topo.left,
        &rv_config(rv_tunnel(true, ike, esp, "wrong-key", false)),
    )
    .unwrap();
    let swan =
        Strongswan::start(&topo.right, &[swan_right(ike, esp, "right-key", "none")]).unwrap();
    let _ = swan.initiate("net");
    let err = wait_error(&rv, "AUTHENTICATION_FAILED");
    assert!(err.contains("pre-shared keys differ"), "{err}");
    swan.wait_log("received AUTHENTICATION_FAILED notify error", T)
        .unwrap();
    assert_eq!(tunnel(&rv.status().unwrap())["state"], "down");
}

#[test]
fn disjoint_proposals_fail_cleanly_both_ways() {
    if !testbed::require_strongswan() {
        return;
    }
    let topo = Topology::two_sites();
    let swan = Strongswan::start(
        &topo.right,
        &[swan_right(
            "aes128-sha256-modp2048",
            "aes128-sha256",
            "k",
            "none",
        )],
    )
    .unwrap();
    let rv = Routevpn::start(
        &topo.left,
        &rv_config(rv_tunnel(
            true,
            "aes256gcm16-prfsha384-x25519",
            "aes256gcm16",
            "k",
            true,
        )),
    )
    .unwrap();
    let err = wait_error(&rv, "NO_PROPOSAL_CHOSEN");
    assert!(err.contains("AES_GCM_16_256"), "names our proposals: {err}");
    swan.wait_log("received proposals unacceptable", T).unwrap();
    drop((rv, swan, topo));

    let topo = Topology::two_sites();
    let rv = Routevpn::start(
        &topo.left,
        &rv_config(rv_tunnel(
            true,
            "aes256gcm16-prfsha384-x25519",
            "aes256gcm16",
            "k",
            false,
        )),
    )
    .unwrap();
    let swan = Strongswan::start(
        &topo.right,
        &[swan_right(
            "aes128-sha256-modp2048",
            "aes128-sha256",
            "k",
            "none",
        )],
    )
    .unwrap();
    let _ = swan.initiate("net");
    let err = wait_error(&rv, "NO_PROPOSAL_CHOSEN");
    assert!(
        err.contains("peer offered") && err.contains("MODP_2048") && err.contains("CURVE_25519"),
        "{err}"
    );
    swan.wait_log("received NO_PROPOSAL_CHOSEN notify error", T)
        .unwrap();
}

/// strongSwan rekeys both SAs every few seconds (CHILD rekeys with PFS) and probes
/// liveness; routevpn answers every exchange and the tunnel stays up.
fn survive_strongswan_rekeys(swan_initiates: bool) {
    let topo = Topology::two_sites();
    let (ike, esp) = ("aes256gcm16-prfsha384-x25519", "aes256gcm16-x25519");
    let rv = Routevpn::start(
        &topo.left,
        &rv_config(rv_tunnel(true, ike, "aes256gcm16", "k", !swan_initiates)),
    )
    .unwrap();
    let conn = SwanConn {
        ike_rekey_time: Some("4s".into()),
        ike_over_time: Some("4s".into()),
        ike_rand_time: Some("0s".into()),
        child_rekey_time: Some("3s".into()),
        // Lifetimes well past the rekey time: libipsec rounds to seconds, and a hard
        // expiry racing the rekey would delete the SA instead.
        child_life_time: Some("8s".into()),
        child_rand_time: Some("0s".into()),
        dpd_delay: Some("1s".into()),
        ..swan_right(ike, esp, "k", "none")
    };
    let swan = Strongswan::start(&topo.right, &[conn]).unwrap();
    if swan_initiates {
        swan.initiate("net").unwrap();
    }
    swan.wait_established("tun", T).unwrap();
    testbed::wait_tunnel_up(&rv, T);
    let count = |needle: &str| swan.log().matches(needle).count();
    wait_until(Duration::from_secs(40), Duration::from_millis(200), || {
        let ike_done = count("rekeyed between");
        let child_done = count("outbound CHILD_SA net{");
        if ike_done >= 3 && child_done >= 3 {
            Ok(())
        } else {
            Err(format!(
                "strongSwan has done {ike_done} IKE and {child_done} CHILD rekeys so far"
            ))
        }
    })
    .unwrap_or_else(|e| panic!("{e}\nrouteVPN log:\n{}", testbed::tail(&rv.log(), 80)));
    // Still up on both sides, one IKE SA and one CHILD SA each once old ones are deleted.
    let sa = swan.wait_established("tun", T).unwrap();
    assert_eq!(sa.installed().count(), 1);
    let t = testbed::wait_tunnel_up(&rv, T);
    assert!(
        t["ike_sas"][0]["rekeys"].as_u64().unwrap() >= 1
            || t["ike_sas"].as_array().unwrap().len() > 1,
        "{t}"
    );
    let log = swan.log();
    assert!(
        !log.contains("retransmit"),
        "routevpn answered every request at once"
    );
    assert!(!rv.log().contains("ERROR"), "no errors on routevpn");
}

#[test]
fn strongswan_rekeys_and_probes_routevpn_responder() {
    if !testbed::require_strongswan() {
        return;
    }
    survive_strongswan_rekeys(true);
}

#[test]
fn strongswan_rekeys_and_probes_routevpn_initiator() {
    if !testbed::require_strongswan() {
        return;
    }
    survive_strongswan_rekeys(false);
}

/// strongSwan deletes the CHILD SA and keeps its IKE SA (`swanctl --terminate --child`,
/// as its hard lifetime does after failed rekeys): routevpn, in either role, creates it
/// again (RFC 7296 §1.4.1; without this the route-based tunnel stayed "ike-only" and
/// carried nothing until the IKE SA was replaced). charon does not re-create it itself.
#[test]
fn a_child_sa_strongswan_deletes_is_created_again() {
    if !testbed::require_strongswan() {
        return;
    }
    for swan_initiates in [false, true] {
        let topo = Topology::two_sites();
        let (ike, esp) = ("aes256gcm16-prfsha384-x25519", "aes256gcm16");
        // Routing the right site into the tunnel, so hosts can ping across.
        let t = RvTunnel {
            address: vec!["169.254.12.1/30".into()],
            routes: vec![Topology::RIGHT_NET.into()],
            ..rv_tunnel(true, ike, esp, "k", !swan_initiates)
        };
        let rv = Routevpn::start(&topo.left, &rv_config(t)).unwrap();
        let swan = Strongswan::start(&topo.right, &[swan_right(ike, esp, "k", "none")]).unwrap();
        if swan_initiates {
            swan.initiate("net").unwrap();
        }
        swan.wait_established("tun", T).unwrap();
        let t = testbed::wait_tunnel_up(&rv, T);
        let old = testbed::json_str(&t, "/child_sas/0/spi_in");
        topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();

        swan.terminate_child("net").unwrap();
        let mut gap = None;
        let t = wait_until(T, Duration::from_millis(100), || {
            let t = tunnel(&rv.status()?);
            if t["state"] == "ike-only" {
                gap = gap.or(t["child_sa_refill_in_ms"].as_u64());
            }
            match t["child_sas"].as_array().map(Vec::len) {
                Some(1) if t["state"] == "up" && t["child_sas"][0]["spi_in"] != old.as_str() => {
                    Ok(t)
                }
                _ => Err(format!("not re-created: {t}")),
            }
        })
        .unwrap_or_else(|e| panic!("{e}\nrouteVPN log:\n{}", testbed::tail(&rv.log(), 60)));
        let log = rv.log();
        assert!(
            log.contains("the tunnel lacks a CHILD SA: creating it again"),
            "{}",
            testbed::tail(&log, 40)
        );
        assert_eq!(
            t["ike_sas"].as_array().map(Vec::len),
            Some(1),
            "same IKE SA"
        );
        assert!(t["child_sa_refill_in_ms"].is_null(), "{t}");
        testbed::report(&format!(
            "CHILD SA deleted by strongSwan (routevpn initiator: {}): status showed ike-only \
             with the re-creation due in {gap:?} ms",
            !swan_initiates
        ));
        let sa = swan.wait_established("tun", T).unwrap();
        assert_eq!(sa.installed().count(), 1, "{}", swan.list_sas());
        topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
        assert!(!log.contains("ERROR"), "no errors on routevpn");
    }
}
