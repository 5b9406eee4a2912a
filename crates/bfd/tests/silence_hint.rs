//! The ESP-silence hint (`bfd::hint`) driving a real session against a peer, on a
//! virtual clock in 1 ms steps: A counts what B's side delivers (B's Control packets
//! and, while `data` is on, one data packet every 5 ms) and samples it as the daemon
//! does; B runs plain BFD.

use std::time::{Duration, Instant};

mod common;

use bfd::{Diag, Event, Hint, Session, SessionConfig, SilenceWatch, State};
use common::TestRng;

const MS: fn(u64) -> Duration = Duration::from_millis;
/// 50 ms × 3, as in the lab.
const INTERVAL: u64 = 50;

fn cfg(discr: u32) -> SessionConfig {
    SessionConfig {
        local_discr: discr,
        desired_min_tx: MS(INTERVAL),
        required_min_rx: MS(INTERVAL),
        detect_mult: 3,
        passive: false,
    }
}

struct Pair {
    t0: Instant,
    now: Instant,
    a: Session,
    b: Session,
    /// A's watch, or None for plain BFD on both sides.
    watch: Option<SilenceWatch>,
    /// What A's tunnel authenticated inbound.
    heard_a: u64,
    a_to_b: bool,
    b_to_a: bool,
    /// B→A data, one packet every 5 ms.
    data: bool,
    /// Drop this many of B's next periodic Control packets to A (not Finals).
    drop_b_to_a: usize,
    rng: TestRng,
    downs_a: Vec<(Duration, Diag)>,
    downs_b: Vec<(Duration, Diag)>,
    probes: Vec<Duration>,
    last_heard_a: Duration,
}

impl Pair {
    fn up(hint: bool) -> Pair {
        let t0 = Instant::now();
        let mut p = Pair {
            t0,
            now: t0,
            a: Session::new(cfg(0xa), t0).unwrap(),
            b: Session::new(cfg(0xb), t0).unwrap(),
            watch: hint.then(SilenceWatch::new),
            heard_a: 0,
            a_to_b: true,
            b_to_a: true,
            data: false,
            drop_b_to_a: 0,
            rng: TestRng(0x9e37_79b9_7f4a_7c15),
            downs_a: Vec::new(),
            downs_b: Vec::new(),
            probes: Vec::new(),
            last_heard_a: Duration::ZERO,
        };
        p.run_for(MS(3000));
        assert_eq!((p.a.state(), p.b.state()), (State::Up, State::Up));
        p
    }

    fn t(&self) -> Duration {
        self.now - self.t0
    }

    fn step(&mut self) {
        let now = self.now;
        self.a.handle_timeout(now);
        self.b.handle_timeout(now);
        while let Some(p) = self.a.poll_transmit(now, &mut self.rng) {
            if self.a_to_b {
                let _ = self.b.handle_packet(now, &p);
            }
        }
        while let Some(p) = self.b.poll_transmit(now, &mut self.rng) {
            if !self.b_to_a {
                continue;
            }
            if self.drop_b_to_a > 0 && !p.final_ {
                self.drop_b_to_a -= 1;
                continue;
            }
            let _ = self.a.handle_packet(now, &p);
            self.heard_a += 1;
            self.last_heard_a = self.t();
        }
        if self.data && self.b_to_a && self.t().as_millis().is_multiple_of(5) {
            self.heard_a += 1;
            self.last_heard_a = self.t();
        }
        if let Some(w) = &mut self.watch {
            // As the daemon's BFD thread: sample while Up, forget otherwise.
            if self.a.state() != State::Up {
                w.reset();
            } else if w.poll_timeout().is_none_or(|t| t <= now) {
                let interval = self.a.remote_tx_interval().unwrap();
                match w.sample(now, self.heard_a, interval) {
                    Hint::Nothing => {}
                    Hint::Probe => {
                        self.probes.push(now - self.t0);
                        self.a.start_poll(now);
                    }
                    Hint::Lost { .. } => self.a.path_lost(now),
                }
            }
        }
        let t = self.t();
        while let Some(Event::StateChange { from, diag, .. }) = self.a.poll_event() {
            if from == State::Up {
                self.downs_a.push((t, diag));
            }
        }
        while let Some(Event::StateChange { from, diag, .. }) = self.b.poll_event() {
            if from == State::Up {
                self.downs_b.push((t, diag));
            }
        }
        self.now += MS(1);
    }

    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }

    /// Cut both directions after `busy` of B→A data; returns the cut time and when A
    /// last heard anything.
    fn cut_after(&mut self, busy: Duration) -> (Duration, Duration) {
        self.data = true;
        self.run_for(busy);
        let cut = self.t();
        self.a_to_b = false;
        self.b_to_a = false;
        self.run_for(MS(1000));
        (cut, self.last_heard_a)
    }
}

