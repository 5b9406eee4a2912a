//! Algorithm proposals: strongSwan keyword syntax and proposal selection.
//!
//! A proposal string is a `-`-separated list of algorithm keywords, e.g.
//! `aes256gcm16-prfsha384-x25519` (IKE) or `aes128-sha256-esn` (ESP). Keywords of the
//! same transform type are alternatives, offered in the order written.
//!
//! These are algorithm-level types, independent of the wire codec: the SA payload
//! encoder/decoder converts between [`AlgorithmProposal`] and RFC 7296 §3.3 proposals.

use core::fmt;

use crate::iana::{DhId, EncrId, EsnId, IntegId, PrfId, ProtocolId, TransformType};
use crate::wire::{Proposal as WireProposal, Transform};

mod keywords;

pub use keywords::supported;
use keywords::{keyword, Keyword};

/// Which SA a proposal negotiates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// The IKE SA itself (RFC 7296 §3.3.1 Protocol ID 1).
    Ike,
    /// An ESP Child SA (Protocol ID 3).
    Esp,
}

impl From<Protocol> for ProtocolId {
    fn from(p: Protocol) -> ProtocolId {
        match p {
            Protocol::Ike => ProtocolId::IKE,
            Protocol::Esp => ProtocolId::ESP,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Ike => "IKE",
            Protocol::Esp => "ESP",
        })
    }
}

/// One proposal: for each transform type, the acceptable algorithms in preference order.
///
/// An empty list means the transform type is absent from the proposal (e.g. no INTEG
/// with an AEAD cipher, no KE for an ESP proposal without PFS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgorithmProposal {
    pub protocol: Protocol,
    /// Encryption algorithm and its key length in bits (the Key Length attribute,
    /// RFC 7296 §3.3.5; `None` for fixed-length ciphers).
    pub encr: Vec<(EncrId, Option<u16>)>,
    pub integ: Vec<IntegId>,
    pub prf: Vec<PrfId>,
    pub dh: Vec<DhId>,
    pub esn: Vec<EsnId>,
}

/// A proposal string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error("unsupported algorithm \"{keyword}\" in \"{proposal}\"; supported: {}", supported(*protocol))]
    UnknownKeyword {
        keyword: String,
        proposal: String,
        protocol: Protocol,
    },
    #[error("no {what} algorithm in \"{proposal}\"")]
    Missing {
        what: &'static str,
        proposal: String,
    },
    #[error("{reason} in \"{proposal}\"")]
    Invalid { reason: String, proposal: String },
}

impl ProposalError {
    /// The message without the trailing `in "<proposal>"`, for callers that name the
    /// proposal themselves (e.g. `... in ike proposal "x"`).
    pub fn reason(&self) -> String {
        match self {
            ProposalError::UnknownKeyword { keyword, .. } => {
                format!("unsupported algorithm \"{keyword}\"")
            }
            ProposalError::Missing { what, .. } => format!("no {what} algorithm"),
            ProposalError::Invalid { reason, .. } => reason.clone(),
        }
    }

    /// For an unknown keyword, what the parser accepts instead (see [`supported`]).
    pub fn supported(&self) -> Option<String> {
        match self {
            ProposalError::UnknownKeyword { protocol, .. } => Some(supported(*protocol)),
            _ => None,
        }
    }

    /// The proposal string the error is about.
    pub fn proposal(&self) -> &str {
        match self {
            ProposalError::UnknownKeyword { proposal, .. }
            | ProposalError::Missing { proposal, .. }
            | ProposalError::Invalid { proposal, .. } => proposal,
        }
    }
}

