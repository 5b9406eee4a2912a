//! "Logs never contain keys or the PSK" (README), checked against secrets routevpn did
//! not report itself: strongSwan at log level 4 dumps every IKE and CHILD SA key it
//! derives (RFC 7296 §2.14 SK_d/ai/ar/ei/er/pi/pr, §2.17 KEYMAT), and both ends derive
//! the same keys. routevpn runs at `RUST_LOG=trace` through establishment, CHILD SA and
//! IKE SA rekeys in both directions and traffic; its log is then searched for each
//! secret as hex (either case, with or without separators), as Rust's `{:?}` of a byte
//! slice, and for the PSK as text and hex.

use std::time::Duration;
use testbed::{wait_until, Routevpn, RvConfig, RvTunnel, Strongswan, SwanConn, Topology};

const T: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);
const PSK: &str = "never-in-a-log-7f3a9c21e5";

/// `STRONGSWAN_CONF` with the IKE and CHILD SA subsystems at level 4 (key material).
fn charon_conf_with_keys() -> String {
    testbed::STRONGSWAN_CONF.replace("    cfg = 2\n", "    cfg = 2\n    ike = 4\n    chd = 4\n")
}

/// Every secret charon dumped: lines `... <name> => N bytes @ 0x...` followed by hexdump
/// lines `  0: 8A 2B ...` (16 octets per line, then an ASCII column).
fn charon_secrets(log: &str) -> Vec<(String, Vec<u8>)> {
    let lines: Vec<&str> = log.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let Some((head, tail)) = l.split_once(" => ") else {
            continue;
        };
        let name = head.rsplit(']').next().unwrap_or("").trim().to_string();
        let is_secret = name.contains("secret") || name.ends_with(" key");
        let Some(n) = tail
            .split(" bytes")
            .next()
            .and_then(|n| n.trim().parse::<usize>().ok())
        else {
            continue;
        };
        if !is_secret || n == 0 || name.contains("nonce") {
            continue;
        }
        let mut bytes = Vec::with_capacity(n);
        for l in &lines[i + 1..] {
            if bytes.len() >= n {
                break;
            }
            let Some((_, dump)) = l.split_once(": ").filter(|(a, _)| {
                a.rsplit(']')
                    .next()
                    .is_some_and(|o| o.trim().parse::<u32>().is_ok())
            }) else {
                break;
            };
            let want = (n - bytes.len()).min(16);
            bytes.extend(
                dump.split_whitespace()
                    .take(want)
                    .filter_map(|h| u8::from_str_radix(h, 16).ok()),
            );
        }
        if bytes.len() == n {
            out.push((name, bytes));
        }
    }
    out
}

/// The ways a byte string can appear in a log line.
fn renderings(b: &[u8]) -> Vec<String> {
    let lower: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let spaced: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    let debug: Vec<String> = b.iter().map(u8::to_string).collect();
    // A 12-octet window is enough to identify a key and catches partial dumps.
    let w = 12.min(b.len());
    vec![
        lower[..2 * w].to_string(),
        lower[..2 * w].to_ascii_uppercase(),
        spaced[..w].join(" "),
        spaced[..w].join(":"),
        format!("[{}", debug[..w].join(", ")),
        format!("[{}", spaced[..w].join(", ")),
    ]
}

