//! A minimal reader for the classic pcap files `tcpdump -w` writes on a veth (Ethernet
//! link type): IPv4/IPv6 UDP and TCP segments with their payloads, enough to turn a
//! capture of real peers into fuzz seeds or packets to replay. Nothing else is parsed.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::{wait_until, Netns, Proc, TestDir};

const LINKTYPE_ETHERNET: u32 = 1;
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86DD;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    /// A TCP segment with its sequence number and whether SYN is set.
    Tcp {
        seq: u32,
        syn: bool,
    },
}

/// One UDP datagram or TCP segment from the capture.
#[derive(Clone, Debug)]
pub struct Segment {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    pub payload: Vec<u8>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads every UDP/TCP segment of a pcap file, in capture order.
pub fn read(path: &Path) -> Result<Vec<Segment>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&data)
}

/// Parses pcap bytes (either byte order, micro- or nanosecond magic).
pub fn parse(data: &[u8]) -> Result<Vec<Segment>, String> {
    let magic = data.get(..4).ok_or("short pcap header")?;
    let le = match magic {
        [0xD4, 0xC3, 0xB2, 0xA1] | [0x4D, 0x3C, 0xB2, 0xA1] => true,
        [0xA1, 0xB2, 0xC3, 0xD4] | [0xA1, 0xB2, 0x3C, 0x4D] => false,
        _ => return Err("not a pcap file".into()),
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    };
    let link = u32_at(20).ok_or("short pcap header")?;
    if link != LINKTYPE_ETHERNET {
        return Err(format!("link type {link}, only Ethernet is read"));
    }
    let mut out = Vec::new();
    let mut at = 24;
    // A record still being written (tcpdump -U while it runs) ends the list.
    while let Some(incl) = u32_at(at + 8) {
        let Some(frame) = data.get(at + 16..at + 16 + incl as usize) else {
            break;
        };
        at += 16 + incl as usize;
        if let Some(s) = ethernet(frame) {
            out.push(s);
        }
    }
    Ok(out)
}

fn ethernet(f: &[u8]) -> Option<Segment> {
    let ip = f.get(14..)?;
    match be16(f, 12)? {
        ETH_IPV4 => {
            let ihl = usize::from(ip.first()? & 0x0F) * 4;
            let total = usize::from(be16(ip, 2)?);
            let src: [u8; 4] = ip.get(12..16)?.try_into().ok()?;
            let dst: [u8; 4] = ip.get(16..20)?.try_into().ok()?;
            // Fragments are not reassembled: the tests keep datagrams below the MTU.
            if be16(ip, 6)? & 0x3FFF != 0 {
                return None;
            }
            transport(
                *ip.get(9)?,
                IpAddr::V4(Ipv4Addr::from(src)),
                IpAddr::V4(Ipv4Addr::from(dst)),
                ip.get(ihl..total)?,
            )
        }
        ETH_IPV6 => {
            let len = usize::from(be16(ip, 4)?);
            let src: [u8; 16] = ip.get(8..24)?.try_into().ok()?;
            let dst: [u8; 16] = ip.get(24..40)?.try_into().ok()?;
            transport(
                *ip.get(6)?,
                IpAddr::V6(Ipv6Addr::from(src)),
                IpAddr::V6(Ipv6Addr::from(dst)),
                ip.get(40..40 + len)?,
            )
        }
        _ => None,
    }
}

fn transport(proto: u8, src: IpAddr, dst: IpAddr, l4: &[u8]) -> Option<Segment> {
    let (sport, dport) = (be16(l4, 0)?, be16(l4, 2)?);
    let (transport, payload) = match proto {
        PROTO_UDP => (Transport::Udp, l4.get(8..)?),
        PROTO_TCP => {
            let off = usize::from(l4.get(12)? >> 4) * 4;
            let syn = l4.get(13)? & 0x02 != 0;
            (
                Transport::Tcp {
                    seq: be32(l4, 4)?,
                    syn,
                },
                l4.get(off..)?,
            )
        }
        _ => return None,
    };
    Some(Segment {
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        transport,
        payload: payload.to_vec(),
    })
}

/// The byte stream of each TCP direction (src, dst) of each connection, in order of
/// first appearance: segments ordered by sequence number, retransmissions dropped. A SYN
/// starts a new connection, so a reused port pair does not mix two streams.
pub fn tcp_streams(segments: &[Segment]) -> Vec<((SocketAddr, SocketAddr), Vec<u8>)> {
    type Flow = ((SocketAddr, SocketAddr), usize);
    let mut order: Vec<Flow> = Vec::new();
    let mut generation: BTreeMap<(SocketAddr, SocketAddr), usize> = BTreeMap::new();
    let mut by_flow: BTreeMap<Flow, BTreeMap<u32, Vec<u8>>> = BTreeMap::new();
    for s in segments {
        let Transport::Tcp { seq, syn } = s.transport else {
            continue;
        };
        let pair = (s.src, s.dst);
        if syn {
            *generation.entry(pair).or_default() += 1;
        }
        if s.payload.is_empty() {
            continue;
        }
        let key = (pair, generation.get(&pair).copied().unwrap_or(0));
        if !by_flow.contains_key(&key) {
            order.push(key);
        }
        by_flow
            .entry(key)
            .or_default()
            .entry(seq)
            .or_insert_with(|| s.payload.clone());
    }
    order
        .into_iter()
        .map(|k| {
            let segs = &by_flow[&k];
            let first = *segs.keys().next().expect("flow has a segment");
            let mut stream = Vec::new();
            for (&seq, p) in segs {
                // Relative offsets (wrapping) keep a stream that crosses 2^32 in order
                // only if it starts low; lab captures are far shorter than that.
                let off = seq.wrapping_sub(first) as usize;
                if off == stream.len() {
                    stream.extend_from_slice(p);
                } else if off < stream.len() && off + p.len() > stream.len() {
                    stream.extend_from_slice(&p[stream.len() - off..]);
                }
            }
            (k.0, stream)
        })
        .collect()
}

