//! Route changes in bulk: a task that brings the kernel's routes of one protocol to the
//! state asked for, with many netlink requests in flight at once.
//!
//! Callers say what each prefix should look like ([`RouteBatch::set`], which never
//! waits); the task keeps what it installed, so no request needs a table dump. One
//! change per prefix is in flight at a time and a prefix's next change starts from the
//! state the previous one left, so an add and a withdraw of one prefix are never
//! reordered; changes still waiting are merged (only the last state asked for counts).
//! Each change succeeds or fails on its own: failures are logged (rate-limited) and
//! counted, and the prefix keeps the state the kernel really has.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{Netlink, NetlinkError, Prior};

/// Requests in flight at once: enough to keep the kernel busy, few enough that the
/// acknowledgements fit the netlink socket's receive buffer.
pub const MAX_IN_FLIGHT: usize = 256;

/// At most this many failures are logged one by one per [`FAIL_LOG_PERIOD`]; the rest
/// are counted and summed up.
const FAIL_LOG_BURST: u32 = 5;
const FAIL_LOG_PERIOD: Duration = Duration::from_secs(1);

/// A bulk of changes is summed up in one info line from this many routes on; below,
/// each route is logged at info level (at debug level while more are pending).
const SUMMARY_FROM: u64 = 20;

/// Next hops of a route (gateway, device), best first; more than one is a multipath
/// route.
pub type Hops = Vec<(IpAddr, String)>;

/// Counters since the task started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    /// Routes installed or replaced.
    pub installed: u64,
    /// Routes deleted.
    pub removed: u64,
    /// Changes the kernel refused (each logged or counted in a summary).
    pub failed: u64,
}

#[derive(Default)]
struct Counters {
    installed: AtomicU64,
    removed: AtomicU64,
    failed: AtomicU64,
}

enum Cmd {
    Set(IpNet, Option<Hops>),
    Flush(oneshot::Sender<()>),
}

/// The handle on the route task. Cheap to clone; the task ends when every clone is gone
/// and its work is done.
#[derive(Clone)]
pub struct RouteBatch {
    tx: mpsc::UnboundedSender<Cmd>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for RouteBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RouteBatch")
    }
}

impl RouteBatch {
    /// Starts the task on the current tokio runtime; its routes carry `protocol`.
    pub fn spawn(nl: Netlink, protocol: u8) -> RouteBatch {
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let task = Task {
            nl,
            protocol,
            counters: counters.clone(),
            kernel: HashMap::new(),
            wanted: HashMap::new(),
            ready: VecDeque::new(),
            queued: HashSet::new(),
            busy: HashSet::new(),
            index: Arc::new(Mutex::new(HashMap::new())),
            waiters: Vec::new(),
            fail_log: FailLog::default(),
            burst: None,
        };
        tokio::spawn(task.run(rx));
        RouteBatch { tx, counters }
    }

    /// Asks for `prefix` to be routed via `hops` (None or empty: no route). Returns at
    /// once; the change is applied after every change asked for before it.
    pub fn set(&self, prefix: IpNet, hops: Option<Hops>) {
        let hops = hops.filter(|h| !h.is_empty());
        let _ = self.tx.send(Cmd::Set(prefix.trunc(), hops));
    }

    /// Waits until every change asked for before this call has been applied (or has
    /// failed).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    pub fn stats(&self) -> BatchStats {
        BatchStats {
            installed: self.counters.installed.load(Ordering::Relaxed),
            removed: self.counters.removed.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }
}

/// What one change did.
struct Outcome {
    prefix: IpNet,
    /// The route as the kernel now has it.
    now: Option<Hops>,
    installed: bool,
    removed: bool,
    error: Option<NetlinkError>,
}

#[derive(Default)]
struct FailLog {
    window: Option<Instant>,
    logged: u32,
    suppressed: u64,
}

impl FailLog {
    fn failed(&mut self, now: Instant, prefix: IpNet, e: &NetlinkError) {
        if self
            .window
            .is_none_or(|w| now.duration_since(w) >= FAIL_LOG_PERIOD)
        {
            self.summary();
            self.window = Some(now);
            self.logged = 0;
        }
        if self.logged < FAIL_LOG_BURST {
            self.logged += 1;
            warn!(%prefix, error = %e, "route change refused by the kernel");
        } else {
            self.suppressed += 1;
        }
    }

    fn summary(&mut self) {
        if self.suppressed > 0 {
            warn!(
                count = self.suppressed,
                "more route changes refused by the kernel (not logged one by one)"
            );
            self.suppressed = 0;
        }
    }
}