/// RFC 7296 §3.3: combined-mode (AEAD) ciphers carry their own integrity protection.
pub fn is_aead(encr: EncrId) -> bool {
    matches!(
        encr,
        EncrId::AES_GCM_8 | EncrId::AES_GCM_12 | EncrId::AES_GCM_16 | EncrId::CHACHA20_POLY1305
    )
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// Parse a strongSwan-style proposal string such as `aes256gcm16-prfsha384-x25519`.
///
/// Rules (RFC 7296 §3.3, §3.3.3): IKE needs encryption, a PRF, integrity unless the
/// cipher is AEAD, and at least one DH group; without an explicit PRF the PRFs of the
/// integrity algorithms are used. ESP needs encryption and integrity unless AEAD, may
/// carry DH groups (PFS for CREATE_CHILD_SA), and offers `noesn` unless told otherwise.
pub fn parse(s: &str, protocol: Protocol) -> Result<AlgorithmProposal, ProposalError> {
    let invalid = |reason: &str| ProposalError::Invalid {
        reason: reason.to_string(),
        proposal: s.to_string(),
    };
    let missing = |what: &'static str| ProposalError::Missing {
        what,
        proposal: s.to_string(),
    };
    let mut p = AlgorithmProposal {
        protocol,
        encr: Vec::new(),
        integ: Vec::new(),
        prf: Vec::new(),
        dh: Vec::new(),
        esn: Vec::new(),
    };
    let mut implied_prf = Vec::new();
    if s.trim().is_empty() {
        return Err(invalid("empty proposal"));
    }
    for word in s.trim().split('-') {
        if word.is_empty() {
            return Err(invalid("empty algorithm keyword"));
        }
        match keyword(word) {
            None => {
                return Err(ProposalError::UnknownKeyword {
                    keyword: word.to_string(),
                    proposal: s.to_string(),
                    protocol,
                })
            }
            Some(Keyword::Encr(id, bits)) => push_unique(&mut p.encr, (id, bits)),
            Some(Keyword::Integ(id, prf)) => {
                push_unique(&mut p.integ, id);
                push_unique(&mut implied_prf, prf);
            }
            Some(Keyword::Prf(id)) => push_unique(&mut p.prf, id),
            Some(Keyword::Dh(id)) => push_unique(&mut p.dh, id),
            Some(Keyword::Esn(id)) => push_unique(&mut p.esn, id),
        }
    }

    if p.encr.is_empty() {
        return Err(missing("encryption"));
    }
    let aead = p.encr.iter().filter(|(id, _)| is_aead(*id)).count();
    if aead != 0 && aead != p.encr.len() {
        return Err(invalid(
            "AEAD and non-AEAD encryption algorithms cannot be mixed in one proposal",
        ));
    }
    let aead = aead != 0;
    // §3.3: with a combined-mode cipher the integrity transform must be absent.
    if aead && !p.integ.is_empty() {
        return Err(invalid(
            "an AEAD encryption algorithm must not be combined with an integrity algorithm",
        ));
    }
    if !aead && p.integ.is_empty() {
        return Err(missing("integrity"));
    }

    match protocol {
        Protocol::Ike => {
            if p.prf.is_empty() {
                if aead {
                    return Err(ProposalError::Missing {
                        what: "PRF (e.g. prfsha256; required with AEAD)",
                        proposal: s.to_string(),
                    });
                }
                p.prf = implied_prf;
            }
            if p.dh.is_empty() {
                return Err(missing("key exchange (DH group)"));
            }
            if !p.esn.is_empty() {
                return Err(invalid("esn/noesn are only valid in ESP proposals"));
            }
        }
        Protocol::Esp => {
            if !p.prf.is_empty() {
                return Err(invalid("a PRF is only valid in IKE proposals"));
            }
            if p.esn.is_empty() {
                p.esn.push(EsnId::NO_ESN);
            }
        }
    }
    Ok(p)
}

/// Parse a list of proposal strings (e.g. from a configuration file).
pub fn parse_list<S: AsRef<str>>(
    list: &[S],
    protocol: Protocol,
) -> Result<Vec<AlgorithmProposal>, ProposalError> {
    list.iter().map(|s| parse(s.as_ref(), protocol)).collect()
}

