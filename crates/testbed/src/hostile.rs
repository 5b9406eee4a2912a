//! A hostile sender for system-level robustness tests (issue 9): mutated IKE messages to
//! UDP 500 and, behind the non-ESP marker, 4500 (bit flips, truncations, length fields
//! that lie, random payload chains, replays of captured messages with changes) and
//! mutated ESP to 4500 (a live SPI with garbage, random SPIs, truncated headers, replays
//! of sniffed packets, as captured or with a flipped bit), all claiming the peer's
//! address. Bounded in rate and time; run from a namespace that holds that address.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::ikeflood::Rand;
use crate::{in_netns, Netns};

/// The kinds of packet sent, in turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    IkeBitFlip,
    IkeTruncated,
    IkeLengthLie,
    IkeRandomChain,
    IkeReplayChanged,
    /// One of the IKE mutations above, on 4500 behind the non-ESP marker.
    IkeOn4500,
    EspLiveSpiGarbage,
    EspRandomSpi,
    EspTruncatedHeader,
    EspReplay,
}

pub const KINDS: [Kind; 10] = [
    Kind::IkeBitFlip,
    Kind::IkeTruncated,
    Kind::IkeLengthLie,
    Kind::IkeRandomChain,
    Kind::IkeReplayChanged,
    Kind::IkeOn4500,
    Kind::EspLiveSpiGarbage,
    Kind::EspRandomSpi,
    Kind::EspTruncatedHeader,
    Kind::EspReplay,
];

/// What to send.
#[derive(Clone, Debug)]
pub struct Hostile {
    /// The victim daemon's address (ports 500 and 4500).
    pub target: IpAddr,
    /// The address the packets claim (the victim's peer; must exist in the namespace).
    pub source: IpAddr,
    /// Packets per second, and for how long.
    pub rate: u32,
    pub duration: Duration,
    /// Real IKE messages (no non-ESP marker) to mutate and replay.
    pub ike_samples: Vec<Vec<u8>>,
    /// Real ESP packets for the victim's inbound SA (UDP payloads on 4500).
    pub esp_samples: Vec<Vec<u8>>,
    /// SPIs of the victim's installed inbound SAs.
    pub live_spis: Vec<u32>,
    pub seed: u64,
}

/// What was sent, per kind (in [`KINDS`] order).
#[derive(Clone, Debug, Default)]
pub struct HostileReport {
    pub sent: [u64; KINDS.len()],
    pub send_errors: u64,
    pub elapsed: Duration,
}

impl HostileReport {
    pub fn total(&self) -> u64 {
        self.sent.iter().sum()
    }
}

const NON_ESP_MARKER: [u8; 4] = [0; 4];
/// RFC 7296 §3.1: the IKE header is 28 octets; its length field is at offset 24.
const IKE_HEADER: usize = 28;

fn pick<'a>(rng: &mut Rand, v: &'a [Vec<u8>]) -> Option<&'a [u8]> {
    (!v.is_empty()).then(|| v[(rng.next() % v.len() as u64) as usize].as_slice())
}

fn flip_bits(rng: &mut Rand, mut p: Vec<u8>, max: u64) -> Vec<u8> {
    if !p.is_empty() {
        for _ in 0..=rng.next() % max {
            let bit = (rng.next() % (p.len() as u64 * 8)) as usize;
            p[bit / 8] ^= 1 << (bit % 8);
        }
    }
    p
}

/// HDR with random SPIs and a chain of generic payloads of random types and sizes.
fn random_chain(rng: &mut Rand) -> Vec<u8> {
    let mut body = Vec::new();
    let count = 1 + rng.next() % 6;
    let types: Vec<u8> = (0..count)
        .map(|_| match rng.next() % 4 {
            0 => (rng.next() % 256) as u8,
            _ => 33 + (rng.next() % 21) as u8,
        })
        .collect();
    for i in 0..types.len() {
        let next = types.get(i + 1).copied().unwrap_or(0);
        let n = (rng.next() % 64) as usize;
        let data = rng.bytes(n);
        let mut len = (4 + data.len()) as u16;
        if rng.next().is_multiple_of(4) {
            len = (rng.next() % 0x1_0000) as u16;
        }
        let critical = if rng.next().is_multiple_of(2) {
            0x80
        } else {
            0
        };
        body.extend_from_slice(&[next, critical]);
        body.extend_from_slice(&len.to_be_bytes());
        body.extend_from_slice(&data);
    }
    let mut m = Vec::with_capacity(IKE_HEADER + body.len());
    m.extend_from_slice(&rng.next().to_be_bytes());
    let spi_r = if rng.next().is_multiple_of(2) {
        0
    } else {
        rng.next()
    };
    m.extend_from_slice(&spi_r.to_be_bytes());
    let exchange = 34 + (rng.next() % 4) as u8;
    let flags = [0x08, 0x20, 0x28, 0x00][(rng.next() % 4) as usize];
    m.extend_from_slice(&[types[0], 0x20, exchange, flags]);
    m.extend_from_slice(&((rng.next() % 4) as u32).to_be_bytes());
    m.extend_from_slice(&((IKE_HEADER + body.len()) as u32).to_be_bytes());
    m.extend_from_slice(&body);
    m
}

