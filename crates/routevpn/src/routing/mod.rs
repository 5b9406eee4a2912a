//! The embedded BGP speaker (`bgp` crate) and BFD (`bfd` crate) driven over real sockets,
//! with the Loc-RIB installed into the kernel (routing protocol 251).
//!
//! One tokio task owns the [`bgp::Speaker`]; TCP readers and connectors, the `bfd`
//! thread ([`bfd_thread`]: every [`bfd::Session`] and the BFD sockets, so BFD keeps its
//! timing while this task is busy), the daemon (tunnel up/down, status, shutdown) feed
//! it through one channel.
//!
//! * TCP: listens on port 179 (IPv4 and IPv6 wildcard). Outgoing connections bind to our
//!   tunnel address on the neighbor's subnet. A connection collision (RFC 4271 §6.8) is
//!   resolved with [`bgp::resolve_collision`] once the OPEN on the second connection
//!   arrives: the loser is closed; if it is our own connection, the session restarts on
//!   the peer's.
//! * Routes: the best route of each prefix is installed `via NEXT_HOP dev DEVICE proto
//!   251` (DEVICE: the tunnel holding the neighbor, or the interface of our end of the
//!   TCP connection). With `max_paths > 1` and several equal paths, one multipath route
//!   (RTA_MULTIPATH, a `nexthop via NEXT_HOP dev DEVICE` per path) is installed instead.
//!   All our routes are deleted at shutdown.
//! * Import guard ([`guard`]): a route that would take traffic for a tunnel subnet, a
//!   connected subnet, a neighbour or an IKE peer, or whose next hop is not on the
//!   announcing neighbour's own tunnel, is refused before the Adj-RIB-In.
//! * Redistribution (`[bgp] redistribute`): the kernel's main table is read at start and
//!   every [`REDISTRIBUTE_SCAN`]; connected prefixes (proto kernel, no gateway) on
//!   interfaces other than loopback and the tunnels, and static routes (proto static or
//!   boot), are originated like `networks`. Link-local prefixes, default routes and
//!   prefixes covering a tunnel's IKE peer (the underlay) are never redistributed.
//! * BFD (RFC 5880/5881): one session per neighbor with `bfd` set; Down after Up drops
//!   the BGP session at once (its routes go with it); Up again restarts a waiting session.
//! * Tunnels: a neighbor whose address lies in a tunnel interface's subnet is paused while
//!   that interface is down: its session and BFD are dropped at once, and restarted when
//!   the interface comes up.
//! * Address families: a session carries its transport's family; it also carries the
//!   other one when the neighbor's tunnel has an address of that family and no other
//!   neighbor on that tunnel uses it (next hop: our tunnel address of that family).

mod bfd_io;
mod bfd_thread;
mod guard;
mod kernel;
mod redistribute;
mod stall_hook;
mod status;
mod tcp;

pub use redistribute::REDISTRIBUTE_SCAN;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bgp::{PeerId, PeerPolicy, Prefix, RibConfig, SessionConfig, Speaker, SpeakerEvent, StateName};
use ipnet::IpNet;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::config::{BgpConfig, NeighborConfig};
use crate::control::RoutingStatus;
use crate::netlink::{Netlink, RouteBatch, RTPROT_KERNEL, RTPROT_ROUTEVPN_BGP};
use kernel::Installed;
use tcp::Transport;

/// How long shutdown waits for the Cease NOTIFICATIONs to be written.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(200);
/// How long shutdown waits for our routes to be withdrawn from the kernel.
const SHUTDOWN_ROUTES: Duration = Duration::from_secs(2);

/// A tunnel interface, as the speaker needs to know it.
#[derive(Debug, Clone)]
pub struct TunnelInfo {
    /// Interface name.
    pub name: String,
    /// Interface addresses with prefix length.
    pub addresses: Vec<IpNet>,
    /// The IKE peer (underlay) address: never route it into a tunnel. None for `%any`.
    pub remote: Option<IpAddr>,
}

