//! `Identity::from_payload` (RFC 7296 §3.5) on any ID type and data: never panics; the
//! ID type and data re-encode exactly; display → parse gives the identity back wherever
//! the strongSwan text syntax can express it (a name that reads as an address, holds
//! an `@` or `=`, starts with `@` or has control characters has no plain spelling).

use ike::iana::IdType;
use ike::wire::{IdPayload, Message};
use routevpn::config::Identity;

fn has_text_form(id: &Identity) -> bool {
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('@')
            && !s.chars().any(char::is_control)
            && s.parse::<std::net::IpAddr>().is_err()
    };
    match id {
        Identity::Ipv4(_) | Identity::Ipv6(_) => true,
        Identity::Fqdn(s) => plain(s) && !s.contains('@') && !s.contains('='),
        Identity::Rfc822(s) => plain(s) && s.contains('@'),
        Identity::KeyId(k) => !k.is_empty(),
        // Display → parse re-encodes the DN: the same name, not always the same octets.
        Identity::Dn(_) => false,
    }
}

pub fn ike_identity(data: &[u8]) {
    let Some((&ty, body)) = data.split_first() else {
        return;
    };
    let id_type = IdType(ty);
    if let Some(id) = Identity::from_payload(id_type, body) {
        assert_eq!(id.id_type(), id_type);
        assert_eq!(id.data(), body);
        let text = id.to_string();
        match Identity::parse(&text) {
            Ok(back) if has_text_form(&id) => assert_eq!(back, id, "{text:?}"),
            Ok(_) => {}
            Err(e) => assert!(!has_text_form(&id), "{text:?} does not parse: {e}"),
        }
    }
    // The same bytes as the ID payload body of a message: the wire codec's view.
    let p = IdPayload::new(id_type, body.to_vec());
    assert_eq!(
        Identity::from_payload(p.id_type, &p.data),
        Identity::from_payload(id_type, body)
    );
    let _ = Message::decode(data);
}
