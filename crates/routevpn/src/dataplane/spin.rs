//! When a worker polls instead of sleeping (`dataplane_busy_poll`).
//!
//! A sleeping worker pays a wake-up (tens of microseconds, more when the core is busy)
//! for the next packet. For request/response traffic (ping, a database query) that is
//! most of the tunnel's latency; under bulk traffic wake-ups are frequent anyway, and a
//! spin there only takes CPU time from the applications on the same cores.

use std::time::{Duration, Instant};

/// A worker that slept at least this long saw sparse traffic: the packet that woke it
/// is likely a request, with the reply a round trip away.
pub const SPARSE_SLEEP: Duration = Duration::from_millis(1);
/// [`BusyPoll::Replies`] by default: about two round trips through a routevpn pair on
/// one host, so the reply of a ping usually finds the worker awake.
pub const DEFAULT_REPLY_WAIT: Duration = Duration::from_micros(200);
/// A wait that saw no reply halves the next one; below this it is skipped (one-way
/// traffic, such as a sparse UDP stream, then costs no spinning)...
const MIN_REPLY_WAIT: Duration = Duration::from_micros(20);
/// ...except on every this many quiet wake-ups, which wait in full again, so a flow that
/// turns into request/response is noticed.
const FULL_WAIT_EVERY: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusyPoll {
    /// Sleep as soon as nothing is ready.
    Off,
    /// After every poll that brought packets, poll this much longer (each packet
    /// extends it): the lowest latency, at CPU cost under load.
    Always(Duration),
    /// After a packet that woke the worker from a sleep of [`SPARSE_SLEEP`] or more,
    /// poll up to this long for the next one, and sleep again once it came. Bulk
    /// traffic never sleeps that long, so it never spins; a wait that saw nothing
    /// halves the next one, so one-way sparse traffic soon stops spinning.
    Replies(Duration),
}

impl Default for BusyPoll {
    fn default() -> Self {
        BusyPoll::Replies(DEFAULT_REPLY_WAIT)
    }
}

/// One worker's spin state.
#[derive(Debug)]
pub(crate) struct Spin {
    mode: BusyPoll,
    until: Option<Instant>,
    /// [`BusyPoll::Replies`]: the next wait, and the one in progress.
    window: Duration,
    waiting: Option<Duration>,
    quiet_wakes: u32,
}

impl Spin {
    pub(crate) fn new(mode: BusyPoll) -> Spin {
        let window = match mode {
            BusyPoll::Replies(d) => d,
            _ => Duration::ZERO,
        };
        Spin {
            mode,
            until: None,
            window,
            waiting: None,
            quiet_wakes: 0,
        }
    }

    /// Poll without sleeping now.
    pub(crate) fn spinning(&mut self, now: Instant) -> bool {
        if self.until.is_some_and(|t| now < t) {
            return true;
        }
        if let Some(w) = self.waiting.take() {
            // The wait ran out without a packet.
            self.window = w / 2;
        }
        self.until = None;
        false
    }

