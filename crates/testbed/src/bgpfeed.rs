//! A raw BGP speaker that announces many IPv4 prefixes as fast as TCP takes them, for
//! the route-install benchmark and tests: one session from inside a namespace, OPEN
//! with the 4-octet AS and IPv4 unicast capabilities, then every UPDATE written back to
//! back (each up to 4096 octets), then KEEPALIVEs until it is stopped. It sends with
//! TTL 255 so a GTSM peer (RFC 5082) accepts it.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bgp::limits::AS_TRANS;
use bgp::wire::{
    announce_updates, withdraw_updates, AsPath, Capability, Message, MpNextHop, Open, OptParam,
    PathAttributes,
};
use bgp::Prefix;

use crate::{in_netns, Netns};

/// What to announce, and to whom.
#[derive(Clone, Debug)]
pub struct FeedConfig {
    /// The peer's address (port 179).
    pub peer: IpAddr,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    /// NEXT_HOP of every route (normally our own address on the link).
    pub next_hop: Ipv4Addr,
    /// How many prefixes ([`feed_prefixes`]).
    pub prefixes: usize,
    /// Connect and OPEN exchange within this long.
    pub timeout: Duration,
    /// Hold time we propose (RFC 4271 §4.2); we send a KEEPALIVE every third of it.
    pub hold_time: u16,
}

/// What happened on the session.
#[derive(Clone, Debug)]
pub struct FeedReport {
    /// When the first UPDATE went into the socket.
    pub first_update: Instant,
    /// When the last one did (the peer has read all but the socket buffers by then).
    pub last_update: Instant,
    /// UPDATE messages written.
    pub updates: usize,
}

/// The longest silence of the peer after the session came up: with a hold time H the
/// peer owes a message every H/3, so a much longer gap means its loop was stalled.
#[derive(Debug, Default)]
struct Silence {
    last: Option<Instant>,
    longest: Duration,
}

/// `n` distinct IPv4 prefixes: /26s counted up from 10.128.0.0 (at most 131,072).
pub fn feed_prefixes(n: usize) -> Vec<Prefix> {
    let base = u32::from(Ipv4Addr::new(10, 128, 0, 0));
    (0..n.min(1 << 17) as u32)
        .filter_map(|i| Prefix::new(IpAddr::V4(Ipv4Addr::from(base + (i << 6))), 26).ok())
        .collect()
}

/// A running feed. Dropping it closes the session (the peer withdraws the routes).
pub struct BgpFeed {
    stop: Arc<AtomicBool>,
    stream: TcpStream,
    keeper: Option<JoinHandle<Result<(), String>>>,
    report: FeedReport,
    notification: Arc<std::sync::Mutex<Option<String>>>,
    silence: Arc<std::sync::Mutex<Silence>>,
}

fn encode(m: &Message) -> Result<Vec<u8>, String> {
    m.encode()
        .map_err(|e| format!("encoding a BGP message: {e}"))
}

/// Reads whole messages from `s` until `want` says stop; NOTIFICATIONs end it with an
/// error.
fn read_until(
    s: &mut TcpStream,
    framer: &mut bgp::wire::Framer,
    mut want: impl FnMut(&Message) -> bool,
) -> Result<(), String> {
    let mut buf = [0u8; 4096];
    loop {
        while let Some(m) = framer
            .next_message()
            .map_err(|e| format!("bad message from the peer: {e}"))?
        {
            if let Message::Notification(n) = &m {
                return Err(format!("NOTIFICATION {}/{}", n.code, n.subcode));
            }
            if want(&m) {
                return Ok(());
            }
        }
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("reading from the peer: {e}"))?;
        if n == 0 {
            return Err("the peer closed the connection".into());
        }
        framer.push(&buf[..n]);
    }
}

/// A TCP connection to `peer` whose every segment, the SYN included, leaves with TTL
/// 255 (a GTSM listener drops anything less, RFC 5082 §3).
fn connect_ttl255(peer: SocketAddr) -> std::io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let (family, level, opt) = match peer {
        SocketAddr::V4(_) => (libc::AF_INET, libc::IPPROTO_IP, libc::IP_TTL),
        SocketAddr::V6(_) => (libc::AF_INET6, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS),
    };
    // SAFETY: plain socket(2); the fd is owned by the TcpStream below or closed here.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a socket we own; from here on the TcpStream closes it.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    let ttl: libc::c_int = 255;
    // SAFETY: setsockopt with a c_int value of the right size on our own socket.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&ttl as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // Bounds connect(2) too (a dropped SYN would otherwise retry for minutes).
    s.set_write_timeout(Some(Duration::from_secs(2)))?;
    let (addr, len) = sockaddr_of(peer);
    // SAFETY: `addr` is a sockaddr_storage holding a sockaddr of `len` bytes.
    let rc = unsafe { libc::connect(fd, (&addr as *const libc::sockaddr_storage).cast(), len) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(s)
}

