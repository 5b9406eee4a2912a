//! A TCP byte stream into an established-bound session, in arbitrary chunks: the
//! framer and FSM must never panic.
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bgp::{Session, SessionConfig};

pub fn bgp_session_stream(data: &[u8]) {
    let t = Instant::now();
    let mut s = Session::new(SessionConfig::new(65001, 65002, Ipv4Addr::new(10, 0, 0, 1)));
    s.start(t);
    s.handle_connected(t);
    let Some((&step, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(step).max(1);
    for (i, c) in rest.chunks(step).enumerate() {
        let now = t + Duration::from_millis(i as u64 * 100);
        s.handle_bytes(now, c);
        s.handle_timeout(now);
        while s.poll_transmit().is_some() {}
        while s.poll_event().is_some() {}
    }
}