    /// After one poll at `now`: `slept` is how long it blocked (None: it did not block),
    /// `got` whether packets became ready.
    pub(crate) fn after_poll(&mut self, now: Instant, slept: Option<Duration>, got: bool) {
        if !got {
            return;
        }
        match self.mode {
            BusyPoll::Off => {}
            BusyPoll::Always(d) => self.until = Some(now + d),
            BusyPoll::Replies(d) => match slept {
                Some(s) if s >= SPARSE_SLEEP => {
                    self.quiet_wakes = self.quiet_wakes.wrapping_add(1);
                    let w = if self.quiet_wakes.is_multiple_of(FULL_WAIT_EVERY) {
                        d
                    } else {
                        self.window
                    };
                    if w >= MIN_REPLY_WAIT {
                        self.until = Some(now + w);
                        self.waiting = Some(w);
                    }
                }
                // The reply (or more traffic) came while waiting: done, and the next
                // wait is a full one.
                None if self.until.is_some_and(|t| now < t) => {
                    self.until = None;
                    self.waiting = None;
                    self.window = d;
                }
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: fn(u64) -> Duration = Duration::from_micros;

    #[test]
    fn replies_spins_after_a_quiet_spell_until_the_next_packet() {
        let t0 = Instant::now();
        let mut s = Spin::new(BusyPoll::Replies(US(200)));
        // A request after 10 ms of sleep.
        s.after_poll(t0, Some(Duration::from_millis(10)), true);
        assert!(s.spinning(t0 + US(100)));
        // Nothing yet...
        s.after_poll(t0 + US(50), None, false);
        assert!(s.spinning(t0 + US(60)));
        // ...the reply: sleep again.
        s.after_poll(t0 + US(120), None, true);
        assert!(!s.spinning(t0 + US(121)));
    }

    #[test]
    fn replies_gives_up_after_its_window() {
        let t0 = Instant::now();
        let mut s = Spin::new(BusyPoll::Replies(US(200)));
        s.after_poll(t0, Some(Duration::from_millis(5)), true);
        assert!(!s.spinning(t0 + US(200)));
    }

    #[test]
    fn one_way_sparse_traffic_soon_stops_spinning_and_retries_now_and_then() {
        let t0 = Instant::now();
        let mut s = Spin::new(BusyPoll::Replies(US(200)));
        // One packet every 2 ms, never answered: count the µs spent waiting.
        let mut spun = Duration::ZERO;
        for i in 0..160u64 {
            let t = t0 + Duration::from_millis(2 * i);
            assert!(!s.spinning(t));
            s.after_poll(t, Some(Duration::from_millis(2)), true);
            let mut u = t;
            while s.spinning(u) {
                u += US(1);
            }
            spun += u - t;
        }
        // Halving: 200 + 100 + 50 + 25 µs, then nothing except a full 200 µs on every
        // 16th wake-up (and its halvings after it).
        assert!(spun < Duration::from_millis(8), "{spun:?}");
        assert!(spun >= Duration::from_millis(2), "{spun:?}");
    }

    #[test]
    fn a_caught_reply_restores_the_full_wait() {
        let t0 = Instant::now();
        let mut s = Spin::new(BusyPoll::Replies(US(200)));
        s.after_poll(t0, Some(Duration::from_millis(5)), true);
        assert!(!s.spinning(t0 + US(200)));
        // Halved to 100 µs...
        let t1 = t0 + Duration::from_millis(5);
        s.after_poll(t1, Some(Duration::from_millis(5)), true);
        assert!(s.spinning(t1 + US(99)) && !s.spinning(t1 + US(100)));
        // ...and a reply within the next (50 µs) wait brings back 200 µs.
        let t2 = t1 + Duration::from_millis(5);
        s.after_poll(t2, Some(Duration::from_millis(5)), true);
        s.after_poll(t2 + US(30), None, true);
        let t3 = t2 + Duration::from_millis(5);
        s.after_poll(t3, Some(Duration::from_millis(5)), true);
        assert!(s.spinning(t3 + US(199)));
    }

    #[test]
    fn replies_never_spins_under_dense_traffic() {
        let t0 = Instant::now();
        let mut s = Spin::new(BusyPoll::Replies(US(200)));
        // Woken every 100 µs, or not sleeping at all: never a quiet spell.
        for i in 0..100 {
            s.after_poll(t0 + US(i * 100), Some(US(90)), true);
            s.after_poll(t0 + US(i * 100 + 50), None, true);
            assert!(!s.spinning(t0 + US(i * 100 + 51)));
        }
    }

    #[test]
    fn always_extends_with_every_packet_and_off_never_spins() {
        let t0 = Instant::now();
        let mut a = Spin::new(BusyPoll::Always(US(200)));
        let mut o = Spin::new(BusyPoll::Off);
        for i in 0..10 {
            a.after_poll(t0 + US(i * 100), None, true);
            o.after_poll(t0 + US(i * 100), Some(Duration::from_secs(1)), true);
        }
        assert!(a.spinning(t0 + US(1099)));
        assert!(!a.spinning(t0 + US(1100)));
        assert!(!o.spinning(t0));
    }
}
