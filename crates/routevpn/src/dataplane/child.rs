//! Installing, handing over and retiring CHILD SAs in the dataplane: which TUN queue
//! and socket an SA sends from, make-before-break on rekey (RFC 7296 §2.8), and the
//! per-SA counters and lifetimes the daemon reads.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use esp::{Algorithm, EspError, InboundSa, OutboundSa, SaParams};

use super::tables::{InboundCell, InboundEntry, Outbound, Resource, Tunnel, Volume};
use super::{lock, read, write, Dataplane, LifetimeCallback, SaCounters, Shared, TunnelId};

/// Keys and endpoints of one CHILD SA, as negotiated by IKE.
pub struct ChildKeys {
    pub spi_in: u32,
    pub spi_out: u32,
    pub alg: Algorithm,
    pub esn: bool,
    pub keys_in: esp::Zeroizing<Vec<u8>>,
    pub keys_out: esp::Zeroizing<Vec<u8>>,
    /// The peer's ESP-in-UDP address (normally port 4500).
    pub remote: SocketAddr,
    /// Our port-4500 address; selects the socket ESP is sent from.
    pub local: SocketAddr,
    pub replay_window: u32,
    /// The negotiated traffic selectors, enforced on both paths (RFC 4301 §5.1/§5.2).
    pub selectors: esp::Selectors,
    /// 0 for the fallback (or only) CHILD SA, 1.. for a per-resource one (RFC 9611):
    /// resource r is sent from the tunnel's TUN queue r mod workers.
    pub resource: u32,
    /// We answered the exchange that created it (a rekey, or a per-resource SA): keep
    /// sending on the SA it replaces (or the fallback SA) until that one is removed or
    /// the peer sends on this one (RFC 7296 §2.8), so nothing is sent before the peer
    /// can open it.
    pub defer_outbound: bool,
}

impl std::fmt::Debug for ChildKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material is never printed.
        f.debug_struct("ChildKeys")
            .field("spi_in", &format_args!("{:#010x}", self.spi_in))
            .field("spi_out", &format_args!("{:#010x}", self.spi_out))
            .field("alg", &self.alg)
            .field("esn", &self.esn)
            .field("remote", &self.remote)
            .field("local", &self.local)
            .field("replay_window", &self.replay_window)
            .field("selectors", &self.selectors)
            .field("resource", &self.resource)
            .field("defer_outbound", &self.defer_outbound)
            .finish_non_exhaustive()
    }
}

/// Where a CHILD SA's outbound half goes.
enum Place {
    /// The tunnel's own (fallback) outbound SA, sent from queue 0.
    Fallback,
    /// A per-resource SA with its TUN queue.
    Resource(Arc<Resource>),
    /// Kept, not sent on (resource beyond our queues).
    Spare,
}

