//! Deterministic input mutations for the stable replay (`replay.rs`): a seeded
//! xorshift generator and the mutations libFuzzer starts from (bit flips, interesting
//! bytes, insert/delete, truncation, splicing two seeds, length fields, repeated chunks),
//! stacked one to four deep. No coverage feedback: this replays, it does not explore.

/// xorshift64* (Vigna 2016): small, fast, and the same sequence on every machine.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        // A zero state would stay zero.
        Self(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform enough in `0..n`; 0 when `n` is 0.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

/// FNV-1a: names artifacts and seeds the generator per target, stable across Rust versions.
pub fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

const INTERESTING: [u8; 8] = [0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, 0x40];

/// One mutant: a seed picked by `rng`, changed by one to four stacked mutations.
pub fn mutant(rng: &mut XorShift, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        mutate_once(rng, seeds, &mut d);
    }
    d
}

fn mutate_once(rng: &mut XorShift, seeds: &[Vec<u8>], d: &mut Vec<u8>) {
    let len = d.len();
    match rng.below(9) {
        // Flip one bit.
        0 if len > 0 => {
            let i = rng.below(len);
            d[i] ^= 1 << rng.below(8);
        }
        // An interesting or random byte.
        1 if len > 0 => {
            let i = rng.below(len);
            d[i] = if rng.below(2) == 0 {
                INTERESTING[rng.below(INTERESTING.len())]
            } else {
                rng.byte()
            };
        }
        // Small arithmetic on a byte (counters, types, flags).
        2 if len > 0 => {
            let i = rng.below(len);
            let delta = 1 + rng.below(16) as u8;
            d[i] = if rng.below(2) == 0 {
                d[i].wrapping_add(delta)
            } else {
                d[i].wrapping_sub(delta)
            };
        }
        // Insert one to eight random bytes.
        3 => {
            let at = rng.below(len + 1);
            let n = 1 + rng.below(8);
            let bytes: Vec<u8> = (0..n).map(|_| rng.byte()).collect();
            d.splice(at..at, bytes);
        }
        // Delete a range of up to 16 bytes.
        4 if len > 0 => {
            let at = rng.below(len);
            let n = 1 + rng.below((len - at).min(16));
            d.drain(at..at + n);
        }
        // Truncate.
        5 => d.truncate(rng.below(len + 1)),
        // Splice: this input's head, another seed's tail.
        6 => {
            let other = &seeds[rng.below(seeds.len())];
            let at = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            d.truncate(at);
            d.extend_from_slice(&other[from..]);
        }
        // A length field: 1, 2 or 4 big-endian octets set to a boundary value.
        7 if len > 0 => {
            let width = [1, 2, 4][rng.below(3)];
            let at = rng.below(len);
            if at + width <= len {
                let rest = (len - at) as u64;
                let v: u64 = match rng.below(7) {
                    0 => 0,
                    1 => 1,
                    2 => len as u64,
                    3 => rest,
                    4 => rest + 1,
                    5 => rest.saturating_sub(1),
                    _ => u64::MAX,
                };
                let be = v.to_be_bytes();
                d[at..at + width].copy_from_slice(&be[8 - width..]);
            }
        }
        // Repeat a chunk elsewhere (a record, a message, a step of a sequence).
        8 if len > 0 => {
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(64));
            let chunk = d[from..from + n].to_vec();
            let at = rng.below(len + 1);
            d.splice(at..at, chunk);
        }
        // Empty input and a mutation that needs bytes: grow it instead.
        _ => d.push(rng.byte()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutants_are_deterministic_and_mostly_differ_from_the_seed() {
        let seeds = vec![(0u8..64).collect::<Vec<u8>>(), b"second seed".to_vec()];
        let run = |seed| {
            let mut rng = XorShift::new(seed);
            (0..1000)
                .map(|_| mutant(&mut rng, &seeds))
                .collect::<Vec<_>>()
        };
        let a = run(7);
        assert_eq!(a, run(7), "same generator seed, same mutants");
        assert_ne!(a, run(8));
        let unchanged = a.iter().filter(|m| seeds.contains(m)).count();
        assert!(unchanged < 50, "{unchanged} of 1000 mutants equal a seed");
        // Both sizes of change happen: shorter and longer than any seed.
        assert!(a.iter().any(|m| m.len() < 11));
        assert!(a.iter().any(|m| m.len() > 64));
    }
}