/// `tcpdump -w` on one interface of a namespace, for the lifetime of the guard.
#[derive(Debug)]
pub struct Capture {
    proc: Proc,
    file: std::path::PathBuf,
    _dir: TestDir,
}

impl Capture {
    /// Starts tcpdump (full snap length, unbuffered) and waits until it listens.
    pub fn start(ns: &Netns, iface: &str) -> Result<Capture, String> {
        let dir = TestDir::new("pcap");
        let file = dir.join("capture.pcap");
        let log = dir.join("tcpdump.log");
        let f = file.to_str().ok_or("non-UTF-8 temp dir")?;
        let proc = ns.spawn(
            &["tcpdump", "-n", "-U", "-s", "0", "-i", iface, "-w", f],
            &log,
        );
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("listening on")
                .then_some(())
                .ok_or_else(|| format!("tcpdump not listening yet: {text}"))
        })?;
        Ok(Capture {
            proc,
            file,
            _dir: dir,
        })
    }

    /// Polls the file (tcpdump -U writes each packet as it goes) until `done` holds for
    /// what has been captured so far; tcpdump may not have read everything the kernel
    /// already delivered when it is stopped.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&[Segment]) -> bool,
    ) -> Result<(), String> {
        wait_until(timeout, Duration::from_millis(50), || {
            let segs = read(&self.file)?;
            done(&segs)
                .then_some(())
                .ok_or_else(|| format!("capture has no {what} yet ({} segments)", segs.len()))
        })
    }

    /// Stops tcpdump (SIGINT flushes the file) and reads what it captured.
    pub fn finish(self) -> Result<Vec<Segment>, String> {
        self.proc.signal("INT")?;
        self.proc.wait_exit(Duration::from_secs(10))?;
        read(&self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_v4_udp(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ETH_IPV4.to_be_bytes());
        let total = (20 + 8 + payload.len()) as u16;
        let mut ip = vec![0x45, 0];
        ip.extend_from_slice(&total.to_be_bytes());
        ip.extend_from_slice(&[0, 0, 0x40, 0, 64, PROTO_UDP, 0, 0]);
        ip.extend_from_slice(&[192, 0, 2, 1, 192, 0, 2, 2]);
        ip.extend_from_slice(&500u16.to_be_bytes());
        ip.extend_from_slice(&4500u16.to_be_bytes());
        ip.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(payload);
        f.extend_from_slice(&ip);
        f
    }

    #[test]
    fn reads_a_udp_datagram_and_ignores_ethernet_padding() {
        let mut file = vec![0xD4, 0xC3, 0xB2, 0xA1, 2, 0, 4, 0];
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&65535u32.to_le_bytes());
        file.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        let mut frame = frame_v4_udp(b"hi");
        frame.extend_from_slice(&[0xEE; 16]);
        file.extend_from_slice(&[0; 8]);
        file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        file.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        file.extend_from_slice(&frame);
        let segs = parse(&file).unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].payload, b"hi");
        assert_eq!(segs[0].src, "192.0.2.1:500".parse().unwrap());
        assert_eq!(segs[0].dst, "192.0.2.2:4500".parse().unwrap());
    }

    #[test]
    fn tcp_stream_orders_segments_and_drops_retransmissions() {
        let a: SocketAddr = "192.0.2.1:179".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:40000".parse().unwrap();
        let seg = |seq, p: &[u8]| Segment {
            src: a,
            dst: b,
            transport: Transport::Tcp { seq, syn: false },
            payload: p.to_vec(),
        };
        let syn = |seq| Segment {
            transport: Transport::Tcp { seq, syn: true },
            ..seg(seq, b"")
        };
        let segs = [
            syn(99),
            seg(100, b"abc"),
            seg(106, b"ghi"),
            seg(103, b"def"),
            seg(100, b"abc"),
            // The same port pair again: a second connection with a lower ISN.
            syn(9),
            seg(10, b"xyz"),
        ];
        let streams = tcp_streams(&segs);
        assert_eq!(
            streams,
            vec![((a, b), b"abcdefghi".to_vec()), ((a, b), b"xyz".to_vec())]
        );
    }
}
