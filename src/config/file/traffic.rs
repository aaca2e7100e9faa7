//! Serde mirror of a route's traffic keys: `split`, `mirror` and `fault` (the `sticky` key and
//! the `cookies` / `query` / `claims` match conditions are plain strings and maps on the route).

use serde::Deserialize;
use toml::Spanned;

use super::Text;

/// One side of `split = [{ upstream = "v1", weight = 95 }, ...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSideFile {
    /// Upstream name from `[upstreams]`.
    pub upstream: Text,
    /// Relative weight, 0 (drained) or more.
    pub weight: Spanned<i64>,
}

/// `mirror = { upstream = "shadow", percent = 10 }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorFile {
    /// Upstream the copies go to.
    pub upstream: Text,
    /// Share of requests copied, 0 to 100, decimals allowed; default `100`.
    pub percent: Option<Spanned<f64>>,
    /// Largest request body copied; requests with larger bodies (or bodies of unknown length)
    /// are not mirrored; default `64KiB`.
    pub max_body: Option<Text>,
    /// Time a shadow exchange may take, answer body included; default `1s`.
    pub timeout: Option<Text>,
    /// Shadow requests in flight at once for this route; beyond it copies are dropped and
    /// counted, never queued; default `64`.
    pub max_concurrent: Option<Spanned<i64>>,
}

/// `fault = { delay = "200ms", delay_percent = 5, abort_status = 503, abort_percent = 1 }`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultFile {
    /// Delay added before forwarding.
    pub delay: Option<Text>,
    /// Share of requests delayed, 0 to 100; default `100` when `delay` is set.
    pub delay_percent: Option<Spanned<f64>>,
    /// Status of an injected abort, 200 to 599.
    pub abort_status: Option<Spanned<i64>>,
    /// Share of requests aborted, 0 to 100; default `100` when `abort_status` is set.
    pub abort_percent: Option<Spanned<f64>>,
    /// Let `portico-fault-abort` / `portico-fault-delay-ms` request headers choose the fault;
    /// default `false`.
    pub header_control: Option<bool>,
}
