//! The daemon's event loop: one task owns every IKE session; socket readers, the
//! dataplane's receive threads, the control socket and signal handlers feed it through a
//! channel. CHILD SAs go into the userspace dataplane; tunnel interfaces are up, with
//! their addresses and routes, only while a CHILD SA is installed.

use super::io;
use crate::config::{Config, TunnelConfig};
use crate::control::{
    self, ChildSaStatus, IkeSaStatus, Request, Response, StatusReport, TunnelStatus,
};
use crate::dataplane::{self, ChildKeys, Dataplane, TunnelId};
use crate::netlink::{Netlink, RTPROT_ROUTEVPN};
use crate::routing;
use anyhow::Context as _;
use ike::sa::{ChildSaInfo, Event, Session, SessionConfig};
use ike::wire::{IdPayload, TrafficSelector};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// How often the daemon reads SA counters (liveness, byte/packet lifetimes).
const COUNTER_POLL: Duration = Duration::from_secs(1);
/// Underlay MTU assumed when computing a tunnel's MTU.
const UNDERLAY_MTU: u16 = 1500;

/// Randomness for the protocol cores, from the system CSPRNG.
struct SystemRng(aws_lc_rs::rand::SystemRandom);

impl ike::Rng for SystemRng {
    fn fill(&mut self, buf: &mut [u8]) {
        // A failing kernel RNG leaves nothing safe to do.
        aws_lc_rs::rand::SecureRandom::fill(&self.0, buf).expect("system random generator failed");
    }
}

