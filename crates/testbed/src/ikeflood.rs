//! An IKE_SA_INIT flood for denial-of-service tests: requests claiming one address (the
//! configured peer's), from many source ports, with fresh SPIs and nonces, some with a
//! key-exchange payload of the right length for the group (random octets) and some
//! malformed (a 1-octet KE). Bounded in rate and time; run inside the test's namespace.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use ike::iana::{DhId, ExchangeType, PayloadType, ProtocolId, TransformType};
use ike::wire::{Flags, Header, KePayload, Message, Payload, Proposal, SaPayload, Transform};

use crate::{in_netns, Netns};

/// What to send.
#[derive(Clone, Debug)]
pub struct Flood {
    /// The responder's IKE address (port 500).
    pub target: SocketAddr,
    /// The address the requests claim (must be configured in the namespace).
    pub source: IpAddr,
    /// Requests per second, and for how long.
    pub rate: u32,
    pub duration: Duration,
    /// Key-exchange group offered (and the length of the well-formed KE payloads).
    pub group: DhId,
    /// Every `malformed_every`-th request carries a 1-octet KE (0 = none).
    pub malformed_every: u32,
}

/// What was sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct FloodReport {
    pub sent: u64,
    pub send_errors: u64,
    pub elapsed: Duration,
}

/// Source ports the flood rotates through.
const SOCKETS: usize = 64;

/// Octets of a public value of `group` (RFC 7296 §3.4, RFC 5903 §7, RFC 8031).
fn ke_len(group: DhId) -> usize {
    match group.0 {
        14 => 256,
        19 => 64,
        20 => 96,
        31 => 32,
        _ => 32,
    }
}

/// xorshift64*: cheap, deterministic per seed, plenty for SPIs and nonces here.
pub(crate) struct Rand(pub(crate) u64);

impl Rand {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n.div_ceil(8))
            .flat_map(|_| self.next().to_be_bytes())
            .take(n)
            .collect()
    }
}

/// HDR, SAi1, KEi, Ni --> with AES-GCM-16-128 / PRF-HMAC-SHA2-256 / `group`.
pub fn init_request(group: DhId, ke: Vec<u8>, nonce: Vec<u8>, spi_i: u64) -> Vec<u8> {
    let encr = Transform::with_key_length(TransformType::ENCR, 20, 128);
    let sa = SaPayload {
        proposals: vec![Proposal {
            num: 1,
            protocol: ProtocolId::IKE,
            spi: vec![],
            transforms: vec![
                encr,
                Transform::new(TransformType::PRF, 5),
                Transform::new(TransformType::KE, group.0),
            ],
        }],
    };
    Message {
        header: Header {
            spi_i,
            spi_r: 0,
            next_payload: PayloadType::NONE,
            version: Header::VERSION_2_0,
            exchange: ExchangeType::IKE_SA_INIT,
            flags: Flags(Flags::INITIATOR),
            message_id: 0,
            length: 0,
        },
        payloads: vec![
            Payload::Sa(sa),
            Payload::Ke(KePayload {
                group,
                reserved: 0,
                data: ke,
            }),
            Payload::Nonce(nonce),
        ],
    }
    .encode()
}

/// Runs the flood from inside `ns` until `duration` has passed; blocks.
pub fn run(ns: &Netns, f: Flood) -> Result<FloodReport, String> {
    in_netns(ns, move || {
        let socks: Vec<UdpSocket> = (0..SOCKETS)
            .map(|_| UdpSocket::bind(SocketAddr::new(f.source, 0)))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bind {}: {e}", f.source))?;
        for s in &socks {
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
        }
        let mut rng = Rand(0x9e37_79b9_7f4a_7c15 ^ u64::from(f.rate));
        let mut report = FloodReport::default();
        let start = Instant::now();
        let mut sink = [0u8; 2048];
        while start.elapsed() < f.duration {
            // Send what the rate allows by now, then sleep a millisecond.
            let due = (start.elapsed().as_secs_f64() * f64::from(f.rate)) as u64;
            while report.sent < due {
                let n = report.sent;
                let malformed = f.malformed_every != 0 && n % u64::from(f.malformed_every) == 0;
                let ke = if malformed {
                    vec![0x42]
                } else {
                    rng.bytes(ke_len(f.group))
                };
                let msg = init_request(f.group, ke, rng.bytes(32), rng.next() | 1);
                let sock = &socks[(n % SOCKETS as u64) as usize];
                if sock.send_to(&msg, f.target).is_err() {
                    report.send_errors += 1;
                }
                report.sent += 1;
            }
            // Drain answers so socket buffers never stall the sender.
            for s in &socks {
                while s.recv_from(&mut sink).is_ok() {}
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        report.elapsed = start.elapsed();
        Ok(report)
    })
    .join()
    .map_err(|_| "flood thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_decode_as_ike_sa_init_with_the_group_and_lengths_asked_for() {
        let msg = init_request(DhId(19), vec![7; 64], vec![1; 32], 0x1122);
        let m = Message::decode(&msg).unwrap();
        assert_eq!(m.header.exchange, ExchangeType::IKE_SA_INIT);
        assert!(m.header.flags.initiator());
        let Some(Payload::Ke(ke)) = m.find(PayloadType::KE) else {
            panic!("no KE");
        };
        assert_eq!((ke.group, ke.data.len()), (DhId(19), 64));
        let mut r = Rand(1);
        assert_eq!(r.bytes(13).len(), 13);
        assert_ne!(r.next(), r.next());
    }
}
