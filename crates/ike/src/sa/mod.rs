//! IKE SA and CHILD SA state machines for one configured peer (a "session").
//!
//! Sans-IO: datagrams and `now` go in through `handle_*`; datagrams to send, the next
//! deadline and events come out through `poll_*`.
//!
//! One file per exchange, both roles in each (as strongSwan's tasks):
//! - `ike_init.rs`: IKE_SA_INIT, cookies (§2.6), NAT detection (§2.23);
//! - `ike_auth.rs`: IKE_AUTH and the first CHILD SA (§1.2);
//! - `child_create.rs`: CREATE_CHILD_SA for new and rekeyed CHILD SAs (§1.3.1, §1.3.3);
//! - `ike_rekey.rs`: IKE SA rekeys and collisions (§1.3.2, §2.8.2), duplicate IKE SAs;
//! - `informational.rs`: delete, liveness checks, closing (§1.4);
//! - `ike_sa.rs`: one IKE SA's send/receive, dispatch, retransmission; `state.rs`: its
//!   states (`IkeState`) and what each owns;
//! - `timers.rs`: every timer and its deadline; `error.rs`: errors and their Notify;
//! - `session.rs`: bookkeeping between the API below and the IKE SAs;
//! - `resources.rs`: RFC 9611 per-resource CHILD SAs (one per dataplane worker);
//! - `child.rs`: CHILD SAs as tracked and installed; `protect.rs`: SK/SKF payloads;
//! - `payloads.rs`: building and finding payloads, nonces and SPIs.

macro_rules! find {
    ($payloads:expr, $variant:ident) => {
        $payloads.iter().find_map(|p| match p {
            Payload::$variant(x) => Some(x),
            _ => None,
        })
    };
}

mod cert_auth;
mod child;
mod child_create;
mod error;
mod ike_auth;
mod ike_init;
mod ike_rekey;
mod ike_sa;
mod informational;
mod mobike;
mod payloads;
pub mod protect;
mod resources;
mod session;
mod state;
mod timers;

pub use child::{ts_to_string, Child, ChildSaInfo};

use ike_sa::{IkeSa, IkeState, Queued};

use crate::iana::NotifyType;
use crate::limits;
use crate::proposal::{self, AlgorithmProposal};
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
    /// Authenticate with certificates instead of `psk` (RFC 7296 §2.15, RFC 7427).
    pub cert: Option<std::sync::Arc<crate::cert::CertAuth>>,
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
    /// Other sessions may expect a peer that reaches this one: an IKE_AUTH whose IDi is
    /// not `remote_id` is held and reported ([`Event::PeerIdentity`]) instead of refused,
    /// so the caller can hand it to the session that expects it (§2.15, as strongSwan
    /// picks its peer config by IDi).
    pub select_by_identity: bool,
    /// Offer and accept MOBIKE (RFC 4555) in IKE_AUTH.
    pub mobike: bool,
    /// Inbound ESP SPIs are picked in this lane (see [`SpiLane`]); any SPI when `None`.
    pub esp_spi_lane: Option<SpiLane>,
    /// RFC 9611 per-resource CHILD SAs: 0 = off (SA_RESOURCE_INFO never sent nor
    /// echoed); 1 = supported (echoed, the peer's per-resource CHILD SAs accepted) but no
    /// extra ones created; n > 1 = as IKE SA initiator, create n-1 extra CHILD SAs once
    /// the peer has shown support (resource r's inbound SPIs in lane `lane + r`).
    pub resources: u32,
}

/// Inbound ESP SPIs ≡ `lane` (mod `lanes`): a dataplane that steers received ESP to its
/// workers by SPI (SPI mod lanes) then delivers this session's ESP to the worker that
/// also sends it, so an SA's state stays on one core. The SPI stays random otherwise
/// (RFC 4303 §2.1 asks only that it be unique and not 1..=255).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpiLane {
    pub lane: u32,
    pub lanes: u32,
}

impl SpiLane {
    /// `spi` moved into the lane (its residue replaced), if that stays a valid SPI.
    pub fn fit(self, spi: u32) -> Option<u32> {
        if self.lanes <= 1 {
            return Some(spi);
        }
        let lane = self.lane % self.lanes;
        (spi - spi % self.lanes)
            .checked_add(lane)
            .filter(|s| *s > 255)
    }

