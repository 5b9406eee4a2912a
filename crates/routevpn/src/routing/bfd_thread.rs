//! BFD in its own OS thread (`bfd`): it owns every session and the BFD sockets and
//! sleeps exactly until the earliest session deadline, a packet or a command, so a busy
//! BGP driver (UPDATE bursts, route installs, slow netlink) delays neither transmission
//! nor detection (RFC 5880 §6.8.4, §6.8.7).
//!
//! The driver sends [`Command`]s over a channel and a wake-up pipe; state changes go back
//! as [`Input::BfdState`] on the driver's channel (`try_send`: on a full channel the
//! change waits in the thread and is offered again [`RETRY_REPORT`] later, so the
//! thread never blocks on the driver). State and counters are published in
//! [`BfdShared`] for `status` and the metrics, fresh even while the driver is busy.

use std::collections::VecDeque;
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::Ordering;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::bfd_io::belongs;
use super::{canon, BfdLink, Heard, Input, SystemRng};
use crate::config::BfdConfig;
use crate::sys;

/// How soon a state change refused by the driver's full channel is offered again.
const RETRY_REPORT: Duration = Duration::from_millis(5);
/// The thread's nice value: ahead of the tokio workers (IKE crypto) whenever it wakes,
/// without a real-time class. Needs CAP_SYS_NICE; without it the default is kept.
const NICE: libc::c_int = -10;

/// What the driver asks of the thread. `peer` is the neighbour's index in the config.
pub(super) enum Command {
    Add(NewSession),
    Remove {
        peer: usize,
    },
    /// The interface the neighbour's packets must arrive on changed (its tunnel came
    /// up), with that tunnel's inbound counter.
    Link {
        peer: usize,
        link: BfdLink,
        heard: Option<Heard>,
    },
    Shutdown,
}

/// A session to start; its state changes carry `gen`, so the driver can tell them from
/// those of a session it has since replaced.
pub(super) struct NewSession {
    pub peer: usize,
    pub gen: u64,
    pub address: IpAddr,
    pub cfg: BfdConfig,
    pub link: BfdLink,
    /// The neighbour's tunnel's inbound counter, for `esp_hint`.
    pub heard: Option<Heard>,
}

/// What the thread publishes of one neighbour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PeerStatus {
    /// None: no session (paused).
    pub state: Option<bfd::State>,
    /// Packets dropped for arriving on another interface.
    pub wrong_link: u64,
    /// Sessions that left Up.
    pub flaps: u64,
    /// Of those, the ones the ESP-silence hint took down (`bfd::hint`).
    pub esp_hint_downs: u64,
}

/// Per neighbour index, as the thread last published it.
pub(super) type BfdShared = Arc<Mutex<Vec<PeerStatus>>>;

/// The driver's handle on the thread; dropping it stops the thread.
pub(super) struct BfdThread {
    cmds: std_mpsc::Sender<Command>,
    wake: UnixStream,
    pub(super) shared: BfdShared,
}

impl BfdThread {
    /// Starts the thread for `peers` neighbours with the receive and send sockets of
    /// each family that has them.
    pub(super) fn spawn(
        peers: usize,
        rx: Vec<UdpSocket>,
        tx4: Option<UdpSocket>,
        tx6: Option<UdpSocket>,
        report: mpsc::Sender<Input>,
    ) -> io::Result<BfdThread> {
        let (wake, wake_rx) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        wake_rx.set_nonblocking(true)?;
        let (cmds, cmd_rx) = std_mpsc::channel();
        let shared: BfdShared = Arc::new(Mutex::new(vec![PeerStatus::default(); peers]));
        let mut t = Thread {
            sessions: (0..peers).map(|_| None).collect(),
            stats: vec![PeerStatus::default(); peers],
            shared: shared.clone(),
            rx,
            tx4,
            tx6,
            cmds: cmd_rx,
            wake: wake_rx,
            report,
            pending: VecDeque::new(),
            rng: SystemRng(aws_lc_rs::rand::SystemRandom::new()),
        };
        std::thread::Builder::new()
            .name("bfd".into())
            .spawn(move || {
                raise_priority();
                t.run();
            })?;
        Ok(BfdThread { cmds, wake, shared })
    }

