//! INFORMATIONAL: delete (§1.4.1), liveness checks (§1.4) and closing, both roles.
//!
//! ```text
//! Initiator                         Responder
//! HDR, SK {[N,] [D,] [CP,] ...}  -->
//!                            <--    HDR, SK {[N,] [D,] [CP], ...}
//! ```

use super::ike_sa::*;
use super::payloads::*;
use super::CloseReason;
use crate::iana::{ExchangeType, NotifyType, ProtocolId};
use crate::limits;
use crate::wire::{DeletePayload, Payload};
use std::time::Instant;
use tracing::{info, warn};

/// D payload for the IKE SA itself (§3.11: no SPIs).
pub(super) fn delete_ike() -> Payload {
    Payload::Delete(DeletePayload {
        protocol: ProtocolId::IKE,
        spi_size: 0,
        spis: vec![],
    })
}

/// D payload for one of our CHILD SAs, named by our inbound SPI (§1.4.1).
pub(super) fn delete_esp(spi_in: u32) -> Payload {
    Payload::Delete(DeletePayload {
        protocol: ProtocolId::ESP,
        spi_size: 4,
        spis: vec![spi_in.to_be_bytes().to_vec()],
    })
}

impl IkeSa {
    // HDR, SK {[N,] [D,] [CP,] ...} -->  <-- HDR, SK {[N,] [D,] [CP], ...}   (§1.4)
    pub(super) fn handle_informational(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        msg_id: u32,
        inner: &[Payload],
    ) {
        let mut delete_ike = false;
        let mut auth_failed = false;
        let mut our_spis = Vec::new();
        let mut lost = Vec::new();
        for p in inner {
            match p {
                Payload::Delete(d) if d.protocol == ProtocolId::IKE => delete_ike = true,
                Payload::Delete(d) if d.protocol == ProtocolId::ESP => {
                    for spi in d.spis.iter().filter_map(|s| spi_u32(s)) {
                        // §1.4.1: the SPIs are the sender's inbound ones, our outbound.
                        if let Some(pos) = ctx.children.iter().position(|c| c.spi_out == spi) {
                            let c = ctx.remove_child(pos);
                            // A rekey's old SA is expected to go; any other leaves a gap.
                            if !c.superseded {
                                lost.push(c.resource);
                            }
                            info!(tunnel = %ctx.cfg.name, spi_in = format_args!("{:08x}", c.spi_in),
                                spi_out = format_args!("{:08x}", c.spi_out), "peer deleted CHILD SA");
                            our_spis.push(c.spi_in.to_be_bytes().to_vec());
                        }
                    }
                }
                Payload::Notify(n) if n.ty.is_error() => {
                    warn!(tunnel = %ctx.cfg.name, error = %n.ty, "peer reported an error");
                    if n.ty == NotifyType::AUTHENTICATION_FAILED {
                        auth_failed = true;
                        delete_ike = true;
                    }
                }
                _ => {}
            }
        }
        if delete_ike {
            self.send_response(ctx, ExchangeType::INFORMATIONAL, msg_id, vec![]);
            info!(tunnel = %ctx.cfg.name, spi_i = format_args!("{:016x}", self.spi_i), "peer deleted IKE SA");
            // §2.8.2: a rekey collision the peer settled before answering ours: its new
            // SA won, and it deletes this old one; the CHILD SAs carry on under the winner.
            let collided = self
                .state
                .established_mut()
                .and_then(|e| e.peer_rekey.take());
            if let (None, Some((_, _, peer_spi_i))) = (self.successor, collided) {
                info!(tunnel = %ctx.cfg.name, spi_i = format_args!("{peer_spi_i:016x}"),
                    "IKE SA rekey collision: the peer's SA won");
                self.hand_children_to(ctx, peer_spi_i);
            }
            let reason = if auth_failed {
                // §2.21.2: the initiator refused our IKE_AUTH response after all.
                let why = if ctx.cfg.cert.is_some() {
                    "peer rejected our authentication: check our certificate (its ca must be the peer's, not expired) and local_id/remote_id on both ends (see the peer's log)"
                } else {
                    "peer rejected our authentication: check psk and local_id/remote_id on both ends"
                };
                warn!(tunnel = %ctx.cfg.name, error = %NotifyType::AUTHENTICATION_FAILED, "IKE SA failed: {why}");
                *ctx.last_error = Some(format!("AUTHENTICATION_FAILED: {why}"));
                CloseReason::Failed(NotifyType::AUTHENTICATION_FAILED, why.into())
            } else {
                CloseReason::DeletedByPeer
            };
            self.report_closed(ctx, reason);
            // A CHILD SA request in flight here is redone on the successor, if any.
            match self.pending.take().map(|p| p.kind) {
                Some(RequestKind::DeleteChild(spi)) => {
                    self.queued.push_front(super::Queued::DeleteChild(spi))
                }
                Some(RequestKind::CreateChild {
                    rekey_of: Some(old),
                    ..
                }) => self.queued.push_front(super::Queued::RekeyChild(old)),
                Some(RequestKind::CreateChild { resource, .. }) if resource > 0 => self
                    .queued
                    .push_front(super::Queued::ResourceChild(resource)),
                _ => {}
            }
            self.state = IkeState::Dead {
                until: now + limits::HALF_OPEN_TIMEOUT,
            };
            return;
        }
        self.children_missing(ctx, now, &lost);
        let mut out = if our_spis.is_empty() {
            vec![]
        } else {
            vec![Payload::Delete(DeletePayload {
                protocol: ProtocolId::ESP,
                spi_size: 4,
                spis: our_spis,
            })]
        };
        out.extend(self.mobike_response(ctx, inner));
        self.send_response(ctx, ExchangeType::INFORMATIONAL, msg_id, out);
    }

