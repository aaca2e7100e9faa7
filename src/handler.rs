//! The request path, top to bottom: route, filters, forward, response headers, access log.
//! `handle` turns every error into a response in one place; `proxy` runs the phases in order.

mod admit;
#[cfg(test)]
mod future_size;
mod spans;
mod upstream_head;

use upstream_head::prepare_request_head;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;

use crate::body::ClientBody;
use http::header::{CONTENT_LENGTH, HeaderValue};
use http::{Request, Response, StatusCode, Version};

use crate::bff;
use crate::body::{Body, RequestBody};
use crate::conn::ConnInfo;
use crate::error::GatewayError;
use crate::filter;
use crate::filter::cors::Cors;
use crate::filter::headers::{self, X_REQUEST_ID};
use crate::metrics::RouteMetrics;
use crate::route::{self, Route};
use crate::runtime::Runtime;
use crate::script;

/// What the access log and metrics learn while a request runs.
#[derive(Default)]
struct Trace<'a> {
    route: Option<Arc<str>>,
    /// Set once an upstream is chosen (after the guards): a denied request logs `-`.
    upstream: Option<Arc<str>>,
    metrics: Option<&'a RouteMetrics>,
    fault: Option<&'static str>,
    /// The matched route opted out of compression (`compress = false`).
    uncompressed: bool,
    /// The target's CORS policy and the request's `Origin`: every answer (errors included)
    /// gets the policy's fields in `handle`.
    cors: Option<(&'a Cors, Option<HeaderValue>)>,
    /// The guards verified a credential (for the trace; the credential itself is never kept).
    authenticated: bool,
    /// The endpoint reached and the attempts it took.
    served: crate::upstream::Served,
}

/// What the access log needs of the request, copied only when access logging is on.
struct Logged {
    method: http::Method,
    path: String,
    version: Version,
    user_agent: Option<HeaderValue>,
    bytes_in: Option<u64>,
}

/// Serves one request on the runtime current when it arrived; never fails. The answer
/// carries its `x-request-id`. (A plain function: an `async fn` wrapper would hold a second
/// copy of what it awaits.)
pub fn handle(
    rt: Arc<Runtime>,
    conn: &ConnInfo,
    req: Request<ClientBody>,
) -> impl Future<Output = Response<Body>> + '_ {
    answer(rt, conn, req).map(|(mut resp, request_id)| {
        resp.headers_mut().insert(&X_REQUEST_ID, request_id);
        resp
    })
}

