use super::*;

fn ike(s: &str) -> AlgorithmProposal {
    parse(s, Protocol::Ike).unwrap()
}
fn esp(s: &str) -> AlgorithmProposal {
    parse(s, Protocol::Esp).unwrap()
}

/// A peer's long list is named only in part (it goes into logs and `status`).
#[test]
fn offered_list_description_is_bounded() {
    let one = ike("aes128gcm16-prfsha256-ecp256");
    let many: Vec<WireProposal> = (1..=100).map(|n| to_wire(&one, n, vec![], true)).collect();
    let d = describe_offered(&many, Protocol::Ike);
    assert!(d.ends_with(", … and 92 more"), "{d}");
    assert_eq!(
        d.matches("ECP_256").count() + d.matches("ecp256").count(),
        8,
        "{d}"
    );
    assert!(!describe_offered(&many[..3], Protocol::Ike).contains("more"));
}

#[test]
fn every_encryption_keyword() {
    let cases: &[(&str, EncrId, u16)] = &[
        ("aes", EncrId::AES_CBC, 128),
        ("aes128", EncrId::AES_CBC, 128),
        ("aes192", EncrId::AES_CBC, 192),
        ("aes256", EncrId::AES_CBC, 256),
        ("aes128gcm16", EncrId::AES_GCM_16, 128),
        ("aes128gcm128", EncrId::AES_GCM_16, 128),
        ("aes128gcm", EncrId::AES_GCM_16, 128),
        ("aes192gcm16", EncrId::AES_GCM_16, 192),
        ("aes192gcm", EncrId::AES_GCM_16, 192),
        ("aes256gcm16", EncrId::AES_GCM_16, 256),
        ("aes256gcm", EncrId::AES_GCM_16, 256),
        ("aes256gcm128", EncrId::AES_GCM_16, 256),
        ("aes128gcm12", EncrId::AES_GCM_12, 128),
        ("aes128gcm96", EncrId::AES_GCM_12, 128),
        ("aes192gcm12", EncrId::AES_GCM_12, 192),
        ("aes256gcm12", EncrId::AES_GCM_12, 256),
        ("aes128gcm8", EncrId::AES_GCM_8, 128),
        ("aes128gcm64", EncrId::AES_GCM_8, 128),
        ("aes192gcm8", EncrId::AES_GCM_8, 192),
        ("aes256gcm8", EncrId::AES_GCM_8, 256),
        ("aes256gcm64", EncrId::AES_GCM_8, 256),
    ];
    for &(kw, id, bits) in cases {
        let s = if is_aead(id) {
            kw.to_string()
        } else {
            format!("{kw}-sha256")
        };
        let p = esp(&s);
        assert_eq!(p.encr, vec![(id, Some(bits))], "{kw}");
        assert_eq!(p.is_aead(), is_aead(id), "{kw}");
    }
}

#[test]
fn every_integrity_and_prf_keyword() {
    let cases = [
        ("sha256", IntegId::HMAC_SHA2_256_128, PrfId::HMAC_SHA2_256),
        ("sha2_256", IntegId::HMAC_SHA2_256_128, PrfId::HMAC_SHA2_256),
        ("sha384", IntegId::HMAC_SHA2_384_192, PrfId::HMAC_SHA2_384),
        ("sha2_384", IntegId::HMAC_SHA2_384_192, PrfId::HMAC_SHA2_384),
        ("sha512", IntegId::HMAC_SHA2_512_256, PrfId::HMAC_SHA2_512),
        ("sha2_512", IntegId::HMAC_SHA2_512_256, PrfId::HMAC_SHA2_512),
    ];
    for (kw, integ, prf) in cases {
        // IKE without explicit PRF: PRF follows the integrity hash.
        let p = ike(&format!("aes128-{kw}-modp2048"));
        assert_eq!(p.integ, vec![integ], "{kw}");
        assert_eq!(p.prf, vec![prf], "{kw}");
        let p = esp(&format!("aes128-{kw}"));
        assert_eq!(p.integ, vec![integ]);
        assert!(p.prf.is_empty());
    }
    for (kw, prf) in [
        ("prfsha256", PrfId::HMAC_SHA2_256),
        ("prfsha2_256", PrfId::HMAC_SHA2_256),
        ("prfsha384", PrfId::HMAC_SHA2_384),
        ("prfsha2_384", PrfId::HMAC_SHA2_384),
        ("prfsha512", PrfId::HMAC_SHA2_512),
        ("prfsha2_512", PrfId::HMAC_SHA2_512),
    ] {
        assert_eq!(ike(&format!("aes128gcm16-{kw}-ecp256")).prf, vec![prf]);
    }
    // An explicit PRF overrides the implied one.
    assert_eq!(
        ike("aes128-sha256-prfsha512-ecp256").prf,
        vec![PrfId::HMAC_SHA2_512]
    );
}

