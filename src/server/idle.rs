//! Idle HTTP/1 keep-alive connections give hyper's buffers back. hyper keeps an 8 KB read and
//! an 8 KB write buffer for a connection's whole life and offers no way to release them, so a
//! connection that has been quiet for [`RELEASE_AFTER`], with nothing of hyper's pending, is
//! taken apart (`into_parts`): the socket is kept, hyper's state is dropped, and the next
//! request's first bytes start a fresh hyper connection on the same socket. An idle connection
//! then holds its task, its socket and a few small shared records (about 4 KB instead of 20).
//!
//! "Nothing pending" is decided from what the connection's [`Activity`] sees: no request in
//! flight (a request counts until hyper drops its response body, see [`Tracked`]), no byte read
//! since the last exchange ended, no write waiting for room, and a latest request without a
//! body (hyper may still be reading a body after its exchange ended; that state is never
//! dropped). Whatever hyper had read and not yet parsed comes back from `into_parts` and is
//! served again first. HTTP/2 connections are not released.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::detect::Prefixed;
use super::keepalive::{Activity, Timeouts};
use crate::body::{Body, BoxError};

/// How long an HTTP/1 connection stays quiet before its hyper buffers are released. Long
/// enough that a client sending requests back to back never pays for the rebuild (two buffer
/// allocations and one small read), short next to the keep-alive timeouts idle clients use.
pub const RELEASE_AFTER: Duration = Duration::from_secs(1);

/// Longest wait for a parked connection's TLS `close_notify` (or FIN) when it is closed.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// When a quiet connection may be parked: `None` while something is pending (see the module
/// doc) or on HTTP/2.
pub fn park_at(activity: &Activity) -> Option<Instant> {
    activity.quiet_since().map(|t| t + RELEASE_AFTER)
}

/// Waits on a parked connection until the next request's first bytes arrive (kept in `io`'s
/// buffer for the next hyper connection: `true`), or the client closes, the keep-alive timeout
/// passes, or the server drains (`false`; the socket is then shut down, bounded).
pub async fn wait_for_request<I>(
    io: &mut Prefixed<I>,
    activity: &Activity,
    timeouts: &Timeouts,
    shutdown: &mut watch::Receiver<bool>,
) -> bool
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let until = activity
        .deadline(timeouts)
        .unwrap_or_else(|| Instant::now() + timeouts.keepalive);
    let arrived = tokio::select! {
        n = io.read_ahead() => n > 0,
        () = tokio::time::sleep_until(until) => false,
        _ = shutdown.changed() => false,
    };
    if !arrived {
        let _ = tokio::time::timeout(CLOSE_WAIT, io.shutdown()).await;
    }
    arrived
}

/// Serves `bytes` (what hyper had read and not parsed) before anything else from `io`, and
/// reports them as read, which starts the request-head timer.
pub fn replay<I: AsyncRead + Unpin>(io: &mut Prefixed<I>, bytes: Bytes, activity: &Activity) {
    if !bytes.is_empty() {
        io.replay(bytes);
        activity.bytes_read();
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted in flight (through `guard`, whose drop
    /// ends it) until hyper drops the body: sent, or abandoned with the connection.
    pub struct Tracked<G> {
        #[pin]
        body: Body,
        guard: G,
    }
}

impl<G> Tracked<G> {
    /// Wraps `body`; `guard` is dropped with it.
    pub fn new(body: Body, guard: G) -> Self {
        Tracked { body, guard }
    }
}

impl<G> http_body::Body for Tracked<G> {
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