/// A bulk of changes from idle to idle, for the summary line.
struct Burst {
    started: Instant,
    at_start: BatchStats,
}

struct Task {
    nl: Netlink,
    protocol: u8,
    counters: Arc<Counters>,
    /// What we installed, as the kernel has it.
    kernel: HashMap<IpNet, Hops>,
    /// The last state asked for, per prefix not yet brought there.
    wanted: HashMap<IpNet, Option<Hops>>,
    /// Prefixes with a wanted state and no change in flight, oldest first.
    ready: VecDeque<IpNet>,
    queued: HashSet<IpNet>,
    /// Prefixes with a change in flight.
    busy: HashSet<IpNet>,
    /// Interface indexes by name, forgotten whenever the task goes idle (an interface
    /// recreated later gets a new index).
    index: Arc<Mutex<HashMap<String, u32>>>,
    waiters: Vec<oneshot::Sender<()>>,
    fail_log: FailLog,
    burst: Option<Burst>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        let mut inflight = FuturesUnordered::new();
        let mut open = true;
        loop {
            while inflight.len() < MAX_IN_FLIGHT {
                let Some(prefix) = self.ready.pop_front() else {
                    break;
                };
                self.queued.remove(&prefix);
                let Some(want) = self.wanted.remove(&prefix) else {
                    continue;
                };
                let have = self.kernel.get(&prefix).cloned();
                if have == want {
                    continue;
                }
                if self.burst.is_none() {
                    self.burst = Some(Burst {
                        started: Instant::now(),
                        at_start: self.stats(),
                    });
                }
                self.busy.insert(prefix);
                inflight.push(change(
                    self.nl.clone(),
                    self.index.clone(),
                    self.protocol,
                    prefix,
                    have,
                    want,
                ));
            }
            if inflight.is_empty() && self.ready.is_empty() {
                self.idle();
                if !open {
                    break;
                }
            }
            tokio::select! {
                cmd = rx.recv(), if open => match cmd {
                    Some(cmd) => {
                        self.command(cmd);
                        // Take what else is queued before starting requests: changes
                        // to one prefix merge.
                        while let Ok(cmd) = rx.try_recv() {
                            self.command(cmd);
                        }
                    }
                    None => open = false,
                },
                Some(out) = inflight.next(), if !inflight.is_empty() => self.done(out),
            }
        }
    }

    fn stats(&self) -> BatchStats {
        BatchStats {
            installed: self.counters.installed.load(Ordering::Relaxed),
            removed: self.counters.removed.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Set(prefix, hops) => {
                self.wanted.insert(prefix, hops);
                if !self.busy.contains(&prefix) && self.queued.insert(prefix) {
                    self.ready.push_back(prefix);
                }
            }
            Cmd::Flush(tx) => self.waiters.push(tx),
        }
    }

    fn done(&mut self, out: Outcome) {
        let prefix = out.prefix;
        self.busy.remove(&prefix);
        match out.now {
            Some(h) => self.kernel.insert(prefix, h),
            None => self.kernel.remove(&prefix),
        };
        let quiet = self.wanted.len() + self.busy.len() < SUMMARY_FROM as usize;
        if out.installed {
            self.counters.installed.fetch_add(1, Ordering::Relaxed);
            let hops = self
                .kernel
                .get(&prefix)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if quiet {
                info!(%prefix, via = %hops_desc(hops), protocol = self.protocol, "route installed");
            } else {
                debug!(%prefix, via = ?hops, "route installed");
            }
        }
        if out.removed {
            self.counters.removed.fetch_add(1, Ordering::Relaxed);
            if quiet {
                info!(%prefix, protocol = self.protocol, "route withdrawn");
            } else {
                debug!(%prefix, "route withdrawn");
            }
        }
        if let Some(e) = out.error {
            self.counters.failed.fetch_add(1, Ordering::Relaxed);
            self.fail_log.failed(Instant::now(), prefix, &e);
        }
        if self.wanted.contains_key(&prefix) && self.queued.insert(prefix) {
            self.ready.push_back(prefix);
        }
    }

    fn idle(&mut self) {
        for w in self.waiters.drain(..) {
            let _ = w.send(());
        }
        if let Ok(mut i) = self.index.lock() {
            i.clear();
        }
        self.fail_log.summary();
        if let Some(b) = self.burst.take() {
            let s = self.stats();
            let (inst, rem, fail) = (
                s.installed - b.at_start.installed,
                s.removed - b.at_start.removed,
                s.failed - b.at_start.failed,
            );
            if inst + rem + fail >= SUMMARY_FROM {
                info!(
                    protocol = self.protocol,
                    installed = inst,
                    removed = rem,
                    failed = fail,
                    total = self.kernel.len(),
                    took_ms = b.started.elapsed().as_millis() as u64,
                    "kernel routes updated"
                );
            }
        }
    }
}

