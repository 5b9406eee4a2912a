//! UPDATE body: decode→encode round trip (same length, same value; the octets too except
//! prefix bits past the prefix length, which RFC 4271 §4.3 calls irrelevant and the
//! encoder writes as zero) and RFC 7606 interpretation without panics; treat-as-withdraw
//! must never leave announced routes.
use bgp::wire::{ParsedUpdate, Update, UpdateContext};

pub fn bgp_update(data: &[u8]) {
    if let Ok(u) = Update::decode(data) {
        let mut b = Vec::new();
        if u.encode(&mut b).is_ok() {
            assert_eq!(b.len(), data.len());
            assert_eq!(Update::decode(&b).as_ref(), Ok(&u));
            let mut again = Vec::new();
            Update::decode(&b)
                .expect("re-encoded UPDATE decodes")
                .encode(&mut again)
                .expect("re-encodes");
            assert_eq!(again, b, "the encoding is canonical");
        }
        if let Ok(p) = ParsedUpdate::from_update(
            &u,
            UpdateContext {
                ebgp: true,
                peer_as: 65002,
            },
        ) {
            assert!(p.treat_as_withdraw.is_none() || p.announced.is_empty());
        }
    }
}
