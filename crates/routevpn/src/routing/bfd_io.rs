//! BFD sockets (RFC 5881): receive on UDP 3784 keeping only packets with TTL / hop limit
//! 255 (§5, GTSM), send from one fixed source port in 49152..=65535 with TTL 255 (§4);
//! and the driver's side: packets to sessions (only those that arrived on the
//! neighbour's own interface, authenticated when configured), timers, state changes to
//! BGP.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{canon, BfdLink, Driver, Input};
use crate::sys;

fn udp(v6: bool) -> io::Result<Socket> {
    let s = Socket::new(
        if v6 { Domain::IPV6 } else { Domain::IPV4 },
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if v6 {
        s.set_only_v6(true)?;
    }
    Ok(s)
}

fn wildcard(v6: bool, port: u16) -> SocketAddr {
    if v6 {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
    } else {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
    }
}

/// The receive socket on port 3784 of one family, reporting each packet's TTL and
/// arrival interface.
pub fn rx_socket(v6: bool) -> io::Result<std::net::UdpSocket> {
    let s = udp(v6)?;
    s.set_reuse_address(true)?;
    sys::set_recv_pktinfo(s.as_raw_fd(), v6)?;
    if v6 {
        s.set_recv_hoplimit_v6(true)?;
    } else {
        // socket2 has no IP_RECVTTL.
        sys::set_int_option(s.as_raw_fd(), libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
    }
    s.bind(&wildcard(v6, bfd::limits::CONTROL_PORT).into())?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

/// The send socket of one family: TTL/hop limit 255, bound to the first free port of
/// the RFC 5881 §4 range at or after `start`.
pub fn tx_socket(v6: bool, start: u16) -> io::Result<std::net::UdpSocket> {
    let s = udp(v6)?;
    if v6 {
        s.set_unicast_hops_v6(255)?;
    } else {
        s.set_ttl_v4(255)?;
    }
    let lo = bfd::limits::SOURCE_PORT_MIN;
    let span = u32::from(bfd::limits::SOURCE_PORT_MAX - lo) + 1;
    let first = u32::from(start.max(lo) - lo);
    let mut last = None;
    for k in 0..span.min(512) {
        let port = lo + ((first + k) % span) as u16;
        match s.bind(&wildcard(v6, port).into()) {
            Ok(()) => {
                s.set_nonblocking(true)?;
                return Ok(s.into());
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no free BFD source port")))
}

/// Feeds the driver the BFD packets that arrive with TTL 255.
pub(super) fn spawn_bfd_reader(
    sock: std::net::UdpSocket,
    tx: mpsc::Sender<Input>,
) -> anyhow::Result<()> {
    let sock = UdpSocket::from_std(sock)?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let r = sock
                .async_io(tokio::io::Interest::READABLE, || {
                    sys::recv_with_ttl(&sock, &mut buf)
                })
                .await;
            match r {
                Ok(r) => {
                    // RFC 5881 §5: only packets sent from one hop away (TTL 255).
                    if r.ttl != Some(bfd::limits::TTL) {
                        debug!(from = %r.from, ttl = ?r.ttl, "BFD packet with TTL != 255 dropped");
                        continue;
                    }
                    let data = buf.get(..r.len).unwrap_or_default().to_vec();
                    let input = Input::Bfd {
                        from: r.from,
                        ifindex: r.ifindex,
                        data,
                    };
                    if tx.send(input).await.is_err() {
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

/// RFC 5880 §6.3 demultiplexing: whether a packet (`my_discr`, `your_discr` from `src`)
/// belongs to our session (`local`, locked onto `remote` once known) with `neighbor`.
fn belongs(
    local: u32,
    remote: u32,
    neighbor: IpAddr,
    src: IpAddr,
    my_discr: u32,
    your_discr: u32,
) -> bool {
    if your_discr != 0 {
        local == your_discr
    } else {
        // A packet that does not know us yet belongs to our session only if that
        // session has not locked onto another remote session: a second, still-Down
        // session of the same peer (FRR can briefly have two) must not tear down the
        // one that is Up.
        neighbor == src && (remote == 0 || remote == my_discr)
    }
}

impl Driver {
    pub(super) fn bfd_packet(
        &mut self,
        now: Instant,
        from: SocketAddr,
        ifindex: Option<u32>,
        data: &[u8],
    ) {
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
                belongs(
                    b.local_discr(),
                    b.remote_discr(),
                    n.cfg.address,
                    src,
                    pkt.my_discr,
                    pkt.your_discr,
                )
            })
        });
        match n {
            Some(n) => {
                if n.cfg.address != src {
                    debug!(%from, "BFD packet from an unexpected address");
                    return;
                }
                // Only what arrived on the neighbour's own link (its tunnel): a packet
                // with the right discriminators injected on another interface is not
                // the neighbour's.
                let link_ok = match (&n.bfd_link, ifindex) {
                    (BfdLink::Any, _) => true,
                    (BfdLink::Index(want), Some(got)) => *want == got,
                    _ => false,
                };
                if !link_ok {
                    debug!(%from, ?ifindex, expected = ?n.bfd_link, "BFD packet from another interface dropped");
                    n.bfd_wrong_link += 1;
                    return;
                }
                if let Some(b) = &mut n.bfd {
                    if let Err(e) = b.handle_datagram(now, data, &pkt) {
                        debug!(%from, error = %e, "BFD packet discarded");
                    }
                }
            }
            None => debug!(%from, your_discr = pkt.your_discr, "BFD packet for no session"),
        }
    }

    /// BFD timers, events and transmissions.
    pub(super) fn run_bfd(&mut self, now: Instant) {
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
                let mut p = Vec::new();
                while b.poll_datagram(now, &mut self.rng, &mut p) {
                    out.push(std::mem::take(&mut p));
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
                if from == bfd::State::Up {
                    self.neighbors[i].bfd_flaps += 1;
                }
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
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The FRR case: our session is Up with remote discriminator 7; FRR briefly runs a
    /// second session to us (discriminator 9) that does not know ours yet.
    #[test]
    fn a_second_remote_session_does_not_reach_a_locked_session() {
        let peer: IpAddr = "169.254.12.2".parse().unwrap();
        let other: IpAddr = "169.254.12.6".parse().unwrap();
        // Locked onto 7: the second session's Down packets are not ours.
        assert!(!belongs(42, 7, peer, peer, 9, 0));
        // Our own remote session, before it learned our discriminator.
        assert!(belongs(42, 7, peer, peer, 7, 0));
        // Not locked yet: the first packet from the neighbour is ours.
        assert!(belongs(42, 0, peer, peer, 9, 0));
        // By Your Discriminator once it is known, whatever My Discriminator says.
        assert!(belongs(42, 7, peer, peer, 9, 42));
        assert!(!belongs(42, 7, peer, peer, 7, 43));
        // Zero Your Discriminator from another address is not ours.
        assert!(!belongs(42, 0, peer, other, 9, 0));
    }

    /// Loopback round trip: what we send carries TTL 255 and the receiver reports it.
    /// Binding 3784 may fail if something else holds it; use ephemeral ports here.
    #[test]
    fn ttl_is_255_and_reported() {
        let rx = udp(false).unwrap();
        sys::set_int_option(rx.as_raw_fd(), libc::IPPROTO_IP, libc::IP_RECVTTL, 1).unwrap();
        rx.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        let rx: std::net::UdpSocket = rx.into();
        let to = rx.local_addr().unwrap();
        let tx = tx_socket(false, 50000).unwrap();
        let port = tx.local_addr().unwrap().port();
        assert!(port >= 49152, "{port}");
        tx.send_to(b"hello", to).unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let mut buf = [0u8; 64];
        // Wait for readability with a blocking peek first.
        rx.peek_from(&mut buf).unwrap();
        let r = sys::recv_with_ttl(&rx, &mut buf).unwrap();
        assert_eq!(&buf[..r.len], b"hello");
        assert_eq!(r.from.port(), port);
        assert_eq!(r.ttl, Some(255));
    }
}
