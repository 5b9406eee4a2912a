//! One tunnel's lifecycle: its IKE session, the CHILD SAs it installs into the
//! userspace dataplane, and its interface (up with addresses and routes only while a
//! CHILD SA is installed).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use ike::sa::{ChildSaInfo, Event, Session, SessionConfig};
use ike::wire::{IdPayload, TrafficSelector};
use ipnet::IpNet;
use prometheus_client::metrics::histogram::Histogram;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use super::dispatch::IdentityQuery;
use super::hooks::{HookEvent, Hooks};
use crate::config::TunnelConfig;
use crate::dataplane::{self, ChildKeys, Dataplane, TunnelId};
use crate::metrics::{self, FailureReason};
use crate::netlink::{Netlink, RTPROT_ROUTEVPN};
use crate::routing;

/// Underlay MTU assumed when computing a tunnel's MTU.
const UNDERLAY_MTU: u16 = 1500;

/// A CHILD SA as the daemon tracks it.
pub(super) struct InstalledChild {
    pub(super) spi_in: u32,
    /// A rekey replaced it: when deleted it keeps receiving a little longer.
    pub(super) rekeyed: bool,
    /// Inbound packets at the last counter poll (liveness).
    pub(super) last_packets_in: u64,
}

pub(super) struct Tunnel {
    pub(super) cfg: TunnelConfig,
    pub(super) session: Session,
    pub(super) tid: TunnelId,
    pub(super) children: Vec<InstalledChild>,
    /// Deleted CHILD SAs a rekey replaced, still receiving until then (inbound SPI).
    pub(super) lingering: Vec<Lingering>,
    pub(super) link_up: bool,
    /// The BGP speaker, told when this interface goes up or down.
    pub(super) routing: Option<routing::Handle>,
    /// Events for the metrics that `status` does not keep.
    pub(super) counters: metrics::TunnelCounters,
    /// First IKE message of the current setup attempt (for `ike_setup_seconds`).
    pub(super) setup_started: Option<Instant>,
    /// Runs `on_up` / `on_down` when the interface goes up or down.
    pub(super) hooks: Hooks,
    /// When the peer's name (`remote_host`) was last looked up.
    pub(super) resolved_at: Option<Instant>,
    /// A dynamic local: the source address toward the peer when last checked.
    pub(super) source: Option<IpAddr>,
    /// The interface's index, once a link dump has shown it (it is ours while the TUN
    /// is open): changes go by index, one request each instead of a lookup and a request.
    pub(super) ifindex: Option<u32>,
    /// The interface's MTU as last set or seen, so an unchanged MTU is not set again
    /// (each MTU change walks the kernel's whole IPv6 routing table).
    pub(super) mtu: Option<u32>,
    /// The dataplane's count of inbound ESP it authenticated, handed to BFD's hint.
    pub(super) heard: Option<routing::Heard>,
}

/// The MTU the tunnel's interface will most likely need: `mtu`, else the one for the
/// first ESP proposal; creating the TUN with it spares a change when the SA arrives.
pub(super) fn expected_mtu(cfg: &TunnelConfig) -> u16 {
    if let Some(m) = cfg.mtu {
        return m;
    }
    cfg.esp
        .first()
        .and_then(|p| {
            let (encr, bits) = *p.encr.first()?;
            dataplane::algorithm_for(encr, bits, p.integ.first().copied())
        })
        .map_or(DEFAULT_TUN_MTU, |alg| {
            dataplane::compute_mtu(UNDERLAY_MTU, cfg.local.is_ipv6(), alg)
        })
}

/// MTU of a tunnel interface whose ESP suite has no MTU of its own.
const DEFAULT_TUN_MTU: u16 = 1400;

