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
use crate::wire::{IdPayload, Payload, TrafficSelector};
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
    /// Rekey the IKE SA / CHILD SAs after these (less a random margin, §2.8).
    pub ike_lifetime: Duration,
    pub child_lifetime: Duration,
    /// Send a liveness check after this long without an authenticated message or
    /// inbound ESP from the peer (§1.4); None disables it.
    pub dpd: Option<Duration>,
    /// Re-initiate after the peer was found dead, even when `initiate` is false.
    pub dpd_restart: bool,
    /// Largest encrypted IKE message sent whole; larger ones are fragmented (RFC 7383).
    pub fragment_size: usize,
    /// §2.4: first retransmission timeout (doubled each time, capped) and how many
    /// retransmissions before the peer is declared dead.
    pub retransmit_timeout: Duration,
    pub retransmit_tries: u32,
}

/// `d` less a random margin of up to 10 % (§2.8: randomized rekey times make
/// simultaneous rekeys unlikely).
fn jittered(rng: &mut dyn Rng, d: Duration) -> Duration {
    let mut b = [0u8; 2];
    rng.fill(&mut b);
    let frac = u16::from_be_bytes(b) as u32;
    d - (d / 10) * frac / u16::MAX as u32
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
    /// The peer came back with INITIAL_CONTACT (§2.4): its old SAs are gone.
    PeerRestarted,
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
            CloseReason::PeerRestarted => f.write_str("peer restarted (INITIAL_CONTACT)"),
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
    /// Delete a CHILD SA we created but lost a rekey collision with (§2.8.1); it was
    /// never installed here.
    DeleteRedundant(u32),
    RekeyIke,
    /// A fresh CHILD SA for a tunnel that lost its last one (§1.3.1).
    NewChild,
}

/// Our outstanding request, retransmitted until answered (§2.1).
pub(crate) struct Pending {
    pub msg_id: u32,
    /// The request's datagrams: one, or its fragments (RFC 7383).
    pub packets: Vec<Vec<u8>>,
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
    pub last_response: Option<(u32, Vec<Vec<u8>>)>,
    /// Both ends announced IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383 §2.3).
    pub frag_ok: bool,
    /// Fragments of an incoming message being collected (RFC 7383 §2.6).
    pub reassembly: Option<protect::Reassembly>,
    /// A NAT in front of us (the peer's NAT_DETECTION_DESTINATION_IP did not match):
    /// keepalives hold its mapping open (RFC 3948 §4).
    pub behind_nat: bool,
    pub last_tx: Instant,
    /// Detected or forced NAT: IKE floats to 4500 and ESP is UDP-encapsulated (§2.23).
    pub nat: bool,
    pub rekeys: u32,
    pub queued: VecDeque<Queued>,
    /// When to rekey this SA (set once it is established).
    pub rekey_at: Option<Instant>,
    /// Last authenticated message (or ESP traffic) from the peer, for liveness checks.
    pub last_rx: Instant,
    /// Ni and Nr of IKE_SA_INIT, to settle duplicate IKE SAs.
    pub nonces: Option<(Vec<u8>, Vec<u8>)>,
    /// The peer's rekey of this IKE SA that crossed ours (§2.8.2): its Ni, our Nr and
    /// the SPIi of the SA it created.
    pub peer_ike_rekey: Option<(Vec<u8>, Vec<u8>, u64)>,
    /// SPIi of the IKE SA that replaced this one (§2.18): CHILD SAs negotiated here
    /// after the rekey, and requests still queued here, belong to it.
    pub successor: Option<u64>,
}

/// The lowest of an IKE SA's two nonces.
fn min_nonce(sa: &IkeSa) -> &[u8] {
    match &sa.nonces {
        Some((a, b)) => a.min(b),
        None => &[],
    }
}

