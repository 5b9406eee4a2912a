//! Certificate authentication (RFC 7296 §2.15, RFC 7427) in network namespaces:
//! routevpn↔strongSwan 5.9.8 in both roles with certificates made at test time by `pki`
//! (ECDSA P-256 through an intermediate CA, RSA-3072 with PSS and with PKCS#1, Ed25519, ECDSA P-384),
//! the refusals (unknown CA, expired certificate, identity not in the certificate), each
//! seen on both ends, routevpn↔routevpn, and a large RSA chain in IKE fragments.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use testbed::{Routevpn, RvConfig, RvTunnel, Strongswan, SwanConn, TestDir, Topology};

const T: Duration = Duration::from_secs(15);
const DN_A: &str = "C=CH, O=Lab, CN=routerA";
const DN_B: &str = "C=CH, O=Lab, CN=routerB";

fn pki(dir: &Path, args: &[&str], out: &str) {
    let o = Command::new("pki")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("pki");
    assert!(
        o.status.success(),
        "pki {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    std::fs::write(dir.join(out), o.stdout).unwrap();
}

/// `pki --pub --in KEY | pki --issue ...` as two steps.
fn issue(dir: &Path, name: &str, ca: &str, dn: &str, extra: &[&str]) {
    pki(
        dir,
        &["--pub", "--in", &format!("{name}.key")],
        &format!("{name}.pub"),
    );
    let mut args = vec![
        "--issue",
        "--in",
        &format!("{name}.pub"),
        "--type",
        "pub",
        "--cacert",
        &format!("{ca}.pem"),
        "--cakey",
        &format!("{ca}.key"),
        "--dn",
        dn,
        "--outform",
        "pem",
    ]
    .into_iter()
    .map(String::from)
    .collect::<Vec<_>>();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    pki(dir, &args, &format!("{name}.pem"));
}

/// The test PKI, made once per test binary with strongSwan's `pki`.
fn pki_dir() -> &'static Path {
    static DIR: OnceLock<(TestDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let td = TestDir::new("certpki");
        let d = td.path().to_path_buf();
        let gen = |name: &str, ty: &[&str]| {
            let mut a = vec!["--gen"];
            a.extend(ty);
            a.extend(["--outform", "pem"]);
            pki(&d, &a, &format!("{name}.key"));
        };
        gen("root", &["--type", "ecdsa", "--size", "256"]);
        pki(
            &d,
            &[
                "--self",
                "--ca",
                "--in",
                "root.key",
                "--dn",
                "C=CH, O=Lab, CN=Lab Root CA",
                "--outform",
                "pem",
            ],
            "root.pem",
        );
        gen("inter", &["--type", "ecdsa", "--size", "256"]);
        issue(
            &d,
            "inter",
            "root",
            "C=CH, O=Lab, CN=Lab Intermediate CA",
            &["--ca"],
        );
        gen("other", &["--type", "ecdsa", "--size", "256"]);
        pki(
            &d,
            &[
                "--self",
                "--ca",
                "--in",
                "other.key",
                "--dn",
                "C=CH, O=Other, CN=Other CA",
                "--outform",
                "pem",
            ],
            "other.pem",
        );
        for side in ["a", "b"] {
            let (dn, san) = if side == "a" {
                (DN_A, "routerA.example")
            } else {
                (DN_B, "routerB.example")
            };
            gen(
                &format!("{side}-p256"),
                &["--type", "ecdsa", "--size", "256"],
            );
            issue(&d, &format!("{side}-p256"), "inter", dn, &["--san", san]);
            gen(&format!("{side}-rsa"), &["--type", "rsa", "--size", "3072"]);
            issue(&d, &format!("{side}-rsa"), "root", dn, &["--san", san]);
            gen(&format!("{side}-ed25519"), &["--type", "ed25519"]);
            issue(&d, &format!("{side}-ed25519"), "root", dn, &["--san", san]);
            gen(
                &format!("{side}-p384"),
                &["--type", "ecdsa", "--size", "384"],
            );
            issue(&d, &format!("{side}-p384"), "root", dn, &["--san", san]);
        }
        gen("b-expired", &["--type", "ecdsa", "--size", "256"]);
        issue(
            &d,
            "b-expired",
            "root",
            DN_B,
            &[
                "--not-before",
                "01.01.20 00:00:00",
                "--not-after",
                "01.01.21 00:00:00",
            ],
        );
        gen("b-other", &["--type", "ecdsa", "--size", "256"]);
        issue(&d, "b-other", "other", DN_B, &[]);
        // A big RSA chain for IKE fragmentation: 4096-bit intermediate and leaf.
        gen("inter-big", &["--type", "rsa", "--size", "4096"]);
        issue(
            &d,
            "inter-big",
            "root",
            "C=CH, O=Lab, OU=Big, CN=Lab Big RSA Intermediate CA",
            &["--ca"],
        );
        gen("a-big", &["--type", "rsa", "--size", "4096"]);
        issue(&d, "a-big", "inter-big", DN_A, &[]);
        // routevpn takes the leaf followed by its intermediate; keys must be mode 0600.
        for (leaf, ca) in [
            ("a-p256", "inter"),
            ("b-p256", "inter"),
            ("a-big", "inter-big"),
        ] {
            let mut pem = std::fs::read(d.join(format!("{leaf}.pem"))).unwrap();
            pem.extend(std::fs::read(d.join(format!("{ca}.pem"))).unwrap());
            std::fs::write(d.join(format!("{leaf}-chain.pem")), pem).unwrap();
        }
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        (td, d)
    })
    .1
}

