//! Start-up initiation in waves: a daemon starting many `start = true` tunnels has at
//! most [`WINDOW`] of its IKE SAs being set up at once, and starts the next tunnel as
//! each comes up. A peer daemon refuses half-open IKE SAs beyond its own limit (RFC 7296
//! §2.6; 256 over all tunnels in ours) and what it drops waits for our 1 s, 2 s, 4 s ...
//! retransmissions: 1,000 tunnels all at once come up slower than in waves.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Initiations in flight at once: well under a peer's half-open limit.
pub(super) const WINDOW: usize = 64;

/// A slot whose IKE SA is neither up nor gone is freed after this, so unreachable peers
/// do not hold up the others (about the first retransmission).
pub(super) const SLOT_TIMEOUT: Duration = Duration::from_secs(1);

/// The tunnels (by index) still waiting for their first initiation and those in flight.
#[derive(Debug, Default)]
pub(super) struct Pacer {
    waiting: VecDeque<usize>,
    /// `waiting` as a set, for [`Pacer::holds`] on every tunnel of every loop turn.
    held: HashSet<usize>,
    /// Released and not yet up: since when.
    in_flight: Vec<(usize, Instant)>,
}

impl Pacer {
    /// Holds these tunnels (in this order) until [`Pacer::refill`] releases them.
    pub(super) fn new(waiting: impl IntoIterator<Item = usize>) -> Pacer {
        let waiting: VecDeque<usize> = waiting.into_iter().collect();
        Pacer {
            held: waiting.iter().copied().collect(),
            waiting,
            in_flight: Vec::new(),
        }
    }

    /// True while tunnel `i` waits: its initiation timer must not fire yet.
    pub(super) fn holds(&self, i: usize) -> bool {
        !self.held.is_empty() && self.held.contains(&i)
    }

    /// Nothing waits any more.
    pub(super) fn is_idle(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Tunnel `i` started anyway (the peer initiated, or `routevpn up`): it takes a slot.
    pub(super) fn release_now(&mut self, i: usize, now: Instant) {
        if self.held.remove(&i) {
            self.waiting.retain(|&w| w != i);
            self.in_flight.push((i, now));
        }
    }

    /// Frees the slots of tunnels that are `up` (or timed out), then releases waiting
    /// tunnels into the free slots; returns them, to be initiated now.
    pub(super) fn refill(&mut self, now: Instant, up: impl Fn(usize) -> bool) -> Vec<usize> {
        if self.waiting.is_empty() {
            self.in_flight.clear();
            return Vec::new();
        }
        self.in_flight
            .retain(|&(i, since)| now < since + SLOT_TIMEOUT && !up(i));
        let mut out = Vec::new();
        while self.in_flight.len() < WINDOW {
            let Some(i) = self.waiting.pop_front() else {
                break;
            };
            self.held.remove(&i);
            self.in_flight.push((i, now));
            out.push(i);
        }
        out
    }

    /// When a slot times out, while tunnels wait.
    pub(super) fn deadline(&self) -> Option<Instant> {
        if self.waiting.is_empty() {
            return None;
        }
        self.in_flight
            .iter()
            .map(|&(_, since)| since + SLOT_TIMEOUT)
            .min()
    }

    /// Releases everything (tunnel indexes are about to change, or we are stopping).
    pub(super) fn clear(&mut self) {
        *self = Pacer::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_a_window_then_one_per_tunnel_up() {
        let t0 = Instant::now();
        let n = WINDOW + 10;
        let mut p = Pacer::new(0..n);
        assert!(p.holds(0) && p.holds(n - 1));
        let first = p.refill(t0, |_| false);
        assert_eq!(first, (0..WINDOW).collect::<Vec<_>>());
        assert!(!p.holds(0) && p.holds(WINDOW));
        // Nobody up yet: nothing more.
        assert!(p.refill(t0, |_| false).is_empty());
        // Two up: two more, in order.
        let next = p.refill(t0, |i| i == 3 || i == 7);
        assert_eq!(next, vec![WINDOW, WINDOW + 1]);
        assert_eq!(p.deadline(), Some(t0 + SLOT_TIMEOUT));
    }

    #[test]
    fn a_slot_frees_after_its_timeout_and_early_starters_take_slots() {
        let t0 = Instant::now();
        let mut p = Pacer::new(0..WINDOW + 3);
        p.refill(t0, |_| false);
        // A held tunnel the peer initiated takes a slot and is held no more.
        p.release_now(WINDOW + 2, t0);
        assert!(!p.holds(WINDOW + 2));
        assert!(p.refill(t0, |_| false).is_empty());
        // Just before the timeout nothing frees; at it, every slot does.
        assert!(p
            .refill(t0 + SLOT_TIMEOUT - Duration::from_millis(1), |_| false)
            .is_empty());
        let later = p.refill(t0 + SLOT_TIMEOUT, |_| false);
        assert_eq!(later, vec![WINDOW, WINDOW + 1]);
        assert!(p.is_idle());
        assert_eq!(p.deadline(), None);
    }

    #[test]
    fn clear_releases_everything() {
        let mut p = Pacer::new([5, 6]);
        p.clear();
        assert!(!p.holds(5) && p.is_idle());
        assert!(p.refill(Instant::now(), |_| false).is_empty());
    }
}