#[test]
fn every_group_and_esn_keyword() {
    for (kw, id) in [
        ("modp2048", DhId::MODP_2048),
        ("modp3072", DhId::MODP_3072),
        ("modp4096", DhId::MODP_4096),
        ("ecp256", DhId::ECP_256),
        ("ecp384", DhId::ECP_384),
        ("x25519", DhId::CURVE25519),
        ("curve25519", DhId::CURVE25519),
    ] {
        assert_eq!(ike(&format!("aes256gcm16-prfsha256-{kw}")).dh, vec![id]);
        assert_eq!(esp(&format!("aes256gcm16-{kw}")).dh, vec![id]);
    }
    assert_eq!(esp("aes128-sha256-esn").esn, vec![EsnId::ESN]);
    assert_eq!(esp("aes128-sha256-noesn").esn, vec![EsnId::NO_ESN]);
    assert_eq!(esp("aes128-sha256").esn, vec![EsnId::NO_ESN]);
    assert_eq!(
        esp("aes128-sha256-esn-noesn").esn,
        vec![EsnId::ESN, EsnId::NO_ESN]
    );
}

#[test]
fn full_examples_and_alternatives() {
    let p = ike("aes256gcm16-prfsha384-x25519");
    assert_eq!(
        p,
        AlgorithmProposal {
            protocol: Protocol::Ike,
            encr: vec![(EncrId::AES_GCM_16, Some(256))],
            integ: vec![],
            prf: vec![PrfId::HMAC_SHA2_384],
            dh: vec![DhId::CURVE25519],
            esn: vec![],
        }
    );
    let p = ike("aes128-aes256-sha256-sha384-modp2048-ecp384");
    assert_eq!(
        p.encr,
        vec![(EncrId::AES_CBC, Some(128)), (EncrId::AES_CBC, Some(256))]
    );
    assert_eq!(
        p.integ,
        vec![IntegId::HMAC_SHA2_256_128, IntegId::HMAC_SHA2_384_192]
    );
    assert_eq!(p.prf, vec![PrfId::HMAC_SHA2_256, PrfId::HMAC_SHA2_384]);
    assert_eq!(p.dh, vec![DhId::MODP_2048, DhId::ECP_384]);
    // Case-insensitive, duplicates collapse.
    assert_eq!(
        ike("AES128-SHA256-sha256-MODP2048"),
        ike("aes128-sha256-modp2048")
    );
    let p = esp("aes256gcm16-x25519");
    assert_eq!(p.dh, vec![DhId::CURVE25519]);
    assert_eq!(p.esn, vec![EsnId::NO_ESN]);
}

