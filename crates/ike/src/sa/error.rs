//! Why an exchange failed, and the one place that turns such an error into the Notify
//! we answer with (§2.21, §3.10.1), the log line and the status `last_error`.

use super::ike_sa::{Ctx, IkeSa, IkeState};
use super::CloseReason;
use crate::iana::{DhId, ExchangeType, NotifyType, PayloadType, ProtocolId};
use crate::limits;
use crate::wire::{Message, NotifyPayload, Payload};
use std::time::Instant;
use tracing::{debug, warn};

/// An error in one exchange. Its text is what users see in logs and `status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// A message that is malformed or contradicts itself (§2.21.1).
    #[error("{0}")]
    Syntax(String),
    /// A critical payload we do not implement (§2.5; data: its type).
    #[error("unsupported critical payload {0}")]
    UnsupportedCritical(PayloadType),
    /// No proposal acceptable to both ends (§2.7).
    #[error("{0}")]
    NoProposal(String),
    /// The KE payload is not of the group we chose (§1.2, §1.3; data: that group).
    #[error("want group {0}")]
    InvalidKe(DhId),
    /// Identity or AUTH does not verify (§2.15).
    #[error("{0}")]
    Auth(String),
    /// Traffic selectors that do not fit ours (§2.9).
    #[error("{0}")]
    TsUnacceptable(String),
    /// Cannot be done now (§2.25).
    #[error("{0}")]
    Temporary(String),
    /// The peer rekeys a CHILD SA we already replaced and are deleting (§2.25).
    #[error("CHILD SA is being rekeyed")]
    RekeyInProgress,
    /// The peer rekeys a CHILD SA we do not have (§2.25; the Notify names its SPI).
    #[error("peer rekeys a CHILD SA we do not have")]
    ChildSaNotFound { protocol: ProtocolId, spi: Vec<u8> },
    /// A request of an exchange type not allowed in this state.
    #[error("unexpected {0} request")]
    UnexpectedExchange(ExchangeType),
    /// RFC 9611 §5.2: no more per-resource CHILD SAs with these selectors.
    #[error("{0}")]
    TsMaxQueue(String),
    /// The peer answered our request with this error Notify.
    #[error("{why}")]
    Refused { notify: NotifyType, why: String },
}

/// Certificate, identity and signature failures all end IKE_AUTH with
/// AUTHENTICATION_FAILED (§2.21.2); the text names the certificate and what is wrong.
impl From<crate::cert::CertError> for ExchangeError {
    fn from(e: crate::cert::CertError) -> ExchangeError {
        ExchangeError::Auth(e.to_string())
    }
}

impl ExchangeError {
    /// The error Notify type that reports this error.
    pub fn notify_type(&self) -> NotifyType {
        match self {
            ExchangeError::Syntax(_) | ExchangeError::UnexpectedExchange(_) => {
                NotifyType::INVALID_SYNTAX
            }
            ExchangeError::UnsupportedCritical(_) => NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD,
            ExchangeError::NoProposal(_) => NotifyType::NO_PROPOSAL_CHOSEN,
            ExchangeError::InvalidKe(_) => NotifyType::INVALID_KE_PAYLOAD,
            ExchangeError::Auth(_) => NotifyType::AUTHENTICATION_FAILED,
            ExchangeError::TsUnacceptable(_) => NotifyType::TS_UNACCEPTABLE,
            ExchangeError::Temporary(_) | ExchangeError::RekeyInProgress => {
                NotifyType::TEMPORARY_FAILURE
            }
            ExchangeError::ChildSaNotFound { .. } => NotifyType::CHILD_SA_NOT_FOUND,
            ExchangeError::TsMaxQueue(_) => NotifyType::TS_MAX_QUEUE,
            ExchangeError::Refused { notify, .. } => *notify,
        }
    }

