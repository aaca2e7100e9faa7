//! The CLIENT span of one upstream attempt (when the request is traced): started before the
//! transport send, so the attempt's own span id goes out in `traceparent`.

use http::{Method, Request, Response};

use super::Endpoint;
use super::deadline::TimedOut;
use super::transport::SendError;
use crate::body::{RequestBody, UpstreamBody};
use crate::trace::{Attempt, Attr};

/// A started attempt span and the method it reports.
pub struct Started(Attempt, Method);

/// Writes the attempt's `traceparent` into `req` (inside a traced request) and starts its span
/// when the trace is sampled.
#[inline]
pub fn start(req: &mut Request<RequestBody>) -> Option<Started> {
    let attempt = crate::trace::attempt(req.headers_mut())?;
    Some(Started(attempt, req.method().clone()))
}

/// Ends the span with the HTTP client attributes and the resend count (attempts before this
/// one on other endpoints).
pub fn finish(
    span: Started,
    upstream: &str,
    ep: &Endpoint,
    resends: usize,
    sent: &Result<Result<Response<UpstreamBody>, SendError>, TimedOut>,
) {
    let Started(attempt, method) = span;
    let mut attrs = vec![
        Attr::Str("http.request.method", method.to_string()),
        Attr::Str("server.address", ep.authority.host().to_owned()),
        Attr::Int(
            "server.port",
            i64::from(ep.authority.port_u16().unwrap_or(80)),
        ),
        Attr::Str("portico.upstream", upstream.to_owned()),
        Attr::Str("portico.endpoint", ep.label()),
    ];
    if resends > 0 {
        attrs.push(Attr::Int("http.request.resend_count", resends as i64));
    }
    let (error, kind) = match sent {
        Ok(Ok(resp)) => {
            let status = resp.status();
            let code = i64::from(status.as_u16());
            attrs.push(Attr::Int("http.response.status_code", code));
            let failed = status.is_server_error().then(|| code.to_string());
            (failed.clone(), failed)
        }
        Ok(Err(e)) if e.connect => (Some(e.detail.clone()), Some("connect".to_owned())),
        Ok(Err(e)) => (Some(e.detail.clone()), Some("protocol".to_owned())),
        Err(_) => (Some("timed out".to_owned()), Some("timeout".to_owned())),
    };
    if let Some(kind) = kind {
        attrs.push(Attr::Str("error.type", kind));
    }
    attempt.finish(format!("{method} {upstream}"), attrs, error);
}
