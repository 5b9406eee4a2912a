//! Two in-memory BFD sessions on a virtual clock exchanging encoded packets.

use std::time::{Duration, Instant};

mod common;

use bfd::{ControlPacket, Diag, Discard, Event, Session, SessionConfig, State};
use common::TestRng;
use proptest::prelude::*;

fn cfg(discr: u32, tx_ms: u64, rx_ms: u64, mult: u8) -> SessionConfig {
    SessionConfig {
        local_discr: discr,
        desired_min_tx: Duration::from_millis(tx_ms),
        required_min_rx: Duration::from_millis(rx_ms),
        detect_mult: mult,
        passive: false,
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Side {
    A,
    B,
}

struct Net {
    t0: Instant,
    now: Instant,
    a: Session,
    b: Session,
    /// Links: false drops every packet in that direction.
    a_to_b: bool,
    b_to_a: bool,
    rng: TestRng,
    events: Vec<(Duration, Side, Event)>,
    /// Every packet sent (delivered or not), with its send time.
    sent: Vec<(Duration, Side, ControlPacket)>,
    last_delivered_to_a: Option<Duration>,
}

impl Net {
    fn new(a: SessionConfig, b: SessionConfig) -> Net {
        let t0 = Instant::now();
        Net {
            t0,
            now: t0,
            a: Session::new(a, t0).unwrap(),
            b: Session::new(b, t0).unwrap(),
            a_to_b: true,
            b_to_a: true,
            rng: TestRng(0x9e37_79b9_7f4a_7c15),
            events: Vec::new(),
            sent: Vec::new(),
            last_delivered_to_a: None,
        }
    }

    fn t(&self) -> Duration {
        self.now - self.t0
    }

    /// Everything due at `now`, until both sides are quiet.
    fn settle(&mut self) {
        for _ in 0..100 {
            self.a.handle_timeout(self.now);
            self.b.handle_timeout(self.now);
            let mut any = false;
            while let Some(p) = self.a.poll_transmit(self.now, &mut self.rng) {
                any = true;
                self.sent.push((self.t(), Side::A, p));
                // Through the wire format, as the daemon would.
                let q = ControlPacket::decode(&p.to_bytes()).unwrap();
                if self.a_to_b {
                    let _ = self.b.handle_packet(self.now, &q);
                }
            }
            while let Some(p) = self.b.poll_transmit(self.now, &mut self.rng) {
                any = true;
                self.sent.push((self.t(), Side::B, p));
                let q = ControlPacket::decode(&p.to_bytes()).unwrap();
                if self.b_to_a {
                    let _ = self.a.handle_packet(self.now, &q);
                    self.last_delivered_to_a = Some(self.t());
                }
            }
            let t = self.t();
            while let Some(e) = self.a.poll_event() {
                self.events.push((t, Side::A, e));
            }
            while let Some(e) = self.b.poll_event() {
                self.events.push((t, Side::B, e));
            }
            if !any {
                return;
            }
        }
        panic!("sessions never settle at {:?}", self.t());
    }

    /// Advance the virtual clock deadline by deadline up to `t0 + until`.
    fn run_until(&mut self, until: Duration) {
        let end = self.t0 + until;
        loop {
            self.settle();
            let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(n) if n <= end => {
                    assert!(
                        n > self.now,
                        "deadline {n:?} not in the future after settle"
                    );
                    self.now = n;
                }
                _ => {
                    self.now = end;
                    self.settle();
                    return;
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.t() + d;
        self.run_until(until);
    }

    fn events_of(&self, side: Side) -> Vec<(Duration, State, State, Diag)> {
        self.events
            .iter()
            .filter(|(_, s, _)| *s == side)
            .map(|(t, _, Event::StateChange { from, to, diag })| (*t, *from, *to, *diag))
            .collect()
    }

    fn gaps(&self, side: Side, from: Duration) -> Vec<Duration> {
        let times: Vec<Duration> = self
            .sent
            .iter()
            .filter(|(t, s, p)| *s == side && *t >= from && !p.final_)
            .map(|(t, _, _)| *t)
            .collect();
        times.windows(2).map(|w| w[1] - w[0]).collect()
    }
}

const MS: fn(u64) -> Duration = Duration::from_millis;

fn up_pair() -> Net {
    let mut n = Net::new(cfg(0xa, 100, 100, 3), cfg(0xb, 100, 100, 3));
    n.run_until(MS(2000));
    assert_eq!((n.a.state(), n.b.state()), (State::Up, State::Up));
    n
}

#[test]
fn three_way_handshake_comes_up() {
    let mut a = cfg(0xa, 100, 100, 3);
    a.passive = false;
    let mut b = cfg(0xb, 100, 100, 3);
    b.passive = true;
    let mut n = Net::new(a, b);
    n.run_until(MS(10));
    let first: Vec<(Side, State, u32, bool)> = n
        .sent
        .iter()
        .take(3)
        .map(|(_, s, p)| (*s, p.state, p.your_discr, p.poll))
        .collect();
    // §6.2: Down (Your Discr 0) --> ; <-- Init ; Up --> (with P: the TX interval drops
    // from the 1 s slow rate to 100 ms, §6.8.3).
    assert_eq!(
        first,
        vec![
            (Side::A, State::Down, 0, false),
            (Side::B, State::Init, 0xa, false),
            (Side::A, State::Up, 0xb, true),
        ]
    );
    assert_eq!(n.sent[0].2.desired_min_tx_us, 1_000_000);
    assert_eq!(n.sent[1].2.desired_min_tx_us, 1_000_000);
    assert_eq!(n.sent[2].2.desired_min_tx_us, 100_000);
    let ev_a = n.events_of(Side::A);
    let ev_b = n.events_of(Side::B);
    assert_eq!(
        ev_a,
        vec![(MS(0), State::Down, State::Up, Diag::NO_DIAGNOSTIC)]
    );
    assert_eq!(
        ev_b,
        vec![
            (MS(0), State::Down, State::Init, Diag::NO_DIAGNOSTIC),
            (MS(0), State::Init, State::Up, Diag::NO_DIAGNOSTIC),
        ]
    );
    assert_eq!((n.a.remote_discr(), n.b.remote_discr()), (0xb, 0xa));
    assert_eq!(
        (n.a.remote_state(), n.b.remote_state()),
        (State::Up, State::Up)
    );
    n.run_until(MS(5000));
    assert_eq!(n.events.len(), 3, "no flapping: {:?}", n.events);
    // Both Poll Sequences (each side lowered its TX interval on going Up) ended with a Final.
    assert!(!n.a.poll_in_progress() && !n.b.poll_in_progress());
    assert_eq!((n.a.tx_interval(), n.b.tx_interval()), (MS(100), MS(100)));
}

#[test]
fn passive_side_waits_and_slow_rate_before_up() {
    let mut b = cfg(0xb, 100, 100, 3);
    b.passive = true;
    let mut n = Net::new(cfg(0xa, 100, 100, 3), b);
    n.a_to_b = false;
    n.run_until(MS(10_000));
    assert!(
        n.sent.iter().all(|(_, s, _)| *s == Side::A),
        "passive B never speaks first"
    );
    // §6.8.3 / §6.8.7: while not Up, one packet per 1 s less 0..25 % jitter.
    let gaps = n.gaps(Side::A, MS(0));
    assert!(gaps.len() >= 9);
    assert!(
        gaps.iter().all(|g| *g >= MS(750) && *g <= MS(1000)),
        "{gaps:?}"
    );
    assert!(n
        .sent
        .iter()
        .all(|(_, _, p)| p.state == State::Down && p.desired_min_tx_us == 1_000_000));
}

#[test]
fn timer_negotiation() {
    let mut n = Net::new(cfg(0xa, 100, 300, 3), cfg(0xb, 200, 50, 5));
    n.run_until(MS(2000));
    assert_eq!((n.a.state(), n.b.state()), (State::Up, State::Up));
    // §6.8.2 / §6.8.7: TX interval = max(local Desired Min TX, remote Required Min RX).
    assert_eq!(n.a.tx_interval(), MS(100)); // max(100, 50)
    assert_eq!(n.b.tx_interval(), MS(300)); // max(200, 300)
                                            // §6.8.4: Detection Time = remote Detect Mult × max(local Required Min RX, remote Desired Min TX).
    assert_eq!(n.a.detection_time(), Some(MS(5 * 300)));
    assert_eq!(n.b.detection_time(), Some(MS(3 * 100)));
    n.run_until(MS(8000));
    // §6.8.7 jitter: 75..=100 % of the interval.
    let ga = n.gaps(Side::A, MS(2000));
    let gb = n.gaps(Side::B, MS(2000));
    assert!(ga.len() > 40 && gb.len() > 15);
    assert!(ga.iter().all(|g| *g >= MS(75) && *g <= MS(100)), "{ga:?}");
    assert!(gb.iter().all(|g| *g >= MS(225) && *g <= MS(300)), "{gb:?}");
    // The jitter actually varies.
    assert!(ga.iter().min() != ga.iter().max());
}

#[test]
fn detect_mult_one_jitter_is_at_most_90_percent() {
    let mut n = Net::new(cfg(0xa, 100, 100, 1), cfg(0xb, 100, 100, 3));
    n.run_until(MS(5000));
    let ga = n.gaps(Side::A, MS(1000));
    assert!(ga.len() > 40);
    assert!(ga.iter().all(|g| *g >= MS(75) && *g <= MS(90)), "{ga:?}");
}

#[test]
fn silent_peer_goes_down_after_detection_time_and_recovers() {
    let mut n = up_pair();
    n.run_until(MS(3000));
    n.events.clear();
    let cut = n.t();
    n.b_to_a = false;
    n.run_for(MS(2000));
    let last_rx = n.last_delivered_to_a.unwrap();
    assert!(last_rx <= cut);
    let ev_a = n.events_of(Side::A);
    // §6.8.4: exactly remote Detect Mult (3) × max(100 ms, 100 ms) after the last packet.
    assert_eq!(
        ev_a.first(),
        Some(&(
            last_rx + MS(300),
            State::Up,
            State::Down,
            Diag::CONTROL_DETECTION_TIME_EXPIRED
        ))
    );
    assert!(last_rx + MS(300) > cut && last_rx + MS(300) <= cut + MS(300));
    // B hears A's Down (Your Discr reset to 0, §6.8.1) and follows with diag 3, then moves
    // to Init because A keeps sending Down.
    let ev_b = n.events_of(Side::B);
    assert_eq!(
        ev_b[0],
        (
            last_rx + MS(300),
            State::Up,
            State::Down,
            Diag::NEIGHBOR_SIGNALED_SESSION_DOWN
        )
    );
    assert_eq!(n.a.state(), State::Down);
    assert_eq!(n.a.remote_discr(), 0);
    assert_eq!(n.b.state(), State::Init);
    assert!(n
        .sent
        .iter()
        .any(|(t, s, p)| *s == Side::A && *t > cut && p.state == State::Down && p.your_discr == 0));

    // Recovery: the link comes back and the handshake completes again.
    n.events.clear();
    n.b_to_a = true;
    n.run_for(MS(3000));
    assert_eq!((n.a.state(), n.b.state()), (State::Up, State::Up));
    assert_eq!(
        n.events_of(Side::A).iter().map(|e| e.2).collect::<Vec<_>>(),
        vec![State::Up]
    );
    assert_eq!(
        n.events_of(Side::B).iter().map(|e| e.2).collect::<Vec<_>>(),
        vec![State::Up]
    );
    // Back at the fast rate after the Poll Sequences.
    assert_eq!(n.a.tx_interval(), MS(100));
    assert!(!n.a.poll_in_progress() && !n.b.poll_in_progress());
}

#[test]
fn admin_down_takes_peer_down_without_flapping() {
    let mut n = up_pair();
    n.events.clear();
    let t = n.t();
    n.a.set_admin_down(n.now, true);
    n.run_for(MS(10_000));
    assert_eq!(
        n.events_of(Side::A),
        vec![(t, State::Up, State::AdminDown, Diag::ADMINISTRATIVELY_DOWN)]
    );
    // §6.8.6: AdminDown received while Up -> Down with diag 3; stays Down afterwards.
    assert_eq!(
        n.events_of(Side::B),
        vec![(
            t,
            State::Up,
            State::Down,
            Diag::NEIGHBOR_SIGNALED_SESSION_DOWN
        )]
    );
    assert_eq!(n.b.remote_diag(), Diag::ADMINISTRATIVELY_DOWN);
    assert_eq!(n.b.remote_state(), State::AdminDown);
    assert_eq!(n.b.local_diag(), Diag::NEIGHBOR_SIGNALED_SESSION_DOWN);
    // A keeps announcing AdminDown at the slow rate.
    let gaps = n.gaps(Side::A, t + MS(1));
    assert!(
        gaps.iter().all(|g| *g >= MS(750) && *g <= MS(1000)),
        "{gaps:?}"
    );
    assert!(n
        .sent
        .iter()
        .filter(|(tt, s, _)| *s == Side::A && *tt >= t)
        .all(|(_, _, p)| p.state == State::AdminDown && p.diag == Diag::ADMINISTRATIVELY_DOWN));

    // Re-enable: back Up through the handshake.
    n.events.clear();
    n.a.set_admin_down(n.now, false);
    n.run_for(MS(3000));
    assert_eq!((n.a.state(), n.b.state()), (State::Up, State::Up));
    assert_eq!(n.events_of(Side::A)[0].1, State::AdminDown);
}

#[test]
fn parameter_change_runs_poll_final() {
    let mut n = Net::new(cfg(0xa, 100, 100, 3), cfg(0xb, 20, 100, 3));
    n.run_until(MS(2000));
    assert_eq!(n.a.detection_time(), Some(MS(300)));
    let t = n.t();

    // Slower TX: §6.8.3 the old interval stays in use until the Final arrives.
    n.a.set_timers(n.now, MS(300), MS(100)).unwrap();
    assert!(n.a.poll_in_progress());
    assert_eq!(n.a.tx_interval(), MS(100));
    n.run_for(MS(1));
    let polls: Vec<_> = n
        .sent
        .iter()
        .filter(|(tt, _, p)| *tt >= t && p.poll)
        .collect();
    let finals: Vec<_> = n
        .sent
        .iter()
        .filter(|(tt, _, p)| *tt >= t && p.final_)
        .collect();
    assert_eq!(polls.len(), 1);
    assert_eq!(polls[0].1, Side::A);
    assert_eq!(polls[0].2.desired_min_tx_us, 300_000);
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].1, Side::B);
    assert!(!finals[0].2.poll);
    assert!(!n.a.poll_in_progress());
    assert_eq!(n.a.tx_interval(), MS(300));
    assert_eq!(n.b.detection_time(), Some(MS(900)));

    // Lower RX requirement: our Detection Time shrinks only after the Final.
    n.a.set_timers(n.now, MS(300), MS(10)).unwrap();
    assert!(n.a.poll_in_progress());
    assert_eq!(n.a.detection_time(), Some(MS(300)));
    n.run_for(MS(1));
    assert!(!n.a.poll_in_progress());
    assert_eq!(n.a.detection_time(), Some(MS(60))); // 3 × max(10, 20)
    assert_eq!(n.b.tx_interval(), MS(20));
    n.run_for(MS(3000));
    assert_eq!((n.a.state(), n.b.state()), (State::Up, State::Up));
    assert_eq!(n.events.len(), 3, "no flaps: {:?}", n.events);
}

#[test]
fn final_answers_poll_immediately() {
    let mut n = up_pair();
    let now = n.now;
    let poll = ControlPacket {
        poll: true,
        ..n.sent
            .iter()
            .rev()
            .find(|(_, s, _)| *s == Side::B)
            .unwrap()
            .2
    };
    let poll = ControlPacket {
        final_: false,
        ..poll
    };
    n.a.handle_packet(now, &poll).unwrap();
    let fin = n.a.poll_transmit(now, &mut n.rng).unwrap();
    assert!(fin.final_ && !fin.poll);
    assert_eq!(fin.state, State::Up);
    assert!(n.a.poll_transmit(now, &mut n.rng).is_none());
    // The out-of-band Final does not push the periodic schedule out.
    let next = n.a.poll_timeout().unwrap();
    assert!(next > now && next <= now + MS(100));
}

#[test]
fn wrong_discriminator_is_ignored() {
    let mut n = up_pair();
    let good = n
        .sent
        .iter()
        .rev()
        .find(|(_, s, _)| *s == Side::B)
        .unwrap()
        .2;
    let forged = ControlPacket {
        state: State::Down,
        your_discr: 0xdead,
        ..good
    };
    assert_eq!(
        n.a.handle_packet(n.now, &forged),
        Err(Discard::YourDiscriminator {
            expected: 0xa,
            got: 0xdead
        })
    );
    assert_eq!(n.a.state(), State::Up);
    assert!(n.a.poll_event().is_none());
    // Forged packets do not refresh the Detection Time either.
    n.b_to_a = false;
    let last = n.last_delivered_to_a.unwrap();
    for i in 1..=10 {
        let at = n.now + MS(i * 50);
        n.run_until(at - n.t0);
        let _ = n.a.handle_packet(
            n.now,
            &ControlPacket {
                state: State::Up,
                ..forged
            },
        );
    }
    assert_eq!(
        n.events_of(Side::A)
            .into_iter()
            .find(|e| e.2 == State::Down)
            .map(|e| (e.0, e.3)),
        Some((last + MS(300), Diag::CONTROL_DETECTION_TIME_EXPIRED))
    );
}

#[test]
fn config_is_validated() {
    let now = Instant::now();
    assert!(Session::new(cfg(0, 100, 100, 3), now).is_err());
    assert!(Session::new(cfg(1, 100, 100, 0), now).is_err());
    assert!(Session::new(cfg(1, 0, 100, 3), now).is_err());
    assert!(Session::new(cfg(1, 100, 100_000_000, 3), now).is_err());
}

proptest! {
    #[test]
    fn random_bytes_never_panic_a_session(
        datagrams in proptest::collection::vec(
            (proptest::collection::vec(any::<u8>(), 0..40), 0u64..500), 0..50)
    ) {
        let mut n = up_pair();
        for (bytes, dt) in datagrams {
            if let Ok(p) = ControlPacket::decode(&bytes) {
                let _ = n.a.handle_packet(n.now, &p);
            }
            n.run_for(MS(dt));
        }
    }

    #[test]
    fn random_valid_packets_keep_session_live(
        pkts in proptest::collection::vec(
            (0u8..4, any::<bool>(), any::<bool>(), 1u8..=5, 1u32..=4, 0u32..=3,
             1u32..2_000_000, 0u32..2_000_000, 0u64..400), 0..60)
    ) {
        let now = Instant::now();
        let mut s = Session::new(cfg(1, 50, 50, 3), now).unwrap();
        let mut rng = TestRng(7);
        let mut t = now;
        for (st, p, f, mult, my, your, tx, rx, dt) in pkts {
            let state = State::from_bits(st);
            let your = if your == 0 && matches!(state, State::Init | State::Up) { 1 } else { your };
            let pkt = ControlPacket {
                diag: Diag::new(0), state, poll: p, final_: f && !p,
                control_plane_independent: false, demand: false, authenticated: false, detect_mult: mult,
                my_discr: my, your_discr: your, desired_min_tx_us: tx, required_min_rx_us: rx,
                required_min_echo_rx_us: 0,
            };
            let _ = s.handle_packet(t, &pkt);
            t += MS(dt);
            s.handle_timeout(t);
            while s.poll_transmit(t, &mut rng).is_some() {}
            while s.poll_event().is_some() {}
            // After servicing, nothing is left due now (no busy loop).
            if let Some(d) = s.poll_timeout() {
                prop_assert!(d > t || s.poll_transmit(t, &mut rng).is_none());
            }
        }
    }
}

/// FRR's bfdd advertises a slow Required Min RX (1 s) until it is Up, then 100 ms with a
/// Poll. Our next periodic packet must then come within 100 ms — keeping the 1 s schedule
/// made FRR time us out 300 ms after every Up (seen in the FRR interop test).
#[test]
fn faster_remote_rx_pulls_the_schedule_in() {
    let t0 = Instant::now();
    let mut rng = TestRng(7);
    let mut s = Session::new(cfg(1, 100, 100, 3), t0).unwrap();
    let peer = |state: State, rx_ms: u32, poll: bool, your: u32| ControlPacket {
        diag: Diag::new(0),
        state,
        poll,
        final_: false,
        control_plane_independent: false,
        demand: false,
        authenticated: false,
        detect_mult: 3,
        my_discr: 99,
        your_discr: your,
        desired_min_tx_us: 1_000_000,
        required_min_rx_us: rx_ms * 1000,
        required_min_echo_rx_us: 0,
    };
    // Peer Down with slow timers → we go Init; then its Init → we go Up.
    s.handle_packet(t0, &peer(State::Down, 1000, false, 0))
        .unwrap();
    while s.poll_transmit(t0, &mut rng).is_some() {}
    let t1 = t0 + Duration::from_millis(10);
    s.handle_packet(t1, &peer(State::Init, 1000, false, 1))
        .unwrap();
    assert_eq!(s.state(), State::Up);
    while s.poll_transmit(t1, &mut rng).is_some() {}
    // Its Up + Poll with the fast RX requirement.
    let t2 = t1 + Duration::from_millis(5);
    s.handle_packet(t2, &peer(State::Up, 100, true, 1)).unwrap();
    let fin = s.poll_transmit(t2, &mut rng).unwrap();
    assert!(fin.final_);
    let next = s.poll_timeout().unwrap();
    assert!(
        next <= t2 + Duration::from_millis(100),
        "next packet {:?} after the Poll",
        next - t2
    );
}
