//! Sockets for IKE (UDP 500, tokio) and IKE/ESP-in-UDP (UDP 4500, owned by the
//! dataplane), pinned to the underlay interface so that their own packets never follow a
//! route into a tunnel; and the tasks that feed the event loop from the sockets, the
//! control socket and signals.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::event_loop::Input;
use crate::control::{self, Request, Response};
use crate::sys;

/// A UDP socket of `ip`'s family, pinned to the interface `dev` (SO_BINDTODEVICE), if any.
fn udp_on(ip: IpAddr, dev: Option<&str>) -> anyhow::Result<Socket> {
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock =
        Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).context("creating UDP socket")?;
    if let Some(dev) = dev {
        sys::bind_to_device(&sock, dev)
            .with_context(|| format!("binding socket to interface {dev}"))?;
    }
    Ok(sock)
}

/// A UDP socket bound to `addr` and to the interface `dev` (SO_BINDTODEVICE), if any.
pub fn bound_udp(addr: SocketAddr, dev: Option<&str>) -> anyhow::Result<std::net::UdpSocket> {
    bound_udp_opts(addr, dev, false)
}

fn bound_udp_opts(
    addr: SocketAddr,
    dev: Option<&str>,
    reuse_port: bool,
) -> anyhow::Result<std::net::UdpSocket> {
    let sock = udp_on(addr.ip(), dev)?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    sock.bind(&addr.into())
        .with_context(|| format!("binding UDP {addr}"))?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// `n` sockets bound to `addr` as one SO_REUSEPORT group (one per dataplane worker),
/// in bind order; a single plain socket when `n` is 1.
pub fn bound_udp_group(
    addr: SocketAddr,
    dev: Option<&str>,
    n: usize,
) -> anyhow::Result<Vec<std::net::UdpSocket>> {
    (0..n.max(1))
        .map(|_| bound_udp_opts(addr, dev, n > 1))
        .collect()
}

/// The source address the kernel picks today toward `peer` (through `dev`, if named):
/// a connected UDP socket's own address, no packet sent. None without a route.
pub fn source_toward(peer: IpAddr, dev: Option<&str>) -> Option<IpAddr> {
    let sock = udp_on(peer, dev).ok()?;
    sock.connect(&SocketAddr::new(peer, ike::limits::NATT_PORT).into())
        .ok()?;
    Some(sock.local_addr().ok()?.as_socket()?.ip())
}

/// IKE on port 500 (no marker).
pub fn ike_datagram(local: SocketAddr, remote: SocketAddr, buf: &[u8]) -> ike::sa::Datagram {
    ike::sa::Datagram {
        local,
        remote,
        data: buf.to_vec(),
    }
}

/// Which of our configured local addresses an interface holds; for error messages.
pub fn describe_local(addr: IpAddr) -> String {
    format!("local address {addr} is not configured on any interface")
}

pub(super) fn spawn_reader(sock: Arc<UdpSocket>, tx: mpsc::Sender<Input>) {
    tokio::spawn(async move {
        let Ok(local) = sock.local_addr() else { return };
        let mut buf = vec![0u8; 65536];
        loop {
            match sock.recv_from(&mut buf).await {
                Ok((n, remote)) => {
                    if tx
                        .send(Input::Ike(ike_datagram(local, remote, &buf[..n])))
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

/// The control socket, served by [`control::serve`] (bounded requests, timeouts, a cap
/// on connections); each request goes to the event loop, which answers on a oneshot.
pub(super) fn spawn_control(listener: tokio::net::UnixListener, tx: mpsc::Sender<Input>) {
    let handler = move |req: Request| {
        let tx = tx.clone();
        async move {
            let (rtx, rrx) = oneshot::channel();
            if tx.send(Input::Control(req, rtx)).await.is_err() {
                return shutting_down();
            }
            rrx.await.unwrap_or_else(|_| shutting_down())
        }
    };
    tokio::spawn(control::serve(listener, handler));
}

fn shutting_down() -> Response {
    Response::Error {
        message: "the daemon is shutting down".into(),
    }
}

pub(super) fn spawn_signals(tx: mpsc::Sender<Input>) -> anyhow::Result<()> {
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

/// Serves `/metrics` on `addr`; each scrape asks the event loop for a snapshot and
/// renders it outside the loop.
pub(super) async fn spawn_metrics(addr: SocketAddr, tx: mpsc::Sender<Input>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics: cannot listen on {addr}"))?;
    crate::metrics::http::spawn(listener, move || {
        let tx = tx.clone();
        async move {
            let (reply, rx) = oneshot::channel();
            tx.send(Input::Metrics(reply)).await.ok()?;
            let snapshot = rx.await.ok()?;
            Some(crate::metrics::render(&snapshot))
        }
    });
    tracing::info!(%addr, "serving metrics at /metrics");
    Ok(())
}
