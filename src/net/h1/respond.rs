//! Writing a response to a client: the head (already encoded) and the body under its framing.
//! A body in one buffer goes out with the head in one `writev`; a streamed body's first frame
//! goes with the head when it is already there, and each later frame in one `writev` of its
//! own (chunk-size line, data, CRLF).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::Poll;

use http_body::Body as _;

use super::encode::chunk_size;
use super::response_head::Framing;
use super::wire::Wire;
use crate::body::Body;

/// Why a response could not be written whole; the connection must close.
#[derive(Debug)]
pub enum WriteError {
    /// The socket failed (the client went away).
    Io(io::Error),
    /// The body failed, or did not match its length: the client sees a cut answer.
    Body,
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> WriteError {
        WriteError::Io(e)
    }
}

/// Writes the head in `wbuf` and `body` framed as `framing`. `wbuf` is left for reuse.
pub async fn write_response(
    wire: &mut Wire,
    wbuf: &mut Vec<u8>,
    mut body: Body,
    framing: Framing,
) -> Result<(), WriteError> {
    match framing {
        Framing::None => return Ok(wire.write_all(&mut [IoSlice::new(wbuf)]).await?),
        Framing::Length(n) => {
            if let Body::Full(full) = &mut body {
                let data = full.take().unwrap_or_default();
                if data.len() as u64 != n {
                    return Err(WriteError::Body);
                }
                return Ok(wire
                    .write_all(&mut [IoSlice::new(wbuf), IoSlice::new(&data)])
                    .await?);
            }
        }
        Framing::Chunked | Framing::UntilClose => {}
    }
    // `head`: the head in `wbuf` is not written yet.
    let mut head = true;
    let mut sent = 0u64;
    loop {
        // The next frame; `None` when the head should go first (nothing is ready yet).
        let step = std::future::poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
            Poll::Ready(f) => Poll::Ready(Some(f)),
            Poll::Pending if head => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        let frame = match step {
            None => {
                wire.write_all(&mut [IoSlice::new(wbuf)]).await?;
                head = false;
                continue;
            }
            Some(None) => break,
            Some(Some(Err(_))) => return Err(WriteError::Body),
            Some(Some(Ok(frame))) => frame,
        };
        // Trailers are not sent to HTTP/1.1 clients (hyper's default too).
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.is_empty() {
            continue;
        }
        sent += data.len() as u64;
        if !head {
            wbuf.clear();
        }
        let tail: &[u8] = match framing {
            Framing::Length(n) if sent > n => return Err(WriteError::Body),
            Framing::Chunked => {
                chunk_size(wbuf, data.len());
                b"\r\n"
            }
            _ => b"",
        };
        wire.write_all(&mut [IoSlice::new(wbuf), IoSlice::new(&data), IoSlice::new(tail)])
            .await?;
        head = false;
    }
    // The body has ended.
    if !head {
        wbuf.clear();
    }
    match framing {
        Framing::Length(n) if sent != n => return Err(WriteError::Body),
        Framing::Chunked => wbuf.extend_from_slice(b"0\r\n\r\n"),
        _ => {}
    }
    if !wbuf.is_empty() {
        wire.write_all(&mut [IoSlice::new(wbuf)]).await?;
    }
    Ok(())
}
