//! Which protocol a connection speaks, decided once before hyper serves it: TLS says so in
//! ALPN; otherwise the first bytes do (the HTTP/2 connection preface, or anything else for
//! HTTP/1.1, told apart at the first byte that differs). The bytes read to decide are handed
//! to Portico's HTTP/1.1 codec (`into_parts`), or back to hyper's HTTP/2 server in front of
//! the socket by [`Prefixed`], inline (no buffer allocated).

use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The protocol a connection is served with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.x (with upgrades).
    Http1,
    /// HTTP/2 (h2c prior knowledge, or TLS ALPN `h2`).
    Http2,
}

impl Proto {
    /// What TLS negotiated: `h2` and `http/1.1` decide; no ALPN leaves it to the bytes.
    pub fn from_alpn(alpn: Option<&[u8]>) -> Option<Proto> {
        match alpn {
            Some(b"h2") => Some(Proto::Http2),
            Some(b"http/1.1") => Some(Proto::Http1),
            _ => None,
        }
    }
}

pin_project_lite::pin_project! {
    /// A socket with the bytes already read from it (at most the preface's 24) served first.
    pub struct Prefixed<I> {
        #[pin]
        io: I,
        buf: [u8; 24],
        pos: u8,
        len: u8,
    }
}

impl<I: AsyncRead + Unpin> Prefixed<I> {
    /// Wraps `io` with nothing read yet.
    pub fn new(io: I) -> Self {
        Prefixed {
            io,
            buf: [0; 24],
            pos: 0,
            len: 0,
        }
    }

    /// The bytes read to decide and not yet served, and the socket: for a connection served
    /// by Portico's HTTP/1.1 codec, which parses them from its own buffer.
    pub fn into_parts(self) -> (I, [u8; 24], usize) {
        let mut first = [0u8; 24];
        let (pos, len) = (usize::from(self.pos), usize::from(self.len));
        first[..len - pos].copy_from_slice(&self.buf[pos..len]);
        (self.io, first, len - pos)
    }

    /// Reads until the protocol is known. `None`: the peer closed (or failed) first.
    pub async fn detect(&mut self) -> Option<Proto> {
        while usize::from(self.len) < PREFACE.len() {
            let have = usize::from(self.len);
            let n = self.io.read(&mut self.buf[have..]).await.ok()?;
            if n == 0 {
                return None;
            }
            self.len += n as u8;
            if self.buf[have..have + n] != PREFACE[have..have + n] {
                return Some(Proto::Http1);
            }
        }
        Some(Proto::Http2)
    }
}

impl<I: AsyncRead> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.project();
        if *this.pos < *this.len {
            let rest = &this.buf[usize::from(*this.pos)..usize::from(*this.len)];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            *this.pos += n as u8;
            // Read on in the same call: hyper then gets a whole request head in its first
            // read (a head cut after the preface's 24 bytes would make it grow its buffer to
            // 16 KB, kept for the connection's life). What is already here is returned even
            // when the socket has nothing more yet (or fails: the next read reports it).
            if *this.pos == *this.len && buf.remaining() > 0 {
                let _ = this.io.poll_read(cx, buf);
            }
            return Poll::Ready(Ok(()));
        }
        this.io.poll_read(cx, buf)
    }
}

impl<I: AsyncWrite> AsyncWrite for Prefixed<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.project().io.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn detect_from(chunks: &[&[u8]]) -> (Option<Proto>, Vec<u8>) {
        let (mut client, server) = tokio::io::duplex(64);
        for c in chunks {
            client.write_all(c).await.unwrap();
        }
        drop(client);
        let mut p = Prefixed::new(server);
        let proto = p.detect().await;
        let mut all = Vec::new();
        p.read_to_end(&mut all).await.unwrap();
        (proto, all)
    }

    #[tokio::test]
    async fn tells_h2_preface_from_h1_and_replays_what_it_read() {
        let (p, rest) = detect_from(&[b"GET / HTTP/1.1\r\n\r\n"]).await;
        assert_eq!(p, Some(Proto::Http1));
        assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
        let (p, rest) = detect_from(&[b"PRI * HTTP/2.0\r\n", b"\r\nSM\r\n\r\nxyz"]).await;
        assert_eq!(p, Some(Proto::Http2));
        assert_eq!(rest, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nxyz");
        // A method starting like the preface is HTTP/1 at its first differing byte.
        let (p, rest) = detect_from(&[b"P", b"RO", b"PFIND / HTTP/1.1\r\n\r\n"]).await;
        assert_eq!(p, Some(Proto::Http1));
        assert_eq!(rest, b"PROPFIND / HTTP/1.1\r\n\r\n");
        assert_eq!(
            detect_from(&[b"PRI * HT"]).await.0,
            None,
            "closed mid-preface"
        );
        assert_eq!(Proto::from_alpn(Some(b"h2")), Some(Proto::Http2));
        assert_eq!(Proto::from_alpn(None), None);
    }
}
