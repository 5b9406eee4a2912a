//! One BGP peer's finite state machine (RFC 4271 §8), sans-IO.
//!
//! The transport is outside: the session asks for a connection with [`Event::Connect`],
//! the driver reports [`Session::handle_connected`], [`Session::handle_bytes`] and
//! [`Session::handle_disconnected`], sends what [`Session::poll_transmit`] returns, and
//! calls [`Session::handle_timeout`] at [`Session::poll_timeout`]. After
//! [`Event::Down`] the driver sends the remaining transmit bytes (the NOTIFICATION)
//! and closes the TCP connection.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::error::{BgpError, CeaseSubcode, FsmErrorState};
use crate::limits::{
    AS_TRANS, BGP_VERSION, DEFAULT_CONNECT_RETRY, DEFAULT_HOLD_TIME, DEFAULT_IDLE_HOLD,
    KEEPALIVE_DIVISOR, MIN_HOLD_TIME, OPEN_HOLD_TIME,
};
use crate::wire::{
    Afi, Capability, Framer, Message, Notification, Open, OptParam, ParsedUpdate, RouteRefresh,
    Safi, Update, UpdateContext,
};

/// Per-peer session configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our AS.
    pub local_as: u32,
    /// The AS the peer must announce (else NOTIFICATION 2/2).
    pub peer_as: u32,
    /// Our BGP Identifier.
    pub router_id: Ipv4Addr,
    /// Hold Time we propose, seconds; 0 disables keepalives and the hold timer.
    pub hold_time: u16,
    /// ConnectRetryTime (RFC 4271 §10, default 120 s).
    pub connect_retry: Duration,
    /// Delay before restarting after the session went down (IdleHoldTime).
    pub idle_hold: Duration,
    /// Never initiate; wait for the peer to connect (RFC 4271 §8.1.1 PassiveTcpEstablishment).
    pub passive: bool,
    /// Offer IPv4 unicast.
    pub ipv4_unicast: bool,
    /// Offer IPv6 unicast.
    pub ipv6_unicast: bool,
}

impl SessionConfig {
    /// Defaults: hold 90 s, ConnectRetry 120 s, active, IPv4 and IPv6 unicast.
    pub fn new(local_as: u32, peer_as: u32, router_id: Ipv4Addr) -> Self {
        Self {
            local_as,
            peer_as,
            router_id,
            hold_time: DEFAULT_HOLD_TIME,
            connect_retry: DEFAULT_CONNECT_RETRY,
            idle_hold: DEFAULT_IDLE_HOLD,
            passive: false,
            ipv4_unicast: true,
            ipv6_unicast: true,
        }
    }

    /// Whether the peer is in another AS.
    pub fn is_ebgp(&self) -> bool {
        self.local_as != self.peer_as
    }

    fn open(&self) -> Open {
        let mut caps = Vec::new();
        if self.ipv4_unicast {
            caps.push(Capability::Multiprotocol {
                afi: Afi::IPV4,
                safi: Safi::UNICAST,
            });
        }
        if self.ipv6_unicast {
            caps.push(Capability::Multiprotocol {
                afi: Afi::IPV6,
                safi: Safi::UNICAST,
            });
        }
        caps.push(Capability::RouteRefresh);
        caps.push(Capability::FourOctetAs(self.local_as));
        Open {
            version: BGP_VERSION,
            // RFC 6793 §4.1: AS_TRANS when our AS needs 4 octets.
            my_as: u16::try_from(self.local_as).unwrap_or(AS_TRANS),
            hold_time: self.hold_time,
            bgp_id: self.router_id,
            params: vec![OptParam::Capabilities(caps)],
        }
    }
}

/// What was negotiated with the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Peer's BGP Identifier.
    pub bgp_id: Ipv4Addr,
    /// Peer's AS.
    pub peer_as: u32,
    /// Negotiated hold time (seconds, 0 = none).
    pub hold_time: u16,
    /// IPv4 unicast negotiated.
    pub ipv4_unicast: bool,
    /// IPv6 unicast negotiated.
    pub ipv6_unicast: bool,
    /// Peer supports ROUTE-REFRESH.
    pub route_refresh: bool,
    /// Peer's OPEN as received.
    pub open: Open,
}