    pub(super) fn send(&self, cmd: Command) {
        if self.cmds.send(cmd).is_ok() {
            // A full pipe already holds a wake-up.
            let _ = (&self.wake).write(&[1]);
        }
    }
}

impl Drop for BfdThread {
    fn drop(&mut self) {
        self.send(Command::Shutdown);
    }
}

fn raise_priority() {
    // SAFETY: gettid and setpriority take no pointers; a -1 return is an error.
    let rc = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICE)
    };
    if rc != 0 {
        match io::Error::last_os_error() {
            e if e.kind() == io::ErrorKind::PermissionDenied => {
                debug!("BFD thread keeps the default priority: no CAP_SYS_NICE")
            }
            e => debug!(error = %e, "BFD thread keeps the default priority"),
        }
    }
}

/// A running session and what its packets are checked against.
struct Peer {
    gen: u64,
    address: IpAddr,
    session: bfd::Session,
    link: BfdLink,
    /// With `esp_hint`: the tunnel's inbound counter and its watch.
    hint: Option<(Heard, bfd::SilenceWatch)>,
    esp_hint: bool,
}

impl Peer {
    /// The tunnel's counter, as its link comes up; the same counter keeps its watch
    /// (a Probe in progress stays).
    fn set_heard(&mut self, heard: Option<Heard>) {
        let same = match (&self.hint, &heard) {
            (Some((old, _)), Some(new)) => Arc::ptr_eq(old, new),
            _ => false,
        };
        if !same {
            self.hint = heard
                .filter(|_| self.esp_hint)
                .map(|h| (h, bfd::SilenceWatch::new()));
        }
    }

    /// When the hint wants its next sample: only while Up (the peer's interval known).
    fn hint_deadline(&self, now: Instant) -> Option<Instant> {
        let (_, w) = self.hint.as_ref()?;
        let up = self.session.state() == bfd::State::Up;
        (up && self.session.remote_tx_interval().is_some()).then(|| w.poll_timeout().unwrap_or(now))
    }
}

/// A state change for the driver.
struct Report {
    peer: usize,
    gen: u64,
    from: bfd::State,
    to: bfd::State,
    diag: bfd::Diag,
}

struct Thread {
    sessions: Vec<Option<Peer>>,
    stats: Vec<PeerStatus>,
    shared: BfdShared,
    rx: Vec<UdpSocket>,
    tx4: Option<UdpSocket>,
    tx6: Option<UdpSocket>,
    cmds: std_mpsc::Receiver<Command>,
    wake: UnixStream,
    report: mpsc::Sender<Input>,
    /// State changes the driver's channel had no room for yet, oldest first.
    pending: VecDeque<Report>,
    rng: SystemRng,
}

