//! Logs where tunnels lose packets under load: every [`DROP_WATCH`], the drops the
//! dataplane and the kernel in front of it counted since the last look, one warning per
//! tunnel that dropped (at most [`MAX_LINES`] a look). `status` keeps the totals.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::tunnel::Tunnel;
use crate::dataplane::{Dataplane, TunnelId, TunnelStats};

/// How often the counters are compared: a drop is logged at most this late, and a
/// flood of drops costs one line per tunnel per period.
pub(super) const DROP_WATCH: Duration = Duration::from_secs(10);
/// Tunnels named per look; the rest are counted in one more line.
const MAX_LINES: usize = 10;

#[derive(Default)]
pub(super) struct DropWatch {
    next: Option<Instant>,
    tunnels: HashMap<TunnelId, TunnelStats>,
    socket: u64,
}

impl DropWatch {
    /// Compares the counters with the last look when [`DROP_WATCH`] has passed, and
    /// logs what grew. The first look only takes the counters.
    pub(super) fn look(&mut self, now: Instant, dp: &Dataplane, tunnels: &[Tunnel]) {
        if self.next.is_some_and(|n| now < n) {
            return;
        }
        let first = self.next.is_none();
        self.next = Some(now + DROP_WATCH);
        let stats = dp.all_tunnel_stats();
        let socket = dp.socket_drops();
        if !first {
            let mut lines = 0;
            let mut more = 0;
            for t in tunnels {
                let (Some(cur), prev) = (stats.get(&t.tid), self.tunnels.get(&t.tid)) else {
                    continue;
                };
                let Some(what) = grown(prev.copied().unwrap_or_default(), *cur) else {
                    continue;
                };
                if lines < MAX_LINES {
                    lines += 1;
                    tracing::warn!(
                        tunnel = t.cfg.name.as_str(),
                        "packets dropped in the last {}s: {what}",
                        DROP_WATCH.as_secs()
                    );
                } else {
                    more += 1;
                }
            }
            if more > 0 {
                tracing::warn!("{more} more tunnels dropped packets (see `routevpn status`)");
            }
            if let Some(n) = socket.checked_sub(self.socket).filter(|&n| n > 0) {
                tracing::warn!(
                    "{n} ESP packets dropped at the port-4500 sockets in the last {}s: their \
                     receive buffers were full (the dataplane workers did not keep up)",
                    DROP_WATCH.as_secs()
                );
            }
        }
        self.tunnels = stats;
        self.socket = socket;
    }
}

/// What grew from `prev` to `cur`, in words; `None` when nothing did. A counter that
/// went down (the tunnel's interface was created again) counts from zero.
fn grown(prev: TunnelStats, cur: TunnelStats) -> Option<String> {
    let delta = |c: u64, p: u64| if c >= p { c - p } else { c };
    let parts: Vec<String> = [
        (
            delta(cur.tun_queue_drops, prev.tun_queue_drops),
            "in its full TUN queue (the dataplane workers did not keep up)",
        ),
        (delta(cur.tx_no_sa, prev.tx_no_sa), "without an outbound SA"),
        (
            delta(cur.tx_seal_errors, prev.tx_seal_errors),
            "not sealable",
        ),
        (
            delta(cur.tx_send_errors, prev.tx_send_errors),
            "failed sends",
        ),
        (
            delta(cur.tx_tun_errors, prev.tx_tun_errors),
            "failed TUN reads",
        ),
        (
            delta(cur.rx_tun_write_errors, prev.rx_tun_write_errors),
            "failed TUN writes",
        ),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    (!parts.is_empty()).then(|| parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_grew_is_told() {
        let prev = TunnelStats {
            tun_queue_drops: 100,
            tx_no_sa: 5,
            ..Default::default()
        };
        assert_eq!(grown(prev, prev), None);
        let cur = TunnelStats {
            tun_queue_drops: 2009,
            tx_no_sa: 5,
            tx_send_errors: 2,
            ..Default::default()
        };
        assert_eq!(
            grown(prev, cur).as_deref(),
            Some(
                "1909 in its full TUN queue (the dataplane workers did not keep up), \
                 2 failed sends"
            )
        );
        // The interface was created again: its counter restarted at 0.
        let again = TunnelStats {
            tun_queue_drops: 7,
            ..Default::default()
        };
        assert_eq!(
            grown(cur, again).as_deref(),
            Some("7 in its full TUN queue (the dataplane workers did not keep up)")
        );
    }
}
