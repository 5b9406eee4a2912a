//! CREATE_CHILD_SA for new and rekeyed CHILD SAs, both roles (§1.3.1, §1.3.3, §2.8.1).
//!
//! ```text
//! Initiator                         Responder
//! HDR, SK {[N(REKEY_SA)], SA, Ni, [KEi,] TSi, TSr}  -->
//!                            <--    HDR, SK {SA, Nr, [KEr,] TSi, TSr}
//! ```

use super::child::{self, Child, ChildSaInfo};
use super::error::ExchangeError;
use super::ike_sa::*;
use super::payloads::*;
use super::{Event, Queued};
use crate::crypto::KeyExchange;
use crate::iana::{DhId, ExchangeType, NotifyType, ProtocolId};
use crate::limits;
use crate::proposal::{self, Protocol, Selected};
use crate::wire::{KePayload, NotifyPayload, Payload, SaPayload, TrafficSelector, TsPayload};
use std::time::Instant;
use tracing::{info, warn};

/// ESP SPIs 1..=255 are reserved (RFC 4303 §2.1); in the session's lane when it has one,
/// moved on by `resource` for a per-resource CHILD SA (RFC 9611).
pub(super) fn random_esp_spi(ctx: &mut Ctx<'_>, resource: u32) -> u32 {
    loop {
        let mut b = [0u8; 4];
        ctx.rng.fill(&mut b);
        let drawn = u32::from_be_bytes(b);
        let spi = match ctx.cfg.esp_spi_lane {
            Some(lane) => lane.for_resource(resource).fit(drawn),
            None => Some(drawn),
        };
        if let Some(spi) = spi.filter(|s| *s > 255) {
            if !ctx.children.iter().any(|c| c.spi_in == spi) {
                return spi;
            }
        }
    }
}