/// routevpn on the left with `cert` (the `-chain.pem` if it has one) and CA `ca`.
fn rv_left(cert: &str, ca: &str, remote_id: &str, start: bool, extra: &[&str]) -> RvConfig {
    let d = pki_dir();
    let chain = d.join(format!("{cert}-chain.pem"));
    let certfile = if chain.exists() {
        chain
    } else {
        d.join(format!("{cert}.pem"))
    };
    let mut lines = vec![
        format!("cert = \"{}\"", certfile.display()),
        format!("key = \"{}\"", d.join(format!("{cert}.key")).display()),
        format!("ca = [\"{}\"]", d.join(format!("{ca}.pem")).display()),
    ];
    lines.extend(extra.iter().map(|s| s.to_string()));
    RvConfig {
        tunnels: vec![RvTunnel {
            local: Topology::LEFT_WAN.into(),
            remote: Topology::RIGHT_WAN.into(),
            remote_id: remote_id.into(),
            psk: String::new(),
            ike: vec!["aes256gcm16-prfsha384-x25519".into()],
            esp: vec!["aes256gcm16".into()],
            start,
            extra: lines,
            ..RvTunnel::default()
        }],
        ..RvConfig::default()
    }
}

/// strongSwan on the right with certificate `cert`, trusting `cas`.
fn swan_right(
    ns: &testbed::Netns,
    cert: &str,
    cas: &[&str],
    remote_id: &str,
    start: bool,
    charon_settings: &str,
) -> Strongswan {
    let d = pki_dir();
    let conf = testbed::STRONGSWAN_CONF
        .replace(
            "pem pkcs1 x509 pubkey kernel-libipsec",
            "pem pkcs1 pkcs8 x509 revocation constraints pubkey kernel-libipsec",
        )
        .replace(
            "swanctl { load = pem pkcs1",
            "swanctl { load = pem pkcs1 pkcs8",
        )
        .replace("  syslog {", &format!("  {charon_settings}\n  syslog {{"));
    let sw = Strongswan::start_with(ns, &[], &conf).unwrap();
    let sd = sw.dir().join("swanctl");
    let key_dir = if cert.contains("rsa") || cert.contains("big") {
        "rsa"
    } else if cert.contains("ed25519") {
        "pkcs8"
    } else {
        "ecdsa"
    };
    std::fs::copy(
        d.join(format!("{cert}.pem")),
        sd.join("x509").join(format!("{cert}.pem")),
    )
    .unwrap();
    std::fs::copy(
        d.join(format!("{cert}.key")),
        sd.join(key_dir).join(format!("{cert}.key")),
    )
    .unwrap();
    for ca in cas {
        std::fs::copy(
            d.join(format!("{ca}.pem")),
            sd.join("x509ca").join(format!("{ca}.pem")),
        )
        .unwrap();
    }
    let conn = SwanConn {
        local_addr: Topology::RIGHT_WAN.into(),
        remote_addr: Topology::LEFT_WAN.into(),
        local_id: format!("\"{DN_B}\""),
        remote_id: format!("\"{remote_id}\""),
        ike_proposals: "aes256gcm16-prfsha384-x25519".into(),
        esp_proposals: "aes256gcm16".into(),
        local_ts: format!("{},{}", Topology::RIGHT_NET, Topology::RIGHT_NET6),
        remote_ts: format!("{},{}", Topology::LEFT_NET, Topology::LEFT_NET6),
        start_action: if start { "start" } else { "none" }.into(),
        cert: Some(format!("{cert}.pem")),
        ..SwanConn::default()
    };
    sw.reconfigure(&[conn])
        .unwrap_or_else(|e| panic!("{e}\n{}", testbed::tail(&sw.log(), 40)));
    sw
}

