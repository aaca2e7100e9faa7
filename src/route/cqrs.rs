//! CQRS routing: safe methods (GET, HEAD, OPTIONS) go to the route's `upstream` (the read side),
//! others to its `write_upstream`. With `read_your_writes`, a key (claim, header or cookie)
//! that just wrote successfully reads from the write side for a window, or, with a
//! `consistency_header`, until the read side reports at least the version the write returned.
//! The remembered keys live in a bounded in-memory map (per process); with `shared = true`
//! they are also written to the `[cluster]` Redis store, which reads consult when the local
//! map has nothing (a store that fails or is slow leaves the decision to the local map).

pub mod compile;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, Method, StatusCode};

use crate::filter::Claims;
use crate::filter::auth::claims::{ClaimPath, claim_text};
use crate::upstream::Upstream;

/// A route's CQRS settings.
#[derive(Debug)]
pub struct Cqrs {
    /// Where non-safe methods go.
    pub write: Arc<Upstream>,
    /// `read_your_writes`, if configured.
    pub ryw: Option<ReadYourWrites>,
}

/// Whose writes are remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    /// A verified claim.
    Claim(ClaimPath),
    /// A request header.
    Header(HeaderName),
    /// A cookie.
    Cookie(Box<str>),
}

/// `read_your_writes`, compiled, with its map of recent writers.
#[derive(Debug)]
pub struct ReadYourWrites {
    /// The key.
    pub key: Key,
    /// How long a write keeps the key's reads on the write side.
    pub window: Duration,
    /// Version header (`consistency_header`), if any.
    pub header: Option<HeaderName>,
    /// Most keys remembered.
    pub max_keys: usize,
    recent: Mutex<HashMap<Box<str>, Recent>>,
    /// Highest version the read side has reported.
    read_version: AtomicU64,
    /// `shared = true`: the writers are shared through `[cluster]`.
    pub shared: Option<Shared>,
}

/// The `[cluster]` store and this route's key prefix (`PREFIXryw:ROUTE:`).
#[derive(Debug)]
pub struct Shared {
    /// The store.
    pub cluster: Arc<crate::cluster::Cluster>,
    /// Prefix of this route's keys.
    pub prefix: String,
}

#[derive(Debug, Clone, Copy)]
struct Recent {
    until: Instant,
    /// Version the write side returned, if it sent one.
    version: Option<u64>,
}

/// Where one request went and what to remember of its answer.
#[derive(Debug)]
pub struct Decision {
    /// Sent to the write side.
    pub write: bool,
    /// Whether the method is a write (non-safe).
    writes: bool,
    /// The request's key, when `read_your_writes` is configured and the request has one.
    key: Option<Box<str>>,
}

/// Whether a method only reads.
pub fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl Cqrs {
    /// Decides the side of a request (asking the shared store when the local map does not
    /// send a keyed read to the write side).
    pub async fn decide(
        &self,
        method: &Method,
        headers: &HeaderMap,
        claims: Option<&Claims>,
    ) -> Decision {
        let writes = !is_safe(method);
        let key = self.ryw.as_ref().and_then(|r| r.key_of(headers, claims));
        let mut write = writes
            || match (&self.ryw, &key) {
                (Some(r), Some(k)) => r.reads_from_write_side(k, Instant::now()),
                _ => false,
            };
        if let (false, Some(r), Some(k)) = (write, &self.ryw, &key) {
            if let Some(s) = &r.shared {
                write = r.shared_says_write(s, k).await;
            }
        }
        Decision { write, writes, key }
    }

    /// Learns from an answer: a successful write starts its key's window (with the version
    /// the write side returned; written to the shared store too, before the answer goes
    /// out); a read-side answer reports the read side's version.
    pub async fn observe(&self, d: &Decision, status: StatusCode, headers: &HeaderMap) {
        let Some(r) = &self.ryw else { return };
        let version = r
            .header
            .as_ref()
            .and_then(|h| headers.get(h)?.to_str().ok()?.trim().parse::<u64>().ok());
        if !d.write {
            if let Some(v) = version {
                r.read_version.fetch_max(v, Ordering::Relaxed);
            }
            return;
        }
        if d.writes && status.is_success() {
            if let Some(k) = &d.key {
                r.remember(k, version, Instant::now());
                if let Some(s) = &r.shared {
                    r.share(s, k, version).await;
                }
            }
        }
    }
}

impl ReadYourWrites {
    /// Builds the settings with an empty map.
    pub fn new(key: Key, window: Duration, header: Option<HeaderName>, max_keys: usize) -> Self {
        ReadYourWrites {
            key,
            window,
            header,
            max_keys: max_keys.max(1),
            recent: Mutex::new(HashMap::new()),
            read_version: AtomicU64::new(0),
            shared: None,
        }
    }

