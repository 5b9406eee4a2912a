//! Fuzz seeds from real peers (issue 9, "Fuzzing that counts"): two strongSwan 5.9
//! charons and two FRR 8.4 bgpd talk in namespaces while tcpdump records the underlay
//! veth; the datagrams and TCP streams are cut into `fuzz/seeds/<target>/strongswan-*`
//! and `frr-*` files. The capture tests are `#[ignore]` (they rewrite files in the tree);
//! rerun them with
//!
//! ```sh
//! cargo test -p routevpn --test capture_seeds -- --ignored --test-threads=1
//! ```
//!
//! `captured_seeds_decode` (not ignored) checks every captured seed is accepted by the
//! decoder its target starts with, so a seed that only exercises the error path fails.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use testbed::pcap::{self, Capture, Segment, Transport};
use testbed::{wait_until, Frr, Strongswan, SwanConn, Topology, STRONGSWAN_CONF};

const T: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

fn seeds_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds")
}

/// Replaces the seeds of `source` (`strongswan`, `frr`) in each target directory.
fn write_seeds(source: &str, seeds: &BTreeMap<(String, String), Vec<u8>>) {
    let targets: BTreeSet<&String> = seeds.keys().map(|(t, _)| t).collect();
    for t in targets {
        let dir = seeds_dir().join(t);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{source}-"))
            {
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
    for ((t, name), bytes) in seeds {
        std::fs::write(seeds_dir().join(t).join(name), bytes).unwrap();
    }
    eprintln!("wrote {} {source} seeds", seeds.len());
}

/// Collects seeds, skipping exact duplicates within a target and numbering the names.
#[derive(Default)]
struct Seeds {
    files: BTreeMap<(String, String), Vec<u8>>,
    seen: BTreeSet<(String, Vec<u8>)>,
    counters: BTreeMap<(String, String), usize>,
}

impl Seeds {
    fn add(&mut self, target: &str, base: &str, bytes: Vec<u8>) {
        if !self.seen.insert((target.to_string(), bytes.clone())) {
            return;
        }
        let n = self
            .counters
            .entry((target.to_string(), base.to_string()))
            .or_default();
        *n += 1;
        let name = format!("{base}-{n:02}.bin");
        self.files.insert((target.to_string(), name), bytes);
    }

    fn count(&self, target: &str, base: &str) -> usize {
        self.counters
            .get(&(target.to_string(), base.to_string()))
            .copied()
            .unwrap_or(0)
    }
}

fn exchange_name(t: u8) -> String {
    match t {
        34 => "ike_sa_init".into(),
        35 => "ike_auth".into(),
        36 => "create_child_sa".into(),
        37 => "informational".into(),
        other => format!("exchange{other}"),
    }
}

const NON_ESP_MARKER: [u8; 4] = [0; 4];
const PAYLOAD_SKF: u8 = 53;
const MAX_ESP_SEEDS: usize = 6;

/// Turns the captured IKE/ESP datagrams into seeds for the IKE and ESP targets.
fn ike_seeds(segments: &[Segment]) -> Seeds {
    let mut s = Seeds::default();
    for seg in segments {
        if seg.transport != Transport::Udp {
            continue;
        }
        let p = &seg.payload;
        let port = seg.dst.port().min(seg.src.port());
        let msg = match port {
            500 => p.as_slice(),
            4500 => {
                if p.as_slice() == [0xFF] {
                    s.add("esp_classify", "strongswan-nat_keepalive", p.clone());
                    continue;
                }
                if !p.starts_with(&NON_ESP_MARKER) {
                    if s.count("esp_classify", "strongswan-esp") < MAX_ESP_SEEDS {
                        s.add("esp_classify", "strongswan-esp", p.clone());
                    }
                    continue;
                }
                s.add("esp_classify", "strongswan-ike", p.clone());
                &p[4..]
            }
            _ => continue,
        };
        if msg.len() < 28 {
            continue;
        }
        let (first, exchange, flags) = (msg[16], msg[18], msg[19]);
        let dir = if flags & 0x20 != 0 { "resp" } else { "req" };
        let frag = if first == PAYLOAD_SKF { "-frag" } else { "" };
        let base = format!("strongswan-{}{frag}-{dir}", exchange_name(exchange));
        s.add("ike_message", &base, msg.to_vec());
        if exchange == 34 {
            let mut chain = vec![first];
            chain.extend_from_slice(&msg[28..]);
            s.add("ike_payload_chain", &base, chain);
        }
    }
    s
}

fn swan_conf_with_fragments() -> String {
    // RFC 7383: small fragments so the PSK IKE_AUTH is split too.
    STRONGSWAN_CONF.replacen("charon {\n", "charon {\n  fragment_size = 300\n", 1)
}

fn swan_conn(left: bool) -> SwanConn {
    let (la, ra, lid, rid, lts, rts) = if left {
        (
            "192.0.2.1",
            "192.0.2.2",
            "left.example",
            "right.example",
            Topology::LEFT_NET,
            Topology::RIGHT_NET,
        )
    } else {
        (
            "192.0.2.2",
            "192.0.2.1",
            "right.example",
            "left.example",
            Topology::RIGHT_NET,
            Topology::LEFT_NET,
        )
    };
    SwanConn {
        local_addr: la.into(),
        remote_addr: ra.into(),
        local_id: lid.into(),
        remote_id: rid.into(),
        psk: "capture-seeds-not-a-secret".into(),
        // The right side proposes modp2048 first: the left responder answers
        // INVALID_KE_PAYLOAD (RFC 7296 §1.3) and the retry uses x25519.
        ike_proposals: if left {
            "aes256gcm16-prfsha384-x25519".into()
        } else {
            "aes128-sha256-modp2048,aes256gcm16-prfsha384-x25519".into()
        },
        // PFS on CHILD SA rekeys: CREATE_CHILD_SA carries KE.
        esp_proposals: "aes256gcm16-x25519".into(),
        local_ts: lts.into(),
        remote_ts: rts.into(),
        extra_conn: vec!["fragmentation = yes".into()],
        ..SwanConn::default()
    }
}

fn wait_no_sas(sw: &Strongswan) {
    wait_until(T, POLL, || {
        let sas = sw.sas()?;
        sas.is_empty()
            .then_some(())
            .ok_or_else(|| format!("SAs left: {}", sw.list_sas()))
    })
    .unwrap();
}

/// One full life of an IKE SA started by `init`: establishment, ESP both ways, CHILD SA
/// and IKE SA rekeys, a liveness check, and a Delete.
fn exercise(init: &Strongswan, resp: &Strongswan, ns: &testbed::Netns, src: &str, dst: &str) {
    init.initiate("net").unwrap();
    resp.wait_established("tun", T).unwrap();
    ns.run(&["ping", "-n", "-c", "3", "-i", "0.2", "-I", src, dst])
        .unwrap();
    let grew = |needle: &'static str, before: usize| {
        wait_until(T, POLL, || {
            (init.log().matches(needle).count() > before)
                .then_some(())
                .ok_or(format!("no new {needle:?} in the log yet"))
        })
        .unwrap()
    };
    let children = init.log().matches("established with SPIs").count();
    init.rekey_child("net").unwrap();
    grew("established with SPIs", children);
    let rekeys = init.log().matches("rekeyed between").count();
    init.rekey_ike("tun").unwrap();
    grew("rekeyed between", rekeys);
    // A Delete is the INFORMATIONAL captured (swanctl cannot trigger a liveness check).
    ns.run(&["ping", "-n", "-c", "2", "-i", "0.2", "-I", src, dst])
        .unwrap();
    init.terminate_ike("tun").unwrap();
    wait_no_sas(init);
    wait_no_sas(resp);
}

#[test]
#[ignore = "rewrites fuzz/seeds/*/strongswan-*; run by hand to refresh the seeds"]
fn capture_strongswan_seeds() {
    if !testbed::require_strongswan() || !testbed::require_programs(&["tcpdump", "ping"]) {
        return;
    }
    let topo = Topology::two_sites();
    let cap = Capture::start(&topo.left, Topology::WAN_IF).unwrap();
    let conf = swan_conf_with_fragments();
    let left = Strongswan::start_with(&topo.left, &[swan_conn(true)], &conf).unwrap();
    let right = Strongswan::start_with(&topo.right, &[swan_conn(false)], &conf).unwrap();
    exercise(
        &left,
        &right,
        &topo.left,
        Topology::LEFT_ROUTER_LAN,
        Topology::RIGHT_ROUTER_LAN,
    );
    exercise(
        &right,
        &left,
        &topo.right,
        Topology::RIGHT_ROUTER_LAN,
        Topology::LEFT_ROUTER_LAN,
    );
    let segments = cap.finish().unwrap();
    let seeds = ike_seeds(&segments);
    for (target, base) in [
        ("ike_message", "strongswan-ike_sa_init-req"),
        ("ike_message", "strongswan-ike_sa_init-resp"),
        ("ike_message", "strongswan-ike_auth-frag-req"),
        ("ike_message", "strongswan-create_child_sa-req"),
        ("ike_message", "strongswan-informational-req"),
        ("esp_classify", "strongswan-esp"),
    ] {
        assert!(seeds.count(target, base) > 0, "no {base} captured");
    }
    write_seeds("strongswan", &seeds.files);
}

const FRR_LEFT: &str = "
router bgp 65001
 bgp router-id 10.1.0.1
 no bgp ebgp-requires-policy
 timers bgp 3 9
 neighbor 192.0.2.2 remote-as 65002
 neighbor 192.0.2.2 timers connect 1
 address-family ipv4 unicast
  redistribute connected
 exit-address-family
 address-family ipv6 unicast
  redistribute connected
  neighbor 192.0.2.2 activate
 exit-address-family
";

const FRR_RIGHT: &str = "
router bgp 65002
 bgp router-id 10.2.0.1
 no bgp ebgp-requires-policy
 timers bgp 3 9
 neighbor 192.0.2.1 remote-as 65001
 neighbor 192.0.2.1 timers connect 1
 address-family ipv4 unicast
  redistribute connected
 exit-address-family
 address-family ipv6 unicast
  redistribute connected
  neighbor 192.0.2.1 activate
 exit-address-family
";

/// BGP messages of one stream: (type, whole message).
fn split_bgp(stream: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut rest = stream;
    while rest.len() >= 19 {
        let len = usize::from(u16::from_be_bytes([rest[16], rest[17]]));
        if len < 19 || len > rest.len() {
            break;
        }
        out.push((rest[18], &rest[..len]));
        rest = &rest[len..];
    }
    out
}

fn bgp_type_name(t: u8) -> &'static str {
    match t {
        1 => "open",
        2 => "update",
        3 => "notification",
        4 => "keepalive",
        5 => "route_refresh",
        _ => "unknown",
    }
}

