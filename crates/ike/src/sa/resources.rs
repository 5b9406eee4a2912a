//! RFC 9611 per-resource CHILD SAs, both roles: several CHILD SAs with the same traffic
//! selectors, one per dataplane worker, each with its own sequence numbers and replay
//! window (§2), so one tunnel can use every core.
//!
//! ```text
//! Initiator                         Responder
//! HDR, SK {IDi, AUTH, N(SA_RESOURCE_INFO), SAi2, TSi, TSr}  -->
//!                 <--    HDR, SK {IDr, AUTH, N(SA_RESOURCE_INFO), SAr2, TSi, TSr}
//! HDR, SK {N(SA_RESOURCE_INFO), SA, Ni, [KEi,] TSi, TSr}  -->   (one per extra resource)
//!                 <--    HDR, SK {N(SA_RESOURCE_INFO), SA, Nr, [KEr,] TSi, TSr}
//!                 <--    HDR, SK {N(TS_MAX_QUEUE)}   (the responder holds no more)
//! ```
//!
//! The CHILD SA of IKE_AUTH is the fallback SA (resource 0, §3); extras are numbered
//! from 1 and their inbound SPIs go to the lanes after the tunnel's own
//! ([`super::SpiLane::for_resource`]). A peer that does not know SA_RESOURCE_INFO
//! ignores it (RFC 7296 §3.10.1), never echoes it, and gets only the fallback SA.
//!
//! The IKE initiator creates its extras right after IKE_AUTH. A responder with more
//! resources than that creates the rest itself once the initiator has been quiet for
//! [`limits::RESOURCE_TOP_UP_DELAY`] (the top-up); the initiator numbers them after its
//! own and, having no queue for them, only receives on them.
//!
//! The same refill brings back a CHILD SA the peer deleted outside a rekey (§1.4.1), the
//! fallback SA included: a route-based tunnel is meant to carry traffic while its IKE SA
//! is up. It waits [`limits::CHILD_REFILL_DELAY`], doubled per deletion (see there).

use super::error::ExchangeError;
use super::ike_sa::{Ctx, IkeSa, Queued};
use super::payloads::{find_notify, notify};
use crate::iana::NotifyType;
use crate::limits;
use crate::wire::Payload;
use std::time::Instant;
use tracing::info;

/// What one IKE SA negotiated about per-resource CHILD SAs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Resources {
    /// Both ends sent SA_RESOURCE_INFO in IKE_AUTH (§3).
    pub supported: bool,
    /// The peer answered an extra with TS_MAX_QUEUE (§5.2): create no more on this SA.
    pub refused: bool,
}

/// Creating the CHILD SAs a session lacks. It belongs to the session, like the CHILD SAs,
/// not to the IKE SA that learnt of the loss, which an IKE rekey may retire first.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Refill {
    /// When: as IKE responder with more resources than the initiator (moved on by each
    /// per-resource request of the peer), or after the peer deleted one outside a rekey.
    pub at: Option<Instant>,
    /// Losses answered with a new CHILD SA since the last completed CHILD SA rekey: the
    /// back-off's exponent.
    pub count: u32,
}

/// The CHILD SA of `resource` that is not being replaced, if any.
fn live_child<'a>(ctx: &'a Ctx<'_>, resource: u32) -> Option<&'a super::Child> {
    ctx.children
        .iter()
        .find(|c| !c.superseded && c.resource == resource)
}

/// N(SA_RESOURCE_INFO) for `resource`: its number as two octets (only for the peer's
/// logs, §5.1: the data is opaque), none for the fallback SA.
fn resource_info(resource: u32) -> Payload {
    let data = match resource {
        0 => vec![],
        r => (r.min(u32::from(u16::MAX)) as u16).to_be_bytes().to_vec(),
    };
    notify(NotifyType::SA_RESOURCE_INFO, data)
}

impl IkeSa {
    /// IKE_AUTH request: announce support (§3) unless it is off here.
    pub(super) fn resource_auth_request(ctx: &Ctx<'_>) -> Option<Payload> {
        (ctx.cfg.resources >= 1).then(|| resource_info(0))
    }

    /// IKE_AUTH response received: support is what both ends announced.
    pub(super) fn resource_auth_result(&mut self, ctx: &Ctx<'_>, inner: &[Payload]) {
        self.rsa.supported =
            ctx.cfg.resources >= 1 && find_notify(inner, NotifyType::SA_RESOURCE_INFO).is_some();
        if self.rsa.supported {
            info!(tunnel = %ctx.cfg.name, "peer supports per-resource CHILD SAs (RFC 9611)");
        }
    }