impl Dataplane {
    /// Installs a CHILD SA: the inbound SA is added (keyed by `spi_in`) and
    /// the tunnel's outbound traffic switches to the new SA at once. The
    /// previous inbound SA stays until [`Self::remove_child`]
    /// (make-before-break on rekey, RFC 7296 §2.8).
    ///
    /// A per-resource SA ([`ChildKeys::resource`] > 0) replaces only its queue's
    /// outbound SA; the first of its queue opens that queue of the TUN, by name, in the
    /// calling thread's network namespace (call from the dataplane's namespace).
    pub fn install_child(&self, tunnel: TunnelId, keys: ChildKeys) -> Result<(), EspError> {
        let _admin = lock(&self.admin);
        let Some(t) = read(&self.shared.tunnels).get(&tunnel.0).cloned() else {
            tracing::warn!(?tunnel, "install_child on an unknown tunnel");
            return Err(EspError::SpiMismatch { got: keys.spi_in });
        };
        let inbound = InboundSa::new(SaParams {
            spi: keys.spi_in,
            alg: keys.alg,
            keymat: keys.keys_in,
            esn: keys.esn,
            replay_window: keys.replay_window,
            selectors: keys.selectors.clone(),
        })?;
        let outbound = OutboundSa::new(SaParams {
            spi: keys.spi_out,
            alg: keys.alg,
            keymat: keys.keys_out,
            esn: keys.esn,
            replay_window: 0,
            selectors: keys.selectors,
        })?;
        let place = self.place(&t, tunnel, keys.resource);
        let worker = match &place {
            Place::Resource(r) => r.worker,
            _ => t.worker,
        };
        // The worker's own socket of the address: its sends never contend with others'.
        let sock = self.socket_for(keys.local, worker).unwrap_or(0);
        let src_ip = self
            .shared
            .sockets
            .get(sock)
            .filter(|s| s.local.ip().is_unspecified())
            .map(|_| keys.local.ip())
            .filter(|ip| !ip.is_unspecified());
        let volume = Arc::new(Volume::new(keys.spi_in));
        let dev = match &place {
            Place::Resource(r) => r.dev.clone(),
            _ => t.dev.clone(),
        };
        let slot = match &place {
            Place::Fallback => Some(0),
            Place::Resource(r) => Some(r.slot),
            Place::Spare => None,
        };
        let entry = Arc::new(InboundEntry {
            tunnel,
            slot,
            deferred: AtomicBool::new(false),
            spi_out: keys.spi_out,
            dev,
            write_errors: t.rx_tun_write_errors.clone(),
            heard: t.heard.clone(),
            sa: Mutex::new(InboundCell {
                sa: inbound,
                peer: keys.remote,
            }),
            out_final: Mutex::new(None),
            out_spare: Mutex::new(None),
            installed: self.installs.fetch_add(1, Ordering::Relaxed),
            volume: volume.clone(),
        });
        let mut outbound = Some(Outbound {
            sa: outbound,
            spi_in: keys.spi_in,
            sock,
            dst: keys.remote,
            src_ip,
            volume,
        });
        let current = match &place {
            Place::Fallback => Some(&t.out),
            Place::Resource(r) => Some(&r.out),
            // A resource beyond our queues: received, never sent on (the peer chose more
            // SAs than we have workers).
            Place::Spare => None,
        };
        // Deferred only while something else sends: the SA it replaces, or for a resource
        // queue the fallback SA.
        let defer = keys.defer_outbound
            && (matches!(place, Place::Resource(_)) || current.is_some_and(|c| lock(c).is_some()));
        if current.is_none() || defer {
            *lock(&entry.out_spare) = outbound.take();
            entry.deferred.store(defer, Ordering::Relaxed);
        }
        if write(&self.shared.inbound)
            .insert(keys.spi_in, entry.clone())
            .is_some()
        {
            tracing::warn!(
                spi = format_args!("{:#010x}", keys.spi_in),
                "inbound SA replaced"
            );
        }
        if let (Some(outbound), Some(current)) = (outbound, current) {
            if let Some(old) = lock(current).replace(outbound) {
                self.retire_outbound(old);
            }
        }
        tracing::debug!(
            tunnel = t.name.as_str(),
            spi_in = format_args!("{:#010x}", keys.spi_in),
            spi_out = format_args!("{:#010x}", keys.spi_out),
            resource = keys.resource,
            queue = slot,
            deferred = defer,
            "CHILD SA installed"
        );
        Ok(())
    }

    /// How many per-resource CHILD SAs a tunnel can use (RFC 9611): one per worker; 0
    /// when turned off (then SA_RESOURCE_INFO is neither sent nor answered).
    pub fn resources(&self) -> u32 {
        if self.per_resource {
            u32::try_from(self.workers.len()).unwrap_or(u32::MAX)
        } else {
            0
        }
    }

