//! `[cluster]`: the Redis store that several gateway instances share (cluster-scoped rate
//! limits), with its health: after repeated errors the gateway stops calling it for a backoff
//! period and callers decide locally.
//!
//! One multiplexed connection per process (redis' `ConnectionManager`: pipelined, reconnects in
//! the background), opened on first use. Every call has the `[cluster] timeout`.

pub mod compile;
pub mod gcra;
pub mod health;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use self::health::{Gate, Health, Switch};

/// `[cluster]`, compiled; equal settings across a reload keep the connection.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    /// `redis://` or `rediss://` URL as configured (may carry a user and password).
    pub url: String,
    /// Password from `password_env`.
    pub password: Option<String>,
    /// Time one store call may take.
    pub timeout: Duration,
    /// Instances sharing the store (for the local fallback share).
    pub instances: Option<u32>,
    /// Prefix of every key.
    pub key_prefix: String,
    /// `ca_file`: PEM roots for `rediss://`, when not the system's (watched for changes).
    pub ca_file: Option<std::path::PathBuf>,
    /// Its contents.
    pub ca_pem: Option<Vec<u8>>,
    /// Consecutive errors that switch to local decisions.
    pub error_threshold: u32,
    /// Time spent deciding locally before the store is tried again.
    pub backoff: Duration,
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("url", &redact(&self.url))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .field("instances", &self.instances)
            .field("key_prefix", &self.key_prefix)
            .field("error_threshold", &self.error_threshold)
            .field("backoff", &self.backoff)
            .finish()
    }
}

/// The URL without its user-info (for logs).
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

/// The shared store: a Redis client, its lazily opened connection and its health.
pub struct Cluster {
    /// Settings it was built from.
    pub settings: ClusterSettings,
    client: redis::Client,
    conn: OnceLock<Option<ConnectionManager>>,
    health: Health,
    started: Instant,
    metrics: StoreMetrics,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("settings", &self.settings)
            .field("degraded", &self.is_degraded())
            .finish()
    }
}

/// `portico_cluster_store_errors_total` and `portico_cluster_store_degraded`.
#[derive(Debug, Clone, Default)]
struct StoreMetrics {
    errors: Counter,
    degraded: Gauge,
}

/// Why a store call did not answer.
#[derive(Debug)]
pub enum StoreError {
    /// No answer within the timeout.
    Timeout,
    /// Connection or server error.
    Redis(redis::RedisError),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Timeout => f.write_str("no answer within the timeout"),
            StoreError::Redis(e) => write!(f, "{e}"),
        }
    }
}

impl Cluster {
    /// A store for `settings` with a built `client`; nothing is connected yet.
    pub fn new(
        settings: ClusterSettings,
        client: redis::Client,
        metrics: &crate::metrics::Metrics,
    ) -> Cluster {
        let errors = metrics.family(
            "portico_cluster_store_errors",
            "Cluster store (Redis) calls that failed or timed out",
            Counter::default,
        );
        let degraded: Gauge = metrics.family(
            "portico_cluster_store_degraded",
            "1 while cluster-scoped decisions are made locally because the store failed",
            Gauge::default,
        );
        // A store built by a reload starts healthy.
        degraded.set(0);
        Cluster {
            health: Health::new(settings.error_threshold, settings.backoff),
            settings,
            client,
            conn: OnceLock::new(),
            started: Instant::now(),
            metrics: StoreMetrics { errors, degraded },
        }
    }

    /// Whether decisions are currently made locally.
    pub fn is_degraded(&self) -> bool {
        self.health.is_degraded()
    }

    /// The share of a cluster-wide budget one instance gets when deciding alone.
    pub fn instances(&self) -> u32 {
        self.settings.instances.unwrap_or(1).max(1)
    }

    fn connection(&self) -> Option<ConnectionManager> {
        self.conn
            .get_or_init(|| {
                // Reconnection runs in the background; callers never wait longer than the
                // timeout for it. Short delays so a restarted Redis is found again quickly.
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.settings.timeout.max(Duration::from_secs(1))))
                    .set_response_timeout(Some(self.settings.timeout.max(Duration::from_millis(500))))
                    .set_number_of_retries(2)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500));
                ConnectionManager::new_lazy_with_config(self.client.clone(), config)
                    .inspect_err(|e| tracing::error!(error = %e, "cluster store: cannot set up the connection"))
                    .ok()
            })
            .clone()
    }

    /// Runs one store call under the timeout and the health gate. `None`: the store was not
    /// asked (backing off) or did not answer; the caller decides locally.
    pub async fn call<T, F, Fut>(&self, f: F) -> Option<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let probe = match self.health.gate(self.now()) {
            Gate::Local => return None,
            Gate::Call { probe } => probe,
        };
        let result = match self.connection() {
            None => Err(StoreError::Timeout),
            Some(conn) => match tokio::time::timeout(self.settings.timeout, f(conn)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(StoreError::Redis(e)),
                Err(_) => Err(StoreError::Timeout),
            },
        };
        match result {
            Ok(v) => {
                if self.health.succeeded(probe) == Switch::Recovered {
                    self.metrics.degraded.set(0);
                    tracing::warn!(
                        redis = %redact(&self.settings.url),
                        "cluster store answers again: cluster-scoped rate limits are shared again"
                    );
                }
                Some(v)
            }
            Err(e) => {
                self.metrics.errors.inc();
                if self.health.failed(self.now(), probe) == Switch::Degraded {
                    self.metrics.degraded.set(1);
                    tracing::error!(
                        redis = %redact(&self.settings.url),
                        error = %e,
                        backoff = ?self.settings.backoff,
                        "cluster store failing: cluster-scoped rate limits decide locally (on_store_error) until it answers"
                    );
                } else {
                    tracing::debug!(error = %e, "cluster store call failed");
                }
                None
            }
        }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A store shared by reference from the runtime and from each cluster-scoped policy.
pub type SharedCluster = Arc<Cluster>;
