//! The session's plumbing: lending one IKE SA to an exchange handler, and the
//! bookkeeping after every change (CHILD SA ownership, requests moving to a rekeyed SA's
//! successor, INITIAL_CONTACT, duplicate IKE SAs, re-initiation).

use super::child::Child;
use super::ike_sa::{Ctx, IkeSa, IkeState, Queued};
use super::{CloseReason, Event, Lifecycle, Session};
use crate::limits;
use std::time::Instant;

impl Session {
    /// Index of the newest established IKE SA.
    pub(super) fn current(&self) -> Option<usize> {
        self.sas
            .iter()
            .rposition(|s| matches!(s.state, IkeState::Established(_)))
    }

    pub(super) fn enqueue(&mut self, now: Instant, q: Queued) -> bool {
        let Some(idx) = self.current() else {
            return false;
        };
        self.with_sa(idx, now, |sa, ctx, now| {
            if !sa.queued.contains(&q) {
                sa.queued.push_back(q);
            }
            sa.pump(ctx, now);
        });
        true
    }

    pub(super) fn random_spi(&mut self) -> u64 {
        loop {
            let mut b = [0u8; 8];
            self.rng.fill(&mut b);
            let spi = u64::from_be_bytes(b);
            if spi != 0 && !self.sas.iter().any(|s| s.spi_i == spi || s.spi_r == spi) {
                return spi;
            }
        }
    }

    pub(super) fn with_sa<R>(
        &mut self,
        idx: usize,
        now: Instant,
        f: impl FnOnce(&mut IkeSa, &mut Ctx<'_>, Instant) -> R,
    ) -> R {
        let r = self.with_sa_no_bookkeeping(idx, now, f);
        self.after_change(now);
        r
    }

    pub(super) fn with_sa_no_bookkeeping<R>(
        &mut self,
        idx: usize,
        now: Instant,
        f: impl FnOnce(&mut IkeSa, &mut Ctx<'_>, Instant) -> R,
    ) -> R {
        let mut new_sas = Vec::new();
        let r = {
            let Session {
                cfg,
                sas,
                children,
                out,
                events,
                rng,
                last_error,
                refusals,
                unix_time,
                peer_cert,
                refill,
                ..
            } = self;
            let mut ctx = Ctx {
                cfg,
                rng: rng.as_mut(),
                out,
                events,
                children,
                last_error,
                new_sas: &mut new_sas,
                initial_contact: false,
                now,
                refusals,
                unix_time: *unix_time,
                peer_cert,
                refill,
            };
            let r = f(&mut sas[idx], &mut ctx, now);
            if ctx.initial_contact {
                // §2.4: the peer lost all state; its SAs that were up before this
                // exchange are stale. (A grace period tells these apart from an SA the
                // peer set up at the same moment as this one.)
                for (i, sa) in sas.iter_mut().enumerate() {
                    let old = matches!(&sa.state, IkeState::Established(e)
                        if e.established_at + limits::INITIAL_CONTACT_GRACE <= now);
                    if i != idx && old {
                        tracing::info!(tunnel = %cfg.name, spi_i = format_args!("{:016x}", sa.spi_i),
                            "peer restarted (INITIAL_CONTACT): dropping its old IKE SA");
                        events.push_back(Event::IkeClosed {
                            spi_i: sa.spi_i,
                            spi_r: sa.spi_r,
                            reason: CloseReason::PeerRestarted,
                        });
                        sa.pending = None;
                        sa.state = IkeState::Dead { until: now };
                    }
                }
            }
            r
        };
        self.sas.extend(new_sas);
        r
    }

    /// Bookkeeping after any handler ran: drop children when no IKE SA is left,
    /// schedule re-initiation.
    pub(super) fn after_change(&mut self, now: Instant) {
        // Requests queued on a rekeyed-away IKE SA move to its successor (§2.18).
        for i in 0..self.sas.len() {
            if matches!(self.sas[i].state, IkeState::Established(_))
                || self.sas[i].queued.is_empty()
            {
                continue;
            }
            let Some(succ) = self.sas[i].successor else {
                continue;
            };
            let moved: Vec<Queued> = self.sas[i]
                .queued
                .drain(..)
                .filter(|q| !matches!(q, Queued::RekeyIke | Queued::Liveness))
                .collect();
            if let Some(j) = self.sas.iter().position(|s| s.spi_i == succ) {
                self.sas[j].queued.extend(moved);
                self.with_sa_no_bookkeeping(j, now, |sa, ctx, now| sa.pump(ctx, now));
            }
        }
        self.arm_rekeys(now);
        self.delete_redundant(now);
        let any_live = self.sas.iter().any(|s| {
            matches!(
                s.state,
                IkeState::Established(_) | IkeState::AuthSent { .. } | IkeState::InitSent { .. }
            )
        });
        let any_established = self
            .sas
            .iter()
            .any(|s| matches!(s.state, IkeState::Established(_)));
        // CHILD SAs die with the IKE SA that owns them (§1.4.1).
        let owned = |c: &Child| {
            self.sas.iter().any(|s| {
                s.spi_i == c.owner
                    && matches!(
                        s.state,
                        IkeState::Established(_) | IkeState::Deleting { .. }
                    )
            })
        };
        let (keep, gone): (Vec<Child>, Vec<Child>) = std::mem::take(&mut self.children)
            .into_iter()
            .partition(|c| owned(c));
        self.children = keep;
        for c in gone {
            self.events.push_back(Event::ChildDeleted {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            });
        }
        if any_established {
            self.reinit_delay = limits::REINITIATE_DELAY;
            self.lifecycle = match self.lifecycle {
                Lifecycle::Closing { .. } => Lifecycle::Closing { restart: false },
                _ => Lifecycle::Active,
            };
            self.resolve_duplicates(now);
        }
        let wanted = match self.lifecycle {
            Lifecycle::Active => self.cfg.initiate,
            Lifecycle::Restarting => true,
            Lifecycle::Cleared | Lifecycle::Closing { .. } => false,
        } && matches!(self.remote, super::PeerAddr::At(_));
        if wanted && !any_live && self.initiate_at.is_none() {
            self.initiate_at = Some(now + self.reinit_delay);
            self.reinit_delay = (self.reinit_delay * 2).min(limits::REINITIATE_MAX);
        }
    }

    pub(super) fn drop_all_children(&mut self) {
        for c in self.children.drain(..) {
            self.events.push_back(Event::ChildDeleted {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            });
        }
    }

    /// An IKE SA gave up on an unresponsive peer: `dpd_action` decides whether we
    /// bring the tunnel back.
    pub(super) fn peer_found_dead(&mut self) {
        self.lifecycle = match self.lifecycle {
            Lifecycle::Closing { restart } => Lifecycle::Closing {
                restart: restart || self.cfg.dpd_restart,
            },
            _ if self.cfg.dpd_restart => Lifecycle::Restarting,
            _ => Lifecycle::Cleared,
        };
    }
}