#[test]
fn errors() {
    let e = parse("aes257-sha256", Protocol::Ike).unwrap_err();
    assert_eq!(
        e.to_string(),
        "unsupported algorithm \"aes257\" in \"aes257-sha256\"; supported: \
         aes128gcm16, aes192gcm16, aes256gcm16, aes128gcm12, aes192gcm12, aes256gcm12, \
         aes128gcm8, aes192gcm8, aes256gcm8, aes128, aes192, aes256 (encryption), \
         sha256, sha384, sha512 (integrity), prfsha256, prfsha384, prfsha512 (PRF), \
         modp2048, modp3072, modp4096, ecp256, ecp384, x25519 (key exchange)"
    );
    assert_eq!(e.reason(), "unsupported algorithm \"aes257\"");
    assert_eq!(e.supported(), Some(supported(Protocol::Ike)));
    assert_eq!(e.proposal(), "aes257-sha256");
    let err = |s: &str, p| parse(s, p).unwrap_err();
    assert!(matches!(
        err("", Protocol::Esp),
        ProposalError::Invalid { .. }
    ));
    assert!(matches!(
        err("aes128--sha256", Protocol::Esp),
        ProposalError::Invalid { .. }
    ));
    assert!(matches!(
        err("sha256-modp2048", Protocol::Ike),
        ProposalError::Missing {
            what: "encryption",
            ..
        }
    ));
    assert!(matches!(
        err("aes128-modp2048", Protocol::Ike),
        ProposalError::Missing {
            what: "integrity",
            ..
        }
    ));
    assert!(matches!(
        err("aes128", Protocol::Esp),
        ProposalError::Missing {
            what: "integrity",
            ..
        }
    ));
    assert!(matches!(
        err("aes128-sha256", Protocol::Ike),
        ProposalError::Missing {
            what: "key exchange (DH group)",
            ..
        }
    ));
    let e = err("aes128gcm16-ecp256", Protocol::Ike);
    assert!(e.to_string().starts_with("no PRF"), "{e}");
    let e = err("aes128gcm16-sha256", Protocol::Esp);
    assert!(e.to_string().contains("AEAD"), "{e}");
    let e = err("aes128gcm16-aes128-sha256", Protocol::Esp);
    assert!(e.to_string().contains("mixed"), "{e}");
    let e = err("aes128-sha256-prfsha256", Protocol::Esp);
    assert!(e.to_string().contains("PRF"), "{e}");
    let e = err("aes128-sha256-modp2048-esn", Protocol::Ike);
    assert!(e.to_string().contains("esn"), "{e}");
    // strongSwan keywords we do not implement are rejected, not ignored.
    assert!(matches!(
        err("3des-sha1-modp1024", Protocol::Ike),
        ProposalError::UnknownKeyword { .. }
    ));
}

#[test]
fn defaults_parse_and_are_modern() {
    let ikes = default_ike();
    assert_eq!(ikes.len(), 2);
    assert!(ikes[0].is_aead());
    assert_eq!(ikes[0].dh[0], DhId::CURVE25519);
    assert!(!ikes[1].is_aead());
    assert!(ikes[1].prf.contains(&PrfId::HMAC_SHA2_256));
    for p in &ikes {
        assert_eq!(p.protocol, Protocol::Ike);
        assert!(p.dh.contains(&DhId::MODP_2048) && p.dh.contains(&DhId::ECP_256));
    }
    let esps = default_esp();
    assert_eq!(esps.len(), 2);
    assert_eq!(esps[0].encr[0], (EncrId::AES_GCM_16, Some(256)));
    for p in &esps {
        assert_eq!(p.protocol, Protocol::Esp);
        assert!(p.dh.is_empty());
        assert_eq!(p.esn, vec![EsnId::NO_ESN, EsnId::ESN]);
    }
    // The defaults agree with themselves.
    let (i, s) = select(&ikes, &ikes).unwrap();
    assert_eq!(i, 0);
    assert_eq!(
        s.to_string(),
        "AES_GCM_16_256/PRF_HMAC_SHA2_384/CURVE_25519"
    );
    let (_, s) = select(&esps, &esps).unwrap();
    assert_eq!(s.to_string(), "AES_GCM_16_256/NO_EXT_SEQ");
}

#[test]
fn display() {
    assert_eq!(
        ike("aes256gcm16-prfsha384-x25519").to_string(),
        "IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/CURVE_25519"
    );
    assert_eq!(
        ike("aes128-sha256-modp2048").to_string(),
        "IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048"
    );
    assert_eq!(
        esp("aes128-sha512-esn").to_string(),
        "ESP:AES_CBC_128/HMAC_SHA2_512_256/EXT_SEQ"
    );
    let s = Selected {
        encr: (EncrId::AES_CBC, Some(256)),
        integ: Some(IntegId::HMAC_SHA2_384_192),
        prf: None,
        dh: Some(DhId::NONE),
        esn: Some(EsnId::NO_ESN),
    };
    assert_eq!(s.to_string(), "AES_CBC_256/HMAC_SHA2_384_192/NO_EXT_SEQ");
    let s = Selected {
        encr: (EncrId(1000), None),
        integ: None,
        prf: None,
        dh: None,
        esn: None,
    };
    assert_eq!(s.to_string(), "EncrId(1000)");
}

