//! BFD authentication with Keyed SHA1 and Meticulous Keyed SHA1 (RFC 5880 §4.4, §6.7.4).
//!
//! The sender puts the key (zero-padded to 20 octets) in the Auth Key/Digest field,
//! hashes the whole packet with SHA-1 and replaces the field with the digest; the
//! receiver does the same with its copy of the key. The sequence number defeats replay:
//! Meticulous increments it on every packet and the receiver demands a strictly larger
//! one; Keyed lets it stand still, so a captured packet can be replayed for as long as
//! the sender keeps the number (this module increments it on every packet for both).

use std::fmt;

use aws_lc_rs::{constant_time, digest};
use zeroize::Zeroizing;

use crate::limits;

/// §4.1 Auth Type (IANA "BFD Authentication Types"); open so unknown values survive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AuthType(pub u8);

impl AuthType {
    pub const SIMPLE_PASSWORD: AuthType = AuthType(1);
    pub const KEYED_MD5: AuthType = AuthType(2);
    pub const METICULOUS_KEYED_MD5: AuthType = AuthType(3);
    pub const KEYED_SHA1: AuthType = AuthType(4);
    pub const METICULOUS_KEYED_SHA1: AuthType = AuthType(5);
}

impl fmt::Display for AuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AuthType::SIMPLE_PASSWORD => f.write_str("simple password"),
            AuthType::KEYED_MD5 => f.write_str("keyed MD5"),
            AuthType::METICULOUS_KEYED_MD5 => f.write_str("meticulous keyed MD5"),
            AuthType::KEYED_SHA1 => f.write_str("keyed SHA1"),
            AuthType::METICULOUS_KEYED_SHA1 => f.write_str("meticulous keyed SHA1"),
            AuthType(n) => write!(f, "auth type {n}"),
        }
    }
}

/// The two SHA1 modes we implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sha1Mode {
    Keyed,
    Meticulous,
}

impl Sha1Mode {
    fn auth_type(self) -> AuthType {
        match self {
            Sha1Mode::Keyed => AuthType::KEYED_SHA1,
            Sha1Mode::Meticulous => AuthType::METICULOUS_KEYED_SHA1,
        }
    }
}

/// A configured key (§6.7: one key per session here; the Key ID tells rotations apart).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub mode: Sha1Mode,
    pub key_id: u8,
    key: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key is never printed.
        f.debug_struct("AuthConfig")
            .field("mode", &self.mode)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl AuthConfig {
    /// §4.4: the key is 1 to 20 octets.
    pub fn new(mode: Sha1Mode, key_id: u8, key: &[u8]) -> Result<AuthConfig, AuthError> {
        if key.is_empty() || key.len() > limits::SHA1_KEY_MAX {
            return Err(AuthError::KeyLength(key.len()));
        }
        Ok(AuthConfig {
            mode,
            key_id,
            key: Zeroizing::new(key.to_vec()),
        })
    }
}

/// Why an authenticated packet was discarded (§6.7.4, §6.8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("key of {0} octets; keyed SHA1 takes 1 to 20")]
    KeyLength(usize),
    #[error("authentication in use but the packet has no A bit")]
    Missing,
    #[error("the packet is authenticated but this session is not configured for it")]
    Unexpected,
    #[error("{got} does not match the configured {want}")]
    Type { want: AuthType, got: AuthType },
    #[error("auth section length {0} is not the 28 octets of keyed SHA1")]
    Length(usize),
    #[error("Auth Key ID {got} is not the configured {want}")]
    KeyId { want: u8, got: u8 },
    #[error("sequence number {got} outside the accepted window after {last}")]
    Sequence { last: u32, got: u32 },
    #[error("SHA1 digest does not verify (wrong key?)")]
    Digest,
}

/// Per-session authentication state (§6.8.1 bfd.XmitAuthSeq, bfd.RcvAuthSeq,
/// bfd.AuthSeqKnown).
#[derive(Debug)]
pub(crate) struct AuthState {
    cfg: AuthConfig,
    /// None until the first transmission, which draws a random start (§6.8.1).
    xmit_seq: Option<u32>,
    /// bfd.RcvAuthSeq while bfd.AuthSeqKnown is 1.
    rcv_seq: Option<u32>,
}

impl AuthState {
    pub(crate) fn new(cfg: AuthConfig) -> AuthState {
        AuthState {
            cfg,
            xmit_seq: None,
            rcv_seq: None,
        }
    }

    pub(crate) fn config(&self) -> &AuthConfig {
        &self.cfg
    }

