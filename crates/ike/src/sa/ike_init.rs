//! IKE_SA_INIT, both roles, with cookies (§2.6) and NAT detection (§2.23).
//!
//! ```text
//! Initiator                         Responder
//! HDR, SAi1, KEi, Ni         -->
//!                            <--    HDR, SAr1, KEr, Nr, [CERTREQ]
//! ```

use super::error::ExchangeError;
use super::ike_sa::*;
use super::payloads::*;
use super::{Datagram, Session, SessionConfig};
use crate::crypto::{self, KeyExchange};
use crate::iana::{DhId, ExchangeType, NotifyType};
use crate::limits;
use crate::proposal::{self, Protocol};
use crate::wire::{Message, Payload, SaPayload};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use tracing::{debug, info};

/// §2.23: NAT detection hash SHA-1(SPIi | SPIr | IP | Port).
pub(super) fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
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
pub(super) fn nat_notifies(
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
pub(super) fn nat_detected_either(
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
pub(super) fn nat_detected(
    payloads: &[Payload],
    spi_i: u64,
    spi_r: u64,
    local: SocketAddr,
    remote: SocketAddr,
) -> bool {
    let (peer_behind, we_behind) = nat_detected_either(payloads, spi_i, spi_r, local, remote);
    peer_behind || we_behind
}

/// The KE group we start with: the first group of our first IKE proposal (§1.2).
pub(crate) fn initial_group(cfg: &SessionConfig) -> DhId {
    cfg.ike
        .iter()
        .flat_map(|p| p.dh.iter())
        .copied()
        .next()
        .unwrap_or(DhId::CURVE25519)
}

impl IkeSa {
    // ---- initiator: IKE_SA_INIT ------------------------------------------------------

    /// Starts the IKE_SA_INIT exchange.
    pub(super) fn start(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
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
                ExchangeError::NoProposal(format!("key exchange {group}: {e}")),
                false,
            ),
        }
    }

    // HDR, [N(COOKIE),] SAi1, KEi, Ni, N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP) -->
    pub(super) fn send_init(&mut self, ctx: &mut Ctx<'_>, now: Instant) {
        let IkeState::InitSent { ke, ni, cookie, .. } = &self.state else {
            return;
        };
        let mut payloads = Vec::new();
        if let Some(c) = cookie {
            payloads.push(notify(NotifyType::COOKIE, c.clone())); // §2.6: first payload
        }
        payloads.push(sa_offer(&ctx.cfg.ike, &[], true));
        payloads.push(ke_payload(ke));
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
    pub(super) fn handle_init_response(
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
                let e = ExchangeError::Syntax("bad COOKIE request".into());
                self.fail(ctx, now, e, false);
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
            let why = match group {
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
                            return;
                        }
                        Err(e) => e.to_string(),
                    }
                }
                _ => format!(
                    "peer demands key exchange group {group:?}, which our proposals do not offer"
                ),
            };
            let notify = NotifyType::INVALID_KE_PAYLOAD;
            self.fail(ctx, now, ExchangeError::Refused { notify, why }, false);
            return;
        }
        let pending = self.pending.take();
        match self.complete_init(ctx, msg, &ke, &ni) {
            Ok((keys, nr, behind_nat)) => {
                let msg1 = pending
                    .and_then(|p| p.packets.into_iter().next())
                    .unwrap_or_default();
                let msg2 = d.data.clone();
                self.send_auth(ctx, now, keys, ni, nr, msg1, msg2, behind_nat);
            }
            Err(e) => self.fail(ctx, now, e, false),
        }
    }

    /// Checks the responder's answer and derives the IKE SA keys (§2.14); floats to
    /// port 4500 behind a NAT (§2.23).
    fn complete_init(
        &mut self,
        ctx: &mut Ctx<'_>,
        msg: &Message,
        ke: &KeyExchange,
        ni: &[u8],
    ) -> Result<(SaKeys, Vec<u8>, bool), ExchangeError> {
        let p = &msg.payloads;
        if let Some(err) = first_error(p) {
            let why = if err.ty == NotifyType::NO_PROPOSAL_CHOSEN {
                format!(
                    "peer accepts none of our IKE proposals [{}]",
                    proposal::describe(&ctx.cfg.ike)
                )
            } else {
                "peer rejected IKE_SA_INIT".to_string()
            };
            return Err(ExchangeError::Refused {
                notify: err.ty,
                why,
            });
        }
        let (Some(sa), Some(ke_r), Some(nr)) = (find!(p, Sa), find!(p, Ke), find!(p, Nonce)) else {
            return Err(ExchangeError::Syntax(
                "IKE_SA_INIT response lacks SA, KE or Nonce".into(),
            ));
        };
        let chosen = match sa.proposals.as_slice() {
            [one] => proposal::choose(&ctx.cfg.ike, std::slice::from_ref(one), Protocol::Ike),
            _ => None,
        };
        let Some((_, sel)) = chosen else {
            return Err(ExchangeError::NoProposal(
                "peer answered with a proposal we did not offer".into(),
            ));
        };
        if sel.dh != Some(ke.group())
            || ke_r.group != ke.group()
            || !nonce_ok(nr)
            || msg.header.spi_r == 0
        {
            return Err(ExchangeError::Syntax(
                "inconsistent IKE_SA_INIT response (group, nonce or SPI)".into(),
            ));
        }
        let shared = ke
            .agree(&ke_r.data)
            .map_err(|e| ExchangeError::Syntax(format!("peer's KE payload: {e}")))?;
        self.spi_r = msg.header.spi_r;
        let keys = crypto::derive_ike_keys(&suite(&sel), &shared, ni, nr, self.spi_i, self.spi_r)
            .and_then(|k| SaKeys::new(sel, k, true))
            .map_err(|e| ExchangeError::NoProposal(format!("key derivation: {e}")))?;
        self.nat =
            ctx.cfg.force_encap || nat_detected(p, self.spi_i, self.spi_r, self.local, self.remote);
        // RFC 7383 §2.3: fragmentation once both ends announce it.
        self.frag_ok = find_notify(p, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some();
        // RFC 3948 §4: keepalives when the mapping in front of us must be kept open.
        let behind_nat = nat_detected_either(p, self.spi_i, self.spi_r, self.local, self.remote).1;
        if self.nat {
            // §2.23: float to 4500 once a NAT is detected.
            self.local.set_port(limits::NATT_PORT);
            self.remote.set_port(limits::NATT_PORT);
        }
        info!(tunnel = %ctx.cfg.name, proposal = %keys.sel, "IKE_SA_INIT done");
        Ok((keys, nr.clone(), behind_nat))
    }

    // ---- responder: IKE_SA_INIT and IKE_AUTH ----------------------------------------

    /// Answers a new IKE_SA_INIT; returns whether to keep this new SA (a refused one
    /// leaves no state, §2.6).
    pub(super) fn handle_init_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        d: &Datagram,
    ) -> bool {
        let result = match Message::decode(&d.data) {
            Ok(msg) => self.answer_init(ctx, d, &msg),
            Err(crate::wire::DecodeError::UnsupportedVersion(v)) => {
                debug!(tunnel = %ctx.cfg.name, version = v, "ignoring IKE_SA_INIT of another major version");
                return false;
            }
            Err(e) => Err(ExchangeError::Syntax(format!(
                "malformed IKE_SA_INIT request: {e}"
            ))),
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                self.refuse(ctx, now, ExchangeType::IKE_SA_INIT, 0, e);
                false
            }
        }
    }

    // HDR, SAi1, KEi, Ni -->  <-- HDR, SAr1, KEr, Nr, N(NAT_DETECTION_*)
    fn answer_init(
        &mut self,
        ctx: &mut Ctx<'_>,
        d: &Datagram,
        msg: &Message,
    ) -> Result<(), ExchangeError> {
        let p = &msg.payloads;
        if let Some(ty) = unknown_critical(p) {
            return Err(ExchangeError::UnsupportedCritical(ty));
        }
        let (Some(sa), Some(ke_i), Some(ni)) = (find!(p, Sa), find!(p, Ke), find!(p, Nonce)) else {
            return Err(ExchangeError::Syntax(
                "request lacks SA, KE or Nonce".into(),
            ));
        };
        if !nonce_ok(ni) {
            return Err(ExchangeError::Syntax("bad nonce length".into()));
        }
        let Some((idx, sel)) = proposal::choose(&ctx.cfg.ike, &sa.proposals, Protocol::Ike) else {
            return Err(ExchangeError::NoProposal(format!(
                "no common IKE proposal: peer offered [{}], we accept [{}]",
                proposal::describe_offered(&sa.proposals, Protocol::Ike),
                proposal::describe(&ctx.cfg.ike)
            )));
        };
        let sel = proposal::prefer_ke_group(
            &ctx.cfg.ike,
            &sa.proposals[idx],
            Protocol::Ike,
            sel,
            ke_i.group,
        );
        let group = sel.dh.unwrap_or(DhId::NONE);
        if group != ke_i.group {
            // §1.2: tell the initiator which group we want.
            return Err(ExchangeError::InvalidKe(group));
        }
        let ke = KeyExchange::generate(group, ctx.rng)
            .map_err(|e| ExchangeError::NoProposal(e.to_string()))?;
        let shared = ke.agree(&ke_i.data).map_err(|e| {
            ExchangeError::Syntax(format!("invalid KE payload from initiator: {e}"))
        })?;
        let nr = random_nonce(ctx);
        let keys = crypto::derive_ike_keys(&suite(&sel), &shared, ni, &nr, self.spi_i, self.spi_r)
            .and_then(|k| SaKeys::new(sel, k, false))
            .map_err(|e| ExchangeError::NoProposal(format!("key derivation: {e}")))?;
        self.nat = ctx.cfg.force_encap || nat_detected(p, self.spi_i, 0, d.local, d.remote);
        let mut payloads = vec![
            Payload::Sa(SaPayload {
                proposals: vec![proposal::selected_to_wire(
                    &sel,
                    Protocol::Ike,
                    sa.proposals[idx].num,
                    vec![],
                )],
            }),
            ke_payload(&ke),
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
        Ok(())
    }
}

