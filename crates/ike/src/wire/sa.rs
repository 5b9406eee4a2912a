//! Security Association payload: proposals, transforms, attributes (RFC 7296 §3.3).

use super::{patch_len16, push_len16, u8_len, DecodeError, Reader};
use crate::iana::{ProtocolId, TransformType};

/// §3.3.5: Key Length attribute type (TV format, value in bits).
pub const ATTR_KEY_LENGTH: u16 = 14;

/// §3.3.1/§3.3.2 "Last Substruc" values.
const LAST: u8 = 0;
const MORE_PROPOSALS: u8 = 2;
const MORE_TRANSFORMS: u8 = 3;
/// §3.3.5: Attribute Format bit (1 = TV, 0 = TLV).
const AF: u16 = 0x8000;

/// SA payload body (§3.3): one or more proposals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaPayload {
    pub proposals: Vec<Proposal>,
}

/// Proposal substructure (§3.3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    pub num: u8,
    pub protocol: ProtocolId,
    pub spi: Vec<u8>,
    pub transforms: Vec<Transform>,
}

/// Transform substructure (§3.3.2). `id` is interpreted per `ty` (EncrId, PrfId, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transform {
    pub ty: TransformType,
    pub id: u16,
    pub attributes: Vec<Attribute>,
}

/// Data attribute (§3.3.5); `ty` is the attribute type without the AF bit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub ty: u16,
    pub value: AttributeValue,
}

/// TV (AF = 1, 2-octet value) or TLV (AF = 0, variable value) attribute format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    Tv(u16),
    Tlv(Vec<u8>),
}

impl SaPayload {
    pub(super) fn decode(body: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let mut proposals = Vec::new();
        // §3.3: an SA payload carries at least one proposal.
        if r.is_empty() {
            return Err(DecodeError::InvalidSyntax("SA payload without proposals"));
        }
        while !r.is_empty() {
            let (last, p) = Proposal::read(&mut r)?;
            match (last, r.is_empty()) {
                (LAST, true) | (MORE_PROPOSALS, false) => {}
                (LAST, false) => {
                    return Err(DecodeError::InvalidSyntax("proposal marked last is not"))
                }
                (MORE_PROPOSALS, true) => {
                    return Err(DecodeError::InvalidSyntax("last proposal marked as more"))
                }
                _ => return Err(DecodeError::InvalidSyntax("bad proposal Last Substruc")),
            }
            proposals.push(p);
        }
        Ok(SaPayload { proposals })
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) {
        let n = self.proposals.len();
        for (i, p) in self.proposals.iter().enumerate() {
            p.encode(i + 1 == n, out);
        }
    }
}

impl Proposal {
    /// Returns the Last Substruc value together with the proposal.
    fn read(r: &mut Reader<'_>) -> Result<(u8, Self), DecodeError> {
        let last = r.u8()?;
        let _reserved = r.u8()?; // §3.3.1: ignored on receipt
        let len = usize::from(r.u16()?);
        // Length covers its own 4-octet header plus the 4 fixed octets below.
        let mut p = r.sub(
            len.checked_sub(4)
                .filter(|l| *l >= 4)
                .ok_or(DecodeError::BadLength)?,
        )?;
        let num = p.u8()?;
        let protocol = ProtocolId(p.u8()?);
        let spi_size = usize::from(p.u8()?);
        let num_transforms = usize::from(p.u8()?);
        let spi = p.bytes(spi_size)?.to_vec();
        let mut transforms = Vec::with_capacity(num_transforms);
        for i in 0..num_transforms {
            let (t_last, t) = Transform::read(&mut p)?;
            let want = if i + 1 == num_transforms {
                LAST
            } else {
                MORE_TRANSFORMS
            };
            if t_last != want {
                return Err(DecodeError::InvalidSyntax("bad transform Last Substruc"));
            }
            transforms.push(t);
        }
        // §3.3.1: Num Transforms must account for the whole proposal.
        p.finish()?;
        Ok((
            last,
            Proposal {
                num,
                protocol,
                spi,
                transforms,
            },
        ))
    }

    fn encode(&self, last: bool, out: &mut Vec<u8>) {
        let start = out.len();
        out.push(if last { LAST } else { MORE_PROPOSALS });
        out.push(0);
        let len = push_len16(out);
        out.push(self.num);
        out.push(self.protocol.0);
        out.push(u8_len(self.spi.len()));
        out.push(u8_len(self.transforms.len()));
        out.extend_from_slice(&self.spi);
        let n = self.transforms.len();
        for (i, t) in self.transforms.iter().enumerate() {
            t.encode(i + 1 == n, out);
        }
        patch_len16(out, len, start);
    }
}