/// Seeds from the stream FRR's AS 65002 sent (the fuzz targets' peer AS).
fn bgp_seeds(segments: &[Segment]) -> Seeds {
    let mut s = Seeds::default();
    let right: std::net::IpAddr = "192.0.2.2".parse().unwrap();
    let mut session_stream = None;
    for ((src, _), stream) in pcap::tcp_streams(segments) {
        if src.ip() != right {
            continue;
        }
        let msgs = split_bgp(&stream);
        for (t, m) in &msgs {
            let base = format!("frr-{}", bgp_type_name(*t));
            s.add("bgp_message", &base, m.to_vec());
            match t {
                1 => s.add("bgp_open", "frr-open", m[19..].to_vec()),
                2 => s.add("bgp_update", "frr-update", m[19..].to_vec()),
                _ => {}
            }
        }
        if session_stream.is_none() && msgs.iter().any(|(t, _)| *t == 2) {
            session_stream = Some((stream.clone(), msgs.len()));
        }
    }
    let (stream, _) = session_stream.expect("a stream from FRR with UPDATEs");
    for step in [1u8, 19, 255] {
        let mut v = vec![step];
        v.extend_from_slice(&stream);
        s.add("bgp_session_stream", "frr-stream", v);
    }
    // bgp_speaker: what follows the OPEN and the first KEEPALIVE (Established).
    let msgs = split_bgp(&stream);
    let skip: usize = msgs.iter().take(2).map(|(_, m)| m.len()).sum();
    for sel in [0x02u8, 0x02 | (40 << 1)] {
        let mut v = vec![sel];
        v.extend_from_slice(&stream[skip..]);
        s.add("bgp_speaker", "frr-established", v);
    }
    s
}

