//! HTTP/1.1 client connections served with Portico's own codec (`net::h1`), one request at a
//! time (a pipelined head waits in the buffer for its turn): the head and keep-alive timers,
//! clients that leave mid-request, protocol switches, idle buffers given back, and the drain.
//!
//! Timers: before the first request, the head must arrive within `header_read_timeout` of
//! the connection opening; between requests the connection may stay quiet for
//! `keepalive_timeout`; once a head's first bytes arrive (and it is not whole in that read),
//! the rest must follow within `header_read_timeout`. One timer serves them all: it is reset
//! only when a deadline moves earlier, and when it fires early it is armed again for the
//! deadline that now holds, so a busy connection touches it about once a second.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use tokio::time::{Instant, Sleep};

use crate::body::{Body, ClientBody};
use crate::conn::ConnInfo;
use crate::error::GatewayError;
use crate::filter::headers::{self, X_REQUEST_ID};
use crate::gateway::Gateway;
use crate::handler;
use crate::net::h1::request_head::{self, BadHead, Framing, Head};
use crate::net::h1::response_head::{self, Asked};
use crate::net::h1::{self, Inbound, Names, PendingUpgrade, Returned, Wire, WriteError};
use crate::runtime::Runtime;
use crate::server::drain::Waiter;

/// Quiet time after which an idle connection gives its read buffer back (an idle keep-alive
/// connection then holds its task and socket only). Long enough that a client sending
/// requests back to back never pays for it.
pub const RELEASE_AFTER: Duration = Duration::from_secs(1);
/// Longest wait for a closing connection's TLS `close_notify` (or FIN) to go out.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// Bytes read ahead (a client's next, pipelined request) while a request is served; reading
/// on is how a client that leaves is noticed, so its request's upstream work is cancelled.
const READ_AHEAD: usize = 64 * 1024;

/// One connection's state between requests; `H` is the handler's future.
struct Serving<'a, H> {
    info: &'a ConnInfo,
    gateway: &'a Gateway,
    drain: &'a mut Waiter,
    /// A drain started: the request in flight is the last.
    closing: bool,
    opened: Instant,
    /// When the last response was written (`None` before the first request).
    last_done: Option<Instant>,
    /// The one timer, and the instant it is armed for.
    timer: Pin<Box<Sleep>>,
    armed: Instant,
    /// The last response's field map, emptied, for the next request's head.
    spare: HeaderMap,
    /// The last request head's field names.
    names: Names,
    /// Response heads are encoded here.
    wbuf: Vec<u8>,
    /// `limits.keepalive_timeout` as of the latest request.
    keepalive: Duration,
    /// The handler's future, in one allocation reused by each request on the connection (a
    /// request's future is several KB: a fresh one per request costs mimalloc's slow path);
    /// given back with the buffers when the connection goes quiet.
    handling: Option<Pin<Box<Option<H>>>>,
}

/// Why a connection stops reading requests.
enum Stop {
    /// Closed or timed out: close quietly.
    Quiet,
    /// A head that cannot be served: answer with this status, then close.
    Bad(BadHead),
}

/// Serves HTTP/1.1 on `wire` until the client closes, a timer or a drain ends it, or the
/// protocol switches.
pub async fn serve(
    wire: Wire,
    info: &ConnInfo,
    gateway: &Gateway,
    drain: &mut Waiter,
    opened: Instant,
) {
    let header_read = gateway.runtime().limits.header_read_timeout;
    let closing = drain.started();
    let mut s = Serving {
        info,
        gateway,
        drain,
        closing,
        opened,
        last_done: None,
        timer: Box::pin(tokio::time::sleep_until(opened + header_read)),
        armed: opened + header_read,
        spare: HeaderMap::new(),
        names: Names::default(),
        wbuf: Vec::new(),
        keepalive: gateway.runtime().limits.keepalive_timeout,
        handling: None,
    };
    let mut wire = wire;
    loop {
        let head = match s.next_head(&mut wire).await {
            Ok(h) => h,
            Err(Stop::Quiet) => break,
            Err(Stop::Bad(bad)) => {
                s.refuse(&mut wire, bad).await;
                break;
            }
        };
        let handle = |rt, request| handler::answer(rt, info, request);
        match s.exchange(wire, head, handle).await {
            Some(w) => wire = w,
            None => return,
        }
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, wire.shutdown()).await;
}

