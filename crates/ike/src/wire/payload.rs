//! Payloads and the Next Payload chain (RFC 7296 §3.2–§3.15, RFC 7383 §2.5).

use super::id::IdPayload;
use super::sa::SaPayload;
use super::ts::TsPayload;
use super::{patch_len16, push_len16, u16_len, u8_len, DecodeError, Reader};
use crate::iana::{AuthMethod, DhId, NotifyType, PayloadType, ProtocolId};

/// §3.2: the Critical bit in the generic payload header's second octet.
const CRITICAL: u8 = 0x80;

/// One payload of a message or of the decrypted contents of SK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Sa(SaPayload),
    Ke(KePayload),
    IdI(IdPayload),
    IdR(IdPayload),
    Auth(AuthPayload),
    /// Nonce Data (§3.9); its 16–256 octet size rule is the caller's to enforce.
    Nonce(Vec<u8>),
    Notify(NotifyPayload),
    Delete(DeletePayload),
    VendorId(Vec<u8>),
    TsI(TsPayload),
    TsR(TsPayload),
    CertReq(CertReqPayload),
    Cert(CertPayload),
    /// Configuration payload body (§3.15), unparsed.
    Cp(Vec<u8>),
    /// SK (§3.14): must be the last payload; its Next Payload is the first inner type.
    Encrypted(EncryptedPayload),
    /// SKF (RFC 7383 §2.5): must be the last payload.
    EncryptedFragment(EncryptedFragmentPayload),
    /// A payload type we do not parse (including EAP). §2.5: if `critical`, the caller
    /// answers UNSUPPORTED_CRITICAL_PAYLOAD; otherwise it skips it.
    Unknown {
        ty: PayloadType,
        critical: bool,
        body: Vec<u8>,
    },
}

/// Key Exchange payload body (§3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KePayload {
    pub group: DhId,
    pub reserved: u16,
    pub data: Vec<u8>,
}

/// Authentication payload body (§3.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPayload {
    pub method: AuthMethod,
    pub reserved: [u8; 3],
    pub data: Vec<u8>,
}

/// Notify payload body (§3.10); the SPI Size field is `spi.len()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyPayload {
    pub protocol: ProtocolId,
    pub spi: Vec<u8>,
    pub ty: NotifyType,
    pub data: Vec<u8>,
}

/// Delete payload body (§3.11): every entry of `spis` is `spi_size` octets long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletePayload {
    pub protocol: ProtocolId,
    pub spi_size: u8,
    pub spis: Vec<Vec<u8>>,
}

/// Certificate Request payload body (§3.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertReqPayload {
    pub encoding: u8,
    pub data: Vec<u8>,
}

/// Certificate payload body (§3.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPayload {
    pub encoding: u8,
    pub data: Vec<u8>,
}

/// Encrypted and Authenticated payload (§3.14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedPayload {
    /// The SK header's Next Payload: type of the first payload inside.
    pub first_inner: PayloadType,
    pub critical: bool,
    /// IV || ciphertext (with padding and Pad Length) || ICV, opaque to the codec.
    pub body: Vec<u8>,
}

/// Encrypted and Authenticated Fragment payload (RFC 7383 §2.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedFragmentPayload {
    /// First inner payload type in fragment 1, zero in the others (RFC 7383 §2.5).
    pub first_inner: PayloadType,
    pub fragment_number: u16,
    pub total_fragments: u16,
    /// IV || ciphertext || ICV, opaque to the codec.
    pub body: Vec<u8>,
}

impl NotifyPayload {
    /// A notification not about a particular SA (Protocol ID 0, no SPI).
    pub fn new(ty: NotifyType, data: Vec<u8>) -> Self {
        Self {
            protocol: ProtocolId::NONE,
            spi: Vec::new(),
            ty,
            data,
        }
    }
}

