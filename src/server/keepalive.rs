//! Idle keep-alive and the request-head timer between requests. An idle HTTP/1 connection may
//! stay quiet for `limits.keepalive_timeout`; once the next request's first byte arrives, its
//! head must be complete within `header_read_timeout`. hyper's own h1 header timer starts when
//! the previous response ends (it would cut idle keep-alive connections at
//! `header_read_timeout`), so it is off and this module times both, from read activity seen by
//! [`Watched`]. HTTP/2 connections close after `limits.idle_timeout` with no stream in flight.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The timeouts one connection obeys.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Quiet time allowed between HTTP/1 requests.
    pub keepalive: Duration,
    /// Quiet time allowed on an HTTP/2 connection with no stream in flight.
    pub idle_h2: Duration,
    /// From a request's first byte to its complete head.
    pub header_read: Duration,
}

/// What a connection's requests and reads report, shared by the connection task, its requests
/// and its [`Watched`] socket.
#[derive(Debug)]
pub struct Activity {
    born: Instant,
    in_flight: AtomicUsize,
    /// When the last request's handler returned (ms since `born`).
    last_active_ms: AtomicU64,
    /// First byte read while no request was in flight (ms since `born`, plus 1; 0: none).
    head_since: AtomicU64,
    h2: AtomicBool,
    /// The last write to the socket was refused for want of room: bytes are still to go.
    write_blocked: AtomicBool,
    /// The latest request came with a body (which the gateway may not have read to its end).
    with_body: AtomicBool,
}