/// Learns the index and MTU of every tunnel interface not yet known from one link dump,
/// and brings down any that is up: down until a CHILD SA is installed (a new TUN is
/// down already, so this usually sends nothing).
pub(super) async fn learn_links(tunnels: &mut [Tunnel], nl: &Netlink) {
    if tunnels.iter().all(|t| t.ifindex.is_some()) {
        return;
    }
    let links = match nl.links().await {
        Ok(l) => l,
        Err(e) => {
            warn!(error = %e, "cannot list interfaces");
            return;
        }
    };
    for t in tunnels.iter_mut().filter(|t| t.ifindex.is_none()) {
        let Some(l) = links.get(&t.cfg.name) else {
            continue;
        };
        t.ifindex = Some(l.index);
        t.mtu = l.mtu;
        if l.up {
            if let Err(e) = nl.set_link_index(l.index, &t.cfg.name, false, None).await {
                warn!(tunnel = %t.cfg.name, error = %e, "cannot set interface down");
            }
        }
    }
}

/// Randomness for the protocol cores, from the system CSPRNG.
struct SystemRng(aws_lc_rs::rand::SystemRandom);

impl ike::Rng for SystemRng {
    fn fill(&mut self, buf: &mut [u8]) {
        // A failing kernel RNG leaves nothing safe to do.
        aws_lc_rs::rand::SecureRandom::fill(&self.0, buf).expect("system random generator failed");
    }
}

pub(super) fn id_payload(id: &crate::config::Identity) -> IdPayload {
    IdPayload {
        id_type: id.id_type(),
        reserved: [0; 3],
        data: id.data(),
    }
}

fn selectors(prefixes: &[IpNet]) -> Vec<TrafficSelector> {
    prefixes
        .iter()
        .map(|n| TrafficSelector::from_prefix(n.addr(), n.prefix_len()))
        .collect()
}

/// The largest IKE message sent whole: `fragment_size` less the IP and UDP headers and
/// the non-ESP marker (IKE is on 4500 once encrypted: we always float, RFC 3948 §2.2).
fn ike_fragment_size(t: &TunnelConfig) -> usize {
    let Some(datagram) = t.fragment_size else {
        return ike::limits::FRAGMENT_SIZE;
    };
    let ip = if t.local.is_ipv4() { 20 } else { 40 };
    usize::from(datagram).saturating_sub(ip + 8 + 4)
}

fn session_config(t: &TunnelConfig) -> SessionConfig {
    SessionConfig {
        name: t.name.clone(),
        local_id: id_payload(&t.local_id),
        remote_id: id_payload(&t.remote_id),
        psk: t.psk.secret().clone(),
        cert: t.certs.as_ref().map(|c| c.auth.clone()),
        ike: t.ike.clone(),
        esp: t.esp.clone(),
        local_ts: selectors(&t.local_ts),
        remote_ts: selectors(&t.remote_ts),
        initiate: t.start,
        force_encap: true,
        ike_lifetime: t.ike_lifetime,
        child_lifetime: t.child_lifetime,
        dpd: t.dpd,
        dpd_restart: t.dpd_action == crate::config::DpdAction::Restart,
        fragment_size: ike_fragment_size(t),
        retransmit_timeout: t.retransmit_timeout,
        retransmit_tries: t.retransmit_tries,
        // Any tunnel may share its peer's address with another (or be `%any`).
        select_by_identity: true,
        mobike: t.mobike,
        // Set once the dataplane has placed the tunnel on a worker.
        esp_spi_lane: None,
        resources: 0,
    }
}

impl Tunnel {
    /// A tunnel whose session starts now (initiating if so configured).
    pub(super) fn new(
        cfg: TunnelConfig,
        tid: TunnelId,
        routing: Option<routing::Handle>,
        hooks: Hooks,
        now: Instant,
    ) -> Tunnel {
        let mut session = Session::new(
            session_config(&cfg),
            cfg.local,
            cfg.remote,
            Box::new(SystemRng(aws_lc_rs::rand::SystemRandom::new())),
            now,
        );
        // A named peer has no address until its name resolves (never `%any`).
        if cfg.remote_host.is_some() {
            session.set_peer_address(now, None);
        }
        Tunnel {
            cfg,
            session,
            tid,
            children: Vec::new(),
            lingering: Vec::new(),
            link_up: false,
            routing,
            counters: metrics::TunnelCounters::default(),
            setup_started: None,
            hooks,
            resolved_at: None,
            source: None,
            ifindex: None,
            mtu: None,
            heard: None,
        }
    }

