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

thread_local! {
    static GATEWAY_THREAD: Cell<bool> = const { Cell::new(false) };
    static IN_TRACE: Cell<bool> = const { Cell::new(false) };
}

/// `ALLOC_TRACE=N`: the backtraces of the first N counted allocations, printed at the end
/// (to find where each one comes from).
static TRACE_LEFT: AtomicU64 = AtomicU64::new(0);
static TRACES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

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
    WINDOW.load(Ordering::Relaxed) && GATEWAY_THREAD.with(Cell::get)
}

// SAFETY: every call is forwarded unchanged to `System`; the wrapper only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counted() {
            if !IN_TRACE.with(Cell::get) {
                ALLOCS.fetch_add(1, Ordering::Relaxed);
                BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
            }
            trace(layout.size());
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if counted() {
            if !IN_TRACE.with(Cell::get) {
                ALLOCS.fetch_add(1, Ordering::Relaxed);
                BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
            }
            trace(layout.size());
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counted() {
            if !IN_TRACE.with(Cell::get) {
                REALLOCS.fetch_add(1, Ordering::Relaxed);
            }
            trace(new_size);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The gateway on its own thread; dropping the sender stops it.
struct GatewayThread {
    addr: SocketAddr,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GatewayThread {
    fn start(config: String) -> GatewayThread {
        let (addr_tx, addr_rx) = mpsc::channel();
        let (stop, stop_rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            GATEWAY_THREAD.with(|c| c.set(true));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let gw = TestGateway::start(&config).await;
                addr_tx.send(gw.addr).unwrap();
                // Serve until the test is done (polling the stop channel without blocking
                // the runtime).
                loop {
                    match stop_rx.try_recv() {
                        Err(mpsc::TryRecvError::Empty) => {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await
                        }
                        _ => break,
                    }
                }
                drop(gw);
            });
        });
        let addr = addr_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("gateway started");
        GatewayThread {
            addr,
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
fn requests(stream: &mut TcpStream, host: SocketAddr, n: usize) {
    let req = format!(
        "GET /plain HTTP/1.1\r\naccept: */*\r\nuser-agent: oha/1.8.0\r\nhost: {host}\r\n\r\n"
    );
    let mut buf = vec![0u8; 4096];
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
    let mut stream = TcpStream::connect(gw.addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
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

/// The target is 6 allocations per proxied plain request; this ceiling is what the gateway
/// does with the legacy upstream client (9 of its 11 are hyper-util's pooled client and
/// hyper's client dispatch), so a change that adds one fails here.
const CEILING: f64 = 12.0;

#[test]
fn allocations_per_proxied_plain_request() {
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
