//! Reload (SIGHUP, `routevpn reload`): only tunnels whose configuration changed are
//! torn down and started afresh.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;
use tracing::{info, warn};

use super::event_loop::Daemon;
use super::tunnel::{flush_tunnel, set_link, Tunnel};
use crate::control::Response;
use crate::dataplane::Dataplane;
use crate::netlink::Netlink;

impl Daemon {
    /// Re-reads the configuration (SIGHUP, `routevpn reload`): unchanged tunnels are
    /// left alone; changed and removed ones are deleted (the peer is told) and their
    /// interfaces removed; changed and new ones start afresh.
    pub(super) async fn reload(
        &mut self,
        now: Instant,
        ike_sockets: &HashMap<IpAddr, Arc<UdpSocket>>,
        dp: &Dataplane,
        nl: &Netlink,
    ) -> Response {
        let new = match crate::config::load_checked(&self.config_path) {
            Ok((checked, _text)) => {
                // The same warnings as at start-up (readable secrets, short PSK, ...).
                for w in &checked.warnings {
                    warn!("reload: {w}");
                }
                checked.config
            }
            Err(e) => {
                warn!(error = %e, "reload: configuration rejected, nothing changed");
                return Response::Error {
                    message: format!("configuration rejected, nothing changed: {e}"),
                };
            }
        };
        let dataplane = super::setup::dataplane_options(&new);
        let (mut kept, mut changed, mut removed, mut added) = (0, 0, 0, 0);
        let mut notes = Vec::new();
        let mut i = 0;
        while i < self.tunnels.len() {
            let fresh = new
                .tunnels
                .iter()
                .find(|n| n.name == self.tunnels[i].cfg.name);
            if fresh == Some(&self.tunnels[i].cfg) {
                kept += 1;
                i += 1;
                continue;
            }
            // New hooks alone do not disturb the tunnel: they apply from the next event.
            if let Some(f) = fresh.filter(|f| same_but_hooks(f, &self.tunnels[i].cfg)) {
                info!(tunnel = %f.name, "reload: new hooks");
                self.tunnels[i].cfg.hooks = f.hooks.clone();
                kept += 1;
                i += 1;
                continue;
            }
            let mut t = self.tunnels.remove(i);
            if fresh.is_some() {
                changed += 1;
            } else {
                removed += 1;
            }
            info!(tunnel = %t.cfg.name, "reload: tearing down");
            t.session.close(now);
            t.session.leave_admission(&mut self.admission);
            // A closing session holds no IKE_AUTH for another tunnel worth settling.
            let mut ignored = Vec::new();
            flush_tunnel((i, &mut t), ike_sockets, dp, nl, &self.setup, &mut ignored).await;
            if t.link_up {
                set_link(&mut t, false, nl).await;
            }
            dp.remove_tunnel(t.tid);
        }
        for n in new.tunnels {
            if self.tunnels.iter().any(|t| t.cfg.name == n.name) {
                continue;
            }
            if !ike_sockets.contains_key(&n.local) {
                notes.push(format!(
                    "tunnel {}: new local address {} needs a daemon restart",
                    n.name, n.local
                ));
                continue;
            }
            let tid = match dp.add_tunnel(&n.name, super::tunnel::expected_mtu(&n)) {
                Ok(tid) => tid,
                Err(e) => {
                    let e = super::setup::tun_error(e);
                    notes.push(format!("tunnel {}: cannot create interface: {e}", n.name));
                    continue;
                }
            };
            info!(tunnel = %n.name, "reload: starting");
            let mut t = Tunnel::new(n, tid, self.routing.clone(), self.hooks.clone(), now);
            t.attach(dp, tid);
            self.tunnels.push(t);
            added += 1;
        }
        // The new interfaces: their indexes, and down until a CHILD SA is installed.
        super::tunnel::learn_links(&mut self.tunnels, nl).await;
        let added = added - changed.min(added);
        if new.bgp.is_some() != self.routing.is_some() || new.control_socket != self.socket_path {
            notes.push(
                "[bgp], routing and control_socket changes apply after a restart".to_string(),
            );
        }
        if new.control_socket_group.as_ref().map(|g| g.gid) != self.socket_group {
            notes.push("control_socket_group changes apply after a restart".to_string());
        }
        if new.metrics != self.metrics {
            notes.push("metrics changes apply after a restart".to_string());
        }
        if dataplane != self.dataplane {
            notes.push(
                "dataplane_threads, dataplane_busy_poll and per_resource_sas changes apply after a restart"
                    .to_string(),
            );
        }
        let mut message = format!(
            "reloaded: {kept} unchanged, {changed} changed, {added} added, {removed} removed"
        );
        for n in &notes {
            message.push_str("; ");
            message.push_str(n);
        }
        info!("{message}");
        Response::Ok { message }
    }
}

/// Whether two tunnel configurations differ in their hooks at most.
fn same_but_hooks(a: &crate::config::TunnelConfig, b: &crate::config::TunnelConfig) -> bool {
    let mut a = a.clone();
    a.hooks = b.hooks.clone();
    a == *b
}

#[cfg(test)]
mod tests {
    use super::same_but_hooks;

    use crate::config::one_tunnel as tunnel;

    #[test]
    fn hook_changes_alone_keep_the_tunnel() {
        let plain = tunnel("");
        let hooked = tunnel("on_up = [\"/bin/true\"]\nhook_timeout = \"3s\"\n");
        assert_ne!(plain, hooked);
        assert!(same_but_hooks(&hooked, &plain));
        // Anything else still counts as a change.
        assert!(!same_but_hooks(
            &tunnel("on_up = [\"/bin/true\"]\nmtu = 1300\n"),
            &plain
        ));
    }
}
