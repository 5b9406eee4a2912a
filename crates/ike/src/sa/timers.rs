//! Every timer of a session in one table (as WireGuard names its timers: after the event
//! that fires them). [`Session::deadline`] is the only place a deadline is computed;
//! `poll_timeout` and `handle_timeout` both read it, so they cannot disagree.

use super::ike_sa::{IkeSa, IkeState, Queued};
use super::{Datagram, Session};
use crate::limits;
use crate::Rng;
use std::time::{Duration, Instant};

/// One armed timer; the index names the IKE SA (or, for `ChildRekey`, the CHILD SA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// (Re-)initiate the tunnel: at start, or after a failure with back-off.
    Reinitiate,
    /// Our request is unanswered: resend it with back-off, or give up (§2.1, §2.4).
    Retransmit(usize),
    /// A responder's IKE SA never saw IKE_AUTH (§2.1, §2.9).
    HalfOpen(usize),
    /// A dead IKE SA stops answering retransmissions and is forgotten.
    Expire(usize),
    /// The IKE SA's lifetime is up: rekey it (§2.8).
    Rekey(usize),
    /// A CHILD SA's lifetime is up: rekey it, or delete it once replaced (§2.8).
    ChildRekey(usize),
    /// Nothing heard from the peer for `dpd`: send a liveness check (§1.4).
    Dpd(usize),
    /// Hold the mapping of the NAT in front of us open (RFC 3948 §4).
    NatKeepalive(usize),
    /// A superseded IKE SA the peer never deleted: delete it ourselves (§2.8.2).
    Redundant(usize),
    /// CHILD SAs are missing: the peer deleted one outside a rekey (§1.4.1), or, as IKE
    /// responder with more resources, the peer stopped creating them (RFC 9611 §3).
    /// Created on the current IKE SA.
    Refill,
}

/// `d` less a random margin of up to 10 % (§2.8: randomized rekey times make
/// simultaneous rekeys unlikely).
fn jittered(rng: &mut dyn Rng, d: Duration) -> Duration {
    let mut b = [0u8; 2];
    rng.fill(&mut b);
    let frac = u16::from_be_bytes(b) as u32;
    d - (d / 10) * frac / u16::MAX as u32
}

impl Session {
    /// When `timer` fires, or None while it is not armed.
    pub(super) fn deadline(&self, timer: Timer) -> Option<Instant> {
        let established = |i: usize| match &self.sas.get(i)?.state {
            IkeState::Established(e) => Some((&self.sas[i], e)),
            _ => None,
        };
        match timer {
            Timer::Reinitiate => self.initiate_at,
            Timer::Retransmit(i) => {
                let sa = self.sas.get(i)?;
                if sa.state.is_half_open() {
                    return None;
                }
                sa.pending.as_ref().map(|p| p.deadline)
            }
            Timer::HalfOpen(i) => self
                .sas
                .get(i)
                .filter(|s| s.state.is_half_open())
                .map(|s| s.created + limits::HALF_OPEN_TIMEOUT),
            Timer::Expire(i) => match self.sas.get(i)?.state {
                IkeState::Dead { until } => Some(until),
                _ => None,
            },
            // Only the current IKE SA rekeys (an older one waits for the peer's Delete),
            // and CHILD SAs rekey through it: an unarmed timer is never reported.
            Timer::Rekey(i) if self.current() == Some(i) => established(i)?.1.rekey_at,
            Timer::Rekey(_) => None,
            Timer::ChildRekey(i) => {
                self.current()?;
                self.children.get(i)?.rekey_at
            }
            Timer::Dpd(i) => {
                let (_, e) = established(i).filter(|(s, _)| s.pending.is_none())?;
                self.cfg.dpd.map(|d| e.last_rx + d)
            }
            Timer::NatKeepalive(i) => established(i)
                .filter(|(_, e)| e.behind_nat)
                .map(|(s, _)| s.last_tx + limits::NATT_KEEPALIVE),
            Timer::Redundant(i) if self.current() != Some(i) => established(i)?
                .1
                .superseded_at
                .map(|t| t + limits::REDUNDANT_IKE_SA_GRACE),
            Timer::Redundant(_) => None,
            Timer::Refill => established(self.current()?).and(self.refill.at),
        }
    }

