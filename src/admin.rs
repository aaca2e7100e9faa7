//! Admin API on `server.admin_listen` (never on a public listener): health, readiness, metrics,
//! the loaded config's identity, the route table, and reload on demand.
//!
//! `/healthz` and `/readyz` are always open (probes carry no credentials); everything else asks
//! for `Authorization: Bearer TOKEN` when `server.admin_token_env` is set.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

mod stats;

use crate::body::Body;
use crate::config::ConfigErrors;
use crate::config::units::rfc3339;
use crate::gateway::Gateway;
use crate::route::answer::Kind as AnswerKind;
use crate::route::{Action, HostPattern, PathPattern};
use crate::server::{ConnTracker, accept_loop};

/// Paths the admin API answers, with the methods each takes.
const ENDPOINTS: [(&str, &str); 9] = [
    ("/healthz", "GET, HEAD"),
    ("/readyz", "GET, HEAD"),
    ("/metrics", "GET"),
    ("/admin/config", "GET"),
    ("/admin/routes", "GET"),
    ("/admin/upstreams", "GET"),
    ("/admin/stats", "GET"),
    ("/admin/reload", "POST"),
    ("/status", "GET"),
];

/// Serves the admin API until `stop` turns true, on the same accept loop as the public
/// listeners (connection cap, TCP_NODELAY); its connections are not counted in the public drain.
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>, stop: watch::Receiver<bool>) {
    serve_surface(listener, gateway, stop, false).await;
}

/// Serves only `/healthz` and `/readyz` (`server.health_listen`) until `stop` turns true, so
/// orchestrators can probe without reaching the admin API; every other path is 404.
pub async fn serve_probes(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    stop: watch::Receiver<bool>,
) {
    serve_surface(listener, gateway, stop, true).await;
}

async fn serve_surface(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    stop: watch::Receiver<bool>,
    probes_only: bool,
) {
    let tracker = Arc::new(ConnTracker::default());
    let conn_stop = stop.clone();
    let kind = if probes_only { "health" } else { "admin" };
    accept_loop(listener, &gateway.clone(), tracker, stop, kind, |a| {
        let (gateway, stop) = (gateway.clone(), conn_stop.clone());
        Some(async move {
            serve_connection(a.stream, a.peer, gateway, stop, probes_only).await;
            drop(a.slot);
        })
    })
    .await;
}

/// Whether a path is one of the probes the health listener serves.
fn is_probe(path: &str) -> bool {
    path == "/healthz" || path == "/readyz"
}

/// One admin connection: HTTP/1.1 or h2c, closed gracefully (within 5 s) at stop.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    gateway: Arc<Gateway>,
    mut stop: watch::Receiver<bool>,
    probes_only: bool,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let gateway = gateway.clone();
        async move {
            if probes_only && !is_probe(req.uri().path()) {
                return Ok::<_, Infallible>(json_response(
                    StatusCode::NOT_FOUND,
                    &json!({"error": "not found", "endpoints": ["/healthz", "/readyz"]}),
                ));
            }
            Ok::<_, Infallible>(handle(&gateway, peer, req).await)
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        res = conn.as_mut() => {
            if let Err(e) = res {
                tracing::debug!(%peer, error = %e, "admin connection ended with error");
            }
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

/// Answers one admin request from `peer`.
pub async fn handle(
    gateway: &Arc<Gateway>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    // `[server] admin_ip_list` is checked on the peer itself: the admin listener trusts no
    // forwarding header.
    if let Some(list) = &gateway.runtime().admin_ip_list {
        if !list.admits(peer.ip()) {
            let err = crate::error::GatewayError::IpDenied {
                list: list.name.clone(),
            };
            return err.into_response("");
        }
    }
    let path = req.uri().path();
    if path == "/admin/sagas" || path.starts_with("/admin/sagas/") {
        if !authorized(&gateway.runtime().server.admin_token, &req) {
            return unauthorized();
        }
        let (status, body) = crate::saga::admin::handle(req.method(), path).await;
        return json_response(status, &body);
    }
    let Some(&(_, allowed)) = ENDPOINTS.iter().find(|(p, _)| *p == path) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"error": "not found", "endpoints": ENDPOINTS.map(|(p, _)| p)}),
        );
    };
    let method = req.method();
    let method_ok = allowed
        .split(", ")
        .any(|m| m.as_bytes() == method.as_str().as_bytes());
    if !method_ok {
        let mut resp = json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"error": format!("{path} takes {allowed}")}),
        );
        resp.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allowed));
        return resp;
    }
    let rt = gateway.runtime();
    match path {
        "/healthz" => text_response(StatusCode::OK, "ok\n"),
        "/readyz" if gateway.is_draining() => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "draining"}),
        ),
        "/readyz" => json_response(
            StatusCode::OK,
            &json!({"status": "ready", "generation": gateway.generation()}),
        ),
        // The page itself holds no data; it asks for the token and sends it with each fetch.
        "/status" => status_page(),
        _ if !authorized(&rt.server.admin_token, &req) => unauthorized(),
        "/metrics" => {
            let mut resp = Response::new(Body::full(rt.metrics.encode()));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            );
            resp
        }
        "/admin/config" => json_response(StatusCode::OK, &config_json(gateway)),
        "/admin/routes" => json_response(StatusCode::OK, &routes_json(gateway)),
        "/admin/upstreams" => json_response(
            StatusCode::OK,
            &crate::upstream::status::json(&rt.upstreams),
        ),
        "/admin/stats" => json_response(StatusCode::OK, &stats::json(gateway)),
        "/admin/reload" => reload(gateway).await,
        _ => json_response(StatusCode::NOT_FOUND, &json!({"error": "not found"})),
    }
}

