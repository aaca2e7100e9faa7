//! Shared helpers for integration tests: real backends and a real gateway on 127.0.0.1:0,
//! and HTTP/1.1, h2c and raw-TCP clients.
#![allow(dead_code)]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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

/// A gateway started in-process from a config written to a temporary folder.
pub struct TestGateway {
    pub running: Option<portico::Running>,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
}

impl TestGateway {
    /// Writes `gateway_toml` (plus `extra` files, e.g. `bff/web.toml`) and starts the gateway.
    pub async fn start_with_files(gateway_toml: &str, extra: &[(&str, &str)]) -> TestGateway {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "gateway.toml", gateway_toml);
        for (name, text) in extra {
            write(dir.path(), name, text);
        }
        let running = portico::Running::start(&dir.path().join("gateway.toml"))
            .await
            .unwrap_or_else(|e| panic!("gateway did not start: {e}"));
        let addr = running.http_addr();
        TestGateway {
            running: Some(running),
            addr,
            dir,
        }
    }

    /// Starts a gateway from one gateway.toml text.
    pub async fn start(gateway_toml: &str) -> TestGateway {
        Self::start_with_files(gateway_toml, &[]).await
    }

    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// The config file path.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("gateway.toml")
    }

    /// The running gateway.
    pub fn running(&self) -> &portico::Running {
        self.running.as_ref().unwrap()
    }
}

