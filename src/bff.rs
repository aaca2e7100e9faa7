//! BFF profiles: per-client endpoints that fan out to several backends under a deadline
//! budget and answer with one JSON object shaped for that client.
//!
//! Request path: [`select`] picks the profile and endpoint; the handler runs the endpoint's
//! guards (auth, rate limits); [`serve`] sets the budget, [`fanout`] runs the parts in plan
//! order ([`call`] makes one backend call through the upstream layer), and [`respond`] shapes
//! the answers and reports what is missing. Everything per-profile is compiled at load
//! ([`compile`]): templates, field paths, the dependency plan, header names.

pub mod cache;
pub mod call;
pub mod compile;
pub mod fanout;
pub mod file;
pub mod json_template;
pub mod metrics;
pub mod plan;
pub mod respond;
pub mod select;
pub mod shape;
pub mod template;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::body::ClientBody;
use bytes::Bytes;
use http::header::{ACCEPT, HOST, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use crate::body::Body;
use crate::conn::ConnInfo;
use crate::error::GatewayError;
use crate::filter::headers::{
    self, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REQUEST_ID,
};
use crate::filter::{Guards, Identity};
use crate::net::Cidr;
use crate::upstream::Upstream;

pub use compile::{Sources, read_profiles};
pub use select::{Lookup, Target, X_CLIENT};

/// Milliseconds left of the budget: sent to every backend call; a client may send it to ask
/// for a shorter budget (never a longer one).
pub static BUDGET_HEADER: HeaderName = HeaderName::from_static("portico-budget-ms");
/// Which parts are missing and why: `recommendations;reason=timeout, orders;reason=bad-status;status=503`.
pub static PARTIAL_HEADER: HeaderName = HeaderName::from_static("portico-partial");
/// Reserved body key with the same report: `"_partial": {"recommendations": "timeout"}`.
pub const PARTIAL_KEY: &str = "_partial";

/// Every compiled profile, indexed for selection. Empty when there are no profiles.
#[derive(Debug, Default)]
pub struct Bff {
    /// Profiles, sorted by name.
    pub profiles: Box<[Arc<Profile>]>,
    /// Mount prefixes (longest first) and their profile index.
    mounts: Box<[(Box<str>, usize)]>,
    /// Profile for clients that name none or an unknown one.
    default: Option<usize>,
    /// `User-Agent` patterns in profile order.
    agents: Box<[(select::Glob, usize)]>,
    prefilter: select::Prefilter,
}

impl Bff {
    /// The profile named `name`.
    pub fn profile(&self, name: &str) -> Option<&Arc<Profile>> {
        self.profiles.iter().find(|p| &*p.name == name)
    }

    /// The default profile's name.
    pub fn default_profile(&self) -> Option<&str> {
        self.default.map(|i| &*self.profiles[i].name)
    }

    /// Ids of every endpoint (their request series are named like routes).
    pub fn endpoint_ids(&self) -> impl Iterator<Item = &str> {
        self.profiles
            .iter()
            .flat_map(|p| p.endpoints.iter().map(|e| &*e.id))
    }
}

/// The BFF endpoints as text, one per line, for `portico routes`.
pub fn describe(bff: &Bff) -> String {
    use std::fmt::Write as _;
    if bff.profiles.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nPROFILE\tMOUNT\tMETHOD\tPATH\tDEADLINE\tPARTS\n");
    for p in bff.profiles.iter() {
        for e in p.endpoints.iter() {
            let parts: Vec<String> = e
                .parts
                .iter()
                .map(|x| {
                    let req = if x.required { "!" } else { "" };
                    format!("{}{req}->{}", x.name, x.upstream.name)
                })
                .collect();
            let _ = writeln!(
                out,
                "{}{}\t{}\t{}\t{}\t{:?}\t{}",
                p.name,
                if bff.default_profile() == Some(&*p.name) {
                    "*"
                } else {
                    ""
                },
                p.mount.as_deref().unwrap_or("-"),
                e.method,
                e.path.as_str(),
                e.deadline,
                parts.join(" ")
            );
        }
    }
    out
}

/// One client profile (`bff/NAME.toml`).
#[derive(Debug)]
pub struct Profile {
    /// Name (also its `x-client` value).
    pub name: Arc<str>,
    /// Owned path prefix, if mounted.
    pub mount: Option<Box<str>>,
    /// Fingerprint of the profile file: equal across a reload means unchanged (the reload
    /// summary lists profiles added, removed and changed).
    pub fingerprint: u64,
    /// Endpoints in file order.
    pub endpoints: Box<[Endpoint]>,
}

/// One endpoint of a profile.
#[derive(Debug)]
pub struct Endpoint {
    /// `profile METHOD /path`, for logs.
    pub id: Arc<str>,
    /// Method (GET also takes HEAD).
    pub method: Method,
    /// Path template below the mount.
    pub path: select::EndpointPath,
    /// Budget for the whole answer.
    pub deadline: Duration,
    /// Auth and rate limits, run by the handler before any part is called.
    pub guards: Guards,
    /// Parts in file order.
    pub parts: Box<[Part]>,
    /// Which part waits for which.
    pub plan: plan::Plan,
    /// Whether a template reads the client's JSON body.
    pub reads_body: bool,
    /// Whether a part is flattened (key clashes then need tracking).
    pub has_flatten: bool,
    /// Starting capacity of the response buffer.
    pub size_hint: usize,
    /// Result counters (complete, partial, failed).
    pub stats: metrics::EndpointStats,
    /// Request count and latency series under the endpoint's id, as for routes.
    pub metrics: crate::metrics::RouteMetrics,
    /// `scripts = [...]` (the endpoint's, else its profile's); `None` costs nothing.
    pub scripts: Option<crate::script::Chain>,
    /// `Cache-Control` of the answers (`cache_control`, default `private, no-store`).
    pub cache_control: HeaderValue,
    /// `saga = true`: the steps run instead of parts; `None` costs nothing.
    pub saga: Option<Arc<crate::saga::Saga>>,
}

/// One backend call of an endpoint.
#[derive(Debug)]
pub struct Part {
    /// Name: its key in the answer.
    pub name: Arc<str>,
    /// `"name":`, written once at load.
    pub key_json: Box<str>,
    /// The upstream cluster.
    pub upstream: Arc<Upstream>,
    /// Method of the backend call.
    pub method: Method,
    /// Path and query template.
    pub path: template::Template,
    /// JSON body template.
    pub body: Option<json_template::JsonTemplate>,
    /// Client headers passed on.
    pub pass_headers: Box<[HeaderName]>,
    /// Headers set from templates.
    pub set_headers: Box<[(HeaderName, template::Template)]>,
    /// Time for the call (head and body), before the budget caps it.
    pub timeout: Duration,
    /// Whether a failure fails the request.
    pub required: bool,
    /// `fields`, `max_items`, `rename`.
    pub shape: shape::Shape,
    /// Merge into the top level.
    pub flatten: bool,
    /// Value used when the part fails.
    pub default: Option<Value>,
    /// Value served when the part fails, reported as `fallback`.
    pub fallback: Option<Value>,
    /// `hedge_after`: when a second try starts (idempotent parts only).
    pub hedge_after: Option<std::time::Duration>,
    /// Largest answer read.
    pub max_bytes: usize,
    /// Answer cache, if configured.
    pub cache: Option<cache::PartCache>,
    /// Outcome and latency series.
    pub stats: metrics::PartStats,
}

/// What a BFF request reads besides its endpoint: process-wide settings.
#[derive(Debug, Clone, Copy)]
pub struct BffEnv<'a> {
    /// Largest client body read (`limits.max_body_bytes`).
    pub max_body_bytes: u64,
    /// Peers whose forwarding headers are trusted.
    pub trusted_proxies: &'a [Cidr],
    /// Verified-claim headers the guards set, passed on to every part call.
    pub forwarded_claims: &'a [HeaderName],
}