    /// Joins the tunnel to its interface `tid` in the dataplane: the SPI lane and
    /// resources its CHILD SAs are numbered in, and its inbound counter.
    pub(super) fn attach(&mut self, dp: &Dataplane, tid: TunnelId) {
        self.tid = tid;
        self.session.set_esp_spi_lane(dp.spi_lane(tid));
        self.session.set_resources(dp.resources());
        self.heard = dp.inbound_heard(tid);
    }

    /// The local address to send IKE and ESP from: with a dynamic local, the wildcard
    /// (the kernel picks today's source address; the one we last received on may be gone).
    fn unpinned(&self, local: std::net::SocketAddr) -> std::net::SocketAddr {
        match self.cfg.dynamic_local() {
            true => std::net::SocketAddr::new(self.cfg.local, local.port()),
            false => local,
        }
    }

    /// With a dynamic local: the source address the kernel picks toward `peer` today.
    pub(super) fn source_toward(&self, peer: IpAddr) -> Option<IpAddr> {
        super::io::source_toward(peer, self.cfg.local_interface.as_deref())
    }

    /// Our address toward the peer changed (a dynamic local): tell the peer, once per
    /// change (a burst of netlink notices about other addresses changes nothing).
    pub(super) fn local_addresses_changed(&mut self, now: Instant) {
        let Some(peer) = self.session.peer_address() else {
            return;
        };
        let Some(source) = self
            .source_toward(peer.ip())
            .filter(|s| Some(*s) != self.source)
        else {
            return;
        };
        let was = self.source.replace(source);
        if self.session.local_address_changed(now) {
            info!(tunnel = %self.cfg.name, from = ?was, to = %source, %peer,
                "our address toward the peer changed: telling the peer");
        }
    }

    /// An IKE message went out or came in: while no CHILD SA is installed, that starts
    /// the clock of a setup attempt.
    pub(super) fn note_ike(&mut self, now: Instant) {
        if self.children.is_empty() && self.setup_started.is_none() {
            self.setup_started = Some(now);
        }
    }
}

