//! Two in-memory peers on a virtual clock with deterministic randomness: every exchange
//! and every error path of the session, without sockets.

use super::*;
use crate::iana::NotifyType;
use crate::proposal::{parse, Protocol};
use crate::wire::{Header, IdPayload, TrafficSelector};
use std::net::{IpAddr, Ipv4Addr};

mod admission;
mod cert_auth;
mod child_create;
mod identity;
mod ike_auth;
mod ike_init;
mod ike_rekey;
mod ike_sa;
mod informational;
mod mobike;
mod resources;
mod timers;

/// splitmix64: reproducible bytes for SPIs, nonces, IVs and private keys.
pub(super) struct TestRng(u64);

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

pub(super) const A: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
pub(super) const B: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));

pub(super) fn fqdn(s: &str) -> IdPayload {
    IdPayload {
        id_type: crate::iana::IdType::FQDN,
        reserved: [0; 3],
        data: s.as_bytes().to_vec(),
    }
}

pub(super) fn config(
    name: &str,
    local: &str,
    remote: &str,
    ike: &[&str],
    esp: &[&str],
    psk: &str,
    initiate: bool,
) -> SessionConfig {
    SessionConfig {
        name: name.into(),
        local_id: fqdn(local),
        remote_id: fqdn(remote),
        psk: Zeroizing::new(psk.as_bytes().to_vec()),
        cert: None,
        ike: ike
            .iter()
            .map(|s| parse(s, Protocol::Ike).unwrap())
            .collect(),
        esp: esp
            .iter()
            .map(|s| parse(s, Protocol::Esp).unwrap())
            .collect(),
        local_ts: vec![TrafficSelector::any_v4(), TrafficSelector::any_v6()],
        remote_ts: vec![TrafficSelector::any_v4(), TrafficSelector::any_v6()],
        initiate,
        force_encap: true,
        ike_lifetime: Duration::from_secs(4 * 3600),
        child_lifetime: Duration::from_secs(3600),
        dpd: None,
        dpd_restart: true,
        fragment_size: limits::FRAGMENT_SIZE,
        retransmit_timeout: limits::RETRANSMIT_TIMEOUT,
        retransmit_tries: limits::RETRANSMIT_TRIES,
        select_by_identity: false,
        mobike: true,
        esp_spi_lane: None,
        resources: 0,
    }
}

/// A datagram as the receiver sees it: our remote is its local.
pub(super) fn mirrored(d: Datagram) -> Datagram {
    Datagram {
        local: d.remote,
        remote: d.local,
        data: d.data,
    }
}

/// Both peers, a virtual clock and a wire that can drop datagrams.
pub(super) struct Pair {
    a: Session,
    b: Session,
    now: Instant,
    events_a: Vec<Event>,
    events_b: Vec<Event>,
    /// Datagrams from A to B to drop, by sequence number of A's transmissions.
    drop_a: Vec<usize>,
    sent_a: usize,
    /// Requests from B to A are lost (B's answers still arrive).
    lose_b_requests: bool,
    wire_log: Vec<(bool, Datagram)>,
}

impl Pair {
    fn new(a: SessionConfig, b: SessionConfig) -> Pair {
        let now = Instant::now();
        Pair {
            a: Session::new(a, A, B, Box::new(TestRng(1)), now),
            b: Session::new(b, B, A, Box::new(TestRng(2)), now),
            now,
            events_a: vec![],
            events_b: vec![],
            drop_a: vec![],
            sent_a: 0,
            lose_b_requests: false,
            wire_log: vec![],
        }
    }

    /// Delivers datagrams until both sides are quiet; returns how many moved.
    fn run(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let mut progress = false;
            while let Some(d) = self.a.poll_transmit() {
                self.sent_a += 1;
                progress = true;
                self.wire_log.push((true, d.clone()));
                if self.drop_a.contains(&self.sent_a) {
                    continue;
                }
                moved += 1;
                self.b.handle_datagram(self.now, mirrored(d));
            }
            while let Some(d) = self.b.poll_transmit() {
                progress = true;
                self.wire_log.push((false, d.clone()));
                if self.lose_b_requests
                    && Header::decode(&d.data).is_ok_and(|h| !h.flags.response())
                {
                    continue;
                }
                moved += 1;
                self.a.handle_datagram(self.now, mirrored(d));
            }
            while let Some(e) = self.a.poll_event() {
                self.events_a.push(e);
            }
            while let Some(e) = self.b.poll_event() {
                self.events_b.push(e);
            }
            if !progress {
                return moved;
            }
        }
    }

    /// Advances the virtual clock to the next deadline and runs timers.
    fn step_timer(&mut self) -> bool {
        let next = [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) => {
                self.now = self.now.max(t);
                self.a.handle_timeout(self.now);
                self.b.handle_timeout(self.now);
                self.run();
                true
            }
            None => false,
        }
    }

    fn start(&mut self) {
        self.a.handle_timeout(self.now);
        self.run();
    }

    fn children(events: &[Event]) -> Vec<&ChildSaInfo> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::ChildInstalled(c) => Some(c.as_ref()),
                _ => None,
            })
            .collect()
    }
}

