//! The embedded BGP speaker (`bgp` crate) and BFD (`bfd` crate) driven over real sockets,
//! with the Loc-RIB installed into the kernel (routing protocol 251).
//!
//! One tokio task owns the [`bgp::Speaker`] and every [`bfd::Session`]; TCP readers and
//! connectors, the BFD socket readers, the daemon (tunnel up/down, status, shutdown) feed
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
//!   A route covering a tunnel's IKE peer address is never installed (it would pull the
//!   tunnel's own packets into itself). All our routes are deleted at shutdown.
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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bgp::{
    PeerId, PeerPolicy, Prefix, RibChange, RibConfig, SessionConfig, Speaker, SpeakerEvent,
    StateName,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use crate::config::{BgpConfig, NeighborConfig, Redistribute};
use crate::control::{BgpRouteStatus, NeighborStatus, RoutingStatus};
use crate::netlink::{
    KernelRoute, Netlink, RTPROT_BOOT, RTPROT_KERNEL, RTPROT_ROUTEVPN_BGP, RTPROT_STATIC,
};

/// How often the kernel's routes are read again for `[bgp] redistribute`.
pub const REDISTRIBUTE_SCAN: Duration = Duration::from_secs(5);

/// How long shutdown waits for the Cease NOTIFICATIONs to be written.
const SHUTDOWN_FLUSH: Duration = Duration::from_millis(200);
/// BGP messages are at most 4096 bytes (RFC 4271 §4.1): a colliding connection that
/// sends more without a full OPEN is closed.
const MAX_PENDING: usize = bgp::limits::MAX_MESSAGE_LEN;

/// A tunnel interface, as the speaker needs to know it.
#[derive(Debug, Clone)]
pub struct TunnelInfo {
    /// Interface name.
    pub name: String,
    /// Interface addresses with prefix length.
    pub addresses: Vec<(IpAddr, u8)>,
    /// The IKE peer (underlay) address: never route it into a tunnel.
    pub remote: IpAddr,
}

enum Input {
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
    Bfd {
        from: SocketAddr,
        data: Vec<u8>,
    },
    Link {
        tunnel: String,
        up: bool,
    },
    /// The kernel routes `[bgp] redistribute` selects, as last read.
    Redistribute(BTreeSet<Prefix>),
    Shutdown(oneshot::Sender<()>),
}

/// The daemon's handle on the routing task.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Input>,
    status: Arc<Mutex<RoutingStatus>>,
    done: Arc<Mutex<bool>>,
}

impl Handle {
    /// A tunnel interface came up (with its addresses) or went down.
    pub async fn link(&self, tunnel: &str, up: bool) {
        let _ = self
            .tx
            .send(Input::Link {
                tunnel: tunnel.to_string(),
                up,
            })
            .await;
    }

    /// The latest status.
    pub fn status(&self) -> RoutingStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
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

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    reader: AbortHandle,
    outbound: bool,
    local: IpAddr,
}

