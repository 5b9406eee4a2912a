//! UPDATE message (RFC 4271 §4.3), path attributes (§5), multiprotocol attributes
//! (RFC 4760) and revised error handling (RFC 7606).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{Afi, DecodeError, Reader, Safi};
use crate::error::{UpdateError, UpdateSubcode};
use crate::limits::{HEADER_LEN, MAX_MESSAGE_LEN, MAX_SEGMENT_LEN};
use crate::prefix::Prefix;

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
    fn category_is(self, want: AttrFlags) -> bool {
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

    fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
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

    fn whole(&self) -> Vec<u8> {
        let mut v = Vec::new();
        self.encode(&mut v);
        v
    }
}

/// UPDATE message body as on the wire.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Update {
    /// Withdrawn IPv4 routes.
    pub withdrawn: Vec<Prefix>,
    /// Path attributes in wire order.
    pub attributes: Vec<RawAttribute>,
    /// Bytes of the attribute field from the first attribute whose length overran the
    /// Total Path Attribute Length (RFC 7606 §4: treat-as-withdraw), kept verbatim.
    pub malformed_attr_tail: Option<Vec<u8>>,
    /// IPv4 NLRI.
    pub nlri: Vec<Prefix>,
}

fn nlri_error(_: DecodeError) -> UpdateError {
    UpdateError::new(
        UpdateSubcode::INVALID_NETWORK_FIELD,
        vec![],
        "malformed NLRI or withdrawn routes",
    )
}

impl Update {
    /// Decode an UPDATE body. Errors here cannot be handled by treat-as-withdraw
    /// (RFC 7606 §4: the NLRI cannot be located) and reset the session.
    pub fn decode(body: &[u8]) -> Result<Update, UpdateError> {
        let list = |_| {
            UpdateError::new(
                UpdateSubcode::MALFORMED_ATTRIBUTE_LIST,
                vec![],
                "length fields inconsistent with message length",
            )
        };
        let mut r = Reader::new(body);
        let wlen = r.u16().map_err(list)?;
        let wbytes = r.bytes(usize::from(wlen)).map_err(list)?;
        let alen = r.u16().map_err(list)?;
        let abytes = r.bytes(usize::from(alen)).map_err(list)?;
        let withdrawn = Prefix::read_all(wbytes, Afi::IPV4).map_err(nlri_error)?;
        let nlri = Prefix::read_all(r.rest(), Afi::IPV4).map_err(nlri_error)?;
        let mut attributes = Vec::new();
        let mut malformed_attr_tail = None;
        let mut ar = Reader::new(abytes);
        while !ar.is_empty() {
            let before = ar.clone();
            match RawAttribute::read(&mut ar) {
                Ok(a) => attributes.push(a),
                Err(_) => {
                    malformed_attr_tail = Some(before.clone().rest().to_vec());
                    break;
                }
            }
        }
        Ok(Update {
            withdrawn,
            attributes,
            malformed_attr_tail,
            nlri,
        })
    }

    /// Append the body.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), crate::error::BgpError> {
        let too_long = |n| crate::error::BgpError::MessageTooLong(n);
        let mut w = Vec::new();
        for p in &self.withdrawn {
            p.encode(&mut w);
        }
        let mut a = Vec::new();
        for at in &self.attributes {
            at.encode(&mut a);
        }
        if let Some(t) = &self.malformed_attr_tail {
            a.extend_from_slice(t);
        }
        out.extend_from_slice(
            &u16::try_from(w.len())
                .map_err(|_| too_long(w.len()))?
                .to_be_bytes(),
        );
        out.extend_from_slice(&w);
        out.extend_from_slice(
            &u16::try_from(a.len())
                .map_err(|_| too_long(a.len()))?
                .to_be_bytes(),
        );
        out.extend_from_slice(&a);
        for p in &self.nlri {
            p.encode(out);
        }
        Ok(())
    }

    /// Whether this is the IPv4 End-of-RIB marker (RFC 4724 §2): an empty UPDATE.
    pub fn is_empty(&self) -> bool {
        self.withdrawn.is_empty()
            && self.attributes.is_empty()
            && self.malformed_attr_tail.is_none()
            && self.nlri.is_empty()
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

/// A next hop: an address plus, for IPv6, an optional link-local (RFC 2545 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MpNextHop {
    /// Global next hop (IPv4, or IPv6 also for IPv4 NLRI per RFC 8950).
    pub addr: IpAddr,
    /// IPv6 link-local next hop.
    pub link_local: Option<Ipv6Addr>,
}

