//! One BFD session in Asynchronous mode (RFC 5880 §6): the three-way handshake, timer
//! negotiation with Poll/Final, failure detection and administrative control.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::auth::{AuthConfig, AuthError, AuthState};
use crate::limits;
use crate::packet::{ControlPacket, Diag, State};
use crate::Rng;

/// Local parameters of one session (§6.8.1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// bfd.LocalDiscr: nonzero and unique among the caller's sessions (§6.3).
    pub local_discr: u32,
    /// bfd.DesiredMinTxInterval once Up; raised to 1 s while not Up (§6.8.3).
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx: Duration,
    /// bfd.DetectMult.
    pub detect_mult: u8,
    /// §6.1: a passive system sends nothing until it has heard from the peer.
    pub passive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("local discriminator must be nonzero (§6.8.1)")]
    ZeroDiscriminator,
    #[error("detect multiplier must be nonzero (§6.8.1)")]
    ZeroDetectMult,
    #[error("interval must be nonzero")]
    ZeroInterval,
    #[error("interval {0:?} does not fit the 32-bit microsecond field (§4.1)")]
    IntervalTooLarge(Duration),
}

/// Why [`Session::handle_packet`] ignored a valid Control packet (§6.8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    #[error("Your Discriminator {got:#x} is not ours ({expected:#x})")]
    YourDiscriminator { expected: u32, got: u32 },
    #[error("session is administratively down")]
    AdminDown,
    /// §6.7 / §6.8.6: authentication missing, unexpected or wrong.
    #[error("authentication: {0}")]
    Auth(#[from] AuthError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// bfd.SessionState changed; `diag` is bfd.LocalDiag after the change.
    StateChange { from: State, to: State, diag: Diag },
}

/// What we know about the peer (§6.8.1 bfd.Remote*).
#[derive(Debug, Clone, Copy)]
struct Remote {
    discr: u32,
    state: State,
    diag: Diag,
    demand: bool,
    min_rx: Duration,
    desired_min_tx: Duration,
    detect_mult: u8,
}

impl Remote {
    const INITIAL: Remote = Remote {
        discr: 0,
        state: State::Down,
        diag: Diag::NO_DIAGNOSTIC,
        demand: false,
        min_rx: limits::INITIAL_REMOTE_MIN_RX,
        desired_min_tx: Duration::ZERO,
        detect_mult: 0,
    };
}

#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    state: State,
    local_diag: Diag,
    remote: Remote,
    /// Values we advertise (bfd.DesiredMinTxInterval / bfd.RequiredMinRxInterval).
    adv_desired_min_tx: Duration,
    adv_required_min_rx: Duration,
    /// Values the timers use: during a Poll Sequence they may lag the advertised ones (§6.8.3).
    tx_desired_in_use: Duration,
    rx_required_in_use: Duration,
    /// bfd.PollSequence in progress: every packet carries P until a Final arrives (§6.5).
    polling: bool,
    /// A Poll arrived; answer with F as soon as practicable (§6.8.7).
    send_final: bool,
    /// An out-of-band transmission requested at this instant (state change, Poll start).
    immediate: Option<Instant>,
    /// The next periodic transmission.
    next_tx: Option<Instant>,
    /// Last valid packet from the peer; with the Detection Time it gives the deadline.
    last_rx: Option<Instant>,
    events: VecDeque<Event>,
    /// §6.7: the key and sequence numbers, when authentication is configured.
    auth: Option<AuthState>,
    /// When the last authenticated packet arrived and the Detection Time then, for the
    /// §6.8.1 rule that forgets bfd.RcvAuthSeq after twice that long.
    auth_heard: Option<(Instant, Duration)>,
}