enum Input {
    Ike(ike::sa::Datagram),
    Control(Request, oneshot::Sender<Response>),
    Shutdown(&'static str),
    /// SIGHUP.
    Reload,
}

/// A CHILD SA as the daemon tracks it.
struct InstalledChild {
    spi_in: u32,
    /// Inbound packets at the last counter poll (liveness).
    last_packets_in: u64,
}

struct Tunnel {
    cfg: TunnelConfig,
    session: Session,
    tid: TunnelId,
    children: Vec<InstalledChild>,
    link_up: bool,
    /// The BGP speaker, told when this interface goes up or down.
    routing: Option<routing::Handle>,
}

pub struct Daemon {
    socket_path: PathBuf,
    /// Re-read on SIGHUP / `routevpn reload`.
    config_path: PathBuf,
    tunnels: Vec<Tunnel>,
    started: Instant,
    /// `[bgp]`, until the speaker starts; then its handle.
    bgp: Option<crate::config::BgpConfig>,
    routing: Option<routing::Handle>,
}

fn id_payload(id: &crate::config::Identity) -> IdPayload {
    IdPayload {
        id_type: id.id_type(),
        reserved: [0; 3],
        data: id.data(),
    }
}

fn selectors(prefixes: &[(IpAddr, u8)]) -> Vec<TrafficSelector> {
    prefixes
        .iter()
        .map(|(a, l)| TrafficSelector::from_prefix(*a, *l))
        .collect()
}

fn session_config(t: &TunnelConfig) -> SessionConfig {
    SessionConfig {
        name: t.name.clone(),
        local_id: id_payload(&t.local_id),
        remote_id: id_payload(&t.remote_id),
        psk: t.psk.secret().clone(),
        ike: t.ike.clone(),
        esp: t.esp.clone(),
        local_ts: selectors(&t.local_ts),
        remote_ts: selectors(&t.remote_ts),
        initiate: t.start,
        force_encap: true,
        ike_lifetime: t.ike_lifetime,
        child_lifetime: t.child_lifetime,
        dpd: t.dpd,
        dpd_restart: t.dpd_action == crate::config::DpdAction::Restart,
        fragment_size: ike::limits::FRAGMENT_SIZE,
        retransmit_timeout: t.retransmit_timeout,
        retransmit_tries: t.retransmit_tries,
    }
}

impl Daemon {
    pub fn new(cfg: Config, socket_path: PathBuf, config_path: PathBuf) -> anyhow::Result<Daemon> {
        let now = Instant::now();
        let tunnels = cfg
            .tunnels
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let session = Session::new(
                    session_config(&t),
                    t.local,
                    t.remote,
                    Box::new(SystemRng(aws_lc_rs::rand::SystemRandom::new())),
                    now,
                );
                Tunnel {
                    cfg: t,
                    session,
                    tid: TunnelId(i),
                    children: Vec::new(),
                    link_up: false,
                    routing: None,
                }
            })
            .collect();
        Ok(Daemon {
            socket_path,
            config_path,
            tunnels,
            started: now,
            bgp: cfg.bgp,
            routing: None,
        })
    }

    pub async fn run(mut self) -> anyhow::Result<()> {
        let (tx, mut rx) = mpsc::channel::<Input>(4096);
        // No route flush at start or stop: our routes only ever point into our own TUN
        // interfaces, which vanish with the process (and their routes with them), and
        // another daemon in this namespace may own other routevpn routes.
        let nl = Netlink::new().context("opening netlink")?;

        // One IKE socket (500) and one NAT-T socket (4500) per local address, each
        // pinned to the interface holding that address.
        let mut ike_sockets: HashMap<IpAddr, Arc<UdpSocket>> = HashMap::new();
        let mut natt = Vec::new();
        for t in &self.tunnels {
            let addr = t.cfg.local;
            if ike_sockets.contains_key(&addr) {
                continue;
            }
            let dev = nl
                .interface_of_address(addr)
                .await
                .context("looking up underlay interfaces")?
                .ok_or_else(|| anyhow::anyhow!(io::describe_local(addr)))?;
            let s500 = io::bound_udp(SocketAddr::new(addr, t.cfg.local_port), &dev)?;
            let s500 = Arc::new(UdpSocket::from_std(s500)?);
            spawn_reader(s500.clone(), tx.clone());
            ike_sockets.insert(addr, s500);
            let s4500 = io::bound_udp(SocketAddr::new(addr, ike::limits::NATT_PORT), &dev)?;
            s4500.set_nonblocking(false)?;
            natt.push(s4500);
            info!(%addr, interface = %dev, "listening for IKE on ports {} and {}", t.cfg.local_port, ike::limits::NATT_PORT);
        }
        let ike_tx = tx.clone();
        let dp = Dataplane::start(
            natt,
            Box::new(move |local, remote, data| {
                // Never block the dataplane thread; IKE retransmits cover a full queue.
                let _ = ike_tx.try_send(Input::Ike(ike::sa::Datagram {
                    local,
                    remote,
                    data,
                }));
            }),
        )
        .context("starting the dataplane")?;
        let dp = Arc::new(dp);
        for t in &mut self.tunnels {
            let mtu = t.cfg.mtu.unwrap_or(1400);
            t.tid = dp
                .add_tunnel(&t.cfg.name, mtu)
                .with_context(|| format!("creating tunnel interface {}", t.cfg.name))?;
            // Down until a CHILD SA is installed.
            if let Err(e) = nl.set_link_up(&t.cfg.name, false).await {
                warn!(tunnel = %t.cfg.name, error = %e, "cannot set interface down");
            }
        }

        // ---- embedded BGP/BFD: starts once the tunnel interfaces exist ----
        if let Some(bgp) = self.bgp.take() {
            let infos = self
                .tunnels
                .iter()
                .map(|t| routing::TunnelInfo {
                    name: t.cfg.name.clone(),
                    addresses: t.cfg.addresses.clone(),
                    remote: t.cfg.remote,
                })
                .collect();
            let h = routing::start(bgp, infos, nl.clone())
                .await
                .context("starting the BGP speaker")?;
            for t in &mut self.tunnels {
                t.routing = Some(h.clone());
            }
            self.routing = Some(h);
        }

        let listener = control::bind(&self.socket_path)
            .with_context(|| format!("control socket {}", self.socket_path.display()))?;
        spawn_control(listener, tx.clone());
        spawn_signals(tx.clone())?;
        info!(tunnels = self.tunnels.len(), socket = %self.socket_path.display(), "routevpn daemon started");

        let mut shutdown_deadline: Option<Instant> = None;
        let mut next_poll = Instant::now() + COUNTER_POLL;
        loop {
            self.flush(&ike_sockets, &dp, &nl).await;
            let now = Instant::now();
            if let Some(d) = shutdown_deadline {
                let busy = self.tunnels.iter().any(|t| t.session.is_established());
                if now >= d || !busy {
                    break;
                }
            }
            let next = self
                .tunnels
                .iter()
                .filter_map(|t| t.session.poll_timeout())
                .chain(shutdown_deadline)
                .chain(Some(next_poll))
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(next));
            tokio::select! {
                input = rx.recv() => {
                    let Some(input) = input else { break };
                    let now = Instant::now();
                    match input {
                        Input::Ike(d) => match self.tunnels.iter_mut().find(|t| t.session.matches(&d)) {
                            Some(t) => t.session.handle_datagram(now, d),
                            None => debug!(from = %d.remote, "IKE message from an unconfigured peer"),
                        },
                        Input::Control(Request::Reload, reply) => {
                            let resp = self.reload(now, &ike_sockets, &dp, &nl).await;
                            let _ = reply.send(resp);
                        }
                        Input::Control(req, reply) => {
                            let resp = self.control(req, now, &dp);
                            let _ = reply.send(resp);
                        }
                        Input::Reload => {
                            self.reload(now, &ike_sockets, &dp, &nl).await;
                        }
                        Input::Shutdown(sig) => {
                            if shutdown_deadline.is_none() {
                                // BGP first: its Cease NOTIFICATIONs still need the tunnels.
                                if let Some(r) = &self.routing {
                                    r.shutdown().await;
                                }
                                info!(signal = sig, "shutting down: deleting all SAs");
                                for t in &mut self.tunnels {
                                    t.session.close(now);
                                }
                                shutdown_deadline = Some(now + Duration::from_secs(2));
                            } else {
                                break;
                            }
                        }
                    }
                }
                _ = sleep => {
                    let now = Instant::now();
                    for t in &mut self.tunnels {
                        if t.session.poll_timeout().is_some_and(|d| d <= now) {
                            t.session.handle_timeout(now);
                        }
                    }
                    if now >= next_poll {
                        next_poll = now + COUNTER_POLL;
                        self.poll_counters(now, &dp);
                    }
                }
            }
        }
        self.flush(&ike_sockets, &dp, &nl).await;
        for t in &self.tunnels {
            let _ = nl.set_link_up(&t.cfg.name, false).await;
        }
        if let Some(r) = &self.routing {
            r.shutdown().await;
        }
        dp.shutdown();
        let _ = std::fs::remove_file(&self.socket_path);
        info!("routevpn daemon stopped");
        Ok(())
    }

    /// Reads SA counters: inbound ESP proves the peer alive (no liveness check needed),
    /// and byte/packet lifetimes trigger CHILD SA rekeys (RFC 7296 §2.8).
    fn poll_counters(&mut self, now: Instant, dp: &Dataplane) {
        for t in &mut self.tunnels {
            let mut alive = false;
            let mut rekey = None;
            for c in &mut t.children {
                let Some(ctr) = dp.counters(c.spi_in) else {
                    continue;
                };
                if ctr.inbound.packets > c.last_packets_in {
                    alive = true;
                    c.last_packets_in = ctr.inbound.packets;
                }
                let bytes = ctr.inbound.bytes + ctr.outbound.bytes;
                let packets = ctr.inbound.packets + ctr.outbound.packets;
                if t.cfg.child_lifetime_bytes.is_some_and(|l| bytes >= l)
                    || t.cfg.child_lifetime_packets.is_some_and(|l| packets >= l)
                {
                    rekey = Some(c.spi_in);
                }
            }
            // RFC 4303 §3.3.3: rekey long before the sequence number runs out.
            if dp
                .outbound_remaining_seq(t.tid)
                .is_some_and(|r| r < (1 << 20))
            {
                rekey = t.children.last().map(|c| c.spi_in);
            }
            if alive {
                t.session.note_inbound_traffic(now);
            }
            if let Some(spi) = rekey {
                t.session.rekey_child_spi(now, spi);
            }
        }
    }

    /// Sends what the sessions queued and acts on their events.
    async fn flush(
        &mut self,
        ike_sockets: &HashMap<IpAddr, Arc<UdpSocket>>,
        dp: &Dataplane,
        nl: &Netlink,
    ) {
        for t in &mut self.tunnels {
            flush_tunnel(t, ike_sockets, dp, nl).await;
        }
    }

    /// Re-reads the configuration (SIGHUP, `routevpn reload`): unchanged tunnels are
    /// left alone; changed and removed ones are deleted (the peer is told) and their
    /// interfaces removed; changed and new ones start afresh.
    async fn reload(
        &mut self,
        now: Instant,
        ike_sockets: &HashMap<IpAddr, Arc<UdpSocket>>,
        dp: &Dataplane,
        nl: &Netlink,
    ) -> Response {
        let new = match crate::config::load(&self.config_path) {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "reload: configuration rejected, nothing changed");
                return Response::Error {
                    message: format!("configuration rejected, nothing changed: {e}"),
                };
            }
        };
        let (mut kept, mut changed, mut removed, mut added) = (0, 0, 0, 0);
        let mut notes = Vec::new();
        let mut i = 0;
        while i < self.tunnels.len() {
            let fresh = new
                .tunnels
                .iter()
                .find(|n| n.name == self.tunnels[i].cfg.name);
            if fresh == Some(&self.tunnels[i].cfg) {
                kept += 1;
                i += 1;
                continue;
            }
            let mut t = self.tunnels.remove(i);
            if fresh.is_some() {
                changed += 1;
            } else {
                removed += 1;
            }
            info!(tunnel = %t.cfg.name, "reload: tearing down");
            t.session.close(now);
            flush_tunnel(&mut t, ike_sockets, dp, nl).await;
            if t.link_up {
                set_link(&mut t, false, nl).await;
            }
            dp.remove_tunnel(t.tid);
        }
        for n in new.tunnels {
            if self.tunnels.iter().any(|t| t.cfg.name == n.name) {
                continue;
            }
            if !ike_sockets.contains_key(&n.local) {
                notes.push(format!(
                    "tunnel {}: new local address {} needs a daemon restart",
                    n.name, n.local
                ));
                continue;
            }
            let tid = match dp.add_tunnel(&n.name, n.mtu.unwrap_or(1400)) {
                Ok(tid) => tid,
                Err(e) => {
                    notes.push(format!("tunnel {}: cannot create interface: {e}", n.name));
                    continue;
                }
            };
            let _ = nl.set_link_up(&n.name, false).await;
            let session = Session::new(
                session_config(&n),
                n.local,
                n.remote,
                Box::new(SystemRng(aws_lc_rs::rand::SystemRandom::new())),
                now,
            );
            info!(tunnel = %n.name, "reload: starting");
            self.tunnels.push(Tunnel {
                cfg: n,
                session,
                tid,
                children: Vec::new(),
                link_up: false,
                routing: self.routing.clone(),
            });
            added += 1;
        }
        let added = added - changed.min(added);
        if new.bgp.is_some() != self.routing.is_some() || new.control_socket != self.socket_path {
            notes.push(
                "[bgp], routing and control_socket changes apply after a restart".to_string(),
            );
        }
        let mut message = format!(
            "reloaded: {kept} unchanged, {changed} changed, {added} added, {removed} removed"
        );
        for n in &notes {
            message.push_str("; ");
            message.push_str(n);
        }
        info!("{message}");
        Response::Ok { message }
    }

    fn control(&mut self, req: Request, now: Instant, dp: &Dataplane) -> Response {
        match req {
            Request::Status => Response::Status(self.status(now, dp)),
            // Handled in the event loop (it needs the sockets and the dataplane).
            Request::Reload => Response::Error {
                message: "reload is handled by the event loop".into(),
            },
            Request::Up { name } => match self.tunnels.iter_mut().find(|t| t.cfg.name == name) {
                Some(t) => {
                    t.session.initiate(now);
                    Response::Ok {
                        message: format!("initiating {name}"),
                    }
                }
                None => Response::Error {
                    message: format!("no tunnel named {name:?}"),
                },
            },
            Request::Down { name } => match self.tunnels.iter_mut().find(|t| t.cfg.name == name) {
                Some(t) => {
                    t.session.close(now);
                    Response::Ok {
                        message: format!("closing {name}"),
                    }
                }
                None => Response::Error {
                    message: format!("no tunnel named {name:?}"),
                },
            },
        }
    }

    fn status(&self, now: Instant, dp: &Dataplane) -> StatusReport {
        StatusReport {
            daemon_pid: std::process::id(),
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
            tunnels: self
                .tunnels
                .iter()
                .map(|t| tunnel_status(t, now, dp))
                .collect(),
            bgp: self.routing.as_ref().map(|r| r.status()),
        }
    }
}

