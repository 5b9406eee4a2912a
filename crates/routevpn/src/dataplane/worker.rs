//! The dataplane workers: a fixed pool of threads (about one per core), each serving
//! the port-4500 sockets and TUN interfaces assigned to it through one epoll set
//! (`mio`, edge-triggered). No thread per tunnel, no timer: an idle worker sleeps in
//! `epoll_wait` until a packet arrives or the dataplane stops (issue 13).
//!
//! Latency: with `busy_poll` set, a worker that just moved packets polls that much
//! longer before it sleeps, so the next packet of an exchange does not pay for a
//! wake-up. Between polls it yields its core: without that, on a 2-core machine the
//! spinning workers of both ends held both cores and the ping they were waiting for
//! waited for a time slice (1 ms of busy poll made the idle RTT 1.6 ms, not 0.09 ms).
//! Off by default: the spin is CPU time (about 15 % more per GB under bulk traffic).
//!
//! Fairness: each ready descriptor gets one bounded turn (one `recvmmsg` batch, or up
//! to [`super::tx::MAX_READS`] TUN reads) and goes to the back of the worker's ready
//! queue while it has more, so one busy tunnel cannot starve the others.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};

use super::rx::RxBuffers;
use super::tables::{Resource, Socket, Tunnel};
use super::tx::TxBuffers;
use super::{lock, Shared};

/// Wakes a worker for the dataplane's stop.
const WAKER: Token = Token(usize::MAX);
/// Socket tokens start here; tunnel tokens are the tunnel ids below it.
const SOCKET_BASE: usize = 1 << 40;
/// A resource queue's token: its slot (1..) shifted above every socket token, or'd with
/// the tunnel id.
const SLOT_SHIFT: u32 = 48;

fn resource_token(id: usize, slot: usize) -> Token {
    Token((slot << SLOT_SHIFT) | id)
}
/// epoll events fetched per `epoll_wait`.
const EVENTS: usize = 256;

/// What a worker's token stands for.
#[derive(Clone)]
enum Member {
    Socket(Arc<Socket>),
    Tunnel(Arc<Tunnel>),
    Resource(Arc<Tunnel>, Arc<Resource>),
}

/// The API side of one worker thread.
pub(crate) struct Worker {
    registry: Registry,
    waker: mio::Waker,
    members: Mutex<HashMap<Token, Member>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Worker {
    /// Starts worker `index`.
    pub(crate) fn spawn(
        sh: Arc<Shared>,
        index: usize,
        busy_poll: Duration,
    ) -> io::Result<Arc<Worker>> {
        let poll = Poll::new()?;
        let worker = Arc::new(Worker {
            registry: poll.registry().try_clone()?,
            waker: mio::Waker::new(poll.registry(), WAKER)?,
            members: Mutex::new(HashMap::new()),
            thread: Mutex::new(None),
        });
        let w = worker.clone();
        let h = std::thread::Builder::new()
            .name(format!("esp-w{index}"))
            .spawn(move || run(sh, w, poll, busy_poll))?;
        *lock(&worker.thread) = Some(h);
        Ok(worker)
    }

    /// Serves port-4500 socket number `index` from now on.
    pub(crate) fn add_socket(&self, index: usize, sock: Arc<Socket>) -> io::Result<()> {
        let token = Token(SOCKET_BASE + index);
        self.register(sock.sock.as_raw_fd(), token, Member::Socket(sock))
    }

    /// Serves this tunnel's TUN from now on.
    pub(crate) fn add_tunnel(&self, id: usize, t: Arc<Tunnel>) -> io::Result<()> {
        self.register(t.dev.as_raw_fd(), Token(id), Member::Tunnel(t))
    }

    /// Serves one more queue of the tunnel, with its per-resource SA (RFC 9611).
    pub(crate) fn add_resource(
        &self,
        id: usize,
        t: Arc<Tunnel>,
        r: Arc<Resource>,
    ) -> io::Result<()> {
        let token = resource_token(id, r.slot);
        self.register(r.dev.as_raw_fd(), token, Member::Resource(t, r))
    }

    /// Stops serving a resource queue (before it closes).
    pub(crate) fn remove_resource(&self, id: usize, slot: usize) {
        if let Some(Member::Resource(t, r)) = lock(&self.members).remove(&resource_token(id, slot))
        {
            let fd = r.dev.as_raw_fd();
            if let Err(e) = self.registry.deregister(&mut SourceFd(&fd)) {
                tracing::debug!(tunnel = t.name.as_str(), slot, "epoll deregister: {e}");
            }
        }
    }

    fn register(&self, fd: RawFd, token: Token, m: Member) -> io::Result<()> {
        // In the table before epoll can report it.
        lock(&self.members).insert(token, m);
        let r = self
            .registry
            .register(&mut SourceFd(&fd), token, Interest::READABLE);
        if r.is_err() {
            lock(&self.members).remove(&token);
        }
        r
    }

    /// Stops serving the tunnel; its descriptor is still open, so this is safe to call
    /// before it closes. A turn already under way may finish with its own reference.
    pub(crate) fn remove_tunnel(&self, id: usize) {
        if let Some(Member::Tunnel(t)) = lock(&self.members).remove(&Token(id)) {
            let fd = t.dev.as_raw_fd();
            if let Err(e) = self.registry.deregister(&mut SourceFd(&fd)) {
                tracing::debug!(tunnel = t.name.as_str(), "epoll deregister: {e}");
            }
        }
    }

    /// Wakes the thread (after the dataplane's stop flag was set) and waits for it.
    pub(crate) fn stop(&self) {
        if let Err(e) = self.waker.wake() {
            tracing::warn!("waking a dataplane worker: {e}");
        }
        if let Some(h) = lock(&self.thread).take() {
            let _ = h.join();
        }
        lock(&self.members).clear();
    }
}

fn run(sh: Arc<Shared>, w: Arc<Worker>, mut poll: Poll, busy_poll: Duration) {
    let mut events = Events::with_capacity(EVENTS);
    // Until when an idle worker keeps polling instead of sleeping.
    let mut spin_until = Instant::now();
    // Descriptors that had more to give after their turn (edge-triggered: epoll will
    // not report them again until they are drained).
    let mut ready: VecDeque<Token> = VecDeque::new();
    let mut rx = RxBuffers::new();
    let mut tx = TxBuffers::new();
    while !sh.stop.load(Ordering::Relaxed) {
        let busy = !ready.is_empty() || (!busy_poll.is_zero() && Instant::now() < spin_until);
        let timeout = busy.then_some(Duration::ZERO);
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                tracing::warn!("dataplane epoll_wait: {e}");
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        if busy && events.is_empty() && ready.is_empty() {
            // Spinning: let the threads that will produce the next packet run.
            std::thread::yield_now();
        }
        for ev in events.iter() {
            let token = ev.token();
            if token != WAKER && !ready.contains(&token) {
                ready.push_back(token);
            }
        }
        if !ready.is_empty() && !busy_poll.is_zero() {
            spin_until = Instant::now() + busy_poll;
        }
        // One turn for each descriptor that is ready now.
        for _ in 0..ready.len() {
            let Some(token) = ready.pop_front() else {
                break;
            };
            let member = lock(&w.members).get(&token).cloned();
            let more = match member {
                Some(Member::Socket(s)) => rx.turn(&sh, &s),
                Some(Member::Tunnel(t)) => tx.turn(&sh, &t, None),
                Some(Member::Resource(t, r)) => tx.turn(&sh, &t, Some(&r)),
                None => false,
            };
            if more {
                ready.push_back(token);
            }
        }
    }
}
