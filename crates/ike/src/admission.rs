//! Daemon-wide admission of new IKE_SA_INIT requests (RFC 7296 §2.6): the per-peer COOKIE
//! state of each [`Session`](crate::sa::Session) cannot see a flood spread thin over many
//! tunnels, so the daemon owns one [`Admission`] for all of them and hands it to every
//! session call that can start or end a half-open IKE SA. Sans-IO: the caller passes `now`.

use std::time::{Duration, Instant};

use crate::limits;

/// Requests per one-second window, remembering the previous window so a burst at a
/// window edge still counts (a quiet second in between forgets it).
#[derive(Clone, Debug, Default)]
pub(crate) struct RateWindow {
    start: Option<Instant>,
    in_window: u32,
    last_window: u32,
}

impl RateWindow {
    /// Counts one request; returns the recent rate (the larger of this and the last window).
    pub(crate) fn note(&mut self, now: Instant) -> u32 {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Duration::from_secs(1) {
            self.last_window = if elapsed >= Duration::from_secs(2) {
                0
            } else {
                self.in_window
            };
            self.in_window = 0;
            self.start = Some(now);
        }
        self.in_window = self.in_window.saturating_add(1);
        self.in_window.max(self.last_window)
    }
}

/// The shared half-open count and new-request rate of every tunnel of one daemon.
#[derive(Clone, Debug, Default)]
pub struct Admission {
    requests: RateWindow,
    half_open: usize,
}

impl Admission {
    pub fn new() -> Admission {
        Admission::default()
    }

    /// Half-open IKE SAs (IKE_SA_INIT answered, IKE_AUTH not yet) over all sessions, as
    /// last reported by them.
    pub fn half_open(&self) -> usize {
        self.half_open
    }

    /// Counts one new IKE_SA_INIT (accepted or not); true when the daemon-wide rate or
    /// half-open count calls for COOKIEs on every tunnel (§2.6).
    pub(crate) fn note_request(&mut self, now: Instant) -> bool {
        let rate = self.requests.note(now);
        rate > limits::GLOBAL_COOKIE_RATE || self.half_open >= limits::GLOBAL_COOKIE_THRESHOLD
    }

    /// True when no further half-open IKE SA may be created anywhere (§2.6).
    pub(crate) fn full(&self) -> bool {
        self.half_open >= limits::GLOBAL_MAX_HALF_OPEN
    }

    /// A session's half-open count went from `was` to `is`.
    pub(crate) fn replace_half_open(&mut self, was: usize, is: usize) {
        self.half_open = self.half_open.saturating_sub(was).saturating_add(is);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_window_remembers_one_second_and_forgets_after_a_quiet_one() {
        let t0 = Instant::now();
        let mut w = RateWindow::default();
        for _ in 0..5 {
            w.note(t0);
        }
        assert_eq!(
            w.note(t0 + Duration::from_millis(1500)),
            5,
            "previous window"
        );
        assert_eq!(w.note(t0 + Duration::from_millis(4000)), 1, "quiet second");
    }

    #[test]
    fn half_open_accounting_never_underflows() {
        let mut a = Admission::new();
        a.replace_half_open(0, 3);
        a.replace_half_open(3, 1);
        assert_eq!(a.half_open(), 1);
        a.replace_half_open(5, 0);
        assert_eq!(a.half_open(), 0);
    }
}