#[test]
fn selection_follows_initiator_order() {
    let local = vec![
        ike("aes128-sha256-modp2048"),
        ike("aes256gcm16-prfsha384-x25519"),
    ];
    let offered = vec![
        ike("aes256gcm16-prfsha384-ecp384"), // group not accepted locally
        ike("aes256gcm16-prfsha384-x25519"),
        ike("aes128-sha256-modp2048"),
    ];
    let (i, s) = select(&local, &offered).unwrap();
    assert_eq!(i, 1);
    assert_eq!(
        s,
        Selected {
            encr: (EncrId::AES_GCM_16, Some(256)),
            integ: None,
            prf: Some(PrfId::HMAC_SHA2_384),
            dh: Some(DhId::CURVE25519),
            esn: None,
        }
    );
    // Within a transform type the initiator's order decides as well.
    let local = vec![ike("aes128-aes256-sha256-sha384-ecp256-modp2048")];
    let offered = vec![ike("aes256-aes128-sha384-sha256-modp2048-ecp256")];
    let (_, s) = select(&local, &offered).unwrap();
    assert_eq!(s.encr, (EncrId::AES_CBC, Some(256)));
    assert_eq!(s.integ, Some(IntegId::HMAC_SHA2_384_192));
    assert_eq!(s.prf, Some(PrfId::HMAC_SHA2_384));
    assert_eq!(s.dh, Some(DhId::MODP_2048));
    assert_eq!(
        s.to_string(),
        "AES_CBC_256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/MODP_2048"
    );
    assert_eq!(select(&local, &[]), None);
    assert_eq!(select(&[], &offered), None);
}

#[test]
fn key_length_must_match() {
    let local = vec![ike("aes256-sha256-modp2048")];
    assert_eq!(select(&local, &[ike("aes128-sha256-modp2048")]), None);
    assert_eq!(select(&[esp("aes256gcm16")], &[esp("aes128gcm16")]), None);
    assert!(select(&local, &[ike("aes128-aes256-sha256-modp2048")]).is_some());
    // Different ICV lengths are different algorithms.
    assert_eq!(select(&[esp("aes256gcm16")], &[esp("aes256gcm8")]), None);
    // A peer's fixed-length (no Key Length attribute) cipher does not match either.
    let mut odd = esp("aes256gcm16");
    odd.encr = vec![(EncrId::AES_GCM_16, None)];
    assert_eq!(select(&[esp("aes256gcm16")], &[odd]), None);
}

#[test]
fn no_mixing_across_local_proposals() {
    // aes128 from one local proposal and modp2048 from another must not combine.
    let local = vec![ike("aes128-sha256-ecp256"), ike("aes256-sha256-modp2048")];
    assert_eq!(select(&local, &[ike("aes128-sha256-modp2048")]), None);
    // Protocols must agree.
    assert_eq!(
        select(&[esp("aes128-sha256")], &[ike("aes128-sha256-modp2048")]),
        None
    );
}

