//! Phase 5's rewrite of the request head for the upstream: the gateway's forwarding fields
//! (held beside the map, see `net::added`), the Host rule, route header edits, and the path
//! after `strip_prefix` and `rewrite_prefix`.

use http::header::{HOST, HeaderValue};
use http::uri::PathAndQuery;
use http::{Uri, Version};

use crate::conn::ConnInfo;
use crate::filter::headers;
use crate::net::added::Added;
use crate::route::ProxyAction;
use crate::runtime::Runtime;

/// Rewrites the request head for the upstream (hop-by-hop fields are already gone): forwarding
/// headers, request id, Host, route header edits, path rewrite. The gateway's own fields are
/// returned beside the map ([`Added`]: the HTTP/1 encoder writes them without a map insert
/// each); a route that edits request headers gets them in the map first, so its edits see and
/// override them as configured.
pub(super) fn prepare_request_head<'a>(
    rt: &Runtime,
    conn: &'a ConnInfo,
    action: &ProxyAction,
    request_id: &'a HeaderValue,
    parts: &mut http::request::Parts,
) -> Added<'a> {
    // The client's Host becomes X-Forwarded-Host; it stays in the map (for readers of the
    // request) and goes upstream only with `preserve_host`.
    let client_host = parts.headers.get(HOST).cloned();
    let in_map = client_host.is_some();
    let original_host = client_host.or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if action.preserve_host && !in_map {
        if let Some(h) = &original_host {
            parts.headers.insert(HOST, h.clone());
        }
    }
    let mut added = headers::forward_beside(
        &mut parts.headers,
        conn,
        &rt.server.trusted_proxies,
        original_host,
        request_id,
    );
    added.replace_host = !action.preserve_host;
    if !action.request_headers.is_empty() {
        added.move_into(&mut parts.headers);
        action.request_headers.apply(&mut parts.headers);
    }
    let path = upstream_path(action, parts.uri.path_and_query());
    parts.uri = Uri::from(path);
    parts.version = Version::HTTP_11;
    added
}

/// The path and query sent upstream after `strip_prefix` and `rewrite_prefix`.
fn upstream_path(action: &ProxyAction, pq: Option<&PathAndQuery>) -> PathAndQuery {
    let original = pq
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    if action.strip_prefix.is_none() && action.rewrite_prefix.is_none() {
        return original;
    }
    let path = original.path();
    let mut rest = path;
    if let Some(strip) = action.strip_prefix.as_deref() {
        if crate::route::prefix_matches(strip, path) && strip != "/" {
            rest = &path[strip.len()..];
        }
    }
    let mut out = String::with_capacity(path.len() + 16);
    match action.rewrite_prefix.as_deref() {
        Some(prefix) if prefix != "/" => {
            out.push_str(prefix);
            if rest != "/" {
                out.push_str(rest);
            }
        }
        _ => out.push_str(if rest.is_empty() { "/" } else { rest }),
    }
    if let Some(q) = original.query() {
        out.push('?');
        out.push_str(q);
    }
    PathAndQuery::try_from(out).unwrap_or(original)
}