impl MpNextHop {
    fn decode(b: &[u8]) -> Option<Self> {
        let mut r = Reader::new(b);
        match b.len() {
            4 => Some(Self {
                addr: IpAddr::V4(Ipv4Addr::from(r.array::<4>().ok()?)),
                link_local: None,
            }),
            16 => Some(Self {
                addr: IpAddr::V6(Ipv6Addr::from(r.array::<16>().ok()?)),
                link_local: None,
            }),
            32 => Some(Self {
                addr: IpAddr::V6(Ipv6Addr::from(r.array::<16>().ok()?)),
                link_local: Some(Ipv6Addr::from(r.array::<16>().ok()?)),
            }),
            _ => None,
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut v = match self.addr {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        };
        if let (IpAddr::V6(_), Some(ll)) = (self.addr, self.link_local) {
            v.extend_from_slice(&ll.octets());
        }
        v
    }
}

/// MP_REACH_NLRI for IPv4/IPv6 unicast (RFC 4760 §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpReach {
    /// Family.
    pub afi: Afi,
    /// Sub-family.
    pub safi: Safi,
    /// Next hop.
    pub next_hop: MpNextHop,
    /// Reachable prefixes.
    pub nlri: Vec<Prefix>,
}

impl MpReach {
    /// Decode; `Ok(None)` for families we do not carry (ignored, RFC 4760 §7).
    pub fn decode(value: &[u8]) -> Result<Option<MpReach>, DecodeError> {
        let mut r = Reader::new(value);
        let afi = Afi(r.u16()?);
        let safi = Safi(r.u8()?);
        let nhlen = r.u8()?;
        let nh = r.bytes(usize::from(nhlen))?;
        let _reserved = r.u8()?;
        if safi != Safi::UNICAST || (afi != Afi::IPV4 && afi != Afi::IPV6) {
            return Ok(None);
        }
        let next_hop = MpNextHop::decode(nh).ok_or(DecodeError::Truncated)?;
        // An IPv6 family cannot have an IPv4 next hop here (RFC 2545 §3).
        if afi == Afi::IPV6 && next_hop.addr.is_ipv4() {
            return Err(DecodeError::Truncated);
        }
        let nlri = Prefix::read_all(r.rest(), afi)?;
        Ok(Some(MpReach {
            afi,
            safi,
            next_hop,
            nlri,
        }))
    }

    /// Attribute value.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.afi.0.to_be_bytes().to_vec();
        v.push(self.safi.0);
        let nh = self.next_hop.encode();
        v.push(nh.len() as u8);
        v.extend_from_slice(&nh);
        v.push(0);
        for p in &self.nlri {
            p.encode(&mut v);
        }
        v
    }
}

/// MP_UNREACH_NLRI (RFC 4760 §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MpUnreach {
    /// Family.
    pub afi: Afi,
    /// Sub-family.
    pub safi: Safi,
    /// Withdrawn prefixes.
    pub withdrawn: Vec<Prefix>,
}

impl MpUnreach {
    /// Decode; `Ok(None)` for families we do not carry.
    pub fn decode(value: &[u8]) -> Result<Option<MpUnreach>, DecodeError> {
        let mut r = Reader::new(value);
        let afi = Afi(r.u16()?);
        let safi = Safi(r.u8()?);
        if safi != Safi::UNICAST || (afi != Afi::IPV4 && afi != Afi::IPV6) {
            return Ok(None);
        }
        let withdrawn = Prefix::read_all(r.rest(), afi)?;
        Ok(Some(MpUnreach {
            afi,
            safi,
            withdrawn,
        }))
    }