/// [`handle`] with the request id beside the answer instead of in its map: Portico's HTTP/1
/// server writes it straight into the response head (a map insert hashes the name and
/// probes the table), replacing any copy the map holds.
pub async fn answer(
    rt: Arc<Runtime>,
    conn: &ConnInfo,
    req: Request<ClientBody>,
) -> (Response<Body>, HeaderValue) {
    let start = Instant::now();
    let _in_flight = rt.metrics.in_flight();
    let request_id = headers::request_id(req.headers());
    let logged = (rt.access_log && crate::access_log::enabled()).then(|| Logged {
        method: req.method().clone(),
        path: req.uri().path().to_owned(),
        version: req.version(),
        user_agent: req.headers().get(http::header::USER_AGENT).cloned(),
        bytes_in: content_length(&req),
    });
    let method = req.method().clone();
    // A gRPC client gets the gateway's own errors as trailers-only gRPC answers.
    let grpc = crate::grpc::is_grpc(req.headers());
    let mut trace = Trace::default();
    // The coding is chosen from the request's head before the request moves on.
    let coding = rt
        .compression
        .as_deref()
        .and_then(|c| c.choose(req.method(), req.headers()));
    // Tracing (when configured): the SERVER span, and the scope upstream attempts hang under.
    let server_span = rt.tracing.as_ref().map(|t| t.server(req.headers()));
    let span_head = server_span
        .as_ref()
        .filter(|s| s.recording())
        .map(|_| spans::Head::of(&req, conn));
    // Only a request that is logged needs its trace id as text.
    let trace_id = logged
        .as_ref()
        .and(server_span.as_ref())
        .map(crate::trace::ServerSpan::trace_id);

    let outcome = match &server_span {
        Some(span) => {
            let scope = span.scope();
            crate::trace::in_scope(scope, proxy(&rt, conn, &request_id, &mut trace, req)).await
        }
        None => proxy(&rt, conn, &request_id, &mut trace, req).await,
    };
    let mut error_slug = None;
    let mut flag = None;
    let mut resp = match outcome {
        Ok(resp) => resp,
        Err(err) => {
            if err.status().is_server_error() {
                let id = request_id.to_str().unwrap_or("-");
                let route = trace.route.as_deref().unwrap_or("-");
                tracing::warn!(request_id = id, route, error = %err, "request failed");
            }
            trace.metrics.inspect(|m| m.upstream_error(&err));
            if span_head.is_some() {
                error_slug = Some(spans::slug(&err));
            }
            if let GatewayError::Unauthorized { detail, .. }
            | GatewayError::Forbidden { detail, .. } = &err
            {
                rt.metrics.auth_denied(detail);
            }
            flag = Some(crate::access_log::flag(&err));
            if grpc {
                err.into_grpc_response()
            } else {
                err.into_response(request_id.to_str().unwrap_or(""))
            }
        }
    };
    if let Some((cors, origin)) = &trace.cors {
        cors.decorate(origin.as_ref(), resp.headers_mut());
    }
    if let (Some(span), Some(head)) = (server_span, span_head) {
        let t = spans::Learned {
            route: trace.route.as_deref(),
            upstream: trace.upstream.as_deref(),
            fault: trace.fault,
            authenticated: trace.authenticated,
            request_id: request_id.to_str().unwrap_or(""),
        };
        spans::finish_server(span, head, &t, &resp, error_slug);
    }
    if trace.served.expose_attempts && trace.served.attempts > 1 {
        resp.headers_mut()
            .insert("portico-attempts", HeaderValue::from(trace.served.attempts));
    }
    if let Some(c) = rt.compression.as_deref().filter(|_| !trace.uncompressed) {
        resp = c.apply(coding, resp);
    }
    let route_metrics = trace.metrics.unwrap_or(rt.metrics.unmatched());
    route_metrics.record(&method, resp.status(), start);
    crate::tls::add_hsts(rt.tls.as_ref(), conn, resp.headers_mut());

    if let Some(l) = logged {
        let partial = resp.headers().contains_key(&bff::PARTIAL_HEADER);
        let endpoint = trace.served.endpoint.as_ref().map(|a| a.as_str());
        crate::access_log::write(&crate::access_log::Entry {
            method: l.method.as_str(),
            path: &l.path,
            version: crate::access_log::version(l.version),
            route: trace.route.as_deref().unwrap_or("-"),
            status: resp.status().as_u16(),
            upstream: trace.upstream.as_deref().unwrap_or("-"),
            endpoint: endpoint.unwrap_or("-"),
            attempts: trace.served.attempts,
            bytes_in: l.bytes_in,
            bytes_out: response_length(&resp),
            duration_us: start.elapsed().as_micros() as u64,
            request_id: request_id.to_str().unwrap_or(""),
            peer: conn.peer,
            user_agent: l.user_agent.as_ref().and_then(|v| v.to_str().ok()),
            flags: flag.or(partial.then_some("bff_partial")),
            fault: trace.fault,
            trace_id: trace_id.as_deref(),
        });
    }
    (resp, request_id)
}

/// The response body's size when known up front (`Content-Length`).
fn response_length(resp: &Response<Body>) -> Option<u64> {
    resp.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// What a request was routed to.
enum Target<'a> {
    /// A BFF profile endpoint: fan out and aggregate.
    Bff(bff::Target<'a>),
    /// A proxy route: forward to its upstream.
    Route(&'a Arc<Route>),
}

impl Target<'_> {
    fn guards(&self) -> &crate::filter::Guards {
        match self {
            Target::Bff(t) => &t.endpoint.guards,
            Target::Route(r) => &r.guards,
        }
    }
}

/// Phase 2's lookup for one method: a BFF endpoint first, else a route.
async fn find_target<'a>(
    rt: &'a Runtime,
    host: Option<&str>,
    method: &http::Method,
    req: &Request<ClientBody>,
) -> Result<Target<'a>, GatewayError> {
    Ok(
        match rt.bff.find(method, req.uri().path(), req.headers())? {
            bff::Lookup::Hit(endpoint) => Target::Bff(endpoint),
            miss => Target::Route(
                route::conditions::find(&rt.routes, host, method, req.uri(), req.headers())
                    .await
                    .map_err(|e| miss.explain_miss(e))?,
            ),
        },
    )
}

