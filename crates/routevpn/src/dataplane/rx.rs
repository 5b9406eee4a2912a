//! The receive path, run by a worker for a readable port-4500 socket: batched
//! `recvmmsg` with UDP GRO, RFC 3948 demultiplexing, ESP opened in place, inner
//! packets written to the tunnels' TUNs in GRO-coalesced batches. The buffers belong
//! to the worker, not to the socket or the tunnels.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use esp::Datagram;
use quinn_udp::{RecvMeta, UdpSockRef, BATCH_SIZE};
use tun_rs::{SyncDevice, IDEAL_BATCH_SIZE};

use super::gro::{Gro, Slot, HEADROOM};

use super::tables::{InboundEntry, Socket};
use super::{lock, read, Shared, TunnelId};

/// One receive buffer: a whole GRO super-datagram (at most 64 KiB of UDP
/// payload) or one maximal UDP datagram.
const RECV_BUF: usize = 64 * 1024 + 1024;
/// Decrypted packets a TUN batch holds before it is written.
const BATCH_PACKETS: usize = IDEAL_BATCH_SIZE;
/// A TUN batch's storage: the packets one after another, each with the virtio-net
/// header's room in front. Room for a whole receive turn, and for the largest packet.
const BATCH_BYTES: usize = RX_TURN_BYTES + RECV_BUF + HEADROOM;
/// TUN write batches a worker keeps: one per tunnel seen in a receive batch, the
/// least recently used one flushed and reused beyond this (bounds a worker's memory
/// however many tunnels it serves).
const TUN_BATCHES: usize = 8;
/// About how many octets one socket turn receives: 32 GRO super-datagrams would be
/// 2 MiB, milliseconds of crypto during which the same worker's TUN reads (the other
/// direction, pings and ACKs included) wait. Small datagrams still get a full batch.
const RX_TURN_BYTES: usize = 256 * 1024;

/// Decrypted packets waiting to be written to one tunnel's TUN.
struct TunBatch {
    tunnel: TunnelId,
    /// Which of the tunnel's TUN queues it writes to.
    queue: usize,
    dev: Option<Arc<SyncDevice>>,
    errors: Option<Arc<AtomicU64>>,
    /// The tunnel's count of authenticated inbound packets, and what this batch adds
    /// to it at the next flush (one atomic add per batch, not per packet).
    heard: Option<Arc<AtomicU64>>,
    heard_pending: u64,
    /// One allocation (untouched pages cost no RSS); `slots` say where the packets are.
    storage: Vec<u8>,
    slots: Vec<Slot>,
    /// Where the next packet's headroom starts.
    pos: usize,
    /// Receive-loop stamp of the last packet pushed (picks the batch to reuse).
    used: u64,
}

impl TunBatch {
    fn new(tunnel: TunnelId) -> TunBatch {
        TunBatch {
            tunnel,
            queue: 0,
            dev: None,
            errors: None,
            heard: None,
            heard_pending: 0,
            storage: vec![0u8; BATCH_BYTES],
            slots: Vec::with_capacity(BATCH_PACKETS),
            pos: 0,
            used: 0,
        }
    }

    /// Room for the next packet, `room` octets behind the virtio-net header's: ESP is
    /// decrypted straight into it (no copy of the inner packet, nothing zeroed).
    fn slot(&mut self, gro: &mut Gro, entry: &InboundEntry, room: usize) -> &mut [u8] {
        if self.dev.is_none() {
            self.dev = Some(entry.dev.clone());
            self.errors = Some(entry.write_errors.clone());
            self.heard = Some(entry.heard.clone());
        }
        if self.pos + HEADROOM + room > self.storage.len() {
            self.flush(gro);
        }
        let start = self.pos + HEADROOM;
        let end = (start + room).min(self.storage.len());
        &mut self.storage[start..end]
    }

    /// Keeps the first `len` octets of the slot as the next packet.
    fn commit(&mut self, gro: &mut Gro, len: usize) {
        let start = self.pos + HEADROOM;
        self.slots.push(Slot { start, len });
        self.pos = start + len;
        if self.slots.len() == BATCH_PACKETS {
            self.flush(gro);
        }
    }

