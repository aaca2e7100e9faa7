//! Prometheus metrics: one registry per gateway, carried across reloads, with per-route handles
//! resolved at config-compile time so the request path only bumps atomics.
//!
//! Other subsystems add their own families with [`Metrics::family`], which registers a family
//! once per gateway and hands back the same (cheaply cloned) handle on every later reload.

pub mod process;

use std::any::Any;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

use http::{Method, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry, Unit};

use crate::error::GatewayError;

pub mod window;
pub use window::{Summary, Window};

/// Content type of [`Metrics::encode`]'s output (OpenMetrics text, which Prometheus scrapes).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Latency buckets in seconds: 0.5 ms to 10 s, roughly ×2.5 per step.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Route label of requests that matched no route.
pub const UNMATCHED: &str = "-";

/// `method` label values; any other method counts as `OTHER` (a client cannot grow the series).
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "OTHER",
];

/// `code` label values: the status class.
const CODES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The commit the binary was built from (`build.rs`), `unknown` outside a git checkout.
pub const GIT_COMMIT: &str = env!("PORTICO_GIT_COMMIT");

/// Upstream failure kinds, the `kind` label of `portico_upstream_errors_total`.
const ERROR_KINDS: [&str; 3] = ["connect", "timeout", "protocol"];

type Labels<const N: usize> = [(&'static str, String); N];
type HistogramFamily = Family<Labels<1>, Histogram, fn() -> Histogram>;
/// Labels whose values are fixed words: looking a series up allocates nothing.
type StaticLabels = [(&'static str, &'static str); 1];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// The metrics of one gateway process.
pub struct Metrics {
    registry: Mutex<Registry>,
    families: Mutex<HashMap<String, Box<dyn Any + Send + Sync>>>,
    requests: Family<Labels<3>, Counter>,
    latency: HistogramFamily,
    upstream_errors: Family<Labels<2>, Counter>,
    upstream_latency: HistogramFamily,
    auth_denied: Family<StaticLabels, Counter>,
    cert_expiry: Family<Labels<1>, Gauge<f64, AtomicU64>>,
    in_flight: Gauge,
    reload_success: Counter,
    reload_failure: Counter,
    generation: Gauge,
    last_reload_ok: Gauge<f64, AtomicU64>,
    known: Mutex<Known>,
    unmatched: RouteMetrics,
    /// Each route's sliding minute for `/admin/stats`, kept across reloads like its series.
    windows: Mutex<HashMap<String, Arc<Window>>>,
}

/// Label values created so far, so series of removed routes and upstreams can be dropped.
#[derive(Default)]
struct Known {
    routes: BTreeSet<String>,
    upstreams: BTreeSet<String>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Handles of one route's series, held by the route: recording costs a few atomic adds.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    requests: Arc<RequestCounters>,
    latency: Histogram,
    upstream_errors: [Counter; 3],
    window: Arc<Window>,
}

/// A route's request counters by method and status class. A series is looked up in the
/// family the first time its method and class occur (so unused ones are not exported), then
/// kept: later requests only bump an atomic.
#[derive(Debug)]
struct RequestCounters {
    family: Option<Family<Labels<3>, Counter>>,
    route: String,
    cells: [[OnceLock<Counter>; CODES.len()]; METHODS.len()],
}

impl RequestCounters {
    fn new(family: Option<Family<Labels<3>, Counter>>, route: &str) -> Self {
        RequestCounters {
            family,
            route: route.to_owned(),
            cells: Default::default(),
        }
    }

    fn get(&self, method: usize, code: usize) -> &Counter {
        self.cells[method][code].get_or_init(|| match &self.family {
            Some(f) => f.get_or_create_owned(&request_labels(&self.route, method, code)),
            None => Counter::default(),
        })
    }
}

fn request_labels(route: &str, method: usize, code: usize) -> Labels<3> {
    [
        ("route", route.to_owned()),
        ("method", METHODS[method].to_owned()),
        ("code", CODES[code].to_owned()),
    ]
}

/// Index of a method in [`METHODS`].
fn method_index(m: &Method) -> usize {
    match *m {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

impl Default for RouteMetrics {
    /// Handles registered nowhere: for routes compiled outside a gateway (and in unit tests).
    fn default() -> Self {
        RouteMetrics {
            requests: Arc::new(RequestCounters::new(None, UNMATCHED)),
            latency: latency_histogram(),
            upstream_errors: Default::default(),
            window: Default::default(),
        }
    }
}

impl RouteMetrics {
    /// Counts one answered request, which started at `start`, and the time to its response
    /// head (one clock reading serves the latency and the window's second).
    #[inline]
    pub fn record(&self, method: &Method, status: StatusCode, start: Instant) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(start);
        let code = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.requests.get(method_index(method), code).inc();
        self.latency.observe(elapsed.as_secs_f64());
        self.window.record(now, code == 4, elapsed);
    }

    /// The last minute of this route's traffic.
    pub fn window(&self) -> &Window {
        &self.window
    }

    /// Counts an upstream failure by kind; other errors are not upstream errors.
    pub fn upstream_error(&self, err: &GatewayError) {
        let kind = match err {
            GatewayError::UpstreamUnreachable { .. }
            | GatewayError::NoHealthyUpstream { .. }
            | GatewayError::NoEndpoints { .. } => 0,
            GatewayError::UpstreamTimeout { .. } => 1,
            GatewayError::UpstreamProtocol { .. } => 2,
            // Client-side and routing errors say nothing about upstream health.
            _ => return,
        };
        self.upstream_errors[kind].inc();
    }
}

/// Decrements the in-flight gauge when the request ends (however it ends).
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with Portico's built-in families.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<Labels<3>, Counter>::default();
        registry.register(
            "portico_requests",
            "Requests answered, by route, method and status class (code)",
            requests.clone(),
        );
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "portico_request_duration",
            "Time from request to response head, by route",
            Unit::Seconds,
            latency.clone(),
        );
        let upstream_errors = Family::<Labels<2>, Counter>::default();
        registry.register(
            "portico_upstream_errors",
            "Failed upstream exchanges, by upstream and kind (connect, timeout, protocol)",
            upstream_errors.clone(),
        );
        let upstream_latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register_with_unit(
            "portico_upstream_response_duration",
            "Time from sending a request upstream to its response head, by upstream",
            Unit::Seconds,
            upstream_latency.clone(),
        );
        let auth_denied = Family::<StaticLabels, Counter>::default();
        registry.register(
            "portico_auth_denied",
            "Requests refused by auth (401 and 403), by reason",
            auth_denied.clone(),
        );
        let cert_expiry = Family::<Labels<1>, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "portico_tls_certificate_expiry_timestamp_seconds",
            "End of validity of each served certificate (Unix time), by certificate file",
            cert_expiry.clone(),
        );
        let build_info = Family::<[(&'static str, &'static str); 2], Gauge>::default();
        build_info
            .get_or_create(&[
                ("version", env!("CARGO_PKG_VERSION")),
                ("commit", GIT_COMMIT),
            ])
            .set(1);
        registry.register(
            "portico_build_info",
            "Always 1; the labels name the running build",
            build_info,
        );
        registry.register_collector(Box::new(process::ProcessCollector));
        let in_flight = Gauge::default();
        registry.register(
            "portico_requests_in_flight",
            "Requests being served now",
            in_flight.clone(),
        );
        let reloads = Family::<Labels<1>, Counter>::default();
        registry.register(
            "portico_config_reloads",
            "Config reload attempts, by outcome (success, failure)",
            reloads.clone(),
        );
        let reload_success = reloads.get_or_create_owned(&[("outcome", "success".into())]);
        let reload_failure = reloads.get_or_create_owned(&[("outcome", "failure".into())]);
        let generation = Gauge::default();
        generation.set(1);
        registry.register(
            "portico_config_generation",
            "Config generation: 1 at start, +1 per successful reload",
            generation.clone(),
        );
        let last_reload_ok = Gauge::<f64, AtomicU64>::default();
        last_reload_ok.set(unix_seconds(SystemTime::now()));
        registry.register(
            "portico_config_last_success_timestamp_seconds",
            "When the serving config was loaded (Unix time)",
            last_reload_ok.clone(),
        );
        let mut m = Metrics {
            registry: Mutex::new(registry),
            families: Mutex::new(HashMap::new()),
            requests,
            latency,
            upstream_errors,
            upstream_latency,
            auth_denied,
            cert_expiry,
            in_flight,
            reload_success,
            reload_failure,
            generation,
            last_reload_ok,
            known: Mutex::new(Known::default()),
            unmatched: RouteMetrics::default(),
            windows: Mutex::new(HashMap::new()),
        };
        m.unmatched = m.route(UNMATCHED, None);
        m
    }

    /// The series of one route (created on first use, shared on later reloads so counts go on).
    /// `upstream` names the upstream whose failures the route records (`None`: no upstream).
    /// BFF endpoints can use this too, with their own id.
    pub fn route(&self, id: &str, upstream: Option<&str>) -> RouteMetrics {
        let requests = Arc::new(RequestCounters::new(Some(self.requests.clone()), id));
        let latency = self
            .latency
            .get_or_create_owned(&[("route", id.to_owned())]);
        let upstream_errors = match upstream {
            Some(u) => self.upstream_errors(u),
            None => Default::default(),
        };
        let mut known = lock(&self.known);
        known.routes.insert(id.to_owned());
        if let Some(u) = upstream {
            known.upstreams.insert(u.to_owned());
        }
        let window = lock(&self.windows)
            .entry(id.to_owned())
            .or_default()
            .clone();
        RouteMetrics {
            requests,
            latency,
            upstream_errors,
            window,
        }
    }

    /// The histogram of an upstream's time to response head (shared across reloads).
    pub fn upstream_latency(&self, upstream: &str) -> Histogram {
        lock(&self.known).upstreams.insert(upstream.to_owned());
        self.upstream_latency
            .get_or_create_owned(&[("upstream", upstream.to_owned())])
    }

    /// Counts a request refused by auth; `reason` is the refusal's short fixed text.
    pub fn auth_denied(&self, reason: &'static str) {
        self.auth_denied.get_or_create(&[("reason", reason)]).inc();
    }

    /// Replaces the certificate expiry series with `certs`: (certificate file, Unix time).
    pub fn set_certificates(&self, certs: impl IntoIterator<Item = (String, i64)>) {
        self.cert_expiry.clear();
        for (file, not_after) in certs {
            self.cert_expiry
                .get_or_create(&[("certificate", file)])
                .set(not_after as f64);
        }
    }

    fn upstream_errors(&self, upstream: &str) -> [Counter; 3] {
        ERROR_KINDS.map(|k| {
            self.upstream_errors
                .get_or_create_owned(&[("upstream", upstream.to_owned()), ("kind", k.to_owned())])
        })
    }

    /// Series for requests that matched no route.
    pub fn unmatched(&self) -> &RouteMetrics {
        &self.unmatched
    }

    /// Counts a request as in flight until the guard drops.
    #[inline]
    pub fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.inc();
        InFlight(&self.in_flight)
    }

    /// Requests in flight now.
    pub fn in_flight_now(&self) -> i64 {
        self.in_flight.get()
    }

    /// Records a successful reload to `generation`.
    pub fn reload_succeeded(&self, generation: u64) {
        self.reload_success.inc();
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
        self.last_reload_ok.set(unix_seconds(SystemTime::now()));
    }

    /// Records a reload that kept the old config.
    pub fn reload_failed(&self) {
        self.reload_failure.inc();
    }

    /// (successful, failed) reloads so far.
    pub fn reload_counts(&self) -> (u64, u64) {
        (self.reload_success.get(), self.reload_failure.get())
    }

    /// Drops the series of routes and upstreams that are no longer configured, so route churn
    /// over many reloads does not grow memory or scrape size. In-flight requests of an old
    /// runtime still hold their handles; their last counts are simply not exported.
    pub fn retain<'a>(
        &self,
        routes: impl IntoIterator<Item = &'a str>,
        upstreams: impl IntoIterator<Item = &'a str>,
    ) {
        let routes: BTreeSet<&str> = routes.into_iter().chain([UNMATCHED]).collect();
        let upstreams: BTreeSet<&str> = upstreams.into_iter().collect();
        lock(&self.windows).retain(|r, _| routes.contains(r.as_str()));
        let mut known = lock(&self.known);
        known.routes.retain(|r| {
            if routes.contains(r.as_str()) {
                return true;
            }
            for method in 0..METHODS.len() {
                for code in 0..CODES.len() {
                    self.requests.remove(&request_labels(r, method, code));
                }
            }
            self.latency.remove(&[("route", r.clone())]);
            false
        });
        known.upstreams.retain(|u| {
            if upstreams.contains(u.as_str()) {
                return true;
            }
            for k in ERROR_KINDS {
                self.upstream_errors
                    .remove(&[("upstream", u.clone()), ("kind", k.to_owned())]);
            }
            self.upstream_latency.remove(&[("upstream", u.clone())]);
            false
        });
    }

    /// Registers a family (or any metric) under `name` once per gateway and returns a handle to
    /// it; later calls with the same name return the first handle, so config compilation can
    /// call this on every reload. Panics if `name` was registered with another type.
    ///
    /// ```
    /// use prometheus_client::metrics::{counter::Counter, family::Family};
    /// let m = portico::metrics::Metrics::new();
    /// let denied: Family<[(&'static str, String); 1], Counter> =
    ///     m.family("portico_auth_denied", "Requests refused by auth, by reason", Family::default);
    /// denied.get_or_create(&[("reason", "expired".into())]).inc();
    /// ```
    pub fn family<M>(&self, name: &str, help: &str, make: impl FnOnce() -> M) -> M
    where
        M: Metric + Clone,
    {
        let mut families = lock(&self.families);
        if let Some(existing) = families.get(name) {
            return existing
                .downcast_ref::<M>()
                .unwrap_or_else(|| panic!("metric {name} registered twice with different types"))
                .clone();
        }
        let metric = make();
        lock(&self.registry).register(name, help, metric.clone());
        families.insert(name.to_owned(), Box::new(metric.clone()));
        metric
    }

    /// The whole registry in OpenMetrics text (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &lock(&self.registry));
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn route_series_survive_recompile_and_go_when_removed() {
        let m = Metrics::new();
        let a = m.route("a", Some("users"));
        a.record(
            &Method::GET,
            StatusCode::OK,
            Instant::now() - Duration::from_millis(3),
        );
        // A reload resolves the same series again: counts go on.
        let again = m.route("a", Some("users"));
        again.record(
            &Method::POST,
            StatusCode::BAD_GATEWAY,
            Instant::now() - Duration::from_millis(3),
        );
        let text = m.encode();
        assert!(text.contains(r#"portico_requests_total{route="a",method="GET",code="2xx"} 1"#));
        assert!(text.contains(r#"portico_requests_total{route="a",method="POST",code="5xx"} 1"#));
        assert!(
            !text.contains(r#"method="PUT""#),
            "unused series are not exported: {text}"
        );
        assert!(text.contains(r#"portico_request_duration_seconds_count{route="a"} 2"#));
        m.retain(["b"], []);
        let text = m.encode();
        assert!(!text.contains(r#"route="a""#), "{text}");
        assert!(!text.contains(r#"upstream="users""#), "{text}");
        assert!(text.contains(r#"route="-""#), "unmatched series stay");
    }

    #[test]
    fn family_registers_once() {
        let m = Metrics::new();
        let f1: Family<Labels<1>, Counter> = m.family("x_hits", "Hits", Family::default);
        let f2: Family<Labels<1>, Counter> = m.family("x_hits", "Hits", Family::default);
        f1.get_or_create(&[("k", "v".into())]).inc();
        f2.get_or_create(&[("k", "v".into())]).inc();
        let text = m.encode();
        assert_eq!(text.matches("# TYPE x_hits counter").count(), 1);
        assert!(text.contains(r#"x_hits_total{k="v"} 2"#));
    }

    #[test]
    fn upstream_errors_by_kind() {
        let m = Metrics::new();
        let r = m.route("r", Some("u"));
        r.upstream_error(&GatewayError::UpstreamTimeout {
            upstream: "u".into(),
            timeout: Duration::from_secs(1),
        });
        r.upstream_error(&GatewayError::NoRoute);
        let text = m.encode();
        assert!(text.contains(r#"portico_upstream_errors_total{upstream="u",kind="timeout"} 1"#));
        assert!(text.contains(r#"portico_upstream_errors_total{upstream="u",kind="connect"} 0"#));
    }
}
