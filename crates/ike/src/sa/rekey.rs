//! Exchanges we initiate on an established IKE SA: CHILD SA rekey (§1.3.3), IKE SA
//! rekey (§1.3.2, keys per §2.18), CHILD SA delete (§1.4.1) and liveness checks (§1.4).

use super::child::{self, ChildSaInfo};
use super::exchange::{
    delete_esp, delete_ike, esp_for_create_child, first_error, random_esp_spi, random_nonce,
    spi_u32, spi_u64, suite,
};
use super::{CloseReason, Ctx, Event, IkeSa, IkeState, Queued, RequestKind, SaKeys};
use crate::crypto::{self, KeyExchange};
use crate::iana::{DhId, ExchangeType, NotifyType, ProtocolId};
use crate::proposal::Protocol;
use crate::wire::{KePayload, NotifyPayload, Payload, SaPayload, TsPayload};
use std::time::Instant;
use tracing::{info, warn};

impl IkeSa {
    /// Deletes this SA without taking CHILD SAs with it: it lost a collision (§2.8.2)
    /// or duplicates another IKE SA.
    // HDR, SK {D} -->
    pub(super) fn close_redundant(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        if !matches!(self.state, IkeState::Established { .. }) {
            return;
        }
        self.pending = None;
        self.queued.clear();
        let inner = vec![delete_ike()];
        self.send_request(
            ctx,
            now,
            ExchangeType::INFORMATIONAL,
            inner,
            RequestKind::DeleteIke,
        );
        if let IkeState::Established { keys, .. } =
            std::mem::replace(&mut self.state, IkeState::Dead { until: now })
        {
            self.state = IkeState::Deleting { keys };
        }
        ctx.events.push_back(Event::IkeClosed {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            reason: CloseReason::Rekeyed,
        });
    }

    /// Sends the next queued request if the window is free (§2.3).
    pub(super) fn pump(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        while self.pending.is_none() && matches!(self.state, IkeState::Established { .. }) {
            let Some(q) = self.queued.pop_front() else {
                return;
            };
            match q {
                // HDR, SK {} -->
                Queued::Liveness => self.send_request(
                    ctx,
                    now,
                    ExchangeType::INFORMATIONAL,
                    vec![],
                    RequestKind::Liveness,
                ),
                Queued::DeleteChild(spi_in) => self.send_delete_child(ctx, now, spi_in),
                Queued::DeleteRedundant(spi_in) => {
                    let inner = vec![delete_esp(spi_in)];
                    self.send_request(
                        ctx,
                        now,
                        ExchangeType::INFORMATIONAL,
                        inner,
                        RequestKind::Informational,
                    );
                }
                Queued::RekeyChild(spi_in) => self.send_rekey_child(ctx, now, spi_in),
                Queued::NewChild => {
                    let (l, r) = (ctx.cfg.local_ts.clone(), ctx.cfg.remote_ts.clone());
                    self.send_create_child(ctx, now, None, l, r);
                }
                Queued::RekeyIke => self.send_rekey_ike(ctx, now),
            }
        }
    }

    // HDR, SK {D} -->
    fn send_delete_child(&mut self, ctx: &mut Ctx<'_>, now: Instant, spi_in: u32) {
        if !ctx.children.iter().any(|c| c.spi_in == spi_in) {
            return;
        }
        let inner = vec![delete_esp(spi_in)];
        self.send_request(
            ctx,
            now,
            ExchangeType::INFORMATIONAL,
            inner,
            RequestKind::DeleteChild(spi_in),
        );
    }

    // <-- HDR, SK {D}
    pub(super) fn handle_delete_child_response(&mut self, ctx: &mut Ctx<'_>, spi_in: u32) {
        if let Some(pos) = ctx.children.iter().position(|c| c.spi_in == spi_in) {
            let c = ctx.children.remove(pos);
            info!(tunnel = %ctx.cfg.name, spi_in = format_args!("{:08x}", c.spi_in), "CHILD SA deleted");
            ctx.events.push_back(Event::ChildDeleted {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            });
        }
    }

    // HDR, SK {N(REKEY_SA), SA, Ni, [KEi,] TSi, TSr} -->
    fn send_rekey_child(&mut self, ctx: &mut Ctx<'_>, now: Instant, old_spi_in: u32) {
        let Some(old) = ctx
            .children
            .iter()
            .find(|c| c.spi_in == old_spi_in)
            .cloned()
        else {
            return;
        };
        self.send_create_child(ctx, now, Some(old_spi_in), old.local_ts, old.remote_ts);
    }