/// Sends what one session queued and acts on its events.
async fn flush_tunnel(
    t: &mut Tunnel,
    ike_sockets: &HashMap<IpAddr, Arc<UdpSocket>>,
    dp: &Dataplane,
    nl: &Netlink,
) {
    loop {
        while let Some(d) = t.session.poll_transmit() {
            let r = if d.local.port() == ike::limits::NATT_PORT {
                if d.data == [ike::limits::NATT_KEEPALIVE_BYTE] {
                    dp.send_keepalive(d.local, d.remote)
                } else {
                    dp.send_ike(d.local, d.remote, &d.data)
                }
            } else {
                match ike_sockets.get(&d.local.ip()) {
                    Some(s) => s.send_to(&d.data, d.remote).await.map(|_| ()),
                    None => Err(std::io::Error::other("no IKE socket for that address")),
                }
            };
            if let Err(e) = r {
                warn!(tunnel = %t.cfg.name, to = %d.remote, error = %e, "sending IKE datagram failed");
            }
        }
        let Some(ev) = t.session.poll_event() else {
            break;
        };
        match ev {
            Event::ChildInstalled(info) => install(t, *info, dp, nl).await,
            Event::ChildDeleted { spi_in, spi_out } => {
                dp.remove_child(spi_in);
                t.children.retain(|c| c.spi_in != spi_in);
                debug!(tunnel = %t.cfg.name, spi_in = format_args!("{spi_in:08x}"), spi_out = format_args!("{spi_out:08x}"), "CHILD SA removed");
                if t.children.is_empty() && t.link_up {
                    set_link(t, false, nl).await;
                }
            }
            Event::IkeClosed { reason, .. } => {
                info!(tunnel = %t.cfg.name, %reason, "IKE SA closed")
            }
            Event::ChildFailed { reason } => {
                warn!(tunnel = %t.cfg.name, %reason, "CHILD SA not created")
            }
            other => debug!(tunnel = %t.cfg.name, event = ?other, "session event"),
        }
    }
}