impl Transform {
    /// A transform without attributes.
    pub fn new(ty: TransformType, id: u16) -> Self {
        Self {
            ty,
            id,
            attributes: Vec::new(),
        }
    }

    /// A transform with a Key Length attribute (§3.3.5), e.g. AES-CBC/GCM.
    pub fn with_key_length(ty: TransformType, id: u16, bits: u16) -> Self {
        Self {
            ty,
            id,
            attributes: vec![Attribute {
                ty: ATTR_KEY_LENGTH,
                value: AttributeValue::Tv(bits),
            }],
        }
    }

    /// The Key Length attribute's value in bits, if present in TV format.
    pub fn key_length(&self) -> Option<u16> {
        self.attributes.iter().find_map(|a| match a.value {
            AttributeValue::Tv(v) if a.ty == ATTR_KEY_LENGTH => Some(v),
            _ => None,
        })
    }

    fn read(r: &mut Reader<'_>) -> Result<(u8, Self), DecodeError> {
        let last = r.u8()?;
        let _reserved = r.u8()?; // §3.3.2: ignored on receipt
        let len = usize::from(r.u16()?);
        let mut t = r.sub(
            len.checked_sub(4)
                .filter(|l| *l >= 4)
                .ok_or(DecodeError::BadLength)?,
        )?;
        let ty = TransformType(t.u8()?);
        let _reserved2 = t.u8()?;
        let id = t.u16()?;
        let mut attributes = Vec::new();
        while !t.is_empty() {
            attributes.push(Attribute::read(&mut t)?);
        }
        Ok((last, Transform { ty, id, attributes }))
    }

    fn encode(&self, last: bool, out: &mut Vec<u8>) {
        let start = out.len();
        out.push(if last { LAST } else { MORE_TRANSFORMS });
        out.push(0);
        let len = push_len16(out);
        out.push(self.ty.0);
        out.push(0);
        out.extend_from_slice(&self.id.to_be_bytes());
        for a in &self.attributes {
            a.encode(out);
        }
        patch_len16(out, len, start);
    }
}

