//! UDP sockets for IKE (port 500) and IKE/ESP-in-UDP (port 4500, RFC 3948).

use anyhow::Context as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::UdpSocket;

/// RFC 3948 §2.2: IKE on port 4500 is prefixed with four zero octets.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// What arrived on a socket.
pub enum Received {
    Ike(ike::sa::Datagram),
    /// ESP in UDP (RFC 3948 §2.1): starts with a non-zero SPI.
    Esp {
        local: SocketAddr,
        remote: SocketAddr,
        data: Vec<u8>,
    },
    /// RFC 3948 §2.3 keepalive or junk.
    Ignored,
}

/// The pair of sockets for one local address.
pub struct Sockets {
    pub ike: Arc<UdpSocket>,
    pub natt: Arc<UdpSocket>,
}

impl Sockets {
    pub async fn bind(addr: IpAddr, ike_port: u16, natt_port: u16) -> anyhow::Result<Sockets> {
        let ike = UdpSocket::bind(SocketAddr::new(addr, ike_port))
            .await
            .with_context(|| format!("binding IKE socket {addr} port {ike_port}"))?;
        let natt = UdpSocket::bind(SocketAddr::new(addr, natt_port))
            .await
            .with_context(|| format!("binding NAT-T socket {addr} port {natt_port}"))?;
        Ok(Sockets {
            ike: Arc::new(ike),
            natt: Arc::new(natt),
        })
    }

    /// Sends an IKE datagram from the socket its local port names.
    pub async fn send_ike(&self, d: &ike::sa::Datagram) -> std::io::Result<()> {
        if d.local.port() == self.natt.local_addr()?.port() {
            let mut buf = Vec::with_capacity(4 + d.data.len());
            buf.extend_from_slice(&NON_ESP_MARKER);
            buf.extend_from_slice(&d.data);
            self.natt.send_to(&buf, d.remote).await?;
        } else {
            self.ike.send_to(&d.data, d.remote).await?;
        }
        Ok(())
    }
}

/// Classifies a datagram received on `local`.
pub fn classify(local: SocketAddr, remote: SocketAddr, buf: &[u8], natt: bool) -> Received {
    if !natt {
        return Received::Ike(ike::sa::Datagram {
            local,
            remote,
            data: buf.to_vec(),
        });
    }
    match buf {
        [0xff] => Received::Ignored,
        [0, 0, 0, 0, rest @ ..] => Received::Ike(ike::sa::Datagram {
            local,
            remote,
            data: rest.to_vec(),
        }),
        b if b.len() >= 8 => Received::Esp {
            local,
            remote,
            data: b.to_vec(),
        },
        _ => Received::Ignored,
    }
}
