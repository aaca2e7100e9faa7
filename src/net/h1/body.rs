//! A response body read straight from its connection. The connection goes back to its idle
//! list as soon as the last byte is read (in the same poll that yields it), and is closed if
//! the body is dropped before its end.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::chunked::{Chunked, Step};
use super::conn::Conn;
use super::decode::Kind;
use super::error::Error;

/// The body of a response from an upstream HTTP/1.1 connection.
pub struct ResponseBody {
    /// The connection, until the body has ended.
    conn: Option<Box<Conn>>,
    state: State,
    /// The connection may carry another exchange once the body is read whole.
    keep: bool,
}

enum State {
    Length(u64),
    Chunked(Chunked),
    Eof,
    Done,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseBody")
    }
}

impl ResponseBody {
    /// The body framed as `kind` on `conn`; `keep`: the connection may be reused after it.
    pub(super) fn new(conn: Box<Conn>, kind: Kind, keep: bool) -> ResponseBody {
        let state = match kind {
            Kind::Empty | Kind::Length(0) => State::Done,
            Kind::Length(n) => State::Length(n),
            Kind::Chunked => State::Chunked(Chunked::Size),
            Kind::Eof => State::Eof,
        };
        let mut body = ResponseBody {
            conn: Some(conn),
            state,
            keep,
        };
        if matches!(body.state, State::Done) {
            body.finish();
        }
        body
    }

    /// The body has ended: the connection goes back to its idle list when it may, else closes.
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take() {
            // Bytes after the response (nothing asked for them) make it unusable.
            if self.keep && conn.rbuf.is_empty() {
                if let Some(home) = conn.home.upgrade() {
                    home.park(conn);
                }
            }
        }
    }

    /// Ends the body with an error; the connection closes.
    fn fail(&mut self, e: Error) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        self.state = State::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let buffered = conn.rbuf.len() as u64;
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) if buffered > 0 => {
                    let n = (*left).min(buffered);
                    let data = conn.rbuf.split_to(n as usize).freeze();
                    *left -= n;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Length(_) => {}
                State::Chunked(c) => match c.step(&mut conn.rbuf) {
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
                    Err(e) => return this.fail(e),
                },
                State::Eof if buffered > 0 => {
                    let data = conn.rbuf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Eof => {}
            }
            match std::task::ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.state, State::Eof) => {
                    this.state = State::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => return this.fail(Error::ClosedMidBody),
                Ok(_) => {}
                Err(e) => return this.fail(Error::Io(e)),
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
            _ => SizeHint::default(),
        }
    }
}
