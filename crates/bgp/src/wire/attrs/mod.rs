//! Path attributes (RFC 4271 §4.3, §5.1): flags, types, raw TLV, ORIGIN, AS_PATH, AGGREGATOR, the set.

use std::net::Ipv4Addr;

use super::{DecodeError, Reader};
use crate::limits::MAX_SEGMENT_LEN;

mod mp;
mod validate;

pub use mp::{MpNextHop, MpReach, MpUnreach};
pub use validate::{ParsedUpdate, UpdateContext};

/// Attribute flags octet (RFC 4271 §4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttrFlags(pub u8);
impl AttrFlags {
    /// Optional bit.
    pub const OPTIONAL: u8 = 0x80;
    /// Transitive bit.
    pub const TRANSITIVE: u8 = 0x40;
    /// Partial bit.
    pub const PARTIAL: u8 = 0x20;
    /// Extended Length bit.
    pub const EXTENDED_LENGTH: u8 = 0x10;
    /// Well-known (mandatory or discretionary): transitive, not optional.
    pub const WELL_KNOWN: AttrFlags = AttrFlags(Self::TRANSITIVE);
    /// Optional transitive.
    pub const OPT_TRANS: AttrFlags = AttrFlags(Self::OPTIONAL | Self::TRANSITIVE);
    /// Optional non-transitive.
    pub const OPT_NON_TRANS: AttrFlags = AttrFlags(Self::OPTIONAL);
    /// Whether the optional bit is set.
    pub fn optional(self) -> bool {
        self.0 & Self::OPTIONAL != 0
    }
    /// Whether the transitive bit is set.
    pub fn transitive(self) -> bool {
        self.0 & Self::TRANSITIVE != 0
    }
    /// Whether the Optional and Transitive bits equal those of `want` (RFC 7606 §3 c).
    pub(super) fn category_is(self, want: AttrFlags) -> bool {
        self.0 & (Self::OPTIONAL | Self::TRANSITIVE) == want.0
    }
}

/// Path attribute type code (IANA "BGP Path Attributes"), open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttrType(pub u8);
impl AttrType {
    /// ORIGIN (RFC 4271).
    pub const ORIGIN: Self = Self(1);
    /// AS_PATH (RFC 4271).
    pub const AS_PATH: Self = Self(2);
    /// NEXT_HOP (RFC 4271).
    pub const NEXT_HOP: Self = Self(3);
    /// MULTI_EXIT_DISC (RFC 4271).
    pub const MED: Self = Self(4);
    /// LOCAL_PREF (RFC 4271).
    pub const LOCAL_PREF: Self = Self(5);
    /// ATOMIC_AGGREGATE (RFC 4271).
    pub const ATOMIC_AGGREGATE: Self = Self(6);
    /// AGGREGATOR (RFC 4271, 4-octet per RFC 6793).
    pub const AGGREGATOR: Self = Self(7);
    /// COMMUNITIES (RFC 1997).
    pub const COMMUNITIES: Self = Self(8);
    /// MP_REACH_NLRI (RFC 4760).
    pub const MP_REACH_NLRI: Self = Self(14);
    /// MP_UNREACH_NLRI (RFC 4760).
    pub const MP_UNREACH_NLRI: Self = Self(15);
}

/// One path attribute as on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawAttribute {
    /// Flags (the extended-length bit is kept for exact round trips).
    pub flags: AttrFlags,
    /// Type code.
    pub type_code: AttrType,
    /// Value.
    pub value: Vec<u8>,
}

impl RawAttribute {
    /// Build with the given flags (extended length chosen on encode).
    pub fn new(flags: AttrFlags, type_code: AttrType, value: Vec<u8>) -> Self {
        Self {
            flags: AttrFlags(flags.0 & !AttrFlags::EXTENDED_LENGTH),
            type_code,
            value,
        }
    }

