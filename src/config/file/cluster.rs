//! Serde mirror of `[cluster]`: the Redis store that N gateway instances share.

use serde::Deserialize;
use toml::Spanned;

use super::Text;

/// `[cluster]`: shared state for several instances (cluster-scoped rate limits).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// `redis://HOST:PORT[/DB]` or `rediss://HOST:PORT[/DB]` (TLS).
    pub redis: Text,
    /// Time one store call may take before the request is decided locally; default `20ms`.
    pub timeout: Option<Text>,
    /// Instances sharing the store: the local fallback allows rate/instances; default: unset
    /// (the whole rate).
    pub instances: Option<Spanned<i64>>,
    /// Environment variable holding the Redis password (AUTH); default: none.
    pub password_env: Option<Text>,
    /// Prefix of every key the gateway writes; default `portico:`.
    pub key_prefix: Option<Text>,
    /// PEM CA bundle that verifies a `rediss://` server instead of the system roots.
    pub ca_file: Option<Text>,
    /// Consecutive store errors that switch to local decisions; default `3`.
    pub error_threshold: Option<Spanned<i64>>,
    /// How long the gateway decides locally before it tries the store again; default `2s`.
    pub backoff: Option<Text>,
}
