//! BFD Control packet codec (RFC 5880 §4.1) with the receive checks of §6.8.6.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! ```

use std::fmt;
use std::time::Duration;

use crate::limits;

/// §4.1 Diagnostic, 5 bits. Open newtype: values without a name round-trip unchanged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Diag(u8);

impl Diag {
    pub const NO_DIAGNOSTIC: Diag = Diag(0);
    pub const CONTROL_DETECTION_TIME_EXPIRED: Diag = Diag(1);
    pub const ECHO_FUNCTION_FAILED: Diag = Diag(2);
    pub const NEIGHBOR_SIGNALED_SESSION_DOWN: Diag = Diag(3);
    pub const FORWARDING_PLANE_RESET: Diag = Diag(4);
    pub const PATH_DOWN: Diag = Diag(5);
    pub const CONCATENATED_PATH_DOWN: Diag = Diag(6);
    pub const ADMINISTRATIVELY_DOWN: Diag = Diag(7);
    pub const REVERSE_CONCATENATED_PATH_DOWN: Diag = Diag(8);

    /// The field is 5 bits wide; higher bits are dropped.
    pub const fn new(value: u8) -> Diag {
        Diag(value & 0x1f)
    }

    pub const fn value(self) -> u8 {
        self.0
    }

    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "No Diagnostic",
            1 => "Control Detection Time Expired",
            2 => "Echo Function Failed",
            3 => "Neighbor Signaled Session Down",
            4 => "Forwarding Plane Reset",
            5 => "Path Down",
            6 => "Concatenated Path Down",
            7 => "Administratively Down",
            8 => "Reverse Concatenated Path Down",
            _ => return None,
        })
    }
}

impl fmt::Debug for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "Diag({} {n})", self.0),
            None => write!(f, "Diag({})", self.0),
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "diag {}", self.0),
        }
    }
}

/// §4.1 State (Sta), 2 bits: every value is defined, so this is a closed enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    AdminDown = 0,
    Down = 1,
    Init = 2,
    Up = 3,
}

impl State {
    pub const fn from_bits(bits: u8) -> State {
        match bits & 0x3 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    pub const fn bits(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            State::AdminDown => "AdminDown",
            State::Down => "Down",
            State::Init => "Init",
            State::Up => "Up",
        })
    }
}

/// Why a received Control packet was discarded (§6.8.6, in the RFC's order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("datagram of {0} octets is shorter than a Control packet")]
    Truncated(usize),
    #[error("unsupported BFD version {0}")]
    Version(u8),
    #[error("length field {length} is invalid for a {datagram}-octet datagram")]
    Length { length: u8, datagram: usize },
    #[error("Detect Mult is zero")]
    ZeroDetectMult,
    #[error("Multipoint (M) bit is set")]
    Multipoint,
    #[error("My Discriminator is zero")]
    ZeroMyDiscriminator,
    #[error("Your Discriminator is zero in state {0}")]
    ZeroYourDiscriminator(State),
    #[error("both Poll and Final bits are set")]
    PollAndFinal,
}

const FLAG_P: u8 = 0x20;
const FLAG_F: u8 = 0x10;
const FLAG_C: u8 = 0x08;
pub(crate) const FLAG_A: u8 = 0x04;
const FLAG_D: u8 = 0x02;
const FLAG_M: u8 = 0x01;

/// A validated BFD Control packet. Intervals are in microseconds, as on the wire (§4.1).
/// The authentication section, if any, is checked by the session that owns the key
/// ([`crate::Session::handle_datagram`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ControlPacket {
    pub diag: Diag,
    pub state: State,
    /// P: the sender is running a Poll Sequence (§6.5).
    pub poll: bool,
    /// F: the answer to a Poll.
    pub final_: bool,
    /// C: Control Plane Independent.
    pub control_plane_independent: bool,
    /// D: the sender wishes to run Demand mode (§6.6).
    pub demand: bool,
    /// A: an authentication section follows (§4.2); encoding adds it from the session.
    pub authenticated: bool,
    pub detect_mult: u8,
    pub my_discr: u32,
    pub your_discr: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
}

