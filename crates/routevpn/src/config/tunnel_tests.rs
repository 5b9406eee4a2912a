//! Unit tests of config/tunnel.rs: one [[tunnel]] table, key by key.

use super::super::{load, parse, DEFAULT_CONTROL_SOCKET};
use super::*;
use ike::iana::{DhId, EncrId};

const EXAMPLE: &str = r#"control_socket = "/run/routevpn/routevpn.sock"   # default

[[tunnel]]
name = "vti0"
local = "192.0.2.1"
remote = "192.0.2.2"
local_id = "routerA"
remote_id = "routerB"
psk = "supersecret"
ike = ["aes256gcm16-prfsha384-x25519", "aes128-sha256-modp2048"]
esp = ["aes256gcm16", "aes128-sha256"]
start = true
"#;

/// Prefixes as (address, length) pairs, as the assertions spell them.
fn pairs(nets: &[IpNet]) -> Vec<(IpAddr, u8)> {
    nets.iter().map(|n| (n.addr(), n.prefix_len())).collect()
}

fn err(text: &str) -> ConfigError {
    parse(text, "config.toml").unwrap_err()
}

const MIN: &str =
    "[[tunnel]]\nname = \"t0\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.2\"\npsk = \"k\"\n";

#[test]
fn example_parses() {
    let c = parse(EXAMPLE, "config.toml").unwrap();
    assert_eq!(
        c.control_socket,
        PathBuf::from("/run/routevpn/routevpn.sock")
    );
    assert_eq!(c.tunnels.len(), 1);
    let t = &c.tunnels[0];
    assert_eq!(t.name, "vti0");
    assert_eq!(t.local, "192.0.2.1".parse::<IpAddr>().unwrap());
    assert_eq!(t.remote, Some("192.0.2.2".parse::<IpAddr>().unwrap()));
    assert_eq!(t.local_id, Identity::Fqdn("routerA".into()));
    assert_eq!(t.remote_id, Identity::Fqdn("routerB".into()));
    assert_eq!(t.psk.as_bytes(), b"supersecret");
    assert_eq!(t.ike.len(), 2);
    assert_eq!(t.ike[0].encr, vec![(EncrId::AES_GCM_16, Some(256))]);
    assert_eq!(t.ike[1].dh, vec![DhId::MODP_2048]);
    assert_eq!(t.esp.len(), 2);
    assert!(t.start);
    // Secrets stay out of Debug output.
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("supersecret"), "{dbg}");
    assert!(dbg.contains("<redacted>"));
}

#[test]
fn defaults() {
    let c = parse(MIN, "x.toml").unwrap();
    assert_eq!(c.control_socket, PathBuf::from(DEFAULT_CONTROL_SOCKET));
    let t = &c.tunnels[0];
    assert_eq!(t.local_port, 500);
    assert_eq!(t.remote_port, 500);
    assert_eq!(t.local_id, Identity::Ipv4("192.0.2.1".parse().unwrap()));
    assert_eq!(t.remote_id, Identity::Ipv4("192.0.2.2".parse().unwrap()));
    assert_eq!(t.ike, proposal::default_ike());
    assert_eq!(t.esp, proposal::default_esp());
    assert!(t.start);
    assert!(t.addresses.is_empty());
    assert_eq!(t.mtu, None);
    assert!(t.routes.is_empty());
    let all = vec![("0.0.0.0".parse().unwrap(), 0), ("::".parse().unwrap(), 0)];
    assert_eq!(pairs(&t.local_ts), all);
    assert_eq!(pairs(&t.remote_ts), all);
    // An empty file is a valid (idle) configuration.
    assert!(parse("", "x.toml").unwrap().tunnels.is_empty());
}

#[test]
fn optional_keys() {
    let text = format!(
        "{MIN}address = [\"169.254.12.1/30\", \"fd00::1/64\"]\nmtu = 1400\n\
         routes = [\"10.2.0.0/24\", {{ prefix = \"2001:db8::/32\", metric = 7 }}]\n\
         local_ts = \"10.1.0.0/16\"\nremote_ts = [\"10.2.0.0/16\", \"192.0.2.9\"]\n\
         local_port = 4500\nremote_port = 500\nstart = false\n\
         ike = \"aes128-sha256-modp2048, aes256gcm16-prfsha256-ecp256\"\n"
    );
    let c = parse(&text, "x.toml").unwrap();
    let t = &c.tunnels[0];
    let p = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        pairs(&t.addresses),
        vec![(p("169.254.12.1"), 30), (p("fd00::1"), 64)]
    );
    assert_eq!(t.mtu, Some(1400));
    let net = |a: &str, l: u8| IpNet::new(p(a), l).unwrap();
    assert_eq!(
        t.routes,
        vec![
            Route {
                prefix: net("10.2.0.0", 24),
                metric: None
            },
            Route {
                prefix: net("2001:db8::", 32),
                metric: Some(7)
            },
        ]
    );
    assert_eq!(pairs(&t.local_ts), vec![(p("10.1.0.0"), 16)]);
    assert_eq!(
        pairs(&t.remote_ts),
        vec![(p("10.2.0.0"), 16), (p("192.0.2.9"), 32)]
    );
    assert_eq!((t.local_port, t.remote_port), (4500, 500));
    assert!(!t.start);
    assert_eq!(t.ike.len(), 2);
    // A single address string works too.
    let c = parse(&format!("{MIN}address = \"10.0.0.1/31\"\n"), "x").unwrap();
    assert_eq!(pairs(&c.tunnels[0].addresses), vec![(p("10.0.0.1"), 31)]);
}

