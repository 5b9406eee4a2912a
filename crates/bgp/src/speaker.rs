//! Sessions and RIB glued together: the object a daemon drives.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::Instant;

use crate::rib::{PeerId, PeerPolicy, PeerUp, Rib, RibChange, RibConfig};
use crate::session::{DownReason, Event, PeerInfo, Session, SessionConfig};

/// Something the driver must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpeakerEvent {
    /// Open a TCP connection to this peer (dropping any pending attempt).
    Connect(PeerId),
    /// Session Established.
    Established(PeerId, Box<PeerInfo>),
    /// Session down: flush this peer's transmit queue, then close its TCP connection.
    Down(PeerId, DownReason),
    /// Loc-RIB change to install into the kernel.
    RibChange(RibChange),
}

#[derive(Debug)]
struct Peer {
    session: Session,
    local_addr: Option<IpAddr>,
}

/// An embedded BGP speaker: one [`Session`] per peer plus the [`Rib`].
#[derive(Debug)]
pub struct Speaker {
    rib: Rib,
    peers: BTreeMap<PeerId, Peer>,
    transmit: VecDeque<(PeerId, Vec<u8>)>,
    events: VecDeque<SpeakerEvent>,
}

impl Speaker {
    /// New speaker with no peers.
    pub fn new(cfg: RibConfig) -> Self {
        let mut s = Self {
            rib: Rib::new(cfg),
            peers: BTreeMap::new(),
            transmit: VecDeque::new(),
            events: VecDeque::new(),
        };
        s.pump_rib();
        s
    }

    /// The RIB.
    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    /// A peer's session.
    pub fn session(&self, id: PeerId) -> Option<&Session> {
        self.peers.get(&id).map(|p| &p.session)
    }

    /// Add and start a peer.
    pub fn add_peer(
        &mut self,
        now: Instant,
        id: PeerId,
        session: SessionConfig,
        policy: PeerPolicy,
    ) {
        self.rib.add_peer(id, policy);
        let mut s = Session::new(session);
        s.start(now);
        self.peers.insert(
            id,
            Peer {
                session: s,
                local_addr: None,
            },
        );
        self.pump(now);
    }

    /// Stop and remove a peer (Cease/Peer De-configured is not distinguished: Admin Shutdown).
    pub fn remove_peer(&mut self, now: Instant, id: PeerId) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.session.stop(now);
        }
        self.pump(now);
        self.peers.remove(&id);
        self.rib.remove_peer(id);
        self.pump_rib();
    }

    /// Originate a prefix.
    pub fn add_network(&mut self, now: Instant, prefix: crate::Prefix) {
        self.rib.add_network(prefix);
        self.pump(now);
    }

    /// Stop originating a prefix.
    pub fn remove_network(&mut self, now: Instant, prefix: crate::Prefix) {
        self.rib.remove_network(prefix);
        self.pump(now);
    }

    /// Whether `id` would accept a new TCP connection now.
    pub fn accepts_connection(&self, id: PeerId) -> bool {
        self.peers
            .get(&id)
            .is_some_and(|p| p.session.accepts_connection())
    }

    /// TCP connection to `id` is up; `local_addr` is our end (used as next hop self).
    /// Returns false if the session refuses it (close that connection).
    pub fn handle_connected(&mut self, now: Instant, id: PeerId, local_addr: IpAddr) -> bool {
        let Some(p) = self.peers.get_mut(&id) else {
            return false;
        };
        let ok = p.session.handle_connected(now);
        if ok {
            p.local_addr = Some(local_addr);
        }
        self.pump(now);
        ok
    }

    /// Bytes from `id`'s TCP stream.
    pub fn handle_bytes(&mut self, now: Instant, id: PeerId, bytes: &[u8]) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.session.handle_bytes(now, bytes);
        }
        self.pump(now);
    }

    /// `id`'s TCP connection closed or failed. Also call this when BFD or the tunnel
    /// under the peer goes down: the session drops and its routes are withdrawn.
    pub fn handle_disconnected(&mut self, now: Instant, id: PeerId) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.session.handle_disconnected(now);
        }
        self.pump(now);
    }

    /// Run timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        for p in self.peers.values_mut() {
            if p.session.poll_timeout().is_some_and(|t| t <= now) {
                p.session.handle_timeout(now);
            }
        }
        self.pump(now);
    }

    /// Earliest timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|p| p.session.poll_timeout())
            .min()
    }

    /// Next bytes to write, with the peer whose connection they go to.
    pub fn poll_transmit(&mut self) -> Option<(PeerId, Vec<u8>)> {
        self.transmit.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<SpeakerEvent> {
        self.events.pop_front()
    }

    fn pump_rib(&mut self) {
        while let Some(c) = self.rib.poll_change() {
            self.events.push_back(SpeakerEvent::RibChange(c));
        }
    }

    /// Move session events into the RIB and RIB exports into sessions until quiet.
    fn pump(&mut self, now: Instant) {
        loop {
            let mut progressed = false;
            let ids: Vec<PeerId> = self.peers.keys().copied().collect();
            for id in &ids {
                let id = *id;
                while let Some(p) = self.peers.get_mut(&id) {
                    let Some(ev) = p.session.poll_event() else {
                        break;
                    };
                    progressed = true;
                    match ev {
                        Event::Connect => self.events.push_back(SpeakerEvent::Connect(id)),
                        Event::Established(info) => {
                            self.rib.peer_up(
                                id,
                                PeerUp {
                                    bgp_id: info.bgp_id,
                                    ipv4: info.ipv4_unicast,
                                    ipv6: info.ipv6_unicast,
                                    local_addr: p.local_addr,
                                },
                            );
                            self.events
                                .push_back(SpeakerEvent::Established(id, Box::new(info)));
                        }
                        Event::Down { reason } => {
                            self.rib.peer_down(id);
                            self.events.push_back(SpeakerEvent::Down(id, reason));
                        }
                        Event::Update(u) => {
                            if let Err(e) = self.rib.handle_update(id, &u) {
                                // Max-prefix: Cease/1 (RFC 4486); Down follows.
                                p.session.close(now, e);
                            }
                        }
                        Event::RouteRefresh { .. } => self.rib.refresh(id),
                    }
                }
            }
            self.pump_rib();
            for id in &ids {
                let Some(p) = self.peers.get_mut(id) else {
                    continue;
                };
                if p.session.is_established() {
                    for u in self.rib.take_updates(*id) {
                        if let Err(e) = p.session.send_update(now, u) {
                            tracing::error!(error = %e, "UPDATE not encodable");
                        }
                    }
                }
                while let Some(b) = p.session.poll_transmit() {
                    self.transmit.push_back((*id, b));
                }
            }
            if !progressed {
                break;
            }
        }
    }
}
