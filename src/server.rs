//! Listeners and connections: accept loop, HTTP/1.1 or HTTP/2 (h2c, ALPN h2) served by hyper's
//! own connection once the protocol is known, idle and drain.

mod bare_errors;
pub mod detect;
mod idle;
pub mod keepalive;
pub mod preface;
pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use std::pin::Pin;

use http::Response;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use crate::conn::ConnInfo;
use crate::gateway::Gateway;
use crate::handler;
use crate::runtime::Limits;
use detect::Proto;

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
    activity: Arc<keepalive::Activity>,
    first: preface::FirstRequest,
}

/// A request counted in flight on its connection until this is dropped: with its response
/// body once hyper has sent it (or abandoned it), or with the handler if that is cancelled.
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.activity.request_done();
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
            serve_connection(a.stream, info, None, gateway, shutdown).await;
            drop(a.slot);
        })
    })
    .await;
}

/// What a request's future is: boxed, so that hyper's per-connection slot for it (allocated
/// when the connection opens and kept while it is idle) is a pointer, not the whole handler
/// state (several KB); the box lives only while a request runs.
type Handling = Pin<Box<dyn Future<Output = Result<Response<Answer>, Infallible>> + Send>>;

/// A response body as served: it keeps its request in flight until hyper drops it.
type Answer = idle::Tracked<InFlight>;

fn http1_builder(limits: &Limits) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.timer(TokioTimer::new())
        // keepalive.rs times request heads from their first byte (hyper's timer would run
        // from the end of the previous response and cut idle keep-alive connections).
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .max_headers(limits.max_headers)
        .keep_alive(true);
    b
}

fn http2_builder(limits: &Limits) -> http2::Builder<TokioExecutor> {
    let mut b = http2::Builder::new(TokioExecutor::new());
    b.timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(250)
        // RFC 8441: WebSocket over HTTP/2 (extended CONNECT).
        .enable_connect_protocol()
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20));
    b
}

/// Serves one connection (plain or TLS) until it closes, is idle too long, or shutdown drains it.
/// `proto` is what TLS negotiated (ALPN), if anything; otherwise the first bytes decide.
pub async fn serve_connection<I>(
    io: I,
    info: ConnInfo,
    proto: Option<Proto>,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &gateway.runtime().limits;
    let timeouts = keepalive::Timeouts {
        keepalive: limits.keepalive_timeout,
        idle_h2: limits.idle_timeout,
        header_read: limits.header_read_timeout,
    };
    let first_deadline = preface::deadline(limits.header_read_timeout);
    tokio::pin!(first_deadline);
    let activity = Arc::new(keepalive::Activity::default());
    let mut io = detect::Prefixed::new(keepalive::Watched::new(io, activity.clone()));
    let proto = match proto {
        Some(p) => p,
        // A silent connection, or one stalled in the preface, is timed by the first
        // request's deadline; a drain closes it at once.
        None => tokio::select! {
            p = io.detect() => match p {
                Some(p) => p,
                None => return,
            },
            _ = &mut first_deadline => {
                tracing::debug!(peer = %info.peer, "no request head within header_read_timeout; closing");
                return;
            }
            _ = shutdown.changed() => return,
        },
    };
    let conn = Arc::new(Conn {
        gateway,
        info,
        activity,
        first: preface::FirstRequest::default(),
    });
    let svc_conn = conn.clone();
    let service = service_fn(
        move |req: hyper::Request<hyper::body::Incoming>| -> Handling {
            let c = svc_conn.clone();
            Box::pin(async move {
                let h2 = req.version() == hyper::Version::HTTP_2;
                c.activity
                    .request_started(h2, !hyper::body::Body::is_end_stream(req.body()));
                c.first.arrived();
                let rt = c.gateway.runtime();
                let in_flight = InFlight(c);
                let resp = handler::handle(rt, &in_flight.0.info, req).await;
                Ok::<_, Infallible>(resp.map(|body| idle::Tracked::new(body, in_flight)))
            })
        },
    );
    let mut driving = Driving {
        conn: &conn,
        timeouts,
        first_deadline: first_deadline.as_mut(),
        first_checked: false,
        shutdown,
    };
    match proto {
        Proto::Http1 => {
            // Each pass serves until the connection ends, or until it has been quiet long
            // enough to give hyper's buffers back (idle.rs); the socket then waits for the
            // next request's first bytes and a fresh hyper connection serves it.
            let mut io = io;
            loop {
                let limits = &conn.gateway.runtime().limits;
                let mut served = http1_builder(limits)
                    .serve_connection(TokioIo::new(io), service.clone())
                    .with_upgrades();
                let ended = driving
                    .drive(Pin::new(&mut served), |c| c.graceful_shutdown(), true)
                    .await;
                if ended == Ended::Closed {
                    break;
                }
                // Quiet: nothing of hyper's is pending, so its state can go.
                let Some(parts) = served.into_parts() else {
                    break;
                };
                io = parts.io.into_inner();
                idle::replay(&mut io, parts.read_buf, &conn.activity);
                if !io.has_replay()
                    && !idle::wait_for_request(
                        &mut io,
                        &conn.activity,
                        &timeouts,
                        &mut driving.shutdown,
                    )
                    .await
                {
                    break;
                }
            }
        }
        // Boxed: an HTTP/1 connection's task does not carry the size of an HTTP/2 one.
        Proto::Http2 => {
            let limits = &conn.gateway.runtime().limits;
            let mut served =
                Box::pin(http2_builder(limits).serve_connection(TokioIo::new(io), service));
            Box::pin(driving.drive(served.as_mut(), |c| c.graceful_shutdown(), false)).await;
        }
    }
    // Tunnels upgraded from this connection keep its slot: a drain waits for them (up to
    // `shutdown_grace`, after which the process exits and closes them).
    conn.info.tunnels.wait_closed().await;
}

