//! IKEv2 message decoder (RFC 7296 §3): never panics, and whatever decodes survives an
//! encode → decode round trip unchanged.

use ike::wire::Message;

pub fn ike_message(data: &[u8]) {
    if let Ok(m) = Message::decode(data) {
        let bytes = m.encode();
        let again = Message::decode(&bytes).expect("re-encoded message must decode");
        assert_eq!(again, m);
        // Encoding is canonical: a second pass is byte-identical.
        assert_eq!(again.encode(), bytes);
    }
}
