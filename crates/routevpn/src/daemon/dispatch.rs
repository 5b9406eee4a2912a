//! Which tunnel an IKE message is for:
//! - a message of an existing IKE SA goes by its SPIs, wherever it comes from (§2.23: a
//!   NAT mapping or the peer's address may change);
//! - a new IKE_SA_INIT goes to the first tunnel configured for that peer address, else
//!   to the first `remote = "%any"` tunnel on that local address;
//! - at IKE_AUTH, when the initiator's identity (IDi) is not the one that tunnel expects,
//!   the half-open SA moves to the tunnel that expects it, IDr as the tie-break (§2.15,
//!   strongSwan's peer-config lookup), and AUTH is verified there, with that tunnel's
//!   credentials only. No tunnel for that identity: AUTHENTICATION_FAILED.

use std::net::SocketAddr;
use std::time::Instant;

use ike::sa::Datagram;
use ike::wire::IdPayload;
use tracing::{info, warn};

use super::tunnel::{id_payload, Tunnel};

/// The tunnel (index) that `d` is for; None when no tunnel takes it.
pub(super) fn tunnel_for(tunnels: &[Tunnel], d: &Datagram) -> Option<usize> {
    let header = ike::wire::Header::decode(&d.data).ok()?;
    if let Some(i) = tunnels.iter().position(|t| t.session.owns(&header)) {
        return Some(i);
    }
    let new_sa = header.exchange == ike::iana::ExchangeType::IKE_SA_INIT
        && header.spi_r == 0
        && !header.flags.response();
    if !new_sa {
        return None;
    }
    // A tunnel configured with this very address beats `%any`.
    tunnels
        .iter()
        .position(|t| t.session.accepts_peer(d) && t.session.configured_peer().is_some())
        .or_else(|| tunnels.iter().position(|t| t.session.accepts_peer(d)))
}

/// A session's IKE_AUTH from an identity it does not expect ([`ike::sa::Event::PeerIdentity`]).
pub(super) struct IdentityQuery {
    /// The tunnel (index) holding the SA.
    pub(super) tunnel: usize,
    pub(super) spi_i: u64,
    pub(super) spi_r: u64,
    pub(super) id_i: IdPayload,
    pub(super) id_r: Option<IdPayload>,
    /// Where the IKE_AUTH came from.
    pub(super) peer: SocketAddr,
}

/// Moves the SA of `q` to the tunnel that expects its identity, or refuses it.
pub(super) fn settle(
    tunnels: &mut [Tunnel],
    q: IdentityQuery,
    now: Instant,
    unix_time: u64,
    admission: &mut ike::Admission,
) {
    let Some(suite) = tunnels
        .get(q.tunnel)
        .and_then(|t| t.session.parked_suite(q.spi_i, q.spi_r))
    else {
        return;
    };
    let local = tunnels[q.tunnel].cfg.local;
    let probe = Datagram {
        local: SocketAddr::new(local, 0),
        remote: q.peer,
        data: Vec::new(),
    };
    let expects = |t: &Tunnel| {
        t.session.accepts_peer(&probe)
            && ike::cert::ids_equal(&id_payload(&t.cfg.remote_id), &q.id_i)
    };
    let hinted = |t: &Tunnel| {
        q.id_r
            .as_ref()
            .is_some_and(|r| ike::cert::ids_equal(&id_payload(&t.cfg.local_id), r))
    };
    let candidates: Vec<usize> = (0..tunnels.len())
        .filter(|&j| j != q.tunnel && expects(&tunnels[j]))
        .collect();
    let target = candidates
        .iter()
        .copied()
        .find(|&j| hinted(&tunnels[j]))
        .or_else(|| candidates.first().copied());
    let who = ike::cert::describe_id(&q.id_i);
    let refusal = match target {
        None => Some(format!(
            "no tunnel expects peer identity \"{who}\" from {} (tunnels for that address expect {})",
            q.peer.ip(),
            expected_here(tunnels, &probe)
        )),
        Some(j) if !tunnels[j].session.accepts_ike_suite(&suite) => Some(format!(
            "tunnel {} expects peer identity \"{who}\" but not the IKE proposal {suite} that \
             IKE_SA_INIT chose under tunnel {}: give tunnels sharing a peer address the same ike proposals",
            tunnels[j].cfg.name, tunnels[q.tunnel].cfg.name
        )),
        Some(_) => None,
    };
    let from = &mut tunnels[q.tunnel];
    if let Some(why) = refusal {
        warn!(peer = %q.peer, identity = %who, "refusing IKE_AUTH: {why}");
        from.session
            .refuse_identity(now, q.spi_i, q.spi_r, why, admission);
        return;
    }
    let Some(sa) = from.session.detach(q.spi_i, q.spi_r, admission) else {
        return;
    };
    let j = target.expect("refused above when None");
    info!(peer = %q.peer, identity = %who, from = %tunnels[q.tunnel].cfg.name,
        to = %tunnels[j].cfg.name, "peer identity picks the tunnel");
    let to = &mut tunnels[j];
    to.note_ike(now);
    to.session.set_unix_time(unix_time);
    to.session.adopt(now, sa, admission);
}

/// What the tunnels reachable from `probe`'s sender expect, for the refusal: a few
/// `"id" (tunnel)` pairs.
fn expected_here(tunnels: &[Tunnel], probe: &Datagram) -> String {
    const SHOWN: usize = 4;
    let here: Vec<String> = tunnels
        .iter()
        .filter(|t| t.session.accepts_peer(probe))
        .map(|t| format!("\"{}\" ({})", t.cfg.remote_id, t.cfg.name))
        .collect();
    let more = here.len().saturating_sub(SHOWN);
    let mut text = here.into_iter().take(SHOWN).collect::<Vec<_>>().join(", ");
    if more > 0 {
        text.push_str(&format!(" and {more} more"));
    }
    text
}
