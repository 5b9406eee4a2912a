//! Anti-replay sliding window (RFC 4303 §3.4.3, Appendix A), as a ring of
//! 64-bit words so that advancing never shifts the bitmap (the technique of
//! RFC 6479): advancing clears only the words the window moves into.

use crate::error::EspError;
use crate::limits::MAX_REPLAY_WINDOW;

/// Why the window rejected a sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// Already received inside the window.
    Duplicate,
    /// Left of the window (or 0, which no sender ever uses, RFC 4303 §3.3.3).
    TooOld,
}

/// Sliding-window bitmap over 64-bit sequence numbers.
///
/// `check` is done before the ICV is verified and `commit` only after, so
/// forged packets can never move the window (RFC 4303 §3.4.3).
#[derive(Clone)]
pub struct ReplayWindow {
    /// Window size W in packets; 0 disables the replay check.
    size: u32,
    /// Highest sequence number committed so far; 0 before the first packet.
    top: u64,
    /// Ring of bits, bit `s % (64 * bits.len())` records packet `s`.
    /// Invariant: every bit for a number above `top` is zero.
    bits: Box<[u64]>,
}

impl core::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("size", &self.size)
            .field("top", &self.top)
            .finish_non_exhaustive()
    }
}

impl ReplayWindow {
    /// A window of `size` packets (0 = anti-replay disabled,
    /// 1..=[`MAX_REPLAY_WINDOW`] otherwise).
    pub fn new(size: u32) -> Result<Self, EspError> {
        Self::with_top(size, 0)
    }

    /// A window whose highest received number is already `top` (used when
    /// an SA's state is restored, and by tests near number-space edges).
    pub fn with_top(size: u32, top: u64) -> Result<Self, EspError> {
        if size > MAX_REPLAY_WINDOW {
            return Err(EspError::InvalidReplayWindow(size));
        }
        // The window spans at most ceil(W/64)+1 words; round up to a power
        // of two so the ring index is a mask.
        let words = if size == 0 {
            0
        } else {
            (size as usize)
                .div_ceil(64)
                .saturating_add(1)
                .next_power_of_two()
        };
        Ok(Self {
            size,
            top,
            bits: vec![0u64; words].into_boxed_slice(),
        })
    }

    /// Configured window size W.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Highest sequence number committed so far (0 if none).
    pub fn top(&self) -> u64 {
        self.top
    }

    #[inline]
    fn slot(&self, seq: u64) -> (usize, u64) {
        let mask = self.bits.len().wrapping_sub(1) as u64;
        (((seq >> 6) & mask) as usize, 1u64 << (seq & 63))
    }

    /// Would `seq` be accepted? Does not modify the window.
    #[inline]
    pub fn check(&self, seq: u64) -> Result<(), Replayed> {
        if seq == 0 {
            return Err(Replayed::TooOld);
        }
        if self.size == 0 || seq > self.top {
            return Ok(());
        }
        if self.top - seq >= u64::from(self.size) {
            return Err(Replayed::TooOld);
        }
        let (word, bit) = self.slot(seq);
        match self.bits.get(word) {
            Some(w) if w & bit != 0 => Err(Replayed::Duplicate),
            _ => Ok(()),
        }
    }