    /// Every timer that may be armed.
    fn timers(&self) -> impl Iterator<Item = Timer> + '_ {
        let per_sa = (0..self.sas.len()).flat_map(|i| {
            [
                Timer::Retransmit(i),
                Timer::HalfOpen(i),
                Timer::Expire(i),
                Timer::Rekey(i),
                Timer::Dpd(i),
                Timer::NatKeepalive(i),
                Timer::Redundant(i),
            ]
        });
        [Timer::Reinitiate, Timer::Refill]
            .into_iter()
            .chain(per_sa)
            .chain((0..self.children.len()).map(Timer::ChildRekey))
    }

    fn due(&self, timer: Timer, now: Instant) -> bool {
        self.deadline(timer).is_some_and(|t| t <= now)
    }

    /// The earliest armed deadline.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.timers().filter_map(|t| self.deadline(t)).min()
    }

    /// Fires every timer that is due.
    pub(super) fn fire_timers(&mut self, now: Instant) {
        if self.due(Timer::Reinitiate, now) {
            self.initiate_at = None;
            self.initiate(now);
        }
        for idx in 0..self.sas.len() {
            if self.due(Timer::HalfOpen(idx), now) {
                self.with_sa_no_bookkeeping(idx, now, IkeSa::half_open_expired);
            } else if self.due(Timer::Retransmit(idx), now) {
                let timed_out =
                    self.with_sa_no_bookkeeping(idx, now, |sa, ctx, now| sa.retransmit(ctx, now));
                if timed_out && matches!(self.sas[idx].state, IkeState::Dead { .. }) {
                    self.peer_found_dead();
                }
            }
        }
        self.delete_redundant(now);
        let expired: Vec<bool> = (0..self.sas.len())
            .map(|i| self.due(Timer::Expire(i), now))
            .collect();
        let mut expired = expired.into_iter();
        self.sas.retain(|_| !expired.next().unwrap_or(false));
        self.run_lifetimes(now);
        self.after_change(now);
    }

    /// Scheduled rekeys (§2.8), NAT keepalives (RFC 3948) and liveness checks (§1.4).
    fn run_lifetimes(&mut self, now: Instant) {
        let Some(cur) = self.current() else {
            return;
        };
        let retry = limits::REKEY_RETRY;
        let mut queue = Vec::new();
        for i in 0..self.children.len() {
            if self.due(Timer::ChildRekey(i), now) {
                let c = &mut self.children[i];
                c.rekey_at = Some(now + retry);
                // A replaced SA whose DELETE never came is deleted by us instead.
                queue.push(if c.superseded {
                    Queued::DeleteChild(c.spi_in)
                } else {
                    Queued::RekeyChild(c.spi_in)
                });
            }
        }
        for i in 0..self.sas.len() {
            if i == cur && self.due(Timer::Rekey(i), now) {
                let sa = &mut self.sas[i];
                if let Some(e) = sa.state.established_mut() {
                    e.rekey_at = Some(now + retry);
                }
                if !sa.queued.contains(&Queued::RekeyIke) {
                    sa.queued.push_back(Queued::RekeyIke);
                }
            }
            if self.due(Timer::NatKeepalive(i), now) {
                // RFC 3948 §2.3: a single 0xFF octet on port 4500 (sent without marker).
                let sa = &mut self.sas[i];
                sa.last_tx = now;
                self.out.push_back(Datagram {
                    local: sa.local,
                    remote: sa.remote,
                    data: vec![limits::NATT_KEEPALIVE_BYTE],
                });
            }
            if self.due(Timer::Dpd(i), now) {
                let sa = &mut self.sas[i];
                sa.note_peer_alive(now);
                sa.queued.push_back(Queued::Liveness);
            }
        }
        if self.due(Timer::Refill, now) {
            self.with_sa_no_bookkeeping(cur, now, |sa, ctx, _| sa.refill_children(ctx));
        }
        if let Some(sa) = self.sas.get_mut(cur) {
            for q in queue {
                if !sa.queued.contains(&q) {
                    sa.queued.push_back(q);
                }
            }
        }
        for idx in 0..self.sas.len() {
            self.with_sa_no_bookkeeping(idx, now, |sa, ctx, now| sa.pump(ctx, now));
        }
    }

    /// Notes when each older IKE SA was superseded, and deletes those the peer left
    /// in place past the grace period; their CHILD SAs stay with the current one.
    pub(super) fn delete_redundant(&mut self, now: Instant) {
        let Some(cur) = self.current() else {
            return;
        };
        for (i, sa) in self.sas.iter_mut().enumerate() {
            if let (true, Some(e)) = (i != cur, sa.state.established_mut()) {
                e.superseded_at.get_or_insert(now);
            }
        }
        let cur_spi = self.sas[cur].spi_i;
        for idx in 0..self.sas.len() {
            if !self.due(Timer::Redundant(idx), now) {
                continue;
            }
            let spi = self.sas[idx].spi_i;
            for c in self.children.iter_mut().filter(|c| c.owner == spi) {
                c.owner = cur_spi;
            }
            tracing::info!(tunnel = %self.cfg.name, spi_i = format_args!("{spi:016x}"),
                "the peer never deleted this superseded IKE SA: deleting it");
            self.with_sa_no_bookkeeping(idx, now, |sa, ctx, now| sa.close_redundant(ctx, now));
        }
    }

    /// Arms the rekey timers of newly established IKE SAs and new CHILD SAs.
    pub(super) fn arm_rekeys(&mut self, now: Instant) {
        for sa in &mut self.sas {
            if let Some(e) = sa.state.established_mut() {
                if e.rekey_at.is_none() {
                    e.rekey_at = Some(now + jittered(self.rng.as_mut(), self.cfg.ike_lifetime));
                }
            }
        }
        for c in &mut self.children {
            if c.rekey_at.is_none() {
                c.rekey_at = Some(now + jittered(self.rng.as_mut(), self.cfg.child_lifetime));
            }
        }
    }
}
