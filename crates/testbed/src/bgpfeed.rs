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
            hold_time: 90,
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
                match TcpStream::connect_timeout(&peer, Duration::from_secs(1)) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() >= deadline => {
                        return Err(format!("connect {peer}: {e}"))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            };
            s.set_ttl(255).map_err(|e| format!("IP_TTL: {e}"))?;
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
        let keeper = {
            let (stop, notification) = (stop.clone(), notification.clone());
            let mut w = stream.try_clone().map_err(|e| e.to_string())?;
            let mut r = stream.try_clone().map_err(|e| e.to_string())?;
            // Read and discard what the peer sends (its UPDATEs, KEEPALIVEs) so it never
            // blocks on us; note a NOTIFICATION.
            std::thread::spawn(move || {
                let mut framer = bgp::wire::Framer::default();
                let _ = r.set_read_timeout(None);
                let res = read_until(&mut r, &mut framer, |_| false);
                if let (Err(e), Ok(mut n)) = (res, notification.lock()) {
                    *n = Some(e);
                }
            });
            std::thread::spawn(move || {
                // Hold time 90 s: a KEEPALIVE every 10 s is plenty.
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if last.elapsed() >= Duration::from_secs(10) {
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
        })
    }

    pub fn report(&self) -> &FeedReport {
        &self.report
    }

    /// How the session ended, if the peer ended it (e.g. `NOTIFICATION 6/1`).
    pub fn ended(&self) -> Option<String> {
        self.notification.lock().ok().and_then(|n| n.clone())
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
