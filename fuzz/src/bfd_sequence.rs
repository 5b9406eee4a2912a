//! Sequences of BFD Control packets and clock steps into one session (RFC 5880 §6.8),
//! optionally with Meticulous Keyed SHA1: timers, Poll/Final, state table and the
//! authentication sequence window must never panic, and the session never reports Up
//! without having heard a valid packet within its Detection Time. The ESP-silence hint
//! (`bfd::hint`) samples a counter the records advance; its Poll and its down must not
//! break that either, and after its down the session is not Up.

use std::time::{Duration, Instant};

struct StepRng(u8);
impl bfd::Rng for StepRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self.0.wrapping_mul(31).wrapping_add(7);
            *b = self.0;
        }
    }
}

pub fn bfd_sequence(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let t0 = Instant::now();
    let cfg = bfd::SessionConfig {
        local_discr: 0x1122_3344,
        desired_min_tx: Duration::from_millis(u64::from(sel & 0x0f) * 10 + 10),
        required_min_rx: Duration::from_millis(u64::from(sel >> 4) * 10 + 10),
        detect_mult: 3,
        passive: sel & 0x80 != 0,
    };
    let mut s = bfd::Session::new(cfg, t0).expect("valid config");
    let auth = sel & 0x40 != 0;
    if auth {
        let key = bfd::AuthConfig::new(bfd::Sha1Mode::Meticulous, 1, b"fuzz").expect("key");
        s = s.with_auth(key);
    }
    let mut rng = StepRng(sel);
    let mut now = t0;
    let mut last_valid: Option<Instant> = None;
    let mut out = Vec::new();
    let mut watch = bfd::SilenceWatch::new();
    let mut heard: u64 = 0;
    // Each record: one octet of clock step (ms), one of length, then that many octets.
    let mut rest = rest;
    while let Some((&[step, len], tail)) = rest.split_first_chunk::<2>() {
        now += Duration::from_millis(u64::from(step));
        s.handle_timeout(now);
        let n = usize::from(len).min(tail.len());
        let (datagram, tail) = tail.split_at(n);
        rest = tail;
        if let Ok(p) = bfd::ControlPacket::decode(datagram) {
            if s.handle_datagram(now, datagram, &p).is_ok() {
                last_valid = Some(now);
            }
        }
        while s.poll_datagram(now, &mut rng, &mut out) {
            let p = bfd::ControlPacket::decode(&out).expect("we send valid packets");
            assert_eq!(p.authenticated, auth);
            out.clear();
        }
        // The step's top two bits: packets the tunnel delivered meanwhile.
        heard += u64::from(step >> 6);
        if s.state() != bfd::State::Up {
            watch.reset();
        } else if let Some(interval) = s.remote_tx_interval() {
            match watch.sample(now, heard, interval) {
                bfd::Hint::Nothing => {}
                bfd::Hint::Probe => s.start_poll(now),
                bfd::Hint::Lost { .. } => {
                    s.path_lost(now);
                    assert_ne!(s.state(), bfd::State::Up, "Up after the hint's down");
                    last_valid = None;
                }
            }
        }
        while s.poll_event().is_some() {}
        if s.state() == bfd::State::Up {
            let det = s.detection_time().expect("Up implies the peer was heard");
            let heard = last_valid.expect("Up without a valid packet");
            assert!(
                now.duration_since(heard) <= det,
                "Up past the Detection Time"
            );
        }
    }
}
