//! Per-part answer cache: `cache = { ttl = "5s", stale_if_error = "1m" }`.
//!
//! The key is the whole rendered backend request: method, path and query, body, and the
//! part's passed and templated headers. A part that renders `{claims.sub}` or passes
//! `Authorization` therefore never shares an entry between callers. A fresh entry (younger
//! than `ttl`) answers without calling the backend; when the backend fails, an entry younger
//! than `ttl + stale_if_error` is served instead. Time is passed in (`now`), so the logic is
//! tested with a fake clock. Entries are bounded per part; a reload starts empty.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::shape::Answer;

/// Most entries kept per part; when full, expired entries go first, then the oldest.
pub const MAX_ENTRIES: usize = 4096;

#[derive(Debug)]
struct Entry {
    value: Answer,
    stored: Instant,
}

/// The cache of one part.
#[derive(Debug)]
pub struct PartCache {
    ttl: Duration,
    stale_if_error: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl PartCache {
    /// An empty cache.
    pub fn new(ttl: Duration, stale_if_error: Duration) -> PartCache {
        PartCache {
            ttl,
            stale_if_error,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lookup(&self, key: &str, now: Instant, max_age: Duration) -> Option<Answer> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let e = entries.get(key)?;
        (now.saturating_duration_since(e.stored) < max_age).then(|| e.value.clone())
    }

    /// A fresh answer, if there is one.
    pub fn fresh(&self, key: &str, now: Instant) -> Option<Answer> {
        self.lookup(key, now, self.ttl)
    }

    /// The last good answer, if it is within `ttl + stale_if_error` (used when the call failed).
    pub fn stale(&self, key: &str, now: Instant) -> Option<Answer> {
        if self.stale_if_error.is_zero() {
            return None;
        }
        self.lookup(key, now, self.ttl + self.stale_if_error)
    }

    /// Stores a good answer.
    pub fn put(&self, key: String, value: Answer, now: Instant) {
        let keep_for = self.ttl + self.stale_if_error;
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.retain(|_, e| now.saturating_duration_since(e.stored) < keep_for);
            if entries.len() >= MAX_ENTRIES {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, e)| e.stored)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    entries.remove(&k);
                }
            }
        }
        entries.insert(key, Entry { value, stored: now });
    }

    /// Entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tree(v: serde_json::Value) -> Answer {
        Answer::Tree(v)
    }

    #[test]
    fn fresh_then_stale_then_gone_on_a_fake_clock() {
        let c = PartCache::new(Duration::from_secs(5), Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(c.fresh("k", t0), None);
        c.put("k".into(), tree(json!({"v": 1})), t0);
        assert_eq!(c.fresh("k", at(4)), Some(tree(json!({"v": 1}))));
        assert_eq!(c.fresh("k", at(5)), None, "ttl over");
        assert_eq!(c.stale("k", at(5)), Some(tree(json!({"v": 1}))));
        assert_eq!(c.stale("k", at(64)), Some(tree(json!({"v": 1}))));
        assert_eq!(c.stale("k", at(65)), None, "too old even for errors");
        assert_eq!(c.fresh("other", at(1)), None, "keys do not mix");
        c.put("k".into(), tree(json!({"v": 2})), at(70));
        assert_eq!(c.fresh("k", at(71)), Some(tree(json!({"v": 2}))));
    }

    #[test]
    fn no_stale_window_means_no_stale_answers() {
        let c = PartCache::new(Duration::from_secs(1), Duration::ZERO);
        let t0 = Instant::now();
        c.put("k".into(), tree(json!(1)), t0);
        assert_eq!(c.stale("k", t0), None);
    }

    #[test]
    fn bounded_size_evicts_expired_then_oldest() {
        let c = PartCache::new(Duration::from_secs(1), Duration::ZERO);
        let t0 = Instant::now();
        for i in 0..MAX_ENTRIES {
            c.put(
                format!("k{i}"),
                tree(json!(i)),
                t0 + Duration::from_micros(i as u64),
            );
        }
        assert_eq!(c.len(), MAX_ENTRIES);
        c.put(
            "new".into(),
            tree(json!(0)),
            t0 + Duration::from_millis(600),
        );
        assert_eq!(c.len(), MAX_ENTRIES, "the oldest went");
        assert_eq!(c.fresh("k0", t0 + Duration::from_millis(600)), None);
        c.put("late".into(), tree(json!(0)), t0 + Duration::from_secs(3));
        assert_eq!(c.len(), 1, "every expired entry went");
    }
}