/// Writes a file under `dir`, creating folders.
pub fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A response read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// HTTP/1.1 keep-alive client.
pub fn h1_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// h2c (prior knowledge) client.
pub fn h2c_client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// Sends a request with a client and reads the whole answer.
pub async fn send_with(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Answer {
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Sends a request over a fresh HTTP/1.1 client.
pub async fn send(req: Request<Full<Bytes>>) -> Answer {
    send_with(&h1_client(), req).await
}

/// GET over HTTP/1.1.
pub async fn get(url: &str) -> Answer {
    send(Request::get(url).body(Full::default()).unwrap()).await
}

/// Writes raw bytes on a new TCP connection and reads until the peer closes (or 5 s pass).
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `portico` with arguments; returns (exit code, stdout, stderr).
pub fn portico_cli(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ---- TLS helpers (issue 4): rcgen CA and certificates, rustls clients, HTTPS backend ----
pub mod tls;

// ---- balancing and health helpers (issue 12): switchable backends, /admin/upstreams ----
pub mod balance;

// ---------------------------------------------------------------------------------------------
// Reload, admin and lifecycle helpers (hot-reload branch).
// ---------------------------------------------------------------------------------------------

/// Replaces a file the way editors and config tools do: write a temporary file beside it, then
/// rename it over the old one.
pub fn save_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// GET on the admin listener of an in-process gateway.
pub async fn admin_get(running: &portico::Running, path: &str) -> Answer {
    let addr = running.admin_addr().expect("admin listener enabled");
    get(&format!("http://{addr}{path}")).await
}

/// POST (empty body) on the admin listener of an in-process gateway.
pub async fn admin_post(running: &portico::Running, path: &str) -> Answer {
    let addr = running.admin_addr().expect("admin listener enabled");
    send(
        Request::post(format!("http://{addr}{path}"))
            .body(Full::default())
            .unwrap(),
    )
    .await
}

/// Parses Prometheus/OpenMetrics text strictly: every line must be a HELP, TYPE, UNIT or EOF
/// comment or a sample with a numeric value (the parser crate alone skips what it cannot read).
pub fn parse_metrics(text: &str) -> prometheus_parse::Scrape {
    use prometheus_parse::LineInfo;
    assert!(text.ends_with("# EOF\n"), "exposition must end with # EOF");
    for line in text.lines() {
        match LineInfo::parse(line) {
            LineInfo::Doc { .. } | LineInfo::Type { .. } => {}
            LineInfo::Sample { value, .. } => {
                let ok = value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value);
                assert!(ok, "bad sample value in line: {line}");
            }
            LineInfo::Empty => panic!("empty line in exposition"),
            LineInfo::Ignored => assert!(
                line == "# EOF" || line.starts_with("# UNIT "),
                "unparseable line: {line}"
            ),
        }
    }
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap()
}

/// The value of the sample `name` whose labels include all of `labels` (counters, gauges and
/// histogram `_count`/`_sum` are plain samples; histogram buckets are not looked at here).
pub fn metric(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    use prometheus_parse::Value;
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .and_then(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(v),
            _ => None,
        })
}

/// Scrapes and parses `/metrics` of an in-process gateway.
pub async fn scrape(running: &portico::Running) -> prometheus_parse::Scrape {
    let a = admin_get(running, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    parse_metrics(std::str::from_utf8(&a.body).unwrap())
}

/// Waits (bounded) for the next reload attempt of an in-process gateway after `rx` was taken.
pub async fn next_reload(
    rx: &mut tokio::sync::watch::Receiver<portico::gateway::ReloadStatus>,
    within: Duration,
) -> portico::gateway::ReloadStatus {
    tokio::time::timeout(within, rx.changed())
        .await
        .expect("no reload happened in time")
        .unwrap();
    rx.borrow_and_update().clone()
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

/// `portico run` as a child process, with its stdout and stderr lines delivered to channels.
pub struct ChildGateway {
    pub child: std::process::Child,
    pub http: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub stdout: std::sync::mpsc::Receiver<String>,
    pub stderr: std::sync::mpsc::Receiver<String>,
    pub dir: tempfile::TempDir,
}

impl ChildGateway {
    /// Writes `gateway_toml` to a temporary folder and starts `portico run` on it with `env`;
    /// waits for its `ready http=... admin=...` line.
    pub fn start(gateway_toml: &str, env: &[(&str, &str)]) -> ChildGateway {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "gateway.toml", gateway_toml);
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portico"));
        cmd.args(["run", "--config"])
            .arg(dir.path().join("gateway.toml"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let lines = |r: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        let mut g = ChildGateway {
            child,
            http: "0.0.0.0:0".parse().unwrap(),
            admin: None,
            stdout,
            stderr,
            dir,
        };
        let ready = g.stdout_line(|l| l.starts_with("ready "), Duration::from_secs(30));
        for field in ready.split_whitespace().skip(1) {
            match field.split_once('=') {
                Some(("http", a)) => g.http = a.parse().unwrap(),
                Some(("admin", "off")) => g.admin = None,
                Some(("admin", a)) => g.admin = Some(a.parse().unwrap()),
                _ => {}
            }
        }
        g
    }

    fn wait_line(
        rx: &std::sync::mpsc::Receiver<String>,
        what: &str,
        pred: impl Fn(&str) -> bool,
        within: Duration,
    ) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if pred(&l) => return l,
                Ok(_) => {}
                Err(e) => panic!("no matching {what} line within {within:?}: {e}"),
            }
        }
    }

    /// Waits for a stdout line.
    pub fn stdout_line(&self, pred: impl Fn(&str) -> bool, within: Duration) -> String {
        Self::wait_line(&self.stdout, "stdout", pred, within)
    }

    /// Waits for a stderr (log) line.
    pub fn log_line(&self, pred: impl Fn(&str) -> bool, within: Duration) -> String {
        Self::wait_line(&self.stderr, "log", pred, within)
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`) with the system `kill`.
    pub fn signal(&self, name: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gateway did not exit within {within:?}"
            );
            // A child's exit cannot be awaited without a runtime-specific reaper; poll briefly.
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `http://ADMIN{path}`.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin.expect("admin enabled"), path)
    }

    /// `http://HTTP{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    /// Resident set size of the child in KiB (from /proc).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }
}

impl Drop for ChildGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// JWT helpers (auth and rate-limit tests): fixture keys and token minting.
// ---------------------------------------------------------------------------------------------

/// Path of a key under tests/fixtures/jwt/.
pub fn jwt_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/jwt")
        .join(name)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An HS256 token over `claims` with `secret`.
pub fn hs256(secret: &str, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A GET with `authorization: Bearer TOKEN` and extra headers.
pub async fn get_with_token(url: &str, token: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::get(url).header("authorization", format!("Bearer {token}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::default()).unwrap()).await
}

// ================================================================================================
// BFF helpers (issue 7): raw backends with faults and delays, an awaitable gauge, demo upstreams
// and the shipped profile files.
// ================================================================================================

/// A count that goes up and down (open connections) and can be awaited.
#[derive(Clone)]
pub struct Gauge(Arc<tokio::sync::watch::Sender<usize>>);

/// Holds one unit of a gauge until dropped.
pub struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.0.send_modify(|n| *n -= 1);
    }
}

impl Gauge {
    /// A gauge at zero.
    pub fn new() -> Gauge {
        Gauge(Arc::new(tokio::sync::watch::channel(0).0))
    }

    /// Adds one until the guard is dropped.
    pub fn hold(&self) -> GaugeGuard {
        self.0.send_modify(|n| *n += 1);
        GaugeGuard(self.clone())
    }

    /// The current value.
    pub fn get(&self) -> usize {
        *self.0.borrow()
    }

    /// Waits (at most `limit`) until the value satisfies `pred`; false on timeout.
    pub async fn wait_for(&self, limit: Duration, pred: impl Fn(usize) -> bool) -> bool {
        let mut rx = self.0.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|n| pred(*n)))
            .await
            .is_ok()
    }
}

/// How a [`RawBackend`] misbehaves (or behaves).
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Reads the request and never answers.
    Hang,
    /// Sends a 200 JSON head, then one body byte every 20 ms.
    SlowDrip,
    /// Resets the connection (RST) after reading the request.
    Reset,
    /// Answers with bytes that are not HTTP.
    Garbage,
    /// A 200 with `content-type: text/html`.
    WrongContentType,
    /// A 200 JSON answer that streams 64 MiB (no content-length).
    HugeBody,
    /// A 503 with a JSON body.
    ServerError,
    /// After the delay, a 200 JSON echo of the request; a connection the gateway closes
    /// during the delay counts as cancelled.
    Delay(Duration),
}