/// The index of `dev`, from the cache or the kernel.
async fn index_of(
    nl: &Netlink,
    cache: &Mutex<HashMap<String, u32>>,
    dev: &str,
) -> Result<Option<u32>, NetlinkError> {
    if let Some(i) = cache.lock().ok().and_then(|c| c.get(dev).copied()) {
        return Ok(Some(i));
    }
    let i = nl.link_index(dev).await;
    if let (Ok(Some(i)), Ok(mut c)) = (&i, cache.lock()) {
        c.insert(dev.to_string(), *i);
    }
    i
}

/// Deletes our route to `prefix` as it was installed via `hops`.
async fn remove(
    nl: &Netlink,
    cache: &Mutex<HashMap<String, u32>>,
    protocol: u8,
    prefix: IpNet,
    hops: &Hops,
) -> Result<(), NetlinkError> {
    let (dst, len) = (prefix.addr(), prefix.prefix_len());
    match hops.as_slice() {
        [(_, dev)] => match index_of(nl, cache, dev).await? {
            Some(oif) => nl.delete_route_index(dst, len, oif, dev, protocol).await,
            // The interface is gone, and its routes went with it.
            None => Ok(()),
        },
        _ => nl.delete_route_prefix(dst, len, protocol).await,
    }
}

/// Brings `prefix` from `have` to `want`.
async fn change(
    nl: Netlink,
    cache: Arc<Mutex<HashMap<String, u32>>>,
    protocol: u8,
    prefix: IpNet,
    have: Option<Hops>,
    want: Option<Hops>,
) -> Outcome {
    let mut out = Outcome {
        prefix,
        now: have.clone(),
        installed: false,
        removed: false,
        error: None,
    };
    let Some(new) = want else {
        if let Some(old) = &have {
            // Gone from our books either way: a route the kernel cannot delete is not
            // one we can do anything more about.
            out.now = None;
            match remove(&nl, &cache, protocol, prefix, old).await {
                Ok(()) => {
                    out.removed = true;
                }
                Err(e) => out.error = Some(e),
            }
        }
        return out;
    };
    let mut prior = if have.is_some() {
        Prior::Ours
    } else {
        Prior::Unknown
    };
    if let Some(old) = &have {
        // An IPv6 route changing between single and multipath (siblings) is deleted
        // first: a replace would only touch the one sibling the kernel matches. Every
        // other change, a route moving to another tunnel included, is one atomic
        // replace: no packet meets a table without the route.
        if prefix.addr().is_ipv6() && (old.len() > 1 || new.len() > 1) {
            out.now = None;
            prior = Prior::Unknown;
            if let Err(e) = remove(&nl, &cache, protocol, prefix, old).await {
                debug!(%prefix, error = %e, "deleting before the reshape failed");
            }
        }
    }
    let (dst, len) = (prefix.addr(), prefix.prefix_len());
    let r = match new.as_slice() {
        [(gateway, dev)] => match index_of(&nl, &cache, dev).await {
            Ok(Some(oif)) => {
                nl.replace_route_via_index(dst, len, *gateway, oif, dev, protocol, prior)
                    .await
            }
            // Let the named call say which interface is missing.
            Ok(None) => {
                nl.replace_route_via(dst, len, *gateway, Some(dev), None, protocol)
                    .await
            }
            Err(e) => Err(e),
        },
        hops => {
            nl.replace_route_multipath(dst, len, hops, protocol, prior)
                .await
        }
    };
    match r {
        Ok(()) => {
            out.now = Some(new);
            out.installed = true;
        }
        Err(e) => {
            // The index may be stale (interface recreated): look it up afresh next time.
            if let Ok(mut c) = cache.lock() {
                c.clear();
            }
            out.error = Some(e);
        }
    }
    out
}

/// `169.254.12.2 dev vti0, 169.254.13.2 dev vti1` for logs.
pub fn hops_desc(hops: &[(IpAddr, String)]) -> String {
    hops.iter()
        .map(|(g, d)| format!("{g} dev {d}"))
        .collect::<Vec<_>>()
        .join(", ")
}
