//! Running a saga: forward steps in order, then (on a failure) the compensations of the
//! finished steps in reverse, each retried with doubling backoff.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use tokio::time::Instant;

use super::registry::{self, State};
use super::{Call, Saga};
use crate::bff::template::Inputs;
use crate::error::GatewayError;
use crate::filter::Claims;
use crate::upstream::Upstream;

/// Largest step answer read.
const MAX_ANSWER: usize = 1 << 20;
/// Longest wait between two compensation tries.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Sent on every step and compensation call: backends can drop a repeated call.
static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The client request, owned (the saga outlives the handler's borrow when the client leaves).
pub struct Input {
    /// Verified claims.
    pub claims: Option<Claims>,
    /// Request path.
    pub path: String,
    /// Capture byte ranges in `path`.
    pub captures: Vec<(usize, usize)>,
    /// Query string.
    pub query: Option<String>,
    /// Client headers.
    pub headers: HeaderMap,
    /// Parsed JSON body.
    pub body: Option<Value>,
    /// Headers every call carries (request id, forwarding, forwarded claims).
    pub base: HeaderMap,
}

impl Input {
    fn inputs<'a>(&'a self, steps: &'a [Option<Value>]) -> Inputs<'a> {
        Inputs {
            claims: self.claims.as_deref(),
            path: &self.path,
            captures: &self.captures,
            query: self.query.as_deref(),
            headers: &self.headers,
            body: self.body.as_ref(),
            parts: steps,
        }
    }
}

/// A compensation rendered when its step succeeded: ready to send (and to retry later).
#[derive(Debug, Clone)]
pub struct Pending {
    /// The step it undoes.
    pub step: Arc<str>,
    upstream: Arc<Upstream>,
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
    body: Bytes,
    attempts: u32,
    backoff: Duration,
    timeout: Duration,
}

/// Why a step failed: the reason token and the client's status.
struct Failed {
    reason: &'static str,
    status: StatusCode,
}

/// Runs the saga; `Ok` holds the success answer.
pub async fn run(
    saga: Arc<Saga>,
    input: Input,
    deadline: Instant,
    id: String,
    endpoint: Arc<str>,
) -> Result<Value, GatewayError> {
    let names: Vec<Arc<str>> = saga.steps.iter().map(|s| s.name.clone()).collect();
    registry::start(&id, &endpoint, &names);
    let mut values: Vec<Option<Value>> = vec![None; saga.steps.len()];
    let mut done: Vec<Pending> = Vec::new();
    for (i, step) in saga.steps.iter().enumerate() {
        let until = (Instant::now() + step.timeout).min(deadline);
        let result = match render(&step.call, &input, &values, &id, &step.name, "") {
            Ok((path, headers, body)) => send(&step.call, path, headers, body, until).await,
            Err(()) => Err(Failed {
                reason: "missing-input",
                status: StatusCode::BAD_REQUEST,
            }),
        };
        match result {
            Ok(v) => {
                values[i] = Some(v);
                registry::step_done(&id, i);
                if let Some(c) = &step.compensate {
                    match render(&c.call, &input, &values, &id, &step.name, "-compensate") {
                        Ok((path, headers, body)) => done.push(Pending {
                            step: step.name.clone(),
                            upstream: c.call.upstream.clone(),
                            method: c.call.method.clone(),
                            path,
                            headers,
                            body,
                            attempts: c.attempts,
                            backoff: c.backoff,
                            timeout: c.timeout,
                        }),
                        Err(()) => {
                            tracing::warn!(saga = %id, step = %step.name, "the step's answer lacks what its compensation needs: it cannot be compensated")
                        }
                    }
                }
            }
            Err(f) => {
                tracing::info!(saga = %id, step = %step.name, reason = f.reason, "saga step failed; compensating");
                registry::set_state(&id, State::Compensating, Some(i));
                done.reverse();
                let state = compensate(&id, done).await;
                return Err(GatewayError::SagaFailed {
                    saga: id.into(),
                    step: step.name.clone(),
                    reason: f.reason,
                    status: f.status,
                    compensation: if state == State::Compensated {
                        "done"
                    } else {
                        "stuck"
                    },
                });
            }
        }
    }
    registry::set_state(&id, State::Done, None);
    Ok(super::answer(&saga, values))
}

/// Runs `pending` (already in reverse step order) until one runs out of attempts; the saga is
/// then `stuck` and what is left is kept for a retry. Returns the final state.
pub async fn compensate(id: &str, pending: Vec<Pending>) -> State {
    for (k, p) in pending.iter().enumerate() {
        if !compensate_one(id, p).await {
            registry::stuck(id, pending[k..].to_vec());
            return State::Stuck;
        }
        registry::compensated(id, &p.step);
    }
    registry::set_state(id, State::Compensated, None);
    State::Compensated
}

async fn compensate_one(id: &str, p: &Pending) -> bool {
    let mut wait = p.backoff;
    for attempt in 1..=p.attempts {
        let until = Instant::now() + p.timeout;
        let sent = p
            .upstream
            .call(
                &p.method,
                p.path.clone(),
                p.headers.clone(),
                p.body.clone(),
                until,
                None,
            )
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                // Read the answer so the connection goes back to the pool.
                let _ = tokio::time::timeout_at(until, resp.into_body().collect()).await;
                return true;
            }
            Ok(resp) => {
                tracing::warn!(saga = id, step = %p.step, attempt, status = resp.status().as_u16(), "compensation failed")
            }
            Err(e) => {
                tracing::warn!(saga = id, step = %p.step, attempt, error = %e, "compensation failed")
            }
        }
        if attempt < p.attempts {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_BACKOFF);
        }
    }
    false
}

