//! The states of one IKE SA (RFC 7296 §1.2, §2.8) and what each owns: negotiated keys,
//! the half-open steps, and an established SA's timers and rekey bookkeeping.

use crate::crypto::{IkeKeys, KeyExchange, Prf, SkCipher};
use crate::proposal::Selected;
use crate::wire::Payload;
use std::time::Instant;
use zeroize::Zeroizing;

/// Negotiated IKE SA keys and algorithms.
pub(crate) struct SaKeys {
    pub sel: Selected,
    pub prf: Prf,
    pub sk_d: Zeroizing<Vec<u8>>,
    pub sk_pi: Zeroizing<Vec<u8>>,
    pub sk_pr: Zeroizing<Vec<u8>>,
    pub out: SkCipher,
    pub inb: SkCipher,
}

impl SaKeys {
    /// Splits §2.14 keys into our directions.
    pub fn new(
        sel: Selected,
        keys: IkeKeys,
        initiator: bool,
    ) -> Result<Self, crate::crypto::CryptoError> {
        let prf = Prf::new(sel.prf.unwrap_or_default())?;
        let integ = sel.integ.unwrap_or(crate::iana::IntegId::NONE);
        let i2r = SkCipher::new(sel.encr.0, sel.encr.1, integ, &keys.sk_ei, &keys.sk_ai)?;
        let r2i = SkCipher::new(sel.encr.0, sel.encr.1, integ, &keys.sk_er, &keys.sk_ar)?;
        let (out, inb) = if initiator { (i2r, r2i) } else { (r2i, i2r) };
        Ok(SaKeys {
            sel,
            prf,
            sk_d: keys.sk_d,
            sk_pi: keys.sk_pi,
            sk_pr: keys.sk_pr,
            out,
            inb,
        })
    }
}

/// IKE SA state; each variant owns what is valid in it.
pub(crate) enum IkeState {
    /// HDR, SAi1, KEi, Ni --> sent; waiting for the response.
    InitSent {
        ke: KeyExchange,
        ni: Vec<u8>,
        cookie: Option<Vec<u8>>,
        invalid_ke_retries: u32,
    },
    /// HDR, SK {IDi, AUTH, SAi2, TSi, TSr} --> sent.
    AuthSent {
        keys: SaKeys,
        ni: Vec<u8>,
        nr: Vec<u8>,
        msg2: Vec<u8>,
        child_spi: u32,
        /// A NAT in front of us, seen in IKE_SA_INIT (§2.23).
        behind_nat: bool,
    },
    /// <-- HDR, SAr1, KEr, Nr sent; waiting for IKE_AUTH.
    InitReplied {
        keys: SaKeys,
        msg1: Vec<u8>,
        msg2: Vec<u8>,
        ni: Vec<u8>,
        nr: Vec<u8>,
    },
    /// IKE_AUTH arrived from an identity this session does not expect (only with
    /// `select_by_identity`): held, unanswered, until the caller hands the SA to the
    /// session that expects that identity or refuses it.
    AwaitingTunnel(Box<ParkedAuth>),
    /// IKE_AUTH done (or created by a rekey): CHILD SAs, rekeys and liveness checks.
    Established(Established),
    /// Delete(IKE) sent; waiting for its response (§1.4.1).
    Deleting { keys: SaKeys },
    /// Gone; kept only to answer retransmissions until `until`.
    Dead { until: Instant },
}

impl IkeState {
    /// What only an established SA has.
    pub fn established_mut(&mut self) -> Option<&mut Established> {
        match self {
            IkeState::Established(e) => Some(e),
            _ => None,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            IkeState::InitSent { .. } => "connecting",
            IkeState::AuthSent { .. } => "authenticating",
            IkeState::InitReplied { .. } | IkeState::AwaitingTunnel(_) => "half-open",
            IkeState::Established(_) => "established",
            IkeState::Deleting { .. } => "deleting",
            IkeState::Dead { .. } => "dead",
        }
    }

    pub fn keys(&self) -> Option<&SaKeys> {
        match self {
            IkeState::AuthSent { keys, .. }
            | IkeState::InitReplied { keys, .. }
            | IkeState::Established(Established { keys, .. })
            | IkeState::Deleting { keys } => Some(keys),
            IkeState::AwaitingTunnel(p) => Some(&p.replied.keys),
            _ => None,
        }
    }
}

/// A responder's half-open SA and the IKE_AUTH request it holds (§2.15: the request is
/// verified with the credentials of the session that takes it).
pub(crate) struct ParkedAuth {
    pub replied: Replied,
    pub msg_id: u32,
    pub request: Vec<Payload>,
}

/// What [`IkeState::InitReplied`] holds, on its way to IKE_AUTH's answer.
pub(crate) struct Replied {
    pub keys: SaKeys,
    pub msg1: Vec<u8>,
    pub msg2: Vec<u8>,
    pub ni: Vec<u8>,
    pub nr: Vec<u8>,
}

impl IkeState {
    /// A responder waiting for IKE_AUTH (answered IKE_SA_INIT, nothing authenticated).
    pub fn is_half_open(&self) -> bool {
        matches!(
            self,
            IkeState::InitReplied { .. } | IkeState::AwaitingTunnel(_)
        )
    }
}

/// What only an established IKE SA has.
pub(crate) struct Established {
    pub keys: SaKeys,
    pub established_at: Instant,
    /// When to rekey this SA (§2.8); armed by the timer table.
    pub rekey_at: Option<Instant>,
    /// Last authenticated message (or ESP traffic) from the peer, for liveness checks.
    pub last_rx: Instant,
    /// A NAT in front of us (the peer's NAT_DETECTION_DESTINATION_IP did not match):
    /// keepalives hold its mapping open (RFC 3948 §4).
    pub behind_nat: bool,
    /// Ni and Nr of IKE_SA_INIT, to settle duplicate IKE SAs (none after a rekey, or
    /// once the duplicate is settled).
    pub init_nonces: Option<(Vec<u8>, Vec<u8>)>,
    /// The peer's rekey of this IKE SA that crossed ours (§2.8.2): its Ni, our Nr and
    /// the SPIi of the SA it created.
    pub peer_rekey: Option<(Vec<u8>, Vec<u8>, u64)>,
    /// When a newer IKE SA took over from this one (§2.8): the peer deletes it, or we
    /// do after [`limits::REDUNDANT_IKE_SA_GRACE`].
    pub superseded_at: Option<Instant>,
}

impl IkeState {
    /// A freshly established IKE SA.
    pub fn established(
        keys: SaKeys,
        now: Instant,
        init_nonces: Option<(Vec<u8>, Vec<u8>)>,
    ) -> Self {
        IkeState::Established(Established {
            keys,
            established_at: now,
            rekey_at: None,
            last_rx: now,
            behind_nat: false,
            init_nonces,
            peer_rekey: None,
            superseded_at: None,
        })
    }
}