/// Default IKE proposals: AES-GCM first, AES-CBC + HMAC-SHA2 as fallback; Curve25519
/// preferred, then the ECP and MODP groups strongSwan also offers by default.
pub fn default_ike() -> Vec<AlgorithmProposal> {
    const GROUPS: &str = "x25519-ecp256-ecp384-modp3072-modp2048";
    [
        format!("aes256gcm16-aes128gcm16-prfsha384-prfsha256-prfsha512-{GROUPS}"),
        format!("aes256-aes128-sha384-sha256-sha512-{GROUPS}"),
    ]
    .iter()
    .map(|s| parse(s, Protocol::Ike).expect("built-in IKE proposal"))
    .collect()
}

/// Default ESP proposals: AES-GCM first, AES-CBC + HMAC-SHA2 as fallback; no PFS group
/// (the Child SA created in IKE_AUTH has none anyway); 32-bit sequence numbers
/// preferred, extended ones accepted.
pub fn default_esp() -> Vec<AlgorithmProposal> {
    [
        "aes256gcm16-aes128gcm16-noesn-esn",
        "aes256-aes128-sha256-sha384-sha512-noesn-esn",
    ]
    .iter()
    .map(|s| parse(s, Protocol::Esp).expect("built-in ESP proposal"))
    .collect()
}

impl AlgorithmProposal {
    /// The proposal without KE transforms: the Child SA negotiated in IKE_AUTH takes its
    /// keys from the IKE SA, so its proposals carry no DH group (RFC 7296 §1.2).
    pub fn without_dh(&self) -> AlgorithmProposal {
        AlgorithmProposal {
            dh: Vec::new(),
            ..self.clone()
        }
    }

    /// Whether the proposal's ciphers are combined-mode (AEAD).
    pub fn is_aead(&self) -> bool {
        self.encr.first().is_some_and(|(id, _)| is_aead(*id))
    }
}

/// Algorithm names as strongSwan logs them.
fn encr_name(id: EncrId, bits: Option<u16>) -> String {
    let base = match id {
        EncrId::AES_CBC => "AES_CBC".to_string(),
        EncrId::AES_CTR => "AES_CTR".to_string(),
        EncrId::AES_GCM_8 => "AES_GCM_8".to_string(),
        EncrId::AES_GCM_12 => "AES_GCM_12".to_string(),
        EncrId::AES_GCM_16 => "AES_GCM_16".to_string(),
        other => other.to_string(),
    };
    match bits {
        Some(b) => format!("{base}_{b}"),
        None => base,
    }
}

fn integ_name(id: IntegId) -> String {
    match id.name() {
        Some(n) => n.strip_prefix("AUTH_").unwrap_or(n).to_string(),
        None => id.to_string(),
    }
}

fn dh_name(id: DhId) -> String {
    match id {
        DhId::CURVE25519 => "CURVE_25519".to_string(),
        DhId::CURVE448 => "CURVE_448".to_string(),
        other => other.to_string(),
    }
}

fn esn_name(id: EsnId) -> String {
    match id {
        EsnId::NO_ESN => "NO_EXT_SEQ".to_string(),
        EsnId::ESN => "EXT_SEQ".to_string(),
        other => other.to_string(),
    }
}

impl fmt::Display for AlgorithmProposal {
    /// strongSwan's log style: `IKE:AES_GCM_16_256/PRF_HMAC_SHA2_384/CURVE_25519`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self
            .encr
            .iter()
            .map(|&(id, bits)| encr_name(id, bits))
            .chain(self.integ.iter().map(|&i| integ_name(i)))
            .chain(self.prf.iter().map(|p| p.to_string()))
            .chain(self.dh.iter().map(|&d| dh_name(d)))
            .chain(self.esn.iter().map(|&e| esn_name(e)))
            .collect();
        write!(f, "{}:{}", self.protocol, names.join("/"))
    }
}