/// Serves a BFF request whose guards have passed: budget, fan-out, shaped answer.
pub async fn serve(
    env: BffEnv<'_>,
    conn: &ConnInfo,
    request_id: &HeaderValue,
    target: &Target<'_>,
    identity: Identity,
    parts: http::request::Parts,
    body: ClientBody,
) -> Result<Response<Body>, GatewayError> {
    if let Some(saga) = &target.endpoint.saga {
        return crate::saga::serve(saga, env, conn, request_id, target, identity, parts, body)
            .await;
    }
    let started = Instant::now();
    let ep = target.endpoint;
    let rate_limit_fields = identity.rate_limit.clone();
    let if_none_match = matches!(parts.method, Method::GET | Method::HEAD)
        .then(|| parts.headers.get(http::header::IF_NONE_MATCH).cloned())
        .flatten();
    let result = aggregate(env, conn, request_id, target, identity, parts, body)
        .await
        .and_then(|run| respond::respond(ep, run, started.elapsed()));
    match result {
        Ok((mut resp, completion)) => {
            metrics::record_endpoint(&ep.stats, completion);
            if let Some(fields) = &rate_limit_fields {
                fields.apply(resp.headers_mut());
            }
            let etag = resp.headers().get(http::header::ETAG);
            if let (Some(inm), Some(etag)) = (&if_none_match, etag) {
                if respond::not_modified(inm, etag) {
                    return Ok(respond::into_not_modified(resp));
                }
            }
            Ok(resp)
        }
        Err(e) => {
            metrics::record_endpoint(&ep.stats, metrics::Completion::Failed);
            Err(e)
        }
    }
}

