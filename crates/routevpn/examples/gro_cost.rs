//! User-space cost of receive coalescing per packet: routevpn's coalescer
//! (`dataplane::gro`) against tun-rs's (`GROTable::apply_gro`, what `send_multiple` ran
//! before), on the same batches of decrypted TCP segments, rounds interleaved.
//! The TUN write itself (the kernel's copy) is the same for both and not counted.
//!
//! `cargo run --release -p routevpn --example gro_cost`

use std::hint::black_box;
use std::io::IoSlice;
use std::time::Instant;

use routevpn::dataplane::gro::model::{lay_out, packet, payload, Flow, Hdr};
use routevpn::dataplane::gro::{Gro, HEADROOM};

/// Segments per batch (a worker's TUN batch) and payload per segment (MTU 1438).
const SEGS: usize = 64;
const PAYLOAD: usize = 1386;
const BATCHES: usize = 4_000;
const ROUNDS: usize = 7;

/// `SEGS` in-order IPv4 TCP segments of one flow, with timestamps, right checksums.
fn segments() -> Vec<Vec<u8>> {
    let flow = Flow {
        v6: false,
        tcp: true,
        port: 40000,
    };
    (0..SEGS)
        .map(|i| {
            let h = Hdr {
                id: i as u16,
                ..Hdr::at(1 + (i * PAYLOAD) as u32)
            };
            packet(flow, h, &payload(PAYLOAD, i as u8))
        })
        .collect()
}

/// Nanoseconds per packet of `f` over `BATCHES` batches.
fn time(mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..BATCHES {
        f();
    }
    start.elapsed().as_nanos() as f64 / (BATCHES * SEGS) as f64
}

fn main() {
    let pkts = segments();
    // routevpn: the packets one after another with headroom, as a TUN batch holds them.
    let (template, slots) = lay_out(&pkts, 0);
    let mut storage = template.clone();
    let mut gro = Gro::new();
    // tun-rs: one 64 KiB buffer per packet, as the dataplane gave it.
    let mut bufs: Vec<Vec<u8>> = (0..SEGS).map(|_| Vec::with_capacity(66_000)).collect();
    let mut table = tun_rs::GROTable::new();

    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    let mut refill = Vec::new();
    for _ in 0..ROUNDS {
        // Putting the batch back costs both the same: measured alone, then subtracted.
        refill.push(time(|| {
            storage.copy_from_slice(&template);
            black_box(&mut storage);
        }));
        ours.push(time(|| {
            storage.copy_from_slice(&template);
            let mut octets = 0;
            gro.flush(&mut storage, &slots, true, true, |iov: &[IoSlice<'_>]| {
                octets += iov.iter().map(|s| s.len()).sum::<usize>();
                Ok(0)
            })
            .expect("no writer error");
            black_box(octets);
        }));
        theirs.push(time(|| {
            for (b, p) in bufs.iter_mut().zip(&pkts) {
                b.clear();
                b.extend_from_slice(&[0; HEADROOM]);
                b.extend_from_slice(p);
            }
            table
                .apply_gro(&mut bufs, HEADROOM, true)
                .expect("coalesced");
            black_box(&mut bufs);
        }));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (r, o, t) = (median(&mut refill), median(&mut ours), median(&mut theirs));
    println!(
        "{SEGS} TCP segments of {PAYLOAD} octets per batch, {BATCHES} batches, median of {ROUNDS} rounds"
    );
    println!("  putting the batch back:  {r:6.1} ns/packet (subtracted below)");
    println!("  routevpn gro::Gro:       {:6.1} ns/packet", o - r);
    println!("  tun-rs GROTable:         {:6.1} ns/packet", t - r);
    println!("  ratio tun-rs / routevpn: {:6.2}", (t - r) / (o - r));
}
