//! Rekeying the IKE SA with CREATE_CHILD_SA, both roles (§1.3.2, keys per §2.18), and
//! the §2.8.2 collision rules (also used to settle duplicate IKE SAs).
//!
//! ```text
//! Initiator                         Responder
//! HDR, SK {SA, Ni, KEi}      -->
//!                            <--    HDR, SK {SA, Nr, KEr}
//! ```

use super::child_create::sa_and_nonce;
use super::error::ExchangeError;
use super::ike_sa::*;
use super::payloads::*;
use super::{CloseReason, Event, Session};
use crate::crypto::{self, KeyExchange};
use crate::iana::{DhId, ExchangeType, NotifyType};
use crate::limits;
use crate::proposal::{self, Protocol, Selected};
use crate::wire::{Payload, SaPayload};
use std::time::Instant;
use tracing::{info, warn};

impl IkeSa {
    /// `new`, a fresh SA with the rekey's SPIs, made this SA's established successor
    /// (§2.18): what was negotiated for this SA carries over.
    fn succeeded_by(&self, mut new: IkeSa, keys: SaKeys, now: Instant) -> IkeSa {
        new.nat = self.nat;
        // Extensions negotiated for the SA stay with its successor (as strongSwan does).
        new.mobike = self.mobike;
        new.frag_ok = self.frag_ok;
        new.rsa = self.rsa;
        new.rekeys = self.rekeys + 1;
        new.state = IkeState::established(keys, now, None);
        // RFC 3948 §4: the NAT in front of us outlives the rekey; keep its mapping open.
        if let (Some(e), true) = (new.state.established_mut(), self.behind_nat()) {
            e.behind_nat = true;
        }
        new
    }

    /// Keys of the IKE SA that replaces this one, from this one's SK_d (§2.18);
    /// `initiator`: we started the rekey.
    fn rekeyed_keys(
        &self,
        sel: Selected,
        shared: &[u8],
        (ni, nr): (&[u8], &[u8]),
        (spi_i, spi_r): (u64, u64),
        initiator: bool,
    ) -> Result<SaKeys, crypto::CryptoError> {
        let old = self
            .state
            .keys()
            .ok_or(crypto::CryptoError::Internal("no keys"))?;
        let suite = suite(&sel);
        let keys = crypto::derive_rekeyed_ike_keys(
            old.prf, &old.sk_d, &suite, shared, ni, nr, spi_i, spi_r,
        )?;
        SaKeys::new(sel, keys, initiator)
    }