/// Sends what one session queued and acts on its events; IKE_AUTHs from identities
/// this tunnel does not expect go to `queries` (the caller sees every tunnel).
pub(super) async fn flush_tunnel(
    (index, t): (usize, &mut Tunnel),
    ike_sockets: &HashMap<IpAddr, Arc<UdpSocket>>,
    dp: &Dataplane,
    nl: &Netlink,
    setup: &Histogram,
    queries: &mut Vec<IdentityQuery>,
) {
    loop {
        // Events before datagrams: a new CHILD SA is in the dataplane before the message
        // that lets the peer use it (our response) or deletes the SA it replaces (our
        // DELETE) leaves, so no packet meets a missing SA (RFC 7296 §2.8).
        let Some(ev) = t.session.poll_event() else {
            transmit(t, ike_sockets, dp).await;
            break;
        };
        match ev {
            Event::ChildInstalled(info) => {
                if info.replaces.is_some() {
                    t.counters.child_rekeys += 1;
                } else if let Some(start) = t.setup_started.take() {
                    setup.observe(start.elapsed().as_secs_f64());
                }
                install(t, *info, dp, nl).await
            }
            Event::ChildDeleted { spi_in, spi_out } => {
                let rekeyed = t.children.iter().any(|c| c.spi_in == spi_in && c.rekeyed);
                t.children.retain(|c| c.spi_in != spi_in);
                if rekeyed && !t.children.is_empty() {
                    // Packets the peer sealed just before it switched are still on their way
                    // (strongSwan keeps such an SA 5 s: `delete_rekeyed_delay`).
                    dp.retire_child(spi_in);
                    let counted = traffic_of(dp, spi_in);
                    t.counters.retired.add(&counted);
                    t.lingering.push(Lingering {
                        spi_in,
                        until: Instant::now() + REKEYED_INBOUND_GRACE,
                        counted,
                    });
                } else {
                    remove_from_dataplane(t, spi_in, dp);
                }
                if t.children.is_empty() {
                    remove_lingering(t, Instant::now(), true, dp);
                }
                debug!(tunnel = %t.cfg.name, spi_in = format_args!("{spi_in:08x}"), spi_out = format_args!("{spi_out:08x}"), "CHILD SA removed");
                if t.children.is_empty() && t.link_up {
                    set_link(t, false, nl).await;
                }
            }
            Event::IkeEstablished { remote, .. } => {
                t.counters.ike_established += 1;
                if t.cfg.dynamic_local() {
                    t.source = t.source_toward(remote.ip());
                }
                debug!(tunnel = %t.cfg.name, event = ?ev, "session event");
            }
            Event::IkeClosed { reason, .. } => {
                if let Some(f) = FailureReason::of(&reason) {
                    t.counters.failure(f);
                }
                if t.children.is_empty() {
                    t.setup_started = None;
                }
                info!(tunnel = %t.cfg.name, %reason, "IKE SA closed")
            }
            Event::IkeRekeyed { .. } => {
                t.counters.ike_rekeys += 1;
                debug!(tunnel = %t.cfg.name, event = ?ev, "session event");
            }
            Event::PeerIdentity {
                spi_i,
                spi_r,
                id_i,
                id_r,
                peer,
            } => queries.push(IdentityQuery {
                tunnel: index,
                spi_i,
                spi_r,
                id_i,
                id_r,
                peer,
            }),
            // §2.23: ESP follows the IKE SA to the peer's new address.
            Event::PeerMoved { remote } => dp.move_peer(t.tid, remote),
            Event::ChildFailed { reason } => {
                t.counters
                    .failure(FailureReason::of(&reason).unwrap_or(FailureReason::Other));
                warn!(tunnel = %t.cfg.name, %reason, "CHILD SA not created")
            }
        }
    }
}

/// How long a CHILD SA that a rekey replaced keeps receiving after its deletion.
pub(super) const REKEYED_INBOUND_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// A CHILD SA's counters as the tunnel's totals count them.
fn traffic_of(dp: &Dataplane, spi_in: u32) -> metrics::Traffic {
    let c = dp.counters(spi_in).unwrap_or_default();
    metrics::Traffic {
        packets_in: c.inbound.packets,
        packets_out: c.outbound.packets,
        bytes_in: c.inbound.bytes,
        bytes_out: c.outbound.bytes,
        replayed: c.inbound.replayed,
        icv_failures: c.inbound.icv_failures,
        malformed: c.inbound.malformed,
        ts_mismatch: c.inbound.ts_mismatch + c.outbound.ts_mismatch,
    }
}

/// Removes a CHILD SA from the dataplane; its traffic stays in the tunnel's totals.
pub(super) fn remove_from_dataplane(t: &mut Tunnel, spi_in: u32, dp: &Dataplane) {
    t.counters.retired.add(&traffic_of(dp, spi_in));
    dp.remove_child(spi_in);
}

/// Removes the rekeyed CHILD SAs whose grace is over (all of them with `all`); what
/// they received meanwhile joins the totals (the rest did when they were deleted).
pub(super) fn remove_lingering(t: &mut Tunnel, now: Instant, all: bool, dp: &Dataplane) {
    let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut t.lingering)
        .into_iter()
        .partition(|l| all || l.until <= now);
    t.lingering = keep;
    for l in done {
        t.counters
            .retired
            .add(&traffic_of(dp, l.spi_in).since(&l.counted));
        dp.remove_child(l.spi_in);
    }
}

