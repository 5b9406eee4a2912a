//! BFD Control packet decoder (RFC 5880 §4.1, §6.8.6) on arbitrary bytes, then a session fed
//! with whatever decodes.

use std::time::{Duration, Instant};

struct ZeroRng;
impl bfd::Rng for ZeroRng {
    fn fill(&mut self, buf: &mut [u8]) {
        buf.fill(0);
    }
}

pub fn bfd_packet(data: &[u8]) {
    let Ok(p) = bfd::ControlPacket::decode(data) else {
        return;
    };
    // decode -> encode -> decode is the identity (the auth section is the session's).
    if !p.authenticated {
        let bytes = p.to_bytes();
        assert_eq!(bfd::ControlPacket::decode(&bytes), Ok(p));
        assert_eq!(&bytes[..3], &data[..3]);
        assert_eq!(&bytes[4..], &data[4..24]);
    }

    let now = Instant::now();
    let cfg = bfd::SessionConfig {
        local_discr: p.your_discr.max(1),
        desired_min_tx: Duration::from_millis(100),
        required_min_rx: Duration::from_millis(100),
        detect_mult: 3,
        passive: false,
    };
    let Ok(mut s) = bfd::Session::new(cfg, now) else {
        return;
    };
    if p.authenticated {
        // Both SHA1 modes, picked by a header bit, verify arbitrary sections (§6.7.4).
        let mode = if data[0] & 1 == 0 {
            bfd::Sha1Mode::Keyed
        } else {
            bfd::Sha1Mode::Meticulous
        };
        let key = bfd::AuthConfig::new(mode, data[2], b"fuzz-key").expect("valid key");
        s = s.with_auth(key);
    }
    let _ = s.handle_datagram(now, data, &p);
    let later = now + Duration::from_secs(2);
    s.handle_timeout(later);
    let mut out = Vec::new();
    while s.poll_datagram(later, &mut ZeroRng, &mut out) {
        assert!(bfd::ControlPacket::decode(&out).is_ok());
        out.clear();
    }
    while s.poll_event().is_some() {}
}
