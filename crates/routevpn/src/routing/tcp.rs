//! BGP's TCP transport: the port 179 listeners, outgoing connections bound to our tunnel
//! address, each neighbor's [`Transport`], and connection collisions (RFC 4271 §6.8).
//!
//! Collisions: when both ends connect at once, the end with the higher tunnel address
//! keeps its attempt and holds the peer's connection; an incoming connection during
//! OpenSent/OpenConfirm on our own connection is held too. The held connection's OPEN
//! settles it by BGP Identifier ([`bgp::resolve_collision`]); if the peer's wins (or
//! ours dies meanwhile) the session restarts on the peer's connection.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bgp::StateName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, warn};

use super::{canon, Driver, Input};

/// BGP messages are at most 4096 bytes (RFC 4271 §4.1): a colliding connection that
/// sends more without a full OPEN is closed.
const MAX_PENDING: usize = bgp::limits::MAX_MESSAGE_LEN;

/// A peer that stops reading must not make us buffer without bound: past this many
/// unwritten bytes on one connection the session is reset.
pub(super) const MAX_WRITE_QUEUE: usize = 4 << 20;

/// A single write that makes no progress for this long ends the connection (a peer
/// that stopped reading, after our Cease or otherwise).
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// One TCP connection: a writer task fed through `tx` and a reader task feeding the
/// driver `Input::Bytes`/`Input::Closed` tagged with `id`.
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) tx: mpsc::UnboundedSender<Vec<u8>>,
    /// Bytes handed to the writer and not yet written.
    queued: Arc<AtomicUsize>,
    reader: AbortHandle,
    writer: AbortHandle,
    /// We connected (rather than accepted).
    outbound: bool,
    /// Our end's address (the speaker's next hop self).
    pub(super) local: IpAddr,
}

impl Conn {
    /// Queued bytes are still written, then the write side is shut down.
    pub(super) fn close(self) {
        self.reader.abort();
    }

    /// Drops the connection at once, queued bytes and all.
    fn reset(self) {
        self.reader.abort();
        self.writer.abort();
    }

    /// Queues `bytes` for the writer; false (nothing queued) when that would put more
    /// than [`MAX_WRITE_QUEUE`] bytes behind a peer that is not reading.
    pub(super) fn send(&self, bytes: Vec<u8>) -> bool {
        let len = bytes.len();
        let before = self.queued.fetch_add(len, Ordering::Relaxed);
        if before + len > MAX_WRITE_QUEUE {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        if self.tx.send(bytes).is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
        }
        true
    }
}

/// Our outgoing connect() in flight; its result comes back as `Input::ConnectResult`.
pub(super) struct Attempt {
    id: u64,
    task: AbortHandle,
}

/// Our side of a neighbor's transport while a collision is being settled.
pub(super) enum Ours {
    /// Our attempt failed or our connection closed: the peer's decides.
    Nothing,
    Connecting(Attempt),
    Open(Conn),
}

impl Ours {
    fn close(self) {
        match self {
            Ours::Nothing => {}
            Ours::Connecting(a) => a.task.abort(),
            Ours::Open(c) => c.close(),
        }
    }
}

/// The peer's connection held during a collision, with what it sent so far.
type Held = (Conn, Vec<u8>);

/// A neighbor's TCP transport.
#[derive(Default)]
pub(super) enum Transport {
    /// No connection and no attempt.
    #[default]
    Idle,
    /// Our connect() is in flight.
    Connecting(Attempt),
    /// The session's connection (ours or the peer's).
    Open(Conn),
    /// RFC 4271 §6.8: the peer's connection is held until its OPEN arrives.
    Colliding {
        ours: Ours,
        theirs: Conn,
        buf: Vec<u8>,
    },
}

impl Transport {
    fn into_parts(self) -> (Ours, Option<Held>) {
        match self {
            Transport::Idle => (Ours::Nothing, None),
            Transport::Connecting(a) => (Ours::Connecting(a), None),
            Transport::Open(c) => (Ours::Open(c), None),
            Transport::Colliding { ours, theirs, buf } => (ours, Some((theirs, buf))),
        }
    }

