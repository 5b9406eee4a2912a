//! Receive coalescing (GRO) for TUN writes. Decrypted TCP segments (and UDP datagrams,
//! where the TUN takes UDP GSO) of one flow become one GSO super-packet, written with
//! one `writev` that gathers the segments' payloads where they were decrypted: no copy
//! and no allocation per packet. The kernel's stack then sees few, large packets, as
//! behind a NIC doing GRO.
//!
//! It replaces tun-rs's `send_multiple` coalescing, which copied every packet it looked
//! at into a new `Vec` and appended each coalesced payload to the first packet (two
//! copies and a `malloc`/`free` per packet; issue 13's profile).
//!
//! The rules are the kernel's own GRO rules (`inet_gro_receive`, `ipv6_gro_receive`,
//! `tcp_gro_receive`, `udp_gro_receive`), so that the kernel's resegmentation of a
//! super-packet gives back the packets that went in:
//! - one flow: addresses, ports, protocol; the same IP header fields that the kernel
//!   copies to every segment (TOS, TTL, DF; IPv6 traffic class, flow label, hop limit);
//!   for TCP the same ACK number, window and options;
//! - in order: each TCP segment starts where the previous one ended, and IPv4 IDs count
//!   up by one unless DF is set (RFC 6864 §4.1: then the ID means nothing);
//! - equal sizes: every segment carries the first one's payload size except the last,
//!   which may be shorter and ends the super-packet; TCP's PSH ends it too;
//! - only plain segments: TCP flags ACK or ACK|PSH, a payload, no IPv4 options or IPv6
//!   extension headers, no fragments, a right IPv4 header checksum;
//! - each segment's checksum verified before it is merged, since the super-packet gets
//!   a fresh one (CHECKSUM_PARTIAL) and would otherwise hide a corrupt segment.
//!
//! Everything else is written as it came, in order; a packet of an open flow that
//! cannot join it (a FIN, a gap, a bad checksum) closes the flow first, so a flow is
//! never reordered.

#![forbid(unsafe_code)]

use std::io::{self, IoSlice};
use std::ops::Range;

/// Room in front of each packet for the TUN's virtio-net header (`struct
/// virtio_net_hdr`, `IFF_VNET_HDR`).
pub const HEADROOM: usize = 10;

/// Segments in one super-packet: the kernel's GSO limit for a TUN write
/// (`UDP_MAX_SEGMENTS` is 128; 64 keeps TCP well inside it too).
const MAX_SEGS: usize = 64;
/// The largest IP packet (total length is 16 bits).
const MAX_PACKET: usize = 65_535;
/// Flows a batch coalesces at once; the oldest is closed to make room for another.
const MAX_OPEN: usize = 16;

// include/uapi/linux/virtio_net.h
const F_NEEDS_CSUM: u8 = 1;
const GSO_TCPV4: u8 = 1;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;

const TCP: u8 = 6;
const UDP: u8 = 17;
const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;

/// The one's-complement sum (RFC 1071) of `data`, not folded, added to `acc`: tun-rs's
/// (AVX2 or SSE4.1 where the CPU has them; big-endian 32-bit words, as this module reads
/// them).
fn sum(data: &[u8], acc: u64) -> u64 {
    tun_rs::checksum_no_fold(data, acc)
}

/// Folds a sum to 16 bits (RFC 1071 §4.1).
fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// What one packet is, read through checked accessors.
#[derive(Clone, Copy, Debug)]
struct Pkt {
    v6: bool,
    proto: u8,
    /// IP header length.
    iph: usize,
    /// IP and transport header length.
    hdrs: usize,
    len: usize,
    /// TCP sequence number.
    seq: u32,
    psh: bool,
    /// IPv4 identification, and whether DF is set.
    id: u16,
    df: bool,
}

impl Pkt {
    fn payload(&self) -> usize {
        self.len - self.hdrs
    }

    fn addrs(&self) -> Range<usize> {
        addrs(self.v6)
    }
}

/// Where the source and destination addresses are in an IPv6 or IPv4 header.
fn addrs(v6: bool) -> Range<usize> {
    if v6 {
        8..40
    } else {
        12..20
    }
}

fn be16(p: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(p.get(at..at + 2)?.try_into().ok()?))
}

fn be32(p: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(p.get(at..at + 4)?.try_into().ok()?))
}