pub(super) enum Input {
    Accepted(TcpStream),
    ConnectResult {
        peer: usize,
        attempt: u64,
        result: std::io::Result<TcpStream>,
    },
    Bytes {
        conn: u64,
        data: Vec<u8>,
    },
    Closed {
        conn: u64,
    },
    /// A BFD session changed state (from the `bfd` thread); `gen` names the session.
    BfdState {
        peer: usize,
        gen: u64,
        from: bfd::State,
        to: bfd::State,
        diag: bfd::Diag,
    },
    Link {
        tunnel: String,
        up: bool,
        heard: Option<Heard>,
    },
    /// The kernel routes `[bgp] redistribute` selects, as last read.
    Redistribute(BTreeSet<Prefix>),
    /// The test hook ([`stall_hook`]): block the task this long.
    Stall(Duration),
    Shutdown(oneshot::Sender<()>),
}

/// The daemon's handle on the routing task.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Input>,
    status: Arc<Mutex<RoutingStatus>>,
    installed: Arc<Mutex<BTreeMap<Prefix, Installed>>>,
    done: Arc<Mutex<bool>>,
    /// BFD state and counters as the `bfd` thread publishes them.
    bfd: Option<bfd_thread::BfdShared>,
}

impl Handle {
    /// A tunnel interface came up (with its addresses) or went down; `heard` counts
    /// the inbound ESP it authenticated (for BFD's `esp_hint`).
    pub async fn link(&self, tunnel: &str, up: bool, heard: Option<Heard>) {
        let _ = self
            .tx
            .send(Input::Link {
                tunnel: tunnel.to_string(),
                up,
                heard,
            })
            .await;
    }

    /// The latest status, with the routes as they are now.
    pub fn status(&self) -> RoutingStatus {
        let mut s = self.status.lock().map(|s| s.clone()).unwrap_or_default();
        s.routes = status::route_list(&self.installed.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(b) = &self.bfd {
            status::overlay_bfd(&mut s, &b.lock().unwrap_or_else(|e| e.into_inner()));
        }
        s
    }

    /// How many sessions are Established (systemd's status line), without a copy of
    /// the whole status.
    pub fn established(&self) -> usize {
        self.status
            .lock()
            .map(|s| {
                s.neighbors
                    .iter()
                    .filter(|n| n.state == "Established")
                    .count()
            })
            .unwrap_or(0)
    }

    /// Stops every session (Cease), deletes our routes and ends the task. Idempotent;
    /// bounded to a few seconds.
    pub async fn shutdown(&self) {
        if self.done.lock().map(|d| *d).unwrap_or(true) {
            return;
        }
        if let Ok(mut d) = self.done.lock() {
            *d = true;
        }
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Input::Shutdown(tx)).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), rx).await;
        }
    }
}

struct Neighbor {
    cfg: NeighborConfig,
    id: PeerId,
    /// Tunnel interface whose subnet holds the neighbor address.
    tunnel: Option<String>,
    /// Our address on that subnet (bound for outgoing connections).
    bind: Option<IpAddr>,
    session: SessionConfig,
    policy: PeerPolicy,
    /// In the speaker (false while its tunnel is down).
    active: bool,
    transport: Transport,
    /// The generation of its session in the `bfd` thread, while one runs.
    bfd: Option<u64>,
    established_at: Option<Instant>,
    device: Option<String>,
    refusals: guard::RefusalLog,
    /// The interface BFD packets from this neighbour must arrive on.
    bfd_link: BfdLink,
    /// Its tunnel's count of authenticated inbound ESP (BFD's `esp_hint`).
    bfd_heard: Option<Heard>,
    /// GTSM (RFC 5082) on its TCP connections.
    gtsm: bool,
}

/// A tunnel's count of the inbound ESP packets it authenticated, kept by the dataplane.
pub type Heard = Arc<AtomicU64>;

/// Where a neighbour's BFD packets may arrive from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BfdLink {
    /// Its tunnel, whose interface index is not known yet: nothing is accepted.
    Unknown,
    /// This interface.
    Index(u32),
    /// Not on a connected subnet we know of: no check.
    Any,
}

struct SystemRng(aws_lc_rs::rand::SystemRandom);

impl bfd::Rng for SystemRng {
    fn fill(&mut self, buf: &mut [u8]) {
        aws_lc_rs::rand::SecureRandom::fill(&self.0, buf).expect("system random generator failed");
    }
}