    /// Writes the pending packets; TCP segments (and UDP datagrams) of one flow are
    /// coalesced into one super-packet so the kernel's stack sees few, large packets.
    fn flush(&mut self, gro: &mut Gro) {
        if self.heard_pending > 0 {
            if let Some(h) = &self.heard {
                h.fetch_add(self.heard_pending, Ordering::Relaxed);
            }
            self.heard_pending = 0;
        }
        if !self.slots.is_empty() {
            if let Some(dev) = &self.dev {
                let (vnet, udp) = (dev.tcp_gso(), dev.udp_gso());
                let written = gro.flush(&mut self.storage, &self.slots, vnet, udp, |iov| {
                    dev.send_vectored(iov)
                });
                if let Err(e) = written {
                    let c = self
                        .errors
                        .as_ref()
                        .map(|c| c.fetch_add(1, Ordering::Relaxed));
                    if c.is_some_and(|c| c.is_power_of_two()) {
                        tracing::debug!(tunnel = self.tunnel.0, "TUN write failed: {e}");
                    }
                }
            }
            self.slots.clear();
        }
        self.pos = 0;
    }

    /// End of a receive batch (or reuse for another tunnel): write, and drop the TUN
    /// reference so a removed tunnel's interface can disappear.
    fn finish(&mut self, gro: &mut Gro) {
        self.flush(gro);
        self.dev = None;
        self.errors = None;
        self.heard = None;
    }
}

/// Logs at exponentially spaced counts so a flood cannot flood the log.
fn rate_limited(count: u64) -> bool {
    count.is_power_of_two()
}

/// A worker's receive buffers and pending TUN writes.
pub(crate) struct RxBuffers {
    storage: Vec<u8>,
    metas: Vec<RecvMeta>,
    batches: Vec<TunBatch>,
    gro: Gro,
    ike: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    recv_errors: u64,
    stamp: u64,
    /// Receive slots for the next turn: [`RX_TURN_BYTES`] over the last turn's mean
    /// datagram (GRO makes it up to 64 KiB), at least 2.
    slots: usize,
}

impl RxBuffers {
    pub(crate) fn new() -> RxBuffers {
        RxBuffers {
            storage: vec![0u8; RECV_BUF * BATCH_SIZE],
            metas: vec![RecvMeta::default(); BATCH_SIZE],
            batches: Vec::new(),
            gro: Gro::new(),
            ike: Vec::new(),
            recv_errors: 0,
            stamp: 0,
            slots: BATCH_SIZE,
        }
    }

    /// One turn for a readable socket: one `recvmmsg` batch, opened and written to the
    /// TUNs. Returns whether the socket may have more.
    pub(crate) fn turn(&mut self, sh: &Shared, sock: &Socket) -> bool {
        let mut iovs: Vec<IoSliceMut<'_>> = self
            .storage
            .chunks_mut(RECV_BUF)
            .take(self.slots)
            .map(IoSliceMut::new)
            .collect();
        let n = match sock
            .state
            .recv(UdpSockRef::from(&sock.sock), &mut iovs, &mut self.metas)
        {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(e) => {
                self.recv_errors += 1;
                if rate_limited(self.recv_errors) {
                    tracing::debug!("recv on {}: {e}", sock.local);
                }
                return true;
            }
        };
        let received: usize = self.metas.iter().take(n).map(|m| m.len).sum();
        self.slots = (RX_TURN_BYTES * n / received.max(1)).clamp(2, BATCH_SIZE);
        {
            let table = read(&sh.inbound);
            let mut out = Pending {
                batches: &mut self.batches,
                gro: &mut self.gro,
                ike: &mut self.ike,
                stamp: &mut self.stamp,
            };
            for (meta, iov) in self.metas.iter().zip(iovs.iter_mut()).take(n) {
                let local = match meta.dst_ip {
                    Some(ip) if sock.local.ip().is_unspecified() => {
                        SocketAddr::new(ip, sock.local.port())
                    }
                    _ => sock.local,
                };
                let len = meta.len.min(iov.len());
                let stride = if meta.stride == 0 { len } else { meta.stride };
                let Some(data) = iov.get_mut(..len) else {
                    continue;
                };
                for seg in data.chunks_mut(stride.max(1)) {
                    handle(sh, &table, seg, local, meta.addr, &mut out);
                }
            }
            for b in self.batches.iter_mut() {
                b.finish(&mut self.gro);
            }
        }
        // Outside the table lock: the callback may call back into the API.
        for (l, r, m) in self.ike.drain(..) {
            (sh.on_ike)(l, r, m);
        }
        true
    }
}