/// A request a [`RawBackend`] received.
#[derive(Clone, Debug)]
pub struct SeenRequest {
    /// Method.
    pub method: String,
    /// Request target (path and query).
    pub target: String,
    /// Headers, names lowercase.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
    /// When the head arrived.
    pub at: std::time::Instant,
}

impl SeenRequest {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 backend written on raw TCP (one request per connection), so tests can see
/// exactly when the gateway gives up on a call: `open` drops when the gateway closes.
pub struct RawBackend {
    pub addr: SocketAddr,
    /// Connections currently open.
    pub open: Gauge,
    /// Delayed answers whose connection was closed by the gateway before they were sent.
    pub cancelled: Arc<AtomicUsize>,
    /// Requests received, in arrival order.
    pub seen: Arc<std::sync::Mutex<Vec<SeenRequest>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads a request head and its content-length body (bounded in size and time).
async fn read_request(s: &mut TcpStream) -> Option<SeenRequest> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let at = std::time::Instant::now();
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end + 4..].to_vec();
    while body.len() < len.min(1 << 20) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(SeenRequest {
        method,
        target,
        headers,
        body,
        at,
    })
}

/// Waits until the peer closes (or `limit` passes); true when it closed.
async fn peer_closes(s: &mut TcpStream, limit: Duration) -> bool {
    let mut sink = [0u8; 1024];
    let closed = async {
        loop {
            match s.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, closed).await.is_ok()
}

fn raw_response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The JSON echo a delayed [`RawBackend`] answers with.
fn echo_json(name: &str, req: &SeenRequest) -> Vec<u8> {
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    let body: serde_json::Value =
        serde_json::from_slice(&req.body).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "backend": name,
        "method": req.method,
        "path": path,
        "query": query,
        "budget_ms": req.header("portico-budget-ms").and_then(|v| v.parse::<u64>().ok()),
        "headers": headers,
        "body": body,
        "segment": "gold",
        "id": name,
    })
    .to_string()
    .into_bytes()
}

impl RawBackend {
    /// Starts a backend on 127.0.0.1:0 that answers every request as `fault` says.
    pub async fn start(name: &'static str, fault: Fault) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Gauge::new();
        let cancelled = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (g, c, sn) = (open.clone(), cancelled.clone(), seen.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else {
                    continue;
                };
                let guard = g.hold();
                let (c, sn) = (c.clone(), sn.clone());
                tokio::spawn(async move {
                    let _guard = guard;
                    let Some(req) = read_request(&mut s).await else {
                        return;
                    };
                    sn.lock().unwrap().push(req.clone());
                    serve_fault(&mut s, name, fault, &req, &c).await;
                });
            }
        });
        RawBackend {
            addr,
            open,
            cancelled,
            seen,
            task,
        }
    }

    /// Requests received so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().unwrap().clone()
    }

    /// Waits until every connection to this backend is closed; false after `limit`.
    pub async fn all_closed(&self, limit: Duration) -> bool {
        self.open.wait_for(limit, |n| n == 0).await
    }
}

async fn serve_fault(
    s: &mut TcpStream,
    name: &str,
    fault: Fault,
    req: &SeenRequest,
    cancelled: &AtomicUsize,
) {
    // Every fault is bounded in time, so a test that fails cannot leave a task forever.
    const LIMIT: Duration = Duration::from_secs(30);
    match fault {
        Fault::Hang => {
            peer_closes(s, LIMIT).await;
        }
        Fault::SlowDrip => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n[";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            for _ in 0..(LIMIT.as_millis() / 20) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if s.write_all(b"1").await.is_err() {
                    return;
                }
            }
        }
        Fault::Reset => {
            let _ = s.set_zero_linger();
        }
        Fault::Garbage => {
            let _ = s
                .write_all(b"\x00\x01\x02 this is not HTTP at all \xff\xfe\r\n\r\n")
                .await;
        }
        Fault::WrongContentType => {
            let _ = s
                .write_all(&raw_response("200 OK", "text/html", b"<html>hello</html>"))
                .await;
        }
        Fault::HugeBody => {
            let head =
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n[";
            if s.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let chunk = "1,".repeat(32 * 1024);
            for _ in 0..1024 {
                if s.write_all(chunk.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
        Fault::ServerError => {
            let _ = s
                .write_all(&raw_response(
                    "503 Service Unavailable",
                    "application/json",
                    b"{\"error\":\"down\"}",
                ))
                .await;
        }
        Fault::Delay(d) => {
            if peer_closes(s, d).await {
                cancelled.fetch_add(1, Ordering::SeqCst);
                return;
            }
            let _ = s
                .write_all(&raw_response(
                    "200 OK",
                    "application/json",
                    &echo_json(name, req),
                ))
                .await;
        }
    }
    let _ = s.shutdown().await;
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

/// The profile files shipped in the repository's `bff/` folder, as (relative path, text).
pub fn shipped_profiles() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bff");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = format!("bff/{}", p.file_name().unwrap().to_string_lossy());
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// GET with extra request headers.
pub async fn get_with(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = Request::get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    send(req.body(Full::default()).unwrap()).await
}
