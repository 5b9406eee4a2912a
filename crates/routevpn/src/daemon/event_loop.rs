//! The daemon's event loop: one task owns every IKE session; socket readers, the
//! dataplane's receive threads, the control socket and signal handlers feed it through a
//! channel. CHILD SAs go into the userspace dataplane; tunnel interfaces are up, with
//! their addresses and routes, only while a CHILD SA is installed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::dispatch;
use super::hooks::{HookEvent, Hooks};
use super::resolve;
use super::tunnel::{flush_tunnel, Tunnel};
use crate::control::{Request, Response};
use crate::dataplane::Dataplane;
use crate::netlink::Netlink;
use crate::routing;

/// How often the daemon reads SA counters (liveness, byte/packet lifetimes).
const COUNTER_POLL: Duration = Duration::from_secs(1);

/// Inputs handled in a row before the sessions' output is flushed and their timers
/// scanned (both visit every tunnel: per input, N tunnels would cost O(N²)).
const INPUT_BATCH: usize = 64;

/// On the way out, how much longer than the longest `hook_timeout` queued hooks get.
const HOOK_DRAIN_MARGIN: Duration = Duration::from_secs(2);

/// What the socket readers, the dataplane, the control socket and the signal handlers
/// hand the loop.
pub(super) enum Input {
    Ike(ike::sa::Datagram),
    Control(Request, oneshot::Sender<Response>),
    Shutdown(&'static str),
    /// SIGHUP.
    Reload,
    /// A `/metrics` scrape.
    Metrics(oneshot::Sender<crate::metrics::Snapshot>),
    /// The CHILD SA with this inbound SPI reached its byte or packet lifetime.
    VolumeLifetime(u32),
    /// Authenticated ESP of the CHILD SA with this inbound SPI came from a new address.
    PeerMoved(u32, std::net::SocketAddr),
    /// An address of this host came or went (tunnels with a dynamic local address).
    LocalAddressChanged,
    /// A peer's name (`remote_host`) resolved, or did not.
    Resolved {
        tunnel: String,
        addr: Option<IpAddr>,
    },
}

/// What `open` set up and the loop sends through.
pub(super) struct Io {
    pub(super) ike_sockets: HashMap<IpAddr, Arc<UdpSocket>>,
    pub(super) dp: Arc<Dataplane>,
    pub(super) nl: Netlink,
}

/// The daemon's state, owned by the event loop task.
pub struct Daemon {
    pub(super) socket_path: PathBuf,
    /// Re-read on SIGHUP / `routevpn reload`.
    pub(super) config_path: PathBuf,
    pub(super) tunnels: Vec<Tunnel>,
    pub(super) started: Instant,
    /// `[bgp]`, until the speaker starts; then its handle.
    pub(super) bgp: Option<crate::config::BgpConfig>,
    pub(super) routing: Option<routing::Handle>,
    /// `control_socket_group`: the control socket's group (mode 0660), else 0600.
    pub(super) socket_group: Option<u32>,
    /// systemd notifications (no-op without NOTIFY_SOCKET).
    pub(super) notify: super::notify::Notifier,
    /// `metrics = "addr:port"`, when configured.
    pub(super) metrics: Option<std::net::SocketAddr>,
    /// `dataplane_threads`, `dataplane_busy_poll`.
    pub(super) dataplane: crate::dataplane::Options,
    /// `routevpn_ike_setup_seconds`, over all tunnels.
    pub(super) setup: prometheus_client::metrics::histogram::Histogram,
    /// Every tunnel's on_up/on_down queue.
    pub(super) hooks: Hooks,
    /// RFC 7296 §2.6 IKE_SA_INIT admission shared by all tunnels (rate, half-open).
    pub(super) admission: ike::Admission,
    /// `start = true` tunnels initiating in waves at start-up.
    pub(super) pacer: super::pacing::Pacer,
    /// Logs the tunnels' dataplane drops as they grow.
    pub(super) drop_watch: super::drop_watch::DropWatch,
}

impl Daemon {
    /// Runs until SIGTERM/SIGINT; on the way out every IKE SA is deleted.
    pub async fn run(mut self) -> anyhow::Result<()> {
        let (tx, mut rx) = mpsc::channel::<Input>(4096);
        let Io {
            ike_sockets,
            dp,
            nl,
        } = self.open(&tx).await?;

        // Our certificates' expiry, 30 days ahead (reloads log it with the config warnings).
        for t in &self.tunnels {
            if let Some(w) = t
                .cfg
                .certs
                .as_ref()
                .and_then(|c| crate::config::expiry_warning(&c.auth.credentials, unix_now()))
            {
                warn!(tunnel = %t.cfg.name, "{w}");
            }
        }
        resolve::resolve_due(&mut self.tunnels, Instant::now(), &tx);
        // Initiate the first wave of `start = true` tunnels before READY=1, so that
        // "ready" means the control socket answers and IKE_SA_INITs are on the wire.
        let now = Instant::now();
        self.pacer = super::pacing::Pacer::new((0..self.tunnels.len()).filter(|&i| {
            self.tunnels[i]
                .session
                .poll_timeout()
                .is_some_and(|d| d <= now)
        }));
        self.release_paced(now);
        self.flush(&ike_sockets, &dp, &nl).await;
        let status = self.service_status();
        self.notify.ready(status);

        let mut shutdown_deadline: Option<Instant> = None;
        let mut next_poll = Instant::now() + COUNTER_POLL;
        loop {
            self.release_paced(Instant::now());
            self.flush(&ike_sockets, &dp, &nl).await;
            let now = Instant::now();
            if let Some(d) = shutdown_deadline {
                let busy = self.tunnels.iter().any(|t| t.session.is_established());
                if now >= d || !busy {
                    break;
                }
            }
            let pacer = &self.pacer;
            let next = self
                .tunnels
                .iter()
                .enumerate()
                .filter(|(i, _)| !pacer.holds(*i))
                .filter_map(|(_, t)| t.session.poll_timeout())
                .chain(pacer.deadline())
                .chain(shutdown_deadline)
                .chain(Some(next_poll))
                .chain(self.notify.deadline())
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(next));
            tokio::select! {
                input = rx.recv() => {
                    let Some(first) = input else { break };
                    let mut queued = Some(first);
                    let (mut handled, mut stop) = (0, false);
                    while let Some(input) = queued.take() {
                        let now = Instant::now();
                        match input {
                            Input::Ike(d) => match dispatch::tunnel_for(&self.tunnels, &d).and_then(|i| {
                                self.pacer.release_now(i, now);
                                self.tunnels.get_mut(i)
                            }) {
                                Some(t) => {
                                    t.note_ike(now);
                                    // Certificates are validated at the wall-clock time (sans-IO core).
                                    t.session.set_unix_time(unix_now());
                                    t.session.handle_datagram_admitted(now, d, &mut self.admission)
                                }
                                None => debug!(peer = %d.remote, "IKE message from an unconfigured peer"),
                            },
                            Input::Control(Request::Reload, reply) => {
                                // Tunnel indexes change: the waiting tunnels start now.
                                self.pacer.clear();
                                let resp = self.notified_reload(now, &ike_sockets, &dp, &nl).await;
                                let _ = reply.send(resp);
                            }
                            Input::Control(req, reply) => {
                                let resp = self.control(req, now, &dp);
                                let _ = reply.send(resp);
                            }
                            Input::Reload => {
                                self.pacer.clear();
                                self.notified_reload(now, &ike_sockets, &dp, &nl).await;
                            }
                            Input::Metrics(reply) => {
                                let _ = reply.send(self.metrics_snapshot(now, &dp));
                            }
                            Input::VolumeLifetime(spi) => {
                                // RFC 7296 §2.8: rekey as the volume lifetime is reached.
                                if let Some(t) = self.tunnel_of_child(spi) {
                                    t.session.rekey_child_spi(now, spi);
                                }
                            }
                            Input::PeerMoved(spi, remote) => {
                                if let Some(t) = self.tunnel_of_child(spi) {
                                    t.session.peer_moved(remote);
                                }
                            }
                            Input::Resolved { tunnel, addr } => {
                                resolve::resolved(&mut self.tunnels, now, &tunnel, addr);
                            }
                            Input::LocalAddressChanged => {
                                // §2.23: an authenticated message from our new address moves
                                // the peer's IKE and ESP to it (MOBIKE-less roaming).
                                for t in self.tunnels.iter_mut().filter(|t| t.cfg.dynamic_local()) {
                                    t.local_addresses_changed(now);
                                }
                            }
                            Input::Shutdown(sig) => {
                                if shutdown_deadline.is_none() {
                                    self.pacer.clear();
                                    self.notify.stopping();
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
                                    stop = true;
                                    break;
                                }
                            }
                        }
                        handled += 1;
                        // Whatever else is queued, up to a batch: the flush and the
                        // deadline scan after it visit every tunnel, once per batch.
                        if handled < INPUT_BATCH {
                            queued = rx.try_recv().ok();
                        }
                    }
                    if stop {
                        break;
                    }
                }
                _ = sleep => {
                    let now = Instant::now();
                    for (i, t) in self.tunnels.iter_mut().enumerate() {
                        if self.pacer.holds(i) {
                            continue;
                        }
                        if t.session.poll_timeout().is_some_and(|d| d <= now) {
                            t.session.handle_timeout_admitted(now, &mut self.admission);
                        }
                    }
                    if now >= next_poll {
                        next_poll = now + COUNTER_POLL;
                        self.poll_counters(now, &dp);
                        self.drop_watch.look(now, &dp, &self.tunnels);
                        resolve::resolve_due(&mut self.tunnels, now, &tx);
                        let status = self.service_status();
                        self.notify.status(status);
                    }
                    self.notify.tick(now);
                }
            }
        }
        self.flush(&ike_sockets, &dp, &nl).await;
        for t in &self.tunnels {
            let _ = match t.ifindex {
                Some(i) => nl.set_link_index(i, &t.cfg.name, false, None).await,
                None => nl.set_link_up(&t.cfg.name, false).await,
            };
            // Going down with the daemon is going down: on_down runs (as wg-quick's PostDown).
            if t.link_up {
                t.hooks.fire(&t.cfg, HookEvent::Down);
            }
        }
        let longest = self.tunnels.iter().map(|t| t.cfg.hooks.timeout).max();
        self.hooks
            .drain(longest.unwrap_or_default() + HOOK_DRAIN_MARGIN)
            .await;
        if let Some(r) = &self.routing {
            r.shutdown().await;
        }
        dp.shutdown();
        let _ = std::fs::remove_file(&self.socket_path);
        info!("routevpn daemon stopped");
        Ok(())
    }