    /// Attribute value.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.afi.0.to_be_bytes().to_vec();
        v.push(self.safi.0);
        for p in &self.withdrawn {
            p.encode(&mut v);
        }
        v
    }
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

/// What the receiver needs to judge an UPDATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateContext {
    /// Session is external.
    pub ebgp: bool,
    /// The peer's AS.
    pub peer_as: u32,
}

/// An UPDATE after RFC 7606 processing, ready for the RIB.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedUpdate {
    /// Prefixes to remove (withdrawn field, MP_UNREACH, and on treat-as-withdraw the
    /// announced ones).
    pub withdrawn: Vec<Prefix>,
    /// Reachable prefixes with their next hop.
    pub announced: Vec<(Prefix, MpNextHop)>,
    /// Attributes shared by `announced`.
    pub attrs: PathAttributes,
    /// Set when the whole UPDATE was turned into a withdrawal (RFC 7606 §2).
    pub treat_as_withdraw: Option<UpdateError>,
    /// Attributes dropped under "attribute discard" (RFC 7606 §2).
    pub discarded: Vec<UpdateError>,
}

impl ParsedUpdate {
    /// Interpret an UPDATE. `Err` means the session must be reset (RFC 7606 §3 a/g,
    /// §7.11, or an unrecognized well-known attribute per RFC 4271 §6.3).
    pub fn from_update(u: &Update, ctx: UpdateContext) -> Result<ParsedUpdate, UpdateError> {
        let mut out = ParsedUpdate {
            withdrawn: u.withdrawn.clone(),
            ..Default::default()
        };
        let mut taw: Option<UpdateError> = None;
        let mut set_taw = |e: UpdateError| {
            taw.get_or_insert(e);
        };
        let mut seen = BTreeSet::new();
        let mut next_hop: Option<Ipv4Addr> = None;
        let mut mp_reach: Option<MpReach> = None;
        for a in &u.attributes {
            let t = a.type_code;
            let is_mp = t == AttrType::MP_REACH_NLRI || t == AttrType::MP_UNREACH_NLRI;
            if !seen.insert(t) {
                if is_mp {
                    // §3 g: repeated MP attributes reset the session.
                    return Err(UpdateError::new(
                        UpdateSubcode::MALFORMED_ATTRIBUTE_LIST,
                        vec![],
                        "repeated MP_REACH/MP_UNREACH",
                    ));
                }
                // §3 g: keep the first instance, discard the rest.
                out.discarded.push(UpdateError::new(
                    UpdateSubcode::MALFORMED_ATTRIBUTE_LIST,
                    a.whole(),
                    "repeated attribute",
                ));
                continue;
            }
            let flags_err =
                || UpdateError::new(UpdateSubcode::ATTRIBUTE_FLAGS, a.whole(), "attribute flags");
            let len_err = || {
                UpdateError::new(
                    UpdateSubcode::ATTRIBUTE_LENGTH,
                    a.whole(),
                    "attribute length",
                )
            };
            let u32_val = || -> Option<u32> {
                let arr: [u8; 4] = a.value.as_slice().try_into().ok()?;
                Some(u32::from_be_bytes(arr))
            };
            match t {
                AttrType::ORIGIN => {
                    if !a.flags.category_is(AttrFlags::WELL_KNOWN) {
                        set_taw(flags_err());
                    } else {
                        // §7.1: wrong length or undefined value → treat-as-withdraw.
                        match a.value.as_slice() {
                            [0] => out.attrs.origin = Origin::Igp,
                            [1] => out.attrs.origin = Origin::Egp,
                            [2] => out.attrs.origin = Origin::Incomplete,
                            [_] => set_taw(UpdateError::new(
                                UpdateSubcode::INVALID_ORIGIN,
                                a.whole(),
                                "undefined ORIGIN",
                            )),
                            _ => set_taw(len_err()),
                        }
                    }
                }
                AttrType::AS_PATH => {
                    if !a.flags.category_is(AttrFlags::WELL_KNOWN) {
                        set_taw(flags_err());
                    } else {
                        match AsPath::decode(&a.value) {
                            // §7.2: malformed AS_PATH → treat-as-withdraw.
                            None => set_taw(UpdateError::new(
                                UpdateSubcode::MALFORMED_AS_PATH,
                                vec![],
                                "malformed AS_PATH",
                            )),
                            Some(p) => {
                                // RFC 4271 §6.3: an external peer must be the leftmost AS.
                                if ctx.ebgp && p.first_as() != Some(ctx.peer_as) {
                                    set_taw(UpdateError::new(
                                        UpdateSubcode::MALFORMED_AS_PATH,
                                        vec![],
                                        "AS_PATH does not start with peer AS",
                                    ));
                                }
                                out.attrs.as_path = p;
                            }
                        }
                    }
                }
                AttrType::NEXT_HOP => {
                    if !a.flags.category_is(AttrFlags::WELL_KNOWN) {
                        set_taw(flags_err());
                    } else if let Some(v) = u32_val() {
                        let nh = Ipv4Addr::from(v);
                        // §7.3 / RFC 4271 §6.3: a syntactically correct but unusable
                        // next hop → treat-as-withdraw.
                        if nh.is_unspecified() || nh.is_multicast() || nh.is_broadcast() {
                            set_taw(UpdateError::new(
                                UpdateSubcode::INVALID_NEXT_HOP,
                                a.whole(),
                                "invalid NEXT_HOP",
                            ));
                        }
                        next_hop = Some(nh);
                    } else {
                        set_taw(len_err());
                    }
                }
                AttrType::MED => {
                    if !a.flags.category_is(AttrFlags::OPT_NON_TRANS) {
                        set_taw(flags_err());
                    } else if let Some(v) = u32_val() {
                        out.attrs.med = Some(v);
                    } else {
                        set_taw(len_err()); // §7.4
                    }
                }
                AttrType::LOCAL_PREF => {
                    if ctx.ebgp {
                        // §7.5: from an external peer it is discarded.
                        out.discarded.push(UpdateError::new(
                            UpdateSubcode::MALFORMED_ATTRIBUTE_LIST,
                            a.whole(),
                            "LOCAL_PREF from external peer",
                        ));
                    } else if !a.flags.category_is(AttrFlags::WELL_KNOWN) {
                        set_taw(flags_err());
                    } else if let Some(v) = u32_val() {
                        out.attrs.local_pref = Some(v);
                    } else {
                        set_taw(len_err());
                    }
                }
                AttrType::ATOMIC_AGGREGATE => {
                    // §7.6: wrong length → attribute discard.
                    if a.value.is_empty() && a.flags.category_is(AttrFlags::WELL_KNOWN) {
                        out.attrs.atomic_aggregate = true;
                    } else {
                        out.discarded.push(len_err());
                    }
                }
                AttrType::AGGREGATOR => {
                    // §7.7: wrong length → attribute discard.
                    let mut r = Reader::new(&a.value);
                    match (r.u32(), r.array::<4>(), a.value.len()) {
                        (Ok(asn), Ok(ip), 8) if a.flags.category_is(AttrFlags::OPT_TRANS) => {
                            out.attrs.aggregator = Some(Aggregator {
                                asn,
                                address: Ipv4Addr::from(ip),
                            })
                        }
                        _ => out.discarded.push(len_err()),
                    }
                }
                AttrType::COMMUNITIES => {
                    // §7.8: length not a non-zero multiple of 4 → treat-as-withdraw.
                    if !a.flags.category_is(AttrFlags::OPT_TRANS) {
                        set_taw(flags_err());
                    } else if a.value.is_empty() || !a.value.chunks_exact(4).remainder().is_empty()
                    {
                        set_taw(len_err());
                    } else {
                        out.attrs.communities = a
                            .value
                            .chunks_exact(4)
                            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                            .collect();
                    }
                }
                AttrType::MP_REACH_NLRI => {
                    // §7.11 / RFC 4760 §7: cannot locate NLRI → session reset.
                    let opt = UpdateError::new(
                        UpdateSubcode::OPTIONAL_ATTRIBUTE,
                        a.whole(),
                        "malformed MP_REACH_NLRI",
                    );
                    if !a.flags.category_is(AttrFlags::OPT_NON_TRANS) {
                        return Err(opt);
                    }
                    mp_reach = MpReach::decode(&a.value).map_err(|_| opt)?;
                }
                AttrType::MP_UNREACH_NLRI => {
                    let opt = UpdateError::new(
                        UpdateSubcode::OPTIONAL_ATTRIBUTE,
                        a.whole(),
                        "malformed MP_UNREACH_NLRI",
                    );
                    if !a.flags.category_is(AttrFlags::OPT_NON_TRANS) {
                        return Err(opt);
                    }
                    if let Some(un) = MpUnreach::decode(&a.value).map_err(|_| opt)? {
                        out.withdrawn.extend(un.withdrawn);
                    }
                }
                _ => {
                    if !a.flags.optional() {
                        // RFC 4271 §6.3: unrecognized well-known attribute.
                        return Err(UpdateError::new(
                            UpdateSubcode::UNRECOGNIZED_WELL_KNOWN,
                            a.whole(),
                            "unrecognized well-known attribute",
                        ));
                    }
                    if a.flags.transitive() {
                        // RFC 4271 §5: pass on with the Partial bit set.
                        let mut k = a.clone();
                        k.flags = AttrFlags(
                            (k.flags.0 | AttrFlags::PARTIAL) & !AttrFlags::EXTENDED_LENGTH,
                        );
                        out.attrs.unknown.push(k);
                    }
                    // Optional non-transitive: quietly ignored (RFC 4271 §5).
                }
            }
        }
        if u.malformed_attr_tail.is_some() {
            // RFC 7606 §4: attribute overrunning the attribute field.
            set_taw(UpdateError::new(
                UpdateSubcode::MALFORMED_ATTRIBUTE_LIST,
                vec![],
                "attribute length overruns path attributes",
            ));
        }
        let mut announced: Vec<(Prefix, MpNextHop)> = Vec::new();
        if !u.nlri.is_empty() {
            // RFC 4271 §5 / RFC 7606 §3 d: mandatory attributes for IPv4 NLRI.
            for (ty, have) in [
                (AttrType::ORIGIN, seen.contains(&AttrType::ORIGIN)),
                (AttrType::AS_PATH, seen.contains(&AttrType::AS_PATH)),
                (AttrType::NEXT_HOP, next_hop.is_some()),
            ] {
                if !have {
                    set_taw(UpdateError::new(
                        UpdateSubcode::MISSING_WELL_KNOWN,
                        vec![ty.0],
                        "missing well-known attribute",
                    ));
                }
            }
            let nh = MpNextHop {
                addr: IpAddr::V4(next_hop.unwrap_or(Ipv4Addr::UNSPECIFIED)),
                link_local: None,
            };
            announced.extend(u.nlri.iter().map(|p| (*p, nh)));
        }
        if let Some(mp) = mp_reach.filter(|m| !m.nlri.is_empty()) {
            for (ty, have) in [
                (AttrType::ORIGIN, seen.contains(&AttrType::ORIGIN)),
                (AttrType::AS_PATH, seen.contains(&AttrType::AS_PATH)),
            ] {
                if !have {
                    set_taw(UpdateError::new(
                        UpdateSubcode::MISSING_WELL_KNOWN,
                        vec![ty.0],
                        "missing well-known attribute",
                    ));
                }
            }
            announced.extend(mp.nlri.iter().map(|p| (*p, mp.next_hop)));
        }
        if let Some(e) = taw {
            out.withdrawn.extend(announced.into_iter().map(|(p, _)| p));
            out.treat_as_withdraw = Some(e);
        } else {
            out.announced = announced;
        }
        Ok(out)
    }
}

