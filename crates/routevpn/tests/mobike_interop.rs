//! MOBIKE (RFC 4555) against a real strongSwan 5.9.8 (charon with kernel-libipsec), in
//! both roles: the branch router, the original initiator of the IKE SA, gets a new WAN
//! address (a new DHCP lease: the new address is added, then the old one removed) and
//! announces it with UPDATE_SA_ADDRESSES; the hub (`%any`) follows with the same IKE and
//! CHILD SAs. The routevpn↔routevpn version is `dynamic_address.rs`. Needs root; skips
//! loudly without it unless `ROUTEVPN_REQUIRE_NETNS=1`.
//!
//! ```text
//! left_host eth0 ── lan0 left wan0 ══ 192.0.2.0/24 ══ wan0 right lan0 ── eth0 right_host
//!  10.1.0.2          10.1.0.1   192.0.2.1     192.0.2.2   10.2.0.1          10.2.0.2
//! ```
//! routevpn runs on `left`, charon on `right`; the branch moves to 192.0.2.3.

use serde_json::Value;
use std::time::Duration;
use testbed::{
    report, wait_until, IkeSa, Netns, Routevpn, RvConfig, RvTunnel, Strongswan, SwanConn, Topology,
};

const T: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
const IKE: &str = "aes256gcm16-prfsha384-x25519";
const ESP: &str = "aes256gcm16";
const PSK: &str = "mobike-interop-psk";
/// The branch's new WAN address, on the same link as the old one.
const NEW_WAN: &str = "192.0.2.3";
/// Pings in the background ping across the address change (50 ms apart).
const PINGS: u64 = 120;

fn cfg(t: RvTunnel) -> RvConfig {
    RvConfig {
        tunnels: vec![t],
        ..RvConfig::default()
    }
}

/// routevpn on the left router, routing the right site into its tunnel.
fn rv_left(t: RvTunnel) -> RvTunnel {
    RvTunnel {
        psk: PSK.into(),
        ike: vec![IKE.into()],
        esp: vec![ESP.into()],
        address: vec!["169.254.12.1/30".into()],
        routes: vec![Topology::RIGHT_NET.into()],
        // Liveness checks far away: only the address change may move the SAs.
        extra: vec!["dpd = \"60s\"".into()],
        ..t
    }
}

/// strongSwan on the right router with the two site networks as selectors.
fn swan_right(c: SwanConn) -> SwanConn {
    SwanConn {
        psk: PSK.into(),
        ike_proposals: IKE.into(),
        esp_proposals: ESP.into(),
        local_ts: Topology::RIGHT_NET.into(),
        remote_ts: Topology::LEFT_NET.into(),
        start_action: "none".into(),
        // No DPD: only the address change may move the SAs.
        dpd_delay: Some("0s".into()),
        ..c
    }
}

/// The one established IKE SA of charon's connection `tun`.
fn swan_sa(sw: &Strongswan) -> Result<IkeSa, String> {
    let sas = sw.sas()?;
    match sas.as_slice() {
        [sa] if sa.is_established() => Ok(sa.clone()),
        _ => Err(format!("not one established IKE SA:\n{}", sw.list_sas())),
    }
}

/// The branch's DHCP client: add the new lease, then drop the old one (with
/// promote_secondaries set, or the kernel drops every secondary with the primary).
fn change_address(ns: &Netns, old: &str) {
    ns.must(&["ip", "addr", "add", &format!("{NEW_WAN}/24"), "dev", "wan0"]);
    ns.must(&["ip", "addr", "del", &format!("{old}/24"), "dev", "wan0"]);
}