    pub(in crate::wire) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let flags = AttrFlags(r.u8()?);
        let type_code = AttrType(r.u8()?);
        let len = if flags.0 & AttrFlags::EXTENDED_LENGTH != 0 {
            usize::from(r.u16()?)
        } else {
            usize::from(r.u8()?)
        };
        let value = r.bytes(len)?.to_vec();
        Ok(Self {
            flags,
            type_code,
            value,
        })
    }

    /// Encoded size in octets.
    pub fn encoded_len(&self) -> usize {
        let ext = self.flags.0 & AttrFlags::EXTENDED_LENGTH != 0 || self.value.len() > 255;
        2 + if ext { 2 } else { 1 } + self.value.len()
    }

    /// Append flags, type, length, value.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let ext = self.flags.0 & AttrFlags::EXTENDED_LENGTH != 0 || self.value.len() > 255;
        let flags = if ext {
            self.flags.0 | AttrFlags::EXTENDED_LENGTH
        } else {
            self.flags.0
        };
        out.push(flags);
        out.push(self.type_code.0);
        if ext {
            // Bounded by the 4096-octet message limit checked in Message::encode.
            let l = u16::try_from(self.value.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&l.to_be_bytes());
        } else {
            out.push(self.value.len() as u8);
        }
        out.extend_from_slice(&self.value);
    }

    pub(super) fn whole(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

/// ORIGIN values (RFC 4271 §5.1.1); lower is preferred (§9.1.2.2 c).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// Learned by an interior protocol.
    #[default]
    Igp = 0,
    /// Learned by EGP.
    Egp = 1,
    /// Learned some other way.
    Incomplete = 2,
}

/// AS_PATH segment type (RFC 4271 §4.3, RFC 5065 §3), open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SegmentType(pub u8);
impl SegmentType {
    /// Unordered set.
    pub const AS_SET: Self = Self(1);
    /// Ordered sequence.
    pub const AS_SEQUENCE: Self = Self(2);
    /// Confederation sequence (RFC 5065).
    pub const CONFED_SEQUENCE: Self = Self(3);
    /// Confederation set (RFC 5065).
    pub const CONFED_SET: Self = Self(4);
}

/// One AS_PATH segment with 4-octet ASes (RFC 6793).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AsSegment {
    /// Segment type.
    pub kind: SegmentType,
    /// Member ASes.
    pub asns: Vec<u32>,
}

/// AS_PATH (RFC 4271 §5.1.2), 4-octet encoding only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AsPath {
    /// Segments in order.
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    /// A single AS_SEQUENCE.
    pub fn sequence(asns: Vec<u32>) -> Self {
        if asns.is_empty() {
            return Self::default();
        }
        Self {
            segments: vec![AsSegment {
                kind: SegmentType::AS_SEQUENCE,
                asns,
            }],
        }
    }

    /// Path length for best-path selection: an AS_SET counts 1, confederation segments 0
    /// (RFC 4271 §9.1.2.2 a, RFC 5065 §5.3).
    pub fn path_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                SegmentType::AS_SEQUENCE => s.asns.len(),
                SegmentType::AS_SET => 1,
                _ => 0,
            })
            .sum()
    }

    /// Whether `asn` appears anywhere (loop detection, RFC 4271 §9.1.2).
    pub fn contains(&self, asn: u32) -> bool {
        self.segments.iter().any(|s| s.asns.contains(&asn))
    }

    /// The neighbouring AS: first AS of a leading AS_SEQUENCE (RFC 4271 §9.1.2.2 c).
    pub fn first_as(&self) -> Option<u32> {
        self.segments
            .first()
            .filter(|s| s.kind == SegmentType::AS_SEQUENCE)
            .and_then(|s| s.asns.first().copied())
    }

    /// Prepend `asn` as the leftmost AS of a sequence (RFC 4271 §5.1.2 b).
    pub fn prepend(&mut self, asn: u32) {
        match self.segments.first_mut() {
            Some(s) if s.kind == SegmentType::AS_SEQUENCE && s.asns.len() < MAX_SEGMENT_LEN => {
                s.asns.insert(0, asn)
            }
            _ => self.segments.insert(
                0,
                AsSegment {
                    kind: SegmentType::AS_SEQUENCE,
                    asns: vec![asn],
                },
            ),
        }
    }

    /// Decode the attribute value. `None` when malformed (RFC 7606 §7.2).
    pub fn decode(value: &[u8]) -> Option<AsPath> {
        let mut r = Reader::new(value);
        let mut segments = Vec::new();
        while !r.is_empty() {
            let kind = SegmentType(r.u8().ok()?);
            let n = r.u8().ok()?;
            if n == 0 || !(1..=4).contains(&kind.0) {
                return None;
            }
            let mut asns = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                asns.push(r.u32().ok()?);
            }
            segments.push(AsSegment { kind, asns });
        }
        Some(AsPath { segments })
    }

    /// Attribute value (segments longer than 255 ASes are split).
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for s in &self.segments {
            for chunk in s.asns.chunks(MAX_SEGMENT_LEN) {
                v.push(s.kind.0);
                v.push(chunk.len() as u8);
                for a in chunk {
                    v.extend_from_slice(&a.to_be_bytes());
                }
            }
        }
        v
    }
}

