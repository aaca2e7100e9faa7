//! Serde mirror of `[rate_limits.NAME]` and of the `rate_limit = ...` reference that routes and
//! BFF profiles share.

use serde::Deserialize;
use toml::Spanned;

use super::Text;

/// `[rate_limits.NAME]`: one GCRA policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitFile {
    /// "100/s", "20/m", "1000/h".
    pub rate: Text,
    /// Requests allowed at once on a full bucket; default: the rate's count.
    pub burst: Option<Spanned<i64>>,
    /// `ip`, `header:NAME`, `claim:NAME`, `route`, or a list of those (composite key).
    pub key: Spanned<KeyFile>,
    /// `shared` (default), `deny` or `allow`: what a request without the key gets.
    pub on_missing_key: Option<Text>,
    /// Most distinct keys tracked; default `100000`. New keys beyond it share one bucket.
    pub max_keys: Option<Spanned<i64>>,
    /// `on_limit` (default): RateLimit headers on 429 only; `always`: on every response.
    pub headers: Option<Text>,
    /// `local` (default): buckets in this process; `cluster`: shared through `[cluster]`.
    pub scope: Option<Text>,
    /// `local` (default), `allow` or `deny`: what a cluster-scoped policy decides while the
    /// store does not answer.
    pub on_store_error: Option<Text>,
}

/// A policy key: one part or a list of parts. (Untagged enums lose inner spans, so errors
/// point at the whole value.)
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum KeyFile {
    /// `key = "ip"`.
    One(String),
    /// `key = ["ip", "header:x-api-key"]`.
    Many(Vec<String>),
}

/// `rate_limit = "name"` or `rate_limit = ["a", "b"]` (every policy must admit).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RateLimitRefFile {
    /// One policy.
    One(String),
    /// Several policies.
    Many(Vec<String>),
}

impl RateLimitRefFile {
    /// The named policies in order.
    pub fn names(&self) -> Vec<&str> {
        match self {
            RateLimitRefFile::One(t) => vec![t.as_str()],
            RateLimitRefFile::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}