    /// Initiates the waiting `start = true` tunnels that have a free slot.
    fn release_paced(&mut self, now: Instant) {
        if self.pacer.is_idle() {
            return;
        }
        let tunnels = &self.tunnels;
        let released = self.pacer.refill(now, |i| {
            tunnels.get(i).is_none_or(|t| t.session.is_established())
        });
        for i in released {
            if let Some(t) = self.tunnels.get_mut(i) {
                if t.session.poll_timeout().is_some_and(|d| d <= now) {
                    t.session.handle_timeout_admitted(now, &mut self.admission);
                }
            }
        }
    }

    /// The tunnel whose CHILD SA has this inbound SPI.
    fn tunnel_of_child(&mut self, spi_in: u32) -> Option<&mut Tunnel> {
        self.tunnels
            .iter_mut()
            .find(|t| t.children.iter().any(|c| c.spi_in == spi_in))
    }

    /// [`Daemon::reload`] between RELOADING=1 and READY=1 (sd_notify(3)).
    async fn notified_reload(
        &mut self,
        now: Instant,
        ike_sockets: &HashMap<IpAddr, Arc<UdpSocket>>,
        dp: &Dataplane,
        nl: &Netlink,
    ) -> Response {
        self.notify.reloading();
        let resp = self.reload(now, ike_sockets, dp, nl).await;
        let status = self.service_status();
        self.notify.ready(status);
        resp
    }