async fn aggregate(
    env: BffEnv<'_>,
    conn: &ConnInfo,
    request_id: &HeaderValue,
    target: &Target<'_>,
    identity: Identity,
    parts: http::request::Parts,
    body: ClientBody,
) -> Result<fanout::Run, GatewayError> {
    let ep = target.endpoint;
    let budget = budget(ep.deadline, &parts.headers)?;
    let deadline = tokio::time::Instant::now() + budget;
    let body = if ep.reads_body {
        read_json_body(body, env.max_body_bytes, deadline).await?
    } else {
        None
    };
    let base = base_headers(env, conn, request_id, &parts.headers);
    let ctx = call::RequestCtx {
        client: template::Inputs {
            claims: identity.claims.as_deref(),
            path: parts.uri.path(),
            captures: &target.captures,
            query: parts.uri.query(),
            headers: &parts.headers,
            body: body.as_ref(),
            parts: &[],
        },
        base: &base,
        request_id,
        peer: conn.peer.ip(),
        trusted: env.trusted_proxies,
    };
    fanout::run(ep, &ctx, deadline).await
}

/// The endpoint's deadline, or the shorter budget the client asked for.
pub fn budget(deadline: Duration, headers: &HeaderMap) -> Result<Duration, GatewayError> {
    let Some(asked) = headers.get(&BUDGET_HEADER) else {
        return Ok(deadline);
    };
    let ms: u64 = asked
        .to_str()
        .ok()
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or(GatewayError::BadRequest(
            "portico-budget-ms must be a whole number of milliseconds.",
        ))?;
    Ok(deadline.min(Duration::from_millis(ms)))
}

/// Headers every part call carries: request id, forwarding headers (as the proxy sets them),
/// `accept: application/json`, and the verified-claim headers of `forward_claims` (the guards
/// removed client-sent copies and set verified ones, as for routes).
pub(crate) fn base_headers(
    env: BffEnv<'_>,
    conn: &ConnInfo,
    request_id: &HeaderValue,
    client: &HeaderMap,
) -> HeaderMap {
    let mut h = HeaderMap::with_capacity(8);
    h.insert(ACCEPT, HeaderValue::from_static("application/json"));
    h.insert(&X_REQUEST_ID, request_id.clone());
    // The client's forwarding values go in first when `forward` keeps them, that is from a
    // trusted proxy; from anyone else it replaces them, so they are not copied (three lookups).
    if headers::is_trusted(env.trusted_proxies, conn.peer.ip()) {
        for name in [&X_FORWARDED_FOR, &X_FORWARDED_PROTO, &X_FORWARDED_HOST] {
            for v in client.get_all(name) {
                h.append(name.clone(), v.clone());
            }
        }
    }
    headers::forward(&mut h, conn, env.trusted_proxies, client.get(HOST).cloned());
    for name in env.forwarded_claims {
        for v in client.get_all(name) {
            h.append(name.clone(), v.clone());
        }
    }
    h
}

/// Reads the client's body as JSON (empty: `None`), within the size limit and the budget.
pub(crate) async fn read_json_body(
    body: ClientBody,
    limit: u64,
    deadline: tokio::time::Instant,
) -> Result<Option<Value>, GatewayError> {
    let cap = usize::try_from(limit).unwrap_or(usize::MAX);
    let bytes: Bytes =
        match tokio::time::timeout_at(deadline, Limited::new(body, cap).collect()).await {
            Err(_) => {
                return Err(GatewayError::BadRequest(
                    "The request body did not arrive within the deadline.",
                ));
            }
            Ok(Err(e))
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                return Err(GatewayError::PayloadTooLarge { limit });
            }
            Ok(Err(_)) => {
                return Err(GatewayError::BadRequest(
                    "The request body could not be read.",
                ));
            }
            Ok(Ok(c)) => c.to_bytes(),
        };
    if bytes.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|_| GatewayError::BadRequest("The request body must be JSON."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_budget_can_only_shrink() {
        let d = Duration::from_millis(250);
        let mut h = HeaderMap::new();
        assert_eq!(budget(d, &h).unwrap(), d);
        h.insert(&BUDGET_HEADER, HeaderValue::from_static("100"));
        assert_eq!(budget(d, &h).unwrap(), Duration::from_millis(100));
        h.insert(&BUDGET_HEADER, HeaderValue::from_static("9000"));
        assert_eq!(budget(d, &h).unwrap(), d);
        for bad in ["-1", "1.5", "", "10ms", "99999999999999999999999"] {
            h.insert(&BUDGET_HEADER, HeaderValue::from_static(bad));
            assert!(budget(d, &h).is_err(), "{bad}");
        }
    }
}