/// One mutated IKE message (without marker) of `kind`.
fn ike_packet(kind: Kind, rng: &mut Rand, samples: &[Vec<u8>]) -> Vec<u8> {
    let Some(sample) = pick(rng, samples) else {
        return random_chain(rng);
    };
    let mut p = sample.to_vec();
    match kind {
        Kind::IkeBitFlip => flip_bits(rng, p, 8),
        Kind::IkeTruncated => {
            p.truncate((rng.next() % p.len() as u64) as usize);
            p
        }
        Kind::IkeLengthLie => {
            if p.len() >= IKE_HEADER + 4 && rng.next().is_multiple_of(2) {
                // The first payload's length (generic payload header, §3.2).
                let lie = (rng.next() % 0x1_0000) as u16;
                p[IKE_HEADER + 2..IKE_HEADER + 4].copy_from_slice(&lie.to_be_bytes());
            } else if p.len() >= IKE_HEADER {
                let lie = match rng.next() % 3 {
                    0 => 0,
                    1 => u32::MAX,
                    _ => (rng.next() % 0x1_0000) as u32,
                };
                p[24..28].copy_from_slice(&lie.to_be_bytes());
            }
            p
        }
        Kind::IkeRandomChain => random_chain(rng),
        _ => {
            // A replay, verbatim or with the responder SPI, message ID or flags changed.
            if p.len() >= IKE_HEADER {
                match rng.next() % 4 {
                    0 => {}
                    1 => p[8..16].copy_from_slice(&rng.next().to_be_bytes()),
                    2 => p[20..24].copy_from_slice(&((rng.next() % 8) as u32).to_be_bytes()),
                    _ => p[19] ^= 0x20,
                }
            }
            p
        }
    }
}

/// One packet of `kind` and the port it goes to.
pub(crate) fn packet(kind: Kind, rng: &mut Rand, h: &Hostile) -> (u16, Vec<u8>) {
    match kind {
        Kind::IkeOn4500 => {
            let inner = KINDS[(rng.next() % 5) as usize];
            let mut p = NON_ESP_MARKER.to_vec();
            p.extend_from_slice(&ike_packet(inner, rng, &h.ike_samples));
            (4500, p)
        }
        Kind::EspLiveSpiGarbage => {
            let spi = if h.live_spis.is_empty() {
                (rng.next() as u32) | 1
            } else {
                h.live_spis[(rng.next() % h.live_spis.len() as u64) as usize]
            };
            let mut p = spi.to_be_bytes().to_vec();
            // A sequence number ahead of the peer's, so the ICV decides (RFC 4303 §3.4.3).
            p.extend_from_slice(&(0x4000_0000 + (rng.next() % 0x1000) as u32).to_be_bytes());
            let n = 16 + (rng.next() % 200) as usize;
            p.extend_from_slice(&rng.bytes(n));
            (4500, p)
        }
        Kind::EspRandomSpi => {
            let mut p = ((rng.next() as u32) | 0x100).to_be_bytes().to_vec();
            let n = 8 + (rng.next() % 200) as usize;
            p.extend_from_slice(&rng.bytes(n));
            (4500, p)
        }
        Kind::EspTruncatedHeader => {
            let n = 2 + (rng.next() % 7) as usize;
            let mut p = rng.bytes(n);
            // Never the non-ESP marker or a keepalive: a truncated ESP header.
            p[0] |= 0x01;
            (4500, p)
        }
        Kind::EspReplay => match pick(rng, &h.esp_samples) {
            Some(s) if rng.next().is_multiple_of(2) => (4500, s.to_vec()),
            Some(s) => {
                let mut p = s.to_vec();
                // Past the SPI and sequence number: the ciphertext or ICV.
                if p.len() > 8 {
                    let at = 8 + (rng.next() % (p.len() as u64 - 8)) as usize;
                    p[at] ^= 1 << (rng.next() % 8);
                }
                (4500, p)
            }
            None => (4500, rng.bytes(40)),
        },
        ike => (500, ike_packet(ike, rng, &h.ike_samples)),
    }
}

