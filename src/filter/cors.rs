//! `[cors.NAME]` at request time: preflights answered by the gateway (before auth, never
//! forwarded) and the CORS fields added to actual answers. The gateway owns CORS on a route with
//! a policy: an upstream's own `Access-Control-*` fields are replaced.

pub mod compile;

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, HeaderMap, HeaderName,
    HeaderValue, ORIGIN, VARY,
};
use http::{Method, Response, StatusCode};

use crate::body::Body;
use crate::error::GatewayError;

/// One compiled CORS policy.
#[derive(Debug)]
pub struct Cors {
    /// The policy's name (logs).
    pub name: std::sync::Arc<str>,
    /// `origins = ["*"]`: every origin.
    pub any_origin: bool,
    /// Exact origins, lowercase (`https://app.example.com`).
    pub exact: Box<[Box<str>]>,
    /// `scheme://*.suffix` patterns as (`scheme://`, `.suffix`), lowercase.
    pub patterns: Box<[(Box<str>, Box<str>)]>,
    /// Methods a preflight may ask for.
    pub methods: Box<[Method]>,
    /// `Access-Control-Allow-Methods`.
    pub methods_value: HeaderValue,
    /// `headers = ["*"]`: any request header (the asked ones are echoed).
    pub any_header: bool,
    /// Request headers a preflight may ask for, lowercase.
    pub headers: Box<[HeaderName]>,
    /// `Access-Control-Allow-Headers` (when not echoing).
    pub headers_value: Option<HeaderValue>,
    /// `Access-Control-Expose-Headers`.
    pub expose: Option<HeaderValue>,
    /// `Access-Control-Allow-Credentials: true`.
    pub credentials: bool,
    /// `Access-Control-Max-Age`.
    pub max_age: Option<HeaderValue>,
}

/// The method a CORS preflight asks about: `OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`; `None` for every other request.
pub fn preflight_method(method: &Method, headers: &HeaderMap) -> Option<Method> {
    if method != Method::OPTIONS || !headers.contains_key(ORIGIN) {
        return None;
    }
    let asked = headers.get(ACCESS_CONTROL_REQUEST_METHOD)?;
    Method::from_bytes(asked.as_bytes()).ok()
}

impl Cors {
    /// Whether the policy lets `origin` in.
    pub fn allows_origin(&self, origin: &[u8]) -> bool {
        if self.any_origin {
            return true;
        }
        let Ok(origin) = std::str::from_utf8(origin) else {
            return false;
        };
        let lower;
        let origin = if origin.bytes().any(|b| b.is_ascii_uppercase()) {
            lower = origin.to_ascii_lowercase();
            lower.as_str()
        } else {
            origin
        };
        self.exact.iter().any(|o| **o == *origin)
            || self.patterns.iter().any(|(scheme, suffix)| {
                origin
                    .strip_prefix(&**scheme)
                    .and_then(|rest| rest.strip_suffix(&**suffix))
                    // `*` stands for exactly one DNS label.
                    .is_some_and(|label| {
                        !label.is_empty()
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    })
            })
    }

    /// The `Access-Control-Allow-Origin` value for an allowed origin: `*` for an any-origin
    /// policy without credentials, else the origin itself.
    fn allow_origin_value(&self, origin: &HeaderValue) -> HeaderValue {
        if self.any_origin && !self.credentials {
            HeaderValue::from_static("*")
        } else {
            origin.clone()
        }
    }

    /// Whether the answer differs by `Origin` (then caches must key on it).
    fn varies(&self) -> bool {
        !self.any_origin || self.credentials
    }

    /// Answers a preflight: 204 with the allowed methods and headers, or 403 (without CORS
    /// fields) when the origin, the method or a header is not allowed.
    pub fn preflight(
        &self,
        method: &Method,
        headers: &HeaderMap,
    ) -> Result<Response<Body>, GatewayError> {
        let origin = headers
            .get(ORIGIN)
            .filter(|o| self.allows_origin(o.as_bytes()));
        let Some(origin) = origin else {
            return Err(GatewayError::CorsRejected {
                detail: "This origin is not allowed to call this API.",
            });
        };
        if !self.methods.contains(method) {
            return Err(GatewayError::CorsRejected {
                detail: "This method is not allowed for cross-origin requests.",
            });
        }
        let asked = headers.get(ACCESS_CONTROL_REQUEST_HEADERS);
        if !self.any_header {
            for name in crate::filter::headers::list_items(headers, ACCESS_CONTROL_REQUEST_HEADERS)
            {
                if !self
                    .headers
                    .iter()
                    .any(|h| h.as_str().eq_ignore_ascii_case(name))
                {
                    return Err(GatewayError::CorsRejected {
                        detail: "A requested header is not allowed for cross-origin requests.",
                    });
                }
            }
        }
        let mut resp = Response::new(Body::Empty);
        *resp.status_mut() = StatusCode::NO_CONTENT;
        let h = resp.headers_mut();
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin_value(origin));
        h.insert(ACCESS_CONTROL_ALLOW_METHODS, self.methods_value.clone());
        let allow_headers = if self.any_header {
            asked.cloned()
        } else {
            self.headers_value.clone()
        };
        if let Some(v) = allow_headers {
            h.insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        if self.credentials {
            h.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(v) = &self.max_age {
            h.insert(ACCESS_CONTROL_MAX_AGE, v.clone());
        }
        h.insert(
            VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        Ok(resp)
    }

    /// Adds the CORS fields of an actual (non-preflight) answer; `origin` is the request's.
    /// A disallowed or absent origin gets none (only `Vary: Origin`).
    pub fn decorate(&self, origin: Option<&HeaderValue>, h: &mut HeaderMap) {
        for name in [
            ACCESS_CONTROL_ALLOW_ORIGIN,
            ACCESS_CONTROL_ALLOW_CREDENTIALS,
            ACCESS_CONTROL_EXPOSE_HEADERS,
        ] {
            h.remove(name);
        }
        if self.varies() {
            h.append(VARY, HeaderValue::from_static("Origin"));
        }
        let Some(origin) = origin.filter(|o| self.allows_origin(o.as_bytes())) else {
            return;
        };
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.allow_origin_value(origin));
        if self.credentials {
            h.insert(
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(v) = &self.expose {
            h.insert(ACCESS_CONTROL_EXPOSE_HEADERS, v.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Cors {
        Cors {
            name: "web".into(),
            any_origin: false,
            exact: vec!["https://app.example.com".into()].into(),
            patterns: vec![("https://".into(), ".example.com".into())].into(),
            methods: vec![Method::GET].into(),
            methods_value: HeaderValue::from_static("GET"),
            any_header: false,
            headers: vec![HeaderName::from_static("content-type")].into(),
            headers_value: Some(HeaderValue::from_static("content-type")),
            expose: None,
            credentials: true,
            max_age: None,
        }
    }

    #[test]
    fn origin_patterns_match_one_label() {
        let p = policy();
        assert!(p.allows_origin(b"https://app.example.com"));
        assert!(p.allows_origin(b"https://API.example.com"));
        assert!(!p.allows_origin(b"https://a.b.example.com"));
        assert!(!p.allows_origin(b"https://.example.com"));
        assert!(!p.allows_origin(b"http://app.example.com"));
        assert!(!p.allows_origin(b"https://example.com"));
        assert!(!p.allows_origin(b"https://evil-example.com"));
        assert!(!p.allows_origin(b"https://app.example.com.evil.net"));
    }
}
