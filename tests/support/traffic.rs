//! Helpers for the traffic-management tests (issue 14): configs with several upstreams, a
//! recording backend that can be awaited, and concurrent request loops that tally which
//! backend answered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

use super::{Backend, TestBody, checksum, h1_client, json_response};

/// A gateway.toml with watch off, no access log, `[upstreams.NAME]` for each backend, then
/// `routes` verbatim.
pub fn traffic_config(upstreams: &[(&str, SocketAddr)], routes: &str) -> String {
    let mut out = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nwatch = false\n\n[log]\naccess_log = false\n\n",
    );
    for (name, addr) in upstreams {
        out.push_str(&format!("[upstreams.{name}]\nendpoints = [\"{addr}\"]\n\n"));
    }
    out.push_str(routes);
    out
}

/// What a [`Recorder`] saw of one request.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// The Host header.
    pub host: String,
    /// Path and query.
    pub target: String,
    /// Checksum of the body.
    pub body_sum: u64,
    /// Body length.
    pub body_len: usize,
    /// Every header, names lowercase.
    pub headers: Vec<(String, String)>,
}

/// A backend that records every request (awaitably) and answers 200 after `delay`.
pub struct Recorder {
    pub backend: Backend,
    seen: Arc<Mutex<Vec<Recorded>>>,
    count: tokio::sync::watch::Receiver<usize>,
}

impl Recorder {
    /// Starts it; each request is recorded on arrival, then answered after `delay`.
    pub async fn start(name: &'static str, delay: Duration) -> Recorder {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, count) = tokio::sync::watch::channel(0usize);
        let tx = Arc::new(tx);
        let s = seen.clone();
        let backend = Backend::start(move |req: Request<Incoming>| {
            let (s, tx) = (s.clone(), tx.clone());
            async move { record(req, name, delay, &s, &tx).await }
        })
        .await;
        Recorder {
            backend,
            seen,
            count,
        }
    }

    /// Requests recorded so far.
    pub fn seen(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until `n` requests were recorded; false after `limit`.
    pub async fn wait_for(&self, n: usize, limit: Duration) -> bool {
        let mut rx = self.count.clone();
        tokio::time::timeout(limit, rx.wait_for(|c| *c >= n))
            .await
            .is_ok()
    }
}

async fn record(
    req: Request<Incoming>,
    name: &'static str,
    delay: Duration,
    seen: &Mutex<Vec<Recorded>>,
    count: &tokio::sync::watch::Sender<usize>,
) -> Response<TestBody> {
    let (parts, body) = req.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    seen.lock().unwrap().push(Recorded {
        host: header("host"),
        target: parts.uri.to_string(),
        body_sum: checksum(&bytes),
        body_len: bytes.len(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
            .collect(),
    });
    count.send_modify(|c| *c += 1);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut resp = json_response(200, serde_json::json!({ "backend": name }));
    resp.headers_mut()
        .insert("x-backend", name.parse().unwrap());
    resp
}

/// One request of a load loop: URL, extra headers, body.
#[derive(Clone, Debug)]
pub struct Shot {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Shot {
    /// A GET of `url`.
    pub fn get(url: &str) -> Shot {
        Shot {
            url: url.to_string(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// With one more header.
    pub fn header(mut self, name: &str, value: &str) -> Shot {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// What one request of a load loop got.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Status code.
    pub status: u16,
    /// `x-backend` of the answer ("" when absent).
    pub backend: String,
    /// Time to the whole answer.
    pub took: Duration,
}

/// Sends every shot once over `concurrency` keep-alive clients (POST when it has a body) and
/// returns the outcomes in shot order. Panics on transport errors.
pub async fn fire(shots: Vec<Shot>, concurrency: usize) -> Vec<Outcome> {
    let shots = Arc::new(shots);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (shots, next) = (shots.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let client = h1_client();
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(shot) = shots.get(i) else { break };
                let method = if shot.body.is_empty() { "GET" } else { "POST" };
                let mut req = Request::builder().method(method).uri(&shot.url);
                for (k, v) in &shot.headers {
                    req = req.header(k, v);
                }
                let req = req.body(Full::new(shot.body.clone())).unwrap();
                let started = Instant::now();
                let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
                    .await
                    .expect("request timed out")
                    .expect("request failed");
                let status = resp.status().as_u16();
                let backend = resp
                    .headers()
                    .get("x-backend")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                resp.into_body().collect().await.expect("body");
                out.push((
                    i,
                    Outcome {
                        status,
                        backend,
                        took: started.elapsed(),
                    },
                ));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, o)| o).collect()
}

/// How many outcomes each backend answered.
pub fn tally(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for o in outcomes {
        *out.entry(o.backend.clone()).or_insert(0) += 1;
    }
    out
}

/// The `q`-quantile (0..=1) of durations.
pub fn quantile(mut d: Vec<Duration>, q: f64) -> Duration {
    d.sort();
    let i = ((d.len() as f64 - 1.0) * q).round() as usize;
    d[i]
}
