//! Any single BGP message: decode must not panic; what decodes re-encodes to a message
//! that decodes to the same value; UPDATEs also go through RFC 7606 interpretation.
use bgp::wire::{Message, ParsedUpdate, UpdateContext};

pub fn bgp_message(data: &[u8]) {
    if let Ok(m) = Message::decode(data) {
        if let Ok(b) = m.encode() {
            assert_eq!(Message::decode(&b).as_ref(), Ok(&m));
        }
        if let Message::Update(u) = &m {
            for ebgp in [false, true] {
                let _ = ParsedUpdate::from_update(
                    u,
                    UpdateContext {
                        ebgp,
                        peer_as: 65002,
                    },
                );
            }
        }
    }
}