/// Encoded UPDATE overhead: header + the two 2-octet length fields.
const UPDATE_OVERHEAD: usize = HEADER_LEN + 4;

/// Build UPDATEs announcing `prefixes` (all of one family) with `attrs` and
/// `next_hop`, split so that none exceeds 4096 octets. IPv4 prefixes with an IPv4
/// next hop use the NLRI field; everything else MP_REACH_NLRI (put first, RFC 7606 §5.1).
pub fn announce_updates(
    attrs: &PathAttributes,
    next_hop: MpNextHop,
    prefixes: &[Prefix],
) -> Vec<Update> {
    let Some(first) = prefixes.first() else {
        return vec![];
    };
    let afi = first.afi();
    let classic = afi == Afi::IPV4 && next_hop.addr.is_ipv4();
    let v4nh = match next_hop.addr {
        IpAddr::V4(a) if classic => Some(a),
        _ => None,
    };
    let base = attrs.to_raw(v4nh);
    let base_len: usize = base.iter().map(RawAttribute::encoded_len).sum();
    // MP_REACH: flags, type, 2-octet length, AFI, SAFI, nh len, nh, reserved.
    let mp_fixed = if classic {
        0
    } else {
        4 + 3 + 1 + next_hop.encode().len() + 1
    };
    let budget = MAX_MESSAGE_LEN.saturating_sub(UPDATE_OVERHEAD + base_len + mp_fixed);
    let mut out = Vec::new();
    for chunk in chunk_by_size(prefixes, budget) {
        let mut u = Update::default();
        if classic {
            u.attributes = base.clone();
            u.nlri = chunk;
        } else {
            let mp = MpReach {
                afi,
                safi: Safi::UNICAST,
                next_hop,
                nlri: chunk,
            };
            let mut a = RawAttribute::new(
                AttrFlags::OPT_NON_TRANS,
                AttrType::MP_REACH_NLRI,
                mp.encode(),
            );
            a.flags.0 |= AttrFlags::EXTENDED_LENGTH;
            u.attributes = vec![a];
            u.attributes.extend(base.iter().cloned());
        }
        out.push(u);
    }
    out
}

