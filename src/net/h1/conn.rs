//! One upstream HTTP/1.1 connection: its stream, its read and write buffers, and the idle list
//! it goes back to.

use std::any::Any;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncRead;
use tokio::time::Instant;

use super::idle::IdleList;
use super::names::Names;
use crate::net::stream::Stream;

/// The smallest read: hyper's default buffer size, large enough for a typical response head
/// and body in one `read`.
const READ_MIN: usize = 8 * 1024;
/// The largest read a long body grows to.
const READ_MAX: usize = 128 * 1024;

/// An open connection to an endpoint, owned by one exchange at a time.
pub struct Conn {
    pub(super) io: Stream,
    /// Bytes read and not yet handed out. Head fields and body chunks are frozen slices of it,
    /// so it is reused in place once they are dropped.
    pub(super) rbuf: BytesMut,
    /// The request head being written (then chunk-size lines), kept for the next exchange.
    pub(super) wbuf: Vec<u8>,
    /// How much the next read asks for: doubles while reads fill it (long bodies).
    read_size: usize,
    /// The endpoint's idle list.
    pub(super) home: Weak<IdleList>,
    /// Carried an exchange before: a failure before any answer may be the upstream closing
    /// it while idle, so the request may go on another connection.
    pub(super) reused: bool,
    /// When it went idle.
    pub(super) since: Instant,
    /// The field names of the last response head.
    pub(super) names: Names,
    /// Counted under the upstream's `max_connections` until dropped.
    _counted: Option<Box<dyn Any + Send + Sync>>,
}

impl Conn {
    /// A new connection that returns to `home` when idle; `counted` is dropped with it.
    pub fn new(
        io: Stream,
        home: &Arc<IdleList>,
        counted: Option<Box<dyn Any + Send + Sync>>,
    ) -> Box<Conn> {
        Box::new(Conn {
            io,
            rbuf: BytesMut::with_capacity(READ_MIN),
            wbuf: Vec::new(),
            read_size: READ_MIN,
            home: Arc::downgrade(home),
            reused: false,
            since: Instant::now(),
            names: Names::default(),
            _counted: counted,
        })
    }

    /// Reads more bytes into `rbuf`; `Ok(0)` at end of stream.
    pub(super) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_fill(
            &mut self.io,
            &mut self.rbuf,
            &mut self.read_size,
            READ_MAX,
            cx,
        )
    }

    /// Back to the normal read size before going idle; a buffer a long body grew is let go
    /// (the next exchange takes a normal one), so idle connections stay small.
    pub(super) fn rest(&mut self) {
        self.read_size = READ_MIN;
        if self.rbuf.capacity() > 2 * READ_MIN {
            self.rbuf = BytesMut::new();
        }
    }
}

/// Reads more bytes from `io` into `rbuf`, asking for `read_size` (doubled, up to `max`,
/// while reads fill what was asked: long bodies); `Ok(0)` at end of stream. The buffer is
/// taken back in place when no slice of it is alive any more.
pub(super) fn poll_fill<I: AsyncRead + Unpin>(
    io: &mut I,
    rbuf: &mut BytesMut,
    read_size: &mut usize,
    max: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let spare = rbuf.capacity() - rbuf.len();
    if spare < *read_size / 4 {
        rbuf.reserve(*read_size);
    }
    let asked = rbuf.capacity() - rbuf.len();
    let n = std::task::ready!(tokio_util::io::poll_read_buf(Pin::new(io), cx, rbuf))?;
    if n >= asked && *read_size < max {
        *read_size *= 2;
    }
    Poll::Ready(Ok(n))
}
