//! UPDATE body: exact decode→encode round trip and RFC 7606 interpretation without
//! panics; treat-as-withdraw must never leave announced routes.
#![no_main]
use bgp::wire::{ParsedUpdate, Update, UpdateContext};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(u) = Update::decode(data) {
        let mut b = Vec::new();
        if u.encode(&mut b).is_ok() {
            assert_eq!(b, data);
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
});
