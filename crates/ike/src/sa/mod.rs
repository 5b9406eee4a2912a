//! IKE SA and CHILD SA state machines for one configured peer (a "session").
//!
//! Sans-IO: datagrams and `now` go in through `handle_*`; datagrams to send, the next
//! deadline and events come out through `poll_*`.

macro_rules! find {
    ($payloads:expr, $variant:ident) => {
        $payloads.iter().find_map(|p| match p {
            Payload::$variant(x) => Some(x),
            _ => None,
        })
    };
}

mod child;
mod exchange;
pub mod protect;
mod rekey;

pub use child::{ts_to_string, Child, ChildSaInfo};

use crate::crypto::{IkeKeys, KeyExchange, Prf, SkCipher};
use crate::iana::{DhId, NotifyType};
use crate::limits;
use crate::proposal::{AlgorithmProposal, Selected};
use crate::wire::{IdPayload, TrafficSelector};
use crate::Rng;
use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// What the session needs from the configuration of one peer.
pub struct SessionConfig {
    /// Tunnel name, for logs.
    pub name: String,
    pub local_id: IdPayload,
    pub remote_id: IdPayload,
    pub psk: Zeroizing<Vec<u8>>,
    pub ike: Vec<AlgorithmProposal>,
    pub esp: Vec<AlgorithmProposal>,
    pub local_ts: Vec<TrafficSelector>,
    pub remote_ts: Vec<TrafficSelector>,
    /// Initiate at start and re-initiate after failures.
    pub initiate: bool,
    /// Fake NAT-D so that both ends use UDP encapsulation (strongSwan's `encap=yes`).
    pub force_encap: bool,
}

/// A UDP datagram to or from the peer. For port 4500 the non-ESP marker is not part of
/// `data`: the I/O layer adds and strips it (RFC 3948 §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub data: Vec<u8>,
}

/// Why an IKE SA ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent Delete (§1.4.1).
    DeletedByPeer,
    /// We closed it (shutdown or `down`).
    Local,
    /// The peer stopped answering (§2.4).
    Timeout,
    /// Superseded by a rekeyed IKE SA (§2.18).
    Rekeyed,
    /// Negotiation failed with this error notify (sent or received) and explanation.
    Failed(NotifyType, String),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::DeletedByPeer => f.write_str("deleted by peer"),
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::Timeout => f.write_str("peer not responding"),
            CloseReason::Rekeyed => f.write_str("rekeyed"),
            CloseReason::Failed(n, why) => write!(f, "{n}: {why}"),
        }
    }
}

/// What happened, for the daemon to act on.
#[derive(Debug)]
pub enum Event {
    IkeEstablished {
        spi_i: u64,
        spi_r: u64,
        proposal: String,
        remote: SocketAddr,
    },
    IkeRekeyed {
        old_spi_i: u64,
        new_spi_i: u64,
        new_spi_r: u64,
    },
    IkeClosed {
        spi_i: u64,
        spi_r: u64,
        reason: CloseReason,
    },
    ChildInstalled(Box<ChildSaInfo>),
    ChildDeleted {
        spi_in: u32,
        spi_out: u32,
    },
    /// The first CHILD SA could not be created (the IKE SA is then deleted).
    ChildFailed {
        reason: CloseReason,
    },
}

/// One IKE SA as `status` shows it.
#[derive(Debug, Clone)]
pub struct IkeSaStatus {
    pub state: &'static str,
    pub initiator: bool,
    pub spi_i: u64,
    pub spi_r: u64,
    pub proposal: String,
    pub remote: SocketAddr,
    pub age: Duration,
    pub rekeys: u32,
}

/// Status of the whole session.
#[derive(Debug, Clone)]
pub struct SessionStatus {
    pub ike_sas: Vec<IkeSaStatus>,
    pub children: Vec<(Child, Duration)>,
    pub last_error: Option<String>,
}