    // HDR, SK {D} -->
    pub(super) fn send_delete_child(&mut self, ctx: &mut Ctx<'_>, now: Instant, spi_in: u32) {
        if !ctx.children.iter().any(|c| c.spi_in == spi_in) {
            return;
        }
        let inner = vec![delete_esp(spi_in)];
        let kind = RequestKind::DeleteChild(spi_in);
        self.send_request(ctx, now, ExchangeType::INFORMATIONAL, inner, kind);
    }

    // <-- HDR, SK {D}
    pub(super) fn handle_delete_child_response(&mut self, ctx: &mut Ctx<'_>, spi_in: u32) {
        if let Some(pos) = ctx.children.iter().position(|c| c.spi_in == spi_in) {
            ctx.remove_child(pos);
            info!(tunnel = %ctx.cfg.name, spi_in = format_args!("{spi_in:08x}"), "CHILD SA deleted");
        }
    }

    // HDR, SK {D} -->   (§1.4.1)
    /// Deletes this established IKE SA (its CHILD SAs go with it) and reports it closed
    /// for `reason`.
    pub(super) fn delete_ike_sa(&mut self, ctx: &mut Ctx<'_>, now: Instant, reason: CloseReason) {
        let state = std::mem::replace(&mut self.state, IkeState::Dead { until: now });
        let IkeState::Established(e) = state else {
            self.state = state;
            return;
        };
        self.state = IkeState::Deleting { keys: e.keys };
        let inner = vec![delete_ike()];
        let kind = RequestKind::DeleteIke;
        self.send_request(ctx, now, ExchangeType::INFORMATIONAL, inner, kind);
        self.report_closed(ctx, reason);
    }

    /// Ends this IKE SA on `down` or shutdown.
    pub(super) fn close(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        match self.state {
            IkeState::Established(_) => {
                info!(tunnel = %ctx.cfg.name, spi_i = format_args!("{:016x}", self.spi_i), "deleting IKE SA");
                self.delete_ike_sa(ctx, now, CloseReason::Local);
            }
            IkeState::Dead { .. } | IkeState::Deleting { .. } => {}
            _ => {
                self.pending = None;
                self.state = IkeState::Dead { until: now };
                self.report_closed(ctx, CloseReason::Local);
            }
        }
    }
}