    /// §6.8.1: bfd.AuthSeqKnown goes back to 0 after twice the Detection Time of silence.
    pub(crate) fn forget_sequence(&mut self) {
        self.rcv_seq = None;
    }

    /// Appends the §4.4 section to the 24-octet packet in `out` (A bit and Length set
    /// here) and signs it. `random` seeds the first sequence number.
    pub(crate) fn sign(&mut self, out: &mut Vec<u8>, random: u32) {
        let seq = self.xmit_seq.map_or(random, |s| s.wrapping_add(1));
        self.xmit_seq = Some(seq);
        let start = out.len() - limits::PACKET_LEN;
        out[start + 1] |= crate::packet::FLAG_A;
        out[start + 3] = (limits::PACKET_LEN + limits::SHA1_AUTH_LEN) as u8;
        out.extend_from_slice(&[
            self.cfg.mode.auth_type().0,
            limits::SHA1_AUTH_LEN as u8,
            self.cfg.key_id,
            0,
        ]);
        out.extend_from_slice(&seq.to_be_bytes());
        let digest_at = out.len();
        out.extend_from_slice(&self.padded_key()[..]);
        let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &out[start..]);
        out[digest_at..].copy_from_slice(d.as_ref());
    }

    /// §6.7.4 receive: `datagram` is the packet as received (A bit set, Length already
    /// checked by [`crate::ControlPacket::decode`]); `detect_mult` is the packet's.
    pub(crate) fn verify(&mut self, datagram: &[u8], detect_mult: u8) -> Result<(), AuthError> {
        let section = AuthSection::new(datagram)?;
        let want = self.cfg.mode.auth_type();
        if section.auth_type != want {
            return Err(AuthError::Type {
                want,
                got: section.auth_type,
            });
        }
        if section.section.len() != limits::SHA1_AUTH_LEN {
            return Err(AuthError::Length(section.section.len()));
        }
        let seq = section
            .seq()
            .ok_or(AuthError::Length(section.section.len()))?;
        if section.key_id != self.cfg.key_id {
            return Err(AuthError::KeyId {
                want: self.cfg.key_id,
                got: section.key_id,
            });
        }
        if let Some(last) = self.rcv_seq {
            // Circular 32-bit window: Keyed [last, last + 3M], Meticulous [last + 1, last + 3M].
            let ahead = seq.wrapping_sub(last);
            let lowest = u32::from(self.cfg.mode == Sha1Mode::Meticulous);
            if ahead < lowest || ahead > 3 * u32::from(detect_mult) {
                return Err(AuthError::Sequence { last, got: seq });
            }
        }
        let mut copy = Zeroizing::new(section.packet.to_vec());
        let digest_at = copy.len() - limits::SHA1_DIGEST_LEN;
        let received = copy[digest_at..].to_vec();
        copy[digest_at..].copy_from_slice(&self.padded_key()[..]);
        let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, &copy);
        constant_time::verify_slices_are_equal(d.as_ref(), &received)
            .map_err(|_| AuthError::Digest)?;
        self.rcv_seq = Some(seq);
        Ok(())
    }

    fn padded_key(&self) -> Zeroizing<[u8; limits::SHA1_DIGEST_LEN]> {
        let mut k = Zeroizing::new([0u8; limits::SHA1_DIGEST_LEN]);
        k[..self.cfg.key.len()].copy_from_slice(&self.cfg.key);
        k
    }
}

/// Checked view of the authentication section after the 24-octet header (§4.2–4.4).
struct AuthSection<'a> {
    /// The packet up to its Length field (what the digest covers).
    packet: &'a [u8],
    /// Auth Type, Auth Len, Auth Key ID, Reserved and the type-specific rest.
    section: &'a [u8],
    auth_type: AuthType,
    key_id: u8,
}