    /// The Notify payload we answer with (§3.10.1: data as each type defines it).
    pub fn notify(&self) -> Payload {
        let (protocol, spi, data) = match self {
            ExchangeError::UnsupportedCritical(ty) => (ProtocolId::NONE, vec![], vec![ty.0]),
            ExchangeError::InvalidKe(group) => {
                (ProtocolId::NONE, vec![], group.0.to_be_bytes().to_vec())
            }
            ExchangeError::ChildSaNotFound { protocol, spi } => (*protocol, spi.clone(), vec![]),
            _ => (ProtocolId::NONE, vec![], vec![]),
        };
        Payload::Notify(NotifyPayload {
            protocol,
            spi,
            ty: self.notify_type(),
            data,
        })
    }

    /// Protocol housekeeping rather than a disagreement worth a warning and a status line.
    fn is_routine(&self) -> bool {
        matches!(
            self,
            ExchangeError::UnsupportedCritical(_)
                | ExchangeError::RekeyInProgress
                | ExchangeError::ChildSaNotFound { .. }
                | ExchangeError::UnexpectedExchange(_)
                | ExchangeError::TsMaxQueue(_)
        )
    }

    /// `last_error` as `status` shows it.
    pub fn status_line(&self) -> String {
        format!("{}: {}", self.notify_type(), self.bounded())
    }

    /// The text, cut to [`limits::MAX_LOGGED_TEXT`]: much of it can come from the peer
    /// (proposals, identities), and a spoofed 60 KB list must not become 60 KB of log.
    pub fn bounded(&self) -> String {
        bounded_text(self.to_string())
    }
}

/// `text` cut at a character boundary to [`limits::MAX_LOGGED_TEXT`] octets, saying how
/// much was left out.
pub(crate) fn bounded_text(mut text: String) -> String {
    if text.len() <= limits::MAX_LOGGED_TEXT {
        return text;
    }
    let mut cut = limits::MAX_LOGGED_TEXT;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let dropped = text.len() - cut;
    text.truncate(cut);
    text.push_str(&format!("… ({dropped} more bytes)"));
    text
}

/// Rate limit of the log lines for refused IKE_SA_INITs of one session (they cost an
/// attacker nothing to provoke).
#[derive(Debug)]
pub(crate) struct RefusalLog {
    window_start: Option<Instant>,
    printed: u32,
    suppressed: u64,
}

impl RefusalLog {
    pub(crate) const fn new() -> RefusalLog {
        RefusalLog {
            window_start: None,
            printed: 0,
            suppressed: 0,
        }
    }