impl Thread {
    fn run(&mut self) {
        let mut buf = vec![0u8; 2048];
        loop {
            if !self.commands() {
                return;
            }
            let now = Instant::now();
            // Packets first: one that arrived just before its deadline keeps the session.
            for k in 0..self.rx.len() {
                loop {
                    let r = match sys::recv_with_ttl(&self.rx[k], &mut buf) {
                        Ok(r) => r,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            debug!(error = %e, "BFD receive error");
                            break;
                        }
                    };
                    // RFC 5881 §5: only packets sent from one hop away (TTL 255).
                    if r.ttl != Some(bfd::limits::TTL) {
                        debug!(from = %r.from, ttl = ?r.ttl, "BFD packet with TTL != 255 dropped");
                        continue;
                    }
                    let data = buf.get(..r.len).unwrap_or_default();
                    self.packet(now, r.from, r.ifindex, data);
                }
            }
            let now = Instant::now();
            for i in 0..self.sessions.len() {
                self.service(now, i);
            }
            if !self.flush_reports() {
                return;
            }
            self.publish();
            let next = self
                .sessions
                .iter()
                .flatten()
                .flat_map(|p| [p.session.poll_timeout(), p.hint_deadline(now)])
                .flatten()
                .chain((!self.pending.is_empty()).then(|| now + RETRY_REPORT))
                .min();
            let mut fds: Vec<RawFd> = self.rx.iter().map(|s| s.as_raw_fd()).collect();
            fds.push(self.wake.as_raw_fd());
            if let Err(e) = wait(
                &fds,
                next.map(|t| t.saturating_duration_since(Instant::now())),
            ) {
                warn!(error = %e, "BFD thread cannot wait for its sockets");
                std::thread::sleep(RETRY_REPORT);
            }
        }
    }

    /// Applies the driver's commands; false once it asked us to stop (or is gone).
    fn commands(&mut self) -> bool {
        let mut drain = [0u8; 64];
        while matches!((&self.wake).read(&mut drain), Ok(n) if n > 0) {}
        loop {
            match self.cmds.try_recv() {
                Ok(Command::Add(s)) => self.add(s),
                Ok(Command::Remove { peer }) => {
                    if let Some(slot) = self.sessions.get_mut(peer) {
                        *slot = None;
                    }
                }
                Ok(Command::Link { peer, link, heard }) => {
                    if let Some(Some(p)) = self.sessions.get_mut(peer) {
                        p.link = link;
                        p.set_heard(heard);
                    }
                }
                Ok(Command::Shutdown) | Err(std_mpsc::TryRecvError::Disconnected) => return false,
                Err(std_mpsc::TryRecvError::Empty) => return true,
            }
        }
    }

    fn add(&mut self, new: NewSession) {
        let NewSession {
            peer,
            gen,
            address,
            cfg,
            link,
            heard,
        } = new;
        if peer >= self.sessions.len() {
            return;
        }
        let scfg = bfd::SessionConfig {
            local_discr: self.fresh_discriminator(),
            desired_min_tx: cfg.interval,
            required_min_rx: cfg.interval,
            detect_mult: cfg.multiplier,
            passive: false,
        };
        match bfd::Session::new(scfg, Instant::now()) {
            Ok(s) => {
                let session = match cfg.auth {
                    Some(a) => s.with_auth(a),
                    None => s,
                };
                let mut p = Peer {
                    gen,
                    address,
                    session,
                    link,
                    hint: None,
                    esp_hint: cfg.esp_hint,
                };
                p.set_heard(heard);
                self.sessions[peer] = Some(p);
            }
            Err(e) => warn!(neighbor = %address, error = %e, "cannot start BFD"),
        }
    }

    /// RFC 5880 §6.8.1: a random local discriminator (an off-path attacker cannot guess
    /// it), nonzero and unique among our sessions.
    fn fresh_discriminator(&mut self) -> u32 {
        loop {
            let mut b = [0u8; 4];
            bfd::Rng::fill(&mut self.rng, &mut b);
            let d = u32::from_be_bytes(b);
            let taken = self
                .sessions
                .iter()
                .flatten()
                .any(|p| p.session.local_discr() == d);
            if d != 0 && !taken {
                return d;
            }
        }
    }

    fn packet(&mut self, now: Instant, from: SocketAddr, ifindex: Option<u32>, data: &[u8]) {
        let pkt = match bfd::ControlPacket::decode(data) {
            Ok(p) => p,
            Err(e) => {
                debug!(%from, error = %e, "malformed BFD packet");
                return;
            }
        };
        // RFC 5880 §6.3: by Your Discriminator, or by source address while it is zero.
        let src = canon(from.ip());
        let found = self.sessions.iter().position(|p| {
            p.as_ref().is_some_and(|p| {
                belongs(
                    p.session.local_discr(),
                    p.session.remote_discr(),
                    p.address,
                    src,
                    pkt.my_discr,
                    pkt.your_discr,
                )
            })
        });
        let Some(i) = found else {
            debug!(%from, your_discr = pkt.your_discr, "BFD packet for no session");
            return;
        };
        let Some(p) = &mut self.sessions[i] else {
            return;
        };
        if p.address != src {
            debug!(%from, "BFD packet from an unexpected address");
            return;
        }
        // Only what arrived on the neighbour's own link (its tunnel): a packet with the
        // right discriminators injected on another interface is not the neighbour's.
        let link_ok = match (&p.link, ifindex) {
            (BfdLink::Any, _) => true,
            (BfdLink::Index(want), Some(got)) => *want == got,
            _ => false,
        };
        if !link_ok {
            debug!(%from, ?ifindex, expected = ?p.link, "BFD packet from another interface dropped");
            self.stats[i].wrong_link += 1;
            return;
        }
        if let Err(e) = p.session.handle_datagram(now, data, &pkt) {
            debug!(%from, error = %e, "BFD packet discarded");
        }
    }

    /// One session's timers, transmissions and state changes.
    fn service(&mut self, now: Instant, i: usize) {
        let Some(p) = &mut self.sessions[i] else {
            self.stats[i].state = None;
            return;
        };
        if p.hint_deadline(now).is_some_and(|t| t <= now) && hint(p, now) {
            self.stats[i].esp_hint_downs += 1;
        }
        if p.session.poll_timeout().is_some_and(|t| t <= now) {
            p.session.handle_timeout(now);
        }
        let to = SocketAddr::new(p.address, bfd::limits::CONTROL_PORT);
        let sock = if p.address.is_ipv4() {
            &self.tx4
        } else {
            &self.tx6
        };
        let mut out = Vec::new();
        while p.session.poll_datagram(now, &mut self.rng, &mut out) {
            if let Some(s) = sock {
                if let Err(e) = s.send_to(&out, to) {
                    debug!(%to, error = %e, "BFD send failed");
                }
            }
            out.clear();
        }
        while let Some(bfd::Event::StateChange { from, to, diag }) = p.session.poll_event() {
            info!(neighbor = %p.address, from = ?from, to = ?to, diag = ?diag, "BFD session {:?}", to);
            if from == bfd::State::Up {
                self.stats[i].flaps += 1;
                // The hint's history ends with the session; it starts over when Up.
                if let Some((_, w)) = &mut p.hint {
                    w.reset();
                }
            }
            self.pending.push_back(Report {
                peer: i,
                gen: p.gen,
                from,
                to,
                diag,
            });
        }
        self.stats[i].state = Some(p.session.state());
    }

    /// Hands the state changes to the driver without blocking; false once it is gone.
    fn flush_reports(&mut self) -> bool {
        while let Some(r) = self.pending.pop_front() {
            let input = Input::BfdState {
                peer: r.peer,
                gen: r.gen,
                from: r.from,
                to: r.to,
                diag: r.diag,
            };
            match self.report.try_send(input) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.pending.push_front(r);
                    return true;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        }
        true
    }

    fn publish(&mut self) {
        if let Ok(mut s) = self.shared.lock() {
            if *s != self.stats {
                s.clone_from(&self.stats);
            }
        }
    }
}