    fn from_parts(ours: Ours, held: Option<Held>) -> Transport {
        match (ours, held) {
            (Ours::Nothing, None) => Transport::Idle,
            (Ours::Connecting(a), None) => Transport::Connecting(a),
            (Ours::Open(c), None) => Transport::Open(c),
            (ours, Some((theirs, buf))) => Transport::Colliding { ours, theirs, buf },
        }
    }

    fn update(&mut self, f: impl FnOnce(Ours, Option<Held>) -> (Ours, Option<Held>)) {
        let (ours, held) = std::mem::take(self).into_parts();
        let (ours, held) = f(ours, held);
        *self = Transport::from_parts(ours, held);
    }

    /// The connection the session runs on, if any.
    pub(super) fn conn(&self) -> Option<&Conn> {
        match self {
            Transport::Open(c)
            | Transport::Colliding {
                ours: Ours::Open(c),
                ..
            } => Some(c),
            _ => None,
        }
    }

    fn attempt_id(&self) -> Option<u64> {
        match self {
            Transport::Connecting(a)
            | Transport::Colliding {
                ours: Ours::Connecting(a),
                ..
            } => Some(a.id),
            _ => None,
        }
    }

    pub(super) fn is_colliding(&self) -> bool {
        matches!(self, Transport::Colliding { .. })
    }

    /// Closes every connection and attempt.
    pub(super) fn close(&mut self) {
        let (ours, held) = std::mem::take(self).into_parts();
        ours.close();
        if let Some((c, _)) = held {
            c.close();
        }
    }

    /// Closes our connection or attempt; a held connection stays.
    fn close_ours(&mut self) {
        self.update(|ours, held| {
            ours.close();
            (Ours::Nothing, held)
        });
    }

    /// Closes our connection (not an attempt); a held connection stays.
    pub(super) fn close_conn(&mut self) {
        self.update(|ours, held| match ours {
            Ours::Open(c) => {
                c.close();
                (Ours::Nothing, held)
            }
            other => (other, held),
        });
    }

    /// Resets our connection (queued bytes dropped); a held connection stays.
    pub(super) fn reset_conn(&mut self) {
        self.update(|ours, held| match ours {
            Ours::Open(c) => {
                c.reset();
                (Ours::Nothing, held)
            }
            other => (other, held),
        });
    }

    /// Aborts our attempt, if one is in flight.
    fn abort_attempt(&mut self) {
        self.update(|ours, held| match ours {
            Ours::Connecting(a) => {
                a.task.abort();
                (Ours::Nothing, held)
            }
            other => (other, held),
        });
    }

    /// Forgets our attempt `id` (its result has arrived); false if it is not ours.
    fn finish_attempt(&mut self, id: u64) -> bool {
        if self.attempt_id() != Some(id) {
            return false;
        }
        self.update(|ours, held| match ours {
            Ours::Connecting(_) => (Ours::Nothing, held),
            other => (other, held),
        });
        true
    }

    /// Our new attempt replaces any earlier one.
    fn start_attempt(&mut self, attempt: Attempt) {
        self.update(|ours, held| {
            ours.close();
            (Ours::Connecting(attempt), held)
        });
    }

    /// The session now runs on `conn`; a held connection stays.
    fn connected(&mut self, conn: Conn) {
        self.update(|ours, held| {
            ours.close();
            (Ours::Open(conn), held)
        });
    }

    /// Holds the peer's connection until its OPEN settles the collision.
    fn hold(&mut self, theirs: Conn) {
        self.update(|ours, held| {
            if let Some((old, _)) = held {
                old.close();
            }
            (ours, Some((theirs, Vec::new())))
        });
    }

    /// Closes the held connection.
    fn drop_held(&mut self) {
        self.update(|ours, held| {
            if let Some((c, _)) = held {
                c.close();
            }
            (ours, None)
        });
    }