    /// IKE_AUTH request received: echo SA_RESOURCE_INFO when both ends support it, and
    /// arm the top-up if we have extras of our own to create.
    pub(super) fn resource_auth_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        inner: &[Payload],
    ) -> Option<Payload> {
        self.rsa.supported =
            ctx.cfg.resources >= 1 && find_notify(inner, NotifyType::SA_RESOURCE_INFO).is_some();
        if self.rsa.supported && ctx.cfg.resources > 1 {
            ctx.refill.at = Some(now + limits::RESOURCE_TOP_UP_DELAY);
        }
        self.rsa.supported.then(|| resource_info(0))
    }

    /// The peer created a per-resource CHILD SA: it is still creating, wait for it.
    pub(super) fn resource_created_by_peer(ctx: &mut Ctx<'_>, now: Instant) {
        if let Some(t) = ctx.refill.at.as_mut() {
            *t = (*t).max(now + limits::RESOURCE_TOP_UP_DELAY);
        }
    }

    /// The tunnel lacks CHILD SAs of `resources`: the peer deleted them outside a rekey
    /// (§1.4.1), or refused to create them again. Arms the refill for the ones without a
    /// live SA that we would create, with back-off.
    pub(super) fn children_missing(&self, ctx: &mut Ctx<'_>, now: Instant, resources: &[u32]) {
        let lost: Vec<u32> = resources
            .iter()
            .copied()
            .filter(|&r| self.lacks(ctx, r))
            .collect();
        if lost.is_empty() {
            return;
        }
        let wait = limits::CHILD_REFILL_DELAY
            .saturating_mul(2u32.saturating_pow(ctx.refill.count))
            .min(limits::CHILD_REFILL_MAX);
        ctx.refill.count = ctx.refill.count.saturating_add(1);
        let at = now + wait;
        ctx.refill.at = Some(ctx.refill.at.map_or(at, |t| t.min(at)));
        info!(tunnel = %ctx.cfg.name, resources = ?lost, wait = ?wait,
            "the tunnel lacks a CHILD SA: creating it again");
    }

    /// Whether the tunnel lacks a CHILD SA of `resource` that we would create: no live
    /// one, and it is the fallback SA, or an extra while the peer takes them.
    fn lacks(&self, ctx: &Ctx<'_>, resource: u32) -> bool {
        let ours = resource == 0
            || (self.rsa.supported && !self.rsa.refused && resource < ctx.cfg.resources);
        ours && live_child(ctx, resource).is_none()
    }

    /// The refill is due: queue a CREATE_CHILD_SA for the fallback SA and for each of our
    /// resources that has no live CHILD SA, one at a time like the initiator's extras.
    pub(super) fn refill_children(&mut self, ctx: &mut Ctx<'_>) {
        ctx.refill.at = None;
        let missing: Vec<u32> = (0..ctx.cfg.resources.max(1))
            .filter(|&r| self.lacks(ctx, r))
            .collect();
        if missing.is_empty() {
            return;
        }
        info!(tunnel = %ctx.cfg.name, resources = ?missing, "creating the CHILD SAs this tunnel lacks");
        if missing.first() == Some(&0) && !self.queued.contains(&Queued::NewChild) {
            self.queued.push_back(Queued::NewChild);
        }
        self.queue_resources(missing.into_iter().filter(|&r| r > 0));
    }

    /// `Queued::NewChild` is due: create the fallback SA unless one is live again (the
    /// peer made it meanwhile).
    pub(super) fn send_fallback_child(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        if live_child(ctx, 0).is_some() {
            return;
        }
        let (l, r) = (ctx.cfg.local_ts.clone(), ctx.cfg.remote_ts.clone());
        self.send_create_child(ctx, now, None, l, r, 0);
    }

    /// After the fallback SA is in: queue the extras, one CREATE_CHILD_SA at a time.
    /// The IKE SA's initiator creates them at once; the responder only tops up later
    /// ([`Self::refill_children`]), so the two ends do not race to fill the same
    /// resource (RFC 9611 §3 leaves it to either end). A rekeyed IKE SA keeps its CHILD
    /// SAs and creates none.
    pub(super) fn queue_resource_children(&mut self, ctx: &Ctx<'_>) {
        if !self.initiator || !self.rsa.supported || self.rsa.refused {
            return;
        }
        self.queue_resources(1..ctx.cfg.resources);
    }

    /// Queues a CREATE_CHILD_SA for each of `resources` not queued yet.
    fn queue_resources(&mut self, resources: impl IntoIterator<Item = u32>) {
        for r in resources {
            if !self.queued.contains(&Queued::ResourceChild(r)) {
                self.queued.push_back(Queued::ResourceChild(r));
            }
        }
    }

    // HDR, SK {N(SA_RESOURCE_INFO), SA, Ni, [KEi,] TSi, TSr} -->
    pub(super) fn send_resource_child(&mut self, ctx: &mut Ctx<'_>, now: Instant, r: u32) {
        if !self.rsa.supported
            || self.rsa.refused
            || r >= ctx.cfg.resources
            || live_child(ctx, r).is_some()
        {
            return;
        }
        // §3: the same selectors as the fallback SA (as the peer narrowed them).
        let (l, rt) = match live_child(ctx, 0) {
            Some(c) => (c.local_ts.clone(), c.remote_ts.clone()),
            None => (ctx.cfg.local_ts.clone(), ctx.cfg.remote_ts.clone()),
        };
        info!(tunnel = %ctx.cfg.name, resource = r, "creating a per-resource CHILD SA");
        self.send_create_child(ctx, now, None, l, rt, r);
    }

    /// N(SA_RESOURCE_INFO) for our CREATE_CHILD_SA request: extras, and rekeys of any
    /// CHILD SA of an IKE SA that negotiated support (§3).
    pub(super) fn resource_request_notify(
        &self,
        ctx: &Ctx<'_>,
        rekey_of: Option<u32>,
        resource: u32,
    ) -> Option<Payload> {
        let wanted = rekey_of.is_some() || resource > 0;
        (self.rsa.supported && ctx.cfg.resources >= 1 && wanted).then(|| resource_info(resource))
    }

    /// Responder: the resource a CREATE_CHILD_SA request gets, and the Notify that says
    /// so. A rekey keeps the resource of the SA it replaces; a new CHILD SA with
    /// SA_RESOURCE_INFO is a per-resource one (not a duplicate of the SA with the same
    /// selectors) and takes the smallest free resource; any other is as before (0).
    pub(super) fn resource_of_request(
        &self,
        ctx: &Ctx<'_>,
        inner: &[Payload],
        replaces: Option<u32>,
    ) -> Result<(u32, Option<Payload>), ExchangeError> {
        let asked = find_notify(inner, NotifyType::SA_RESOURCE_INFO).is_some();
        let on = asked && self.rsa.supported && ctx.cfg.resources >= 1;
        if let Some(old) = replaces {
            let r = ctx
                .children
                .iter()
                .find(|c| c.spi_in == old)
                .map_or(0, |c| c.resource);
            return Ok((r, on.then(|| resource_info(r))));
        }
        if !on {
            return Ok((0, None));
        }
        let live: Vec<u32> = ctx
            .children
            .iter()
            .filter(|c| !c.superseded)
            .map(|c| c.resource)
            .collect();
        if live.len() >= limits::MAX_RESOURCE_SAS {
            // RFC 9611 §5.2: no more CHILD SAs with these selectors.
            return Err(ExchangeError::TsMaxQueue(format!(
                "already {} CHILD SAs with the peer (at most {})",
                live.len(),
                limits::MAX_RESOURCE_SAS
            )));
        }
        // Fewer live SAs than the limit, so one of 1..=limit is free.
        let free = (1..=limits::MAX_RESOURCE_SAS as u32).find(|r| !live.contains(r));
        let r = free.ok_or_else(|| {
            ExchangeError::TsMaxQueue(format!(
                "no resource number left (at most {})",
                limits::MAX_RESOURCE_SAS
            ))
        })?;
        Ok((r, Some(resource_info(r))))
    }

    /// Initiator: the peer refused an extra. TS_MAX_QUEUE (RFC 9611 §5.2) is no failure:
    /// the SAs we have stay, and true says it is handled here. Any refusal stops the
    /// extras on this IKE SA (the next ones would fare the same); other errors are then
    /// reported as for any CREATE_CHILD_SA.
    pub(super) fn resource_refused(
        &mut self,
        ctx: &Ctx<'_>,
        err: &ExchangeError,
        rekey_of: Option<u32>,
        resource: u32,
    ) -> bool {
        if rekey_of.is_some() || resource == 0 {
            return false;
        }
        self.rsa.refused = true;
        self.queued
            .retain(|q| !matches!(q, Queued::ResourceChild(_)));
        if err.notify_type() != NotifyType::TS_MAX_QUEUE {
            return false;
        }
        let have = ctx.children.iter().filter(|c| !c.superseded).count();
        info!(tunnel = %ctx.cfg.name, resource, children = have,
            "peer takes no more per-resource CHILD SAs (TS_MAX_QUEUE): keeping those up");
        true
    }
}
