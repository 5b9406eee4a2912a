//! OPEN body: decode must not panic and re-encode must decode to the same value.
use bgp::wire::Open;

pub fn bgp_open(data: &[u8]) {
    if let Ok(o) = Open::decode(data) {
        let mut b = Vec::new();
        o.encode(&mut b);
        assert_eq!(Open::decode(&b), Ok(o));
    }
}
