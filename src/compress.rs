//! Response compression (`[compression]`): the coding negotiated from Accept-Encoding, the
//! rules for which answers are worth compressing, and the streaming encoder body.

pub mod compile;
mod encoder;
mod negotiate;
mod types;

use http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;

use crate::body::Body;
use crate::filter::headers::list_items;

pub use negotiate::negotiate;
pub use types::TypePattern;

/// A content coding the gateway can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `zstd` (RFC 8878).
    Zstd,
    /// `br` (RFC 7932).
    Brotli,
    /// `gzip` (RFC 1952).
    Gzip,
}

impl Algorithm {
    /// The coding's token in Accept-Encoding and Content-Encoding.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Zstd => "zstd",
            Algorithm::Brotli => "br",
            Algorithm::Gzip => "gzip",
        }
    }
}

/// Levels per coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Levels {
    /// gzip, 1-9.
    pub gzip: u32,
    /// Brotli quality, 0-11.
    pub br: u32,
    /// zstd, 1-19.
    pub zstd: i32,
}

impl Default for Levels {
    /// gzip 6 (zlib's default), Brotli 4 and zstd 3: good ratios at a CPU cost fit for
    /// dynamic answers (the highest levels cost 10-100x more for a few percent).
    fn default() -> Self {
        Levels {
            gzip: 6,
            br: 4,
            zstd: 3,
        }
    }
}

/// `[compression]`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Compression {
    /// Codings in the server's order of preference.
    pub algorithms: Box<[Algorithm]>,
    /// Bodies with a known length below this are not compressed.
    pub min_size: u64,
    /// Media types worth compressing.
    pub types: Box<[TypePattern]>,
    /// Levels per coding.
    pub levels: Levels,
}

impl Compression {
    /// The coding to use for a request's answer, from its method and Accept-Encoding; `None`
    /// when the client accepts none of ours (or asked with HEAD: no body to compress).
    pub fn choose(&self, method: &Method, headers: &HeaderMap) -> Option<Algorithm> {
        if method == Method::HEAD {
            return None;
        }
        let accept = headers.get(http::header::ACCEPT_ENCODING)?;
        negotiate(&self.algorithms, accept.as_bytes())
    }

    /// Compresses `resp` with `algorithm` when the answer is worth it, and marks every answer
    /// that could have been compressed with `Vary: Accept-Encoding` (a cache must not give the
    /// compressed copy to a client that did not ask for it, nor the reverse).
    pub fn apply(&self, algorithm: Option<Algorithm>, resp: Response<Body>) -> Response<Body> {
        if !self.eligible(&resp) {
            return resp;
        }
        let (mut head, body) = resp.into_parts();
        add_vary(&mut head.headers);
        let Some(algorithm) = algorithm else {
            return Response::from_parts(head, body);
        };
        let h = &mut head.headers;
        h.remove(CONTENT_LENGTH);
        h.remove(ACCEPT_RANGES);
        h.insert(
            CONTENT_ENCODING,
            HeaderValue::from_static(algorithm.token()),
        );
        weaken_etag(h);
        let body = encoder::Compressed::new(body, algorithm, self.levels);
        Response::from_parts(head, Body::Boxed(body.boxed_unsync()))
    }

    /// Whether an answer may and should be compressed: a body-bearing status, not already
    /// encoded, not a range, no `no-transform`, a listed media type, not known to be small.
    fn eligible(&self, resp: &Response<Body>) -> bool {
        let status = resp.status();
        if status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status == StatusCode::PARTIAL_CONTENT
        {
            return false;
        }
        let h = resp.headers();
        if h.get(CONTENT_ENCODING)
            .is_some_and(|e| !e.as_bytes().eq_ignore_ascii_case(b"identity"))
            || h.contains_key(CONTENT_RANGE)
            || no_transform(h)
        {
            return false;
        }
        let Some(media) = h.get(CONTENT_TYPE).and_then(|t| t.to_str().ok()) else {
            return false;
        };
        if !self.types.iter().any(|t| t.matches(media)) {
            return false;
        }
        known_length(resp).is_none_or(|len| len >= self.min_size)
    }
}