impl Session {
    /// §2.6: once too many IKE_SA_INITs from this peer's address are half-open, new
    /// ones must echo a stateless COOKIE first. Returns false if the request was
    /// answered with a COOKIE (or dropped) instead.
    pub(super) fn cookie_ok(&mut self, d: &Datagram, header: &crate::wire::Header) -> bool {
        let half_open = self
            .sas
            .iter()
            .filter(|s| matches!(s.state, IkeState::InitReplied { .. }))
            .count();
        if half_open < limits::COOKIE_THRESHOLD {
            return true;
        }
        let Ok(msg) = crate::wire::Message::decode(&d.data) else {
            return false;
        };
        let Some(ni) = find!(msg.payloads, Nonce) else {
            return false;
        };
        let expect = self.cookie(ni, d.remote.ip(), header.spi_i);
        // §2.6: the COOKIE notification comes first.
        let echoed = matches!(msg.payloads.first(),
            Some(Payload::Notify(n)) if n.ty == crate::iana::NotifyType::COOKIE && crate::crypto::ct_eq(&n.data, &expect));
        if echoed {
            return true;
        }
        tracing::debug!(tunnel = %self.cfg.name, half_open, "asking initiator for a COOKIE");
        let mut h = *header;
        h.flags = crate::wire::Flags(0x20);
        let reply = crate::wire::Message {
            header: h,
            payloads: vec![Payload::Notify(crate::wire::NotifyPayload {
                protocol: crate::iana::ProtocolId::NONE,
                spi: vec![],
                ty: crate::iana::NotifyType::COOKIE,
                data: expect,
            })],
        };
        self.out.push_back(Datagram {
            local: d.local,
            remote: d.remote,
            data: reply.encode(),
        });
        false
    }

    /// Cookie = VersionIDofSecret | prf(secret, Ni | IPi | SPIi) (§2.6).
    pub(super) fn cookie(&self, ni: &[u8], ip: IpAddr, spi_i: u64) -> Vec<u8> {
        use aws_lc_rs::hmac;
        let key = hmac::Key::new(hmac::HMAC_SHA256, self.cookie_secret.as_ref());
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(ni);
        match ip {
            IpAddr::V4(v) => ctx.update(&v.octets()),
            IpAddr::V6(v) => ctx.update(&v.octets()),
        }
        ctx.update(&spi_i.to_be_bytes());
        let mut out = vec![1u8];
        out.extend_from_slice(&ctx.sign().as_ref()[..16]);
        out
    }
}
