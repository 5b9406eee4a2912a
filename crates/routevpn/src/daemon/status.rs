//! `routevpn status`: the daemon's tunnels, SAs and counters as a [`StatusReport`].

use std::time::Instant;

use super::event_loop::Daemon;
use super::tunnel::Tunnel;
use crate::control::{
    ChildSaStatus, DataplaneStatus, IkeSaStatus, StatusReport, TunnelDataplaneStatus, TunnelStatus,
    STATUS_SCHEMA,
};
use crate::dataplane::{Dataplane, TunnelStats};
use crate::metrics::Snapshot;

impl Daemon {
    pub(super) fn status(&self, now: Instant, dp: &Dataplane) -> StatusReport {
        let stats = dp.all_tunnel_stats();
        StatusReport {
            schema: STATUS_SCHEMA.to_string(),
            daemon_pid: std::process::id(),
            uptime_secs: now.saturating_duration_since(self.started).as_secs(),
            tunnels: self
                .tunnels
                .iter()
                .map(|t| tunnel_status(t, now, dp, stats.get(&t.tid)))
                .collect(),
            bgp: self.routing.as_ref().map(|r| r.status()),
            dataplane: dataplane_status(dp),
        }
    }

    /// What a `/metrics` scrape shows: the status plus the counters it does not keep.
    pub(super) fn metrics_snapshot(&self, now: Instant, dp: &Dataplane) -> Snapshot {
        Snapshot {
            status: self.status(now, dp),
            tunnels: self.tunnels.iter().map(|t| t.counters.clone()).collect(),
            unknown_spi: dp.stats().unknown_spi,
            setup: self.setup.clone(),
        }
    }
}

fn dataplane_status(dp: &Dataplane) -> DataplaneStatus {
    let s = dp.stats();
    DataplaneStatus {
        unknown_spi: s.unknown_spi,
        invalid: s.invalid,
        keepalives: s.keepalives,
        ike_on_4500: s.ike,
        socket_drops: dp.socket_drops(),
    }
}

fn tunnel_status(
    t: &Tunnel,
    now: Instant,
    dp: &Dataplane,
    stats: Option<&TunnelStats>,
) -> TunnelStatus {
    let s = t.session.status(now);
    let state = if s.ike_sas.iter().any(|i| i.state == "established") {
        if s.children.is_empty() {
            "ike-only"
        } else {
            "up"
        }
    } else if s.ike_sas.is_empty() {
        "down"
    } else {
        "connecting"
    };
    TunnelStatus {
        name: t.cfg.name.clone(),
        local: t.cfg.local_text(),
        remote: t.cfg.remote_text(),
        local_id: t.cfg.local_id.to_string(),
        remote_id: t.cfg.remote_id.to_string(),
        state: state.to_string(),
        last_error: s.last_error.clone(),
        ike_sas: s
            .ike_sas
            .iter()
            .map(|i| IkeSaStatus {
                state: i.state.to_string(),
                initiator: i.initiator,
                spi_i: format!("{:016x}", i.spi_i),
                spi_r: format!("{:016x}", i.spi_r),
                proposal: i.proposal.clone(),
                peer: i.remote.to_string(),
                age_secs: i.age.as_secs(),
                rekeys: i.rekeys,
            })
            .collect(),
        child_sas: s
            .children
            .iter()
            .map(|(c, age)| {
                let ctr = dp.counters(c.spi_in).unwrap_or_default();
                ChildSaStatus {
                    state: "installed".to_string(),
                    spi_in: format!("{:08x}", c.spi_in),
                    spi_out: format!("{:08x}", c.spi_out),
                    proposal: c.proposal.clone(),
                    esn: c.esn,
                    local_ts: c.local_ts.iter().map(ike::sa::ts_to_string).collect(),
                    remote_ts: c.remote_ts.iter().map(ike::sa::ts_to_string).collect(),
                    age_secs: age.as_secs(),
                    packets_in: ctr.inbound.packets,
                    packets_out: ctr.outbound.packets,
                    bytes_in: ctr.inbound.bytes,
                    bytes_out: ctr.outbound.bytes,
                    replayed: ctr.inbound.replayed,
                    icv_failures: ctr.inbound.icv_failures,
                    malformed: ctr.inbound.malformed,
                    ts_mismatch_in: ctr.inbound.ts_mismatch,
                    ts_mismatch_out: ctr.outbound.ts_mismatch,
                    resource: c.resource,
                }
            })
            .collect(),
        child_rekeys: t.counters.child_rekeys,
        ike_rekeys: t.counters.ike_rekeys,
        peer_cert: s
            .peer_cert
            .as_ref()
            .map(|c| crate::control::PeerCertStatus {
                subject: c.subject.to_string(),
                issuer: c.issuer.to_string(),
                not_after: ike::cert::format_unix_date(c.not_after),
            }),
        cert_warning: t.cfg.certs.as_ref().and_then(|c| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            crate::config::expiry_warning(&c.auth.credentials, now)
        }),
        child_sa_refill_in_ms: s.child_refill_in.map(|d| d.as_millis() as u64),
        dataplane: stats.map_or_else(TunnelDataplaneStatus::default, |d| TunnelDataplaneStatus {
            tun_queue_drops: d.tun_queue_drops,
            no_sa_drops: d.tx_no_sa,
            seal_errors: d.tx_seal_errors,
            send_errors: d.tx_send_errors,
            tun_read_errors: d.tx_tun_errors,
            tun_write_errors: d.rx_tun_write_errors,
        }),
    }
}
