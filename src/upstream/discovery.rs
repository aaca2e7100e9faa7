//! Service discovery: endpoint sets that change at run time without a reload. A source writes
//! its instances into a shared set with a version; the upstream notices a new version on its
//! next request and rebuilds its endpoint list, keeping the state (health, ejection, ramp) of
//! endpoints that stay.

pub mod compile;
pub mod registry;

use std::sync::Arc;

use http::uri::{Authority, Scheme};

pub use registry::Registry;

/// Where an endpoint came from (shown in `/admin/upstreams`, a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Listed under `endpoints` in the config.
    Static,
    /// Registered through the admin listener.
    Registry,
}

impl Source {
    /// The word the admin API and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Static => "static",
            Source::Registry => "registry",
        }
    }
}

/// An upstream's `discovery = {...}`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoverySettings {
    /// `{ registry = true }`.
    Registry,
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
}

impl Live {
    /// Bumped on every change of the source's set.
    #[inline]
    pub fn version(&self) -> u64 {
        match self {
            Live::Registry(r) => r.version(),
        }
    }

    /// The registry, when that is the source.
    pub fn registry(&self) -> Option<&Arc<Registry>> {
        match self {
            Live::Registry(r) => Some(r),
        }
    }

    /// The endpoints the source holds now.
    pub fn wanted(&self) -> Vec<Wanted> {
        match self {
            Live::Registry(r) => r.wanted(),
        }
    }

    /// Starts background work (expiry sweeps); idempotent.
    pub fn start(&self) {
        match self {
            Live::Registry(r) => r.start(),
        }
    }
}
