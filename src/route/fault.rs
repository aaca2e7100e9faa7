//! Fault injection on a route: delays and aborts for a share of requests, or, with
//! `header_control`, the fault a request asks for in `portico-fault-delay-ms` /
//! `portico-fault-abort` (only on routes that allow it; elsewhere those headers mean nothing).
//!
//! A delay counts against the route's timeout: the upstream gets what is left, and a delay as
//! long as the timeout ends the request with the same 504 a slow upstream would cause. An abort
//! answers with problem+json of type `fault-injected` and never reaches the upstream.

pub mod compile;

use std::time::Duration;

use http::{HeaderMap, HeaderName, StatusCode};
use prometheus_client::metrics::counter::Counter;

use super::chance::Chance;
use crate::error::GatewayError;

/// Request header choosing an abort status (routes with `header_control = true`).
pub static ABORT_HEADER: HeaderName = HeaderName::from_static("portico-fault-abort");
/// Request header choosing a delay in milliseconds (routes with `header_control = true`).
pub static DELAY_HEADER: HeaderName = HeaderName::from_static("portico-fault-delay-ms");

/// A compiled `fault = {...}`.
#[derive(Debug)]
pub struct Fault {
    /// Configured delay and its share.
    pub delay: Option<(Duration, Chance)>,
    /// Configured abort status and its share.
    pub abort: Option<(StatusCode, Chance)>,
    /// Whether request headers may choose the fault.
    pub header_control: bool,
    /// `portico_fault_injected_total{route,kind="delay"}`.
    pub delayed: Counter,
    /// `portico_fault_injected_total{route,kind="abort"}`.
    pub aborted: Counter,
}

/// The fault chosen for one request.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Injection {
    /// Wait this long before forwarding.
    pub delay: Option<Duration>,
    /// Answer with this status instead of forwarding.
    pub abort: Option<StatusCode>,
}

impl Injection {
    /// The access-log label: `delay`, `abort`, `delay+abort`, or `None`.
    pub fn label(self) -> Option<&'static str> {
        match (self.delay.is_some(), self.abort.is_some()) {
            (false, false) => None,
            (true, false) => Some("delay"),
            (false, true) => Some("abort"),
            (true, true) => Some("delay+abort"),
        }
    }
}

impl Fault {
    /// Chooses this request's fault. With header control, a request carrying either fault
    /// header gets exactly what it asks for (bad values are ignored); the headers are removed so
    /// they never reach the upstream.
    pub fn decide(&self, headers: &mut HeaderMap) -> Injection {
        if self.header_control {
            let abort = headers
                .remove(&ABORT_HEADER)
                .and_then(|v| v.to_str().ok()?.trim().parse::<u16>().ok())
                .filter(|s| (200..=599).contains(s))
                .and_then(|s| StatusCode::from_u16(s).ok());
            let delay = headers
                .remove(&DELAY_HEADER)
                .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
                .map(Duration::from_millis);
            if abort.is_some() || delay.is_some() {
                return Injection { delay, abort };
            }
        }
        Injection {
            delay: self.delay.filter(|(_, c)| c.hit()).map(|(d, _)| d),
            abort: self.abort.filter(|(_, c)| c.hit()).map(|(s, _)| s),
        }
    }

    /// Applies a fault within the route's `timeout`: waits out a delay, then aborts if asked.
    /// Returns the time left for the upstream. `upstream` names the timeout error.
    pub async fn inject(
        &self,
        injection: Injection,
        timeout: Duration,
        upstream: &std::sync::Arc<str>,
    ) -> Result<Duration, GatewayError> {
        let mut left = timeout;
        if let Some(delay) = injection.delay {
            self.delayed.inc();
            if delay >= timeout {
                tokio::time::sleep(timeout).await;
                return Err(GatewayError::UpstreamTimeout {
                    upstream: upstream.clone(),
                    timeout,
                });
            }
            tokio::time::sleep(delay).await;
            left = timeout - delay;
        }
        if let Some(status) = injection.abort {
            self.aborted.inc();
            return Err(GatewayError::FaultInjected { status });
        }
        Ok(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(header_control: bool) -> Fault {
        Fault {
            delay: None,
            abort: Some((StatusCode::SERVICE_UNAVAILABLE, Chance::percent(0.0))),
            header_control,
            delayed: Counter::default(),
            aborted: Counter::default(),
        }
    }

    #[test]
    fn headers_choose_only_with_header_control() {
        let mut h = HeaderMap::new();
        h.insert(&ABORT_HEADER, "502".parse().unwrap());
        h.insert(&DELAY_HEADER, "20".parse().unwrap());
        let chosen = fault(true).decide(&mut h.clone());
        assert_eq!(chosen.abort, Some(StatusCode::BAD_GATEWAY));
        assert_eq!(chosen.delay, Some(Duration::from_millis(20)));
        assert_eq!(chosen.label(), Some("delay+abort"));
        assert_eq!(fault(false).decide(&mut h), Injection::default());
        let mut bad = HeaderMap::new();
        bad.insert(&ABORT_HEADER, "700".parse().unwrap());
        assert_eq!(fault(true).decide(&mut bad), Injection::default());
        assert!(bad.is_empty(), "fault headers are consumed");
    }

    #[tokio::test]
    async fn delay_eats_into_the_timeout() {
        let f = fault(false);
        let name: std::sync::Arc<str> = "u".into();
        let delay = Injection {
            delay: Some(Duration::from_millis(20)),
            abort: None,
        };
        let left = f
            .inject(delay, Duration::from_secs(1), &name)
            .await
            .unwrap();
        assert_eq!(left, Duration::from_millis(980));
        let err = f
            .inject(delay, Duration::from_millis(10), &name)
            .await
            .unwrap_err();
        assert!(matches!(err, GatewayError::UpstreamTimeout { .. }));
        assert_eq!(f.delayed.get(), 2);
    }
}
