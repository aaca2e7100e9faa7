//! Percent rolls and sticky-key hashing for traffic actions: a per-thread xorshift generator
//! for "this request or not", and a fixed (process- and release-independent) hash for "which
//! side this client is on", so every instance of the gateway puts a key on the same side.

use std::cell::Cell;

/// A share of requests, in millionths (so `percent = 0.5` is exact).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chance(u32);

/// One million: `Chance` of 100%.
const ALL: u32 = 1_000_000;

impl Chance {
    /// From a percent in [0, 100] (checked by the compiler of the config).
    pub fn percent(p: f64) -> Chance {
        Chance((p.clamp(0.0, 100.0) * 10_000.0).round() as u32)
    }

    /// Whether this request is in the share.
    #[inline]
    pub fn hit(self) -> bool {
        match self.0 {
            0 => false,
            ALL => true,
            share => (random() % u64::from(ALL)) < u64::from(share),
        }
    }
}

thread_local! {
    static STATE: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish() | 1
}

/// A uniformly random `u64` (xorshift64*: fast, not for secrets).
#[inline]
pub fn random() -> u64 {
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    })
}

/// A stable 64-bit hash of a sticky key: FNV-1a, then the splitmix64 finaliser so nearby keys
/// (`user-1`, `user-2`) land far apart. Stable across processes and releases on purpose.
pub fn stable_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rolls_and_edges() {
        assert!(!Chance::percent(0.0).hit());
        assert!(Chance::percent(100.0).hit());
        let ten = Chance::percent(10.0);
        let hits = (0..100_000).filter(|_| ten.hit()).count();
        assert!((9_000..11_000).contains(&hits), "{hits}");
        assert_eq!(Chance::percent(0.5), Chance(5_000));
    }

    #[test]
    fn stable_hash_is_fixed_and_spread() {
        // A fixed value: a change would move every sticky client to another side.
        assert_eq!(stable_hash(b"user-1"), 0xc499_b5f8_a721_df58);
        assert_ne!(stable_hash(b"user-1"), stable_hash(b"user-2"));
        let low = (0..10_000)
            .filter(|i| stable_hash(format!("k{i}").as_bytes()) < u64::MAX / 2)
            .count();
        assert!((4_700..5_300).contains(&low), "{low}");
    }
}
