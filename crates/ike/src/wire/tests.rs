//! Message-level tests: a hand-built IKE_SA_INIT checked byte for byte, error cases and
//! property tests over arbitrary messages and arbitrary bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::iana::{
    AuthMethod, DhId, EncrId, ExchangeType, IdType, NotifyType, PayloadType, PrfId, ProtocolId,
    TransformType, TsType,
};

fn ike_sa_init_request() -> Message {
    Message {
        header: Header {
            spi_i: 0x0102_0304_0506_0708,
            spi_r: 0,
            next_payload: PayloadType::NONE, // filled by encode
            version: Header::VERSION_2_0,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: Flags(Flags::INITIATOR),
            message_id: 0,
            length: 0, // filled by encode
        },
        payloads: vec![
            Payload::Sa(SaPayload {
                proposals: vec![Proposal {
                    num: 1,
                    protocol: ProtocolId::IKE,
                    spi: vec![],
                    transforms: vec![
                        Transform::with_key_length(TransformType::ENCR, EncrId::AES_GCM_16.0, 256),
                        Transform::new(TransformType::PRF, PrfId::HMAC_SHA2_384.0),
                        Transform::new(TransformType::KE, DhId::CURVE25519.0),
                    ],
                }],
            }),
            Payload::Ke(KePayload {
                group: DhId::CURVE25519,
                reserved: 0,
                data: (0x00..0x20).collect(),
            }),
            Payload::Nonce((0x20..0x40).collect()),
            Payload::Notify(NotifyPayload::new(
                NotifyType::NAT_DETECTION_SOURCE_IP,
                vec![0xaa; 20],
            )),
            Payload::Notify(NotifyPayload::new(
                NotifyType::NAT_DETECTION_DESTINATION_IP,
                vec![0xbb; 20],
            )),
        ],
    }
}

/// The request above, laid out by hand from RFC 7296 §3.
fn ike_sa_init_request_hex() -> String {
    [
        // §3.1 header: SPIi, SPIr, Next Payload SA (33), version 2.0, IKE_SA_INIT (34),
        // flags I, Message ID 0, Length 200.
        "0102030405060708",
        "0000000000000000",
        "21202208",
        "00000000",
        "000000c8",
        // §3.2 SA generic header: Next KE (34), C=0, length 40.
        "22000028",
        // §3.3.1 proposal: last (0), RESERVED, length 36, #1, IKE (1), SPI size 0, 3 transforms.
        "00000024",
        "01010003",
        // §3.3.2 transform: more (3), length 12, ENCR (1), AES_GCM_16 (20);
        // §3.3.5 Key Length attribute TV (0x800e) 256.
        "0300000c",
        "01000014",
        "800e0100",
        // PRF (2) HMAC_SHA2_384 (6).
        "03000008",
        "02000006",
        // last: KE (4) group 31 (Curve25519).
        "00000008",
        "0400001f",
        // §3.4 KE: Next Nonce (40), length 40, group 31, RESERVED, 32 octets.
        "28000028",
        "001f0000",
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        // §3.9 Nonce: Next N (41), length 36, 32 octets.
        "29000024",
        "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
        // §3.10 Notify: Next N, length 28, Protocol 0, SPI size 0, type 16388, SHA-1 hash.
        "2900001c",
        "00004004",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        // Notify: Next NONE, length 28, type 16389.
        "0000001c",
        "00004005",
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    ]
    .concat()
}

#[test]
fn ike_sa_init_exact_bytes() {
    let bytes = ike_sa_init_request().encode();
    assert_eq!(hex::encode(&bytes), ike_sa_init_request_hex());
    let m = Message::decode(&bytes).unwrap();
    assert_eq!(m.header.next_payload, PayloadType::SA);
    assert_eq!(m.header.length, 200);
    assert_eq!(m.payloads, ike_sa_init_request().payloads);
    assert_eq!(m.encode(), bytes);
    let Some(Payload::Sa(sa)) = m.find(PayloadType::SA) else {
        panic!("no SA")
    };
    assert_eq!(sa.proposals[0].transforms[0].key_length(), Some(256));
}

