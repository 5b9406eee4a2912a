//! The exchanges of one IKE SA (RFC 7296 §1.2–§1.5, §2.18).

use super::child::{self, Child, ChildSaInfo};
use super::protect;
use super::{
    initial_group, CloseReason, Ctx, Datagram, Event, IkeSa, IkeState, Pending, RequestKind, SaKeys,
};
use crate::crypto::{self, KeyExchange, Suite};
use crate::iana::{AuthMethod, DhId, ExchangeType, NotifyType, PayloadType, ProtocolId};
use crate::limits;
use crate::proposal::{Protocol, Selected};
use crate::wire::{
    AuthPayload, DeletePayload, Flags, Header, IdPayload, KePayload, Message, NotifyPayload,
    Payload, SaPayload, TrafficSelector, TsPayload,
};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Instant;
use tracing::{debug, info, warn};

/// Peer messages are checked against these before any state changes.
fn unknown_critical(payloads: &[Payload]) -> Option<PayloadType> {
    payloads.iter().find_map(|p| match p {
        Payload::Unknown {
            ty, critical: true, ..
        } => Some(*ty),
        _ => None,
    })
}

/// D payload for the IKE SA itself (§3.11: no SPIs).
pub(super) fn delete_ike() -> Payload {
    Payload::Delete(DeletePayload {
        protocol: ProtocolId::IKE,
        spi_size: 0,
        spis: vec![],
    })
}

/// D payload for one of our CHILD SAs, named by our inbound SPI (§1.4.1).
pub(super) fn delete_esp(spi_in: u32) -> Payload {
    Payload::Delete(DeletePayload {
        protocol: ProtocolId::ESP,
        spi_size: 4,
        spis: vec![spi_in.to_be_bytes().to_vec()],
    })
}

pub(super) fn notify(ty: NotifyType, data: Vec<u8>) -> Payload {
    Payload::Notify(NotifyPayload {
        protocol: ProtocolId::NONE,
        spi: vec![],
        ty,
        data,
    })
}

pub(super) fn find_notify(payloads: &[Payload], ty: NotifyType) -> Option<&NotifyPayload> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.ty == ty => Some(n),
        _ => None,
    })
}

pub(super) fn first_error(payloads: &[Payload]) -> Option<&NotifyPayload> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify(n) if n.ty.is_error() => Some(n),
        _ => None,
    })
}

/// §2.23: NAT detection hash SHA-1(SPIi | SPIr | IP | Port).
fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    use aws_lc_rs::digest;
    let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    match addr.ip() {
        std::net::IpAddr::V4(v) => ctx.update(&v.octets()),
        std::net::IpAddr::V6(v) => ctx.update(&v.octets()),
    }
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}

/// N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP). A faked source hash
/// makes the peer see a NAT and encapsulate ESP in UDP (RFC 3948), as `encap=yes` does.
fn nat_notifies(
    ctx: &mut Ctx<'_>,
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
) -> [Payload; 2] {
    let src = if ctx.cfg.force_encap {
        let mut b = vec![0u8; limits::NAT_HASH_LEN];
        ctx.rng.fill(&mut b);
        b
    } else {
        nat_hash(spi_i, spi_r, local)
    };
    [
        notify(NotifyType::NAT_DETECTION_SOURCE_IP, src),
        notify(
            NotifyType::NAT_DETECTION_DESTINATION_IP,
            nat_hash(spi_i, spi_r, remote),
        ),
    ]
}

/// True if the peer's NAT-D payloads show a NAT (or a peer forcing encapsulation).
fn nat_detected_either(
    payloads: &[Payload],
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
) -> (bool, bool) {
    let mut src_seen = false;
    let mut src_match = false;
    let mut dst_mismatch = false;
    for p in payloads {
        if let Payload::Notify(n) = p {
            if n.ty == NotifyType::NAT_DETECTION_SOURCE_IP {
                src_seen = true;
                src_match |= n.data == nat_hash(spi_i, spi_r, remote);
            } else if n.ty == NotifyType::NAT_DETECTION_DESTINATION_IP {
                dst_mismatch |= n.data != nat_hash(spi_i, spi_r, local);
            }
        }
    }
    (src_seen && !src_match, dst_mismatch)
}

/// True if the peer's NAT-D payloads show a NAT (or a peer forcing encapsulation).
fn nat_detected(
    payloads: &[Payload],
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
) -> bool {
    let (peer_behind, we_behind) = nat_detected_either(payloads, spi_i, spi_r, local, remote);
    peer_behind || we_behind
}

pub(super) fn nonce_ok(n: &[u8]) -> bool {
    (limits::NONCE_MIN..=limits::NONCE_MAX).contains(&n.len())
}

pub(super) fn random_nonce(ctx: &mut Ctx<'_>) -> Vec<u8> {
    let mut n = vec![0u8; limits::NONCE_LEN];
    ctx.rng.fill(&mut n);
    n
}

/// ESP SPIs 1..=255 are reserved (RFC 4303 §2.1).
pub(super) fn random_esp_spi(ctx: &mut Ctx<'_>) -> u32 {
    loop {
        let mut b = [0u8; 4];
        ctx.rng.fill(&mut b);
        let spi = u32::from_be_bytes(b);
        if spi > 255 && !ctx.children.iter().any(|c| c.spi_in == spi) {
            return spi;
        }
    }
}

pub(super) fn spi_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.try_into().ok()?))
}

pub(super) fn spi_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

pub(super) fn suite(sel: &Selected) -> Suite {
    Suite {
        encr: sel.encr.0,
        encr_key_bits: sel.encr.1,
        prf: sel.prf.unwrap_or_default(),
        integ: sel.integ.unwrap_or(crate::iana::IntegId::NONE),
        dh: sel.dh.unwrap_or(DhId::NONE),
    }
}

fn id_matches(a: &IdPayload, b: &IdPayload) -> bool {
    a.id_type == b.id_type && a.data == b.data
}

/// Local ESP proposals for a CREATE_CHILD_SA request: a configured PFS group is
/// required; without one we accept the peer's choice of any group we implement.
pub(super) fn esp_for_create_child(
    cfg: &[crate::proposal::AlgorithmProposal],
) -> Vec<crate::proposal::AlgorithmProposal> {
    cfg.iter()
        .map(|p| {
            let mut p = p.clone();
            if p.dh.is_empty() {
                p.dh = std::iter::once(DhId::NONE)
                    .chain(crypto::supported_groups().iter().copied())
                    .collect();
            }
            p
        })
        .collect()
}

/// If the peer's KE group differs from the selection but its chosen proposal also
/// offers that group and we accept it, use it rather than demand a retry (§1.2, §1.3).
pub(super) fn prefer_ke_group(
    local: &[crate::proposal::AlgorithmProposal],
    offered: &crate::wire::Proposal,
    protocol: Protocol,
    sel: Selected,
    ke_group: DhId,
) -> Selected {
    if sel.dh == Some(ke_group) {
        return sel;
    }
    if let Some(mut ap) = child::from_wire(offered, protocol) {
        if ap.dh.contains(&ke_group) {
            ap.dh = vec![ke_group];
            if let Some((_, s)) = crate::proposal::select(local, &[ap]) {
                return s;
            }
        }
    }
    sel
}

