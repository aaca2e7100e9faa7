//! Phase 1 of the request path: what must never reach routing. The Host rules (one checked
//! authority, written back as the Host every later phase reads), the path normalization (the
//! path routed is the path forwarded), and client header names with `_`.

use std::borrow::Cow;

use http::header::{HOST, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Uri};

use crate::error::GatewayError;
use crate::filter::headers::{self, underscore};
use crate::net::host::{self, Authority};
use crate::net::path;
use crate::runtime::ServerSettings;

/// Checks and normalizes the request head in place. `gateway_set` says whether a header name
/// (spelled with `-`) is one the gateway sets (its underscore spellings are always dropped).
pub fn admit<B>(
    server: &ServerSettings,
    gateway_set: impl Fn(&str) -> bool,
    req: &mut Request<B>,
) -> Result<(), GatewayError> {
    let authority = host::check(req.version(), req.uri(), req.headers())
        .map_err(|e| GatewayError::BadRequest(e.detail()))?;
    if authority == Authority::Target {
        host_from_target(req);
    }
    let normalized = path::normalize(req.uri().path(), server.encoded_slashes)
        .map_err(|e| GatewayError::BadRequest(e.detail()))?;
    if let Cow::Owned(p) = normalized {
        let uri = with_path(req.uri(), &p)
            .ok_or(GatewayError::BadRequest("The request target is invalid."))?;
        *req.uri_mut() = uri;
    }
    let protected = |n: &str| is_always_gateway_set(n) || gateway_set(n);
    underscore::apply(server.underscores_in_headers, req.headers_mut(), protected).map_err(
        |underscore::Refused| GatewayError::BadRequest("Header names must not contain '_'."),
    )
}

/// The target's authority wins (RFC 9112 §3.2.2): it becomes the Host every later phase (routing,
/// X-Forwarded-Host, redirects, the upstream's Host with `preserve_host`) reads.
fn host_from_target<B>(req: &mut Request<B>) {
    let Some(target) = req.uri().authority() else {
        return;
    };
    let same = req
        .headers()
        .get(HOST)
        .is_some_and(|h| h.as_bytes() == target.as_str().as_bytes());
    if !same {
        // A checked authority is a valid header value.
        if let Ok(v) = HeaderValue::from_str(target.as_str()) {
            req.headers_mut().insert(HOST, v);
        }
    }
}

/// `uri` with its path replaced (query, scheme and authority kept).
fn with_path(uri: &Uri, path: &str) -> Option<Uri> {
    let pq = match uri.query() {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}")).ok()?,
        None => PathAndQuery::try_from(path).ok()?,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq);
    Uri::from_parts(parts).ok()
}

/// Headers the proxy sets on every forwarded request.
fn is_always_gateway_set(name: &str) -> bool {
    name == headers::X_REQUEST_ID.as_str()
        || name == headers::X_FORWARDED_FOR.as_str()
        || name == headers::X_FORWARDED_PROTO.as_str()
        || name == headers::X_FORWARDED_HOST.as_str()
        || name == "x-real-ip"
}
