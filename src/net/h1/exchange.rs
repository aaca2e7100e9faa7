//! One exchange on a connection: the request written (head, then the body as it comes,
//! chunked or not, watching for an answer that arrives before the body is all sent), the
//! response head read past any 1xx, and the response returned with a body that owns the
//! connection.

use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body as _;
use tokio::io::AsyncWrite;

use super::body::ResponseBody;
use super::conn::Conn;
use super::decode::{self, MAX_FIELDS};
use super::encode::{self, Framing};
use super::error::Error;
use crate::body::RequestBody;
use crate::net::added::Extra;
use crate::net::stream::Stream;

/// How long an upstream that broke the connection while the request went out is given for
/// the answer it may have sent first.
const LAST_WORDS: Duration = Duration::from_millis(100);

/// Why an exchange failed.
#[derive(Debug)]
pub struct Failure {
    /// The request is untouched and may go on another connection: a reused connection (the
    /// upstream may have closed it while idle) failed before any answer, the body was never
    /// read, and either nothing was written or the method is idempotent.
    pub again: bool,
    /// What happened.
    pub error: Error,
}

/// The request going out, and what is known of the answer.
struct Sending {
    framing: Framing,
    /// Body bytes still owed under a content-length.
    left: u64,
    /// Being written: the connection's `wbuf` (head or a chunk-size line), `data`, `tail`.
    data: Bytes,
    tail: &'static [u8],
    /// How much of those three is written.
    at: usize,
    /// Bytes written in the exchange before those three.
    written: usize,
    /// The body has been asked for a frame: it can no longer be given back.
    polled: bool,
    /// Every frame of the body is queued.
    queued: bool,
    /// The upstream sent bytes (an answer has begun).
    heard: bool,
    /// The upstream closed its side.
    eof: bool,
}

/// How the sending ended.
enum Sent {
    /// The request went out whole.
    Whole,
    /// The upstream answered before the body was all sent.
    Early,
}

/// Sends `req` (its URI holds the path and query) and `extra` (a Host, the gateway's fields)
/// on `conn` and waits for the response head. The request is borrowed, not taken: after a
/// failure that allows it, the caller sends it again as it is (one copy of it in the request's
/// future, not one here and one there).
pub async fn send(
    mut conn: Box<Conn>,
    req: &mut Request<RequestBody>,
    extra: Extra<'_>,
) -> Result<Response<ResponseBody>, Failure> {
    let head_request = req.method() == Method::HEAD;
    let (framing, say_length) = encode::framing(req);
    encode::head(&mut conn.wbuf, req, extra, framing, say_length);
    let mut s = Sending {
        framing,
        left: match framing {
            Framing::Length(n) => n,
            Framing::Chunked => 0,
        },
        data: Bytes::new(),
        tail: b"",
        at: 0,
        written: 0,
        polled: false,
        queued: false,
        heard: false,
        eof: false,
    };
    // A body already in memory goes out with the head, without polling it (so the request
    // stays whole for another connection).
    if let Some(full) = req.body().in_memory() {
        let data = full.cloned().unwrap_or_default();
        match framing {
            Framing::Length(n) if n != data.len() as u64 => {
                return Err(failure(&conn, req, &s, Error::BodyLength));
            }
            Framing::Length(_) => {}
            Framing::Chunked if data.is_empty() => s.tail = b"0\r\n\r\n",
            Framing::Chunked => {
                encode::chunk_size(&mut conn.wbuf, data.len());
                s.tail = b"\r\n0\r\n\r\n";
            }
        }
        s.left = 0;
        s.data = data;
        s.queued = true;
    }
    let sent = poll_fn(|cx| poll_send(&mut conn, req.body_mut(), &mut s, cx)).await;
    let (whole, answer) = match sent {
        Ok(sent) => (
            matches!(sent, Sent::Whole),
            poll_fn(|cx| poll_head(&mut conn, &mut s, req, cx)).await,
        ),
        // An upstream that answers before reading the whole body (an early 413) and closes
        // makes the write fail: its answer may have arrived all the same. The hang-up makes
        // the socket readable at once, so a short wait is enough.
        Err(Error::Io(e)) => {
            let read = poll_fn(|cx| poll_head(&mut conn, &mut s, req, cx));
            match tokio::time::timeout(LAST_WORDS, read).await {
                Ok(Ok(head)) => (false, Ok(head)),
                _ => return Err(failure(&conn, req, &s, Error::Io(e))),
            }
        }
        Err(e) => return Err(failure(&conn, req, &s, e)),
    };
    let head = match answer {
        Ok(h) => h,
        Err(e) => return Err(failure(&conn, req, &s, e)),
    };
    respond(conn, head, head_request, whole).map_err(|error| Failure {
        again: false,
        error,
    })
}

/// A response head taken off the connection.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    http10: bool,
    seen: decode::Seen,
}

/// The response from its head; the body takes the connection.
fn respond(
    conn: Box<Conn>,
    mut head: Head,
    head_request: bool,
    whole: bool,
) -> Result<Response<ResponseBody>, Error> {
    let (kind, keep) = decode::body_kind(
        head.status,
        head_request,
        head.http10,
        head.seen,
        &mut head.headers,
    )?;
    // A request not sent whole leaves the connection mid-message.
    let body = ResponseBody::new(conn, kind, keep && whole);
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    *resp.headers_mut() = head.headers;
    Ok(resp)
}

