//! Running a saga: forward steps in order, then (on a failure) the compensations of the
//! finished steps in reverse, each retried with doubling backoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;
use tokio::time::Instant;

use super::record::{LoggedCall, Rec};
use super::registry::{self, State};
use super::store::Store;
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
    /// `None`: the upstream the log names is no longer configured (every try fails).
    upstream: Option<Arc<Upstream>>,
    upstream_name: Arc<str>,
    method: Method,
    path: PathAndQuery,
    headers: HeaderMap,
    body: Bytes,
    attempts: u32,
    backoff: Duration,
    timeout: Duration,
}

impl Pending {
    /// The record form, written to the log when its step succeeds.
    pub fn to_logged(&self) -> LoggedCall {
        LoggedCall {
            step: self.step.to_string(),
            up: self.upstream_name.to_string(),
            m: self.method.to_string(),
            p: self.path.to_string(),
            h: self
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
                .collect(),
            b: String::from_utf8_lossy(&self.body).into_owned(),
            att: self.attempts,
            bo_ms: self.backoff.as_millis() as u64,
            to_ms: self.timeout.as_millis() as u64,
        }
    }

    /// Back from the log, against the upstreams configured now.
    pub fn from_logged(l: &LoggedCall, upstreams: &BTreeMap<Arc<str>, Arc<Upstream>>) -> Pending {
        let mut headers = HeaderMap::new();
        for (k, v) in &l.h {
            if let (Ok(k), Ok(v)) = (HeaderName::try_from(k.as_str()), HeaderValue::try_from(v)) {
                headers.append(k, v);
            }
        }
        Pending {
            step: Arc::from(l.step.as_str()),
            upstream: upstreams.get(l.up.as_str()).cloned(),
            upstream_name: Arc::from(l.up.as_str()),
            method: Method::from_bytes(l.m.as_bytes()).unwrap_or(Method::DELETE),
            path: PathAndQuery::try_from(l.p.as_str()).unwrap_or(PathAndQuery::from_static("/")),
            headers,
            body: Bytes::from(l.b.clone()),
            attempts: l.att.max(1),
            backoff: Duration::from_millis(l.bo_ms),
            timeout: Duration::from_millis(l.to_ms.max(1)),
        }
    }
}

/// Why a step failed: the reason token and the client's status.
struct Failed {
    reason: &'static str,
    status: StatusCode,
}

/// Runs the saga; `Ok` holds the success answer. Each finished step (with its rendered
/// compensation) is in the log before the next call; the caller logs the end.
pub async fn run(
    saga: Arc<Saga>,
    input: Input,
    deadline: Instant,
    id: String,
    endpoint: Arc<str>,
) -> Result<Value, GatewayError> {
    let names: Vec<Arc<str>> = saga.steps.iter().map(|s| s.name.clone()).collect();
    registry::start(&id, &endpoint, &names);
    let started_ms = super::idempotency::now_ms();
    let last = saga.steps.len() - 1;
    let mut values: Vec<Option<Value>> = vec![None; saga.steps.len()];
    let mut done: Vec<Pending> = Vec::new();
    for (i, step) in saga.steps.iter().enumerate() {
        let until = (Instant::now() + step.timeout).min(deadline);
        let mut result = match render(&step.call, &input, &values, &id, &step.name, "") {
            Ok((path, headers, body)) => send(&step.call, path, headers, body, until).await,
            Err(()) => Err(Failed {
                reason: "missing-input",
                status: StatusCode::BAD_REQUEST,
            }),
        };
        if let Ok(v) = result.as_mut().map(Value::take) {
            values[i] = Some(v);
            registry::step_done(&id, i);
            let comp = step
                .compensate
                .as_ref()
                .and_then(|c| pending(c, &input, &values, &id, step));
            let logged = comp.as_ref().map(Pending::to_logged);
            done.extend(comp);
            // The first step's record starts the saga in the log; later ones matter only
            // with a compensation; the last step's is the end record.
            if i < last && (i == 0 || logged.is_some()) {
                let first = i == 0;
                let rec = Rec::Step {
                    id: id.clone(),
                    i,
                    ep: first.then(|| endpoint.to_string()),
                    steps: if first {
                        names.iter().map(|n| n.to_string()).collect()
                    } else {
                        Vec::new()
                    },
                    ms: if first { started_ms } else { 0 },
                    comp: logged,
                };
                if let Err(e) = saga.store.append(rec).await {
                    tracing::error!(saga = %id, "saga log: {e}; the saga stops here");
                    result = Err(Failed {
                        reason: "log-error",
                        status: StatusCode::SERVICE_UNAVAILABLE,
                    });
                }
            }
        }
        if let Err(f) = result {
            tracing::info!(saga = %id, step = %step.name, reason = f.reason, "saga step failed; compensating");
            registry::set_state(&id, State::Compensating, Some(i));
            let rec = Rec::Compensating {
                id: id.clone(),
                failed: Some(i),
            };
            if let Err(e) = saga.store.append(rec).await {
                tracing::error!(saga = %id, "saga log: {e}");
            }
            done.reverse();
            let state = compensate(&saga.store, &id, done).await;
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
    Ok(super::answer(&saga, values))
}

/// The step's compensation rendered from what is known once the step succeeded.
fn pending(
    c: &super::Compensation,
    input: &Input,
    values: &[Option<Value>],
    id: &str,
    step: &super::Step,
) -> Option<Pending> {
    match render(&c.call, input, values, id, &step.name, "-compensate") {
        Ok((path, headers, body)) => Some(Pending {
            step: step.name.clone(),
            upstream: Some(c.call.upstream.clone()),
            upstream_name: c.call.upstream.name.clone(),
            method: c.call.method.clone(),
            path,
            headers,
            body,
            attempts: c.attempts,
            backoff: c.backoff,
            timeout: c.timeout,
        }),
        Err(()) => {
            tracing::warn!(saga = %id, step = %step.name, "the step's answer lacks what its compensation needs: it cannot be compensated");
            None
        }
    }
}

/// Runs `pending` (already in reverse step order) until one runs out of attempts; the saga is
/// then `stuck` and what is left is kept for a retry. Each outcome is logged before the next
/// call. Returns the final state.
pub async fn compensate(store: &Arc<Store>, id: &str, pending: Vec<Pending>) -> State {
    let log = |rec: Rec| async move {
        if let Err(e) = store.append(rec).await {
            tracing::error!(saga = %id, "saga log: {e}");
        }
    };
    for (k, p) in pending.iter().enumerate() {
        if !compensate_one(id, p).await {
            log(Rec::Stuck { id: id.into() }).await;
            registry::stuck(id, pending[k..].to_vec(), Some(store.clone()));
            return State::Stuck;
        }
        log(Rec::Compensated {
            id: id.into(),
            step: p.step.to_string(),
        })
        .await;
        registry::compensated(id, &p.step);
    }
    log(Rec::End {
        id: id.into(),
        state: "compensated".into(),
        key: None,
    })
    .await;
    registry::set_state(id, State::Compensated, None);
    State::Compensated
}

async fn compensate_one(id: &str, p: &Pending) -> bool {
    let mut wait = p.backoff;
    for attempt in 1..=p.attempts {
        let until = Instant::now() + p.timeout;
        let Some(upstream) = &p.upstream else {
            tracing::warn!(saga = id, step = %p.step, upstream = %p.upstream_name, "compensation failed: the upstream is no longer configured");
            return false;
        };
        let sent = upstream
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
