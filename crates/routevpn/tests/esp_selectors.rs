//! RFC 4301 §5.2 end to end: a strongSwan 5.9 peer negotiates narrowed selectors (ICMP
//! echo replies only, from its site) and then sends, through its libipsec TUN, inner
//! packets outside them; routevpn must drop and count them as `ts_mismatch_in`.
//!
//! How the peer is made to misbehave without a test hook: libipsec matches outbound
//! packets to a policy on protocol, addresses and ports, but it reads no ports from ICMP
//! (it takes them as 0), while the selectors carry ICMP type and code in the port field
//! (RFC 4301 §4.4.1.1). With `local_ts = 10.2.0.0/24[icmp/0]` (type 0, echo reply:
//! "ports" 0x0000–0x00FF) every ICMP message from the site, echo requests included,
//! matches strongSwan's policy and goes into the SA; for routevpn an echo request is
//! type 8 (0x0800), outside the selector.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};
use testbed::{wait_until, Routevpn, RvConfig, RvTunnel, Strongswan, SwanConn, Topology};

const T: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

fn rv() -> RvConfig {
    RvConfig {
        tunnels: vec![RvTunnel {
            local: Topology::LEFT_WAN.into(),
            remote: Topology::RIGHT_WAN.into(),
            local_id: "routerA".into(),
            remote_id: "routerB".into(),
            psk: "selector-test-psk-long-enough".into(),
            ike: vec!["aes256gcm16-prfsha384-x25519".into()],
            esp: vec!["aes256gcm16".into()],
            start: false,
            ..RvTunnel::default()
        }],
        ..RvConfig::default()
    }
}

fn swan() -> SwanConn {
    SwanConn {
        local_ts: format!("{}[icmp/0]", Topology::RIGHT_NET),
        remote_ts: format!("{}[icmp]", Topology::LEFT_NET),
        ..SwanConn::router_b(
            "selector-test-psk-long-enough",
            "aes256gcm16-prfsha384-x25519",
            "aes256gcm16",
        )
    }
}

/// RFC 792 ICMP message with a correct checksum.
fn icmp(ty: u8, seq: u16) -> Vec<u8> {
    let mut m = vec![ty, 0, 0, 0, 0x12, 0x34];
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(b"routevpn selector test");
    let mut sum: u32 = m
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    m[2..4].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    m
}

/// Sends one ICMP message of type `ty` from the right site's host to the left one.
fn send_icmp(topo: &Topology, ty: u8, seq: u16) {
    let to: SocketAddr = format!("{}:0", Topology::LEFT_HOST).parse().unwrap();
    testbed::in_netns(&topo.right_host, move || {
        let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
            .map_err(|e| e.to_string())?;
        s.send_to(&icmp(ty, seq), &to.into())
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .join()
    .unwrap()
    .unwrap();
}

fn child(rv: &Routevpn) -> Result<Value, String> {
    Ok(rv.status()?["tunnels"][0]["child_sas"][0].clone())
}

#[test]
fn packets_outside_narrowed_selectors_from_strongswan_are_dropped_and_counted() {
    if !testbed::require_strongswan() {
        return;
    }
    let topo = Topology::two_sites();
    let rv = Routevpn::start(&topo.left, &rv()).unwrap();
    let sw = Strongswan::start(&topo.right, &[swan()]).unwrap();
    sw.initiate("net").unwrap();
    let t = testbed::wait_tunnel_up(&rv, T);
    assert_eq!(
        t["child_sas"][0]["remote_ts"][0], "10.2.0.0/24[icmp/0]",
        "{t}"
    );
    // Inside the selectors (echo reply, type 0): carried and accepted.
    send_icmp(&topo, 0, 1);
    let c = wait_until(T, POLL, || {
        let c = child(&rv)?;
        (c["packets_in"].as_u64() == Some(1))
            .then_some(c.clone())
            .ok_or(format!("{c}"))
    })
    .unwrap_or_else(|e| panic!("the echo reply did not arrive: {e}\n{}", sw.list_sas()));
    assert_eq!(c["ts_mismatch_in"], 0, "{c}");
    // Outside them (echo requests, type 8, and a timestamp request, type 13): strongSwan
    // sends them in the same SA; routevpn drops and counts each.
    for (seq, ty) in [(2, 8), (3, 8), (4, 13)] {
        send_icmp(&topo, ty, seq);
    }
    // A last inside packet: once it is counted, everything before it was handled.
    send_icmp(&topo, 0, 5);
    let c = wait_until(T, POLL, || {
        let c = child(&rv)?;
        (c["packets_in"].as_u64() == Some(2))
            .then_some(c.clone())
            .ok_or(format!("{c}"))
    })
    .unwrap();
    assert_eq!(c["ts_mismatch_in"], 3, "{c}");
    let sas = sw.sas().unwrap();
    let out = sas[0].children[0].get("packets-out").map(str::to_string);
    assert_eq!(
        out.as_deref(),
        Some("5"),
        "strongSwan sent all five: {sas:?}"
    );
}
