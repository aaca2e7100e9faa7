//! Helpers for balancing and health tests: backends whose answers and health the test can
//! switch at run time, traffic loops, and reading `/admin/upstreams`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;

use super::{Backend, json_response};

/// A backend that answers `/healthz` with `health` and everything else with `status` after
/// `delay_ms`, tagging answers with `x-backend: NAME`; it counts both kinds of requests.
pub struct Switchable {
    pub backend: Backend,
    pub name: &'static str,
    /// Status of `/healthz` answers.
    pub health: Arc<AtomicU16>,
    /// Status of every other answer.
    pub status: Arc<AtomicU16>,
    /// Delay before every other answer, in ms.
    pub delay_ms: Arc<AtomicU64>,
    /// `/healthz` requests served.
    pub checks: Arc<AtomicUsize>,
    /// Other requests served.
    pub served: Arc<AtomicUsize>,
}

impl Switchable {
    /// Starts a backend answering 200 to everything.
    pub async fn start(name: &'static str) -> Switchable {
        let health = Arc::new(AtomicU16::new(200));
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let checks = Arc::new(AtomicUsize::new(0));
        let served = Arc::new(AtomicUsize::new(0));
        let (h, s, d, c, v) = (
            health.clone(),
            status.clone(),
            delay_ms.clone(),
            checks.clone(),
            served.clone(),
        );
        let backend = Backend::start(move |req: Request<Incoming>| {
            let (h, s, d, c, v) = (h.clone(), s.clone(), d.clone(), c.clone(), v.clone());
            async move {
                if req.uri().path() == "/healthz" {
                    c.fetch_add(1, Ordering::SeqCst);
                    return json_response(h.load(Ordering::SeqCst), serde_json::json!({}));
                }
                v.fetch_add(1, Ordering::SeqCst);
                let delay = d.load(Ordering::SeqCst);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let mut r = json_response(
                    s.load(Ordering::SeqCst),
                    serde_json::json!({"backend": name}),
                );
                r.headers_mut().insert("x-backend", name.parse().unwrap());
                r
            }
        })
        .await;
        Switchable {
            backend,
            name,
            health,
            status,
            delay_ms,
            checks,
            served,
        }
    }

    /// The backend's address.
    pub fn addr(&self) -> SocketAddr {
        self.backend.addr
    }

    /// Non-health requests served so far.
    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Health checks served so far.
    pub fn checks(&self) -> usize {
        self.checks.load(Ordering::SeqCst)
    }
}

/// The endpoint entry `address` of upstream `upstream` in `/admin/upstreams`.
pub async fn endpoint_status(
    running: &portico::Running,
    upstream: &str,
    address: &str,
) -> serde_json::Value {
    let all = super::admin_get(running, "/admin/upstreams").await.json();
    let u = all["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == upstream)
        .unwrap_or_else(|| panic!("no upstream {upstream} in {all}"))
        .clone();
    u["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["address"] == address)
        .unwrap_or_else(|| panic!("no endpoint {address} in {u}"))
        .clone()
}

/// Polls `/admin/upstreams` (every 20 ms, at most `limit`) until `pred` holds for the endpoint.
/// Health changes come from background checks, which have no event a test could await.
pub async fn wait_endpoint(
    running: &portico::Running,
    upstream: &str,
    address: &str,
    limit: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let e = endpoint_status(running, upstream, address).await;
        if pred(&e) {
            return e;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "endpoint {address} of {upstream} never reached the state; last: {e}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `n` GETs to `url` one after another over one keep-alive client; returns the
/// `x-backend` of each answer ("-" when absent) and asserts every status is `want`.
pub async fn sequential(url: &str, n: usize, headers: &[(&str, &str)], want: u16) -> Vec<String> {
    let client = super::h1_client();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut req = Request::get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let a = super::send_with(&client, req.body(Default::default()).unwrap()).await;
        assert_eq!(
            a.status.as_u16(),
            want,
            "{url}: {}",
            String::from_utf8_lossy(&a.body)
        );
        out.push(a.header("x-backend").unwrap_or("-").to_string());
    }
    out
}