/// Starts a bounded ping (`PINGS` at 50 ms) from `from` to `to`, changes the branch's
/// address after 1 s, and reports how many pings were lost under `what` (a figure,
/// not asserted).
fn ping_across_change(what: &str, from: &Netns, to: &str, branch: &Netns, old: &str) {
    let pinger = from
        .command(&[
            "ping",
            "-n",
            "-i",
            "0.05",
            "-c",
            &PINGS.to_string(),
            "-W",
            "1",
            to,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    change_address(branch, old);
    let out = pinger.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (_, received) =
        testbed::ping_summary(&text).unwrap_or_else(|| panic!("no ping summary in {text}"));
    let summary = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_default();
    report(&format!(
        "MOBIKE {what}: {} of {PINGS} pings lost (50 ms apart) across the address change; \
         {summary}",
        PINGS - received
    ));
}

/// charon (kernel-libipsec) answers the address update by rekeying the CHILD SA: the
/// log after the move says so, and routevpn and charon end with one new, matching pair.
fn charon_rekeyed_the_child(rv: &Routevpn, sw: &Strongswan, moved: &str, before: &Value) {
    assert!(
        has_line(
            moved,
            &["generating CREATE_CHILD_SA request", "[ N(REKEY_SA)"]
        ),
        "charon (kernel-libipsec) rekeys the CHILD SA after the update:\n{moved}"
    );
    let paired = wait_children_paired(rv, sw);
    assert_ne!(
        paired["child_sas"][0]["spi_in"], before["child_sas"][0]["spi_in"],
        "a new CHILD SA after charon's rekey"
    );
}

/// Waits until routevpn holds one CHILD SA and charon one installed CHILD SA with the
/// same SPI pair (after charon's rekey the old pair is deleted).
fn wait_children_paired(rv: &Routevpn, sw: &Strongswan) -> serde_json::Value {
    wait_until(T, POLL, || {
        let t = rv.status()?["tunnels"][0].clone();
        let sa = swan_sa(sw)?;
        let installed: Vec<_> = sa.installed().collect();
        let ours = t["child_sas"].as_array().map(Vec::len);
        match (installed.as_slice(), ours) {
            ([c], Some(1))
                if c.get("spi-in") == Some(&testbed::json_str(&t, "/child_sas/0/spi_out"))
                    && c.get("spi-out") == Some(&testbed::json_str(&t, "/child_sas/0/spi_in")) =>
            {
                Ok(t)
            }
            _ => Err(format!(
                "CHILD SAs not paired: routevpn {t}\ncharon:\n{}",
                sw.list_sas()
            )),
        }
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(rv, sw)))
}

/// True if one line of `log` contains every needle.
fn has_line(log: &str, needles: &[&str]) -> bool {
    log.lines().any(|l| needles.iter().all(|n| l.contains(n)))
}

/// charon's log from the first line containing `marker` on; panics without one.
fn log_from(sw: &Strongswan, marker: &str) -> String {
    let log = sw.log();
    let at = log
        .find(marker)
        .unwrap_or_else(|| panic!("charon's log has no {marker:?}:\n{log}"));
    log[at..].to_string()
}

fn logs(rv: &Routevpn, sw: &Strongswan) -> String {
    format!(
        "routevpn log:\n{}\ncharon log:\n{}",
        testbed::tail(&rv.log(), 40),
        testbed::tail(&sw.log(), 60)
    )
}

/// strongSwan is the branch (initiator, `mobike = yes`, its default) and routevpn the
/// hub with `remote = "%any"`. charon notices the deleted address by netlink, probes
/// the new path with an empty INFORMATIONAL, then sends UPDATE_SA_ADDRESSES (with NAT-D
/// and COOKIE2) from the new address; routevpn moves the IKE SA (same SPIs) and its ESP
/// there.
///
/// What strongSwan 5.9.8 with kernel-libipsec really does next: it does not move the
/// CHILD SA in place (RFC 4555 §3.5 lets the SAs keep their SPIs) but rekeys it with
/// CREATE_CHILD_SA {N(REKEY_SA)} right after the update, apparently because libipsec
/// cannot update an installed SA's addresses. So the test asserts the rekey and that
/// both ends end up with one matching CHILD SA pair, not unchanged CHILD SPIs.
///
/// Fails when routevpn does not announce MOBIKE_SUPPORTED (no "peer supports MOBIKE"),
/// does not echo COOKIE2 (charon: "COOKIE2 mismatch, closing IKE_SA"), ignores the
/// update (the peer stays at the old address in `status`), or does not log it.
#[test]
fn strongswan_branch_roams_to_a_routevpn_hub() {
    if !testbed::require_strongswan() {
        return;
    }
    let topo = Topology::two_sites();
    topo.right
        .sysctl("net.ipv4.conf.wan0.promote_secondaries", "1");
    let rv = Routevpn::start(
        &topo.left,
        &cfg(rv_left(RvTunnel {
            local: Topology::LEFT_WAN.into(),
            remote: "%any".into(),
            local_id: "hub".into(),
            remote_id: "branch".into(),
            start: false,
            ..RvTunnel::default()
        })),
    )
    .unwrap();
    let sw = Strongswan::start(
        &topo.right,
        &[swan_right(SwanConn {
            local_addr: "%any".into(),
            remote_addr: Topology::LEFT_WAN.into(),
            local_id: "branch".into(),
            remote_id: "hub".into(),
            ..SwanConn::default()
        })],
    )
    .unwrap();
    sw.initiate("net")
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rv, &sw)));
    let before = testbed::wait_tunnel_up(&rv, T);
    sw.wait_established("tun", T).unwrap();
    sw.wait_log("peer supports MOBIKE", T)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rv, &sw)));
    assert_eq!(before["remote"], "%any");
    let old_peer = testbed::json_str(&before, "/ike_sas/0/peer");
    assert_eq!(old_peer, format!("{}:4500", Topology::RIGHT_WAN));
    topo.left_host
        .wait_ping(Topology::RIGHT_ROUTER_LAN, T)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rv, &sw)));

    // The hub site pings the branch: only the hub's ESP shows whether it followed.
    ping_across_change(
        "strongSwan branch -> routevpn hub",
        &topo.left_host,
        Topology::RIGHT_ROUTER_LAN,
        &topo.right,
        Topology::RIGHT_WAN,
    );
    let after = wait_until(T, POLL, || {
        let t = rv.status()?["tunnels"][0].clone();
        (testbed::json_str(&t, "/ike_sas/0/peer") == format!("{NEW_WAN}:4500"))
            .then_some(t.clone())
            .ok_or_else(|| format!("the hub still talks to the old address: {t}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rv, &sw)));
    rv.wait_log("peer updated its address (MOBIKE)", T)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rv, &sw)));
    assert_eq!(
        after["ike_sas"][0]["spi_i"],
        before["ike_sas"][0]["spi_i"],
        "the same IKE SA\n{}",
        logs(&rv, &sw)
    );
    let moved = log_from(
        &sw,
        &format!(
            "local endpoint changed from {}[4500] to {NEW_WAN}[4500]",
            Topology::RIGHT_WAN
        ),
    );
    assert!(
        has_line(
            &moved,
            &[
                "generating INFORMATIONAL request",
                "[ N(UPD_SA_ADDR) N(NATD_S_IP) N(NATD_D_IP) N(COOKIE2)"
            ]
        ) && has_line(&moved, &["parsed INFORMATIONAL response", "N(COOKIE2)"]),
        "charon sent UPDATE_SA_ADDRESSES from its new address and got COOKIE2 back:\n{moved}"
    );
    charon_rekeyed_the_child(&rv, &sw, &moved, &before);
    let sa = swan_sa(&sw).unwrap();
    assert_eq!(sa.get("local-host"), Some(NEW_WAN), "{:?}", sa.fields);
    assert!(
        sa.get("initiator-spi")
            .unwrap_or_default()
            .trim_start_matches("0x")
            .eq_ignore_ascii_case(&testbed::json_str(&before, "/ike_sas/0/spi_i")),
        "charon kept the IKE SA: {:?}",
        sa.fields
    );
    topo.left_host
        .wait_ping(Topology::RIGHT_ROUTER_LAN, T)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rv, &sw)));
    topo.right_host
        .wait_ping(Topology::LEFT_HOST, T)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rv, &sw)));
}