/// Negotiated IKE SA keys and algorithms.
pub(crate) struct SaKeys {
    pub sel: Selected,
    pub prf: Prf,
    pub sk_d: Zeroizing<Vec<u8>>,
    pub sk_pi: Zeroizing<Vec<u8>>,
    pub sk_pr: Zeroizing<Vec<u8>>,
    pub out: SkCipher,
    pub inb: SkCipher,
}

impl SaKeys {
    /// Splits §2.14 keys into our directions.
    pub fn new(
        sel: Selected,
        keys: IkeKeys,
        initiator: bool,
    ) -> Result<Self, crate::crypto::CryptoError> {
        let prf = Prf::new(sel.prf.unwrap_or_default())?;
        let integ = sel.integ.unwrap_or(crate::iana::IntegId::NONE);
        let i2r = SkCipher::new(sel.encr.0, sel.encr.1, integ, &keys.sk_ei, &keys.sk_ai)?;
        let r2i = SkCipher::new(sel.encr.0, sel.encr.1, integ, &keys.sk_er, &keys.sk_ar)?;
        let (out, inb) = if initiator { (i2r, r2i) } else { (r2i, i2r) };
        Ok(SaKeys {
            sel,
            prf,
            sk_d: keys.sk_d,
            sk_pi: keys.sk_pi,
            sk_pr: keys.sk_pr,
            out,
            inb,
        })
    }
}

/// IKE SA state; each variant owns what is valid in it.
pub(crate) enum IkeState {
    /// HDR, SAi1, KEi, Ni --> sent; waiting for the response.
    InitSent {
        ke: KeyExchange,
        ni: Vec<u8>,
        cookie: Option<Vec<u8>>,
        invalid_ke_retries: u32,
    },
    /// HDR, SK {IDi, AUTH, SAi2, TSi, TSr} --> sent.
    AuthSent {
        keys: SaKeys,
        ni: Vec<u8>,
        nr: Vec<u8>,
        msg2: Vec<u8>,
        child_spi: u32,
    },
    /// <-- HDR, SAr1, KEr, Nr sent; waiting for IKE_AUTH.
    InitReplied {
        keys: SaKeys,
        msg1: Vec<u8>,
        msg2: Vec<u8>,
        ni: Vec<u8>,
        nr: Vec<u8>,
    },
    Established {
        keys: SaKeys,
        established_at: Instant,
    },
    /// Delete(IKE) sent; waiting for its response (§1.4.1).
    Deleting { keys: SaKeys },
    /// Gone; kept only to answer retransmissions until `until`.
    Dead { until: Instant },
}

impl IkeState {
    pub fn name(&self) -> &'static str {
        match self {
            IkeState::InitSent { .. } => "connecting",
            IkeState::AuthSent { .. } => "authenticating",
            IkeState::InitReplied { .. } => "half-open",
            IkeState::Established { .. } => "established",
            IkeState::Deleting { .. } => "deleting",
            IkeState::Dead { .. } => "dead",
        }
    }

    pub fn keys(&self) -> Option<&SaKeys> {
        match self {
            IkeState::AuthSent { keys, .. }
            | IkeState::InitReplied { keys, .. }
            | IkeState::Established { keys, .. }
            | IkeState::Deleting { keys } => Some(keys),
            _ => None,
        }
    }
}

/// What our outstanding request was for, with what its response needs.
pub(crate) enum RequestKind {
    Init,
    Auth,
    DeleteIke,
    Informational,
    /// Dead peer detection probe (§1.4).
    Liveness,
    /// Delete of one of our CHILD SAs (by inbound SPI).
    DeleteChild(u32),
    /// CREATE_CHILD_SA for a new or rekeyed CHILD SA (§1.3.1, §1.3.3).
    CreateChild {
        rekey_of: Option<u32>,
        spi_in: u32,
        ni: Vec<u8>,
        ke: Option<KeyExchange>,
    },
    /// CREATE_CHILD_SA rekeying this IKE SA (§1.3.2).
    RekeyIke {
        new_spi_i: u64,
        ni: Vec<u8>,
        ke: KeyExchange,
    },
}