/// Build UPDATEs withdrawing `prefixes` (any mix of families).
pub fn withdraw_updates(prefixes: &[Prefix]) -> Vec<Update> {
    let v4: Vec<Prefix> = prefixes
        .iter()
        .filter(|p| p.afi() == Afi::IPV4)
        .copied()
        .collect();
    let v6: Vec<Prefix> = prefixes
        .iter()
        .filter(|p| p.afi() == Afi::IPV6)
        .copied()
        .collect();
    let mut out = Vec::new();
    for chunk in chunk_by_size(&v4, MAX_MESSAGE_LEN - UPDATE_OVERHEAD) {
        out.push(Update {
            withdrawn: chunk,
            ..Default::default()
        });
    }
    for chunk in chunk_by_size(&v6, MAX_MESSAGE_LEN - UPDATE_OVERHEAD - 4 - 3) {
        let un = MpUnreach {
            afi: Afi::IPV6,
            safi: Safi::UNICAST,
            withdrawn: chunk,
        };
        let mut a = RawAttribute::new(
            AttrFlags::OPT_NON_TRANS,
            AttrType::MP_UNREACH_NLRI,
            un.encode(),
        );
        a.flags.0 |= AttrFlags::EXTENDED_LENGTH;
        out.push(Update {
            attributes: vec![a],
            ..Default::default()
        });
    }
    out
}

fn chunk_by_size(prefixes: &[Prefix], budget: usize) -> Vec<Vec<Prefix>> {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut used = 0;
    for p in prefixes {
        let l = p.encoded_len();
        if used + l > budget && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
            used = 0;
        }
        cur.push(*p);
        used += l;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
