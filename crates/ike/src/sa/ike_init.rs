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
use zeroize::Zeroizing;

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
        if ctx.cfg.cert.is_some() {
            // RFC 7427 §4: the hashes we verify signatures with.
            let hashes = crate::cert::hash_algorithms_notify();
            payloads.push(notify(NotifyType::SIGNATURE_HASH_ALGORITHMS, hashes));
        }
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
        self.peer_hashes = find_notify(p, NotifyType::SIGNATURE_HASH_ALGORITHMS)
            .map(|n| crate::cert::parse_hash_algorithms(&n.data));
        // RFC 3948 §4: keepalives when the mapping in front of us must be kept open.
        let behind_nat = nat_detected_either(p, self.spi_i, self.spi_r, self.local, self.remote).1;
        if behind_nat && self.local.ip().is_unspecified() {
            // A dynamic local address is not known here, so NAT-D cannot clear it.
            info!(tunnel = %ctx.cfg.name, "our address is dynamic: assuming a NAT in front of us, NAT keepalives on (RFC 3948 §4)");
        } else if behind_nat {
            info!(tunnel = %ctx.cfg.name, "NAT detected in front of us: NAT keepalives on (RFC 3948 §4)");
        }
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
        // §2.6: every check that needs no private-key work comes before key generation.
        crypto::validate_peer_public(group, &ke_i.data).map_err(|e| {
            ExchangeError::Syntax(format!("invalid KE payload from initiator: {e}"))
        })?;
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
        // <-- HDR, SAr1, KEr, Nr, [CERTREQ]: asks the initiator for its certificate.
        if let Some(ca) = &ctx.cfg.cert {
            payloads.extend(super::cert_auth::certreq_payload(ca));
        }
        payloads.extend(nat_notifies(ctx, self.spi_i, self.spi_r, d.local, d.remote));
        if find_notify(p, NotifyType::IKEV2_FRAGMENTATION_SUPPORTED).is_some() {
            self.frag_ok = true;
            payloads.push(notify(NotifyType::IKEV2_FRAGMENTATION_SUPPORTED, vec![]));
        }
        self.peer_hashes = find_notify(p, NotifyType::SIGNATURE_HASH_ALGORITHMS)
            .map(|n| crate::cert::parse_hash_algorithms(&n.data));
        if ctx.cfg.cert.is_some() {
            // RFC 7427 §4: answered whether or not the initiator sent its own.
            let hashes = crate::cert::hash_algorithms_notify();
            payloads.push(notify(NotifyType::SIGNATURE_HASH_ALGORITHMS, hashes));
        }
        let msg2 = Message {
            header: self.header(ExchangeType::IKE_SA_INIT, 0, true),
            payloads,
        }
        .encode();
        self.transmit(ctx, msg2.clone());
        self.last_response = Some((0, vec![msg2.clone()]));
        self.last_request = Some(RequestDigest::of(&d.data));
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

/// §2.6 stateless COOKIE state of one session (one peer address): the current and
/// previous secret (the cookie's first octet names which), and a one-second count of
/// new IKE_SA_INIT requests, accepted or refused.
pub(super) struct Cookies {
    secret: Zeroizing<[u8; 32]>,
    previous: Option<Zeroizing<[u8; 32]>>,
    version: u8,
    secret_born: Instant,
    requests: crate::admission::RateWindow,
}

impl Cookies {
    pub(super) fn new(rng: &mut dyn crate::Rng, now: Instant) -> Cookies {
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill(secret.as_mut());
        Cookies {
            secret,
            previous: None,
            version: 1,
            secret_born: now,
            requests: Default::default(),
        }
    }

    /// Counts one new IKE_SA_INIT; true when the recent rate calls for COOKIEs.
    fn note_request(&mut self, now: Instant) -> bool {
        self.requests.note(now) > limits::COOKIE_RATE
    }

    fn rotate_if_due(&mut self, rng: &mut dyn crate::Rng, now: Instant) {
        if now.saturating_duration_since(self.secret_born) < limits::COOKIE_SECRET_LIFETIME {
            return;
        }
        let mut fresh = Zeroizing::new([0u8; 32]);
        rng.fill(fresh.as_mut());
        self.previous = Some(std::mem::replace(&mut self.secret, fresh));
        self.version = self.version.wrapping_add(1).max(1);
        self.secret_born = now;
    }

    /// Cookie = VersionIDofSecret | prf(secret, Ni | IPi | SPIi) (§2.6).
    fn make(&self, version: u8, ni: &[u8], ip: IpAddr, spi_i: u64) -> Option<Vec<u8>> {
        use aws_lc_rs::hmac;
        let previous = if self.version <= 1 {
            u8::MAX
        } else {
            self.version - 1
        };
        let secret = if version == self.version {
            &self.secret
        } else if version == previous {
            self.previous.as_ref()?
        } else {
            return None;
        };
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_ref());
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(ni);
        match ip {
            IpAddr::V4(v) => ctx.update(&v.octets()),
            IpAddr::V6(v) => ctx.update(&v.octets()),
        }
        ctx.update(&spi_i.to_be_bytes());
        let mut out = vec![version];
        out.extend_from_slice(&ctx.sign().as_ref()[..16]);
        Some(out)
    }
}

