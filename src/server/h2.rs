//! HTTP/2 connections (h2c prior knowledge, or TLS ALPN `h2`), served by hyper's own connection:
//! the first request's deadline (a stalled preface or SETTINGS exchange holds no slot past
//! `header_read_timeout`), the idle timer (no stream in flight for `limits.idle_timeout`), and
//! the drain (GOAWAY, streams in flight finish).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::{Frame, SizeHint};
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

use super::preface::FirstRequest;
use crate::body::{Body, BoxError, ClientBody};
use crate::conn::ConnInfo;
use crate::gateway::Gateway;
use crate::handler;
use crate::runtime::Limits;
use crate::server::drain::Waiter;

/// Streams in flight on one connection, and when the last one ended.
#[derive(Debug)]
struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// When the last stream's response was done (ms since `born`).
    last_active_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
        }
    }

    fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn done(&self) {
        let ms = self.born.elapsed().as_millis() as u64;
        self.last_active_ms.store(ms, Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// When the connection has been idle too long, or `None` while a stream is in flight.
    fn idle_until(&self, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        let ms = self.last_active_ms.load(Ordering::Relaxed);
        Some(self.born + Duration::from_millis(ms) + idle)
    }
}

/// Per-connection state shared with its streams: one `Arc` clone per request.
struct Conn {
    gateway: Arc<Gateway>,
    info: ConnInfo,
    activity: Activity,
    first: FirstRequest,
}

/// A stream counted in flight until this is dropped: with its response body once hyper has
/// sent it (or abandoned it), or with the handler if that is cancelled.
struct InFlight(Arc<Conn>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.activity.done();
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its stream counted in flight until hyper drops it.
    struct Tracked {
        #[pin]
        body: Body,
        guard: InFlight,
    }
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// What a stream's future is: boxed, so hyper's per-stream state holds a pointer.
type Handling = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

fn builder(limits: &Limits) -> http2::Builder<TokioExecutor> {
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

/// Serves HTTP/2 on `io` until the client closes it, it is idle for `limits.idle_timeout`, no
/// request came by `first_deadline`, or a drain ends it.
pub async fn serve<I>(
    io: I,
    info: ConnInfo,
    gateway: Arc<Gateway>,
    mut drain: Waiter,
    mut first_deadline: Pin<&mut Sleep>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let idle = gateway.runtime().limits.idle_timeout;
    let conn = Arc::new(Conn {
        gateway,
        info,
        activity: Activity::new(),
        first: FirstRequest::default(),
    });
    let svc_conn = conn.clone();
    let service = service_fn(
        move |req: hyper::Request<hyper::body::Incoming>| -> Handling {
            let c = svc_conn.clone();
            Box::pin(async move {
                c.activity.started();
                c.first.arrived();
                let rt = c.gateway.runtime();
                let in_flight = InFlight(c);
                let req = req.map(ClientBody::Hyper);
                let resp = handler::handle(rt, &in_flight.0.info, req).await;
                Ok::<_, Infallible>(resp.map(|body| Tracked {
                    body,
                    guard: in_flight,
                }))
            })
        },
    );
    let limits = &conn.gateway.runtime().limits;
    let mut served = Box::pin(builder(limits).serve_connection(TokioIo::new(io), service));
    let activity = &conn.activity;
    let mut armed = Instant::now() + idle;
    let idle_timer = tokio::time::sleep_until(armed);
    tokio::pin!(idle_timer);
    let mut closing = drain.started();
    if closing {
        served.as_mut().graceful_shutdown();
    }
    let mut first_checked = false;
    loop {
        tokio::select! {
            biased;
            res = served.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(peer = %conn.info.peer, error = %e, "connection ended with error");
                }
                return;
            }
            _ = first_deadline.as_mut(), if !first_checked => {
                first_checked = true;
                if !conn.first.seen() {
                    tracing::debug!(peer = %conn.info.peer, "no request within header_read_timeout; closing");
                    return;
                }
            }
            () = drain.wait(), if !closing => {
                closing = true;
                served.as_mut().graceful_shutdown();
            }
            () = idle_timer.as_mut(), if !closing => {
                let now = Instant::now();
                match activity.idle_until(idle) {
                    Some(at) if at <= now => {
                        tracing::debug!(peer = %conn.info.peer, "idle HTTP/2 connection; closing");
                        closing = true;
                        served.as_mut().graceful_shutdown();
                    }
                    Some(at) => armed = at,
                    None => armed = now + idle,
                }
                idle_timer.as_mut().reset(armed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn idle_only_without_streams_in_flight() {
        let a = Activity::new();
        let idle = Duration::from_secs(60);
        a.started();
        assert_eq!(a.idle_until(idle), None);
        a.done();
        let at = a.idle_until(idle).unwrap() - a.born;
        assert!(at >= idle && at < idle + Duration::from_secs(1));
    }
}