/// The body's length when it is known up front.
fn known_length(resp: &Response<Body>) -> Option<u64> {
    use http_body::Body as _;
    resp.body().size_hint().exact().or_else(|| {
        resp.headers()
            .get(CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    })
}

/// `Cache-Control: no-transform` forbids intermediaries to change the content (RFC 9111
/// §5.2.2.6), content codings included.
fn no_transform(h: &HeaderMap) -> bool {
    list_items(h, CACHE_CONTROL).any(|d| d.eq_ignore_ascii_case("no-transform"))
}

/// Adds `Accept-Encoding` to Vary unless it is there already (or Vary is `*`).
fn add_vary(h: &mut HeaderMap) {
    let present =
        list_items(h, VARY).any(|f| f == "*" || f.eq_ignore_ascii_case("accept-encoding"));
    if !present {
        h.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// A strong ETag names exact bytes; the compressed bytes differ, so the tag becomes weak
/// (RFC 9110 §8.8.1), and If-None-Match (a weak comparison) still matches it.
fn weaken_etag(h: &mut HeaderMap) {
    let Some(tag) = h.get(ETAG) else { return };
    if tag.as_bytes().starts_with(b"W/") {
        return;
    }
    let mut weak = Vec::with_capacity(tag.len() + 2);
    weak.extend_from_slice(b"W/");
    weak.extend_from_slice(tag.as_bytes());
    if let Ok(v) = HeaderValue::from_bytes(&weak) {
        h.insert(ETAG, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compression() -> Compression {
        Compression {
            algorithms: [Algorithm::Zstd, Algorithm::Brotli, Algorithm::Gzip].into(),
            min_size: 10,
            types: compile::default_types(),
            levels: Levels::default(),
        }
    }

    fn answer(status: u16, headers: &[(&str, &str)], body: &'static str) -> Response<Body> {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::full(body)).unwrap()
    }

    const JSON: (&str, &str) = ("content-type", "application/json");
    const LONG: &str = "{\"a\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}";

    #[test]
    fn compresses_a_listed_type_and_fixes_the_headers() {
        let r = compression().apply(
            Some(Algorithm::Gzip),
            answer(
                200,
                &[JSON, ("etag", "\"abc\""), ("accept-ranges", "bytes")],
                LONG,
            ),
        );
        let h = r.headers();
        assert_eq!(h["content-encoding"], "gzip");
        assert_eq!(h["vary"], "Accept-Encoding");
        assert_eq!(h["etag"], "W/\"abc\"");
        assert!(!h.contains_key("content-length") && !h.contains_key("accept-ranges"));
    }

    #[test]
    fn leaves_alone_what_must_not_or_need_not_be_compressed() {
        let c = compression();
        let cases = [
            answer(204, &[JSON], ""),
            answer(304, &[JSON], ""),
            answer(206, &[JSON, ("content-range", "bytes 0-9/99")], LONG),
            answer(200, &[JSON, ("content-encoding", "br")], LONG),
            answer(
                200,
                &[JSON, ("cache-control", "public, no-transform")],
                LONG,
            ),
            answer(200, &[("content-type", "image/png")], LONG),
            answer(200, &[], LONG),
            answer(200, &[JSON], "{}"),
        ];
        for r in cases {
            let before = format!("{:?}", r.headers());
            let r = c.apply(Some(Algorithm::Gzip), r);
            assert!(!r.headers().contains_key("content-encoding") || before.contains("\"br\""));
            assert!(!r.headers().contains_key("vary"), "{before}");
        }
    }

    #[test]
    fn vary_is_set_even_when_this_client_gets_it_plain() {
        let r = compression().apply(None, answer(200, &[JSON], LONG));
        assert_eq!(r.headers()["vary"], "Accept-Encoding");
        assert!(!r.headers().contains_key("content-encoding"));
        let r = compression().apply(
            None,
            answer(200, &[JSON, ("vary", "Origin, accept-encoding")], LONG),
        );
        assert_eq!(r.headers().get_all("vary").iter().count(), 1);
    }

    #[test]
    fn head_gets_no_coding() {
        let mut h = HeaderMap::new();
        h.insert("accept-encoding", HeaderValue::from_static("gzip"));
        assert_eq!(compression().choose(&Method::HEAD, &h), None);
        assert_eq!(
            compression().choose(&Method::GET, &h),
            Some(Algorithm::Gzip)
        );
        assert_eq!(compression().choose(&Method::GET, &HeaderMap::new()), None);
    }
}
