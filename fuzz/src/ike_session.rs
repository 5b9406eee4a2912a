//! A responder `ike::sa::Session` (PSK, deterministic randomness, virtual clock) fed a
//! sequence of datagrams (RFC 7296 §1–§2). A real initiator `Session` talks to it over a
//! wire the input controls: each step delivers, drops, replays, corrupts or truncates
//! the next honest datagram in either direction, injects input bytes as a datagram
//! from the peer's address, advances the clock, or makes the initiator rekey, check
//! liveness, close or re-initiate. So IKE_SA_INIT, COOKIEs, retransmissions and the
//! exchanges of an established SA are all reached. Invariants: no panic; at most one
//! established IKE SA per SPI pair; after `handle_timeout(now)`, `poll_timeout()` is
//! never in the past.

use std::collections::{HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ike::proposal::{parse, Protocol};
use ike::sa::{Datagram, Session, SessionConfig};
use ike::wire::{IdPayload, TrafficSelector};
use ike::Rng;
use zeroize::Zeroizing;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

/// splitmix64, as the in-memory tests use.
struct TestRng(u64);

impl Rng for TestRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf.iter_mut() {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            *b = (z ^ (z >> 31)) as u8;
        }
    }
}

fn config(local: &str, remote: &str, initiate: bool, sel: u8) -> SessionConfig {
    let ike = ["aes256gcm16-prfsha384-x25519", "aes128-sha256-ecp256"][usize::from(sel & 1)];
    let esp = ["aes256gcm16", "aes128-sha256"][usize::from((sel >> 1) & 1)];
    SessionConfig {
        name: local.into(),
        local_id: IdPayload::fqdn(local),
        remote_id: IdPayload::fqdn(remote),
        psk: Zeroizing::new(b"fuzz-pre-shared-key".to_vec()),
        cert: None,
        ike: vec![parse(ike, Protocol::Ike).expect("ike proposal")],
        esp: vec![parse(esp, Protocol::Esp).expect("esp proposal")],
        local_ts: vec![TrafficSelector::any_v4(), TrafficSelector::any_v6()],
        remote_ts: vec![TrafficSelector::any_v4(), TrafficSelector::any_v6()],
        initiate,
        force_encap: sel & 4 != 0,
        ike_lifetime: Duration::from_secs(600),
        child_lifetime: Duration::from_secs(300),
        dpd: (sel & 8 != 0).then_some(Duration::from_secs(30)),
        dpd_restart: sel & 16 != 0,
        // Small enough that IKE_AUTH is fragmented when asked (RFC 7383).
        fragment_size: if sel & 32 != 0 { 300 } else { 1280 },
        retransmit_timeout: Duration::from_secs(2),
        retransmit_tries: 3,
        select_by_identity: sel & 64 != 0,
        mobike: sel & 128 != 0,
        esp_spi_lane: Some(ike::sa::SpiLane { lane: 1, lanes: 4 }),
        // RFC 9611 per-resource CHILD SAs, on or off per end, tied to bits already used:
        // the initiator wants three when bit 1 is set, the responder takes them with bit 2
        // and has five of its own (so it tops up two) when bit 5 is set too.
        resources: if initiate {
            [0, 3][usize::from((sel >> 1) & 1)]
        } else {
            [0, 2, 0, 5][usize::from((sel >> 2) & 1 | (sel >> 4) & 2)]
        },
    }
}

fn mirrored(d: Datagram) -> Datagram {
    Datagram {
        local: d.remote,
        remote: d.local,
        data: d.data,
    }
}

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8().unwrap_or(0)) << 8 | u16::from(self.u8().unwrap_or(0))
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a.to_vec()
    }
}

struct World {
    init: Session,
    resp: Session,
    now: Instant,
    to_resp: VecDeque<Datagram>,
    to_init: VecDeque<Datagram>,
    /// What the initiator sent, for replays.
    sent: Vec<Datagram>,
}

impl World {
    fn drain(&mut self) {
        while let Some(d) = self.init.poll_transmit() {
            self.sent.push(d.clone());
            if self.sent.len() > 64 {
                self.sent.remove(0);
            }
            self.to_resp.push_back(d);
        }
        while let Some(d) = self.resp.poll_transmit() {
            self.to_init.push_back(d);
        }
        while self.init.poll_event().is_some() {}
        // No other session expects an unexpected identity: refuse it, as the daemon does.
        while let Some(e) = self.resp.poll_event() {
            if let ike::sa::Event::PeerIdentity { spi_i, spi_r, .. } = e {
                let mut admission = ike::Admission::new();
                self.resp
                    .refuse_identity(self.now, spi_i, spi_r, "fuzz".into(), &mut admission);
            }
        }
        self.check();
    }

    /// The initiator (`init`) or the responder deletes its CHILD SA number `pick`.
    fn delete_child(&mut self, init: bool, pick: u8) {
        let s = if init { &mut self.init } else { &mut self.resp };
        let children = s.status(self.now).children;
        if let Some((c, _)) = children.get(usize::from(pick) % children.len().max(1)) {
            s.delete_child(self.now, c.spi_in);
        }
    }

    fn timers(&mut self) {
        self.init.handle_timeout(self.now);
        self.resp.handle_timeout(self.now);
        for s in [&self.init, &self.resp] {
            if let Some(t) = s.poll_timeout() {
                assert!(
                    t >= self.now,
                    "deadline {:?} in the past: {:#?}",
                    self.now - t,
                    s.status(self.now)
                );
            }
        }
        self.drain();
    }