impl Attribute {
    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let raw = r.u16()?;
        let ty = raw & !AF;
        let value = if raw & AF != 0 {
            AttributeValue::Tv(r.u16()?)
        } else {
            let len = usize::from(r.u16()?);
            AttributeValue::Tlv(r.sub(len)?.rest().to_vec())
        };
        Ok(Attribute { ty, value })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        // The type field has 15 bits; the top bit is the format flag.
        let ty = self.ty & !AF;
        match &self.value {
            AttributeValue::Tv(v) => {
                out.extend_from_slice(&(ty | AF).to_be_bytes());
                out.extend_from_slice(&v.to_be_bytes());
            }
            AttributeValue::Tlv(v) => {
                out.extend_from_slice(&ty.to_be_bytes());
                out.extend_from_slice(&super::u16_len(v.len()).to_be_bytes());
                out.extend_from_slice(v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::{DhId, EncrId, EsnId, IntegId};

    fn enc(sa: &SaPayload) -> Vec<u8> {
        let mut out = Vec::new();
        sa.encode(&mut out);
        out
    }

    fn esp_sa() -> SaPayload {
        SaPayload {
            proposals: vec![
                Proposal {
                    num: 1,
                    protocol: ProtocolId::ESP,
                    spi: vec![0xde, 0xad, 0xbe, 0xef],
                    transforms: vec![
                        Transform::with_key_length(TransformType::ENCR, EncrId::AES_CBC.0, 128),
                        Transform::new(TransformType::INTEG, IntegId::HMAC_SHA2_256_128.0),
                        Transform::new(TransformType::ESN, EsnId::NO_ESN.0),
                    ],
                },
                Proposal {
                    num: 2,
                    protocol: ProtocolId::ESP,
                    spi: vec![0xde, 0xad, 0xbe, 0xef],
                    transforms: vec![Transform {
                        ty: TransformType(200),
                        id: 7,
                        attributes: vec![
                            Attribute {
                                ty: 0x1234,
                                value: AttributeValue::Tlv(vec![1, 2, 3]),
                            },
                            Attribute {
                                ty: 0x7fff,
                                value: AttributeValue::Tlv(vec![]),
                            },
                        ],
                    }],
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let sa = esp_sa();
        let bytes = enc(&sa);
        assert_eq!(SaPayload::decode(&bytes).unwrap(), sa);
        assert_eq!(enc(&SaPayload::decode(&bytes).unwrap()), bytes);
        assert_eq!(sa.proposals[0].transforms[0].key_length(), Some(128));
        assert_eq!(sa.proposals[0].transforms[1].key_length(), None);
    }

    #[test]
    fn transform_layout() {
        // §3.3.2 + §3.3.5: last, RESERVED, length 12, type 1, RESERVED, id 20, AF|14, 256.
        let mut out = Vec::new();
        Transform::with_key_length(TransformType::ENCR, EncrId::AES_GCM_16.0, 256)
            .encode(true, &mut out);
        assert_eq!(hex::encode(out), "0000000c01000014800e0100");
        let mut out = Vec::new();
        Transform::new(TransformType::KE, DhId::CURVE25519.0).encode(false, &mut out);
        assert_eq!(hex::encode(out), "030000080400001f");
    }

    #[test]
    fn rejects_bad_substructures() {
        let good = enc(&esp_sa());
        // First proposal claims to be last.
        let mut b = good.clone();
        b[0] = 0;
        assert!(matches!(
            SaPayload::decode(&b),
            Err(DecodeError::InvalidSyntax(_))
        ));
        // Last proposal claims more follow.
        let second = 4 + usize::from(u16::from_be_bytes([good[2], good[3]]));
        let mut b = good.clone();
        b[second - 4] = 2;
        assert!(matches!(
            SaPayload::decode(&b),
            Err(DecodeError::InvalidSyntax(_))
        ));
        // Unknown Last Substruc value.
        let mut b = good.clone();
        b[0] = 3;
        assert!(matches!(
            SaPayload::decode(&b),
            Err(DecodeError::InvalidSyntax(_))
        ));
        // First transform of the first proposal marked last.
        let mut b = good.clone();
        b[12] = 0;
        assert!(matches!(
            SaPayload::decode(&b),
            Err(DecodeError::InvalidSyntax(_))
        ));
        // Num Transforms too small: trailing transform bytes inside the proposal.
        let mut b = good.clone();
        b[7] = 2;
        assert!(matches!(
            SaPayload::decode(&b),
            Err(DecodeError::InvalidSyntax(_))
        ));
        // Num Transforms too large.
        let mut b = good.clone();
        b[7] = 4;
        assert!(SaPayload::decode(&b).is_err());
        // Proposal length below its fixed part, and past the payload.
        let mut b = good.clone();
        b[2..4].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(SaPayload::decode(&b), Err(DecodeError::BadLength));
        let mut b = good.clone();
        b[2..4].copy_from_slice(&0xfff0u16.to_be_bytes());
        assert_eq!(SaPayload::decode(&b), Err(DecodeError::BadLength));
        // Transform length below 8.
        let mut b = good.clone();
        b[14..16].copy_from_slice(&4u16.to_be_bytes());
        assert_eq!(SaPayload::decode(&b), Err(DecodeError::BadLength));
        // Empty SA payload and a lone truncated proposal header.
        assert!(matches!(
            SaPayload::decode(&[]),
            Err(DecodeError::InvalidSyntax(_))
        ));
        assert_eq!(SaPayload::decode(&[0, 0, 0]), Err(DecodeError::Truncated));
    }

    #[test]
    fn trailing_bytes_inside_transform_attribute() {
        // One proposal, one transform whose TLV attribute claims 4 octets but has 3.
        let b = [
            0, 0, 0, 23, 1, 3, 0, 1, // proposal, length 23
            0, 0, 0, 15, 1, 0, 0, 12, // transform, length 15
            0x00, 0x01, 0x00, 0x04, 0xaa, 0xbb, 0xcc, // TLV attribute
        ];
        assert_eq!(SaPayload::decode(&b[..]), Err(DecodeError::BadLength));
        // TV attribute cut in half.
        let b = [
            0, 0, 0, 18, 1, 3, 0, 1, 0, 0, 0, 10, 1, 0, 0, 12, 0x80, 0x0e,
        ];
        assert_eq!(SaPayload::decode(&b[..]), Err(DecodeError::Truncated));
    }
}