/// A deleted CHILD SA that a rekey replaced, still receiving.
pub(super) struct Lingering {
    pub(super) spi_in: u32,
    pub(super) until: Instant,
    /// Its counters when it was deleted, already in the totals.
    pub(super) counted: metrics::Traffic,
}

/// Sends what the session queued: IKE on port 500 or behind the non-ESP marker on port
/// 4500, NAT-keepalives.
async fn transmit(t: &mut Tunnel, ike_sockets: &HashMap<IpAddr, Arc<UdpSocket>>, dp: &Dataplane) {
    while let Some(mut d) = t.session.poll_transmit() {
        t.note_ike(Instant::now());
        d.local = t.unpinned(d.local);
        let r = if d.local.port() == ike::limits::NATT_PORT {
            if d.data == [ike::limits::NATT_KEEPALIVE_BYTE] {
                dp.send_keepalive(d.local, d.remote)
            } else {
                dp.send_ike(d.local, d.remote, &d.data)
            }
        } else {
            match ike_sockets.get(&d.local.ip()) {
                Some(s) => s.send_to(&d.data, d.remote).await.map(|_| ()),
                None => Err(std::io::Error::other("no IKE socket for that address")),
            }
        };
        if let Err(e) = r {
            warn!(tunnel = %t.cfg.name, to = %d.remote, error = %e, "sending IKE datagram failed");
        }
    }
}

/// Puts a new CHILD SA into the dataplane and, for the tunnel's first one, brings the
/// interface up with its MTU, addresses and routes.
async fn install(t: &mut Tunnel, info: ChildSaInfo, dp: &Dataplane, nl: &Netlink) {
    let Some(alg) = dataplane::algorithm_for(info.encr, info.encr_key_bits, info.integ) else {
        warn!(tunnel = %t.cfg.name, proposal = %info.proposal, "negotiated ESP suite has no dataplane implementation");
        return;
    };
    let keys = ChildKeys {
        spi_in: info.spi_in,
        spi_out: info.spi_out,
        alg,
        esn: info.esn,
        keys_in: info.keys_in,
        keys_out: info.keys_out,
        remote: info.remote,
        local: t.unpinned(info.local),
        replay_window: t.cfg.replay_window,
        selectors: dataplane::selectors_for(&info.local_ts, &info.remote_ts),
        resource: info.resource,
        // RFC 7296 §2.8: the initiator of a rekey, or of a per-resource SA, may not have
        // it yet when our response leaves.
        defer_outbound: info.responder && (info.replaces.is_some() || info.resource > 0),
    };
    if let Err(e) = dp.install_child(t.tid, keys) {
        warn!(tunnel = %t.cfg.name, error = %e, "cannot install CHILD SA in the dataplane");
        return;
    }
    dp.set_volume_limits(
        info.spi_in,
        t.cfg.child_lifetime_bytes,
        t.cfg.child_lifetime_packets,
    );
    if let Some(old) = info.replaces {
        t.children
            .iter_mut()
            .filter(|c| c.spi_in == old)
            .for_each(|c| c.rekeyed = true);
    }
    t.children.push(InstalledChild {
        spi_in: info.spi_in,
        rekeyed: false,
        last_packets_in: 0,
    });
    if !t.link_up {
        let mtu = t
            .cfg
            .mtu
            .unwrap_or_else(|| dataplane::compute_mtu(UNDERLAY_MTU, t.cfg.local.is_ipv6(), alg));
        set_link_mtu(t, true, Some(u32::from(mtu)), nl).await;
    }
}

