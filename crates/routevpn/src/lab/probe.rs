//! Continuous UDP probe: a sender in one namespace, an echo responder in another.
//!
//! UDP rather than ICMP or `ping` processes: no raw socket or output parsing, every
//! probe carries its sequence number, and the send and reply instants are taken in this
//! process on one monotonic clock. Each thread enters its namespace with `setns`, which
//! changes only the calling thread; sockets stay in the namespace they were made in.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// Marks our datagrams, so stray packets are not counted.
const MAGIC: u32 = 0x7276_6c62; // "rvlb"
const PROBE_LEN: usize = 12;
const READ_TIMEOUT: Duration = Duration::from_millis(50);

/// Moves the calling thread into the network namespace `/run/netns/<name>`.
pub fn enter_netns(name: &str) -> anyhow::Result<()> {
    let path = format!("/run/netns/{name}");
    let f = File::open(&path).with_context(|| format!("opening {path}"))?;
    crate::sys::enter_netns(&f).with_context(|| format!("setns into {name}"))
}

fn encode(seq: u64) -> [u8; PROBE_LEN] {
    let mut b = [0u8; PROBE_LEN];
    b[..4].copy_from_slice(&MAGIC.to_be_bytes());
    b[4..].copy_from_slice(&seq.to_be_bytes());
    b
}

fn decode(b: &[u8]) -> Option<u64> {
    let magic = b.get(..4)?;
    let seq = b.get(4..PROBE_LEN)?;
    if b.len() != PROBE_LEN || magic != MAGIC.to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(seq.try_into().ok()?))
}

/// Echo responder: answers each probe datagram with itself.
pub struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Where it listens (port resolved when 0 was asked for).
    pub addr: SocketAddr,
}

