//! IKE_AUTH with certificates (RFC 7296 §2.15, RFC 7427): every key type in both roles,
//! and each way it is refused, on both ends with AUTHENTICATION_FAILED.

use super::*;
use crate::cert::{CertAuth, Credentials, Dn, TrustStore};
use crate::iana::{IdType, PayloadType};
use std::sync::Arc;

/// 2027-06-01: the fixtures were made on 2026-12-01 for 20 years.
const NOW: u64 = 1_811_808_000;

use crate::cert::fixture;

fn dn(s: &str) -> IdPayload {
    IdPayload::new(IdType::DER_ASN1_DN, Dn::parse(s).unwrap().to_der())
}

const DN_A: &str = "C=CH, O=Lab, CN=routerA";
const DN_B: &str = "C=CH, O=Lab, CN=routerB";

fn cert_config(
    name: &str,
    creds: Credentials,
    remote_id: IdPayload,
    cas: &[&str],
    rsa_pss: bool,
    initiate: bool,
) -> SessionConfig {
    let ike = ["aes256gcm16-prfsha384-x25519"];
    let mut c = config(name, "-", "-", &ike, &["aes256gcm16"], "", initiate);
    c.local_id = IdPayload::new(IdType::DER_ASN1_DN, creds.subject_der.clone());
    c.remote_id = remote_id;
    let cas: Vec<Vec<u8>> = cas.iter().map(|n| fixture(n)).collect();
    c.cert = Some(Arc::new(CertAuth {
        credentials: creds,
        trust: TrustStore::new(&cas, &[]).unwrap(),
        rsa_pss,
    }));
    c
}

fn creds(n: &str) -> Credentials {
    Credentials::from_pem(&fixture(&format!("{n}.pem")), &fixture(&format!("{n}.key"))).unwrap()
}

/// A (initiator) with `a`, B (responder) with `b`, both trusting the lab root CA.
fn pair_with(a: SessionConfig, b: SessionConfig) -> Pair {
    let mut p = Pair::new(a, b);
    p.a.set_unix_time(NOW);
    p.b.set_unix_time(NOW);
    p.start();
    p
}

fn assert_refused(p: &Pair, side_with_error: bool, needle: &str) {
    assert_eq!(
        closed_with(&p.events_a),
        Some(NotifyType::AUTHENTICATION_FAILED)
    );
    assert_eq!(
        closed_with(&p.events_b),
        Some(NotifyType::AUTHENTICATION_FAILED)
    );
    assert!(!p.a.is_established() && !p.b.is_established());
    let s = if side_with_error { &p.a } else { &p.b };
    let err = s.status(p.now).last_error.unwrap();
    assert!(err.contains(needle), "{err}");
}

#[test]
fn every_key_type_authenticates_in_both_roles() {
    for (a, b, pss) in [
        ("a-p256", "b-p256", false),
        ("a-p384", "b-p384", false),
        ("a-rsa", "b-rsa", false),
        ("a-rsa", "b-rsa", true),
        ("a-ed25519", "b-ed25519", false),
        // Each role with a different key type.
        ("a-ed25519", "b-rsa", true),
        ("a-p384", "b-p256", false),
        // And the reverse: B's key types as initiator.
        ("b-p256", "a-p384", false),
    ] {
        let (ida, idb) = if a.starts_with('a') {
            (DN_B, DN_A)
        } else {
            (DN_A, DN_B)
        };
        let p = pair_with(
            cert_config("a", creds(a), dn(ida), &["root-ca.pem"], pss, true),
            cert_config("b", creds(b), dn(idb), &["root-ca.pem"], pss, false),
        );
        assert!(p.a.is_established() && p.b.is_established(), "{a} ↔ {b}");
        assert_child_pair(&p);
        let peer_a = p.a.status(p.now).peer_cert.unwrap();
        let peer_b = p.b.status(p.now).peer_cert.unwrap();
        assert_eq!(peer_a.subject.to_string(), ida);
        assert_eq!(peer_b.subject.to_string(), idb);
    }
}

#[test]
fn identities_may_be_subject_alt_names() {
    let mut a = cert_config(
        "a",
        creds("a-p256"),
        IdPayload::rfc822("routerb@lab.example"),
        &["root-ca.pem"],
        false,
        true,
    );
    a.local_id = IdPayload::fqdn("routerA.example");
    let mut b = cert_config(
        "b",
        creds("b-p256"),
        IdPayload::fqdn("routerA.example"),
        &["root-ca.pem"],
        false,
        false,
    );
    b.local_id = IdPayload::rfc822("routerb@lab.example");
    let p = pair_with(a, b);
    assert!(p.a.is_established() && p.b.is_established());
    // The intermediate came in the CERT payloads: B's subject shows A's issuer.
    assert_eq!(
        p.b.status(p.now).peer_cert.unwrap().issuer.to_string(),
        "C=CH, O=Lab, CN=Lab Intermediate CA"
    );
}

#[test]
fn unknown_ca_is_refused_on_both_ends() {
    // B's certificate is from a CA that A does not trust.
    let p = pair_with(
        cert_config(
            "a",
            creds("a-p256"),
            dn(DN_B),
            &["root-ca.pem"],
            false,
            true,
        ),
        cert_config(
            "b",
            creds("other-b"),
            dn(DN_A),
            &["root-ca.pem"],
            false,
            false,
        ),
    );
    assert_refused(&p, true, "peer certificate \"C=CH, O=Lab, CN=routerB\" not issued by any configured ca (issuer \"C=CH, O=Other, CN=Other CA\")");
    // And the initiator's, refused by the responder.
    let p = pair_with(
        cert_config(
            "a",
            creds("a-p256"),
            dn(DN_B),
            &["other-ca.pem"],
            false,
            true,
        ),
        cert_config(
            "b",
            creds("b-p256"),
            dn(DN_A),
            &["other-ca.pem"],
            false,
            false,
        ),
    );
    assert_refused(&p, false, "not issued by any configured ca");
}