impl RequestKind {
    pub(crate) fn is_delete_ike(&self) -> bool {
        matches!(self, RequestKind::DeleteIke)
    }
}

/// Requests waiting for the window (§2.3: one outstanding request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    Liveness,
    RekeyChild(u32),
    DeleteChild(u32),
    RekeyIke,
}

/// Our outstanding request, retransmitted until answered (§2.1).
pub(crate) struct Pending {
    pub msg_id: u32,
    pub packet: Vec<u8>,
    pub kind: RequestKind,
    pub tries: u32,
    pub interval: Duration,
    pub deadline: Instant,
}

pub(crate) struct IkeSa {
    pub spi_i: u64,
    pub spi_r: u64,
    /// We are the original initiator of this IKE SA (§2.2: sets the I flag).
    pub initiator: bool,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub created: Instant,
    pub state: IkeState,
    pub next_msg_id: u32,
    pub pending: Option<Pending>,
    /// Message ID expected in the peer's next request, and our cached last response.
    pub peer_next_id: u32,
    pub last_response: Option<(u32, Vec<u8>)>,
    /// Detected or forced NAT: IKE floats to 4500 and ESP is UDP-encapsulated (§2.23).
    pub nat: bool,
    pub rekeys: u32,
    pub queued: VecDeque<Queued>,
}

/// Everything an exchange handler may touch besides its own IKE SA.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a SessionConfig,
    pub rng: &'a mut dyn Rng,
    pub out: &'a mut VecDeque<Datagram>,
    pub events: &'a mut VecDeque<Event>,
    pub children: &'a mut Vec<Child>,
    pub last_error: &'a mut Option<String>,
    /// IKE SAs created by this exchange (IKE rekey, §2.18).
    pub new_sas: &'a mut Vec<IkeSa>,
}

/// All IKE and CHILD SAs with one configured peer.
pub struct Session {
    cfg: SessionConfig,
    local: IpAddr,
    remote: IpAddr,
    sas: Vec<IkeSa>,
    children: Vec<Child>,
    out: VecDeque<Datagram>,
    events: VecDeque<Event>,
    rng: Box<dyn Rng + Send>,
    /// When to (re-)initiate, if we are the initiating side and no SA is up.
    initiate_at: Option<Instant>,
    reinit_delay: Duration,
    last_error: Option<String>,
    closing: bool,
}