/// Sends from inside `ns` until `duration` has passed; blocks.
pub fn run(ns: &Netns, h: Hostile) -> Result<HostileReport, String> {
    in_netns(ns, move || {
        // Several source ports per destination port, as a real attacker would.
        let socks: Vec<UdpSocket> = (0..16)
            .map(|_| UdpSocket::bind(SocketAddr::new(h.source, 0)))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bind {}: {e}", h.source))?;
        for s in &socks {
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
        }
        let mut rng = Rand(h.seed | 1);
        let mut report = HostileReport::default();
        let start = Instant::now();
        let mut sink = [0u8; 2048];
        let mut n = 0u64;
        while start.elapsed() < h.duration {
            let due = (start.elapsed().as_secs_f64() * f64::from(h.rate)) as u64;
            while n < due {
                let k = (n % KINDS.len() as u64) as usize;
                let (port, p) = packet(KINDS[k], &mut rng, &h);
                let sock = &socks[(n % socks.len() as u64) as usize];
                if sock.send_to(&p, SocketAddr::new(h.target, port)).is_err() {
                    report.send_errors += 1;
                }
                report.sent[k] += 1;
                n += 1;
            }
            for s in &socks {
                while s.recv_from(&mut sink).is_ok() {}
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        report.elapsed = start.elapsed();
        Ok(report)
    })
    .join()
    .map_err(|_| "hostile sender thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile() -> Hostile {
        Hostile {
            target: "192.0.2.1".parse().unwrap(),
            source: "192.0.2.2".parse().unwrap(),
            rate: 1,
            duration: Duration::ZERO,
            ike_samples: vec![ikeflood_sample()],
            esp_samples: vec![vec![0, 0, 0x10, 0x01, 0, 0, 0, 5, 1, 2, 3, 4, 5, 6, 7, 8]],
            live_spis: vec![0xC0FF_EE01],
            seed: 7,
        }
    }

    fn ikeflood_sample() -> Vec<u8> {
        crate::ikeflood::init_request(ike::iana::DhId(31), vec![9; 32], vec![1; 32], 0x1234)
    }

    /// Each kind goes where it claims: IKE to 500 unmarked, IKE on 4500 behind the
    /// marker, ESP on 4500 never mistaken for IKE or a keepalive; mutations change the
    /// sample.
    #[test]
    fn packets_have_the_shape_of_their_kind() {
        let h = hostile();
        let mut rng = Rand(3);
        for round in 0..200 {
            for kind in KINDS {
                let (port, p) = packet(kind, &mut rng, &h);
                match kind {
                    Kind::IkeOn4500 => {
                        assert_eq!(port, 4500);
                        assert!(p.starts_with(&NON_ESP_MARKER));
                    }
                    Kind::EspLiveSpiGarbage => {
                        assert_eq!(port, 4500);
                        assert_eq!(p[..4], 0xC0FF_EE01u32.to_be_bytes());
                    }
                    Kind::EspRandomSpi | Kind::EspTruncatedHeader | Kind::EspReplay => {
                        assert_eq!(port, 4500);
                        assert!(
                            !p.starts_with(&NON_ESP_MARKER) && p != [0xFF],
                            "{kind:?} {p:?}"
                        );
                        if kind == Kind::EspTruncatedHeader {
                            assert!(p.len() < 8 + 1);
                        }
                    }
                    Kind::IkeBitFlip | Kind::IkeTruncated | Kind::IkeLengthLie => {
                        assert_eq!(port, 500);
                        assert_ne!(p, h.ike_samples[0], "{kind:?} round {round}");
                    }
                    Kind::IkeRandomChain | Kind::IkeReplayChanged => assert_eq!(port, 500),
                }
            }
        }
    }
}
