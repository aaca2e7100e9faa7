//! Finished spans as they wait in the export queue, and their OTLP form.

use std::time::SystemTime;

use http::HeaderValue;

use super::otlp;

/// Span kinds the gateway makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Work inside the gateway (a BFF part, the aggregation).
    Internal,
    /// The request the gateway serves.
    Server,
    /// One attempt to an upstream endpoint.
    Client,
}

/// One span attribute: a semantic-convention key and its value.
#[derive(Debug, Clone)]
pub enum Attr {
    /// Text.
    Str(&'static str, String),
    /// A number.
    Int(&'static str, i64),
    /// A flag.
    Bool(&'static str, bool),
}

/// A span ready to export.
#[derive(Debug)]
pub struct Finished {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub tracestate: Option<HeaderValue>,
    pub name: String,
    pub kind: Kind,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attrs: Vec<Attr>,
    /// Why the span failed (its status is ERROR), if it did.
    pub error: Option<String>,
}

impl Finished {
    /// The OTLP message.
    pub fn into_otlp(self) -> otlp::Span {
        let nanos = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        };
        otlp::Span {
            trace_id: self.trace_id.to_vec(),
            span_id: self.span_id.to_vec(),
            trace_state: self
                .tracestate
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            parent_span_id: self.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: self.name,
            kind: match self.kind {
                Kind::Internal => 1,
                Kind::Server => 2,
                Kind::Client => 3,
            },
            start_time_unix_nano: nanos(self.start),
            end_time_unix_nano: nanos(self.end),
            attributes: self.attrs.into_iter().map(key_value).collect(),
            status: Some(match self.error {
                Some(message) => otlp::Status { message, code: 2 },
                None => otlp::Status {
                    message: String::new(),
                    code: 0,
                },
            }),
        }
    }
}

/// An attribute as an OTLP key-value pair.
pub fn key_value(a: Attr) -> otlp::KeyValue {
    let (key, value) = match a {
        Attr::Str(k, v) => (k, otlp::Value::Str(v)),
        Attr::Int(k, v) => (k, otlp::Value::Int(v)),
        Attr::Bool(k, v) => (k, otlp::Value::Bool(v)),
    };
    otlp::KeyValue {
        key: key.to_owned(),
        value: Some(otlp::AnyValue { value: Some(value) }),
    }
}