#[test]
fn no_key_or_psk_in_a_trace_level_log() {
    if !testbed::require_strongswan() {
        return;
    }
    let topo = Topology::two_sites();
    let conn = SwanConn {
        local_addr: Topology::RIGHT_WAN.into(),
        remote_addr: Topology::LEFT_WAN.into(),
        local_id: "routerB".into(),
        remote_id: "routerA".into(),
        psk: PSK.into(),
        ike_proposals: "aes256-sha256-modp2048,aes128gcm16-prfsha256-x25519".into(),
        esp_proposals: "aes128-sha256-modp2048,aes128gcm16-x25519".into(),
        local_ts: format!("{},{}", Topology::RIGHT_NET, Topology::RIGHT_NET6),
        remote_ts: format!("{},{}", Topology::LEFT_NET, Topology::LEFT_NET6),
        start_action: "none".into(),
        ..SwanConn::default()
    };
    let sw = Strongswan::start_with(&topo.right, &[conn], &charon_conf_with_keys()).unwrap();
    let tunnel = RvTunnel {
        local: Topology::LEFT_WAN.into(),
        remote: Topology::RIGHT_WAN.into(),
        local_id: "routerA".into(),
        remote_id: "routerB".into(),
        psk: PSK.into(),
        // CBC+HMAC, so SK_ai/SK_ar and the CHILD SA integrity keys exist too.
        ike: vec!["aes256-sha256-modp2048".into()],
        esp: vec!["aes128-sha256-modp2048".into()],
        start: true,
        routes: vec![Topology::RIGHT_NET.into()],
        address: vec!["169.254.12.1/30".into()],
        extra: vec![
            "ike_lifetime = \"8s\"".into(),
            "child_lifetime = \"3s\"".into(),
        ],
        ..RvTunnel::default()
    };
    let rv = Routevpn::spawn_with(
        testbed::routevpn_bin(),
        &topo.left,
        &RvConfig {
            tunnels: vec![tunnel],
            ..RvConfig::default()
        },
        &[("RUST_LOG", "trace"), ("NO_COLOR", "1")],
    );
    rv.wait_ready(Duration::from_secs(10)).unwrap();
    testbed::wait_tunnel_up(&rv, T);
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    // CHILD SA and IKE SA rekeys (new keys each time, all dumped by charon).
    wait_until(Duration::from_secs(30), POLL, || {
        let rekeys = sw.log().matches("parsed CREATE_CHILD_SA request").count();
        let ike_rekeyed = rv.log().contains("IKE SA rekeyed");
        (rekeys >= 4 && ike_rekeyed).then_some(()).ok_or(format!(
            "charon answered {rekeys} CREATE_CHILD_SA, routevpn rekeyed the IKE SA: {ike_rekeyed}"
        ))
    })
    .unwrap();
    topo.left_host.wait_ping(Topology::RIGHT_HOST, T).unwrap();
    let (charon, ours) = (sw.log(), rv.log());
    let secrets = charon_secrets(&charon);
    let names: std::collections::BTreeSet<&str> = secrets.iter().map(|(n, _)| n.as_str()).collect();
    testbed::report(&format!(
        "secrets in logs: {} secrets from charon ({names:?}), routevpn trace log {} lines",
        secrets.len(),
        ours.lines().count()
    ));
    // The dump really covers IKE and CHILD SA keys, first SAs and rekeyed ones.
    for want in [
        "Sk_d secret",
        "Sk_ei secret",
        "Sk_ai secret",
        "Sk_pi secret",
    ] {
        assert!(names.contains(want), "charon dumped no {want:?}: {names:?}");
    }
    assert!(
        names
            .iter()
            .any(|n| n.contains("encryption") && n.ends_with("key")),
        "charon dumped no CHILD SA key: {names:?}"
    );
    assert!(secrets.len() >= 20, "{} secrets", secrets.len());
    assert!(ours.lines().count() > 200, "a trace-level log");
    let mut leaks = Vec::new();
    for (name, bytes) in &secrets {
        for r in renderings(bytes) {
            if let Some(line) = ours.lines().find(|l| l.contains(&r)) {
                leaks.push(format!("{name} as {r:?} in: {line}"));
            }
        }
    }
    let psk_hex: String = PSK.bytes().map(|b| format!("{b:02x}")).collect();
    for r in [
        PSK.to_string(),
        psk_hex.clone(),
        psk_hex.to_ascii_uppercase(),
    ] {
        if let Some(line) = ours.lines().find(|l| l.contains(&r)) {
            leaks.push(format!("the PSK as {r:?} in: {line}"));
        }
    }
    assert!(
        leaks.is_empty(),
        "secrets in routevpn's log:\n{}",
        leaks.join("\n")
    );
}

#[test]
fn the_charon_dump_parser_reads_a_hexdump() {
    let log = "Dec  1 17:40:00.123 06[IKE] Sk_ei secret => 20 bytes @ 0x7f00\n\
               Dec  1 17:40:00.123 06[IKE]    0: 00 11 22 33 44 55 66 77 88 99 AA BB CC DD EE FF  .\"3DUfw........\n\
               Dec  1 17:40:00.123 06[IKE]   16: 01 02 03 04                                      ....\n\
               Dec  1 17:40:00.124 06[IKE] Ni nonce => 4 bytes @ 0x7f00\n\
               Dec  1 17:40:00.124 06[IKE]    0: 01 02 03 04                                      ....\n";
    let s = charon_secrets(log);
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0].0, "Sk_ei secret");
    assert_eq!(s[0].1.len(), 20);
    assert_eq!(s[0].1[..3], [0x00, 0x11, 0x22]);
    assert_eq!(s[0].1[16..], [1, 2, 3, 4]);
    assert!(renderings(&s[0].1).contains(&"00112233445566778899aabb".to_string()));
    assert!(renderings(&s[0].1)
        .iter()
        .any(|r| r.starts_with("[0, 17, 34, 51, 68")));
}
