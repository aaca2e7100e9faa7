//! Passive outlier ejection: an endpoint that fails `consecutive_failures` requests in a row
//! (5xx answers, refused or reset connections, timeouts) — or `consecutive_gateway_errors`
//! 502/503/504 answers and transport errors — is taken out of rotation for `base_ejection`
//! times the number of its ejections (capped by `max_ejection`; the count decays by one per
//! `base_ejection` spent healthy), unless that would eject more than `max_ejected_percent` of
//! the upstream (one endpoint may always be ejected).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::StatusCode;

use super::Endpoint;
use super::state::{EjectReason, EndpointState, clock_ms};

/// `[upstreams.NAME.outlier]`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierSettings {
    /// Failures in a row that eject (5xx and transport errors).
    pub consecutive_failures: Option<u32>,
    /// Gateway errors in a row that eject (502/503/504 and transport errors).
    pub consecutive_gateway_errors: Option<u32>,
    /// First ejection's length.
    pub base_ejection: Duration,
    /// Longest ejection.
    pub max_ejection: Duration,
    /// Most endpoints ejected at once, in percent.
    pub max_ejected_percent: u8,
}

/// How one attempt on an endpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response head with this status.
    Status(StatusCode),
    /// The connection could not be opened.
    ConnectFailed,
    /// The exchange broke after connecting (reset, invalid response).
    Reset,
    /// No response head before the deadline.
    Timeout,
}

impl Outcome {
    /// A 5xx answer or a transport error.
    pub fn is_failure(self) -> bool {
        match self {
            Outcome::Status(s) => s.is_server_error(),
            Outcome::ConnectFailed | Outcome::Reset | Outcome::Timeout => true,
        }
    }

    /// A 502/503/504 answer or a transport error.
    pub fn is_gateway_error(self) -> bool {
        match self {
            Outcome::Status(s) => matches!(s.as_u16(), 502..=504),
            Outcome::ConnectFailed | Outcome::Reset | Outcome::Timeout => true,
        }
    }
}

/// Records the outcome of an attempt on `eps[i]`: counts, the refused-connection skip for
/// `fail_timeout`, and outlier ejection when configured.
pub fn report(
    eps: &[Endpoint],
    i: usize,
    outcome: Outcome,
    outlier: Option<&OutlierSettings>,
    fail_timeout: Duration,
) {
    let st = &eps[i].state;
    let failed = outcome.is_failure();
    if failed {
        st.failures.fetch_add(1, Ordering::Relaxed);
    }
    if outcome == Outcome::ConnectFailed {
        let until = clock_ms() + fail_timeout.as_millis() as u64;
        st.block(until, EjectReason::ConnectRefused);
    }
    let Some(o) = outlier else {
        return;
    };
    if !failed {
        // Only write when there is a streak to end (keeps the success path read-only).
        if st.consecutive_failures.load(Ordering::Relaxed) != 0 {
            st.consecutive_failures.store(0, Ordering::Relaxed);
        }
        if st.consecutive_gateway.load(Ordering::Relaxed) != 0 {
            st.consecutive_gateway.store(0, Ordering::Relaxed);
        }
        return;
    }
    let failures = st.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
    let gateway = if outcome.is_gateway_error() {
        st.consecutive_gateway.fetch_add(1, Ordering::Relaxed) + 1
    } else {
        st.consecutive_gateway.store(0, Ordering::Relaxed);
        0
    };
    let reason = if o.consecutive_failures.is_some_and(|t| failures >= t) {
        EjectReason::ConsecutiveFailures
    } else if o.consecutive_gateway_errors.is_some_and(|t| gateway >= t) {
        EjectReason::ConsecutiveGatewayErrors
    } else {
        return;
    };
    eject(eps, i, reason, o, clock_ms());
}

fn eject(eps: &[Endpoint], i: usize, reason: EjectReason, o: &OutlierSettings, now: u64) {
    let st: &Arc<EndpointState> = &eps[i].state;
    let prev_end = st.ejected_until.load(Ordering::Acquire);
    if prev_end > now {
        return;
    }
    let ejected = eps
        .iter()
        .filter(|e| e.state.ejected_until(now).is_some())
        .count();
    if ejected > 0 && (ejected + 1) * 100 > usize::from(o.max_ejected_percent) * eps.len() {
        tracing::debug!(endpoint = %eps[i].label(), ejected, "not ejected: max_ejected_percent reached");
        return;
    }
    let base = (o.base_ejection.as_millis() as u64).max(1);
    // One ejection forgiven per base_ejection spent out of ejection since the last one ended.
    let forgiven = if prev_end == 0 {
        u64::MAX
    } else {
        (now - prev_end) / base
    };
    let before = u64::from(st.ejections.load(Ordering::Relaxed));
    let count = before.saturating_sub(forgiven) + 1;
    let length = (base.saturating_mul(count)).min(o.max_ejection.as_millis() as u64);
    let until = now + length;
    if st
        .ejected_until
        .compare_exchange(prev_end, until, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return; // another request ejected it meanwhile
    }
    st.ejections
        .store(u32::try_from(count).unwrap_or(u32::MAX), Ordering::Relaxed);
    st.consecutive_failures.store(0, Ordering::Relaxed);
    st.consecutive_gateway.store(0, Ordering::Relaxed);
    // Back from ejection, it ramps up again (when slow start is on).
    st.ramp_from.store(until, Ordering::Relaxed);
    tracing::warn!(endpoint = %eps[i].label(), reason = reason.as_str(), ejection = count, for_ms = length, "endpoint ejected");
    st.block(until, reason);
}
