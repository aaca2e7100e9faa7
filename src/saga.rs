//! Sagas: a BFF endpoint with `saga = true` runs its `[[endpoints.steps]]` in order, each a
//! backend call through the normal upstream layer; when one fails, the compensations of the
//! steps that succeeded run in reverse order, each retried with backoff until it succeeds or
//! its attempts run out (the saga is then `stuck` for an operator: `GET /admin/sagas`,
//! `POST /admin/sagas/{id}/retry-compensation`).
//!
//! Templates and shaping are the BFF's ([`crate::bff::template`], [`crate::bff::shape`]);
//! step names are template sources like part names. The saga runs on its own task, so a
//! client that goes away never leaves a saga half done. Every transition goes to the durable
//! log of `[saga] dir` ([`log`]) before the next call; at start, sagas the log holds in flight
//! are compensated ([`store`]). `Idempotency-Key` answers are kept in the same log
//! ([`idempotency`]).

pub mod admin;
pub mod compile;
pub mod file;
pub mod idempotency;
pub mod log;
pub mod record;
pub mod registry;
pub mod run;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use crate::body::ClientBody;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Response, StatusCode};
use serde_json::Value;

use crate::bff::json_template::JsonTemplate;
use crate::bff::shape::Shape;
use crate::bff::template::{Template, Var};
use crate::bff::{BffEnv, Target};
use crate::body::Body;
use crate::conn::ConnInfo;
use crate::error::GatewayError;
use crate::filter::Identity;
use crate::upstream::Upstream;

/// The saga's id on a success answer (failures carry `saga_id` in the problem body).
pub static SAGA_ID_HEADER: http::header::HeaderName =
    http::header::HeaderName::from_static("portico-saga-id");

/// A compiled saga: its steps in order.
#[derive(Debug)]
pub struct Saga {
    /// Steps, run one after the other.
    pub steps: Box<[Step]>,
    /// Whether a template reads the client's JSON body.
    pub reads_body: bool,
    /// The durable log (`[saga] dir`) and idempotency keys.
    pub store: Arc<store::Store>,
}

/// One step.
#[derive(Debug)]
pub struct Step {
    /// Name: its key in the answer and its source name in templates.
    pub name: Arc<str>,
    /// The forward call.
    pub call: Call,
    /// Time for the call (the endpoint deadline caps it).
    pub timeout: Duration,
    /// `fields` of the answer shown to the client.
    pub shape: Option<Shape>,
    /// The call that undoes the step.
    pub compensate: Option<Compensation>,
}

/// A templated backend call.
#[derive(Debug)]
pub struct Call {
    /// The upstream.
    pub upstream: Arc<Upstream>,
    /// Method.
    pub method: Method,
    /// Path and query template.
    pub path: Template,
    /// JSON body template.
    pub body: Option<JsonTemplate>,
}

impl Call {
    /// Every template variable the call reads.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.path
            .vars()
            .chain(self.body.iter().flat_map(|b| b.vars()))
    }
}

/// `compensate = { ... }` of a step.
#[derive(Debug)]
pub struct Compensation {
    /// The call.
    pub call: Call,
    /// Tries before the saga is stuck.
    pub attempts: u32,
    /// First wait between tries (doubled each time, at most 10 s).
    pub backoff: Duration,
    /// Time for each try.
    pub timeout: Duration,
}

