//! The coalescer against the model of the kernel's resegmentation (`model.rs`): every
//! write, split again, must give back the packets that went in, in each flow's order.

use proptest::prelude::*;

use super::model::{self, assert_round_trip, lay_out, packet, payload, resegment, Flow, Hdr};
use super::*;

/// The writes `flush` makes for these packets, each as one byte string.
fn writes(pkts: &[Vec<u8>], vnet: bool, udp: bool) -> Vec<Vec<u8>> {
    let (storage, slots) = lay_out(pkts, 0xee);
    let mut gro = Gro::new();
    let out = model::writes(&mut gro, &mut storage.clone(), &slots, vnet, udp);
    // Once more through the same coalescer: nothing may carry over between batches.
    let again = model::writes(&mut gro, &mut storage.clone(), &slots, vnet, udp);
    assert_eq!(out, again, "a second batch wrote differently");
    out
}

/// The writes for `pkts` (UDP GSO on), which must be `n` and give the packets back.
fn coalesced(pkts: &[Vec<u8>], n: usize) -> Vec<Vec<u8>> {
    let ws = writes(pkts, true, true);
    assert_eq!(
        ws.len(),
        n,
        "{:?}",
        ws.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_round_trip(pkts, &ws);
    ws
}

const TCP4: Flow = Flow {
    v6: false,
    tcp: true,
    port: 40000,
};
const TCP6: Flow = Flow {
    v6: true,
    tcp: true,
    port: 40001,
};
const UDP4: Flow = Flow {
    v6: false,
    tcp: false,
    port: 40002,
};
const UDP6: Flow = Flow {
    v6: true,
    tcp: false,
    port: 40003,
};

/// `n` segments of `mss` and a last one of `last`, in order, IDs counting up.
fn run(f: Flow, n: usize, mss: usize, last: usize) -> Vec<Vec<u8>> {
    let mut seq = 1000u32;
    let mut out = Vec::new();
    for i in 0..=n {
        let size = if i == n { last } else { mss };
        if size == 0 {
            break;
        }
        let h = Hdr {
            id: 100 + i as u16,
            ..Hdr::at(seq)
        };
        out.push(packet(f, h, &payload(size, i as u8)));
        seq = seq.wrapping_add(size as u32);
    }
    out
}

#[test]
fn a_bulk_run_of_one_flow_becomes_one_super_packet() {
    for f in [TCP4, TCP6, UDP4, UDP6] {
        let pkts = run(f, 10, 1348, 300);
        let ws = writes(&pkts, true, true);
        assert_eq!(ws.len(), 1, "{f:?}");
        let vnet = &ws[0][..HEADROOM];
        assert_eq!(u16::from_ne_bytes([vnet[4], vnet[5]]), 1348, "gso_size");
        assert_round_trip(&pkts, &ws);
    }
}

#[test]
fn udp_is_coalesced_only_where_the_tun_takes_uso() {
    let pkts = run(UDP4, 5, 1300, 0);
    assert_eq!(writes(&pkts, true, false).len(), 5);
    assert_round_trip(&pkts, &writes(&pkts, true, false));
    // TCP does not depend on it.
    assert_eq!(writes(&run(TCP4, 5, 1300, 0), true, false).len(), 1);
}

#[test]
fn without_a_virtio_header_every_packet_goes_as_it_came() {
    let pkts = run(TCP4, 5, 1300, 7);
    assert_eq!(writes(&pkts, false, true), pkts);
}

#[test]
fn interleaved_flows_each_keep_their_order() {
    let (a, b) = (run(TCP4, 8, 1000, 10), run(TCP6, 8, 1200, 0));
    let mut pkts = Vec::new();
    for i in 0..9 {
        pkts.extend(a.get(i).cloned());
        pkts.extend(b.get(i).cloned());
    }
    coalesced(&pkts, 2);
}

#[test]
fn a_gap_a_shorter_segment_a_psh_or_a_fin_ends_the_super_packet() {
    // A gap: the segment after it starts a new super-packet.
    let mut pkts = run(TCP4, 6, 1000, 0);
    pkts.remove(3);
    coalesced(&pkts, 2);

    // A shorter segment is the last one.
    let mut pkts = run(TCP4, 3, 1000, 500);
    let h = Hdr {
        id: 104,
        ..Hdr::at(4500)
    };
    pkts.push(packet(TCP4, h, &payload(1000, 9)));
    coalesced(&pkts, 2);

    // PSH: it may join, and ends the super-packet, which then carries it.
    let mut pkts = run(TCP6, 5, 1000, 0);
    let mut h = Hdr::at(1000 + 3000);
    h.flags = TCP_ACK | TCP_PSH;
    pkts[3] = packet(TCP6, h, &payload(1000, 3));
    let ws = coalesced(&pkts, 2);
    assert_ne!(ws[0][HEADROOM + 40 + 13] & TCP_PSH, 0);

    // FIN: not merged, and nothing of its flow after it is merged before it.
    let mut pkts = run(TCP4, 5, 1000, 0);
    let mut h = Hdr::at(1000 + 2000);
    h.flags = TCP_ACK | 0x01;
    h.id = 102;
    pkts[2] = packet(TCP4, h, &payload(1000, 2));
    coalesced(&pkts, 3);
}

#[test]
fn a_corrupt_segment_is_written_alone_and_unchanged() {
    let mut pkts = run(TCP4, 6, 1000, 0);
    let last = pkts[3].len() - 1;
    pkts[3][last] ^= 0x40;
    let ws = writes(&pkts, true, true);
    assert!(ws.iter().any(|w| w[HEADROOM..] == pkts[3][..]));
    // The segments after it have a gap before them (it was not merged).
    assert_eq!(ws.len(), 3);
    assert_eq!(resegment(&ws[0]).len(), 3);

    // A corrupt head is not merged with anything.
    let mut pkts = run(UDP6, 4, 1000, 0);
    let last = pkts[0].len() - 1;
    pkts[0][last] ^= 1;
    let ws = writes(&pkts, true, true);
    assert_eq!(ws[0][HEADROOM..], pkts[0][..]);
    assert_eq!(ws.len(), 2);
    assert_eq!(resegment(&ws[1]).len(), 3);

    // Nor is a segment with a wrong IPv4 header checksum.
    let mut pkts = run(TCP4, 3, 1000, 0);
    pkts[1][10] ^= 1;
    assert_eq!(writes(&pkts, true, true).len(), 3);
}

#[test]
fn header_fields_the_kernel_copies_must_agree() {
    let variants: [fn(&mut Hdr); 4] = [
        |h| h.ttl = 63,
        |h| h.window = 501,
        |h| h.df = true,
        |h| h.id = 7, // IPv4 without DF: IDs must count up
    ];
    for v in variants {
        let mut pkts = Vec::new();
        for i in 0..4u16 {
            let mut h = Hdr {
                id: 100 + i,
                df: false,
                ..Hdr::at(1000 + 1000 * u32::from(i))
            };
            if i == 2 {
                v(&mut h);
            }
            pkts.push(packet(TCP4, h, &payload(1000, i as u8)));
        }
        let ws = writes(&pkts, true, true);
        assert!(ws.len() >= 2, "{pkts:?}");
        assert_round_trip(&pkts, &ws);
    }
    // With DF, the ID means nothing (RFC 6864 §4.1): merged.
    let pkts: Vec<Vec<u8>> = (0..4u32)
        .map(|i| {
            packet(
                TCP4,
                Hdr {
                    id: 9,
                    ..Hdr::at(1000 + 1000 * i)
                },
                &payload(1000, 1),
            )
        })
        .collect();
    assert_eq!(writes(&pkts, true, true).len(), 1);
}

#[test]
fn a_super_packet_stays_within_64_segments_and_64_kib() {
    let pkts = run(UDP4, 99, 100, 0);
    let ws = writes(&pkts, true, true);
    assert_eq!(ws.len(), 2);
    assert_eq!(resegment(&ws[0]).len(), MAX_SEGS);
    assert_round_trip(&pkts, &ws);

    let pkts = run(TCP6, 60, 1400, 0);
    let ws = writes(&pkts, true, true);
    assert!(ws.iter().all(|w| w.len() - HEADROOM <= MAX_PACKET));
    assert_eq!(ws.len(), 2);
    assert_round_trip(&pkts, &ws);
}

#[test]
fn more_flows_than_it_tracks_are_still_written_in_order() {
    let mut pkts = Vec::new();
    for round in 0..3u32 {
        for port in 0..(MAX_OPEN as u16 + 4) {
            let f = Flow {
                port: 1000 + port,
                ..TCP4
            };
            let h = Hdr::at(1000 + 1000 * round);
            pkts.push(packet(f, h, &payload(1000, port as u8)));
        }
    }
    let ws = writes(&pkts, true, true);
    assert_round_trip(&pkts, &ws);
}

#[test]
fn packets_that_are_not_ip_go_as_they_came() {
    let pkts = vec![vec![], vec![0x45], vec![0x60; 30], vec![0xff; 100]];
    let ws = writes(&pkts, true, true);
    assert_eq!(
        ws.iter()
            .map(|w| w[HEADROOM..].to_vec())
            .collect::<Vec<_>>(),
        pkts
    );
}

/// One generated packet: which flow, its payload size, and what is done to it.
#[derive(Clone, Debug)]
enum Step {
    Next { flow: usize, size: usize },
    Gap { flow: usize },
    Flags { flow: usize, flags: u8 },
    Ttl { flow: usize },
    Corrupt { flow: usize },
    NoDf { flow: usize },
    Junk(Vec<u8>),
}

fn step() -> impl Strategy<Value = Step> {
    let flow = 0..4usize;
    prop_oneof![
        8 => (flow.clone(), prop_oneof![3 => Just(1000usize), 1 => 1..1200usize])
            .prop_map(|(flow, size)| Step::Next { flow, size }),
        1 => flow.clone().prop_map(|flow| Step::Gap { flow }),
        1 => (flow.clone(), prop::sample::select(vec![0x18u8, 0x11, 0x12, 0x02, 0x10, 0x90]))
            .prop_map(|(flow, flags)| Step::Flags { flow, flags }),
        1 => flow.clone().prop_map(|flow| Step::Ttl { flow }),
        1 => flow.clone().prop_map(|flow| Step::Corrupt { flow }),
        1 => flow.prop_map(|flow| Step::NoDf { flow }),
        1 => prop::collection::vec(any::<u8>(), 0..80).prop_map(Step::Junk),
    ]
}

proptest! {
    #[test]
    fn resegmenting_the_writes_gives_back_every_packet_in_flow_order(
        steps in prop::collection::vec(step(), 0..150),
        udp in any::<bool>(),
    ) {
        let flows = [TCP4, TCP6, UDP4, UDP6];
        let mut state: Vec<Hdr> = (0..4).map(|_| Hdr::at(1)).collect();
        let mut pkts = Vec::new();
        for s in steps {
            let (f, size) = match s {
                Step::Junk(j) => {
                    pkts.push(j);
                    continue;
                }
                Step::Next { flow, size } => (flow, size),
                Step::Gap { flow } => {
                    state[flow].seq = state[flow].seq.wrapping_add(77);
                    (flow, 1000)
                }
                Step::Flags { flow, flags } => {
                    state[flow].flags = flags;
                    (flow, 1000)
                }
                Step::Ttl { flow } => {
                    state[flow].ttl ^= 1;
                    (flow, 1000)
                }
                Step::NoDf { flow } => {
                    state[flow].df = !state[flow].df;
                    (flow, 1000)
                }
                Step::Corrupt { flow } => (flow, 1000),
            };
            let mut p = packet(flows[f], state[f], &payload(size, pkts.len() as u8));
            if matches!(s, Step::Corrupt { .. }) {
                let last = p.len() - 1;
                p[last] ^= 0x10;
            }
            pkts.push(p);
            let h = &mut state[f];
            h.seq = h.seq.wrapping_add(size as u32);
            h.id = h.id.wrapping_add(1);
            h.flags = TCP_ACK;
        }
        let ws = writes(&pkts, true, udp);
        assert_round_trip(&pkts, &ws);
        prop_assert!(ws.iter().all(|w| w.len() - HEADROOM <= MAX_PACKET));
    }
}
