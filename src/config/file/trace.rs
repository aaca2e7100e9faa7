//! Serde mirror of `[tracing]`: W3C trace context and OTLP span export.

use serde::Deserialize;
use toml::Spanned;

use super::Text;

/// `[tracing]`: absent, the gateway neither reads nor writes trace context.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracingFile {
    /// OTLP/HTTP protobuf endpoint, e.g. `http://127.0.0.1:4318/v1/traces`; default: none
    /// (trace context is propagated, no spans are exported).
    pub otlp_endpoint: Option<Text>,
    /// Share of new traces sampled, 0.0 to 1.0; default `1.0`. Parent-based: a caller's
    /// sampled flag is kept.
    pub sample_ratio: Option<Spanned<f64>>,
    /// `service.name` of the exported spans; default `portico`.
    pub service_name: Option<Text>,
    /// Finished spans waiting for export before new ones are dropped; default `2048`.
    pub queue_size: Option<Spanned<i64>>,
    /// Most spans per export request; default `512`.
    pub batch_size: Option<Spanned<i64>>,
    /// Longest a span waits for its batch; default `1s`.
    pub flush_interval: Option<Text>,
    /// Time one export request may take; default `5s`.
    pub export_timeout: Option<Text>,
}