    /// The lane of per-resource CHILD SA `resource` (RFC 9611): the `resource`-th lane
    /// after this one, round-robin, so each resource's ESP lands on its own worker.
    pub fn for_resource(self, resource: u32) -> SpiLane {
        if self.lanes <= 1 {
            return self;
        }
        let lane =
            (u64::from(self.lane % self.lanes) + u64::from(resource)) % u64::from(self.lanes);
        SpiLane {
            lane: lane as u32,
            lanes: self.lanes,
        }
    }
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
    /// IKE_AUTH from an identity this session does not expect (`select_by_identity`):
    /// the caller moves the SA to the session that expects `id_i` with
    /// [`Session::detach`] and [`Session::adopt`], or refuses it with
    /// [`Session::refuse_identity`]. Nothing is authenticated yet.
    PeerIdentity {
        spi_i: u64,
        spi_r: u64,
        id_i: IdPayload,
        /// The initiator's hint of whom it wants to reach (§3.5), if sent.
        id_r: Option<IdPayload>,
        /// Where the IKE_AUTH came from.
        peer: SocketAddr,
    },
    /// An authenticated IKE message came from a new address or port (§2.23: a NAT
    /// mapping changed or the peer moved): ESP follows it.
    PeerMoved {
        remote: SocketAddr,
    },
}

/// An IKE SA on its way from one session to another ([`Session::detach`]).
pub struct DetachedSa(IkeSa);

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
    /// The peer's certificate as last validated (certificate authentication).
    pub peer_cert: Option<crate::cert::CertInfo>,
    /// How soon the CHILD SAs the tunnel lacks are created (again), if that is due.
    pub child_refill_in: Option<Duration>,
}

/// Where the session stands as a whole: whether it brings the tunnel (back) up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    /// Follows `initiate` from the configuration.
    Active,
    /// The peer was found dead and `dpd_restart` asks us to bring the tunnel back.
    Restarting,
    /// The peer was found dead and `dpd_action = clear`: stay down until told otherwise.
    Cleared,
    /// [`Session::close`] ran: no re-initiation, no new IKE SAs from the peer.
    /// `restart` remembers a pending DPD restart for a later [`Session::initiate`].
    Closing { restart: bool },
}

/// Where the peer is, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerAddr {
    /// `%any`: any address; such a session only responds.
    Any,
    At(IpAddr),
    /// A name that does not resolve (yet): no address is the peer's.
    Unresolved,
}

/// All IKE and CHILD SAs with one configured peer.
pub struct Session {
    cfg: SessionConfig,
    local: IpAddr,
    remote: PeerAddr,
    sas: Vec<IkeSa>,
    children: Vec<Child>,
    out: VecDeque<Datagram>,
    events: VecDeque<Event>,
    rng: Box<dyn Rng + Send>,
    /// When to (re-)initiate, if we are the initiating side and no SA is up.
    initiate_at: Option<Instant>,
    reinit_delay: Duration,
    last_error: Option<String>,
    lifecycle: Lifecycle,
    /// Stateless COOKIEs (§2.6): secrets, and how many new IKE_SA_INITs arrived lately.
    cookies: ike_init::Cookies,
    /// Rate limit of the log lines for refused IKE_SA_INITs.
    refusals: error::RefusalLog,
    /// Half-open IKE SAs last added to the daemon-wide [`crate::Admission`].
    admitted_half_open: usize,
    /// Wall-clock seconds since the Unix epoch, as the caller last set it (certificate
    /// validity; the crate never reads a clock).
    unix_time: u64,
    /// The peer's certificate as last validated.
    peer_cert: Option<crate::cert::CertInfo>,
    /// Creating the CHILD SAs the session lacks (`resources.rs`).
    refill: resources::Refill,
}

impl Session {
    pub fn new(
        cfg: SessionConfig,
        local: IpAddr,
        remote: impl Into<Option<IpAddr>>,
        rng: Box<dyn Rng + Send>,
        now: Instant,
    ) -> Session {
        let remote = remote.into().map_or(PeerAddr::Any, PeerAddr::At);
        let initiate_at = (cfg.initiate && matches!(remote, PeerAddr::At(_))).then_some(now);
        let mut rng = rng;
        Session {
            cookies: ike_init::Cookies::new(rng.as_mut(), now),
            refusals: error::RefusalLog::new(),
            admitted_half_open: 0,
            unix_time: 0,
            peer_cert: None,
            refill: Default::default(),
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
            lifecycle: Lifecycle::Active,
        }
    }

