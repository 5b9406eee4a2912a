//! A model of what the kernel makes of the coalescer's writes (`tcp_gso_segment`,
//! `__udp_gso_segment`), for the unit tests and the `dataplane_gro` fuzz target: each
//! write, cut into segments again, must give back the packets that went in, in each
//! flow's order. Not used by the dataplane.

use super::{addrs, be16, be32, flow, fold, sum, F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};
use super::{candidate, checksum_ok, Gro, Slot, HEADROOM, TCP, TCP_ACK, TCP_PSH, UDP};

use std::io::IoSlice;

/// A flow of test packets: IPv4 or IPv6, TCP (with a timestamp option) or UDP, from
/// `port` to 5201.
#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub v6: bool,
    pub tcp: bool,
    pub port: u16,
}

/// Per-packet header values.
#[derive(Clone, Copy, Debug)]
pub struct Hdr {
    pub seq: u32,
    pub flags: u8,
    pub id: u16,
    pub df: bool,
    pub ttl: u8,
    pub window: u16,
}

impl Hdr {
    /// An ACK-only segment at `seq`, DF set, ID 0, TTL 64.
    pub fn at(seq: u32) -> Hdr {
        Hdr {
            seq,
            flags: TCP_ACK,
            id: 0,
            df: true,
            ttl: 64,
            window: 500,
        }
    }
}

fn set16(p: &mut [u8], at: usize, v: u16) {
    p[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

/// A packet of flow `f` with headers `h` and `payload`, checksums right.
pub fn packet(f: Flow, h: Hdr, payload: &[u8]) -> Vec<u8> {
    let iph = if f.v6 { 40 } else { 20 };
    let l4h = if f.tcp { 32 } else { 8 };
    let mut p = vec![0u8; iph + l4h + payload.len()];
    let len = p.len();
    let proto = if f.tcp { TCP } else { UDP };
    if f.v6 {
        p[0] = 0x60;
        p[1] = 0x0a; // a flow label
        set16(&mut p, 4, (len - 40) as u16);
        p[6] = proto;
        p[7] = h.ttl;
        p[8] = 0xfd;
        p[23] = 1;
        p[24] = 0xfd;
        p[39] = 2;
    } else {
        p[0] = 0x45;
        set16(&mut p, 2, len as u16);
        set16(&mut p, 4, h.id);
        p[6] = if h.df { 0x40 } else { 0 };
        p[8] = h.ttl;
        p[9] = proto;
        p[12..16].copy_from_slice(&[10, 0, 0, 1]);
        p[16..20].copy_from_slice(&[10, 0, 0, 2]);
    }
    set16(&mut p, iph, f.port);
    set16(&mut p, iph + 2, 5201);
    if f.tcp {
        p[iph + 4..iph + 8].copy_from_slice(&h.seq.to_be_bytes());
        p[iph + 8..iph + 12].copy_from_slice(&7u32.to_be_bytes());
        p[iph + 12] = 8 << 4;
        p[iph + 13] = h.flags;
        set16(&mut p, iph + 14, h.window);
        // NOP, NOP, timestamps
        p[iph + 20..iph + 24].copy_from_slice(&[1, 1, 8, 10]);
        p[iph + 24..iph + 28].copy_from_slice(&1234u32.to_be_bytes());
    } else {
        set16(&mut p, iph + 4, (len - iph) as u16);
    }
    p[iph + l4h..].copy_from_slice(payload);
    fill_checksums(&mut p);
    p
}

/// `n` octets of a pattern that differs by `tag`.
pub fn payload(n: usize, tag: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31) ^ tag).collect()
}

