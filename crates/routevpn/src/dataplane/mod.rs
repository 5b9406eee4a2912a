//! Userspace ESP-in-UDP dataplane (RFC 4303 tunnel mode inside RFC 3948 UDP
//! encapsulation) behind one TUN interface per tunnel.
//!
//! Threads: a fixed pool of **workers** (`worker.rs`; plain `std` threads, never
//! tokio, so crypto never stalls the control plane), about one per core, each serving
//! the sockets and TUNs assigned to it through one epoll set. Whoever reads a packet
//! finishes it, so no packet crosses threads:
//! - a readable **port-4500 socket** (`rx.rs`): `recvmmsg` + UDP GRO batches (via
//!   `quinn-udp`), RFC 3948 demultiplexing, IKE handed to the daemon's callback, ESP
//!   opened in place and the inner packets written to their tunnels' TUNs in batches
//!   that the TUN GRO table coalesces into TCP super-packets;
//! - a readable **TUN** (`tx.rs`): reads with the virtio-net header, so the kernel
//!   hands over TCP/UDP GSO super-packets that are segmented in userspace, each segment
//!   sealed straight into a contiguous send buffer, runs of equal-sized ESP packets
//!   sent with one UDP GSO `sendmsg`.
//!
//! Placement: tunnels are spread over the workers round-robin. Each local address has
//! one port-4500 socket per worker, a SO_REUSEPORT group that the kernel steers by SPI
//! (`sys::steer_reuseport_by_spi`: socket SPI mod workers), and each tunnel's inbound
//! SPIs are chosen in its worker's lane ([`Dataplane::spi_lane`]). So one worker reads
//! a tunnel's TUN, receives its ESP and sends from its own socket: an SA's state stays
//! on one core, and many tunnels on one address still use every core. A tunnel costs
//! its TUN descriptor and its SA state; buffers belong to the workers.
//!
//! SA tables: inbound SAs in a `HashMap` behind an `RwLock` (read-locked
//! once per receive batch, one uncontended `Mutex` per SA); the outbound SA
//! of a tunnel behind a `Mutex` taken once per TUN read. `child.rs` installs, hands
//! over and retires CHILD SAs in them.

mod child;
pub mod gro;
mod kernel_drops;
mod roam;
mod rx;
mod suite;
mod tables;
mod tx;
mod worker;

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use esp::Counters;

pub use child::ChildKeys;
pub use roam::RoamCallback;
pub use suite::{algorithm_for, compute_mtu, selectors_for, IPV6_MIN_MTU};
use tables::{InboundEntry, Socket, Tunnel, Volume};

/// Packets the kernel holds for a worker on one TUN queue (its ring) before it drops
/// them: 27 ms at 150k packets/s, so a worker waiting for a core loses nothing. With
/// 1,000 a 150k packets/s UDP flood lost 0.3-1.4 % here. A TCP flow's standing queue
/// is bounded by its window, not by this. Each entry costs the kernel 8 octets.
const TUN_TX_QUEUE: u32 = 4096;

use worker::Worker;

/// Callback for IKE messages received on port 4500: `(local, remote, message)`
/// with the non-ESP marker already stripped.
pub type IkeCallback = Box<dyn Fn(SocketAddr, SocketAddr, Vec<u8>) + Send + Sync>;
/// Called from a dataplane thread with a CHILD SA's inbound SPI when its volume
/// lifetime ([`Dataplane::set_volume_limits`]) is reached; must not block.
pub type LifetimeCallback = Box<dyn Fn(u32) + Send + Sync>;

/// Identifies a tunnel (one TUN interface) inside a [`Dataplane`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TunnelId(pub usize);

/// Statistics of both directions of one CHILD SA.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SaCounters {
    pub inbound: Counters,
    pub outbound: Counters,
}

/// Dataplane-wide drop counters (not attributable to an SA).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DataplaneStats {
    /// ESP packets whose SPI matches no installed inbound SA.
    pub unknown_spi: u64,
    /// Port-4500 datagrams that are neither ESP, IKE nor a keepalive.
    pub invalid: u64,
    /// NAT-keepalives received (RFC 3948 §2.3).
    pub keepalives: u64,
    /// IKE messages handed to the callback.
    pub ike: u64,
}

