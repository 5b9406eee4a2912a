//! Traffic between namespaces from threads that enter them (no helper programs):
//! bounded TCP transfers with a content check, and single UDP datagrams. Each side reports `BYTES DIGEST` (FNV-1a
//! 64 over the stream), so a test compares what was sent with what arrived.

use crate::Netns;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs `f` on a new thread inside the network namespace `ns` (the namespace stays
/// alive until the thread ends).
pub fn in_netns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> JoinHandle<Result<T, String>> {
    let ns = ns.clone();
    std::thread::spawn(move || {
        let path = format!("/run/netns/{}", ns.name());
        let file = std::fs::File::open(&path).map_err(|e| format!("open {path}: {e}"))?;
        // SAFETY: setns(2) on a valid open namespace fd; CLONE_NEWNET moves only this
        // thread, and the fd outlives the call.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
        }
        let r = f();
        drop(ns);
        r
    })
}

/// FNV-1a 64 over a byte stream, with its length.
#[derive(Clone, Copy, Debug)]
pub struct Digest {
    bytes: u64,
    hash: u64,
}

impl Default for Digest {
    fn default() -> Self {
        Digest {
            bytes: 0,
            hash: 0xcbf2_9ce4_8422_2325,
        }
    }
}

impl Digest {
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.bytes += data.len() as u64;
    }

    /// `BYTES DIGEST`.
    pub fn report(&self) -> String {
        format!("{} {:016x}", self.bytes, self.hash)
    }
}

/// `len` pseudo-random bytes from `seed` (xorshift64*), the same on every run.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sockaddr(addr: &str, port: u16) -> Result<SocketAddr, String> {
    let ip: IpAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    Ok(SocketAddr::new(ip, port))
}

/// Listens on `addr:port` in `ns` and returns once it listens. The thread accepts one
/// connection within `timeout`, reads until EOF (each read within `timeout`) and
/// yields `BYTES DIGEST` of what arrived.
pub fn tcp_sink(
    ns: &Netns,
    addr: &str,
    port: u16,
    timeout: Duration,
) -> Result<JoinHandle<Result<String, String>>, String> {
    let sa = sockaddr(addr, port)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = in_netns(ns, move || {
        let listener = match TcpListener::bind(sa) {
            Ok(l) => {
                let _ = tx.send(Ok(()));
                l
            }
            Err(e) => {
                let msg = format!("bind {sa}: {e}");
                let _ = tx.send(Err(msg.clone()));
                return Err(msg);
            }
        };
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + timeout;
        let mut conn = loop {
            match listener.accept() {
                Ok((c, _)) => break c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        return Err(format!("no connection to {sa} within {timeout:?}"));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(format!("accept on {sa}: {e}")),
            }
        };
        conn.set_nonblocking(false).map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let mut d = Digest::default();
        let mut buf = vec![0u8; 65536];
        loop {
            match conn.read(&mut buf) {
                Ok(0) => return Ok(d.report()),
                Ok(n) => d.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read from {sa}: {e}")),
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("sink on {sa} did not start")),
    }
}

/// Connects from `ns` to `addr:port` (within `timeout`) and sends the blocks `next`
/// yields until it yields None; returns `BYTES DIGEST` of what was sent.
pub fn tcp_send(
    ns: &Netns,
    addr: &str,
    port: u16,
    timeout: Duration,
    mut next: impl FnMut() -> Option<Vec<u8>> + Send + 'static,
) -> Result<String, String> {
    let sa = sockaddr(addr, port)?;
    in_netns(ns, move || {
        let mut s =
            TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("connect {sa}: {e}"))?;
        s.set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let mut d = Digest::default();
        while let Some(block) = next() {
            s.write_all(&block)
                .map_err(|e| format!("send to {sa}: {e}"))?;
            d.update(&block);
        }
        s.shutdown(std::net::Shutdown::Write)
            .map_err(|e| format!("shutdown {sa}: {e}"))?;
        Ok(d.report())
    })
    .join()
    .map_err(|_| "sender thread panicked".to_string())?
}

/// Sends one UDP datagram from `ns` (unbound source port) to `addr:port`.
pub fn udp_send(ns: &Netns, addr: &str, port: u16, payload: &[u8]) -> Result<(), String> {
    let sa = sockaddr(addr, port)?;
    let payload = payload.to_vec();
    in_netns(ns, move || {
        let any: SocketAddr = if sa.is_ipv4() {
            "0.0.0.0:0".parse().expect("literal")
        } else {
            "[::]:0".parse().expect("literal")
        };
        let s = std::net::UdpSocket::bind(any).map_err(|e| format!("bind {any}: {e}"))?;
        s.send_to(&payload, sa)
            .map(|_| ())
            .map_err(|e| format!("send to {sa}: {e}"))
    })
    .join()
    .map_err(|_| "sender thread panicked".to_string())?
}

/// Sends `per_flow` small datagrams on each of `flows` UDP flows (each from its own
/// source port) from `from` to `addr` (a port the receiver picks), received in `to`;
/// returns how many arrived. Paced and bounded: for tests about which path a flow
/// takes, not about loss.
pub fn udp_flows(
    from: &Netns,
    to: &Netns,
    addr: &str,
    flows: usize,
    per_flow: usize,
) -> Result<usize, String> {
    let bind = sockaddr(addr, 0)?;
    let want = flows * per_flow;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let receiver = in_netns(to, move || {
        let s = std::net::UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        let _ = ready_tx.send(s.local_addr().map_err(|e| e.to_string())?);
        let mut buf = [0u8; 2048];
        let mut got = 0;
        // Ends at the count or after 2 s without a datagram.
        while got < want && s.recv(&mut buf).is_ok() {
            got += 1;
        }
        Ok(got)
    });
    let Ok(sa) = ready_rx.recv_timeout(Duration::from_secs(10)) else {
        let why = match receiver.join() {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => "it ended".to_string(),
            Err(_) => "it panicked".to_string(),
        };
        return Err(format!("receiver did not start: {why}"));
    };
    let any: SocketAddr = if sa.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    in_netns(from, move || {
        for _ in 0..flows {
            let s = std::net::UdpSocket::bind(any).map_err(|e| format!("bind {any}: {e}"))?;
            for i in 0..per_flow {
                s.send_to(&[i as u8; 200], sa)
                    .map_err(|e| format!("send to {sa}: {e}"))?;
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| "sender thread panicked".to_string())??;
    receiver
        .join()
        .map_err(|_| "receiver thread panicked".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_and_generator_are_stable() {
        let a = pseudo_random(7, 1000);
        assert_eq!(a, pseudo_random(7, 1000));
        assert_ne!(a, pseudo_random(3, 1000));
        let mut d = Digest::default();
        d.update(b"a");
        // FNV-1a 64 of "a".
        assert_eq!(d.report(), "1 af63dc4c8601ec8c");
    }
}