/// §2.8.1: compare nonces as unsigned numbers of their common length.
pub(crate) fn lowest_is_ours(ours: [&[u8]; 2], theirs: [&[u8]; 2]) -> bool {
    let m_ours = ours[0].min(ours[1]);
    let m_theirs = theirs[0].min(theirs[1]);
    m_ours < m_theirs
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
    /// The peer authenticated with INITIAL_CONTACT: drop its older SAs.
    pub initial_contact: bool,
    pub now: Instant,
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
    /// The peer was found dead and `dpd_restart` asks us to bring the tunnel back.
    restart: bool,
    /// The peer was found dead and `dpd_action = clear`: stay down until told otherwise.
    cleared: bool,
    /// Secret for stateless COOKIEs (§2.6).
    cookie_secret: Zeroizing<[u8; 32]>,
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
        let mut rng = rng;
        let mut cookie_secret = Zeroizing::new([0u8; 32]);
        rng.fill(cookie_secret.as_mut());
        Session {
            cookie_secret,
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
            restart: false,
            cleared: false,
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
        self.cleared = false;
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

    /// §2.6: once too many IKE_SA_INITs from this peer's address are half-open, new
    /// ones must echo a stateless COOKIE first. Returns false if the request was
    /// answered with a COOKIE (or dropped) instead.
    fn cookie_ok(&mut self, d: &Datagram, header: &crate::wire::Header) -> bool {
        let half_open = self
            .sas
            .iter()
            .filter(|s| matches!(s.state, IkeState::InitReplied { .. }))
            .count();
        if half_open < limits::COOKIE_THRESHOLD {
            return true;
        }
        let Ok(msg) = crate::wire::Message::decode(&d.data) else {
            return false;
        };
        let Some(ni) = find!(msg.payloads, Nonce) else {
            return false;
        };
        let expect = self.cookie(ni, d.remote.ip(), header.spi_i);
        // §2.6: the COOKIE notification comes first.
        let echoed = matches!(msg.payloads.first(),
            Some(Payload::Notify(n)) if n.ty == crate::iana::NotifyType::COOKIE && crate::crypto::ct_eq(&n.data, &expect));
        if echoed {
            return true;
        }
        tracing::debug!(tunnel = %self.cfg.name, half_open, "asking initiator for a COOKIE");
        let mut h = *header;
        h.flags = crate::wire::Flags(0x20);
        let reply = crate::wire::Message {
            header: h,
            payloads: vec![Payload::Notify(crate::wire::NotifyPayload {
                protocol: crate::iana::ProtocolId::NONE,
                spi: vec![],
                ty: crate::iana::NotifyType::COOKIE,
                data: expect,
            })],
        };
        self.out.push_back(Datagram {
            local: d.local,
            remote: d.remote,
            data: reply.encode(),
        });
        false
    }

    /// Cookie = VersionIDofSecret | prf(secret, Ni | IPi | SPIi) (§2.6).
    fn cookie(&self, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
        use aws_lc_rs::hmac;
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.cookie_secret.as_ref());
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(ni);
        match ip {
            IpAddr::V4(v) => ctx.update(&v.octets()),
            IpAddr::V6(v) => ctx.update(&v.octets()),
        }
        ctx.update(&spi_i.to_be_bytes());
        let mut out = vec![1u8];
        out.extend_from_slice(&ctx.sign().as_ref()[..16]);
        out
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
        let r = self.with_sa_no_bookkeeping(idx, now, f);
        self.after_change(now);
        r
    }

    fn with_sa_no_bookkeeping<R>(
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
                initial_contact: false,
                now,
            };
            let r = f(&mut sas[idx], &mut ctx, now);
            if ctx.initial_contact {
                // §2.4: the peer lost all state; its SAs that were up before this
                // exchange are stale. (A grace period tells these apart from an SA the
                // peer set up at the same moment as this one.)
                for (i, sa) in sas.iter_mut().enumerate() {
                    let old = matches!(sa.state, IkeState::Established { established_at, .. }
                        if established_at + limits::INITIAL_CONTACT_GRACE <= now);
                    if i != idx && old {
                        tracing::info!(tunnel = %cfg.name, spi_i = format_args!("{:016x}", sa.spi_i),
                            "peer restarted (INITIAL_CONTACT): dropping its old IKE SA");
                        events.push_back(Event::IkeClosed {
                            spi_i: sa.spi_i,
                            spi_r: sa.spi_r,
                            reason: CloseReason::PeerRestarted,
                        });
                        sa.pending = None;
                        sa.state = IkeState::Dead { until: now };
                    }
                }
            }
            r
        };
        self.sas.extend(new_sas);
        r
    }

    /// Bookkeeping after any handler ran: drop children when no IKE SA is left,
    /// schedule re-initiation.
    fn after_change(&mut self, now: Instant) {
        // Requests queued on a rekeyed-away IKE SA move to its successor (§2.18).
        for i in 0..self.sas.len() {
            if matches!(self.sas[i].state, IkeState::Established { .. })
                || self.sas[i].queued.is_empty()
            {
                continue;
            }
            let Some(succ) = self.sas[i].successor else {
                continue;
            };
            let moved: Vec<Queued> = self.sas[i]
                .queued
                .drain(..)
                .filter(|q| !matches!(q, Queued::RekeyIke | Queued::Liveness))
                .collect();
            if let Some(j) = self.sas.iter().position(|s| s.spi_i == succ) {
                self.sas[j].queued.extend(moved);
                self.with_sa_no_bookkeeping(j, now, |sa, ctx, now| sa.pump(ctx, now));
            }
        }
        for sa in &mut self.sas {
            if sa.rekey_at.is_none() && matches!(sa.state, IkeState::Established { .. }) {
                sa.rekey_at = Some(now + jittered(self.rng.as_mut(), self.cfg.ike_lifetime));
            }
        }
        for c in &mut self.children {
            if c.rekey_at.is_none() {
                c.rekey_at = Some(now + jittered(self.rng.as_mut(), self.cfg.child_lifetime));
            }
        }
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
        // CHILD SAs die with the IKE SA that owns them (§1.4.1).
        let owned = |c: &Child| {
            self.sas.iter().any(|s| {
                s.spi_i == c.owner
                    && matches!(
                        s.state,
                        IkeState::Established { .. } | IkeState::Deleting { .. }
                    )
            })
        };
        let (keep, gone): (Vec<Child>, Vec<Child>) = std::mem::take(&mut self.children)
            .into_iter()
            .partition(|c| owned(c));
        self.children = keep;
        for c in gone {
            self.events.push_back(Event::ChildDeleted {
                spi_in: c.spi_in,
                spi_out: c.spi_out,
            });
        }
        if any_established {
            self.reinit_delay = limits::REINITIATE_DELAY;
            self.restart = false;
            self.cleared = false;
            self.resolve_duplicates(now);
        }
        if ((self.cfg.initiate && !self.cleared) || self.restart)
            && !self.closing
            && !any_live
            && self.initiate_at.is_none()
        {
            self.initiate_at = Some(now + self.reinit_delay);
            self.reinit_delay = (self.reinit_delay * 2).min(limits::REINITIATE_MAX);
        }
    }

    /// Both ends initiated at once and two IKE SAs came up (§2.8 gives no rule; we use
    /// the rekey-collision one): the SA holding the lowest nonce is deleted by its
    /// original initiator, together with its CHILD SAs; the other carries on.
    fn resolve_duplicates(&mut self, now: Instant) {
        let est: Vec<usize> = self
            .sas
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                matches!(s.state, IkeState::Established { .. })
                    && s.rekeys == 0
                    && s.nonces.is_some()
            })
            .map(|(i, _)| i)
            .collect();
        if est.len() < 2 {
            return;
        }
        let lowest = est
            .iter()
            .copied()
            .min_by(|a, b| min_nonce(&self.sas[*a]).cmp(min_nonce(&self.sas[*b])))
            .expect("two or more");
        if self.sas[lowest].initiator {
            tracing::info!(tunnel = %self.cfg.name, spi_i = format_args!("{:016x}", self.sas[lowest].spi_i),
                "both ends initiated: deleting our duplicate IKE SA");
            self.with_sa_no_bookkeeping(lowest, now, |sa, ctx, now| sa.close_redundant(ctx, now));
        } else {
            // The peer deletes it; keep it from being counted again meanwhile.
            self.sas[lowest].nonces = None;
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
                if !self.cookie_ok(&d, &header) {
                    return;
                }
                let spi_r = self.random_spi();
                self.sas.push(IkeSa::new_responder(
                    header.spi_i,
                    spi_r,
                    d.local,
                    d.remote,
                    now,
                ));
                let idx = self.sas.len() - 1;
                let keep = self
                    .with_sa_no_bookkeeping(idx, now, |sa, ctx, _| sa.handle_init_request(ctx, &d));
                if !keep {
                    // Refused statelessly: nothing of it stays (a retransmission is
                    // answered the same way).
                    self.sas.remove(idx);
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
            let timed_out =
                self.with_sa_no_bookkeeping(idx, now, |sa, ctx, now| sa.handle_timeout(ctx, now));
            if timed_out && matches!(self.sas[idx].state, IkeState::Dead { .. }) {
                // Found dead: `dpd_action` decides whether we bring it back.
                if self.cfg.dpd_restart {
                    self.restart = true;
                } else {
                    self.cleared = true;
                }
            }
        }
        self.sas
            .retain(|s| !matches!(s.state, IkeState::Dead { until } if until <= now));
        self.run_lifetimes(now);
        self.after_change(now);
    }

    /// Scheduled rekeys (§2.8) and liveness checks (§1.4).
    fn run_lifetimes(&mut self, now: Instant) {
        let Some(cur) = self.current() else {
            return;
        };
        let retry = limits::REKEY_RETRY;
        let mut queue = Vec::new();
        for c in &mut self.children {
            if c.rekey_at.is_some_and(|t| t <= now) {
                c.rekey_at = Some(now + retry);
                // A replaced SA whose DELETE never came is deleted by us instead.
                queue.push(if c.superseded {
                    Queued::DeleteChild(c.spi_in)
                } else {
                    Queued::RekeyChild(c.spi_in)
                });
            }
        }
        for (i, sa) in self.sas.iter_mut().enumerate() {
            if !matches!(sa.state, IkeState::Established { .. }) {
                continue;
            }
            if i == cur && sa.rekey_at.is_some_and(|t| t <= now) {
                sa.rekey_at = Some(now + retry);
                if !sa.queued.contains(&Queued::RekeyIke) {
                    sa.queued.push_back(Queued::RekeyIke);
                }
            }
            if sa.behind_nat && now >= sa.last_tx + limits::NATT_KEEPALIVE {
                // RFC 3948 §2.3: a single 0xFF octet on port 4500 (sent without marker).
                sa.last_tx = now;
                self.out.push_back(Datagram {
                    local: sa.local,
                    remote: sa.remote,
                    data: vec![limits::NATT_KEEPALIVE_BYTE],
                });
            }
            if let Some(dpd) = self.cfg.dpd {
                if now >= sa.last_rx + dpd && sa.pending.is_none() {
                    sa.last_rx = now;
                    sa.queued.push_back(Queued::Liveness);
                }
            }
        }
        if let Some(sa) = self.sas.get_mut(cur) {
            for q in queue {
                if !sa.queued.contains(&q) {
                    sa.queued.push_back(q);
                }
            }
        }
        for idx in 0..self.sas.len() {
            self.with_sa_no_bookkeeping(idx, now, |sa, ctx, now| sa.pump(ctx, now));
        }
    }

    /// Inbound ESP traffic proves the peer alive (no liveness check needed).
    pub fn note_inbound_traffic(&mut self, now: Instant) {
        if let Some(cur) = self.current() {
            self.sas[cur].last_rx = now;
        }
    }

    /// Rekeys the CHILD SA with this inbound SPI now (byte/packet lifetime reached).
    pub fn rekey_child_spi(&mut self, now: Instant, spi_in: u32) -> bool {
        match self.children.iter_mut().find(|c| c.spi_in == spi_in) {
            Some(c) => {
                c.rekey_at = Some(now + limits::REKEY_RETRY);
                self.enqueue(now, Queued::RekeyChild(spi_in))
            }
            None => false,
        }
    }

    /// The earliest instant at which [`Session::handle_timeout`] must run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sa_deadlines = self.sas.iter().filter_map(|s| s.next_deadline());
        let lifetimes = self
            .sas
            .iter()
            .filter(|s| matches!(s.state, IkeState::Established { .. }))
            .flat_map(|s| {
                let dpd = self
                    .cfg
                    .dpd
                    .map(|d| s.last_rx + d)
                    .filter(|_| s.pending.is_none());
                let keepalive = s.behind_nat.then_some(s.last_tx + limits::NATT_KEEPALIVE);
                [s.rekey_at, dpd, keepalive]
            });
        let children = self.children.iter().filter_map(|c| c.rekey_at);
        sa_deadlines
            .chain(lifetimes.flatten())
            .chain(children)
            .chain(self.initiate_at)
            .min()
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
