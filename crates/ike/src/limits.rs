//! Protocol constants and timers, each with its RFC section.

use std::time::Duration;

/// §2.4: first retransmission timeout of a request; doubled on every retry.
pub const RETRANSMIT_TIMEOUT: Duration = Duration::from_millis(1000);
/// §2.4: back-off ceiling for a single retransmission interval.
pub const RETRANSMIT_MAX_INTERVAL: Duration = Duration::from_secs(16);
/// §2.4: retransmissions before the peer is declared unreachable (1+2+4+8+16+16 s ≈ 47 s).
pub const RETRANSMIT_TRIES: u32 = 5;
/// §2.10: nonces are at least 128 bits and at least half the PRF key size; 32 octets covers SHA-512.
pub const NONCE_LEN: usize = 32;
/// §3.9: a peer's nonce must be 16..=256 octets.
pub const NONCE_MIN: usize = 16;
pub const NONCE_MAX: usize = 256;
/// §2.6: a COOKIE notification carries 1..=64 octets.
pub const COOKIE_MAX: usize = 64;
/// §2.3: message-ID window; we keep one request outstanding (the RFC's default).
pub const WINDOW_SIZE: u32 = 1;
/// §2.1 / §2.9: an IKE_SA_INIT answered but not authenticated is dropped after this long.
pub const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Delay before re-initiating a tunnel configured with `start = true` after a failure;
/// doubles up to [`REINITIATE_MAX`] so a wrong PSK does not flood the peer.
pub const REINITIATE_DELAY: Duration = Duration::from_secs(2);
pub const REINITIATE_MAX: Duration = Duration::from_secs(60);
/// §3.3: SPI sizes: 8 octets for IKE, 4 for ESP.
pub const IKE_SPI_LEN: usize = 8;
pub const ESP_SPI_LEN: usize = 4;
/// §2.4 / RFC 3948 §4: IKE travels on UDP 500, or 4500 after NAT detection.
pub const IKE_PORT: u16 = 500;
pub const NATT_PORT: u16 = 4500;
/// §2.23: NAT detection hashes are SHA-1 (20 octets).
pub const NAT_HASH_LEN: usize = 20;
/// RFC 4555 §3.8: COOKIE2 is 8 to 64 octets of random data.
pub const COOKIE2_LEN: usize = 16;
/// §2.15: the pad string mixed into a pre-shared key.
pub const KEY_PAD: &[u8] = b"Key Pad for IKEv2";
/// §2.8: a failed or unanswered scheduled rekey is retried after this long.
pub const REKEY_RETRY: Duration = Duration::from_secs(10);
/// §2.4 INITIAL_CONTACT: only SAs up for longer than this are taken as stale, so an SA
/// the peer set up at the same moment (both ends initiating) is not thrown away.
pub const INITIAL_CONTACT_GRACE: Duration = Duration::from_secs(2);
/// §2.8.2: an IKE SA a newer one took over from is deleted by the peer at once; one
/// still there after this long is one the peer never learned of (the exchange that
/// created it lost its response), and we delete it ourselves.
pub const REDUNDANT_IKE_SA_GRACE: Duration = Duration::from_secs(30);
/// RFC 7383 §2.5.1: we fragment encrypted messages above this size once both ends
/// announced IKEV2_FRAGMENTATION_SUPPORTED (room for IPv6 + UDP + non-ESP marker in 1280).
pub const FRAGMENT_SIZE: usize = 1280 - 40 - 8 - 4;
/// RFC 7383 §2.6.1: refuse reassemblies beyond this many fragments (memory bound).
pub const MAX_FRAGMENTS: usize = 64;
/// RFC 3948 §4: NAT-keepalive interval (20 s, as strongSwan).
pub const NATT_KEEPALIVE: Duration = Duration::from_secs(20);
/// RFC 3948 §2.3: the NAT-keepalive packet is this single octet.
pub const NATT_KEEPALIVE_BYTE: u8 = 0xff;
/// §2.6: half-open IKE SAs from one peer address before new IKE_SA_INITs must carry a
/// COOKIE (each `[[tunnel]]` is one peer address, so this is the per-source limit).
pub const COOKIE_THRESHOLD: usize = 4;
/// §2.6: more new IKE_SA_INIT requests than this per second from the peer's address
/// (refused ones too: they leave no state, so half-open SAs alone never count them) and
/// every new one must echo a COOKIE first.
pub const COOKIE_RATE: u32 = 10;
/// §2.6: the COOKIE secret is replaced this often; cookies made with the previous one
/// (told apart by the version octet) stay valid for one more period.
pub const COOKIE_SECRET_LIFETIME: Duration = Duration::from_secs(120);
/// §2.6: half-open IKE SAs kept for one peer address; a new one evicts the oldest.
pub const MAX_HALF_OPEN: usize = 16;
/// §2.6, daemon-wide (all tunnels): more new IKE_SA_INIT requests than this per second
/// and every tunnel demands a COOKIE, however few each peer address sent.
pub const GLOBAL_COOKIE_RATE: u32 = 40;
/// §2.6, daemon-wide: this many half-open IKE SAs over all tunnels and every tunnel
/// demands a COOKIE.
pub const GLOBAL_COOKIE_THRESHOLD: usize = 32;
/// §2.6, daemon-wide cap on half-open IKE SAs: at the cap a tunnel makes room by dropping
/// its own oldest half-open SA, and one that has none drops the request.
pub const GLOBAL_MAX_HALF_OPEN: usize = 256;
/// RFC 7383 §7: octets of decrypted fragments held for one reassembly.
pub const MAX_REASSEMBLY_BYTES: usize = 64 * 1024;
/// Refusals of IKE_SA_INIT logged per second and tunnel; the rest are counted and the
/// count logged with the next one that is printed.
pub const REFUSAL_LOGS_PER_SEC: u32 = 5;
/// Longest peer-controlled text that goes into a log line or `last_error`.
pub const MAX_LOGGED_TEXT: usize = 300;
/// Proposals of a peer's list named in a NO_PROPOSAL_CHOSEN log line.
pub const MAX_DESCRIBED_PROPOSALS: usize = 8;
/// §3.13: Number of TSs is one octet.
pub const MAX_SELECTORS: usize = 255;
/// RFC 9611 §3: CHILD SAs (the fallback SA and per-resource ones) a session holds before
/// it answers further per-resource requests with TS_MAX_QUEUE (§5.2): one per worker of
/// a large router, and a bound on what a peer can make us keep.
pub const MAX_RESOURCE_SAS: usize = 64;
/// RFC 9611 §3 lets either end create per-resource CHILD SAs. The IKE initiator creates
/// its extras at once; the responder creates the ones it still lacks (it has more
/// workers) only after this long without a per-resource request from the initiator, so
/// the two ends do not race to fill the same resource.
pub const RESOURCE_TOP_UP_DELAY: Duration = Duration::from_secs(2);
/// §1.4.1 lets the peer delete a CHILD SA at any time (strongSwan does at its hard
/// lifetime after failed rekeys, or on `swanctl --terminate --child`); a route-based
/// tunnel without one carries nothing, so it is created again after this long.
pub const CHILD_REFILL_DELAY: Duration = Duration::from_secs(1);
/// Each further deletion on the same IKE SA lineage doubles the wait, up to this, so a
/// peer that keeps deleting is not answered with a request storm; a completed CHILD SA
/// rekey (the SA lived its lifetime) starts again from [`CHILD_REFILL_DELAY`].
pub const CHILD_REFILL_MAX: Duration = Duration::from_secs(64);
