//! Protocol constants and timers, each with its RFC section (RFC 5880 unless noted).

use std::time::Duration;

/// §4.1: the only protocol version defined.
pub const VERSION: u8 = 1;
/// §4.1 / §6.8.6: a Control packet without authentication is 24 octets.
pub const PACKET_LEN: usize = 24;
/// §6.8.6: with the A bit set the minimum is 26.
pub const PACKET_LEN_AUTH_MIN: usize = 26;
/// §4.4: the Keyed SHA1 section is 28 octets (type, len, key ID, reserved, sequence
/// number, 20-octet digest); the key is 1 to 20 octets, zero-padded to the digest size.
pub const SHA1_AUTH_LEN: usize = 28;
pub const SHA1_DIGEST_LEN: usize = 20;
pub const SHA1_KEY_MAX: usize = 20;
/// RFC 5881 §4: single-hop Control packets go to UDP destination port 3784.
pub const CONTROL_PORT: u16 = 3784;
/// RFC 5881 §4: the source port MUST be in 49152..=65535 and stay the same for a session.
pub const SOURCE_PORT_MIN: u16 = 49152;
pub const SOURCE_PORT_MAX: u16 = 65535;
/// RFC 5881 §5 (GTSM, RFC 5082): send with TTL/Hop Limit 255 and discard anything
/// received with another value, so only a directly connected peer can reach us.
pub const TTL: u8 = 255;
/// §6.8.3: while the session is not Up, bfd.DesiredMinTxInterval is at least one second.
pub const SLOW_TX_INTERVAL: Duration = Duration::from_secs(1);
/// §6.8.1: bfd.RemoteMinRxInterval starts at 1 µs (we know nothing about the peer yet).
pub const INITIAL_REMOTE_MIN_RX: Duration = Duration::from_micros(1);
/// §6.8.7: each transmit interval is reduced by random jitter to 75..=100 % of itself,
/// expressed here in per mille.
pub const JITTER_MIN_PERMILLE: u32 = 750;
pub const JITTER_MAX_PERMILLE: u32 = 1000;
/// §6.8.7: with bfd.DetectMult == 1 the interval MUST NOT exceed 90 %.
pub const JITTER_MAX_PERMILLE_MULT1: u32 = 900;
/// §4.1: intervals are carried in microseconds in 32-bit fields.
pub const MAX_INTERVAL: Duration = Duration::from_micros(u32::MAX as u64);

/// §6.8.4: in Asynchronous mode the Detection Time is the remote Detect Mult times the
/// agreed interval, max(bfd.RequiredMinRxInterval, remote Desired Min TX Interval).
pub fn detection_time(
    remote_detect_mult: u8,
    local_required_min_rx: Duration,
    remote_desired_min_tx: Duration,
) -> Duration {
    local_required_min_rx.max(remote_desired_min_tx) * u32::from(remote_detect_mult)
}

/// §6.8.2 / §6.8.7: we transmit no faster than max(bfd.DesiredMinTxInterval,
/// bfd.RemoteMinRxInterval): the slower side decides.
pub fn tx_interval(local_desired_min_tx: Duration, remote_min_rx: Duration) -> Duration {
    local_desired_min_tx.max(remote_min_rx)
}

/// The ESP-silence hint ([`crate::hint`]; not RFC 5880): a tunnel counts as busy when it
/// delivered at least this many packets in one of the peer's transmit intervals, three
/// times what BFD alone brings, so silence means lost traffic and not only lost BFD.
pub const HINT_BUSY_PACKETS: u64 = 4;
/// While busy the inbound counter is sampled this many times per interval: the silence
/// is seen at most a tenth of an interval late.
pub const HINT_SAMPLES_BUSY: u32 = 10;
/// While not busy, twice per interval is enough to notice that traffic started.
pub const HINT_SAMPLES_IDLE: u32 = 2;