/// The IP version, header length and transport protocol of a packet with ports, if it
/// has them (for "same flow" even when the packet cannot be merged).
fn flow(p: &[u8]) -> Option<(bool, usize, u8)> {
    let first = *p.first()?;
    let (v6, iph, proto) = match first >> 4 {
        4 => (false, usize::from(first & 0x0f) * 4, *p.get(9)?),
        6 => (true, 40, *p.get(6)?),
        _ => return None,
    };
    ((proto == TCP || proto == UDP) && p.len() >= iph + 4 && iph >= 20).then_some((v6, iph, proto))
}

/// Whether packet `p` (of [`flow`] `f`) has the addresses, protocol and ports of the
/// group head `head` (viewed as `h`).
fn same_flow(head: &[u8], h: &Pkt, p: &[u8], (v6, iph, proto): (bool, usize, u8)) -> bool {
    h.v6 == v6
        && h.proto == proto
        && head.get(h.addrs()) == p.get(addrs(v6))
        && head.get(h.iph..h.iph + 4) == p.get(iph..iph + 4)
}

/// A packet (of [`flow`] `f`) that may be merged, or `None`.
fn candidate(p: &[u8], (v6, iph, proto): (bool, usize, u8), udp: bool) -> Option<Pkt> {
    if p.len() > MAX_PACKET {
        return None;
    }
    let (id, df) = if v6 {
        // No extension headers (the next header is the transport), and the length agrees.
        if usize::from(be16(p, 4)?) + 40 != p.len() {
            return None;
        }
        (0, true)
    } else {
        let frag = be16(p, 6)?;
        // No options, the length agrees, not a fragment (MF clear, offset 0), and the
        // header checksum is right (the super-packet gets a new one).
        if iph != 20
            || usize::from(be16(p, 2)?) != p.len()
            || frag & 0x3fff != 0
            || fold(sum(p.get(..20)?, 0)) != 0xffff
        {
            return None;
        }
        (be16(p, 4)?, frag & 0x4000 != 0)
    };
    let (hdrs, seq, psh) = if proto == TCP {
        let doff = usize::from(*p.get(iph + 12)? >> 4) * 4;
        let flags = *p.get(iph + 13)?;
        if !(20..=60).contains(&doff) || (flags != TCP_ACK && flags != TCP_ACK | TCP_PSH) {
            return None;
        }
        (iph + doff, be32(p, iph + 4)?, flags & TCP_PSH != 0)
    } else {
        // UDP: only where the TUN takes USO; the UDP length agrees; it has a checksum
        // (an IPv4 datagram without one would get one).
        if !udp || usize::from(be16(p, iph + 4)?) + iph != p.len() || be16(p, iph + 6)? == 0 {
            return None;
        }
        (iph + 8, 0, false)
    };
    (p.len() > hdrs).then_some(Pkt {
        v6,
        proto,
        iph,
        hdrs,
        len: p.len(),
        seq,
        psh,
        id,
        df,
    })
}

/// Whether `b`, of `a`'s flow (addresses, protocol and ports are equal), carries the
/// other header fields `a` does, which the kernel copies from the super-packet's header
/// to every segment.
fn same_headers(a: &[u8], pa: &Pkt, b: &[u8], pb: &Pkt) -> bool {
    if pa.hdrs != pb.hdrs || pa.df != pb.df {
        return false;
    }
    let ip_fields = if pa.v6 {
        // version, traffic class, flow label; next header, hop limit
        a.get(0..4) == b.get(0..4) && a.get(6..8) == b.get(6..8)
    } else {
        // TOS; flags (DF and the reserved bit) and fragment offset; TTL, protocol
        a.get(1) == b.get(1) && a.get(6..10) == b.get(6..10)
    };
    // TCP: ACK number, data offset and reserved bits, window, urgent pointer and
    // options: all but the sequence number, the flags (checked already) and the checksum.
    let tcp = pa.proto != TCP
        || (a.get(pa.iph + 8..pa.iph + 13) == b.get(pb.iph + 8..pb.iph + 13)
            && a.get(pa.iph + 14..pa.iph + 16) == b.get(pb.iph + 14..pb.iph + 16)
            && a.get(pa.iph + 18..pa.hdrs) == b.get(pb.iph + 18..pb.hdrs));
    ip_fields && tcp
}

/// Whether the transport checksum of `p` is right (RFC 1071: the sum over the pseudo
/// header and the segment is all ones).
fn checksum_ok(p: &[u8], k: &Pkt) -> bool {
    let (Some(addrs), Some(seg)) = (p.get(k.addrs()), p.get(k.iph..)) else {
        return false;
    };
    let pseudo = sum(addrs, u64::from(k.proto) + seg.len() as u64);
    fold(sum(seg, pseudo)) == 0xffff
}

