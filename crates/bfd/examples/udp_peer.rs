//! Manual interop probe: runs one `bfd::Session` over real UDP against a peer such as BIRD
//! or FRR and prints every state change. Usage (inside a network namespace):
//! `udp_peer LOCAL_IP PEER_IP SECONDS [admin-down-at-SECONDS]`.
//! Not the daemon: no TTL check on receive (std cannot read it), one session only.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use bfd::{limits, ControlPacket, Session, SessionConfig};

/// Jitter source for the probe only (the daemon uses a CSPRNG).
struct ClockRng(u64);
impl bfd::Rng for ClockRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (self.0 >> 33) as u8;
        }
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let local: IpAddr = args[1].parse().expect("LOCAL_IP");
    let peer: IpAddr = args[2].parse().expect("PEER_IP");
    let secs: u64 = args[3].parse().expect("SECONDS");
    let admin_at: Option<u64> = args.get(4).map(|s| s.parse().expect("admin-down-at"));
    let rx = UdpSocket::bind(SocketAddr::new(local, limits::CONTROL_PORT))?;
    let tx = UdpSocket::bind(SocketAddr::new(local, limits::SOURCE_PORT_MIN))?;
    tx.set_ttl(u32::from(limits::TTL))?;
    let start = Instant::now();
    let mut rng = ClockRng(start.elapsed().as_nanos() as u64 | 1);
    let mut s = Session::new(
        SessionConfig {
            local_discr: 0x5eed_0001,
            desired_min_tx: Duration::from_millis(100),
            required_min_rx: Duration::from_millis(100),
            detect_mult: 3,
            passive: false,
        },
        start,
    )
    .expect("config");
    let mut buf = [0u8; 512];
    let mut admin_done = false;
    while start.elapsed() < Duration::from_secs(secs) {
        let now = Instant::now();
        if admin_at.is_some_and(|a| !admin_done && now - start >= Duration::from_secs(a)) {
            admin_done = true;
            s.set_admin_down(now, true);
        }
        s.handle_timeout(now);
        while let Some(p) = s.poll_transmit(now, &mut rng) {
            tx.send_to(&p.to_bytes(), SocketAddr::new(peer, limits::CONTROL_PORT))?;
            if p.poll || p.final_ {
                println!(
                    "{:>8.3} sent {:?} P={} F={}",
                    (now - start).as_secs_f64(),
                    p.state,
                    p.poll,
                    p.final_
                );
            }
        }
        while let Some(e) = s.poll_event() {
            println!("{:>8.3} {e:?}", (now - start).as_secs_f64());
        }
        let wait = s
            .poll_timeout()
            .map_or(Duration::from_millis(50), |t| {
                t.saturating_duration_since(Instant::now())
            })
            .max(Duration::from_millis(1));
        rx.set_read_timeout(Some(wait))?;
        if let Ok((n, from)) = rx.recv_from(&mut buf) {
            let now = Instant::now();
            match buf.get(..n).map(ControlPacket::decode) {
                Some(Ok(p)) => {
                    if p.poll || p.final_ {
                        println!(
                            "{:>8.3} got {:?} P={} F={} from {from}",
                            (now - start).as_secs_f64(),
                            p.state,
                            p.poll,
                            p.final_
                        );
                    }
                    if let Err(e) = s.handle_packet(now, &p) {
                        println!("discarded: {e}");
                    }
                }
                other => println!("bad packet from {from}: {other:?}"),
            }
        }
    }
    println!(
        "final: state={:?} remote={:?} tx_interval={:?} detection={:?}",
        s.state(),
        s.remote_state(),
        s.tx_interval(),
        s.detection_time()
    );
    Ok(())
}