#[test]
fn unknown_algorithm_names_line() {
    let text = EXAMPLE.replace("\"aes128-sha256-modp2048\"", "\"aes257-sha256\"");
    let e = err(&text);
    assert_eq!(
        e.to_string(),
        format!(
            "config.toml:10:40: tunnel \"vti0\": ike: unsupported algorithm \"aes257\" in \
             proposal \"aes257-sha256\"; supported: {}",
            proposal::supported(Protocol::Ike)
        )
    );
    assert!(e.message.contains("modp2048, modp3072"), "{e}");
    let e = err(&EXAMPLE.replace("\"aes128-sha256\"]", "\"aes512-sha256\"]"));
    assert!(
        e.message.contains("esp: unsupported algorithm \"aes512\""),
        "{e}"
    );
    assert!(
        e.message.contains("noesn (extended sequence numbers)"),
        "{e}"
    );
    // Known to the parser (IKE uses them) but not to the ESP dataplane.
    for esp in ["aes192gcm16", "aes128gcm8", "aes192-sha256"] {
        let text = format!("{MIN}esp = [\"{esp}\"]\n");
        let e = err(&text);
        assert!(
            e.message.contains("esp: unsupported algorithm")
                && e.message.contains("the ESP dataplane supports aes128gcm16"),
            "{esp}: {}",
            e.message
        );
    }
    // Multi-line list: the element's own line.
    let text = format!("{MIN}esp = [\n  \"aes128gcm16\",\n  \"aes128\",\n]\n");
    let e = err(&text);
    assert_eq!(e.line, Some(8), "{e}");
    assert!(
        e.message
            .contains("no integrity algorithm in esp proposal \"aes128\""),
        "{e}"
    );
}

#[test]
fn syntax_and_schema_errors_name_line() {
    let e = err("control_socket = \"/x\"\n[[tunnel]]\nname = \"a\"\nbogus = 1\n");
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("unknown key `bogus`"), "{e}");
    let e = err("control_socket = \n");
    assert_eq!(e.line, Some(1), "{e}");
    let e = err("# c\n\n[[tunnel]]\nname = \"a\"\nlocal = \"192.0.2.1\"\n");
    assert!(e.message.contains("missing key `remote`"), "{e}");
    assert!(e.line.is_some());
    let e = err(&format!("{MIN}local_port = 70000\n"));
    assert_eq!(e.line, Some(6), "{e}");
    let e = err(&format!(
        "{MIN}routes = [{{ prefix = \"10.0.0.0/8\", metrc = 1 }}]\n"
    ));
    assert_eq!(e.line, Some(6), "{e}");
    assert!(e.message.contains("metrc"), "{e}");
    let e = err("[server]\nx = 1\n");
    assert_eq!(e.line, Some(1), "{e}");
}

#[test]
fn semantic_errors_name_line() {
    let cases: &[(&str, &str)] = &[
        ("local = \"192.0.2.300\"", "invalid local address"),
        ("remote = \"2001:db8::2\"", "different address families"),
        ("psk_file = \"/nonexistent\"", "mutually exclusive"),
        ("local_id = \"@#xyz\"", "hex"),
        ("remote_id = \"\"", "empty identity"),
        ("remote_id = \"XX=foo\"", "not a distinguished name"),
        ("address = [\"10.0.0.1/33\"]", "prefix length"),
        ("routes = [\"10.2.0.1/24\"]", "did you mean 10.2.0.0/24"),
        ("remote_ts = \"10.2.0.1/24\"", "host bits"),
        ("local_ts = []", "at least one selector"),
        ("ike = []", "at least one proposal"),
        ("esp = [\"aes128gcm16-sha256\"]", "AEAD"),
        ("ike = [\"aes128-sha256\"]", "key exchange"),
        ("mtu = 60", "too small"),
        ("local_port = 0", "port 0"),
    ];
    for &(extra, needle) in cases {
        // TOML forbids duplicate keys: drop the line the variation replaces.
        let text = MIN
            .lines()
            .filter(|l| {
                let key = extra.split(' ').next().unwrap();
                !l.starts_with(&format!("{key} "))
            })
            .chain(std::iter::once(extra))
            .collect::<Vec<_>>()
            .join("\n");
        let e = err(&text);
        let msg = e.to_string();
        assert!(msg.contains(needle), "{extra}: {msg}");
        assert!(msg.contains("tunnel \"t0\""), "{extra}: {msg}");
        // The varied key is always the last line.
        let expect_line = text.lines().count();
        assert_eq!(e.line, Some(expect_line), "{extra}: {msg}");
    }
    let e = err(&format!("{MIN}address = [\"fd00::1/64\"]\nmtu = 1000\n"));
    assert_eq!(e.line, Some(7), "{e}");
    assert!(e.message.contains("minimum 1280"), "{e}");
}