    /// HDR, SK {[N(REKEY_SA),] SA, Ni, [KEi,] TSi, TSr} --> : a rekey of `rekey_of`, or a
    /// new CHILD SA when the tunnel has none (§1.3.1).
    pub(super) fn send_create_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        rekey_of: Option<u32>,
        local_ts: Vec<crate::wire::TrafficSelector>,
        remote_ts: Vec<crate::wire::TrafficSelector>,
    ) {
        let spi_in = random_esp_spi(ctx);
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
        let proposals = ctx
            .cfg
            .esp
            .iter()
            .enumerate()
            .map(|(i, p)| child::to_wire(p, (i + 1) as u8, spi_in.to_be_bytes().to_vec(), true))
            .collect();
        let mut inner = Vec::new();
        if let Some(old) = rekey_of {
            inner.push(Payload::Notify(NotifyPayload {
                protocol: ProtocolId::ESP,
                spi: old.to_be_bytes().to_vec(),
                ty: NotifyType::REKEY_SA,
                data: vec![],
            }));
        }
        inner.push(Payload::Sa(SaPayload { proposals }));
        inner.push(Payload::Nonce(ni.clone()));
        if let Some(k) = &ke {
            inner.push(Payload::Ke(KePayload {
                group: k.group(),
                reserved: 0,
                data: k.public_value().to_vec(),
            }));
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
        };
        self.send_request(ctx, now, ExchangeType::CREATE_CHILD_SA, inner, kind);
    }

    // <-- HDR, SK {SA, Nr, [KEr,] TSi, TSr}
    #[allow(clippy::too_many_arguments)]
    pub(super) fn handle_create_child_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        inner: &[Payload],
        rekey_of: Option<u32>,
        spi_in: u32,
        ni: &[u8],
        ke: Option<KeyExchange>,
    ) {
        let result = (|| -> Result<Box<ChildSaInfo>, (NotifyType, String)> {
            if let Some(n) = first_error(inner) {
                return Err((n.ty, "peer refused CREATE_CHILD_SA".into()));
            }
            let (Some(sa), Some(nr), Some(tsi), Some(tsr)) = (
                find!(inner, Sa),
                find!(inner, Nonce),
                find!(inner, TsI),
                find!(inner, TsR),
            ) else {
                return Err((
                    NotifyType::INVALID_SYNTAX,
                    "response lacks SA, Nonce, TSi or TSr".into(),
                ));
            };
            let local = esp_for_create_child(&ctx.cfg.esp);
            let (prop, mut sel) = match sa.proposals.as_slice() {
                [one] => child::choose(&local, std::slice::from_ref(one), Protocol::Esp)
                    .map(|(_, s)| (one, s))
                    .ok_or((
                        NotifyType::NO_PROPOSAL_CHOSEN,
                        "peer chose a proposal we did not offer".to_string(),
                    ))?,
                _ => {
                    return Err((
                        NotifyType::INVALID_SYNTAX,
                        "response must carry one proposal".into(),
                    ))
                }
            };
            let spi_out =
                spi_u32(&prop.spi).ok_or((NotifyType::INVALID_SYNTAX, "bad SPI".to_string()))?;
            let group = sel.dh.unwrap_or(DhId::NONE);
            let shared = if group == DhId::NONE {
                sel.dh = None;
                None
            } else {
                let (Some(mine), Some(theirs)) = (ke.as_ref(), find!(inner, Ke)) else {
                    return Err((
                        NotifyType::INVALID_SYNTAX,
                        "PFS group chosen without KE".into(),
                    ));
                };
                if mine.group() != group || theirs.group != group {
                    return Err((NotifyType::INVALID_SYNTAX, "KE group mismatch".into()));
                }
                Some(
                    mine.agree(&theirs.data)
                        .map_err(|e| (NotifyType::INVALID_SYNTAX, e.to_string()))?,
                )
            };
            if !child::is_subset(&tsi.selectors, &ctx.cfg.local_ts)
                || !child::is_subset(&tsr.selectors, &ctx.cfg.remote_ts)
            {
                return Err((
                    NotifyType::TS_UNACCEPTABLE,
                    "peer widened our traffic selectors".into(),
                ));
            }
            let (keys_in, keys_out) =
                self.derive_child(shared.as_deref().map(|s| s.as_slice()), ni, nr, &sel, true)?;
            Ok(self.child_info(
                &sel,
                (spi_in, spi_out),
                (keys_in, keys_out),
                (tsi.selectors.clone(), tsr.selectors.clone()),
                rekey_of,
            ))
        })();
        match result {
            Ok(info) => {
                // §2.8.1: if the peer rekeyed the same SA meanwhile, the SA created with
                // the lowest of the four nonces is deleted by the node that created it.
                let crossed = rekey_of
                    .and_then(|old| ctx.children.iter().find(|c| c.spi_in == old))
                    .and_then(|c| c.peer_rekey.clone());
                if let Some((peer_ni, our_nr)) = crossed {
                    let nr = find!(inner, Nonce).cloned().unwrap_or_default();
                    if super::lowest_is_ours([ni, &nr], [&peer_ni, &our_nr]) {
                        info!(tunnel = %ctx.cfg.name, spi_in = format_args!("{:08x}", info.spi_in),
                            "CHILD SA rekey collision: ours has the lowest nonce, deleting it");
                        self.queued.push_back(Queued::DeleteRedundant(info.spi_in));
                        return;
                    }
                    info!(tunnel = %ctx.cfg.name, "CHILD SA rekey collision: the peer deletes its SA");
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
            Err((ty, why)) => {
                warn!(tunnel = %ctx.cfg.name, error = %ty, "CREATE_CHILD_SA failed: {why}");
                *ctx.last_error = Some(format!("{ty}: {why}"));
                // §2.25: the peer no longer has the SA we tried to rekey — its DELETE
                // was lost (e.g. sent on an IKE SA that was going away). Drop it here
                // too, so traffic no longer goes into an SA the peer has forgotten.
                if let (NotifyType::CHILD_SA_NOT_FOUND, Some(old)) = (ty, rekey_of) {
                    if let Some(pos) = ctx.children.iter().position(|c| c.spi_in == old) {
                        let c = ctx.children.remove(pos);
                        info!(tunnel = %ctx.cfg.name, spi_in = format_args!("{old:08x}"), "peer has no such CHILD SA: removed");
                        ctx.events.push_back(Event::ChildDeleted {
                            spi_in: c.spi_in,
                            spi_out: c.spi_out,
                        });
                    }
                    if ctx.children.is_empty() {
                        self.queued.push_back(Queued::NewChild);
                    }
                }
            }
        }
    }

    // HDR, SK {SA, Ni, KEi} -->
    fn send_rekey_ike(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let Some(group) = self.state.keys().and_then(|k| k.sel.dh) else {
            return;
        };
        let ke = match KeyExchange::generate(group, ctx.rng) {
            Ok(k) => k,
            Err(e) => {
                warn!(tunnel = %ctx.cfg.name, error = %e, "cannot rekey IKE SA");
                return;
            }
        };
        let mut b = [0u8; 8];
        ctx.rng.fill(&mut b);
        let new_spi_i = u64::from_be_bytes(b) | 1;
        let ni = random_nonce(ctx);
        let proposals = ctx
            .cfg
            .ike
            .iter()
            .enumerate()
            .map(|(i, p)| child::to_wire(p, (i + 1) as u8, new_spi_i.to_be_bytes().to_vec(), true))
            .collect();
        let inner = vec![
            Payload::Sa(SaPayload { proposals }),
            Payload::Nonce(ni.clone()),
            Payload::Ke(KePayload {
                group: ke.group(),
                reserved: 0,
                data: ke.public_value().to_vec(),
            }),
        ];
        info!(tunnel = %ctx.cfg.name, spi_i = format_args!("{:016x}", self.spi_i), "rekeying IKE SA");
        self.send_request(
            ctx,
            now,
            ExchangeType::CREATE_CHILD_SA,
            inner,
            RequestKind::RekeyIke { new_spi_i, ni, ke },
        );
    }

    // <-- HDR, SK {SA, Nr, KEr}
    pub(super) fn handle_rekey_ike_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        inner: &[Payload],
        new_spi_i: u64,
        ni: &[u8],
        ke: KeyExchange,
    ) {
        let result = (|| -> Result<(u64, SaKeys), String> {
            if let Some(n) = first_error(inner) {
                return Err(format!("peer refused the IKE SA rekey with {}", n.ty));
            }
            let (Some(sa), Some(nr), Some(ke_r)) =
                (find!(inner, Sa), find!(inner, Nonce), find!(inner, Ke))
            else {
                return Err("response lacks SA, Nonce or KE".into());
            };
            let [prop] = sa.proposals.as_slice() else {
                return Err("response must carry one proposal".into());
            };
            let (_, sel) = child::choose(&ctx.cfg.ike, std::slice::from_ref(prop), Protocol::Ike)
                .ok_or("peer chose a proposal we did not offer")?;
            if sel.dh != Some(ke.group()) || ke_r.group != ke.group() {
                return Err("KE group mismatch".into());
            }
            let new_spi_r = spi_u64(&prop.spi)
                .filter(|s| *s != 0)
                .ok_or("bad IKE SPI")?;
            let shared = ke.agree(&ke_r.data).map_err(|e| e.to_string())?;
            let old = self.state.keys().ok_or("no keys")?;
            let keys = crypto::derive_rekeyed_ike_keys(
                old.prf,
                &old.sk_d,
                &suite(&sel),
                &shared,
                ni,
                nr,
                new_spi_i,
                new_spi_r,
            )
            .and_then(|k| SaKeys::new(sel, k, true))
            .map_err(|e| e.to_string())?;
            Ok((new_spi_r, keys))
        })();
        let (new_spi_r, keys) = match result {
            Ok(x) => x,
            Err(why) => {
                warn!(tunnel = %ctx.cfg.name, "IKE SA rekey failed: {why}");
                *ctx.last_error = Some(format!("IKE SA rekey failed: {why}"));
                return;
            }
        };
        info!(tunnel = %ctx.cfg.name, old_spi_i = format_args!("{:016x}", self.spi_i),
            new_spi_i = format_args!("{new_spi_i:016x}"), new_spi_r = format_args!("{new_spi_r:016x}"), "IKE SA rekeyed");
        // §2.18: we initiated the rekey, so we are the new SA's original initiator.
        let mut new = IkeSa::new_initiator(new_spi_i, self.local, self.remote, now);
        new.spi_r = new_spi_r;
        new.nat = self.nat;
        new.rekeys = self.rekeys + 1;
        new.state = IkeState::Established {
            keys,
            established_at: now,
        };
        // §2.8.2: if the peer rekeyed this SA meanwhile, the new SA holding the lowest
        // nonce is deleted by its creator; the winner deletes the old SA.
        let mut peer_sa = None;
        if let Some((peer_ni, our_nr, peer_spi_i)) = self.peer_ike_rekey.take() {
            let nr = find!(inner, Nonce).cloned().unwrap_or_default();
            if super::lowest_is_ours([ni, &nr], [&peer_ni, &our_nr]) {
                info!(tunnel = %ctx.cfg.name, "IKE SA rekey collision: ours has the lowest nonce, deleting it");
                new.close_redundant(ctx, now);
                ctx.new_sas.push(new);
                self.successor = Some(peer_spi_i);
                return;
            }
            info!(tunnel = %ctx.cfg.name, "IKE SA rekey collision: the peer deletes its SA");
            peer_sa = Some(peer_spi_i);
        }
        new.queued = std::mem::take(&mut self.queued);
        self.successor = Some(new_spi_i);
        for c in ctx
            .children
            .iter_mut()
            .filter(|c| c.owner == self.spi_i || Some(c.owner) == peer_sa)
        {
            c.owner = new_spi_i;
        }
        ctx.new_sas.push(new);
        ctx.events.push_back(Event::IkeRekeyed {
            old_spi_i: self.spi_i,
            new_spi_i,
            new_spi_r,
        });
        // HDR, SK {D} --> on the old SA; its CHILD SAs now belong to the new one.
        let inner = vec![delete_ike()];
        self.send_request(
            ctx,
            now,
            ExchangeType::INFORMATIONAL,
            inner,
            RequestKind::DeleteIke,
        );
        let state = std::mem::replace(&mut self.state, IkeState::Dead { until: now });
        if let IkeState::Established { keys, .. } = state {
            self.state = IkeState::Deleting { keys };
        }
        ctx.events.push_back(Event::IkeClosed {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            reason: CloseReason::Rekeyed,
        });
    }
}
