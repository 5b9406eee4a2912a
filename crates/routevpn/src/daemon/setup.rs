//! Start-up: the daemon's state from the configuration, then its sockets (pinned to
//! the underlay), the dataplane and tunnel interfaces, the BGP speaker, the control
//! socket and the signal handlers.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::info;

use super::event_loop::{Daemon, Input, Io};
use super::hooks::Hooks;
use super::io;
use super::tunnel::{expected_mtu, learn_links, Tunnel};
use crate::config::Config;
use crate::control;
use crate::dataplane::{Dataplane, TunnelId};
use crate::netlink::Netlink;
use crate::routing;

/// The worker pool a configuration asks for (defaults filled in).
pub(super) fn dataplane_options(cfg: &Config) -> crate::dataplane::Options {
    crate::dataplane::Options {
        threads: cfg
            .dataplane_threads
            .unwrap_or(crate::dataplane::Options::default().threads),
        busy_poll: cfg
            .dataplane_busy_poll
            .unwrap_or(crate::dataplane::DEFAULT_BUSY_POLL),
        per_resource_sas: cfg.per_resource_sas,
    }
}

impl Daemon {
    /// One tunnel (and IKE session) per `[[tunnel]]`; nothing is opened yet.
    pub fn new(cfg: Config, socket_path: PathBuf, config_path: PathBuf) -> anyhow::Result<Daemon> {
        let now = Instant::now();
        let hooks = Hooks::default();
        let dataplane = dataplane_options(&cfg);
        let tunnels = cfg
            .tunnels
            .into_iter()
            .enumerate()
            .map(|(i, t)| Tunnel::new(t, TunnelId(i), None, hooks.clone(), now))
            .collect();
        Ok(Daemon {
            socket_path,
            config_path,
            tunnels,
            started: now,
            bgp: cfg.bgp,
            routing: None,
            socket_group: cfg.control_socket_group.as_ref().map(|g| g.gid),
            notify: super::notify::Notifier::from_env(now),
            metrics: cfg.metrics,
            dataplane,
            setup: crate::metrics::setup_histogram(),
            hooks,
            admission: ike::Admission::new(),
            pacer: Default::default(),
            drop_watch: Default::default(),
        })
    }

    /// Opens the sockets, starts the dataplane with one TUN interface per tunnel, then
    /// the BGP speaker, the control socket and the signal handlers.
    pub(super) async fn open(&mut self, tx: &mpsc::Sender<Input>) -> anyhow::Result<Io> {
        // No route flush at start or stop: our routes only ever point into our own TUN
        // interfaces, which vanish with the process (and their routes with them), and
        // another daemon in this namespace may own other routevpn routes.
        let nl = Netlink::new().context("opening netlink")?;

        // One IKE socket (500) and one NAT-T socket (4500) per local address, each
        // pinned to the interface holding that address.
        let mut ike_sockets: HashMap<IpAddr, Arc<UdpSocket>> = HashMap::new();
        let mut natt = Vec::new();
        // One dump for every local address: a lookup per address is a dump per tunnel.
        let underlay = if self.tunnels.iter().any(|t| !t.cfg.dynamic_local()) {
            nl.interfaces_of_addresses()
                .await
                .context("looking up underlay interfaces")?
        } else {
            HashMap::new()
        };
        for t in &self.tunnels {
            let addr = t.cfg.local;
            if ike_sockets.contains_key(&addr) {
                continue;
            }
            // A dynamic local listens on the wildcard, on its interface if named.
            let dev = match (&t.cfg.local_interface, t.cfg.dynamic_local()) {
                (dev, true) => dev.clone(),
                (_, false) => Some(
                    underlay
                        .get(&addr)
                        .cloned()
                        .ok_or_else(|| anyhow::anyhow!(io::describe_local(addr)))?,
                ),
            };
            let dev = dev.as_deref();
            let s500 = io::bound_udp(SocketAddr::new(addr, t.cfg.local_port), dev)?;
            let s500 = Arc::new(UdpSocket::from_std(s500)?);
            io::spawn_reader(s500.clone(), tx.clone());
            ike_sockets.insert(addr, s500);
            // One per dataplane worker: the kernel steers ESP among them by SPI.
            let group = io::bound_udp_group(
                SocketAddr::new(addr, ike::limits::NATT_PORT),
                dev,
                self.dataplane.threads,
            )?;
            natt.extend(group);
            info!(%addr, interface = dev.unwrap_or("any"), "listening for IKE on ports {} and {}", t.cfg.local_port, ike::limits::NATT_PORT);
        }
        let ike_tx = tx.clone();
        let dp = Dataplane::start(
            natt,
            self.dataplane,
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
        let life_tx = tx.clone();
        dp.on_lifetime(Box::new(move |spi| {
            let _ = life_tx.try_send(Input::VolumeLifetime(spi));
        }));
        if self.tunnels.iter().any(|t| t.cfg.dynamic_local()) {
            let addr_tx = tx.clone();
            crate::netlink::watch_addresses(move || {
                !matches!(
                    addr_tx.try_send(Input::LocalAddressChanged),
                    Err(mpsc::error::TrySendError::Closed(_))
                )
            })
            .context("watching local addresses")?;
        }
        let roam_tx = tx.clone();
        dp.on_roam(Box::new(move |spi, remote| {
            let _ = roam_tx.try_send(Input::PeerMoved(spi, remote));
        }));
        let dp = Arc::new(dp);
        for t in &mut self.tunnels {
            let tid = dp
                .add_tunnel(&t.cfg.name, expected_mtu(&t.cfg))
                .map_err(tun_error)
                .with_context(|| format!("creating tunnel interface {}", t.cfg.name))?;
            t.attach(&dp, tid);
        }
        // Down until a CHILD SA is installed.
        learn_links(&mut self.tunnels, &nl).await;

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

        let listener = control::bind_with_group(&self.socket_path, self.socket_group)
            .with_context(|| format!("control socket {}", self.socket_path.display()))?;
        io::spawn_control(listener, tx.clone());
        io::spawn_signals(tx.clone())?;
        if let Some(addr) = self.metrics {
            io::spawn_metrics(addr, tx.clone()).await?;
        }
        info!(tunnels = self.tunnels.len(), socket = %self.socket_path.display(), "routevpn daemon started");
        Ok(Io {
            ike_sockets,
            dp,
            nl,
        })
    }
}

/// Opening /dev/net/tun needs file permission even with CAP_NET_ADMIN: say so.
pub(super) fn tun_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        anyhow::anyhow!(
            "{e}: this user may not open /dev/net/tun (it needs read-write access to it, \
             e.g. mode 0666 or a group it is in, and CAP_NET_ADMIN)"
        )
    } else {
        e.into()
    }
}
