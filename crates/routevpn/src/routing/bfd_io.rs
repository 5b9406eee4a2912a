//! BFD sockets (RFC 5881): receive on UDP 3784 reporting TTL / hop limit (only 255 is
//! kept, §5, GTSM) and arrival interface, send from one fixed source port in
//! 49152..=65535 with TTL 255 (§4); and demultiplexing (RFC 5880 §6.3). The `bfd`
//! thread ([`super::bfd_thread`]) runs the sessions over them.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

use std::time::Instant;

use tracing::warn;

use super::bfd_thread::{Command, NewSession};
use super::{BfdLink, Driver, Heard};
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

/// RFC 5880 §6.3 demultiplexing: whether a packet (`my_discr`, `your_discr` from `src`)
/// belongs to our session (`local`, locked onto `remote` once known) with `neighbor`.
pub(super) fn belongs(
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
    /// Starts the neighbour's BFD session in the `bfd` thread, unless one runs.
    pub(super) fn start_bfd(&mut self, i: usize) {
        let (Some(t), Some(cfg)) = (&self.bfd, self.neighbors[i].cfg.bfd.clone()) else {
            return;
        };
        let n = &mut self.neighbors[i];
        if n.bfd.is_some() {
            return;
        }
        let gen = self.bfd_gen;
        self.bfd_gen += 1;
        n.bfd = Some(gen);
        t.send(Command::Add(NewSession {
            peer: i,
            gen,
            address: n.cfg.address,
            cfg,
            link: n.bfd_link,
            heard: n.bfd_heard.clone(),
        }));
    }

    pub(super) fn stop_bfd(&mut self, i: usize) {
        if self.neighbors[i].bfd.take().is_some() {
            if let Some(t) = &self.bfd {
                t.send(Command::Remove { peer: i });
            }
        }
    }

    /// The neighbour's tunnel interface (and its inbound counter) as last learnt.
    pub(super) fn set_bfd_link(&mut self, i: usize, link: BfdLink, heard: Option<Heard>) {
        self.neighbors[i].bfd_link = link;
        self.neighbors[i].bfd_heard = heard.clone();
        if let (Some(t), Some(_)) = (&self.bfd, self.neighbors[i].bfd) {
            t.send(Command::Link {
                peer: i,
                link,
                heard,
            });
        }
    }

    /// A state change from the `bfd` thread: Down after Up drops the BGP session at
    /// once (RFC 5882 §4.3), Up restarts a waiting one.
    pub(super) fn bfd_state(
        &mut self,
        now: Instant,
        i: usize,
        gen: u64,
        from: bfd::State,
        to: bfd::State,
        diag: bfd::Diag,
    ) {
        // A change of a session since removed or replaced is no news.
        if self.neighbors.get(i).is_none_or(|n| n.bfd != Some(gen)) {
            return;
        }
        let addr = self.neighbors[i].cfg.address;
        if to == bfd::State::Down && from == bfd::State::Up {
            warn!(neighbor = %addr, %diag, "BFD down: dropping the BGP session");
            let id = self.neighbors[i].id;
            self.speaker.handle_disconnected(now, id);
        } else if to == bfd::State::Up {
            self.kick(now, i);
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
