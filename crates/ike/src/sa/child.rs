//! CHILD SA helpers: proposal conversion, traffic-selector narrowing (§2.9), key split (§2.17).

use crate::crypto::{self, Prf};
use crate::iana::{DhId, EncrId, EsnId, IntegId, PrfId, ProtocolId, TransformType};
use crate::proposal::{AlgorithmProposal, Protocol, Selected};
use crate::wire::{self, TrafficSelector, Transform};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use zeroize::Zeroizing;

/// Our configured proposal as an SA payload proposal (§3.3).
pub fn to_wire(p: &AlgorithmProposal, num: u8, spi: Vec<u8>, with_dh: bool) -> wire::Proposal {
    let protocol = match p.protocol {
        Protocol::Ike => ProtocolId::IKE,
        Protocol::Esp => ProtocolId::ESP,
    };
    let mut transforms = Vec::new();
    for &(id, bits) in &p.encr {
        transforms.push(match bits {
            Some(b) => Transform::with_key_length(TransformType::ENCR, id.0, b),
            None => Transform::new(TransformType::ENCR, id.0),
        });
    }
    for id in &p.integ {
        transforms.push(Transform::new(TransformType::INTEG, id.0));
    }
    for id in &p.prf {
        transforms.push(Transform::new(TransformType::PRF, id.0));
    }
    if with_dh {
        for id in &p.dh {
            transforms.push(Transform::new(TransformType::KE, id.0));
        }
    }
    if p.protocol == Protocol::Esp {
        let esn: &[EsnId] = if p.esn.is_empty() {
            &[EsnId::NO_ESN]
        } else {
            &p.esn
        };
        for id in esn {
            transforms.push(Transform::new(TransformType::ESN, id.0));
        }
    }
    wire::Proposal {
        num,
        protocol,
        spi,
        transforms,
    }
}

/// A peer's proposal in our algorithm terms, or `None` when it names a transform type
/// we do not understand (§3.3.6: such a proposal is rejected) or another protocol.
pub fn from_wire(p: &wire::Proposal, protocol: Protocol) -> Option<AlgorithmProposal> {
    let want = match protocol {
        Protocol::Ike => ProtocolId::IKE,
        Protocol::Esp => ProtocolId::ESP,
    };
    if p.protocol != want {
        return None;
    }
    let mut ap = AlgorithmProposal {
        protocol,
        encr: vec![],
        integ: vec![],
        prf: vec![],
        dh: vec![],
        esn: vec![],
    };
    for t in &p.transforms {
        match t.ty {
            TransformType::ENCR => ap.encr.push((EncrId(t.id), t.key_length())),
            TransformType::INTEG => {
                if t.id != IntegId::NONE.0 {
                    ap.integ.push(IntegId(t.id))
                }
            }
            TransformType::PRF => ap.prf.push(PrfId(t.id)),
            TransformType::KE => {
                if t.id != DhId::NONE.0 {
                    ap.dh.push(DhId(t.id))
                }
            }
            TransformType::ESN => ap.esn.push(EsnId(t.id)),
            _ => return None,
        }
    }
    Some(ap)
}

/// Proposals converted for display in logs ("IKE:AES_GCM_16_256/..., ...").
pub fn describe(ps: &[AlgorithmProposal]) -> String {
    let v: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
    v.join(", ")
}

/// Runs §2.7 selection of `offered` (wire) against `local`; returns the chosen wire
/// proposal index and the selection.
pub fn choose(
    local: &[AlgorithmProposal],
    offered: &[wire::Proposal],
    protocol: Protocol,
) -> Option<(usize, Selected)> {
    let converted: Vec<(usize, AlgorithmProposal)> = offered
        .iter()
        .enumerate()
        .filter_map(|(i, p)| from_wire(p, protocol).map(|ap| (i, ap)))
        .collect();
    let aps: Vec<AlgorithmProposal> = converted.iter().map(|(_, ap)| ap.clone()).collect();
    let (idx, sel) = crate::proposal::select(local, &aps)?;
    Some((converted[idx].0, sel))
}

