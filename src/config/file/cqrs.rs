//! Serde mirror of a route's CQRS keys: `read_your_writes = { key, window, ... }`.

use serde::Deserialize;
use toml::Spanned;

use super::Text;

/// `read_your_writes = { key = "claim:sub", window = "5s" }` of a route with `write_upstream`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadYourWritesFile {
    /// Whose writes: `claim:NAME`, `header:NAME` or `cookie:NAME`.
    pub key: Text,
    /// How long after a write the key's reads go to the write side; default `5s`.
    pub window: Option<Text>,
    /// Version header the write side sets on its answers and the read side on its own: a key's
    /// reads go back to the read side once it reports at least the written version.
    pub consistency_header: Option<Text>,
    /// Most keys remembered at once; default `10000`.
    pub max_keys: Option<Spanned<i64>>,
    /// Share the writers with the other instances through `[cluster]` Redis; default `false`.
    pub shared: Option<Spanned<bool>>,
}
