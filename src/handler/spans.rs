//! The SERVER span of a request: what is read from the request head before it is consumed,
//! and the OpenTelemetry HTTP attributes written when the response head is known.

use http::{Method, Request, Response, Version};

use crate::conn::ConnInfo;
use crate::error::GatewayError;
use crate::trace::{Attr, ServerSpan};

/// What the span needs from the request head (taken only for sampled requests).
pub struct Head {
    method: Method,
    path: String,
    version: Version,
    user_agent: Option<String>,
    peer: std::net::SocketAddr,
    tls: bool,
}

impl Head {
    /// Copies the parts of the head the span reports.
    pub fn of<B>(req: &Request<B>, conn: &ConnInfo) -> Head {
        Head {
            method: req.method().clone(),
            path: req.uri().path().to_owned(),
            version: req.version(),
            user_agent: req
                .headers()
                .get(http::header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            peer: conn.peer,
            tls: conn.tls,
        }
    }
}

/// What the request path learned (route, upstream, fault).
pub struct Learned<'a> {
    pub route: Option<&'a str>,
    pub upstream: Option<&'a str>,
    pub fault: Option<&'static str>,
    pub authenticated: bool,
    pub request_id: &'a str,
}

/// The stable problem slug of an error (`rate-limited`, `unauthorized`, ...).
pub fn slug(err: &GatewayError) -> String {
    let t = err.problem_type();
    t.rsplit('/').next().unwrap_or(&t).to_owned()
}

/// Ends the SERVER span named "{method} {route id}" with the HTTP semantic-convention
/// attributes and Portico's own (route, upstream, rate-limit and auth outcome, fault).
pub fn finish_server<B>(
    span: ServerSpan,
    head: Head,
    t: &Learned,
    resp: &Response<B>,
    error: Option<String>,
) {
    let status = resp.status();
    let route = t.route.unwrap_or("-");
    let name = format!("{} {route}", head.method);
    let mut attrs = vec![
        Attr::Str("http.request.method", head.method.to_string()),
        Attr::Str("url.path", head.path),
        Attr::Str("url.scheme", if head.tls { "https" } else { "http" }.into()),
        Attr::Str("network.protocol.version", version(head.version).into()),
        Attr::Str("client.address", head.peer.ip().to_string()),
        Attr::Int("http.response.status_code", i64::from(status.as_u16())),
        Attr::Str("http.route", route.to_owned()),
        Attr::Str("portico.route", route.to_owned()),
        Attr::Str("portico.request_id", t.request_id.to_owned()),
    ];
    if let Some(ua) = head.user_agent {
        attrs.push(Attr::Str("user_agent.original", ua));
    }
    if let Some(u) = t.upstream {
        attrs.push(Attr::Str("portico.upstream", u.to_owned()));
    }
    if let Some(f) = t.fault {
        attrs.push(Attr::Str("portico.fault", f.to_owned()));
    }
    let slug = error.as_deref();
    // The rate-limit decision: refused, or allowed by a policy (its headers are on the answer).
    if slug == Some("rate-limited") {
        attrs.push(Attr::Str("portico.rate_limit", "refused".into()));
    } else if resp.headers().contains_key(&crate::error::RATELIMIT) {
        attrs.push(Attr::Str("portico.rate_limit", "allowed".into()));
    }
    // The auth outcome (never the credential itself).
    if matches!(slug, Some("unauthorized" | "forbidden")) {
        attrs.push(Attr::Str("portico.auth", "refused".into()));
    } else if t.authenticated {
        attrs.push(Attr::Str("portico.auth", "passed".into()));
    }
    if resp.headers().contains_key(&crate::bff::PARTIAL_HEADER) {
        attrs.push(Attr::Bool("portico.partial", true));
    }
    if let Some(s) = slug {
        attrs.push(Attr::Str("error.type", s.to_owned()));
    }
    // Per the HTTP semantic conventions a SERVER span is an error on 5xx only.
    let error = status
        .is_server_error()
        .then(|| error.clone().unwrap_or_else(|| status.as_u16().to_string()));
    span.finish(name, attrs, error);
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The aggregation span's attributes: whether the answer is partial, or the error.
pub fn aggregate<B>(r: &Result<Response<B>, GatewayError>) -> (Vec<Attr>, Option<String>) {
    match r {
        Ok(resp) => {
            let partial = resp.headers().contains_key(&crate::bff::PARTIAL_HEADER);
            (vec![Attr::Bool("portico.partial", partial)], None)
        }
        Err(e) => (Vec::new(), Some(slug(e))),
    }
}