impl Conn {
    /// Queued bytes are still written, then the write side is shut down.
    fn close(self) {
        self.reader.abort();
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
    conn: Option<Conn>,
    attempt: Option<(u64, AbortHandle)>,
    /// A colliding incoming connection, until its OPEN arrives (RFC 4271 §6.8).
    pending_in: Option<(Conn, Vec<u8>)>,
    bfd: Option<bfd::Session>,
    established_at: Option<Instant>,
    device: Option<String>,
}

struct SystemRng(aws_lc_rs::rand::SystemRandom);

impl bfd::Rng for SystemRng {
    fn fill(&mut self, buf: &mut [u8]) {
        aws_lc_rs::rand::SecureRandom::fill(&self.0, buf).expect("system random generator failed");
    }
}

/// An installed route: its next hops (gateway, device), best first; more than one
/// means a multipath route.
#[derive(PartialEq, Eq)]
struct Installed {
    hops: Vec<(IpAddr, String)>,
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
    next_discr: u32,
    bfd_tx4: Option<UdpSocket>,
    bfd_tx6: Option<UdpSocket>,
    rng: SystemRng,
    installed: BTreeMap<Prefix, Installed>,
    /// Prefixes originated by redistribution (not in `networks`).
    redistributed: BTreeSet<Prefix>,
    status: Arc<Mutex<RoutingStatus>>,
}

/// `169.254.12.2 dev vti0, 169.254.13.2 dev vti1` for logs.
fn hops_desc(hops: &[(IpAddr, String)]) -> String {
    hops.iter()
        .map(|(g, d)| format!("{g} dev {d}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn canon(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn prefix_contains(net: IpAddr, len: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
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
        .filter_map(|(a, l)| Prefix::new(*a, *l).ok())
        .collect();
    let speaker = Speaker::new(RibConfig {
        local_as: cfg.asn,
        router_id: cfg.router_id,
        networks,
        max_paths: cfg.max_paths,
    });
    let mut neighbors = Vec::new();
    for (i, n) in cfg.neighbors.iter().enumerate() {
        let t = tunnels.iter().find(|t| {
            t.addresses
                .iter()
                .any(|(a, l)| prefix_contains(*a, *l, n.address))
        });
        let bind = t.and_then(|t| {
            t.addresses
                .iter()
                .find(|(a, l)| prefix_contains(*a, *l, n.address))
                .map(|(a, _)| *a)
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
        // The other family rides along when this tunnel has an address of it and no
        // other neighbor on the tunnel speaks it natively.
        if let Some(t) = t {
            let other = t
                .addresses
                .iter()
                .find(|(a, _)| a.is_ipv4() != v4)
                .map(|(a, _)| *a);
            let taken = cfg.neighbors.iter().any(|o| {
                o.address.is_ipv4() != v4
                    && t.addresses
                        .iter()
                        .any(|(a, l)| prefix_contains(*a, *l, o.address))
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
            conn: None,
            attempt: None,
            pending_in: None,
            bfd: None,
            established_at: None,
            device: None,
        });
    }

    for v6 in [false, true] {
        match tcp_listener(v6) {
            Ok(l) => spawn_accept(l, tx.clone()),
            Err(e) => warn!(ipv6 = v6, error = %e, "cannot listen on BGP port 179"),
        }
    }
    let want_bfd = cfg.neighbors.iter().any(|n| n.bfd.is_some());
    let (mut bfd_tx4, mut bfd_tx6) = (None, None);
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
                    spawn_bfd_reader(rx, tx.clone())?;
                    let txs = UdpSocket::from_std(txs)?;
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
    let status = Arc::new(Mutex::new(RoutingStatus::default()));
    let mut d = Driver {
        cfg,
        tunnels,
        up_tunnels: HashSet::new(),
        speaker,
        neighbors,
        nl,
        tx: tx.clone(),
        next_conn: 1,
        next_discr: (std::process::id() << 12) | 1,
        bfd_tx4,
        bfd_tx6,
        rng: SystemRng(aws_lc_rs::rand::SystemRandom::new()),
        installed: BTreeMap::new(),
        redistributed: BTreeSet::new(),
        status: status.clone(),
    };
    if !d.cfg.redistribute.is_empty() {
        spawn_redistribution(&d.cfg, &d.tunnels, d.nl.clone(), tx.clone());
    }
    // Neighbors outside every tunnel start at once; the others when their tunnel is up.
    for i in 0..d.neighbors.len() {
        if d.neighbors[i].tunnel.is_none() {
            d.activate(now, i);
        }
    }
    info!(asn = d.cfg.asn, router_id = %d.cfg.router_id, neighbors = d.neighbors.len(), "BGP speaker started");
    tokio::spawn(d.run(rx));
    Ok(Handle {
        tx,
        status,
        done: Arc::new(Mutex::new(false)),
    })
}

fn tcp_listener(v6: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        if v6 { Domain::IPV6 } else { Domain::IPV4 },
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    let addr: SocketAddr = if v6 {
        s.set_only_v6(true)?;
        "[::]:179".parse().expect("literal")
    } else {
        "0.0.0.0:179".parse().expect("literal")
    };
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(16)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

fn spawn_accept(l: std::net::TcpListener, tx: mpsc::Sender<Input>) {
    tokio::spawn(async move {
        let Ok(l) = tokio::net::TcpListener::from_std(l) else {
            return;
        };
        loop {
            match l.accept().await {
                Ok((s, _)) => {
                    if tx.send(Input::Accepted(s)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    debug!(error = %e, "BGP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
}

fn spawn_bfd_reader(sock: std::net::UdpSocket, tx: mpsc::Sender<Input>) -> anyhow::Result<()> {
    let sock = UdpSocket::from_std(sock)?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let r = sock
                .async_io(tokio::io::Interest::READABLE, || {
                    bfd_io::recv_with_ttl(&sock, &mut buf)
                })
                .await;
            match r {
                Ok((n, from, ttl)) => {
                    // RFC 5881 §5: only packets sent from one hop away (TTL 255).
                    if ttl != Some(bfd::limits::TTL) {
                        debug!(%from, ?ttl, "BFD packet with TTL != 255 dropped");
                        continue;
                    }
                    let data = buf.get(..n).unwrap_or_default().to_vec();
                    if tx.send(Input::Bfd { from, data }).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    debug!(error = %e, "BFD receive error");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
    Ok(())
}

/// Reads the kernel's routes now and every [`REDISTRIBUTE_SCAN`], and sends the
/// selected prefixes to the driver.
fn spawn_redistribution(
    cfg: &BgpConfig,
    tunnels: &[TunnelInfo],
    nl: Netlink,
    tx: mpsc::Sender<Input>,
) {
    let classes = cfg.redistribute.clone();
    let tunnel_names: HashSet<String> = tunnels.iter().map(|t| t.name.clone()).collect();
    let underlay: Vec<IpAddr> = tunnels.iter().map(|t| t.remote).collect();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REDISTRIBUTE_SCAN);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match nl.main_table_routes().await {
                Ok(routes) => {
                    let set = select_redistributed(&routes, &classes, &tunnel_names, &underlay);
                    if tx.send(Input::Redistribute(set)).await.is_err() {
                        return;
                    }
                }
                Err(e) => warn!(error = %e, "cannot read kernel routes for redistribution"),
            }
        }
    });
}

fn is_link_local(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// The prefixes of `routes` that `classes` redistributes: connected routes (proto
/// kernel, no gateway) and static ones (proto static/boot), never through loopback or
/// a tunnel, never link-local, default or covering an IKE peer address, and no
/// connected prefix of an underlay interface (the one routing to an IKE peer).
fn select_redistributed(
    routes: &[KernelRoute],
    classes: &[Redistribute],
    tunnels: &HashSet<String>,
    underlay: &[IpAddr],
) -> BTreeSet<Prefix> {
    let connected = classes.contains(&Redistribute::Connected);
    let statics = classes.contains(&Redistribute::Static);
    // The interfaces the tunnels' packets leave by (longest match for each IKE peer):
    // their connected prefixes are underlay, whatever the family.
    let underlay_devs: HashSet<&str> = underlay
        .iter()
        .filter_map(|u| {
            routes
                .iter()
                .filter(|r| prefix_contains(r.info.dst, r.info.prefix_len, *u))
                .max_by_key(|r| r.info.prefix_len)
                .and_then(|r| r.dev.as_deref())
        })
        .collect();
    routes
        .iter()
        .filter(|r| {
            let class_ok = match r.protocol {
                RTPROT_KERNEL => connected && r.info.gateway.is_none(),
                RTPROT_BOOT | RTPROT_STATIC => statics,
                _ => false,
            };
            let dev_ok = match &r.dev {
                Some(d) => {
                    d != "lo"
                        && !tunnels.contains(d)
                        && !(r.protocol == RTPROT_KERNEL && underlay_devs.contains(d.as_str()))
                }
                // Multipath or blackhole-like routes without one device: statics only.
                None => r.protocol != RTPROT_KERNEL,
            };
            class_ok
                && dev_ok
                && r.info.prefix_len > 0
                && !is_link_local(r.info.dst)
                && !r.info.dst.is_loopback()
                && !underlay
                    .iter()
                    .any(|u| prefix_contains(r.info.dst, r.info.prefix_len, *u))
        })
        .filter_map(|r| Prefix::new(r.info.dst, r.info.prefix_len).ok())
        .collect()
}

fn state_name(s: StateName) -> &'static str {
    match s {
        StateName::Idle => "Idle",
        StateName::Connect => "Connect",
        StateName::Active => "Active",
        StateName::OpenSent => "OpenSent",
        StateName::OpenConfirm => "OpenConfirm",
        StateName::Established => "Established",
    }
}

fn bfd_state_name(s: bfd::State) -> String {
    format!("{s:?}")
}

impl Driver {
    async fn run(mut self, mut rx: mpsc::Receiver<Input>) {
        let mut ack = None;
        loop {
            let now = Instant::now();
            self.run_bfd(now);
            self.drain(now).await;
            self.publish(now);
            if ack.is_some() {
                break;
            }
            let next = self
                .neighbors
                .iter()
                .filter_map(|n| n.bfd.as_ref().and_then(|b| b.poll_timeout()))
                .chain(self.speaker.poll_timeout())
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
            Input::Bfd { from, data } => self.bfd_packet(now, from, &data),
            Input::Link { tunnel, up } => self.link(now, &tunnel, up),
            Input::Redistribute(set) => self.redistribute(now, set),
            Input::Shutdown(_) => {}
        }
    }

    /// Originates the prefixes newly in `set`, stops originating those gone from it;
    /// configured `networks` are left alone.
    fn redistribute(&mut self, now: Instant, set: BTreeSet<Prefix>) {
        let configured: BTreeSet<Prefix> = self
            .cfg
            .networks
            .iter()
            .filter_map(|(a, l)| Prefix::new(*a, *l).ok())
            .collect();
        let set: BTreeSet<Prefix> = set.difference(&configured).copied().collect();
        for p in self.redistributed.difference(&set) {
            info!(prefix = %p, "no longer redistributing");
            self.speaker.remove_network(now, *p);
        }
        for p in set.difference(&self.redistributed) {
            info!(prefix = %p, "redistributing kernel route");
            self.speaker.add_network(now, *p);
        }
        self.redistributed = set;
    }

    fn activate(&mut self, now: Instant, i: usize) {
        let n = &mut self.neighbors[i];
        if n.active {
            return;
        }
        n.active = true;
        self.speaker
            .add_peer(now, n.id, n.session.clone(), n.policy.clone());
        if let Some(b) = n.cfg.bfd {
            self.next_discr = self.next_discr.wrapping_add(1).max(1);
            let cfg = bfd::SessionConfig {
                local_discr: self.next_discr,
                desired_min_tx: b.interval,
                required_min_rx: b.interval,
                detect_mult: b.multiplier,
                passive: false,
            };
            match bfd::Session::new(cfg, now) {
                Ok(s) => n.bfd = Some(s),
                Err(e) => warn!(neighbor = %n.cfg.address, error = %e, "cannot start BFD"),
            }
        }
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
        n.bfd = None;
        n.established_at = None;
        if let Some(c) = n.conn.take() {
            c.close();
        }
        if let Some((c, _)) = n.pending_in.take() {
            c.close();
        }
        if let Some((_, a)) = n.attempt.take() {
            a.abort();
        }
    }

    /// Restarts a neighbor that is waiting (Idle/Connect/Active) so it connects now.
    fn kick(&mut self, now: Instant, i: usize) {
        let n = &self.neighbors[i];
        if !n.active || n.conn.is_some() {
            return;
        }
        let waiting = self.speaker.session(n.id).is_some_and(|s| {
            matches!(
                s.state(),
                StateName::Idle | StateName::Connect | StateName::Active
            )
        });
        if waiting {
            let bfd = self.neighbors[i].bfd.take();
            self.deactivate(now, i);
            self.activate(now, i);
            // Keep the running BFD session (and its discriminator).
            if bfd.is_some() {
                self.neighbors[i].bfd = bfd;
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

    fn spawn_conn(&mut self, stream: TcpStream, outbound: bool) -> Option<Conn> {
        let id = self.next_conn;
        self.next_conn += 1;
        let _ = stream.set_nodelay(true);
        let local = canon(stream.local_addr().ok()?.ip());
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                if wr.write_all(&b).await.is_err() {
                    return;
                }
            }
            let _ = wr.shutdown().await;
        });
        let itx = self.tx.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = itx.send(Input::Closed { conn: id }).await;
                        return;
                    }
                    Ok(n) => {
                        let data = buf.get(..n).unwrap_or_default().to_vec();
                        if itx.send(Input::Bytes { conn: id, data }).await.is_err() {
                            return;
                        }
                    }
                }
            }
        })
        .abort_handle();
        Some(Conn {
            id,
            tx,
            reader,
            outbound,
            local,
        })
    }

    fn accepted(&mut self, now: Instant, stream: TcpStream) {
        let Ok(peer) = stream.peer_addr() else { return };
        let ip = canon(peer.ip());
        let Some(i) = self
            .neighbors
            .iter()
            .position(|n| n.active && n.cfg.address == ip)
        else {
            debug!(from = %peer, "BGP connection from an unconfigured or paused address refused");
            return;
        };
        let Some(conn) = self.spawn_conn(stream, false) else {
            return;
        };
        let id = self.neighbors[i].id;
        let state = self.speaker.session(id).map(|s| s.state());
        match state {
            // Both ends connecting at once (they bring sessions up when the same tunnel
            // comes up): if each dropped its own attempt for the other's, both would die
            // and retry in lockstep. The end with the higher address keeps its attempt
            // and holds the peer's connection in reserve (RFC 4271 §6.8 then settles it
            // by BGP Identifier once an OPEN arrives).
            Some(StateName::Connect | StateName::Active)
                if self.neighbors[i].attempt.is_some()
                    && self.neighbors[i].pending_in.is_none()
                    && self.neighbors[i].bind.is_some_and(|b| b > ip) =>
            {
                debug!(neighbor = %ip, "connection collision: our connect is in flight; holding the peer's");
                self.neighbors[i].pending_in = Some((conn, Vec::new()));
            }
            Some(StateName::Connect | StateName::Active) => {
                if let Some((_, a)) = self.neighbors[i].attempt.take() {
                    a.abort();
                }
                let local = conn.local;
                if self.speaker.handle_connected(now, id, local) {
                    self.neighbors[i].conn = Some(conn);
                } else {
                    conn.close();
                }
            }
            Some(StateName::OpenSent | StateName::OpenConfirm)
                if self.neighbors[i].conn.as_ref().is_some_and(|c| c.outbound)
                    && self.neighbors[i].pending_in.is_none() =>
            {
                debug!(neighbor = %ip, "connection collision: waiting for the peer's OPEN");
                self.neighbors[i].pending_in = Some((conn, Vec::new()));
            }
            // Idle only because our last connection just failed (its idle-hold timer is
            // running): the peer is evidently reachable, so start over on its connection
            // rather than refuse it and retry later.
            Some(StateName::Idle) if self.neighbors[i].conn.is_none() => {
                debug!(neighbor = %ip, "incoming BGP connection while idle: restarting on it");
                self.restart_on(now, i, conn, &[]);
            }
            _ => {
                debug!(neighbor = %ip, ?state, "incoming BGP connection refused");
                conn.close();
            }
        }
    }

    fn connect(&mut self, i: usize) {
        let n = &mut self.neighbors[i];
        if let Some((_, a)) = n.attempt.take() {
            a.abort();
        }
        let attempt = self.next_conn;
        self.next_conn += 1;
        let addr = SocketAddr::new(n.cfg.address, bgp::limits::BGP_PORT);
        let bind = n.bind;
        let timeout = self.cfg.connect_retry;
        let tx = self.tx.clone();
        let h = tokio::spawn(async move {
            let result = async {
                let s = if addr.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                if let Some(b) = bind {
                    s.bind(SocketAddr::new(b, 0))?;
                }
                tokio::time::timeout(timeout, s.connect(addr))
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
            }
            .await;
            let _ = tx
                .send(Input::ConnectResult {
                    peer: i,
                    attempt,
                    result,
                })
                .await;
        })
        .abort_handle();
        n.attempt = Some((attempt, h));
    }

    fn connect_result(
        &mut self,
        now: Instant,
        i: usize,
        attempt: u64,
        result: std::io::Result<TcpStream>,
    ) {
        let Some(n) = self.neighbors.get_mut(i) else {
            return;
        };
        if n.attempt.as_ref().map(|(a, _)| *a) != Some(attempt) {
            return;
        }
        n.attempt = None;
        let id = n.id;
        match result {
            Ok(stream) => {
                if n.conn.is_some() || !self.speaker.accepts_connection(id) {
                    return;
                }
                // Our connection won the collision by address: drop the held one.
                if let Some((c, _)) = n.pending_in.take() {
                    c.close();
                }
                let Some(conn) = self.spawn_conn(stream, true) else {
                    return;
                };
                if self.speaker.handle_connected(now, id, conn.local) {
                    self.neighbors[i].conn = Some(conn);
                } else {
                    conn.close();
                }
            }
            Err(e) => {
                debug!(neighbor = %n.cfg.address, error = %e, "BGP connect failed");
                if n.pending_in.is_some() {
                    // The peer's held connection takes over.
                    self.promote(now, i);
                } else {
                    self.speaker.handle_disconnected(now, id);
                }
            }
        }
    }

    fn bytes(&mut self, now: Instant, conn: u64, data: Vec<u8>) {
        for i in 0..self.neighbors.len() {
            let n = &mut self.neighbors[i];
            if n.conn.as_ref().is_some_and(|c| c.id == conn) {
                let id = n.id;
                self.speaker.handle_bytes(now, id, &data);
                return;
            }
            if let Some((c, buf)) = &mut n.pending_in {
                if c.id != conn {
                    continue;
                }
                buf.extend_from_slice(&data);
                // RFC 4271 §4.2: OPEN = header (19) + version, AS, hold, BGP Identifier.
                if buf.len() < 29 {
                    return;
                }
                let is_open = buf.get(18) == Some(&1);
                let remote_id = buf
                    .get(24..28)
                    .and_then(|b| <[u8; 4]>::try_from(b).ok())
                    .map(std::net::Ipv4Addr::from);
                match (is_open, remote_id) {
                    (true, Some(rid)) => match bgp::resolve_collision(self.cfg.router_id, rid) {
                        bgp::CollisionWinner::LocallyInitiated => {
                            debug!(neighbor = %n.cfg.address, "collision: keeping our connection");
                            if let Some((c, _)) = n.pending_in.take() {
                                c.close();
                            }
                        }
                        bgp::CollisionWinner::RemotelyInitiated => {
                            debug!(neighbor = %n.cfg.address, "collision: keeping the peer's connection");
                            self.promote(now, i);
                        }
                    },
                    _ if buf.len() > MAX_PENDING || !is_open => {
                        if let Some((c, _)) = n.pending_in.take() {
                            c.close();
                        }
                    }
                    _ => {}
                }
                return;
            }
        }
    }

    /// Restarts the session on the pending incoming connection (collision lost, or our
    /// connection died while the peer's waited).
    fn promote(&mut self, now: Instant, i: usize) {
        let Some((conn, buf)) = self.neighbors[i].pending_in.take() else {
            return;
        };
        self.restart_on(now, i, conn, &buf);
    }

    /// Restarts neighbor `i`'s session on `conn` (with bytes already read from it).
    fn restart_on(&mut self, now: Instant, i: usize, conn: Conn, buf: &[u8]) {
        let id = self.neighbors[i].id;
        self.speaker.remove_peer(now, id);
        // The Cease goes out on the old connection, which then closes.
        self.flush_transmit();
        let n = &mut self.neighbors[i];
        if let Some(old) = n.conn.take() {
            old.close();
        }
        if let Some((_, a)) = n.attempt.take() {
            a.abort();
        }
        n.established_at = None;
        self.speaker
            .add_peer(now, id, n.session.clone(), n.policy.clone());
        if self.speaker.handle_connected(now, id, conn.local) {
            self.neighbors[i].conn = Some(conn);
            self.speaker.handle_bytes(now, id, buf);
        } else {
            conn.close();
        }
    }

    fn closed(&mut self, now: Instant, conn: u64) {
        for i in 0..self.neighbors.len() {
            let n = &mut self.neighbors[i];
            if n.conn.as_ref().is_some_and(|c| c.id == conn) {
                debug!(neighbor = %n.cfg.address, "BGP connection closed");
                if n.pending_in.is_some() {
                    // The peer closed ours because it kept its own: use that one.
                    n.conn = None;
                    self.promote(now, i);
                    return;
                }
                let id = n.id;
                self.speaker.handle_disconnected(now, id);
                return;
            }
            if n.pending_in.as_ref().is_some_and(|(c, _)| c.id == conn) {
                n.pending_in = None;
                return;
            }
        }
    }

    fn bfd_packet(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let pkt = match bfd::ControlPacket::decode(data) {
            Ok(p) => p,
            Err(e) => {
                debug!(%from, error = %e, "malformed BFD packet");
                return;
            }
        };
        // RFC 5880 §6.3: by Your Discriminator, or by source address while it is zero.
        let src = canon(from.ip());
        let n = self.neighbors.iter_mut().find(|n| {
            n.bfd.as_ref().is_some_and(|b| {
                if pkt.your_discr != 0 {
                    b.local_discr() == pkt.your_discr
                } else {
                    // A packet that does not know us yet belongs to our session only if
                    // that session has not locked onto another remote session: a second,
                    // still-Down session of the same peer (FRR can briefly have two) must
                    // not tear down the one that is Up.
                    n.cfg.address == src
                        && (b.remote_discr() == 0 || b.remote_discr() == pkt.my_discr)
                }
            })
        });
        match n {
            Some(n) => {
                if n.cfg.address != src {
                    debug!(%from, "BFD packet from an unexpected address");
                    return;
                }
                if let Some(b) = &mut n.bfd {
                    if let Err(e) = b.handle_packet(now, &pkt) {
                        debug!(%from, error = %e, "BFD packet discarded");
                    }
                }
            }
            None => debug!(%from, your_discr = pkt.your_discr, "BFD packet for no session"),
        }
    }

    /// BFD timers, events and transmissions.
    fn run_bfd(&mut self, now: Instant) {
        for i in 0..self.neighbors.len() {
            let mut events = Vec::new();
            let mut out = Vec::new();
            {
                let n = &mut self.neighbors[i];
                let Some(b) = &mut n.bfd else { continue };
                if b.poll_timeout().is_some_and(|t| t <= now) {
                    b.handle_timeout(now);
                }
                while let Some(e) = b.poll_event() {
                    events.push(e);
                }
                while let Some(p) = b.poll_transmit(now, &mut self.rng) {
                    out.push(p.to_bytes());
                }
            }
            let addr = self.neighbors[i].cfg.address;
            let to = SocketAddr::new(addr, bfd::limits::CONTROL_PORT);
            let sock = if addr.is_ipv4() {
                &self.bfd_tx4
            } else {
                &self.bfd_tx6
            };
            if let Some(s) = sock {
                for p in out {
                    if let Err(e) = s.try_send_to(&p, to) {
                        debug!(%to, error = %e, "BFD send failed");
                    }
                }
            }
            for bfd::Event::StateChange { from, to, diag } in events {
                info!(neighbor = %addr, from = ?from, to = ?to, diag = ?diag, "BFD session {:?}", to);
                if to == bfd::State::Down && from == bfd::State::Up {
                    warn!(neighbor = %addr, "BFD down: dropping the BGP session");
                    let id = self.neighbors[i].id;
                    self.speaker.handle_disconnected(now, id);
                } else if to == bfd::State::Up {
                    self.kick(now, i);
                }
            }
        }
    }

    /// Writes what the speaker queued to each peer's connection.
    fn flush_transmit(&mut self) {
        while let Some((id, bytes)) = self.speaker.poll_transmit() {
            if let Some(c) = self
                .neighbors
                .get(id.0 as usize)
                .and_then(|n| n.conn.as_ref())
            {
                let _ = c.tx.send(bytes);
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
                    if connecting && self.neighbors[i].conn.is_none() {
                        self.connect(i);
                    }
                }
                SpeakerEvent::Established(id, info) => {
                    let i = id.0 as usize;
                    let local = self.neighbors[i].conn.as_ref().map(|c| c.local);
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
                        if let Some(c) = n.conn.take() {
                            c.close();
                        }
                        if n.pending_in.is_some() && n.active {
                            self.promote(now, i);
                        }
                    }
                }
                SpeakerEvent::RibChange(c) => self.apply(c).await,
            }
        }
    }

    fn covers_ike_peer(&self, p: &Prefix) -> Option<IpAddr> {
        self.tunnels
            .iter()
            .map(|t| t.remote)
            .find(|r| prefix_contains(p.addr(), p.len(), *r))
    }

    async fn uninstall(&mut self, prefix: &Prefix) {
        let Some(old) = self.installed.remove(prefix) else {
            return;
        };
        let r = match old.hops.as_slice() {
            [(_, dev)] => {
                self.nl
                    .delete_route(prefix.addr(), prefix.len(), dev, None, RTPROT_ROUTEVPN_BGP)
                    .await
            }
            _ => {
                self.nl
                    .delete_route_prefix(prefix.addr(), prefix.len(), RTPROT_ROUTEVPN_BGP)
                    .await
            }
        };
        match r {
            Err(e) => warn!(%prefix, error = %e, "cannot delete BGP route"),
            Ok(()) => info!(%prefix, via = %hops_desc(&old.hops), "BGP route withdrawn"),
        }
    }

    /// Gateway and device for a route learned from a peer.
    fn next_hop_of(&self, route: &bgp::Route) -> Option<(IpAddr, String)> {
        let gateway = match route.next_hop.addr {
            a if a.is_unspecified() => IpAddr::V6(route.next_hop.link_local?),
            a => a,
        };
        let peer_dev = route
            .peer
            .and_then(|p| self.neighbors.get(p.0 as usize))
            .and_then(|n| n.device.clone());
        let tunnel_dev = self
            .tunnels
            .iter()
            .find(|t| {
                t.addresses
                    .iter()
                    .any(|(a, l)| prefix_contains(*a, *l, gateway))
            })
            .map(|t| t.name.clone());
        Some((gateway, tunnel_dev.or(peer_dev)?))
    }

    async fn apply(&mut self, c: RibChange) {
        let prefix = c.prefix;
        let Some(best) = c.best.filter(|b| !b.is_local()) else {
            self.uninstall(&prefix).await;
            return;
        };
        if let Some(remote) = self.covers_ike_peer(&prefix) {
            warn!(%prefix, ike_peer = %remote, "not installing a BGP route that covers a tunnel's IKE peer");
            self.uninstall(&prefix).await;
            return;
        }
        // The best path first, then the other equal paths (ECMP) when configured.
        let mut hops: Vec<(IpAddr, String)> = Vec::new();
        let Some(first) = self.next_hop_of(&best) else {
            warn!(%prefix, next_hop = %best.next_hop.addr, "no interface for the BGP next hop; route not installed");
            return;
        };
        hops.push(first);
        if self.cfg.max_paths > 1 {
            for r in c.ecmp.iter().filter(|r| !r.is_local() && **r != best) {
                match self.next_hop_of(r) {
                    Some(h) if !hops.contains(&h) => hops.push(h),
                    Some(_) => {}
                    None => {
                        debug!(%prefix, next_hop = %r.next_hop.addr, "no interface for an equal path; left out")
                    }
                }
            }
            hops.truncate(self.cfg.max_paths);
        }
        let new = Installed { hops };
        if let Some(old) = self.installed.get(&prefix) {
            if *old == new {
                return;
            }
            // A single-path route moving to another device, and IPv6 routes changing
            // between single and multipath (siblings), are deleted first: a replace
            // would only touch the one route the kernel matches.
            let single_move = old.hops.len() == 1
                && new.hops.len() == 1
                && old.hops.first().map(|h| &h.1) != new.hops.first().map(|h| &h.1);
            let v6_reshape = prefix.addr().is_ipv6() && (old.hops.len() > 1 || new.hops.len() > 1);
            if single_move || v6_reshape {
                self.uninstall(&prefix).await;
            }
        }
        let r = match new.hops.as_slice() {
            [(gateway, device)] => {
                self.nl
                    .replace_route_via(
                        prefix.addr(),
                        prefix.len(),
                        *gateway,
                        Some(device),
                        None,
                        RTPROT_ROUTEVPN_BGP,
                    )
                    .await
            }
            hops => {
                self.nl
                    .replace_route_multipath(prefix.addr(), prefix.len(), hops, RTPROT_ROUTEVPN_BGP)
                    .await
            }
        };
        match r {
            Ok(()) => {
                info!(%prefix, via = %hops_desc(&new.hops), "BGP route installed");
                self.installed.insert(prefix, new);
            }
            Err(e) => warn!(%prefix, error = %e, "cannot install BGP route"),
        }
    }

    async fn shutdown(&mut self, now: Instant) {
        info!("BGP speaker stopping: Cease to every neighbor, withdrawing routes");
        for i in 0..self.neighbors.len() {
            self.deactivate(now, i);
        }
        self.drain(now).await;
        let left: Vec<Prefix> = self.installed.keys().copied().collect();
        for p in left {
            self.uninstall(&p).await;
        }
        // Let the writer tasks put the NOTIFICATIONs on the wire.
        tokio::time::sleep(SHUTDOWN_FLUSH).await;
    }

    fn publish(&self, now: Instant) {
        let loc: Vec<(Prefix, Option<PeerId>)> = self
            .speaker
            .rib()
            .loc_rib()
            .map(|(p, r)| (*p, r.peer))
            .collect();
        let neighbors = self
            .neighbors
            .iter()
            .map(|n| {
                let state = match self.speaker.session(n.id) {
                    Some(s) if n.active => state_name(s.state()).to_string(),
                    _ => "Paused".to_string(),
                };
                let received = self.speaker.rib().adj_rib_in(n.id).count() as u64;
                let accepted = loc.iter().filter(|(_, p)| *p == Some(n.id)).count() as u64;
                NeighborStatus {
                    address: n.cfg.address.to_string(),
                    asn: n.cfg.asn,
                    state,
                    uptime_secs: n
                        .established_at
                        .map(|t| now.saturating_duration_since(t).as_secs()),
                    prefixes_received: received,
                    prefixes_accepted: accepted,
                    prefixes_sent: self.speaker.rib().adj_rib_out(n.id).count() as u64,
                    bfd: n.cfg.bfd.map(|_| {
                        n.bfd
                            .as_ref()
                            .map(|b| bfd_state_name(b.state()))
                            .unwrap_or_else(|| "Paused".into())
                    }),
                }
            })
            .collect();
        let routes = self
            .installed
            .iter()
            .filter_map(|(p, r)| {
                // The best path (the first next hop of a multipath route).
                let (gateway, device) = r.hops.first()?;
                Some(BgpRouteStatus {
                    prefix: p.to_string(),
                    next_hop: gateway.to_string(),
                    device: device.clone(),
                    also_via: r.hops[1..]
                        .iter()
                        .map(|(g, d)| format!("{g} dev {d}"))
                        .collect(),
                })
            })
            .collect();
        if let Ok(mut s) = self.status.lock() {
            *s = RoutingStatus {
                asn: self.cfg.asn,
                router_id: self.cfg.router_id.to_string(),
                neighbors,
                routes,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containment() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(prefix_contains(a("169.254.12.1"), 30, a("169.254.12.2")));
        assert!(!prefix_contains(a("169.254.12.1"), 30, a("169.254.12.5")));
        assert!(prefix_contains(a("fd00:12::1"), 64, a("fd00:12::2")));
        assert!(!prefix_contains(a("fd00:12::1"), 64, a("169.254.12.2")));
        assert!(prefix_contains(a("0.0.0.0"), 0, a("192.0.2.2")));
        assert_eq!(canon(a("::ffff:10.0.0.1")), a("10.0.0.1"));
    }

    #[test]
    fn redistribution_selects_connected_and_static() {
        use crate::netlink::RouteInfo;
        let kr = |dst: &str, len: u8, gw: Option<&str>, proto: u8, dev: Option<&str>| KernelRoute {
            info: RouteInfo {
                dst: dst.parse().unwrap(),
                prefix_len: len,
                oif: dev.map(|_| 1),
                gateway: gw.map(|g| g.parse().unwrap()),
                metric: None,
            },
            protocol: proto,
            dev: dev.map(str::to_string),
        };
        let routes = vec![
            kr("10.9.0.0", 24, None, RTPROT_KERNEL, Some("lan1")),
            kr("fd00:9::", 64, None, RTPROT_KERNEL, Some("lan1")),
            kr("fe80::", 64, None, RTPROT_KERNEL, Some("lan1")),
            kr("169.254.12.0", 30, None, RTPROT_KERNEL, Some("vti0")),
            kr("10.7.0.0", 24, None, RTPROT_KERNEL, Some("vti0")),
            kr("127.0.0.0", 8, None, RTPROT_KERNEL, Some("lo")),
            kr("192.0.2.0", 24, None, RTPROT_KERNEL, Some("wan0")),
            kr("2001:db8::", 64, None, RTPROT_KERNEL, Some("wan0")),
            kr(
                "10.3.0.0",
                24,
                Some("192.0.2.9"),
                RTPROT_STATIC,
                Some("wan0"),
            ),
            kr("10.8.0.0", 24, Some("10.9.0.2"), RTPROT_BOOT, Some("lan1")),
            kr(
                "10.6.0.0",
                24,
                Some("10.9.0.2"),
                RTPROT_STATIC,
                Some("lan1"),
            ),
            kr("0.0.0.0", 0, Some("10.9.0.2"), RTPROT_BOOT, Some("lan1")),
            kr("10.5.0.0", 24, Some("10.9.0.2"), 186, Some("lan1")),
            kr(
                "10.4.0.0",
                24,
                Some("169.254.12.2"),
                RTPROT_ROUTEVPN_BGP,
                Some("vti0"),
            ),
        ];
        let tunnels: HashSet<String> = ["vti0".to_string()].into();
        let underlay = ["192.0.2.2".parse().unwrap()];
        let show = |classes: &[Redistribute]| -> Vec<String> {
            select_redistributed(&routes, classes, &tunnels, &underlay)
                .iter()
                .map(|p| p.to_string())
                .collect()
        };
        assert_eq!(
            show(&[Redistribute::Connected]),
            ["10.9.0.0/24", "fd00:9::/64"]
        );
        assert_eq!(
            show(&[Redistribute::Static]),
            ["10.3.0.0/24", "10.6.0.0/24", "10.8.0.0/24"]
        );
        assert_eq!(
            show(&[Redistribute::Static, Redistribute::Connected]).len(),
            5
        );
        assert!(show(&[]).is_empty());
    }

    #[test]
    fn hop_description() {
        let hops = vec![
            ("169.254.12.2".parse().unwrap(), "vti0".to_string()),
            ("169.254.13.2".parse().unwrap(), "vti1".to_string()),
        ];
        assert_eq!(
            hops_desc(&hops),
            "169.254.12.2 dev vti0, 169.254.13.2 dev vti1"
        );
    }
}
