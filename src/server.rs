//! Listeners and connections: accept loop, hyper-util auto (HTTP/1.1 + h2c), idle and drain.

pub mod preface;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use crate::conn::ConnInfo;
use crate::gateway::Gateway;
use crate::handler;
use crate::runtime::Limits;

/// Counts open connections so shutdown can wait for them to drain.
#[derive(Debug, Default)]
pub struct ConnTracker {
    open: AtomicUsize,
    drained: Notify,
}

/// Held by each open connection; dropping it marks the connection closed.
pub struct ConnGuard(Arc<ConnTracker>);

impl ConnTracker {
    /// Registers a new connection.
    pub fn open(self: &Arc<Self>) -> ConnGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        ConnGuard(self.clone())
    }

    /// Number of open connections.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until no connection is open.
    pub async fn wait_drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// Per-connection state shared with its requests: one `Arc` clone per request.
struct Conn {
    gateway: Arc<Gateway>,
    info: ConnInfo,
    in_flight: AtomicUsize,
    last_active_ms: AtomicU64,
    born: Instant,
    first: preface::FirstRequest,
}

impl Conn {
    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }
}

struct InFlight<'a>(&'a Conn);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .last_active_ms
            .store(self.0.now_ms(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One accepted TCP connection and the slot (connection count, cap permit) it holds until the
/// task serving it ends.
pub struct Accepted {
    /// The socket.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Our address the client connected to.
    pub local: SocketAddr,
    /// Dropped when the connection ends.
    pub slot: (ConnGuard, OwnedSemaphorePermit),
}

/// The accept loop shared by every listener: enforces `limits.max_connections`, sets
/// TCP_NODELAY, and hands each connection to `start`, whose future (if any) runs on its own
/// task. Ends at shutdown, which drops the listener so new connections are refused.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    gateway: &Gateway,
    tracker: Arc<ConnTracker>,
    mut shutdown: watch::Receiver<bool>,
    kind: &'static str,
    mut start: F,
) where
    F: FnMut(Accepted) -> Option<Fut>,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(gateway.runtime().limits.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(error = %e, listener = kind, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, listener = kind, "connection limit reached; closing new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let slot = (tracker.open(), permit);
        if let Some(serve) = start(Accepted {
            stream,
            peer,
            local,
            slot,
        }) {
            tokio::spawn(serve);
        }
    }
}

/// Accepts plain TCP connections (HTTP/1.1 and h2c) until shutdown.
pub async fn accept_plain(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    tracker: Arc<ConnTracker>,
    shutdown: watch::Receiver<bool>,
) {
    let conn_shutdown = shutdown.clone();
    accept_loop(listener, &gateway.clone(), tracker, shutdown, "http", |a| {
        let info = ConnInfo {
            peer: a.peer,
            local: a.local,
            tls: false,
            client_cert: None,
            https_port: gateway.https_port(),
            tunnels: Default::default(),
        };
        let (gateway, shutdown) = (gateway.clone(), conn_shutdown.clone());
        Some(async move {
            serve_connection(a.stream, info, gateway, shutdown).await;
            drop(a.slot);
        })
    })
    .await;
}

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(250)
        // RFC 8441: WebSocket over HTTP/2 (extended CONNECT).
        .enable_connect_protocol()
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Serves one connection (plain or TLS) until it closes, is idle too long, or shutdown drains it.
pub async fn serve_connection<I>(
    io: I,
    info: ConnInfo,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = gateway.runtime().limits.clone();
    let conn = Arc::new(Conn {
        gateway,
        info,
        in_flight: AtomicUsize::new(0),
        last_active_ms: AtomicU64::new(0),
        born: Instant::now(),
        first: preface::FirstRequest::default(),
    });
    let svc_conn = conn.clone();
    let service = service_fn(move |req| {
        let c = svc_conn.clone();
        async move {
            c.in_flight.fetch_add(1, Ordering::Relaxed);
            c.first.arrived();
            let _in_flight = InFlight(&c);
            let rt = c.gateway.runtime();
            Ok::<_, Infallible>(handler::handle(rt, &c.info, req).await)
        }
    });
    let builder = builder(&limits);
    let served = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(served);
    let idle = limits.idle_timeout;
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    let first_deadline = preface::deadline(limits.header_read_timeout);
    tokio::pin!(first_deadline);
    let mut first_checked = false;
    let mut closing = *shutdown.borrow();
    if closing {
        served.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            res = served.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(peer = %conn.info.peer, error = %e, "connection ended with error");
                }
                break;
            }
            _ = &mut first_deadline, if !first_checked => {
                first_checked = true;
                if !conn.first.seen() {
                    tracing::debug!(peer = %conn.info.peer, "no request head within header_read_timeout; closing");
                    break;
                }
            }
            _ = shutdown.changed(), if !closing => {
                closing = true;
                served.as_mut().graceful_shutdown();
            }
            _ = &mut idle_timer, if !closing => {
                let quiet_for = conn.now_ms().saturating_sub(conn.last_active_ms.load(Ordering::Relaxed));
                let quiet_for = Duration::from_millis(quiet_for);
                if conn.in_flight.load(Ordering::Relaxed) == 0 && quiet_for >= idle {
                    closing = true;
                    served.as_mut().graceful_shutdown();
                } else {
                    let wait = idle.saturating_sub(quiet_for).max(Duration::from_millis(10));
                    idle_timer.as_mut().reset(tokio::time::Instant::now() + wait);
                }
            }
        }
    }
    // Tunnels upgraded from this connection keep its slot: a drain waits for them (up to
    // `shutdown_grace`, after which the process exits and closes them).
    conn.info.tunnels.wait_closed().await;
}
