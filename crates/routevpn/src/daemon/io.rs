//! Sockets for IKE (UDP 500, tokio) and IKE/ESP-in-UDP (UDP 4500, owned by the
//! dataplane), pinned to the underlay interface so that their own packets never follow a
//! route into a tunnel.

use crate::sys;
use anyhow::Context as _;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, SocketAddr};

/// A UDP socket bound to `addr` and to the interface `dev` (SO_BINDTODEVICE).
pub fn bound_udp(addr: SocketAddr, dev: &str) -> anyhow::Result<std::net::UdpSocket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let sock =
        Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).context("creating UDP socket")?;
    if addr.is_ipv6() {
        sock.set_only_v6(true)?;
    }
    sock.set_reuse_address(true)?;
    sys::bind_to_device(&sock, dev)
        .with_context(|| format!("binding socket to interface {dev}"))?;
    sock.bind(&addr.into())
        .with_context(|| format!("binding UDP {addr}"))?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
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
