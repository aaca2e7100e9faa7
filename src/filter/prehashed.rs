//! A `Hasher` for keys that already are uniformly random hashes (token digests, rate-limit
//! keys): hashing them again with SipHash would only cost time on the hot path.

use std::hash::{BuildHasherDefault, Hasher};

/// Passes a `u64`/`u128` key through as its own hash.
#[derive(Debug, Default, Clone, Copy)]
pub struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached for key types other than u64/u128; fold so it still works.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = (n as u64) ^ ((n >> 64) as u64);
    }
}

/// `BuildHasher` for maps keyed by prehashed values.
pub type BuildPrehashed = BuildHasherDefault<Prehashed>;