#[test]
fn tunnel_level_errors() {
    let no_psk = "\n[[tunnel]]\nname = \"t0\"\nlocal = \"192.0.2.1\"\nremote = \"192.0.2.2\"\n";
    let e = err(no_psk);
    assert!(e.message.contains("psk or psk_file"), "{e}");
    assert!(matches!(e.line, Some(2..=3)), "{e}");

    let dup_name = format!("{MIN}\n{}", MIN.replace("192.0.2.2", "192.0.2.3"));
    let e = err(&dup_name);
    assert_eq!(e.line, Some(8), "{e}");
    assert!(e.message.contains("duplicate tunnel name \"t0\""), "{e}");

    let dup_pair = format!("{MIN}\n{}", MIN.replace("t0", "t1"));
    let e = err(&dup_pair);
    assert_eq!(e.line, Some(10), "{e}");
    assert!(e.message.contains("already uses local 192.0.2.1"), "{e}");

    for bad in ["", "this-name-is-too-long", "a/b", "a b", ".."] {
        let e = err(&MIN.replace("\"t0\"", &format!("{bad:?}")));
        assert_eq!(e.line, Some(2), "{bad}: {e}");
        assert!(e.message.contains("tunnel name"), "{bad}: {e}");
    }
    assert!(parse(&MIN.replace("t0", "vti-a.b_c0123456"), "x").is_err());
    assert!(parse(&MIN.replace("t0", "vti-a.b_c012345"), "x").is_ok());
}

