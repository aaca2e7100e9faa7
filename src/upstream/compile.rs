//! `[upstreams.NAME]` -> `Upstream`: endpoints, TLS, timeouts and pool sizes (balancing and
//! health keys: `compile_policy`). An upstream whose settings did not change keeps its
//! `Upstream` (pools, health) across a reload; a changed one keeps the state of the endpoints
//! it still lists.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::{Upstream, UpstreamSettings};
use crate::config::Diagnostics;
use crate::config::file::UpstreamFile;
use crate::metrics::Metrics;

/// Upstreams by name, as the runtime holds them.
pub type Upstreams = BTreeMap<Arc<str>, Arc<Upstream>>;

/// Compiles every upstream; `previous` lends unchanged upstreams (with their connection pools and
/// endpoint health) to the new runtime, and the endpoint state of changed ones. An upstream with
/// errors is left out (and reported). Endpoint series are registered in `metrics`.
pub fn compile(
    d: &mut Diagnostics,
    files: &BTreeMap<Spanned<String>, UpstreamFile>,
    previous: Option<&Upstreams>,
    metrics: &Metrics,
    discovery: &super::discovery::compile::Globals,
) -> Upstreams {
    let mut out = BTreeMap::new();
    for (name, u) in files {
        let key = format!("upstreams.{}", name.get_ref());
        let before = d.errors.len();
        let settings = settings(d, u, &key, discovery);
        if d.errors.len() > before {
            continue;
        }
        let name: Arc<str> = Arc::from(name.get_ref().as_str());
        // Same settings: the running upstream goes on, so pooled connections and the health it
        // learned survive the reload.
        let running = previous.and_then(|p| p.get(&name));
        let kept = running.filter(|p| p.settings == settings).cloned();
        let upstream = kept.unwrap_or_else(|| {
            let prev = running.map(|p| &**p);
            Arc::new(Upstream::build(name.clone(), settings, prev, Some(metrics)))
        });
        out.insert(name, upstream);
    }
    out
}

fn settings(
    d: &mut Diagnostics,
    u: &UpstreamFile,
    key: &str,
    discovery: &super::discovery::compile::Globals,
) -> UpstreamSettings {
    let policy = super::compile_policy::compile(d, u, key);
    let mut endpoints = policy.endpoints;
    let tls = super::tls::compile(d, u, key, &mut endpoints);
    let k = |name: &str| format!("{key}.{name}");
    let timeout = d.duration_or(&u.timeout, &k("timeout"), Duration::from_secs(30));
    let resilience = resilience(d, u, key, timeout);
    UpstreamSettings {
        resilience,
        tls,
        endpoints,
        balance: policy.balance,
        health: policy.health,
        outlier: policy.outlier,
        discovery: u
            .discovery
            .as_ref()
            .and_then(|f| super::discovery::compile::compile(d, f, key, discovery)),
        timeout,
        connect_timeout: d.duration_or(
            &u.connect_timeout,
            &k("connect_timeout"),
            Duration::from_secs(2),
        ),
        protocol: u
            .protocol
            .as_ref()
            .and_then(|v| d.parse(v, k("protocol"), super::transport::Protocol::parse))
            .unwrap_or_default(),
        max_concurrent_streams: d.count_or(
            &u.max_concurrent_streams,
            &k("max_concurrent_streams"),
            (1, 10_000),
            100,
        ) as u32,
        fail_timeout: d.duration_or(&u.fail_timeout, &k("fail_timeout"), Duration::from_secs(10)),
        max_idle_per_endpoint: d.count_or(
            &u.max_idle_per_endpoint,
            &k("max_idle_per_endpoint"),
            (0, 100_000),
            256,
        ),
        pool_idle_timeout: d.duration_or(
            &u.pool_idle_timeout,
            &k("pool_idle_timeout"),
            Duration::from_secs(90),
        ),
    }
}

/// `[retry]` and `[circuit]` of an upstream.
fn resilience(
    d: &mut Diagnostics,
    u: &UpstreamFile,
    key: &str,
    timeout: Duration,
) -> super::resilience::ResilienceSettings {
    let (retry, budget) = match &u.retry {
        Some(r) => {
            let (p, b) =
                super::retry::compile::compile(d, r.get_ref(), &format!("{key}.retry"), timeout);
            (Some(Arc::new(p)), Some(b))
        }
        None => (None, None),
    };
    let circuit = u
        .circuit
        .as_ref()
        .map(|c| super::circuit::compile::compile(d, c.get_ref(), &format!("{key}.circuit")));
    super::resilience::ResilienceSettings {
        retry,
        budget,
        circuit,
    }
}