/// Per-tunnel counters of the transmit side and of TUN writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunnelStats {
    /// Packets read from the TUN while no outbound SA was installed.
    pub tx_no_sa: u64,
    /// Packets read from the TUN that could not be sealed (not IP, sequence
    /// numbers exhausted, too large).
    pub tx_seal_errors: u64,
    /// `sendmsg` failures (each may cover a GSO batch).
    pub tx_send_errors: u64,
    /// TUN reads the offload code rejected.
    pub tx_tun_errors: u64,
    /// Failed batched writes of decrypted packets to the TUN.
    pub rx_tun_write_errors: u64,
    /// Packets routed into the tunnel that the kernel dropped because its TUN queue was
    /// full (the interface's `tx_dropped`): the workers did not keep up.
    pub tun_queue_drops: u64,
}

impl Shared {
    /// Counts packets of a CHILD SA against its volume lifetime; tells the daemon once.
    pub(crate) fn count_volume(&self, v: &Volume, bytes: u64, packets: u64) {
        if v.add(bytes, packets) {
            if let Some(cb) = self.on_lifetime.get() {
                cb(v.spi_in());
            }
        }
    }
}

/// State shared by the API handle and every dataplane thread.
pub(crate) struct Shared {
    pub(crate) stop: AtomicBool,
    pub(crate) sockets: Vec<Arc<Socket>>,
    pub(crate) inbound: RwLock<HashMap<u32, Arc<InboundEntry>>>,
    pub(crate) tunnels: RwLock<HashMap<usize, Arc<Tunnel>>>,
    pub(crate) on_ike: IkeCallback,
    pub(crate) on_lifetime: std::sync::OnceLock<LifetimeCallback>,
    pub(crate) on_roam: std::sync::OnceLock<RoamCallback>,
    pub(crate) unknown_spi: AtomicU64,
    pub(crate) invalid: AtomicU64,
    pub(crate) keepalives: AtomicU64,
    pub(crate) ike: AtomicU64,
}

/// The ESP dataplane. `Send + Sync`; share it behind an `Arc`.
pub struct Dataplane {
    shared: Arc<Shared>,
    next_tunnel: AtomicUsize,
    workers: Vec<Arc<Worker>>,
    /// Workers = sockets per address, when received ESP is steered by SPI.
    lanes: Option<usize>,
    /// Tunnels get a TUN queue per worker for per-resource CHILD SAs (RFC 9611).
    per_resource: bool,
    /// Serializes tunnel creation/removal and SA installation so table
    /// updates are never interleaved.
    admin: Mutex<()>,
    /// CHILD SAs installed so far (orders the spares of a tunnel).
    installs: AtomicU64,
}

/// How long a send blocked on a full socket buffer waits before re-checking the
/// dataplane's stop flag.
pub(crate) const POLL_MS: i32 = 100;

/// How the worker pool runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    /// Worker threads (at least one).
    pub threads: usize,
    /// How long a worker that just moved packets keeps polling before it sleeps: the
    /// next packet of a flow then finds it awake (no wake-up latency), at the cost of
    /// that much CPU after each burst. Zero sleeps at once.
    pub busy_poll: Duration,
    /// Per-resource CHILD SAs (RFC 9611): with more than one worker, each tunnel's TUN
    /// is multi-queue, and a per-resource SA gets a queue on its own worker, so one
    /// tunnel uses every worker. Off: one queue, one outbound SA per tunnel.
    pub per_resource_sas: bool,
}

/// [`Options::busy_poll`] when `dataplane_busy_poll` is not set: off. Measured on a
/// 2-core VM (issue 13), 50 µs made idle RTT, loss at 50k pps and CPU per packet worse:
/// spinning takes the core the peer process or the kernel needed.
pub const DEFAULT_BUSY_POLL: Duration = Duration::ZERO;

