//! `Idempotency-Key` on saga endpoints (IETF httpapi idempotency-key draft): the first request
//! with a key runs the saga; a repeat with the same body gets the first answer replayed, one
//! that arrives while the first still runs gets 409, one with another body 422. Keys are scoped
//! by endpoint and caller (the `sub` claim), expire after `idempotency_ttl`, and at most
//! `idempotency_max_keys` are remembered (expired answers go first, then the first to expire).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::HeaderMap;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::record::KeyResult;
use crate::error::GatewayError;

/// Longest key accepted.
const MAX_KEY: usize = 255;

enum Entry {
    Running { fp: String },
    Done(Arc<KeyResult>),
}

/// What to do with a request that carries a key.
pub enum Begin {
    /// Run the saga (the key is now `running`).
    Run,
    /// Answer with the first request's result.
    Replay(Arc<KeyResult>),
    /// The first request is still running.
    InFlight,
    /// The key was used with another body.
    Mismatch,
}

/// The remembered keys of one saga log.
pub struct Keys {
    map: Mutex<HashMap<String, Entry>>,
    /// Most keys remembered.
    pub max: usize,
    /// How long an answer is replayed.
    pub ttl: Duration,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys").field("max", &self.max).finish()
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The client's key: a structured-field string (`"abc"`) or, leniently, a bare token.
pub fn key_of(headers: &HeaderMap) -> Result<Option<String>, GatewayError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        GatewayError::BadRequest(
            "Idempotency-Key must be a quoted string of 1 to 255 visible characters.",
        )
    };
    let text = v.to_str().map_err(|_| bad())?.trim();
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    let ok = !inner.is_empty()
        && inner.len() <= MAX_KEY
        && inner.bytes().all(|b| b.is_ascii_graphic() && b != b'"');
    if !ok {
        return Err(bad());
    }
    Ok(Some(inner.to_owned()))
}

/// The key's scope: endpoint, caller and the client's key.
pub fn scope(endpoint: &str, sub: Option<&str>, key: &str) -> String {
    format!("{endpoint}\u{1f}{}\u{1f}{key}", sub.unwrap_or(""))
}

/// Fingerprint of the parsed request body (serde_json writes object keys sorted, so the
/// same JSON with its keys in another order is the same body).
pub fn fingerprint(body: Option<&Value>) -> String {
    let bytes = body.map(|b| b.to_string()).unwrap_or_default();
    let d = Sha256::digest(bytes.as_bytes());
    d[..16].iter().map(|b| format!("{b:02x}")).collect()
}

impl Keys {
    /// No key yet.
    pub fn new(max: usize, ttl: Duration) -> Keys {
        Keys {
            map: Mutex::default(),
            max,
            ttl,
        }
    }

    /// Looks `key` up and, when it is new, marks it running.
    pub fn begin(&self, key: &str, fp: &str) -> Begin {
        let now = now_ms();
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some(Entry::Running { fp: f }) if f == fp => return Begin::InFlight,
            Some(Entry::Running { .. }) => return Begin::Mismatch,
            Some(Entry::Done(r)) if r.exp > now && r.fp == fp => return Begin::Replay(r.clone()),
            Some(Entry::Done(r)) if r.exp > now => return Begin::Mismatch,
            _ => {}
        }
        if map.len() >= self.max && !map.contains_key(key) {
            make_room(&mut map, self.max, now);
        }
        if map.len() < self.max || map.contains_key(key) {
            map.insert(key.to_owned(), Entry::Running { fp: fp.to_owned() });
        } else {
            tracing::warn!(
                "idempotency_max_keys reached with every key running: this key is not remembered"
            );
        }
        Begin::Run
    }

    /// The saga of `key` finished with `result` (`None`: forget the key).
    pub fn finish(&self, key: &str, result: Option<KeyResult>) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Some(r) => {
                map.insert(key.to_owned(), Entry::Done(Arc::new(r)));
            }
            None => {
                map.remove(key);
            }
        }
    }

    /// A kept answer read back from the log at start.
    pub fn restore(&self, r: KeyResult) {
        if r.exp <= now_ms() {
            return;
        }
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max {
            make_room(&mut map, self.max, now_ms());
        }
        map.insert(r.k.clone(), Entry::Done(Arc::new(r)));
    }

    /// Keys remembered now.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Drops expired answers, then the tenth of the finished ones that expire first.
fn make_room(map: &mut HashMap<String, Entry>, max: usize, now: u64) {
    map.retain(|_, e| !matches!(e, Entry::Done(r) if r.exp <= now));
    if map.len() < max {
        return;
    }
    let mut done: Vec<(u64, String)> = map
        .iter()
        .filter_map(|(k, e)| match e {
            Entry::Done(r) => Some((r.exp, k.clone())),
            Entry::Running { .. } => None,
        })
        .collect();
    done.sort_unstable();
    let n = (max / 10).max(1);
    for (_, k) in done.into_iter().take(n) {
        map.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(k: &str, fp: &str, exp: u64) -> KeyResult {
        KeyResult {
            k: k.into(),
            fp: fp.into(),
            status: 200,
            ct: "application/json".into(),
            body: "{}".into(),
            exp,
        }
    }

    #[test]
    fn a_key_runs_once_then_replays_and_refuses_another_body() {
        let keys = Keys::new(10, Duration::from_secs(60));
        assert!(matches!(keys.begin("k", "a"), Begin::Run));
        assert!(matches!(keys.begin("k", "a"), Begin::InFlight));
        assert!(matches!(keys.begin("k", "b"), Begin::Mismatch));
        keys.finish("k", Some(result("k", "a", now_ms() + 60_000)));
        assert!(matches!(keys.begin("k", "a"), Begin::Replay(_)));
        assert!(matches!(keys.begin("k", "b"), Begin::Mismatch));
        // Expired: runs again.
        keys.finish("k", Some(result("k", "a", now_ms() - 1)));
        assert!(matches!(keys.begin("k", "a"), Begin::Run));
    }

    #[test]
    fn memory_is_bounded_by_max_keys() {
        let keys = Keys::new(20, Duration::from_secs(60));
        for n in 0..100 {
            let k = format!("k{n}");
            assert!(matches!(keys.begin(&k, "a"), Begin::Run));
            keys.finish(&k, Some(result(&k, "a", now_ms() + 60_000 + n)));
        }
        assert!(keys.len() <= 20, "{}", keys.len());
        // The newest answer is still replayed.
        assert!(matches!(keys.begin("k99", "a"), Begin::Replay(_)));
    }

    #[test]
    fn keys_are_quoted_strings_or_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(key_of(&h).unwrap(), None);
        h.insert("idempotency-key", "\"8e03978e\"".parse().unwrap());
        assert_eq!(key_of(&h).unwrap().as_deref(), Some("8e03978e"));
        h.insert("idempotency-key", "abc".parse().unwrap());
        assert_eq!(key_of(&h).unwrap().as_deref(), Some("abc"));
        h.insert("idempotency-key", "\"\"".parse().unwrap());
        assert!(key_of(&h).is_err());
    }
}