    /// Takes the held connection, leaving ours.
    fn take_held(&mut self) -> Option<Held> {
        let mut taken = None;
        self.update(|ours, held| {
            taken = held;
            (ours, None)
        });
        taken
    }
}

pub(super) fn tcp_listener(v6: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        if v6 { Domain::IPV6 } else { Domain::IPV4 },
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    let addr: SocketAddr = if v6 {
        s.set_only_v6(true)?;
        "[::]:179".parse().expect("literal")
    } else {
        "0.0.0.0:179".parse().expect("literal")
    };
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(16)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

pub(super) fn spawn_accept(l: std::net::TcpListener, tx: mpsc::Sender<Input>) {
    tokio::spawn(async move {
        let Ok(l) = tokio::net::TcpListener::from_std(l) else {
            return;
        };
        loop {
            match l.accept().await {
                Ok((s, _)) => {
                    if tx.send(Input::Accepted(s)).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    debug!(error = %e, "BGP accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
}

impl Driver {
    fn spawn_conn(&mut self, stream: TcpStream, outbound: bool) -> Option<Conn> {
        let id = self.next_conn;
        self.next_conn += 1;
        let _ = stream.set_nodelay(true);
        let local = canon(stream.local_addr().ok()?.ip());
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let queued = Arc::new(AtomicUsize::new(0));
        let left = queued.clone();
        let writer = tokio::spawn(async move {
            while let Some(b) = rx.recv().await {
                match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&b)).await {
                    Ok(Ok(())) => {
                        left.fetch_sub(b.len(), Ordering::Relaxed);
                    }
                    _ => return,
                }
            }
            let _ = tokio::time::timeout(WRITE_TIMEOUT, wr.shutdown()).await;
        })
        .abort_handle();
        let itx = self.tx.clone();
        let reader = tokio::spawn(async move {
            // 16 KiB (about 3,000 prefixes) per turn of the routing loop, so a full
            // table arriving at once leaves room for timers and BFD between reads.
            let mut buf = vec![0u8; 16384];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = itx.send(Input::Closed { conn: id }).await;
                        return;
                    }
                    Ok(n) => {
                        let data = buf.get(..n).unwrap_or_default().to_vec();
                        if itx.send(Input::Bytes { conn: id, data }).await.is_err() {
                            return;
                        }
                    }
                }
            }
        })
        .abort_handle();
        Some(Conn {
            id,
            tx,
            queued,
            reader,
            writer,
            outbound,
            local,
        })
    }

    pub(super) fn accepted(&mut self, now: Instant, stream: TcpStream) {
        let Ok(peer) = stream.peer_addr() else { return };
        let ip = canon(peer.ip());
        let Some(i) = self
            .neighbors
            .iter()
            .position(|n| n.active && n.cfg.address == ip)
        else {
            debug!(from = %peer, "BGP connection from an unconfigured or paused address refused");
            return;
        };
        if self.neighbors[i].gtsm {
            // RFC 5082 §3: from here on the kernel drops this peer's segments unless
            // they arrive with TTL >= 254 (the listener already did when every
            // neighbour of the family has GTSM).
            if let Err(e) = crate::sys::set_gtsm(stream.as_raw_fd(), ip.is_ipv6()) {
                warn!(neighbor = %ip, error = %e, "cannot set GTSM on the BGP connection; closing it");
                return;
            }
        }
        let Some(conn) = self.spawn_conn(stream, false) else {
            return;
        };
        let id = self.neighbors[i].id;
        let state = self.speaker.session(id).map(|s| s.state());
        let n = &self.neighbors[i];
        match state {
            // Both ends connecting at once (they bring sessions up when the same tunnel
            // comes up): if each dropped its own attempt for the other's, both would die
            // and retry in lockstep. The end with the higher address keeps its attempt
            // and holds the peer's connection in reserve (RFC 4271 §6.8 then settles it
            // by BGP Identifier once an OPEN arrives).
            Some(StateName::Connect | StateName::Active)
                if matches!(n.transport, Transport::Connecting(_))
                    && n.bind.is_some_and(|b| b > ip) =>
            {
                debug!(neighbor = %ip, "connection collision: our connect is in flight; holding the peer's");
                self.neighbors[i].transport.hold(conn);
            }
            Some(StateName::Connect | StateName::Active) => {
                self.neighbors[i].transport.abort_attempt();
                let local = conn.local;
                if self.speaker.handle_connected(now, id, local) {
                    self.neighbors[i].transport.connected(conn);
                } else {
                    conn.close();
                }
            }
            Some(StateName::OpenSent | StateName::OpenConfirm) if matches!(&n.transport, Transport::Open(c) if c.outbound) =>
            {
                debug!(neighbor = %ip, "connection collision: waiting for the peer's OPEN");
                self.neighbors[i].transport.hold(conn);
            }
            // Idle only because our last connection just failed (its idle-hold timer is
            // running): the peer is evidently reachable, so start over on its connection
            // rather than refuse it and retry later.
            Some(StateName::Idle) if n.transport.conn().is_none() => {
                debug!(neighbor = %ip, "incoming BGP connection while idle: restarting on it");
                self.restart_on(now, i, conn, &[]);
            }
            _ => {
                debug!(neighbor = %ip, ?state, "incoming BGP connection refused");
                conn.close();
            }
        }
    }

    pub(super) fn connect(&mut self, i: usize) {
        let attempt = self.next_conn;
        self.next_conn += 1;
        let n = &mut self.neighbors[i];
        let addr = SocketAddr::new(n.cfg.address, bgp::limits::BGP_PORT);
        let bind = n.bind;
        let gtsm = n.gtsm;
        let password = n.cfg.password.clone();
        let timeout = self.cfg.connect_retry;
        let tx = self.tx.clone();
        let task = tokio::spawn(async move {
            let result = async {
                let s = if addr.is_ipv4() {
                    TcpSocket::new_v4()?
                } else {
                    TcpSocket::new_v6()?
                };
                if let Some(b) = bind {
                    s.bind(SocketAddr::new(b, 0))?;
                }
                if gtsm {
                    crate::sys::set_gtsm(s.as_raw_fd(), addr.is_ipv6())?;
                }
                if let Some(p) = &password {
                    crate::sys::set_tcp_md5sig(&s, addr.ip(), p.secret())?;
                }
                tokio::time::timeout(timeout, s.connect(addr))
                    .await
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
            }
            .await;
            let _ = tx
                .send(Input::ConnectResult {
                    peer: i,
                    attempt,
                    result,
                })
                .await;
        })
        .abort_handle();
        n.transport.start_attempt(Attempt { id: attempt, task });
    }

    pub(super) fn connect_result(
        &mut self,
        now: Instant,
        i: usize,
        attempt: u64,
        result: std::io::Result<TcpStream>,
    ) {
        let Some(n) = self.neighbors.get_mut(i) else {
            return;
        };
        if !n.transport.finish_attempt(attempt) {
            return;
        }
        let id = n.id;
        match result {
            Ok(stream) => {
                if n.transport.conn().is_some() || !self.speaker.accepts_connection(id) {
                    return;
                }
                // Our connection won the collision by address: drop the held one.
                n.transport.drop_held();
                let Some(conn) = self.spawn_conn(stream, true) else {
                    return;
                };
                if self.speaker.handle_connected(now, id, conn.local) {
                    self.neighbors[i].transport.connected(conn);
                } else {
                    conn.close();
                }
            }
            Err(e) => {
                debug!(neighbor = %n.cfg.address, error = %e, "BGP connect failed");
                if n.transport.is_colliding() {
                    // The peer's held connection takes over.
                    self.promote(now, i);
                } else {
                    self.speaker.handle_disconnected(now, id);
                }
            }
        }
    }

    pub(super) fn bytes(&mut self, now: Instant, conn: u64, data: Vec<u8>) {
        for i in 0..self.neighbors.len() {
            let n = &mut self.neighbors[i];
            if n.transport.conn().is_some_and(|c| c.id == conn) {
                let id = n.id;
                self.speaker.handle_bytes(now, id, &data);
                return;
            }
            let Transport::Colliding { theirs, buf, .. } = &mut n.transport else {
                continue;
            };
            if theirs.id != conn {
                continue;
            }
            buf.extend_from_slice(&data);
            // RFC 4271 §4.2: OPEN = header (19) + version, AS, hold, BGP Identifier.
            if buf.len() < 29 {
                return;
            }
            let is_open = buf.get(18) == Some(&1);
            let remote_id = buf
                .get(24..28)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(std::net::Ipv4Addr::from);
            match (is_open, remote_id) {
                (true, Some(rid)) => match bgp::resolve_collision(self.cfg.router_id, rid) {
                    bgp::CollisionWinner::LocallyInitiated => {
                        debug!(neighbor = %n.cfg.address, "collision: keeping our connection");
                        n.transport.drop_held();
                    }
                    bgp::CollisionWinner::RemotelyInitiated => {
                        debug!(neighbor = %n.cfg.address, "collision: keeping the peer's connection");
                        self.promote(now, i);
                    }
                },
                _ if buf.len() > MAX_PENDING || !is_open => n.transport.drop_held(),
                _ => {}
            }
            return;
        }
    }

    /// Restarts the session on the held incoming connection (collision lost, or our
    /// connection died while the peer's waited).
    pub(super) fn promote(&mut self, now: Instant, i: usize) {
        let Some((conn, buf)) = self.neighbors[i].transport.take_held() else {
            return;
        };
        self.restart_on(now, i, conn, &buf);
    }

    /// Restarts neighbor `i`'s session on `conn` (with bytes already read from it).
    fn restart_on(&mut self, now: Instant, i: usize, conn: Conn, buf: &[u8]) {
        let id = self.neighbors[i].id;
        self.speaker.remove_peer(now, id);
        // The Cease goes out on the old connection, which then closes.
        self.flush_transmit();
        let n = &mut self.neighbors[i];
        n.transport.close_ours();
        n.established_at = None;
        self.speaker
            .add_peer(now, id, n.session.clone(), n.policy.clone());
        if self.speaker.handle_connected(now, id, conn.local) {
            self.neighbors[i].transport.connected(conn);
            self.speaker.handle_bytes(now, id, buf);
        } else {
            conn.close();
        }
    }

    pub(super) fn closed(&mut self, now: Instant, conn: u64) {
        for i in 0..self.neighbors.len() {
            let n = &mut self.neighbors[i];
            if n.transport.conn().is_some_and(|c| c.id == conn) {
                debug!(neighbor = %n.cfg.address, "BGP connection closed");
                if n.transport.is_colliding() {
                    // The peer closed ours because it kept its own: use that one.
                    n.transport.close_ours();
                    self.promote(now, i);
                    return;
                }
                let id = n.id;
                self.speaker.handle_disconnected(now, id);
                return;
            }
            if matches!(&n.transport, Transport::Colliding { theirs, .. } if theirs.id == conn) {
                n.transport.drop_held();
                return;
            }
        }
    }

    /// Writes what the speaker queued to each peer's connection; resets the session of
    /// a peer with more than [`MAX_WRITE_QUEUE`] bytes it has not read.
    pub(super) fn flush_transmit(&mut self) {
        let mut stuck = Vec::new();
        while let Some((id, bytes)) = self.speaker.poll_transmit() {
            if let Some(c) = self
                .neighbors
                .get(id.0 as usize)
                .and_then(|n| n.transport.conn())
            {
                if !c.send(bytes) && !stuck.contains(&id) {
                    stuck.push(id);
                }
            }
        }
        for id in stuck {
            let Some(n) = self.neighbors.get_mut(id.0 as usize) else {
                continue;
            };
            warn!(neighbor = %n.cfg.address, limit = MAX_WRITE_QUEUE, "BGP peer is not reading: write queue full, resetting the session");
            n.transport.reset_conn();
            n.established_at = None;
            self.speaker.handle_disconnected(Instant::now(), id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task() -> AbortHandle {
        tokio::spawn(std::future::pending::<()>()).abort_handle()
    }

    fn conn(id: u64, outbound: bool) -> Conn {
        let (tx, _rx) = mpsc::unbounded_channel();
        Conn {
            id,
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            reader: task(),
            writer: task(),
            outbound,
            local: IpAddr::from([169, 254, 12, 1]),
        }
    }

    /// A peer that reads nothing: the queue stops at MAX_WRITE_QUEUE and refuses more.
    #[tokio::test]
    async fn write_queue_is_bounded() {
        let (tx, rx) = mpsc::unbounded_channel();
        let c = Conn {
            tx,
            ..conn(1, true)
        };
        let msg = vec![0u8; 4096];
        let mut sent = 0;
        while c.send(msg.clone()) {
            sent += msg.len();
            assert!(sent <= MAX_WRITE_QUEUE, "{sent}");
        }
        assert_eq!(sent, MAX_WRITE_QUEUE);
        assert!(!c.send(vec![0u8; 1]));
        drop(rx);
    }

    fn attempt(id: u64) -> Attempt {
        Attempt { id, task: task() }
    }

    fn shape(t: &Transport) -> String {
        match t {
            Transport::Idle => "idle".into(),
            Transport::Connecting(a) => format!("connecting {}", a.id),
            Transport::Open(c) => format!("open {}", c.id),
            Transport::Colliding { ours, theirs, buf } => {
                let ours = match ours {
                    Ours::Nothing => "-".to_string(),
                    Ours::Connecting(a) => format!("connecting {}", a.id),
                    Ours::Open(c) => format!("open {}", c.id),
                };
                format!(
                    "colliding ours {ours} theirs {} ({} bytes)",
                    theirs.id,
                    buf.len()
                )
            }
        }
    }

    #[tokio::test]
    async fn collision_while_connecting() {
        let mut t = Transport::Idle;
        t.start_attempt(attempt(1));
        assert_eq!(shape(&t), "connecting 1");
        t.hold(conn(2, false));
        assert_eq!(shape(&t), "colliding ours connecting 1 theirs 2 (0 bytes)");
        assert!(t.conn().is_none() && t.is_colliding());
        // Our attempt's result arrives: the attempt is forgotten, the held one stays.
        assert!(!t.finish_attempt(9));
        assert!(t.finish_attempt(1));
        assert_eq!(shape(&t), "colliding ours - theirs 2 (0 bytes)");
        let (held, _) = t.take_held().unwrap();
        assert_eq!(held.id, 2);
        assert_eq!(shape(&t), "idle");
        t.connected(held);
        assert_eq!(t.conn().map(|c| c.id), Some(2));
    }

    #[tokio::test]
    async fn collision_on_our_open_connection() {
        let mut t = Transport::Idle;
        t.connected(conn(1, true));
        t.hold(conn(2, false));
        assert_eq!(t.conn().map(|c| c.id), Some(1));
        // Peer's OPEN lost the tie-break: its connection goes, ours stays.
        t.drop_held();
        assert_eq!(shape(&t), "open 1");
        t.hold(conn(3, false));
        // Our connection closed: the held one is all that is left.
        t.close_conn();
        assert_eq!(shape(&t), "colliding ours - theirs 3 (0 bytes)");
        t.close();
        assert_eq!(shape(&t), "idle");
    }

    #[tokio::test]
    async fn a_new_attempt_replaces_the_old_and_keeps_the_held_connection() {
        let mut t = Transport::Idle;
        t.start_attempt(attempt(1));
        t.hold(conn(2, false));
        t.start_attempt(attempt(3));
        assert_eq!(shape(&t), "colliding ours connecting 3 theirs 2 (0 bytes)");
        t.abort_attempt();
        assert_eq!(shape(&t), "colliding ours - theirs 2 (0 bytes)");
        t.close_ours();
        t.drop_held();
        assert_eq!(shape(&t), "idle");
    }
}