    fn check(&self) {
        for s in [&self.init, &self.resp] {
            // Resource numbers stay below the responder's limit (RFC 9611 TS_MAX_QUEUE).
            for (c, _) in s.status(self.now).children {
                assert!(
                    c.resource as usize <= ike::limits::MAX_RESOURCE_SAS,
                    "resource {} out of range",
                    c.resource
                );
            }
            let mut seen = HashSet::new();
            for sa in s.status(self.now).ike_sas {
                if sa.state == "established" {
                    assert!(
                        seen.insert((sa.spi_i, sa.spi_r)),
                        "two established IKE SAs {:016x}/{:016x}",
                        sa.spi_i,
                        sa.spi_r
                    );
                }
            }
        }
    }

    /// Delivers every honest datagram both ways until quiet (bounded).
    fn settle(&mut self) {
        for _ in 0..32 {
            if self.to_resp.is_empty() && self.to_init.is_empty() {
                return;
            }
            while let Some(d) = self.to_resp.pop_front() {
                self.resp.handle_datagram(self.now, mirrored(d));
            }
            while let Some(d) = self.to_init.pop_front() {
                self.init.handle_datagram(self.now, mirrored(d));
            }
            self.drain();
        }
    }
}

pub fn ike_session(data: &[u8]) {
    let mut input = Input(data);
    let sel = input.u8().unwrap_or(0);
    let start = Instant::now();
    let mut w = World {
        init: Session::new(
            config("initiator.fuzz", "responder.fuzz", true, sel),
            A,
            B,
            Box::new(TestRng(1)),
            start,
        ),
        resp: Session::new(
            config("responder.fuzz", "initiator.fuzz", false, sel),
            B,
            A,
            Box::new(TestRng(2)),
            start,
        ),
        now: start,
        to_resp: VecDeque::new(),
        to_init: VecDeque::new(),
        sent: Vec::new(),
    };
    w.timers();
    // The top bits: establish honestly first, so the steps below act on an established SA.
    if sel & 0x40 != 0 {
        w.settle();
    }
    let mut steps = 0;
    while let Some(op) = input.u8() {
        steps += 1;
        if steps > 200 {
            break;
        }
        if std::env::var_os("FUZZ_TRACE").is_some() {
            eprintln!(
                "t={:?} op={} resp={:?}",
                w.now - start,
                op % 16,
                w.resp
                    .status(w.now)
                    .ike_sas
                    .iter()
                    .map(|s| (s.state, s.spi_r & 0xffff, s.rekeys))
                    .collect::<Vec<_>>()
            );
        }
        match op % 16 {
            // Deliver the next honest datagram.
            0..=3 => {
                if let Some(d) = w.to_resp.pop_front() {
                    w.resp.handle_datagram(w.now, mirrored(d));
                }
            }
            4 | 5 => {
                if let Some(d) = w.to_init.pop_front() {
                    w.init.handle_datagram(w.now, mirrored(d));
                }
            }
            // Drop it.
            6 => {
                w.to_resp.pop_front();
            }
            7 => {
                w.to_init.pop_front();
            }
            // Replay something the initiator sent, possibly modified.
            8 => {
                if !w.sent.is_empty() {
                    let i = usize::from(input.u8().unwrap_or(0)) % w.sent.len();
                    let mut d = w.sent[i].clone();
                    let how = input.u8().unwrap_or(0);
                    let at = usize::from(input.u16());
                    if !d.data.is_empty() {
                        match how % 4 {
                            0 => {}
                            1 => {
                                let n = d.data.len();
                                d.data[at % n] ^= input.u8().unwrap_or(1);
                            }
                            2 => d.data.truncate(at % d.data.len()),
                            _ => {
                                let n = d.data.len().min(28);
                                if n > 0 {
                                    d.data[at % n] = input.u8().unwrap_or(0);
                                }
                            }
                        }
                    }
                    w.resp.handle_datagram(w.now, mirrored(d));
                }
            }
            // Input bytes as a datagram from the peer's address (any source port).
            9 | 10 => {
                let len = usize::from(input.u16() % 2048);
                let port = [500, 4500, input.u16()][usize::from(op >> 4) % 3];
                let data = input.bytes(len);
                w.resp.handle_datagram(
                    w.now,
                    Datagram {
                        local: SocketAddr::new(B, if op & 0x80 != 0 { 4500 } else { 500 }),
                        remote: SocketAddr::new(A, port),
                        data,
                    },
                );
            }
            // Time passes.
            11 => {
                let secs = u64::from(input.u16() % 4096);
                w.now += Duration::from_millis(secs * 100);
                w.timers();
            }
            12 => {
                if let Some(t) = [w.init.poll_timeout(), w.resp.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                {
                    w.now = w.now.max(t);
                }
                w.timers();
            }
            // The initiator acts.
            13 => match input.u8().unwrap_or(0) % 7 {
                0 => {
                    w.init.rekey_ike(w.now);
                }
                1 => {
                    w.init.rekey_child(w.now);
                }
                2 => {
                    w.init.send_liveness(w.now);
                }
                3 => w.init.close(w.now),
                4 => w.init.initiate(w.now),
                5 => {
                    w.resp.rekey_child(w.now);
                }
                // Deletes a CHILD SA outside a rekey: the responder creates it again.
                _ => {
                    let pick = input.u8().unwrap_or(0);
                    w.delete_child(true, pick);
                }
            },
            // The responder acts.
            14 => match input.u8().unwrap_or(0) % 5 {
                0 => {
                    w.resp.rekey_ike(w.now);
                }
                1 => {
                    w.resp.send_liveness(w.now);
                }
                2 => w.resp.close(w.now),
                3 => w.resp.note_inbound_traffic(w.now),
                _ => {
                    let pick = input.u8().unwrap_or(0);
                    w.delete_child(false, pick);
                }
            },
            _ => w.settle(),
        }
        w.drain();
    }
    w.settle();
    w.timers();
}
