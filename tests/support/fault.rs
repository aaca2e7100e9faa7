//! Misbehaving backends for BFF and upstream fault tests: raw-TCP HTTP/1.1 servers that hang,
//! drip, reset, send garbage or answer late, and an awaitable gauge of their open connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

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
    /// Like `Delay`, with the delay in milliseconds read from the cell at each request, so a
    /// test can make the backend slow and fast again (`Box::leak` a cell for the test).
    DelayFrom(&'static std::sync::atomic::AtomicU64),
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
        Fault::Delay(_) | Fault::DelayFrom(_) => {
            let d = match fault {
                Fault::DelayFrom(ms) => Duration::from_millis(ms.load(Ordering::SeqCst)),
                Fault::Delay(d) => d,
                _ => Duration::ZERO,
            };
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
