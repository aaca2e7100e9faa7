//! A route's say over retries: `retry = { ... }` replaces its upstream's retry policy (same
//! keys, checked against the route's timeout) and `retry_non_idempotent = true` lets
//! non-idempotent methods be retried after they reached the upstream. A route override on an
//! upstream without `[retry]` counts against a budget of its own.

use std::sync::Arc;
use std::time::Duration;

use super::{Budget, RetryPolicy};
use crate::config::Diagnostics;
use crate::config::file::resilience::RetryFile;

/// The retry keys of one route, compiled. The default (no keys) leaves the upstream's policy.
#[derive(Debug, Clone, Default)]
pub struct RouteRetry {
    /// `retry = {...}`: replaces the upstream's policy.
    pub policy: Option<Arc<RetryPolicy>>,
    /// The budget an override uses when its upstream has none.
    pub budget: Option<Arc<Budget>>,
    /// `retry_non_idempotent = true`.
    pub non_idempotent: bool,
}

impl RouteRetry {
    /// No route keys: the upstream's policy as it is.
    pub const NONE: RouteRetry = RouteRetry {
        policy: None,
        budget: None,
        non_idempotent: false,
    };

    /// The policy in force for a request to an upstream whose own policy is `upstream`; `None`
    /// when no retry can happen.
    #[inline]
    pub fn pick<'a>(&'a self, upstream: Option<&'a RetryPolicy>) -> Option<&'a RetryPolicy> {
        self.policy
            .as_deref()
            .or(upstream)
            .filter(|p| p.attempts > 0)
    }
}

/// Compiles a route's `retry` table (at `key`) for a route whose requests may take `timeout`.
pub fn compile(
    d: &mut Diagnostics,
    retry: Option<&RetryFile>,
    non_idempotent: Option<bool>,
    key: &str,
    timeout: Duration,
) -> RouteRetry {
    let Some(r) = retry else {
        return RouteRetry {
            non_idempotent: non_idempotent.unwrap_or(false),
            ..RouteRetry::NONE
        };
    };
    let (policy, budget) = super::compile::compile(d, r, key, timeout);
    RouteRetry {
        policy: Some(Arc::new(policy)),
        budget: Some(Arc::new(Budget::new(budget))),
        non_idempotent: non_idempotent.unwrap_or(false),
    }
}