struct Driver {
    cfg: BgpConfig,
    tunnels: Vec<TunnelInfo>,
    up_tunnels: HashSet<String>,
    speaker: Speaker,
    neighbors: Vec<Neighbor>,
    nl: Netlink,
    tx: mpsc::Sender<Input>,
    next_conn: u64,
    /// The `bfd` thread, when a neighbour has BFD.
    bfd: Option<bfd_thread::BfdThread>,
    /// The generation of the next BFD session started.
    bfd_gen: u64,
    /// The routes we asked the route task for (what the kernel will have); shared with
    /// [`Handle::status`], which lists them when asked.
    installed: Arc<Mutex<BTreeMap<Prefix, Installed>>>,
    /// The route task: installs and withdraws in bulk, off this loop.
    routes: RouteBatch,
    /// When the status was last published, and whether it is out of date since.
    published: Option<Instant>,
    status_stale: bool,
    /// Prefixes originated by redistribution (not in `networks`).
    redistributed: BTreeSet<Prefix>,
    status: Arc<Mutex<RoutingStatus>>,
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canon(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Starts the routing task: binds TCP 179 and the BFD sockets.
pub async fn start(
    cfg: BgpConfig,
    tunnels: Vec<TunnelInfo>,
    nl: Netlink,
) -> anyhow::Result<Handle> {
    let (tx, rx) = mpsc::channel::<Input>(4096);
    let now = Instant::now();
    let networks = cfg
        .networks
        .iter()
        .filter_map(|n| Prefix::new(n.addr(), n.prefix_len()).ok())
        .collect();
    let speaker = Speaker::new(RibConfig {
        local_as: cfg.asn,
        router_id: cfg.router_id,
        networks,
        max_paths: cfg.max_paths,
    });
    // Connected subnets (local and underlay addresses) as they are at start, with
    // their interface index.
    let connected: Vec<(IpNet, Option<u32>)> = match nl.main_table_routes().await {
        Ok(routes) => routes
            .iter()
            .filter(|r| r.protocol == RTPROT_KERNEL && r.info.gateway.is_none())
            .filter_map(|r| Some((IpNet::new(r.info.dst, r.info.prefix_len).ok()?, r.info.oif)))
            .collect(),
        Err(e) => {
            warn!(error = %e, "cannot read connected routes: the import guard protects only tunnel subnets, neighbours and IKE peers");
            Vec::new()
        }
    };
    let connected_nets: Vec<IpNet> = connected.iter().map(|(n, _)| *n).collect();
    let infra = guard::Infrastructure::new(&tunnels, &connected_nets, &cfg.neighbors);
    let mut neighbors = Vec::new();
    for (i, n) in cfg.neighbors.iter().enumerate() {
        let t = tunnels
            .iter()
            .find(|t| t.addresses.iter().any(|a| a.contains(&n.address)));
        let bind = t.and_then(|t| {
            t.addresses
                .iter()
                .find(|a| a.contains(&n.address))
                .map(|a| a.addr())
        });
        let mut session = SessionConfig::new(cfg.asn, n.asn, cfg.router_id);
        session.hold_time = cfg.hold_time.as_secs().min(u64::from(u16::MAX)) as u16;
        session.connect_retry = cfg.connect_retry;
        // The peer is one tunnel away and BFD/tunnel state already damps flapping, so
        // after a failed attempt wait no longer than a connect retry before the next.
        session.idle_hold = session.idle_hold.min(cfg.connect_retry);
        session.passive = n.passive;
        let v4 = n.address.is_ipv4();
        session.ipv4_unicast = v4;
        session.ipv6_unicast = !v4;
        let mut policy = PeerPolicy::new(n.asn, n.address);
        policy.import = n.import.clone();
        policy.export = n.export.clone();
        policy.max_prefix = n.max_prefix;
        policy.local_pref = n.local_pref;
        policy.guard = infra.guard(n.address, t);
        // The other family rides along when this tunnel has an address of it and no
        // other neighbor on the tunnel speaks it natively.
        if let Some(t) = t {
            let other = t
                .addresses
                .iter()
                .map(|a| a.addr())
                .find(|a| a.is_ipv4() != v4);
            let taken = cfg.neighbors.iter().any(|o| {
                o.address.is_ipv4() != v4 && t.addresses.iter().any(|a| a.contains(&o.address))
            });
            if let (Some(other), false) = (other, taken) {
                match other {
                    IpAddr::V4(a) => {
                        session.ipv4_unicast = true;
                        policy.next_hop_v4 = Some(a);
                    }
                    IpAddr::V6(a) => {
                        session.ipv6_unicast = true;
                        policy.next_hop_v6 = Some(a);
                    }
                }
            }
        }
        neighbors.push(Neighbor {
            cfg: n.clone(),
            id: PeerId(i as u32),
            tunnel: t.map(|t| t.name.clone()),
            bind,
            session,
            policy,
            active: false,
            transport: Transport::Idle,
            bfd: None,
            established_at: None,
            device: None,
            refusals: guard::RefusalLog::default(),
            bfd_link: match t {
                Some(_) => BfdLink::Unknown,
                None => connected
                    .iter()
                    .filter(|(net, _)| net.contains(&n.address))
                    .max_by_key(|(net, _)| net.prefix_len())
                    .and_then(|(_, oif)| *oif)
                    .map_or(BfdLink::Any, BfdLink::Index),
            },
            bfd_heard: None,
            gtsm: n.gtsm.unwrap_or_else(|| {
                // Default on for a directly connected eBGP neighbour (RFC 5082 §3).
                let direct = t.is_some() || connected_nets.iter().any(|c| c.contains(&n.address));
                direct && n.asn != cfg.asn
            }),
        });
    }

    for v6 in [false, true] {
        let family: Vec<&Neighbor> = neighbors
            .iter()
            .filter(|n| n.cfg.address.is_ipv6() == v6)
            .collect();
        match tcp::tcp_listener(v6) {
            Ok(l) => {
                // RFC 2385: each neighbour's key on the listener, for its address.
                for n in family.iter().filter(|n| n.cfg.password.is_some()) {
                    if let Some(p) = &n.cfg.password {
                        crate::sys::set_tcp_md5sig(&l, n.cfg.address, p.secret()).with_context(
                            || format!("setting the TCP MD5 key of neighbor {}", n.cfg.address),
                        )?;
                    }
                }
                // RFC 5082: when every neighbour of the family has GTSM, even their
                // SYNs must come from one hop away.
                if !family.is_empty() && family.iter().all(|n| n.gtsm) {
                    use std::os::fd::AsRawFd as _;
                    if let Err(e) = crate::sys::set_gtsm(l.as_raw_fd(), v6) {
                        warn!(ipv6 = v6, error = %e, "cannot set GTSM on the BGP listener");
                    }
                }
                tcp::spawn_accept(l, tx.clone())
            }
            Err(e) if family.iter().any(|n| n.cfg.password.is_some()) => {
                return Err(anyhow::Error::new(e)
                    .context("listening on BGP port 179 for a neighbor with a password"))
            }
            Err(e) => warn!(ipv6 = v6, error = %e, "cannot listen on BGP port 179"),
        }
    }
    let want_bfd = cfg.neighbors.iter().any(|n| n.bfd.is_some());
    let (mut bfd_rx, mut bfd_tx4, mut bfd_tx6) = (Vec::new(), None, None);
    if want_bfd {
        // A fixed source port per family (RFC 5881 §4), spread by pid so that several
        // daemons on one host rarely probe the same ports.
        let start = bfd::limits::SOURCE_PORT_MIN + (std::process::id() % 8192) as u16;
        for v6 in [false, true] {
            let rx = bfd_io::rx_socket(v6)
                .with_context(|| format!("binding BFD port 3784 (ipv6: {v6})"));
            let txs = bfd_io::tx_socket(v6, start).context("binding a BFD source port");
            match (rx, txs) {
                (Ok(rx), Ok(txs)) => {
                    bfd_rx.push(rx);
                    if v6 {
                        bfd_tx6 = Some(txs);
                    } else {
                        bfd_tx4 = Some(txs);
                    }
                }
                (Err(e), _) | (_, Err(e)) => {
                    if cfg
                        .neighbors
                        .iter()
                        .any(|n| n.bfd.is_some() && n.address.is_ipv6() == v6)
                    {
                        return Err(e);
                    }
                    warn!(error = %format!("{e:#}"), "BFD unavailable for this family");
                }
            }
        }
    }
    let bfd = if want_bfd {
        let t = bfd_thread::BfdThread::spawn(neighbors.len(), bfd_rx, bfd_tx4, bfd_tx6, tx.clone())
            .context("starting the BFD thread")?;
        Some(t)
    } else {
        None
    };
    let bfd_shared = bfd.as_ref().map(|b| b.shared.clone());
    let status = Arc::new(Mutex::new(RoutingStatus::default()));
    let routes = RouteBatch::spawn(nl.clone(), RTPROT_ROUTEVPN_BGP);
    let installed = Arc::new(Mutex::new(BTreeMap::new()));
    let mut d = Driver {
        cfg,
        tunnels,
        up_tunnels: HashSet::new(),
        speaker,
        neighbors,
        nl,
        tx: tx.clone(),
        next_conn: 1,
        bfd,
        bfd_gen: 1,
        installed: installed.clone(),
        routes,
        published: None,
        status_stale: false,
        redistributed: BTreeSet::new(),
        status: status.clone(),
    };
    if !d.cfg.redistribute.is_empty() {
        redistribute::spawn_redistribution(&d.cfg, &d.tunnels, d.nl.clone(), tx.clone());
    }
    // Neighbors outside every tunnel start at once; the others when their tunnel is up.
    for i in 0..d.neighbors.len() {
        if d.neighbors[i].tunnel.is_none() {
            d.activate(now, i);
        }
    }
    stall_hook::spawn(tx.clone());
    info!(asn = d.cfg.asn, router_id = %d.cfg.router_id, neighbors = d.neighbors.len(), "BGP speaker started");
    tokio::spawn(d.run(rx));
    Ok(Handle {
        tx,
        status,
        installed,
        done: Arc::new(Mutex::new(false)),
        bfd: bfd_shared,
    })
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut ack = None;
        loop {
            let now = Instant::now();
            // Due timers (RFC 4271 §4.4 KEEPALIVEs) every turn, before more input: a
            // peer sending a full table must not push them back behind its UPDATEs.
            if self.speaker.poll_timeout().is_some_and(|t| t <= now) {
                self.speaker.handle_timeout(now);
            }
            self.drain(now).await;
            self.log_refusals(now);
            self.publish_throttled(now);
            if ack.is_some() {
                break;
            }
            let next = self
                .speaker
                .poll_timeout()
                .into_iter()
                .chain(self.publish_deadline())
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(next));
            tokio::select! {
                input = rx.recv() => {
                    let Some(input) = input else { break };
                    let now = Instant::now();
                    if let Input::Shutdown(a) = input {
                        self.shutdown(now).await;
                        ack = Some(a);
                        continue;
                    }
                    self.handle(now, input).await;
                }
                _ = sleep => {
                    self.speaker.handle_timeout(Instant::now());
                }
            }
        }
        if let Some(a) = ack {
            let _ = a.send(());
        }
    }