impl PeerInfo {
    /// Whether `afi`/unicast was negotiated.
    pub fn carries(&self, afi: Afi) -> bool {
        match afi {
            Afi::IPV4 => self.ipv4_unicast,
            Afi::IPV6 => self.ipv6_unicast,
            _ => false,
        }
    }
}

/// Why a session went down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DownReason {
    /// We detected an error and sent this NOTIFICATION.
    Error(BgpError),
    /// The peer sent a NOTIFICATION.
    PeerNotification(Notification),
    /// The TCP connection closed or failed.
    TransportClosed,
    /// Closed by [`Session::stop`] or [`Session::close`] with a Cease.
    Stopped,
}

/// Something the driver must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Open a TCP connection to the peer (drop any pending attempt first).
    Connect,
    /// The session reached Established.
    Established(PeerInfo),
    /// The session left OpenSent/OpenConfirm/Established. Flush the transmit queue, then
    /// close the TCP connection.
    Down {
        /// Why.
        reason: DownReason,
    },
    /// A route update (after RFC 7606 handling).
    Update(ParsedUpdate),
    /// The peer asked us to re-send our routes of this family (RFC 2918 §4).
    RouteRefresh {
        /// Family.
        afi: Afi,
        /// Sub-family.
        safi: Safi,
    },
}

/// Which connection survives a collision (RFC 4271 §6.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CollisionWinner {
    /// Keep the connection we initiated, close the one the peer initiated.
    LocallyInitiated,
    /// Keep the connection the peer initiated, close ours.
    RemotelyInitiated,
}

/// RFC 4271 §6.8: compare the identifiers as host-order integers; if ours is lower,
/// the connection we initiated is closed. The loser is closed with
/// `Session::close(now, BgpError::Cease(CeaseSubcode::COLLISION_RESOLUTION))`.
pub fn resolve_collision(local_id: Ipv4Addr, remote_id: Ipv4Addr) -> CollisionWinner {
    if u32::from(local_id) < u32::from(remote_id) {
        CollisionWinner::RemotelyInitiated
    } else {
        CollisionWinner::LocallyInitiated
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Timers {
    hold: Option<Duration>,
    hold_at: Option<Instant>,
    keepalive: Option<Duration>,
    keepalive_at: Option<Instant>,
}

impl Timers {
    fn new(now: Instant, hold_secs: u16) -> Self {
        if hold_secs == 0 {
            // RFC 4271 §4.2: a zero Hold Time means no keepalives and no hold timer.
            return Self {
                hold: None,
                hold_at: None,
                keepalive: None,
                keepalive_at: None,
            };
        }
        let hold = Duration::from_secs(u64::from(hold_secs));
        let ka = Duration::from_secs(u64::from(hold_secs / KEEPALIVE_DIVISOR).max(1));
        Self {
            hold: Some(hold),
            hold_at: Some(now + hold),
            keepalive: Some(ka),
            keepalive_at: Some(now + ka),
        }
    }
    fn restart_hold(&mut self, now: Instant) {
        if let Some(h) = self.hold {
            self.hold_at = Some(now + h);
        }
    }
    fn restart_keepalive(&mut self, now: Instant) {
        if let Some(k) = self.keepalive {
            self.keepalive_at = Some(now + k);
        }
    }
    fn next(&self) -> Option<Instant> {
        [self.hold_at, self.keepalive_at]
            .into_iter()
            .flatten()
            .min()
    }
}

/// FSM state (RFC 4271 §8.2.2); each variant owns what is valid in it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    Idle { restart_at: Option<Instant> },
    Connect { retry_at: Instant },
    Active { retry_at: Option<Instant> },
    OpenSent { hold_at: Instant },
    OpenConfirm { peer: Box<PeerInfo>, timers: Timers },
    Established { peer: Box<PeerInfo>, timers: Timers },
}

/// Public name of the current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateName {
    /// Idle.
    Idle,
    /// Connect.
    Connect,
    /// Active.
    Active,
    /// OpenSent.
    OpenSent,
    /// OpenConfirm.
    OpenConfirm,
    /// Established.
    Established,
}

/// One BGP session.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    framer: Framer,
    transmit: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
}

