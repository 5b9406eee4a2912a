//! `%any` responders that pick their session by the initiator's identity (§2.15), the
//! way the daemon drives them: IKE_SA_INIT to the first `%any` session, IKE_AUTH moved
//! to the session that expects IDi, AUTH verified there only. And §2.23 address moves.

use super::*;

const HUB: IpAddr = A;
const BRANCH: IpAddr = B;

/// Two `%any` hub sessions (hub1 expects branch1 with psk1, hub2 expects branch2 with
/// psk2) and one branch session that initiates.
struct Hub {
    hubs: [Session; 2],
    branch: Session,
    admission: crate::Admission,
    now: Instant,
    hub_events: [Vec<Event>; 2],
    branch_events: Vec<Event>,
}

fn hub_config(name: &str, remote: &str, psk: &str) -> SessionConfig {
    let mut c = config(name, "hub", remote, &[IKE], &[ESP], psk, false);
    c.select_by_identity = true;
    c
}

const IKE: &str = "aes128gcm16-prfsha256-x25519";
const ESP: &str = "aes128gcm16";

impl Hub {
    fn new(branch_id: &str, branch_psk: &str) -> Hub {
        let now = Instant::now();
        let hub = |cfg, seed| Session::new(cfg, HUB, None, Box::new(TestRng(seed)), now);
        Hub {
            hubs: [
                hub(hub_config("hub1", "branch1", "psk-one-one-one-one"), 11),
                hub(hub_config("hub2", "branch2", "psk-two-two-two-two"), 12),
            ],
            branch: Session::new(
                config("br", branch_id, "hub", &[IKE], &[ESP], branch_psk, true),
                BRANCH,
                HUB,
                Box::new(TestRng(13)),
                now,
            ),
            admission: crate::Admission::new(),
            now,
            hub_events: [vec![], vec![]],
            branch_events: vec![],
        }
    }

    /// The daemon's dispatch: by SPIs, else a new IKE_SA_INIT to the first `%any` hub.
    fn hub_for(&self, d: &Datagram) -> Option<usize> {
        let h = crate::wire::Header::decode(&d.data).ok()?;
        (0..2)
            .find(|&i| self.hubs[i].owns(&h))
            .or_else(|| (0..2).find(|&i| self.hubs[i].accepts_peer(d)))
    }

    fn run(&mut self) {
        loop {
            let mut progress = false;
            while let Some(d) = self.branch.poll_transmit() {
                progress = true;
                let d = mirrored(d);
                if let Some(i) = self.hub_for(&d) {
                    self.hubs[i].handle_datagram_admitted(self.now, d, &mut self.admission);
                }
            }
            for i in 0..2 {
                while let Some(d) = self.hubs[i].poll_transmit() {
                    progress = true;
                    self.branch.handle_datagram(self.now, mirrored(d));
                }
                while let Some(e) = self.hubs[i].poll_event() {
                    progress = true;
                    if let Event::PeerIdentity {
                        spi_i, spi_r, id_i, ..
                    } = &e
                    {
                        self.settle(i, *spi_i, *spi_r, id_i.clone());
                    }
                    self.hub_events[i].push(e);
                }
            }
            while let Some(e) = self.branch.poll_event() {
                self.branch_events.push(e);
            }
            if !progress {
                return;
            }
        }
    }

    /// What daemon/dispatch.rs does with [`Event::PeerIdentity`].
    fn settle(&mut self, from: usize, spi_i: u64, spi_r: u64, id_i: IdPayload) {
        let to = (0..2).find(|&j| j != from && self.hubs[j].config().remote_id == id_i);
        match to {
            Some(j) => {
                let sa = self.hubs[from]
                    .detach(spi_i, spi_r, &mut self.admission)
                    .expect("the reported SA is held");
                self.hubs[j].adopt(self.now, sa, &mut self.admission);
            }
            None => self.hubs[from].refuse_identity(
                self.now,
                spi_i,
                spi_r,
                "no tunnel expects it".into(),
                &mut self.admission,
            ),
        }
    }

    fn start(&mut self) {
        self.branch.handle_timeout(self.now);
        self.run();
    }
}

#[test]
fn the_initiators_identity_picks_the_session() {
    let mut h = Hub::new("branch2", "psk-two-two-two-two");
    h.start();
    assert!(h.branch.is_established(), "{:?}", h.branch_events);
    assert!(h.hubs[1].is_established(), "hub2 took the SA");
    assert!(!h.hubs[0].is_established());
    assert!(
        h.hubs[0].status(h.now).ike_sas.is_empty(),
        "hub1 kept nothing"
    );
    assert_eq!(Pair::children(&h.hub_events[1]).len(), 1);
    assert!(Pair::children(&h.hub_events[0]).is_empty());
    assert_eq!(
        h.admission.half_open(),
        0,
        "the half-open count followed the SA"
    );
    // Later exchanges reach hub2 by their SPIs.
    assert!(h.branch.rekey_child(h.now));
    h.run();
    assert_eq!(Pair::children(&h.hub_events[1]).len(), 2, "rekeyed on hub2");
}

