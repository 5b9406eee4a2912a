//! §2.6 admission of IKE_SA_INIT across tunnels: the daemon-wide rate and half-open
//! count of [`crate::Admission`], the daemon-wide cap, and the per-peer cap.

use super::*;
use crate::Admission;

const IKE: &str = "aes256gcm16-prfsha384-x25519";
const ESP: &str = "aes256gcm16";
/// A proposal the responders do not accept: refused statelessly (NO_PROPOSAL_CHOSEN).
const OTHER_IKE: &str = "aes256gcm16-prfsha384-ecp256";

fn peer(k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(198, 51, 100, k as u8 + 1))
}

/// Responders for `n` tunnels, one peer address each, and the daemon's shared state.
struct Fleet {
    now: Instant,
    admission: Admission,
    tunnels: Vec<Session>,
    /// Per tunnel: the share of `admission` the old per-session code would ignore.
    use_admission: bool,
}

impl Fleet {
    fn new(n: usize) -> Fleet {
        let now = Instant::now();
        let tunnels = (0..n)
            .map(|k| {
                let cfg = config(
                    &format!("t{k}"),
                    "routerB",
                    &format!("peer{k}"),
                    &[IKE],
                    &[ESP],
                    "s",
                    false,
                );
                Session::new(cfg, B, peer(k), Box::new(TestRng(100 + k as u64)), now)
            })
            .collect();
        Fleet {
            now,
            admission: Admission::new(),
            tunnels,
            use_admission: true,
        }
    }

    fn deliver(&mut self, k: usize, d: Datagram) {
        if self.use_admission {
            self.tunnels[k].handle_datagram_admitted(self.now, d, &mut self.admission);
        } else {
            self.tunnels[k].handle_datagram(self.now, d);
        }
    }

    /// An initiator at tunnel `k`'s peer address.
    fn initiator(&self, k: usize, ike: &str, psk: &str, seed: u64) -> Session {
        let cfg = config(
            "x",
            &format!("peer{k}"),
            "routerB",
            &[ike],
            &[ESP],
            psk,
            true,
        );
        Session::new(cfg, peer(k), B, Box::new(TestRng(seed)), self.now)
    }

    /// Runs `init` against tunnel `k` until quiet. With `init_only`, only IKE_SA_INIT
    /// requests reach the responder (an attacker that never goes on to IKE_AUTH).
    /// Returns how many COOKIE requests the responder sent.
    fn exchange(&mut self, k: usize, init: &mut Session, init_only: bool) -> usize {
        init.handle_timeout(self.now);
        let mut cookies = 0;
        loop {
            let mut moved = false;
            while let Some(d) = init.poll_transmit() {
                moved = true;
                let exchange = crate::wire::Header::decode(&d.data).unwrap().exchange;
                if init_only && exchange != crate::iana::ExchangeType::IKE_SA_INIT {
                    continue;
                }
                self.deliver(k, mirrored(d));
            }
            while let Some(d) = self.tunnels[k].poll_transmit() {
                moved = true;
                let m = crate::wire::Message::decode(&d.data).unwrap();
                if matches!(m.payloads.first(),
                    Some(crate::wire::Payload::Notify(n)) if n.ty == NotifyType::COOKIE)
                {
                    cookies += 1;
                }
                init.handle_datagram(self.now, mirrored(d));
            }
            while init.poll_event().is_some() {}
            while self.tunnels[k].poll_event().is_some() {}
            if !moved {
                return cookies;
            }
        }
    }

    fn total_half_open(&self) -> usize {
        self.tunnels.iter().map(|t| t.half_open()).sum()
    }
}

/// 20 tunnels, each sent 3 refused IKE_SA_INITs in a second: each peer stays below its
/// own COOKIE_RATE and keeps no half-open SA, but together they exceed
/// GLOBAL_COOKIE_RATE and every tunnel demands COOKIEs; a real initiator echoes one and
/// gets its tunnel up.
#[test]
fn global_request_rate_over_many_tunnels_demands_cookies() {
    const TUNNELS: usize = 20;
    const EACH: usize = 3;
    assert!((EACH as u32) < limits::COOKIE_RATE);
    const { assert!(TUNNELS * EACH > limits::GLOBAL_COOKIE_RATE as usize) };
    let mut f = Fleet::new(TUNNELS);
    let mut cookies = 0;
    let mut seed = 1000;
    for round in 0..EACH {
        for k in 0..TUNNELS {
            seed += 1;
            f.now += Duration::from_millis(5);
            let mut bogus = f.initiator(k, OTHER_IKE, "wrong", seed);
            let c = f.exchange(k, &mut bogus, true);
            let sent = round * TUNNELS + k + 1;
            if sent <= limits::GLOBAL_COOKIE_RATE as usize {
                assert_eq!(c, 0, "request {sent} is under the daemon-wide rate");
            }
            cookies += c;
        }
    }
    assert_eq!(f.total_half_open(), 0, "refused requests keep no state");
    assert_eq!(
        cookies,
        TUNNELS * EACH - limits::GLOBAL_COOKIE_RATE as usize,
        "every request past the daemon-wide rate is asked for a COOKIE"
    );
    // The real peer of tunnel 7 in the same second: one COOKIE round trip, then up.
    f.now += Duration::from_millis(5);
    let mut real = f.initiator(7, IKE, "s", 7);
    assert_eq!(f.exchange(7, &mut real, false), 1);
    assert!(real.is_established() && f.tunnels[7].is_established());
}

