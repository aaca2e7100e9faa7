//! Serde mirror of `[saga]`: where the durable saga log lives and how it is kept.

use serde::Deserialize;
use toml::Spanned;

use super::Text;

/// `[saga]`: the durable saga log and `Idempotency-Key` memory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SagaFile {
    /// Folder of the log (`saga.log`), relative to gateway.toml; required for saga endpoints.
    pub dir: Text,
    /// How long an `Idempotency-Key` answer is replayed; default `24h`.
    pub idempotency_ttl: Option<Text>,
    /// Most `Idempotency-Key` answers remembered; default 100000.
    pub idempotency_max_keys: Option<Spanned<i64>>,
    /// Log size that triggers a compaction; default `64MiB`.
    pub compact_at: Option<Text>,
    /// fsync every record before the next call; default `true` (`false`: benchmarks only).
    pub fsync: Option<bool>,
}
