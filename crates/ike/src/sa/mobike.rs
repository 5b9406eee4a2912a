//! MOBIKE (RFC 4555), the address update only: negotiated in IKE_AUTH with
//! MOBIKE_SUPPORTED (§3.2); the original initiator announces a new address of its own
//! with UPDATE_SA_ADDRESSES (§3.5); COOKIE2 is echoed (§3.8). Moving to where the
//! peer's authenticated messages come from is §2.23 of RFC 7296 (`follow_peer`), with or
//! without MOBIKE. Not done: additional addresses (§3.6), return routability checks
//! (§3.7), NO_NATS_ALLOWED (§3.9).
//!
//! ```text
//! Initiator                         Responder
//! HDR, SK {N(UPDATE_SA_ADDRESSES), N(NAT_DETECTION_SOURCE_IP),
//!          N(NAT_DETECTION_DESTINATION_IP), N(COOKIE2)}  -->
//!                            <--    HDR, SK {N(NAT_DETECTION_SOURCE_IP),
//!                                            N(NAT_DETECTION_DESTINATION_IP), N(COOKIE2)}
//! ```

use super::ike_init::nat_notifies;
use super::ike_sa::*;
use super::payloads::*;
use crate::iana::{ExchangeType, NotifyType};
use crate::limits;
use crate::wire::Payload;
use std::time::Instant;
use tracing::{debug, info, warn};

impl IkeSa {
    /// Our address changed. §3.4: only the original initiator updates the addresses;
    /// otherwise (or without MOBIKE) a liveness check from the new address lets the peer
    /// follow us (RFC 7296 §2.23).
    pub(super) fn send_update_addresses(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        if !(self.mobike && self.initiator) {
            let kind = RequestKind::Liveness;
            self.send_request(ctx, now, ExchangeType::INFORMATIONAL, vec![], kind);
            return;
        }
        let mut cookie2 = vec![0u8; limits::COOKIE2_LEN];
        ctx.rng.fill(&mut cookie2);
        let mut inner = vec![notify(NotifyType::UPDATE_SA_ADDRESSES, vec![])];
        inner.extend(nat_notifies(
            ctx,
            self.spi_i,
            self.spi_r,
            self.local,
            self.remote,
        ));
        inner.push(notify(NotifyType::COOKIE2, cookie2.clone()));
        info!(tunnel = %ctx.cfg.name, peer = %self.remote, "our address changed: UPDATE_SA_ADDRESSES (MOBIKE)");
        let kind = RequestKind::UpdateAddresses { cookie2 };
        self.send_request(ctx, now, ExchangeType::INFORMATIONAL, inner, kind);
    }

    // <-- HDR, SK {N(NAT_DETECTION_*), N(COOKIE2)}
    pub(super) fn handle_update_addresses_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        inner: &[Payload],
        cookie2: &[u8],
    ) {
        // §3.8: the echo proves the answer is to this request.
        match find_notify(inner, NotifyType::COOKIE2) {
            Some(n) if n.data == cookie2 => {
                debug!(tunnel = %ctx.cfg.name, "peer took our new address (MOBIKE)")
            }
            _ => {
                warn!(tunnel = %ctx.cfg.name, "MOBIKE address update answered without our COOKIE2")
            }
        }
    }

    /// What an INFORMATIONAL response adds for MOBIKE: for UPDATE_SA_ADDRESSES (already
    /// followed, §2.23) our NAT-D notifies (§3.5), and any COOKIE2 echoed (§3.8).
    pub(super) fn mobike_response(&mut self, ctx: &mut Ctx<'_>, inner: &[Payload]) -> Vec<Payload> {
        if !self.mobike {
            return Vec::new();
        }
        let mut out = Vec::new();
        if find_notify(inner, NotifyType::UPDATE_SA_ADDRESSES).is_some() {
            info!(tunnel = %ctx.cfg.name, peer = %self.remote, "peer updated its address (MOBIKE)");
            out.extend(nat_notifies(
                ctx,
                self.spi_i,
                self.spi_r,
                self.local,
                self.remote,
            ));
        }
        if let Some(n) = find_notify(inner, NotifyType::COOKIE2) {
            out.push(notify(NotifyType::COOKIE2, n.data.clone()));
        }
        out
    }
}
