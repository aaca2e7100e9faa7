//! Active health checks: one task per endpoint sends `GET path` over the upstream's own
//! transport (TLS for https endpoints) every `interval` (±10% jitter). An endpoint failing
//! `unhealthy_threshold` checks in a row gets no traffic until it passes `healthy_threshold`
//! in a row; a new endpoint counts as healthy until its first check (run at once) fails. A
//! passing check also ends an outlier ejection early. A checker lives as long as some runtime
//! holds it: unchanged across a reload it goes on (state and schedule); dropped, it stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::header::{HOST, HeaderValue, USER_AGENT};
use http::uri::PathAndQuery;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use tokio::sync::Notify;

use super::Endpoint;
use super::balance::rng;
use super::state::{EndpointState, clock_ms};
use super::transport::Transport;
use crate::body::RequestBody;
use crate::net::added::Extra;

/// `[upstreams.NAME.health]`, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// Path (and query) checked.
    pub path: PathAndQuery,
    /// Time between checks of one endpoint.
    pub interval: Duration,
    /// Time allowed for one check.
    pub timeout: Duration,
    /// Failed checks in a row that make an endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// Passed checks in a row that make it healthy again.
    pub healthy_threshold: u32,
    /// Passing statuses, as inclusive ranges.
    pub expected: Vec<(u16, u16)>,
    /// `Host` of checks (default: the endpoint's).
    pub host: Option<HeaderValue>,
}

impl HealthSettings {
    fn passes(&self, status: StatusCode) -> bool {
        let s = status.as_u16();
        self.expected.iter().any(|&(lo, hi)| (lo..=hi).contains(&s))
    }
}

/// How one check ended (index into `state::CHECK_RESULTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckResult {
    /// An expected status.
    Success = 0,
    /// Another status.
    BadStatus = 1,
    /// No answer within `timeout`.
    Timeout = 2,
    /// The connection failed or broke.
    Error = 3,
}

impl CheckResult {
    /// The word logs and metrics use.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckResult::Success => "success",
            CheckResult::BadStatus => "bad_status",
            CheckResult::Timeout => "timeout",
            CheckResult::Error => "error",
        }
    }
}

/// The checker of one endpoint.
pub struct Checker {
    upstream: Arc<str>,
    ep: Endpoint,
    settings: Arc<HealthSettings>,
    transport: Arc<Transport>,
    stop: Arc<Notify>,
    started: AtomicBool,
}

impl Drop for Checker {
    fn drop(&mut self) {
        // The task holds only a weak reference; wake it so it ends now, not after a sleep.
        self.stop.notify_one();
    }
}

impl Checker {
    /// A checker for `ep` (not running until [`Checker::start`]).
    pub fn new(
        upstream: Arc<str>,
        ep: Endpoint,
        settings: Arc<HealthSettings>,
        transport: Arc<Transport>,
    ) -> Checker {
        Checker {
            upstream,
            ep,
            settings,
            transport,
            stop: Arc::new(Notify::new()),
            started: AtomicBool::new(false),
        }
    }

    /// Whether this checker can serve `ep` with `settings` over `transport` (a reload keeps it).
    pub fn same(
        &self,
        ep: &Endpoint,
        settings: &HealthSettings,
        transport: &Arc<Transport>,
    ) -> bool {
        Arc::ptr_eq(&self.ep.state, &ep.state)
            && *self.settings == *settings
            && Arc::ptr_eq(&self.transport, transport)
    }

    /// Starts the check loop on the current tokio runtime (once; no runtime, no checks).
    pub fn start(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let first = if self.ep.state.is_checked() {
            jittered(self.settings.interval)
        } else {
            Duration::ZERO
        };
        rt.spawn(run(Arc::downgrade(self), self.stop.clone(), first));
    }

    async fn check(&self) -> CheckResult {
        let mut req = Request::new(RequestBody::empty());
        *req.uri_mut() = self.settings.path.clone().into();
        let host = self
            .settings
            .host
            .clone()
            .unwrap_or_else(|| self.ep.host_header.clone());
        req.headers_mut().insert(HOST, host);
        req.headers_mut()
            .insert(USER_AGENT, HeaderValue::from_static("portico-health-check"));
        let limit = self.settings.timeout;
        let exchange = async {
            let resp = self.transport.send(&self.ep, req, Extra::NONE).await.ok()?;
            let status = resp.status();
            // Read a small body so the connection can be reused; a large one is cut off.
            let _ = Limited::new(resp.into_body(), 64 * 1024).collect().await;
            Some(status)
        };
        match tokio::time::timeout(limit, exchange).await {
            Err(_) => CheckResult::Timeout,
            Ok(None) => CheckResult::Error,
            Ok(Some(s)) if self.settings.passes(s) => CheckResult::Success,
            Ok(Some(_)) => CheckResult::BadStatus,
        }
    }
}

async fn run(checker: Weak<Checker>, stop: Arc<Notify>, mut wait: Duration) {
    loop {
        tokio::select! {
            _ = stop.notified() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let Some(c) = checker.upgrade() else {
            return;
        };
        let result = c.check().await;
        record(&c.upstream, &c.ep, &c.settings, result);
        wait = jittered(c.settings.interval);
    }
}

fn jittered(interval: Duration) -> Duration {
    let f = rng::with_thread(|r| 0.9 + 0.2 * r.unit());
    interval.mul_f64(f)
}

/// Applies one check's result to the endpoint's state.
pub fn record(upstream: &str, ep: &Endpoint, s: &HealthSettings, result: CheckResult) {
    let st: &Arc<EndpointState> = &ep.state;
    st.metrics.checks[result as usize].inc();
    let first = !st.checked.swap(true, Ordering::AcqRel);
    let now = clock_ms();
    if result == CheckResult::Success {
        st.fail_streak.store(0, Ordering::Relaxed);
        let passes = st.pass_streak.fetch_add(1, Ordering::Relaxed) + 1;
        let mut changed = false;
        if st.is_unhealthy() && passes >= s.healthy_threshold {
            st.unhealthy.store(false, Ordering::Release);
            st.ramp_from.store(now, Ordering::Relaxed);
            tracing::info!(upstream, endpoint = %ep.label(), "endpoint healthy again");
            changed = true;
        }
        if st.ejected_until(now).is_some() {
            // A passing check ends an ejection early.
            st.ejected_until.store(now, Ordering::Release);
            st.ramp_from.store(now, Ordering::Relaxed);
            tracing::info!(upstream, endpoint = %ep.label(), "ejection ended by a passing check");
            changed = true;
        }
        if st.down_until.load(Ordering::Relaxed) > now {
            // It answers again: no need to wait out the refused-connection skip.
            st.down_until.store(now, Ordering::Release);
            changed = true;
        }
        if changed {
            st.refresh_gauge();
            st.board.bump();
        }
        return;
    }
    st.pass_streak.store(0, Ordering::Relaxed);
    let fails = st.fail_streak.fetch_add(1, Ordering::Relaxed) + 1;
    if !st.is_unhealthy() && (first || fails >= s.unhealthy_threshold) {
        st.unhealthy.store(true, Ordering::Release);
        tracing::warn!(upstream, endpoint = %ep.label(), fails, result = result.as_str(), "endpoint unhealthy");
        st.refresh_gauge();
        st.board.bump();
    }
}
