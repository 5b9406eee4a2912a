//! The daemon's event loop: one task owns every session; socket readers, the control
//! socket and signal handlers feed it through a channel.

use super::io::{self, Received, Sockets};
use crate::config::{Config, TunnelConfig};
use crate::control::{
    self, ChildSaStatus, IkeSaStatus, Request, Response, StatusReport, TunnelStatus,
};
use anyhow::Context as _;
use ike::sa::{Event, Session, SessionConfig};
use ike::wire::{IdPayload, TrafficSelector};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

/// Randomness for the protocol cores, from the system CSPRNG.
struct SystemRng(aws_lc_rs::rand::SystemRandom);

impl ike::Rng for SystemRng {
    fn fill(&mut self, buf: &mut [u8]) {
        // A failing kernel RNG leaves nothing safe to do.
        aws_lc_rs::rand::SecureRandom::fill(&self.0, buf).expect("system random generator failed");
    }
}

enum Input {
    Datagram(Received),
    Control(Request, oneshot::Sender<Response>),
    Shutdown(&'static str),
}

struct Tunnel {
    cfg: TunnelConfig,
    session: Session,
}

pub struct Daemon {
    socket_path: PathBuf,
    tunnels: Vec<Tunnel>,
    started: Instant,
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
    }
}

impl Daemon {
    pub fn new(cfg: Config, socket_path: PathBuf) -> anyhow::Result<Daemon> {
        let now = Instant::now();
        let tunnels = cfg
            .tunnels
            .into_iter()
            .map(|t| {
                let session = Session::new(
                    session_config(&t),
                    t.local,
                    t.remote,
                    Box::new(SystemRng(aws_lc_rs::rand::SystemRandom::new())),
                    now,
                );
                Tunnel { cfg: t, session }
            })
            .collect();
        Ok(Daemon {
            socket_path,
            tunnels,
            started: now,
        })
    }

    pub async fn run(mut self) -> anyhow::Result<()> {
        let (tx, mut rx) = mpsc::channel::<Input>(4096);
        let mut sockets: HashMap<IpAddr, Sockets> = HashMap::new();
        for t in &self.tunnels {
            if let std::collections::hash_map::Entry::Vacant(slot) = sockets.entry(t.cfg.local) {
                let s =
                    Sockets::bind(t.cfg.local, t.cfg.local_port, ike::limits::NATT_PORT).await?;
                spawn_reader(s.ike.clone(), false, tx.clone());
                spawn_reader(s.natt.clone(), true, tx.clone());
                slot.insert(s);
            }
        }
        let listener = control::bind(&self.socket_path)
            .with_context(|| format!("control socket {}", self.socket_path.display()))?;
        spawn_control(listener, tx.clone());
        spawn_signals(tx.clone())?;
        info!(tunnels = self.tunnels.len(), socket = %self.socket_path.display(), "routevpn daemon started");

        let mut shutdown_deadline: Option<Instant> = None;
        loop {
            self.flush(&sockets).await;
            let now = Instant::now();
            if let Some(d) = shutdown_deadline {
                let busy = self.tunnels.iter().any(|t| {
                    t.session.is_established() || t.session.poll_timeout().is_some_and(|x| x < d)
                });
                if now >= d || !busy {
                    break;
                }
            }
            let next = self
                .tunnels
                .iter()
                .filter_map(|t| t.session.poll_timeout())
                .chain(shutdown_deadline)
                .min()
                .unwrap_or(now + Duration::from_secs(3600));
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(next));
            tokio::select! {
                input = rx.recv() => {
                    let Some(input) = input else { break };
                    let now = Instant::now();
                    match input {
                        Input::Datagram(Received::Ike(d)) => {
                            match self.tunnels.iter_mut().find(|t| t.session.matches(&d)) {
                                Some(t) => t.session.handle_datagram(now, d),
                                None => debug!(from = %d.remote, "IKE message from an unconfigured peer"),
                            }
                        }
                        Input::Datagram(Received::Esp { local, remote, data }) => {
                            debug!(from = %remote, to = %local, len = data.len(), "ESP packet (dataplane not attached)");
                        }
                        Input::Datagram(Received::Ignored) => {}
                        Input::Control(req, reply) => {
                            let resp = self.control(req, now);
                            let _ = reply.send(resp);
                        }
                        Input::Shutdown(sig) => {
                            if shutdown_deadline.is_none() {
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
                }
            }
        }
        self.flush(&sockets).await;
        let _ = std::fs::remove_file(&self.socket_path);
        info!("routevpn daemon stopped");
        Ok(())
    }

    /// Sends what the sessions queued and acts on their events.
    async fn flush(&mut self, sockets: &HashMap<IpAddr, Sockets>) {
        for t in &mut self.tunnels {
            while let Some(d) = t.session.poll_transmit() {
                match sockets.get(&d.local.ip()) {
                    Some(s) => {
                        if let Err(e) = s.send_ike(&d).await {
                            warn!(tunnel = %t.cfg.name, to = %d.remote, error = %e, "sending IKE datagram failed");
                        }
                    }
                    None => {
                        warn!(tunnel = %t.cfg.name, local = %d.local, "no socket for local address")
                    }
                }
            }
            while let Some(ev) = t.session.poll_event() {
                match ev {
                    Event::ChildInstalled(info) => {
                        debug!(tunnel = %t.cfg.name, ?info, "CHILD SA ready for the dataplane")
                    }
                    Event::ChildDeleted { spi_in, spi_out } => {
                        debug!(tunnel = %t.cfg.name, spi_in = format_args!("{spi_in:08x}"), spi_out = format_args!("{spi_out:08x}"), "CHILD SA removed")
                    }
                    Event::IkeClosed { reason, .. } => {
                        info!(tunnel = %t.cfg.name, %reason, "IKE SA closed")
                    }
                    other => debug!(tunnel = %t.cfg.name, event = ?other, "session event"),
                }
            }
        }
    }

    fn control(&mut self, req: Request, now: Instant) -> Response {
        match req {
            Request::Status => Response::Status(self.status(now)),
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

    fn status(&self, now: Instant) -> StatusReport {
        StatusReport {
            daemon_pid: std::process::id(),
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
            tunnels: self
                .tunnels
                .iter()
                .map(|t| {
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
                            .map(|(c, age)| ChildSaStatus {
                                state: "installed".to_string(),
                                spi_in: format!("{:08x}", c.spi_in),
                                spi_out: format!("{:08x}", c.spi_out),
                                proposal: c.proposal.clone(),
                                esn: c.esn,
                                local_ts: c.local_ts.iter().map(ike::sa::ts_to_string).collect(),
                                remote_ts: c.remote_ts.iter().map(ike::sa::ts_to_string).collect(),
                                age_secs: age.as_secs(),
                                packets_in: 0,
                                packets_out: 0,
                                bytes_in: 0,
                                bytes_out: 0,
                            })
                            .collect(),
                    }
                })
                .collect(),
        }
    }
}

fn spawn_reader(sock: Arc<tokio::net::UdpSocket>, natt: bool, tx: mpsc::Sender<Input>) {
    tokio::spawn(async move {
        let local = match sock.local_addr() {
            Ok(a) => a,
            Err(_) => return,
        };
        let mut buf = vec![0u8; 65536];
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, remote)) => {
                    let r = io::classify(local, remote, &buf[..n], natt);
                    if tx.send(Input::Datagram(r)).await.is_err() {
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
    tokio::spawn(async move {
        loop {
            let sig = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if tx.send(Input::Shutdown(sig)).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}
