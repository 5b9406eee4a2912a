//! The bodies of the `cargo fuzz` targets, one module per target (its first comment
//! states the invariants). `fuzz_targets/<name>.rs` hands libFuzzer's input to
//! `routevpn_fuzz::<name>`, and `src/replay.rs` runs the same function on stable over
//! `seeds/<name>/` and deterministic mutations of it, so CI executes every target's
//! assertions without nightly, cargo-fuzz or a sanitizer.

mod bfd_packet;
mod bfd_sequence;
mod bgp_message;
mod bgp_open;
mod bgp_session_stream;
mod bgp_speaker;
mod bgp_update;
mod config_parse;
mod control_request;
mod dataplane_gro;
mod esp_classify;
mod esp_open;
mod esp_selectors;
mod esp_sequence;
mod ike_cert;
mod ike_identity;
mod ike_message;
mod ike_payload_chain;
mod ike_session;
mod ike_sk_open;

#[cfg(test)]
mod mutate;
#[cfg(test)]
mod replay;

pub use bfd_packet::bfd_packet;
pub use bfd_sequence::bfd_sequence;
pub use bgp_message::bgp_message;
pub use bgp_open::bgp_open;
pub use bgp_session_stream::bgp_session_stream;
pub use bgp_speaker::bgp_speaker;
pub use bgp_update::bgp_update;
pub use config_parse::config_parse;
pub use control_request::control_request;
pub use dataplane_gro::dataplane_gro;
pub use esp_classify::esp_classify;
pub use esp_open::esp_open;
pub use esp_selectors::esp_selectors;
pub use esp_sequence::esp_sequence;
pub use ike_cert::ike_cert;
pub use ike_identity::ike_identity;
pub use ike_message::ike_message;
pub use ike_payload_chain::ike_payload_chain;
pub use ike_session::ike_session;
pub use ike_sk_open::ike_sk_open;

/// A target's body: libFuzzer's input in, a panic on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target by name, as in `fuzz_targets/` and the `[[bin]]` list of `Cargo.toml`
/// (the replay test checks that the three agree).
pub const TARGETS: &[(&str, Target)] = &[
    ("bfd_packet", bfd_packet),
    ("bfd_sequence", bfd_sequence),
    ("bgp_message", bgp_message),
    ("bgp_open", bgp_open),
    ("bgp_session_stream", bgp_session_stream),
    ("bgp_speaker", bgp_speaker),
    ("bgp_update", bgp_update),
    ("config_parse", config_parse),
    ("control_request", control_request),
    ("dataplane_gro", dataplane_gro),
    ("esp_classify", esp_classify),
    ("esp_open", esp_open),
    ("esp_selectors", esp_selectors),
    ("esp_sequence", esp_sequence),
    ("ike_cert", ike_cert),
    ("ike_identity", ike_identity),
    ("ike_message", ike_message),
    ("ike_payload_chain", ike_payload_chain),
    ("ike_session", ike_session),
    ("ike_sk_open", ike_sk_open),
];