/// The single-transform-per-type proposal we answer with (§3.3: the accepted proposal
/// keeps the initiator's proposal number).
pub fn selected_to_wire(
    sel: &Selected,
    protocol: Protocol,
    num: u8,
    spi: Vec<u8>,
) -> wire::Proposal {
    let ap = AlgorithmProposal {
        protocol,
        encr: vec![sel.encr],
        integ: sel.integ.into_iter().collect(),
        prf: sel.prf.into_iter().collect(),
        dh: sel.dh.into_iter().filter(|d| *d != DhId::NONE).collect(),
        esn: sel.esn.into_iter().collect(),
    };
    to_wire(&ap, num, spi, true)
}

/// A proposal with the DH transforms removed (§1.2: the first CHILD SA in IKE_AUTH
/// never carries a key exchange).
pub fn without_dh(ps: &[AlgorithmProposal]) -> Vec<AlgorithmProposal> {
    ps.iter()
        .map(|p| AlgorithmProposal {
            dh: vec![],
            ..p.clone()
        })
        .collect()
}

fn ip_to_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(v) => u32::from(v) as u128,
        IpAddr::V6(v) => u128::from(v),
    }
}

/// Intersection of two selectors, `None` if empty or of different families (§2.9).
pub fn intersect(a: &TrafficSelector, b: &TrafficSelector) -> Option<TrafficSelector> {
    let (
        TrafficSelector::Range {
            ts_type: ta,
            ip_protocol: pa,
            start_port: spa,
            end_port: epa,
            start: sa,
            end: ea,
        },
        TrafficSelector::Range {
            ts_type: tb,
            ip_protocol: pb,
            start_port: spb,
            end_port: epb,
            start: sb,
            end: eb,
        },
    ) = (a, b)
    else {
        return None;
    };
    if ta != tb || sa.is_ipv4() != sb.is_ipv4() {
        return None;
    }
    let proto = match (*pa, *pb) {
        (0, p) | (p, 0) => p,
        (x, y) if x == y => x,
        _ => return None,
    };
    let start_port = (*spa).max(*spb);
    let end_port = (*epa).min(*epb);
    if start_port > end_port {
        return None;
    }
    let start = if ip_to_u128(*sa) >= ip_to_u128(*sb) {
        *sa
    } else {
        *sb
    };
    let end = if ip_to_u128(*ea) <= ip_to_u128(*eb) {
        *ea
    } else {
        *eb
    };
    if ip_to_u128(start) > ip_to_u128(end) {
        return None;
    }
    Some(TrafficSelector::Range {
        ts_type: *ta,
        ip_protocol: proto,
        start_port,
        end_port,
        start,
        end,
    })
}

/// §2.9 narrowing: every non-empty intersection of the peer's selectors with ours.
pub fn narrow(peer: &[TrafficSelector], ours: &[TrafficSelector]) -> Vec<TrafficSelector> {
    let mut out = Vec::new();
    for p in peer {
        for o in ours {
            if let Some(i) = intersect(p, o) {
                if !out.contains(&i) {
                    out.push(i);
                }
            }
        }
    }
    out
}

/// True if every selector in `inner` lies within one of `outer` (the initiator's check
/// that the responder only narrowed, §2.9).
pub fn is_subset(inner: &[TrafficSelector], outer: &[TrafficSelector]) -> bool {
    inner
        .iter()
        .all(|i| outer.iter().any(|o| intersect(i, o).as_ref() == Some(i)))
}

/// Human form of a selector: "10.1.0.0/24", "0.0.0.0/0", or a range.
pub fn ts_to_string(ts: &TrafficSelector) -> String {
    ts.to_string()
}

/// Everything the dataplane needs to install one CHILD SA. Keys are never printed.
pub struct ChildSaInfo {
    pub spi_in: u32,
    pub spi_out: u32,
    pub encr: EncrId,
    pub encr_key_bits: Option<u16>,
    pub integ: Option<IntegId>,
    pub esn: bool,
    /// Inbound keys: encryption (incl. salt) then integrity.
    pub keys_in: Zeroizing<Vec<u8>>,
    pub keys_out: Zeroizing<Vec<u8>>,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    /// ESP-in-UDP endpoints (RFC 3948).
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub proposal: String,
    /// Inbound SPI of the CHILD SA this one rekeys, if any.
    pub replaces: Option<u32>,
}