#[test]
fn psk_forms_and_file() {
    let c = parse(&MIN.replace("\"k\"", "\"0x00ff10\""), "x").unwrap();
    assert_eq!(c.tunnels[0].psk.as_bytes(), &[0, 0xff, 0x10]);
    let e = err(&MIN.replace("\"k\"", "\"0xzz\""));
    assert!(e.message.contains("hex"), "{e}");
    let e = err(&MIN.replace("\"k\"", "\"\""));
    assert!(e.message.contains("empty"), "{e}");
    assert_eq!(format!("{:?}", Psk::new(b"x".to_vec())), "<redacted>");

    let dir = std::env::temp_dir().join(format!("routevpn-cfg-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("peer.psk"), b"from file\n").unwrap();
    std::fs::write(dir.join("hex.psk"), b"0x0102\r\n").unwrap();
    let cfg_path = dir.join("routevpn.toml");
    let with_file = MIN.replace("psk = \"k\"", "psk_file = \"peer.psk\"");
    std::fs::write(&cfg_path, &with_file).unwrap();
    // Relative psk_file is resolved against the config file's directory.
    let c = load(&cfg_path).unwrap();
    assert_eq!(c.tunnels[0].psk.as_bytes(), b"from file");
    std::fs::write(&cfg_path, with_file.replace("peer.psk", "hex.psk")).unwrap();
    assert_eq!(load(&cfg_path).unwrap().tunnels[0].psk.as_bytes(), &[1, 2]);
    std::fs::write(&cfg_path, with_file.replace("peer.psk", "missing.psk")).unwrap();
    let e = load(&cfg_path).unwrap_err();
    assert_eq!(e.line, Some(5), "{e}");
    assert!(e.message.contains("cannot read psk_file"), "{e}");
    let e = load(&dir.join("nope.toml")).unwrap_err();
    assert_eq!(e.line, None);
    assert!(e.to_string().contains("nope.toml: cannot read"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn fragment_size_key() {
    assert_eq!(parse(MIN, "x.toml").unwrap().tunnels[0].fragment_size, None);
    let c = parse(&format!("{MIN}fragment_size = 576\n"), "x.toml").unwrap();
    assert_eq!(c.tunnels[0].fragment_size, Some(576));
    let e = err(&format!("{MIN}fragment_size = 100\n"));
    assert_eq!(e.line, Some(6), "{e}");
    assert!(
        e.message.contains("fragment_size must be at least 256"),
        "{e}"
    );
    let e = err(&format!("{MIN}fragment_size = 70000\n"));
    assert_eq!(e.line, Some(6), "{e}");
}

/// `remote = "%any"`: a responder for peers at any address, picked by their identity.
#[test]
fn any_peer() {
    let any = |name: &str, rid: &str| {
        format!("[[tunnel]]\nname = \"{name}\"\nlocal = \"192.0.2.1\"\nremote = \"%any\"\nremote_id = \"{rid}\"\npsk = \"k\"\n")
    };
    let c = parse(
        &format!("{}\n{}", any("t0", "branch1"), any("t1", "branch2")),
        "c.toml",
    )
    .unwrap();
    assert_eq!(c.tunnels[0].remote, None);
    assert!(!c.tunnels[0].start, "%any only responds by default");
    assert_eq!(c.tunnels[1].remote_text(), "%any");

    // Same address (or %any) and the same remote_id: nothing could tell them apart.
    let e = err(&format!(
        "{}\n{}",
        any("t0", "branch1"),
        any("t1", "branch1")
    ));
    assert_eq!(e.line, Some(11), "{e}");
    assert!(e.message.contains("need different remote_id"), "{e}");
    // With a fixed address, different remote_ids may share it too.
    let fixed = MIN.replace("psk", "remote_id = \"a\"\npsk");
    parse(
        &format!(
            "{fixed}\n{}",
            fixed.replace("t0", "t1").replace("\"a\"", "\"b\"")
        ),
        "c.toml",
    )
    .unwrap();

    let e = err(&format!("{}start = true\n", any("t0", "b")));
    assert!(
        e.message.contains("start = true needs the peer's address"),
        "{e}"
    );
    let e = err(&MIN.replace("\"192.0.2.2\"", "\"%any\""));
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("needs remote_id"), "{e}");
    // %any has no address family to clash with.
    parse(
        &any("t0", "b").replace("192.0.2.1", "2001:db8::1"),
        "c.toml",
    )
    .unwrap();
}

/// `remote` as a DNS name, `local` as `%any` or an interface: dynamic addresses.
#[test]
fn names_and_dynamic_locals() {
    let t = |local: &str, remote: &str| {
        format!("[[tunnel]]\nname = \"t0\"\nlocal = \"{local}\"\nremote = \"{remote}\"\nremote_id = \"hub\"\nlocal_id = \"branch\"\npsk = \"k\"\n")
    };
    let c = parse(&t("wan0", "vpn.example.net"), "c.toml").unwrap();
    let c = &c.tunnels[0];
    assert_eq!(
        (c.remote, c.remote_host.as_deref()),
        (None, Some("vpn.example.net"))
    );
    assert!(c.start, "a named peer is initiated to, unlike %any");
    assert!(c.dynamic_local() && c.local.is_ipv4());
    assert_eq!(
        (c.local_text(), c.remote_text()),
        ("wan0".to_string(), "vpn.example.net".to_string())
    );
    let c = parse(&t("%any", "2001:db8::2"), "c.toml").unwrap();
    assert!(c.tunnels[0].local.is_ipv6() && c.tunnels[0].local.is_unspecified());
    assert_eq!(c.tunnels[0].local_text(), "%any");
    // A mistyped address is no name.
    for bad in ["192.0.2.300", "x", "a..b", "-a.b"] {
        let e = err(&t("192.0.2.1", bad));
        assert!(e.message.contains("invalid remote address"), "{bad}: {e}");
    }
    let e = err(&t("wan0", "%any"));
    assert!(e.message.contains("needs a remote address"), "{e}");
    // A dynamic local: so is our own identity.
    let e = err(&t("wan0", "192.0.2.2").replace("local_id = \"branch\"\n", ""));
    assert_eq!(e.line, Some(3), "{e}");
    assert!(e.message.contains("needs local_id"), "{e}");
    // A named peer: its identity is required, and another name may share it.
    let e = err(&t("wan0", "vpn.example.net").replace("remote_id = \"hub\"\n", ""));
    assert_eq!(e.line, Some(4), "{e}");
    assert!(
        e.message.contains("a remote given by name needs remote_id"),
        "{e}"
    );
    let two_hubs = format!(
        "{}\n{}",
        t("192.0.2.1", "hub1.example.net"),
        t("192.0.2.1", "hub2.example.net").replace("t0", "t1")
    );
    parse(&two_hubs, "c.toml").unwrap();
    // One wildcard socket per family: two dynamic locals must agree.
    let two = format!(
        "{}\n{}",
        t("wan0", "192.0.2.2"),
        t("wan1", "192.0.2.3").replace("t0", "t1")
    );
    assert!(err(&two).message.contains("share it"));
}
