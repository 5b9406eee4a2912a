//! The objects the dataplane threads share: sockets, tunnels, SA entries.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use esp::{Counters, InboundSa, OutboundSa};
use quinn_udp::{Transmit, UdpSockRef, UdpSocketState};

use super::{TunnelId, TunnelStats, POLL_MS};
use crate::sys;

/// Socket buffer size asked for; large enough to absorb a few GRO/GSO
/// batches while the other thread is busy with crypto.
const SOCKET_BUFFER: usize = 8 << 20;

/// A port-4500 socket with its offload state.
pub(crate) struct Socket {
    pub(crate) local: SocketAddr,
    pub(crate) sock: UdpSocket,
    pub(crate) state: UdpSocketState,
    /// Its place in the SO_REUSEPORT group of `local` (bind order): the kernel hands
    /// it the ESP whose SPI is ≡ `lane` (mod the group's size).
    pub(crate) lane: usize,
}

impl Socket {
    pub(crate) fn new(sock: UdpSocket, lane: usize) -> io::Result<Socket> {
        let local = sock.local_addr()?;
        // Enables UDP GRO, packet info and non-blocking mode.
        let state = UdpSocketState::new(UdpSockRef::from(&sock))?;
        sys::set_buffer_sizes(sock.as_raw_fd(), SOCKET_BUFFER);
        Ok(Socket {
            local,
            sock,
            state,
            lane,
        })
    }

    /// Largest number of datagrams one GSO send may carry.
    pub(crate) fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    /// Sends `contents` (several `segment_size` datagrams when set), waiting
    /// for socket buffer space unless the dataplane is stopping.
    pub(crate) fn send(
        &self,
        destination: SocketAddr,
        src_ip: Option<IpAddr>,
        contents: &[u8],
        segment_size: Option<usize>,
        stop: &AtomicBool,
    ) -> io::Result<()> {
        let t = Transmit {
            destination,
            ecn: None,
            contents,
            segment_size: segment_size.filter(|s| *s < contents.len()),
            src_ip,
        };
        loop {
            match self.state.try_send(UdpSockRef::from(&self.sock), &t) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if stop.load(Ordering::Relaxed) {
                        return Err(e);
                    }
                    sys::wait_fd(self.sock.as_raw_fd(), libc::POLLOUT, POLL_MS)?;
                }
                r => return r,
            }
        }
    }
}

/// A CHILD SA's lifetime in volume (RFC 7296 §2.8: rekey after so many bytes or
/// packets), counted over both directions as the packets pass, so the rekey starts
/// when the limit is crossed rather than at the daemon's next look at the counters.
pub(crate) struct Volume {
    spi_in: u32,
    bytes: AtomicU64,
    packets: AtomicU64,
    /// `u64::MAX` for no limit.
    limit_bytes: AtomicU64,
    limit_packets: AtomicU64,
    fired: AtomicBool,
}

impl Volume {
    pub(crate) fn new(spi_in: u32) -> Volume {
        Volume {
            spi_in,
            bytes: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            limit_bytes: AtomicU64::new(u64::MAX),
            limit_packets: AtomicU64::new(u64::MAX),
            fired: AtomicBool::new(false),
        }
    }