fn failure(conn: &Conn, req: &Request<RequestBody>, s: &Sending, error: Error) -> Failure {
    let closed = matches!(error, Error::Io(_) | Error::ClosedBeforeHead);
    let again = conn.reused
        && closed
        && !s.polled
        && !s.heard
        && (s.written + s.at == 0 || crate::net::is_idempotent(req.method()));
    Failure { again, error }
}

/// Writes the head and body; returns early when a final response head arrives first.
fn poll_send(
    conn: &mut Conn,
    body: &mut RequestBody,
    s: &mut Sending,
    cx: &mut Context<'_>,
) -> Poll<Result<Sent, Error>> {
    loop {
        match poll_write_out(&mut conn.io, &conn.wbuf, &s.data, s.tail, &mut s.at, cx) {
            Poll::Ready(Ok(())) => {
                s.written += s.at;
                s.at = 0;
                conn.wbuf.clear();
                s.data = Bytes::new();
                s.tail = b"";
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
            Poll::Pending => return watch(conn, s, cx),
        }
        if s.queued {
            return Pin::new(&mut conn.io)
                .poll_flush(cx)
                .map(|r| r.map(|()| Sent::Whole).map_err(Error::Io));
        }
        s.polled = true;
        let frame = match Pin::new(&mut *body).poll_frame(cx) {
            // While the client's body is slow, what was written must reach the upstream: TLS
            // may still hold it (a no-op on plain TCP).
            Poll::Pending => match Pin::new(&mut conn.io).poll_flush(cx) {
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
                _ => return watch(conn, s, cx),
            },
            Poll::Ready(None) => {
                match s.framing {
                    Framing::Length(_) if s.left != 0 => {
                        return Poll::Ready(Err(Error::BodyLength));
                    }
                    Framing::Length(_) => {}
                    Framing::Chunked => s.tail = b"0\r\n\r\n",
                }
                s.queued = true;
                continue;
            }
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(Error::Body(e))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        // Trailers of a request body are not forwarded (as hyper's client).
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        match s.framing {
            Framing::Length(_) => {
                let n = data.len() as u64;
                if n > s.left {
                    return Poll::Ready(Err(Error::BodyLength));
                }
                s.left -= n;
            }
            Framing::Chunked => {
                encode::chunk_size(&mut conn.wbuf, data.len());
                s.tail = b"\r\n";
            }
        }
        s.data = data;
        if body.is_end_stream() {
            match s.framing {
                Framing::Length(_) if s.left != 0 => return Poll::Ready(Err(Error::BodyLength)),
                Framing::Length(_) => {}
                Framing::Chunked => s.tail = b"\r\n0\r\n\r\n",
            }
            s.queued = true;
        }
    }
}

/// While the request is still going out: reads what the upstream sends, and says `Early`
/// once a final response head is complete. Else pending (both wakers are registered).
fn watch(conn: &mut Conn, s: &mut Sending, cx: &mut Context<'_>) -> Poll<Result<Sent, Error>> {
    while !s.eof {
        match conn.poll_fill(cx) {
            Poll::Pending => break,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::Io(e))),
            Poll::Ready(Ok(0)) => s.eof = true,
            Poll::Ready(Ok(_)) => {
                s.heard = true;
                let mut fields = [[0; 4]; MAX_FIELDS];
                if decode::final_head(&mut conn.rbuf, &mut fields)?.is_some() {
                    return Poll::Ready(Ok(Sent::Early));
                }
            }
        }
    }
    Poll::Pending
}

/// Reads until a final response head is complete, and takes it off the buffer. The request's
/// field map, grown by the gateway's own fields, takes the response's: hyper's server then
/// keeps it for the next request's head, so no map is allocated per request.
fn poll_head(
    conn: &mut Conn,
    s: &mut Sending,
    req: &mut Request<RequestBody>,
    cx: &mut Context<'_>,
) -> Poll<Result<Head, Error>> {
    loop {
        // (Nothing to parse before the first bytes: the usual first poll only registers.)
        if !conn.rbuf.is_empty() {
            let mut fields = [[0; 4]; MAX_FIELDS];
            if let Some(p) = decode::final_head(&mut conn.rbuf, &mut fields)? {
                let bytes = conn.rbuf.split_to(p.len).freeze();
                let mut map = std::mem::take(req.headers_mut());
                map.clear();
                let (status, headers, seen) =
                    decode::build(&bytes, &p, &fields, map, &mut conn.names)?;
                return Poll::Ready(Ok(Head {
                    status,
                    headers,
                    http10: p.http10,
                    seen,
                }));
            }
        }
        if s.eof {
            return Poll::Ready(Err(if s.heard {
                Error::Head("truncated")
            } else {
                Error::ClosedBeforeHead
            }));
        }
        match ready!(conn.poll_fill(cx)) {
            Ok(0) => s.eof = true,
            Ok(_) => s.heard = true,
            Err(e) => return Poll::Ready(Err(Error::Io(e))),
        }
    }
}

/// Writes `head`, `data` and `tail` from offset `at` on, moving `at` as bytes go out.
fn poll_write_out(
    io: &mut Stream,
    head: &[u8],
    data: &[u8],
    tail: &[u8],
    at: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    loop {
        let mut skip = *at;
        let mut slices = [IoSlice::new(&[]); 3];
        let mut k = 0;
        for piece in [head, data, tail] {
            if skip >= piece.len() {
                skip -= piece.len();
                continue;
            }
            slices[k] = IoSlice::new(&piece[skip..]);
            skip = 0;
            k += 1;
        }
        if k == 0 {
            return Poll::Ready(Ok(()));
        }
        let n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..k]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        *at += n;
    }
}