/// Serves a saga endpoint whose guards have passed.
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    saga: &Arc<Saga>,
    env: BffEnv<'_>,
    conn: &ConnInfo,
    request_id: &HeaderValue,
    target: &Target<'_>,
    identity: Identity,
    parts: http::request::Parts,
    body: ClientBody,
) -> Result<Response<Body>, GatewayError> {
    let ep = target.endpoint;
    if !saga.store.is_open() {
        return Err(GatewayError::SagaLogUnavailable);
    }
    let budget = crate::bff::budget(ep.deadline, &parts.headers)?;
    let deadline = tokio::time::Instant::now() + budget;
    let key = idempotency::key_of(&parts.headers)?;
    let body = if saga.reads_body || key.is_some() {
        crate::bff::read_json_body(body, env.max_body_bytes, deadline).await?
    } else {
        None
    };
    let claim = match key {
        None => None,
        Some(k) => {
            let sub = identity
                .claims
                .as_deref()
                .and_then(|c| c.get("sub"))
                .and_then(Value::as_str);
            let scope = idempotency::scope(&ep.id, sub, &k);
            let fp = idempotency::fingerprint(body.as_ref());
            match saga.store.keys.begin(&scope, &fp) {
                idempotency::Begin::Run => Some((scope, fp)),
                idempotency::Begin::Replay(r) => return Ok(replay(&r)),
                idempotency::Begin::InFlight => return Err(GatewayError::IdempotencyKeyInUse),
                idempotency::Begin::Mismatch => {
                    return Err(GatewayError::IdempotencyKeyMismatch);
                }
            }
        }
    };
    let base = crate::bff::base_headers(env, conn, request_id, &parts.headers);
    let input = run::Input {
        claims: identity.claims.clone(),
        path: parts.uri.path().to_owned(),
        captures: target.captures.clone(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
        base,
    };
    let id = registry::new_id();
    let id_header = HeaderValue::try_from(id.as_str()).ok();
    let request_id = request_id.to_str().unwrap_or("-").to_owned();
    let task = tokio::spawn(finish(
        saga.clone(),
        input,
        deadline,
        id,
        ep.id.clone(),
        claim,
        request_id,
    ));
    let answer = task.await.map_err(|e| GatewayError::SagaFailed {
        saga: "-".into(),
        step: "-".into(),
        reason: if e.is_panic() { "panic" } else { "cancelled" },
        status: StatusCode::INTERNAL_SERVER_ERROR,
        compensation: "unknown",
    })?;
    let mut resp = match answer {
        Answer::Problem(resp) => return Ok(resp),
        Answer::Failed(e) => return Err(e),
        Answer::Done(body) => Response::new(Body::full(body)),
    };
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.headers_mut()
        .insert(http::header::CACHE_CONTROL, ep.cache_control.clone());
    if let Some(id) = id_header {
        resp.headers_mut().insert(&SAGA_ID_HEADER, id);
    }
    if let Some(fields) = &identity.rate_limit {
        fields.apply(resp.headers_mut());
    }
    Ok(resp)
}

/// How a saga ended, for the handler.
enum Answer {
    /// The success body.
    Done(String),
    /// A failure, answered as problem+json by the caller.
    Failed(GatewayError),
    /// A failure already rendered (kept for its idempotency key).
    Problem(Response<Body>),
}

/// Runs the saga on its own task and logs its end: `done` with the idempotency answer in the
/// same record, or (after a failure) the answer on its own.
async fn finish(
    saga: Arc<Saga>,
    input: run::Input,
    deadline: tokio::time::Instant,
    id: String,
    endpoint: Arc<str>,
    claim: Option<(String, String)>,
    request_id: String,
) -> Answer {
    let out = run::run(saga.clone(), input, deadline, id.clone(), endpoint).await;
    let store = &saga.store;
    let exp = idempotency::now_ms() + store.keys.ttl.as_millis() as u64;
    let kept = |status: u16, ct: &str, body: &str| {
        claim.as_ref().map(|(k, fp)| record::KeyResult {
            k: k.clone(),
            fp: fp.clone(),
            status,
            ct: ct.to_owned(),
            body: body.to_owned(),
            exp,
        })
    };
    match out {
        Ok(v) => {
            let body = v.to_string();
            let key = kept(200, "application/json", &body);
            let rec = record::Rec::End {
                id: id.clone(),
                state: "done".into(),
                key: key.clone(),
            };
            if let Err(e) = store.append(rec).await {
                tracing::error!(saga = %id, "saga log: {e}");
            }
            registry::set_state(&id, registry::State::Done, None);
            if let Some((k, _)) = &claim {
                store.keys.finish(k, key);
            }
            Answer::Done(body)
        }
        Err(e) => {
            let Some((k, _)) = &claim else {
                return Answer::Failed(e);
            };
            let resp = e.into_response(&request_id);
            let (head, body) = resp.into_parts();
            let bytes = http_body_util::BodyExt::collect(body)
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            let ct = head
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/problem+json");
            let key = kept(head.status.as_u16(), ct, &String::from_utf8_lossy(&bytes));
            if let Some(r) = &key {
                if let Err(e) = store.append(record::Rec::Key(r.clone())).await {
                    tracing::error!(saga = %id, "saga log: {e}");
                }
            }
            store.keys.finish(k, key);
            Answer::Problem(Response::from_parts(head, Body::full(bytes)))
        }
    }
}

/// The first answer to a request with the same `Idempotency-Key`.
fn replay(r: &record::KeyResult) -> Response<Body> {
    let mut resp = Response::new(Body::full(r.body.clone()));
    *resp.status_mut() = StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK);
    if let Ok(ct) = HeaderValue::try_from(r.ct.as_str()) {
        resp.headers_mut().insert(CONTENT_TYPE, ct);
    }
    resp.headers_mut().insert(
        http::header::HeaderName::from_static("portico-idempotent-replay"),
        HeaderValue::from_static("true"),
    );
    resp
}

/// The success answer: each step's answer, shaped, keyed by step name.
fn answer(saga: &Saga, values: Vec<Option<Value>>) -> Value {
    let mut out = serde_json::Map::new();
    for (step, v) in saga.steps.iter().zip(values) {
        let v = v.unwrap_or(Value::Null);
        let v = match &step.shape {
            Some(s) => s.apply(v).unwrap_or(Value::Null),
            None => v,
        };
        out.insert(step.name.to_string(), v);
    }
    Value::Object(out)
}