/// The algorithms chosen from one proposal: exactly one per transform type the
/// initiator's proposal contained (RFC 7296 §3.3.6). `None` means the initiator's
/// proposal did not carry that transform type, so the reply must omit it too; an
/// explicit `Some(IntegId::NONE)` / `Some(DhId::NONE)` must be echoed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected {
    pub encr: (EncrId, Option<u16>),
    pub integ: Option<IntegId>,
    pub prf: Option<PrfId>,
    pub dh: Option<DhId>,
    pub esn: Option<EsnId>,
}

impl Selected {
    /// The integrity algorithm to run, if any (`NONE` counts as none).
    pub fn integ_alg(&self) -> Option<IntegId> {
        self.integ.filter(|&i| i != IntegId::NONE)
    }

    /// The DH group to run, if any: `NONE` or absent means no (PFS) key exchange.
    pub fn dh_group(&self) -> Option<DhId> {
        self.dh.filter(|&d| d != DhId::NONE)
    }

    /// Whether extended sequence numbers were chosen (absent means 32-bit).
    pub fn esn_enabled(&self) -> bool {
        self.esn == Some(EsnId::ESN)
    }
}

impl fmt::Display for Selected {
    /// `AES_GCM_16_256/PRF_HMAC_SHA2_384/CURVE_25519`; NONE transforms are omitted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = vec![encr_name(self.encr.0, self.encr.1)];
        names.extend(self.integ_alg().map(integ_name));
        names.extend(self.prf.map(|p| p.to_string()));
        names.extend(self.dh_group().map(dh_name));
        names.extend(self.esn.map(esn_name));
        f.write_str(&names.join("/"))
    }
}

/// Choose one algorithm of a transform type: the first the peer offered (in its order)
/// that the local side accepts. An absent transform type is treated as its "none" value
/// where one exists (`implicit`), so e.g. a peer omitting KE matches a local proposal
/// without PFS. Returns `None` when nothing matches, `Some(None)` when the peer omitted
/// the type and that is acceptable.
fn pick<T: Copy + PartialEq>(offered: &[T], local: &[T], implicit: Option<T>) -> Option<Option<T>> {
    let local_accepts = |x: &T| {
        if local.is_empty() {
            implicit.as_ref() == Some(x)
        } else {
            local.contains(x)
        }
    };
    if offered.is_empty() {
        if local.is_empty() || implicit.as_ref().is_some_and(local_accepts) {
            Some(None)
        } else {
            None
        }
    } else {
        offered.iter().find(|x| local_accepts(x)).map(|&x| Some(x))
    }
}

fn match_one(local: &AlgorithmProposal, offered: &AlgorithmProposal) -> Option<Selected> {
    if local.protocol != offered.protocol {
        return None;
    }
    // Key lengths are part of the match: AES_CBC/128 does not satisfy AES_CBC/256.
    let encr = pick(&offered.encr, &local.encr, None)??;
    let integ = pick(&offered.integ, &local.integ, Some(IntegId::NONE))?;
    let prf = pick(&offered.prf, &local.prf, None)?;
    let dh = pick(&offered.dh, &local.dh, Some(DhId::NONE))?;
    // ESN is mandatory in ESP proposals; a peer leaving it out can only mean 32 bits.
    let esn_none = match local.protocol {
        Protocol::Esp => Some(EsnId::NO_ESN),
        Protocol::Ike => None,
    };
    let esn = pick(&offered.esn, &local.esn, esn_none)?;
    // §3.3: an AEAD cipher never has a real integrity algorithm; any other cipher must.
    if is_aead(encr.0) == integ.is_some_and(|i| i != IntegId::NONE) {
        return None;
    }
    if local.protocol == Protocol::Ike && (prf.is_none() || dh.is_none_or(|d| d == DhId::NONE)) {
        return None;
    }
    Some(Selected {
        encr,
        integ,
        prf,
        dh,
        esn,
    })
}

