//! One part's backend call: build the request from its templates, send it through the
//! upstream layer, read a size-capped JSON answer, all before the call's deadline.

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;
use tokio::time::Instant;

use super::shape::Answer;
use super::template::{Inputs, Missing};
use super::{BUDGET_HEADER, Part};
use crate::error::GatewayError;
use crate::filter::headers::slab;
use crate::upstream::error_chain;

/// Why a part has no answer. The token is what clients see in `portico-partial` and `_partial`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Its timeout or the response budget ran out.
    Timeout,
    /// No endpoint of the upstream accepted a connection.
    Unreachable,
    /// The connection broke or the answer was not valid HTTP.
    UpstreamError,
    /// The backend answered with a non-2xx status.
    BadStatus,
    /// The answer was not JSON (content type or syntax).
    NotJson,
    /// The answer was larger than the part's `max_bytes`.
    TooLarge,
    /// A part it reads failed.
    Dependency,
    /// A template value was missing.
    MissingInput,
    /// The answer did not have the shape `fields` expects (the call itself succeeded).
    UnexpectedShape,
}

impl Reason {
    /// Stable token.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Unreachable => "unreachable",
            Reason::UpstreamError => "upstream-error",
            Reason::BadStatus => "bad-status",
            Reason::NotJson => "not-json",
            Reason::TooLarge => "too-large",
            Reason::Dependency => "dependency",
            Reason::MissingInput => "missing-input",
            Reason::UnexpectedShape => "unexpected-shape",
        }
    }
}

/// A part that failed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The reason.
    pub reason: Reason,
    /// The backend's status for `BadStatus`.
    pub status: Option<StatusCode>,
    /// The placeholder that had no value, for `MissingInput`.
    pub input: Option<Box<str>>,
    /// Whether a missing input was the client's to send (a 400 for a required part).
    pub client_input: bool,
}

impl Failure {
    /// A failure with just a reason.
    pub fn new(reason: Reason) -> Failure {
        Failure {
            reason,
            status: None,
            input: None,
            client_input: false,
        }
    }

    fn missing(m: Missing) -> Failure {
        Failure {
            reason: Reason::MissingInput,
            status: None,
            input: Some(m.placeholder),
            client_input: m.from_client,
        }
    }

    fn from_gateway(e: &GatewayError) -> Failure {
        Failure::new(match e {
            GatewayError::UpstreamTimeout { .. } => Reason::Timeout,
            GatewayError::UpstreamUnreachable { .. }
            | GatewayError::NoHealthyUpstream { .. }
            | GatewayError::NoEndpoints { .. } => Reason::Unreachable,
            _ => Reason::UpstreamError,
        })
    }

    /// The error a failed required part ends the request with.
    pub fn into_error(self, part: &Part) -> GatewayError {
        let name = part.name.clone();
        match (self.reason, self.input) {
            (Reason::Timeout, _) => GatewayError::BffPartTimeout { part: name },
            (Reason::MissingInput, Some(input)) if self.client_input => {
                GatewayError::BffMissingInput { part: name, input }
            }
            (reason, _) => GatewayError::BffPartFailed {
                part: name,
                reason: reason.as_str(),
            },
        }
    }
}

/// What every part call of one request reads: the client request and the common headers.
pub struct RequestCtx<'a> {
    /// Template inputs from the client request (`parts` is empty here; see `inputs`).
    pub client: Inputs<'a>,
    /// Headers every backend call gets (request id, forwarding headers, accept).
    pub base: &'a HeaderMap,
    /// The request's id (also in `base`), for the lines about a failed call.
    pub request_id: &'a HeaderValue,
    /// The client connection's peer (for `hash_key = "ip"`).
    pub peer: std::net::IpAddr,
    /// `server.trusted_proxies` (for `hash_key = "ip"`).
    pub trusted: &'a [crate::net::Cidr],
}

impl<'a> RequestCtx<'a> {
    /// Template inputs, given the answers of the parts finished so far.
    pub fn inputs(&self, parts: &'a [Option<Value>]) -> Inputs<'a> {
        Inputs {
            parts,
            ..self.client
        }
    }
}

/// A part call ready to send.
pub struct Prepared {
    path: PathAndQuery,
    headers: HeaderMap,
    body: Bytes,
    until: Instant,
    cache_key: Option<String>,
    /// The upstream's consistent-hash key for this request, if it uses one.
    hash_key: Option<u64>,
    /// The request's id, for the lines about a failed call.
    request_id: HeaderValue,
}

/// Where a part's answer came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The backend, just now.
    Backend,
    /// A fresh cache entry (no call made).
    Cache,
    /// A stale cache entry, because the call failed.
    Stale,
}