/// AGGREGATOR (RFC 4271 §5.1.7, 4-octet AS per RFC 6793).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aggregator {
    /// Aggregating AS.
    pub asn: u32,
    /// Aggregating speaker.
    pub address: Ipv4Addr,
}

/// Interpreted path attributes (everything but NEXT_HOP and the MP attributes, which
/// are per-route).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PathAttributes {
    /// ORIGIN.
    pub origin: Origin,
    /// AS_PATH.
    pub as_path: AsPath,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// ATOMIC_AGGREGATE present.
    pub atomic_aggregate: bool,
    /// AGGREGATOR.
    pub aggregator: Option<Aggregator>,
    /// COMMUNITIES (RFC 1997), in received order.
    pub communities: Vec<u32>,
    /// Unrecognized optional transitive attributes, Partial bit already set
    /// (RFC 4271 §5: passed on with Partial set).
    pub unknown: Vec<RawAttribute>,
}

impl PathAttributes {
    /// Wire attributes in type order; `next_hop` adds NEXT_HOP for IPv4 NLRI.
    pub fn to_raw(&self, next_hop: Option<Ipv4Addr>) -> Vec<RawAttribute> {
        let mut v = vec![
            RawAttribute::new(
                AttrFlags::WELL_KNOWN,
                AttrType::ORIGIN,
                vec![self.origin as u8],
            ),
            RawAttribute::new(
                AttrFlags::WELL_KNOWN,
                AttrType::AS_PATH,
                self.as_path.encode(),
            ),
        ];
        if let Some(nh) = next_hop {
            v.push(RawAttribute::new(
                AttrFlags::WELL_KNOWN,
                AttrType::NEXT_HOP,
                nh.octets().to_vec(),
            ));
        }
        if let Some(m) = self.med {
            v.push(RawAttribute::new(
                AttrFlags::OPT_NON_TRANS,
                AttrType::MED,
                m.to_be_bytes().to_vec(),
            ));
        }
        if let Some(lp) = self.local_pref {
            v.push(RawAttribute::new(
                AttrFlags::WELL_KNOWN,
                AttrType::LOCAL_PREF,
                lp.to_be_bytes().to_vec(),
            ));
        }
        if self.atomic_aggregate {
            v.push(RawAttribute::new(
                AttrFlags::WELL_KNOWN,
                AttrType::ATOMIC_AGGREGATE,
                vec![],
            ));
        }
        if let Some(a) = self.aggregator {
            let mut b = a.asn.to_be_bytes().to_vec();
            b.extend_from_slice(&a.address.octets());
            v.push(RawAttribute::new(
                AttrFlags::OPT_TRANS,
                AttrType::AGGREGATOR,
                b,
            ));
        }
        if !self.communities.is_empty() {
            let b = self
                .communities
                .iter()
                .flat_map(|c| c.to_be_bytes())
                .collect();
            v.push(RawAttribute::new(
                AttrFlags::OPT_TRANS,
                AttrType::COMMUNITIES,
                b,
            ));
        }
        v.extend(self.unknown.iter().cloned());
        v
    }
}