    // HDR, SK {SA, Ni, KEi} -->  <-- HDR, SK {SA, Nr, KEr}   (§1.3.2, keys per §2.18)
    pub(super) fn handle_rekey_ike(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        msg_id: u32,
        inner: &[Payload],
    ) {
        let (sa, ni) = match sa_and_nonce(inner) {
            Ok(x) => x,
            Err(e) => return self.refuse(ctx, now, ExchangeType::CREATE_CHILD_SA, msg_id, e),
        };
        let ke = find!(inner, Ke);
        let nr = random_nonce(ctx);
        let accepted = (|| {
            let Some((idx, sel)) = proposal::choose(&ctx.cfg.ike, &sa.proposals, Protocol::Ike)
            else {
                return Err(ExchangeError::NoProposal(
                    "IKE SA rekey: no common proposal".into(),
                ));
            };
            let prop = &sa.proposals[idx];
            let sel = match ke {
                Some(k) => {
                    proposal::prefer_ke_group(&ctx.cfg.ike, prop, Protocol::Ike, sel, k.group)
                }
                None => sel,
            };
            let group = sel.dh.unwrap_or(DhId::NONE);
            let Some(ke) = ke.filter(|k| k.group == group) else {
                return Err(ExchangeError::InvalidKe(group));
            };
            let Some(new_spi_i) = spi_u64(&prop.spi).filter(|s| *s != 0) else {
                return Err(ExchangeError::Syntax("IKE SA rekey: bad SPI".into()));
            };
            let new_spi_r = random_ike_spi(ctx);
            let (mine, keys) = KeyExchange::generate(group, ctx.rng)
                .and_then(|mine| {
                    let shared = mine.agree(&ke.data)?;
                    let spis = (new_spi_i, new_spi_r);
                    Ok((
                        mine,
                        self.rekeyed_keys(sel, &shared, (ni, &nr), spis, false)?,
                    ))
                })
                .map_err(|e| ExchangeError::Syntax(format!("IKE SA rekey: {e}")))?;
            Ok((prop.num, new_spi_i, new_spi_r, mine, keys))
        })();
        let (num, new_spi_i, new_spi_r, mine, keys) = match accepted {
            Ok(x) => x,
            Err(e) => return self.refuse(ctx, now, ExchangeType::CREATE_CHILD_SA, msg_id, e),
        };
        let sel = keys.sel;
        let resp = vec![
            Payload::Sa(SaPayload {
                proposals: vec![proposal::selected_to_wire(
                    &sel,
                    Protocol::Ike,
                    num,
                    new_spi_r.to_be_bytes().to_vec(),
                )],
            }),
            Payload::Nonce(nr.clone()),
            ke_payload(&mine),
        ];
        let resp_nr = nr;
        self.send_response(ctx, ExchangeType::CREATE_CHILD_SA, msg_id, resp);
        info!(tunnel = %ctx.cfg.name, old_spi_i = format_args!("{:016x}", self.spi_i),
            new_spi_i = format_args!("{new_spi_i:016x}"), new_spi_r = format_args!("{new_spi_r:016x}"),
            proposal = %sel, "IKE SA rekeyed by peer");
        self.queued.retain(|q| *q != super::Queued::RekeyIke);
        if matches!(&self.pending, Some(p) if matches!(p.kind, RequestKind::RekeyIke { .. })) {
            // §2.8.2 collision: which new SA survives is known only once our own rekey
            // is answered (or the peer deletes this SA), so the CHILD SAs stay here until
            // then; moving them now would lose them if the peer deletes its SA as the
            // loser.
            if let Some(e) = self.state.established_mut() {
                e.peer_rekey = Some((ni.to_vec(), resp_nr.clone(), new_spi_i));
            }
        } else {
            self.hand_children_to(ctx, new_spi_i);
        }
        // §2.18: the rekey's initiator is the new SA's original initiator.
        let new = IkeSa::new_responder(new_spi_i, new_spi_r, self.local, self.remote, now);
        let new = self.succeeded_by(new, keys, now);
        ctx.new_sas.push(new);
        ctx.events.push_back(Event::IkeRekeyed {
            old_spi_i: self.spi_i,
            new_spi_i,
            new_spi_r,
        });
    }

