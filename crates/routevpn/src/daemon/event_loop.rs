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
use tracing::{debug, info};

use super::tunnel::{flush_tunnel, Tunnel};
use crate::control::{Request, Response};
use crate::dataplane::Dataplane;
use crate::netlink::Netlink;
use crate::routing;

/// How often the daemon reads SA counters (liveness, byte/packet lifetimes).
const COUNTER_POLL: Duration = Duration::from_secs(1);

/// What the socket readers, the dataplane, the control socket and the signal handlers
/// hand the loop.
pub(super) enum Input {
    Ike(ike::sa::Datagram),
    Control(Request, oneshot::Sender<Response>),
    Shutdown(&'static str),
    /// SIGHUP.
    Reload,
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
    /// RFC 7296 §2.6 IKE_SA_INIT admission shared by all tunnels (rate, half-open).
    pub(super) admission: ike::Admission,
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
                            Some(t) => t.session.handle_datagram_admitted(now, d, &mut self.admission),
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
                            t.session.handle_timeout_admitted(now, &mut self.admission);
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
}
