//! The attempt loop around the single-try send (`Upstream::send`, which already moves a
//! refused connection on to another endpoint): the circuit's admission, then — with a retry
//! policy — another try on a different endpoint after a retriable failure, when the method
//! allows it, the body can be sent again, the backoff plus one `per_try_timeout` fits in what
//! is left of the deadline, and the upstream's budget has a retry left. A refused retry
//! answers with the failure at hand.

use std::time::Duration;

use http::{Request, Response};
use tokio::time::Instant as Deadline;

use super::{Budget, RetryOn, RetryPolicy, RouteRetry, is_idempotent};
use crate::body::{RequestBody, UpstreamBody};
use crate::error::GatewayError;
use crate::net::added::Added;
use crate::upstream::balance::{Tried, rng};
use crate::upstream::circuit::Permit;
use crate::upstream::state::clock_ms;
use crate::upstream::{Replay, Served, Upstream};

/// A retry needs at least this much time left when the policy has no `per_try_timeout`.
pub(super) const MIN_TRY: Duration = Duration::from_millis(1);

impl Upstream {
    /// The retry policy in force for a request through a route with `route`'s keys; `None`
    /// when no retry can happen (the handler then need not keep the client body).
    #[inline]
    pub fn retry_policy<'a>(&'a self, route: &'a RouteRetry) -> Option<&'a RetryPolicy> {
        route.pick(self.settings.resilience.retry.as_deref())
    }

    /// The budget retries of a request through `route` count against: the upstream's, else
    /// the route override's own.
    fn budget<'a>(&'a self, route: &'a RouteRetry) -> Option<&'a Budget> {
        self.resilience
            .budget
            .as_deref()
            .or(route.budget.as_deref())
    }

    /// Sends `req` under the upstream's circuit and retry policy (see the module doc).
    #[allow(clippy::too_many_arguments)]
    pub(in crate::upstream) async fn attempts(
        &self,
        req: Request<RequestBody>,
        added: &Added<'_>,
        replay: Replay,
        deadline: Deadline,
        key: Option<u64>,
        served: &mut Served,
        route: &RouteRetry,
    ) -> Result<Response<UpstreamBody>, GatewayError> {
        let permit = self.admit()?;
        let out = match self.retry_policy(route) {
            None => {
                let mut tried = Tried::default();
                self.send(req, added, &replay, deadline, key, served, &mut tried)
                    .await
            }
            Some(p) => {
                let how = How {
                    budget: self.budget(route),
                    non_idempotent: route.non_idempotent,
                };
                // Boxed: the retry loop's state (the kept head, backoff timer) stays out of
                // the futures of requests whose routes have no retry policy.
                let sending = self.retrying(p, how, req, added, replay, deadline, key, served);
                Box::pin(sending).await
            }
        };
        if let Some(p) = permit {
            p.done(!matches!(&out, Ok(r) if !r.status().is_server_error()));
        }
        out
    }

    /// The circuit's admission: a place (or none without a circuit), or the 503 at once.
    pub(in crate::upstream) fn admit(&self) -> Result<Option<Permit<'_>>, GatewayError> {
        let Some(c) = &self.resilience.circuit else {
            return Ok(None);
        };
        match c.admit() {
            Some(p) => Ok(Some(p)),
            None => {
                self.resilience.overloaded();
                Err(GatewayError::Overloaded {
                    upstream: self.name.clone(),
                })
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn retrying(
        &self,
        p: &RetryPolicy,
        how: How<'_>,
        mut req: Request<RequestBody>,
        added: &Added<'_>,
        replay: Replay,
        deadline: Deadline,
        key: Option<u64>,
        served: &mut Served,
    ) -> Result<Response<UpstreamBody>, GatewayError> {
        if let Some(b) = how.budget {
            b.request(clock_ms());
        }
        let idempotent = how.non_idempotent || is_idempotent(req.method());
        // A protocol switch is never tried twice.
        let upgrade = req.headers().contains_key(http::header::UPGRADE);
        let head = (
            req.method().clone(),
            req.uri().clone(),
            req.headers().clone(),
        );
        served.expose_attempts = p.expose_attempts;
        let mut tried = Tried::default();
        let mut retries = 0;
        loop {
            let until = p
                .per_try_timeout
                .map_or(deadline, |t| (Deadline::now() + t).min(deadline));
            let result = self
                .send(req, added, &replay, until, key, served, &mut tried)
                .await;
            if upgrade || retries >= p.attempts {
                return result;
            }
            let Some(reason) = reason(p, &result, idempotent, until < deadline) else {
                return result;
            };
            let wait = rng::with_thread(|r| p.backoff.delay(retries + 1, r));
            // No retry starts that could not finish before the deadline.
            if Deadline::now() + wait + p.per_try_timeout.unwrap_or(MIN_TRY) > deadline {
                return result;
            }
            let Some(body) = replay.body() else {
                return result;
            };
            if let Some(b) = how.budget {
                if !b.try_retry(clock_ms()) {
                    self.resilience.budget_exhausted();
                    return result;
                }
            }
            self.resilience.retried(reason);
            retries += 1;
            drop(result);
            tokio::time::sleep(wait).await;
            // Every endpoint was tried: start over rather than give up.
            if tried.len() >= self.endpoints().endpoints.len() {
                tried = Tried::default();
            }
            req = Request::new(body);
            *req.method_mut() = head.0.clone();
            *req.uri_mut() = head.1.clone();
            *req.headers_mut() = head.2.clone();
        }
    }
}

/// What the route adds to a policy: the budget in force and `retry_non_idempotent`.
#[derive(Clone, Copy)]
struct How<'a> {
    budget: Option<&'a Budget>,
    non_idempotent: bool,
}

/// The `retry_on` word a try's outcome matches, if the policy retries it.
fn reason(
    p: &RetryPolicy,
    result: &Result<Response<UpstreamBody>, GatewayError>,
    idempotent: bool,
    cut_short: bool,
) -> Option<&'static str> {
    let on = |bit: RetryOn, word: &'static str| p.on.contains(bit).then_some(word);
    match result {
        Ok(resp) if idempotent => p.status_reason(resp.status()),
        // Nothing was sent: any method may go again.
        Err(GatewayError::UpstreamUnreachable { .. }) => {
            on(RetryOn::CONNECT_FAILURE, "connect-failure")
        }
        Err(GatewayError::UpstreamProtocol { .. }) if idempotent => on(RetryOn::RESET, "reset"),
        Err(GatewayError::UpstreamTimeout { .. }) if idempotent && cut_short => {
            on(RetryOn::TIMEOUT, "timeout")
        }
        _ => None,
    }
}