    /// Where a CHILD SA of resource `resource` sends from: resource r uses queue
    /// r mod workers, whose worker is also the one its inbound SPI lane steers to.
    fn place(&self, t: &Arc<Tunnel>, tunnel: TunnelId, resource: u32) -> Place {
        let w = self.workers.len();
        let slot = usize::try_from(resource).unwrap_or(usize::MAX) % w.max(1);
        if resource == 0 {
            return Place::Fallback;
        }
        if !self.multi_queue() || slot == 0 {
            return Place::Spare;
        }
        if let Some(r) = lock(&t.resources).iter().find(|r| r.slot == slot) {
            return if r.resource == resource {
                Place::Resource(r.clone())
            } else {
                Place::Spare
            };
        }
        match self.open_queue(t, tunnel, slot, resource) {
            Ok(r) => Place::Resource(r),
            Err(e) => {
                tracing::warn!(
                    tunnel = t.name.as_str(),
                    slot,
                    "cannot open a TUN queue: {e}; the SA is received but not sent on"
                );
                Place::Spare
            }
        }
    }

    /// Opens queue `slot` of the tunnel's TUN for `resource` and hands it to worker
    /// (home + slot).
    fn open_queue(
        &self,
        t: &Arc<Tunnel>,
        tunnel: TunnelId,
        slot: usize,
        resource: u32,
    ) -> io::Result<Arc<Resource>> {
        let dev = Arc::new(t.dev.try_clone()?);
        dev.set_nonblocking(true)?;
        let worker = (t.worker + slot) % self.workers.len();
        let r = Arc::new(Resource {
            slot,
            resource,
            dev,
            out: Mutex::new(None),
            worker,
        });
        self.workers[worker].add_resource(tunnel.0, t.clone(), r.clone())?;
        lock(&t.resources).push(r.clone());
        tracing::debug!(tunnel = t.name.as_str(), slot, worker, "TUN queue opened");
        Ok(r)
    }

    /// Keeps the final counters of a replaced outbound SA with its child.
    fn retire_outbound(&self, old: Outbound) {
        retire(&read(&self.shared.inbound), old);
    }

    /// Removes the CHILD SA with this inbound SPI; if the tunnel's outbound
    /// SA is this child's, outbound is cleared (TUN packets are then dropped
    /// and counted in [`TunnelStats::tx_no_sa`]).
    pub fn remove_child(&self, spi_in: u32) {
        let _admin = lock(&self.admin);
        let Some(entry) = write(&self.shared.inbound).remove(&spi_in) else {
            return;
        };
        self.hand_over(&entry);
    }

    /// Stops sending on the CHILD SA with this inbound SPI (the newest other one of its
    /// slot takes over, as in [`Self::remove_child`]) but keeps receiving on it, for
    /// packets still in flight when a rekeyed SA is deleted; [`Self::remove_child`]
    /// removes it later.
    pub fn retire_child(&self, spi_in: u32) {
        let _admin = lock(&self.admin);
        let Some(entry) = read(&self.shared.inbound).get(&spi_in).cloned() else {
            return;
        };
        self.hand_over(&entry);
    }

    /// If the entry's outbound SA is its slot's current one, the newest other CHILD SA of
    /// the slot takes over.
    fn hand_over(&self, entry: &InboundEntry) {
        let Some(t) = read(&self.shared.tunnels).get(&entry.tunnel.0).cloned() else {
            return;
        };
        t.with_slot(entry.slot, |current| self.replace_removed(entry, current));
    }

    /// If `current` is the removed entry's outbound SA, the newest other CHILD SA of
    /// the same slot takes over (a deferred rekey, or a spare); else the slot is empty
    /// (a resource queue then seals with the fallback SA).
    fn replace_removed(&self, entry: &InboundEntry, current: &Mutex<Option<Outbound>>) {
        let mut out = lock(current);
        if out.as_ref().is_none_or(|o| o.sa.spi() != entry.spi_out) {
            return;
        }
        if let Some(o) = out.as_ref() {
            *lock(&entry.out_final) = Some(*o.sa.counters());
        }
        let inbound = read(&self.shared.inbound);
        let spare = inbound
            .values()
            .filter(|e| e.tunnel == entry.tunnel && e.slot == entry.slot)
            .filter(|e| e.spi_out != entry.spi_out)
            .filter(|e| lock(&e.out_spare).is_some())
            .max_by_key(|e| e.installed);
        *out = spare.and_then(|e| {
            e.deferred.store(false, Ordering::Relaxed);
            *lock(&e.out_final) = None;
            lock(&e.out_spare).take()
        });
    }

