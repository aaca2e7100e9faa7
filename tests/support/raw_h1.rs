//! A raw-TCP HTTP/1.1 upstream that answers hand-written bytes, and the gateway and client
//! helpers of the `upstream_h1_*` tests (`use crate::support::raw_h1;`, not glob-exported: its
//! names are those tests' own).
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{Gauge, TestGateway, h1_client};

/// What the raw upstream does with one request.
#[derive(Clone, Default)]
pub struct Reply {
    /// The response bytes, written as they are.
    pub bytes: Vec<u8>,
    /// Write this many bytes at a time, 1 ms apart (0: one write).
    pub piece: usize,
    /// Answer as soon as the head is read, before any body byte.
    pub early: bool,
    /// With `early`: read (and drop) the body after answering, before closing.
    pub drain: bool,
    /// After writing, and this pause, write these bytes too.
    pub later: Option<(Duration, Vec<u8>)>,
    /// Close after writing, after this pause (`None`: keep reading requests).
    pub close: Option<Duration>,
}

impl Reply {
    /// Answers `bytes` and waits for the next request on the connection.
    pub fn keep(bytes: impl AsRef<[u8]>) -> Reply {
        Reply {
            bytes: bytes.as_ref().to_vec(),
            ..Reply::default()
        }
    }

    /// Answers `bytes` and closes the connection.
    pub fn close(bytes: impl AsRef<[u8]>) -> Reply {
        Reply {
            close: Some(Duration::ZERO),
            ..Reply::keep(bytes)
        }
    }
}

/// A request as the upstream read it.
#[derive(Clone, Debug)]
pub struct Seen {
    /// The request line and headers (no final blank line).
    pub head: String,
    /// The body, de-chunked when it came chunked (empty when answered `early`).
    pub body: Vec<u8>,
}

impl Seen {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

/// A keep-alive HTTP/1.1 upstream on raw TCP: request number N (from 0, over all connections)
/// gets `script(N)`.
pub struct RawUpstream {
    pub addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    seen: Arc<std::sync::Mutex<Vec<Seen>>>,
    /// Connections open now.
    pub open: Gauge,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawUpstream {
    /// Starts on 127.0.0.1:0.
    pub async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let seen: Arc<std::sync::Mutex<Vec<Seen>>> = Arc::default();
        let open = Gauge::new();
        let script: Script = Arc::new(script);
        let (a, s, o) = (Arc::clone(&accepted), Arc::clone(&seen), open.clone());
        let task = tokio::spawn(async move {
            let requests = Arc::new(AtomicUsize::new(0));
            while let Ok((tcp, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let (held, script, seen, n) =
                    (o.hold(), script.clone(), s.clone(), requests.clone());
                tokio::spawn(async move {
                    let _held = held;
                    serve(tcp, &script, &seen, &n).await;
                });
            }
        });
        RawUpstream {
            addr,
            accepted,
            seen,
            open,
            task,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Requests read so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves one connection; every read is bounded in time, so a test that fails cannot hang.
async fn serve(
    mut s: TcpStream,
    script: &Script,
    seen: &std::sync::Mutex<Vec<Seen>>,
    count: &AtomicUsize,
) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::new();
    // At most a few requests per connection in these tests.
    for _ in 0..32 {
        let head_end = |b: &[u8]| find(b, b"\r\n\r\n").map(|i| i + 4);
        let Some(end) = read_until(&mut s, &mut buf, head_end).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end - 4]).into_owned();
        buf.drain(..end);
        let reply = script(count.fetch_add(1, Ordering::SeqCst));
        let mut req = Seen {
            head,
            body: Vec::new(),
        };
        if !reply.early {
            let Some(body) = read_body(&mut s, &mut buf, &req).await else {
                return;
            };
            req.body = body;
        }
        seen.lock().unwrap().push(req.clone());
        let piece = match reply.piece {
            0 => reply.bytes.len().max(1),
            n => n,
        };
        for part in reply.bytes.chunks(piece) {
            if s.write_all(part).await.is_err() {
                return;
            }
            if reply.piece > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        if reply.early && reply.drain {
            let _ = read_body(&mut s, &mut buf, &req).await;
        }
        if let Some((pause, bytes)) = &reply.later {
            tokio::time::sleep(*pause).await;
            if s.write_all(bytes).await.is_err() {
                return;
            }
        }
        if let Some(pause) = reply.close {
            tokio::time::sleep(pause).await;
            let _ = s.shutdown().await;
            return;
        }
    }
}

/// Reads the body `req`'s head announces (chunked or content-length; none otherwise).
async fn read_body(s: &mut TcpStream, buf: &mut Vec<u8>, req: &Seen) -> Option<Vec<u8>> {
    if req.header("transfer-encoding").is_some() {
        let n = read_until(s, buf, |b| dechunk(b).map(|d| d.1)).await?;
        let body = dechunk(buf).unwrap().0;
        buf.drain(..n);
        Some(body)
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().unwrap();
        let n = read_until(s, buf, |b| (b.len() >= len).then_some(len)).await?;
        Some(buf.drain(..n).collect())
    } else {
        Some(Vec::new())
    }
}

/// Reads into `buf` until `done` finds the end of what is wanted (5 s at most).
async fn read_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> Option<usize>,
) -> Option<usize> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(n) = done(buf) {
            return Some(n);
        }
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut chunk));
        match read.await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// Where `needle` starts in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A complete chunked body at the start of `b`: its data and its length on the wire.
pub fn dechunk(b: &[u8]) -> Option<(Vec<u8>, usize)> {
    let (mut out, mut i) = (Vec::new(), 0);
    loop {
        let eol = i + find(&b[i..], b"\r\n")?;
        let size = std::str::from_utf8(&b[i..eol]).ok()?.split(';').next()?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        i = eol + 2;
        if size == 0 {
            // Trailer fields up to the blank line.
            loop {
                let eol = i + find(&b[i..], b"\r\n")?;
                let blank = eol == i;
                i = eol + 2;
                if blank {
                    return Some((out, i));
                }
            }
        }
        if b.len() < i + size + 2 {
            return None;
        }
        out.extend_from_slice(&b[i..i + size]);
        i += size + 2;
    }
}

/// `HTTP/1.1 200 OK` with a content-length body.
pub fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A gateway with one route to `up` (one endpoint, so no failover can hide anything).
pub async fn gateway(up: &RawUpstream) -> TestGateway {
    let toml = crate::support::config()
        .no_access_log()
        .upstream_with("app", &[up.addr], "timeout = \"5s\"")
        .route("app", "/", "app")
        .build();
    TestGateway::start(&toml).await
}

/// Sends a request and reads the answer, giving body errors back instead of panicking; the
/// whole exchange must end within 5 s (a broken upstream must not hang the client).
pub async fn fetch(
    req: Request<Full<Bytes>>,
) -> Result<(StatusCode, Result<Bytes, String>), String> {
    let exchange = async {
        let resp = h1_client()
            .request(req)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let body = resp.into_body().collect().await;
        Ok((
            status,
            body.map(|b| b.to_bytes()).map_err(|e| format!("{e:?}")),
        ))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .expect("the answer did not end within 5 s")
}

/// A GET without a body.
pub fn get_req(url: &str) -> Request<Full<Bytes>> {
    Request::get(url).body(Full::default()).unwrap()
}

/// A pause after an exchange whose connection is expected to be reused: the gateway's
/// connection task puts it back in the idle list apart from the request, so on a busy machine
/// the next request could otherwise open a second connection.
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}