#[test]
fn ike_auth_with_sk_round_trips() {
    // HDR, SK {IDi, AUTH, SAi2, TSi, TSr} -->: the outer chain is just SK.
    let m = Message {
        header: Header {
            spi_i: 1,
            spi_r: 2,
            next_payload: PayloadType::SK,
            version: 0x20,
            exchange: ExchangeType::IKE_AUTH,
            flags: Flags(Flags::INITIATOR),
            message_id: 1,
            length: 0,
        },
        payloads: vec![Payload::Encrypted(EncryptedPayload {
            first_inner: PayloadType::IDI,
            critical: false,
            body: vec![0x42; 80],
        })],
    };
    let bytes = m.encode();
    assert_eq!(bytes.len(), 28 + 4 + 80);
    let d = Message::decode(&bytes).unwrap();
    assert_eq!(d.payloads, m.payloads);
    assert_eq!(d.encode(), bytes);
}

#[test]
fn message_errors() {
    let good = ike_sa_init_request().encode();
    // Truncated header.
    assert_eq!(Message::decode(&good[..20]), Err(DecodeError::Truncated));
    assert_eq!(Message::decode(&[]), Err(DecodeError::Truncated));
    // Header length disagrees with the datagram.
    assert_eq!(Message::decode(&good[..199]), Err(DecodeError::BadLength));
    // Major version 1.
    let mut b = good.clone();
    b[17] = 0x10;
    assert_eq!(Message::decode(&b), Err(DecodeError::UnsupportedVersion(1)));
    // Last N's length grown by one with one extra datagram byte: Notify data grows, fine;
    // but a payload length past the end is BadLength.
    let mut b = good.clone();
    b[174..176].copy_from_slice(&29u16.to_be_bytes());
    assert_eq!(Message::decode(&b), Err(DecodeError::BadLength));
    // Trailing bytes after the chain's last payload (header length adjusted).
    let mut b = good.clone();
    b.push(0);
    b[24..28].copy_from_slice(&201u32.to_be_bytes());
    assert_eq!(Message::decode(&b), Err(DecodeError::TrailingBytes));
    // Wrong last-substructure on the only proposal.
    let mut b = good.clone();
    b[32] = 2;
    assert!(matches!(
        Message::decode(&b),
        Err(DecodeError::InvalidSyntax(_))
    ));
    // Payload after SK.
    let mut m = ike_sa_init_request();
    m.payloads.truncate(1);
    m.payloads.push(Payload::Encrypted(EncryptedPayload {
        first_inner: PayloadType::IDI,
        critical: false,
        body: vec![1; 32],
    }));
    let mut b = m.encode();
    b.extend_from_slice(&[0, 0, 0, 4]);
    let len = u32::try_from(b.len()).unwrap();
    b[24..28].copy_from_slice(&len.to_be_bytes());
    assert_eq!(
        Message::decode(&b),
        Err(DecodeError::InvalidSyntax("payload after SK"))
    );
}

#[test]
fn unknown_critical_payload_is_kept() {
    let mut m = ike_sa_init_request();
    m.payloads.insert(
        1,
        Payload::Unknown {
            ty: PayloadType(222),
            critical: true,
            body: vec![1, 2, 3],
        },
    );
    let bytes = m.encode();
    let d = Message::decode(&bytes).unwrap();
    assert_eq!(
        d.payloads[1],
        Payload::Unknown {
            ty: PayloadType(222),
            critical: true,
            body: vec![1, 2, 3]
        }
    );
    assert_eq!(d.encode(), bytes);
}

// ---- property tests ----

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max)
}

/// Payload types the codec does not parse (EAP is known to IANA but kept raw).
fn unparsed_type() -> impl Strategy<Value = PayloadType> {
    any::<u8>()
        .prop_filter("parsed type", |t| {
            *t == PayloadType::EAP.0 || !(*t == 0 || (33..=47).contains(t) || *t == 53)
        })
        .prop_map(PayloadType)
}