fn tunnel_status(t: &Tunnel, now: Instant, dp: &Dataplane) -> TunnelStatus {
    let s = t.session.status(now);
    let state = if s.ike_sas.iter().any(|i| i.state == "established") {
        if s.children.is_empty() {
            "ike-only"
        } else {
            "up"
        }
    } else if s.ike_sas.is_empty() {
        "down"
    } else {
        "connecting"
    };
    TunnelStatus {
        name: t.cfg.name.clone(),
        local: t.cfg.local.to_string(),
        remote: t.cfg.remote.to_string(),
        local_id: t.cfg.local_id.to_string(),
        remote_id: t.cfg.remote_id.to_string(),
        state: state.to_string(),
        last_error: s.last_error.clone(),
        ike_sas: s
            .ike_sas
            .iter()
            .map(|i| IkeSaStatus {
                state: i.state.to_string(),
                initiator: i.initiator,
                spi_i: format!("{:016x}", i.spi_i),
                spi_r: format!("{:016x}", i.spi_r),
                proposal: i.proposal.clone(),
                peer: i.remote.to_string(),
                age_secs: i.age.as_secs(),
                rekeys: i.rekeys,
            })
            .collect(),
        child_sas: s
            .children
            .iter()
            .map(|(c, age)| {
                let ctr = dp.counters(c.spi_in).unwrap_or_default();
                ChildSaStatus {
                    state: "installed".to_string(),
                    spi_in: format!("{:08x}", c.spi_in),
                    spi_out: format!("{:08x}", c.spi_out),
                    proposal: c.proposal.clone(),
                    esn: c.esn,
                    local_ts: c.local_ts.iter().map(ike::sa::ts_to_string).collect(),
                    remote_ts: c.remote_ts.iter().map(ike::sa::ts_to_string).collect(),
                    age_secs: age.as_secs(),
                    packets_in: ctr.inbound.packets,
                    packets_out: ctr.outbound.packets,
                    bytes_in: ctr.inbound.bytes,
                    bytes_out: ctr.outbound.bytes,
                    replayed: ctr.inbound.replayed,
                    icv_failures: ctr.inbound.icv_failures,
                    malformed: ctr.inbound.malformed,
                }
            })
            .collect(),
    }
}

