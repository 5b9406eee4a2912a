//! One IKE SA: its state, message IDs, protection, send/receive, dispatch by exchange
//! type and retransmission (RFC 7296 §2.1–§2.3, RFC 7383).
//!
//! ```text
//! Initiator                         Responder
//! HDR, SK {request}          -->                 (retransmitted until answered, §2.1)
//!                            <--    HDR, SK {response}   (cached for retransmissions)
//! ```

use super::child::Child;
use super::child_create::rekeys_ike_sa;
use super::error::ExchangeError;

use super::informational::delete_esp;
use super::payloads::*;
use super::protect;
pub(crate) use super::state::*;
use super::{CloseReason, Datagram, Event, SessionConfig};
use crate::crypto::KeyExchange;
use crate::iana::{ExchangeType, PayloadType};
use crate::limits;
use crate::wire::{Flags, Header, Message, Payload};
use crate::Rng;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tracing::{debug, warn};

/// What our outstanding request was for, with what its response needs.
pub(crate) enum RequestKind {
    Init,
    Auth,
    DeleteIke,
    Informational,
    /// Dead peer detection probe (§1.4).
    Liveness,
    /// RFC 4555 §3.5: our address changed; the COOKIE2 the response must echo (§3.8).
    UpdateAddresses {
        cookie2: Vec<u8>,
    },
    /// Delete of one of our CHILD SAs (by inbound SPI).
    DeleteChild(u32),
    /// CREATE_CHILD_SA for a new or rekeyed CHILD SA (§1.3.1, §1.3.3).
    CreateChild {
        rekey_of: Option<u32>,
        spi_in: u32,
        ni: Vec<u8>,
        ke: Option<KeyExchange>,
        /// RFC 9611 resource of the CHILD SA asked for (0: the fallback one).
        resource: u32,
    },
    /// CREATE_CHILD_SA rekeying this IKE SA (§1.3.2).
    RekeyIke {
        new_spi_i: u64,
        ni: Vec<u8>,
        ke: KeyExchange,
    },
}

impl RequestKind {
    pub(crate) fn is_delete_ike(&self) -> bool {
        matches!(self, RequestKind::DeleteIke)
    }
}

/// Requests waiting for the window (§2.3: one outstanding request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Queued {
    Liveness,
    /// Tell the peer our new address (RFC 4555 §3.5; a liveness check without MOBIKE).
    UpdateAddresses,
    RekeyChild(u32),
    DeleteChild(u32),
    /// Delete a CHILD SA we created but lost a rekey collision with (§2.8.1); it was
    /// never installed here.
    DeleteRedundant(u32),
    RekeyIke,
    /// A fresh fallback CHILD SA for a tunnel that lost it (§1.3.1).
    NewChild,
    /// RFC 9611 §3: per-resource CHILD SA for this resource (>= 1).
    ResourceChild(u32),
}

/// Our outstanding request, retransmitted until answered (§2.1).
pub(crate) struct Pending {
    pub msg_id: u32,
    /// The request's datagrams: one, or its fragments (RFC 7383).
    pub packets: Vec<Vec<u8>>,
    pub kind: RequestKind,
    pub tries: u32,
    pub interval: Duration,
    pub deadline: Instant,
}

/// SHA-256 of a request datagram, to tell a retransmission (the same bytes) from a new
/// message that merely reuses a message ID (§2.1).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestDigest([u8; 32]);

impl RequestDigest {
    pub(crate) fn of(datagram: &[u8]) -> RequestDigest {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, datagram);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        RequestDigest(out)
    }
}

pub(crate) struct IkeSa {
    pub spi_i: u64,
    pub spi_r: u64,
    /// We are the original initiator of this IKE SA (§2.2: sets the I flag).
    pub initiator: bool,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub created: Instant,
    pub state: IkeState,
    pub next_msg_id: u32,
    pub pending: Option<Pending>,
    /// Message ID expected in the peer's next request, and our cached last response.
    pub peer_next_id: u32,
    pub last_response: Option<(u32, Vec<Vec<u8>>)>,
    /// §2.1: SHA-256 of the request that `last_response` answers (its fragment 1 when
    /// fragmented): only the same bytes again are a retransmission.
    pub last_request: Option<RequestDigest>,
    /// SHA-256 of fragment 1 of the request being reassembled (RFC 7383 §2.6.1).
    pub fragment1: Option<RequestDigest>,
    /// Both ends announced IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383 §2.3).
    pub frag_ok: bool,
    /// Both ends announced MOBIKE_SUPPORTED in IKE_AUTH (RFC 4555 §3.2).
    pub mobike: bool,
    /// The peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4); None if it sent none.
    pub peer_hashes: Option<Vec<crate::iana::HashAlgorithm>>,
    /// Fragments of an incoming message being collected (RFC 7383 §2.6).
    pub reassembly: Option<protect::Reassembly>,
    /// Our last datagram to the peer: NAT keepalives go only after a silence.
    pub last_tx: Instant,
    /// Detected or forced NAT: IKE floats to 4500 and ESP is UDP-encapsulated (§2.23).
    pub nat: bool,
    pub rekeys: u32,
    pub queued: VecDeque<Queued>,
    /// SPIi of the IKE SA that replaced this one (§2.18): CHILD SAs negotiated here
    /// after the rekey, and requests still queued here, belong to it.
    pub successor: Option<u64>,
    /// RFC 9611: per-resource CHILD SAs negotiated on this SA (see `resources.rs`).
    pub rsa: super::resources::Resources,
}

