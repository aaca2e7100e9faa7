//! Test backends on 127.0.0.1:0: a hyper server around a closure, the JSON echo, a backend
//! that holds requests until released, the built-in demo apps, and an address that refuses.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Body type of test backends' responses.
pub type TestBody = BoxBody<Bytes, Infallible>;
type HandlerFut = Pin<Box<dyn Future<Output = Response<TestBody>> + Send>>;
type Handler = Arc<dyn Fn(Request<Incoming>) -> HandlerFut + Send + Sync>;

/// A body of one buffer.
pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).boxed()
}

/// A JSON response.
pub fn json_response(status: u16, value: serde_json::Value) -> Response<TestBody> {
    let mut r = Response::new(full(value.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

/// A test backend on 127.0.0.1:0 that counts the requests it served.
pub struct Backend {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    /// Serves every request with `f` (HTTP/1.1 and h2c).
    pub async fn start<F, Fut>(f: F) -> Backend
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<TestBody>> + Send + 'static,
    {
        let handler: Handler = Arc::new(move |req| Box::pin(f(req)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let handler = handler.clone();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Backend { addr, hits, task }
    }

    /// Switches to whatever protocol a request's `Upgrade` names (101) and then echoes every
    /// byte back until the peer closes; requests without `Upgrade` get 400.
    pub async fn tunnel_echo() -> Backend {
        Backend::start(|mut req: Request<Incoming>| async move {
            let Some(proto) = req.headers().get("upgrade").cloned() else {
                return json_response(400, serde_json::json!({"error": "upgrade expected"}));
            };
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(up) = on.await {
                    let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            let mut r = Response::new(full(""));
            *r.status_mut() = http::StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut().insert("upgrade", proto);
            r.headers_mut()
                .insert("connection", http::HeaderValue::from_static("upgrade"));
            r
        })
        .await
    }

    /// Answers with a JSON description of the request: method, path, query, headers, body
    /// length and a checksum of the body, plus `x-backend: NAME`.
    pub async fn echo(name: &'static str) -> Backend {
        Backend::start(move |req: Request<Incoming>| async move {
            let (parts, body) = req.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut headers = serde_json::Map::new();
            for (k, v) in &parts.headers {
                let entry = headers
                    .entry(k.as_str())
                    .or_insert_with(|| serde_json::json!([]));
                entry
                    .as_array_mut()
                    .unwrap()
                    .push(v.to_str().unwrap_or("?").into());
            }
            let mut resp = json_response(
                200,
                serde_json::json!({
                    "backend": name,
                    "method": parts.method.as_str(),
                    "path": parts.uri.path(),
                    "query": parts.uri.query(),
                    "headers": headers,
                    "body_len": bytes.len(),
                    "body_sum": checksum(&bytes),
                }),
            );
            resp.headers_mut()
                .insert("x-backend", name.parse().unwrap());
            resp
        })
        .await
    }

    /// Requests served so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// A simple order-sensitive checksum of bytes.
pub fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |h, &x| {
        h.wrapping_mul(1_000_003).wrapping_add(u64::from(x))
    })
}

/// A deterministic payload of `n` bytes.
pub fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// An address that refuses connections: a socket bound but never listening, kept for the
/// life of the test process so no other test can take its port meanwhile.
pub async fn dead_addr() -> SocketAddr {
    static HELD: std::sync::Mutex<Vec<tokio::net::TcpSocket>> = std::sync::Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    HELD.lock().unwrap().push(socket);
    addr
}

/// A backend whose requests wait until the test releases them; `arrived` yields the path of
/// each request as it reaches the backend.
pub struct HeldBackend {
    pub backend: Backend,
    pub arrived: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<String>>,
    release: Arc<tokio::sync::Semaphore>,
}

impl HeldBackend {
    /// Starts it; only paths under `/slow` are held, others answer at once.
    pub async fn start() -> HeldBackend {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let gate = release.clone();
        let backend = Backend::start(move |req: Request<Incoming>| {
            let tx = tx.clone();
            let gate = gate.clone();
            async move {
                let path = req.uri().path().to_string();
                if path.starts_with("/slow") {
                    let _ = tx.send(path.clone());
                    gate.acquire().await.unwrap().forget();
                }
                json_response(200, serde_json::json!({ "path": path }))
            }
        })
        .await;
        HeldBackend {
            backend,
            arrived: tokio::sync::Mutex::new(rx),
            release,
        }
    }

    /// Waits (bounded) until a held request reached the backend.
    pub async fn wait_arrival(&self) -> String {
        tokio::time::timeout(Duration::from_secs(10), self.arrived.lock().await.recv())
            .await
            .expect("request did not reach the backend")
            .unwrap()
    }

    /// Lets `n` held requests answer.
    pub fn release(&self, n: usize) {
        self.release.add_permits(n);
    }
}

/// Starts the built-in demo upstreams on 127.0.0.1:0 (no added latency) and returns the
/// `[upstreams]` tables for gateway.toml that point at them.
pub async fn demo_upstreams() -> String {
    let mut out = String::new();
    for (name, app) in [
        ("users", portico::demo::App::Users),
        ("orders", portico::demo::App::Orders),
        ("catalog", portico::demo::App::Catalog),
    ] {
        let addr = portico::demo::spawn("127.0.0.1:0".parse().unwrap(), app, Duration::ZERO)
            .await
            .unwrap();
        out.push_str(&format!(
            "[upstreams.{name}]\nendpoints = [\"{addr}\"]\ntimeout = \"2s\"\n\n"
        ));
    }
    out
}
