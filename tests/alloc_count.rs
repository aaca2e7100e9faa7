//! Heap allocations per proxied request on the plain route, counted by a global allocator that
//! wraps the system one. The gateway runs on a thread of its own (a current-thread runtime, as
//! with `workers = 1`), the backend is the load tests' fixed backend in a child process and the
//! client is a blocking socket on the test thread, so only the gateway's own allocations are
//! counted. `unsafe` is needed to implement `GlobalAlloc`; it lives in this test binary only
//! (the crate itself keeps `#![forbid(unsafe_code)]`).
//!
//! Run with `cargo test --test alloc_count -- --nocapture` to see the figures.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;

use support::*;

struct Counting;

static WINDOW: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static REALLOCS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);
/// Heap bytes the gateway's thread holds (allocated there minus freed there).
static LIVE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

fn on_gateway_thread() -> bool {
    GATEWAY_THREAD.try_with(Cell::get).unwrap_or(false)
}

thread_local! {
    static GATEWAY_THREAD: Cell<bool> = const { Cell::new(false) };
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

/// `ALLOC_TRACE=N`: the backtraces of the first N counted allocations, printed at the end
/// (to find where each one comes from).
static TRACE_LEFT: AtomicU64 = AtomicU64::new(0);
static TRACES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// `IDLE_TRACE=1`: the allocations made while the last idle connection opened that are still
/// held when it is idle, with where each was made.
static LIVE_TRACE: AtomicBool = AtomicBool::new(false);
type Held = Vec<(usize, usize, String)>;
static HELD: std::sync::Mutex<Held> = std::sync::Mutex::new(Vec::new());

fn trace_held(ptr: *mut u8, size: usize) {
    if !LIVE_TRACE.load(Ordering::Relaxed) || IN_TRACE.with(Cell::get) || !on_gateway_thread() {
        return;
    }
    IN_TRACE.with(|c| c.set(true));
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    let frames: Vec<&str> = bt
        .lines()
        .filter(|l| !l.trim_start().starts_with("at "))
        .filter(|l| !l.contains("alloc_count::") && !l.contains("alloc::alloc"))
        .filter(|l| !l.contains(" core::") && !l.contains(" alloc::") && !l.contains(" std::"))
        .take(12)
        .collect();
    HELD.lock()
        .unwrap()
        .push((ptr as usize, size, frames.join("\n")));
    IN_TRACE.with(|c| c.set(false));
}

fn untrace_held(ptr: *mut u8) {
    if !LIVE_TRACE.load(Ordering::Relaxed) || IN_TRACE.with(Cell::get) {
        return;
    }
    IN_TRACE.with(|c| c.set(true));
    HELD.lock().unwrap().retain(|(p, _, _)| *p != ptr as usize);
    IN_TRACE.with(|c| c.set(false));
}

fn trace(size: usize) {
    if TRACE_LEFT.load(Ordering::Relaxed) == 0 || IN_TRACE.with(Cell::get) {
        return;
    }
    IN_TRACE.with(|c| c.set(true));
    TRACE_LEFT.fetch_sub(1, Ordering::Relaxed);
    let bt = std::backtrace::Backtrace::force_capture().to_string();
    let frames: Vec<&str> = bt
        .lines()
        .filter(|l| !l.trim_start().starts_with("at "))
        .filter(|l| !l.contains("alloc_count::") && !l.contains("alloc::alloc"))
        .take(14)
        .collect();
    TRACES
        .lock()
        .unwrap()
        .push(format!("--- {size} bytes\n{}", frames.join("\n")));
    IN_TRACE.with(|c| c.set(false));
}

fn counted() -> bool {
    WINDOW.load(Ordering::Relaxed) && on_gateway_thread()
}

/// Counts an allocation of `size` bytes made through the counting allocator.
fn count_alloc(size: usize) {
    if on_gateway_thread() {
        LIVE.fetch_add(size as i64, Ordering::Relaxed);
    }
    if counted() {
        if !IN_TRACE.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(size as u64, Ordering::Relaxed);
        }
        trace(size);
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the wrapper only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        trace_held(p, layout.size());
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_alloc(layout.size());
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        trace_held(p, layout.size());
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if on_gateway_thread() {
            LIVE.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        }
        untrace_held(ptr);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if on_gateway_thread() {
            LIVE.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        if counted() {
            if !IN_TRACE.with(Cell::get) {
                REALLOCS.fetch_add(1, Ordering::Relaxed);
            }
            trace(new_size);
        }
        untrace_held(ptr);
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        trace_held(p, new_size);
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The gateway on its own thread; dropping the sender stops it.
struct GatewayThread {
    addr: SocketAddr,
    /// What `start_with`'s closure returned (e.g. a token minted by the gateway).
    extra: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GatewayThread {
    fn start(config: String) -> GatewayThread {
        Self::start_with(config, Vec::new(), |_| String::new())
    }

    fn start_with(
        config: String,
        files: Vec<(String, String)>,
        extra: impl FnOnce(&TestGateway) -> String + Send + 'static,
    ) -> GatewayThread {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            GATEWAY_THREAD.with(|c| c.set(true));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let refs: Vec<(&str, &str)> = files
                    .iter()
                    .map(|(n, t)| (n.as_str(), t.as_str()))
                    .collect();
                let gw = TestGateway::start_with_files(&config, &refs).await;
                addr_tx.send((gw.addr, extra(&gw))).unwrap();
                // Serve until the test is done (polling the stop channel without blocking
                // the runtime).
                while let Err(mpsc::TryRecvError::Empty) = stop_rx.try_recv() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                drop(gw);
            });
        });
        let (addr, extra) = addr_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("gateway started");
        GatewayThread {
            addr,
            extra,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for GatewayThread {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `n` keep-alive GETs on `stream` (the head oha sends) and reads each answer.
fn requests_on(stream: &mut impl ReadWrite, host: SocketAddr, n: usize) {
    requests_to(stream, host, "/plain", "", n)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// `requests` on `path`, with `extra` header lines (each ending in CRLF).
fn requests_to(stream: &mut impl ReadWrite, host: SocketAddr, path: &str, extra: &str, n: usize) {
    let req = format!(
        "GET {path} HTTP/1.1\r\naccept: */*\r\nuser-agent: oha/1.8.0\r\nhost: {host}\r\n{extra}\r\n"
    );
    let mut buf = vec![0u8; 16384];
    for i in 0..n {
        stream.write_all(req.as_bytes()).unwrap();
        let mut have = 0;
        loop {
            let got = stream.read(&mut buf[have..]).unwrap();
            assert!(got > 0, "gateway closed the connection at request {i}");
            have += got;
            let text = &buf[..have];
            let Some(end) = text.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            let head = std::str::from_utf8(&text[..end]).unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().unwrap())
                })
                .expect("content-length");
            if have >= end + 4 + len {
                assert_eq!(have, end + 4 + len, "one answer per request");
                break;
            }
        }
    }
}

/// Allocations (alloc + realloc) per request on the gateway's thread over `n` requests.
fn per_request(gw: &GatewayThread, n: usize) -> (f64, f64, f64) {
    per_request_to(gw, "/plain", "", n)
}

fn per_request_to(gw: &GatewayThread, path: &str, extra: &str, n: usize) -> (f64, f64, f64) {
    let mut stream = TcpStream::connect(gw.addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let requests = |s: &mut TcpStream, host, n| requests_to(s, host, path, extra, n);
    // Warm up: the upstream connection, the route's metric series, the runtime's slabs.
    requests(&mut stream, gw.addr, 200);
    let (a0, r0, b0) = (
        ALLOCS.load(Ordering::Relaxed),
        REALLOCS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    );
    if let Some(k) = std::env::var("ALLOC_TRACE")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        TRACE_LEFT.store(k, Ordering::SeqCst);
    }
    WINDOW.store(true, Ordering::SeqCst);
    requests(&mut stream, gw.addr, n);
    WINDOW.store(false, Ordering::SeqCst);
    for t in TRACES.lock().unwrap().iter() {
        println!("{t}");
    }
    let n = n as f64;
    (
        (ALLOCS.load(Ordering::Relaxed) - a0) as f64 / n,
        (REALLOCS.load(Ordering::Relaxed) - r0) as f64 / n,
        (BYTES.load(Ordering::Relaxed) - b0) as f64 / n,
    )
}

/// The target is 6 allocations per proxied plain request; what is left on a kept connection is
/// 0.06 per request at the time of writing, occasional refills such as the per-thread chunk
/// request ids are cut from (one allocation per 64 ids) (3 before the connection reused the request future's
/// allocation and wrote its `X-Forwarded-For` once, 7 with hyper's client connections per
/// endpoint, 12 with hyper-util's legacy pooled client). Neither side allocates per request:
/// read buffers are reused in place, the request's field map is reused for the response's and
/// the response's for the next request's head. A change that adds one allocation per request
/// fails here.
const CEILING: f64 = 0.5;

/// The two tests count on every gateway thread: they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn allocations_per_proxied_plain_request() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let backend = FixedBackend::start(64);
    let config = config()
        .no_access_log()
        .upstream("fixed", &[&backend.addr.to_string()])
        .route("fixed", "/", "fixed")
        .build();
    let gw = GatewayThread::start(config);
    let (allocs, reallocs, bytes) = per_request(&gw, 2000);
    println!(
        "allocations per proxied request: {:.2} (+ {reallocs:.2} reallocs, {bytes:.0} bytes)",
        allocs
    );
    assert!(
        allocs + reallocs <= CEILING,
        "{allocs:.2} allocations + {reallocs:.2} reallocs per request (ceiling {CEILING})"
    );
}

/// A connection to the gateway: plain, or TLS (a blocking rustls client).
trait Dial {
    type Stream: Read + Write;
    fn dial(&self) -> Self::Stream;
}

struct Plain(SocketAddr);

impl Dial for Plain {
    type Stream = TcpStream;
    fn dial(&self) -> TcpStream {
        let s = TcpStream::connect(self.0).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s
    }
}

struct Tls(SocketAddr, std::sync::Arc<rustls::ClientConfig>);

impl Dial for Tls {
    type Stream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;
    fn dial(&self) -> Self::Stream {
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(self.1.clone(), name).unwrap();
        rustls::StreamOwned::new(conn, Plain(self.0).dial())
    }
}

/// Heap bytes the gateway holds per idle keep-alive connection (each after one request): what
/// load-tests/idle-conns measures as RSS, without the allocator's and the kernel's share.
fn idle_heap_per_connection(gw: &GatewayThread, n: usize) -> f64 {
    idle_heap_per(&Plain(gw.addr), gw.addr, n)
}

fn idle_heap_per<D: Dial>(dial: &D, host: SocketAddr, n: usize) -> f64 {
    let mut warm = dial.dial();
    requests_on(&mut warm, host, 50);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let before = LIVE.load(Ordering::SeqCst);
    let mut held = Vec::with_capacity(n);
    let tracing = std::env::var_os("IDLE_TRACE").is_some();
    for i in 0..n {
        if tracing && i == n - 1 {
            LIVE_TRACE.store(true, Ordering::SeqCst);
        }
        let mut s = dial.dial();
        requests_on(&mut s, host, 1);
        held.push(s);
    }
    // Past the delay after which a quiet connection gives its read buffer back (src/server/h1.rs).
    std::thread::sleep(std::time::Duration::from_millis(1400));
    let after = LIVE.load(Ordering::SeqCst);
    LIVE_TRACE.store(false, Ordering::SeqCst);
    for (_, size, at) in HELD.lock().unwrap().iter() {
        println!("--- held {size} bytes\n{at}");
    }
    drop(held);
    (after - before) as f64 / n as f64
}

/// Ceiling on heap bytes per idle plain keep-alive connection, measured after the release
/// delay (src/server/h1.rs): the connection's read buffer and the request future's allocation
/// are gone by then, and what is left is the connection's task (3.3 KB in this debug build),
/// its socket registration and shared records (3.9 KB at the time of writing; 20.9 KB while
/// hyper's state was kept).
const IDLE_CEILING: f64 = 4_000.0;

#[test]
fn heap_per_idle_keep_alive_connection() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let backend = FixedBackend::start(64);
    let config = config()
        .no_access_log()
        .upstream("fixed", &[&backend.addr.to_string()])
        .route("fixed", "/", "fixed")
        .build();
    let gw = GatewayThread::start(config);
    let per = idle_heap_per_connection(&gw, 200);
    println!("heap bytes per idle keep-alive connection: {per:.0}");
    assert!(
        per <= IDLE_CEILING,
        "{per:.0} heap bytes per idle connection"
    );
}

