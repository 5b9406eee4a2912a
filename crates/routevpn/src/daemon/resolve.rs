//! `remote = "vpn.example.net"`: the peer's name, resolved at start and again while the
//! tunnel is down (a peer on a dynamic-DNS address moves), off the event loop.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::warn;

use super::event_loop::Input;
use super::tunnel::Tunnel;

/// While a named peer's tunnel is down, its name is looked up again this often.
const RESOLVE_RETRY: Duration = Duration::from_secs(10);

/// Starts a lookup for every named peer whose tunnel is not established and whose last
/// lookup is older than [`RESOLVE_RETRY`] (or never happened).
pub(super) fn resolve_due(tunnels: &mut [Tunnel], now: Instant, tx: &mpsc::Sender<Input>) {
    for t in tunnels.iter_mut() {
        let Some(host) = t.cfg.remote_host.clone() else {
            continue;
        };
        let due = t
            .resolved_at
            .is_none_or(|at| now.saturating_duration_since(at) >= RESOLVE_RETRY);
        if !due || t.session.is_established() {
            continue;
        }
        t.resolved_at = Some(now);
        let (tunnel, v6, tx) = (t.cfg.name.clone(), t.cfg.local.is_ipv6(), tx.clone());
        tokio::spawn(async move {
            let addr = match tokio::net::lookup_host((host.as_str(), 0)).await {
                // The first address of our family, in the resolver's order.
                Ok(addrs) => addrs.map(|a| a.ip()).find(|ip| ip.is_ipv6() == v6),
                Err(e) => {
                    warn!(tunnel = %tunnel, %host, error = %e, "cannot resolve the peer's name");
                    None
                }
            };
            if addr.is_none() {
                warn!(tunnel = %tunnel, %host, "the peer's name has no address of our family");
            }
            let _ = tx.send(Input::Resolved { tunnel, addr }).await;
        });
    }
}

/// A lookup finished: the session initiates to (and answers only) that address.
pub(super) fn resolved(tunnels: &mut [Tunnel], now: Instant, tunnel: &str, addr: Option<IpAddr>) {
    if let Some(t) = tunnels.iter_mut().find(|t| t.cfg.name == tunnel) {
        t.session.set_peer_address(now, addr);
    }
}