#[test]
fn a_cut_busy_tunnel_goes_down_after_two_intervals_not_three() {
    let mut p = Pair::up(true);
    let (cut, last) = p.cut_after(MS(2000));
    assert!(cut - last <= MS(5), "data until the cut: {last:?} {cut:?}");
    assert_eq!(p.probes.len(), 1, "{:?}", p.probes);
    let (t_down, diag) = p.downs_a[0];
    assert_eq!(diag, Diag::CONTROL_DETECTION_TIME_EXPIRED);
    // One interval to the Poll, one more waiting for it: 100 ms after the last packet,
    // plus at most a sample period (5 ms) each.
    let after = t_down - last;
    assert!(
        after >= MS(2 * INTERVAL) && after <= MS(2 * INTERVAL + 11),
        "{after:?}"
    );
    // B, plain BFD, waits for its Detection Time of 3 intervals after A's last packet.
    let (t_down_b, _) = p.downs_b[0];
    assert!(t_down_b - cut > MS(2 * INTERVAL), "{t_down_b:?} {cut:?}");
    assert!(t_down < t_down_b + MS(1), "{t_down:?} {t_down_b:?}");
}

#[test]
fn without_the_hint_the_same_cut_takes_the_detection_time() {
    let mut p = Pair::up(false);
    let (cut, _) = p.cut_after(MS(2000));
    let (t_down, diag) = p.downs_a[0];
    assert_eq!(diag, Diag::CONTROL_DETECTION_TIME_EXPIRED);
    // Three intervals after the last Control packet from B (data does not count), which
    // this run's jitter put 2 intervals or more before the Detection Time ran out.
    assert!(p.probes.is_empty());
    assert!(t_down - cut > MS(2 * INTERVAL + 11), "{t_down:?} {cut:?}");
}

#[test]
fn data_that_stops_on_a_working_path_is_probed_at_most_and_stays_up() {
    for drop in [0, 1, 2] {
        let mut p = Pair::up(true);
        p.data = true;
        p.run_for(MS(2000));
        // The data stops, and the next `drop` periodic Control packets from B are lost
        // too: nothing arrives for more than an interval, and with 2 for more than two,
        // so only the Final to A's Poll keeps the session.
        p.data = false;
        p.drop_b_to_a = drop;
        p.run_for(MS(5000));
        assert!(p.downs_a.is_empty(), "drop {drop}: {:?}", p.downs_a);
        assert!(p.downs_b.is_empty(), "drop {drop}: {:?}", p.downs_b);
        assert_eq!(p.probes.len(), drop.min(1), "drop {drop}: {:?}", p.probes);
        assert!(!p.a.poll_in_progress(), "the Final ended the Poll");
    }
}

#[test]
fn an_idle_tunnel_cut_is_left_to_bfd() {
    let mut p = Pair::up(true);
    p.run_for(MS(1000));
    let cut = p.t();
    p.a_to_b = false;
    p.b_to_a = false;
    p.run_for(MS(1000));
    assert!(p.probes.is_empty());
    let (t_down, _) = p.downs_a[0];
    // The Detection Time: 3 intervals after the last Control packet, which came at most
    // one interval before the cut.
    assert!(t_down - cut > MS(2 * INTERVAL) && t_down - cut <= MS(3 * INTERVAL + 1));
    assert_eq!(t_down - p.last_heard_a, MS(3 * INTERVAL));
}
