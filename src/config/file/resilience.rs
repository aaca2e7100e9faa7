//! Serde mirror of an upstream's failure policy: `[upstreams.NAME.retry]` (attempts, backoff,
//! budget) and `[upstreams.NAME.circuit]` (bulkhead limits, adaptive concurrency).

use serde::Deserialize;
use toml::Spanned;

use super::Text;

/// `[upstreams.NAME.retry]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryFile {
    /// Retries after the first try, 0 to 10; default `0` (off).
    pub attempts: Option<Spanned<i64>>,
    /// Failures retried: `connect-failure`, `reset`, `timeout`, `5xx`, `gateway-error`,
    /// `retriable-status`; default `["connect-failure", "reset", "gateway-error"]`.
    pub retry_on: Option<Spanned<Vec<Text>>>,
    /// Statuses `retriable-status` retries.
    pub statuses: Option<Spanned<Vec<Spanned<i64>>>>,
    /// Time one try may take; default: the whole timeout.
    pub per_try_timeout: Option<Text>,
    /// `{ base = "25ms", max = "250ms" }`: full-jitter backoff bounds.
    pub backoff: Option<Spanned<BackoffFile>>,
    /// `{ ratio = 0.2, min_per_second = 10 }`: the retry budget.
    pub budget: Option<Spanned<BudgetFile>>,
    /// Largest request body kept for a replay; default `64KiB`.
    pub replay_buffer: Option<Text>,
    /// Send `portico-attempts: N` when more than one attempt was made; default `false`.
    pub expose_attempts: Option<bool>,
}

/// `backoff = { base, max }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffFile {
    /// First backoff's upper bound; default `25ms`.
    pub base: Option<Text>,
    /// Largest backoff; default `250ms`.
    pub max: Option<Text>,
}

/// `budget = { ratio, min_per_second }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetFile {
    /// Retries allowed per recent request, in (0, 1]; default `0.2`.
    pub ratio: Option<Spanned<f64>>,
    /// Retries allowed every second whatever the ratio; default `10`.
    pub min_per_second: Option<Spanned<i64>>,
}

/// `[upstreams.NAME.circuit]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitFile {
    /// Requests in flight to the upstream; default `1024`.
    pub max_requests: Option<Spanned<i64>>,
    /// Requests waiting for a connection to open; default `1024`.
    pub max_pending: Option<Spanned<i64>>,
    /// Connections to the upstream; default `1024`.
    pub max_connections: Option<Spanned<i64>>,
    /// The in-flight limit follows measured latency; default `false`.
    pub adaptive: Option<bool>,
    /// Lowest adaptive limit; default `1`.
    pub min_limit: Option<Spanned<i64>>,
}