impl Session {
    /// A stopped session (Idle); call [`Session::start`].
    pub fn new(config: SessionConfig) -> Self {
        Self {
            config,
            state: State::Idle { restart_at: None },
            framer: Framer::default(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Current state.
    pub fn state(&self) -> StateName {
        match self.state {
            State::Idle { .. } => StateName::Idle,
            State::Connect { .. } => StateName::Connect,
            State::Active { .. } => StateName::Active,
            State::OpenSent { .. } => StateName::OpenSent,
            State::OpenConfirm { .. } => StateName::OpenConfirm,
            State::Established { .. } => StateName::Established,
        }
    }

    /// Whether Established.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established { .. })
    }

    /// Negotiated peer data (OpenConfirm and Established); its `bgp_id` is what
    /// [`resolve_collision`] needs.
    pub fn peer(&self) -> Option<&PeerInfo> {
        match &self.state {
            State::OpenConfirm { peer, .. } | State::Established { peer, .. } => Some(peer),
            _ => None,
        }
    }

    /// Whether a new TCP connection would be accepted (Connect or Active).
    pub fn accepts_connection(&self) -> bool {
        matches!(self.state, State::Connect { .. } | State::Active { .. })
    }

    /// ManualStart / AutomaticStart (RFC 4271 §8.1.2, events 1 and 4/5).
    pub fn start(&mut self, now: Instant) {
        if let State::Idle { .. } = self.state {
            self.enter_start(now);
        }
    }

    fn enter_start(&mut self, now: Instant) {
        self.framer.clear();
        if self.config.passive {
            self.state = State::Active { retry_at: None };
        } else {
            self.state = State::Connect {
                retry_at: now + self.config.connect_retry,
            };
            self.events.push_back(Event::Connect);
        }
    }

    /// ManualStop (event 2): Cease/Administrative Shutdown, then Idle without restart.
    pub fn stop(&mut self, now: Instant) {
        self.close(now, BgpError::Cease(CeaseSubcode::ADMIN_SHUTDOWN));
        self.state = State::Idle { restart_at: None };
    }

    /// Close the connection with a NOTIFICATION for `err` (e.g. max-prefix, collision
    /// resolution), then restart after IdleHoldTime.
    pub fn close(&mut self, now: Instant, err: BgpError) {
        match self.state {
            State::OpenSent { .. } | State::OpenConfirm { .. } | State::Established { .. } => {
                let reason = match err {
                    BgpError::Cease(_) => DownReason::Stopped,
                    _ => DownReason::Error(err.clone()),
                };
                self.send(&Message::Notification(err.notification()));
                self.go_down(now, reason);
            }
            _ => {
                self.state = State::Idle {
                    restart_at: Some(now + self.config.idle_hold),
                }
            }
        }
    }

    /// TCP connection established, outgoing or accepted (events 16/17). Returns false if
    /// the session does not want it; the driver then closes that connection.
    pub fn handle_connected(&mut self, now: Instant) -> bool {
        if !self.accepts_connection() {
            return false;
        }
        self.framer.clear();
        // Connect/Active, TcpConnectionConfirmed: send OPEN, hold timer to a large value.
        let open = self.config.open();
        self.send(&Message::Open(open));
        self.state = State::OpenSent {
            hold_at: now + OPEN_HOLD_TIME,
        };
        true
    }

    /// TCP connection closed or failed (event 18).
    pub fn handle_disconnected(&mut self, now: Instant) {
        match self.state {
            // Connect: keep the ConnectRetry timer and wait in Active (RFC 4271 §8.2.2).
            State::Connect { retry_at } => {
                self.state = State::Active {
                    retry_at: Some(retry_at),
                }
            }
            State::OpenSent { .. } | State::OpenConfirm { .. } | State::Established { .. } => {
                self.go_down(now, DownReason::TransportClosed)
            }
            State::Idle { .. } | State::Active { .. } => {}
        }
    }

    /// Bytes received on the TCP stream.
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if !matches!(
            self.state,
            State::OpenSent { .. } | State::OpenConfirm { .. } | State::Established { .. }
        ) {
            return;
        }
        self.framer.push(bytes);
        loop {
            match self.framer.next_message() {
                Ok(Some(m)) => self.handle_message(now, m),
                Ok(None) => break,
                Err(e) => {
                    self.fail(now, e);
                    break;
                }
            }
            if !matches!(
                self.state,
                State::OpenSent { .. } | State::OpenConfirm { .. } | State::Established { .. }
            ) {
                break;
            }
        }
    }

    fn handle_message(&mut self, now: Instant, m: Message) {
        if let Message::Notification(n) = m {
            // Any state: NOTIFICATION ends the session (RFC 4271 §6.4, §8.2.2).
            self.go_down(now, DownReason::PeerNotification(n));
            return;
        }
        let state = std::mem::replace(&mut self.state, State::Idle { restart_at: None });
        match (state, m) {
            (State::OpenSent { .. }, Message::Open(o)) => match self.validate_open(o) {
                Ok(peer) => {
                    // OpenSent, BGPOpen: send KEEPALIVE, go to OpenConfirm.
                    let timers = Timers::new(now, peer.hold_time);
                    self.send(&Message::Keepalive);
                    self.state = State::OpenConfirm {
                        peer: Box::new(peer),
                        timers,
                    };
                }
                Err(e) => {
                    self.state = State::OpenSent { hold_at: now };
                    self.fail(now, e);
                }
            },
            (s @ State::OpenSent { .. }, _) => {
                self.state = s;
                self.fail(now, BgpError::Fsm(FsmErrorState::OpenSent));
            }
            (State::OpenConfirm { peer, mut timers }, Message::Keepalive) => {
                timers.restart_hold(now);
                self.events.push_back(Event::Established((*peer).clone()));
                self.state = State::Established { peer, timers };
            }
            (s @ State::OpenConfirm { .. }, _) => {
                self.state = s;
                self.fail(now, BgpError::Fsm(FsmErrorState::OpenConfirm));
            }
            (State::Established { peer, mut timers }, m) => {
                timers.restart_hold(now);
                let ctx = UpdateContext {
                    ebgp: self.config.is_ebgp(),
                    peer_as: peer.peer_as,
                };
                let carries_rr =
                    |rr: &RouteRefresh| rr.safi == Safi::UNICAST && peer.carries(rr.afi);
                match m {
                    Message::Keepalive => self.state = State::Established { peer, timers },
                    Message::Update(u) => match ParsedUpdate::from_update(&u, ctx) {
                        Ok(p) => {
                            if let Some(e) = &p.treat_as_withdraw {
                                tracing::warn!(error = %e, "UPDATE treated as withdraw (RFC 7606)");
                            }
                            self.events.push_back(Event::Update(p));
                            self.state = State::Established { peer, timers };
                        }
                        Err(e) => {
                            self.state = State::Established { peer, timers };
                            self.fail(now, BgpError::Update(e));
                        }
                    },
                    Message::RouteRefresh(rr) => {
                        // RFC 2918 §4: ignore families that were not negotiated.
                        if carries_rr(&rr) {
                            self.events.push_back(Event::RouteRefresh {
                                afi: rr.afi,
                                safi: rr.safi,
                            });
                        }
                        self.state = State::Established { peer, timers };
                    }
                    Message::Open(_) | Message::Notification(_) => {
                        self.state = State::Established { peer, timers };
                        self.fail(now, BgpError::Fsm(FsmErrorState::Established));
                    }
                }
            }
            (s, _) => self.state = s,
        }
    }

    /// OPEN checks (RFC 4271 §6.2, RFC 5492, RFC 6793, RFC 6286).
    fn validate_open(&self, o: Open) -> Result<PeerInfo, BgpError> {
        if o.version != BGP_VERSION {
            return Err(BgpError::UnsupportedVersion(o.version));
        }
        if let Some(OptParam::Unknown { kind, .. }) = o
            .params
            .iter()
            .find(|p| matches!(p, OptParam::Unknown { .. }))
        {
            return Err(BgpError::UnsupportedOptionalParameter(*kind));
        }
        let Some(peer_as) = o.four_octet_as() else {
            // We only speak 4-octet AS_PATHs: the capability is required (RFC 5492 §3).
            let mut d = Vec::new();
            Capability::FourOctetAs(self.config.local_as).encode(&mut d);
            return Err(BgpError::UnsupportedCapability(d));
        };
        if peer_as != self.config.peer_as {
            return Err(BgpError::BadPeerAs {
                expected: self.config.peer_as,
                got: peer_as,
            });
        }
        if o.hold_time != 0 && o.hold_time < MIN_HOLD_TIME {
            return Err(BgpError::UnacceptableHoldTime(o.hold_time));
        }
        // RFC 6286 §2.2: non-zero; must differ from ours inside one AS.
        if o.bgp_id.is_unspecified()
            || (!self.config.is_ebgp() && o.bgp_id == self.config.router_id)
        {
            return Err(BgpError::BadBgpIdentifier(o.bgp_id));
        }
        let mut mp_v4 = false;
        let mut mp_v6 = false;
        let mut any_mp = false;
        let mut rr = false;
        for c in o.capabilities() {
            match c {
                Capability::Multiprotocol { afi, safi } => {
                    any_mp = true;
                    if *safi == Safi::UNICAST {
                        mp_v4 |= *afi == Afi::IPV4;
                        mp_v6 |= *afi == Afi::IPV6;
                    }
                }
                Capability::RouteRefresh => rr = true,
                _ => {}
            }
        }
        // RFC 4760 §8: without any MP capability IPv4 unicast is implied.
        if !any_mp {
            mp_v4 = true;
        }
        Ok(PeerInfo {
            bgp_id: o.bgp_id,
            peer_as,
            hold_time: o.hold_time.min(self.config.hold_time),
            ipv4_unicast: mp_v4 && self.config.ipv4_unicast,
            ipv6_unicast: mp_v6 && self.config.ipv6_unicast,
            route_refresh: rr,
            open: o,
        })
    }

    /// Timers (ConnectRetry, Hold, Keepalive, IdleHold) at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match &mut self.state {
            State::Idle {
                restart_at: Some(t),
            } if *t <= now => self.enter_start(now),
            State::Connect { retry_at } if *retry_at <= now => {
                // ConnectRetryTimer expires: drop the attempt and try again.
                *retry_at = now + self.config.connect_retry;
                self.events.push_back(Event::Connect);
            }
            State::Active { retry_at: Some(t) } if *t <= now => {
                self.state = State::Connect {
                    retry_at: now + self.config.connect_retry,
                };
                self.events.push_back(Event::Connect);
            }
            State::OpenSent { hold_at } if *hold_at <= now => {
                self.fail(now, BgpError::HoldTimerExpired)
            }
            State::OpenConfirm { timers, .. } | State::Established { timers, .. } => {
                if timers.hold_at.is_some_and(|t| t <= now) {
                    self.fail(now, BgpError::HoldTimerExpired);
                } else if timers.keepalive_at.is_some_and(|t| t <= now) {
                    timers.restart_keepalive(now);
                    self.send(&Message::Keepalive);
                }
            }
            _ => {}
        }
    }

    /// The next instant [`Session::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Idle { restart_at } => *restart_at,
            State::Connect { retry_at } => Some(*retry_at),
            State::Active { retry_at } => *retry_at,
            State::OpenSent { hold_at } => Some(*hold_at),
            State::OpenConfirm { timers, .. } | State::Established { timers, .. } => timers.next(),
        }
    }

    /// Next chunk of bytes to write to the TCP connection.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmit.pop_front()
    }

    /// Next event for the driver.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Queue an UPDATE (Established only). Restarts the KeepaliveTimer (RFC 4271 §8.2.2).
    pub fn send_update(&mut self, now: Instant, u: Update) -> Result<(), BgpError> {
        let State::Established { timers, .. } = &mut self.state else {
            return Ok(());
        };
        timers.restart_keepalive(now);
        let b = Message::Update(u).encode()?;
        self.transmit.push_back(b);
        Ok(())
    }

    /// Ask the peer to re-send a family (RFC 2918 §3), if it supports ROUTE-REFRESH.
    pub fn send_route_refresh(&mut self, afi: Afi) {
        if self
            .peer()
            .is_some_and(|p| p.route_refresh && p.carries(afi))
            && self.is_established()
        {
            self.send(&Message::RouteRefresh(RouteRefresh {
                afi,
                reserved: 0,
                safi: Safi::UNICAST,
            }));
        }
    }

    fn send(&mut self, m: &Message) {
        match m.encode() {
            Ok(b) => self.transmit.push_back(b),
            Err(e) => tracing::error!(error = %e, "message not encodable"),
        }
    }

    /// Error: send its NOTIFICATION and go down (RFC 4271 §6).
    fn fail(&mut self, now: Instant, e: BgpError) {
        tracing::info!(error = %e, peer_as = self.config.peer_as, "BGP session error");
        self.send(&Message::Notification(e.notification()));
        self.go_down(now, DownReason::Error(e));
    }

    fn go_down(&mut self, now: Instant, reason: DownReason) {
        self.framer.clear();
        self.events.push_back(Event::Down { reason });
        self.state = State::Idle {
            restart_at: Some(now + self.config.idle_hold),
        };
    }
}
