//! A client's request head, parsed strictly with httparse under the rules hyper's server
//! applies: the request line, the fields, the body's framing (RFC 9112 section 6.3) and whether
//! the connection may carry another request after this one.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{
    CONNECTION, CONTENT_LENGTH, EXPECT, HeaderMap, HeaderValue, TRANSFER_ENCODING, UPGRADE,
};
use http::{Method, Request, Uri, Version};

use super::encode::parse_decimal;
use super::names::Names;

/// Field slots kept on the stack; a configured `max_headers` above this parses into the heap.
const STACK_FIELDS: usize = 100;
/// The longest request target accepted (hyper's limit).
const MAX_URI: usize = 65534;

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0: no body).
    Length(u64),
    /// `transfer-encoding: chunked`.
    Chunked,
}

/// A complete request head.
#[derive(Debug)]
pub struct Head {
    /// Method, target, version and fields (the body is the caller's).
    pub request: Request<()>,
    /// How its body is delimited.
    pub framing: Framing,
    /// The connection may serve another request after this one (by version and
    /// `connection`; never after a head with both `content-length` and `transfer-encoding`).
    pub keep_alive: bool,
    /// `expect: 100-continue`: the client waits for an interim answer before the body.
    pub expect_continue: bool,
    /// The client offers to switch protocols (`upgrade` on HTTP/1.1, or CONNECT).
    pub upgrade: bool,
}

/// Why a request head was refused; the connection closes after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHead {
    /// Not valid HTTP/1.1 (400).
    Malformed(&'static str),
    /// Larger than `limits.max_header_bytes`, or more fields than `limits.max_headers` (431).
    TooLarge,
    /// A request target longer than 64 KB (414).
    UriTooLong,
}

/// Parses the head at the start of `buf`; `None` until it is complete. A complete head is
/// split off `buf` (field values and the target are slices of it, not copies) and its fields
/// go into the map taken from `headers`, an empty one whose room is reused from the previous
/// exchange. `names` holds the connection's last field names (see [`Names`]).
pub fn parse(
    buf: &mut BytesMut,
    max_bytes: usize,
    max_fields: usize,
    headers: &mut HeaderMap,
    names: &mut Names,
) -> Result<Option<Head>, BadHead> {
    if max_fields <= STACK_FIELDS {
        let mut fields = [[0u32; 4]; STACK_FIELDS];
        parse_into(buf, max_bytes, &mut fields[..max_fields], headers, names)
    } else {
        let mut fields = vec![[0u32; 4]; max_fields];
        parse_into(buf, max_bytes, &mut fields, headers, names)
    }
}

/// Offsets into the head: method end, target start and end, version (0 or 1).
struct Line {
    len: usize,
    method_end: usize,
    target: (usize, usize),
    http11: bool,
    count: usize,
}

fn parse_into(
    buf: &mut BytesMut,
    max_bytes: usize,
    fields: &mut [[u32; 4]],
    headers: &mut HeaderMap,
    names: &mut Names,
) -> Result<Option<Head>, BadHead> {
    let Some(line) = scan(buf, max_bytes, fields)? else {
        return Ok(None);
    };
    let head = buf.split_to(line.len).freeze();
    let fields = &fields[..line.count];
    build(&head, &line, fields, std::mem::take(headers), names).map(Some)
}

/// Runs httparse over `buf`, recording where each field is.
fn scan(buf: &[u8], max_bytes: usize, fields: &mut [[u32; 4]]) -> Result<Option<Line>, BadHead> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_FIELDS];
    let mut heap;
    let slots: &mut [MaybeUninit<httparse::Header<'_>>] = if fields.len() <= STACK_FIELDS {
        &mut slots[..fields.len()]
    } else {
        heap = Vec::with_capacity(fields.len());
        heap.resize_with(fields.len(), MaybeUninit::uninit);
        &mut heap
    };
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, buf, slots)
    {
        Ok(httparse::Status::Complete(len)) if len > max_bytes => return Err(BadHead::TooLarge),
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > max_bytes => return Err(BadHead::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(BadHead::TooLarge),
        Err(httparse::Error::Token) if req.method.is_none() => {
            return Err(BadHead::Malformed("method"));
        }
        Err(httparse::Error::Token) => return Err(BadHead::Malformed("request target")),
        Err(httparse::Error::Version) => return Err(BadHead::Malformed("version")),
        Err(_) => return Err(BadHead::Malformed("request head")),
    };
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| s.as_ptr() as usize - base;
    let method = req.method.unwrap_or_default();
    let target = req.path.unwrap_or_default();
    if target.len() > MAX_URI {
        return Err(BadHead::UriTooLong);
    }
    for (slot, h) in fields.iter_mut().zip(req.headers.iter()) {
        let name = h.name.as_bytes();
        *slot = [
            at(name) as u32,
            (at(name) + name.len()) as u32,
            at(h.value) as u32,
            (at(h.value) + h.value.len()) as u32,
        ];
    }
    Ok(Some(Line {
        len,
        method_end: at(method.as_bytes()) + method.len(),
        target: (at(target.as_bytes()), at(target.as_bytes()) + target.len()),
        http11: req.version == Some(1),
        count: req.headers.len(),
    }))
}