#[test]
fn one_sessions_identity_with_anothers_key_is_refused() {
    // Claims branch2 (hub2's peer) but holds hub1's key: verified with hub2's key only.
    let mut h = Hub::new("branch2", "psk-one-one-one-one");
    h.start();
    assert!(!h.branch.is_established());
    assert!(!h.hubs[0].is_established() && !h.hubs[1].is_established());
    assert_eq!(
        closed_with(&h.branch_events),
        Some(NotifyType::AUTHENTICATION_FAILED)
    );
    let why = h.hubs[1].status(h.now).last_error.unwrap_or_default();
    assert!(why.contains("pre-shared keys differ"), "{why}");
}

#[test]
fn an_identity_no_session_expects_is_refused() {
    let mut h = Hub::new("stranger", "psk-one-one-one-one");
    h.start();
    assert!(!h.branch.is_established());
    assert_eq!(
        closed_with(&h.branch_events),
        Some(NotifyType::AUTHENTICATION_FAILED)
    );
    assert!(!h.hubs[0].is_established() && !h.hubs[1].is_established());
}

#[test]
fn without_select_by_identity_a_wrong_identity_is_refused_at_once() {
    let mut h = Hub::new("branch2", "psk-two-two-two-two");
    h.hubs[0] = Session::new(
        config(
            "hub1",
            "hub",
            "branch1",
            &[IKE],
            &[ESP],
            "psk-one-one-one-one",
            false,
        ),
        HUB,
        None,
        Box::new(TestRng(21)),
        h.now,
    );
    h.start();
    assert!(h.hub_events[0]
        .iter()
        .all(|e| !matches!(e, Event::PeerIdentity { .. })));
    assert_eq!(
        closed_with(&h.branch_events),
        Some(NotifyType::AUTHENTICATION_FAILED)
    );
}

#[test]
fn an_any_session_never_initiates() {
    let now = Instant::now();
    let mut cfg = hub_config("hub1", "branch1", "psk-one-one-one-one");
    cfg.initiate = true;
    let mut s = Session::new(cfg, HUB, None, Box::new(TestRng(3)), now);
    s.handle_timeout(now);
    s.initiate(now);
    assert!(s.poll_transmit().is_none());
    assert!(s.poll_timeout().is_none(), "no re-initiation timer either");
}

#[test]
fn a_suite_the_adopting_session_refuses_is_reported() {
    let h = Hub::new("branch2", "psk-two-two-two-two");
    let sel = crate::proposal::choose(
        &[parse("aes256gcm16-prfsha384-ecp384", Protocol::Ike).unwrap()],
        &[crate::proposal::to_wire(
            &parse("aes256gcm16-prfsha384-ecp384", Protocol::Ike).unwrap(),
            1,
            vec![],
            true,
        )],
        Protocol::Ike,
    )
    .unwrap()
    .1;
    assert!(!h.hubs[1].accepts_ike_suite(&sel));
    let ours = crate::proposal::choose(
        &h.hubs[1].config().ike,
        &[crate::proposal::to_wire(
            &h.hubs[1].config().ike[0],
            1,
            vec![],
            true,
        )],
        Protocol::Ike,
    )
    .unwrap()
    .1;
    assert!(h.hubs[1].accepts_ike_suite(&ours));
}

/// §2.23: an authenticated request from a new address moves the IKE SA there and is
/// reported for ESP; the same request from an unauthenticated sender moves nothing.
#[test]
fn authenticated_ike_from_a_new_address_moves_the_peer() {
    let mut p = establish(IKE, ESP);
    let moved_to = |events: &[Event]| {
        events.iter().find_map(|e| match e {
            Event::PeerMoved { remote } => Some(*remote),
            _ => None,
        })
    };
    assert!(moved_to(&p.events_b).is_none());
    // A's liveness check arrives at B from a new NAT mapping.
    assert!(p.a.send_liveness(p.now));
    let d = p.a.poll_transmit().unwrap();
    let new_port = SocketAddr::new(A, 40001);
    let mut forged = mirrored(d.clone());
    forged.remote = new_port;
    // Tampered bytes from the new address change nothing.
    let mut junk = forged.clone();
    let last = junk.data.len() - 1;
    junk.data[last] ^= 1;
    p.b.handle_datagram(p.now, junk);
    while let Some(e) = p.b.poll_event() {
        p.events_b.push(e);
    }
    assert!(moved_to(&p.events_b).is_none(), "unauthenticated: no move");
    p.b.handle_datagram(p.now, forged);
    while let Some(e) = p.b.poll_event() {
        p.events_b.push(e);
    }
    assert_eq!(moved_to(&p.events_b), Some(new_port));
    assert_eq!(p.b.status(p.now).ike_sas[0].remote, new_port);
    let answer = p.b.poll_transmit().unwrap();
    assert_eq!(answer.remote, new_port, "answered at the new address");
}

/// ESP told the daemon the peer moved: IKE follows (§2.23).
#[test]
fn esp_from_a_new_address_moves_ike() {
    let mut p = establish(IKE, ESP);
    let new = SocketAddr::new(A, 40002);
    p.b.peer_moved(new);
    assert_eq!(p.b.status(p.now).ike_sas[0].remote, new);
    assert!(p.b.send_liveness(p.now));
    assert_eq!(p.b.poll_transmit().unwrap().remote, new);
}