    /// Picks later inbound ESP SPIs in this lane (the dataplane's worker for the tunnel).
    pub fn set_esp_spi_lane(&mut self, lane: Option<SpiLane>) {
        self.cfg.esp_spi_lane = lane;
    }

    /// How many per-resource CHILD SAs to create or accept (see
    /// [`SessionConfig::resources`]); applies to IKE SAs established from now on.
    pub fn set_resources(&mut self, n: u32) {
        self.cfg.resources = n;
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Sets the wall-clock time (seconds since the Unix epoch) that certificates are
    /// validated at; the daemon calls it before each `handle_*`.
    pub fn set_unix_time(&mut self, secs: u64) {
        self.unix_time = secs;
    }

    /// True when this session may answer a new IKE_SA_INIT from `d`'s sender: it
    /// reached our address (any, when ours is dynamic: unspecified) from the configured
    /// peer address (any, with `%any`).
    pub fn accepts_peer(&self, d: &Datagram) -> bool {
        (self.local.is_unspecified() || d.local.ip() == self.local)
            && match self.remote {
                PeerAddr::Any => true,
                PeerAddr::At(r) => r == d.remote.ip(),
                PeerAddr::Unresolved => false,
            }
    }

    /// Where the current IKE SA's peer is (it may have moved since it was configured).
    pub fn peer_address(&self) -> Option<SocketAddr> {
        self.current().map(|i| self.sas[i].remote)
    }

    /// The configured peer address; None for `%any` or an unresolved name.
    pub fn configured_peer(&self) -> Option<IpAddr> {
        match self.remote {
            PeerAddr::At(r) => Some(r),
            PeerAddr::Any | PeerAddr::Unresolved => None,
        }
    }

    /// The peer's name resolved to `addr` (None: it did not resolve). Its SAs stay where
    /// they are; the next initiation goes to the new address, and it is the only one
    /// whose new IKE_SA_INITs this session answers.
    pub fn set_peer_address(&mut self, now: Instant, addr: Option<IpAddr>) {
        let was = self.remote;
        self.remote = addr.map_or(PeerAddr::Unresolved, PeerAddr::At);
        if was != self.remote {
            tracing::info!(tunnel = %self.cfg.name, peer = ?addr, "peer address resolved");
        }
        // The first address of a peer we initiate to: bring the tunnel up now.
        if was == PeerAddr::Unresolved && addr.is_some() && self.sas.is_empty() {
            self.after_change(now);
            if self.initiate_at.is_some() {
                self.initiate_at = Some(now);
            }
        }
    }

    /// True when a message with this header belongs to one of this session's IKE SAs
    /// (by SPIs, wherever it comes from: §2.23 lets the peer's address change).
    pub fn owns(&self, header: &crate::wire::Header) -> bool {
        self.sa_index(header).is_some()
    }

    fn sa_index(&self, header: &crate::wire::Header) -> Option<usize> {
        let is_response = header.flags.response();
        self.sas.iter().position(|s| {
            s.spi_i == header.spi_i
                && (s.spi_r == header.spi_r
                    || (header.spi_r == 0 && !is_response && !s.initiator)
                    || (s.spi_r == 0 && is_response && s.initiator))
        })
    }

    /// Takes out the SA that [`Event::PeerIdentity`] reported, keeping `admission`'s
    /// half-open count current; None if it is gone (expired, or already handled).
    pub fn detach(
        &mut self,
        spi_i: u64,
        spi_r: u64,
        admission: &mut crate::Admission,
    ) -> Option<DetachedSa> {
        let i = self.parked_index(spi_i, spi_r)?;
        let sa = self.sas.remove(i);
        self.sync_admission(admission);
        Some(DetachedSa(sa))
    }

    /// The SA that [`Event::PeerIdentity`] reported, while it waits for a session.
    fn parked_index(&self, spi_i: u64, spi_r: u64) -> Option<usize> {
        self.sas.iter().position(|s| {
            s.spi_i == spi_i && s.spi_r == spi_r && matches!(s.state, IkeState::AwaitingTunnel(_))
        })
    }

    /// The IKE suite negotiated for the SA that [`Event::PeerIdentity`] reported.
    pub fn parked_suite(&self, spi_i: u64, spi_r: u64) -> Option<proposal::Selected> {
        let i = self.parked_index(spi_i, spi_r)?;
        self.sas[i].state.keys().map(|k| k.sel)
    }

    /// True when this session's `ike` proposals would have chosen `sel` (an IKE SA
    /// whose IKE_SA_INIT ran under another session's proposals).
    pub fn accepts_ike_suite(&self, sel: &proposal::Selected) -> bool {
        proposal::offers(&self.cfg.ike, sel)
    }

    /// Takes a detached SA and answers its held IKE_AUTH with this session's identity
    /// and credentials (AUTH is verified here, never by the session that detached it).
    pub fn adopt(&mut self, now: Instant, sa: DetachedSa, admission: &mut crate::Admission) {
        self.sync_admission(admission);
        self.sas.push(sa.0);
        let idx = self.sas.len() - 1;
        self.with_sa(idx, now, |sa, ctx, now| {
            sa.resume_auth_request(ctx, now, None)
        });
        self.sync_admission(admission);
    }

    /// Refuses the IKE_AUTH that [`Event::PeerIdentity`] reported (AUTHENTICATION_FAILED,
    /// §2.21.2), saying `why` in the log.
    pub fn refuse_identity(
        &mut self,
        now: Instant,
        spi_i: u64,
        spi_r: u64,
        why: String,
        admission: &mut crate::Admission,
    ) {
        let Some(idx) = self.parked_index(spi_i, spi_r) else {
            return;
        };
        self.with_sa(idx, now, |sa, ctx, now| {
            sa.resume_auth_request(ctx, now, Some(why))
        });
        self.sync_admission(admission);
    }

    /// Authenticated ESP of this session came from `remote` (a NAT mapping changed):
    /// IKE follows it too (§2.23).
    pub fn peer_moved(&mut self, remote: SocketAddr) {
        if let Some(cur) = self.current() {
            let sa = &mut self.sas[cur];
            if sa.remote != remote {
                tracing::info!(tunnel = %self.cfg.name, from = %sa.remote, to = %remote,
                    "peer moved (authenticated ESP from a new address): following it");
                sa.remote = remote;
            }
        }
    }

    /// Starts an IKE SA now unless one is already up or under way.
    pub fn initiate(&mut self, now: Instant) {
        self.lifecycle = match self.lifecycle {
            Lifecycle::Restarting | Lifecycle::Closing { restart: true } => Lifecycle::Restarting,
            _ => Lifecycle::Active,
        };
        if self
            .sas
            .iter()
            .any(|s| !matches!(s.state, IkeState::Dead { .. }))
        {
            return;
        }
        // `%any`: we do not know where the peer is; it initiates.
        let Some(remote) = self.configured_peer() else {
            return;
        };
        let spi_i = self.random_spi();
        let sa = IkeSa::new_initiator(
            spi_i,
            SocketAddr::new(self.local, limits::IKE_PORT),
            SocketAddr::new(remote, limits::IKE_PORT),
            now,
        );
        self.sas.push(sa);
        let idx = self.sas.len() - 1;
        self.with_sa(idx, now, |sa, ctx, now| sa.start(ctx, now));
    }

    /// Deletes every IKE SA (sending Delete) and stops re-initiating.
    pub fn close(&mut self, now: Instant) {
        self.lifecycle = Lifecycle::Closing {
            restart: matches!(
                self.lifecycle,
                Lifecycle::Restarting | Lifecycle::Closing { restart: true }
            ),
        };
        self.initiate_at = None;
        for idx in 0..self.sas.len() {
            self.with_sa(idx, now, |sa, ctx, now| sa.close(ctx, now));
        }
        self.drop_all_children();
    }

    /// Rekeys the newest CHILD SA (§1.3.3); false if there is none or no IKE SA.
    pub fn rekey_child(&mut self, now: Instant) -> bool {
        match self.children.last().map(|c| c.spi_in) {
            Some(spi) => self.enqueue(now, Queued::RekeyChild(spi)),
            None => false,
        }
    }

    /// Deletes one of our CHILD SAs, named by its inbound SPI, and keeps the IKE SA
    /// (§1.4.1); false if there is no such SA or no IKE SA. A routevpn peer creates it
    /// again (`resources.rs`), as after strongSwan's `swanctl --terminate --child`.
    pub fn delete_child(&mut self, now: Instant, spi_in: u32) -> bool {
        self.children.iter().any(|c| c.spi_in == spi_in)
            && self.enqueue(now, Queued::DeleteChild(spi_in))
    }

    /// Rekeys the IKE SA (§1.3.2).
    pub fn rekey_ike(&mut self, now: Instant) -> bool {
        self.enqueue(now, Queued::RekeyIke)
    }

    /// One of our addresses changed: tell the peer from where we are now (RFC 4555 §3.5
    /// UPDATE_SA_ADDRESSES when MOBIKE is up and we initiated the IKE SA, else a liveness
    /// check that it follows by RFC 7296 §2.23); false without an established IKE SA.
    pub fn local_address_changed(&mut self, now: Instant) -> bool {
        self.enqueue(now, Queued::UpdateAddresses)
    }

    /// Sends a liveness check (an empty INFORMATIONAL, §1.4).
    pub fn send_liveness(&mut self, now: Instant) -> bool {
        self.enqueue(now, Queued::Liveness)
    }

    /// Feeds one received IKE datagram (per-peer admission limits only).
    pub fn handle_datagram(&mut self, now: Instant, d: Datagram) {
        self.handle_datagram_inner(now, d, None);
    }

    /// [`Session::handle_datagram`] under the daemon-wide IKE_SA_INIT limits of
    /// `admission`, shared by every session of the daemon (§2.6).
    pub fn handle_datagram_admitted(
        &mut self,
        now: Instant,
        d: Datagram,
        admission: &mut crate::Admission,
    ) {
        self.sync_admission(admission);
        self.handle_datagram_inner(now, d, Some(&mut *admission));
        self.sync_admission(admission);
    }

    /// [`Session::handle_timeout`], keeping `admission`'s half-open count current
    /// (half-open SAs expire here).
    pub fn handle_timeout_admitted(&mut self, now: Instant, admission: &mut crate::Admission) {
        self.handle_timeout(now);
        self.sync_admission(admission);
    }

    /// Takes this session's half-open SAs out of `admission` (the tunnel is removed).
    pub fn leave_admission(&mut self, admission: &mut crate::Admission) {
        admission.replace_half_open(self.admitted_half_open, 0);
        self.admitted_half_open = 0;
    }

    fn handle_datagram_inner(
        &mut self,
        now: Instant,
        d: Datagram,
        mut admission: Option<&mut crate::Admission>,
    ) {
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
        match self.sa_index(&header) {
            Some(i) => self.with_sa(i, now, |sa, ctx, now| sa.handle(ctx, now, &d, &header)),
            None if header.exchange == crate::iana::ExchangeType::IKE_SA_INIT
                && header.spi_r == 0
                && !is_response
                && header.message_id == 0 =>
            {
                if matches!(self.lifecycle, Lifecycle::Closing { .. }) {
                    return;
                }
                if !self.cookie_ok(now, &d, &header, admission.as_deref_mut()) {
                    return;
                }
                if !self.make_room_for_half_open(admission.is_some_and(|a| a.full())) {
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
                let keep = self.with_sa_no_bookkeeping(idx, now, |sa, ctx, now| {
                    sa.handle_init_request(ctx, now, &d)
                });
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

    /// Runs every timer that is due (see [`timers`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.fire_timers(now);
    }

    /// Inbound ESP traffic proves the peer alive (no liveness check needed).
    pub fn note_inbound_traffic(&mut self, now: Instant) {
        if let Some(cur) = self.current() {
            self.sas[cur].note_peer_alive(now);
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
        self.next_deadline()
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
            .any(|s| matches!(s.state, IkeState::Established(_)))
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
                        IkeState::Established(ref e) => e.established_at,
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
            peer_cert: self.peer_cert.clone(),
            child_refill_in: self
                .deadline(timers::Timer::Refill)
                .map(|t| t.saturating_duration_since(now)),
        }
    }
}

#[cfg(test)]
mod tests;