    /// Record `seq` as received (call only after its ICV verified).
    /// Numbers left of the window are ignored.
    #[inline]
    pub fn commit(&mut self, seq: u64) {
        if seq > self.top {
            if !self.bits.is_empty() {
                let old_word = self.top >> 6;
                let new_word = seq >> 6;
                let diff = new_word - old_word;
                if diff >= self.bits.len() as u64 {
                    self.bits.fill(0);
                } else {
                    let mask = self.bits.len() as u64 - 1;
                    for i in 1..=diff {
                        if let Some(w) = self.bits.get_mut(((old_word + i) & mask) as usize) {
                            *w = 0;
                        }
                    }
                }
            }
            self.top = seq;
        } else if self.size == 0 || self.top - seq >= u64::from(self.size) {
            return;
        }
        let (word, bit) = self.slot(seq);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= bit;
        }
    }

    /// Reconstruct the full 64-bit ESN from its transmitted low 32 bits,
    /// RFC 4303 Appendix A2.2. `None` means the number would lie below 0 or
    /// above 2^64-1, i.e. it cannot be valid.
    pub fn infer_esn(&self, seq_low: u32) -> Option<u64> {
        let th = (self.top >> 32) as u32;
        let tl = self.top as u32;
        // W-1, with W>=1 (ESN SAs always have a window, see SaParams).
        let w1 = self.size.max(1) - 1;
        let seq_high = if tl >= w1 {
            // Case A: window lies within one 2^32 subspace.
            if seq_low >= tl - w1 {
                Some(th)
            } else {
                th.checked_add(1)
            }
        } else if seq_low >= tl.wrapping_sub(w1) {
            // Case B: window spans two subspaces; seq_low is in the lower one.
            th.checked_sub(1)
        } else {
            Some(th)
        }?;
        Some((u64::from(seq_high) << 32) | u64::from(seq_low))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference model: a set of accepted numbers and the top.
    fn model_check(seen: &std::collections::BTreeSet<u64>, top: u64, w: u64, s: u64) -> bool {
        if s == 0 {
            return false;
        }
        if w == 0 || s > top {
            return true;
        }
        top - s < w && !seen.contains(&s)
    }

    #[test]
    fn in_order() {
        let mut rw = ReplayWindow::new(128).unwrap();
        for s in 1..10_000u64 {
            assert_eq!(rw.check(s), Ok(()));
            rw.commit(s);
            assert_eq!(rw.check(s), Err(Replayed::Duplicate));
            assert_eq!(rw.top(), s);
        }
    }

    #[test]
    fn zero_is_rejected() {
        let rw = ReplayWindow::new(64).unwrap();
        assert_eq!(rw.check(0), Err(Replayed::TooOld));
        let rw = ReplayWindow::new(0).unwrap();
        assert_eq!(rw.check(0), Err(Replayed::TooOld));
    }

    #[test]
    fn out_of_order_inside_window() {
        let mut rw = ReplayWindow::new(64).unwrap();
        rw.commit(100);
        for s in (37..100).rev() {
            assert_eq!(rw.check(s), Ok(()), "{s}");
            rw.commit(s);
            assert_eq!(rw.check(s), Err(Replayed::Duplicate));
        }
        // 100 - 36 = 64 >= W: too old.
        assert_eq!(rw.check(36), Err(Replayed::TooOld));
        assert_eq!(rw.top(), 100);
    }

    #[test]
    fn too_old_and_edges() {
        for w in [1u32, 2, 31, 32, 63, 64, 65, 127, 128, 129, 1000, 4095, 4096] {
            let mut rw = ReplayWindow::new(w).unwrap();
            let top = 10_000u64;
            rw.commit(top);
            let w64 = u64::from(w);
            // Oldest still inside: top - (W-1).
            assert_eq!(
                rw.check(top - (w64 - 1)),
                if w == 1 {
                    Err(Replayed::Duplicate)
                } else {
                    Ok(())
                },
                "w={w}"
            );
            assert_eq!(rw.check(top - w64), Err(Replayed::TooOld), "w={w}");
            assert_eq!(rw.check(top + 1), Ok(()));
        }
    }

    #[test]
    fn window_too_large() {
        assert_eq!(
            ReplayWindow::new(MAX_REPLAY_WINDOW + 1).unwrap_err(),
            EspError::InvalidReplayWindow(MAX_REPLAY_WINDOW + 1)
        );
        assert!(ReplayWindow::new(MAX_REPLAY_WINDOW).is_ok());
    }

    #[test]
    fn big_jumps_clear_stale_bits() {
        for w in [32u32, 64, 128, 1024, 4096] {
            let mut rw = ReplayWindow::new(w).unwrap();
            for s in 1..=u64::from(w) {
                rw.commit(s);
            }
            // Jump by exactly the ring size and by odd amounts: numbers that
            // alias old bits must read as unseen.
            for jump in [
                1u64,
                63,
                64,
                65,
                u64::from(w),
                u64::from(w) + 1,
                10 * u64::from(w) + 7,
                1 << 40,
            ] {
                let top = rw.top();
                let new = top + jump;
                rw.commit(new);
                assert_eq!(rw.check(new), Err(Replayed::Duplicate));
                for back in 1..u64::from(w) {
                    let s = new - back;
                    if s > top {
                        assert_eq!(
                            rw.check(s),
                            Ok(()),
                            "stale bit w={w} jump={jump} back={back}"
                        );
                    }
                }
                assert_eq!(rw.check(new - u64::from(w)), Err(Replayed::TooOld));
            }
        }
    }

    #[test]
    fn disabled_window_accepts_everything_but_zero() {
        let mut rw = ReplayWindow::new(0).unwrap();
        rw.commit(5);
        assert_eq!(rw.check(5), Ok(()));
        assert_eq!(rw.check(1), Ok(()));
        assert_eq!(rw.top(), 5);
    }

    #[test]
    fn matches_model_on_pseudorandom_sequences() {
        // Deterministic xorshift so the test is reproducible.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for w in [0u32, 1, 7, 32, 64, 100, 128, 256, 4096] {
            let mut rw = ReplayWindow::new(w).unwrap();
            let mut seen = std::collections::BTreeSet::new();
            let mut top = 0u64;
            for _ in 0..20_000 {
                let r = next();
                let s = match r % 5 {
                    0 => top + 1 + (r >> 8) % 3,
                    1 => top.saturating_sub((r >> 8) % (u64::from(w) + 3)),
                    2 => top + (r >> 8) % 300,
                    3 => top.saturating_sub((r >> 8) % 5000),
                    _ => top + (r >> 8) % (2 * u64::from(w) + 2),
                };
                let ok = model_check(&seen, top, u64::from(w), s);
                assert_eq!(rw.check(s).is_ok(), ok, "w={w} top={top} s={s}");
                if ok {
                    rw.commit(s);
                    seen.insert(s);
                    top = top.max(s);
                }
            }
        }
    }

    #[test]
    fn esn_inference_case_a_and_b() {
        // Case A: Tl >= W-1.
        let rw = ReplayWindow::with_top(64, (5u64 << 32) | 1000).unwrap();
        assert_eq!(rw.infer_esn(1000), Some((5 << 32) | 1000));
        assert_eq!(rw.infer_esn(937), Some((5 << 32) | 937)); // Tl-W+1
        assert_eq!(rw.infer_esn(936), Some((6 << 32) | 936)); // wrapped ahead
        assert_eq!(rw.infer_esn(5000), Some((5 << 32) | 5000));
        // Case B: window straddles a 2^32 boundary (Tl < W-1).
        let rw = ReplayWindow::with_top(64, (5u64 << 32) | 10).unwrap();
        assert_eq!(
            rw.infer_esn(u32::MAX),
            Some((4 << 32) | u64::from(u32::MAX))
        );
        assert_eq!(
            rw.infer_esn(u32::MAX - 52),
            Some((4 << 32) | u64::from(u32::MAX - 52))
        );
        assert_eq!(rw.infer_esn(3), Some((5 << 32) | 3));
        assert_eq!(rw.infer_esn(11), Some((5 << 32) | 11));
        // Below zero is impossible.
        let rw = ReplayWindow::with_top(64, 10).unwrap();
        assert_eq!(rw.infer_esn(u32::MAX), None);
        // Above 2^64-1 is impossible.
        let rw = ReplayWindow::with_top(64, u64::MAX - 5).unwrap();
        assert_eq!(rw.infer_esn(0), None);
    }
}