impl<'a> AuthSection<'a> {
    fn new(datagram: &'a [u8]) -> Result<AuthSection<'a>, AuthError> {
        let length = usize::from(*datagram.get(3).ok_or(AuthError::Length(0))?);
        let packet = datagram.get(..length).ok_or(AuthError::Length(0))?;
        let section = packet
            .get(limits::PACKET_LEN..)
            .ok_or(AuthError::Length(0))?;
        let [auth_type, len, key_id, ..] = *section else {
            return Err(AuthError::Length(section.len()));
        };
        // §6.8.6: the section's own length must be exactly what the packet's Length leaves.
        if usize::from(len) != section.len() {
            return Err(AuthError::Length(usize::from(len)));
        }
        Ok(AuthSection {
            packet,
            section,
            auth_type: AuthType(auth_type),
            key_id,
        })
    }

    /// §4.4 Sequence Number (only meaningful once the length was checked for SHA1).
    fn seq(&self) -> Option<u32> {
        self.section
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ControlPacket, Discard, Session, SessionConfig, State};
    use std::time::{Duration, Instant};

    // Captured from BIRD 2.0.12 on this machine: `protocol bfd { interface "*" { interval
    // 100 ms; multiplier 3; authentication meticulous keyed sha1 | keyed sha1; password
    // "routevpn-bfd-key" { id 7; }; }; neighbor 198.51.100.2; }` in a namespace, UDP
    // payloads read with tcpdump on the peer's veth (two consecutive Down packets each).
    const KEY: &[u8] = b"routevpn-bfd-key";
    const BIRD_METICULOUS: [&str; 2] = [
        "20440334e04adfc900000000000f4240000186a000000000051c070017335fa7e831886941d1ed3db4a9b5a26876a29ebd35a031",
        "20440334e04adfc900000000000f4240000186a000000000051c070017335fa87e514dac837a54d0491eec5a09bb2a7f4c2f5bda",
    ];
    const BIRD_KEYED: [&str; 2] = [
        "20440334cf20b24e00000000000f4240000186a000000000041c070062eec809b0b8a22a9ee1d9306773b0253bf432f79fc71ecb",
        "20440334cf20b24e00000000000f4240000186a000000000041c070062eec80a9af9cf3e45d5deb77e08167b18dc08fce59d0e6c",
    ];

    fn state(mode: Sha1Mode, key: &[u8], id: u8) -> AuthState {
        AuthState::new(AuthConfig::new(mode, id, key).unwrap())
    }

    #[test]
    fn bird_packets_verify_and_our_signature_is_byte_identical() {
        for (mode, pkts) in [
            (Sha1Mode::Meticulous, BIRD_METICULOUS),
            (Sha1Mode::Keyed, BIRD_KEYED),
        ] {
            let bytes: Vec<Vec<u8>> = pkts.iter().map(|h| hex::decode(h).unwrap()).collect();
            let mut rx = state(mode, KEY, 7);
            for b in &bytes {
                let pkt = ControlPacket::decode(b).unwrap();
                assert!(pkt.authenticated);
                rx.verify(b, pkt.detect_mult).unwrap();
            }
            // Sign BIRD's first header with its sequence number: the same 52 octets.
            let first = &bytes[0];
            let seq = u32::from_be_bytes(first[28..32].try_into().unwrap());
            let mut ours = ControlPacket::decode(first).unwrap().to_bytes().to_vec();
            state(mode, KEY, 7).sign(&mut ours, seq);
            assert_eq!(&ours, first, "{mode:?}");
        }
    }

    #[test]
    fn replay_wrong_key_wrong_id_and_tampering_are_refused() {
        let bytes: Vec<Vec<u8>> = BIRD_METICULOUS
            .iter()
            .map(|h| hex::decode(h).unwrap())
            .collect();
        let mut rx = state(Sha1Mode::Meticulous, KEY, 7);
        rx.verify(&bytes[1], 3).unwrap();
        // Meticulous: the same or an older number is a replay.
        assert!(matches!(
            rx.verify(&bytes[1], 3),
            Err(AuthError::Sequence { .. })
        ));
        assert!(matches!(
            rx.verify(&bytes[0], 3),
            Err(AuthError::Sequence { .. })
        ));
        // Keyed SHA1 accepts the same number again (§6.7.4), but not one from before it.
        let keyed: Vec<Vec<u8>> = BIRD_KEYED.iter().map(|h| hex::decode(h).unwrap()).collect();
        let mut k = state(Sha1Mode::Keyed, KEY, 7);
        k.verify(&keyed[1], 3).unwrap();
        k.verify(&keyed[1], 3).unwrap();
        assert!(matches!(
            k.verify(&keyed[0], 3),
            Err(AuthError::Sequence { .. })
        ));
        // A jump beyond 3 × Detect Mult is refused until the sequence is forgotten.
        let mut far = state(Sha1Mode::Meticulous, KEY, 7);
        far.rcv_seq = Some(0x1733_5fa8u32.wrapping_sub(10));
        assert!(matches!(
            far.verify(&bytes[1], 3),
            Err(AuthError::Sequence { .. })
        ));
        far.forget_sequence();
        far.verify(&bytes[1], 3).unwrap();

        let fresh = || state(Sha1Mode::Meticulous, KEY, 7);
        assert_eq!(
            state(Sha1Mode::Meticulous, b"routevpn-bfd-kez", 7).verify(&bytes[0], 3),
            Err(AuthError::Digest)
        );
        assert_eq!(
            state(Sha1Mode::Meticulous, KEY, 8).verify(&bytes[0], 3),
            Err(AuthError::KeyId { want: 8, got: 7 })
        );
        assert!(matches!(
            state(Sha1Mode::Keyed, KEY, 7).verify(&bytes[0], 3),
            Err(AuthError::Type { .. })
        ));
        // Any flipped bit in header or digest breaks the digest (sequence flips may be
        // caught by the window first on a session that knows it; a fresh one does not).
        for i in (0..bytes[0].len()).filter(|&i| !(1..4).contains(&i) && !(24..28).contains(&i)) {
            let mut t = bytes[0].clone();
            t[i] ^= 0x01;
            if ControlPacket::decode(&t).is_err() {
                continue;
            }
            assert_eq!(fresh().verify(&t, 3), Err(AuthError::Digest), "octet {i}");
        }
        // Lengths that do not add up, and a truncated section, never panic.
        let mut short = bytes[0].clone();
        short[3] = 50;
        assert!(fresh().verify(&short, 3).is_err());
        assert!(fresh().verify(&bytes[0][..30], 3).is_err());
        assert!(AuthConfig::new(Sha1Mode::Keyed, 1, &[]).is_err());
        assert!(AuthConfig::new(Sha1Mode::Keyed, 1, &[0; 21]).is_err());
        assert!(
            !format!("{:?}", AuthConfig::new(Sha1Mode::Keyed, 1, KEY).unwrap())
                .contains("routevpn")
        );
    }

    struct Counter(u8);
    impl crate::Rng for Counter {
        fn fill(&mut self, buf: &mut [u8]) {
            for b in buf {
                self.0 = self.0.wrapping_add(37);
                *b = self.0;
            }
        }
    }

    fn session(discr: u32, auth: Option<AuthConfig>, now: Instant) -> Session {
        let s = Session::new(
            SessionConfig {
                local_discr: discr,
                desired_min_tx: Duration::from_millis(100),
                required_min_rx: Duration::from_millis(100),
                detect_mult: 3,
                passive: false,
            },
            now,
        )
        .unwrap();
        match auth {
            Some(a) => s.with_auth(a),
            None => s,
        }
    }

    /// Runs `from`'s timers and hands what it sends to `to`; the last refusal by `to`.
    fn deliver(
        from: &mut Session,
        to: &mut Session,
        now: Instant,
        rng: &mut Counter,
    ) -> Option<Discard> {
        let mut refused = None;
        from.handle_timeout(now);
        let mut out = Vec::new();
        while from.poll_datagram(now, rng, &mut out) {
            let pkt = ControlPacket::decode(&out).unwrap();
            if let Err(e) = to.handle_datagram(now, &out, &pkt) {
                refused = Some(e);
            }
            out.clear();
        }
        refused
    }

    /// Two sessions exchanging datagrams for `ms`; the last refusal each side made.
    fn run(a: &mut Session, b: &mut Session, t0: Instant, ms: u64) -> [Option<Discard>; 2] {
        let mut rng = Counter(0);
        let mut errs = [None, None];
        for step in 0..ms {
            let now = t0 + Duration::from_millis(step);
            errs[1] = deliver(a, b, now, &mut rng).or(errs[1]);
            errs[0] = deliver(b, a, now, &mut rng).or(errs[0]);
        }
        errs
    }

    #[test]
    fn authenticated_sessions_come_up_and_mismatches_never_do() {
        let t0 = Instant::now();
        let key = |k: &[u8]| Some(AuthConfig::new(Sha1Mode::Meticulous, 1, k).unwrap());
        let (mut a, mut b) = (session(1, key(KEY), t0), session(2, key(KEY), t0));
        assert_eq!(run(&mut a, &mut b, t0, 3000), [None, None]);
        assert_eq!((a.state(), b.state()), (State::Up, State::Up));

        // One side without authentication: both refuse, neither comes up.
        let (mut a, mut b) = (session(1, key(KEY), t0), session(2, None, t0));
        let errs = run(&mut a, &mut b, t0, 3000);
        assert_eq!(errs[0], Some(Discard::Auth(AuthError::Missing)));
        assert_eq!(errs[1], Some(Discard::Auth(AuthError::Unexpected)));
        assert_eq!((a.state(), b.state()), (State::Down, State::Down));

        // Different keys: digests fail, no session.
        let (mut a, mut b) = (session(1, key(KEY), t0), session(2, key(b"other"), t0));
        let errs = run(&mut a, &mut b, t0, 3000);
        assert_eq!(errs[0], Some(Discard::Auth(AuthError::Digest)));
        assert_ne!(a.state(), State::Up);
    }
}