/// Path, headers and body of a call, from the client's inputs and the steps so far.
fn render(
    call: &Call,
    input: &Input,
    values: &[Option<Value>],
    id: &str,
    step: &str,
    suffix: &str,
) -> Result<(PathAndQuery, HeaderMap, Bytes), ()> {
    let inputs = input.inputs(values);
    let path = call.path.render(&inputs).map_err(|_| ())?;
    let path = PathAndQuery::try_from(path).map_err(|_| ())?;
    let mut headers = input.base.clone();
    if let Ok(v) = HeaderValue::try_from(format!("{id}-{step}{suffix}")) {
        headers.insert(&IDEMPOTENCY_KEY, v);
    }
    let body = match &call.body {
        None => Bytes::new(),
        Some(t) => {
            let v = t.render(&inputs).map_err(|_| ())?;
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
        }
    };
    Ok((path, headers, body))
}

/// One forward call: a 2xx answer's JSON (an empty or non-JSON answer is `null`).
async fn send(
    call: &Call,
    path: PathAndQuery,
    headers: HeaderMap,
    body: Bytes,
    until: Instant,
) -> Result<Value, Failed> {
    let timeout = Failed {
        reason: "timeout",
        status: StatusCode::GATEWAY_TIMEOUT,
    };
    if until <= Instant::now() {
        return Err(timeout);
    }
    let resp = call
        .upstream
        .call(&call.method, path, headers, body, until, None)
        .await
        .map_err(|e| match e {
            GatewayError::UpstreamTimeout { .. } => Failed {
                reason: "timeout",
                status: StatusCode::GATEWAY_TIMEOUT,
            },
            _ => Failed {
                reason: "unreachable",
                status: StatusCode::BAD_GATEWAY,
            },
        })?;
    let status = resp.status();
    if !status.is_success() {
        return Err(Failed {
            reason: "bad-status",
            // A refusal by the service (4xx) is a business conflict; anything else a failure.
            status: if status.is_client_error() {
                StatusCode::CONFLICT
            } else {
                StatusCode::BAD_GATEWAY
            },
        });
    }
    let bytes =
        match tokio::time::timeout_at(until, Limited::new(resp.into_body(), MAX_ANSWER).collect())
            .await
        {
            Err(_) => return Err(timeout),
            Ok(Err(_)) => {
                return Err(Failed {
                    reason: "upstream-error",
                    status: StatusCode::BAD_GATEWAY,
                });
            }
            Ok(Ok(c)) => c.to_bytes(),
        };
    Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}