#[test]
#[ignore = "rewrites fuzz/seeds/*/frr-*; run by hand to refresh the seeds"]
fn capture_frr_seeds() {
    if !testbed::require_programs(&[
        "/usr/lib/frr/bgpd",
        "/usr/lib/frr/zebra",
        "vtysh",
        "tcpdump",
    ]) {
        return;
    }
    let topo = Topology::two_sites();
    let cap = Capture::start(&topo.left, Topology::WAN_IF).unwrap();
    let left = Frr::start(&topo.left, FRR_LEFT, "");
    let right = Frr::start(&topo.right, FRR_RIGHT, "");
    wait_until(Duration::from_secs(60), Duration::from_millis(200), || {
        let v4 = left.vtysh("show ip bgp")?;
        let v6 = left.vtysh("show bgp ipv6 unicast")?;
        (v4.contains("10.2.0.0/24") && v6.contains("fd00:2::/64"))
            .then_some(())
            .ok_or_else(|| format!("routes not in yet:\n{v4}\n{v6}"))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", left.logs()));
    // A KEEPALIVE at the 1 s hold/3 pace and then a NOTIFICATION (Cease, RFC 4486).
    right.vtysh("clear bgp *").unwrap();
    wait_until(T, Duration::from_millis(100), || {
        let n = left.vtysh("show bgp neighbors 192.0.2.2")?;
        n.contains("Notification received")
            .then_some(())
            .ok_or_else(|| format!("no NOTIFICATION yet:\n{n}"))
    })
    .unwrap();
    cap.wait_for(T, "NOTIFICATION from FRR", |segs| {
        pcap::tcp_streams(segs)
            .iter()
            .any(|(_, st)| split_bgp(st).iter().any(|(t, _)| *t == 3))
    })
    .unwrap();
    let segments = cap.finish().unwrap();
    let seeds = bgp_seeds(&segments);
    for (target, base) in [
        ("bgp_message", "frr-open"),
        ("bgp_message", "frr-keepalive"),
        ("bgp_message", "frr-notification"),
        ("bgp_update", "frr-update"),
    ] {
        assert!(seeds.count(target, base) > 0, "no {base} captured");
    }
    // RFC 4760: the IPv6 routes come as MP_REACH_NLRI (attribute type 14).
    let mp_reach = seeds.files.iter().any(|((t, _), b)| {
        t == "bgp_update"
            && bgp::wire::Update::decode(b)
                .ok()
                .and_then(|u| {
                    let ctx = bgp::wire::UpdateContext {
                        ebgp: true,
                        peer_as: 65002,
                    };
                    bgp::wire::ParsedUpdate::from_update(&u, ctx).ok()
                })
                .is_some_and(|p| p.announced.iter().any(|(pfx, _)| pfx.addr().is_ipv6()))
    });
    assert!(mp_reach, "no IPv6 UPDATE captured");
    write_seeds("frr", &seeds.files);
}

fn captured(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(seeds_dir().join(target))
        .unwrap()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("strongswan-") || name.starts_with("frr-") {
            out.push((name, std::fs::read(e.path()).unwrap()));
        }
    }
    out
}

/// Every captured seed reaches the success path of its target's first decoder.
#[test]
fn captured_seeds_decode() {
    let mut total = 0;
    let mut check = |target: &str, min: usize, ok: &dyn Fn(&[u8]) -> Result<(), String>| {
        let seeds = captured(target);
        assert!(
            seeds.len() >= min,
            "{target}: {} captured seeds, expected at least {min}",
            seeds.len()
        );
        for (name, bytes) in seeds {
            ok(&bytes).unwrap_or_else(|e| panic!("{target}/{name}: {e}"));
            total += 1;
        }
    };
    let dbg = |e: &dyn std::fmt::Debug| format!("{e:?}");
    check("ike_message", 8, &|b| {
        ike::wire::Message::decode(b)
            .map(|_| ())
            .map_err(|e| dbg(&e))
    });
    check("ike_payload_chain", 2, &|b| {
        let (first, chain) = b.split_first().ok_or("empty")?;
        ike::wire::decode_chain(ike::iana::PayloadType(*first), chain)
            .map(|_| ())
            .map_err(|e| dbg(&e))
    });
    check("esp_classify", 3, &|b| match esp::udp::classify(b) {
        esp::udp::Datagram::Invalid => Err("classified invalid".into()),
        _ => Ok(()),
    });
    check("bgp_message", 4, &|b| {
        bgp::wire::Message::decode(b)
            .map(|_| ())
            .map_err(|e| dbg(&e))
    });
    check("bgp_open", 1, &|b| {
        bgp::wire::Open::decode(b).map(|_| ()).map_err(|e| dbg(&e))
    });
    check("bgp_update", 2, &|b| {
        bgp::wire::Update::decode(b)
            .map(|_| ())
            .map_err(|e| dbg(&e))
    });
    let stream_ok = |b: &[u8]| -> Result<(), String> {
        let msgs = split_bgp(b);
        let used: usize = msgs.iter().map(|(_, m)| m.len()).sum();
        if msgs.is_empty() || used != b.len() {
            return Err(format!(
                "{used} of {} octets frame as BGP messages",
                b.len()
            ));
        }
        for (_, m) in msgs {
            bgp::wire::Message::decode(m).map_err(|e| dbg(&e))?;
        }
        Ok(())
    };
    check("bgp_session_stream", 1, &|b| stream_ok(&b[1..]));
    check("bgp_speaker", 1, &|b| stream_ok(&b[1..]));
    assert!(total > 0);
}