    pub(crate) fn set_limits(&self, bytes: Option<u64>, packets: Option<u64>) {
        self.limit_bytes
            .store(bytes.unwrap_or(u64::MAX), Ordering::Relaxed);
        self.limit_packets
            .store(packets.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Counts packets that passed; returns true once, when a limit is first reached.
    pub(crate) fn add(&self, bytes: u64, packets: u64) -> bool {
        let (lb, lp) = (
            self.limit_bytes.load(Ordering::Relaxed),
            self.limit_packets.load(Ordering::Relaxed),
        );
        if (lb == u64::MAX && lp == u64::MAX) || packets == 0 {
            return false;
        }
        let b = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let p = self.packets.fetch_add(packets, Ordering::Relaxed) + packets;
        (b >= lb || p >= lp) && !self.fired.swap(true, Ordering::Relaxed)
    }

    pub(crate) fn spi_in(&self) -> u32 {
        self.spi_in
    }
}

/// One inbound SA and where its packets go.
pub(crate) struct InboundEntry {
    pub(crate) tunnel: TunnelId,
    /// Which outbound SA slot its outbound half fills: `Some(0)` the tunnel's fallback,
    /// `Some(k)` resource queue k, `None` never sent on.
    pub(crate) slot: Option<usize>,
    /// Its outbound half waits in `out_spare` until the SA it replaces is removed or
    /// the peer sends on it (we answered the rekey; RFC 7296 §2.8).
    pub(crate) deferred: AtomicBool,
    /// The SPI of the outbound half of the same child.
    pub(crate) spi_out: u32,
    pub(crate) dev: Arc<tun_rs::SyncDevice>,
    /// The tunnel's [`Tunnel::rx_tun_write_errors`].
    pub(crate) write_errors: Arc<AtomicU64>,
    /// The tunnel's [`Tunnel::heard`].
    pub(crate) heard: Arc<AtomicU64>,
    /// The SA and where its peer is, under the one lock each packet takes.
    pub(crate) sa: Mutex<InboundCell>,
    /// Counters of the outbound half once it stopped being the tunnel's
    /// current SA (rekeyed away).
    pub(crate) out_final: Mutex<Option<Counters>>,
    /// The outbound half itself while another SA is current: if the current
    /// child goes (a duplicate or a collision loser deleted), the newest
    /// remaining one takes over instead of leaving the tunnel without an SA.
    pub(crate) out_spare: Mutex<Option<Outbound>>,
    /// Install order, to pick the newest spare.
    pub(crate) installed: u64,
    /// Shared with the outbound half.
    pub(crate) volume: Arc<Volume>,
}

/// An inbound SA and where its peer's newest authenticated ESP came from (see `roam.rs`).
pub(crate) struct InboundCell {
    pub(crate) sa: InboundSa,
    pub(crate) peer: SocketAddr,
}

impl InboundEntry {
    pub(crate) fn spi_in(&self) -> u32 {
        self.volume.spi_in()
    }

    /// The TUN queue its packets are written to (its slot's, 0 for a spare): the kernel
    /// then sends the replies of a flow through the same queue (tun's automq flow
    /// table), so both directions of a flow use the same per-resource SA pair.
    pub(crate) fn queue(&self) -> usize {
        self.slot.unwrap_or(0)
    }
}

/// The current outbound SA of a tunnel.
pub(crate) struct Outbound {
    pub(crate) sa: OutboundSa,
    /// Inbound SPI of the same child (for counters).
    pub(crate) spi_in: u32,
    /// Index into the dataplane's sockets.
    pub(crate) sock: usize,
    pub(crate) dst: SocketAddr,
    /// Source address to pin when the socket is bound to a wildcard.
    pub(crate) src_ip: Option<IpAddr>,
    /// Shared with the inbound half.
    pub(crate) volume: Arc<Volume>,
}

/// One more queue of a tunnel's TUN with a per-resource CHILD SA (RFC 9611): slot `k`
/// is read by worker `(home + k) mod W`, the worker that also receives that SA's ESP
/// (its SPI lane), so the SA's sequence numbers and replay window stay on one core.
pub(crate) struct Resource {
    pub(crate) slot: usize,
    /// The RFC 9611 resource whose SAs (and their rekeys) this queue sends with; a
    /// peer with more resources than we have queues gets the others received only.
    pub(crate) resource: u32,
    /// The queue's own descriptor (`IFF_MULTI_QUEUE`): the kernel spreads the tunnel's
    /// flows over the queues by flow hash, so a TCP flow never changes queue.
    pub(crate) dev: Arc<tun_rs::SyncDevice>,
    /// This slot's outbound SA; `None` seals with the tunnel's fallback SA.
    pub(crate) out: Mutex<Option<Outbound>>,
    pub(crate) worker: usize,
}

/// A tunnel: its TUN, its outbound SA and the worker that reads its TUN.
pub(crate) struct Tunnel {
    pub(crate) name: String,
    /// Queue 0 of the TUN: read by the home worker, written by every worker.
    pub(crate) dev: Arc<tun_rs::SyncDevice>,
    /// The fallback (or only) CHILD SA's outbound half (RFC 9611 §2: used by every
    /// queue without a per-resource SA of its own).
    pub(crate) out: Mutex<Option<Outbound>>,
    /// The home worker.
    pub(crate) worker: usize,
    /// Queues 1.. with their per-resource SAs, opened when the first such SA arrives.
    pub(crate) resources: Mutex<Vec<Arc<Resource>>>,
    pub(crate) tx_no_sa: AtomicU64,
    pub(crate) tx_seal_errors: AtomicU64,
    pub(crate) tx_send_errors: AtomicU64,
    pub(crate) tx_tun_errors: AtomicU64,
    pub(crate) rx_tun_write_errors: Arc<AtomicU64>,
    /// Inbound ESP packets authenticated on any of its SAs (BFD's ESP-silence hint).
    pub(crate) heard: Arc<AtomicU64>,
}

impl Tunnel {
    pub(crate) fn new(name: String, dev: tun_rs::SyncDevice, worker: usize) -> Tunnel {
        Tunnel {
            name,
            dev: Arc::new(dev),
            out: Mutex::new(None),
            worker,
            resources: Mutex::new(Vec::new()),
            tx_no_sa: AtomicU64::new(0),
            tx_seal_errors: AtomicU64::new(0),
            tx_send_errors: AtomicU64::new(0),
            tx_tun_errors: AtomicU64::new(0),
            rx_tun_write_errors: Arc::new(AtomicU64::new(0)),
            heard: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Runs `f` on outbound slot `slot` (0 the fallback, k resource queue k); `None`
    /// when the tunnel has no such slot (a spare, or a queue since closed).
    pub(crate) fn with_slot<R>(
        &self,
        slot: Option<usize>,
        f: impl FnOnce(&Mutex<Option<Outbound>>) -> R,
    ) -> Option<R> {
        match slot? {
            0 => Some(f(&self.out)),
            k => {
                let r = super::lock(&self.resources)
                    .iter()
                    .find(|r| r.slot == k)
                    .cloned()?;
                Some(f(&r.out))
            }
        }
    }

    /// Every current outbound SA of the tunnel: the fallback's and the resources'.
    pub(crate) fn for_each_out(&self, mut f: impl FnMut(&mut Outbound)) {
        if let Some(o) = super::lock(&self.out).as_mut() {
            f(o);
        }
        for r in super::lock(&self.resources).iter() {
            if let Some(o) = super::lock(&r.out).as_mut() {
                f(o);
            }
        }
    }

    /// Its counters, with its interface's entry of the kernel's `tx_dropped` table.
    pub(crate) fn stats(&self, tx_dropped: &HashMap<String, u64>) -> TunnelStats {
        TunnelStats {
            tun_queue_drops: tx_dropped.get(&self.name).copied().unwrap_or(0),
            tx_no_sa: self.tx_no_sa.load(Ordering::Relaxed),
            tx_seal_errors: self.tx_seal_errors.load(Ordering::Relaxed),
            tx_send_errors: self.tx_send_errors.load(Ordering::Relaxed),
            tx_tun_errors: self.tx_tun_errors.load(Ordering::Relaxed),
            rx_tun_write_errors: self.rx_tun_write_errors.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Volume;

    #[test]
    fn volume_lifetime_fires_once_when_a_limit_is_reached() {
        let v = Volume::new(7);
        assert!(!v.add(10_000, 10), "no limits: never");
        v.set_limits(Some(3000), None);
        // Counting starts when a limit is set; both directions add up.
        assert!(!v.add(1500, 1));
        assert!(v.add(1500, 1), "3000 bytes reached");
        assert!(!v.add(1500, 1), "only once");
        let p = Volume::new(8);
        p.set_limits(None, Some(3));
        assert!(!p.add(1, 2));
        assert!(p.add(1, 1), "3 packets reached");
        assert_eq!(p.spi_in(), 8);
    }
}