impl Payload {
    /// The type this payload is announced as in the previous Next Payload field.
    pub fn payload_type(&self) -> PayloadType {
        match self {
            Payload::Sa(_) => PayloadType::SA,
            Payload::Ke(_) => PayloadType::KE,
            Payload::IdI(_) => PayloadType::IDI,
            Payload::IdR(_) => PayloadType::IDR,
            Payload::Auth(_) => PayloadType::AUTH,
            Payload::Nonce(_) => PayloadType::NONCE,
            Payload::Notify(_) => PayloadType::NOTIFY,
            Payload::Delete(_) => PayloadType::DELETE,
            Payload::VendorId(_) => PayloadType::VENDOR_ID,
            Payload::TsI(_) => PayloadType::TSI,
            Payload::TsR(_) => PayloadType::TSR,
            Payload::CertReq(_) => PayloadType::CERTREQ,
            Payload::Cert(_) => PayloadType::CERT,
            Payload::Cp(_) => PayloadType::CP,
            Payload::Encrypted(_) => PayloadType::SK,
            Payload::EncryptedFragment(_) => PayloadType::SKF,
            Payload::Unknown { ty, .. } => *ty,
        }
    }

    /// The payload body (everything after the generic header) for `ty`.
    fn decode_body(
        ty: PayloadType,
        next: PayloadType,
        critical: bool,
        body: &[u8],
    ) -> Result<Payload, DecodeError> {
        let mut r = Reader::new(body);
        let p = match ty {
            PayloadType::SA => Payload::Sa(SaPayload::decode(body)?),
            PayloadType::KE => Payload::Ke(KePayload {
                group: DhId(r.u16()?),
                reserved: r.u16()?,
                data: r.rest().to_vec(),
            }),
            PayloadType::IDI => Payload::IdI(IdPayload::decode(body)?),
            PayloadType::IDR => Payload::IdR(IdPayload::decode(body)?),
            PayloadType::AUTH => Payload::Auth(AuthPayload {
                method: AuthMethod(r.u8()?),
                reserved: r.array()?,
                data: r.rest().to_vec(),
            }),
            PayloadType::NONCE => Payload::Nonce(body.to_vec()),
            PayloadType::NOTIFY => {
                let protocol = ProtocolId(r.u8()?);
                let spi_size = usize::from(r.u8()?);
                let ty = NotifyType(r.u16()?);
                let spi = r.bytes(spi_size)?.to_vec();
                Payload::Notify(NotifyPayload {
                    protocol,
                    spi,
                    ty,
                    data: r.rest().to_vec(),
                })
            }
            PayloadType::DELETE => Payload::Delete(DeletePayload::decode(&mut r)?),
            PayloadType::VENDOR_ID => Payload::VendorId(body.to_vec()),
            PayloadType::TSI => Payload::TsI(TsPayload::decode(body)?),
            PayloadType::TSR => Payload::TsR(TsPayload::decode(body)?),
            PayloadType::CERTREQ => Payload::CertReq(CertReqPayload {
                encoding: r.u8()?,
                data: r.rest().to_vec(),
            }),
            PayloadType::CERT => Payload::Cert(CertPayload {
                encoding: r.u8()?,
                data: r.rest().to_vec(),
            }),
            PayloadType::CP => Payload::Cp(body.to_vec()),
            PayloadType::SK => Payload::Encrypted(EncryptedPayload {
                first_inner: next,
                critical,
                body: body.to_vec(),
            }),
            PayloadType::SKF => Payload::EncryptedFragment(EncryptedFragmentPayload {
                first_inner: next,
                fragment_number: r.u16()?,
                total_fragments: r.u16()?,
                body: r.rest().to_vec(),
            }),
            ty => Payload::Unknown {
                ty,
                critical,
                body: body.to_vec(),
            },
        };
        Ok(p)
    }