/// Puts a new CHILD SA into the dataplane and, for the tunnel's first one, brings the
/// interface up with its MTU, addresses and routes.
async fn install(t: &mut Tunnel, info: ChildSaInfo, dp: &Dataplane, nl: &Netlink) {
    let Some(alg) = dataplane::algorithm_for(info.encr, info.encr_key_bits, info.integ) else {
        warn!(tunnel = %t.cfg.name, proposal = %info.proposal, "negotiated ESP suite has no dataplane implementation");
        return;
    };
    let keys = ChildKeys {
        spi_in: info.spi_in,
        spi_out: info.spi_out,
        alg,
        esn: info.esn,
        keys_in: info.keys_in,
        keys_out: info.keys_out,
        remote: info.remote,
        local: info.local,
        replay_window: t.cfg.replay_window,
        selectors: dataplane::selectors_for(&info.local_ts, &info.remote_ts),
    };
    if let Err(e) = dp.install_child(t.tid, keys) {
        warn!(tunnel = %t.cfg.name, error = %e, "cannot install CHILD SA in the dataplane");
        return;
    }
    t.children.push(InstalledChild {
        spi_in: info.spi_in,
        last_packets_in: 0,
    });
    if !t.link_up {
        let mtu = t
            .cfg
            .mtu
            .unwrap_or_else(|| dataplane::compute_mtu(UNDERLAY_MTU, t.cfg.local.is_ipv6(), alg));
        if let Err(e) = nl.set_mtu(&t.cfg.name, mtu as u32).await {
            warn!(tunnel = %t.cfg.name, error = %e, "cannot set MTU");
        }
        set_link(t, true, nl).await;
    }
}