/// §2.8.1: compare nonces as unsigned numbers of their common length.
pub(crate) fn lowest_is_ours(ours: [&[u8]; 2], theirs: [&[u8]; 2]) -> bool {
    let m_ours = ours[0].min(ours[1]);
    let m_theirs = theirs[0].min(theirs[1]);
    m_ours < m_theirs
}

/// Everything an exchange handler may touch besides its own IKE SA.
pub(crate) struct Ctx<'a> {
    pub cfg: &'a SessionConfig,
    pub rng: &'a mut dyn Rng,
    pub out: &'a mut VecDeque<Datagram>,
    pub events: &'a mut VecDeque<Event>,
    pub children: &'a mut Vec<Child>,
    pub last_error: &'a mut Option<String>,
    /// IKE SAs created by this exchange (IKE rekey, §2.18).
    pub new_sas: &'a mut Vec<IkeSa>,
    /// The peer authenticated with INITIAL_CONTACT: drop its older SAs.
    pub initial_contact: bool,
    pub now: Instant,
    /// Rate limit of IKE_SA_INIT refusal log lines.
    pub refusals: &'a mut super::error::RefusalLog,
    /// Wall-clock seconds since the Unix epoch (certificate validity).
    pub unix_time: u64,
    /// The peer's certificate once validated, for `status`.
    pub peer_cert: &'a mut Option<crate::cert::CertInfo>,
    /// Creating the CHILD SAs the session lacks (`resources.rs`).
    pub refill: &'a mut super::resources::Refill,
}

impl Ctx<'_> {
    /// Removes the CHILD SA at `pos` and reports it deleted.
    pub fn remove_child(&mut self, pos: usize) -> Child {
        let c = self.children.remove(pos);
        self.events.push_back(Event::ChildDeleted {
            spi_in: c.spi_in,
            spi_out: c.spi_out,
        });
        c
    }
}

impl IkeSa {
    /// Reports this IKE SA gone, for `reason`.
    pub(super) fn report_closed(&self, ctx: &mut Ctx<'_>, reason: CloseReason) {
        ctx.events.push_back(Event::IkeClosed {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            reason,
        });
    }

    pub(super) fn new_initiator(
        spi_i: u64,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> IkeSa {
        IkeSa {
            spi_i,
            spi_r: 0,
            initiator: true,
            local,
            remote,
            created: now,
            state: IkeState::Dead { until: now },
            next_msg_id: 0,
            pending: None,
            peer_next_id: 0,
            last_response: None,
            last_request: None,
            fragment1: None,
            frag_ok: false,
            mobike: false,
            peer_hashes: None,
            reassembly: None,
            last_tx: now,
            nat: false,
            rekeys: 0,
            queued: VecDeque::new(),
            successor: None,
            rsa: Default::default(),
        }
    }

    pub(super) fn new_responder(
        spi_i: u64,
        spi_r: u64,
        local: SocketAddr,
        remote: SocketAddr,
        now: Instant,
    ) -> IkeSa {
        IkeSa {
            spi_r,
            initiator: false,
            ..IkeSa::new_initiator(spi_i, local, remote, now)
        }
    }

    pub(super) fn header(&self, exchange: ExchangeType, message_id: u32, response: bool) -> Header {
        let mut flags = 0u8;
        if self.initiator {
            flags |= 0x08;
        }
        if response {
            flags |= 0x20;
        }
        Header {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            next_payload: PayloadType::NONE,
            version: 0x20,
            exchange,
            flags: Flags(flags),
            message_id,
            length: 0,
        }
    }

    pub(super) fn transmit(&mut self, ctx: &mut Ctx<'_>, data: Vec<u8>) {
        self.last_tx = ctx.now;
        ctx.out.push_back(Datagram {
            local: self.local,
            remote: self.remote,
            data,
        });
    }

    pub(super) fn name<'a>(&self, ctx: &'a Ctx<'_>) -> &'a str {
        &ctx.cfg.name
    }

    pub(super) fn set_pending(
        &mut self,
        ctx: &Ctx<'_>,
        now: Instant,
        msg_id: u32,
        packets: Vec<Vec<u8>>,
        kind: RequestKind,
    ) {
        let first = ctx.cfg.retransmit_timeout;
        self.pending = Some(Pending {
            msg_id,
            packets,
            kind,
            tries: 0,
            interval: first,
            deadline: now + first,
        });
    }

    /// Sends an encrypted request with the next message ID (§2.3, window 1).
    pub(super) fn send_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        exchange: ExchangeType,
        inner: Vec<Payload>,
        kind: RequestKind,
    ) {
        let msg_id = self.next_msg_id;
        self.next_msg_id = self.next_msg_id.wrapping_add(1);
        if let Some(packets) = self.protect_and_send(ctx, exchange, msg_id, false, &inner) {
            self.set_pending(ctx, now, msg_id, packets, kind);
        }
    }

