//! Arbitrary inner packets against narrowed traffic selectors (RFC 4301 §5.2): the
//! check reads addresses, extension headers and ports from authenticated but
//! peer-chosen bytes, so it must never panic, and a packet it permits must really
//! carry addresses inside the selectors.

use esp::{Selector, Selectors};
use std::net::IpAddr;

fn range(a: &str, b: &str, protocol: u8, ports: (u16, u16)) -> Selector {
    Selector {
        start: a.parse().unwrap(),
        end: b.parse().unwrap(),
        protocol,
        start_port: ports.0,
        end_port: ports.1,
    }
}

pub fn esp_selectors(data: &[u8]) {
    let local = vec![
        range("10.1.0.0", "10.1.0.255", 0, (0, u16::MAX)),
        range("fd00:1::", "fd00:1::ffff", 17, (53, 53)),
    ];
    let remote = vec![
        range("10.2.0.0", "10.2.0.255", 6, (1000, 2000)),
        range("fd00:2::", "fd00:2::ffff", 0, (u16::MAX, 0)),
    ];
    let sel = Selectors::new(local, remote);
    if sel.permits_inbound(data) {
        // Only addresses inside the selectors get through.
        let (src, dst): (IpAddr, IpAddr) = match data[0] >> 4 {
            4 => (
                <[u8; 4]>::try_from(&data[12..16]).unwrap().into(),
                <[u8; 4]>::try_from(&data[16..20]).unwrap().into(),
            ),
            6 => (
                <[u8; 16]>::try_from(&data[8..24]).unwrap().into(),
                <[u8; 16]>::try_from(&data[24..40]).unwrap().into(),
            ),
            v => panic!("permitted a packet of IP version {v}"),
        };
        let inside = |a: IpAddr, lo: &str, hi: &str| {
            let (lo, hi): (IpAddr, IpAddr) = (lo.parse().unwrap(), hi.parse().unwrap());
            lo <= a && a <= hi
        };
        assert!(
            inside(src, "10.2.0.0", "10.2.0.255") || inside(src, "fd00:2::", "fd00:2::ffff"),
            "{src}"
        );
        assert!(
            inside(dst, "10.1.0.0", "10.1.0.255") || inside(dst, "fd00:1::", "fd00:1::ffff"),
            "{dst}"
        );
    }
    let _ = sel.permits_outbound(data);
    let _ = Selectors::default().permits_inbound(data);
}