    /// Append the body (everything after the generic header).
    fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Sa(sa) => sa.encode(out),
            Payload::Ke(ke) => {
                out.extend_from_slice(&ke.group.0.to_be_bytes());
                out.extend_from_slice(&ke.reserved.to_be_bytes());
                out.extend_from_slice(&ke.data);
            }
            Payload::IdI(id) | Payload::IdR(id) => id.encode(out),
            Payload::Auth(a) => {
                out.push(a.method.0);
                out.extend_from_slice(&a.reserved);
                out.extend_from_slice(&a.data);
            }
            Payload::Nonce(b) | Payload::VendorId(b) | Payload::Cp(b) => out.extend_from_slice(b),
            Payload::Notify(n) => {
                out.push(n.protocol.0);
                out.push(u8_len(n.spi.len()));
                out.extend_from_slice(&n.ty.0.to_be_bytes());
                out.extend_from_slice(&n.spi);
                out.extend_from_slice(&n.data);
            }
            Payload::Delete(d) => d.encode(out),
            Payload::TsI(ts) | Payload::TsR(ts) => ts.encode(out),
            Payload::CertReq(CertReqPayload { encoding, data })
            | Payload::Cert(CertPayload { encoding, data }) => {
                out.push(*encoding);
                out.extend_from_slice(data);
            }
            Payload::Encrypted(sk) => out.extend_from_slice(&sk.body),
            Payload::EncryptedFragment(skf) => {
                out.extend_from_slice(&skf.fragment_number.to_be_bytes());
                out.extend_from_slice(&skf.total_fragments.to_be_bytes());
                out.extend_from_slice(&skf.body);
            }
            Payload::Unknown { body, .. } => out.extend_from_slice(body),
        }
    }
}

impl DeletePayload {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let protocol = ProtocolId(r.u8()?);
        let spi_size = r.u8()?;
        let num = r.u16()?;
        // §3.11: with no SPI octets a count has nothing to count (and would let a tiny
        // payload make us allocate 65535 entries).
        if spi_size == 0 && num != 0 {
            return Err(DecodeError::InvalidSyntax(
                "Delete SPI count without SPI size",
            ));
        }
        let spis = (0..num)
            .map(|_| r.bytes(usize::from(spi_size)).map(<[u8]>::to_vec))
            .collect::<Result<Vec<_>, _>>()?;
        r.finish()?;
        Ok(DeletePayload {
            protocol,
            spi_size,
            spis,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.protocol.0);
        out.push(self.spi_size);
        out.extend_from_slice(&u16_len(self.spis.len()).to_be_bytes());
        for s in &self.spis {
            debug_assert_eq!(s.len(), usize::from(self.spi_size));
            out.extend_from_slice(s);
        }
    }
}

/// Decode a payload chain starting with a payload of type `first`: the payloads of a
/// message after its header, or the decrypted contents of SK (§3.14).
///
/// §3.2: every payload length is ≥ 4 and within `bytes`; the chain must end (Next
/// Payload NONE) exactly at the end of `bytes`. §3.14 / RFC 7383 §2.5: SK and SKF end the
/// chain (their Next Payload names the first inner payload) and must be last.
pub fn decode_chain(first: PayloadType, bytes: &[u8]) -> Result<Vec<Payload>, DecodeError> {
    let mut r = Reader::new(bytes);
    let mut ty = first;
    let mut payloads = Vec::new();
    while ty != PayloadType::NONE {
        let next = PayloadType(r.u8()?);
        let critical = r.u8()? & CRITICAL != 0; // other RESERVED bits ignored (§3.2)
        let len = usize::from(r.u16()?);
        let body = r
            .sub(len.checked_sub(4).ok_or(DecodeError::BadLength)?)?
            .rest();
        let p = Payload::decode_body(ty, next, critical, body)?;
        let ends_chain = matches!(p, Payload::Encrypted(_) | Payload::EncryptedFragment(_));
        payloads.push(p);
        if ends_chain {
            if !r.is_empty() {
                return Err(DecodeError::InvalidSyntax("payload after SK"));
            }
            return Ok(payloads);
        }
        ty = next;
    }
    r.finish()?;
    Ok(payloads)
}

