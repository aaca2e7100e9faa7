//! The response head: status line and fields parsed strictly (httparse, as hyper's client
//! does), then the body's framing (RFC 9112 section 6.3) and whether the connection can carry
//! another exchange.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::StatusCode;
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderMap, HeaderValue, TRANSFER_ENCODING};

use super::encode::parse_decimal;
use super::error::Error;
use super::names::Names;

/// Fields in one response head (hyper's default too).
pub(super) const MAX_FIELDS: usize = 100;
/// Bytes in one response head.
pub(super) const MAX_HEAD: usize = 64 * 1024;

/// Where each field of a head is, as offsets into it: name start and end, value start and end.
/// Filled by the parse, on the caller's stack: moving it with the result would copy 1.6 KB a
/// few times per response.
pub(super) type Fields = [[u32; 4]; MAX_FIELDS];

/// A complete final (non-1xx, or 101) response head at the start of the read buffer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Parsed {
    /// Length of the head, blank line included.
    pub len: usize,
    status: u16,
    /// An HTTP/1.0 response (else HTTP/1.1).
    pub http10: bool,
    /// Fields filled in.
    count: usize,
}

/// Parses the head at the start of `buf` into `fields`, dropping informational (1xx) heads
/// before it (101 excepted: it ends HTTP on the connection). `None` until the head is complete.
pub(super) fn final_head(buf: &mut BytesMut, fields: &mut Fields) -> Result<Option<Parsed>, Error> {
    loop {
        let Some(parsed) = parse(buf, fields)? else {
            if buf.len() > MAX_HEAD {
                return Err(Error::Head("larger than 64 KB"));
            }
            return Ok(None);
        };
        if (100..200).contains(&parsed.status) && parsed.status != 101 {
            buf.advance(parsed.len);
            continue;
        }
        return Ok(Some(parsed));
    }
}

fn parse(buf: &[u8], fields: &mut Fields) -> Result<Option<Parsed>, Error> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
    {
        // A head that arrived whole in one read is held to the same limit as one that did not.
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => {
            return Err(Error::Head("larger than 64 KB"));
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Error::Head("more than 100 fields")),
        Err(_) => return Err(Error::Head("malformed")),
    };
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
    for (slot, h) in fields.iter_mut().zip(resp.headers.iter()) {
        let name = h.name.as_bytes();
        *slot = [
            at(name),
            at(name) + name.len() as u32,
            at(h.value),
            at(h.value) + h.value.len() as u32,
        ];
    }
    Ok(Some(Parsed {
        len,
        status: resp.code.unwrap_or(0),
        http10: resp.version == Some(0),
        count: resp.headers.len(),
    }))
}

/// Which of the fields that frame a response its head has, noted while the fields are put in
/// the map: [`body_kind`] then looks up only those present (most heads lack two of them).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Seen {
    connection: bool,
    transfer_encoding: bool,
    content_length: bool,
}