impl Session {
    pub fn new(
        cfg: SessionConfig,
        local: IpAddr,
        remote: IpAddr,
        rng: Box<dyn Rng + Send>,
        now: Instant,
    ) -> Session {
        let initiate_at = cfg.initiate.then_some(now);
        Session {
            cfg,
            local,
            remote,
            sas: Vec::new(),
            children: Vec::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            rng,
            initiate_at,
            reinit_delay: limits::REINITIATE_DELAY,
            last_error: None,
            closing: false,
        }
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// True when this datagram belongs to this session's peer.
    pub fn matches(&self, d: &Datagram) -> bool {
        d.remote.ip() == self.remote && d.local.ip() == self.local
    }

    /// Starts an IKE SA now unless one is already up or under way.
    pub fn initiate(&mut self, now: Instant) {
        self.closing = false;
        if self
            .sas
            .iter()
            .any(|s| !matches!(s.state, IkeState::Dead { .. }))
        {
            return;
        }
        let spi_i = self.random_spi();
        let sa = IkeSa::new_initiator(
            spi_i,
            SocketAddr::new(self.local, limits::IKE_PORT),
            SocketAddr::new(self.remote, limits::IKE_PORT),
            now,
        );
        self.sas.push(sa);
        let idx = self.sas.len() - 1;
        self.with_sa(idx, now, |sa, ctx, now| sa.start(ctx, now));
    }

    /// Deletes every IKE SA (sending Delete) and stops re-initiating.
    pub fn close(&mut self, now: Instant) {
        self.closing = true;
        self.initiate_at = None;
        for idx in 0..self.sas.len() {
            self.with_sa(idx, now, |sa, ctx, now| sa.close(ctx, now));
        }
        self.drop_all_children();
    }

    /// Index of the newest established IKE SA.
    fn current(&self) -> Option<usize> {
        self.sas
            .iter()
            .rposition(|s| matches!(s.state, IkeState::Established { .. }))
    }

    fn enqueue(&mut self, now: Instant, q: Queued) -> bool {
        let Some(idx) = self.current() else {
            return false;
        };
        self.with_sa(idx, now, |sa, ctx, now| {
            if !sa.queued.contains(&q) {
                sa.queued.push_back(q);
            }
            sa.pump(ctx, now);
        });
        true
    }

    /// Rekeys the newest CHILD SA (§1.3.3); false if there is none or no IKE SA.
    pub fn rekey_child(&mut self, now: Instant) -> bool {
        match self.children.last().map(|c| c.spi_in) {
            Some(spi) => self.enqueue(now, Queued::RekeyChild(spi)),
            None => false,
        }
    }

    /// Rekeys the IKE SA (§1.3.2).
    pub fn rekey_ike(&mut self, now: Instant) -> bool {
        self.enqueue(now, Queued::RekeyIke)
    }

    /// Sends a liveness check (an empty INFORMATIONAL, §1.4).
    pub fn send_liveness(&mut self, now: Instant) -> bool {
        self.enqueue(now, Queued::Liveness)
    }

    fn random_spi(&mut self) -> u64 {
        loop {
            let mut b = [0u8; 8];
            self.rng.fill(&mut b);
            let spi = u64::from_be_bytes(b);
            if spi != 0 && !self.sas.iter().any(|s| s.spi_i == spi || s.spi_r == spi) {
                return spi;
            }
        }
    }

    fn with_sa<R>(
        &mut self,
        idx: usize,
        now: Instant,
        f: impl FnOnce(&mut IkeSa, &mut Ctx<'_>, Instant) -> R,
    ) -> R {
        let mut new_sas = Vec::new();
        let r = {
            let Session {
                cfg,
                sas,
                children,
                out,
                events,
                rng,
                last_error,
                ..
            } = self;
            let mut ctx = Ctx {
                cfg,
                rng: rng.as_mut(),
                out,
                events,
                children,
                last_error,
                new_sas: &mut new_sas,
            };
            f(&mut sas[idx], &mut ctx, now)
        };
        self.sas.extend(new_sas);
        self.after_change(now);
        r
    }

    /// Bookkeeping after any handler ran: drop children when no IKE SA is left,
    /// schedule re-initiation.
    fn after_change(&mut self, now: Instant) {
        let any_live = self.sas.iter().any(|s| {
            matches!(
                s.state,
                IkeState::Established { .. }
                    | IkeState::AuthSent { .. }
                    | IkeState::InitSent { .. }
            )
        });
        let any_established = self
            .sas
            .iter()
            .any(|s| matches!(s.state, IkeState::Established { .. }));
        if !any_established && !self.children.is_empty() {
            self.drop_all_children();
        }
        if any_established {
            self.reinit_delay = limits::REINITIATE_DELAY;
        }
        if self.cfg.initiate && !self.closing && !any_live && self.initiate_at.is_none() {
            self.initiate_at = Some(now + self.reinit_delay);
            self.reinit_delay = (self.reinit_delay * 2).min(limits::REINITIATE_MAX);
        }
    }

    fn drop_all_children(&mut self) {
        for c in self.children.drain(..) {
            self.events.push_back(Event::ChildDeleted {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            });
        }
    }

    /// Feeds one received IKE datagram.
    pub fn handle_datagram(&mut self, now: Instant, d: Datagram) {
        let header = match crate::wire::Header::decode(&d.data) {
            Ok(h) => h,
            Err(crate::wire::DecodeError::UnsupportedVersion(v)) => {
                tracing::debug!(tunnel = %self.cfg.name, version = v, "ignoring IKE message with unsupported major version");
                return;
            }
            Err(e) => {
                tracing::debug!(tunnel = %self.cfg.name, error = %e, "dropping malformed IKE message");
                return;
            }
        };
        let is_response = header.flags.response();
        let idx = self.sas.iter().position(|s| {
            s.spi_i == header.spi_i
                && (s.spi_r == header.spi_r
                    || (header.spi_r == 0 && !is_response && !s.initiator)
                    || (s.spi_r == 0 && is_response && s.initiator))
        });
        match idx {
            Some(i) => self.with_sa(i, now, |sa, ctx, now| sa.handle(ctx, now, &d, &header)),
            None if header.exchange == crate::iana::ExchangeType::IKE_SA_INIT
                && header.spi_r == 0
                && !is_response
                && header.message_id == 0 =>
            {
                if self.closing {
                    return;
                }
                let spi_r = self.random_spi();
                let mut sa = IkeSa::new_responder(header.spi_i, spi_r, d.local, d.remote, now);
                let keep = {
                    let mut new_sas = Vec::new();
                    let Session {
                        cfg,
                        children,
                        out,
                        events,
                        rng,
                        last_error,
                        ..
                    } = self;
                    let mut ctx = Ctx {
                        cfg,
                        rng: rng.as_mut(),
                        out,
                        events,
                        children,
                        last_error,
                        new_sas: &mut new_sas,
                    };
                    sa.handle_init_request(&mut ctx, &d)
                };
                if keep {
                    self.sas.push(sa);
                }
                self.after_change(now);
            }
            None => {
                tracing::debug!(tunnel = %self.cfg.name, spi_i = format_args!("{:016x}", header.spi_i),
                    spi_r = format_args!("{:016x}", header.spi_r), exchange = %header.exchange,
                    "dropping IKE message for unknown SA");
            }
        }
    }

    /// Runs timers: retransmissions, give-up, re-initiation, expiry of dead SAs.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(t) = self.initiate_at {
            if now >= t {
                self.initiate_at = None;
                self.initiate(now);
            }
        }
        for idx in 0..self.sas.len() {
            self.with_sa(idx, now, |sa, ctx, now| sa.handle_timeout(ctx, now));
        }
        self.sas
            .retain(|s| !matches!(s.state, IkeState::Dead { until } if until <= now));
        self.after_change(now);
    }