/// routevpn is the branch (`local = "wan0"`, initiator) and strongSwan the hub
/// (`remote_addrs = %any`). routevpn notices the deleted address by netlink and sends
/// UPDATE_SA_ADDRESSES from the new one; charon logs "remote endpoint changed" and
/// keeps the IKE SA (same SPIs, same unique id). As in the other direction, charon then
/// rekeys the CHILD SA (CREATE_CHILD_SA {N(REKEY_SA)}, here as IKE responder) instead
/// of moving it in place; the test asserts that and one matching CHILD SA pair after.
/// Fails when routevpn does not send the update or sends it wrongly (charon keeps the
/// old address: no "remote endpoint changed", `remote-host` unchanged, and no traffic
/// from the hub site after the change).
#[test]
fn routevpn_branch_roams_to_a_strongswan_hub() {
    if !testbed::require_strongswan() {
        return;
    }
    let topo = Topology::two_sites();
    topo.left
        .sysctl("net.ipv4.conf.wan0.promote_secondaries", "1");
    let sw = Strongswan::start(
        &topo.right,
        &[swan_right(SwanConn {
            local_addr: Topology::RIGHT_WAN.into(),
            remote_addr: "%any".into(),
            local_id: "hub".into(),
            remote_id: "branch".into(),
            ..SwanConn::default()
        })],
    )
    .unwrap();
    let rv = Routevpn::start(
        &topo.left,
        &cfg(rv_left(RvTunnel {
            local: "wan0".into(),
            remote: Topology::RIGHT_WAN.into(),
            local_id: "branch".into(),
            remote_id: "hub".into(),
            start: true,
            ..RvTunnel::default()
        })),
    )
    .unwrap();
    let before = testbed::wait_tunnel_up(&rv, T);
    sw.wait_established("tun", T)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rv, &sw)));
    sw.wait_log("peer supports MOBIKE", T)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rv, &sw)));
    let sa_before = swan_sa(&sw).unwrap();
    assert_eq!(
        sa_before.get("remote-host"),
        Some(Topology::LEFT_WAN),
        "{:?}",
        sa_before.fields
    );
    topo.right_host
        .wait_ping(Topology::LEFT_HOST, T)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rv, &sw)));

    // The hub site pings the branch site: only charon's ESP shows whether it followed.
    ping_across_change(
        "routevpn branch -> strongSwan hub",
        &topo.right_host,
        Topology::LEFT_HOST,
        &topo.left,
        Topology::LEFT_WAN,
    );
    let sa_after = wait_until(T, POLL, || {
        let sa = swan_sa(&sw)?;
        (sa.get("remote-host") == Some(NEW_WAN))
            .then_some(sa.clone())
            .ok_or_else(|| format!("charon still talks to the old address: {:?}", sa.fields))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rv, &sw)));
    rv.wait_log("UPDATE_SA_ADDRESSES (MOBIKE)", T)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rv, &sw)));
    let moved = log_from(
        &sw,
        &format!(
            "remote endpoint changed from {}[4500] to {NEW_WAN}[4500]",
            Topology::LEFT_WAN
        ),
    );
    assert!(
        has_line(
            &sw.log(),
            &[
                "parsed INFORMATIONAL request",
                "[ N(UPD_SA_ADDR) N(NATD_S_IP) N(NATD_D_IP) N(COOKIE2) ]"
            ]
        ) && has_line(
            &moved,
            &[
                "generating INFORMATIONAL response",
                "[ N(NATD_S_IP) N(NATD_D_IP) N(COOKIE2) ]"
            ]
        ),
        "charon processed routevpn's UPDATE_SA_ADDRESSES:\n{moved}"
    );
    charon_rekeyed_the_child(&rv, &sw, &moved, &before);
    assert_eq!(
        sa_after.get("initiator-spi"),
        sa_before.get("initiator-spi"),
        "the same IKE SA at charon"
    );
    assert_eq!(
        sa_after.get("uniqueid"),
        sa_before.get("uniqueid"),
        "the same IKE SA at charon"
    );
    let after = rv.status().unwrap()["tunnels"][0].clone();
    assert_eq!(
        after["ike_sas"][0]["spi_i"], before["ike_sas"][0]["spi_i"],
        "the same IKE SA at routevpn"
    );
    topo.right_host
        .wait_ping(Topology::LEFT_HOST, T)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rv, &sw)));
    topo.left_host
        .wait_ping(Topology::RIGHT_HOST, T)
        .unwrap_or_else(|e| panic!("{e}\n{}", logs(&rv, &sw)));
}
