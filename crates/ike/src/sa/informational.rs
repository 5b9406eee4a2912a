//! INFORMATIONAL: delete (§1.4.1), liveness checks (§1.4) and closing, both roles.
//!
//! ```text
//! Initiator                         Responder
//! HDR, SK {[N,] [D,] [CP,] ...}  -->
//!                            <--    HDR, SK {[N,] [D,] [CP], ...}
//! ```

use super::ike_sa::*;
use super::{CloseReason, Event};
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
        let mut our_spis = Vec::new();
        for p in inner {
            match p {
                Payload::Delete(d) if d.protocol == ProtocolId::IKE => delete_ike = true,
                Payload::Delete(d) if d.protocol == ProtocolId::ESP => {
                    for spi in d.spis.iter().filter_map(|s| spi_u32(s)) {
                        // §1.4.1: the SPIs are the sender's inbound ones, our outbound.
                        if let Some(pos) = ctx.children.iter().position(|c| c.spi_out == spi) {
                            let c = ctx.children.remove(pos);
                            info!(tunnel = %ctx.cfg.name, spi_in = format_args!("{:08x}", c.spi_in),
                                spi_out = format_args!("{:08x}", c.spi_out), "peer deleted CHILD SA");
                            our_spis.push(c.spi_in.to_be_bytes().to_vec());
                            ctx.events.push_back(Event::ChildDeleted {
                                spi_in: c.spi_in,
                                spi_out: c.spi_out,
                            });
                        }
                    }
                }
                Payload::Notify(n) if n.ty.is_error() => {
                    warn!(tunnel = %ctx.cfg.name, error = %n.ty, "peer reported an error");
                    if n.ty == NotifyType::AUTHENTICATION_FAILED {
                        *ctx.last_error =
                            Some("AUTHENTICATION_FAILED: peer rejected our authentication".into());
                        delete_ike = true;
                    }
                }
                _ => {}
            }
        }
        if delete_ike {
            self.send_response(ctx, ExchangeType::INFORMATIONAL, msg_id, vec![]);
            info!(tunnel = %ctx.cfg.name, spi_i = format_args!("{:016x}", self.spi_i), "peer deleted IKE SA");
            ctx.events.push_back(Event::IkeClosed {
                spi_i: self.spi_i,
                spi_r: self.spi_r,
                reason: CloseReason::DeletedByPeer,
            });
            // A CHILD SA request in flight here is redone on the successor, if any.
            match self.pending.take().map(|p| p.kind) {
                Some(RequestKind::DeleteChild(spi)) => {
                    self.queued.push_front(super::Queued::DeleteChild(spi))
                }
                Some(RequestKind::CreateChild {
                    rekey_of: Some(old),
                    ..
                }) => self.queued.push_front(super::Queued::RekeyChild(old)),
                _ => {}
            }
            self.state = IkeState::Dead {
                until: now + limits::HALF_OPEN_TIMEOUT,
            };
            return;
        }
        let out = if our_spis.is_empty() {
            vec![]
        } else {
            vec![Payload::Delete(DeletePayload {
                protocol: ProtocolId::ESP,
                spi_size: 4,
                spis: our_spis,
            })]
        };
        self.send_response(ctx, ExchangeType::INFORMATIONAL, msg_id, out);
    }

    // HDR, SK {D} -->
    pub(super) fn send_delete_child(&mut self, ctx: &mut Ctx<'_>, now: Instant, spi_in: u32) {
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

    // HDR, SK {D} -->   (§1.4.1)
    pub(super) fn close(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let state = std::mem::replace(&mut self.state, IkeState::Dead { until: now });
        match state {
            IkeState::Established(e) => {
                self.state = IkeState::Deleting { keys: e.keys };
                let inner = vec![delete_ike()];
                self.send_request(
                    ctx,
                    now,
                    ExchangeType::INFORMATIONAL,
                    inner,
                    RequestKind::DeleteIke,
                );
                info!(tunnel = %ctx.cfg.name, spi_i = format_args!("{:016x}", self.spi_i), "deleting IKE SA");
                ctx.events.push_back(Event::IkeClosed {
                    spi_i: self.spi_i,
                    spi_r: self.spi_r,
                    reason: CloseReason::Local,
                });
            }
            IkeState::Dead { until } => self.state = IkeState::Dead { until },
            IkeState::Deleting { keys } => self.state = IkeState::Deleting { keys },
            _ => {
                self.pending = None;
                ctx.events.push_back(Event::IkeClosed {
                    spi_i: self.spi_i,
                    spi_r: self.spi_r,
                    reason: CloseReason::Local,
                });
            }
        }
    }
}