fn tunnel(status: &Value) -> Value {
    status["tunnels"][0].clone()
}

fn wait_error(rv: &Routevpn, needle: &str) -> String {
    rv.wait_last_error(needle, T)
        .unwrap_or_else(|e| panic!("{e}\nrouteVPN log:\n{}", testbed::tail(&rv.log(), 60)))
}

/// (routevpn's certificate, strongSwan's, CAs strongSwan loads, rsa_pss, what strongSwan logs)
const SUITES: &[(&str, &str, &[&str], bool, &str)] = &[
    ("a-p256", "b-p256", &["root", "inter"], false, "ECDSA"),
    ("a-rsa", "b-rsa", &["root"], true, "RSA_EMSA_PSS"),
    ("a-rsa", "b-rsa", &["root"], false, "RSA_EMSA_PKCS1"),
    ("a-ed25519", "b-ed25519", &["root"], false, "ED25519"),
    ("a-p384", "b-p384", &["root"], false, "ECDSA"),
];

#[test]
fn strongswan_accepts_and_is_accepted_in_both_roles() {
    if !testbed::require_programs(&["pki"]) {
        return;
    }
    for &(ours, theirs, cas, pss, swan_alg) in SUITES {
        for rv_initiates in [true, false] {
            let what = format!("{ours}/{theirs} pss={pss} routevpn initiator={rv_initiates}");
            let topo = Topology::two_sites();
            let sw = swan_right(
                &topo.right,
                theirs,
                cas,
                DN_A,
                false,
                if pss { "rsa_pss = yes" } else { "" },
            );
            let extra: &[&str] = if pss { &["rsa_pss = true"] } else { &[] };
            let rv = Routevpn::start(
                &topo.left,
                &rv_left(ours, "root", DN_B, rv_initiates, extra),
            )
            .unwrap();
            if !rv_initiates {
                sw.initiate("net").ok();
            }
            let t = testbed::wait_tunnel_up(&rv, T);
            assert_eq!(t["peer_cert"]["subject"], DN_B, "{what}");
            assert_eq!(t["ike_sas"][0]["initiator"], rv_initiates, "{what}");
            let needle = format!("authentication of '{DN_A}' with");
            let line = swan_line(&sw, &needle).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(line.contains("successful"), "{what}: {line}");
            assert!(line.contains(swan_alg), "{what}: {line}");
            sw.wait_established("tun", T)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
        }
    }
}

/// The first line of strongSwan's log that contains `needle`.
fn swan_line(sw: &Strongswan, needle: &str) -> Result<String, String> {
    let log = sw.wait_log(needle, T)?;
    Ok(log
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_default()
        .to_string())
}

/// (routevpn cert, routevpn ca, routevpn remote_id, strongSwan cert, strongSwan CAs,
/// routevpn's last_error, strongSwan's log line)
type Refusal = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
);