/// Brings a tunnel interface up (then its addresses and routes: an admin-down link
/// loses its routes and IPv6 addresses) or down.
async fn set_link(t: &mut Tunnel, up: bool, nl: &Netlink) {
    let name = t.cfg.name.clone();
    if let Err(e) = nl.set_link_up(&name, up).await {
        warn!(tunnel = %name, error = %e, "cannot change interface state");
        return;
    }
    t.link_up = up;
    if !up {
        info!(tunnel = %name, "tunnel interface down (no CHILD SA)");
        if let Some(r) = &t.routing {
            r.link(&name, false).await;
        }
        for r in &t.cfg.routes {
            let _ = nl
                .delete_route(r.prefix.0, r.prefix.1, &name, r.metric, RTPROT_ROUTEVPN)
                .await;
        }
        return;
    }
    for (addr, len) in &t.cfg.addresses {
        if let Err(e) = nl.add_address(&name, *addr, *len).await {
            warn!(tunnel = %name, error = %e, "cannot add address");
        }
    }
    for r in &t.cfg.routes {
        if let Err(e) = nl
            .replace_route(r.prefix.0, r.prefix.1, &name, r.metric, RTPROT_ROUTEVPN)
            .await
        {
            warn!(tunnel = %name, error = %e, "cannot install route");
        }
    }
    info!(tunnel = %name, routes = t.cfg.routes.len(), "tunnel interface up");
    if let Some(r) = &t.routing {
        r.link(&name, true).await;
    }
}

fn spawn_reader(sock: Arc<UdpSocket>, tx: mpsc::Sender<Input>) {
    tokio::spawn(async move {
        let Ok(local) = sock.local_addr() else { return };
        let mut buf = vec![0u8; 65536];
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, remote)) => {
                    if tx
                        .send(Input::Ike(io::ike_datagram(local, remote, &buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(e) => {
                    debug!(error = %e, "UDP receive error");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
}

fn spawn_control(listener: tokio::net::UnixListener, tx: mpsc::Sender<Input>) {
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = stream.into_split();
                let mut line = String::new();
                let mut rd = BufReader::new(rd);
                if rd.read_line(&mut line).await.is_err() {
                    return;
                }
                let resp = match serde_json::from_str::<Request>(line.trim()) {
                    Ok(req) => {
                        let (rtx, rrx) = oneshot::channel();
                        if tx.send(Input::Control(req, rtx)).await.is_err() {
                            return;
                        }
                        match rrx.await {
                            Ok(r) => r,
                            Err(_) => return,
                        }
                    }
                    Err(e) => Response::Error {
                        message: format!("bad request: {e}"),
                    },
                };
                if let Ok(mut s) = serde_json::to_string(&resp) {
                    s.push('\n');
                    let _ = wr.write_all(s.as_bytes()).await;
                }
            });
        }
    });
}

fn spawn_signals(tx: mpsc::Sender<Input>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut hup = signal(SignalKind::hangup()).context("installing SIGHUP handler")?;
    tokio::spawn(async move {
        loop {
            let input = tokio::select! {
                _ = term.recv() => Input::Shutdown("SIGTERM"),
                _ = int.recv() => Input::Shutdown("SIGINT"),
                _ = hup.recv() => Input::Reload,
            };
            if tx.send(input).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}
