//! The IKE SK/SKF decrypt path (RFC 7296 §3.14, RFC 7383 §2.6) under fixed keys, for
//! AES-GCM (RFC 5282) and AES-CBC + HMAC-SHA2: `protect::open`, `open_fragment` and
//! `Reassembly::add`. The input chooses the plaintext (payload chain, padding and pad
//! length) which the target seals itself, so the code after a successful integrity
//! check is reached; raw inputs exercise the checks before it. Invariants: no panic,
//! whatever `open` or a reassembly accepts re-encodes (seal → open gives the same
//! payloads), a tampered message is never accepted.

use ike::crypto::SkCipher;
use ike::iana::{EncrId, ExchangeType, IntegId, PayloadType};
use ike::sa::protect::{self, Fragment, Reassembly};
use ike::wire::{decode_chain, encode_chain, Flags, Header, Message, Payload, HEADER_LEN};
use ike::Rng;

struct CountRng(u8);

impl Rng for CountRng {
    fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            self.0 = self.0.wrapping_add(1);
            *b = self.0;
        }
    }
}

fn cipher(sel: u8) -> SkCipher {
    if sel & 1 == 0 {
        // AES-256-GCM-16: 32-octet key + 4-octet salt (RFC 5282 §7.1).
        let key: Vec<u8> = (0..36).collect();
        SkCipher::new(EncrId::AES_GCM_16, Some(256), IntegId::NONE, &key, &[]).expect("GCM")
    } else {
        let key: Vec<u8> = (0..16).collect();
        let mac: Vec<u8> = (100..132).collect();
        SkCipher::new(
            EncrId::AES_CBC,
            Some(128),
            IntegId::HMAC_SHA2_256_128,
            &key,
            &mac,
        )
        .expect("CBC")
    }
}

fn header(msg_id: u32) -> Header {
    Header {
        spi_i: 0x1111_2222_3333_4444,
        spi_r: 0x5555_6666_7777_8888,
        next_payload: PayloadType::NONE,
        version: 0x20,
        exchange: ExchangeType::INFORMATIONAL,
        flags: Flags(Flags::INITIATOR),
        message_id: msg_id,
        length: 0,
    }
}

/// HDR | SK or SKF generic header | IV | seal(plain), with lengths filled in.
fn build(
    c: &SkCipher,
    first_inner: u8,
    skf: Option<(u16, u16)>,
    plain: &[u8],
    iv_byte: u8,
) -> Vec<u8> {
    let mut h = header(7);
    let sk_hdr = if skf.is_some() { 8 } else { 4 };
    // CBC needs whole blocks; the input still chooses every octet, padding included.
    let block = c.block_len().max(1);
    let mut pt = plain.to_vec();
    while pt.is_empty() || !pt.len().is_multiple_of(block) {
        pt.push(0);
    }
    let body_len = sk_hdr + c.iv_len() + pt.len() + c.icv_len();
    h.next_payload = if skf.is_some() {
        PayloadType::SKF
    } else {
        PayloadType::SK
    };
    h.length = (HEADER_LEN + body_len) as u32;
    let mut out = Vec::new();
    h.encode(&mut out);
    out.push(first_inner);
    out.push(0);
    out.extend_from_slice(&(body_len as u16).to_be_bytes());
    if let Some((n, t)) = skf {
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&t.to_be_bytes());
    }
    let iv = vec![iv_byte; c.iv_len()];
    let sealed = c.seal(&out, &iv, &pt).expect("seal");
    out.extend_from_slice(&iv);
    out.extend_from_slice(&sealed);
    out
}

/// Accepted payloads re-encode: sealed again they open to the same payloads, and the
/// chain round-trips.
fn reencodes(c: &SkCipher, payloads: &[Payload]) {
    let mut chain = Vec::new();
    let first = encode_chain(payloads, &mut chain);
    let again = decode_chain(first, &chain).expect("re-encoded chain decodes");
    assert_eq!(again, payloads);
    let mut rng = CountRng(9);
    let sealed = protect::seal(header(1), payloads, c, &mut rng).expect("seal");
    let msg = Message::decode(&sealed).expect("sealed message decodes");
    let opened = protect::open(&sealed, &msg, c).expect("sealed message opens");
    assert_eq!(opened, payloads);
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    let n = n.min(data.len());
    let (a, b) = data.split_at(n);
    *data = b;
    a
}

fn u8_(data: &mut &[u8]) -> u8 {
    take(data, 1).first().copied().unwrap_or(0)
}

fn u16_(data: &mut &[u8]) -> u16 {
    u16::from(u8_(data)) << 8 | u16::from(u8_(data))
}

pub fn ike_sk_open(input: &[u8]) {
    let mut data = input;
    let sel = u8_(&mut data);
    let c = cipher(sel);
    match (sel >> 1) & 3 {
        // Raw bytes: every check before and at the integrity check.
        0 => {
            if let Ok(msg) = Message::decode(data) {
                if let Ok(p) = protect::open(data, &msg, &c) {
                    reencodes(&c, &p);
                }
                if let Ok(f) = protect::open_fragment(data, &msg, &c) {
                    assert!(f.number >= 1 && f.number <= f.total);
                }
            }
        }
        // One SK payload around input-chosen plaintext; then tampered once.
        1 => {
            let first = u8_(&mut data);
            let flip = u16_(&mut data);
            let raw = build(&c, first, None, data, sel);
            let msg = Message::decode(&raw).expect("built message decodes");
            if let Ok(p) = protect::open(&raw, &msg, &c) {
                reencodes(&c, &p);
            }
            let mut bad = raw.clone();
            let at = usize::from(flip) % bad.len();
            bad[at] ^= 1 << (flip >> 13);
            if let Ok(msg) = Message::decode(&bad) {
                if let Ok(p) = protect::open(&bad, &msg, &c) {
                    // Every octet is authenticated: the AAD covers header and SK header.
                    panic!("tampered message at {at} accepted: {p:?}");
                }
            }
        }
        // A sequence of SKF fragments into one reassembly.
        _ => {
            let total = u16_(&mut data) % 40;
            let mut r = Reassembly::new(7, false, total);
            let mut done = false;
            while !data.is_empty() && !done {
                let number = u16_(&mut data) % 48;
                let claimed = if u8_(&mut data) & 1 == 0 {
                    total
                } else {
                    u16_(&mut data) % 48
                };
                let first = u8_(&mut data);
                let len = usize::from(u8_(&mut data));
                let plain = take(&mut data, len);
                let raw = build(&c, first, Some((number, claimed)), plain, sel);
                let Ok(msg) = Message::decode(&raw) else {
                    continue;
                };
                let f: Fragment = match protect::open_fragment(&raw, &msg, &c) {
                    Ok(f) => f,
                    Err(_) => continue,
                };
                assert!(f.number >= 1 && f.number <= f.total);
                if let Some(res) = r.add(f) {
                    done = true;
                    if let Ok(p) = res {
                        reencodes(&c, &p);
                    }
                }
            }
        }
    }
}