/// A finished part call.
pub struct Done {
    /// Part index.
    pub index: usize,
    /// Parsed answer, or why there is none.
    pub result: Result<Answer, Failure>,
    /// Time taken.
    pub took: Duration,
    /// Where the answer came from.
    pub origin: Origin,
}

/// Calls shorter than this are not worth starting: the part times out at once.
const MIN_CALL: Duration = Duration::from_millis(1);

/// Renders a part's request. The call gets min(its timeout, what is left of the budget),
/// and that figure travels to the backend in `portico-budget-ms`.
pub fn prepare(
    part: &Part,
    ctx: &RequestCtx<'_>,
    values: &[Option<Value>],
    deadline: Instant,
) -> Result<Prepared, Failure> {
    let now = Instant::now();
    let until = (now + part.timeout).min(deadline);
    let left = until.saturating_duration_since(now);
    if left < MIN_CALL {
        return Err(Failure::new(Reason::Timeout));
    }
    let inputs = ctx.inputs(values);
    let path = part.path.render(&inputs).map_err(Failure::missing)?;
    // Literal text was checked at load and values are percent-encoded, so this holds. (Copied
    // into the per-thread chunk: a `String` whose length is not its capacity would cost a
    // second allocation on the way to `Bytes`.)
    let path = PathAndQuery::from_maybe_shared(slab::bytes(path.as_bytes()))
        .map_err(|_| Failure::new(Reason::MissingInput))?;
    // A clone copies the common headers' table as it is; appending them one by one hashed
    // every name again (about 200 instructions a header). Room for what is added below.
    let mut headers = ctx.base.clone();
    headers.reserve(part.pass_headers.len() + part.set_headers.len() + 2);
    for name in part.pass_headers.iter() {
        // Verified-claim headers are already in `base`, once.
        if ctx.base.contains_key(name) {
            continue;
        }
        for v in ctx.client.headers.get_all(name) {
            headers.append(name.clone(), v.clone());
        }
    }
    for (name, template) in part.set_headers.iter() {
        let text = template.render(&inputs).map_err(Failure::missing)?;
        let value = HeaderValue::try_from(text).map_err(|_| Failure {
            reason: Reason::MissingInput,
            status: None,
            input: Some(format!("header {name}").into()),
            client_input: false,
        })?;
        headers.insert(name.clone(), value);
    }
    let budget_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
    headers.insert(&BUDGET_HEADER, slab::number(budget_ms));
    let body = match &part.body {
        None => Bytes::new(),
        Some(t) => {
            let value = t.render(&inputs).map_err(Failure::missing)?;
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Bytes::from(serde_json::to_vec(&value).unwrap_or_default())
        }
    };
    let cache_key = part
        .cache
        .as_ref()
        .map(|_| cache_key(part, &path, &headers, &body));
    let hash_key = part.upstream.key(&crate::upstream::balance::KeySource {
        headers: ctx.client.headers,
        path: ctx.client.path,
        peer: ctx.peer,
        trusted: ctx.trusted,
        claims: ctx.client.claims,
    });
    Ok(Prepared {
        path,
        headers,
        body,
        until,
        cache_key,
        hash_key,
        request_id: ctx.request_id.clone(),
    })
}

/// Everything that can change the backend's answer: method, path and query, body, and the
/// headers this part adds (passed or templated); not the per-request ones (id, forwarding).
fn cache_key(part: &Part, path: &PathAndQuery, headers: &HeaderMap, body: &Bytes) -> String {
    let mut key = format!("{} {}\n", part.method, path);
    let names = part
        .pass_headers
        .iter()
        .chain(part.set_headers.iter().map(|(n, _)| n));
    for name in names {
        for v in headers.get_all(name) {
            key.push_str(name.as_str());
            key.push(':');
            key.push_str(&String::from_utf8_lossy(v.as_bytes()));
            key.push('\n');
        }
    }
    key.push_str(&String::from_utf8_lossy(body));
    key
}

/// Runs a prepared call (or answers from the part's cache), as the part's span when the
/// request is traced.
pub async fn execute(index: usize, part: &Part, prepared: Prepared) -> Done {
    let name = || format!("part {}", part.name);
    // Boxed where it is made: the call's state (the upstream exchange, its timers, the body
    // being read) is a few KB, and on its way into the fan-out's `FuturesUnordered` the
    // part's future is moved four times, each a copy of the whole state.
    let call = Box::pin(run(index, part, prepared));
    crate::trace::child(name, call, |d| span_attrs(part, d)).await
}