/// One sample of the ESP-silence hint (`bfd::hint`): a Poll when a busy tunnel fell
/// silent, the session down when even the Poll went unanswered. True when it took the
/// session down.
fn hint(p: &mut Peer, now: Instant) -> bool {
    let (Some((heard, watch)), Some(interval)) = (&mut p.hint, p.session.remote_tx_interval())
    else {
        return false;
    };
    match watch.sample(now, heard.load(Ordering::Relaxed), interval) {
        bfd::Hint::Nothing => false,
        bfd::Hint::Probe => {
            debug!(neighbor = %p.address, "inbound ESP silent for a BFD interval: polling the peer");
            p.session.start_poll(now);
            false
        }
        bfd::Hint::Lost {
            silent,
            busy_packets,
        } => {
            warn!(
                neighbor = %p.address,
                silent_ms = silent.as_millis() as u64,
                packets_before = busy_packets,
                "BFD down on the ESP-silence hint: the tunnel's inbound ESP stopped and the BFD Poll went unanswered"
            );
            p.session.path_lost(now);
            true
        }
    }
}

/// Sleeps until one of `fds` is readable or `timeout` (None: for good) has passed;
/// nanosecond timeouts (ppoll), so a session is served at its deadline, not up to a
/// millisecond late.
fn wait(fds: &[RawFd], timeout: Option<Duration>) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    });
    let tsp = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `pfds` is a live array of `pfds.len()` initialized pollfds; `tsp` is null
    // or points at `ts`, alive for the call; a null signal mask leaves it unchanged.
    let rc = unsafe {
        libc::ppoll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            tsp,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}
