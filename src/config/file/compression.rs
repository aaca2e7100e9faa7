//! Serde mirror of `[compression]`: response compression negotiated with Accept-Encoding.

use serde::Deserialize;
use toml::Spanned;

use super::Text;

/// `[compression]`: compress responses the client accepts compressed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionFile {
    /// Content codings in the server's order of preference: any of `zstd`, `br`, `gzip`;
    /// default `["zstd", "br", "gzip"]`.
    pub algorithms: Option<Spanned<Vec<Text>>>,
    /// Bodies with a known length below this are sent as they are; default `1024`.
    pub min_size: Option<Text>,
    /// Media types to compress: `type/subtype`, `type/*` or `type/*+suffix`; default: JSON,
    /// text, JavaScript, XML and SVG types.
    pub types: Option<Vec<Text>>,
    /// Compression level per coding, e.g. `{ gzip = 6, br = 4, zstd = 3 }` (the defaults).
    pub level: Option<Spanned<LevelFile>>,
}

/// `level = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelFile {
    /// 1-9.
    pub gzip: Option<Spanned<i64>>,
    /// 0-11.
    pub br: Option<Spanned<i64>>,
    /// 1-19.
    pub zstd: Option<Spanned<i64>>,
}
