//! Bounded cache of verified tokens, so a hot token is not re-verified on every request.
//!
//! Keyed by a 128-bit keyed hash of the token (SipHash-1-3 with 128-bit output and a
//! per-process random key): the token itself is never stored, and an attacker cannot search
//! offline for a colliding token. An entry never outlives the token's `exp`, nor
//! `MAX_TTL_SECS`, so a key removed from a JWKS stops being honoured soon after.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use http::{HeaderName, HeaderValue};
use siphasher::sip128::{Hasher128, SipHasher13};

use crate::filter::Claims;
use crate::filter::prehashed::BuildPrehashed;

const SHARDS: usize = 16;
/// Longest time a verified token is trusted without being verified again.
pub const MAX_TTL_SECS: u64 = 600;

/// A 128-bit keyed digest of a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub u128);

impl TokenHash {
    /// Digests a token with the per-process random key, in one pass over it (a JWT is
    /// hundreds of bytes, digested on every request that carries one).
    pub fn of(token: &[u8]) -> TokenHash {
        static KEY: OnceLock<(u64, u64)> = OnceLock::new();
        // The standard library's hasher state is seeded from the OS's randomness.
        let &(k0, k1) = KEY.get_or_init(|| {
            let random = || std::hash::RandomState::new().build_hasher().finish();
            (random(), random())
        });
        let mut h = SipHasher13::new_with_keys(k0, k1);
        h.write(token);
        TokenHash(h.finish128().as_u128())
    }
}

/// What a verified token gives every request that presents it: its claims, the values of its
/// provider's `forward_claims` headers and its scopes, all taken once when the token is
/// verified (not looked up, printed, split and copied on every request).
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The token's claims.
    pub claims: Claims,
    /// Upstream request headers set from the claims, in the provider's order.
    pub forwarded: Arc<[(HeaderName, HeaderValue)]>,
    /// The scopes the token grants ([`super::claims::granted_scopes`]).
    pub scopes: Arc<[Box<str>]>,
}

#[derive(Debug)]
struct Entry {
    token: Accepted,
    /// Unix seconds after which the entry is dead.
    expires: u64,
}

/// Sharded, bounded map from token digest to verified claims.
#[derive(Debug)]
pub struct TokenCache {
    shards: Box<[Mutex<HashMap<u128, Entry, BuildPrehashed>>]>,
    per_shard: usize,
}

impl TokenCache {
    /// A cache holding about `capacity` tokens (`0` disables it).
    pub fn new(capacity: usize) -> TokenCache {
        let per_shard = capacity.div_ceil(SHARDS);
        let shards = (0..if capacity == 0 { 0 } else { SHARDS })
            .map(|_| Mutex::new(HashMap::default()))
            .collect();
        TokenCache { shards, per_shard }
    }

    fn shard(&self, hash: TokenHash) -> Option<&Mutex<HashMap<u128, Entry, BuildPrehashed>>> {
        if self.shards.is_empty() {
            return None;
        }
        Some(&self.shards[(hash.0 as usize) % SHARDS])
    }

    /// A token verified earlier, if its entry is still alive at `now`.
    pub fn get(&self, hash: TokenHash, now: u64) -> Option<Accepted> {
        let mut map = self.shard(hash)?.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&hash.0) {
            Some(e) if now < e.expires => Some(e.token.clone()),
            Some(_) => {
                map.remove(&hash.0);
                None
            }
            None => None,
        }
    }

    /// Remembers a verified token until `min(exp, now + MAX_TTL_SECS)`.
    pub fn insert(&self, hash: TokenHash, token: Accepted, exp: u64, now: u64) {
        let expires = exp.min(now.saturating_add(MAX_TTL_SECS));
        if expires <= now {
            return;
        }
        let Some(shard) = self.shard(hash) else {
            return;
        };
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.per_shard && !map.contains_key(&hash.0) {
            map.retain(|_, e| e.expires > now);
            if map.len() >= self.per_shard {
                // Still full of live tokens: drop an arbitrary one (hash order is random).
                if let Some(&victim) = map.keys().next() {
                    map.remove(&victim);
                }
            }
        }
        map.insert(hash.0, Entry { token, expires });
    }

    /// Number of cached tokens.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(sub: &str) -> Accepted {
        let mut m = serde_json::Map::new();
        m.insert("sub".into(), sub.into());
        Accepted {
            claims: Arc::new(m),
            forwarded: Arc::new([]),
            scopes: Arc::new([]),
        }
    }

    #[test]
    fn never_serves_a_token_past_its_exp() {
        let cache = TokenCache::new(100);
        let h = TokenHash::of(b"a.b.c");
        cache.insert(h, claims("u1"), 1_000, 900);
        assert_eq!(cache.get(h, 950).unwrap().claims["sub"], "u1");
        assert_eq!(cache.get(h, 999).unwrap().claims["sub"], "u1");
        assert!(cache.get(h, 1_000).is_none(), "dead at exp");
        assert!(cache.is_empty(), "dead entries are dropped on lookup");
        cache.insert(h, claims("u1"), 1_000, 1_000);
        assert!(
            cache.get(h, 999).is_none(),
            "an expired token is never stored"
        );
    }

    #[test]
    fn entries_are_capped_in_time_and_count() {
        let cache = TokenCache::new(32);
        let h = TokenHash::of(b"long.lived.token");
        cache.insert(h, claims("u"), u64::MAX, 0);
        assert!(cache.get(h, MAX_TTL_SECS - 1).is_some());
        assert!(cache.get(h, MAX_TTL_SECS).is_none());
        for i in 0..10_000 {
            cache.insert(
                TokenHash::of(format!("t{i}").as_bytes()),
                claims("x"),
                10_000,
                0,
            );
        }
        assert!(cache.len() <= 32, "{}", cache.len());
        let off = TokenCache::new(0);
        off.insert(h, claims("u"), 100, 0);
        assert!(off.get(h, 1).is_none());
    }

    #[test]
    fn digests_differ_and_are_stable() {
        assert_eq!(TokenHash::of(b"x.y.z"), TokenHash::of(b"x.y.z"));
        assert_ne!(TokenHash::of(b"x.y.z"), TokenHash::of(b"x.y.zz"));
    }
}