/// Each refusal ends IKE_AUTH on both ends: routevpn's status names what is wrong, and
/// strongSwan logs the AUTHENTICATION_FAILED it sent or received.
#[test]
fn refusals_are_authentication_failed_on_both_ends() {
    if !testbed::require_programs(&["pki"]) {
        return;
    }
    // (routevpn cert, routevpn ca, routevpn remote_id, strongSwan cert, strongSwan CAs,
    //  routevpn's last_error, strongSwan's log line)
    let cases: &[Refusal] = &[
        // strongSwan's certificate is from a CA routevpn does not trust.
        (
            "a-p256",
            "root",
            DN_B,
            "b-other",
            &["root", "inter"],
            "not issued by any configured ca (issuer \"C=CH, O=Other, CN=Other CA\")",
            "INFORMATIONAL request 2 [ N(AUTH_FAILED) ]",
        ),
        // routevpn's certificate is from a CA strongSwan does not trust.
        (
            "a-p256",
            "other",
            DN_B,
            "b-other",
            &["other"],
            "peer rejected our authentication",
            "no trusted ECDSA public key found for 'C=CH, O=Lab, CN=routerA'",
        ),
        // strongSwan's certificate expired.
        (
            "a-p256",
            "root",
            DN_B,
            "b-expired",
            &["root", "inter"],
            "expired on 2021-01-01 00:00:00 UTC",
            "INFORMATIONAL request 2 [ N(AUTH_FAILED) ]",
        ),
        // strongSwan's identity is not the one routevpn expects (an identity outside its
        // certificate cannot be provoked from a stock charon; the in-memory tests cover it).
        (
            "a-p256",
            "root",
            "routerX.example",
            "b-p256",
            &["root", "inter"],
            "does not match remote_id",
            "INFORMATIONAL request 2 [ N(AUTH_FAILED) ]",
        ),
    ];
    for &(ours, ca, rid, theirs, cas, rv_err, swan_log) in cases {
        let topo = Topology::two_sites();
        let sw = swan_right(&topo.right, theirs, cas, DN_A, false, "");
        let rv = Routevpn::start(&topo.left, &rv_left(ours, ca, rid, true, &[])).unwrap();
        let e = wait_error(&rv, rv_err);
        assert!(e.starts_with("AUTHENTICATION_FAILED"), "{e}");
        swan_line(&sw, swan_log).unwrap_or_else(|e| {
            panic!(
                "{theirs}: {e}\nrouteVPN log:\n{}\ncharon log:\n{}",
                testbed::tail(&rv.log(), 30),
                testbed::tail(&sw.log(), 40)
            )
        });
        assert!(tunnel(&rv.status().unwrap())["state"] != "up");
    }
}

#[test]
fn routevpn_to_routevpn_with_certificates() {
    if !testbed::require_programs(&["pki"]) {
        return;
    }
    let topo = Topology::two_sites();
    let mut right = rv_left("b-p256", "root", DN_A, false, &[]);
    let t = &mut right.tunnels[0];
    std::mem::swap(&mut t.local, &mut t.remote);
    let b = Routevpn::start(&topo.right, &right).unwrap();
    let a = Routevpn::start(&topo.left, &rv_left("a-p256", "root", DN_B, true, &[])).unwrap();
    let ta = testbed::wait_tunnel_up(&a, T);
    let tb = testbed::wait_tunnel_up(&b, T);
    assert_eq!(ta["peer_cert"]["subject"], DN_B);
    assert_eq!(
        ta["peer_cert"]["issuer"],
        "C=CH, O=Lab, CN=Lab Intermediate CA"
    );
    assert_eq!(tb["peer_cert"]["subject"], DN_A);
    assert_eq!(ta["local_id"], DN_A);
}

/// A 4096-bit RSA leaf and intermediate do not fit one datagram: routevpn's IKE_AUTH
/// reaches strongSwan as RFC 7383 fragments and authenticates.
#[test]
fn large_rsa_chain_goes_in_fragments() {
    if !testbed::require_programs(&["pki"]) {
        return;
    }
    let topo = Topology::two_sites();
    let sw = swan_right(
        &topo.right,
        "b-rsa",
        &["root", "inter-big"],
        DN_A,
        false,
        "",
    );
    let rv = Routevpn::start(
        &topo.left,
        &rv_left("a-big", "root", DN_B, true, &["fragment_size = 1280"]),
    )
    .unwrap();
    testbed::wait_tunnel_up(&rv, T);
    let line = swan_line(&sw, "received fragment #").unwrap();
    assert!(line.contains("of"), "{line}");
    swan_line(&sw, &format!("authentication of '{DN_A}' with RSA")).unwrap();
}

/// A peer without RFC 7427 (strongSwan's `signature_authentication = no` sends no
/// SIGNATURE_HASH_ALGORITHMS): both ends fall back to ECDSA method 9 (RFC 4754).
#[test]
fn classic_ecdsa_without_rfc_7427_in_both_roles() {
    if !testbed::require_programs(&["pki"]) {
        return;
    }
    for rv_initiates in [true, false] {
        let topo = Topology::two_sites();
        let sw = swan_right(
            &topo.right,
            "b-p256",
            &["root", "inter"],
            DN_A,
            false,
            "signature_authentication = no",
        );
        let rv = Routevpn::start(
            &topo.left,
            &rv_left("a-p256", "root", DN_B, rv_initiates, &[]),
        )
        .unwrap();
        if !rv_initiates {
            sw.initiate("net").ok();
        }
        let t = testbed::wait_tunnel_up(&rv, T);
        assert_eq!(t["ike_sas"][0]["initiator"], rv_initiates);
        let line = swan_line(&sw, &format!("authentication of '{DN_A}' with")).unwrap();
        assert!(line.contains("ECDSA-256 signature successful"), "{line}");
    }
}
