//! Answers the gateway gives itself instead of forwarding: `redirect` (a `Location` built
//! from a template over the request) and `respond` (a fixed status and body).

pub mod compile;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri};
use percent_encoding::utf8_percent_encode;

use crate::bff::template::{COMPONENT, json_at, query_param};
use crate::body::Body;
use crate::filter::Claims;
use crate::filter::headers::HeaderOps;

/// A route action answered by the gateway.
#[derive(Debug)]
pub struct Answer {
    /// What is answered.
    pub kind: Kind,
    /// The route's `response_headers`, applied to the answer.
    pub response_headers: HeaderOps,
    /// Length of the route's path prefix (what `{rest}` drops); `None` for an exact path.
    pub prefix_len: Option<usize>,
}

/// The two answers.
#[derive(Debug)]
pub enum Kind {
    /// `redirect`: a 3xx with `Location`.
    Redirect {
        /// The `Location` template.
        to: Template,
        /// 301, 302, 303, 307 or 308.
        status: StatusCode,
    },
    /// `respond`: a fixed answer.
    Respond {
        /// Its status.
        status: StatusCode,
        /// Its `Content-Type`.
        content_type: HeaderValue,
        /// Its body (not sent to HEAD).
        body: Bytes,
    },
}

/// A parsed `Location` template: literal text and request values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(pub(crate) Box<[Piece]>);

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text copied as is.
    Literal(Box<str>),
    /// `http` or `https`, as the client connected.
    Scheme,
    /// The host the client asked for (lowercase, no port).
    Host,
    /// The request path.
    Path,
    /// The path after the route's `path_prefix` (empty for an exact path).
    Rest,
    /// The raw query string, without `?`.
    Query,
    /// Path plus `?query` when there is one.
    RequestUri,
    /// One query parameter, decoded then percent-encoded as a component.
    QueryParam(Box<str>),
    /// One request header, percent-encoded as a component.
    Header(HeaderName),
    /// A verified claim (dotted path), percent-encoded as a component.
    Claim(Box<[Box<str>]>),
}

/// What a template reads from the request.
pub struct Inputs<'a> {
    /// `https` on TLS connections.
    pub scheme: &'static str,
    /// The checked host, if any.
    pub host: Option<&'a str>,
    /// The request's URI (path normalized by the admission phase).
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// Verified claims, on a route with `auth`.
    pub claims: Option<&'a Claims>,
}

impl Answer {
    /// The response for a request (no body for HEAD).
    pub fn respond(&self, method: &Method, inputs: &Inputs<'_>) -> Response<Body> {
        let mut resp = match &self.kind {
            Kind::Redirect { to, status } => {
                let location = to.render(inputs, self.prefix_len);
                // Every piece is either checked at load or encoded, so this cannot fail; an
                // unencodable byte still never reaches the header.
                let location = HeaderValue::from_str(&location)
                    .unwrap_or_else(|_| HeaderValue::from_static("/"));
                let mut resp = Response::new(Body::Empty);
                *resp.status_mut() = *status;
                resp.headers_mut().insert(LOCATION, location);
                resp.headers_mut()
                    .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
                resp
            }
            Kind::Respond {
                status,
                content_type,
                body,
            } => {
                let len = HeaderValue::from(body.len());
                let body = if method == Method::HEAD || body.is_empty() {
                    Body::Empty
                } else {
                    Body::full(body.clone())
                };
                let mut resp = Response::new(body);
                *resp.status_mut() = *status;
                resp.headers_mut()
                    .insert(CONTENT_TYPE, content_type.clone());
                resp.headers_mut().insert(CONTENT_LENGTH, len);
                resp
            }
        };
        if !self.response_headers.is_empty() {
            self.response_headers.apply(resp.headers_mut());
        }
        resp
    }
}

impl Template {
    /// The `Location` for a request; a value the request lacks renders empty (as in nginx).
    pub fn render(&self, inputs: &Inputs<'_>, prefix_len: Option<usize>) -> String {
        let path = inputs.uri.path();
        let mut out = String::with_capacity(64);
        for piece in self.0.iter() {
            match piece {
                Piece::Literal(s) => out.push_str(s),
                Piece::Scheme => out.push_str(inputs.scheme),
                Piece::Host => out.push_str(inputs.host.unwrap_or("")),
                Piece::Path => out.push_str(path),
                Piece::Rest => out.push_str(rest(path, prefix_len)),
                Piece::Query => out.push_str(inputs.uri.query().unwrap_or("")),
                Piece::RequestUri => {
                    out.push_str(path);
                    if let Some(q) = inputs.uri.query() {
                        out.push('?');
                        out.push_str(q);
                    }
                }
                Piece::QueryParam(name) => {
                    if let Some(v) = inputs.uri.query().and_then(|q| query_param(q, name)) {
                        out.extend(utf8_percent_encode(&v, COMPONENT));
                    }
                }
                Piece::Header(name) => {
                    if let Some(v) = inputs.headers.get(name).and_then(|v| v.to_str().ok()) {
                        out.extend(utf8_percent_encode(v, COMPONENT));
                    }
                }
                Piece::Claim(keys) => {
                    let value = inputs.claims.and_then(|c| {
                        let (first, more) = keys.split_first()?;
                        json_at(c.get(&**first)?, more)
                    });
                    match value {
                        Some(serde_json::Value::String(s)) => {
                            out.extend(utf8_percent_encode(s, COMPONENT))
                        }
                        Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                            out.push_str(&v.to_string())
                        }
                        _ => {}
                    }
                }
            }
        }
        out
    }
}

/// The path after a prefix of `prefix_len` bytes (`/` prefixes drop nothing).
fn rest(path: &str, prefix_len: Option<usize>) -> &str {
    match prefix_len {
        None => "",
        Some(n) if n <= 1 => path,
        Some(n) => path.get(n..).unwrap_or(""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Inputs<'a> {
        Inputs {
            scheme: "http",
            host: Some("old.example.com"),
            uri,
            headers,
            claims: None,
        }
    }

    #[test]
    fn renders_request_values_and_encodes_client_text() {
        let t = compile::parse("https://new.example.com/v2{rest}?u={query.u}&via={header.x-via}")
            .unwrap();
        let uri: Uri = "/old/a/b?u=a%20b%26c".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-via", HeaderValue::from_static("x/y"));
        let out = t.render(&inputs(&uri, &headers), Some("/old".len()));
        assert_eq!(out, "https://new.example.com/v2/a/b?u=a%20b%26c&via=x%2Fy");
    }

    #[test]
    fn request_uri_keeps_the_query_and_missing_values_render_empty() {
        let t = compile::parse("{scheme}://{host}{request_uri}|{query.nope}|{rest}").unwrap();
        let uri: Uri = "/p?q=1".parse().unwrap();
        let headers = HeaderMap::new();
        let out = t.render(&inputs(&uri, &headers), None);
        assert_eq!(out, "http://old.example.com/p?q=1||");
    }

    #[test]
    fn a_slash_prefix_keeps_the_whole_path_in_rest() {
        assert_eq!(rest("/a/b", Some(1)), "/a/b");
        assert_eq!(rest("/a/b", Some(2)), "/b");
        assert_eq!(rest("/a", None), "");
    }
}
