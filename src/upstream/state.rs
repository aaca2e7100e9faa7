//! Per-endpoint state that outlives a reload while the endpoint stays configured: active-check
//! verdict, ejections, in-flight and request counts, the slow-start ramp, and its metric series.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::metrics::Metrics;

/// Milliseconds since the process started (monotonic); 0 is never a real deadline.
pub fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| Instant::now() - std::time::Duration::from_millis(1));
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Bumped whenever an endpoint of an upstream changes usability, so the balancer knows to
/// rebuild its snapshot; shared by all generations of one upstream.
#[derive(Debug, Default)]
pub struct Board {
    epoch: AtomicU64,
}

impl Board {
    /// The current epoch.
    #[inline]
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Marks a change.
    pub fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }
}

/// Why an endpoint was taken out of rotation (the `reason` label of ejections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EjectReason {
    /// `outlier.consecutive_failures` 5xx answers or transport errors in a row.
    ConsecutiveFailures,
    /// `outlier.consecutive_gateway_errors` 502/503/504 answers or transport errors in a row.
    ConsecutiveGatewayErrors,
    /// The endpoint refused a connection (skipped for `fail_timeout`).
    ConnectRefused,
}

impl EjectReason {
    const ALL: [EjectReason; 3] = [
        EjectReason::ConsecutiveFailures,
        EjectReason::ConsecutiveGatewayErrors,
        EjectReason::ConnectRefused,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            EjectReason::ConsecutiveFailures => "consecutive_failures",
            EjectReason::ConsecutiveGatewayErrors => "consecutive_gateway_errors",
            EjectReason::ConnectRefused => "connect_refused",
        }
    }
}

/// Results of an active check (the `result` label of `portico_health_checks_total`).
pub const CHECK_RESULTS: [&str; 4] = ["success", "bad_status", "timeout", "error"];