/// The demo upstreams (users, orders, catalog) on a thread and runtime of their own, so their
/// allocations are not counted; returns their `[upstreams]` tables.
fn demo_upstreams_thread() -> String {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            tx.send(demo_upstreams().await).unwrap();
            std::future::pending::<()>().await;
        });
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("demo upstreams started")
}

/// Ceiling on heap bytes per idle TLS keep-alive connection, after the release delay (15.1 KB
/// at the time of writing: the plain connection's plus rustls' connection state and buffers;
/// 33.4 KB while hyper's state was kept).
const IDLE_TLS_CEILING: f64 = 17_000.0;

#[test]
fn heap_per_idle_tls_keep_alive_connection() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let backend = FixedBackend::start(64);
    let pki = support::tls::Pki::new("alloc-count CA");
    let leaf = pki.server(&["localhost"]);
    let config = config()
        .no_access_log()
        .toml(
            "[server.tls]\nlisten = \"127.0.0.1:0\"\ncertificates = [ { cert = \"api.pem\", key = \"api.key\" } ]",
        )
        .upstream("fixed", &[&backend.addr.to_string()])
        .route("fixed", "/", "fixed")
        .build();
    let files = vec![
        ("api.pem".to_string(), leaf.cert_pem.clone()),
        ("api.key".to_string(), leaf.key_pem.clone()),
    ];
    let gw = GatewayThread::start_with(config, files, |gw| {
        gw.running().https_addr().unwrap().to_string()
    });
    let tls_addr: SocketAddr = gw.extra.parse().unwrap();
    let client = support::tls::client_config(support::tls::ClientOpts {
        roots: vec![&pki],
        alpn: vec![b"http/1.1"],
        ..Default::default()
    });
    let per = idle_heap_per(&Tls(tls_addr, client), tls_addr, 100);
    println!("heap bytes per idle TLS keep-alive connection: {per:.0}");
    assert!(
        per <= IDLE_TLS_CEILING,
        "{per:.0} heap bytes per idle TLS connection"
    );
}