    /// Sets what `on_lifetime` is called with (once per process).
    pub fn on_lifetime(&self, callback: LifetimeCallback) {
        let _ = self.shared.on_lifetime.set(callback);
    }

    /// Gives the CHILD SA with this inbound SPI a lifetime in bytes and/or packets
    /// over both directions (RFC 7296 §2.8); reaching it calls `on_lifetime` once.
    pub fn set_volume_limits(&self, spi_in: u32, bytes: Option<u64>, packets: Option<u64>) {
        if let Some(e) = read(&self.shared.inbound).get(&spi_in) {
            e.volume.set_limits(bytes, packets);
        }
    }

    /// Counters of the CHILD SA with this inbound SPI (the outbound half is
    /// live while it is the tunnel's current SA, frozen after a rekey).
    pub fn counters(&self, spi_in: u32) -> Option<SaCounters> {
        let entry = read(&self.shared.inbound).get(&spi_in).cloned()?;
        let inbound = *lock(&entry.sa).sa.counters();
        let mut outbound = lock(&entry.out_final).unwrap_or_default();
        if let Some(t) = read(&self.shared.tunnels).get(&entry.tunnel.0) {
            t.for_each_out(|o| {
                if o.spi_in == spi_in {
                    outbound = *o.sa.counters();
                }
            });
        }
        Some(SaCounters { inbound, outbound })
    }

    /// Of the tunnel's current outbound SAs, the one with the fewest sequence numbers
    /// left before it must be rekeyed (RFC 4303 §3.3.3): its inbound SPI and that
    /// number; `None` without an outbound SA.
    pub fn outbound_low_seq(&self, tunnel: TunnelId) -> Option<(u32, u64)> {
        let t = read(&self.shared.tunnels).get(&tunnel.0).cloned()?;
        let mut low: Option<(u32, u64)> = None;
        t.for_each_out(|o| {
            let left = o.sa.remaining_seq();
            if low.is_none_or(|(_, l)| left < l) {
                low = Some((o.spi_in, left));
            }
        });
        low
    }
}

/// Keeps a replaced outbound SA with its child: its final counters, and itself as a
/// spare should the SA that replaced it go first.
fn retire(inbound: &HashMap<u32, Arc<InboundEntry>>, old: Outbound) {
    if let Some(e) = inbound.get(&old.spi_in) {
        *lock(&e.out_final) = Some(*old.sa.counters());
        *lock(&e.out_spare) = Some(old);
    }
}

impl Shared {
    /// Authentic ESP arrived on a CHILD SA whose outbound half was deferred: the peer
    /// has the SA, so we send on it from now on (RFC 7296 §2.8). `inbound` is the SA
    /// table the caller holds.
    pub(crate) fn promote(&self, inbound: &HashMap<u32, Arc<InboundEntry>>, entry: &InboundEntry) {
        if !entry.deferred.swap(false, Ordering::Relaxed) {
            return;
        }
        let Some(t) = read(&self.tunnels).get(&entry.tunnel.0).cloned() else {
            return;
        };
        t.with_slot(entry.slot, |current| {
            let Some(out) = lock(&entry.out_spare).take() else {
                return;
            };
            tracing::debug!(
                tunnel = t.name.as_str(),
                spi_out = format_args!("{:#010x}", entry.spi_out),
                "peer sends on the rekeyed CHILD SA: sending on it too"
            );
            if let Some(old) = lock(current).replace(out) {
                retire(inbound, old);
            }
        });
    }
}
