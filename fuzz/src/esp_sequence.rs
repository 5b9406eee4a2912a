//! Sequences of ESP packets through one SA pair (RFC 4303 §3.4.3): in-order, skipped,
//! replayed, reordered and tampered packets, with and without ESN, starting anywhere in
//! the sequence space (so the 2^32 boundary and exhaustion are reached). Invariants: a
//! sequence number is delivered at most once, a tampered packet never, and the counters
//! agree with what happened.

use std::collections::HashSet;

use esp::{Algorithm, EspError, InboundSa, OutboundSa, SaParams, Zeroizing};

const SPI: u32 = 0x0102_0304;

fn params(alg: Algorithm, esn: bool, window: u32) -> SaParams {
    let keymat: Vec<u8> = (0..alg.keymat_len()).map(|i| i as u8).collect();
    let mut p = SaParams::new(SPI, alg, Zeroizing::new(keymat));
    p.esn = esn;
    p.replay_window = window;
    p
}

pub fn esp_sequence(data: &[u8]) {
    let Some((&[sel, w, s0, s1], ops)) = data.split_first_chunk::<4>() else {
        return;
    };
    let alg = Algorithm::ALL[usize::from(sel & 7) % Algorithm::ALL.len()];
    let esn = sel & 0x08 != 0;
    let window = [32, 64, 128, 1024][usize::from(w & 3)];
    let mut out = OutboundSa::new(params(alg, esn, 0)).expect("valid");
    let mut inb = InboundSa::new(params(alg, esn, window)).expect("valid");
    // Start near 0, near 2^32 or near the end of the space.
    let base: u64 = match s0 & 3 {
        0 => 0,
        1 => (1u64 << 32) - 64,
        2 if esn => u64::MAX - 64,
        _ => u64::from(s1) << 8,
    };
    // The esp crate's `fuzzing-hooks` feature, so the stable replay starts there too.
    out.set_last_seq(base);
    if esn || base < (1u64 << 32) {
        inb.set_highest_seq(base);
    }

    let inner = {
        let mut p = vec![0u8; 40];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&40u16.to_be_bytes());
        p[9] = 17;
        p
    };
    let mut sent: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut delivered = HashSet::new();
    let mut accepted = 0u64;
    for op in ops.chunks(2) {
        let (kind, arg) = (op[0], op.get(1).copied().unwrap_or(0));
        let pkt = match kind % 4 {
            // Seal the next packet and deliver it now, or hold it back (reordering).
            0 | 1 => {
                let mut buf = vec![0u8; out.sealed_len(inner.len())];
                match out.seal(&inner, &mut buf) {
                    Ok(n) => buf.truncate(n),
                    Err(EspError::SequenceExhausted) => continue,
                    Err(e) => panic!("seal: {e}"),
                }
                sent.push((out.last_seq(), buf.clone()));
                if kind % 4 == 1 {
                    continue;
                }
                (out.last_seq(), buf, false)
            }
            // Deliver (again) an earlier packet: reordering or replay.
            2 if !sent.is_empty() => {
                let (seq, b) = sent[usize::from(arg) % sent.len()].clone();
                (seq, b, false)
            }
            // Flip one bit of an earlier packet.
            3 if !sent.is_empty() => {
                let (seq, mut b) = sent[usize::from(arg) % sent.len()].clone();
                let i = usize::from(arg) % b.len();
                b[i] ^= 1 << (arg % 8);
                (seq, b, true)
            }
            _ => continue,
        };
        let (seq, mut bytes, tampered) = pkt;
        if let Ok(d) = inb.open(&mut bytes) {
            assert!(!tampered, "tampered packet accepted");
            assert!(d.packet().is_some());
            assert!(delivered.insert(seq), "sequence {seq} delivered twice");
            accepted += 1;
        }
    }
    assert_eq!(inb.counters().packets, accepted);
}