/// One write: a packet alone, or a super-packet of `members` (by index into the batch;
/// the first is the head whose headers are kept).
#[derive(Default)]
struct Group {
    members: Vec<usize>,
    /// The head's view; `None` for a packet written as it came.
    head: Option<Pkt>,
    /// Whether more may join: not after a shorter segment, a PSH, or a packet of the
    /// flow that could not join.
    open: bool,
    /// The head's checksum was verified (done when the second member joins).
    head_ok: bool,
    total: usize,
    next_seq: u32,
    psh: bool,
}

/// The coalescer: plans one batch's writes and gives each to the caller. It keeps its
/// allocations from batch to batch.
#[derive(Default)]
pub struct Gro {
    groups: Vec<Group>,
    used: usize,
    /// Groups that may still take packets, oldest first.
    open: Vec<usize>,
}

/// Where one packet of a batch is: `storage[start..start + len]`, with [`HEADROOM`]
/// octets free in front of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub start: usize,
    pub len: usize,
}

impl Gro {
    pub fn new() -> Gro {
        Gro::default()
    }

    /// Coalesces the batch's packets and passes each write (the virtio-net header
    /// first when `vnet`) to `write`, in order. `udp`: the TUN takes UDP GSO.
    /// Every write is tried; the first error is returned.
    pub fn flush(
        &mut self,
        storage: &mut [u8],
        slots: &[Slot],
        vnet: bool,
        udp: bool,
        mut write: impl FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<()> {
        let mut result = Ok(());
        if !vnet {
            for s in slots {
                if let Some(p) = storage.get(s.start..s.start + s.len) {
                    if let Err(e) = write(&[IoSlice::new(p)]) {
                        result = result.and(Err(e));
                    }
                }
            }
            return result;
        }
        self.plan(storage, slots, udp);
        let mut iov = [IoSlice::new(&[]); MAX_SEGS];
        for g in &self.groups[..self.used] {
            finish(storage, slots, g);
        }
        for g in &self.groups[..self.used] {
            let mut n = 0;
            for (k, &m) in g.members.iter().enumerate() {
                let s = slots[m];
                // The head with its header in front; the others' payloads only.
                let range = match (k, &g.head) {
                    (0, _) => s.start - HEADROOM..s.start + s.len,
                    (_, Some(h)) => s.start + h.hdrs..s.start + s.len,
                    (_, None) => continue,
                };
                if let Some(bytes) = storage.get(range) {
                    iov[n] = IoSlice::new(bytes);
                    n += 1;
                }
            }
            if n > 0 {
                if let Err(e) = write(&iov[..n]) {
                    result = result.and(Err(e));
                }
            }
        }
        result
    }

    /// Sorts the batch into groups, in the order of their first packet.
    fn plan(&mut self, storage: &[u8], slots: &[Slot], udp: bool) {
        self.used = 0;
        self.open.clear();
        for (i, s) in slots.iter().enumerate() {
            // A slot without its headroom is written as nothing (it cannot occur).
            let Some(p) = storage
                .get(s.start..s.start + s.len)
                .filter(|_| s.start >= HEADROOM)
            else {
                continue;
            };
            let f = flow(p);
            let pkt = f.and_then(|f| candidate(p, f, udp));
            // The open group of this flow, if any (open groups have a head view).
            let at = f.and_then(|f| {
                self.open.iter().position(|&g| {
                    let grp = &self.groups[g];
                    let h = slots[grp.members[0]];
                    grp.head
                        .is_some_and(|hp| same_flow(&storage[h.start..h.start + h.len], &hp, p, f))
                })
            });
            if let (Some(at), Some(pkt)) = (at, pkt) {
                let g = self.open[at];
                let h = slots[self.groups[g].members[0]];
                let head = &storage[h.start..h.start + h.len];
                match self.join(g, i, head, p, &pkt) {
                    Join::Joined => continue,
                    Join::Alone => {
                        // A corrupt segment goes as it came (the kernel drops it), and
                        // ends the super-packet: nothing after it may pass it.
                        self.open.remove(at);
                        self.groups[g].open = false;
                        self.push(i, None);
                        continue;
                    }
                    Join::No => {}
                }
            }
            if let Some(at) = at {
                // Closed before a packet of its flow that could not join it.
                let g = self.open.remove(at);
                self.groups[g].open = false;
            }
            let g = self.push(i, pkt);
            if pkt.is_some() {
                if self.open.len() == MAX_OPEN {
                    let oldest = self.open.remove(0);
                    self.groups[oldest].open = false;
                }
                self.open.push(g);
            }
        }
    }

    /// A new group headed by packet `i`.
    fn push(&mut self, i: usize, head: Option<Pkt>) -> usize {
        if self.used == self.groups.len() {
            self.groups.push(Group::default());
        }
        let g = &mut self.groups[self.used];
        g.members.clear();
        g.members.push(i);
        g.head = head;
        g.open = head.is_some_and(|h| !h.psh);
        g.head_ok = false;
        g.total = head.map_or(0, |h| h.len);
        g.next_seq = head.map_or(0, |h| h.seq.wrapping_add(h.payload() as u32));
        g.psh = false;
        self.used += 1;
        self.used - 1
    }

    /// Tries to append `p` (which is of the group's flow) to group `g`.
    fn join(&mut self, g: usize, i: usize, head_bytes: &[u8], p: &[u8], pkt: &Pkt) -> Join {
        let grp = &mut self.groups[g];
        let Some(head) = grp.head else {
            return Join::No;
        };
        let count = grp.members.len();
        let in_order = if head.proto == TCP {
            pkt.seq == grp.next_seq
        } else {
            true
        };
        let id_ok = pkt.df || pkt.id == head.id.wrapping_add(count as u16);
        if !grp.open
            || count == MAX_SEGS
            || grp.total + pkt.payload() > MAX_PACKET
            || pkt.payload() > head.payload()
            || !in_order
            || !id_ok
            || !same_headers(head_bytes, &head, p, pkt)
        {
            return Join::No;
        }
        if !grp.head_ok {
            if !checksum_ok(head_bytes, &head) {
                // The head goes alone, closed; `p` starts a new group.
                grp.open = false;
                return Join::No;
            }
            grp.head_ok = true;
        }
        if !checksum_ok(p, pkt) {
            return Join::Alone;
        }
        grp.members.push(i);
        grp.total += pkt.payload();
        grp.next_seq = pkt.seq.wrapping_add(pkt.payload() as u32);
        grp.psh = pkt.psh;
        grp.open = pkt.payload() == head.payload() && !pkt.psh;
        Join::Joined
    }
}

enum Join {
    Joined,
    /// Of the flow and in order, but corrupt: written on its own.
    Alone,
    /// Not with this group.
    No,
}

/// Rewrites a group's head into the super-packet's headers and writes its virtio-net
/// header; a packet alone gets an empty one.
fn finish(storage: &mut [u8], slots: &[Slot], g: &Group) {
    let h = slots[g.members[0]];
    let Some(buf) = storage.get_mut(h.start - HEADROOM..h.start + h.len) else {
        return;
    };
    let (vnet, pkt) = buf.split_at_mut(HEADROOM);
    vnet.fill(0);
    let Some(head) = g.head.filter(|_| g.members.len() > 1) else {
        return;
    };
    let total = g.total;
    let l4_len = total - head.iph;
    if head.v6 {
        pkt[4..6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    } else {
        pkt[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        pkt[10..12].fill(0);
        let c = !fold(sum(&pkt[..head.iph], 0));
        pkt[10..12].copy_from_slice(&c.to_be_bytes());
    }
    let (gso_type, csum_offset) = match (head.proto, head.v6) {
        (TCP, false) => (GSO_TCPV4, 16),
        (TCP, true) => (GSO_TCPV6, 16),
        _ => (GSO_UDP_L4, 6),
    };
    if head.proto == TCP {
        if g.psh {
            pkt[head.iph + 13] |= TCP_PSH;
        }
    } else {
        pkt[head.iph + 4..head.iph + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
    }
    // CHECKSUM_PARTIAL: the pseudo header's sum, not complemented; the kernel adds the rest.
    let pseudo = fold(sum(
        &pkt[head.addrs()],
        u64::from(head.proto) + l4_len as u64,
    ));
    let at = head.iph + csum_offset;
    pkt[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
    // The TUN's virtio-net header is in the host's byte order (legacy virtio).
    vnet[0] = F_NEEDS_CSUM;
    vnet[1] = gso_type;
    vnet[2..4].copy_from_slice(&(head.hdrs as u16).to_ne_bytes());
    vnet[4..6].copy_from_slice(&(head.payload() as u16).to_ne_bytes());
    vnet[6..8].copy_from_slice(&(head.iph as u16).to_ne_bytes());
    vnet[8..10].copy_from_slice(&(csum_offset as u16).to_ne_bytes());
}

#[doc(hidden)]
pub mod model;
#[cfg(test)]
mod tests;