/// Half-open SAs spread over 20 tunnels (2 each, below COOKIE_THRESHOLD per peer, at a
/// low rate) reach GLOBAL_COOKIE_THRESHOLD: from then on every tunnel demands COOKIEs;
/// the real peer still gets in.
#[test]
fn global_half_open_count_demands_cookies() {
    const TUNNELS: usize = 20;
    let mut f = Fleet::new(TUNNELS);
    let mut seed = 2000;
    let mut asked = 0;
    for _ in 0..2 {
        for k in 0..TUNNELS {
            // 10 per second: far below the daemon-wide rate.
            f.now += Duration::from_millis(100);
            seed += 1;
            let before = f.admission.half_open();
            let mut bogus = f.initiator(k, IKE, "wrong", seed);
            let c = f.exchange(k, &mut bogus, true);
            if before < limits::GLOBAL_COOKIE_THRESHOLD {
                assert_eq!(c, 0, "under the daemon-wide half-open threshold");
            } else {
                assert_eq!(c, 1, "at {before} half-open SAs a COOKIE is demanded");
                asked += 1;
            }
            assert_eq!(f.admission.half_open(), f.total_half_open());
        }
    }
    assert_eq!(asked, 2 * TUNNELS - limits::GLOBAL_COOKIE_THRESHOLD);
    assert!(f
        .tunnels
        .iter()
        .all(|t| t.half_open() < limits::COOKIE_THRESHOLD));
    let mut real = f.initiator(3, IKE, "s", 3);
    assert_eq!(f.exchange(3, &mut real, false), 1);
    assert!(real.is_established() && f.tunnels[3].is_established());
    // Half-open SAs expire (§2.1) and the shared count follows.
    f.now += limits::HALF_OPEN_TIMEOUT + Duration::from_secs(1);
    for t in &mut f.tunnels {
        t.handle_timeout_admitted(f.now, &mut f.admission);
    }
    assert_eq!(f.admission.half_open(), 0);
}

/// Attackers that answer COOKIEs from 20 peer addresses cannot hold more than
/// GLOBAL_MAX_HALF_OPEN half-open SAs in total; a tunnel at the cap evicts its own oldest.
#[test]
fn half_open_sas_are_capped_daemon_wide() {
    const TUNNELS: usize = 20;
    const EACH: usize = 15;
    const { assert!(EACH < limits::MAX_HALF_OPEN) };
    const { assert!(TUNNELS * EACH > limits::GLOBAL_MAX_HALF_OPEN) };
    let mut f = Fleet::new(TUNNELS);
    let mut seed = 3000;
    for _ in 0..EACH {
        for k in 0..TUNNELS {
            seed += 1;
            let mut bogus = f.initiator(k, IKE, "wrong", seed);
            f.exchange(k, &mut bogus, true);
            assert!(f.admission.half_open() <= limits::GLOBAL_MAX_HALF_OPEN);
        }
    }
    assert_eq!(f.total_half_open(), limits::GLOBAL_MAX_HALF_OPEN);
    assert_eq!(f.admission.half_open(), f.total_half_open());
    let mut real = f.initiator(11, IKE, "s", 11);
    f.exchange(11, &mut real, false);
    assert!(real.is_established() && f.tunnels[11].is_established());
    // A removed tunnel takes its half-open SAs with it.
    let mut gone = f.tunnels.pop().unwrap();
    let (its, before) = (gone.half_open(), f.admission.half_open());
    assert!(its > 0);
    gone.leave_admission(&mut f.admission);
    assert_eq!(f.admission.half_open(), before - its);
    assert_eq!(f.admission.half_open(), f.total_half_open());
}

/// §2.6: one peer address holds at most 16 half-open SAs (the documented cap, written
/// out so that raising or removing `limits::MAX_HALF_OPEN` fails here); the oldest go
/// first.
#[test]
fn half_open_sas_are_capped_per_peer_oldest_evicted() {
    const CAP: usize = 16;
    let mut f = Fleet::new(1);
    f.use_admission = false;
    let extra = 4;
    let mut spis = Vec::new();
    for seed in 0..(CAP + extra) as u64 {
        f.now += Duration::from_millis(1);
        let mut bogus = f.initiator(0, IKE, "wrong", 4000 + seed);
        f.exchange(0, &mut bogus, true);
        spis.push(bogus.status(f.now).ike_sas[0].spi_i);
    }
    let kept: Vec<u64> = f.tunnels[0]
        .status(f.now)
        .ike_sas
        .iter()
        .map(|s| s.spi_i)
        .collect();
    assert_eq!(kept.len(), CAP, "{kept:x?}");
    let mut want = spis[extra..].to_vec();
    let mut got = kept.clone();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "the {extra} oldest were evicted");
}
