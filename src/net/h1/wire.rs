//! A client connection as Portico's HTTP/1.1 server holds it: the socket (plain TCP or TLS,
//! behind one pointer) and its read buffer, and the same two handed over once the protocol
//! switches (`Upgraded`).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use std::sync::{Arc, Mutex};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::oneshot;

/// The smallest read (hyper's default buffer size too).
const READ_MIN: usize = 8 * 1024;
/// The largest read a long request body grows to.
const READ_MAX: usize = 64 * 1024;

/// A byte stream the server can serve: a TCP socket or a TLS session over one.
pub trait Io: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Io for T {}

/// A client connection's socket and the bytes read from it and not yet used.
pub struct Wire {
    io: Box<dyn Io>,
    /// Read and not yet parsed (the next head, or the body of the current request). Head
    /// fields and body chunks are frozen slices of it, so it is reused in place once they
    /// are dropped.
    pub rbuf: BytesMut,
    /// How much the next read asks for: doubles while reads fill it (long bodies).
    read_size: usize,
}

impl Wire {
    /// `io`, with `first` (bytes already read from it) to be parsed first.
    pub fn new(io: Box<dyn Io>, first: &[u8]) -> Wire {
        let mut rbuf = BytesMut::with_capacity(READ_MIN);
        rbuf.extend_from_slice(first);
        Wire {
            io,
            rbuf,
            read_size: READ_MIN,
        }
    }

    /// Reads more bytes into `rbuf`; `Ok(0)` at end of stream.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        super::conn::poll_fill(
            &mut self.io,
            &mut self.rbuf,
            &mut self.read_size,
            READ_MAX,
            cx,
        )
    }

    /// Reads more bytes into `rbuf`; `Ok(0)` at end of stream. A connection that gave its
    /// buffer back reads into a small one on the stack first (see [`Wire::release`]).
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.released() {
            return self.fill_released().await;
        }
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// Gives the read buffer back while the connection is idle (nothing is buffered): an
    /// idle keep-alive connection then holds no buffer at all.
    pub fn release(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
            self.read_size = READ_MIN;
        }
    }

    /// Whether the read buffer was given back.
    pub fn released(&self) -> bool {
        self.rbuf.capacity() == 0
    }

    /// Waits for the next bytes of a released connection, reading them into a small buffer
    /// on the stack first, so a connection that never speaks again never takes a full one.
    async fn fill_released(&mut self) -> io::Result<usize> {
        let mut first = [0u8; 512];
        let n = {
            let mut buf = ReadBuf::new(&mut first);
            std::future::poll_fn(|cx| Pin::new(&mut self.io).poll_read(cx, &mut buf)).await?;
            buf.filled().len()
        };
        if n > 0 {
            self.rbuf.reserve(READ_MIN);
            self.rbuf.extend_from_slice(&first[..n]);
        }
        Ok(n)
    }

    /// Writes all of `bufs` (one `writev` when the socket takes it all) and flushes.
    pub async fn write_all(&mut self, bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
        let mut bufs = &mut bufs[..];
        IoSlice::advance_slices(&mut bufs, 0);
        while !bufs.is_empty() {
            let n = self.io.write_vectored(bufs).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut bufs, n);
        }
        self.io.flush().await
    }

    /// Writes `bytes` without flushing (a TLS session may hold them until the next flush).
    pub fn poll_write_some(
        &mut self,
        cx: &mut Context<'_>,
        bytes: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, bytes)
    }

    /// Flushes what the socket holds.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Closes the sending side (TLS: `close_notify`).
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.io.shutdown().await
    }

    /// The connection as a byte stream for a switched protocol, with what was read after
    /// the request head served first.
    pub fn upgrade(self) -> Upgraded {
        Upgraded {
            io: self.io,
            early: self.rbuf,
        }
    }
}

/// A client connection after `101 Switching Protocols` (or a CONNECT's 2xx): raw bytes both
/// ways, starting with any the client sent right after its request head.
pub struct Upgraded {
    io: Box<dyn Io>,
    early: BytesMut,
}

impl AsyncRead for Upgraded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.early.is_empty() {
            let n = this.early.len().min(buf.remaining());
            buf.put_slice(&this.early[..n]);
            this.early.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Where a request that offered a protocol switch gets its connection, once the gateway
/// has answered 101: put in the request's extensions by the server, taken by the tunnel.
/// (Shared, because request extensions must be `Clone`; only the first taker gets it.)
#[derive(Debug, Clone)]
pub struct PendingUpgrade(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl PendingUpgrade {
    /// A pending switch, and the sender the server hands the connection to.
    pub fn new() -> (PendingUpgrade, oneshot::Sender<Upgraded>) {
        let (tx, rx) = oneshot::channel();
        (PendingUpgrade(Arc::new(Mutex::new(Some(rx)))), tx)
    }

    /// The connection once the server switched it; `None` when it never will (the answer
    /// was not a switch, the client left, or another taker got it).
    pub async fn take(self) -> Option<Upgraded> {
        let rx = self.0.lock().ok()?.take()?;
        rx.await.ok()
    }
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wire")
    }
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Upgraded")
    }
}
