//! Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size in
//! which every endpoint owns slots in proportion to its weight. Removing one of N endpoints
//! moves about 1/N of the keys; a key whose owner is unusable walks on to the next slots'
//! owners, which is stable per key.

use super::hash::hash_bytes;

/// Table sizes (primes); the smallest at least 100× the endpoint count is used.
const SIZES: [u64; 9] = [211, 503, 1009, 2003, 5003, 10007, 20011, 40009, 65537];

/// A built lookup table.
#[derive(Debug)]
pub struct Maglev {
    table: Box<[u32]>,
}

impl Maglev {
    /// Builds the table for endpoints named `names` (stable identities, e.g. addresses) with
    /// `weights` (≥ 1).
    pub fn build(names: &[String], weights: &[u32]) -> Maglev {
        let n = names.len();
        let m = SIZES
            .iter()
            .copied()
            .find(|&s| s >= 100 * n as u64)
            .unwrap_or(SIZES[SIZES.len() - 1]);
        if n == 0 {
            return Maglev {
                table: Box::new([]),
            };
        }
        let offset: Vec<u64> = names
            .iter()
            .map(|s| hash_bytes(0x6d61_676c, s.as_bytes()) % m)
            .collect();
        let skip: Vec<u64> = names
            .iter()
            .map(|s| hash_bytes(0x736b_6970, s.as_bytes()) % (m - 1) + 1)
            .collect();
        let max_w = f64::from(weights.iter().copied().max().unwrap_or(1).max(1));
        let mut credit = vec![0.0f64; n];
        let mut next = vec![0u64; n];
        let mut table = vec![u32::MAX; m as usize];
        let mut filled = 0u64;
        loop {
            for i in 0..n {
                // Heavier endpoints take a slot on more rounds.
                credit[i] += f64::from(weights[i].max(1)) / max_w;
                if credit[i] < 1.0 {
                    continue;
                }
                credit[i] -= 1.0;
                loop {
                    let c = ((offset[i] + next[i] * skip[i]) % m) as usize;
                    next[i] += 1;
                    if table[c] == u32::MAX {
                        table[c] = i as u32;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    return Maglev {
                        table: table.into_boxed_slice(),
                    };
                }
            }
        }
    }

    /// Slots in the table.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// Whether the table is empty (no endpoints).
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The `k`-th endpoint in `key`'s order: its owner (k = 0), then the owners of the slots
    /// after it.
    #[inline]
    pub fn nth(&self, key: u64, k: usize) -> usize {
        let m = self.table.len();
        let slot = (key % m as u64) as usize;
        self.table[(slot + k) % m] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("http://10.0.0.{i}:80")).collect()
    }

    #[test]
    fn sizes_are_prime() {
        for s in SIZES {
            assert!((2..s).take_while(|d| d * d <= s).all(|d| s % d != 0), "{s}");
        }
    }

    #[test]
    fn even_shares_and_small_disruption() {
        let four = Maglev::build(&names(4), &[1; 4]);
        let mut counts = [0usize; 4];
        for k in 0..four.len() {
            counts[four.nth(k as u64, 0)] += 1;
        }
        let m = four.len() as f64;
        assert!(
            counts.iter().all(|&c| (c as f64 / m - 0.25).abs() < 0.02),
            "{counts:?}"
        );
        // Remove endpoint 3: keys of 0..2 should mostly stay.
        let three = Maglev::build(&names(3), &[1; 3]);
        let keys = 10_000u64;
        let moved = (0..keys)
            .map(super::super::hash::mix)
            .filter(|&k| {
                let before = four.nth(k, 0);
                before != 3 && three.nth(k, 0) != before
            })
            .count();
        assert!((moved as f64) < keys as f64 * 0.06, "moved {moved}");
    }

    #[test]
    fn weights_shape_shares() {
        let t = Maglev::build(&names(2), &[3, 1]);
        let zero = (0..t.len()).filter(|&k| t.nth(k as u64, 0) == 0).count();
        let share = zero as f64 / t.len() as f64;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }
}