impl Default for Options {
    /// One worker per core, [`DEFAULT_BUSY_POLL`], no per-resource SAs.
    fn default() -> Options {
        Options {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            busy_poll: DEFAULT_BUSY_POLL,
            per_resource_sas: false,
        }
    }
}

impl Dataplane {
    /// Takes ownership of the bound port-4500 sockets (per local address one, or one
    /// per worker bound in order as a SO_REUSEPORT group, which is then steered by SPI)
    /// and starts the workers that serve them and every tunnel. `on_ike(local,
    /// remote, msg)` is called from a worker for every IKE message (marker
    /// stripped); it must not block for long.
    pub fn start(
        sockets: Vec<UdpSocket>,
        options: Options,
        on_ike: IkeCallback,
    ) -> io::Result<Dataplane> {
        // Sockets bound to one address form a SO_REUSEPORT group, in bind order.
        let mut socks: Vec<Arc<Socket>> = Vec::with_capacity(sockets.len());
        for s in sockets {
            let local = s.local_addr()?;
            let lane = socks.iter().filter(|x| x.local == local).count();
            socks.push(Arc::new(Socket::new(s, lane)?));
        }
        let mut lanes = 0;
        for first in socks.iter().filter(|s| s.lane == 0) {
            let n = socks.iter().filter(|s| s.local == first.local).count();
            if n > 1 {
                crate::sys::steer_reuseport_by_spi(first.sock.as_raw_fd(), n as u32)?;
            }
            lanes = if lanes == 0 || lanes == n { n } else { 1 };
        }
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            sockets: socks,
            inbound: RwLock::new(HashMap::new()),
            tunnels: RwLock::new(HashMap::new()),
            on_ike,
            on_lifetime: std::sync::OnceLock::new(),
            on_roam: std::sync::OnceLock::new(),
            unknown_spi: AtomicU64::new(0),
            invalid: AtomicU64::new(0),
            keepalives: AtomicU64::new(0),
            ike: AtomicU64::new(0),
        });
        let mut workers = Vec::with_capacity(options.threads.max(1));
        for i in 0..options.threads.max(1) {
            match Worker::spawn(shared.clone(), i, options.busy_poll) {
                Ok(w) => workers.push(w),
                Err(e) => {
                    // Do not leave the ones already started running.
                    shared.stop.store(true, Ordering::Relaxed);
                    workers.iter().for_each(|w: &Arc<Worker>| w.stop());
                    return Err(e);
                }
            }
        }
        // Lanes steer a tunnel's ESP to the worker that reads its TUN: only when every
        // address has one socket per worker.
        let lanes = (lanes == workers.len() && lanes > 1).then_some(lanes);
        let dp = Dataplane {
            shared: shared.clone(),
            next_tunnel: AtomicUsize::new(0),
            workers,
            lanes,
            per_resource: options.per_resource_sas,
            admin: Mutex::new(()),
            installs: AtomicU64::new(0),
        };
        for (i, sock) in shared.sockets.iter().enumerate() {
            let w = sock.lane % dp.workers.len();
            dp.workers[w].add_socket(i, sock.clone())?;
        }
        Ok(dp)
    }

    /// With per-resource SAs: one TUN queue per worker.
    fn multi_queue(&self) -> bool {
        self.per_resource && self.workers.len() > 1
    }

    /// Creates the TUN interface `name`, administratively DOWN, with `mtu`,
    /// and hands it to a worker.
    pub fn add_tunnel(&self, name: &str, mtu: u16) -> io::Result<TunnelId> {
        let _admin = lock(&self.admin);
        if self.shared.stop.load(Ordering::Relaxed) {
            return Err(io::Error::other("dataplane is shut down"));
        }
        let multi_queue = self.multi_queue();
        let dev = tun_rs::DeviceBuilder::new()
            .name(name)
            .mtu(mtu)
            .enable(false)
            .with(|b| {
                // Virtio-net header: TSO/USO super-packets in, GRO'd TCP out.
                b.offload(true)
                    .tx_queue_len(TUN_TX_QUEUE)
                    .multi_queue(multi_queue);
            })
            .build_sync()?;
        dev.set_nonblocking(true)?;
        let id = TunnelId(self.next_tunnel.fetch_add(1, Ordering::Relaxed));
        let worker = id.0 % self.workers.len();
        let tunnel = Arc::new(Tunnel::new(name.to_string(), dev, worker));
        self.workers[worker].add_tunnel(id.0, tunnel.clone())?;
        write(&self.shared.tunnels).insert(id.0, tunnel);
        tracing::debug!(tunnel = name, mtu, "tunnel interface created");
        Ok(id)
    }

    /// Takes the tunnel from its worker, removes its SAs and closes its TUN (the
    /// interface disappears).
    pub fn remove_tunnel(&self, id: TunnelId) {
        let _admin = lock(&self.admin);
        let Some(tunnel) = write(&self.shared.tunnels).remove(&id.0) else {
            return;
        };
        write(&self.shared.inbound).retain(|_, e| e.tunnel != id);
        if let Some(w) = self.workers.get(tunnel.worker) {
            w.remove_tunnel(id.0);
        }
        for r in std::mem::take(&mut *lock(&tunnel.resources)) {
            if let Some(w) = self.workers.get(r.worker) {
                w.remove_resource(id.0, r.slot);
            }
        }
        close_tunnel(tunnel);
    }

    /// Dataplane-wide counters.
    pub fn stats(&self) -> DataplaneStats {
        let s = &self.shared;
        DataplaneStats {
            unknown_spi: s.unknown_spi.load(Ordering::Relaxed),
            invalid: s.invalid.load(Ordering::Relaxed),
            keepalives: s.keepalives.load(Ordering::Relaxed),
            ike: s.ike.load(Ordering::Relaxed),
        }
    }

    /// A counter of the inbound ESP packets the tunnel authenticated, on any of its
    /// SAs; BFD's ESP-silence hint samples it (`bfd::hint`).
    pub fn inbound_heard(&self, id: TunnelId) -> Option<Arc<AtomicU64>> {
        read(&self.shared.tunnels)
            .get(&id.0)
            .map(|t| t.heard.clone())
    }

    /// Transmit/TUN counters of one tunnel.
    pub fn tunnel_stats(&self, id: TunnelId) -> Option<TunnelStats> {
        let t = read(&self.shared.tunnels).get(&id.0).cloned()?;
        Some(t.stats(&kernel_drops::read_tx_dropped()))
    }

    /// [`Self::tunnel_stats`] of every tunnel, the kernel's counters read once. Call
    /// from the dataplane's network namespace.
    pub fn all_tunnel_stats(&self) -> HashMap<TunnelId, TunnelStats> {
        let dropped = kernel_drops::read_tx_dropped();
        read(&self.shared.tunnels)
            .iter()
            .map(|(&id, t)| (TunnelId(id), t.stats(&dropped)))
            .collect()
    }

    /// Datagrams the kernel dropped at the port-4500 sockets since they opened (their
    /// receive buffers were full), summed.
    pub fn socket_drops(&self) -> u64 {
        self.shared
            .sockets
            .iter()
            .filter_map(|s| crate::sys::socket_drops(s.sock.as_raw_fd()).ok())
            .sum()
    }

    /// Sends an IKE message on the port-4500 socket whose local address is
    /// `local`, behind the non-ESP marker (RFC 3948 §2.2).
    pub fn send_ike(&self, local: SocketAddr, remote: SocketAddr, msg: &[u8]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(msg.len() + 4);
        esp::udp::encode_ike(msg, &mut buf);
        self.send_raw(local, remote, &buf)
    }

    /// Sends a NAT-keepalive (a single 0xFF octet, RFC 3948 §2.3).
    pub fn send_keepalive(&self, local: SocketAddr, remote: SocketAddr) -> io::Result<()> {
        self.send_raw(local, remote, &[0xFF])
    }

    fn send_raw(&self, local: SocketAddr, remote: SocketAddr, payload: &[u8]) -> io::Result<()> {
        let i = self.socket_for(local, 0).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("no port-4500 socket bound to {local}"),
            )
        })?;
        let sock = &self.shared.sockets[i];
        let src_ip = (sock.local.ip().is_unspecified() && !local.ip().is_unspecified())
            .then_some(local.ip());
        sock.send(remote, src_ip, payload, None, &self.shared.stop)
    }

    /// Index of the socket for `local`: an exact match, else a wildcard
    /// socket of the same family and port; of its group, the one in `lane` if any.
    fn socket_for(&self, local: SocketAddr, lane: usize) -> Option<usize> {
        let socks = &self.shared.sockets;
        let first = socks.iter().position(|s| s.local == local).or_else(|| {
            socks.iter().position(|s| {
                s.local.ip().is_unspecified()
                    && s.local.port() == local.port()
                    && s.local.is_ipv4() == local.is_ipv4()
            })
        })?;
        let group = socks[first].local;
        let in_lane = socks
            .iter()
            .position(|s| s.local == group && s.lane == lane);
        Some(in_lane.unwrap_or(first))
    }

    /// The SPI lane of a tunnel's inbound ESP (its worker), when received ESP is
    /// steered by SPI; see [`ike::sa::SpiLane`].
    pub fn spi_lane(&self, tunnel: TunnelId) -> Option<ike::sa::SpiLane> {
        let lanes = self.lanes?;
        let t = read(&self.shared.tunnels).get(&tunnel.0).cloned()?;
        Some(ike::sa::SpiLane {
            lane: u32::try_from(t.worker).ok()?,
            lanes: u32::try_from(lanes).ok()?,
        })
    }

    /// Stops every thread and closes every TUN. Idempotent.
    pub fn shutdown(&self) {
        let _admin = lock(&self.admin);
        self.shared.stop.store(true, Ordering::Relaxed);
        for w in &self.workers {
            w.stop();
        }
        write(&self.shared.inbound).clear();
        let tunnels: Vec<_> = write(&self.shared.tunnels)
            .drain()
            .map(|(_, t)| t)
            .collect();
        for t in tunnels {
            close_tunnel(t);
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Waits (briefly) until no worker's turn still holds the tunnel or its TUN, so the
/// interface is gone when this returns.
fn close_tunnel(t: Arc<Tunnel>) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while (Arc::strong_count(&t) > 1 || Arc::strong_count(&t.dev) > 1) && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    tracing::debug!(tunnel = t.name.as_str(), "tunnel interface closed");
}

/// Locks ignoring poisoning: a panicked dataplane thread must not take the
/// control plane down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Dataplane>();
    }

    /// Start/IKE/shutdown without root: loopback sockets only, no TUN.
    #[test]
    fn ike_demux_on_loopback() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let a_addr = a.local_addr().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx = Mutex::new(tx);
        let dp = Dataplane::start(
            vec![a],
            Options {
                threads: 2,
                busy_poll: Duration::ZERO,
                per_resource_sas: true,
            },
            Box::new(move |l, r, m| {
                let _ = lock(&tx).send((l, r, m));
            }),
        )
        .unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        let peer_addr = peer.local_addr().unwrap();
        peer.send_to(&[0, 0, 0, 0, 1, 2, 3], a_addr).unwrap();
        let (l, r, m) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!((l, r, m), (a_addr, peer_addr, vec![1, 2, 3]));
        peer.send_to(&[0xFF], a_addr).unwrap();
        peer.send_to(&[0, 0, 0, 0], a_addr).unwrap();
        // An ESP packet for an SPI that is not installed.
        peer.send_to(&[0, 0, 0x10, 0, 0, 0, 0, 1, 9, 9, 9, 9], a_addr)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while dp.stats().unknown_spi == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            dp.stats(),
            DataplaneStats {
                unknown_spi: 1,
                invalid: 1,
                keepalives: 1,
                ike: 1
            }
        );
        dp.send_ike(a_addr, peer_addr, b"hello").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"\0\0\0\0hello"[..], a_addr));
        assert!(dp
            .send_ike("127.0.0.2:9".parse().unwrap(), peer_addr, b"x")
            .is_err());
        dp.shutdown();
        dp.shutdown();
    }
}