/// The part span's attributes, and its error (the failure reason) if it failed.
fn span_attrs(part: &Part, d: &Done) -> (Vec<crate::trace::Attr>, Option<String>) {
    use crate::trace::Attr;
    let origin = match d.origin {
        Origin::Backend => "backend",
        Origin::Cache => "cache",
        Origin::Stale => "stale",
    };
    let attrs = vec![
        Attr::Str("portico.part", part.name.to_string()),
        Attr::Str("portico.upstream", part.upstream.name.to_string()),
        Attr::Str("portico.origin", origin.into()),
        Attr::Bool("portico.fallback", d.origin == Origin::Stale),
    ];
    let error = d
        .result
        .as_ref()
        .err()
        .map(|f| f.reason.as_str().to_owned());
    (attrs, error)
}

async fn run(index: usize, part: &Part, mut prepared: Prepared) -> Done {
    let start = Instant::now();
    let done = |result, origin| Done {
        index,
        result,
        took: start.elapsed(),
        origin,
    };
    let cached = part.cache.as_ref().zip(prepared.cache_key.take());
    if let Some((cache, key)) = &cached {
        if let Some(v) = cache.fresh(key, start.into_std()) {
            return done(Ok(v), Origin::Cache);
        }
    }
    let result = fetch(part, prepared).await;
    let Some((cache, key)) = cached else {
        return done(result, Origin::Backend);
    };
    match result {
        Ok(v) => {
            cache.put(key, v.clone(), std::time::Instant::now());
            done(Ok(v), Origin::Backend)
        }
        Err(f) => match cache.stale(&key, std::time::Instant::now()) {
            Some(v) => {
                tracing::debug!(part = %part.name, reason = f.reason.as_str(), "serving a stale answer");
                done(Ok(v), Origin::Stale)
            }
            None => done(Err(f), Origin::Backend),
        },
    }
}

async fn fetch(part: &Part, p: Prepared) -> Result<Answer, Failure> {
    let until = p.until;
    // The request id every part call carries, for the lines about this request (from the
    // request, not looked up in the call's headers, which the call consumes).
    let request_id = p.request_id;
    let id = move || {
        request_id
            .to_str()
            .map_or_else(|_| "-".into(), str::to_owned)
    };
    let up = &part.upstream;
    let sent = match part.hedge_after {
        None => {
            up.call(&part.method, p.path, p.headers, p.body, until, p.hash_key)
                .await
        }
        // Boxed: two calls' state, which parts without `hedge_after` should not carry.
        Some(after) => {
            Box::pin(up.call_hedged(
                &part.method,
                p.path,
                p.headers,
                p.body,
                until,
                p.hash_key,
                after,
            ))
            .await
        }
    };
    let resp = sent.map_err(|e| {
        tracing::debug!(request_id = %id(), part = %part.name, error = %e, "part call failed");
        Failure::from_gateway(&e)
    })?;
    let (head, body) = resp.into_parts();
    if !head.status.is_success() {
        return Err(Failure {
            status: Some(head.status),
            ..Failure::new(Reason::BadStatus)
        });
    }
    if !is_json(head.headers.get(CONTENT_TYPE)) {
        return Err(Failure::new(Reason::NotJson));
    }
    let declared = head
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > part.max_bytes as u64) {
        return Err(Failure::new(Reason::TooLarge));
    }
    let collected = tokio::time::timeout_at(until, Limited::new(body, part.max_bytes).collect())
        .await
        .map_err(|_| Failure::new(Reason::Timeout))?;
    let bytes = match collected {
        Ok(c) => c.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(Failure::new(Reason::TooLarge));
        }
        Err(e) => {
            tracing::debug!(request_id = %id(), part = %part.name, error = %error_chain(&*e), "part body failed");
            return Err(Failure::new(Reason::UpstreamError));
        }
    };
    part.shape
        .parse_answer(&bytes)
        .map_err(|_| Failure::new(Reason::NotJson))
}

/// `application/json` or any `+json` media type.
fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let media = ct.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
        || media
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_media_types() {
        let ct = |s: &'static str| Some(HeaderValue::from_static(s));
        assert!(is_json(ct("application/json").as_ref()));
        assert!(is_json(ct("Application/JSON; charset=utf-8").as_ref()));
        assert!(is_json(ct("application/problem+json").as_ref()));
        assert!(!is_json(ct("text/html").as_ref()));
        assert!(!is_json(ct("application/jsonp").as_ref()));
        assert!(!is_json(None));
    }
}