impl Session {
    /// §2.6: when IKE_SA_INITs from this peer's address come fast (refused ones count)
    /// or too many are half-open, or the same holds daemon-wide (`admission`, all
    /// tunnels), new ones must echo a stateless COOKIE first. Returns false if the
    /// request was answered with a COOKIE (or dropped) instead.
    pub(super) fn cookie_ok(
        &mut self,
        now: Instant,
        d: &Datagram,
        header: &crate::wire::Header,
        admission: Option<&mut crate::Admission>,
    ) -> bool {
        let busy = self.cookies.note_request(now);
        // Counted whatever this peer's own state: a flood spread over many tunnels.
        let global = admission.is_some_and(|a| a.note_request(now));
        let half_open = self.half_open();
        if !busy && !global && half_open < limits::COOKIE_THRESHOLD {
            return true;
        }
        self.cookies.rotate_if_due(self.rng.as_mut(), now);
        let Ok(msg) = crate::wire::Message::decode(&d.data) else {
            return false;
        };
        let Some(ni) = find!(msg.payloads, Nonce) else {
            return false;
        };
        let ip = d.remote.ip();
        // §2.6: the COOKIE notification comes first.
        let echoed = matches!(msg.payloads.first(),
            Some(Payload::Notify(n)) if n.ty == crate::iana::NotifyType::COOKIE
                && n.data.first().and_then(|&v| self.cookies.make(v, ni, ip, header.spi_i))
                    .is_some_and(|want| crate::crypto::ct_eq(&n.data, &want)));
        if echoed {
            return true;
        }
        let Some(expect) = self
            .cookies
            .make(self.cookies.version, ni, ip, header.spi_i)
        else {
            return false;
        };
        tracing::trace!(tunnel = %self.cfg.name, half_open, busy, global, "asking initiator for a COOKIE");
        let mut h = *header;
        h.flags = crate::wire::Flags(crate::wire::Flags::RESPONSE);
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

    /// Half-open IKE SAs of this peer (IKE_SA_INIT answered, IKE_AUTH not yet).
    pub fn half_open(&self) -> usize {
        self.sas.iter().filter(|s| s.state.is_half_open()).count()
    }

    /// §2.6: at most [`limits::MAX_HALF_OPEN`] half-open SAs per peer, and none beyond
    /// [`limits::GLOBAL_MAX_HALF_OPEN`] daemon-wide; the oldest of this peer's makes
    /// room. False when the daemon-wide cap is reached and this peer has none to give.
    pub(super) fn make_room_for_half_open(&mut self, global_full: bool) -> bool {
        let half_open: Vec<usize> = (0..self.sas.len())
            .filter(|&i| self.sas[i].state.is_half_open())
            .collect();
        if half_open.len() >= limits::MAX_HALF_OPEN || global_full {
            let Some(&oldest) = half_open.iter().min_by_key(|&&i| self.sas[i].created) else {
                tracing::debug!(tunnel = %self.cfg.name, "too many half-open IKE SAs daemon-wide: dropping IKE_SA_INIT");
                return false;
            };
            tracing::debug!(tunnel = %self.cfg.name, "dropping the oldest half-open IKE SA");
            self.sas.remove(oldest);
        }
        true
    }

    /// Brings the daemon-wide half-open count up to date with this session's.
    pub(super) fn sync_admission(&mut self, admission: &mut crate::Admission) {
        let is = self.half_open();
        admission.replace_half_open(self.admitted_half_open, is);
        self.admitted_half_open = is;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    struct Counter(u8);
    impl crate::Rng for Counter {
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                self.0 = self.0.wrapping_add(13);
                *b = self.0;
            }
        }
    }

    /// §2.6: a cookie stays valid across one secret rotation (version octet), not two;
    /// the secret only rotates once its lifetime is over.
    #[test]
    fn cookie_secret_rotation_honours_the_previous_secret_only() {
        let t0 = Instant::now();
        let mut rng = Counter(1);
        let mut c = Cookies::new(&mut rng, t0);
        let ip: IpAddr = "192.0.2.2".parse().unwrap();
        let issued = c.make(c.version, b"nonce", ip, 7).unwrap();
        c.rotate_if_due(&mut rng, t0 + limits::COOKIE_SECRET_LIFETIME / 2);
        assert_eq!(c.make(issued[0], b"nonce", ip, 7).as_ref(), Some(&issued));
        c.rotate_if_due(&mut rng, t0 + limits::COOKIE_SECRET_LIFETIME);
        assert_ne!(c.version, issued[0], "rotated");
        assert_eq!(c.make(issued[0], b"nonce", ip, 7).as_ref(), Some(&issued));
        assert_ne!(c.make(c.version, b"nonce", ip, 7).as_ref(), Some(&issued));
        c.rotate_if_due(&mut rng, t0 + limits::COOKIE_SECRET_LIFETIME * 2);
        assert_eq!(
            c.make(issued[0], b"nonce", ip, 7),
            None,
            "two rotations ago"
        );
    }

    /// §2.6: more than COOKIE_RATE new requests in a second call for cookies; a quiet
    /// second in between forgets the load.
    #[test]
    fn request_rate_window() {
        let t0 = Instant::now();
        let mut c = Cookies::new(&mut Counter(1), t0);
        let busy: Vec<bool> = (0..=limits::COOKIE_RATE)
            .map(|_| c.note_request(t0))
            .collect();
        assert!(!busy[..limits::COOKIE_RATE as usize].iter().any(|&b| b));
        assert!(busy[limits::COOKIE_RATE as usize]);
        // The next second still remembers the busy one.
        assert!(c.note_request(t0 + Duration::from_millis(1500)));
        // After a quiet second it does not.
        assert!(!c.note_request(t0 + Duration::from_secs(5)));
    }
}
