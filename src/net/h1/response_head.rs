//! A response head as HTTP/1.1 bytes for a client, and how its body is framed (the choices
//! hyper's server makes): a known length says `content-length`, an unknown one goes chunked
//! (HTTP/1.0: until the connection closes), and the answers that carry no body send none.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use http::StatusCode;
use http::header::{
    CONNECTION, CONTENT_LENGTH, DATE, HeaderMap, HeaderName, HeaderValue, TRANSFER_ENCODING,
};
use http_body::SizeHint;

use super::encode::{field, parse_decimal};
use super::request_head::has_token;

/// How a response body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body is sent, whatever the body holds (HEAD, 1xx, 204, 304, a CONNECT's 2xx).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Until the connection closes (an HTTP/1.0 client and a body of unknown length).
    UntilClose,
}

/// What the response head depends on in the request it answers.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    /// The request was HEAD.
    pub head: bool,
    /// The request was CONNECT.
    pub connect: bool,
    /// The request was HTTP/1.0.
    pub http10: bool,
}

/// Writes the status line and fields of a response into `out` (cleared first), with the
/// framing field its body needs, `date` when absent, and `connection` saying what happens
/// next. `hint` is the body's size hint; `keep_alive` is turned off when the body can only be
/// delimited by closing, or when a `connection: close` field is in `headers`. `added` (the
/// gateway's request id) is written in place of any field of its name in `headers`.
pub fn encode(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    added: Option<(&HeaderName, &HeaderValue)>,
    hint: &SizeHint,
    asked: Asked,
    keep_alive: &mut bool,
) -> Framing {
    out.clear();
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let (mut declared, mut dated, mut says_connection) = (None, false, false);
    let replaced = added.map(|(name, _)| name);
    for (name, value) in headers {
        if name == TRANSFER_ENCODING || replaced == Some(name) {
            continue;
        }
        if name == CONTENT_LENGTH {
            declared = declared.or_else(|| parse_decimal(value.as_bytes()));
            continue;
        }
        if name == DATE {
            dated = true;
        } else if name == CONNECTION {
            says_connection = true;
            if has_token(value.as_bytes(), b"close") {
                *keep_alive = false;
            }
        }
        field(out, name.as_str().as_bytes(), value);
    }
    if let Some((name, value)) = added {
        field(out, name.as_str().as_bytes(), value);
    }
    let framing = if switching
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || asked.connect && status.is_success()
    {
        Framing::None
    } else if asked.head || status == StatusCode::NOT_MODIFIED {
        // The length the same GET would get, when it is known.
        if let Some(n) = declared.or(hint.exact().filter(|&n| n > 0)) {
            length_field(out, n);
        }
        Framing::None
    } else {
        match hint.exact().or(declared) {
            Some(n) => {
                length_field(out, n);
                Framing::Length(n)
            }
            None if asked.http10 => {
                *keep_alive = false;
                Framing::UntilClose
            }
            None => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
        }
    };
    if !dated {
        out.extend_from_slice(b"date: ");
        with_date(|d| out.extend_from_slice(d));
        out.extend_from_slice(b"\r\n");
    }
    if !says_connection && !switching {
        if !*keep_alive {
            out.extend_from_slice(b"connection: close\r\n");
        } else if asked.http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    framing
}

fn length_field(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

thread_local! {
    /// The `date` value for the current second, formatted once per second per thread.
    static DATE_CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// Calls `f` with the current time as an IMF-fixdate (`Wed, 02 Dec 2026 18:22:45 GMT`).
fn with_date(f: impl FnOnce(&[u8])) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let text = httpdate::fmt_http_date(now);
            if text.len() == 29 {
                c.1.copy_from_slice(text.as_bytes());
                c.0 = secs;
            }
        }
        f(&c.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const GET: Asked = Asked {
        head: false,
        connect: false,
        http10: false,
    };

    fn text(
        status: u16,
        headers: &[(&'static str, &'static str)],
        hint: SizeHint,
        asked: Asked,
    ) -> (String, Framing, bool) {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(*n, HeaderValue::from_static(v));
        }
        let mut out = Vec::new();
        let mut keep = true;
        let framing = encode(
            &mut out,
            StatusCode::from_u16(status).unwrap(),
            &map,
            None,
            &hint,
            asked,
            &mut keep,
        );
        (String::from_utf8(out).unwrap(), framing, keep)
    }

    #[test]
    fn known_lengths_unknown_lengths_and_bodiless_answers() {
        let (t, f, keep) = text(200, &[("x-a", "1")], SizeHint::with_exact(5), GET);
        assert!(t.starts_with("HTTP/1.1 200 OK\r\nx-a: 1\r\ncontent-length: 5\r\ndate: "));
        assert!(t.ends_with(" GMT\r\n\r\n"), "{t}");
        assert_eq!((f, keep), (Framing::Length(5), true));
        let (t, f, _) = text(404, &[], SizeHint::default(), GET);
        assert!(t.starts_with("HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n"));
        assert_eq!(f, Framing::Chunked);
        let http10 = Asked {
            http10: true,
            ..GET
        };
        let (t, f, keep) = text(200, &[], SizeHint::default(), http10);
        assert_eq!((f, keep), (Framing::UntilClose, false));
        assert!(t.contains("connection: close\r\n"));
        let (t, _, _) = text(200, &[], SizeHint::with_exact(0), http10);
        assert!(t.contains("connection: keep-alive\r\n"), "{t}");
        // A declared length is used when the body's size is not known exactly.
        let (t, f, _) = text(200, &[("content-length", "7")], SizeHint::default(), GET);
        assert_eq!(f, Framing::Length(7));
        assert_eq!(t.matches("content-length").count(), 1);
        let (t, f, _) = text(
            204,
            &[("content-length", "7")],
            SizeHint::with_exact(0),
            GET,
        );
        assert_eq!(f, Framing::None);
        assert!(!t.contains("content-length"));
    }

    #[test]
    fn an_added_field_replaces_the_maps_copies() {
        let mut map = HeaderMap::new();
        map.append("x-request-id", HeaderValue::from_static("upstream-1"));
        map.append("x-a", HeaderValue::from_static("1"));
        map.append("x-request-id", HeaderValue::from_static("upstream-2"));
        let name = HeaderName::from_static("x-request-id");
        let id = HeaderValue::from_static("gw-7");
        let mut out = Vec::new();
        let mut keep = true;
        encode(
            &mut out,
            StatusCode::OK,
            &map,
            Some((&name, &id)),
            &SizeHint::with_exact(0),
            GET,
            &mut keep,
        );
        let t = String::from_utf8(out).unwrap();
        assert!(
            t.starts_with("HTTP/1.1 200 OK\r\nx-a: 1\r\nx-request-id: gw-7\r\n"),
            "{t}"
        );
        assert_eq!(t.matches("x-request-id").count(), 1, "{t}");
    }

    #[test]
    fn head_and_304_say_the_length_a_get_would_get() {
        let head = Asked { head: true, ..GET };
        let (t, f, _) = text(
            200,
            &[("content-length", "1234")],
            SizeHint::with_exact(0),
            head,
        );
        assert_eq!(f, Framing::None);
        assert!(t.contains("content-length: 1234\r\n"));
        let (t, _, _) = text(200, &[], SizeHint::with_exact(0), head);
        assert!(!t.contains("content-length"), "{t}");
        let (t, f, _) = text(304, &[("etag", "\"a\"")], SizeHint::with_exact(0), GET);
        assert_eq!(f, Framing::None);
        assert!(!t.contains("content-length") && !t.contains("transfer-encoding"));
    }

    #[test]
    fn switching_keeps_its_connection_fields_and_transfer_encoding_is_never_passed() {
        let (t, f, keep) = text(
            101,
            &[("connection", "upgrade"), ("upgrade", "websocket")],
            SizeHint::with_exact(0),
            GET,
        );
        assert_eq!(f, Framing::None);
        assert!(keep);
        assert!(t.starts_with("HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n"));
        let (t, _, _) = text(
            200,
            &[("transfer-encoding", "gzip")],
            SizeHint::with_exact(2),
            GET,
        );
        assert!(!t.contains("gzip"));
        let (t, _, keep) = text(
            200,
            &[("connection", "close")],
            SizeHint::with_exact(2),
            GET,
        );
        assert!(!keep);
        assert_eq!(t.matches("connection").count(), 1);
    }
}