/// The status and fields of a parsed head, the fields put in `headers` (an empty map whose
/// room is reused); `head` is the head's bytes (field values are slices of it, not copies).
pub(super) fn build(
    head: &Bytes,
    p: &Parsed,
    fields: &Fields,
    mut headers: HeaderMap,
    names: &mut Names,
) -> Result<(StatusCode, HeaderMap, Seen), Error> {
    let status = StatusCode::from_u16(p.status).map_err(|_| Error::Head("status code"))?;
    headers.reserve(p.count);
    let mut seen = Seen::default();
    for (i, f) in fields[..p.count].iter().enumerate() {
        let [ns, ne, vs, ve] = f.map(|x| x as usize);
        let name = names
            .get(i, &head[ns..ne])
            .map_err(|_| Error::Head("field name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(vs..ve))
            .map_err(|_| Error::Head("field value"))?;
        match name {
            CONNECTION => seen.connection = true,
            TRANSFER_ENCODING => seen.transfer_encoding = true,
            CONTENT_LENGTH => seen.content_length = true,
            _ => {}
        }
        headers.append(name, value);
    }
    Ok((status, headers, seen))
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `content-length` bytes.
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    Eof,
}

/// The body's framing, and whether the connection may be reused after it. A response that
/// has both `transfer-encoding` and `content-length` loses the latter (the transfer coding
/// frames it; passing both on invites request smuggling downstream).
pub(super) fn body_kind(
    status: StatusCode,
    head_request: bool,
    http10: bool,
    seen: Seen,
    headers: &mut HeaderMap,
) -> Result<(Kind, bool), Error> {
    let keep = keeps_alive(seen.connection.then_some(&*headers), http10);
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Ok((Kind::Empty, false));
    }
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Kind::Empty, keep));
    }
    if seen.transfer_encoding {
        headers.remove(CONTENT_LENGTH);
        let last = headers.get_all(TRANSFER_ENCODING).iter().next_back();
        let chunked = last.is_some_and(|v| {
            v.as_bytes()
                .rsplit(|&b| b == b',')
                .next()
                .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"))
        });
        return Ok(if chunked && !http10 {
            (Kind::Chunked, keep)
        } else {
            (Kind::Eof, false)
        });
    }
    let mut length = None;
    let lengths = seen.content_length.then(|| headers.get_all(CONTENT_LENGTH));
    for v in lengths.into_iter().flatten() {
        // A list of equal values ("5, 5") is one length; different values are an error.
        for part in v.as_bytes().split(|&b| b == b',') {
            let n = parse_decimal(part.trim_ascii()).ok_or(Error::Head("content-length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::Head("conflicting content-length"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(n) => (Kind::Length(n), keep),
        None => (Kind::Eof, false),
    })
}

/// HTTP/1.1 keeps the connection unless `connection: close`; HTTP/1.0 only with
/// `connection: keep-alive`. `headers`: the head's fields when it has a `connection` field.
fn keeps_alive(headers: Option<&HeaderMap>, http10: bool) -> bool {
    let has = |token: &[u8]| {
        headers.is_some_and(|h| {
            h.get_all(CONNECTION).iter().any(|v| {
                v.as_bytes()
                    .split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
            })
        })
    };
    if http10 {
        has(b"keep-alive")
    } else {
        !has(b"close")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Whole = (StatusCode, HeaderMap, usize, bool, Seen);

    fn head(text: &str) -> Result<Option<Whole>, Error> {
        let mut buf = BytesMut::from(text.as_bytes());
        let mut fields = [[0; 4]; MAX_FIELDS];
        let Some(p) = final_head(&mut buf, &mut fields)? else {
            return Ok(None);
        };
        let bytes = buf.split_to(p.len).freeze();
        let (status, headers, seen) =
            build(&bytes, &p, &fields, HeaderMap::new(), &mut Names::default())?;
        Ok(Some((status, headers, p.len, p.http10, seen)))
    }

    fn kind(text: &str, head_request: bool) -> Result<(Kind, bool), Error> {
        let (status, mut headers, _, http10, seen) = head(text)?.expect("a whole head");
        body_kind(status, head_request, http10, seen, &mut headers)
    }

    #[test]
    fn a_head_parses_into_status_and_fields() {
        let (status, headers, len, ..) =
            head("HTTP/1.1 201 Created\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\nrest")
                .unwrap()
                .unwrap();
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(len, 59);
        let all: Vec<_> = headers.get_all("x-a").iter().collect();
        assert_eq!(all, ["1", "2"]);
        assert!(head("HTTP/1.1 200 OK\r\nX-A: 1\r\n").unwrap().is_none());
    }

    #[test]
    fn informational_heads_are_skipped() {
        let (status, headers, ..) =
            head("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nx: y\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(headers.get("link").is_none());
        let (status, ..) = head("HTTP/1.1 101 Switching Protocols\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    }

    #[test]
    fn malformed_and_oversized_heads_are_errors() {
        for bad in [
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTP/9.1 200 OK\r\n\r\n",
            "garbage\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbad field\r\n\r\n",
            "HTTP/1.1 200 OK\r\nx: a\rb\r\n\r\n",
        ] {
            assert!(head(bad).is_err(), "{bad:?}");
        }
        let many = format!("HTTP/1.1 200 OK\r\n{}\r\n", "x: y\r\n".repeat(101));
        assert!(head(&many).is_err());
        let big = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
        assert!(head(&big).is_err(), "partial and over the limit");
        let whole = format!("{big}\r\n\r\n");
        assert!(head(&whole).is_err(), "complete and over the limit");
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let k = |t: &str| kind(t, false).unwrap();
        assert_eq!(
            k("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
            (Kind::Length(5), true)
        );
        assert_eq!(
            k("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n"),
            (Kind::Length(5), true)
        );
        assert_eq!(
            k("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n"),
            (Kind::Chunked, true)
        );
        assert_eq!(
            k("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n"),
            (Kind::Eof, false)
        );
        assert_eq!(k("HTTP/1.1 200 OK\r\n\r\n"), (Kind::Eof, false));
        assert_eq!(
            k("HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"),
            (Kind::Empty, true)
        );
        assert_eq!(k("HTTP/1.1 304 Not Modified\r\n\r\n"), (Kind::Empty, true));
        assert_eq!(
            kind("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n", true).unwrap(),
            (Kind::Empty, true)
        );
        assert_eq!(
            k("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 1\r\n\r\n"),
            (Kind::Length(1), false)
        );
        assert_eq!(
            k("HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n"),
            (Kind::Length(1), false)
        );
        assert_eq!(
            k("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\ncontent-length: 1\r\n\r\n"),
            (Kind::Length(1), true)
        );
        for bad in [
            "content-length: 5, 6",
            "content-length: x",
            "content-length: 5\r\ncontent-length: 6",
        ] {
            assert!(
                kind(&format!("HTTP/1.1 200 OK\r\n{bad}\r\n\r\n"), false).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn transfer_encoding_drops_content_length() {
        let (status, mut headers, _, _, seen) =
            head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n")
                .unwrap()
                .unwrap();
        assert_eq!(
            body_kind(status, false, false, seen, &mut headers).unwrap(),
            (Kind::Chunked, true)
        );
        assert!(!headers.contains_key(CONTENT_LENGTH));
    }
}