/// Sets the IPv4 header checksum and the TCP or UDP checksum of `p`, where it is such a
/// packet (without IPv4 options or IPv6 extension headers) and long enough.
pub fn fill_checksums(p: &mut [u8]) {
    let Some((v6, iph, proto)) = flow(p) else {
        return;
    };
    let at = iph + if proto == TCP { 16 } else { 6 };
    if p.len() < at + 2 || (!v6 && iph != 20) {
        return;
    }
    if !v6 {
        p[10..12].fill(0);
        let c = !fold(sum(&p[..20], 0));
        p[10..12].copy_from_slice(&c.to_be_bytes());
    }
    p[at..at + 2].fill(0);
    let pseudo = sum(&p[addrs(v6)], u64::from(proto) + (p.len() - iph) as u64);
    let mut c = !fold(sum(&p[iph..], pseudo));
    if proto == UDP && c == 0 {
        // RFC 768: a computed zero is sent as all ones.
        c = 0xffff;
    }
    p[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// A batch as a receiving worker holds it: the packets one after another, each with
/// [`HEADROOM`] octets (of `fill`) in front.
pub fn lay_out(pkts: &[Vec<u8>], fill: u8) -> (Vec<u8>, Vec<Slot>) {
    let mut storage = Vec::new();
    let mut slots = Vec::new();
    for p in pkts {
        storage.extend_from_slice(&[fill; HEADROOM]);
        slots.push(Slot {
            start: storage.len(),
            len: p.len(),
        });
        storage.extend_from_slice(p);
    }
    (storage, slots)
}

/// The writes `gro` makes of a batch, each as one byte string.
pub fn writes(
    gro: &mut Gro,
    storage: &mut [u8],
    slots: &[Slot],
    vnet: bool,
    udp: bool,
) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    gro.flush(storage, slots, vnet, udp, |iov: &[IoSlice<'_>]| {
        out.push(iov.iter().flat_map(|s| s.iter().copied()).collect());
        Ok(0)
    })
    .expect("the writer never fails");
    out
}

/// What the kernel makes of one write: the virtio-net header read, a GSO packet cut
/// into segments with the head's headers, lengths, IDs, sequence numbers, PSH on the
/// last, and checksums filled in. Panics on a header the kernel would not take as
/// the coalescer means it.
pub fn resegment(w: &[u8]) -> Vec<Vec<u8>> {
    let (vnet, pkt) = w.split_at(HEADROOM);
    let gso_type = vnet[1];
    if gso_type == 0 {
        assert_eq!(vnet, [0u8; HEADROOM], "a packet alone has an empty header");
        return vec![pkt.to_vec()];
    }
    let ne = |at: usize| usize::from(u16::from_ne_bytes([vnet[at], vnet[at + 1]]));
    assert_eq!(vnet[0], F_NEEDS_CSUM);
    let (hdr_len, gso_size, csum_start, csum_offset) = (ne(2), ne(4), ne(6), ne(8));
    let v6 = pkt[0] >> 4 == 6;
    let tcp = gso_type != GSO_UDP_L4;
    let want = match (tcp, v6) {
        (false, _) => GSO_UDP_L4,
        (true, false) => GSO_TCPV4,
        (true, true) => GSO_TCPV6,
    };
    assert_eq!(gso_type, want);
    let iph = if v6 { 40 } else { 20 };
    assert_eq!((csum_start, csum_offset), (iph, if tcp { 16 } else { 6 }));
    assert!(pkt.len() <= 65_535 && gso_size > 0 && hdr_len < pkt.len());
    // The head's lengths cover the whole super-packet, and its checksum field holds the
    // pseudo header's sum (CHECKSUM_PARTIAL).
    if v6 {
        assert_eq!(usize::from(be16(pkt, 4).unwrap_or(0)) + 40, pkt.len());
    } else {
        assert_eq!(usize::from(be16(pkt, 2).unwrap_or(0)), pkt.len());
        assert_eq!(fold(sum(&pkt[..20], 0)), 0xffff, "head's IPv4 checksum");
    }
    let proto = if tcp { TCP } else { UDP };
    let partial = fold(sum(
        &pkt[addrs(v6)],
        u64::from(proto) + (pkt.len() - iph) as u64,
    ));
    assert_eq!(be16(pkt, iph + csum_offset), Some(partial));
    let (hdrs, data) = pkt.split_at(hdr_len);
    let chunks: Vec<&[u8]> = data.chunks(gso_size).collect();
    let mut out = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let mut p = hdrs.to_vec();
        p.extend_from_slice(c);
        let len = p.len();
        if v6 {
            p[4..6].copy_from_slice(&((len - 40) as u16).to_be_bytes());
        } else {
            p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            let id = be16(hdrs, 4).unwrap_or(0).wrapping_add(i as u16);
            p[4..6].copy_from_slice(&id.to_be_bytes());
        }
        if tcp {
            let seq = be32(hdrs, iph + 4)
                .unwrap_or(0)
                .wrapping_add((i * gso_size) as u32);
            p[iph + 4..iph + 8].copy_from_slice(&seq.to_be_bytes());
            if i + 1 < chunks.len() {
                p[iph + 13] &= !TCP_PSH;
            }
        } else {
            p[iph + 4..iph + 6].copy_from_slice(&((len - iph) as u16).to_be_bytes());
        }
        fill_checksums(&mut p);
        out.push(p);
    }
    out
}