fn attribute() -> impl Strategy<Value = Attribute> {
    (
        0u16..0x8000,
        prop_oneof![
            any::<u16>().prop_map(AttributeValue::Tv),
            bytes(6).prop_map(AttributeValue::Tlv)
        ],
    )
        .prop_map(|(ty, value)| Attribute { ty, value })
}

fn transform() -> impl Strategy<Value = Transform> {
    (any::<u8>(), any::<u16>(), vec(attribute(), 0..3)).prop_map(|(ty, id, attributes)| Transform {
        ty: TransformType(ty),
        id,
        attributes,
    })
}

fn proposal() -> impl Strategy<Value = Proposal> {
    (any::<u8>(), any::<u8>(), bytes(8), vec(transform(), 0..5)).prop_map(
        |(num, protocol, spi, transforms)| Proposal {
            num,
            protocol: ProtocolId(protocol),
            spi,
            transforms,
        },
    )
}

fn selector() -> impl Strategy<Value = TrafficSelector> {
    prop_oneof![
        (
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<[u8; 4]>()
        )
            .prop_map(|(p, sp, ep, s, e)| TrafficSelector::Range {
                ts_type: TsType::IPV4_ADDR_RANGE,
                ip_protocol: p,
                start_port: sp,
                end_port: ep,
                start: IpAddr::V4(Ipv4Addr::from(s)),
                end: IpAddr::V4(Ipv4Addr::from(e)),
            }),
        (
            any::<u8>(),
            any::<u16>(),
            any::<u16>(),
            any::<u128>(),
            any::<u128>()
        )
            .prop_map(|(p, sp, ep, s, e)| TrafficSelector::Range {
                ts_type: TsType::IPV6_ADDR_RANGE,
                ip_protocol: p,
                start_port: sp,
                end_port: ep,
                start: IpAddr::V6(Ipv6Addr::from(s)),
                end: IpAddr::V6(Ipv6Addr::from(e)),
            }),
        (
            any::<u8>().prop_filter("range type", |t| *t != 7 && *t != 8),
            vec(any::<u8>(), 1..12)
        )
            .prop_map(|(t, body)| TrafficSelector::Unknown {
                ts_type: TsType(t),
                body
            }),
    ]
}

fn delete() -> impl Strategy<Value = DeletePayload> {
    (any::<u8>(), 0u8..=8, 0usize..4).prop_flat_map(|(protocol, spi_size, n)| {
        let n = if spi_size == 0 { 0 } else { n };
        vec(vec(any::<u8>(), usize::from(spi_size)), n).prop_map(move |spis| DeletePayload {
            protocol: ProtocolId(protocol),
            spi_size,
            spis,
        })
    })
}

fn id() -> impl Strategy<Value = IdPayload> {
    (any::<u8>(), any::<[u8; 3]>(), bytes(24)).prop_map(|(t, reserved, data)| IdPayload {
        id_type: IdType(t),
        reserved,
        data,
    })
}

/// Any payload that may appear before the end of a chain.
fn inner_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        vec(proposal(), 1..4).prop_map(|proposals| Payload::Sa(SaPayload { proposals })),
        (any::<u16>(), any::<u16>(), bytes(40)).prop_map(|(g, reserved, data)| Payload::Ke(
            KePayload {
                group: DhId(g),
                reserved,
                data
            }
        )),
        id().prop_map(Payload::IdI),
        id().prop_map(Payload::IdR),
        (any::<u8>(), any::<[u8; 3]>(), bytes(40)).prop_map(|(m, reserved, data)| {
            Payload::Auth(AuthPayload {
                method: AuthMethod(m),
                reserved,
                data,
            })
        }),
        bytes(40).prop_map(Payload::Nonce),
        (any::<u8>(), bytes(8), any::<u16>(), bytes(24)).prop_map(|(p, spi, ty, data)| {
            Payload::Notify(NotifyPayload {
                protocol: ProtocolId(p),
                spi,
                ty: NotifyType(ty),
                data,
            })
        }),
        delete().prop_map(Payload::Delete),
        bytes(20).prop_map(Payload::VendorId),
        vec(selector(), 0..4).prop_map(|selectors| Payload::TsI(TsPayload { selectors })),
        vec(selector(), 0..4).prop_map(|selectors| Payload::TsR(TsPayload { selectors })),
        (any::<u8>(), bytes(20))
            .prop_map(|(encoding, data)| Payload::CertReq(CertReqPayload { encoding, data })),
        (any::<u8>(), bytes(20))
            .prop_map(|(encoding, data)| Payload::Cert(CertPayload { encoding, data })),
        bytes(20).prop_map(Payload::Cp),
        (unparsed_type(), any::<bool>(), bytes(20))
            .prop_map(|(ty, critical, body)| { Payload::Unknown { ty, critical, body } }),
    ]
}