/// Sets the interface's MTU (when it changes) and state: one request by index, else
/// (index unknown) by name, one request each.
async fn link_request(
    t: &mut Tunnel,
    up: bool,
    mtu: Option<u32>,
    nl: &Netlink,
) -> Result<(), crate::netlink::NetlinkError> {
    let name = &t.cfg.name;
    let mtu = mtu.filter(|m| t.mtu != Some(*m));
    let Some(index) = t.ifindex else {
        if let Some(m) = mtu {
            match nl.set_mtu(name, m).await {
                Ok(()) => t.mtu = Some(m),
                Err(e) => warn!(tunnel = %name, error = %e, "cannot set MTU"),
            }
        }
        return nl.set_link_up(name, up).await;
    };
    if let Some(m) = mtu {
        match nl.set_link_index(index, name, up, Some(m)).await {
            Ok(()) => {
                t.mtu = Some(m);
                return Ok(());
            }
            // As before the two went together: the state changes even if the MTU cannot.
            Err(e) => warn!(tunnel = %name, error = %e, "cannot set MTU"),
        }
    }
    nl.set_link_index(index, name, up, None).await
}

/// Brings a tunnel interface up (then its addresses and routes: an admin-down link
/// loses its routes and IPv6 addresses) or down.
pub(super) async fn set_link(t: &mut Tunnel, up: bool, nl: &Netlink) {
    set_link_mtu(t, up, None, nl).await
}

/// [`set_link`], setting the MTU (if it changes) in the same request.
async fn set_link_mtu(t: &mut Tunnel, up: bool, mtu: Option<u32>, nl: &Netlink) {
    let name = t.cfg.name.clone();
    if let Err(e) = link_request(t, up, mtu, nl).await {
        warn!(tunnel = %name, error = %e, "cannot change interface state");
        return;
    }
    t.link_up = up;
    if !up {
        info!(tunnel = %name, "tunnel interface down (no CHILD SA)");
        if let Some(r) = &t.routing {
            r.link(&name, false, None).await;
        }
        for r in &t.cfg.routes {
            let _ = nl
                .delete_route(
                    r.prefix.addr(),
                    r.prefix.prefix_len(),
                    &name,
                    r.metric,
                    RTPROT_ROUTEVPN,
                )
                .await;
        }
        t.hooks.fire(&t.cfg, HookEvent::Down);
        return;
    }
    for a in &t.cfg.addresses {
        let r = match t.ifindex {
            Some(i) => {
                nl.add_address_index(i, &name, a.addr(), a.prefix_len())
                    .await
            }
            None => nl.add_address(&name, a.addr(), a.prefix_len()).await,
        };
        if let Err(e) = r {
            warn!(tunnel = %name, error = %e, "cannot add address");
        }
    }
    for r in &t.cfg.routes {
        let (dst, len) = (r.prefix.addr(), r.prefix.prefix_len());
        let res = match t.ifindex {
            Some(i) => {
                nl.replace_route_index(dst, len, i, &name, r.metric, RTPROT_ROUTEVPN)
                    .await
            }
            None => {
                nl.replace_route(dst, len, &name, r.metric, RTPROT_ROUTEVPN)
                    .await
            }
        };
        if let Err(e) = res {
            warn!(tunnel = %name, error = %e, "cannot install route");
        }
    }
    info!(tunnel = %name, routes = t.cfg.routes.len(), "tunnel interface up");
    if let Some(r) = &t.routing {
        r.link(&name, true, t.heard.clone()).await;
    }
    t.hooks.fire(&t.cfg, HookEvent::Up);
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::one_tunnel as tunnel;

    #[test]
    fn interfaces_are_created_with_the_mtu_their_first_sa_needs() {
        let gcm = tunnel("esp = [\"aes128gcm16\"]\n");
        let alg = dataplane::algorithm_for(ike::iana::EncrId::AES_GCM_16, Some(128), None).unwrap();
        assert_eq!(
            expected_mtu(&gcm),
            dataplane::compute_mtu(UNDERLAY_MTU, false, alg)
        );
        assert_ne!(expected_mtu(&gcm), DEFAULT_TUN_MTU);
        assert_eq!(expected_mtu(&tunnel("mtu = 1300\n")), 1300);
    }
}