/// The admin API's refusal: problem+json like every refusal of the public listeners
/// (type `.../unauthorized`).
fn unauthorized() -> Response<Body> {
    crate::error::GatewayError::Unauthorized {
        challenge: HeaderValue::from_static("Bearer realm=\"portico-admin\""),
        detail: "This admin endpoint needs Authorization: Bearer <token>.",
    }
    .into_response("")
}

fn authorized<B>(token: &Option<crate::runtime::lifecycle::AdminToken>, req: &Request<B>) -> bool {
    token.as_ref().is_none_or(|t| {
        t.accepts(
            req.headers()
                .get(http::header::AUTHORIZATION)
                .map(HeaderValue::as_bytes),
        )
    })
}

async fn reload(gateway: &Arc<Gateway>) -> Response<Body> {
    let g = gateway.clone();
    // Reading and compiling files blocks; keep it off the async workers.
    let outcome = tokio::task::spawn_blocking(move || g.reload_by("admin API")).await;
    match outcome {
        Ok(Ok(done)) => {
            let kinds: serde_json::Map<String, Value> = done
                .summary
                .kinds
                .iter()
                .map(|(kind, c)| {
                    let names = |v: &Vec<Arc<str>>| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
                    (
                        kind.to_string(),
                        json!({"added": names(&c.added), "removed": names(&c.removed), "changed": names(&c.changed)}),
                    )
                })
                .collect();
            json_response(
                StatusCode::OK,
                &json!({
                    "status": "reloaded",
                    "version": done.runtime.version,
                    "generation": done.generation,
                    "took_ms": done.took.as_secs_f64() * 1e3,
                    "summary": done.summary.to_string(),
                    "changes": kinds,
                }),
            )
        }
        Ok(Err(errors)) => {
            let mut resp = json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({
                    "type": "https://portico.dev/problems/config-invalid",
                    "title": "Config rejected",
                    "status": 422,
                    "detail": format!("{} problem(s) found; the current config keeps serving (generation {}).", errors.0.len(), gateway.generation()),
                    "errors": errors_json(&errors),
                    "text": errors.to_string(),
                }),
            );
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            );
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "reload task failed");
            json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": "reload failed unexpectedly; see the logs"}),
            )
        }
    }
}

/// Errors as JSON objects (file, line, col, key, message, and the `portico check` line).
pub fn errors_json(errors: &ConfigErrors) -> Vec<Value> {
    errors
        .0
        .iter()
        .map(|e| {
            json!({
                "file": e.file.display().to_string(),
                "line": e.line,
                "col": e.col,
                "key": e.key,
                "message": e.message,
                "text": e.to_string(),
            })
        })
        .collect()
}

fn config_json(gateway: &Gateway) -> Value {
    let rt = gateway.runtime();
    let status = gateway.reload_status().borrow().clone();
    json!({
        "version": rt.version,
        "generation": gateway.generation(),
        "loaded_at": rfc3339(rt.loaded_at),
        "config_path": gateway.config_path().display().to_string(),
        "sources": rt.sources.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "routes": rt.routes.routes().len(),
        "upstreams": rt.upstreams.keys().map(|k| k.to_string()).collect::<Vec<_>>(),
        "draining": gateway.is_draining(),
        "last_reload": {
            "attempts": status.attempts,
            "at": rfc3339(status.at),
            "ok": status.errors.is_none(),
            "errors": status.errors.as_ref().map(errors_json),
        },
    })
}

fn routes_json(gateway: &Gateway) -> Value {
    let rt = gateway.runtime();
    let routes: Vec<Value> = rt
        .routes
        .routes()
        .iter()
        .map(|r| {
            let host = match &r.host {
                HostPattern::Any => None,
                HostPattern::Exact(h) => Some(h.to_string()),
                HostPattern::Wildcard(h) => Some(format!("*.{h}")),
            };
            let (kind, path) = match &r.path {
                PathPattern::Exact(p) => ("path", p),
                PathPattern::Prefix(p) => ("path_prefix", p),
            };
            json!({
                "id": &*r.id,
                "host": host,
                kind: &**path,
                "methods": r.methods.as_ref().map(|m| m.iter().map(Method::as_str).collect::<Vec<_>>()),
                "headers": r.headers.iter().map(|(n, v)| json!({"name": n.as_str(), "value": v.to_str().unwrap_or("?")})).collect::<Vec<_>>(),
                "action": match &r.action { Action::Proxy(_) => "proxy", Action::Answer(a) => match a.kind { AnswerKind::Redirect { .. } => "redirect", AnswerKind::Respond { .. } => "respond" } },
                "upstream": r.upstream().map(|u| &*u.name),
                "strip_prefix": r.proxy().and_then(|p| p.strip_prefix.as_deref()),
                "rewrite_prefix": r.proxy().and_then(|p| p.rewrite_prefix.as_deref()),
                "timeout_ms": r.proxy().map(|p| p.timeout.as_millis() as u64),
            })
        })
        .collect();
    json!({"generation": gateway.generation(), "version": rt.version, "routes": routes})
}

fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut resp = Response::new(Body::full(v.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// The status page: one self-contained HTML file built into the binary.
fn status_page() -> Response<Body> {
    let mut resp = Response::new(Body::full(include_str!("admin/status.html")));
    let headers = resp.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Nothing loads from elsewhere; the page talks only to this listener.
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
        ),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::full(text));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
