//! Retry policy of an upstream (`[upstreams.NAME.retry]`), compiled: which failures are
//! retried, how many times, the per-try timeout, full-jitter backoff, the body replay cap and
//! the retry budget. `backoff` and `budget` hold the request-time pieces; `compile` reads the
//! file types.

pub mod backoff;
pub mod budget;
pub mod compile;
pub(in crate::upstream) mod hedge;
pub mod route;
mod run;

use std::time::Duration;

use http::StatusCode;

pub use backoff::Backoff;
pub use budget::{Budget, BudgetSettings};
pub use route::RouteRetry;

/// Most retries a policy may ask for.
pub const MAX_ATTEMPTS: u32 = 10;
/// Default body replay cap.
pub const DEFAULT_REPLAY_BUFFER: u64 = 64 * 1024;

/// Failures a retry may follow (`retry_on`), as bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(u8);

impl RetryOn {
    /// The connection could not be opened (nothing was sent).
    pub const CONNECT_FAILURE: RetryOn = RetryOn(1);
    /// The exchange broke after connecting.
    pub const RESET: RetryOn = RetryOn(2);
    /// A try ran out of its `per_try_timeout`.
    pub const TIMEOUT: RetryOn = RetryOn(4);
    /// Any 5xx answer.
    pub const STATUS_5XX: RetryOn = RetryOn(8);
    /// A 502, 503 or 504 answer.
    pub const GATEWAY_ERROR: RetryOn = RetryOn(16);
    /// An answer whose status is in `statuses`.
    pub const RETRIABLE_STATUS: RetryOn = RetryOn(32);

    /// The config words and their bits.
    pub const WORDS: [(&'static str, RetryOn); 6] = [
        ("connect-failure", RetryOn::CONNECT_FAILURE),
        ("reset", RetryOn::RESET),
        ("timeout", RetryOn::TIMEOUT),
        ("5xx", RetryOn::STATUS_5XX),
        ("gateway-error", RetryOn::GATEWAY_ERROR),
        ("retriable-status", RetryOn::RETRIABLE_STATUS),
    ];

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: RetryOn) -> bool {
        self.0 & other.0 == other.0
    }

    /// Both sets.
    pub fn with(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }
}

/// A compiled retry policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try (0: off).
    pub attempts: u32,
    /// Failures retried.
    pub on: RetryOn,
    /// Statuses `retriable-status` retries.
    pub statuses: Box<[u16]>,
    /// Time one try may take; `None`: what is left of the timeout.
    pub per_try_timeout: Option<Duration>,
    /// Bounds of the jittered wait before a retry.
    pub backoff: Backoff,
    /// Largest request body kept so it can be sent again.
    pub replay_buffer: u64,
    /// `portico-attempts` on answers that took more than one attempt.
    pub expose_attempts: bool,
}

impl RetryPolicy {
    /// Which `retry_on` word, if any, makes an answer with `status` worth a retry.
    pub fn status_reason(&self, status: StatusCode) -> Option<&'static str> {
        let code = status.as_u16();
        if self.on.contains(RetryOn::RETRIABLE_STATUS) && self.statuses.contains(&code) {
            return Some("retriable-status");
        }
        if self.on.contains(RetryOn::GATEWAY_ERROR) && (502..=504).contains(&code) {
            return Some("gateway-error");
        }
        if self.on.contains(RetryOn::STATUS_5XX) && status.is_server_error() {
            return Some("5xx");
        }
        None
    }
}

/// Methods retried after the request reached the upstream.
pub use crate::net::is_idempotent;

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(on: RetryOn, statuses: &[u16]) -> RetryPolicy {
        RetryPolicy {
            attempts: 2,
            on,
            statuses: statuses.into(),
            per_try_timeout: None,
            backoff: Backoff::default(),
            replay_buffer: DEFAULT_REPLAY_BUFFER,
            expose_attempts: false,
        }
    }

    #[test]
    fn statuses_match_their_words() {
        let gw = policy(RetryOn::GATEWAY_ERROR, &[]);
        assert_eq!(
            gw.status_reason(StatusCode::SERVICE_UNAVAILABLE),
            Some("gateway-error")
        );
        assert_eq!(gw.status_reason(StatusCode::INTERNAL_SERVER_ERROR), None);
        let any = policy(RetryOn::STATUS_5XX, &[]);
        assert_eq!(
            any.status_reason(StatusCode::INTERNAL_SERVER_ERROR),
            Some("5xx")
        );
        assert_eq!(any.status_reason(StatusCode::OK), None);
        let listed = policy(RetryOn::RETRIABLE_STATUS, &[409]);
        assert_eq!(
            listed.status_reason(StatusCode::CONFLICT),
            Some("retriable-status")
        );
        assert_eq!(listed.status_reason(StatusCode::BAD_GATEWAY), None);
    }
}
