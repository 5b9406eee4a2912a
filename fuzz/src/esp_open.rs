//! Arbitrary bytes into `InboundSa::open` with fixed keys: must never
//! panic, and anything it accepts must be a well-formed inner packet.
//! `InboundSa::open_into` (the dataplane's path) must agree with it exactly.

use esp::Zeroizing;
use esp::{Algorithm, Decapsulated, InboundSa, OutboundSa, SaParams};

const SPI: u32 = 0x0102_0304;

fn params(alg: Algorithm, esn: bool) -> SaParams {
    let keymat: Vec<u8> = (0..alg.keymat_len()).map(|i| i as u8).collect();
    let mut p = SaParams::new(SPI, alg, Zeroizing::new(keymat));
    p.esn = esn;
    p
}

pub fn esp_open(data: &[u8]) {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let alg = Algorithm::ALL[usize::from(sel & 7) % Algorithm::ALL.len()];
    let esn = sel & 0x08 != 0;
    let mut sa = InboundSa::new(params(alg, esn)).expect("valid params");
    let mut pkt = rest.to_vec();
    if sel & 0x10 != 0 && pkt.len() >= 4 {
        // Reach past the SPI check.
        pkt[..4].copy_from_slice(&SPI.to_be_bytes());
    }
    if sel & 0x20 != 0 {
        // Seal the input as an inner packet, flip one bit chosen by the
        // input, and open: exercises the authenticated paths too.
        let mut out = OutboundSa::new(params(alg, esn)).expect("valid params");
        let mut buf = vec![0u8; out.sealed_len(rest.len())];
        if let Ok(n) = out.seal(rest, &mut buf) {
            buf.truncate(n);
            let flip = usize::from(sel >> 6);
            let idx = rest.len().wrapping_mul(31).wrapping_add(flip) % n;
            if sel & 0x40 != 0 {
                buf[idx] ^= 1;
            }
            match sa.open(&mut buf) {
                // Octets beyond the inner IP length travel like TFC padding
                // and are trimmed by the receiver (RFC 4303 §2.7).
                Ok(d) => assert!(rest.starts_with(d.packet().expect("not dummy"))),
                Err(e) => assert!(sel & 0x40 != 0, "genuine packet rejected: {e:?}"),
            }
        }
        return;
    }
    let mut twin = InboundSa::new(params(alg, esn)).expect("valid params");
    let mut dst = vec![0u8; twin.plaintext_len(&pkt)];
    let into = twin
        .open_into(&pkt, &mut dst)
        .map(|d| d.packet().map(<[u8]>::to_vec));
    let in_place = InboundSa::new(params(alg, esn))
        .expect("valid params")
        .open(&mut pkt.clone())
        .map(|d| d.packet().map(<[u8]>::to_vec));
    assert_eq!(into, in_place, "open_into and open disagree");
    match sa.open(&mut pkt) {
        Ok(Decapsulated::Ipv4(p)) => assert_eq!(p[0] >> 4, 4),
        Ok(Decapsulated::Ipv6(p)) => assert_eq!(p[0] >> 4, 6),
        Ok(Decapsulated::Dummy) => {}
        Err(_) => {}
    }
    let c = sa.counters();
    assert!(c.packets + c.dummy + c.replayed + c.icv_failures + c.malformed == 1);
}
