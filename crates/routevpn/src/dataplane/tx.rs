//! The transmit path, run by a worker for a tunnel whose TUN is readable: TUN reads
//! (GSO super-packets segmented by `tun-rs`), ESP sealing straight into a contiguous
//! buffer, and UDP GSO sends of runs of equal-sized datagrams. The buffers belong to
//! the worker, not to the tunnel.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

use tun_rs::{IDEAL_BATCH_SIZE, VIRTIO_NET_HDR_LEN};

use super::tables::{Outbound, Resource, Tunnel};
use super::{lock, Shared};

/// One TUN read: virtio-net header + a super-packet of at most 64 KiB.
const TUN_READ_BUF: usize = VIRTIO_NET_HDR_LEN + 64 * 1024 + 1024;
/// One segment (at most the TUN MTU; sized for any MTU a TUN accepts).
const SEG_BUF: usize = 64 * 1024;
/// Sealed datagrams waiting to be sent.
const OUT_CAP: usize = 256 * 1024;
/// Room one TUN read can need in the send buffer: a 64 KiB super-packet
/// split into up to [`IDEAL_BATCH_SIZE`] segments, each with replicated
/// headers and the ESP overhead.
const PER_READ_RESERVE: usize = 96 * 1024;
/// TUN reads gathered before sending (small packets, e.g. ACK bursts): one turn.
pub(crate) const MAX_READS: usize = 64;
/// Largest UDP payload of one GSO send (the super-datagram must stay a
/// valid IP packet).
const GSO_MAX_BYTES: usize = 65_000;

/// A stretch of `out` sent with one `sendmsg`: `count` datagrams of `seg`
/// octets, the last one possibly shorter (the UDP GSO rule).
struct Run {
    start: usize,
    len: usize,
    seg: usize,
    count: usize,
    closed: bool,
    sock: usize,
    dst: SocketAddr,
    src: Option<IpAddr>,
}

struct Runs {
    runs: Vec<Run>,
    used: usize,
}

impl Runs {
    fn add(
        &mut self,
        size: usize,
        sock: usize,
        dst: SocketAddr,
        src: Option<IpAddr>,
        max_segs: usize,
    ) {
        let pos = self.used;
        self.used += size;
        if let Some(r) = self.runs.last_mut() {
            if !r.closed
                && r.sock == sock
                && r.dst == dst
                && r.src == src
                && r.start + r.len == pos
                && r.count < max_segs
                && r.len + size <= GSO_MAX_BYTES
                && size <= r.seg
            {
                r.len += size;
                r.count += 1;
                r.closed = size < r.seg;
                return;
            }
        }
        self.runs.push(Run {
            start: pos,
            len: size,
            seg: size,
            count: 1,
            closed: false,
            sock,
            dst,
            src,
        });
    }
}

/// A worker's transmit buffers.
pub(crate) struct TxBuffers {
    orig: Vec<u8>,
    /// One allocation (mmap'd, so untouched pages cost no RSS) cut into segments.
    seg_storage: Vec<u8>,
    sizes: Vec<usize>,
    out: Vec<u8>,
    runs: Runs,
}

impl TxBuffers {
    pub(crate) fn new() -> TxBuffers {
        TxBuffers {
            orig: vec![0u8; TUN_READ_BUF],
            seg_storage: vec![0u8; IDEAL_BATCH_SIZE * SEG_BUF],
            sizes: vec![0usize; IDEAL_BATCH_SIZE],
            out: vec![0u8; OUT_CAP],
            runs: Runs {
                runs: Vec::with_capacity(256),
                used: 0,
            },
        }
    }

    /// One turn for a readable TUN queue (queue 0, or a resource's): up to
    /// [`MAX_READS`] reads, sealed and sent. Returns whether the queue may have more
    /// (it did not say "would block").
    pub(crate) fn turn(&mut self, sh: &Shared, t: &Tunnel, r: Option<&Resource>) -> bool {
        let dev = r.map_or(&*t.dev, |r| &r.dev);
        let mut segs: Vec<&mut [u8]> = self.seg_storage.chunks_mut(SEG_BUF).collect();
        let mut more = true;
        for _ in 0..MAX_READS {
            if self.out.len() - self.runs.used < PER_READ_RESERVE {
                break;
            }
            let n = match dev.recv_multiple(&mut self.orig, &mut segs, &mut self.sizes, 0) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    more = false;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let c = t.tx_tun_errors.fetch_add(1, Ordering::Relaxed) + 1;
                    if c.is_power_of_two() {
                        tracing::debug!(tunnel = t.name.as_str(), "TUN read: {e}");
                    }
                    // A closed TUN has nothing more; other errors get another turn.
                    more = e.raw_os_error() != Some(libc::EBADFD);
                    break;
                }
            };
            seal_batch(
                sh,
                t,
                r,
                &segs[..n],
                &self.sizes[..n],
                &mut self.out,
                &mut self.runs,
            );
        }
        send_runs(sh, t, &self.out, &mut self.runs);
        more
    }
}

/// Seals one TUN read's packets into `out` under one outbound-SA lock: the queue's
/// per-resource SA when it has one, else the tunnel's fallback SA (RFC 9611 §2).
fn seal_batch(
    sh: &Shared,
    t: &Tunnel,
    r: Option<&Resource>,
    segs: &[&mut [u8]],
    sizes: &[usize],
    out: &mut [u8],
    runs: &mut Runs,
) {
    let mut own = r.map(|r| lock(&r.out));
    let mut fallback;
    let o: &mut Outbound = match own.as_mut().and_then(|g| g.as_mut()) {
        Some(o) => o,
        None => {
            fallback = lock(&t.out);
            match fallback.as_mut() {
                Some(o) => o,
                None => {
                    t.tx_no_sa.fetch_add(segs.len() as u64, Ordering::Relaxed);
                    return;
                }
            }
        }
    };
    let max_segs = sh
        .sockets
        .get(o.sock)
        .map_or(1, |s| s.max_gso_segments().max(1));
    let mut volume = (0u64, 0u64);
    for (seg, &size) in segs.iter().zip(sizes) {
        let Some(inner) = seg.get(..size) else {
            t.tx_seal_errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let sealed = out
            .get_mut(runs.used..)
            .ok_or(esp::EspError::BufferTooSmall { need: 0, have: 0 })
            .and_then(|dst| o.sa.seal(inner, dst));
        match sealed {
            Ok(len) => {
                runs.add(len, o.sock, o.dst, o.src_ip, max_segs);
                volume.0 += inner.len() as u64;
                volume.1 += 1;
            }
            Err(e) => {
                let c = t.tx_seal_errors.fetch_add(1, Ordering::Relaxed) + 1;
                if c.is_power_of_two() {
                    tracing::debug!(tunnel = t.name.as_str(), "packet not sealed: {e}");
                }
            }
        }
    }
    sh.count_volume(&o.volume, volume.0, volume.1);
}

fn send_runs(sh: &Shared, t: &Tunnel, out: &[u8], runs: &mut Runs) {
    for r in runs.runs.drain(..) {
        let Some(sock) = sh.sockets.get(r.sock) else {
            continue;
        };
        let seg = (r.count > 1).then_some(r.seg);
        let contents = &out[r.start..r.start + r.len];
        if let Err(e) = sock.send(r.dst, r.src, contents, seg, &sh.stop) {
            let c = t.tx_send_errors.fetch_add(1, Ordering::Relaxed) + 1;
            if c.is_power_of_two() {
                tracing::debug!(tunnel = t.name.as_str(), dst = %r.dst, "ESP send failed: {e}");
            }
        }
    }
    runs.used = 0;
}
