//! The compressing body: each frame of the inner body goes through the encoder as it arrives
//! (nothing is buffered whole), and whatever the encoder holds is flushed whenever the inner
//! body has nothing ready, so a slow or streaming upstream (server-sent events, long polls)
//! reaches the client as promptly as it would uncompressed.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};

use super::{Algorithm, Levels};
use crate::body::{Body, BoxError};

/// Brotli's and zstd's window: 256 KiB bounds each stream's memory (their defaults reach
/// 4-8 MiB, which a flood of concurrent answers would multiply) at a small cost in ratio.
const WINDOW_LOG: u32 = 18;
/// Brotli's internal buffer.
const BROTLI_BUFFER: usize = 4096;

/// One coding's streaming encoder, writing into a buffer the body drains.
enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn new(algorithm: Algorithm, levels: Levels) -> std::io::Result<Encoder> {
        Ok(match algorithm {
            Algorithm::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(levels.gzip),
            )),
            Algorithm::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                levels.br,
                WINDOW_LOG,
            ))),
            Algorithm::Zstd => {
                let mut e = zstd::stream::write::Encoder::new(Vec::new(), levels.zstd)?;
                e.window_log(WINDOW_LOG)?;
                Encoder::Zstd(e)
            }
        })
    }

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write_all(data),
            Encoder::Brotli(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    /// Makes everything written so far decodable by the client (a sync flush).
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Brotli(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }

    /// The encoded bytes produced so far, moved out.
    fn take(&mut self) -> Bytes {
        let out = match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Brotli(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        };
        Bytes::from(std::mem::take(out))
    }

    /// Ends the stream; returns its last bytes.
    fn finish(self) -> std::io::Result<Bytes> {
        Ok(Bytes::from(match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Brotli(e) => e.into_inner(),
            Encoder::Zstd(e) => e.finish()?,
        }))
    }
}

/// A body compressed on the fly.
pub struct Compressed {
    inner: Body,
    /// `None` once the stream is finished.
    encoder: Option<Encoder>,
    /// Input written since the last flush.
    unflushed: bool,
    /// The inner body's trailers, sent after the last compressed bytes.
    trailers: Option<HeaderMap>,
    /// Why the encoder could not be made, reported on the first poll.
    failed: Option<std::io::Error>,
}

impl Compressed {
    /// Wraps `inner`.
    pub fn new(inner: Body, algorithm: Algorithm, levels: Levels) -> Compressed {
        let (encoder, failed) = match Encoder::new(algorithm, levels) {
            Ok(e) => (Some(e), None),
            Err(e) => (None, Some(e)),
        };
        Compressed {
            inner,
            encoder,
            unflushed: false,
            trailers: None,
            failed,
        }
    }

    /// Finishes the stream: its last bytes, then the trailers (if any) on the next poll.
    fn finish(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(encoder) = self.encoder.take() else {
            return Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))));
        };
        match encoder.finish() {
            Ok(last) if !last.is_empty() => Poll::Ready(Some(Ok(Frame::data(last)))),
            Ok(_) => Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t)))),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }
}

impl http_body::Body for Compressed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(e) = this.failed.take() {
            return Poll::Ready(Some(Err(e.into())));
        }
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return this.finish();
            };
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        if let Err(e) = encoder.write(&data) {
                            return Poll::Ready(Some(Err(e.into())));
                        }
                        this.unflushed = true;
                        let out = encoder.take();
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        this.trailers = frame.into_trailers().ok();
                        return this.finish();
                    }
                },
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => return this.finish(),
                Poll::Pending if this.unflushed => {
                    this.unflushed = false;
                    if let Err(e) = encoder.flush() {
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    let out = encoder.take();
                    return if out.is_empty() {
                        Poll::Pending
                    } else {
                        Poll::Ready(Some(Ok(Frame::data(out))))
                    };
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none() && self.failed.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::io::Read;

    fn decode(algorithm: Algorithm, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match algorithm {
            Algorithm::Gzip => {
                flate2::read::GzDecoder::new(bytes)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Algorithm::Brotli => {
                brotli::Decompressor::new(bytes, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Algorithm::Zstd => out = zstd::stream::decode_all(bytes).unwrap(),
        }
        out
    }

    #[tokio::test]
    async fn every_coding_round_trips() {
        let text: String = (0..2000).map(|i| format!("{{\"n\":{i}}},")).collect();
        for a in [Algorithm::Gzip, Algorithm::Brotli, Algorithm::Zstd] {
            let body = Compressed::new(Body::full(text.clone()), a, Levels::default());
            let bytes = body.collect().await.unwrap().to_bytes();
            assert!(bytes.len() < text.len() / 4, "{a:?}: {}", bytes.len());
            assert_eq!(decode(a, &bytes), text.as_bytes(), "{a:?}");
        }
    }
}
