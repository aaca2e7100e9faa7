//! Service discovery: endpoint sets that change at run time without a reload. A source writes
//! its instances into a shared set with a version; the upstream notices a new version on its
//! next request and rebuilds its endpoint list, keeping the state (health, ejection, ramp) of
//! endpoints that stay. Sources: the built-in registry, DNS (A/AAAA or SRV) and etcd.

pub mod compile;
pub mod dns;
pub mod etcd;
mod etcd_wire;
pub mod feed;
mod persist;
pub mod record;
pub mod registry;

use std::path::PathBuf;
use std::sync::Arc;

use http::uri::{Authority, Scheme};

pub use feed::Feed;
pub use registry::Registry;

use crate::metrics::Metrics;

/// Where an endpoint came from (shown in `/admin/upstreams`, a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Listed under `endpoints` in the config.
    Static,
    /// Registered through the admin listener.
    Registry,
    /// An A/AAAA lookup.
    Dns,
    /// An SRV lookup.
    Srv,
    /// Keys under an etcd prefix.
    Etcd,
}

impl Source {
    /// The word the admin API and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Static => "static",
            Source::Registry => "registry",
            Source::Dns => "dns",
            Source::Srv => "srv",
            Source::Etcd => "etcd",
        }
    }
}

/// An upstream's `discovery = {...}`, compiled (with the `[discovery]` settings it reads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoverySettings {
    /// `{ registry = true }`, kept in `[discovery] registry_file` when set.
    Registry {
        /// Where registrations are kept across restarts.
        file: Option<PathBuf>,
    },
    /// `{ dns = "host:port" }` or `{ srv = "_http._tcp.name" }`.
    Dns(dns::DnsSettings),
    /// `{ etcd = "/prefix/" }`.
    Etcd(etcd::EtcdSettings),
}

/// One endpoint a source wants in the set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: Authority,
    /// Relative share of traffic.
    pub weight: u32,
    /// Who asked for it.
    pub source: Source,
}

/// The live source of one upstream (kept across reloads while the upstream keeps its
/// `discovery`).
#[derive(Debug, Clone)]
pub enum Live {
    /// The built-in registry.
    Registry(Arc<Registry>),
    /// A set a background task keeps (DNS, etcd).
    Feed(Arc<Feed>),
}

impl Live {
    /// The source for `settings`; from `previous` it keeps the registry (its registrations),
    /// or the feed when its settings are unchanged (its last set, no gap while re-resolving).
    pub fn build(
        settings: &DiscoverySettings,
        previous: Option<&Live>,
        name: &Arc<str>,
        metrics: Option<&Metrics>,
    ) -> Live {
        match (settings, previous) {
            (DiscoverySettings::Registry { file }, Some(Live::Registry(r))) => {
                r.set_file(file.clone());
                Live::Registry(r.clone())
            }
            (DiscoverySettings::Registry { file }, _) => {
                Live::Registry(Arc::new(Registry::new(name.clone(), metrics, file.clone())))
            }
            (_, Some(Live::Feed(f))) if f.settings == *settings => Live::Feed(f.clone()),
            _ => Live::Feed(Arc::new(Feed::new(name.clone(), settings.clone(), metrics))),
        }
    }

    /// Bumped on every change of the source's set.
    #[inline]
    pub fn version(&self) -> u64 {
        match self {
            Live::Registry(r) => r.version(),
            Live::Feed(f) => f.version(),
        }
    }

    /// The word `/admin/upstreams` shows.
    pub fn kind(&self) -> &'static str {
        match self {
            Live::Registry(_) => "registry",
            Live::Feed(f) => f.source.as_str(),
        }
    }

    /// The endpoints the source holds now.
    pub fn wanted(&self) -> Vec<Wanted> {
        match self {
            Live::Registry(r) => r.wanted(),
            Live::Feed(f) => f.wanted(),
        }
    }

    /// Starts background work (expiry sweeps, lookups, watches); idempotent.
    pub fn start(&self) {
        match self {
            Live::Registry(r) => r.start(),
            Live::Feed(f) => f.start(),
        }
    }
}
