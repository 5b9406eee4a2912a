//! The ESP-silence hint: a faster, confirmed detection for a BFD session that runs
//! inside a busy tunnel. Not part of RFC 5880; the session's own Detection Time
//! (§6.8.4) still applies as well.
//!
//! The caller samples a counter of the packets its tunnel authenticated on the way in
//! (data and this session's own Control packets alike) at [`SilenceWatch::poll_timeout`]
//! and acts on what [`SilenceWatch::sample`] says:
//! - the tunnel was busy and then nothing at all arrived for one of the peer's
//!   transmit intervals: [`Hint::Probe`], start a Poll Sequence, which the peer answers
//!   with a Final at once (§6.5, §6.8.7);
//! - still nothing one more interval later, neither the Final nor a periodic packet:
//!   [`Hint::Lost`], declare the session down ([`crate::Session::path_lost`]).
//!
//! So on a busy tunnel a cut is detected after about two intervals instead of Detect
//! Mult intervals (no sooner than BFD with Detect Mult 2 or less), and a false alarm
//! needs the silence of the data *and* the loss of two consecutive Control packets plus
//! the Poll or its Final. An idle tunnel (only BFD) is never busy: there the hint stays
//! quiet and BFD alone decides.
//!
//! Two deliberate departures from RFC 5880, both only with the hint (opt-in): the
//! session goes down before its Detection Time, and the Poll goes out at once rather
//! than on the next periodic packet (§6.5). Waiting for that packet, up to one more
//! interval, would take most of the gain; it is one extra packet per silence.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::limits;

/// What the caller does after a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    Nothing,
    /// Busy, then silent for one interval: start a Poll Sequence now.
    Probe,
    /// Still silent one interval after the Poll: the path is down.
    Lost {
        /// How long nothing has arrived (as sampled).
        silent: Duration,
        /// Packets delivered in the window (about an interval) before the silence.
        busy_packets: u64,
    },
}

/// Follows one tunnel's inbound counter; see the module comment.
#[derive(Debug, Default)]
pub struct SilenceWatch {
    /// The counter at the last sample.
    count: Option<u64>,
    /// The interval of the last sample: when the peer's changes (the slow 1 s of §6.8.3
    /// becoming the configured one), the history no longer says anything.
    interval: Option<Duration>,
    /// Samples at which the counter had risen, oldest first: the front is the newest
    /// one at least an interval older than the back (the base of the busy window).
    heard: VecDeque<(Instant, u64)>,
    /// When the Poll went out, while we wait for anything at all.
    probed: Option<Instant>,
    next: Option<Instant>,
}

impl SilenceWatch {
    pub fn new() -> SilenceWatch {
        SilenceWatch::default()
    }

    /// Forget everything (the session left Up, or the counter is another tunnel's).
    pub fn reset(&mut self) {
        *self = SilenceWatch::default();
    }