    /// Reads SA counters: inbound ESP proves the peer alive (no liveness check needed).
    /// Byte/packet lifetimes (RFC 7296 §2.8) arrive as [`Input::VolumeLifetime`] the
    /// moment they are reached; checking them here too covers a notice lost to a full
    /// queue.
    fn poll_counters(&mut self, now: Instant, dp: &Dataplane) {
        for t in &mut self.tunnels {
            super::tunnel::remove_lingering(t, now, false, dp);
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
            if let Some((spi, _)) = dp
                .outbound_low_seq(t.tid)
                .filter(|(_, left)| *left < (1 << 20))
            {
                rekey = Some(spi);
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
        loop {
            let mut queries = Vec::new();
            for t in self.tunnels.iter_mut().enumerate() {
                flush_tunnel(t, ike_sockets, dp, nl, &self.setup, &mut queries).await;
            }
            if queries.is_empty() {
                return;
            }
            // The tunnels that take (or refuse) these SAs have new datagrams to send.
            let now = Instant::now();
            for q in queries {
                dispatch::settle(&mut self.tunnels, q, now, unix_now(), &mut self.admission);
            }
        }
    }

    fn control(&mut self, req: Request, now: Instant, dp: &Dataplane) -> Response {
        match req {
            Request::Status => Response::Status(self.status(now, dp)),
            // Handled in the event loop (it needs the sockets and the dataplane).
            Request::Reload => Response::Error {
                message: "reload is handled by the event loop".into(),
            },
            Request::Up { name } => match self.tunnels.iter().position(|t| t.cfg.name == name) {
                Some(i) => {
                    self.pacer.release_now(i, now);
                    self.tunnels[i].session.initiate(now);
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
}

/// Seconds since the Unix epoch (0 if the clock is before it).
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