impl<H: Future<Output = (Response<Body>, HeaderValue)>> Serving<'_, H> {
    /// Waits for the next request head and parses it.
    async fn next_head(&mut self, wire: &mut Wire) -> Result<Head, Stop> {
        // Read once per request and copied: an idle connection does not hold on to a
        // configuration a reload replaced.
        let (max_bytes, max_fields, timeouts) = {
            let rt = self.gateway.peek();
            let l = &rt.limits;
            (
                l.max_header_bytes,
                l.max_headers,
                (l.header_read_timeout, l.keepalive_timeout),
            )
        };
        self.keepalive = timeouts.1;
        // When this head's first bytes arrived, once it is known not to be whole.
        let mut started: Option<Instant> = None;
        loop {
            if !wire.rbuf.is_empty() {
                match request_head::parse(
                    &mut wire.rbuf,
                    max_bytes,
                    max_fields,
                    &mut self.spare,
                    &mut self.names,
                ) {
                    Ok(Some(head)) => return Ok(head),
                    Ok(None) => {
                        if started.is_none() {
                            let now = Instant::now();
                            started = Some(now);
                            self.arm_before(now + timeouts.0);
                        }
                    }
                    Err(bad) => return Err(Stop::Bad(bad)),
                }
            }
            let idle = wire.rbuf.is_empty();
            if idle && self.closing {
                return Err(Stop::Quiet);
            }
            tokio::select! {
                biased;
                n = wire.fill() => match n {
                    Ok(0) | Err(_) => return Err(Stop::Quiet),
                    Ok(_) => {}
                },
                () = self.timer.as_mut() => {
                    if !self.on_timer(wire, started, timeouts) {
                        return Err(Stop::Quiet);
                    }
                }
                () = self.drain.wait(), if !self.closing => {
                    self.closing = true;
                    // A head already started is served (with `connection: close`); an idle
                    // connection closes at once.
                }
            }
        }
    }

    /// Moves the timer earlier, to `at`, if it is armed later.
    fn arm_before(&mut self, at: Instant) {
        if at < self.armed {
            self.armed = at;
            self.timer.as_mut().reset(at);
        }
    }

    /// The timer fired: `false` when the connection must close (a head too slow, a first
    /// request that never came, keep-alive over); else it gives the buffer back when quiet
    /// long enough and is armed again for what comes next.
    fn on_timer(
        &mut self,
        wire: &mut Wire,
        started: Option<Instant>,
        (header_read, keepalive): (Duration, Duration),
    ) -> bool {
        let now = Instant::now();
        // When the connection must close, and when to look again if not yet.
        let (close_at, next) = match (started, self.last_done) {
            (Some(at), _) => (at + header_read, at + header_read),
            (None, None) => (self.opened + header_read, self.opened + header_read),
            (None, Some(done)) => {
                if !wire.released() && now >= done + RELEASE_AFTER {
                    wire.release();
                    self.spare = HeaderMap::new();
                    self.names = Names::default();
                    self.wbuf = Vec::new();
                    self.handling = None;
                }
                let release_at = done + RELEASE_AFTER;
                let next = if wire.released() {
                    done + keepalive
                } else {
                    release_at.min(done + keepalive)
                };
                (done + keepalive, next)
            }
        };
        let over = now >= close_at;
        if over {
            tracing::debug!(peer = %self.info.peer, slow_head = started.is_some(), "closing: header or keep-alive timeout");
            return false;
        }
        self.armed = next;
        self.timer.as_mut().reset(next);
        true
    }

    /// Serves one request and writes its response; the connection back when it may carry
    /// another request, `None` when it closed (or switched protocols).
    async fn exchange(
        &mut self,
        wire: Wire,
        head: Head,
        handle: impl FnOnce(Arc<Runtime>, Request<ClientBody>) -> H,
    ) -> Option<Wire> {
        let Head {
            request,
            framing,
            keep_alive,
            expect_continue,
            upgrade,
        } = head;
        let mut keep_alive = keep_alive && !self.closing;
        let asked = Asked {
            head: request.method() == Method::HEAD,
            connect: request.method() == Method::CONNECT,
            http10: request.version() == Version::HTTP_10,
        };
        let mut held = None;
        let mut back = None;
        let mut request = match framing {
            Framing::Length(0) => {
                held = Some(wire);
                request.map(|()| ClientBody::empty())
            }
            _ => {
                let (body, b) = Inbound::new(wire, framing, expect_continue);
                back = Some(b);
                request.map(|()| ClientBody::H1(body))
            }
        };
        let switch = upgrade.then(|| {
            let (pending, tx) = PendingUpgrade::new();
            request.extensions_mut().insert(pending);
            tx
        });
        let rt = self.gateway.runtime();
        let slot = self.handling.get_or_insert_with(|| Box::pin(None));
        // The previous request's (finished) future is dropped before this one is written in.
        slot.set(None);
        slot.set(Some(handle(rt, request)));
        let mut handling = slot.as_mut().as_pin_mut().expect("just set");
        // While the handler runs, the connection is read on (when the body does not hold
        // it): a client that leaves cancels its request, like hyper's server does.
        let mut watching = held.is_some();
        let (resp, request_id) = loop {
            tokio::select! {
                biased;
                answer = handling.as_mut() => break answer,
                r = take_back(back.as_deref()), if held.is_none() => {
                    let (w, whole) = settle(r?);
                    watching = whole;
                    keep_alive &= whole;
                    held = Some(w);
                }
                n = read_on(held.as_mut()), if watching => match n {
                    Ok(0) | Err(_) => {
                        tracing::debug!(peer = %self.info.peer, "client left before its answer");
                        return None;
                    }
                    Ok(_) => watching = held.as_ref().is_some_and(|w| w.rbuf.len() < READ_AHEAD),
                },
            }
        };
        // Whatever the handler still holds (a runtime a reload replaced) goes now.
        slot.set(None);
        // A drain that started meanwhile makes this answer the connection's last. It is
        // looked at here, once, rather than waited on beside the handler: nothing happens
        // at the moment it starts (the request runs to its end either way).
        if !self.closing && self.drain.started() {
            self.closing = true;
        }
        let mut wire = match held {
            Some(w) => w,
            None => {
                // The body is still read by someone (an upstream HTTP/2 stream): the answer
                // waits until it ends or is dropped.
                let (w, whole) = settle(take_back(back.as_deref()).await?);
                keep_alive &= whole;
                w
            }
        };
        let (parts, body) = resp.into_parts();
        let switching = switch.is_some()
            && (parts.status == StatusCode::SWITCHING_PROTOCOLS
                || asked.connect && parts.status.is_success());
        keep_alive &= !self.closing;
        let framing = self.head(parts, request_id, &body, asked, &mut keep_alive);
        let written = h1::write_response(&mut wire, &mut self.wbuf, body, framing).await;
        if switching {
            if written.is_ok() {
                if let Some(tx) = switch {
                    // Nobody waiting (the handler did not take the switch): the connection
                    // closes with the sender.
                    let _ = tx.send(wire.upgrade());
                }
            }
            return None;
        }
        match written {
            Ok(()) if keep_alive => {
                let now = Instant::now();
                self.last_done = Some(now);
                // Quiet from now: the timer must fire by the release (or an earlier
                // keep-alive end); it moves only when armed later than that.
                self.arm_before(now + RELEASE_AFTER.min(self.keepalive));
                Some(wire)
            }
            Ok(()) | Err(WriteError::Body) => {
                let _ = tokio::time::timeout(CLOSE_WAIT, wire.shutdown()).await;
                None
            }
            Err(WriteError::Io(_)) => None,
        }
    }

    /// Answers a head that cannot be served with the gateway's problem+json, then the
    /// connection closes.
    async fn refuse(&mut self, wire: &mut Wire, bad: BadHead) {
        let err = match bad {
            BadHead::Malformed(what) => {
                tracing::debug!(peer = %self.info.peer, what, "unparsable request head");
                GatewayError::BadRequest("The request head could not be parsed.")
            }
            BadHead::TooLarge => GatewayError::HeadTooLarge,
            BadHead::UriTooLong => GatewayError::UriTooLong,
        };
        let id = headers::new_request_id();
        let resp: Response<Body> = err.into_response(id.to_str().unwrap_or(""));
        let mut keep_alive = false;
        let asked = Asked {
            head: false,
            connect: false,
            http10: false,
        };
        let (parts, body) = resp.into_parts();
        let framing = self.head(parts, id, &body, asked, &mut keep_alive);
        let _ = h1::write_response(wire, &mut self.wbuf, body, framing).await;
    }

    /// Writes a response head and its request id (in place of any `x-request-id` in its map)
    /// into the write buffer; the field map is kept, emptied, for the next request's head. Not
    /// `async`, and the id is taken: nothing of it stays in the connection's task while the
    /// body is written (an idle connection's task is its memory).
    fn head(
        &mut self,
        parts: http::response::Parts,
        request_id: HeaderValue,
        body: &Body,
        asked: Asked,
        keep_alive: &mut bool,
    ) -> response_head::Framing {
        let framing = response_head::encode(
            &mut self.wbuf,
            parts.status,
            &parts.headers,
            Some((&X_REQUEST_ID, &request_id)),
            &body.size_hint(),
            asked,
            keep_alive,
        );
        self.spare = parts.headers;
        self.spare.clear();
        framing
    }
}

/// Reads more of the connection when it is here; never ready when the body holds it.
async fn read_on(wire: Option<&mut Wire>) -> std::io::Result<usize> {
    match wire {
        Some(w) => w.fill().await,
        None => std::future::pending().await,
    }
}

/// The connection, once the request body gives it back.
async fn take_back(back: Option<&h1::Back>) -> Option<Returned> {
    poll_fn(|cx| back.map_or(std::task::Poll::Ready(None), |b| b.poll_take(cx))).await
}

/// The connection a body gave back, and whether it can carry another request: a body read
/// whole, or one whose unread rest is already in the buffer (dropped here).
fn settle(r: Returned) -> (Wire, bool) {
    match r {
        Returned::Whole(w) => (w, true),
        Returned::Unread(mut w, left) => {
            let whole = h1::discard_buffered(&mut w, left);
            (w, whole)
        }
        Returned::Broken(w) => (w, false),
    }
}
