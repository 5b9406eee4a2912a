//! UPDATE message (RFC 4271 §4.3): withdrawn routes, NLRI, codec; building announce/withdraw UPDATEs.

use std::net::IpAddr;

use super::attrs::{
    AttrFlags, AttrType, MpNextHop, MpReach, MpUnreach, PathAttributes, RawAttribute,
};
use super::{Afi, DecodeError, Reader, Safi};
use crate::error::{UpdateError, UpdateSubcode};
use crate::limits::{HEADER_LEN, MAX_MESSAGE_LEN};
use crate::prefix::Prefix;

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
