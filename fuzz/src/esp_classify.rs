//! Arbitrary UDP port-4500 payloads into `esp::classify` and the ESP header
//! view: must never panic, and every classification must be consistent.

use esp::udp::{classify, encode_ike, Datagram};
use esp::{EspHeader, EspPacket};

pub fn esp_classify(data: &[u8]) {
    match classify(data) {
        Datagram::Keepalive => assert_eq!(data, [0xFF]),
        Datagram::Ike(msg) => {
            let mut v = Vec::new();
            encode_ike(msg, &mut v);
            assert_eq!(v, data);
        }
        Datagram::Esp { spi, packet } => {
            assert_ne!(spi, 0);
            let view = EspPacket::new_checked(packet).expect("classified as ESP");
            let hdr = EspHeader::parse(&view);
            assert_eq!(hdr.spi, spi);
            let mut copy = packet.to_vec();
            let mut w = EspPacket::new_checked(&mut copy[..]).expect("same length");
            EspHeader { spi: 0, seq: 0 }.emit(&mut w);
            hdr.emit(&mut w);
            assert_eq!(copy, packet);
        }
        Datagram::Invalid => {}
    }
}