impl std::fmt::Debug for ChildSaInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChildSaInfo")
            .field("spi_in", &format_args!("{:08x}", self.spi_in))
            .field("spi_out", &format_args!("{:08x}", self.spi_out))
            .field("proposal", &self.proposal)
            .field("esn", &self.esn)
            .field("keys", &"<redacted>")
            .finish()
    }
}

/// A CHILD SA as the session tracks it (keys live only in the dataplane).
#[derive(Debug, Clone)]
pub struct Child {
    pub spi_in: u32,
    pub spi_out: u32,
    pub proposal: String,
    pub esn: bool,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    pub created: Instant,
    /// When to rekey it (set by the session once installed).
    pub rekey_at: Option<Instant>,
    /// SPIi of the IKE SA that owns it (moves to the new SA on an IKE rekey).
    pub owner: u64,
    /// We rekeyed it and will delete it: a peer's rekey now gets TEMPORARY_FAILURE.
    pub superseded: bool,
    /// The peer's rekey of this SA crossed ours (§2.8.1): its Ni and our Nr.
    pub peer_rekey: Option<(Vec<u8>, Vec<u8>)>,
}

/// Secret key material, wiped on drop.
pub type Key = Zeroizing<Vec<u8>>;

/// Derives KEYMAT (§2.17) and splits it: the initiator→responder keys come first.
#[allow(clippy::too_many_arguments)]
pub fn derive(
    prf: Prf,
    sk_d: &[u8],
    shared: Option<&[u8]>,
    ni: &[u8],
    nr: &[u8],
    sel: &Selected,
    we_initiated: bool,
) -> Result<(Key, Key), crypto::CryptoError> {
    let ek = crypto::encr_key_len(sel.encr.0, sel.encr.1)?;
    let ik = match sel.integ {
        Some(i) => crypto::integ_key_len(i)?,
        None => 0,
    };
    let per_dir = ek + ik;
    let keymat = crypto::child_keymat(prf, sk_d, shared, ni, nr, 2 * per_dir);
    let i2r = Zeroizing::new(keymat[..per_dir].to_vec());
    let r2i = Zeroizing::new(keymat[per_dir..2 * per_dir].to_vec());
    Ok(if we_initiated { (r2i, i2r) } else { (i2r, r2i) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iana::TsType;
    use std::net::Ipv4Addr;

    fn ts(a: &str, l: u8) -> TrafficSelector {
        TrafficSelector::from_prefix(a.parse().unwrap(), l)
    }

    #[test]
    fn narrowing_intersects_ranges() {
        let any = [TrafficSelector::any_v4(), TrafficSelector::any_v6()];
        let peer = [ts("10.1.0.0", 24)];
        assert_eq!(narrow(&peer, &any), vec![ts("10.1.0.0", 24)]);
        assert_eq!(narrow(&any, &peer), vec![ts("10.1.0.0", 24)]);
        assert!(narrow(&[ts("10.1.0.0", 24)], &[ts("10.2.0.0", 24)]).is_empty());
        assert!(is_subset(&[ts("10.1.0.0", 24)], &any));
        assert!(!is_subset(&any, &[ts("10.1.0.0", 24)]));
    }

    #[test]
    fn ts_strings() {
        assert_eq!(ts_to_string(&TrafficSelector::any_v4()), "0.0.0.0/0");
        assert_eq!(ts_to_string(&TrafficSelector::any_v6()), "::/0");
        assert_eq!(ts_to_string(&ts("10.1.0.0", 24)), "10.1.0.0/24");
        let r = TrafficSelector::Range {
            ts_type: TsType::IPV4_ADDR_RANGE,
            ip_protocol: 0,
            start_port: 0,
            end_port: 65535,
            start: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            end: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)),
        };
        assert_eq!(ts_to_string(&r), "10.0.0.1..10.0.0.5");
    }
}
