//! A client's request body, read straight from its connection. The body holds the connection
//! while it is read and gives it back to the server (through [`Back`]) in the poll that reads
//! its last byte, or when it is dropped or fails; the server then writes the response on it.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes};
use http_body::{Frame, SizeHint};

use super::chunked::{Chunked, Step};
use super::request_head::Framing;
use super::wire::Wire;

/// The interim answer a client that sent `expect: 100-continue` waits for.
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Why reading a request body failed.
#[derive(Debug, thiserror::Error)]
pub enum InboundError {
    /// The client closed the connection before the end of the body.
    #[error("the client closed the connection before the end of the request body")]
    Closed,
    /// Reading the connection failed.
    #[error("reading the request body: {0}")]
    Io(#[from] std::io::Error),
    /// The chunked body is malformed.
    #[error("invalid chunked request body: {0}")]
    Chunked(&'static str),
}

/// How a body gave its connection back.
#[derive(Debug)]
pub enum Returned {
    /// Read to its end: the next request starts in the buffer.
    Whole(Wire),
    /// Dropped with `left` bytes still unread under its content-length.
    Unread(Wire, u64),
    /// Dropped mid chunked body, or failed: the connection cannot carry another request.
    Broken(Wire),
}

/// The slot a body returns its connection through, and the server's waker.
#[derive(Debug, Default)]
pub struct Back {
    slot: Mutex<(Option<Returned>, Option<Waker>)>,
}

impl Back {
    fn put(&self, r: Returned) {
        let waker = match self.slot.lock() {
            Ok(mut s) => {
                s.0 = Some(r);
                s.1.take()
            }
            Err(_) => None,
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The connection once the body is done with it.
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Option<Returned>> {
        let Ok(mut s) = self.slot.lock() else {
            return Poll::Ready(None);
        };
        match s.0.take() {
            Some(r) => Poll::Ready(Some(r)),
            None => {
                s.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The body of a request on an HTTP/1.1 client connection.
pub struct Inbound {
    /// The connection, while the body is being read (boxed: the body moves with its request
    /// through the request's future, which stays small).
    wire: Option<Box<Wire>>,
    state: State,
    /// Bytes of the interim `100 Continue` still to write (0 when none is owed).
    continue_at: usize,
    owe_continue: bool,
    back: Option<Arc<Back>>,
}

enum State {
    Length(u64),
    Chunked(Chunked),
    Done,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Inbound")
    }
}

impl Inbound {
    /// A request without a body.
    pub fn empty() -> Inbound {
        Inbound {
            wire: None,
            state: State::Done,
            continue_at: 0,
            owe_continue: false,
            back: None,
        }
    }

    /// The body framed as `framing` on `wire`, which goes back through the returned slot.
    /// `expect_continue`: the client waits for `100 Continue`, sent when the body is first
    /// read (a handler that answers without reading it never invites it).
    pub fn new(wire: Wire, framing: Framing, expect_continue: bool) -> (Inbound, Arc<Back>) {
        let back = Arc::new(Back::default());
        let state = match framing {
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunked::Size),
        };
        let owe_continue = expect_continue && wire.rbuf.is_empty();
        let body = Inbound {
            wire: Some(Box::new(wire)),
            state,
            continue_at: 0,
            owe_continue,
            back: Some(back.clone()),
        };
        (body, back)
    }

    fn give_back(&mut self, how: fn(Wire, u64) -> Returned, left: u64) {
        if let (Some(wire), Some(back)) = (self.wire.take(), self.back.as_ref()) {
            back.put(how(*wire, left));
        }
    }

    fn finish(&mut self) {
        self.state = State::Done;
        self.give_back(|w, _| Returned::Whole(w), 0);
    }

    fn fail(&mut self, e: InboundError) -> Poll<Option<Result<Frame<Bytes>, InboundError>>> {
        self.state = State::Done;
        self.give_back(|w, _| Returned::Broken(w), 0);
        Poll::Ready(Some(Err(e)))
    }

    /// Writes what is left of `100 Continue`.
    fn poll_continue(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some(wire) = self.wire.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        while self.continue_at < CONTINUE.len() {
            let n = std::task::ready!(wire.poll_write_some(cx, &CONTINUE[self.continue_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.continue_at += n;
        }
        std::task::ready!(wire.poll_flush(cx))?;
        self.owe_continue = false;
        Poll::Ready(Ok(()))
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        match self.state {
            State::Done => {}
            State::Length(left) => self.give_back(Returned::Unread, left),
            State::Chunked(_) => self.give_back(|w, _| Returned::Broken(w), 0),
        }
    }
}

impl http_body::Body for Inbound {
    type Data = Bytes;
    type Error = InboundError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, InboundError>>> {
        let this = self.get_mut();
        if this.owe_continue {
            if let Err(e) = std::task::ready!(this.poll_continue(cx)) {
                return this.fail(e.into());
            }
        }
        loop {
            let Some(wire) = this.wire.as_mut() else {
                return Poll::Ready(None);
            };
            let buffered = wire.rbuf.len() as u64;
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) if buffered > 0 => {
                    let n = (*left).min(buffered);
                    let data = wire.rbuf.split_to(n as usize).freeze();
                    *left -= n;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Length(_) => {}
                State::Chunked(c) => match c.step(&mut wire.rbuf) {
                    Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Step::Trailers(t)) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                    Ok(Step::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Step::More) => {}
                    Err(e) => return this.fail(InboundError::Chunked(e.chunked_reason())),
                },
            }
            match std::task::ready!(wire.poll_fill(cx)) {
                Ok(0) => return this.fail(InboundError::Closed),
                Ok(_) => {}
                Err(e) => return this.fail(InboundError::Io(e)),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Done => SizeHint::with_exact(0),
            State::Length(n) => SizeHint::with_exact(n),
            State::Chunked(_) => SizeHint::default(),
        }
    }
}

/// What is left of an unread body when it is all in `wire`'s buffer: dropped, so the
/// connection can serve the next request. `false` when more is still to come.
pub fn discard_buffered(wire: &mut Wire, left: u64) -> bool {
    if (wire.rbuf.len() as u64) < left {
        return false;
    }
    wire.rbuf.advance(left as usize);
    true
}