impl ControlPacket {
    /// Parse and validate one UDP payload (§6.8.6). With the A bit set, the section
    /// after the header is verified by the session ([`crate::Session::handle_datagram`]).
    /// Octets past the Length field (which may be at most the datagram size) are ignored.
    pub fn decode(datagram: &[u8]) -> Result<ControlPacket, PacketError> {
        let Some(h) = datagram.first_chunk::<{ limits::PACKET_LEN }>() else {
            return Err(PacketError::Truncated(datagram.len()));
        };
        let version = h[0] >> 5;
        if version != limits::VERSION {
            return Err(PacketError::Version(version));
        }
        let flags = h[1] & 0x3f;
        let length = h[3];
        let min_len = if flags & FLAG_A != 0 {
            limits::PACKET_LEN_AUTH_MIN
        } else {
            limits::PACKET_LEN
        };
        if usize::from(length) < min_len || usize::from(length) > datagram.len() {
            return Err(PacketError::Length {
                length,
                datagram: datagram.len(),
            });
        }
        let detect_mult = h[2];
        if detect_mult == 0 {
            return Err(PacketError::ZeroDetectMult);
        }
        if flags & FLAG_M != 0 {
            return Err(PacketError::Multipoint);
        }
        if flags & FLAG_P != 0 && flags & FLAG_F != 0 {
            // §4.1: "A BFD Control packet MUST NOT have both the Poll and Final bits set."
            return Err(PacketError::PollAndFinal);
        }
        let be32 = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        let my_discr = be32(4);
        let your_discr = be32(8);
        let state = State::from_bits(h[1] >> 6);
        if my_discr == 0 {
            return Err(PacketError::ZeroMyDiscriminator);
        }
        if your_discr == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(PacketError::ZeroYourDiscriminator(state));
        }
        Ok(ControlPacket {
            diag: Diag::new(h[0]),
            state,
            poll: flags & FLAG_P != 0,
            final_: flags & FLAG_F != 0,
            control_plane_independent: flags & FLAG_C != 0,
            demand: flags & FLAG_D != 0,
            authenticated: flags & FLAG_A != 0,
            detect_mult,
            my_discr,
            your_discr,
            desired_min_tx_us: be32(12),
            required_min_rx_us: be32(16),
            required_min_echo_rx_us: be32(20),
        })
    }

    /// The 24-octet wire form (§4.1): version 1, A and M clear, Length 24 (a session
    /// with authentication sets A and appends the section).
    pub fn to_bytes(&self) -> [u8; limits::PACKET_LEN] {
        let mut flags = 0;
        for (set, bit) in [
            (self.poll, FLAG_P),
            (self.final_, FLAG_F),
            (self.control_plane_independent, FLAG_C),
            (self.demand, FLAG_D),
        ] {
            if set {
                flags |= bit;
            }
        }
        let mut b = [0u8; limits::PACKET_LEN];
        b[0] = (limits::VERSION << 5) | self.diag.value();
        b[1] = (self.state.bits() << 6) | flags;
        b[2] = self.detect_mult;
        b[3] = limits::PACKET_LEN as u8;
        b[4..8].copy_from_slice(&self.my_discr.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_discr.to_be_bytes());
        b[12..16].copy_from_slice(&self.desired_min_tx_us.to_be_bytes());
        b[16..20].copy_from_slice(&self.required_min_rx_us.to_be_bytes());
        b[20..24].copy_from_slice(&self.required_min_echo_rx_us.to_be_bytes());
        b
    }

    /// Append the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_bytes());
    }

    pub fn desired_min_tx(&self) -> Duration {
        Duration::from_micros(self.desired_min_tx_us.into())
    }

    pub fn required_min_rx(&self) -> Duration {
        Duration::from_micros(self.required_min_rx_us.into())
    }

    pub fn required_min_echo_rx(&self) -> Duration {
        Duration::from_micros(self.required_min_echo_rx_us.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Captured from BIRD 2.0.12 (this machine, `protocol bfd { interface "*" { interval
    // 100 ms; multiplier 3; }; neighbor 198.51.100.2; }`) running in netns bfdA on veth
    // 198.51.100.1/24; a scripted Python BFD peer bound to 198.51.100.2:3784 in netns bfdB
    // recorded the UDP payloads with IP_RECVTTL (all arrived with TTL 255 from source port
    // 50077) and walked BIRD through Down -> Init -> Up, sent a Poll and then fell silent.
    /// BIRD Down after its detection timer expired: diag 1, Your Discr reset to 0, 1 s TX.
    const BIRD_DOWN_DIAG1: &str = "21400318923476f200000000000f4240000186a000000000";
    /// BIRD Init after our Down (1 s slow Desired Min TX while not Up, §6.8.3).
    const BIRD_INIT: &str = "20800318923476f211223344000f4240000186a000000000";
    /// BIRD's first Up packet: Poll set, Desired Min TX lowered to 100 ms (§6.8.3).
    const BIRD_UP_POLL: &str = "20e00318923476f211223344000186a0000186a000000000";
    /// BIRD steady Up.
    const BIRD_UP: &str = "20c00318923476f211223344000186a0000186a000000000";
    /// BIRD answering our Poll with Final.
    const BIRD_UP_FINAL: &str = "20d00318923476f211223344000186a0000186a000000000";

    fn decode_hex(s: &str) -> ControlPacket {
        ControlPacket::decode(&hex::decode(s).unwrap()).unwrap()
    }

    #[test]
    fn bird_captures_decode_and_round_trip() {
        for s in [
            BIRD_DOWN_DIAG1,
            BIRD_INIT,
            BIRD_UP_POLL,
            BIRD_UP,
            BIRD_UP_FINAL,
        ] {
            let p = decode_hex(s);
            assert_eq!(hex::encode(p.to_bytes()), s);
            assert_eq!(p.detect_mult, 3);
            assert_eq!(p.my_discr, 0x9234_76f2);
            assert_eq!(p.required_min_rx(), Duration::from_millis(100));
            assert_eq!(p.required_min_echo_rx_us, 0);
        }
        let down = decode_hex(BIRD_DOWN_DIAG1);
        assert_eq!(down.state, State::Down);
        assert_eq!(down.diag, Diag::CONTROL_DETECTION_TIME_EXPIRED);
        assert_eq!(down.your_discr, 0);
        assert_eq!(down.desired_min_tx(), limits::SLOW_TX_INTERVAL);
        let init = decode_hex(BIRD_INIT);
        assert_eq!(init.state, State::Init);
        assert_eq!(init.diag, Diag::NO_DIAGNOSTIC);
        assert_eq!(init.your_discr, 0x1122_3344);
        assert_eq!(init.desired_min_tx(), limits::SLOW_TX_INTERVAL);
        let up_poll = decode_hex(BIRD_UP_POLL);
        assert_eq!(
            (up_poll.state, up_poll.poll, up_poll.final_),
            (State::Up, true, false)
        );
        assert_eq!(up_poll.desired_min_tx(), Duration::from_millis(100));
        let up = decode_hex(BIRD_UP);
        assert_eq!((up.poll, up.final_), (false, false));
        let fin = decode_hex(BIRD_UP_FINAL);
        assert_eq!((fin.poll, fin.final_), (false, true));
    }

    #[test]
    fn our_encoding_matches_bird_bytes() {
        let ours = ControlPacket {
            diag: Diag::NO_DIAGNOSTIC,
            state: State::Up,
            poll: true,
            final_: false,
            control_plane_independent: false,
            demand: false,
            authenticated: false,
            detect_mult: 3,
            my_discr: 0x9234_76f2,
            your_discr: 0x1122_3344,
            desired_min_tx_us: 100_000,
            required_min_rx_us: 100_000,
            required_min_echo_rx_us: 0,
        };
        assert_eq!(hex::encode(ours.to_bytes()), BIRD_UP_POLL);
    }

    fn with(s: &str, f: impl FnOnce(&mut Vec<u8>)) -> Result<ControlPacket, PacketError> {
        let mut b = hex::decode(s).unwrap();
        f(&mut b);
        ControlPacket::decode(&b)
    }

    #[test]
    fn receive_checks_of_6_8_6() {
        assert_eq!(
            with(BIRD_UP, |b| b.truncate(23)),
            Err(PacketError::Truncated(23))
        );
        assert_eq!(with(BIRD_UP, |b| b[0] = 0x40), Err(PacketError::Version(2)));
        assert!(matches!(
            with(BIRD_UP, |b| b[3] = 23),
            Err(PacketError::Length { .. })
        ));
        assert!(matches!(
            with(BIRD_UP, |b| b[3] = 25),
            Err(PacketError::Length { .. })
        ));
        // Length 26 inside a 26-octet datagram with A set: a valid length; the section
        // itself is the session's to verify.
        assert!(
            with(BIRD_UP, |b| {
                b[1] |= FLAG_A;
                b[3] = 26;
                b.extend_from_slice(&[1, 2]);
            })
            .unwrap()
            .authenticated
        );
        assert!(matches!(
            with(BIRD_UP, |b| b[1] |= FLAG_A),
            Err(PacketError::Length { length: 24, .. })
        ));
        assert_eq!(
            with(BIRD_UP, |b| b[2] = 0),
            Err(PacketError::ZeroDetectMult)
        );
        assert_eq!(
            with(BIRD_UP, |b| b[1] |= FLAG_M),
            Err(PacketError::Multipoint)
        );
        assert_eq!(
            with(BIRD_UP, |b| b[4..8].fill(0)),
            Err(PacketError::ZeroMyDiscriminator)
        );
        assert_eq!(
            with(BIRD_UP, |b| b[8..12].fill(0)),
            Err(PacketError::ZeroYourDiscriminator(State::Up))
        );
        assert_eq!(
            with(BIRD_INIT, |b| b[8..12].fill(0)),
            Err(PacketError::ZeroYourDiscriminator(State::Init))
        );
        // Down and AdminDown may carry Your Discriminator 0.
        assert!(with(BIRD_DOWN_DIAG1, |b| b[1] &= 0x3f).is_ok());
        assert_eq!(
            with(BIRD_UP_POLL, |b| b[1] |= FLAG_F),
            Err(PacketError::PollAndFinal)
        );
        // A datagram longer than Length (e.g. padding) is accepted; the tail is ignored.
        let p = with(BIRD_UP, |b| b.extend_from_slice(&[0xff; 8])).unwrap();
        assert_eq!(p, decode_hex(BIRD_UP));
    }

    #[test]
    fn unknown_diag_round_trips() {
        let p = with(BIRD_DOWN_DIAG1, |b| b[0] = 0x20 | 0x1d).unwrap();
        assert_eq!(p.diag, Diag::new(29));
        assert_eq!(p.diag.name(), None);
        assert_eq!(p.to_bytes()[0], 0x3d);
        assert_eq!(
            format!("{}", Diag::ADMINISTRATIVELY_DOWN),
            "Administratively Down"
        );
    }

    fn any_packet() -> impl Strategy<Value = ControlPacket> {
        (
            (
                0u8..32,
                0u8..4,
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
            ),
            (
                1u8..=255,
                1u32..,
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
            ),
        )
            .prop_map(|((diag, st, p, f, c, d), (mult, my, your, tx, rx, echo))| {
                let state = State::from_bits(st);
                let your = if your == 0 && !matches!(state, State::Down | State::AdminDown) {
                    1
                } else {
                    your
                };
                ControlPacket {
                    diag: Diag::new(diag),
                    state,
                    poll: p,
                    final_: f && !p,
                    control_plane_independent: c,
                    demand: d,
                    authenticated: false,
                    detect_mult: mult,
                    my_discr: my,
                    your_discr: your,
                    desired_min_tx_us: tx,
                    required_min_rx_us: rx,
                    required_min_echo_rx_us: echo,
                }
            })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(p in any_packet()) {
            let mut out = Vec::new();
            p.encode(&mut out);
            prop_assert_eq!(out.len(), limits::PACKET_LEN);
            prop_assert_eq!(ControlPacket::decode(&out), Ok(p));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(p) = ControlPacket::decode(&bytes) {
                // decode -> encode reproduces the first 24 octets, Length normalised to 24
                // and the A bit cleared (the authentication section is the session's to add).
                let mut expect = bytes[..24].to_vec();
                expect[3] = 24;
                expect[1] &= !FLAG_A;
                prop_assert_eq!(p.to_bytes().to_vec(), expect);
                let unauthenticated = ControlPacket { authenticated: false, ..p };
                prop_assert_eq!(ControlPacket::decode(&p.to_bytes()), Ok(unauthenticated));
            }
        }

        #[test]
        fn mostly_valid_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 24..40)) {
            // Steer past the first checks so the later ones are exercised too.
            bytes[0] = (bytes[0] & 0x1f) | 0x20;
            bytes[3] = 24;
            let _ = ControlPacket::decode(&bytes);
        }
    }
}