impl Responder {
    /// Listens on `bind` inside namespace `ns` (None: this process's namespace).
    pub fn start(ns: Option<String>, bind: SocketAddrV4) -> anyhow::Result<Responder> {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("lab-responder".into())
            .spawn(move || {
                let sock = (|| {
                    if let Some(ns) = &ns {
                        enter_netns(ns)?;
                    }
                    let s = UdpSocket::bind(bind).context("binding the probe responder")?;
                    s.set_read_timeout(Some(READ_TIMEOUT))?;
                    anyhow::Ok(s)
                })();
                let sock = match sock {
                    Ok(s) => {
                        let _ = tx.send(s.local_addr().map_err(anyhow::Error::from));
                        s
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let mut buf = [0u8; 64];
                while !flag.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        if let Some(b) = buf.get(..n).filter(|b| decode(b).is_some()) {
                            let _ = sock.send_to(b, from);
                        }
                    }
                }
            })?;
        let addr = rx.recv().context("probe responder thread died")??;
        Ok(Responder {
            stop,
            thread: Some(thread),
            addr,
        })
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Send and reply instants, indexed by sequence number.
#[derive(Debug, Default, Clone)]
pub struct ProbeLog {
    pub sent: Vec<Instant>,
    pub replied: Vec<Option<Instant>>,
}

impl ProbeLog {
    /// First reply to a probe sent at or after `t`: (sequence number, reply instant).
    pub fn first_reply_sent_after(&self, t: Instant) -> Option<(u64, Instant)> {
        self.sent
            .iter()
            .zip(&self.replied)
            .enumerate()
            .find_map(|(i, (s, r))| match r {
                Some(r) if *s >= t => Some((i as u64, *r)),
                _ => None,
            })
    }

    /// Probes sent in `[from, to)` that got no reply.
    pub fn lost_between(&self, from: Instant, to: Instant) -> usize {
        self.sent
            .iter()
            .zip(&self.replied)
            .filter(|(s, r)| **s >= from && **s < to && r.is_none())
            .count()
    }

    /// Replies received at or after `t`.
    pub fn replies_since(&self, t: Instant) -> usize {
        self.replied.iter().flatten().filter(|r| **r >= t).count()
    }

    /// Longest time between consecutive received replies (in arrival order).
    pub fn max_reply_gap(&self) -> Duration {
        let mut r: Vec<Instant> = self.replied.iter().flatten().copied().collect();
        r.sort();
        r.windows(2)
            .map(|w| w[1].saturating_duration_since(w[0]))
            .max()
            .unwrap_or_default()
    }

    pub fn received(&self) -> usize {
        self.replied.iter().flatten().count()
    }
}

/// The sending side: one probe every `interval`, replies recorded by a second thread.
pub struct Prober {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<ProbeLog>>,
    threads: Vec<JoinHandle<()>>,
}

impl Prober {
    /// Probes `target` from namespace `ns` (None: this process's namespace).
    pub fn start(
        ns: Option<String>,
        target: SocketAddr,
        interval: Duration,
    ) -> anyhow::Result<Prober> {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(ProbeLog::default()));
        let (tx, rx) = mpsc::channel();
        let (flag, slog) = (stop.clone(), log.clone());
        let sender = std::thread::Builder::new()
            .name("lab-probe-tx".into())
            .spawn(move || {
                let sock = (|| {
                    if let Some(ns) = &ns {
                        enter_netns(ns)?;
                    }
                    let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
                        .context("binding the prober")?;
                    s.set_read_timeout(Some(READ_TIMEOUT))?;
                    anyhow::Ok(s)
                })();
                let sock = match sock.and_then(|s| Ok((s.try_clone()?, s))) {
                    Ok((rx_sock, s)) => {
                        let _ = tx.send(Ok(rx_sock));
                        s
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let start = Instant::now();
                let mut seq: u64 = 0;
                while !flag.load(Ordering::Relaxed) {
                    // Fixed schedule: a slow send does not shift later probes.
                    let due = start + interval * u32::try_from(seq).unwrap_or(u32::MAX);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    {
                        let mut l = slog.lock().unwrap_or_else(|p| p.into_inner());
                        l.sent.push(Instant::now());
                        l.replied.push(None);
                    }
                    // No route (mid-failover) is just a lost probe.
                    let _ = sock.send_to(&encode(seq), target);
                    seq += 1;
                }
            })?;
        let rx_sock: UdpSocket = rx.recv().context("prober thread died")??;
        let (flag, rlog) = (stop.clone(), log.clone());
        let receiver = std::thread::Builder::new()
            .name("lab-probe-rx".into())
            .spawn(move || {
                let mut buf = [0u8; 64];
                // Keep listening briefly after stop for replies still in flight.
                let mut stopped_at: Option<Instant> = None;
                loop {
                    if flag.load(Ordering::Relaxed) {
                        let t = *stopped_at.get_or_insert_with(Instant::now);
                        if t.elapsed() > Duration::from_millis(500) {
                            break;
                        }
                    }
                    let Ok((n, from)) = rx_sock.recv_from(&mut buf) else {
                        continue;
                    };
                    let now = Instant::now();
                    if from != target {
                        continue;
                    }
                    let Some(seq) = buf.get(..n).and_then(decode) else {
                        continue;
                    };
                    let mut l = rlog.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(slot @ None) =
                        usize::try_from(seq).ok().and_then(|i| l.replied.get_mut(i))
                    {
                        *slot = Some(now);
                    }
                }
            })?;
        Ok(Prober {
            stop,
            log,
            threads: vec![sender, receiver],
        })
    }

    /// A copy of the log so far.
    pub fn snapshot(&self) -> ProbeLog {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops sending, waits for late replies (≤ 0.5 s), returns the final log.
    pub fn finish(mut self) -> ProbeLog {
        self.halt();
        self.snapshot()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Waits until the prober has had `n` consecutive replies (bounded by `timeout`).
pub fn wait_flowing(
    p: &Prober,
    n: usize,
    timeout: Duration,
    cancel: &dyn Fn() -> bool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let l = p.snapshot();
        let answered = l.replied.iter().rev().skip(5).take(n);
        if l.replied.len() >= n + 5 && answered.clone().all(|r| r.is_some()) {
            return Ok(());
        }
        if cancel() {
            bail!("interrupted");
        }
        if start.elapsed() > timeout {
            bail!(
                "probes not answered within {timeout:?} ({} sent, {} answered)",
                l.sent.len(),
                l.received()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_round_trip_and_rejects_foreign_datagrams() {
        assert_eq!(decode(&encode(0)), Some(0));
        assert_eq!(decode(&encode(u64::MAX)), Some(u64::MAX));
        assert_eq!(decode(&[]), None);
        assert_eq!(decode(&encode(7)[..11]), None);
        let mut long = encode(7).to_vec();
        long.push(0);
        assert_eq!(decode(&long), None);
        let mut bad = encode(7);
        bad[0] ^= 1;
        assert_eq!(decode(&bad), None);
    }

    #[test]
    fn probes_over_loopback_are_answered_and_counted() {
        let r = Responder::start(None, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).unwrap();
        let p = Prober::start(None, r.addr, Duration::from_millis(10)).unwrap();
        wait_flowing(&p, 10, Duration::from_secs(10), &|| false).unwrap();
        let mid = Instant::now();
        std::thread::sleep(Duration::from_millis(100));
        drop(r);
        std::thread::sleep(Duration::from_millis(200));
        let end = Instant::now();
        let log = p.finish();
        assert!(log.sent.len() >= 30, "{} sent", log.sent.len());
        assert!(log.first_reply_sent_after(mid).is_some());
        // After the responder stopped, probes go unanswered (loopback UDP is reliable).
        assert!(log.lost_between(end - Duration::from_millis(100), end) >= 5);
        assert!(log.received() >= 15);
        assert!(log.max_reply_gap() < Duration::from_secs(1));
    }

    #[test]
    fn log_queries() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let log = ProbeLog {
            sent: vec![ms(0), ms(10), ms(20), ms(30)],
            replied: vec![Some(ms(1)), None, None, Some(ms(400))],
        };
        assert_eq!(log.first_reply_sent_after(ms(5)), Some((3, ms(400))));
        assert_eq!(log.lost_between(ms(0), ms(30)), 2);
        assert_eq!(log.replies_since(ms(2)), 1);
        assert_eq!(log.max_reply_gap(), Duration::from_millis(399));
        assert_eq!(log.received(), 2);
    }
}