    /// When the next sample is due; `None` before the first one (sample at once).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next
    }

    /// Takes one sample of the counter; `interval` is the peer's transmit interval
    /// ([`crate::Session::remote_tx_interval`]).
    pub fn sample(&mut self, now: Instant, count: u64, interval: Duration) -> Hint {
        let rose = self.count.is_some_and(|c| count != c);
        if self.count.is_some_and(|c| count < c) || self.interval != Some(interval) {
            // Not the same counter, or not the same peer interval, any more.
            self.heard.clear();
            self.probed = None;
        }
        self.interval = Some(interval);
        self.count = Some(count);
        if rose || self.heard.is_empty() {
            self.heard.push_back((now, count));
            while self.heard.get(1).is_some_and(|&(t, _)| t + interval <= now) {
                self.heard.pop_front();
            }
            self.probed = None;
        }
        let busy = self.busy_packets(interval);
        let per_interval = if busy.is_some() || self.probed.is_some() {
            limits::HINT_SAMPLES_BUSY
        } else {
            limits::HINT_SAMPLES_IDLE
        };
        self.next = Some(now + (interval / per_interval).max(Duration::from_micros(100)));
        let (Some(busy_packets), Some(&(last, _))) = (busy, self.heard.back()) else {
            return Hint::Nothing;
        };
        let silent = now.saturating_duration_since(last);
        match self.probed {
            None if silent >= interval => {
                self.probed = Some(now);
                Hint::Probe
            }
            Some(p) if now.saturating_duration_since(p) >= interval => {
                self.heard.clear();
                self.probed = None;
                Hint::Lost {
                    silent,
                    busy_packets,
                }
            }
            _ => Hint::Nothing,
        }
    }

    /// Packets delivered in the window up to the last rise, if that is a busy rate;
    /// `None` with less than an interval of history. The window is at least an
    /// interval, and longer after a gap between samples (the rises in the gap all show
    /// at its end), so it is the rate that must reach [`limits::HINT_BUSY_PACKETS`] per
    /// interval, not the count.
    fn busy_packets(&self, interval: Duration) -> Option<u64> {
        let (&(t0, c0), &(t1, c1)) = (self.heard.front()?, self.heard.back()?);
        let n = c1.wrapping_sub(c0);
        let window = t1.saturating_duration_since(t0);
        let busy = window >= interval
            && u128::from(n) * interval.as_nanos()
                >= u128::from(limits::HINT_BUSY_PACKETS) * window.as_nanos();
        busy.then_some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IV: Duration = Duration::from_millis(50);

    /// Samples every `step` from `from` to `to`, the counter rising by `per_step`.
    fn run(
        w: &mut SilenceWatch,
        t0: Instant,
        count: &mut u64,
        from_ms: u64,
        to_ms: u64,
        per_step: u64,
    ) -> Vec<(u64, Hint)> {
        let mut out = Vec::new();
        for ms in (from_ms..to_ms).step_by(5) {
            *count += per_step;
            let h = w.sample(t0 + Duration::from_millis(ms), *count, IV);
            if h != Hint::Nothing {
                out.push((ms, h));
            }
        }
        out
    }

    #[test]
    fn a_busy_tunnel_that_falls_silent_is_probed_after_one_interval_then_lost() {
        let (t0, mut c) = (Instant::now(), 0);
        let mut w = SilenceWatch::new();
        // One packet per 5 ms: 10 per interval.
        assert!(run(&mut w, t0, &mut c, 0, 500, 1).is_empty());
        assert_eq!(w.poll_timeout(), Some(t0 + Duration::from_millis(500)));
        let hints = run(&mut w, t0, &mut c, 500, 700, 0);
        // Last rise at 495 ms: Probe at 545, Lost at 595.
        assert_eq!(
            hints,
            vec![
                (545, Hint::Probe),
                (
                    595,
                    Hint::Lost {
                        silent: Duration::from_millis(100),
                        busy_packets: 10
                    }
                )
            ]
        );
    }

    #[test]
    fn anything_heard_after_the_probe_cancels_it() {
        let (t0, mut c) = (Instant::now(), 0);
        let mut w = SilenceWatch::new();
        run(&mut w, t0, &mut c, 0, 500, 1);
        assert_eq!(
            run(&mut w, t0, &mut c, 500, 550, 0),
            vec![(545, Hint::Probe)]
        );
        // The Final arrives.
        assert_eq!(
            w.sample(t0 + Duration::from_millis(550), c + 1, IV),
            Hint::Nothing
        );
        c += 1;
        // Silent again: the window before the silence now holds one packet, not busy.
        assert!(run(&mut w, t0, &mut c, 555, 1000, 0).is_empty());
    }

    #[test]
    fn an_idle_tunnel_is_never_hinted() {
        let (t0, mut c) = (Instant::now(), 0);
        let mut w = SilenceWatch::new();
        // BFD alone: one packet per 40 ms, then silence for a second.
        for ms in (0u64..2000).step_by(5) {
            if ms.is_multiple_of(40) && ms < 1000 {
                c += 1;
            }
            assert_eq!(
                w.sample(t0 + Duration::from_millis(ms), c, IV),
                Hint::Nothing
            );
        }
        // And the idle tunnel is sampled twice per interval, not ten times.
        assert_eq!(
            w.poll_timeout(),
            Some(t0 + Duration::from_millis(1995) + IV / 2)
        );
    }

    #[test]
    fn less_than_an_interval_of_history_is_not_busy() {
        let (t0, mut c) = (Instant::now(), 0);
        let mut w = SilenceWatch::new();
        // 40 ms of heavy traffic, then silence: no interval-long window yet.
        assert!(run(&mut w, t0, &mut c, 0, 40, 100).is_empty());
        assert!(run(&mut w, t0, &mut c, 40, 500, 0).is_empty());
    }

    #[test]
    fn a_counter_that_went_backwards_starts_over() {
        let (t0, mut c) = (Instant::now(), 1000);
        let mut w = SilenceWatch::new();
        run(&mut w, t0, &mut c, 0, 500, 1);
        // Another tunnel's counter (recreated): no history, so no probe.
        let mut c2 = 0;
        assert!(run(&mut w, t0, &mut c2, 500, 1000, 0).is_empty());
    }

    #[test]
    fn bfd_alone_seen_across_a_sampling_gap_is_not_busy() {
        let t0 = Instant::now();
        let mut w = SilenceWatch::new();
        let ms = |m: u64| t0 + Duration::from_millis(m);
        // Two samples 500 ms apart (the thread stalled, or idle sampling at a slow
        // interval): the 12 BFD packets in between all show at 500 ms.
        assert_eq!(w.sample(ms(0), 0, IV), Hint::Nothing);
        assert_eq!(w.sample(ms(500), 12, IV), Hint::Nothing);
        // Then one BFD packet per 40 ms, one of them lost: silence of 80 ms.
        let mut c = 12;
        for m in (505..1000u64).step_by(5) {
            if m.is_multiple_of(40) && m != 560 {
                c += 1;
            }
            assert_eq!(w.sample(ms(m), c, IV), Hint::Nothing, "at {m} ms");
        }
    }

    #[test]
    fn reset_forgets_a_busy_history() {
        let (t0, mut c) = (Instant::now(), 0);
        let mut w = SilenceWatch::new();
        run(&mut w, t0, &mut c, 0, 500, 1);
        w.reset();
        assert_eq!(w.poll_timeout(), None);
        assert!(run(&mut w, t0, &mut c, 500, 1000, 0).is_empty());
    }
}