    /// Whether another instance recorded a write by `key` whose window is still open (and,
    /// with a version, that the read side has not reached yet). A failing store says no.
    async fn shared_says_write(&self, s: &Shared, key: &str) -> bool {
        let name = format!("{}{key}", s.prefix);
        let got: Option<Option<u64>> = s
            .cluster
            .call(|mut conn| async move {
                redis::cmd("GET")
                    .arg(name)
                    .query_async::<Option<u64>>(&mut conn)
                    .await
            })
            .await;
        match got.flatten() {
            None => false,
            Some(0) => true,
            Some(v) => self.read_version.load(Ordering::Relaxed) < v,
        }
    }

    /// Records a write by `key` in the shared store for the window (`0`: no version).
    async fn share(&self, s: &Shared, key: &str, version: Option<u64>) {
        let name = format!("{}{key}", s.prefix);
        let ms = self.window.as_millis() as u64;
        let _: Option<()> = s
            .cluster
            .call(|mut conn| async move {
                redis::cmd("SET")
                    .arg(name)
                    .arg(version.unwrap_or(0))
                    .arg("PX")
                    .arg(ms.max(1))
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
    }

    /// The request's key, if it has one.
    fn key_of(&self, headers: &HeaderMap, claims: Option<&Claims>) -> Option<Box<str>> {
        match &self.key {
            Key::Claim(path) => claims
                .and_then(|c| path.lookup(c))
                .and_then(claim_text)
                .map(|t| t.into()),
            Key::Header(name) => headers.get(name)?.to_str().ok().map(Box::from),
            Key::Cookie(name) => crate::filter::auth::token::cookie(headers, name).map(Box::from),
        }
    }

    /// Whether a read by `key` must go to the write side now.
    fn reads_from_write_side(&self, key: &str, now: Instant) -> bool {
        let map = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let Some(r) = map.get(key) else { return false };
        if now >= r.until {
            return false;
        }
        match r.version {
            Some(v) => self.read_version.load(Ordering::Relaxed) < v,
            None => true,
        }
    }

    /// Starts (or extends) a key's window; a full map first drops expired keys, then the one
    /// whose window ends first.
    fn remember(&self, key: &str, version: Option<u64>, now: Instant) {
        let mut map = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.max_keys && !map.contains_key(key) {
            map.retain(|_, r| r.until > now);
            if map.len() >= self.max_keys {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, r)| r.until)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        let version = version.max(map.get(key).and_then(|r| r.version));
        map.insert(
            key.into(),
            Recent {
                until: now + self.window,
                version,
            },
        );
    }

    /// Keys remembered now (expired ones included until the map is next trimmed).
    pub fn len(&self) -> usize {
        self.recent.lock().map_or(0, |m| m.len())
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ryw(header: Option<&str>, max_keys: usize) -> ReadYourWrites {
        ReadYourWrites::new(
            Key::Header(HeaderName::from_static("x-user")),
            Duration::from_secs(5),
            header.map(|h| HeaderName::from_bytes(h.as_bytes()).unwrap()),
            max_keys,
        )
    }

    #[test]
    fn window_keeps_the_writer_on_the_write_side() {
        let r = ryw(None, 10);
        let t0 = Instant::now();
        assert!(!r.reads_from_write_side("a", t0));
        r.remember("a", None, t0);
        assert!(r.reads_from_write_side("a", t0 + Duration::from_secs(4)));
        assert!(!r.reads_from_write_side("b", t0));
        assert!(!r.reads_from_write_side("a", t0 + Duration::from_secs(6)));
    }

    #[test]
    fn version_mode_waits_for_the_read_side() {
        let r = ryw(Some("x-version"), 10);
        let t0 = Instant::now();
        r.remember("a", Some(42), t0);
        assert!(r.reads_from_write_side("a", t0));
        r.read_version.fetch_max(41, Ordering::Relaxed);
        assert!(r.reads_from_write_side("a", t0));
        r.read_version.fetch_max(42, Ordering::Relaxed);
        assert!(!r.reads_from_write_side("a", t0));
    }

    #[test]
    fn map_is_bounded() {
        let r = ryw(None, 3);
        let t0 = Instant::now();
        for (i, k) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            r.remember(k, None, t0 + Duration::from_millis(i as u64));
        }
        assert_eq!(r.len(), 3);
        assert!(r.reads_from_write_side("e", t0));
        assert!(!r.reads_from_write_side("a", t0));
    }
}
