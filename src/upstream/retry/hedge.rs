//! Hedged calls (a BFF part's `hedge_after`): the call goes to one endpoint; if it has not
//! answered after `after`, a second try goes to another endpoint while the first keeps
//! running. The first answer (any status) wins and the other try is dropped, which closes its
//! connection. A try that fails leaves the other to finish. The hedge counts against the
//! upstream's retry budget (metric reason `hedge`) and starts only while some of the deadline
//! is left; each leg is one try (with the usual move to another endpoint on a refused
//! connection), the upstream's `attempts` do not add to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response};
use tokio::time::Instant as Deadline;

use super::run::MIN_TRY;
use crate::body::{RequestBody, UpstreamBody};
use crate::error::GatewayError;
use crate::net::added::NONE;
use crate::upstream::balance::Tried;
use crate::upstream::replay::Replay;
use crate::upstream::state::clock_ms;
use crate::upstream::{Served, Upstream};

/// The endpoint a first leg chose (index + 1; 0: none yet), read by the hedge.
#[derive(Debug, Clone, Default)]
pub(in crate::upstream) struct Picked(Arc<AtomicUsize>);

impl Picked {
    pub(in crate::upstream) fn set(&self, index: usize) {
        self.0.store(index + 1, Ordering::Relaxed);
    }

    fn get(&self) -> Option<usize> {
        self.0.load(Ordering::Relaxed).checked_sub(1)
    }
}

/// A request the gateway builds itself: method, path and headers, kept for the second leg.
struct Head<'a> {
    method: &'a Method,
    path: PathAndQuery,
    headers: HeaderMap,
}

impl Head<'_> {
    fn request(&self, body: RequestBody) -> Request<RequestBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.path.clone().into();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

impl Upstream {
    /// Like [`Upstream::call`], hedged after `after` (see the module doc). The caller makes
    /// sure the method is idempotent.
    #[allow(clippy::too_many_arguments)]
    pub async fn call_hedged(
        &self,
        method: &Method,
        path: PathAndQuery,
        headers: HeaderMap,
        body: Bytes,
        until: Deadline,
        key: Option<u64>,
        after: Duration,
    ) -> Result<Response<UpstreamBody>, GatewayError> {
        let permit = self.admit()?;
        let head = Head {
            method,
            path,
            headers,
        };
        let out = self
            .hedged(&head, Replay::Bytes(body), until, key, after)
            .await;
        if let Some(p) = permit {
            p.done(!matches!(&out, Ok(r) if !r.status().is_server_error()));
        }
        out
    }

    async fn hedged(
        &self,
        head: &Head<'_>,
        replay: Replay,
        until: Deadline,
        key: Option<u64>,
        after: Duration,
    ) -> Result<Response<UpstreamBody>, GatewayError> {
        let budget = self.resilience.budget.as_deref();
        if let Some(b) = budget {
            b.request(clock_ms());
        }
        let picked = Picked::default();
        let mut req = head.request(replay.body().unwrap_or_else(RequestBody::empty));
        req.extensions_mut().insert(picked.clone());
        let (mut served, mut tried) = (Served::default(), Tried::default());
        let first = self.send(req, &NONE, &replay, until, key, &mut served, &mut tried);
        tokio::pin!(first);
        tokio::select! {
            r = &mut first => return r,
            () = tokio::time::sleep_until(Deadline::now() + after) => {}
        }
        // No hedge that could not finish, nor one the budget refuses.
        if until.saturating_duration_since(Deadline::now()) < MIN_TRY {
            return first.await;
        }
        if let Some(b) = budget {
            if !b.try_retry(clock_ms()) {
                self.resilience.budget_exhausted();
                return first.await;
            }
        }
        self.resilience.retried("hedge");
        let mut avoid = Tried::default();
        if let Some(i) = picked.get() {
            // With one endpoint the hedge goes to it again (on another connection).
            if self.endpoints().endpoints.len() > 1 {
                avoid.add(i);
            }
        }
        let body = replay.body().unwrap_or_else(RequestBody::empty);
        let mut served2 = Served::default();
        let second = self.send(
            head.request(body),
            &NONE,
            &replay,
            until,
            key,
            &mut served2,
            &mut avoid,
        );
        tokio::pin!(second);
        // The first answer wins; a failed leg leaves the other to finish.
        tokio::select! {
            r = &mut first => match r {
                Ok(resp) => Ok(resp),
                Err(e) => second.await.map_err(|_| e),
            },
            r = &mut second => match r {
                Ok(resp) => Ok(resp),
                Err(e) => first.await.map_err(|_| e),
            },
        }
    }
}
