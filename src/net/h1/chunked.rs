//! The chunked transfer coding of a response body (RFC 9112 section 7.1): hex size lines with
//! optional extensions, the data, and a trailer section, every line ending in CRLF.

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use super::error::Error;

/// The longest size line (with extensions) accepted.
const MAX_LINE: usize = 4096;
/// The largest trailer section accepted.
const MAX_TRAILERS: usize = 16 * 1024;

/// Where the decoder is in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunked {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// What one decoding step gives.
#[derive(Debug)]
pub(super) enum Step {
    /// Body bytes (a slice of the read buffer).
    Data(Bytes),
    /// The trailer fields; the body has ended.
    Trailers(HeaderMap),
    /// The body has ended.
    End,
    /// The buffer holds too little: read more.
    More,
}

impl Chunked {
    /// Decodes from the start of `buf`, consuming what it uses.
    pub(super) fn step(&mut self, buf: &mut BytesMut) -> Result<Step, Error> {
        loop {
            match *self {
                Chunked::Size => {
                    let Some(end) = line_end(buf)? else {
                        return Ok(Step::More);
                    };
                    let size = size(&buf[..end])?;
                    buf.advance(end + 2);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Step::More);
                    }
                    let n = left.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    *self = if n == left {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left - n)
                    };
                    return Ok(Step::Data(data));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(Error::Chunked("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    if buf.len() < 2 {
                        return Ok(Step::More);
                    }
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *self = Chunked::Done;
                        return Ok(Step::End);
                    }
                    let Some((len, fields)) = trailers(buf)? else {
                        return Ok(Step::More);
                    };
                    buf.advance(len);
                    *self = Chunked::Done;
                    return Ok(if fields.is_empty() {
                        Step::End
                    } else {
                        Step::Trailers(fields)
                    });
                }
                Chunked::Done => return Ok(Step::End),
            }
        }
    }
}

/// Where the first line ends (the index of its CR), if it is all there.
fn line_end(buf: &[u8]) -> Result<Option<usize>, Error> {
    let window = &buf[..buf.len().min(MAX_LINE)];
    match window.iter().position(|&b| b == b'\n') {
        Some(0) => Err(Error::Chunked("empty size line")),
        Some(lf) if window[lf - 1] == b'\r' => Ok(Some(lf - 1)),
        Some(_) => Err(Error::Chunked("size line not ended by CRLF")),
        None if buf.len() >= MAX_LINE => Err(Error::Chunked("size line longer than 4 KB")),
        None => Ok(None),
    }
}

/// The size of a chunk from its line: hex digits, then optional whitespace and extensions.
fn size(line: &[u8]) -> Result<u64, Error> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(Error::Chunked("bad chunk size"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(Error::Chunked("bad chunk size"));
    }
    if rest.iter().any(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
        return Err(Error::Chunked("control byte in a chunk extension"));
    }
    Ok(line[..digits].iter().fold(0u64, |n, &b| {
        let d = (b as char).to_digit(16).unwrap_or(0);
        (n << 4) | u64::from(d)
    }))
}

/// A whole trailer section at the start of `buf`: its length and valid fields (the fields a
/// message may not carry in trailers are for the receiver to drop).
fn trailers(buf: &[u8]) -> Result<Option<(usize, HeaderMap)>, Error> {
    let mut slots = [httparse::EMPTY_HEADER; 32];
    match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete((len, fields))) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for f in fields {
                let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(f.name.as_bytes()),
                    HeaderValue::from_bytes(f.value),
                ) else {
                    return Err(Error::Chunked("bad trailer field"));
                };
                map.append(name, value);
            }
            Ok(Some((len, map)))
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_TRAILERS => Ok(None),
        Ok(httparse::Status::Partial) => Err(Error::Chunked("trailers larger than 16 KB")),
        Err(_) => Err(Error::Chunked("bad trailer section")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `wire` fed in pieces of `step` bytes: the body and the trailers.
    fn decode(wire: &[u8], step: usize) -> Result<(Vec<u8>, HeaderMap), Error> {
        let mut state = Chunked::Size;
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match state.step(&mut buf)? {
                Step::Data(d) => body.extend_from_slice(&d),
                Step::Trailers(t) => return Ok((body, t)),
                Step::End => return Ok((body, HeaderMap::new())),
                Step::More => {
                    if fed == wire.len() {
                        return Err(Error::ClosedMidBody);
                    }
                    let n = step.min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn bodies_decode_whole_and_byte_by_byte() {
        let wire = b"5;ext=1\r\nhello\r\n7 ; a=\"b\"\r\n, world\r\n0\r\nx-sum: 9\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            let (body, trailers) = decode(wire, step).unwrap();
            assert_eq!(body, b"hello, world", "step {step}");
            assert_eq!(trailers["x-sum"], "9");
        }
        let (body, trailers) = decode(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap();
        assert_eq!(body, b"0123456789");
        assert!(trailers.is_empty());
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"-5\r\nhello\r\n",
            b"5 x\r\nhello\r\n",
            b"10000000000000000\r\n",
            b"\r\n",
            b"0\r\nbad trailer\r\n\r\n",
            b"5\r\nhel",
        ] {
            assert!(
                decode(bad, 3).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long = format!("5;{}\r\n", "a".repeat(MAX_LINE));
        assert!(decode(long.as_bytes(), 1000).is_err());
    }
}
