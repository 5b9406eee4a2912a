//! Protocol constants and timer defaults, each with the RFC section it comes from.

use std::time::Duration;

/// BGP version we speak (RFC 4271 §4.2).
pub const BGP_VERSION: u8 = 4;
/// TCP port (RFC 4271 §8.2.1, "Port 179").
pub const BGP_PORT: u16 = 179;
/// Fixed header: 16-octet marker + 2-octet length + 1-octet type (RFC 4271 §4.1).
pub const HEADER_LEN: usize = 19;
/// Marker length (RFC 4271 §4.1).
pub const MARKER_LEN: usize = 16;
/// Maximum message size without RFC 8654 extended messages (RFC 4271 §4.1).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Minimum OPEN length (RFC 4271 §4.2: 10 octets after the header).
pub const MIN_OPEN_LEN: usize = 29;
/// Minimum UPDATE length (RFC 4271 §4.3: two 2-octet length fields).
pub const MIN_UPDATE_LEN: usize = 23;
/// KEEPALIVE is the bare header (RFC 4271 §4.4).
pub const KEEPALIVE_LEN: usize = 19;
/// Minimum NOTIFICATION length (RFC 4271 §4.5).
pub const MIN_NOTIFICATION_LEN: usize = 21;
/// ROUTE-REFRESH is header + AFI/reserved/SAFI (RFC 2918 §3).
pub const ROUTE_REFRESH_LEN: usize = 23;

/// Default Hold Time, suggested value 90 s (RFC 4271 §10).
pub const DEFAULT_HOLD_TIME: u16 = 90;
/// Smallest non-zero Hold Time: 1 and 2 are unacceptable (RFC 4271 §4.2, §6.2).
pub const MIN_HOLD_TIME: u16 = 3;
/// Hold timer while waiting for the peer's OPEN: "a large value", 4 minutes suggested
/// (RFC 4271 §8.2.2, Connect/Active state on TCP established).
pub const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);
/// KeepaliveTime is one third of the Hold Time (RFC 4271 §4.4, §10).
pub const KEEPALIVE_DIVISOR: u16 = 3;
/// Default ConnectRetryTime, suggested value 120 s (RFC 4271 §10).
pub const DEFAULT_CONNECT_RETRY: Duration = Duration::from_secs(120);
/// Delay before an automatic restart after a session went down (RFC 4271 §8.1.1
/// IdleHoldTimer, optional session attribute; our default).
pub const DEFAULT_IDLE_HOLD: Duration = Duration::from_secs(5);

/// AS number placed in "My Autonomous System" when ours does not fit in 2 octets
/// (RFC 6793 §9, AS_TRANS).
pub const AS_TRANS: u16 = 23456;
/// Default LOCAL_PREF when none is configured or received (common practice; RFC 4271
/// §9.1.1 leaves the degree of preference to local policy).
pub const DEFAULT_LOCAL_PREF: u32 = 100;
/// Maximum NLRI prefix length for IPv4 and IPv6 (RFC 4271 §4.3, RFC 4760 §5).
pub const MAX_PREFIX_LEN_V4: u8 = 32;
/// Maximum IPv6 prefix length.
pub const MAX_PREFIX_LEN_V6: u8 = 128;
/// Maximum AS_PATH segment length in ASes (1-octet segment length, RFC 4271 §4.3).
pub const MAX_SEGMENT_LEN: usize = 255;