impl IkeSa {
    pub fn new_initiator(spi_i: u64, local: SocketAddr, remote: SocketAddr, now: Instant) -> IkeSa {
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
            frag_ok: false,
            reassembly: None,
            behind_nat: false,
            last_tx: now,
            nat: false,
            rekeys: 0,
            queued: VecDeque::new(),
            rekey_at: None,
            last_rx: now,
            nonces: None,
            peer_ike_rekey: None,
            successor: None,
        }
    }

    pub fn new_responder(
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

    fn header(&self, exchange: ExchangeType, message_id: u32, response: bool) -> Header {
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

    fn name<'a>(&self, ctx: &'a Ctx<'_>) -> &'a str {
        &ctx.cfg.name
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            IkeState::Dead { until } => Some(*until),
            IkeState::InitReplied { .. } => Some(self.created + limits::HALF_OPEN_TIMEOUT),
            _ => self.pending.as_ref().map(|p| p.deadline),
        }
    }

    fn set_pending(
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
    fn send_response(
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
    fn protect_and_send(
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

    /// An unprotected response to an IKE_SA_INIT we will not keep state for.
    fn send_init_error(&mut self, ctx: &mut Ctx<'_>, ty: NotifyType, data: Vec<u8>) {
        let mut h = self.header(ExchangeType::IKE_SA_INIT, 0, true);
        h.spi_r = 0; // §2.6/§2.21.1: no responder SPI on a stateless error reply
        let msg = Message {
            header: h,
            payloads: vec![notify(ty, data)],
        };
        self.transmit(ctx, msg.encode());
    }

    /// Ends this SA after a negotiation error; `keep_for_retransmits` leaves the cached
    /// response available to the peer for a while.
    pub(super) fn fail(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        ty: NotifyType,
        why: String,
        keep_for_retransmits: bool,
    ) {
        warn!(tunnel = %ctx.cfg.name, error = %ty, peer = %self.remote, "IKE SA failed: {why}");
        *ctx.last_error = Some(format!("{ty}: {why}"));
        ctx.events.push_back(Event::IkeClosed {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            reason: CloseReason::Failed(ty, why),
        });
        self.pending = None;
        let until = if keep_for_retransmits {
            now + limits::HALF_OPEN_TIMEOUT
        } else {
            now
        };
        self.state = IkeState::Dead { until };
    }

    // ---- initiator: IKE_SA_INIT ------------------------------------------------------

    /// Starts the IKE_SA_INIT exchange.
    pub fn start(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let group = initial_group(ctx.cfg);
        match KeyExchange::generate(group, ctx.rng) {
            Ok(ke) => {
                let ni = random_nonce(ctx);
                info!(tunnel = %ctx.cfg.name, peer = %self.remote, "initiating IKE SA");
                self.state = IkeState::InitSent {
                    ke,
                    ni,
                    cookie: None,
                    invalid_ke_retries: 0,
                };
                self.send_init(ctx, now);
            }
            Err(e) => self.fail(
                ctx,
                now,
                NotifyType::NO_PROPOSAL_CHOSEN,
                format!("key exchange {group}: {e}"),
                false,
            ),
        }
    }

    // HDR, [N(COOKIE),] SAi1, KEi, Ni, N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP) -->
    fn send_init(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let IkeState::InitSent { ke, ni, cookie, .. } = &self.state else {
            return;
        };
        let mut payloads = Vec::new();
        if let Some(c) = cookie {
            payloads.push(notify(NotifyType::COOKIE, c.clone())); // §2.6: first payload
        }
        let proposals = ctx
            .cfg
            .ike
            .iter()
            .enumerate()
            .map(|(i, p)| child::to_wire(p, (i + 1) as u8, vec![], true))
            .collect();
        payloads.push(Payload::Sa(SaPayload { proposals }));
        payloads.push(Payload::Ke(KePayload {
            group: ke.group(),
            reserved: 0,
            data: ke.public_value().to_vec(),
        }));
        payloads.push(Payload::Nonce(ni.clone()));
        let (local, remote) = (self.local, self.remote);
        payloads.extend(nat_notifies(ctx, self.spi_i, 0, local, remote));
        payloads.push(notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, vec![]));
        self.spi_r = 0;
        let msg = Message {
            header: self.header(ExchangeType::IKE_SA_INIT, 0, false),
            payloads,
        };
        let packet = msg.encode();
        self.transmit(ctx, packet.clone());
        self.next_msg_id = 1;
        self.set_pending(ctx, now, 0, vec![packet], RequestKind::Init);
    }

    // <-- HDR, SAr1, KEr, Nr, [CERTREQ,] N(NAT_DETECTION_*)
    fn handle_init_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        d: &Datagram,
        msg: &Message,
    ) {
        let state = std::mem::replace(&mut self.state, IkeState::Dead { until: now });
        let IkeState::InitSent {
            ke,
            ni,
            cookie,
            invalid_ke_retries,
        } = state
        else {
            self.state = state;
            return;
        };
        let p = &msg.payloads;
        // §2.6: the responder wants proof of our address first.
        if let Some(c) = find_notify(p, NotifyType::COOKIE) {
            if c.data.is_empty() || c.data.len() > limits::COOKIE_MAX || cookie.is_some() {
                self.fail(
                    ctx,
                    now,
                    NotifyType::INVALID_SYNTAX,
                    "bad COOKIE request".into(),
                    false,
                );
                return;
            }
            debug!(tunnel = %ctx.cfg.name, "responder requested a COOKIE, retrying");
            self.state = IkeState::InitSent {
                ke,
                ni,
                cookie: Some(c.data.clone()),
                invalid_ke_retries,
            };
            self.send_init(ctx, now);
            return;
        }
        // §1.2: the responder wants another key exchange group.
        if let Some(n) = find_notify(p, NotifyType::INVALID_KE_PAYLOAD) {
            let group = n
                .data
                .get(..2)
                .and_then(|b| b.try_into().ok())
                .map(u16::from_be_bytes)
                .map(DhId);
            let offered = |g: DhId| ctx.cfg.ike.iter().any(|p| p.dh.contains(&g));
            match group {
                Some(g) if offered(g) && g != ke.group() && invalid_ke_retries < 3 => {
                    info!(tunnel = %ctx.cfg.name, group = %g, "peer asks for another key exchange group, retrying");
                    match KeyExchange::generate(g, ctx.rng) {
                        Ok(ke) => {
                            self.state = IkeState::InitSent {
                                ke,
                                ni,
                                cookie,
                                invalid_ke_retries: invalid_ke_retries + 1,
                            };
                            self.send_init(ctx, now);
                        }
                        Err(e) => self.fail(ctx, now, NotifyType::INVALID_KE_PAYLOAD, e.to_string(), false),
                    }
                }
                _ => self.fail(
                    ctx,
                    now,
                    NotifyType::INVALID_KE_PAYLOAD,
                    format!("peer demands key exchange group {group:?}, which our proposals do not offer"),
                    false,
                ),
            }
            return;
        }
        if let Some(err) = first_error(p) {
            let why = if err.ty == NotifyType::NO_PROPOSAL_CHOSEN {
                format!(
                    "peer accepts none of our IKE proposals [{}]",
                    child::describe(&ctx.cfg.ike)
                )
            } else {
                "peer rejected IKE_SA_INIT".to_string()
            };
            self.fail(ctx, now, err.ty, why, false);
            return;
        }
        let (Some(sa), Some(ke_r), Some(nr)) = (find!(p, Sa), find!(p, Ke), find!(p, Nonce)) else {
            self.fail(
                ctx,
                now,
                NotifyType::INVALID_SYNTAX,
                "IKE_SA_INIT response lacks SA, KE or Nonce".into(),
                false,
            );
            return;
        };
        let chosen = match sa.proposals.as_slice() {
            [one] => child::choose(&ctx.cfg.ike, std::slice::from_ref(one), Protocol::Ike),
            _ => None,
        };
        let Some((_, sel)) = chosen else {
            self.fail(
                ctx,
                now,
                NotifyType::NO_PROPOSAL_CHOSEN,
                "peer answered with a proposal we did not offer".into(),
                false,
            );
            return;
        };
        if sel.dh != Some(ke.group())
            || ke_r.group != ke.group()
            || !nonce_ok(nr)
            || msg.header.spi_r == 0
        {
            self.fail(
                ctx,
                now,
                NotifyType::INVALID_SYNTAX,
                "inconsistent IKE_SA_INIT response (group, nonce or SPI)".into(),
                false,
            );
            return;
        }
        let shared = match ke.agree(&ke_r.data) {
            Ok(s) => s,
            Err(e) => {
                self.fail(
                    ctx,
                    now,
                    NotifyType::INVALID_SYNTAX,
                    format!("peer's KE payload: {e}"),
                    false,
                );
                return;
            }
        };
        self.spi_r = msg.header.spi_r;
        let keys = crypto::derive_ike_keys(&suite(&sel), &shared, &ni, nr, self.spi_i, self.spi_r)
            .and_then(|k| SaKeys::new(sel, k, true));
        let keys = match keys {
            Ok(k) => k,
            Err(e) => {
                self.fail(
                    ctx,
                    now,
                    NotifyType::NO_PROPOSAL_CHOSEN,
                    format!("key derivation: {e}"),
                    false,
                );
                return;
            }
        };
        self.nat =
            ctx.cfg.force_encap || nat_detected(p, self.spi_i, self.spi_r, self.local, self.remote);
        // RFC 7383 §2.3: fragmentation once both ends announce it.
        self.frag_ok = find_notify(p, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        // RFC 3948 §4: keepalives when the mapping in front of us must be kept open.
        self.behind_nat = nat_detected_either(p, self.spi_i, self.spi_r, self.local, self.remote).1;
        if self.nat {
            // §2.23: float to 4500 once a NAT is detected.
            self.local.set_port(limits::NATT_PORT);
            self.remote.set_port(limits::NATT_PORT);
        }
        let msg1 = self
            .pending
            .take()
            .and_then(|p| p.packets.into_iter().next())
            .unwrap_or_default();
        info!(tunnel = %ctx.cfg.name, proposal = %sel, "IKE_SA_INIT done");
        let nr = nr.clone();
        self.send_auth(ctx, now, keys, ni, nr, msg1, d.data.clone());
    }

    // HDR, SK {IDi, N(INITIAL_CONTACT), AUTH, SAi2, TSi, TSr} -->
    #[allow(clippy::too_many_arguments)]
    fn send_auth(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        keys: SaKeys,
        ni: Vec<u8>,
        nr: Vec<u8>,
        msg1: Vec<u8>,
        msg2: Vec<u8>,
    ) {
        let child_spi = random_esp_spi(ctx);
        let id_i = ctx.cfg.local_id.clone();
        let auth = crypto::psk_auth(
            keys.prf,
            &ctx.cfg.psk,
            &msg1,
            &nr,
            &keys.sk_pi,
            &id_i.body(),
        );
        let proposals = child::without_dh(&ctx.cfg.esp)
            .iter()
            .enumerate()
            .map(|(i, p)| child::to_wire(p, (i + 1) as u8, child_spi.to_be_bytes().to_vec(), false))
            .collect();
        let inner = vec![
            Payload::IdI(id_i),
            notify(NotifyType::INITIAL_CONTACT, vec![]),
            Payload::Auth(AuthPayload {
                method: AuthMethod::PSK,
                reserved: [0; 3],
                data: auth.to_vec(),
            }),
            Payload::Sa(SaPayload { proposals }),
            Payload::TsI(TsPayload {
                selectors: ctx.cfg.local_ts.clone(),
            }),
            Payload::TsR(TsPayload {
                selectors: ctx.cfg.remote_ts.clone(),
            }),
        ];
        self.state = IkeState::AuthSent {
            keys,
            ni,
            nr,
            msg2,
            child_spi,
        };
        self.send_request(ctx, now, ExchangeType::IKE_AUTH, inner, RequestKind::Auth);
    }

    // <-- HDR, SK {IDr, AUTH, SAr2, TSi, TSr}
    fn handle_auth_response(&mut self, ctx: &mut Ctx<'_>, now: Instant, inner: &[Payload]) {
        let state = std::mem::replace(&mut self.state, IkeState::Dead { until: now });
        let IkeState::AuthSent {
            keys,
            ni,
            nr,
            msg2,
            child_spi,
        } = state
        else {
            self.state = state;
            return;
        };
        self.pending = None;
        let auth = find!(inner, Auth);
        if auth.is_none() {
            let (ty, why) = match first_error(inner) {
                Some(n) if n.ty == NotifyType::AUTHENTICATION_FAILED => (
                    n.ty,
                    "peer rejected our authentication: check psk and local_id/remote_id on both ends".to_string(),
                ),
                Some(n) => (n.ty, "peer refused IKE_AUTH".to_string()),
                None => (NotifyType::INVALID_SYNTAX, "IKE_AUTH response without AUTH".to_string()),
            };
            self.fail(ctx, now, ty, why, false);
            return;
        }
        let auth = auth.expect("checked above");
        let id_r = find!(inner, IdR);
        let failure = match id_r {
            None => Some("IKE_AUTH response without IDr".to_string()),
            Some(id) if !id_matches(id, &ctx.cfg.remote_id) => Some(format!(
                "responder identity \"{id}\" does not match remote_id \"{}\"",
                ctx.cfg.remote_id
            )),
            Some(id) => {
                let expect =
                    crypto::psk_auth(keys.prf, &ctx.cfg.psk, &msg2, &ni, &keys.sk_pr, &id.body());
                (auth.method != AuthMethod::PSK || !crypto::ct_eq(&expect, &auth.data))
                    .then(|| "responder's AUTH does not verify: pre-shared keys differ".to_string())
            }
        };
        self.state = IkeState::Established {
            keys,
            established_at: now,
        };
        self.nonces = Some((ni.clone(), nr.clone()));
        if let Some(why) = failure {
            // §2.21.2: tell the responder, then drop the SA.
            self.send_request(
                ctx,
                now,
                ExchangeType::INFORMATIONAL,
                vec![notify(NotifyType::AUTHENTICATION_FAILED, vec![])],
                RequestKind::Informational,
            );
            self.fail(ctx, now, NotifyType::AUTHENTICATION_FAILED, why, false);
            return;
        }
        self.peer_next_id = 0;
        self.announce_established(ctx);
        *ctx.last_error = None;

        // The first CHILD SA (§1.2).
        let child_err = (|| -> Result<Box<ChildSaInfo>, (NotifyType, String)> {
            if let Some(n) = first_error(inner) {
                return Err((n.ty, "peer refused the CHILD SA".into()));
            }
            let (Some(sa), Some(tsi), Some(tsr)) =
                (find!(inner, Sa), find!(inner, TsI), find!(inner, TsR))
            else {
                return Err((
                    NotifyType::INVALID_SYNTAX,
                    "IKE_AUTH response lacks SA, TSi or TSr".into(),
                ));
            };
            let local = child::without_dh(&ctx.cfg.esp);
            let chosen = match sa.proposals.as_slice() {
                [one] => child::choose(&local, std::slice::from_ref(one), Protocol::Esp)
                    .map(|c| (one, c.1)),
                _ => None,
            };
            let Some((prop, sel)) = chosen else {
                return Err((
                    NotifyType::NO_PROPOSAL_CHOSEN,
                    "peer chose an ESP proposal we did not offer".into(),
                ));
            };
            let Some(spi_out) = spi_u32(&prop.spi) else {
                return Err((NotifyType::INVALID_SYNTAX, "bad ESP SPI".into()));
            };
            if !child::is_subset(&tsi.selectors, &ctx.cfg.local_ts)
                || !child::is_subset(&tsr.selectors, &ctx.cfg.remote_ts)
            {
                return Err((
                    NotifyType::TS_UNACCEPTABLE,
                    "peer widened our traffic selectors".into(),
                ));
            }
            let (keys_in, keys_out) = self.derive_child(None, &ni, &nr, &sel, true)?;
            Ok(self.child_info(
                &sel,
                (child_spi, spi_out),
                (keys_in, keys_out),
                (tsi.selectors.clone(), tsr.selectors.clone()),
                None,
            ))
        })();
        match child_err {
            Ok(info) => self.install_child(ctx, now, info),
            Err((ty, why)) => {
                let why = format!("{why} (we offered ESP [{}])", child::describe(&ctx.cfg.esp));
                warn!(tunnel = %ctx.cfg.name, error = %ty, "CHILD SA failed: {why}; deleting the IKE SA");
                *ctx.last_error = Some(format!("{ty}: {why}"));
                ctx.events.push_back(Event::ChildFailed {
                    reason: CloseReason::Failed(ty, why),
                });
                // A route-based tunnel without a CHILD SA carries nothing.
                self.close(ctx, now);
            }
        }
    }

    /// KEYMAT for a CHILD SA from this IKE SA's SK_d (§2.17), split into (in, out).
    pub(super) fn derive_child(
        &self,
        shared: Option<&[u8]>,
        ni: &[u8],
        nr: &[u8],
        sel: &Selected,
        we_initiated: bool,
    ) -> Result<(child::Key, child::Key), (NotifyType, String)> {
        let keys = self.state.keys().ok_or((
            NotifyType::TEMPORARY_FAILURE,
            "IKE SA has no keys".to_string(),
        ))?;
        child::derive(keys.prf, &keys.sk_d, shared, ni, nr, sel, we_initiated)
            .map_err(|e| (NotifyType::NO_PROPOSAL_CHOSEN, e.to_string()))
    }

    /// A negotiated CHILD SA as the dataplane needs it: SPIs (in, out), keys (in, out),
    /// selectors (local, remote).
    pub(super) fn child_info(
        &self,
        sel: &Selected,
        (spi_in, spi_out): (u32, u32),
        (keys_in, keys_out): (child::Key, child::Key),
        (local_ts, remote_ts): (Vec<TrafficSelector>, Vec<TrafficSelector>),
        replaces: Option<u32>,
    ) -> Box<ChildSaInfo> {
        Box::new(ChildSaInfo {
            spi_in,
            spi_out,
            encr: sel.encr.0,
            encr_key_bits: sel.encr.1,
            integ: sel.integ,
            esn: sel.esn == Some(crate::iana::EsnId::ESN),
            keys_in,
            keys_out,
            local_ts,
            remote_ts,
            local: self.local,
            remote: self.remote,
            proposal: sel.to_string(),
            replaces,
        })
    }

    /// Logs and reports an IKE SA that just completed IKE_AUTH.
    fn announce_established(&self, ctx: &mut Ctx<'_>) {
        let proposal = self
            .state
            .keys()
            .map(|k| k.sel.to_string())
            .unwrap_or_default();
        let role = if self.initiator {
            "initiator"
        } else {
            "responder"
        };
        info!(tunnel = %ctx.cfg.name, peer = %self.remote, spi_i = format_args!("{:016x}", self.spi_i),
            spi_r = format_args!("{:016x}", self.spi_r), %proposal, role, "IKE SA established");
        ctx.events.push_back(Event::IkeEstablished {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            proposal,
            remote: self.remote,
        });
    }

    pub(super) fn install_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        info: Box<ChildSaInfo>,
    ) {
        info!(tunnel = %ctx.cfg.name, spi_in = format_args!("{:08x}", info.spi_in), spi_out = format_args!("{:08x}", info.spi_out),
            proposal = %info.proposal,
            local_ts = ?info.local_ts.iter().map(child::ts_to_string).collect::<Vec<_>>(),
            remote_ts = ?info.remote_ts.iter().map(child::ts_to_string).collect::<Vec<_>>(),
            "CHILD SA installed");
        ctx.children.push(Child {
            spi_in: info.spi_in,
            spi_out: info.spi_out,
            proposal: info.proposal.clone(),
            esn: info.esn,
            local_ts: info.local_ts.clone(),
            remote_ts: info.remote_ts.clone(),
            created: now,
            rekey_at: None,
            owner: self.successor.unwrap_or(self.spi_i),
            superseded: false,
            peer_rekey: None,
        });
        ctx.events.push_back(Event::ChildInstalled(info));
    }

    // ---- responder: IKE_SA_INIT and IKE_AUTH ----------------------------------------

    // HDR, SAi1, KEi, Ni -->  <-- HDR, SAr1, KEr, Nr, N(NAT_DETECTION_*)
    /// Returns whether to keep this new SA.
    pub fn handle_init_request(&mut self, ctx: &mut Ctx<'_>, d: &Datagram) -> bool {
        let msg = match Message::decode(&d.data) {
            Ok(m) => m,
            Err(e) => {
                debug!(tunnel = %ctx.cfg.name, error = %e, "malformed IKE_SA_INIT request");
                if matches!(e, crate::wire::DecodeError::UnsupportedVersion(_)) {
                    return false;
                }
                self.send_init_error(ctx, NotifyType::INVALID_SYNTAX, vec![]);
                return false;
            }
        };
        let p = &msg.payloads;
        if let Some(ty) = unknown_critical(p) {
            self.send_init_error(ctx, NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![ty.0]);
            return false;
        }
        let (Some(sa), Some(ke_i), Some(ni)) = (find!(p, Sa), find!(p, Ke), find!(p, Nonce)) else {
            self.send_init_error(ctx, NotifyType::INVALID_SYNTAX, vec![]);
            return false;
        };
        if !nonce_ok(ni) {
            self.send_init_error(ctx, NotifyType::INVALID_SYNTAX, vec![]);
            return false;
        }
        let Some((idx, sel)) = child::choose(&ctx.cfg.ike, &sa.proposals, Protocol::Ike) else {
            let offered: Vec<_> = sa
                .proposals
                .iter()
                .filter_map(|p| child::from_wire(p, Protocol::Ike))
                .collect();
            let why = format!(
                "no common IKE proposal: peer offered [{}], we accept [{}]",
                child::describe(&offered),
                child::describe(&ctx.cfg.ike)
            );
            warn!(tunnel = %ctx.cfg.name, peer = %d.remote, "{why}");
            *ctx.last_error = Some(format!("NO_PROPOSAL_CHOSEN: {why}"));
            self.send_init_error(ctx, NotifyType::NO_PROPOSAL_CHOSEN, vec![]);
            return false;
        };
        let sel = prefer_ke_group(
            &ctx.cfg.ike,
            &sa.proposals[idx],
            Protocol::Ike,
            sel,
            ke_i.group,
        );
        let group = sel.dh.unwrap_or(DhId::NONE);
        if group != ke_i.group {
            // §1.2: tell the initiator which group we want.
            debug!(tunnel = %ctx.cfg.name, want = %group, got = %ke_i.group, "INVALID_KE_PAYLOAD");
            self.send_init_error(
                ctx,
                NotifyType::INVALID_KE_PAYLOAD,
                group.0.to_be_bytes().to_vec(),
            );
            return false;
        }
        let ke = match KeyExchange::generate(group, ctx.rng) {
            Ok(k) => k,
            Err(_) => {
                self.send_init_error(ctx, NotifyType::NO_PROPOSAL_CHOSEN, vec![]);
                return false;
            }
        };
        let shared = match ke.agree(&ke_i.data) {
            Ok(s) => s,
            Err(e) => {
                debug!(tunnel = %ctx.cfg.name, error = %e, "invalid KE payload from initiator");
                self.send_init_error(ctx, NotifyType::INVALID_SYNTAX, vec![]);
                return false;
            }
        };
        let nr = random_nonce(ctx);
        let keys = crypto::derive_ike_keys(&suite(&sel), &shared, ni, &nr, self.spi_i, self.spi_r)
            .and_then(|k| SaKeys::new(sel, k, false));
        let Ok(keys) = keys else {
            self.send_init_error(ctx, NotifyType::NO_PROPOSAL_CHOSEN, vec![]);
            return false;
        };
        self.nat = ctx.cfg.force_encap || nat_detected(p, self.spi_i, 0, d.local, d.remote);
        let mut payloads = vec![
            Payload::Sa(SaPayload {
                proposals: vec![child::selected_to_wire(
                    &sel,
                    Protocol::Ike,
                    sa.proposals[idx].num,
                    vec![],
                )],
            }),
            Payload::Ke(KePayload {
                group,
                reserved: 0,
                data: ke.public_value().to_vec(),
            }),
            Payload::Nonce(nr.clone()),
        ];
        payloads.extend(nat_notifies(ctx, self.spi_i, self.spi_r, d.local, d.remote));
        if find_notify(p, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some() {
            self.frag_ok = true;
            payloads.push(notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, vec![]));
        }
        let msg2 = Message {
            header: self.header(ExchangeType::IKE_SA_INIT, 0, true),
            payloads,
        }
        .encode();
        self.transmit(ctx, msg2.clone());
        self.last_response = Some((0, vec![msg2.clone()]));
        self.peer_next_id = 1;
        info!(tunnel = %ctx.cfg.name, peer = %d.remote, proposal = %sel, "IKE_SA_INIT answered");
        self.state = IkeState::InitReplied {
            keys,
            msg1: d.data.clone(),
            msg2,
            ni: ni.clone(),
            nr,
        };
        true
    }

    // HDR, SK {IDi, [IDr,] AUTH, SAi2, TSi, TSr} -->  <-- HDR, SK {IDr, AUTH, SAr2, TSi, TSr}
    fn handle_auth_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        msg_id: u32,
        inner: &[Payload],
    ) {
        let state = std::mem::replace(&mut self.state, IkeState::Dead { until: now });
        let IkeState::InitReplied {
            keys,
            msg1,
            msg2,
            ni,
            nr,
        } = state
        else {
            self.state = state;
            return;
        };
        self.state = IkeState::Established {
            keys,
            established_at: now,
        };
        self.nonces = Some((ni.clone(), nr.clone()));
        let auth_fail = |sa: &mut IkeSa, ctx: &mut Ctx<'_>, ty: NotifyType, why: String| {
            sa.send_response(
                ctx,
                ExchangeType::IKE_AUTH,
                msg_id,
                vec![notify(ty, vec![])],
            );
            sa.fail(ctx, now, ty, why, true);
        };
        if let Some(ty) = unknown_critical(inner) {
            auth_fail(
                self,
                ctx,
                NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
                format!("unsupported critical payload {ty}"),
            );
            return;
        }
        let (Some(id_i), Some(auth)) = (find!(inner, IdI), find!(inner, Auth)) else {
            auth_fail(
                self,
                ctx,
                NotifyType::INVALID_SYNTAX,
                "IKE_AUTH request lacks IDi or AUTH".into(),
            );
            return;
        };
        if !id_matches(id_i, &ctx.cfg.remote_id) {
            let why = format!(
                "peer identity \"{id_i}\" does not match remote_id \"{}\"",
                ctx.cfg.remote_id
            );
            auth_fail(self, ctx, NotifyType::AUTHENTICATION_FAILED, why);
            return;
        }
        let keys = self.state.keys().expect("established");
        let expect = crypto::psk_auth(
            keys.prf,
            &ctx.cfg.psk,
            &msg1,
            &nr,
            &keys.sk_pi,
            &id_i.body(),
        );
        if auth.method != AuthMethod::PSK || !crypto::ct_eq(&expect, &auth.data) {
            let why = if auth.method != AuthMethod::PSK {
                format!("peer authenticates with {}, we require PSK", auth.method)
            } else {
                "peer's AUTH does not verify: pre-shared keys differ".to_string()
            };
            auth_fail(self, ctx, NotifyType::AUTHENTICATION_FAILED, why);
            return;
        }
        ctx.initial_contact = find_notify(inner, NotifyType::INITIAL_CONTACT).is_some();
        let id_r = ctx.cfg.local_id.clone();
        let our_auth = crypto::psk_auth(
            keys.prf,
            &ctx.cfg.psk,
            &msg2,
            &ni,
            &keys.sk_pr,
            &id_r.body(),
        );
        let mut out = vec![
            Payload::IdR(id_r),
            Payload::Auth(AuthPayload {
                method: AuthMethod::PSK,
                reserved: [0; 3],
                data: our_auth.to_vec(),
            }),
        ];
        let child = self.accept_child(ctx, inner, None, &ni, &nr, None);
        match &child {
            Ok((resp, _)) => out.extend(resp.iter().cloned()),
            Err((ty, why)) => {
                warn!(tunnel = %ctx.cfg.name, error = %ty, "refusing the first CHILD SA: {why}");
                *ctx.last_error = Some(format!("{ty}: {why}"));
                out.push(notify(*ty, vec![]));
            }
        }
        self.send_response(ctx, ExchangeType::IKE_AUTH, msg_id, out);
        self.announce_established(ctx);
        match child {
            Ok((_, info)) => {
                *ctx.last_error = None;
                self.install_child(ctx, now, info);
            }
            Err((ty, why)) => ctx.events.push_back(Event::ChildFailed {
                reason: CloseReason::Failed(ty, why),
            }),
        }
    }

    /// Responder side of a CHILD SA negotiation (IKE_AUTH or CREATE_CHILD_SA): selects
    /// the proposal, narrows the selectors, derives keys. Returns the response payloads
    /// (SAr, TSi, TSr, and Nr/KEr for CREATE_CHILD_SA) and the SA to install.
    #[allow(clippy::type_complexity)]
    fn accept_child(
        &self,
        ctx: &mut Ctx<'_>,
        inner: &[Payload],
        create: Option<(&[u8], Option<&KePayload>)>,
        ni: &[u8],
        nr: &[u8],
        replaces: Option<u32>,
    ) -> Result<(Vec<Payload>, Box<ChildSaInfo>), (NotifyType, String)> {
        let (Some(sa), Some(tsi), Some(tsr)) =
            (find!(inner, Sa), find!(inner, TsI), find!(inner, TsR))
        else {
            return Err((
                NotifyType::INVALID_SYNTAX,
                "request lacks SA, TSi or TSr".into(),
            ));
        };
        let local = if create.is_some() {
            esp_for_create_child(&ctx.cfg.esp)
        } else {
            child::without_dh(&ctx.cfg.esp)
        };
        let Some((idx, mut sel)) = child::choose(&local, &sa.proposals, Protocol::Esp) else {
            let offered: Vec<_> = sa
                .proposals
                .iter()
                .filter_map(|p| child::from_wire(p, Protocol::Esp))
                .collect();
            return Err((
                NotifyType::NO_PROPOSAL_CHOSEN,
                format!(
                    "no common ESP proposal: peer offered [{}], we accept [{}]",
                    child::describe(&offered),
                    child::describe(&ctx.cfg.esp)
                ),
            ));
        };
        let prop = &sa.proposals[idx];
        let Some(spi_out) = spi_u32(&prop.spi) else {
            return Err((NotifyType::INVALID_SYNTAX, "bad ESP SPI size".into()));
        };
        if let Some((_, Some(ke))) = create {
            sel = prefer_ke_group(&local, prop, Protocol::Esp, sel, ke.group);
        }
        let tsi_n = child::narrow(&tsi.selectors, &ctx.cfg.remote_ts);
        let tsr_n = child::narrow(&tsr.selectors, &ctx.cfg.local_ts);
        if tsi_n.is_empty() || tsr_n.is_empty() {
            return Err((
                NotifyType::TS_UNACCEPTABLE,
                format!(
                    "peer's traffic selectors TSi [{}] TSr [{}] do not overlap ours (remote_ts [{}], local_ts [{}])",
                    ts_list(&tsi.selectors),
                    ts_list(&tsr.selectors),
                    ts_list(&ctx.cfg.remote_ts),
                    ts_list(&ctx.cfg.local_ts)
                ),
            ));
        }
        let mut response = Vec::new();
        let mut shared = None;
        let mut our_ke = None;
        if let Some((_, ke)) = create {
            let group = sel.dh.unwrap_or(DhId::NONE);
            if group != DhId::NONE {
                // §1.3: a PFS group in the chosen proposal needs a matching KEi.
                match ke {
                    Some(ke) if ke.group == group => {
                        let mine = KeyExchange::generate(group, ctx.rng)
                            .map_err(|e| (NotifyType::NO_PROPOSAL_CHOSEN, e.to_string()))?;
                        shared = Some(
                            mine.agree(&ke.data)
                                .map_err(|e| (NotifyType::INVALID_SYNTAX, e.to_string()))?,
                        );
                        our_ke = Some(mine);
                    }
                    _ => {
                        return Err((
                            NotifyType::INVALID_KE_PAYLOAD,
                            format!("want group {group}"),
                        ));
                    }
                }
            } else {
                sel.dh = None;
            }
        }
        let spi_in = random_esp_spi(ctx);
        let (keys_in, keys_out) =
            self.derive_child(shared.as_deref().map(|s| s.as_slice()), ni, nr, &sel, false)?;
        response.push(Payload::Sa(SaPayload {
            proposals: vec![child::selected_to_wire(
                &sel,
                Protocol::Esp,
                prop.num,
                spi_in.to_be_bytes().to_vec(),
            )],
        }));
        if create.is_some() {
            response.push(Payload::Nonce(nr.to_vec()));
            if let Some(k) = &our_ke {
                response.push(Payload::Ke(KePayload {
                    group: k.group(),
                    reserved: 0,
                    data: k.public_value().to_vec(),
                }));
            }
        }
        response.push(Payload::TsI(TsPayload {
            selectors: tsi_n.clone(),
        }));
        response.push(Payload::TsR(TsPayload {
            selectors: tsr_n.clone(),
        }));
        Ok((
            response,
            self.child_info(
                &sel,
                (spi_in, spi_out),
                (keys_in, keys_out),
                (tsr_n, tsi_n),
                replaces,
            ),
        ))
    }

    // ---- established: peer requests ----------------------------------------------

    fn handle_established_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        msg: &Message,
        inner: &[Payload],
    ) {
        let id = msg.header.message_id;
        if let Some(ty) = unknown_critical(inner) {
            self.send_response(
                ctx,
                msg.header.exchange,
                id,
                vec![notify(NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![ty.0])],
            );
            return;
        }
        match msg.header.exchange {
            ExchangeType::INFORMATIONAL => self.handle_informational(ctx, now, id, inner),
            ExchangeType::CREATE_CHILD_SA => self.handle_create_child(ctx, now, id, inner),
            other => {
                debug!(tunnel = %ctx.cfg.name, exchange = %other, "unexpected request on established IKE SA");
                self.send_response(
                    ctx,
                    other,
                    id,
                    vec![notify(NotifyType::INVALID_SYNTAX, vec![])],
                );
            }
        }
    }

    // HDR, SK {[N,] [D,] [CP,] ...} -->  <-- HDR, SK {[N,] [D,] [CP], ...}   (§1.4)
    fn handle_informational(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        msg_id: u32,
        inner: &[Payload],
    ) {
        let mut delete_ike = false;
        let mut our_spis = Vec::new();
        for p in inner {
            match p {
                Payload::Delete(d) if d.protocol == ProtocolId::IKE => delete_ike = true,
                Payload::Delete(d) if d.protocol == ProtocolId::ESP => {
                    for spi in d.spis.iter().filter_map(|s| spi_u32(s)) {
                        // §1.4.1: the SPIs are the sender's inbound ones, our outbound.
                        if let Some(pos) = ctx.children.iter().position(|c| c.spi_out == spi) {
                            let c = ctx.children.remove(pos);
                            info!(tunnel = %ctx.cfg.name, spi_in = format_args!("{:08x}", c.spi_in),
                                spi_out = format_args!("{:08x}", c.spi_out), "peer deleted CHILD SA");
                            our_spis.push(c.spi_in.to_be_bytes().to_vec());
                            ctx.events.push_back(Event::ChildDeleted {
                                spi_in: c.spi_in,
                                spi_out: c.spi_out,
                            });
                        }
                    }
                }
                Payload::Notify(n) if n.ty.is_error() => {
                    warn!(tunnel = %ctx.cfg.name, error = %n.ty, "peer reported an error");
                    if n.ty == NotifyType::AUTHENTICATION_FAILED {
                        *ctx.last_error =
                            Some("AUTHENTICATION_FAILED: peer rejected our authentication".into());
                        delete_ike = true;
                    }
                }
                _ => {}
            }
        }
        if delete_ike {
            self.send_response(ctx, ExchangeType::INFORMATIONAL, msg_id, vec![]);
            info!(tunnel = %ctx.cfg.name, spi_i = format_args!("{:016x}", self.spi_i), "peer deleted IKE SA");
            ctx.events.push_back(Event::IkeClosed {
                spi_i: self.spi_i,
                spi_r: self.spi_r,
                reason: CloseReason::DeletedByPeer,
            });
            // A CHILD SA request in flight here is redone on the successor, if any.
            match self.pending.take().map(|p| p.kind) {
                Some(RequestKind::DeleteChild(spi)) => {
                    self.queued.push_front(super::Queued::DeleteChild(spi))
                }
                Some(RequestKind::CreateChild {
                    rekey_of: Some(old),
                    ..
                }) => self.queued.push_front(super::Queued::RekeyChild(old)),
                _ => {}
            }
            self.state = IkeState::Dead {
                until: now + limits::HALF_OPEN_TIMEOUT,
            };
            return;
        }
        let out = if our_spis.is_empty() {
            vec![]
        } else {
            vec![Payload::Delete(DeletePayload {
                protocol: ProtocolId::ESP,
                spi_size: 4,
                spis: our_spis,
            })]
        };
        self.send_response(ctx, ExchangeType::INFORMATIONAL, msg_id, out);
    }

    // HDR, SK {SA, Ni, [KEi,] [N(REKEY_SA),] TSi, TSr} -->   (§1.3.1, §1.3.3)
    // HDR, SK {SA, Ni, KEi} -->                               (§1.3.2 IKE SA rekey)
    fn handle_create_child(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        msg_id: u32,
        inner: &[Payload],
    ) {
        let respond_err =
            |sa: &mut IkeSa, ctx: &mut Ctx<'_>, ty: NotifyType, data: Vec<u8>, why: &str| {
                warn!(tunnel = %ctx.cfg.name, error = %ty, "refusing CREATE_CHILD_SA: {why}");
                *ctx.last_error = Some(format!("{ty}: refused peer's CREATE_CHILD_SA: {why}"));
                sa.send_response(
                    ctx,
                    ExchangeType::CREATE_CHILD_SA,
                    msg_id,
                    vec![notify(ty, data)],
                );
            };
        let (Some(sa), Some(ni)) = (find!(inner, Sa), find!(inner, Nonce)) else {
            respond_err(
                self,
                ctx,
                NotifyType::INVALID_SYNTAX,
                vec![],
                "no SA or Nonce",
            );
            return;
        };
        if !nonce_ok(ni) {
            respond_err(
                self,
                ctx,
                NotifyType::INVALID_SYNTAX,
                vec![],
                "bad nonce length",
            );
            return;
        }
        let ke = find!(inner, Ke);
        let nr = random_nonce(ctx);
        if sa.proposals.first().map(|p| p.protocol) == Some(ProtocolId::IKE) {
            self.accept_ike_rekey(ctx, now, msg_id, sa, ni, ke, nr);
            return;
        }
        let replaces = match find_notify(inner, NotifyType::REKEY_SA) {
            Some(n) => match spi_u32(&n.spi)
                .and_then(|spi| ctx.children.iter().find(|c| c.spi_out == spi))
            {
                Some(c) if c.superseded => {
                    // §2.25: we already replaced this SA and are deleting it.
                    let busy = vec![notify(NotifyType::TEMPORARY_FAILURE, vec![])];
                    self.send_response(ctx, ExchangeType::CREATE_CHILD_SA, msg_id, busy);
                    return;
                }
                Some(c) => Some(c.spi_in),
                None => {
                    // §2.25: the CHILD SA being rekeyed is gone.
                    let mut resp = NotifyPayload {
                        protocol: ProtocolId::ESP,
                        spi: n.spi.clone(),
                        ty: NotifyType::CHILD_SA_NOT_FOUND,
                        data: vec![],
                    };
                    resp.protocol = n.protocol;
                    warn!(tunnel = %ctx.cfg.name, "peer rekeys a CHILD SA we do not have");
                    self.send_response(
                        ctx,
                        ExchangeType::CREATE_CHILD_SA,
                        msg_id,
                        vec![Payload::Notify(resp)],
                    );
                    return;
                }
            },
            None => None,
        };
        match self.accept_child(ctx, inner, Some((ni, ke)), ni, &nr, replaces) {
            Ok((resp, info)) => {
                self.send_response(ctx, ExchangeType::CREATE_CHILD_SA, msg_id, resp);
                if let Some(old) = replaces {
                    // The peer rekeys it: drop our queued rekey, or note a collision (§2.8.1).
                    // It is the peer's to delete now; we no longer rekey it.
                    self.queued.retain(|q| *q != super::Queued::RekeyChild(old));
                    if let Some(c) = ctx.children.iter_mut().find(|c| c.spi_in == old) {
                        c.superseded = true;
                    }
                    let ours_in_flight = matches!(&self.pending,
                        Some(p) if matches!(p.kind, RequestKind::CreateChild { rekey_of: Some(x), .. } if x == old));
                    if ours_in_flight {
                        if let Some(c) = ctx.children.iter_mut().find(|c| c.spi_in == old) {
                            c.peer_rekey = Some((ni.to_vec(), nr.clone()));
                        }
                    }
                    info!(tunnel = %ctx.cfg.name, old_spi_in = format_args!("{old:08x}"), "CHILD SA rekeyed by peer");
                }
                self.install_child(ctx, now, info);
            }
            Err((ty, why)) => {
                let data = if ty == NotifyType::INVALID_KE_PAYLOAD {
                    let want = esp_group_wanted(ctx, sa);
                    want.0.to_be_bytes().to_vec()
                } else {
                    vec![]
                };
                respond_err(self, ctx, ty, data, &why);
            }
        }
    }

    // <-- HDR, SK {SA, Nr, KEr}   (§1.3.2, keys per §2.18)
    #[allow(clippy::too_many_arguments)]
    fn accept_ike_rekey(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        msg_id: u32,
        sa: &SaPayload,
        ni: &[u8],
        ke: Option<&KePayload>,
        nr: Vec<u8>,
    ) {
        let Some((idx, sel)) = child::choose(&ctx.cfg.ike, &sa.proposals, Protocol::Ike) else {
            warn!(tunnel = %ctx.cfg.name, "refusing IKE SA rekey: no common proposal");
            self.send_response(
                ctx,
                ExchangeType::CREATE_CHILD_SA,
                msg_id,
                vec![notify(NotifyType::NO_PROPOSAL_CHOSEN, vec![])],
            );
            return;
        };
        let prop = &sa.proposals[idx];
        let sel = match ke {
            Some(k) => prefer_ke_group(&ctx.cfg.ike, prop, Protocol::Ike, sel, k.group),
            None => sel,
        };
        let group = sel.dh.unwrap_or(DhId::NONE);
        let Some(ke) = ke.filter(|k| k.group == group) else {
            self.send_response(
                ctx,
                ExchangeType::CREATE_CHILD_SA,
                msg_id,
                vec![notify(
                    NotifyType::INVALID_KE_PAYLOAD,
                    group.0.to_be_bytes().to_vec(),
                )],
            );
            return;
        };
        let Some(new_spi_i) = spi_u64(&prop.spi).filter(|s| *s != 0) else {
            self.send_response(
                ctx,
                ExchangeType::CREATE_CHILD_SA,
                msg_id,
                vec![notify(NotifyType::INVALID_SYNTAX, vec![])],
            );
            return;
        };
        let mut b = [0u8; 8];
        ctx.rng.fill(&mut b);
        let new_spi_r = u64::from_be_bytes(b) | 1;
        let derived = KeyExchange::generate(group, ctx.rng).and_then(|mine| {
            let shared = mine.agree(&ke.data)?;
            let old = self
                .state
                .keys()
                .ok_or(crypto::CryptoError::Internal("no keys"))?;
            let keys = crypto::derive_rekeyed_ike_keys(
                old.prf,
                &old.sk_d,
                &suite(&sel),
                &shared,
                ni,
                &nr,
                new_spi_i,
                new_spi_r,
            )?;
            Ok((mine, SaKeys::new(sel, keys, false)?))
        });
        let (mine, keys) = match derived {
            Ok(x) => x,
            Err(e) => {
                warn!(tunnel = %ctx.cfg.name, error = %e, "refusing IKE SA rekey");
                self.send_response(
                    ctx,
                    ExchangeType::CREATE_CHILD_SA,
                    msg_id,
                    vec![notify(NotifyType::INVALID_SYNTAX, vec![])],
                );
                return;
            }
        };
        let resp = vec![
            Payload::Sa(SaPayload {
                proposals: vec![child::selected_to_wire(
                    &sel,
                    Protocol::Ike,
                    prop.num,
                    new_spi_r.to_be_bytes().to_vec(),
                )],
            }),
            Payload::Nonce(nr.clone()),
            Payload::Ke(KePayload {
                group,
                reserved: 0,
                data: mine.public_value().to_vec(),
            }),
        ];
        let resp_nr = nr;
        self.send_response(ctx, ExchangeType::CREATE_CHILD_SA, msg_id, resp);
        info!(tunnel = %ctx.cfg.name, old_spi_i = format_args!("{:016x}", self.spi_i),
            new_spi_i = format_args!("{new_spi_i:016x}"), new_spi_r = format_args!("{new_spi_r:016x}"),
            proposal = %sel, "IKE SA rekeyed by peer");
        self.queued.retain(|q| *q != super::Queued::RekeyIke);
        if matches!(&self.pending, Some(p) if matches!(p.kind, RequestKind::RekeyIke { .. })) {
            self.peer_ike_rekey = Some((ni.to_vec(), resp_nr.clone(), new_spi_i));
        }
        for c in ctx.children.iter_mut().filter(|c| c.owner == self.spi_i) {
            c.owner = new_spi_i;
        }
        self.successor = Some(new_spi_i);
        // §2.18: the rekey's initiator is the new SA's original initiator.
        let mut new = IkeSa::new_responder(new_spi_i, new_spi_r, self.local, self.remote, now);
        new.nat = self.nat;
        new.rekeys = self.rekeys + 1;
        new.state = IkeState::Established {
            keys,
            established_at: now,
        };
        ctx.new_sas.push(new);
        ctx.events.push_back(Event::IkeRekeyed {
            old_spi_i: self.spi_i,
            new_spi_i,
            new_spi_r,
        });
    }

    // ---- shared dispatch ----------------------------------------------------------

    pub fn handle(&mut self, ctx: &mut Ctx<'_>, now: Instant, d: &Datagram, header: &Header) {
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
            self.follow_peer(d);
            self.last_rx = now;
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
                } => self.handle_create_child_response(ctx, now, &inner, rekey_of, spi_in, &ni, ke),
                RequestKind::RekeyIke { new_spi_i, ni, ke } => {
                    self.handle_rekey_ike_response(ctx, now, &inner, new_spi_i, &ni, ke)
                }
                RequestKind::DeleteChild(spi_in) => self.handle_delete_child_response(ctx, spi_in),
                RequestKind::Informational | RequestKind::Liveness | RequestKind::Init => {}
            }
            self.pump(ctx, now);
            return;
        }
        // A request from the peer. §2.1: a retransmission gets the cached response.
        if header.exchange == ExchangeType::IKE_SA_INIT {
            if let Some((0, resp)) = &self.last_response {
                if !self.initiator {
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
            if let Some((id, resp)) = &self.last_response {
                if *id == header.message_id && !later_fragment {
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
        let Some(inner) = self.unprotect(ctx, d, &msg, false) else {
            return;
        };
        self.peer_next_id = self.peer_next_id.wrapping_add(1);
        self.follow_peer(d);
        self.last_rx = now;
        match (&self.state, header.exchange) {
            (IkeState::InitReplied { .. }, ExchangeType::IKE_AUTH) => {
                self.handle_auth_request(ctx, now, header.message_id, &inner)
            }
            (IkeState::Established { .. }, _) => {
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
    fn unprotect(
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

    /// §2.23: answer from where the peer's latest authenticated message came.
    fn follow_peer(&mut self, d: &Datagram) {
        self.local = d.local;
        self.remote = d.remote;
    }

    /// Returns true when the peer was just declared dead.
    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>, now: Instant) -> bool {
        if let IkeState::InitReplied { .. } = self.state {
            if now >= self.created + limits::HALF_OPEN_TIMEOUT {
                self.fail(
                    ctx,
                    now,
                    NotifyType::TEMPORARY_FAILURE,
                    "initiator never completed IKE_AUTH".into(),
                    false,
                );
            }
            return false;
        }
        let Some(p) = &mut self.pending else {
            return false;
        };
        if now < p.deadline {
            return false;
        }
        if p.tries >= ctx.cfg.retransmit_tries {
            let delete_ike = p.kind.is_delete_ike();
            self.pending = None;
            if delete_ike {
                self.state = IkeState::Dead { until: now };
                return false;
            }
            warn!(tunnel = %ctx.cfg.name, peer = %self.remote, "peer not responding, giving up on IKE SA");
            *ctx.last_error = Some(format!("peer {} not responding", self.remote.ip()));
            ctx.events.push_back(Event::IkeClosed {
                spi_i: self.spi_i,
                spi_r: self.spi_r,
                reason: CloseReason::Timeout,
            });
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

    // HDR, SK {D} -->   (§1.4.1)
    pub fn close(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let state = std::mem::replace(&mut self.state, IkeState::Dead { until: now });
        match state {
            IkeState::Established { keys, .. } => {
                self.state = IkeState::Deleting { keys };
                let inner = vec![delete_ike()];
                self.send_request(
                    ctx,
                    now,
                    ExchangeType::INFORMATIONAL,
                    inner,
                    RequestKind::DeleteIke,
                );
                info!(tunnel = %ctx.cfg.name, spi_i = format_args!("{:016x}", self.spi_i), "deleting IKE SA");
                ctx.events.push_back(Event::IkeClosed {
                    spi_i: self.spi_i,
                    spi_r: self.spi_r,
                    reason: CloseReason::Local,
                });
            }
            IkeState::Dead { until } => self.state = IkeState::Dead { until },
            IkeState::Deleting { keys } => self.state = IkeState::Deleting { keys },
            _ => {
                self.pending = None;
                ctx.events.push_back(Event::IkeClosed {
                    spi_i: self.spi_i,
                    spi_r: self.spi_r,
                    reason: CloseReason::Local,
                });
            }
        }
    }
}

fn ts_list(ts: &[TrafficSelector]) -> String {
    ts.iter()
        .map(child::ts_to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The group to ask for in INVALID_KE_PAYLOAD: the first one our chosen proposal names.
fn esp_group_wanted(ctx: &Ctx<'_>, sa: &SaPayload) -> DhId {
    let local = esp_for_create_child(&ctx.cfg.esp);
    child::choose(&local, &sa.proposals, Protocol::Esp)
        .and_then(|(_, s)| s.dh)
        .unwrap_or(DhId::NONE)
}