pub(super) fn ts_list(ts: &[TrafficSelector]) -> String {
    ts.iter()
        .map(child::ts_to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// SA and Ni of a CREATE_CHILD_SA request, for a CHILD SA or the IKE SA (§1.3).
pub(super) fn sa_and_nonce(inner: &[Payload]) -> Result<(&SaPayload, &[u8]), ExchangeError> {
    let (Some(sa), Some(ni)) = (find!(inner, Sa), find!(inner, Nonce)) else {
        return Err(ExchangeError::Syntax("no SA or Nonce".into()));
    };
    if !nonce_ok(ni) {
        return Err(ExchangeError::Syntax("bad nonce length".into()));
    }
    Ok((sa, ni))
}

/// A CREATE_CHILD_SA request whose proposals are for IKE rekeys the IKE SA (§1.3.2).
pub(super) fn rekeys_ike_sa(inner: &[Payload]) -> bool {
    find!(inner, Sa)
        .and_then(|sa| sa.proposals.first())
        .map(|p| p.protocol)
        == Some(ProtocolId::IKE)
}

impl IkeSa {
    /// KEYMAT for a CHILD SA from this IKE SA's SK_d (§2.17), split into (in, out).
    pub(super) fn derive_child(
        &self,
        shared: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        sel: &Selected,
        we_initiated: bool,
    ) -> Result<(child::Key, child::Key), ExchangeError> {
        let keys = self
            .state
            .keys()
            .ok_or_else(|| ExchangeError::Temporary("IKE SA has no keys".into()))?;
        child::derive(keys.prf, &keys.sk_d, shared, ni, nr, sel, we_initiated)
            .map_err(|e| ExchangeError::NoProposal(e.to_string()))
    }

    /// A negotiated CHILD SA as the dataplane needs it: SPIs (in, out), keys (in, out),
    /// selectors (local, remote).
    pub(super) fn child_info(
        &self,
        sel: &Selected,
        (spi_in, spi_out): (u32, u32),
        (keys_in, keys_out): (child::Key, child::Key),
        (local_ts, remote_ts): (Vec<TrafficSelector>, Vec<TrafficSelector>),
        (replaces, resource): (Option<u32>, u32),
        responder: bool,
    ) -> Box<ChildSaInfo> {
        Box::new(ChildSaInfo {
            spi_in,
            spi_out,
            encr: sel.encr.0,
            encr_key_bits: sel.encr.1,
            integ: sel.integ,
            esn: sel.esn == Some(crate::iana::EsnId::ESN),
            keys_in,
            keys_out,
            local_ts,
            remote_ts,
            local: self.local,
            remote: self.remote,
            proposal: sel.to_string(),
            replaces,
            resource,
            responder,
        })
    }

    pub(super) fn install_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        info: Box<ChildSaInfo>,
    ) {
        info!(tunnel = %ctx.cfg.name, spi_in = format_args!("{:08x}", info.spi_in), spi_out = format_args!("{:08x}", info.spi_out),
            proposal = %info.proposal, resource = info.resource,
            local_ts = ?info.local_ts.iter().map(child::ts_to_string).collect::<Vec<_>>(),
            remote_ts = ?info.remote_ts.iter().map(child::ts_to_string).collect::<Vec<_>>(),
            "CHILD SA installed");
        ctx.children.push(Child {
            spi_in: info.spi_in,
            spi_out: info.spi_out,
            proposal: info.proposal.clone(),
            esn: info.esn,
            local_ts: info.local_ts.clone(),
            remote_ts: info.remote_ts.clone(),
            created: now,
            rekey_at: None,
            owner: self.successor.unwrap_or(self.spi_i),
            superseded: false,
            peer_rekey: None,
            from_peer_rekey_of: None,
            resource: info.resource,
        });
        if info.replaces.is_some() {
            // A CHILD SA lived to its rekey: the peer is not deleting them on sight.
            ctx.refill.count = 0;
        }
        ctx.events.push_back(Event::ChildInstalled(info));
    }

    /// Responder side of a CHILD SA negotiation (IKE_AUTH or CREATE_CHILD_SA): selects
    /// the proposal, narrows the selectors, derives keys. Returns the response payloads
    /// (SAr, TSi, TSr, and Nr/KEr for CREATE_CHILD_SA) and the SA to install; its inbound
    /// SPI in the lane of its RFC 9611 resource.
    #[allow(clippy::type_complexity)]
    pub(super) fn accept_child(
        &self,
        ctx: &mut Ctx<'_>,
        inner: &[Payload],
        create: Option<(&[u8], Option<&KePayload>)>,
        ni: &[u8],
        nr: &[u8],
        (replaces, resource): (Option<u32>, u32),
    ) -> Result<(Vec<Payload>, Box<ChildSaInfo>), ExchangeError> {
        let (Some(sa), Some(tsi), Some(tsr)) =
            (find!(inner, Sa), find!(inner, TsI), find!(inner, TsR))
        else {
            return Err(ExchangeError::Syntax("request lacks SA, TSi or TSr".into()));
        };
        let local = if create.is_some() {
            proposal::esp_for_create_child(&ctx.cfg.esp)
        } else {
            proposal::without_dh(&ctx.cfg.esp)
        };
        let Some((idx, mut sel)) = proposal::choose(&local, &sa.proposals, Protocol::Esp) else {
            return Err(ExchangeError::NoProposal(format!(
                "no common ESP proposal: peer offered [{}], we accept [{}]",
                proposal::describe_offered(&sa.proposals, Protocol::Esp),
                proposal::describe(&ctx.cfg.esp)
            )));
        };
        let prop = &sa.proposals[idx];
        let Some(spi_out) = spi_u32(&prop.spi) else {
            return Err(ExchangeError::Syntax("bad ESP SPI size".into()));
        };
        if let Some((_, Some(ke))) = create {
            sel = proposal::prefer_ke_group(&local, prop, Protocol::Esp, sel, ke.group);
        }
        let tsi_n = crate::wire::narrow(&tsi.selectors, &ctx.cfg.remote_ts);
        let tsr_n = crate::wire::narrow(&tsr.selectors, &ctx.cfg.local_ts);
        // §3.13: a TS payload counts its selectors in one octet.
        let most = tsi_n.len().max(tsr_n.len());
        if most > limits::MAX_SELECTORS {
            return Err(ExchangeError::TsUnacceptable(format!(
                "narrowing the peer's {} TSi and {} TSr selectors yields {most}, more than a TS payload holds ({})",
                tsi.selectors.len(),
                tsr.selectors.len(),
                limits::MAX_SELECTORS
            )));
        }
        if tsi_n.is_empty() || tsr_n.is_empty() {
            return Err(ExchangeError::TsUnacceptable(format!(
                "peer's traffic selectors TSi [{}] TSr [{}] do not overlap ours (remote_ts [{}], local_ts [{}])",
                ts_list(&tsi.selectors),
                ts_list(&tsr.selectors),
                ts_list(&ctx.cfg.remote_ts),
                ts_list(&ctx.cfg.local_ts)
            )));
        }
        let mut response = Vec::new();
        let mut shared = None;
        let mut our_ke = None;
        if let Some((_, ke)) = create {
            let group = sel.dh.unwrap_or(DhId::NONE);
            if group != DhId::NONE {
                // §1.3: a PFS group in the chosen proposal needs a matching KEi.
                match ke {
                    Some(ke) if ke.group == group => {
                        let mine = KeyExchange::generate(group, ctx.rng)
                            .map_err(|e| ExchangeError::NoProposal(e.to_string()))?;
                        shared = Some(
                            mine.agree(&ke.data)
                                .map_err(|e| ExchangeError::Syntax(e.to_string()))?,
                        );
                        our_ke = Some(mine);
                    }
                    _ => {
                        return Err(ExchangeError::InvalidKe(group));
                    }
                }
            } else {
                sel.dh = None;
            }
        }
        let spi_in = random_esp_spi(ctx, resource);
        let (keys_in, keys_out) =
            self.derive_child(shared.as_deref().map(|s| s.as_slice()), ni, nr, &sel, false)?;
        response.push(Payload::Sa(SaPayload {
            proposals: vec![proposal::selected_to_wire(
                &sel,
                Protocol::Esp,
                prop.num,
                spi_in.to_be_bytes().to_vec(),
            )],
        }));
        if create.is_some() {
            response.push(Payload::Nonce(nr.to_vec()));
            if let Some(k) = &our_ke {
                response.push(ke_payload(k));
            }
        }
        response.push(Payload::TsI(TsPayload {
            selectors: tsi_n.clone(),
        }));
        response.push(Payload::TsR(TsPayload {
            selectors: tsr_n.clone(),
        }));
        Ok((
            response,
            self.child_info(
                &sel,
                (spi_in, spi_out),
                (keys_in, keys_out),
                (tsr_n, tsi_n),
                (replaces, resource),
                true,
            ),
        ))
    }

    /// Initiator side of a CHILD SA negotiation (IKE_AUTH or CREATE_CHILD_SA): checks the
    /// responder's choice (§2.7), that it only narrowed our selectors (§2.9) and its KEr,
    /// then derives keys. In IKE_AUTH, `nr` is IKE_SA_INIT's; CREATE_CHILD_SA carries one.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn complete_child(
        &self,
        ctx: &Ctx<'_>,
        inner: &[Payload],
        exchange: ExchangeType,
        (spi_in, rekey_of, resource): (u32, Option<u32>, u32),
        ni: &[u8],
        nr: Option<&[u8]>,
        ke: Option<&KeyExchange>,
    ) -> Result<Box<ChildSaInfo>, ExchangeError> {
        let auth = exchange == ExchangeType::IKE_AUTH;
        if let Some(n) = first_error(inner) {
            let why = if auth {
                "peer refused the CHILD SA"
            } else {
                "peer refused CREATE_CHILD_SA"
            };
            return Err(ExchangeError::Refused {
                notify: n.ty,
                why: why.into(),
            });
        }
        let nr = nr.or(find!(inner, Nonce).map(|n| n.as_slice()));
        let (Some(sa), Some(nr), Some(tsi), Some(tsr)) =
            (find!(inner, Sa), nr, find!(inner, TsI), find!(inner, TsR))
        else {
            return Err(ExchangeError::Syntax(if auth {
                "IKE_AUTH response lacks SA, TSi or TSr".into()
            } else {
                "response lacks SA, Nonce, TSi or TSr".into()
            }));
        };
        // §1.2: no key exchange for the CHILD SA of IKE_AUTH.
        let local = if auth {
            proposal::without_dh(&ctx.cfg.esp)
        } else {
            proposal::esp_for_create_child(&ctx.cfg.esp)
        };
        let not_offered = || {
            ExchangeError::NoProposal(if auth {
                "peer chose an ESP proposal we did not offer".into()
            } else {
                "peer chose a proposal we did not offer".into()
            })
        };
        let (prop, mut sel) = match sa.proposals.as_slice() {
            [one] => proposal::choose(&local, std::slice::from_ref(one), Protocol::Esp)
                .map(|(_, s)| (one, s))
                .ok_or_else(not_offered)?,
            _ if auth => return Err(not_offered()),
            _ => {
                return Err(ExchangeError::Syntax(
                    "response must carry one proposal".into(),
                ))
            }
        };
        let Some(spi_out) = spi_u32(&prop.spi) else {
            let why = if auth { "bad ESP SPI" } else { "bad SPI" };
            return Err(ExchangeError::Syntax(why.into()));
        };
        let group = sel.dh.unwrap_or(DhId::NONE);
        let shared = if group == DhId::NONE {
            sel.dh = None;
            None
        } else {
            let (Some(mine), Some(theirs)) = (ke, find!(inner, Ke)) else {
                return Err(ExchangeError::Syntax("PFS group chosen without KE".into()));
            };
            if mine.group() != group || theirs.group != group {
                return Err(ExchangeError::Syntax("KE group mismatch".into()));
            }
            let shared = mine.agree(&theirs.data);
            Some(shared.map_err(|e| ExchangeError::Syntax(e.to_string()))?)
        };
        if !crate::wire::is_subset(&tsi.selectors, &ctx.cfg.local_ts)
            || !crate::wire::is_subset(&tsr.selectors, &ctx.cfg.remote_ts)
        {
            return Err(ExchangeError::TsUnacceptable(
                "peer widened our traffic selectors".into(),
            ));
        }
        let shared = shared.as_deref().map(|s| s.as_slice());
        let (keys_in, keys_out) = self.derive_child(shared, ni, nr, &sel, true)?;
        Ok(self.child_info(
            &sel,
            (spi_in, spi_out),
            (keys_in, keys_out),
            (tsi.selectors.clone(), tsr.selectors.clone()),
            (rekey_of, resource),
            false,
        ))
    }

    /// Responder: the peer asks for a new CHILD SA (§1.3.1) or rekeys one (§1.3.3, with
    /// N(REKEY_SA)); a crossing rekey of ours is noted for §2.8.1.
    // HDR, SK {[N(REKEY_SA),] SA, Ni, [KEi,] TSi, TSr} -->  <-- HDR, SK {SA, Nr, [KEr,] TSi, TSr}
    pub(super) fn handle_create_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        msg_id: u32,
        inner: &[Payload],
    ) {
        let (_, ni) = match sa_and_nonce(inner) {
            Ok(x) => x,
            Err(e) => return self.refuse(ctx, now, ExchangeType::CREATE_CHILD_SA, msg_id, e),
        };
        let ke = find!(inner, Ke);
        let nr = random_nonce(ctx);
        let replaces = match find_notify(inner, NotifyType::REKEY_SA) {
            Some(n) => match spi_u32(&n.spi)
                .and_then(|spi| ctx.children.iter().find(|c| c.spi_out == spi))
            {
                // §2.25: we already replaced this SA and are deleting it.
                Some(c) if c.superseded => Err(ExchangeError::RekeyInProgress),
                Some(c) => Ok(Some(c.spi_in)),
                // §2.25: the CHILD SA being rekeyed is gone.
                None => Err(ExchangeError::ChildSaNotFound {
                    protocol: n.protocol,
                    spi: n.spi.clone(),
                }),
            },
            None => Ok(None),
        };
        let accepted = replaces.and_then(|replaces| {
            // RFC 9611 §3: a per-resource CHILD SA, or the resource a rekey keeps.
            let (resource, info_notify) = self.resource_of_request(ctx, inner, replaces)?;
            let create = Some((ni, ke));
            let slot = (replaces, resource);
            let (mut resp, info) = self.accept_child(ctx, inner, create, ni, &nr, slot)?;
            resp.extend(info_notify);
            Ok((replaces, resp, info))
        });
        match accepted {
            Ok((replaces, resp, info)) => {
                self.send_response(ctx, ExchangeType::CREATE_CHILD_SA, msg_id, resp);
                if replaces.is_none() && info.resource > 0 {
                    Self::resource_created_by_peer(ctx, now);
                }
                if let Some(old) = replaces {
                    // The peer rekeys it: drop our queued rekey, or note a collision (§2.8.1).
                    // It is the peer's to delete now; we no longer rekey it.
                    self.queued.retain(|q| *q != super::Queued::RekeyChild(old));
                    if let Some(c) = ctx.children.iter_mut().find(|c| c.spi_in == old) {
                        c.superseded = true;
                    }
                    let ours_in_flight = matches!(&self.pending,
                        Some(p) if matches!(p.kind, RequestKind::CreateChild { rekey_of: Some(x), .. } if x == old));
                    if ours_in_flight {
                        if let Some(c) = ctx.children.iter_mut().find(|c| c.spi_in == old) {
                            c.peer_rekey = Some((ni.to_vec(), nr.clone(), info.spi_in));
                        }
                    }
                    info!(tunnel = %ctx.cfg.name, old_spi_in = format_args!("{old:08x}"), "CHILD SA rekeyed by peer");
                }
                let spi_in = info.spi_in;
                self.install_child(ctx, now, info);
                if let Some(c) = ctx.children.iter_mut().find(|c| c.spi_in == spi_in) {
                    c.from_peer_rekey_of = replaces;
                }
            }
            Err(e) => self.refuse(ctx, now, ExchangeType::CREATE_CHILD_SA, msg_id, e),
        }
    }

    // HDR, SK {N(REKEY_SA), SA, Ni, [KEi,] TSi, TSr} -->
    pub(super) fn send_rekey_child(&mut self, ctx: &mut Ctx<'_>, now: Instant, old_spi_in: u32) {
        let Some(old) = ctx
            .children
            .iter()
            .find(|c| c.spi_in == old_spi_in)
            .cloned()
        else {
            return;
        };
        let (l, r) = (old.local_ts, old.remote_ts);
        self.send_create_child(ctx, now, Some(old_spi_in), l, r, old.resource);
    }

    /// HDR, SK {[N(REKEY_SA),] SA, Ni, [KEi,] TSi, TSr} --> : a rekey of `rekey_of`, or a
    /// new CHILD SA when the tunnel has none (§1.3.1), or RFC 9611 resource `resource`.
    pub(super) fn send_create_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        rekey_of: Option<u32>,
        local_ts: Vec<crate::wire::TrafficSelector>,
        remote_ts: Vec<crate::wire::TrafficSelector>,
        resource: u32,
    ) {
        let spi_in = random_esp_spi(ctx, resource);
        let ni = random_nonce(ctx);
        // §1.3.3: PFS when our proposals name a group; the first one goes in KEi.
        let group = ctx
            .cfg
            .esp
            .iter()
            .flat_map(|p| p.dh.iter())
            .copied()
            .find(|g| *g != DhId::NONE);
        let ke = match group.map(|g| KeyExchange::generate(g, ctx.rng)).transpose() {
            Ok(k) => k,
            Err(e) => {
                warn!(tunnel = %ctx.cfg.name, error = %e, "cannot rekey CHILD SA");
                return;
            }
        };
        let mut inner = Vec::new();
        if let Some(old) = rekey_of {
            inner.push(Payload::Notify(NotifyPayload {
                protocol: ProtocolId::ESP,
                spi: old.to_be_bytes().to_vec(),
                ty: NotifyType::REKEY_SA,
                data: vec![],
            }));
        }
        inner.extend(self.resource_request_notify(ctx, rekey_of, resource));
        inner.push(sa_offer(&ctx.cfg.esp, &spi_in.to_be_bytes(), true));
        inner.push(Payload::Nonce(ni.clone()));
        if let Some(k) = &ke {
            inner.push(ke_payload(k));
        }
        inner.push(Payload::TsI(TsPayload {
            selectors: local_ts,
        }));
        inner.push(Payload::TsR(TsPayload {
            selectors: remote_ts,
        }));
        match rekey_of {
            Some(old) => {
                info!(tunnel = %ctx.cfg.name, old_spi_in = format_args!("{old:08x}"), "rekeying CHILD SA")
            }
            None => info!(tunnel = %ctx.cfg.name, "creating a CHILD SA"),
        }
        let kind = RequestKind::CreateChild {
            rekey_of,
            spi_in,
            ni,
            ke,
            resource,
        };
        self.send_request(ctx, now, ExchangeType::CREATE_CHILD_SA, inner, kind);
    }

    // <-- HDR, SK {SA, Nr, [KEr,] TSi, TSr}
    /// `req`: what our request was for (rekey_of, spi_in, RFC 9611 resource).
    pub(super) fn handle_create_child_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        inner: &[Payload],
        (rekey_of, spi_in, resource): (Option<u32>, u32, u32),
        ni: &[u8],
        ke: Option<KeyExchange>,
    ) {
        let ke = ke.as_ref();
        let exchange = ExchangeType::CREATE_CHILD_SA;
        let req = (spi_in, rekey_of, resource);
        let result = self.complete_child(ctx, inner, exchange, req, ni, None, ke);
        match result {
            Ok(info) => {
                // §2.8.1: if the peer rekeyed the same SA meanwhile, the SA created with
                // the lowest of the four nonces is deleted by the node that created it.
                let crossed = rekey_of
                    .and_then(|old| ctx.children.iter().find(|c| c.spi_in == old))
                    .and_then(|c| c.peer_rekey.clone());
                if let Some((peer_ni, our_nr, peers)) = crossed {
                    let nr = find!(inner, Nonce).cloned().unwrap_or_default();
                    if lowest_is_ours([ni, &nr], [&peer_ni, &our_nr]) {
                        info!(tunnel = %ctx.cfg.name, spi_in = format_args!("{:08x}", info.spi_in),
                            "CHILD SA rekey collision: ours has the lowest nonce, deleting it");
                        self.queued.push_back(Queued::DeleteRedundant(info.spi_in));
                        return;
                    }
                    info!(tunnel = %ctx.cfg.name, "CHILD SA rekey collision: the peer deletes its SA");
                    // Its SA is redundant: never rekeyed; if its DELETE is lost (sent on an
                    // IKE SA being rekeyed, as strongSwan's was), we delete it when its
                    // rekey is due (timers.rs), not rekey an SA the peer no longer has.
                    if let Some(c) = ctx.children.iter_mut().find(|c| c.spi_in == peers) {
                        c.superseded = true;
                    }
                }
                self.install_child(ctx, now, info);
                // Make-before-break: the old SA goes only after the new one is in.
                if let Some(old) = rekey_of {
                    if let Some(c) = ctx.children.iter_mut().find(|c| c.spi_in == old) {
                        c.superseded = true;
                    }
                    self.queued.push_back(Queued::DeleteChild(old));
                }
            }
            Err(e) if self.resource_refused(ctx, &e, rekey_of, resource) => {}
            Err(e) => self.create_child_failed(ctx, now, e, rekey_of, resource),
        }
    }

    /// The peer refused our CREATE_CHILD_SA (rekey of `rekey_of`, or a new SA of
    /// `resource`): what to report, and what to try again.
    fn create_child_failed(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        e: ExchangeError,
        rekey_of: Option<u32>,
        resource: u32,
    ) {
        let ty = e.notify_type();
        // The SA we asked to rekey is gone here too, or the peer's rekey replaced it.
        let overtaken = rekey_of.is_some_and(|old| {
            ctx.children
                .iter()
                .find(|c| c.spi_in == old)
                .is_none_or(|c| c.superseded)
        });
        // The peer's rekey created the SA we asked to rekey, and the SA that rekey replaced
        // is still here: the peer has not deleted it, so it may lack our answer (lost; its
        // retransmission brings it again, §2.8).
        let unanswered = rekey_of
            .and_then(|old| ctx.children.iter().find(|c| c.spi_in == old))
            .and_then(|c| c.from_peer_rekey_of)
            .is_some_and(|replaced| ctx.children.iter().any(|c| c.spi_in == replaced));
        match (ty, rekey_of) {
            // §2.25: the peer rekeyed (or deleted) it while our request was lost or on its
            // way, and its DELETE may still be coming. Nothing is wrong; it goes now.
            (NotifyType::CHILD_SA_NOT_FOUND, Some(old)) if overtaken => {
                info!(tunnel = %ctx.cfg.name, "CHILD SA rekey overtaken: the peer had replaced or deleted the SA already");
                if let Some(pos) = ctx.children.iter().position(|c| c.spi_in == old) {
                    ctx.remove_child(pos);
                }
            }
            // The SA stays; the rekey timer tries again (REKEY_RETRY), after the peer's
            // retransmission, so it is not removed for an answer still on its way.
            (NotifyType::CHILD_SA_NOT_FOUND, Some(_)) if unanswered => {
                info!(tunnel = %ctx.cfg.name, retry = ?limits::REKEY_RETRY,
                    "CHILD SA rekey early: the peer has not had our answer to the rekey that created it");
            }
            // §2.25: the peer is rekeying or deleting the same SA; the rekey timer
            // tries again (REKEY_RETRY).
            (NotifyType::TEMPORARY_FAILURE, Some(_)) => {
                info!(tunnel = %ctx.cfg.name, retry = ?limits::REKEY_RETRY,
                    "CHILD SA rekey deferred: the peer is busy (TEMPORARY_FAILURE)");
            }
            // A CHILD SA the tunnel lacks (the fallback, after the peer deleted it):
            // the refill tries again, with its back-off.
            (_, None) => {
                if ty == NotifyType::TEMPORARY_FAILURE {
                    info!(tunnel = %ctx.cfg.name, "new CHILD SA deferred: the peer is busy (TEMPORARY_FAILURE)");
                } else {
                    warn!(tunnel = %ctx.cfg.name, error = %ty, "CREATE_CHILD_SA failed: {e}");
                    *ctx.last_error = Some(e.status_line());
                }
                self.children_missing(ctx, now, &[resource]);
            }
            (_, Some(old)) => {
                warn!(tunnel = %ctx.cfg.name, error = %ty, "CREATE_CHILD_SA failed: {e}");
                *ctx.last_error = Some(e.status_line());
                // §2.25: the peer no longer has the SA we tried to rekey — its DELETE
                // was lost (e.g. sent on an IKE SA that was going away). Drop it here
                // too, so traffic no longer goes into an SA the peer has forgotten.
                if ty == NotifyType::CHILD_SA_NOT_FOUND {
                    if let Some(pos) = ctx.children.iter().position(|c| c.spi_in == old) {
                        let c = ctx.remove_child(pos);
                        info!(tunnel = %ctx.cfg.name, spi_in = format_args!("{old:08x}"), "peer has no such CHILD SA: removed");
                        if ctx.children.is_empty() {
                            // Nothing carries the tunnel: at once, not after the refill's wait.
                            self.queued.push_back(Queued::NewChild);
                        } else {
                            self.children_missing(ctx, now, &[c.resource]);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod lane_tests {
    use super::super::SpiLane;

    #[test]
    fn spis_fit_their_lane() {
        let lane = SpiLane { lane: 2, lanes: 3 };
        for spi in [0u32, 1, 255, 256, 257, 1000, u32::MAX - 1, u32::MAX] {
            if let Some(s) = lane.fit(spi) {
                assert_eq!(s % 3, 2, "{spi}");
                assert!(s > 255 && s.abs_diff(spi) < 3, "{spi} -> {s}");
            }
        }
        // The top partial block has no room for lane 2 of 3 only when it would overflow.
        assert_eq!(SpiLane { lane: 1, lanes: 2 }.fit(u32::MAX), Some(u32::MAX));
        assert_eq!(lane.fit(10), None, "reserved range");
        assert_eq!(
            SpiLane { lane: 0, lanes: 1 }.fit(7),
            Some(7),
            "one lane: unchanged"
        );
    }

    #[test]
    fn resources_take_the_lanes_after_the_home_lane() {
        let home = SpiLane { lane: 1, lanes: 4 };
        let lanes: Vec<u32> = (0..6).map(|r| home.for_resource(r).lane).collect();
        assert_eq!(lanes, [1, 2, 3, 0, 1, 2], "round-robin from the home lane");
        assert!((0..6).all(|r| home.for_resource(r).lanes == 4));
        // A lane number past `lanes` counts as its residue; no overflow at the top.
        assert_eq!(SpiLane { lane: 5, lanes: 4 }.for_resource(1).lane, 2);
        assert_eq!(home.for_resource(u32::MAX).lane, (1 + 3) % 4);
        let one = SpiLane { lane: 0, lanes: 1 };
        assert_eq!(one.for_resource(7), one, "one lane: unchanged");
        // SPIs picked for resource 2 land in lane 3.
        let r2 = home.for_resource(2);
        for spi in [256u32, 1000, 0x1234_5678, u32::MAX - 7] {
            assert_eq!(r2.fit(spi).map(|s| s % 4), Some(3), "{spi}");
        }
    }
}
