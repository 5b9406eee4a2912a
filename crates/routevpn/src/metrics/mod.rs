//! Prometheus / OpenMetrics exposition (`metrics = "127.0.0.1:9477"`).
//!
//! Gauges and traffic counters are read at scrape time from the same [`StatusReport`]
//! `routevpn status` prints, so the two never disagree; events `status` does not keep
//! (IKE SAs established, failures, rekeys, traffic of deleted CHILD SAs) are counted
//! per tunnel by the daemon in [`TunnelCounters`]. A tunnel removed on reload takes its
//! series with it.

pub mod http;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::control::StatusReport;

/// Bucket bounds of `routevpn_ike_setup_seconds`: a LAN handshake takes milliseconds,
/// a lossy path several retransmissions (1 s, 2 s, 4 s, ...).
const SETUP_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Why an IKE or first CHILD SA negotiation failed: a fixed label set, never text the
/// peer chose (it would let a peer create unbounded series).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureReason {
    Timeout,
    AuthFailed,
    NoProposalChosen,
    TsUnacceptable,
    InvalidKe,
    Other,
}

impl FailureReason {
    pub const ALL: [FailureReason; 6] = [
        FailureReason::Timeout,
        FailureReason::AuthFailed,
        FailureReason::NoProposalChosen,
        FailureReason::TsUnacceptable,
        FailureReason::InvalidKe,
        FailureReason::Other,
    ];

    pub fn label(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::AuthFailed => "auth_failed",
            FailureReason::NoProposalChosen => "no_proposal_chosen",
            FailureReason::TsUnacceptable => "ts_unacceptable",
            FailureReason::InvalidKe => "invalid_ke",
            FailureReason::Other => "other",
        }
    }

    /// The failure an IKE close reason stands for; `None` for orderly ends (deleted by
    /// either side, rekeyed, peer restarted).
    pub fn of(reason: &ike::sa::CloseReason) -> Option<FailureReason> {
        use ike::iana::NotifyType;
        use ike::sa::CloseReason;
        match reason {
            CloseReason::Timeout => Some(FailureReason::Timeout),
            CloseReason::Failed(n, _) => Some(match *n {
                NotifyType::AUTHENTICATION_FAILED => FailureReason::AuthFailed,
                NotifyType::NO_PROPOSAL_CHOSEN => FailureReason::NoProposalChosen,
                NotifyType::TS_UNACCEPTABLE => FailureReason::TsUnacceptable,
                NotifyType::INVALID_KE_PAYLOAD => FailureReason::InvalidKe,
                _ => FailureReason::Other,
            }),
            CloseReason::DeletedByPeer
            | CloseReason::Local
            | CloseReason::Rekeyed
            | CloseReason::PeerRestarted => None,
        }
    }
}

/// Traffic and drops of one tunnel's CHILD SAs (inner packets and octets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub packets_in: u64,
    pub packets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub replayed: u64,
    pub icv_failures: u64,
    pub malformed: u64,
    pub ts_mismatch: u64,
}

impl Traffic {
    pub fn add(&mut self, o: &Traffic) {
        self.packets_in += o.packets_in;
        self.packets_out += o.packets_out;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.replayed += o.replayed;
        self.icv_failures += o.icv_failures;
        self.malformed += o.malformed;
        self.ts_mismatch += o.ts_mismatch;
    }

    /// What was counted after `earlier` (counters only grow; never below zero).
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            packets_in: self.packets_in.saturating_sub(earlier.packets_in),
            packets_out: self.packets_out.saturating_sub(earlier.packets_out),
            bytes_in: self.bytes_in.saturating_sub(earlier.bytes_in),
            bytes_out: self.bytes_out.saturating_sub(earlier.bytes_out),
            replayed: self.replayed.saturating_sub(earlier.replayed),
            icv_failures: self.icv_failures.saturating_sub(earlier.icv_failures),
            malformed: self.malformed.saturating_sub(earlier.malformed),
            ts_mismatch: self.ts_mismatch.saturating_sub(earlier.ts_mismatch),
        }
    }
}

/// What one tunnel counts that `status` does not keep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TunnelCounters {
    pub ike_established: u64,
    /// Indexed like [`FailureReason::ALL`].
    pub failures: [u64; 6],
    pub child_rekeys: u64,
    pub ike_rekeys: u64,
    /// Traffic of CHILD SAs already deleted (installed ones are in the status).
    pub retired: Traffic,
}

impl TunnelCounters {
    pub fn failure(&mut self, r: FailureReason) {
        if let Some(i) = FailureReason::ALL.iter().position(|x| *x == r) {
            self.failures[i] += 1;
        }
    }
}

/// Everything one scrape shows.
pub struct Snapshot {
    pub status: StatusReport,
    /// One per `status.tunnels` entry, same order.
    pub tunnels: Vec<TunnelCounters>,
    /// ESP packets whose SPI matched no SA (not attributable to a tunnel).
    pub unknown_spi: u64,
    pub setup: Histogram,
}