/// A packet as compared: without its checksums, which [`resegment`] computes afresh (a
/// TCP zero may be written either way), and without a DF packet's ID, which means
/// nothing (RFC 6864 §4.1).
fn normal(p: &[u8]) -> Vec<u8> {
    let mut p = p.to_vec();
    if let Some((v6, iph, proto)) = flow(&p) {
        let at = iph + if proto == TCP { 16 } else { 6 };
        if let Some(c) = p.get_mut(at..at + 2) {
            c.fill(0);
        }
        if !v6 && p.len() >= 20 {
            p[10..12].fill(0);
            if p[6] & 0x40 != 0 {
                p[4..6].fill(0);
            }
        }
    }
    p
}

/// Which flow a packet is of, for the comparison: addresses, protocol and ports, or
/// `None` for one without.
fn key(p: &[u8]) -> Option<(Vec<u8>, u8, Vec<u8>)> {
    flow(p).map(|(v6, iph, proto)| (p[addrs(v6)].to_vec(), proto, p[iph..iph + 4].to_vec()))
}

/// Panics unless the writes, resegmented, give back `pkts`: each flow's packets in
/// order, every packet once, merged ones with right checksums.
pub fn assert_round_trip(pkts: &[Vec<u8>], writes: &[Vec<u8>]) {
    // Each packet given back, and whether it was part of a super-packet.
    let back: Vec<(Vec<u8>, bool)> = writes
        .iter()
        .flat_map(|w| {
            let merged = w.get(1).is_some_and(|&t| t != 0);
            resegment(w).into_iter().map(move |p| (p, merged))
        })
        .collect();
    assert_eq!(back.len(), pkts.len(), "packets out vs in");
    let mut keys: Vec<_> = pkts.iter().map(|p| key(p)).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let ins: Vec<&Vec<u8>> = pkts.iter().filter(|p| key(p) == k).collect();
        let outs: Vec<&(Vec<u8>, bool)> = back.iter().filter(|(p, _)| key(p) == k).collect();
        let a: Vec<Vec<u8>> = ins.iter().map(|p| normal(p)).collect();
        let b: Vec<Vec<u8>> = outs.iter().map(|(p, _)| normal(p)).collect();
        let at = a.iter().zip(&b).position(|(x, y)| x != y);
        assert!(
            a == b,
            "flow {k:?}: {} packets in, {} out, first difference at {at:?}: {:?} vs {:?}",
            a.len(),
            b.len(),
            at.map(|i| &a[i][..a[i].len().min(60)]),
            at.map(|i| &b[i][..b[i].len().min(60)]),
        );
        // Only whole, verified packets are merged.
        for (p, (_, merged)) in ins.iter().zip(&outs) {
            if *merged {
                let pkt = flow(p)
                    .and_then(|f| candidate(p, f, true))
                    .expect("a merged packet is a candidate");
                assert!(checksum_ok(p, &pkt), "a merged packet had a bad checksum");
            }
        }
    }
}