#[test]
fn esp_dh_none_handling() {
    let no_pfs = vec![esp("aes256gcm16")];
    // Peer omits KE: fine without PFS, reply omits it too.
    let (_, s) = select(&no_pfs, &[esp("aes256gcm16")]).unwrap();
    assert_eq!(s.dh, None);
    assert_eq!(s.dh_group(), None);
    // Peer offers KE with an explicit NONE alternative: NONE is echoed.
    let mut offered = esp("aes256gcm16-ecp256");
    offered.dh.push(DhId::NONE);
    let (_, s) = select(&no_pfs, &[offered.clone()]).unwrap();
    assert_eq!(s.dh, Some(DhId::NONE));
    assert_eq!(s.dh_group(), None);
    // Peer insists on PFS we don't do.
    assert_eq!(select(&no_pfs, &[esp("aes256gcm16-ecp256")]), None);
    // We insist on PFS: a peer without KE, or with only NONE, is refused.
    let pfs = vec![esp("aes256gcm16-ecp256")];
    assert_eq!(select(&pfs, &[esp("aes256gcm16")]), None);
    let mut none_only = esp("aes256gcm16");
    none_only.dh = vec![DhId::NONE];
    assert_eq!(select(&pfs, &[none_only]), None);
    let (_, s) = select(&pfs, &[offered]).unwrap();
    assert_eq!(s.dh_group(), Some(DhId::ECP_256));
    // IKE_AUTH: both sides strip DH and match.
    let stripped: Vec<_> = pfs.iter().map(|p| p.without_dh()).collect();
    assert!(select(&stripped, &[esp("aes256gcm16")]).is_some());
    // IKE never accepts a NONE group.
    let mut ike_none = ike("aes128gcm16-prfsha256-ecp256");
    ike_none.dh = vec![DhId::NONE];
    assert_eq!(
        select(&[ike("aes128gcm16-prfsha256-ecp256")], &[ike_none]),
        None
    );
}

#[test]
fn esn_and_integ_none_handling() {
    let local = vec![esp("aes128-sha256")]; // noesn only
    assert_eq!(select(&local, &[esp("aes128-sha256-esn")]), None);
    let (_, s) = select(&local, &[esp("aes128-sha256-esn-noesn")]).unwrap();
    assert_eq!(s.esn, Some(EsnId::NO_ESN));
    assert!(!s.esn_enabled());
    let (_, s) = select(
        &[esp("aes128-sha256-esn-noesn")],
        &[esp("aes128-sha256-esn")],
    )
    .unwrap();
    assert!(s.esn_enabled());
    // A peer omitting ESN gets 32-bit sequence numbers if we accept those.
    let mut no_esn_type = esp("aes128-sha256");
    no_esn_type.esn.clear();
    let (_, s) = select(&local, &[no_esn_type.clone()]).unwrap();
    assert_eq!(s.esn, None);
    assert_eq!(select(&[esp("aes128-sha256-esn")], &[no_esn_type]), None);
    // AEAD with an explicit INTEG NONE is accepted and echoed.
    let mut gcm = esp("aes128gcm16");
    gcm.integ = vec![IntegId::NONE];
    let (_, s) = select(&[esp("aes128gcm16")], &[gcm]).unwrap();
    assert_eq!(s.integ, Some(IntegId::NONE));
    assert_eq!(s.integ_alg(), None);
    // AEAD with a real integrity algorithm is refused.
    let mut bad = esp("aes128gcm16");
    bad.integ = vec![IntegId::HMAC_SHA2_256_128];
    assert_eq!(
        select(&[esp("aes128gcm16"), esp("aes128-sha256")], &[bad]),
        None
    );
    // CBC with integrity NONE is refused.
    let mut bad = esp("aes128-sha256");
    bad.integ = vec![IntegId::NONE];
    assert_eq!(select(&local, &[bad]), None);
    // A peer's unknown transform ids are simply not chosen.
    let mut unk = esp("aes128-sha256");
    unk.integ.insert(0, IntegId(999));
    let (_, s) = select(&local, &[unk]).unwrap();
    assert_eq!(s.integ, Some(IntegId::HMAC_SHA2_256_128));
}

#[test]
fn protocol_ids() {
    assert_eq!(ProtocolId::from(Protocol::Ike), ProtocolId::IKE);
    assert_eq!(ProtocolId::from(Protocol::Esp), ProtocolId::ESP);
    assert_eq!(Protocol::Esp.to_string(), "ESP");
}

#[test]
fn ike_prf_required_from_peer() {
    let local = vec![ike("aes128-sha256-modp2048")];
    let mut no_prf = ike("aes128-sha256-modp2048");
    no_prf.prf.clear();
    assert_eq!(select(&local, &[no_prf]), None);
}