/// The histogram the daemon observes IKE setup times into.
pub fn setup_histogram() -> Histogram {
    Histogram::new(SETUP_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelLabel {
    tunnel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelReason {
    tunnel: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TunnelDirection {
    tunnel: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NeighborLabel {
    neighbor: String,
}

fn counter_family<S>(reg: &mut Registry, name: &str, help: &str) -> Family<S, Counter>
where
    S: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<S, Counter>::default();
    reg.register(name, help, f.clone());
    f
}

fn gauge_family<S>(reg: &mut Registry, name: &str, help: &str) -> Family<S, Gauge>
where
    S: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<S, Gauge>::default();
    reg.register(name, help, f.clone());
    f
}

/// Saturating conversion for gauges (i64 in the exposition library).
fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The OpenMetrics text of one snapshot.
pub fn render(s: &Snapshot) -> String {
    let mut reg = Registry::with_prefix("routevpn");
    let up = gauge_family::<TunnelLabel>(
        &mut reg,
        "tunnel_up",
        "1 while the tunnel has an established IKE SA and a CHILD SA installed",
    );
    let established = counter_family::<TunnelLabel>(
        &mut reg,
        "ike_sa_established",
        "IKE SAs established (initial, not rekeys)",
    );
    let failures = counter_family::<TunnelReason>(
        &mut reg,
        "ike_failures",
        "IKE SA or first CHILD SA negotiations that failed, by reason",
    );
    let rekeys = counter_family::<TunnelLabel>(&mut reg, "child_sa_rekeys", "CHILD SAs rekeyed");
    let bytes = counter_family::<TunnelDirection>(
        &mut reg,
        "tunnel_bytes",
        "Inner octets carried through the tunnel (in = decrypted, out = encrypted)",
    );
    let packets = counter_family::<TunnelDirection>(
        &mut reg,
        "tunnel_packets",
        "Inner packets carried through the tunnel",
    );
    let drops = counter_family::<TunnelReason>(
        &mut reg,
        "esp_drops",
        "Packets dropped, by reason: ESP refused by an SA (replay, icv, malformed, ts_mismatch), \
         inner packets the dataplane could not carry (no_sa, seal_error, send_error, tun_read_error, \
         tun_write_error), or the kernel dropped in front of it because a worker fell behind \
         (tun_queue_full; socket_full and unknown_spi have an empty tunnel label)",
    );
    for (t, c) in s.status.tunnels.iter().zip(&s.tunnels) {
        let tl = TunnelLabel {
            tunnel: t.name.clone(),
        };
        up.get_or_create(&tl).set(i64::from(t.state == "up"));
        established.get_or_create(&tl).inc_by(c.ike_established);
        rekeys.get_or_create(&tl).inc_by(c.child_rekeys);
        for (r, n) in FailureReason::ALL.iter().zip(c.failures) {
            failures
                .get_or_create(&TunnelReason {
                    tunnel: t.name.clone(),
                    reason: r.label(),
                })
                .inc_by(n);
        }
        let mut tr = c.retired;
        for ch in &t.child_sas {
            tr.add(&Traffic {
                packets_in: ch.packets_in,
                packets_out: ch.packets_out,
                bytes_in: ch.bytes_in,
                bytes_out: ch.bytes_out,
                replayed: ch.replayed,
                icv_failures: ch.icv_failures,
                malformed: ch.malformed,
                ts_mismatch: ch.ts_mismatch_in + ch.ts_mismatch_out,
            });
        }
        for (direction, b, p) in [
            ("in", tr.bytes_in, tr.packets_in),
            ("out", tr.bytes_out, tr.packets_out),
        ] {
            let l = TunnelDirection {
                tunnel: t.name.clone(),
                direction,
            };
            bytes.get_or_create(&l).inc_by(b);
            packets.get_or_create(&l).inc_by(p);
        }
        for (reason, n) in [
            ("replay", tr.replayed),
            ("icv", tr.icv_failures),
            ("malformed", tr.malformed),
            ("ts_mismatch", tr.ts_mismatch),
            ("no_sa", t.dataplane.no_sa_drops),
            ("seal_error", t.dataplane.seal_errors),
            ("send_error", t.dataplane.send_errors),
            ("tun_read_error", t.dataplane.tun_read_errors),
            ("tun_write_error", t.dataplane.tun_write_errors),
            ("tun_queue_full", t.dataplane.tun_queue_drops),
        ] {
            drops
                .get_or_create(&TunnelReason {
                    tunnel: t.name.clone(),
                    reason,
                })
                .inc_by(n);
        }
    }
    for (reason, n) in [
        ("unknown_spi", s.unknown_spi),
        ("socket_full", s.status.dataplane.socket_drops),
    ] {
        drops
            .get_or_create(&TunnelReason {
                tunnel: String::new(),
                reason,
            })
            .inc_by(n);
    }

    if let Some(b) = &s.status.bgp {
        let est = gauge_family::<NeighborLabel>(
            &mut reg,
            "bgp_session_established",
            "1 while the BGP session is Established",
        );
        let received = gauge_family::<NeighborLabel>(
            &mut reg,
            "bgp_prefixes_received",
            "Prefixes held from the neighbor after the import policy",
        );
        let bfd_up = gauge_family::<NeighborLabel>(
            &mut reg,
            "bfd_session_up",
            "1 while the BFD session is Up (neighbors with BFD only)",
        );
        let flaps =
            counter_family::<NeighborLabel>(&mut reg, "bfd_flaps", "Times the BFD session left Up");
        let hint_downs = counter_family::<NeighborLabel>(
            &mut reg,
            "bfd_esp_hint_downs",
            "Times the ESP-silence hint took the BFD session down (of bfd_flaps)",
        );
        for n in &b.neighbors {
            let l = NeighborLabel {
                neighbor: n.address.clone(),
            };
            est.get_or_create(&l)
                .set(i64::from(n.state == "Established"));
            received
                .get_or_create(&l)
                .set(gauge_value(n.prefixes_received));
            if let Some(state) = &n.bfd {
                bfd_up.get_or_create(&l).set(i64::from(state == "Up"));
                flaps.get_or_create(&l).inc_by(n.bfd_flaps);
                hint_downs.get_or_create(&l).inc_by(n.bfd_esp_hint_downs);
            }
        }
    }
    reg.register(
        "ike_setup_seconds",
        "Time from the first IKE message of a successful attempt to its CHILD SA installed",
        s.setup.clone(),
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_status_and_counters() {
        let mut status = crate::control::tests::sample();
        status.tunnels[0].state = "up".into();
        status.dataplane.socket_drops = 5;
        let mut c0 = TunnelCounters {
            ike_established: 2,
            child_rekeys: 3,
            ..Default::default()
        };
        c0.failure(FailureReason::AuthFailed);
        c0.retired.bytes_out = 800;
        c0.retired.packets_out = 8;
        let setup = setup_histogram();
        setup.observe(0.02);
        let text = render(&Snapshot {
            status,
            tunnels: vec![c0, TunnelCounters::default()],
            unknown_spi: 7,
            setup,
        });
        for line in [
            "routevpn_tunnel_up{tunnel=\"vti0\"} 1",
            "routevpn_tunnel_up{tunnel=\"vti1\"} 0",
            "routevpn_ike_sa_established_total{tunnel=\"vti0\"} 2",
            "routevpn_ike_failures_total{tunnel=\"vti0\",reason=\"auth_failed\"} 1",
            "routevpn_ike_failures_total{tunnel=\"vti0\",reason=\"timeout\"} 0",
            "routevpn_child_sa_rekeys_total{tunnel=\"vti0\"} 3",
            // 1200 in the installed CHILD SA + 800 retired.
            "routevpn_tunnel_bytes_total{tunnel=\"vti0\",direction=\"out\"} 2000",
            "routevpn_tunnel_packets_total{tunnel=\"vti0\",direction=\"out\"} 20",
            "routevpn_tunnel_bytes_total{tunnel=\"vti0\",direction=\"in\"} 1000",
            "routevpn_esp_drops_total{tunnel=\"vti0\",reason=\"icv\"} 2",
            "routevpn_esp_drops_total{tunnel=\"vti0\",reason=\"replay\"} 1",
            "routevpn_esp_drops_total{tunnel=\"vti0\",reason=\"no_sa\"} 2",
            "routevpn_esp_drops_total{tunnel=\"vti0\",reason=\"tun_queue_full\"} 17",
            "routevpn_esp_drops_total{tunnel=\"vti0\",reason=\"send_error\"} 0",
            "routevpn_esp_drops_total{tunnel=\"\",reason=\"unknown_spi\"} 7",
            "routevpn_esp_drops_total{tunnel=\"\",reason=\"socket_full\"} 5",
            "routevpn_bgp_session_established{neighbor=\"169.254.12.2\"} 1",
            "routevpn_bgp_prefixes_received{neighbor=\"169.254.12.2\"} 2",
            "routevpn_bfd_session_up{neighbor=\"169.254.12.2\"} 1",
            "routevpn_bfd_flaps_total{neighbor=\"169.254.12.2\"} 1",
            "routevpn_bfd_esp_hint_downs_total{neighbor=\"169.254.12.2\"} 1",
            "routevpn_ike_setup_seconds_count 1",
            "routevpn_ike_setup_seconds_bucket{le=\"0.025\"} 1",
            "routevpn_ike_setup_seconds_bucket{le=\"0.01\"} 0",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
    }

    #[test]
    fn failure_reasons_are_a_fixed_set() {
        use ike::iana::NotifyType;
        use ike::sa::CloseReason;
        let peer_text = CloseReason::Failed(NotifyType(40000), "anything the peer says".into());
        assert_eq!(FailureReason::of(&peer_text), Some(FailureReason::Other));
        assert_eq!(
            FailureReason::of(&CloseReason::Failed(
                NotifyType::AUTHENTICATION_FAILED,
                String::new()
            )),
            Some(FailureReason::AuthFailed)
        );
        assert_eq!(FailureReason::of(&CloseReason::Local), None);
        assert_eq!(
            FailureReason::of(&CloseReason::Timeout),
            Some(FailureReason::Timeout)
        );
    }
}