/// What the connection task does when its timer fires.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Idle too long, or a request head too slow: close gracefully (a message in progress
    /// still completes; an idle or half-read head closes at once).
    Close,
    /// Check again at this instant.
    Wait(Instant),
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            born: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_active_ms: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            h2: AtomicBool::new(false),
            write_blocked: AtomicBool::new(false),
            with_body: AtomicBool::new(false),
        }
    }
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.born + Duration::from_millis(ms)
    }

    /// A request reached the service (its head is complete); `with_body`: it has a body.
    #[inline]
    pub fn request_started(&self, h2: bool, with_body: bool) {
        if self.with_body.load(Ordering::Relaxed) != with_body {
            self.with_body.store(with_body, Ordering::Relaxed);
        }
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if self.head_since.load(Ordering::Relaxed) != 0 {
            self.head_since.store(0, Ordering::Relaxed);
        }
        if h2 && !self.h2.load(Ordering::Relaxed) {
            self.h2.store(true, Ordering::Relaxed);
        }
    }

    /// The request's handler returned its response.
    #[inline]
    pub fn request_done(&self) {
        self.last_active_ms.store(self.now_ms(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// A request head has started arriving (and no request is in flight).
    pub fn head_started(&self) -> bool {
        self.in_flight() == 0 && self.head_since.load(Ordering::Relaxed) != 0
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Bytes arrived from the client (a request head starts when none is in flight).
    #[inline]
    pub(super) fn bytes_read(&self) {
        if self.head_since.load(Ordering::Relaxed) == 0
            && self.in_flight.load(Ordering::Relaxed) == 0
        {
            self.head_since.store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    #[inline]
    fn write_blocked(&self, blocked: bool) {
        if self.write_blocked.load(Ordering::Relaxed) != blocked {
            self.write_blocked.store(blocked, Ordering::Relaxed);
        }
    }

    /// Since when an HTTP/1 connection has been quiet with nothing pending: no request in
    /// flight, no byte read since the last one ended, no write waiting for room, and a latest
    /// request without a body. `None` otherwise, and always on HTTP/2.
    ///
    /// The body rule is the conservative one: a handler may answer before reading a body, and
    /// hyper then goes on reading (or draining) it after the exchange, a state that must never
    /// be dropped (the rest of the body would be read as a new request). Which bodies were read
    /// to their end is not visible here, so any request with a body keeps hyper's state until
    /// a later request without one.
    pub fn quiet_since(&self) -> Option<Instant> {
        let busy = self.in_flight() > 0
            || self.with_body.load(Ordering::Relaxed)
            || self.h2.load(Ordering::Relaxed)
            || self.head_since.load(Ordering::Relaxed) != 0
            || self.write_blocked.load(Ordering::Relaxed);
        (!busy).then(|| self.at(self.last_active_ms.load(Ordering::Relaxed)))
    }

    /// When the connection must next be looked at, or `None` while a request is in flight.
    pub fn deadline(&self, t: &Timeouts) -> Option<Instant> {
        if self.in_flight() > 0 {
            return None;
        }
        let h2 = self.h2.load(Ordering::Relaxed);
        let head = self.head_since.load(Ordering::Relaxed);
        if head != 0 && !h2 {
            return Some(self.at(head - 1) + t.header_read);
        }
        let idle = if h2 { t.idle_h2 } else { t.keepalive };
        Some(self.at(self.last_active_ms.load(Ordering::Relaxed)) + idle)
    }

    /// Called when the timer fires.
    pub fn verdict(&self, t: &Timeouts) -> Verdict {
        let now = Instant::now();
        match self.deadline(t) {
            None => Wait(now + t.keepalive.min(t.idle_h2)),
            Some(at) if at <= now => Verdict::Close,
            Some(at) => Wait(at),
        }
    }
}

use Verdict::Wait;

pin_project_lite::pin_project! {
    /// A connection's socket that reports reads to its [`Activity`].
    pub struct Watched<I> {
        #[pin]
        io: I,
        activity: Arc<Activity>,
        // A problem+json answer standing in for hyper's bare one, still to be written.
        rewritten: Option<Box<Pending>>,
    }
}

/// Bytes written on hyper's behalf, and how many of them went out.
struct Pending {
    bytes: Vec<u8>,
    sent: usize,
}

/// Writes what is left of `pending` (a no-op when there is nothing).
fn drain<I: AsyncWrite>(
    mut io: Pin<&mut I>,
    pending: &mut Option<Box<Pending>>,
    cx: &mut Context<'_>,
) -> Poll<std::io::Result<()>> {
    while let Some(p) = pending.as_mut() {
        if p.sent == p.bytes.len() {
            *pending = None;
            break;
        }
        let n = std::task::ready!(io.as_mut().poll_write(cx, &p.bytes[p.sent..]))?;
        if n == 0 {
            return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
        }
        p.sent += n;
    }
    Poll::Ready(Ok(()))
}

impl<I> Watched<I> {
    /// Wraps `io`.
    pub fn new(io: I, activity: Arc<Activity>) -> Self {
        Watched {
            io,
            activity,
            rewritten: None,
        }
    }
}

impl<I: AsyncRead> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.io.poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_read();
        }
        res
    }
}

impl<I: AsyncWrite> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut this = self.project();
        std::task::ready!(drain(this.io.as_mut(), this.rewritten, cx))?;
        if let Some(bytes) = super::bare_errors::rewrite(buf) {
            // Taken whole; it goes out on the flush hyper sends next.
            *this.rewritten = Some(Box::new(Pending { bytes, sent: 0 }));
            this.activity.write_blocked(true);
            return Poll::Ready(Ok(buf.len()));
        }
        let res = this.io.poll_write(cx, buf);
        this.activity.write_blocked(res.is_pending());
        res
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let mut this = self.project();
        std::task::ready!(drain(this.io.as_mut(), this.rewritten, cx))?;
        let mut written = bufs.iter().filter(|b| !b.is_empty());
        if let (Some(only), None) = (written.next(), written.next()) {
            if let Some(bytes) = super::bare_errors::rewrite(only) {
                *this.rewritten = Some(Box::new(Pending { bytes, sent: 0 }));
                this.activity.write_blocked(true);
                return Poll::Ready(Ok(only.len()));
            }
        }
        let res = this.io.poll_write_vectored(cx, bufs);
        this.activity.write_blocked(res.is_pending());
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut this = self.project();
        let drained = drain(this.io.as_mut(), this.rewritten, cx);
        this.activity.write_blocked(drained.is_pending());
        std::task::ready!(drained)?;
        let res = this.io.poll_flush(cx);
        this.activity.write_blocked(res.is_pending());
        res
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let mut this = self.project();
        std::task::ready!(drain(this.io.as_mut(), this.rewritten, cx))?;
        this.io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        keepalive: Duration::from_secs(75),
        idle_h2: Duration::from_secs(60),
        header_read: Duration::from_secs(10),
    };

    fn after_born(a: &Activity, at: Instant) -> Duration {
        at - a.born
    }

    #[tokio::test]
    async fn idle_h1_waits_keepalive_and_a_started_head_waits_header_read() {
        let a = Activity::default();
        a.request_started(false, false);
        assert_eq!(
            a.deadline(&T),
            None,
            "no timer while a request is in flight"
        );
        a.request_done();
        let idle = after_born(&a, a.deadline(&T).unwrap());
        assert!(idle >= Duration::from_secs(75) && idle < Duration::from_secs(76));
        a.bytes_read();
        let head = after_born(&a, a.deadline(&T).unwrap());
        assert!(head >= Duration::from_secs(10) && head < Duration::from_secs(11));
        assert!(matches!(a.verdict(&T), Verdict::Wait(_)));
        let cut = Timeouts {
            header_read: Duration::ZERO,
            ..T
        };
        assert_eq!(a.verdict(&cut), Verdict::Close, "a stalled head is cut");
        // The head completed: back to the keep-alive wait.
        a.request_started(false, false);
        a.request_done();
        assert!(matches!(a.verdict(&cut), Verdict::Wait(_)));
    }

    #[tokio::test]
    async fn only_a_quiet_h1_connection_after_a_bodiless_request_may_be_released() {
        let a = Activity::default();
        a.request_started(false, false);
        assert_eq!(a.quiet_since(), None, "in flight");
        a.request_done();
        assert!(a.quiet_since().is_some(), "quiet after a GET");
        a.write_blocked(true);
        assert_eq!(a.quiet_since(), None, "bytes still to write");
        a.write_blocked(false);
        a.bytes_read();
        assert_eq!(a.quiet_since(), None, "a head started");
        // A request with a body: its rest may still be read after the exchange.
        a.request_started(false, true);
        a.request_done();
        assert_eq!(a.quiet_since(), None, "after a request with a body");
        a.request_started(false, false);
        a.request_done();
        assert!(
            a.quiet_since().is_some(),
            "a later bodiless request clears it"
        );
        let h2 = Activity::default();
        h2.request_started(true, false);
        h2.request_done();
        assert_eq!(h2.quiet_since(), None, "never on HTTP/2");
    }

    #[tokio::test]
    async fn h2_reads_never_start_a_head_timer() {
        let a = Activity::default();
        a.request_started(true, false);
        a.request_done();
        a.bytes_read();
        let at = after_born(&a, a.deadline(&T).unwrap());
        assert!(at >= Duration::from_secs(60) && at < Duration::from_secs(61));
    }
}