/// Where one receive batch's results go.
struct Pending<'a> {
    batches: &'a mut Vec<TunBatch>,
    gro: &'a mut Gro,
    ike: &'a mut Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    stamp: &'a mut u64,
}

impl Pending<'_> {
    /// The TUN batch (its index) of this tunnel queue: its own, a free one, a new one, or the least
    /// recently used one, flushed first.
    fn batch(&mut self, tunnel: TunnelId, queue: usize) -> usize {
        *self.stamp += 1;
        let stamp = *self.stamp;
        let b = &mut *self.batches;
        let i = if let Some(i) = b
            .iter()
            .position(|x| x.tunnel == tunnel && x.queue == queue && x.dev.is_some())
        {
            i
        } else if let Some(i) = b.iter().position(|x| x.dev.is_none()) {
            i
        } else if b.len() < TUN_BATCHES {
            b.push(TunBatch::new(tunnel));
            b.len() - 1
        } else {
            let i = (0..b.len()).min_by_key(|&i| b[i].used).unwrap_or(0);
            b[i].finish(self.gro);
            i
        };
        b[i].tunnel = tunnel;
        b[i].queue = queue;
        b[i].used = stamp;
        i
    }
}

fn handle(
    sh: &Shared,
    table: &std::collections::HashMap<u32, Arc<InboundEntry>>,
    seg: &mut [u8],
    local: SocketAddr,
    remote: SocketAddr,
    out: &mut Pending<'_>,
) {
    // RFC 3948 §2: keepalive / non-ESP marker + IKE / ESP.
    let spi = match esp::classify(seg) {
        Datagram::Esp { spi, .. } => spi,
        Datagram::Ike(m) => {
            sh.ike.fetch_add(1, Ordering::Relaxed);
            out.ike.push((local, remote, m.to_vec()));
            return;
        }
        Datagram::Keepalive => {
            sh.keepalives.fetch_add(1, Ordering::Relaxed);
            return;
        }
        Datagram::Invalid => {
            sh.invalid.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    let Some(entry) = table.get(&spi) else {
        // RFC 4303 §3.4.2: no SA → discard, auditable event.
        let c = sh.unknown_spi.fetch_add(1, Ordering::Relaxed) + 1;
        if rate_limited(c) {
            tracing::debug!(
                spi = format_args!("{spi:#010x}"),
                %remote,
                count = c,
                "ESP for unknown SPI dropped"
            );
        }
        return;
    };
    let i = out.batch(entry.tunnel, entry.queue());
    let (batch, gro) = (&mut out.batches[i], &mut *out.gro);
    let mut cell = lock(&entry.sa);
    let top = cell.sa.replay_window().top();
    // Replay check, ICV, decryption (into the TUN batch) and padding checks; every
    // error is counted in the SA's counters.
    let room = cell.sa.plaintext_len(seg);
    let opened = cell
        .sa
        .open_into(seg, batch.slot(gro, entry, room))
        .map(|d| d.packet().map(<[u8]>::len));
    // RFC 7296 §2.23: the newest authenticated packet says where the peer is.
    let newest = opened.is_ok() && cell.sa.replay_window().top() > top;
    let moved = (newest && cell.peer != remote).then(|| std::mem::replace(&mut cell.peer, remote));
    drop(cell);
    if let Some(from) = moved {
        sh.esp_moved(entry, from, remote);
    }
    // The peer sends on an SA we answered the rekey of: send on it too.
    if opened.is_ok() && entry.deferred.load(Ordering::Relaxed) {
        sh.promote(table, entry);
    }
    if opened.is_ok() {
        batch.heard_pending += 1;
    }
    match opened {
        Ok(Some(len)) => {
            sh.count_volume(&entry.volume, len as u64, 1);
            batch.commit(gro, len);
        }
        // A dummy packet (RFC 4303 §2.6): authentic, dropped (but heard).
        Ok(None) => {}
        Err(e) => {
            tracing::trace!(spi = format_args!("{spi:#010x}"), "ESP dropped: {e}");
        }
    }
}
