//! Protocol constants for ESP (RFC 4303) and ESP-in-UDP (RFC 3948), each
//! with the section that fixes it.

/// Default anti-replay window, in packets. RFC 4303 §3.4.3 requires at
/// least 32 and recommends 64; 128 tolerates more reordering on multi-queue
/// paths at negligible cost.
pub const DEFAULT_REPLAY_WINDOW: u32 = 128;

/// Largest anti-replay window we accept (bits of bitmap). RFC 4303 §3.4.3
/// leaves the upper bound to the implementation; 4096 covers heavy
/// reordering on fast links while keeping the bitmap at 1 KiB.
pub const MAX_REPLAY_WINDOW: u32 = 4096;

/// SPI (4 octets) + Sequence Number (4 octets). RFC 4303 §2.
pub const ESP_HEADER_LEN: usize = 8;

/// SPI values 1..=255 are reserved by IANA; 0 is for local use and marks
/// non-ESP (IKE) traffic on port 4500. RFC 4303 §2.1, RFC 3948 §2.2.
pub const SPI_RESERVED_MAX: u32 = 255;

/// Pad Length + Next Header octets at the end of the plaintext. RFC 4303 §2.
pub const ESP_TRAILER_LEN: usize = 2;

/// The ciphertext (payload ‖ padding ‖ pad length ‖ next header) must end on
/// a 4-octet boundary even for stream-like ciphers. RFC 4303 §2.4.
pub const ESP_MIN_ALIGN: usize = 4;

/// Maximum value of the Pad Length field. RFC 4303 §2.5.
pub const MAX_PAD_LEN: usize = 255;

/// UDP port shared by IKE and UDP-encapsulated ESP. RFC 3948 §2, RFC 7296 §2.23.
pub const NAT_T_PORT: u16 = 4500;

/// Non-ESP marker: four zero octets in front of IKE messages on port 4500
/// (an SPI of zero is never used by ESP). RFC 3948 §2.2.
pub const NON_ESP_MARKER: [u8; 4] = [0; 4];

/// NAT-keepalive payload: a single 0xFF octet. RFC 3948 §2.3.
pub const NAT_KEEPALIVE: [u8; 1] = [0xFF];

/// Next Header value of a dummy (traffic-flow-confidentiality) packet,
/// which the receiver silently discards. RFC 4303 §2.6.
pub const NEXT_HEADER_DUMMY: u8 = 59;

/// Next Header for a tunnel-mode IPv4 inner packet (IP-in-IP). RFC 4303 §2.6,
/// IANA protocol numbers.
pub const NEXT_HEADER_IPV4: u8 = 4;

/// Next Header for a tunnel-mode IPv6 inner packet. RFC 4303 §2.6, IANA
/// protocol numbers.
pub const NEXT_HEADER_IPV6: u8 = 41;

/// Minimum IPv4 header (no options). RFC 791 §3.1.
pub const IPV4_MIN_HEADER_LEN: usize = 20;

/// Fixed IPv6 header. RFC 8200 §3.
pub const IPV6_HEADER_LEN: usize = 40;

/// Highest 32-bit sequence number; without ESN the SA must be rekeyed
/// before the counter would wrap. RFC 4303 §3.3.3.
pub const MAX_SEQ_32: u64 = u32::MAX as u64;

/// Highest 64-bit (ESN) sequence number. RFC 4303 §3.3.3.
pub const MAX_SEQ_64: u64 = u64::MAX;

/// AES-GCM explicit IV length in the ESP payload. RFC 4106 §3.1.
pub const GCM_IV_LEN: usize = 8;

/// AES-GCM salt length taken from the end of the key material. RFC 4106 §8.1.
pub const GCM_SALT_LEN: usize = 4;

/// ICV length of the AES-GCM-16 transforms (ENCR_AES_GCM_16). RFC 4106 §6.
pub const GCM_ICV_LEN: usize = 16;

/// AES-CBC IV length (one block). RFC 3602 §3.
pub const CBC_IV_LEN: usize = 16;

/// AES block size; CBC ciphertext is padded to it. RFC 3602 §2.4.
pub const AES_BLOCK_LEN: usize = 16;