fn sockaddr_of(a: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match a {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*v4.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: v6.port().to_be(),
                sin6_flowinfo: 0,
                sin6_addr: libc::in6_addr {
                    s6_addr: v6.ip().octets(),
                },
                sin6_scope_id: v6.scope_id(),
            };
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

impl BgpFeed {
    /// Connects from `ns`, brings the session up and writes every UPDATE; returns once
    /// the last one is in the socket.
    pub fn start(ns: &Netns, cfg: FeedConfig) -> Result<BgpFeed, String> {
        let prefixes = feed_prefixes(cfg.prefixes);
        let attrs = PathAttributes {
            as_path: AsPath::sequence(vec![cfg.asn]),
            ..PathAttributes::default()
        };
        let nh = MpNextHop {
            addr: IpAddr::V4(cfg.next_hop),
            link_local: None,
        };
        let mut wire = Vec::new();
        let mut updates = 0;
        for u in announce_updates(&attrs, nh, &prefixes) {
            wire.extend(encode(&Message::Update(u))?);
            updates += 1;
        }
        let open = Message::Open(Open {
            version: 4,
            my_as: u16::try_from(cfg.asn).unwrap_or(AS_TRANS),
            hold_time: cfg.hold_time,
            bgp_id: cfg.router_id,
            params: vec![OptParam::Capabilities(vec![
                Capability::Multiprotocol {
                    afi: bgp::wire::Afi::IPV4,
                    safi: bgp::wire::Safi::UNICAST,
                },
                Capability::FourOctetAs(cfg.asn),
            ])],
        });
        let (open, keepalive) = (encode(&open)?, encode(&Message::Keepalive)?);
        let peer = SocketAddr::new(cfg.peer, 179);
        let timeout = cfg.timeout;
        let ka = keepalive.clone();
        let (stream, report) = in_netns(ns, move || {
            let deadline = Instant::now() + timeout;
            // The peer's listener may not be up yet: retry until the deadline.
            let mut s = loop {
                match connect_ttl255(peer) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(format!("connect {peer}: {e}"))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            };
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            let mut framer = bgp::wire::Framer::default();
            // OPEN -->, <-- OPEN, KEEPALIVE -->, <-- KEEPALIVE (RFC 4271 §8.2.2).
            s.write_all(&open).map_err(|e| format!("send OPEN: {e}"))?;
            read_until(&mut s, &mut framer, |m| matches!(m, Message::Open(_)))?;
            s.write_all(&ka)
                .map_err(|e| format!("send KEEPALIVE: {e}"))?;
            read_until(&mut s, &mut framer, |m| matches!(m, Message::Keepalive))?;
            let first_update = Instant::now();
            s.write_all(&wire)
                .map_err(|e| format!("send UPDATEs: {e}"))?;
            let last_update = Instant::now();
            Ok((
                s,
                FeedReport {
                    first_update,
                    last_update,
                    updates,
                },
            ))
        })
        .join()
        .map_err(|_| "BGP feed thread panicked".to_string())??;
        let stop = Arc::new(AtomicBool::new(false));
        let notification = Arc::new(std::sync::Mutex::new(None));
        let silence = Arc::new(std::sync::Mutex::new(Silence {
            last: Some(report.first_update),
            longest: Duration::ZERO,
        }));
        let every = Duration::from_secs(u64::from(cfg.hold_time.max(3) / 3));
        let keeper = {
            let (stop, notification, gap) = (stop.clone(), notification.clone(), silence.clone());
            let mut w = stream.try_clone().map_err(|e| e.to_string())?;
            let mut r = stream.try_clone().map_err(|e| e.to_string())?;
            // Read and discard what the peer sends (its UPDATEs, KEEPALIVEs) so it never
            // blocks on us; note a NOTIFICATION.
            std::thread::spawn(move || {
                let mut framer = bgp::wire::Framer::default();
                let _ = r.set_read_timeout(None);
                let res = read_until(&mut r, &mut framer, |_| {
                    if let Ok(mut g) = gap.lock() {
                        let now = Instant::now();
                        if let Some(l) = g.last {
                            g.longest = g.longest.max(now - l);
                        }
                        g.last = Some(now);
                    }
                    false
                });
                if let (Err(e), Ok(mut n)) = (res, notification.lock()) {
                    *n = Some(e);
                }
            });
            std::thread::spawn(move || {
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    if last.elapsed() >= every {
                        w.write_all(&keepalive).map_err(|e| e.to_string())?;
                        last = Instant::now();
                    }
                }
                Ok(())
            })
        };
        Ok(BgpFeed {
            stop,
            stream,
            keeper: Some(keeper),
            report,
            notification,
            silence,
        })
    }

    pub fn report(&self) -> &FeedReport {
        &self.report
    }

    /// How the session ended, if the peer ended it (e.g. `NOTIFICATION 6/1`).
    pub fn ended(&self) -> Option<String> {
        self.notification.lock().ok().and_then(|n| n.clone())
    }

    /// The longest time without a message from the peer since the first UPDATE went
    /// out (up to now).
    pub fn longest_silence(&self) -> Duration {
        self.silence
            .lock()
            .map(|g| {
                let open = g.last.map_or(Duration::ZERO, |l| l.elapsed());
                g.longest.max(open)
            })
            .unwrap_or_default()
    }

    /// Withdraws the first `n` announced prefixes; returns when the UPDATEs are written.
    pub fn withdraw(&mut self, n: usize) -> Result<Instant, String> {
        let mut wire = Vec::new();
        for u in withdraw_updates(&feed_prefixes(n)) {
            wire.extend(encode(&Message::Update(u))?);
        }
        let t = Instant::now();
        self.stream
            .write_all(&wire)
            .map_err(|e| format!("send withdrawals: {e}"))?;
        Ok(t)
    }

    /// Closes the session without a NOTIFICATION (as a dead peer would).
    pub fn close(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(k) = self.keeper.take() {
            let _ = k.join();
        }
    }
}

impl Drop for BgpFeed {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_distinct_and_stay_in_10_128_slash_9() {
        let all = feed_prefixes(1 << 17);
        assert_eq!(all.len(), 1 << 17);
        let set: std::collections::BTreeSet<_> = all.iter().collect();
        assert_eq!(set.len(), all.len());
        let net = Prefix::new(IpAddr::V4(Ipv4Addr::new(10, 128, 0, 0)), 9).unwrap();
        assert!(all.iter().all(|p| net.contains(p) && p.len() == 26));
        assert_eq!(feed_prefixes(1 << 20).len(), 1 << 17, "capped");
    }
}
