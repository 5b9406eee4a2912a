//! Payload helpers shared by the exchanges: building and finding Notify, KE and SA
//! payloads, nonces and SPIs.

use super::ike_sa::Ctx;
use crate::crypto::{KeyExchange, Suite};
use crate::iana::{DhId, NotifyType, PayloadType, ProtocolId};
use crate::limits;
use crate::proposal::{self, AlgorithmProposal, Selected};
use crate::wire::{KePayload, NotifyPayload, Payload, SaPayload};

/// Peer messages are checked against these before any state changes.
pub(super) fn unknown_critical(payloads: &[Payload]) -> Option<PayloadType> {
    payloads.iter().find_map(|p| match p {
        Payload::Unknown {
            ty, critical: true, ..
        } => Some(*ty),
        _ => None,
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

pub(super) fn nonce_ok(n: &[u8]) -> bool {
    (limits::NONCE_MIN..=limits::NONCE_MAX).contains(&n.len())
}

pub(super) fn random_nonce(ctx: &mut Ctx<'_>) -> Vec<u8> {
    let mut n = vec![0u8; limits::NONCE_LEN];
    ctx.rng.fill(&mut n);
    n
}

/// A new IKE SPI for a rekeyed SA (§1.3.2); never zero.
pub(super) fn random_ike_spi(ctx: &mut Ctx<'_>) -> u64 {
    let mut b = [0u8; 8];
    ctx.rng.fill(&mut b);
    u64::from_be_bytes(b) | 1
}

/// KE payload with our public value (§3.4).
pub(super) fn ke_payload(ke: &KeyExchange) -> Payload {
    Payload::Ke(KePayload {
        group: ke.group(),
        reserved: 0,
        data: ke.public_value().to_vec(),
    })
}

/// SA payload offering our configured proposals, numbered from 1 (§3.3).
pub(super) fn sa_offer(ps: &[AlgorithmProposal], spi: &[u8], with_dh: bool) -> Payload {
    let proposals = ps
        .iter()
        .enumerate()
        .map(|(i, p)| proposal::to_wire(p, (i + 1) as u8, spi.to_vec(), with_dh))
        .collect();
    Payload::Sa(SaPayload { proposals })
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
