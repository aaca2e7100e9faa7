//! Sagas: a BFF endpoint with `saga = true` runs its `[[endpoints.steps]]` in order, each a
//! backend call through the normal upstream layer; when one fails, the compensations of the
//! steps that succeeded run in reverse order, each retried with backoff until it succeeds or
//! its attempts run out (the saga is then `stuck` for an operator: `GET /admin/sagas`,
//! `POST /admin/sagas/{id}/retry-compensation`).
//!
//! Templates and shaping are the BFF's ([`crate::bff::template`], [`crate::bff::shape`]);
//! step names are template sources like part names. The saga runs on its own task, so a
//! client that goes away never leaves a saga half done. Not built yet: the durable log and
//! crash recovery, `Idempotency-Key` (see docs/sagas.md).

pub mod admin;
pub mod compile;
pub mod file;
pub mod registry;
pub mod run;

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
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
    body: Incoming,
) -> Result<Response<Body>, GatewayError> {
    let ep = target.endpoint;
    let budget = crate::bff::budget(ep.deadline, &parts.headers)?;
    let deadline = tokio::time::Instant::now() + budget;
    let body = if saga.reads_body {
        crate::bff::read_json_body(body, env.max_body_bytes, deadline).await?
    } else {
        None
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
    let task = tokio::spawn(run::run(saga.clone(), input, deadline, id, ep.id.clone()));
    let answer = task.await.map_err(|e| GatewayError::SagaFailed {
        saga: "-".into(),
        step: "-".into(),
        reason: if e.is_panic() { "panic" } else { "cancelled" },
        status: StatusCode::INTERNAL_SERVER_ERROR,
        compensation: "unknown",
    })??;
    let mut resp = Response::new(Body::full(answer.to_string()));
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
