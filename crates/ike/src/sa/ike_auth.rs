//! IKE_AUTH, both roles, with the first CHILD SA (§1.2).
//!
//! ```text
//! Initiator                         Responder
//! HDR, SK {IDi, [CERT,] [CERTREQ,] [IDr,] AUTH, SAi2, TSi, TSr}  -->
//!                            <--    HDR, SK {IDr, [CERT,] AUTH, SAr2, TSi, TSr}
//! ```

use super::cert_auth;
use super::child_create::random_esp_spi;
use super::error::ExchangeError;
use super::ike_sa::*;
use super::payloads::*;
use super::{CloseReason, Event};
use crate::crypto::{self};
use crate::iana::{AuthMethod, ExchangeType, NotifyType};
use crate::proposal::{self};
use crate::wire::{AuthPayload, IdPayload, Payload, TsPayload};
use std::time::Instant;
use tracing::{info, warn};

/// DNs compare as names (strongSwan does: encodings differ between implementations),
/// other identities octet for octet.
pub(super) fn id_matches(a: &IdPayload, b: &IdPayload) -> bool {
    crate::cert::ids_equal(a, b)
}

/// Logs the peer certificate that just authenticated and keeps it for `status`.
fn note_peer_cert(ctx: &mut Ctx<'_>, info: crate::cert::CertInfo) {
    info!(tunnel = %ctx.cfg.name, subject = %info.subject, issuer = %info.issuer,
        not_after = %crate::cert::format_unix_date(info.not_after), "peer authenticated with certificate");
    *ctx.peer_cert = Some(info);
}

impl IkeSa {
    // HDR, SK {IDi, N(INITIAL_CONTACT), AUTH, SAi2, TSi, TSr} -->
    #[allow(clippy::too_many_arguments)]
    pub(super) fn send_auth(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        keys: SaKeys,
        ni: Vec<u8>,
        nr: Vec<u8>,
        msg1: Vec<u8>,
        msg2: Vec<u8>,
        behind_nat: bool,
    ) {
        let child_spi = random_esp_spi(ctx, 0);
        let id_i = ctx.cfg.local_id.clone();
        let mut inner = vec![Payload::IdI(id_i.clone())];
        let auth = match &ctx.cfg.cert {
            None => Payload::Auth(AuthPayload {
                method: AuthMethod::PSK,
                reserved: [0; 3],
                data: crypto::psk_auth(
                    keys.prf,
                    &ctx.cfg.psk,
                    &msg1,
                    &nr,
                    &keys.sk_pi,
                    &id_i.body(),
                )
                .to_vec(),
            }),
            // IDi, CERT (leaf, intermediates), CERTREQ, AUTH (§1.2, §3.6, §3.7).
            Some(ca) => {
                inner.extend(cert_auth::our_cert_payloads(ca, true));
                let hashes = self.peer_hashes.as_deref();
                match cert_auth::sign(ca, hashes, keys.prf, &msg1, &nr, &keys.sk_pi, &id_i) {
                    Ok(a) => a,
                    Err(e) => return self.fail(ctx, now, e, false),
                }
            }
        };
        if ctx.cfg.mobike {
            inner.push(notify(NotifyType::MOBIKE_SUPPORTED, vec![]));
        }
        inner.extend(IkeSa::resource_auth_request(ctx));
        inner.extend([
            notify(NotifyType::INITIAL_CONTACT, vec![]),
            auth,
            sa_offer(&ctx.cfg.esp, &child_spi.to_be_bytes(), false),
            Payload::TsI(TsPayload {
                selectors: ctx.cfg.local_ts.clone(),
            }),
            Payload::TsR(TsPayload {
                selectors: ctx.cfg.remote_ts.clone(),
            }),
        ]);
        self.state = IkeState::AuthSent {
            keys,
            ni,
            nr,
            msg2,
            child_spi,
            behind_nat,
        };
        self.send_request(ctx, now, ExchangeType::IKE_AUTH, inner, RequestKind::Auth);
    }

