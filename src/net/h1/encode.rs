//! The request head as HTTP/1.1 bytes, and how its body is framed on the wire.

use http::header::{CONTENT_LENGTH, HeaderMap, HeaderValue};
use http::{Method, Request};
use http_body::Body as _;

use crate::body::RequestBody;
use crate::net::added::Extra;

/// How the request body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Exactly this many bytes (`content-length`, from the request or added here).
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
}

/// The framing of `req`'s body, as hyper's client chooses it: a body that has ended sends
/// nothing; a `content-length` the request carries is kept (the body must match it); a body of
/// known size gets one; one of unknown size goes chunked, except on GET, HEAD and CONNECT,
/// which send none (`transfer-encoding` never arrives here: it is hop-by-hop and stripped
/// before forwarding). The flag: the head must say the length (the request does not).
pub(super) fn framing(req: &Request<RequestBody>) -> (Framing, bool) {
    let body = req.body();
    if body.is_end_stream() {
        return (Framing::Length(0), false);
    }
    if let Some(n) = content_length(req.headers()) {
        return (Framing::Length(n), false);
    }
    match body.size_hint().exact() {
        Some(n) => (Framing::Length(n), true),
        None => match *req.method() {
            Method::GET | Method::HEAD | Method::CONNECT => (Framing::Length(0), false),
            _ => (Framing::Chunked, false),
        },
    }
}

/// The request's `content-length` when every copy is the same number.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut found = None;
    for v in headers.get_all(CONTENT_LENGTH) {
        let n = parse_decimal(v.as_bytes())?;
        if found.is_some_and(|f| f != n) {
            return None;
        }
        found = Some(n);
    }
    found
}

/// A non-empty run of ASCII digits that fits in a `u64`.
pub(super) fn parse_decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    text.iter().try_fold(0u64, |n, &b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// Writes the request line and fields (names as `http` keeps them: lower case) into `out`:
/// `extra`'s Host first (RFC 9112 §3.2: a client sends Host first), the map's fields but the
/// Host `extra` replaces, the gateway's fields, and the framing field the request lacks
/// (`say_length`: its content-length; chunked: the transfer coding). The request URI holds the
/// path and query; the version is always HTTP/1.1.
pub(super) fn head(
    out: &mut Vec<u8>,
    req: &Request<RequestBody>,
    extra: Extra<'_>,
    framing: Framing,
    say_length: bool,
) {
    out.clear();
    out.extend_from_slice(req.method().as_str().as_bytes());
    out.push(b' ');
    match req.uri().path_and_query() {
        Some(pq) if !pq.as_str().is_empty() => out.extend_from_slice(pq.as_str().as_bytes()),
        _ => out.push(b'/'),
    }
    out.extend_from_slice(b" HTTP/1.1\r\n");
    if let Some(host) = extra.host {
        field(out, b"host", host);
    }
    for (name, value) in req.headers() {
        if extra.sends(name) {
            field(out, name.as_str().as_bytes(), value);
        }
    }
    for (name, value) in extra.added.fields() {
        field(out, name.as_str().as_bytes(), value);
    }
    match framing {
        Framing::Length(n) if say_length => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Length(_) => {}
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends `name: value` and the line end (request and response heads).
#[inline]
pub(super) fn field(out: &mut Vec<u8>, name: &[u8], value: &HeaderValue) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends the size line of a chunk of `len` bytes.
pub(super) fn chunk_size(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, body: RequestBody) -> Request<RequestBody> {
        let mut r = Request::new(body);
        *r.method_mut() = method;
        *r.uri_mut() = "/a?b=1".parse().unwrap();
        r.headers_mut()
            .insert(http::header::HOST, "up:8080".parse().unwrap());
        r
    }

    #[test]
    fn head_bytes_and_framing() {
        let r = req(Method::POST, RequestBody::full("hello".into()));
        let (how, say_length) = framing(&r);
        assert_eq!((how, say_length), (Framing::Length(5), true));
        let mut out = Vec::new();
        head(&mut out, &r, Extra::NONE, how, say_length);
        assert_eq!(
            out,
            b"POST /a?b=1 HTTP/1.1\r\nhost: up:8080\r\ncontent-length: 5\r\n\r\n"
        );
        let r = req(Method::GET, RequestBody::empty());
        assert_eq!(framing(&r), (Framing::Length(0), false));
    }

    #[test]
    fn extra_host_goes_first_in_place_of_the_client_host_and_the_gateway_fields_last() {
        use crate::net::added::Added;
        static PEER: HeaderValue = HeaderValue::from_static("10.0.0.9");
        static ID: HeaderValue = HeaderValue::from_static("id-1");
        let mut r = req(Method::GET, RequestBody::empty());
        r.headers_mut().insert("accept", "*/*".parse().unwrap());
        let added = Added {
            forwarded_for: Some(&PEER),
            forwarded_proto: Some(&crate::net::added::HTTP),
            forwarded_host: None,
            request_id: Some(&ID),
            replace_host: true,
        };
        let host = HeaderValue::from_static("10.1.1.1:9000");
        let extra = Extra {
            host: Some(&host),
            added: &added,
        };
        let mut out = Vec::new();
        head(&mut out, &r, extra, Framing::Length(0), false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET /a?b=1 HTTP/1.1\r\nhost: 10.1.1.1:9000\r\naccept: */*\r\n\
             x-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: http\r\nx-request-id: id-1\r\n\r\n"
        );
        // Kept (preserve_host): the map's Host is sent and no other.
        let kept = Added {
            replace_host: false,
            ..added.clone()
        };
        let extra = Extra {
            host: None,
            added: &kept,
        };
        let mut out = Vec::new();
        head(&mut out, &r, extra, Framing::Length(0), false);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("GET /a?b=1 HTTP/1.1\r\nhost: up:8080\r\naccept: */*\r\n"));
        assert_eq!(text.matches("host:").count(), 1);
    }

    #[test]
    fn a_content_length_field_is_kept() {
        let mut r = req(Method::PUT, RequestBody::full("hello".into()));
        r.headers_mut().insert(CONTENT_LENGTH, "5".parse().unwrap());
        assert_eq!(framing(&r), (Framing::Length(5), false));
        r.headers_mut().append(CONTENT_LENGTH, "6".parse().unwrap());
        assert_eq!(content_length(r.headers()), None, "disagreeing copies");
    }

    #[test]
    fn decimal_and_chunk_sizes() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"1234"), Some(1234));
        for bad in [
            &b""[..],
            b"+1",
            b"1 ",
            b"-1",
            b"12345678901234567890",
            b"0x1",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
        let mut out = Vec::new();
        chunk_size(&mut out, 0);
        assert_eq!(out, b"0\r\n");
        chunk_size(&mut out, 0x1a2f);
        assert_eq!(out, b"0\r\n1a2f\r\n");
    }
}