/// SK or SKF, which may only end a chain.
fn last_payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        (any::<u8>(), any::<bool>(), bytes(64)).prop_map(|(f, critical, body)| {
            Payload::Encrypted(EncryptedPayload {
                first_inner: PayloadType(f),
                critical,
                body,
            })
        }),
        (any::<u8>(), any::<u16>(), any::<u16>(), bytes(64)).prop_map(|(f, n, t, body)| {
            Payload::EncryptedFragment(EncryptedFragmentPayload {
                first_inner: PayloadType(f),
                fragment_number: n,
                total_fragments: t,
                body,
            })
        }),
    ]
}

fn payloads() -> impl Strategy<Value = Vec<Payload>> {
    (
        vec(inner_payload(), 0..6),
        proptest::option::of(last_payload()),
    )
        .prop_map(|(mut ps, last)| {
            ps.extend(last);
            ps
        })
}

fn message() -> impl Strategy<Value = Message> {
    (
        (any::<u64>(), any::<u64>(), 0x20u8..=0x2f),
        (any::<u8>(), any::<u8>(), any::<u32>()),
        payloads(),
    )
        .prop_map(
            |((spi_i, spi_r, version), (exchange, flags, message_id), payloads)| Message {
                header: Header {
                    spi_i,
                    spi_r,
                    next_payload: PayloadType::NONE,
                    version,
                    exchange: ExchangeType(exchange),
                    flags: Flags(flags),
                    message_id,
                    length: 0,
                },
                payloads,
            },
        )
}

proptest! {
    #[test]
    fn encode_decode_round_trip(m in message()) {
        let bytes = m.encode();
        let d = Message::decode(&bytes).unwrap();
        let mut want = m.clone();
        want.header.next_payload = m.payloads.first().map_or(PayloadType::NONE, Payload::payload_type);
        want.header.length = u32::try_from(bytes.len()).unwrap();
        prop_assert_eq!(&d, &want);
        prop_assert_eq!(d.encode(), bytes);
    }

    #[test]
    fn chain_round_trip(ps in payloads()) {
        let mut out = Vec::new();
        let first = encode_chain(&ps, &mut out);
        prop_assert_eq!(decode_chain(first, &out).unwrap(), ps);
    }

    #[test]
    fn decode_never_panics(b in bytes(300), first in any::<u8>()) {
        if let Ok(m) = Message::decode(&b) {
            prop_assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
        if let Ok(ps) = decode_chain(PayloadType(first), &b) {
            let mut out = Vec::new();
            let f = encode_chain(&ps, &mut out);
            prop_assert_eq!(decode_chain(f, &out).unwrap(), ps);
        }
    }

    /// Corrupting valid messages reaches deep into the decoders; whatever still decodes
    /// must survive a re-encode.
    #[test]
    fn mutated_messages(m in message(), edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut b = m.encode();
        for (i, v) in edits {
            let i = i.index(b.len());
            b[i] = v;
        }
        if let Ok(d) = Message::decode(&b) {
            let re = d.encode();
            prop_assert_eq!(Message::decode(&re).unwrap(), d);
        }
    }
}