    /// The earliest instant at which [`Session::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sa_deadlines = self.sas.iter().filter_map(|s| s.next_deadline());
        sa_deadlines.chain(self.initiate_at).min()
    }

    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.out.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// True while at least one IKE SA is established.
    pub fn is_established(&self) -> bool {
        self.sas
            .iter()
            .any(|s| matches!(s.state, IkeState::Established { .. }))
    }

    pub fn status(&self, now: Instant) -> SessionStatus {
        SessionStatus {
            ike_sas: self
                .sas
                .iter()
                .filter(|s| !matches!(s.state, IkeState::Dead { .. }))
                .map(|s| IkeSaStatus {
                    state: s.state.name(),
                    initiator: s.initiator,
                    spi_i: s.spi_i,
                    spi_r: s.spi_r,
                    proposal: s
                        .state
                        .keys()
                        .map(|k| k.sel.to_string())
                        .unwrap_or_default(),
                    remote: s.remote,
                    age: now.saturating_duration_since(match s.state {
                        IkeState::Established { established_at, .. } => established_at,
                        _ => s.created,
                    }),
                    rekeys: s.rekeys,
                })
                .collect(),
            children: self
                .children
                .iter()
                .map(|c| (c.clone(), now.saturating_duration_since(c.created)))
                .collect(),
            last_error: self.last_error.clone(),
        }
    }
}

/// The KE group we start with: the first group of our first IKE proposal (§1.2).
pub(crate) fn initial_group(cfg: &SessionConfig) -> DhId {
    cfg.ike
        .iter()
        .flat_map(|p| p.dh.iter())
        .copied()
        .next()
        .unwrap_or(DhId::CURVE25519)
}

#[cfg(test)]
mod tests;