/// What drives a served connection: its timers and the drain signal.
struct Driving<'a> {
    conn: &'a Conn,
    timeouts: keepalive::Timeouts,
    first_deadline: Pin<&'a mut tokio::time::Sleep>,
    first_checked: bool,
    shutdown: watch::Receiver<bool>,
}

/// Why [`Driving::drive`] returned.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The connection is over.
    Closed,
    /// Quiet for `idle::RELEASE_AFTER` with nothing pending: hyper's state can be dropped.
    Quiet,
}

impl Driving<'_> {
    /// Polls hyper's connection until it ends, closing it gracefully when idle too long, when a
    /// request head is too slow, when no first request came in time, or at shutdown. With
    /// `release`, it returns [`Ended::Quiet`] instead once the connection has been quiet for
    /// `idle::RELEASE_AFTER` with nothing pending (the caller then drops hyper's state).
    async fn drive<F>(
        &mut self,
        mut served: Pin<&mut F>,
        graceful: impl Fn(Pin<&mut F>),
        release: bool,
    ) -> Ended
    where
        F: Future<Output = Result<(), hyper::Error>>,
    {
        let (activity, timeouts) = (&self.conn.activity, &self.timeouts);
        let mut armed = tokio::time::Instant::now() + timeouts.keepalive.max(timeouts.idle_h2);
        let idle_timer = tokio::time::sleep_until(armed);
        tokio::pin!(idle_timer);
        // Armed once per quiet spell, not per request (the release time only moves later):
        // when it fires early, it is armed again for the current release time.
        let mut quiet_armed = false;
        let quiet_timer = tokio::time::sleep_until(armed);
        tokio::pin!(quiet_timer);
        let mut closing = *self.shutdown.borrow();
        if closing {
            graceful(served.as_mut());
        }
        loop {
            // Polled after `served` in the same pass: a head that just started (or a request
            // that just ended) moves the deadline earlier without an extra wake-up.
            let timer = std::future::poll_fn(|cx| {
                if let Some(want) = activity.deadline(timeouts) {
                    if want < armed {
                        armed = want;
                        idle_timer.as_mut().reset(want);
                    }
                }
                idle_timer.as_mut().poll(cx)
            });
            // Pending while anything is in flight, and before a first request (a silent new
            // connection stays under `header_read_timeout`). Checked on every pass, not in the
            // branch's condition (evaluated once per loop), so a request that ends arms it.
            let first = &self.conn.first;
            let quiet = std::future::poll_fn(|cx| match idle::park_at(activity) {
                Some(at) if first.seen() => {
                    if !quiet_armed {
                        quiet_armed = true;
                        quiet_timer.as_mut().reset(at);
                    }
                    quiet_timer.as_mut().poll(cx)
                }
                _ => std::task::Poll::Pending,
            });
            tokio::select! {
                biased;
                res = served.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(peer = %self.conn.info.peer, error = %e, "connection ended with error");
                    }
                    return Ended::Closed;
                }
                _ = self.first_deadline.as_mut(), if !self.first_checked => {
                    self.first_checked = true;
                    if !self.conn.first.seen() {
                        tracing::debug!(peer = %self.conn.info.peer, "no request head within header_read_timeout; closing");
                        return Ended::Closed;
                    }
                }
                _ = self.shutdown.changed(), if !closing => {
                    closing = true;
                    graceful(served.as_mut());
                }
                _ = timer, if !closing => {
                    match activity.verdict(timeouts) {
                        // A stalled head is dropped at once: nothing is in flight, and hyper
                        // would wait for the rest of a head on a connection it did not see
                        // serve a request (one rebuilt after a release, see idle.rs).
                        keepalive::Verdict::Close if activity.head_started() => {
                            tracing::debug!(peer = %self.conn.info.peer, "slow request head; closing");
                            return Ended::Closed;
                        }
                        keepalive::Verdict::Close => {
                            tracing::debug!(peer = %self.conn.info.peer, "idle keep-alive; closing");
                            closing = true;
                            graceful(served.as_mut());
                        }
                        keepalive::Verdict::Wait(at) => {
                            armed = at;
                            idle_timer.as_mut().reset(at);
                        }
                    }
                }
                _ = quiet, if release && !closing => {
                    // Still quiet now (the check and the timer agree); else re-armed for the
                    // release time the latest request moved it to.
                    if idle::park_at(activity).is_some_and(|at| at <= tokio::time::Instant::now()) {
                        return Ended::Quiet;
                    }
                    quiet_armed = false;
                }
            }
        }
    }
}