/// The request, its framing and connection flags from a parsed head.
fn build(
    head: &Bytes,
    line: &Line,
    fields: &[[u32; 4]],
    mut headers: HeaderMap,
    names: &mut Names,
) -> Result<Head, BadHead> {
    let method =
        Method::from_bytes(&head[..line.method_end]).map_err(|_| BadHead::Malformed("method"))?;
    let uri = Uri::from_maybe_shared(head.slice(line.target.0..line.target.1))
        .map_err(|_| BadHead::Malformed("request target"))?;
    let mut framing = Framing::Length(0);
    let mut keep_alive = line.http11;
    let mut close = false;
    let (mut te, mut te_chunked, mut cl) = (false, false, None::<u64>);
    let mut seen_cl = false;
    let mut expect_continue = false;
    let mut upgrade = method == Method::CONNECT;
    headers.reserve(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let [ns, ne, vs, ve] = f.map(|x| x as usize);
        let name = names
            .get(i, &head[ns..ne])
            .map_err(|_| BadHead::Malformed("field name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(vs..ve))
            .map_err(|_| BadHead::Malformed("field value"))?;
        match name {
            TRANSFER_ENCODING => {
                if !line.http11 {
                    return Err(BadHead::Malformed("transfer-encoding in HTTP/1.0"));
                }
                te = true;
                if cl.take().is_some() {
                    headers.remove(CONTENT_LENGTH);
                }
                // Only the last coding decides: `chunked` must be the final one.
                te_chunked = last_token_is(value.as_bytes(), b"chunked");
            }
            CONTENT_LENGTH => {
                seen_cl = true;
                if te {
                    continue;
                }
                let n =
                    parse_decimal(value.as_bytes()).ok_or(BadHead::Malformed("content-length"))?;
                match cl {
                    Some(prev) if prev != n => {
                        return Err(BadHead::Malformed("conflicting content-length"));
                    }
                    Some(_) => continue,
                    None => cl = Some(n),
                }
            }
            CONNECTION => {
                if close || has_token(value.as_bytes(), b"close") {
                    close = true;
                    keep_alive = false;
                } else if !line.http11 {
                    keep_alive = has_token(value.as_bytes(), b"keep-alive");
                }
            }
            EXPECT => expect_continue = value.as_bytes().eq_ignore_ascii_case(b"100-continue"),
            UPGRADE => upgrade = line.http11,
            _ => {}
        }
        headers.append(name, value);
    }
    if te {
        if !te_chunked {
            return Err(BadHead::Malformed("transfer-encoding without chunked last"));
        }
        framing = Framing::Chunked;
        // Both framings were sent: the chunked one is read, and nothing after it is trusted.
        if seen_cl {
            keep_alive = false;
        }
    } else if let Some(n) = cl {
        framing = Framing::Length(n);
    }
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = if line.http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    *request.headers_mut() = headers;
    Ok(Head {
        request,
        framing,
        keep_alive,
        expect_continue,
        upgrade,
    })
}

/// Whether the comma-separated list `value` holds `token` (case-insensitive).
pub(super) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Whether the last item of the comma-separated list `value` is `token`.
fn last_token_is(value: &[u8], token: &[u8]) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `parse` with a new map and no remembered names.
    fn fresh(
        buf: &mut BytesMut,
        max_bytes: usize,
        max_fields: usize,
    ) -> Result<Option<Head>, BadHead> {
        parse(
            buf,
            max_bytes,
            max_fields,
            &mut HeaderMap::new(),
            &mut Names::default(),
        )
    }

    fn head(text: &str) -> Result<Option<Head>, BadHead> {
        let mut buf = BytesMut::from(text.as_bytes());
        fresh(&mut buf, 16 * 1024, 100)
    }

    #[test]
    fn a_get_parses_with_its_fields_and_keeps_alive() {
        let h = head("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.request.method(), Method::GET);
        assert_eq!(h.request.uri().path_and_query().unwrap().as_str(), "/a?b=1");
        assert_eq!(h.request.headers().get_all("x-a").iter().count(), 2);
        assert_eq!(h.framing, Framing::Length(0));
        assert!(h.keep_alive && !h.upgrade && !h.expect_continue);
        assert!(head("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let f = |t: &str| head(t).map(|h| h.map(|h| (h.framing, h.keep_alive)));
        let post = "POST / HTTP/1.1\r\nHost: x\r\n";
        assert_eq!(
            f(&format!("{post}Content-Length: 5\r\n\r\n")),
            Ok(Some((Framing::Length(5), true)))
        );
        assert_eq!(
            f(&format!(
                "{post}Content-Length: 5\r\nContent-Length: 5\r\n\r\n"
            )),
            Ok(Some((Framing::Length(5), true)))
        );
        assert_eq!(
            f(&format!("{post}Transfer-Encoding: gzip, chunked\r\n\r\n")),
            Ok(Some((Framing::Chunked, true)))
        );
        // Both framings: chunked wins, the length is dropped and the connection closes after.
        let both = head(&format!(
            "{post}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(both.framing, Framing::Chunked);
        assert!(!both.keep_alive);
        assert!(!both.request.headers().contains_key(CONTENT_LENGTH));
        for bad in [
            "Content-Length: 1\r\nContent-Length: 2\r\n",
            "Content-Length: 0, 41\r\n",
            "Content-Length: +1\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: 99999999999999999999999\r\n",
            "Transfer-Encoding: chunked, identity\r\n",
            "Transfer-Encoding: xchunked\r\n",
        ] {
            assert!(
                matches!(f(&format!("{post}{bad}\r\n")), Err(BadHead::Malformed(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            f("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(BadHead::Malformed(_))
        ));
    }

    #[test]
    fn connection_flags() {
        let h = |t: &str| head(t).unwrap().unwrap();
        assert!(!h("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(h("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(!h("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(
            !h("GET / HTTP/1.1\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n").keep_alive
        );
        assert!(h("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").upgrade);
        assert!(!h("GET / HTTP/1.0\r\nUpgrade: websocket\r\n\r\n").upgrade);
        assert!(h("CONNECT a:443 HTTP/1.1\r\n\r\n").upgrade);
        assert!(
            h("PUT / HTTP/1.1\r\nExpect: 100-Continue\r\ncontent-length: 1\r\n\r\n")
                .expect_continue
        );
    }

    #[test]
    fn limits_and_syntax_errors() {
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nX-A: 1\r\nX-B: 2\r\n\r\n"[..]);
        assert_eq!(
            fresh(&mut buf, 16 * 1024, 1).unwrap_err(),
            BadHead::TooLarge
        );
        let long = format!("GET / HTTP/1.1\r\nX-A: {}\r\n\r\n", "a".repeat(200));
        let mut buf = BytesMut::from(long.as_bytes());
        assert_eq!(fresh(&mut buf, 100, 100).unwrap_err(), BadHead::TooLarge);
        let partial = format!("GET / HTTP/1.1\r\nX-A: {}", "a".repeat(200));
        let mut buf = BytesMut::from(partial.as_bytes());
        assert_eq!(fresh(&mut buf, 100, 100).unwrap_err(), BadHead::TooLarge);
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..150 {
            many.push_str(&format!("x-{i}: 1\r\n"));
        }
        many.push_str("\r\n");
        let mut buf = BytesMut::from(many.as_bytes());
        assert!(fresh(&mut buf, 64 * 1024, 200).unwrap().is_some());
        for bad in [
            "GET  / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.2\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GET / HTTP/1.1\r\nX A: 1\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n",
            "GET / HTTP/1.1\r\nX-A: 1\r\n 2\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
        ] {
            assert!(matches!(head(bad), Err(BadHead::Malformed(_))), "{bad:?}");
        }
    }

    #[test]
    fn pipelined_heads_parse_one_at_a_time() {
        let mut buf = BytesMut::from(&b"GET /1 HTTP/1.1\r\n\r\nGET /2 HTTP/1.1\r\n\r\n"[..]);
        let one = fresh(&mut buf, 1024, 10).unwrap().unwrap();
        assert_eq!(one.request.uri().path(), "/1");
        let two = fresh(&mut buf, 1024, 10).unwrap().unwrap();
        assert_eq!(two.request.uri().path(), "/2");
        assert!(buf.is_empty());
    }
}