/// Ceiling on allocations per BFF mobile /home (JWT, three parts, shaping, merge): 53 allocations
/// and 2 reallocations at the time of writing, with Portico's own upstream client (65 with
/// hyper's client connections, 125 with a projected tree per part, 245 before parsing capped
/// arrays and shaping in place, 144 with the legacy upstream client).
const BFF_CEILING: f64 = 60.0;

#[test]
fn allocations_per_bff_mobile_home() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let config = config()
        .no_access_log()
        .toml(&demo_upstreams_thread())
        .provider(
            "dev",
            "https://auth.portico.local",
            &["HS256"],
            "secret_file = \"dev.secret\"",
        )
        .build();
    let mut files = shipped_profiles();
    files.push((
        "dev.secret".into(),
        "a-test-secret-that-is-long-enough-for-hs256".into(),
    ));
    let gw = GatewayThread::start_with(config, files, |gw| {
        let rt = gw.running().gateway.runtime();
        let dev = rt.auth.providers.get("dev").unwrap();
        dev.mint(&portico::filter::auth::MintOptions {
            sub: "42".into(),
            ttl: std::time::Duration::from_secs(600),
            ..Default::default()
        })
        .unwrap()
    });
    let auth = format!("authorization: Bearer {}\r\n", gw.extra);
    let (allocs, reallocs, bytes) = per_request_to(&gw, "/mobile/home", &auth, 500);
    println!(
        "allocations per BFF mobile /home: {allocs:.2} (+ {reallocs:.2} reallocs, {bytes:.0} bytes)"
    );
    assert!(
        allocs + reallocs <= BFF_CEILING,
        "{allocs:.2} allocations + {reallocs:.2} reallocs per /home (ceiling {BFF_CEILING})"
    );
}