    async fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Accepted(s) => self.accepted(now, s),
            Input::ConnectResult {
                peer,
                attempt,
                result,
            } => self.connect_result(now, peer, attempt, result),
            Input::Bytes { conn, data } => self.bytes(now, conn, data),
            Input::Closed { conn } => self.closed(now, conn),
            Input::BfdState {
                peer,
                gen,
                from,
                to,
                diag,
            } => self.bfd_state(now, peer, gen, from, to, diag),
            Input::Link { tunnel, up, heard } => {
                if up {
                    self.learn_link(&tunnel, heard).await;
                }
                self.link(now, &tunnel, up)
            }
            Input::Redistribute(set) => self.redistribute(now, set),
            Input::Stall(d) => stall_hook::stall(d),
            Input::Shutdown(_) => {}
        }
    }

    fn activate(&mut self, now: Instant, i: usize) {
        let n = &mut self.neighbors[i];
        if n.active {
            return;
        }
        n.active = true;
        self.speaker
            .add_peer(now, n.id, n.session.clone(), n.policy.clone());
        self.start_bfd(i);
    }

    /// Drops the session (Cease), its connections and BFD: its routes are withdrawn.
    fn deactivate(&mut self, now: Instant, i: usize) {
        let id = self.neighbors[i].id;
        if !self.neighbors[i].active {
            return;
        }
        self.speaker.remove_peer(now, id);
        self.flush_transmit();
        let n = &mut self.neighbors[i];
        n.active = false;
        n.established_at = None;
        n.transport.close();
        self.stop_bfd(i);
    }

    /// Restarts a neighbor that is waiting (Idle/Connect/Active) so it connects now.
    fn kick(&mut self, now: Instant, i: usize) {
        let n = &self.neighbors[i];
        if !n.active || n.transport.conn().is_some() {
            return;
        }
        let waiting = self.speaker.session(n.id).is_some_and(|s| {
            matches!(
                s.state(),
                StateName::Idle | StateName::Connect | StateName::Active
            )
        });
        if waiting {
            // Keep the running BFD session (and its discriminator): hidden from
            // deactivate, it is not started again by activate.
            let bfd = self.neighbors[i].bfd.take();
            self.deactivate(now, i);
            self.neighbors[i].bfd = bfd;
            self.activate(now, i);
        }
    }

    /// Learns a tunnel interface's index (BFD packets of its neighbours must arrive on it).
    async fn learn_link(&mut self, tunnel: &str, heard: Option<Heard>) {
        let index = match self.nl.link_index(tunnel).await {
            Ok(i) => i,
            Err(e) => {
                warn!(%tunnel, error = %e, "cannot look up the tunnel interface: its BFD packets are dropped");
                None
            }
        };
        for i in 0..self.neighbors.len() {
            if self.neighbors[i].tunnel.as_deref() == Some(tunnel) {
                let link = index.map_or(BfdLink::Unknown, BfdLink::Index);
                self.set_bfd_link(i, link, heard.clone());
            }
        }
    }

    fn link(&mut self, now: Instant, tunnel: &str, up: bool) {
        if up {
            self.up_tunnels.insert(tunnel.to_string());
        } else {
            self.up_tunnels.remove(tunnel);
        }
        for i in 0..self.neighbors.len() {
            if self.neighbors[i].tunnel.as_deref() != Some(tunnel) {
                continue;
            }
            if up {
                info!(neighbor = %self.neighbors[i].cfg.address, %tunnel, "tunnel up: starting BGP session");
                self.activate(now, i);
            } else if self.neighbors[i].active {
                info!(neighbor = %self.neighbors[i].cfg.address, %tunnel, "tunnel down: dropping BGP session");
                self.deactivate(now, i);
            }
        }
    }

    async fn drain(&mut self, now: Instant) {
        loop {
            self.flush_transmit();
            let Some(ev) = self.speaker.poll_event() else {
                break;
            };
            match ev {
                SpeakerEvent::Connect(id) => {
                    let i = id.0 as usize;
                    let connecting = self
                        .speaker
                        .session(id)
                        .is_some_and(|s| s.state() == StateName::Connect);
                    if connecting && self.neighbors[i].transport.conn().is_none() {
                        self.connect(i);
                    }
                }
                SpeakerEvent::Established(id, info) => {
                    let i = id.0 as usize;
                    let local = self.neighbors[i].transport.conn().map(|c| c.local);
                    let device = match (&self.neighbors[i].tunnel, local) {
                        (Some(t), _) => Some(t.clone()),
                        (None, Some(l)) => self.nl.interface_of_address(l).await.ok().flatten(),
                        _ => None,
                    };
                    let n = &mut self.neighbors[i];
                    n.device = device;
                    n.established_at = Some(now);
                    info!(neighbor = %n.cfg.address, asn = info.peer_as, bgp_id = %info.bgp_id, ipv4 = info.ipv4_unicast, ipv6 = info.ipv6_unicast, "BGP session established");
                }
                SpeakerEvent::Down(id, reason) => {
                    let i = id.0 as usize;
                    let live = self.speaker.session(id).is_some_and(|s| {
                        matches!(
                            s.state(),
                            StateName::OpenSent | StateName::OpenConfirm | StateName::Established
                        )
                    });
                    // A stale Down (the session already restarted on another connection)
                    // must not close the new connection.
                    if !live {
                        let n = &mut self.neighbors[i];
                        info!(neighbor = %n.cfg.address, reason = ?reason, "BGP session down");
                        n.established_at = None;
                        n.transport.close_conn();
                        if n.transport.is_colliding() && n.active {
                            self.promote(now, i);
                        }
                    }
                }
                SpeakerEvent::RibChange(c) => self.apply(c),
            }
        }
    }

    async fn shutdown(&mut self, now: Instant) {
        info!("BGP speaker stopping: Cease to every neighbor, withdrawing routes");
        for i in 0..self.neighbors.len() {
            self.deactivate(now, i);
        }
        self.drain(now).await;
        let left: Vec<Prefix> = self.installed().keys().copied().collect();
        for p in left {
            self.uninstall(&p);
        }
        if tokio::time::timeout(SHUTDOWN_ROUTES, self.routes.flush())
            .await
            .is_err()
        {
            warn!("BGP routes still being withdrawn at shutdown; the tunnel interfaces take the rest with them");
        }
        // Let the writer tasks put the NOTIFICATIONs on the wire.
        tokio::time::sleep(SHUTDOWN_FLUSH).await;
    }
}
