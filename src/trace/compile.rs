//! Compiling `[tracing]` into a [`Tracer`]: the endpoint and ratios are checked here, and the
//! export task of the previous config is kept when nothing about it changed.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use toml::Spanned;

use super::{Tracer, TracingSettings, export};
use crate::config::diag::Diagnostics;
use crate::config::file::trace::TracingFile;

/// Compiles `[tracing]`; `None` when absent or wrong (errors recorded in `d`).
pub fn compile(
    d: &mut Diagnostics,
    file: Option<&Spanned<TracingFile>>,
    previous: Option<&Arc<Tracer>>,
    metrics: &crate::metrics::Metrics,
) -> Option<Arc<Tracer>> {
    let f = file?.get_ref();
    let before = d.errors.len();
    let otlp_endpoint = f
        .otlp_endpoint
        .as_ref()
        .and_then(|e| d.parse(e, "tracing.otlp_endpoint", endpoint));
    let sample_ratio = match &f.sample_ratio {
        None => 1.0,
        Some(r) if (0.0..=1.0).contains(r.get_ref()) => *r.get_ref(),
        Some(r) => {
            let msg = format!("must be between 0.0 and 1.0, got {}", r.get_ref());
            d.error(r.span(), "tracing.sample_ratio", msg);
            1.0
        }
    };
    let service_name = match &f.service_name {
        Some(n) if n.get_ref().trim().is_empty() => {
            d.error(n.span(), "tracing.service_name", "must not be empty");
            String::new()
        }
        Some(n) => n.get_ref().clone(),
        None => "portico".to_owned(),
    };
    let settings = TracingSettings {
        otlp_endpoint,
        sample_ratio,
        service_name,
        queue_size: d.count_or(&f.queue_size, "tracing.queue_size", (1, 1 << 20), 2048),
        batch_size: d.count_or(&f.batch_size, "tracing.batch_size", (1, 65_536), 512),
        flush_interval: d.positive_duration_or(
            &f.flush_interval,
            "tracing.flush_interval",
            Duration::from_secs(1),
        ),
        export_timeout: d.positive_duration_or(
            &f.export_timeout,
            "tracing.export_timeout",
            Duration::from_secs(5),
        ),
    };
    if d.errors.len() > before {
        return None;
    }
    if let Some(p) = previous.filter(|p| p.settings == settings && p.queue.is_some()) {
        return Some(p.clone());
    }
    let dropped: Counter = metrics.family(
        "portico_spans_dropped",
        "Finished spans not exported: the queue was full or the collector failed",
        Counter::default,
    );
    let queue = export::Queue::start(&settings, dropped);
    Some(Arc::new(Tracer { settings, queue }))
}

/// An `http://` or `https://` URL with a host.
fn endpoint(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| format!("bad URL \"{text}\": expected http://HOST:PORT/v1/traces"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(uri),
        _ => Err(format!(
            "bad URL \"{text}\": expected http:// or https:// with a host, e.g. http://127.0.0.1:4318/v1/traces"
        )),
    }
}