    // <-- HDR, SK {IDr, AUTH, SAr2, TSi, TSr}
    pub(super) fn handle_auth_response(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        inner: &[Payload],
    ) {
        let state = std::mem::replace(&mut self.state, IkeState::Dead { until: now });
        let IkeState::AuthSent {
            keys,
            ni,
            nr,
            msg2,
            child_spi,
            behind_nat,
        } = state
        else {
            self.state = state;
            return;
        };
        self.pending = None;
        let auth = find!(inner, Auth);
        if auth.is_none() {
            let e = match first_error(inner) {
                Some(n) if n.ty == NotifyType::AUTHENTICATION_FAILED => {
                    ExchangeError::Auth(if ctx.cfg.cert.is_some() {
                        "peer rejected our authentication: check our certificate (its ca must be the peer's, not expired), and local_id/remote_id on both ends (see the peer's log)".into()
                    } else {
                        "peer rejected our authentication: check psk and local_id/remote_id on both ends".into()
                    })
                }
                Some(n) => ExchangeError::Refused {
                    notify: n.ty,
                    why: "peer refused IKE_AUTH".into(),
                },
                None => ExchangeError::Syntax("IKE_AUTH response without AUTH".into()),
            };
            self.fail(ctx, now, e, false);
            return;
        }
        let auth = auth.expect("checked above");
        let id_r = find!(inner, IdR);
        let failure = match id_r {
            None => Some("IKE_AUTH response without IDr".to_string()),
            Some(id) if !id_matches(id, &ctx.cfg.remote_id) => Some(format!(
                "responder identity \"{}\" does not match remote_id \"{}\"",
                crate::cert::describe_id(id),
                crate::cert::describe_id(&ctx.cfg.remote_id)
            )),
            Some(id) if ctx.cfg.cert.is_some() => {
                let ca = ctx.cfg.cert.clone().expect("checked by the guard");
                match cert_auth::verify_peer(
                    ctx,
                    &ca,
                    inner,
                    id,
                    auth,
                    keys.prf,
                    &msg2,
                    &ni,
                    &keys.sk_pr,
                ) {
                    Ok(info) => {
                        note_peer_cert(ctx, info);
                        None
                    }
                    Err(e) => Some(e.to_string()),
                }
            }
            Some(id) => {
                let expect =
                    crypto::psk_auth(keys.prf, &ctx.cfg.psk, &msg2, &ni, &keys.sk_pr, &id.body());
                (auth.method != AuthMethod::PSK || !crypto::ct_eq(&expect, &auth.data))
                    .then(|| "responder's AUTH does not verify: pre-shared keys differ".to_string())
            }
        };
        self.state = IkeState::established(keys, now, Some((ni.clone(), nr.clone())));
        if let Some(e) = self.state.established_mut() {
            e.behind_nat = behind_nat;
        }
        if let Some(why) = failure {
            // §2.21.2: tell the responder, then drop the SA.
            let e = ExchangeError::Auth(why);
            let inner = vec![e.notify()];
            let kind = RequestKind::Informational;
            self.send_request(ctx, now, ExchangeType::INFORMATIONAL, inner, kind);
            self.fail(ctx, now, e, false);
            return;
        }
        self.peer_next_id = 0;
        self.mobike = ctx.cfg.mobike && find_notify(inner, NotifyType::MOBIKE_SUPPORTED).is_some();
        self.resource_auth_result(ctx, inner);
        self.announce_established(ctx);
        *ctx.last_error = None;

        // The first CHILD SA (§1.2).
        let exchange = ExchangeType::IKE_AUTH;
        let child_err = self.complete_child(
            ctx,
            inner,
            exchange,
            (child_spi, None, 0),
            &ni,
            Some(&nr),
            None,
        );
        match child_err {
            Ok(info) => {
                self.install_child(ctx, now, info);
                self.queue_resource_children(ctx);
            }
            Err(e) => {
                let ty = e.notify_type();
                let why = format!(
                    "{e} (we offered ESP [{}])",
                    proposal::describe(&ctx.cfg.esp)
                );
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

    /// Logs and reports an IKE SA that just completed IKE_AUTH.
    pub(super) fn announce_established(&self, ctx: &mut Ctx<'_>) {
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

    // HDR, SK {IDi, [IDr,] AUTH, SAi2, TSi, TSr} -->  <-- HDR, SK {IDr, AUTH, SAr2, TSi, TSr}
    pub(super) fn handle_auth_request(
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
        let replied = Replied {
            keys,
            msg1,
            msg2,
            ni,
            nr,
        };
        // Another session may expect this identity: hold the request for the caller.
        if let Some(id_i) = find!(inner, IdI).filter(|id| {
            ctx.cfg.select_by_identity
                && !id_matches(id, &ctx.cfg.remote_id)
                && unknown_critical(inner).is_none()
        }) {
            ctx.events.push_back(Event::PeerIdentity {
                spi_i: self.spi_i,
                spi_r: self.spi_r,
                id_i: id_i.clone(),
                id_r: find!(inner, IdR).cloned(),
                peer: self.remote,
            });
            let request = inner.to_vec();
            let parked = ParkedAuth {
                replied,
                msg_id,
                request,
            };
            self.state = IkeState::AwaitingTunnel(Box::new(parked));
            return;
        }
        self.answer_auth_request(ctx, now, msg_id, inner, replied);
    }

    /// Takes a held IKE_AUTH request up again in this session ([`IkeState::AwaitingTunnel`]):
    /// verified with its credentials, or refused with `refusal`.
    pub(super) fn resume_auth_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        refusal: Option<String>,
    ) {
        let state = std::mem::replace(&mut self.state, IkeState::Dead { until: now });
        let IkeState::AwaitingTunnel(p) = state else {
            self.state = state;
            return;
        };
        let ParkedAuth {
            replied,
            msg_id,
            request,
        } = *p;
        match refusal {
            Some(why) => {
                self.state = IkeState::established(replied.keys, now, None);
                let e = ExchangeError::Auth(why);
                self.refuse(ctx, now, ExchangeType::IKE_AUTH, msg_id, e);
            }
            None => self.answer_auth_request(ctx, now, msg_id, &request, replied),
        }
    }

    /// The rest of [`IkeSa::handle_auth_request`]: verify the initiator, answer with our
    /// AUTH and the first CHILD SA.
    fn answer_auth_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        msg_id: u32,
        inner: &[Payload],
        replied: Replied,
    ) {
        let Replied {
            keys,
            msg1,
            msg2,
            ni,
            nr,
        } = replied;
        self.state = IkeState::established(keys, now, Some((ni.clone(), nr.clone())));
        match self.verify_initiator(ctx, inner, &msg1, &nr) {
            Ok(Some(info)) => note_peer_cert(ctx, info),
            Ok(None) => {}
            Err(e) => {
                self.refuse(ctx, now, ExchangeType::IKE_AUTH, msg_id, e);
                return;
            }
        }
        let keys = self.state.keys().expect("established");
        ctx.initial_contact = find_notify(inner, NotifyType::INITIAL_CONTACT).is_some();
        let id_r = ctx.cfg.local_id.clone();
        let mut out = vec![Payload::IdR(id_r.clone())];
        match &ctx.cfg.cert {
            None => out.push(Payload::Auth(AuthPayload {
                method: AuthMethod::PSK,
                reserved: [0; 3],
                data: crypto::psk_auth(
                    keys.prf,
                    &ctx.cfg.psk,
                    &msg2,
                    &ni,
                    &keys.sk_pr,
                    &id_r.body(),
                )
                .to_vec(),
            })),
            // IDr, CERT (leaf, intermediates), AUTH: our chain answers any CERTREQ (§3.7).
            Some(ca) => {
                let ca = ca.clone();
                out.extend(cert_auth::our_cert_payloads(&ca, false));
                let hashes = self.peer_hashes.as_deref();
                match cert_auth::sign(&ca, hashes, keys.prf, &msg2, &ni, &keys.sk_pr, &id_r) {
                    Ok(a) => out.push(a),
                    Err(e) => return self.refuse(ctx, now, ExchangeType::IKE_AUTH, msg_id, e),
                }
            }
        }
        // RFC 4555 §3.2: MOBIKE when both ends offer it.
        if ctx.cfg.mobike && find_notify(inner, NotifyType::MOBIKE_SUPPORTED).is_some() {
            self.mobike = true;
            out.push(notify(NotifyType::MOBIKE_SUPPORTED, vec![]));
        }
        out.extend(self.resource_auth_response(ctx, now, inner));
        let child = self.accept_child(ctx, inner, None, &ni, &nr, (None, 0));
        match &child {
            Ok((resp, _)) => out.extend(resp.iter().cloned()),
            Err(e) => {
                // §1.2: the IKE SA stands; the Notify in IKE_AUTH refuses only the CHILD SA.
                warn!(tunnel = %ctx.cfg.name, error = %e.notify_type(), "refusing the first CHILD SA: {e}");
                *ctx.last_error = Some(e.status_line());
                out.push(e.notify());
            }
        }
        self.send_response(ctx, ExchangeType::IKE_AUTH, msg_id, out);
        self.announce_established(ctx);
        match child {
            Ok((_, info)) => {
                *ctx.last_error = None;
                self.install_child(ctx, now, info);
            }
            Err(e) => ctx.events.push_back(Event::ChildFailed {
                reason: CloseReason::Failed(e.notify_type(), e.to_string()),
            }),
        }
    }

    /// §2.15: the initiator's identity and AUTH, checked before we answer.
    fn verify_initiator(
        &self,
        ctx: &Ctx<'_>,
        inner: &[Payload],
        msg1: &[u8],
        nr: &[u8],
    ) -> Result<Option<crate::cert::CertInfo>, ExchangeError> {
        if let Some(ty) = unknown_critical(inner) {
            return Err(ExchangeError::UnsupportedCritical(ty));
        }
        let (Some(id_i), Some(auth)) = (find!(inner, IdI), find!(inner, Auth)) else {
            return Err(ExchangeError::Syntax(
                "IKE_AUTH request lacks IDi or AUTH".into(),
            ));
        };
        if !id_matches(id_i, &ctx.cfg.remote_id) {
            return Err(ExchangeError::Auth(format!(
                "peer identity \"{}\" does not match remote_id \"{}\"",
                crate::cert::describe_id(id_i),
                crate::cert::describe_id(&ctx.cfg.remote_id)
            )));
        }
        let keys = self.state.keys().expect("established");
        if let Some(ca) = &ctx.cfg.cert {
            if auth.method == AuthMethod::PSK {
                return Err(ExchangeError::Auth(
                    "peer authenticates with PSK, we require a certificate".into(),
                ));
            }
            return cert_auth::verify_peer(
                ctx,
                ca,
                inner,
                id_i,
                auth,
                keys.prf,
                msg1,
                nr,
                &keys.sk_pi,
            )
            .map(Some);
        }
        if auth.method != AuthMethod::PSK {
            return Err(ExchangeError::Auth(format!(
                "peer authenticates with {}, we require PSK",
                auth.method
            )));
        }
        let expect = crypto::psk_auth(keys.prf, &ctx.cfg.psk, msg1, nr, &keys.sk_pi, &id_i.body());
        if !crypto::ct_eq(&expect, &auth.data) {
            return Err(ExchangeError::Auth(
                "peer's AUTH does not verify: pre-shared keys differ".into(),
            ));
        }
        Ok(None)
    }
}