fn check_interval(d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(ConfigError::ZeroInterval)
    } else if d > limits::MAX_INTERVAL {
        Err(ConfigError::IntervalTooLarge(d))
    } else {
        Ok(())
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

impl Session {
    pub fn new(config: SessionConfig, now: Instant) -> Result<Session, ConfigError> {
        if config.local_discr == 0 {
            return Err(ConfigError::ZeroDiscriminator);
        }
        if config.detect_mult == 0 {
            return Err(ConfigError::ZeroDetectMult);
        }
        check_interval(config.desired_min_tx)?;
        check_interval(config.required_min_rx)?;
        // §6.8.3: not Up yet, so advertise at most one packet per second.
        let desired = config.desired_min_tx.max(limits::SLOW_TX_INTERVAL);
        let required = config.required_min_rx;
        let immediate = (!config.passive).then_some(now);
        Ok(Session {
            cfg: config,
            state: State::Down,
            local_diag: Diag::NO_DIAGNOSTIC,
            remote: Remote::INITIAL,
            adv_desired_min_tx: desired,
            adv_required_min_rx: required,
            tx_desired_in_use: desired,
            rx_required_in_use: required,
            polling: false,
            send_final: false,
            immediate,
            next_tx: None,
            last_rx: None,
            events: VecDeque::new(),
            auth: None,
            auth_heard: None,
        })
    }

    /// Require and send Keyed SHA1 authentication (§6.7.4) on this session.
    pub fn with_auth(mut self, auth: AuthConfig) -> Session {
        self.auth = Some(AuthState::new(auth));
        self
    }

    /// The configured authentication, if any (for status; the key is never shown).
    pub fn auth(&self) -> Option<&AuthConfig> {
        self.auth.as_ref().map(AuthState::config)
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }
    pub fn state(&self) -> State {
        self.state
    }
    pub fn remote_state(&self) -> State {
        self.remote.state
    }
    pub fn local_diag(&self) -> Diag {
        self.local_diag
    }
    /// The diagnostic the peer last sent (e.g. 7 when it was disabled by its operator).
    pub fn remote_diag(&self) -> Diag {
        self.remote.diag
    }
    pub fn local_discr(&self) -> u32 {
        self.cfg.local_discr
    }
    /// bfd.RemoteDiscr; zero until the peer is heard and again after a Detection Time of silence.
    pub fn remote_discr(&self) -> u32 {
        self.remote.discr
    }
    pub fn poll_in_progress(&self) -> bool {
        self.polling
    }
    /// §6.8.7: the agreed transmit interval before jitter.
    pub fn tx_interval(&self) -> Duration {
        limits::tx_interval(self.tx_desired_in_use, self.remote.min_rx)
    }
    /// §6.8.4: the current Detection Time, once the peer has been heard.
    pub fn detection_time(&self) -> Option<Duration> {
        self.last_rx?;
        Some(limits::detection_time(
            self.remote.detect_mult,
            self.rx_required_in_use,
            self.remote.desired_min_tx,
        ))
    }

    /// The peer's agreed transmit interval before jitter (§6.8.4: the Detection Time
    /// divided by its Detect Mult), once it has been heard.
    pub fn remote_tx_interval(&self) -> Option<Duration> {
        self.last_rx?;
        Some(self.rx_required_in_use.max(self.remote.desired_min_tx))
    }

    fn detection_deadline(&self) -> Option<Instant> {
        if self.state == State::AdminDown {
            return None;
        }
        Some(self.last_rx? + self.detection_time()?)
    }

    /// Change the configured intervals; while Up this runs a Poll Sequence (§6.8.3).
    pub fn set_timers(
        &mut self,
        now: Instant,
        desired_min_tx: Duration,
        required_min_rx: Duration,
    ) -> Result<(), ConfigError> {
        check_interval(desired_min_tx)?;
        check_interval(required_min_rx)?;
        self.cfg.desired_min_tx = desired_min_tx;
        self.cfg.required_min_rx = required_min_rx;
        self.update_timers(now);
        Ok(())
    }

    /// §6.8.16: administratively disable (AdminDown, diag 7) or re-enable (Down) the session.
    /// While disabled we keep sending AdminDown at the slow rate so the peer stays Down
    /// instead of timing out and retrying (the RFC allows ceasing after a Detection Time).
    pub fn set_admin_down(&mut self, now: Instant, down: bool) {
        match (down, self.state) {
            (true, State::AdminDown) | (false, State::Down | State::Init | State::Up) => {}
            (true, _) => self.set_state(now, State::AdminDown, Diag::ADMINISTRATIVELY_DOWN),
            (false, State::AdminDown) => self.set_state(now, State::Down, Diag::NO_DIAGNOSTIC),
        }
    }

    fn set_state(&mut self, now: Instant, to: State, diag: Diag) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        self.local_diag = diag;
        tracing::debug!(discr = self.cfg.local_discr, %from, %to, %diag, "BFD state change");
        self.events.push_back(Event::StateChange { from, to, diag });
        if to != State::Up {
            self.polling = false;
        }
        // Tell the peer at once rather than at the next (possibly 1 s) tick, as BIRD does.
        self.request_immediate(now);
        self.update_timers(now);
    }

    fn request_immediate(&mut self, now: Instant) {
        self.immediate = Some(self.immediate.map_or(now, |t| t.min(now)));
    }

    /// Recompute the advertised intervals and start a Poll Sequence if they changed while
    /// Up (§6.8.3).
    fn update_timers(&mut self, now: Instant) {
        let desired = if self.state == State::Up {
            self.cfg.desired_min_tx
        } else {
            self.cfg.desired_min_tx.max(limits::SLOW_TX_INTERVAL)
        };
        let required = self.cfg.required_min_rx;
        if desired == self.adv_desired_min_tx && required == self.adv_required_min_rx {
            return;
        }
        self.adv_desired_min_tx = desired;
        self.adv_required_min_rx = required;
        if self.state == State::Up {
            self.polling = true;
            // §6.8.3: a longer TX interval waits for the Final (the peer still times us on
            // the old one); a shorter one is safe at once.
            self.tx_desired_in_use = self.tx_desired_in_use.min(desired);
            // §6.8.3: a reduced RX requirement shortens our Detection Time only after the
            // Final; a longer one applies at once.
            self.rx_required_in_use = self.rx_required_in_use.max(required);
            self.request_immediate(now);
        } else {
            self.tx_desired_in_use = desired;
            self.rx_required_in_use = required;
        }
    }

    /// Process one received datagram that [`ControlPacket::decode`] turned into `pkt`:
    /// authentication first (§6.7, §6.8.6), then [`Session::handle_packet`]'s rules. The
    /// caller has already dropped packets whose TTL is not 255.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        datagram: &[u8],
        pkt: &ControlPacket,
    ) -> Result<(), Discard> {
        let Some(auth) = &mut self.auth else {
            return self.handle_packet(now, pkt);
        };
        if !pkt.authenticated {
            return Err(AuthError::Missing.into());
        }
        // §6.8.1: after twice the Detection Time of silence any sequence number goes.
        if self
            .auth_heard
            .is_some_and(|(t, det)| now.saturating_duration_since(t) >= det * 2)
        {
            auth.forget_sequence();
        }
        auth.verify(datagram, pkt.detect_mult)?;
        self.accept(now, pkt)?;
        let det = self.detection_time().unwrap_or(limits::SLOW_TX_INTERVAL);
        self.auth_heard = Some((now, det));
        Ok(())
    }

    /// Process one valid Control packet without authentication (§6.8.6, after the
    /// checks that [`ControlPacket::decode`] does). A session configured for
    /// authentication refuses it: use [`Session::handle_datagram`].
    pub fn handle_packet(&mut self, now: Instant, pkt: &ControlPacket) -> Result<(), Discard> {
        // §6.8.6: A set without authentication in use, or clear with it in use: discard.
        if pkt.authenticated {
            return Err(AuthError::Unexpected.into());
        }
        if self.auth.is_some() {
            return Err(AuthError::Missing.into());
        }
        self.accept(now, pkt)
    }

    fn accept(&mut self, now: Instant, pkt: &ControlPacket) -> Result<(), Discard> {
        // §6.8.6: a nonzero Your Discriminator selects the session; ours or discard.
        if pkt.your_discr != 0 && pkt.your_discr != self.cfg.local_discr {
            return Err(Discard::YourDiscriminator {
                expected: self.cfg.local_discr,
                got: pkt.your_discr,
            });
        }
        let heard_before = self.remote.discr != 0;
        self.remote = Remote {
            discr: pkt.my_discr,
            state: pkt.state,
            diag: pkt.diag,
            demand: pkt.demand,
            min_rx: pkt.required_min_rx(),
            desired_min_tx: pkt.desired_min_tx(),
            detect_mult: pkt.detect_mult,
        };
        // §6.5: a Final ends our Poll Sequence; the new intervals now apply in full.
        if pkt.final_ && self.polling {
            self.polling = false;
            self.tx_desired_in_use = self.adv_desired_min_tx;
            self.rx_required_in_use = self.adv_required_min_rx;
        }
        // §6.8.7: the peer may now want packets more often than our schedule gives
        // (e.g. its Required Min RX fell from the slow 1 s when it came Up): never wait
        // longer than the new interval, or it times us out.
        let limit = now + self.tx_interval();
        if self.next_tx.is_some_and(|t| t > limit) {
            self.next_tx = Some(limit);
        }
        // §6.8.4: every valid packet restarts the Detection Time.
        self.last_rx = Some(now);
        if self.cfg.passive && !heard_before && self.next_tx.is_none() {
            // §6.1: the passive side starts talking once it knows the peer's discriminator.
            self.request_immediate(now);
        }

        if self.state == State::AdminDown {
            return Err(Discard::AdminDown);
        }
        // §6.8.6 state table.
        match (self.state, pkt.state) {
            // The peer was disabled: follow it Down, and stay there while it stays disabled.
            (State::Init | State::Up, State::AdminDown) => {
                self.set_state(now, State::Down, Diag::NEIGHBOR_SIGNALED_SESSION_DOWN)
            }
            (State::Down, State::Down) => self.set_state(now, State::Init, Diag::NO_DIAGNOSTIC),
            (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                self.set_state(now, State::Up, Diag::NO_DIAGNOSTIC)
            }
            (State::Up, State::Down) => {
                self.set_state(now, State::Down, Diag::NEIGHBOR_SIGNALED_SESSION_DOWN)
            }
            _ => {}
        }
        // §6.8.7: answer a Poll with a Final without waiting for the transmit timer.
        if pkt.poll {
            self.send_final = true;
        }
        Ok(())
    }

    /// Starts a Poll Sequence at once, without a parameter change: the peer must answer
    /// with a Final without waiting for its transmit timer (§6.5, §6.8.7), so the path
    /// proves itself within a round trip. Only while Up (the [`crate::hint`] probe).
    pub fn start_poll(&mut self, now: Instant) {
        if self.state == State::Up {
            self.polling = true;
            self.request_immediate(now);
        }
    }

    /// Declares the path lost before the Detection Time runs out, on a hint the caller
    /// trusts ([`crate::hint`]): the same as the Detection Time expiring (§6.8.4, diag 1).
    pub fn path_lost(&mut self, now: Instant) {
        if matches!(self.state, State::Init | State::Up) {
            self.expire(now);
        }
    }

    /// Run expired timers: the Detection Time (§6.8.4). Transmissions come out of
    /// [`Session::poll_transmit`].
    pub fn handle_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.detection_deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        self.expire(now);
    }

    fn expire(&mut self, now: Instant) {
        // §6.8.1: after a Detection Time of silence bfd.RemoteDiscr goes back to zero.
        self.last_rx = None;
        self.remote = Remote::INITIAL;
        if matches!(self.state, State::Init | State::Up) {
            self.set_state(now, State::Down, Diag::CONTROL_DETECTION_TIME_EXPIRED);
        }
    }

    /// The earliest instant at which [`Session::handle_timeout`] / [`Session::poll_transmit`]
    /// have work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.immediate, self.next_tx, self.detection_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next Control packet to send, if one is due at `now` (§6.8.7). Call repeatedly
    /// until `None`. `rng` supplies the transmit jitter.
    pub fn poll_transmit(&mut self, now: Instant, rng: &mut dyn Rng) -> Option<ControlPacket> {
        let periodic_due = self.next_tx.is_some_and(|t| t <= now);
        let immediate_due = self.immediate.is_some_and(|t| t <= now);
        if !(periodic_due || immediate_due || self.send_final) {
            return None;
        }
        // §6.8.7: a passive system sends nothing while bfd.RemoteDiscr is zero.
        if self.cfg.passive && self.remote.discr == 0 {
            self.immediate = None;
            self.next_tx = None;
            self.send_final = false;
            return None;
        }
        let interval = self.tx_interval();
        // §6.8.7: no periodic packets when the peer asked for none (Required Min RX 0), nor
        // when it runs Demand mode and both sides are Up (unless we are polling).
        let quiet = self.remote.min_rx.is_zero()
            || (self.remote.demand
                && self.state == State::Up
                && self.remote.state == State::Up
                && !self.polling);
        if quiet && !self.send_final {
            self.immediate = None;
            self.next_tx = Some(now + self.jittered(interval, rng));
            return None;
        }
        let fin = std::mem::take(&mut self.send_final);
        let pkt = ControlPacket {
            diag: self.local_diag,
            state: self.state,
            // §4.1: never P and F together; the Poll rides on the next packet.
            poll: self.polling && !fin,
            final_: fin,
            control_plane_independent: false,
            demand: false,
            authenticated: self.auth.is_some(),
            detect_mult: self.cfg.detect_mult,
            my_discr: self.cfg.local_discr,
            your_discr: self.remote.discr,
            desired_min_tx_us: micros(self.adv_desired_min_tx),
            required_min_rx_us: micros(self.adv_required_min_rx),
            required_min_echo_rx_us: 0,
        };
        // A lone Final is sent "without respect to the transmission timer": keep the schedule.
        if periodic_due || immediate_due || self.next_tx.is_none() {
            self.immediate = None;
            self.next_tx = Some(now + self.jittered(interval, rng));
        }
        Some(pkt)
    }

    /// Like [`Session::poll_transmit`], appending the packet's wire form (with its
    /// authentication section when configured) to `out`. Returns false if nothing is due.
    pub fn poll_datagram(&mut self, now: Instant, rng: &mut dyn Rng, out: &mut Vec<u8>) -> bool {
        let Some(pkt) = self.poll_transmit(now, rng) else {
            return false;
        };
        pkt.encode(out);
        if let Some(auth) = &mut self.auth {
            // §6.8.1: bfd.XmitAuthSeq starts at a random value.
            let mut b = [0u8; 4];
            rng.fill(&mut b);
            auth.sign(out, u32::from_be_bytes(b));
        }
        true
    }

    /// §6.8.7: 75..=100 % of the interval, or 75..=90 % with Detect Mult 1.
    fn jittered(&self, interval: Duration, rng: &mut dyn Rng) -> Duration {
        let mut b = [0u8; 4];
        rng.fill(&mut b);
        let r = u32::from_le_bytes(b);
        let max = if self.cfg.detect_mult == 1 {
            limits::JITTER_MAX_PERMILLE_MULT1
        } else {
            limits::JITTER_MAX_PERMILLE
        };
        let permille = limits::JITTER_MIN_PERMILLE + r % (max - limits::JITTER_MIN_PERMILLE + 1);
        (interval * permille / 1000).max(Duration::from_micros(1))
    }
}
