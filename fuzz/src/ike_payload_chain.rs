//! IKEv2 payload chain decoder (RFC 7296 §3.2, as used for the decrypted contents of SK):
//! the first byte picks the first payload type, the rest is the chain.

use ike::iana::PayloadType;
use ike::wire::{decode_chain, encode_chain};

pub fn ike_payload_chain(data: &[u8]) {
    let Some((&first, chain)) = data.split_first() else {
        return;
    };
    if let Ok(payloads) = decode_chain(PayloadType(first), chain) {
        let mut out = Vec::new();
        let first = encode_chain(&payloads, &mut out);
        let again = decode_chain(first, &out).expect("re-encoded chain must decode");
        assert_eq!(again, payloads);
    }
}