/// Responder-side selection (RFC 7296 §2.7, §3.3.6): the first of the initiator's
/// proposals, in the initiator's order, that matches one of the local proposals. A
/// proposal matches when for every transform type one of the offered algorithms is
/// accepted locally (key lengths included) and the peer omitted no transform type the
/// local proposal requires. Within a type the initiator's order decides too.
pub fn select(
    local: &[AlgorithmProposal],
    offered: &[AlgorithmProposal],
) -> Option<(usize, Selected)> {
    offered
        .iter()
        .enumerate()
        .find_map(|(i, o)| local.iter().find_map(|l| match_one(l, o)).map(|s| (i, s)))
}

// ---- conversion to and from SA payload proposals (§3.3) -------------------------------

/// Our configured proposal as an SA payload proposal (§3.3).
pub fn to_wire(p: &AlgorithmProposal, num: u8, spi: Vec<u8>, with_dh: bool) -> WireProposal {
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
    WireProposal {
        num,
        protocol,
        spi,
        transforms,
    }
}

/// A peer's proposal in our algorithm terms, or `None` when it names a transform type
/// we do not understand (§3.3.6: such a proposal is rejected) or another protocol.
pub fn from_wire(p: &WireProposal, protocol: Protocol) -> Option<AlgorithmProposal> {
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

/// A peer's offered proposals for display, skipping those we cannot read.
/// At most [`crate::limits::MAX_DESCRIBED_PROPOSALS`] of them: the list is the peer's.
pub fn describe_offered(offered: &[WireProposal], protocol: Protocol) -> String {
    let ps: Vec<_> = offered
        .iter()
        .filter_map(|p| from_wire(p, protocol))
        .collect();
    let max = crate::limits::MAX_DESCRIBED_PROPOSALS;
    match ps.len().checked_sub(max) {
        Some(more) if more > 0 => format!("{}, … and {more} more", describe(&ps[..max])),
        _ => describe(&ps),
    }
}

/// Runs §2.7 selection of `offered` (wire) against `local`; returns the chosen wire
/// proposal index and the selection.
pub fn choose(
    local: &[AlgorithmProposal],
    offered: &[WireProposal],
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
pub fn selected_to_wire(sel: &Selected, protocol: Protocol, num: u8, spi: Vec<u8>) -> WireProposal {
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

/// True when `local` would have chosen `sel` had it been offered alone (§2.7), e.g. an
/// IKE SA negotiated under another tunnel's proposals.
pub fn offers(local: &[AlgorithmProposal], sel: &Selected) -> bool {
    let only = AlgorithmProposal {
        protocol: local.first().map_or(Protocol::Ike, |p| p.protocol),
        encr: vec![sel.encr],
        integ: sel.integ.into_iter().collect(),
        prf: sel.prf.into_iter().collect(),
        dh: sel.dh.into_iter().collect(),
        esn: sel.esn.into_iter().collect(),
    };
    select(local, &[only]).is_some()
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

/// Local ESP proposals for a CREATE_CHILD_SA request: a configured PFS group is
/// required; without one we accept the peer's choice of any group we implement.
pub fn esp_for_create_child(cfg: &[AlgorithmProposal]) -> Vec<AlgorithmProposal> {
    cfg.iter()
        .map(|p| {
            let mut p = p.clone();
            if p.dh.is_empty() {
                p.dh = std::iter::once(DhId::NONE)
                    .chain(crate::crypto::supported_groups().iter().copied())
                    .collect();
            }
            p
        })
        .collect()
}

/// If the peer's KE group differs from the selection but its chosen proposal also
/// offers that group and we accept it, use it rather than demand a retry (§1.2, §1.3).
pub fn prefer_ke_group(
    local: &[AlgorithmProposal],
    offered: &WireProposal,
    protocol: Protocol,
    sel: Selected,
    ke_group: DhId,
) -> Selected {
    if sel.dh == Some(ke_group) {
        return sel;
    }
    if let Some(mut ap) = from_wire(offered, protocol) {
        if ap.dh.contains(&ke_group) {
            ap.dh = vec![ke_group];
            if let Some((_, s)) = select(local, &[ap]) {
                return s;
            }
        }
    }
    sel
}

#[cfg(test)]
mod tests;