    /// Sends an encrypted response and caches it for retransmitted requests (§2.1).
    pub(super) fn send_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        exchange: ExchangeType,
        msg_id: u32,
        inner: Vec<Payload>,
    ) {
        if let Some(packets) = self.protect_and_send(ctx, exchange, msg_id, true, &inner) {
            self.last_response = Some((msg_id, packets));
        }
    }

    /// HDR, SK {inner} (or SKF fragments, RFC 7383) sent to the peer; returns the
    /// datagrams for retransmission.
    pub(super) fn protect_and_send(
        &mut self,
        ctx: &mut Ctx<'_>,
        exchange: ExchangeType,
        msg_id: u32,
        response: bool,
        inner: &[Payload],
    ) -> Option<Vec<Vec<u8>>> {
        let hdr = self.header(exchange, msg_id, response);
        let keys = self.state.keys()?;
        let max = self.frag_ok.then_some(ctx.cfg.fragment_size);
        match protect::seal_fragmented(hdr, inner, &keys.out, ctx.rng, max) {
            Ok(packets) => {
                for p in &packets {
                    self.transmit(ctx, p.clone());
                }
                Some(packets)
            }
            Err(e) => {
                warn!(tunnel = %ctx.cfg.name, error = %e, "cannot protect IKE message");
                None
            }
        }
    }

    // ---- established: peer requests ----------------------------------------------

    pub(super) fn handle_established_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        msg: &Message,
        inner: &[Payload],
    ) {
        let id = msg.header.message_id;
        if let Some(ty) = unknown_critical(inner) {
            let e = ExchangeError::UnsupportedCritical(ty);
            self.refuse(ctx, now, msg.header.exchange, id, e);
            return;
        }
        match msg.header.exchange {
            ExchangeType::INFORMATIONAL => self.handle_informational(ctx, now, id, inner),
            ExchangeType::CREATE_CHILD_SA if rekeys_ike_sa(inner) => {
                self.handle_rekey_ike(ctx, now, id, inner)
            }
            ExchangeType::CREATE_CHILD_SA => self.handle_create_child(ctx, now, id, inner),
            other => self.refuse(
                ctx,
                now,
                other,
                id,
                ExchangeError::UnexpectedExchange(other),
            ),
        }
    }

    // ---- shared dispatch ----------------------------------------------------------

    pub(super) fn handle(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        d: &Datagram,
        header: &Header,
    ) {
        let msg = match Message::decode(&d.data) {
            Ok(m) => m,
            Err(e) => {
                debug!(tunnel = %self.name(ctx), error = %e, "dropping malformed IKE message");
                return;
            }
        };
        if header.flags.response() {
            let Some(p) = &self.pending else {
                return;
            };
            if p.msg_id != header.message_id {
                return;
            }
            if header.exchange == ExchangeType::IKE_SA_INIT {
                if matches!(self.state, IkeState::InitSent { .. }) {
                    self.handle_init_response(ctx, now, d, &msg);
                }
                return;
            }
            let Some(inner) = self.unprotect(ctx, d, &msg, true) else {
                return;
            };
            self.follow_peer(ctx, d);
            self.note_peer_alive(now);
            let Some(p) = self.pending.take() else {
                return;
            };
            match p.kind {
                RequestKind::Auth => self.handle_auth_response(ctx, now, &inner),
                RequestKind::DeleteIke => self.state = IkeState::Dead { until: now },
                RequestKind::CreateChild {
                    rekey_of,
                    spi_in,
                    ni,
                    ke,
                    resource,
                } => {
                    let req = (rekey_of, spi_in, resource);
                    self.handle_create_child_response(ctx, now, &inner, req, &ni, ke)
                }
                RequestKind::RekeyIke { new_spi_i, ni, ke } => {
                    self.handle_rekey_ike_response(ctx, now, &inner, new_spi_i, &ni, ke)
                }
                RequestKind::DeleteChild(spi_in) => self.handle_delete_child_response(ctx, spi_in),
                RequestKind::UpdateAddresses { cookie2 } => {
                    self.handle_update_addresses_response(ctx, &inner, &cookie2)
                }
                RequestKind::Informational | RequestKind::Liveness | RequestKind::Init => {}
            }
            self.pump(ctx, now);
            return;
        }
        // A request from the peer. §2.1: a retransmission gets the cached response.
        if header.exchange == ExchangeType::IKE_SA_INIT {
            if let Some((0, resp)) = &self.last_response {
                if !self.initiator && self.last_request == Some(RequestDigest::of(&d.data)) {
                    for r in resp.clone() {
                        self.transmit(ctx, r);
                    }
                }
            }
            return;
        }
        if header.message_id.wrapping_add(1) == self.peer_next_id {
            // RFC 7383 §2.6.1: answer a fragmented retransmission once, on fragment 1.
            let later_fragment = matches!(msg.payloads.last(),
                Some(Payload::EncryptedFragment(f)) if f.fragment_number != 1);
            let same = self.last_request == Some(RequestDigest::of(&d.data));
            if let Some((id, resp)) = &self.last_response {
                if *id == header.message_id && !later_fragment && same {
                    for data in resp.clone() {
                        ctx.out.push_back(Datagram {
                            local: d.local,
                            remote: d.remote,
                            data,
                        });
                    }
                }
            }
            return;
        }
        if header.message_id != self.peer_next_id {
            debug!(tunnel = %self.name(ctx), id = header.message_id, expected = self.peer_next_id, "dropping request outside the window");
            return;
        }
        // §2.21.2: unauthenticated junk changes nothing.
        let fragmented = matches!(msg.payloads.last(), Some(Payload::EncryptedFragment(_)));
        let Some(inner) = self.unprotect(ctx, d, &msg, false) else {
            return;
        };
        self.last_request = if fragmented {
            self.fragment1.take()
        } else {
            Some(RequestDigest::of(&d.data))
        };
        self.peer_next_id = self.peer_next_id.wrapping_add(1);
        self.follow_peer(ctx, d);
        self.note_peer_alive(now);
        match (&self.state, header.exchange) {
            (IkeState::InitReplied { .. }, ExchangeType::IKE_AUTH) => {
                self.handle_auth_request(ctx, now, header.message_id, &inner)
            }
            (IkeState::Established(_), _) => {
                self.handle_established_request(ctx, now, &msg, &inner)
            }
            (IkeState::Deleting { .. }, ExchangeType::INFORMATIONAL) => {
                self.handle_informational(ctx, now, header.message_id, &inner)
            }
            _ => {
                debug!(tunnel = %self.name(ctx), exchange = %header.exchange, state = self.state.name(), "ignoring request")
            }
        }
    }

    /// Verifies and decrypts an SK message, or collects an SKF fragment and returns the
    /// whole message once complete (RFC 7383 §2.6); None if invalid or incomplete.
    pub(super) fn unprotect(
        &mut self,
        ctx: &Ctx<'_>,
        d: &Datagram,
        msg: &Message,
        response: bool,
    ) -> Option<Vec<Payload>> {
        let keys = self.state.keys()?;
        let id = msg.header.message_id;
        let result = match msg.payloads.last() {
            Some(Payload::EncryptedFragment(_)) => {
                let frag = match protect::open_fragment(&d.data, msg, &keys.inb) {
                    Ok(f) => f,
                    Err(e) => {
                        debug!(tunnel = %ctx.cfg.name, error = %e, "dropping IKE fragment that fails verification");
                        return None;
                    }
                };
                if frag.total as usize > limits::MAX_FRAGMENTS {
                    return None;
                }
                if frag.number == 1 && !response {
                    self.fragment1 = Some(RequestDigest::of(&d.data));
                }
                let fresh = !matches!(&self.reassembly, Some(r) if r.msg_id == id && r.response == response);
                if fresh {
                    self.reassembly = Some(protect::Reassembly::new(id, response, frag.total));
                }
                let done = self.reassembly.as_mut()?.add(frag)?;
                self.reassembly = None;
                done
            }
            _ => protect::open(&d.data, msg, &keys.inb),
        };
        match result {
            Ok(inner) => Some(inner),
            Err(e) => {
                debug!(tunnel = %ctx.cfg.name, error = %e, response, "dropping IKE message that fails verification");
                None
            }
        }
    }

    /// A NAT in front of us was detected on this established SA (RFC 3948 §4).
    pub(super) fn behind_nat(&self) -> bool {
        matches!(&self.state, IkeState::Established(e) if e.behind_nat)
    }

    /// An authenticated message (or ESP traffic) from the peer: no liveness check due.
    pub(super) fn note_peer_alive(&mut self, now: Instant) {
        if let Some(e) = self.state.established_mut() {
            e.last_rx = now;
        }
    }

    /// §2.23: answer from where the peer's latest authenticated message came.
    /// Once established, a move is reported: ESP follows it (a NAT mapping changed).
    pub(super) fn follow_peer(&mut self, ctx: &mut Ctx<'_>, d: &Datagram) {
        // Our own address moving (a dynamic local) is no news for ESP.
        let moved = self.remote != d.remote;
        self.local = d.local;
        self.remote = d.remote;
        if moved && matches!(self.state, IkeState::Established(_)) {
            tracing::info!(tunnel = %ctx.cfg.name, to = %d.remote, "peer moved (authenticated IKE from a new address): following it");
            ctx.events.push_back(Event::PeerMoved { remote: d.remote });
        }
    }

    /// §2.1: an IKE_SA_INIT we answered was never followed by IKE_AUTH.
    pub(super) fn half_open_expired(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let e = ExchangeError::Temporary("initiator never completed IKE_AUTH".into());
        self.fail(ctx, now, e, false);
    }

    /// Resends our unanswered request (§2.4: doubling the interval) or, after the last
    /// try, gives up; returns true when the peer was just declared dead.
    pub(super) fn retransmit(&mut self, ctx: &mut Ctx<'_>, now: Instant) -> bool {
        let Some(p) = &mut self.pending else {
            return false;
        };
        if p.tries >= ctx.cfg.retransmit_tries {
            let delete_ike = p.kind.is_delete_ike();
            self.pending = None;
            if delete_ike {
                self.state = IkeState::Dead { until: now };
                return false;
            }
            warn!(tunnel = %ctx.cfg.name, peer = %self.remote, "peer not responding, giving up on IKE SA");
            *ctx.last_error = Some(format!("peer {} not responding", self.remote.ip()));
            self.report_closed(ctx, CloseReason::Timeout);
            self.state = IkeState::Dead { until: now };
            return true;
        }
        p.tries += 1;
        p.interval = (p.interval * 2).min(limits::RETRANSMIT_MAX_INTERVAL);
        p.deadline = now + p.interval;
        debug!(tunnel = %ctx.cfg.name, try_ = p.tries, "retransmitting IKE request");
        for data in p.packets.clone() {
            self.transmit(ctx, data);
        }
        false
    }

    /// Sends the next queued request if the window is free (§2.3).
    pub(super) fn pump(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        while self.pending.is_none() && matches!(self.state, IkeState::Established(_)) {
            let Some(q) = self.queued.pop_front() else {
                return;
            };
            match q {
                // HDR, SK {} -->
                Queued::Liveness => self.send_request(
                    ctx,
                    now,
                    ExchangeType::INFORMATIONAL,
                    vec![],
                    RequestKind::Liveness,
                ),
                Queued::UpdateAddresses => self.send_update_addresses(ctx, now),
                Queued::DeleteChild(spi_in) => self.send_delete_child(ctx, now, spi_in),
                Queued::DeleteRedundant(spi_in) => {
                    let inner = vec![delete_esp(spi_in)];
                    self.send_request(
                        ctx,
                        now,
                        ExchangeType::INFORMATIONAL,
                        inner,
                        RequestKind::Informational,
                    );
                }
                Queued::RekeyChild(spi_in) => self.send_rekey_child(ctx, now, spi_in),
                Queued::NewChild => self.send_fallback_child(ctx, now),
                Queued::RekeyIke => self.send_rekey_ike(ctx, now),
                Queued::ResourceChild(r) => self.send_resource_child(ctx, now, r),
            }
        }
    }
}