/// Append `payloads` as a chain (generic headers with Next Payload and lengths filled
/// in) and return the type of the first one, NONE if there are none.
///
/// An SK or SKF payload must be the last; its Next Payload field is its `first_inner`.
/// Known payloads are sent with the critical bit clear (§2.5 only asks it of payloads
/// the receiver may not know); Unknown and SK keep theirs.
pub fn encode_chain(payloads: &[Payload], out: &mut Vec<u8>) -> PayloadType {
    for (i, p) in payloads.iter().enumerate() {
        debug_assert!(
            !matches!(p, Payload::Encrypted(_) | Payload::EncryptedFragment(_))
                || i + 1 == payloads.len(),
            "SK/SKF must be the last payload"
        );
        let next = match p {
            Payload::Encrypted(sk) => sk.first_inner,
            Payload::EncryptedFragment(skf) => skf.first_inner,
            _ => payloads
                .get(i + 1)
                .map_or(PayloadType::NONE, Payload::payload_type),
        };
        let critical = match p {
            Payload::Encrypted(EncryptedPayload { critical, .. })
            | Payload::Unknown { critical, .. } => *critical,
            _ => false,
        };
        let start = out.len();
        out.push(next.0);
        out.push(if critical { CRITICAL } else { 0 });
        let len = push_len16(out);
        p.encode_body(out);
        patch_len16(out, len, start);
    }
    payloads
        .first()
        .map_or(PayloadType::NONE, Payload::payload_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::TransformType;
    use crate::iana::{IdType, TsType};
    use crate::wire::{Proposal, TrafficSelector, Transform};

    fn one_of_each() -> Vec<Payload> {
        vec![
            Payload::Sa(SaPayload {
                proposals: vec![Proposal {
                    num: 1,
                    protocol: ProtocolId::IKE,
                    spi: vec![1; 8],
                    transforms: vec![Transform::new(TransformType::PRF, 5)],
                }],
            }),
            Payload::Ke(KePayload {
                group: DhId::ECP_256,
                reserved: 0x1234,
                data: vec![4; 64],
            }),
            Payload::IdI(IdPayload::fqdn("a.example")),
            Payload::IdR(IdPayload {
                id_type: IdType::KEY_ID,
                reserved: [9, 8, 7],
                data: vec![1, 2],
            }),
            Payload::Auth(AuthPayload {
                method: AuthMethod::PSK,
                reserved: [0, 0, 1],
                data: vec![0xaa; 32],
            }),
            Payload::Nonce(vec![0x55; 32]),
            Payload::Notify(NotifyPayload::new(NotifyType::COOKIE, vec![1, 2, 3])),
            Payload::Notify(NotifyPayload {
                protocol: ProtocolId::ESP,
                spi: vec![1, 2, 3, 4],
                ty: NotifyType::REKEY_SA,
                data: vec![],
            }),
            Payload::Delete(DeletePayload {
                protocol: ProtocolId::ESP,
                spi_size: 4,
                spis: vec![vec![1, 2, 3, 4], vec![5, 6, 7, 8]],
            }),
            Payload::Delete(DeletePayload {
                protocol: ProtocolId::IKE,
                spi_size: 0,
                spis: vec![],
            }),
            Payload::VendorId(b"routevpn".to_vec()),
            Payload::TsI(TsPayload {
                selectors: vec![TrafficSelector::any_v4()],
            }),
            Payload::TsR(TsPayload {
                selectors: vec![TrafficSelector::Unknown {
                    ts_type: TsType(9),
                    body: vec![7],
                }],
            }),
            Payload::CertReq(CertReqPayload {
                encoding: 4,
                data: vec![0x11; 20],
            }),
            Payload::Cert(CertPayload {
                encoding: 4,
                data: vec![0x30, 0x00],
            }),
            Payload::Cp(vec![1, 0, 0, 0, 0, 1, 0, 0]),
            Payload::Unknown {
                ty: PayloadType::EAP,
                critical: false,
                body: vec![],
            },
            Payload::Unknown {
                ty: PayloadType(200),
                critical: true,
                body: vec![1, 2, 3],
            },
        ]
    }

    fn round_trip(payloads: &[Payload]) -> Vec<u8> {
        let mut out = Vec::new();
        let first = encode_chain(payloads, &mut out);
        let decoded = decode_chain(first, &out).unwrap();
        assert_eq!(decoded, payloads);
        let mut again = Vec::new();
        assert_eq!(encode_chain(&decoded, &mut again), first);
        assert_eq!(again, out);
        out
    }

    #[test]
    fn each_payload_type_round_trips() {
        for p in one_of_each() {
            round_trip(std::slice::from_ref(&p));
        }
        round_trip(&one_of_each());
        round_trip(&[]);
    }

    #[test]
    fn encrypted_payloads_round_trip_and_end_the_chain() {
        let sk = Payload::Encrypted(EncryptedPayload {
            first_inner: PayloadType::IDI,
            critical: true,
            body: vec![0xee; 48],
        });
        let b = round_trip(&[Payload::VendorId(vec![1]), sk.clone()]);
        // §3.14: SK's Next Payload is its first inner payload, critical bit kept.
        assert_eq!(&b[5..9], &[0x23, 0x80, 0x00, 52]);
        let skf = Payload::EncryptedFragment(EncryptedFragmentPayload {
            first_inner: PayloadType::NONE,
            fragment_number: 2,
            total_fragments: 3,
            body: vec![0xdd; 40],
        });
        let b = round_trip(std::slice::from_ref(&skf));
        // RFC 7383 §2.5: Fragment Number, Total Fragments after the generic header.
        assert_eq!(&b[..8], &[0, 0, 0, 48, 0, 2, 0, 3]);
    }

    #[test]
    fn payload_after_sk_is_rejected() {
        let mut out = Vec::new();
        let first = encode_chain(
            &[Payload::Encrypted(EncryptedPayload {
                first_inner: PayloadType::IDI,
                critical: false,
                body: vec![0; 16],
            })],
            &mut out,
        );
        // An empty payload after SK, as if SK's chain continued.
        out.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(
            decode_chain(first, &out),
            Err(DecodeError::InvalidSyntax("payload after SK"))
        );
    }

    #[test]
    fn unknown_payload_keeps_critical_flag() {
        // Next NONE, C=1 with other RESERVED bits set (ignored), length 6.
        let b = [0x00, 0xff, 0x00, 0x06, 0xab, 0xcd];
        assert_eq!(
            decode_chain(PayloadType(99), &b).unwrap(),
            vec![Payload::Unknown {
                ty: PayloadType(99),
                critical: true,
                body: vec![0xab, 0xcd],
            }]
        );
        // A known payload parses whatever its critical bit says.
        let b = [0x00, 0x80, 0x00, 0x06, 0xab, 0xcd];
        assert_eq!(
            decode_chain(PayloadType::NONCE, &b).unwrap(),
            vec![Payload::Nonce(vec![0xab, 0xcd])]
        );
    }

    #[test]
    fn chain_length_errors() {
        // Length below the generic header.
        assert_eq!(
            decode_chain(PayloadType::NONCE, &[0, 0, 0, 3]),
            Err(DecodeError::BadLength)
        );
        // Length past the end.
        assert_eq!(
            decode_chain(PayloadType::NONCE, &[0, 0, 0, 9, 1]),
            Err(DecodeError::BadLength)
        );
        // Truncated generic header, and a chain announcing more than there is.
        assert_eq!(
            decode_chain(PayloadType::NONCE, &[0, 0, 0]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode_chain(PayloadType::NONCE, &[0x28, 0, 0, 4]),
            Err(DecodeError::Truncated)
        );
        // Bytes after the payload with Next Payload NONE.
        assert_eq!(
            decode_chain(PayloadType::NONCE, &[0, 0, 0, 4, 0]),
            Err(DecodeError::TrailingBytes)
        );
        assert_eq!(
            decode_chain(PayloadType::NONE, &[0]),
            Err(DecodeError::TrailingBytes)
        );
        // Too short for fixed fields: KE, Notify SPI, Auth, SKF.
        assert_eq!(
            decode_chain(PayloadType::KE, &[0, 0, 0, 7, 0, 19, 0]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode_chain(PayloadType::NOTIFY, &[0, 0, 0, 9, 3, 4, 0, 1, 0]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode_chain(PayloadType::AUTH, &[0, 0, 0, 7, 2, 0, 0]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode_chain(PayloadType::SKF, &[0, 0, 0, 6, 0, 1]),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn delete_errors() {
        let chain = |body: &[u8]| {
            let mut b = vec![0, 0, 0, u8::try_from(4 + body.len()).unwrap()];
            b.extend_from_slice(body);
            decode_chain(PayloadType::DELETE, &b)
        };
        assert!(chain(&[3, 4, 0, 1, 1, 2, 3, 4]).is_ok());
        assert_eq!(
            chain(&[3, 4, 0, 2, 1, 2, 3, 4]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            chain(&[3, 4, 0, 1, 1, 2, 3, 4, 5]),
            Err(DecodeError::TrailingBytes)
        );
        assert!(matches!(
            chain(&[1, 0, 0xff, 0xff]),
            Err(DecodeError::InvalidSyntax(_))
        ));
    }
}
