//! Following a peer whose address or NAT mapping changes (RFC 7296 §2.23, RFC 3948):
//! authenticated ESP that advances the replay window from a new `ip:port` moves the
//! tunnel's outbound ESP there, and the daemon moves IKE too; an IKE message from a new
//! address moves ESP through [`Dataplane::move_peer`].

use std::net::SocketAddr;
use std::sync::Arc;

use super::tables::InboundEntry;
use super::{lock, read, Dataplane, Shared, TunnelId};

/// Called from a dataplane thread with a CHILD SA's inbound SPI and the peer's new
/// address after ESP moved there; must not block.
pub type RoamCallback = Box<dyn Fn(u32, SocketAddr) + Send + Sync>;

impl Shared {
    /// ESP of `entry` that passed the ICV and advanced the replay window came from
    /// `remote`, not `from` (the receive thread already noted it in the entry): a packet
    /// replayed from elsewhere cannot do that, and a late one from the old mapping does
    /// not move us back.
    pub(crate) fn esp_moved(&self, entry: &InboundEntry, from: SocketAddr, remote: SocketAddr) {
        let tunnels = read(&self.tunnels);
        let Some(t) = tunnels.get(&entry.tunnel.0) else {
            return;
        };
        t.for_each_out(|o| o.dst = remote);
        tracing::info!(tunnel = t.name.as_str(), %from, to = %remote, "peer moved (authenticated ESP from a new address): following it");
        if let Some(cb) = self.on_roam.get() {
            cb(entry.spi_in(), remote);
        }
    }
}

impl Dataplane {
    /// Sets what `on_roam` is called with (once per process).
    pub fn on_roam(&self, callback: RoamCallback) {
        let _ = self.shared.on_roam.set(callback);
    }

    /// Where the tunnel's outbound ESP goes; None without an outbound SA.
    pub fn peer(&self, tunnel: TunnelId) -> Option<SocketAddr> {
        let t = read(&self.shared.tunnels).get(&tunnel.0).cloned()?;
        let out = lock(&t.out);
        out.as_ref().map(|o| o.dst)
    }

    /// The peer of `tunnel` is now at `remote` (IKE saw it move): ESP goes there.
    pub fn move_peer(&self, tunnel: TunnelId, remote: SocketAddr) {
        let entries: Vec<Arc<InboundEntry>> = read(&self.shared.inbound)
            .values()
            .filter(|e| e.tunnel == tunnel)
            .cloned()
            .collect();
        for e in entries {
            lock(&e.sa).peer = remote;
            if let Some(o) = lock(&e.out_spare).as_mut() {
                o.dst = remote;
            }
        }
        if let Some(t) = read(&self.shared.tunnels).get(&tunnel.0) {
            t.for_each_out(|o| o.dst = remote);
        }
    }
}
