//! The weighted round-robin schedule: a precomputed, interleaved sequence of endpoint indices
//! in which each appears in proportion to its weight (earliest deadline first, with each turn's
//! deadline at the middle of its slot, so weights 3:1 give A A B A rather than A A A B).
//! Picking is then one atomic increment and one array read.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Longest schedule built; larger weight sums are scaled down to about this (each endpoint
/// keeps at least one turn).
pub const MAX_LEN: u64 = 8192;

/// Builds the schedule for endpoints `indices` with `weights` (same length, weights ≥ 1).
pub fn build(indices: &[u32], weights: &[u32]) -> Box<[u32]> {
    debug_assert_eq!(indices.len(), weights.len());
    if indices.is_empty() {
        return Box::new([]);
    }
    let g = weights.iter().copied().fold(0, gcd).max(1);
    let mut turns: Vec<u64> = weights.iter().map(|&w| u64::from(w / g)).collect();
    let sum: u64 = turns.iter().sum();
    if sum > MAX_LEN {
        for t in &mut turns {
            *t = (*t * MAX_LEN / sum).max(1);
        }
    }
    let total: u64 = turns.iter().sum();
    let mut heap: BinaryHeap<Turn> = turns
        .iter()
        .enumerate()
        .map(|(pos, &w)| Turn { k: 0, w, pos })
        .collect();
    let mut out = Vec::with_capacity(total as usize);
    while let Some(mut t) = heap.pop() {
        out.push(indices[t.pos]);
        t.k += 1;
        if t.k < t.w {
            heap.push(t);
        }
    }
    out.into_boxed_slice()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The `k`-th turn of the endpoint at `pos` with `w` turns: due at (2k+1)/(2w) of the cycle.
#[derive(PartialEq, Eq)]
struct Turn {
    k: u64,
    w: u64,
    pos: usize,
}

impl Ord for Turn {
    /// Reversed (BinaryHeap is a max-heap): the earliest deadline, then the lowest position,
    /// is the greatest.
    fn cmp(&self, other: &Self) -> Ordering {
        let mine = (2 * self.k + 1) * (2 * other.w);
        let theirs = (2 * other.k + 1) * (2 * self.w);
        theirs.cmp(&mine).then(other.pos.cmp(&self.pos))
    }
}

impl PartialOrd for Turn {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_to_one_interleaves() {
        let s = build(&[0, 1], &[3, 1]);
        assert_eq!(&*s, &[0, 0, 1, 0]);
        // Never a run of four of the same endpoint, even across the cycle boundary.
        let twice: Vec<u32> = s.iter().chain(s.iter()).copied().collect();
        assert!(twice.windows(4).all(|w| w.contains(&1)));
    }

    #[test]
    fn proportions_and_gcd() {
        let s = build(&[5, 6, 7], &[20, 10, 10]);
        assert_eq!(s.len(), 4);
        assert_eq!(s.iter().filter(|&&i| i == 5).count(), 2);
        let equal = build(&[0, 1, 2], &[4, 4, 4]);
        assert_eq!(equal.len(), 3);
    }

    #[test]
    fn large_sums_are_scaled() {
        let idx: Vec<u32> = (0..300).collect();
        let w: Vec<u32> = (0..300).map(|i| 1 + (i * 7919) % 1000).collect();
        let s = build(&idx, &w);
        assert!(s.len() as u64 <= MAX_LEN + 300);
        assert!(
            idx.iter().all(|i| s.contains(i)),
            "every endpoint keeps a turn"
        );
    }
}
