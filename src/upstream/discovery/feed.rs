//! A set a background task keeps for one upstream (DNS lookups, an etcd watch): the task
//! replaces the set when its answer changes and reports failures, which keep the last good set.
//! The task holds the feed weakly, so it ends when no runtime holds the upstream any more.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::{DiscoverySettings, Source, Wanted};
use crate::metrics::Metrics;

/// The `portico_discovery_updates_total{upstream,source,result}` counters for `results`, and
/// the `portico_discovery_endpoints{upstream}` gauge (detached without `metrics`).
pub fn series(
    metrics: Option<&Metrics>,
    upstream: &str,
    source: Source,
    results: &[&str],
) -> (Vec<Counter>, Gauge) {
    let Some(m) = metrics else {
        return (vec![Counter::default(); results.len()], Gauge::default());
    };
    let f: Family<[(&'static str, String); 3], Counter> = m.family(
        "portico_discovery_updates",
        "Updates of an upstream's endpoint set by a discovery source, by result",
        Family::default,
    );
    let counters = results
        .iter()
        .map(|r| {
            f.get_or_create_owned(&[
                ("upstream", upstream.to_owned()),
                ("source", source.as_str().to_owned()),
                ("result", (*r).to_owned()),
            ])
        })
        .collect();
    let g: Family<[(&'static str, String); 1], Gauge> = m.family(
        "portico_discovery_endpoints",
        "Endpoints a discovery source holds for an upstream now",
        Family::default,
    );
    (
        counters,
        g.get_or_create_owned(&[("upstream", upstream.to_owned())]),
    )
}

/// The set of one upstream's DNS or etcd source.
#[derive(Debug)]
pub struct Feed {
    /// The upstream it feeds.
    pub upstream: Arc<str>,
    /// What it reads (compared on reload: unchanged settings keep the feed).
    pub settings: DiscoverySettings,
    /// `dns`, `srv` or `etcd`.
    pub source: Source,
    version: AtomicU64,
    set: Mutex<Vec<Wanted>>,
    started: AtomicBool,
    ok: Counter,
    error: Counter,
    count: Gauge,
}

impl Feed {
    /// An empty feed; its series go to `metrics` when given.
    pub fn new(upstream: Arc<str>, settings: DiscoverySettings, metrics: Option<&Metrics>) -> Feed {
        let source = match &settings {
            DiscoverySettings::Dns(d) if d.srv => Source::Srv,
            DiscoverySettings::Dns(_) => Source::Dns,
            DiscoverySettings::Etcd(_) => Source::Etcd,
            DiscoverySettings::Registry { .. } => Source::Registry,
        };
        let (mut c, count) = series(metrics, &upstream, source, &["ok", "error"]);
        let error = c.pop().unwrap_or_default();
        let ok = c.pop().unwrap_or_default();
        Feed {
            upstream,
            settings,
            source,
            version: AtomicU64::new(1),
            set: Mutex::new(Vec::new()),
            started: AtomicBool::new(false),
            ok,
            error,
            count,
        }
    }

    /// Bumped on every change of the set.
    #[inline]
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Wanted>> {
        self.set.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The endpoints the feed holds now.
    pub fn wanted(&self) -> Vec<Wanted> {
        self.lock().clone()
    }

    /// Replaces the set (order does not matter; an address listed twice counts once); true
    /// when it changed.
    pub fn replace(&self, mut set: Vec<Wanted>) -> bool {
        set.sort_by(|a, b| {
            (a.scheme.as_str(), a.authority.as_str())
                .cmp(&(b.scheme.as_str(), b.authority.as_str()))
        });
        set.dedup_by(|a, b| a.scheme == b.scheme && a.authority == b.authority);
        let mut cur = self.lock();
        if *cur == set {
            return false;
        }
        let names = |s: &[Wanted]| {
            s.iter()
                .map(|w| w.authority.as_str().to_owned())
                .collect::<Vec<_>>()
                .join(" ")
        };
        tracing::info!(upstream = %self.upstream, source = self.source.as_str(), before = %names(&cur), after = %names(&set), "discovery: endpoint set changed");
        self.count.set(set.len() as i64);
        *cur = set;
        drop(cur);
        self.ok.inc();
        self.version.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// A lookup or watch failed: the last good set stays.
    pub fn failed(&self, why: &str) {
        self.error.inc();
        tracing::warn!(upstream = %self.upstream, source = self.source.as_str(), error = why, "discovery: update failed; keeping the last good endpoint set");
    }

    /// Starts the background task on the current tokio runtime (once; it ends when the feed
    /// is dropped).
    pub fn start(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(self);
        match &self.settings {
            DiscoverySettings::Dns(s) => {
                rt.spawn(super::dns::run(weak, s.clone()));
            }
            DiscoverySettings::Etcd(s) => {
                rt.spawn(super::etcd::run(weak, s.clone()));
            }
            DiscoverySettings::Registry { .. } => {}
        }
    }
}