#[test]
fn expired_certificate_is_refused_on_both_ends() {
    let p = pair_with(
        cert_config(
            "a",
            creds("a-p256"),
            dn(DN_B),
            &["root-ca.pem"],
            false,
            true,
        ),
        cert_config(
            "b",
            creds("expired-b"),
            dn(DN_A),
            &["root-ca.pem"],
            false,
            false,
        ),
    );
    assert_refused(
        &p,
        true,
        "peer certificate \"C=CH, O=Lab, CN=routerB\" expired on 2021-01-01 00:00:00 UTC",
    );
    // The same certificates pass while they are valid: the time is the caller's.
    let mut p = Pair::new(
        cert_config(
            "a",
            creds("expired-b"),
            dn(DN_A),
            &["root-ca.pem"],
            false,
            true,
        ),
        cert_config(
            "b",
            creds("a-p256"),
            dn(DN_B),
            &["root-ca.pem"],
            false,
            false,
        ),
    );
    p.a.set_unix_time(NOW);
    p.b.set_unix_time(NOW);
    p.start();
    assert_refused(&p, false, "expired on 2021-01-01");
}

#[test]
fn identity_not_in_certificate_is_refused_on_both_ends() {
    let mut a = cert_config(
        "a",
        creds("a-p256"),
        IdPayload::fqdn("routerX.example"),
        &["root-ca.pem"],
        false,
        true,
    );
    a.local_id = IdPayload::fqdn("routerA.example");
    let mut b = cert_config(
        "b",
        creds("b-p256"),
        IdPayload::fqdn("routerA.example"),
        &["root-ca.pem"],
        false,
        false,
    );
    b.local_id = IdPayload::fqdn("routerX.example");
    let p = pair_with(a, b);
    assert_refused(
        &p,
        true,
        "peer identity \"routerX.example\" is not in its certificate \"C=CH, O=Lab, CN=routerB\"",
    );
    // A DN that is not the subject, as the initiator's identity.
    let mut a = cert_config(
        "a",
        creds("a-p256"),
        dn(DN_B),
        &["root-ca.pem"],
        false,
        true,
    );
    a.local_id = dn("C=CH, O=Lab, CN=routerZ");
    let b = cert_config(
        "b",
        creds("b-p256"),
        dn("C=CH, O=Lab, CN=routerZ"),
        &["root-ca.pem"],
        false,
        false,
    );
    let p = pair_with(a, b);
    assert_refused(&p, false, "is not in its certificate");
}

#[test]
fn wrong_key_is_refused_on_both_ends() {
    let wrong = Credentials::with_foreign_key(&fixture("b-p256.pem"), &fixture("other-b.key"));
    let p = pair_with(
        cert_config(
            "a",
            creds("a-p256"),
            dn(DN_B),
            &["root-ca.pem"],
            false,
            true,
        ),
        cert_config("b", wrong, dn(DN_A), &["root-ca.pem"], false, false),
    );
    assert_refused(
        &p,
        true,
        "does not verify with the key of certificate \"C=CH, O=Lab, CN=routerB\"",
    );
    let wrong = Credentials::with_foreign_key(&fixture("a-rsa.pem"), &fixture("b-rsa.key"));
    let p = pair_with(
        cert_config("a", wrong, dn(DN_B), &["root-ca.pem"], true, true),
        cert_config("b", creds("b-rsa"), dn(DN_A), &["root-ca.pem"], true, false),
    );
    assert_refused(&p, false, "does not verify with the key of certificate");
}

#[test]
fn psk_peer_is_refused_by_a_certificate_tunnel() {
    let mut a = config(
        "a",
        "routerA",
        "routerB",
        &["aes256gcm16-prfsha384-x25519"],
        &["aes256gcm16"],
        "s",
        true,
    );
    a.remote_id = dn(DN_B);
    a.local_id = dn(DN_A);
    let b = cert_config(
        "b",
        creds("b-p256"),
        dn(DN_A),
        &["root-ca.pem"],
        false,
        false,
    );
    let p = pair_with(a, b);
    assert_refused(
        &p,
        false,
        "peer authenticates with PSK, we require a certificate",
    );
}

#[test]
fn large_rsa_chain_is_fragmented() {
    let mut a = cert_config("a", creds("a-rsa"), dn(DN_B), &["root-ca.pem"], true, true);
    let mut b = cert_config("b", creds("b-rsa"), dn(DN_A), &["root-ca.pem"], true, false);
    a.fragment_size = 500;
    b.fragment_size = 500;
    let p = pair_with(a, b);
    assert!(p.a.is_established() && p.b.is_established());
    // RFC 7383: IKE_AUTH went as SKF fragments both ways.
    let skf = |from_a: bool| {
        p.wire_log
            .iter()
            .filter(|(a, d)| {
                *a == from_a
                    && crate::wire::Header::decode(&d.data)
                        .is_ok_and(|h| h.next_payload == PayloadType::SKF)
            })
            .count()
    };
    assert!(skf(true) >= 3, "initiator fragments: {}", skf(true));
    assert!(skf(false) >= 3, "responder fragments: {}", skf(false));
}