type Labels2 = [(&'static str, String); 2];
type Labels3 = [(&'static str, String); 3];

/// The metric series of one endpoint; dropped with the endpoint's state (removed endpoints
/// stop being exported).
pub struct EndpointMetrics {
    /// `portico_upstream_endpoint_healthy`: 1 while the endpoint takes traffic.
    pub healthy: Gauge,
    /// `portico_upstream_ejections_total` by [`EjectReason`].
    pub ejections: [Counter; 3],
    /// `portico_health_checks_total` by [`CHECK_RESULTS`].
    pub checks: [Counter; 4],
    families: Option<(Families, String, String)>,
}

/// The endpoint families, registered once per gateway.
#[derive(Clone)]
pub struct Families {
    healthy: Family<Labels2, Gauge>,
    ejections: Family<Labels3, Counter>,
    checks: Family<Labels3, Counter>,
}

impl Families {
    /// Registers (or finds) the families in `metrics`.
    pub fn of(metrics: &Metrics) -> Families {
        Families {
            healthy: metrics.family(
                "portico_upstream_endpoint_healthy",
                "1 when the endpoint takes traffic (passing active checks, not ejected)",
                Family::default,
            ),
            ejections: metrics.family(
                "portico_upstream_ejections",
                "Endpoints taken out of rotation, by reason",
                Family::default,
            ),
            checks: metrics.family(
                "portico_health_checks",
                "Active health checks, by result (success, bad_status, timeout, error)",
                Family::default,
            ),
        }
    }
}

impl EndpointMetrics {
    /// Series registered nowhere (upstreams built outside a gateway).
    pub fn detached() -> EndpointMetrics {
        EndpointMetrics {
            healthy: Gauge::default(),
            ejections: Default::default(),
            checks: Default::default(),
            families: None,
        }
    }

    /// The series of `endpoint` of `upstream`.
    pub fn new(f: &Families, upstream: &str, endpoint: &str) -> EndpointMetrics {
        let (u, e) = (upstream.to_owned(), endpoint.to_owned());
        let healthy = f
            .healthy
            .get_or_create_owned(&[("upstream", u.clone()), ("endpoint", e.clone())]);
        healthy.set(1);
        let three = |fam: &Family<Labels3, Counter>, label: &'static str, v: &str| {
            fam.get_or_create_owned(&[
                ("upstream", u.clone()),
                ("endpoint", e.clone()),
                (label, v.to_owned()),
            ])
        };
        EndpointMetrics {
            ejections: EjectReason::ALL.map(|r| three(&f.ejections, "reason", r.as_str())),
            checks: CHECK_RESULTS.map(|r| three(&f.checks, "result", r)),
            healthy,
            families: Some((f.clone(), u, e)),
        }
    }
}

impl Drop for EndpointMetrics {
    fn drop(&mut self) {
        let Some((f, u, e)) = &self.families else {
            return;
        };
        f.healthy
            .remove(&[("upstream", u.clone()), ("endpoint", e.clone())]);
        for r in EjectReason::ALL {
            f.ejections.remove(&[
                ("upstream", u.clone()),
                ("endpoint", e.clone()),
                ("reason", r.as_str().to_owned()),
            ]);
        }
        for r in CHECK_RESULTS {
            f.checks.remove(&[
                ("upstream", u.clone()),
                ("endpoint", e.clone()),
                ("result", r.to_owned()),
            ]);
        }
    }
}

/// What the gateway knows about one endpoint now. Shared by every runtime generation that
/// has the endpoint (same upstream, same address).
pub struct EndpointState {
    /// Change notice for the upstream's balancer.
    pub board: Arc<Board>,
    /// Requests sent and not yet answered (to the response head).
    pub in_flight: AtomicU32,
    /// Requests sent since start.
    pub requests: AtomicU64,
    /// Failed requests (5xx answers, transport errors, timeouts) since start.
    pub failures: AtomicU64,
    /// The active checks' verdict: failing.
    pub(crate) unhealthy: AtomicBool,
    /// At least one active check has finished.
    pub(crate) checked: AtomicBool,
    pub(crate) pass_streak: AtomicU32,
    pub(crate) fail_streak: AtomicU32,
    /// Outlier ejection end (ms on [`clock_ms`]); in the past when not ejected.
    pub(crate) ejected_until: AtomicU64,
    /// Ejections counted for the next ejection's length (decays while healthy).
    pub(crate) ejections: AtomicU32,
    /// Skipped after a refused connection until then.
    pub(crate) down_until: AtomicU64,
    pub(crate) consecutive_failures: AtomicU32,
    pub(crate) consecutive_gateway: AtomicU32,
    /// Slow-start ramp start (0: none).
    pub(crate) ramp_from: AtomicU64,
    /// Metric series.
    pub metrics: EndpointMetrics,
}

impl EndpointState {
    /// A fresh endpoint: healthy, unchecked, never ejected; ramping from now when `ramp`.
    pub fn new(board: Arc<Board>, metrics: EndpointMetrics, ramp: bool) -> EndpointState {
        EndpointState {
            board,
            in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            unhealthy: AtomicBool::new(false),
            checked: AtomicBool::new(false),
            pass_streak: AtomicU32::new(0),
            fail_streak: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            ejections: AtomicU32::new(0),
            down_until: AtomicU64::new(0),
            consecutive_failures: AtomicU32::new(0),
            consecutive_gateway: AtomicU32::new(0),
            ramp_from: AtomicU64::new(if ramp { clock_ms() } else { 0 }),
            metrics,
        }
    }

    /// Whether the endpoint may take traffic at `now`.
    #[inline]
    pub fn usable(&self, now: u64) -> bool {
        !self.unhealthy.load(Ordering::Relaxed)
            && self.ejected_until.load(Ordering::Relaxed) <= now
            && self.down_until.load(Ordering::Relaxed) <= now
    }

    /// When a time-limited exclusion (ejection, refused connection) ends, if one is running.
    pub fn blocked_until(&self, now: u64) -> Option<u64> {
        let t = self
            .ejected_until
            .load(Ordering::Relaxed)
            .max(self.down_until.load(Ordering::Relaxed));
        (t > now).then_some(t)
    }

    /// Whether active checks have it failing.
    pub fn is_unhealthy(&self) -> bool {
        self.unhealthy.load(Ordering::Relaxed)
    }

    /// Whether an active check has finished yet.
    pub fn is_checked(&self) -> bool {
        self.checked.load(Ordering::Relaxed)
    }

    /// Outlier ejection end, if ejected at `now`.
    pub fn ejected_until(&self, now: u64) -> Option<u64> {
        Some(self.ejected_until.load(Ordering::Relaxed)).filter(|&t| t > now)
    }

    /// Ejections counted so far (before decay).
    pub fn ejection_count(&self) -> u32 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Slow-start factor at `now` for a ramp of `window_ms` (1.0: full weight). The ramp goes
    /// linearly from 10% to 100% of the weight.
    #[inline]
    pub fn ramp(&self, now: u64, window_ms: u64) -> f64 {
        let from = self.ramp_from.load(Ordering::Relaxed);
        if from == 0 || window_ms == 0 || now >= from + window_ms {
            return 1.0;
        }
        let done = now.saturating_sub(from) as f64 / window_ms as f64;
        0.1 + 0.9 * done
    }

    /// Takes the endpoint out of rotation until `until` (ms), counting it under `reason`, and
    /// arranges for the balancer to notice when the exclusion ends.
    pub fn block(self: &Arc<Self>, until: u64, reason: EjectReason) {
        let slot = match reason {
            EjectReason::ConnectRefused => &self.down_until,
            _ => &self.ejected_until,
        };
        slot.fetch_max(until, Ordering::AcqRel);
        self.metrics.ejections[reason as usize].inc();
        self.metrics.healthy.set(0);
        self.board.bump();
        self.wake_at(until);
    }

    /// Bumps the board when `at` passes (a timer on the current tokio runtime, if any; the
    /// balancer also checks the clock against its snapshot's expiry).
    pub fn wake_at(self: &Arc<Self>, at: u64) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let state = Arc::downgrade(self);
        let wait = std::time::Duration::from_millis(at.saturating_sub(clock_ms()) + 1);
        rt.spawn(async move {
            tokio::time::sleep(wait).await;
            if let Some(s) = state.upgrade() {
                s.refresh_gauge();
                s.board.bump();
            }
        });
    }

    /// Drops the active checks' verdict (when an upstream no longer has checks).
    pub fn forget_checks(&self) {
        self.checked.store(false, Ordering::Relaxed);
        self.pass_streak.store(0, Ordering::Relaxed);
        self.fail_streak.store(0, Ordering::Relaxed);
        if self.unhealthy.swap(false, Ordering::AcqRel) {
            self.refresh_gauge();
            self.board.bump();
        }
    }

    /// Sets the healthy gauge from the current state.
    pub fn refresh_gauge(&self) {
        self.metrics.healthy.set(i64::from(self.usable(clock_ms())));
    }
}

/// Counts a request as in flight on an endpoint until dropped.
pub struct InFlight<'a>(&'a EndpointState);

impl<'a> InFlight<'a> {
    /// Starts counting.
    #[inline]
    pub fn start(state: &'a EndpointState) -> InFlight<'a> {
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        state.requests.fetch_add(1, Ordering::Relaxed);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