    /// Some(number suppressed since the last printed line) if this one may be printed.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        let fresh = self
            .window_start
            .is_none_or(|t| now.saturating_duration_since(t) >= std::time::Duration::from_secs(1));
        if fresh {
            self.window_start = Some(now);
            self.printed = 0;
        }
        if self.printed >= limits::REFUSAL_LOGS_PER_SEC {
            self.suppressed += 1;
            return None;
        }
        self.printed += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl IkeSa {
    /// Ends this SA after a negotiation error; `keep_for_retransmits` leaves the cached
    /// response available to the peer for a while.
    pub(super) fn fail(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        err: ExchangeError,
        keep_for_retransmits: bool,
    ) {
        let ty = err.notify_type();
        let why = err.bounded();
        warn!(tunnel = %ctx.cfg.name, error = %ty, peer = %self.remote, "IKE SA failed: {why}");
        *ctx.last_error = Some(err.status_line());
        self.report_closed(ctx, CloseReason::Failed(ty, why));
        self.pending = None;
        let until = if keep_for_retransmits {
            now + limits::HALF_OPEN_TIMEOUT
        } else {
            now
        };
        self.state = IkeState::Dead { until };
    }

    /// Refuses the peer's request `msg_id` of `exchange` because of `err`: the one place
    /// an error becomes the Notify we answer with, a log line and `last_error`.
    pub(super) fn refuse(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        exchange: ExchangeType,
        msg_id: u32,
        err: ExchangeError,
    ) {
        match exchange {
            // §2.6, §2.21.1: answered without keeping state, so not protected.
            ExchangeType::IKE_SA_INIT => {
                if let ExchangeError::NoProposal(_) = err {
                    *ctx.last_error = Some(err.status_line());
                }
                if let Some(suppressed) = ctx.refusals.allow(now) {
                    let why = err.bounded();
                    if let ExchangeError::NoProposal(_) = err {
                        warn!(tunnel = %ctx.cfg.name, peer = %self.remote, suppressed, "{why}");
                    } else {
                        debug!(tunnel = %ctx.cfg.name, peer = %self.remote, suppressed, error = %why, "refusing IKE_SA_INIT");
                    }
                }
                let mut header = self.header(ExchangeType::IKE_SA_INIT, 0, true);
                header.spi_r = 0; // §2.6/§2.21.1: no responder SPI on a stateless error reply
                let msg = Message {
                    header,
                    payloads: vec![err.notify()],
                };
                self.transmit(ctx, msg.encode());
            }
            // §2.21.2: a failed IKE_AUTH ends the IKE SA; the answer stays cached for
            // retransmissions.
            ExchangeType::IKE_AUTH => {
                self.send_response(ctx, exchange, msg_id, vec![err.notify()]);
                self.fail(ctx, now, err, true);
            }
            _ => {
                let why = err.bounded();
                if err.is_routine() {
                    debug!(tunnel = %ctx.cfg.name, %exchange, error = %why, "refusing request");
                } else {
                    let ty = err.notify_type();
                    warn!(tunnel = %ctx.cfg.name, error = %ty, "refusing {exchange}: {why}");
                    *ctx.last_error = Some(format!("{ty}: refused peer's {exchange}: {why}"));
                }
                self.send_response(ctx, exchange, msg_id, vec![err.notify()]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_is_bounded_and_refusal_logs_rate_limited() {
        let long = ExchangeError::NoProposal("x".repeat(60_000));
        assert!(long.status_line().len() < limits::MAX_LOGGED_TEXT + 64);
        assert!(
            long.bounded().ends_with("(59700 more bytes)"),
            "{}",
            long.bounded()
        );
        // A multi-octet character at the cut is not split.
        let text = "é".repeat(400);
        assert!(bounded_text(text).is_char_boundary(limits::MAX_LOGGED_TEXT));
        let t0 = Instant::now();
        let mut log = RefusalLog::new();
        let printed = (0..1000).filter(|_| log.allow(t0).is_some()).count();
        assert_eq!(printed, limits::REFUSAL_LOGS_PER_SEC as usize);
        // The next second prints again and says how many were left out.
        let next = t0 + std::time::Duration::from_secs(1);
        assert_eq!(
            log.allow(next),
            Some(1000 - u64::from(limits::REFUSAL_LOGS_PER_SEC))
        );
    }

    #[test]
    fn mapping() {
        let e = ExchangeError::InvalidKe(DhId::CURVE25519);
        assert_eq!(e.notify_type(), NotifyType::INVALID_KE_PAYLOAD);
        let Payload::Notify(n) = e.notify() else {
            panic!()
        };
        assert_eq!(n.data, DhId::CURVE25519.0.to_be_bytes());
        let e = ExchangeError::UnsupportedCritical(PayloadType(99));
        let Payload::Notify(n) = e.notify() else {
            panic!()
        };
        assert_eq!(
            (n.ty, n.data),
            (NotifyType::UNSUPPORTED_CRITICAL_PAYLOAD, vec![99])
        );
        let e = ExchangeError::ChildSaNotFound {
            protocol: ProtocolId::ESP,
            spi: vec![1, 2, 3, 4],
        };
        let Payload::Notify(n) = e.notify() else {
            panic!()
        };
        assert_eq!((n.protocol, n.spi), (ProtocolId::ESP, vec![1, 2, 3, 4]));
        assert_eq!(
            ExchangeError::Auth("x".into()).status_line(),
            "AUTHENTICATION_FAILED: x"
        );
    }
}
