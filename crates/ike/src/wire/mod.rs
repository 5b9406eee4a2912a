//! IKEv2 message codec (RFC 7296 §3).