    // HDR, SK {SA, Ni, KEi} -->
    pub(super) fn send_rekey_ike(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
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
        let new_spi_i = random_ike_spi(ctx);
        let ni = random_nonce(ctx);
        let inner = vec![
            sa_offer(&ctx.cfg.ike, &new_spi_i.to_be_bytes(), true),
            Payload::Nonce(ni.clone()),
            ke_payload(&ke),
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
        let result = (|| -> Result<(u64, SaKeys), ExchangeError> {
            if let Some(n) = first_error(inner) {
                let why = format!("peer refused the IKE SA rekey with {}", n.ty);
                return Err(ExchangeError::Refused { notify: n.ty, why });
            }
            let syntax = |why: &str| ExchangeError::Syntax(why.into());
            let (Some(sa), Some(nr), Some(ke_r)) =
                (find!(inner, Sa), find!(inner, Nonce), find!(inner, Ke))
            else {
                return Err(syntax("response lacks SA, Nonce or KE"));
            };
            let [prop] = sa.proposals.as_slice() else {
                return Err(syntax("response must carry one proposal"));
            };
            let (_, sel) =
                proposal::choose(&ctx.cfg.ike, std::slice::from_ref(prop), Protocol::Ike)
                    .ok_or_else(|| {
                        ExchangeError::NoProposal("peer chose a proposal we did not offer".into())
                    })?;
            if sel.dh != Some(ke.group()) || ke_r.group != ke.group() {
                return Err(syntax("KE group mismatch"));
            }
            let new_spi_r = spi_u64(&prop.spi)
                .filter(|s| *s != 0)
                .ok_or_else(|| syntax("bad IKE SPI"))?;
            let shared = ke.agree(&ke_r.data).map_err(|e| syntax(&e.to_string()))?;
            let keys = self
                .rekeyed_keys(sel, &shared, (ni, nr), (new_spi_i, new_spi_r), true)
                .map_err(|e| syntax(&e.to_string()))?;
            Ok((new_spi_r, keys))
        })();
        let (new_spi_r, keys) = match result {
            Ok(x) => x,
            // §2.25: the peer is rekeying or deleting this SA itself: not a failure.
            Err(e) if e.notify_type() == NotifyType::TEMPORARY_FAILURE => {
                info!(tunnel = %ctx.cfg.name, retry = ?limits::REKEY_RETRY,
                    "IKE SA rekey deferred: the peer is busy (TEMPORARY_FAILURE)");
                return;
            }
            Err(e) => {
                // §2.8: the old SA carries on; the rekey is retried on schedule.
                warn!(tunnel = %ctx.cfg.name, error = %e.notify_type(), "IKE SA rekey failed: {e}");
                *ctx.last_error = Some(format!("IKE SA rekey failed: {e}"));
                return;
            }
        };
        info!(tunnel = %ctx.cfg.name, old_spi_i = format_args!("{:016x}", self.spi_i),
            new_spi_i = format_args!("{new_spi_i:016x}"), new_spi_r = format_args!("{new_spi_r:016x}"), "IKE SA rekeyed");
        // §2.18: we initiated the rekey, so we are the new SA's original initiator.
        let mut new = IkeSa::new_initiator(new_spi_i, self.local, self.remote, now);
        new.spi_r = new_spi_r;
        let mut new = self.succeeded_by(new, keys, now);
        // §2.8.2: if the peer rekeyed this SA meanwhile, the new SA holding the lowest
        // nonce is deleted by its creator; the winner deletes the old SA.
        let mut peer_sa = None;
        if let Some((peer_ni, our_nr, peer_spi_i)) = self
            .state
            .established_mut()
            .and_then(|e| e.peer_rekey.take())
        {
            let nr = find!(inner, Nonce).cloned().unwrap_or_default();
            if lowest_is_ours([ni, &nr], [&peer_ni, &our_nr]) {
                info!(tunnel = %ctx.cfg.name, "IKE SA rekey collision: ours has the lowest nonce, deleting it");
                new.close_redundant(ctx, now);
                ctx.new_sas.push(new);
                // The peer's SA wins and the peer deletes this one.
                self.hand_children_to(ctx, peer_spi_i);
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
        self.delete_ike_sa(ctx, now, CloseReason::Rekeyed);
    }

    /// Makes `successor` the SA that replaces this one (§2.18): its CHILD SAs, and those
    /// created from now on, belong to it.
    pub(super) fn hand_children_to(&mut self, ctx: &mut Ctx<'_>, successor: u64) {
        for c in ctx.children.iter_mut().filter(|c| c.owner == self.spi_i) {
            c.owner = successor;
        }
        self.successor = Some(successor);
    }

    /// Deletes this SA without taking CHILD SAs with it: it lost a collision (§2.8.2)
    /// or duplicates another IKE SA.
    // HDR, SK {D} -->
    pub(super) fn close_redundant(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        if !matches!(self.state, IkeState::Established(_)) {
            return;
        }
        self.pending = None;
        self.queued.clear();
        self.delete_ike_sa(ctx, now, CloseReason::Rekeyed);
    }
}

impl Session {
    /// Both ends initiated at once and two IKE SAs came up (§2.8 gives no rule; we use
    /// the rekey-collision one): the SA holding the lowest nonce is deleted by its
    /// original initiator, together with its CHILD SAs; the other carries on.
    pub(super) fn resolve_duplicates(&mut self, now: Instant) {
        let est: Vec<usize> = self
            .sas
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                matches!(&s.state, IkeState::Established(e) if e.init_nonces.is_some())
                    && s.rekeys == 0
            })
            .map(|(i, _)| i)
            .collect();
        if est.len() < 2 {
            return;
        }
        let lowest = est
            .iter()
            .copied()
            .min_by(|a, b| min_nonce(&self.sas[*a]).cmp(min_nonce(&self.sas[*b])))
            .expect("two or more");
        if self.sas[lowest].initiator {
            tracing::info!(tunnel = %self.cfg.name, spi_i = format_args!("{:016x}", self.sas[lowest].spi_i),
                "both ends initiated: deleting our duplicate IKE SA");
            self.with_sa_no_bookkeeping(lowest, now, |sa, ctx, now| sa.close_redundant(ctx, now));
        } else {
            // The peer deletes it; keep it from being counted again meanwhile.
            if let Some(e) = self.sas[lowest].state.established_mut() {
                e.init_nonces = None;
            }
        }
    }
}

/// The lowest of an IKE SA's two nonces.
pub(super) fn min_nonce(sa: &IkeSa) -> &[u8] {
    match &sa.state {
        IkeState::Established(Established {
            init_nonces: Some((a, b)),
            ..
        }) => a.min(b),
        _ => &[],
    }
}
