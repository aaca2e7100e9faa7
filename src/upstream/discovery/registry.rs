//! The built-in registry of one upstream: instances register and renew with a TTL through the
//! admin listener (`PUT /registry/NAME/ID`), leave with `DELETE`, and drop out when their TTL
//! passes without a heartbeat; kept in `[discovery] registry_file` when set. Lives as long as a runtime's upstream holds it: a reload that
//! keeps the upstream's `discovery = { registry = true }` hands it on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::uri::{Authority, Scheme};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::feed::series;
use super::{Source, Wanted, persist};
use crate::metrics::Metrics;

/// How often expired instances are looked for.
const SWEEP: Duration = Duration::from_millis(100);

/// One registered instance.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: Authority,
    /// Relative share of traffic (1..=1000).
    pub weight: u32,
    /// Free-form data the instance sent.
    pub metadata: serde_json::Value,
    /// When it drops out without a heartbeat.
    pub expires_at: SystemTime,
}

/// The registry of one upstream.
#[derive(Debug)]
pub struct Registry {
    upstream: Arc<str>,
    version: AtomicU64,
    instances: Mutex<BTreeMap<String, Instance>>,
    sweeping: AtomicBool,
    updates: [Counter; 2],
    count: Gauge,
    file: Mutex<Option<PathBuf>>,
    /// Registrations changed since the registry file was written.
    dirty: AtomicBool,
}

impl Registry {
    /// A registry holding the unexpired registrations kept in `file`; its series go to
    /// `metrics` when given.
    pub fn new(upstream: Arc<str>, metrics: Option<&Metrics>, file: Option<PathBuf>) -> Registry {
        let (mut c, count) = series(metrics, &upstream, Source::Registry, &["ok", "expired"]);
        let expired = c.pop().unwrap_or_default();
        let ok = c.pop().unwrap_or_default();
        let kept: BTreeMap<String, Instance> = file
            .as_deref()
            .map(|p| persist::load(p, &upstream, SystemTime::now()))
            .unwrap_or_default()
            .into_iter()
            .collect();
        if !kept.is_empty() {
            tracing::info!(upstream = %upstream, instances = kept.len(), "registry: registrations reloaded from the registry file");
        }
        count.set(kept.len() as i64);
        Registry {
            upstream,
            version: AtomicU64::new(1),
            instances: Mutex::new(kept),
            sweeping: AtomicBool::new(false),
            updates: [ok, expired],
            count,
            file: Mutex::new(file),
            dirty: AtomicBool::new(false),
        }
    }

    /// Where registrations are kept from now on (`[discovery] registry_file` after a reload).
    pub fn set_file(&self, file: Option<PathBuf>) {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if *f != file {
            *f = file;
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Writes the registrations to the registry file when they changed since the last write.
    fn flush(&self) {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return;
        }
        let Some(path) = self.file.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return;
        };
        if let Err(e) = persist::save(&path, &self.upstream, &self.list()) {
            tracing::warn!(upstream = %self.upstream, file = %path.display(), error = %e, "registry: could not write the registry file");
            self.dirty.store(true, Ordering::Release);
        }
    }

    /// Bumped on every change of the set.
    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn changed(&self, n: usize, result: usize) {
        self.count.set(n as i64);
        self.updates[result].inc();
        self.dirty.store(true, Ordering::Release);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Instance>> {
        self.instances.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers or renews `id`; true when it is new. A renewal that changes nothing but the
    /// expiry does not rebuild the endpoint set.
    pub fn put(&self, id: &str, inst: Instance) -> bool {
        let mut map = self.lock();
        let same_set = map.get(id).is_some_and(|old| {
            old.scheme == inst.scheme
                && old.authority == inst.authority
                && old.weight == inst.weight
        });
        let new = map.insert(id.to_owned(), inst).is_none();
        self.dirty.store(true, Ordering::Release);
        if !same_set {
            let n = map.len();
            drop(map);
            tracing::info!(upstream = %self.upstream, instance = id, "registry: instance registered");
            self.changed(n, 0);
        }
        new
    }

    /// Deregisters `id`; false when it was not registered.
    pub fn remove(&self, id: &str) -> bool {
        let mut map = self.lock();
        let gone = map.remove(id).is_some();
        if gone {
            let n = map.len();
            drop(map);
            tracing::info!(upstream = %self.upstream, instance = id, "registry: instance deregistered");
            self.changed(n, 0);
        }
        gone
    }

    /// The instances by id.
    pub fn list(&self) -> Vec<(String, Instance)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Drops instances whose TTL passed by `now`; returns how many.
    pub fn sweep(&self, now: SystemTime) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|id, i| {
            let keep = i.expires_at > now;
            if !keep {
                tracing::warn!(upstream = %self.upstream, instance = %id, "registry: instance expired (no heartbeat within its ttl)");
            }
            keep
        });
        let n = map.len();
        drop(map);
        if n != before {
            self.changed(n, 1);
        }
        before - n
    }

    /// The endpoints the registry holds now (an address registered twice counts once).
    pub fn wanted(&self) -> Vec<Wanted> {
        let mut out: Vec<Wanted> = Vec::new();
        for i in self.lock().values() {
            if out
                .iter()
                .any(|w| w.authority == i.authority && w.scheme == i.scheme)
            {
                continue;
            }
            out.push(Wanted {
                scheme: i.scheme.clone(),
                authority: i.authority.clone(),
                weight: i.weight,
                source: Source::Registry,
            });
        }
        out
    }

    /// Starts the expiry sweep on the current tokio runtime (once; it ends when the registry
    /// is dropped).
    pub fn start(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        rt.spawn(async move {
            loop {
                tokio::time::sleep(SWEEP).await;
                let Some(r) = weak.upgrade() else { return };
                r.sweep(SystemTime::now());
                r.flush();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(addr: &str, ttl_ms: u64) -> Instance {
        Instance {
            scheme: Scheme::HTTP,
            authority: addr.parse().unwrap(),
            weight: 1,
            metadata: serde_json::Value::Null,
            expires_at: SystemTime::now() + Duration::from_millis(ttl_ms),
        }
    }

    #[test]
    fn put_renew_remove_and_expire() {
        let r = Registry::new("u".into(), None, None);
        let v0 = r.version();
        assert!(r.put("a", inst("127.0.0.1:1", 10_000)));
        assert!(r.version() > v0);
        let v1 = r.version();
        assert!(
            !r.put("a", inst("127.0.0.1:1", 20_000)),
            "renewal is not new"
        );
        assert_eq!(r.version(), v1, "a heartbeat does not change the set");
        assert!(r.put("b", inst("127.0.0.1:2", 10)));
        assert_eq!(r.wanted().len(), 2);
        assert_eq!(r.sweep(SystemTime::now() + Duration::from_millis(50)), 1);
        assert_eq!(r.wanted().len(), 1);
        assert!(r.remove("a"));
        assert!(!r.remove("a"));
        assert!(r.wanted().is_empty());
    }
}