/// The phases, in their fixed order.
async fn proxy<'a>(
    rt: &'a Runtime,
    conn: &ConnInfo,
    request_id: &HeaderValue,
    trace: &mut Trace<'a>,
    mut req: Request<ClientBody>,
) -> Result<Response<Body>, GatewayError> {
    // Phase 1: reject what must never reach routing; one checked Host, one normalized path.
    // An HTTP/2 extended CONNECT (WebSocket over h2) goes on as the upgrade it stands for.
    let extended_connect = crate::tunnel::from_extended_connect(&mut req);
    admit::admit(&rt.server, |name| gateway_set(rt, name), &mut req)?;
    let host = crate::net::host::requested(req.uri(), req.headers());
    if let Some(redirect) =
        crate::tls::redirect_https(rt.tls.as_ref(), conn, host.as_deref(), req.uri())?
    {
        return Ok(redirect);
    }

    // Phase 2: route. A BFF endpoint first (a mounted profile owns its prefix), else a route.
    // A CORS preflight is routed by the method it asks about, to the target that would serve
    // the actual request (when that target has no CORS policy, as a plain OPTIONS request).
    let preflight = filter::cors::preflight_method(req.method(), req.headers());
    let target = match &preflight {
        Some(asked) => match find_target(rt, host.as_deref(), asked, &req).await {
            Ok(t) if t.guards().cors.is_some() => t,
            _ => find_target(rt, host.as_deref(), req.method(), &req).await?,
        },
        None => find_target(rt, host.as_deref(), req.method(), &req).await?,
    };
    let guards = match &target {
        Target::Bff(t) => {
            trace.route = Some(t.endpoint.id.clone());
            trace.metrics = Some(&t.endpoint.metrics);
            &t.endpoint.guards
        }
        Target::Route(r) => {
            trace.route = Some(r.id.clone());
            trace.uncompressed = !r.compress;
            trace.metrics = Some(&r.metrics);
            &r.guards
        }
    };

    // Phase 2b: edge policies, before anything else reads the request: the IP list on the real
    // client address, then the CORS preflight (answered here: no auth, never forwarded).
    if let Some(list) = &guards.ip_list {
        filter::check_ip_list(list, &rt.server.trusted_proxies, conn, req.headers())?;
    }
    if let Some(cors) = guards.cors.as_deref() {
        if let Some(asked) = &preflight {
            return cors.preflight(asked, req.headers());
        }
        trace.cors = Some((cors, req.headers().get(http::header::ORIGIN).cloned()));
    }

    // Phase 3: body limit known up front (the body's declared length: the framing the
    // server read from `content-length`, no second look at the field).
    let limit = rt.limits.max_body_bytes;
    if http_body::Body::size_hint(req.body())
        .exact()
        .is_some_and(|n| n > limit)
    {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    // Only an allow-listed protocol is tunnelled; any other offer goes as a plain request.
    let upgrading = match &target {
        Target::Route(r) => {
            (req.version() == Version::HTTP_11 || extended_connect)
                && headers::wants_upgrade(req.headers())
                && r.proxy().is_some_and(|p| p.upgrades.allows(req.headers()))
        }
        Target::Bff(_) => false,
    };
    let client_upgrade = upgrading.then(|| crate::tunnel::client_upgrade(&mut req));
    // A tunnel takes a place under the route's `max_tunnels` before anything is forwarded.
    let tunnel_slot = match (&target, upgrading) {
        (Target::Route(r), true) => match r.proxy().map(|p| p.tunnels.enter()) {
            Some(None) => return Err(GatewayError::TunnelLimit),
            slot => slot.flatten(),
        },
        _ => None,
    };
    let (mut parts, body) = req.into_parts();
    // Hop-by-hop fields go before any gateway-set header is added (guards add verified claims
    // and the client certificate), so `Connection` cannot name those away.
    headers::strip_hop_by_hop(&mut parts.headers, upgrading);

    // Phase 4: guards (client certificate, auth, then rate limits).
    let identity = filter::run_guards(rt.guard_env(), guards, conn, &mut parts).await?;
    trace.authenticated = identity.claims.is_some();

    // Phase 4b: scripts (on_request) may edit the request, pick an upstream, or answer it.
    let (chain, route_upstreams) = match &target {
        Target::Bff(t) => (t.endpoint.scripts.as_ref(), None),
        Target::Route(r) => (r.scripts.as_ref(), r.upstream().map(|u| (u, &rt.upstreams))),
    };
    let claims = identity.claims.as_ref();
    let info = || script::RequestInfo::new(&trace.route, request_id, conn.peer.ip(), claims);
    let (mut scripts, picked) = match script::begin(chain, info, &mut parts, route_upstreams)? {
        script::Begin::Respond(resp) => return Ok(resp),
        script::Begin::Go(session, picked) => (session, picked),
    };
    let route = match target {
        Target::Bff(endpoint) => {
            let env = rt.bff_env();
            let id = endpoint.endpoint.id.clone();
            // Boxed, as the other large and optional branches (mirror, retries, new
            // connections): the request future every connection holds stays small.
            let serve = Box::pin(bff::serve(
                env, conn, request_id, &endpoint, identity, parts, body,
            ));
            let resp =
                crate::trace::child(|| format!("aggregate {id}"), serve, spans::aggregate).await?;
            return match &mut scripts {
                Some(s) => s.on_aggregated(resp).await,
                None => Ok(resp),
            };
        }
        Target::Route(route) => route,
    };
    let action = match &route.action {
        route::Action::Proxy(action) => action,
        route::Action::Answer(answer) => {
            // Phase 5 for a route the gateway answers itself (redirect, static answer).
            let host = crate::net::host::requested(&parts.uri, &parts.headers);
            let inputs = route::answer::Inputs {
                scheme: conn.scheme(),
                host: host.as_deref(),
                uri: &parts.uri,
                headers: &parts.headers,
                claims: identity.claims.as_ref(),
            };
            let mut resp = answer.respond(&parts.method, &inputs);
            if let Some(fields) = &identity.rate_limit {
                fields.apply(resp.headers_mut());
            }
            return match &mut scripts {
                Some(s) => s.on_response(resp).await,
                None => Ok(resp),
            };
        }
    };

    // Phase 5: traffic (an injected fault, the split side), then request headers (a
    // consistent-hash key is read from the client's head first).
    let client = route::traffic::Client {
        peer: conn.peer.ip(),
        tls: conn.tls,
        trusted_proxies: &rt.server.trusted_proxies,
        claims: identity.claims.as_ref(),
    };
    let dispatch =
        route::traffic::dispatch(route, action, client, &mut parts.headers, &mut trace.fault)
            .await?;
    // CQRS (`write_upstream`): writes, and a recent writer's reads, go to the write side. A
    // script's pick (one of the route's upstreams) overrides it and the split.
    let cqrs = match route.cqrs.as_deref() {
        Some(c) => {
            let d = c
                .decide(&parts.method, &parts.headers, identity.claims.as_ref())
                .await;
            Some((c, d))
        }
        None => None,
    };
    let upstream = match (&picked, &cqrs) {
        (Some(p), _) => p,
        (None, Some((c, d))) if d.write => &c.write,
        _ => dispatch.upstream,
    };
    trace.upstream = Some(upstream.name.clone());
    let key = upstream.key(&crate::upstream::balance::KeySource {
        headers: &parts.headers,
        path: parts.uri.path(),
        peer: conn.peer.ip(),
        trusted: &rt.server.trusted_proxies,
        claims: identity.claims.as_deref(),
    });
    let offered = upgrading.then(|| parts.headers.clone());
    // A gRPC client's `grpc-timeout` shortens the deadline; what is left goes upstream.
    // A client's own `grpc-timeout` bounds the whole call, body and trailers included, not
    // only the response head.
    let grpc = crate::grpc::is_grpc(&parts.headers);
    let grpc_deadline = grpc && parts.headers.contains_key(&crate::grpc::GRPC_TIMEOUT);
    let timeout = if grpc {
        crate::grpc::deadline(&mut parts.headers, dispatch.timeout)
    } else {
        dispatch.timeout
    };
    let ends_at = grpc_deadline.then(|| tokio::time::Instant::now() + timeout);
    let mut added = prepare_request_head(rt, conn, action, request_id, &mut parts);

    // Phase 6: forward (and mirror).
    let mut resp = match route.mirror.as_deref() {
        Some(m) if m.wants(&parts, &body, upgrading) => {
            // The mirror copies the map: it says everything.
            added.move_into(&mut parts.headers);
            Box::pin(m.forward(upstream, parts, body, limit, timeout, key)).await?
        }
        _ => {
            // With a retry policy the body is also kept (up to its cap) for a retry.
            let replay_cap = upstream
                .retry_policy(&action.retry)
                .map(|p| p.replay_buffer);
            let (body, reclaim) = if upstream.endpoints().len() > 1 || replay_cap.is_some() {
                RequestBody::reclaimable(body, limit, replay_cap)
            } else {
                (RequestBody::stream(body, limit), None)
            };
            let sent = upstream
                .forward(
                    Request::from_parts(parts, body),
                    &added,
                    reclaim,
                    timeout,
                    key,
                    &mut trace.served,
                    &action.retry,
                )
                .await;
            sent?
        }
    };

    // Phase 7: response headers (and the tunnel for a protocol switch the client offered and
    // the route allows; any other 101 is the upstream breaking the exchange).
    let switched = resp.status() == StatusCode::SWITCHING_PROTOCOLS;
    if switched
        && !offered
            .as_ref()
            .is_some_and(|req| action.upgrades.accepts_switch(req, resp.headers()))
    {
        return Err(GatewayError::UpstreamProtocol {
            upstream: upstream.name.clone(),
            reason: "101 Switching Protocols to a protocol the client did not offer or the route does not allow".into(),
        });
    }
    if let (true, Some(client), Some(slot)) = (switched, client_upgrade, tunnel_slot) {
        let upstream_io = hyper::upgrade::on(&mut resp);
        let tunnel = crate::tunnel::Tunnel {
            slot,
            conn: conn.tunnels.clone(),
            idle: rt.limits.tunnel_idle_timeout,
        };
        tunnel.spawn(&rt.metrics, &route.id, client, upstream_io);
    }
    if let Some((c, d)) = &cqrs {
        c.observe(d, resp.status(), resp.headers()).await;
    }
    let (mut head, body) = resp.into_parts();
    headers::strip_hop_by_hop(&mut head.headers, switched && upgrading);
    if switched && extended_connect {
        crate::tunnel::answer_extended_connect(&mut head);
    }
    if !action.response_headers.is_empty() {
        action.response_headers.apply(&mut head.headers);
    }
    if let Some(fields) = &identity.rate_limit {
        fields.apply(&mut head.headers);
    }
    if let Some(cookie) = dispatch.set_cookie {
        head.headers.append(http::header::SET_COOKIE, cookie);
    }
    let body = match ends_at {
        Some(at) => crate::grpc::bounded_by(Body::Upstream(body), at),
        None => Body::Upstream(body),
    };
    let resp = Response::from_parts(head, body);
    match &mut scripts {
        Some(s) => s.on_response(resp).await,
        None => Ok(resp),
    }
}

/// Whether `name` (lowercase, with `-`) is a header the gateway sets from what it verified:
/// a forwarded claim or the client-certificate header.
fn gateway_set(rt: &Runtime, name: &str) -> bool {
    rt.auth.forwarded_headers.iter().any(|h| h.as_str() == name)
        || rt
            .tls
            .as_ref()
            .and_then(|t| t.forward_client_cert.as_ref())
            .is_some_and(|h| h.as_str() == name)
}

fn content_length(req: &Request<ClientBody>) -> Option<u64> {
    req.headers()
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}