pub(super) fn closed_with(events: &[Event]) -> Option<NotifyType> {
    events.iter().find_map(|e| match e {
        Event::IkeClosed {
            reason: CloseReason::Failed(n, _),
            ..
        } => Some(*n),
        _ => None,
    })
}

pub(super) fn establish(ike: &str, esp: &str) -> Pair {
    let mut p = Pair::new(
        config(
            "a",
            "routerA",
            "routerB",
            &[ike],
            &[esp],
            "supersecret",
            true,
        ),
        config(
            "b",
            "routerB",
            "routerA",
            &[ike],
            &[esp],
            "supersecret",
            false,
        ),
    );
    p.start();
    p
}

pub(super) fn assert_child_pair(p: &Pair) {
    let ca = Pair::children(&p.events_a);
    let cb = Pair::children(&p.events_b);
    assert_eq!(ca.len(), 1, "A installed one CHILD SA");
    assert_eq!(cb.len(), 1, "B installed one CHILD SA");
    let (a, b) = (ca[0], cb[0]);
    assert_eq!(a.spi_in, b.spi_out);
    assert_eq!(a.spi_out, b.spi_in);
    assert_eq!(*a.keys_out, *b.keys_in, "A→B keys agree");
    assert_eq!(*a.keys_in, *b.keys_out, "B→A keys agree");
    assert_ne!(*a.keys_in, *a.keys_out, "directions use distinct keys");
    assert_eq!(a.proposal, b.proposal);
    assert_eq!(
        a.local.port(),
        limits::NATT_PORT,
        "forced encapsulation floats to 4500"
    );
}

pub(super) fn closed_with_timeout(events: &[Event]) -> Option<()> {
    events
        .iter()
        .find(|e| {
            matches!(
                e,
                Event::IkeClosed {
                    reason: CloseReason::Timeout,
                    ..
                }
            )
        })
        .map(|_| ())
}

pub(super) fn child_spis(s: &Session, now: Instant) -> Vec<(u32, u32)> {
    s.status(now)
        .children
        .iter()
        .map(|(c, _)| (c.spi_in, c.spi_out))
        .collect()
}

/// Every CHILD SA one side has is mirrored on the other.
pub(super) fn assert_children_mirror(p: &Pair) {
    let a = child_spis(&p.a, p.now);
    let mut b: Vec<(u32, u32)> = child_spis(&p.b, p.now)
        .into_iter()
        .map(|(i, o)| (o, i))
        .collect();
    let mut a2 = a.clone();
    a2.sort();
    b.sort();
    assert_eq!(a2, b, "CHILD SAs mirror each other");
}

pub(super) fn rekey_pair(a_esp: &str, b_esp: &str) -> Pair {
    let mut p = Pair::new(
        config(
            "a",
            "routerA",
            "routerB",
            &["aes256gcm16-prfsha384-x25519"],
            &[a_esp],
            "s",
            true,
        ),
        config(
            "b",
            "routerB",
            "routerA",
            &["aes256gcm16-prfsha384-x25519"],
            &[b_esp],
            "s",
            false,
        ),
    );
    p.start();
    assert!(p.a.is_established() && p.b.is_established());
    p
}

pub(super) fn no_failures(events: &[Event]) -> bool {
    !events.iter().any(|e| {
        matches!(
            e,
            Event::IkeClosed {
                reason: CloseReason::Failed(..) | CloseReason::Timeout,
                ..
            } | Event::ChildFailed { .. }
        )
    })
}

/// The tunnel never goes without a CHILD SA: every delete follows an install that
/// left at least one SA in place.
pub(super) fn never_empty(events: &[Event]) -> bool {
    let mut n: i32 = 0;
    let mut seen_up = false;
    for e in events {
        match e {
            Event::ChildInstalled(_) => {
                n += 1;
                seen_up = true;
            }
            Event::ChildDeleted { .. } => {
                n -= 1;
                if seen_up && n < 1 {
                    return false;
                }
            }
            _ => {}
        }
    }
    true
}

/// The notifies of a protected datagram, opened with the receiver `to`'s keys; None if
/// it is not one `to` can open (IKE_SA_INIT, another SA's).
pub(super) fn notifies_of(to: &Session, d: &Datagram) -> Option<Vec<NotifyType>> {
    let msg = crate::wire::Message::decode(&d.data).ok()?;
    let sa = to.sas.iter().find(|s| s.spi_i == msg.header.spi_i)?;
    let keys = sa.state.keys()?;
    let inner = protect::open(&d.data, &msg, &keys.inb).ok()?;
    let types = inner.iter().filter_map(|p| match p {
        crate::wire::Payload::Notify(n) => Some(n.ty),
        _ => None,
    });
    Some(types.collect())
}
