//! Decrypted inner packets into the dataplane's receive coalescer
//! (`routevpn::dataplane::gro`): it must never panic, and the kernel's resegmentation
//! of its writes (the model in `gro/model.rs`) must give back every packet, each flow in
//! order, only verified packets merged, no write above 64 KiB.
//!
//! Input: a flags octet (bit 0: the TUN takes UDP GSO), then packets, each a
//! little-endian u16 length and that many octets. A packet whose length has the top
//! bit set gets right checksums first, so that merges are reached at all.

use routevpn::dataplane::gro::model::{assert_round_trip, fill_checksums, lay_out, writes};
use routevpn::dataplane::gro::{Gro, HEADROOM};

pub fn dataplane_gro(data: &[u8]) {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let mut pkts = Vec::new();
    while let Some((len, tail)) = rest.split_first_chunk::<2>() {
        let len = u16::from_le_bytes(*len);
        let n = usize::from(len & 0x7fff).min(tail.len());
        let mut p = tail[..n].to_vec();
        if len & 0x8000 != 0 {
            fill_checksums(&mut p);
        }
        pkts.push(p);
        rest = &tail[n..];
    }
    let (mut storage, slots) = lay_out(&pkts, 0xa5);
    let writes = writes(&mut Gro::new(), &mut storage, &slots, true, flags & 1 != 0);
    assert!(writes.iter().all(|w| w.len() <= HEADROOM + 65_535));
    assert_round_trip(&pkts, &writes);
}
