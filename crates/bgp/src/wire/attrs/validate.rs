//! Received attributes checked one by one (RFC 4271 §6.3, RFC 7606 §3, §7) into a ParsedUpdate.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};

use super::{
    Aggregator, AsPath, AttrFlags, AttrType, MpNextHop, MpReach, MpUnreach, Origin, PathAttributes,
};
use crate::error::{UpdateError, UpdateSubcode};
use crate::prefix::Prefix;
use crate::wire::{Reader, Update};

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
