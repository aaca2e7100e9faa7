//! Upstream clusters: endpoints, round-robin with passive ejection, and the send loop that
//! fails over to the next endpoint when a connection is refused. `transport` carries requests.

pub mod compile;
pub mod tls;
pub mod transport;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant as Deadline;

use crate::body::{Reclaim, RequestBody};
use crate::error::GatewayError;
use transport::Transport;

/// Settings that define an upstream; equal settings across a reload keep the same `Upstream`
/// (its pooled connections, round-robin position and endpoint health).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// Endpoint addresses as `scheme://host:port`.
    pub endpoints: Vec<(Scheme, Authority)>,
    /// Time to the response head.
    pub timeout: Duration,
    /// Time to connect.
    pub connect_timeout: Duration,
    /// How long a refusing endpoint is skipped.
    pub fail_timeout: Duration,
    /// Idle pooled connections per endpoint.
    pub max_idle_per_endpoint: usize,
    /// Idle pooled connection lifetime.
    pub pool_idle_timeout: Duration,
    /// Roots, client certificate and SNI for `https` endpoints.
    pub tls: tls::UpstreamTls,
}

/// One address of an upstream.
#[derive(Debug)]
pub struct Endpoint {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host:port`.
    pub authority: Authority,
    /// The `Host` sent when the route does not preserve the client's: the authority without a
    /// default port, made once here instead of formatted on every request.
    host_header: HeaderValue,
    /// Skipped until this many ms after process start (0: healthy).
    down_until_ms: AtomicU64,
}

/// A named upstream cluster.
pub struct Upstream {
    /// Name from the config.
    pub name: Arc<str>,
    /// Its settings (compared on reload).
    pub settings: UpstreamSettings,
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    transport: Transport,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("settings", &self.settings)
            .finish()
    }
}

fn clock_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Parses an endpoint: `host:port`, `http://host:port` or `https://host:port`.
pub fn parse_endpoint(text: &str) -> Result<(Scheme, Authority), String> {
    let bad = |why: &str| format!("bad address \"{text}\": {why}");
    let (scheme, rest) = match text.split_once("://") {
        Some(("http", rest)) => (Scheme::HTTP, rest),
        Some(("https", rest)) => (Scheme::HTTPS, rest),
        Some((other, _)) => {
            return Err(bad(&format!(
                "unsupported scheme \"{other}\" (use http or https)"
            )));
        }
        None => (Scheme::HTTP, text),
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') {
        return Err(bad("an endpoint is host:port, without a path"));
    }
    let authority: Authority = rest.parse().map_err(|_| bad("expected host:port"))?;
    if authority.port_u16().is_none() {
        return Err(bad("a port is required, e.g. \"127.0.0.1:7001\""));
    }
    if authority.host().is_empty() || rest.contains('@') {
        return Err(bad("expected host:port"));
    }
    Ok((scheme, authority))
}

impl Upstream {
    /// Builds an upstream with a fresh connection pool.
    pub fn new(name: Arc<str>, settings: UpstreamSettings) -> Upstream {
        let transport = Transport::new(&settings);
        let endpoints = settings
            .endpoints
            .iter()
            .map(|(scheme, authority)| Endpoint {
                scheme: scheme.clone(),
                authority: authority.clone(),
                host_header: host_header(scheme, authority),
                down_until_ms: AtomicU64::new(0),
            })
            .collect();
        Upstream {
            name,
            settings,
            endpoints,
            next: AtomicUsize::new(0),
            transport,
        }
    }

    /// The endpoints, in config order.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Round-robin start index, skipping endpoints ejected after a refused connection (when all
    /// are ejected, all are tried: a down cluster should fail fast, not stay dark).
    fn pick(&self) -> usize {
        let n = self.endpoints.len();
        let start = if n == 1 {
            0
        } else {
            self.next.fetch_add(1, Ordering::Relaxed) % n
        };
        let now = clock_ms();
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.endpoints[i].down_until_ms.load(Ordering::Relaxed) <= now)
            .unwrap_or(start)
    }

    fn eject(&self, i: usize) {
        let until = clock_ms().saturating_add(self.settings.fail_timeout.as_millis() as u64);
        self.endpoints[i]
            .down_until_ms
            .store(until, Ordering::Relaxed);
    }

    /// Proxies a client request (its URI holds only path and query); `reclaim` gets the body
    /// back for another endpoint if the first refused the connection before reading it.
    pub async fn forward(
        &self,
        req: Request<RequestBody>,
        reclaim: Option<Reclaim>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, GatewayError> {
        let replay = reclaim.map_or(Replay::Empty, Replay::Reclaim);
        self.send(req, replay, Deadline::now() + timeout).await
    }

    /// Sends a request the gateway built itself (a BFF part call): the body is in memory, so a
    /// refused connection can always be retried on the next endpoint.
    pub async fn call(
        &self,
        method: &Method,
        path: PathAndQuery,
        headers: HeaderMap,
        body: Bytes,
        until: Deadline,
    ) -> Result<Response<Incoming>, GatewayError> {
        let first = if body.is_empty() {
            RequestBody::empty()
        } else {
            RequestBody::full(body.clone())
        };
        let mut req = Request::new(first);
        *req.method_mut() = method.clone();
        *req.uri_mut() = path.into();
        *req.headers_mut() = headers;
        self.send(req, Replay::Bytes(body), until).await
    }

    /// Sends a mirror copy (body in memory, see `route::mirror`): like [`Upstream::call`], but
    /// the Host it names an endpoint by gets the `-shadow` suffix so backends can tell.
    pub async fn call_shadow(
        &self,
        method: &Method,
        path: PathAndQuery,
        headers: HeaderMap,
        body: Bytes,
        until: Deadline,
    ) -> Result<Response<Incoming>, GatewayError> {
        let first = if body.is_empty() {
            RequestBody::empty()
        } else {
            RequestBody::full(body.clone())
        };
        let mut req = Request::new(first);
        *req.method_mut() = method.clone();
        *req.uri_mut() = path.into();
        *req.headers_mut() = headers;
        req.extensions_mut().insert(Shadow);
        self.send(req, Replay::Bytes(body), until).await
    }

    /// Sends to the next endpoint and waits for the response head until `deadline`. A refused
    /// connection ejects that endpoint and, when the body can be sent again, tries the next.
    async fn send(
        &self,
        mut req: Request<RequestBody>,
        replay: Replay,
        deadline: Deadline,
    ) -> Result<Response<Incoming>, GatewayError> {
        let started = Deadline::now();
        let n = self.endpoints.len();
        let mut index = self.pick();
        // Without a Host from the route (preserve_host), each attempt names its endpoint.
        let set_host = !req.headers().contains_key(HOST);
        let shadow = req.extensions().get::<Shadow>().is_some();
        // Keep what a retry needs only when a retry is possible.
        let head = (n > 1).then(|| {
            (
                req.method().clone(),
                req.uri().clone(),
                req.headers().clone(),
            )
        });
        for attempt in 0..n {
            let ep = &self.endpoints[index];
            if set_host {
                let host = if shadow {
                    shadow_host(&ep.host_header)
                } else {
                    ep.host_header.clone()
                };
                req.headers_mut().insert(HOST, host);
            }
            let err = match tokio::time::timeout_at(deadline, self.transport.send(ep, req)).await {
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(GatewayError::UpstreamTimeout {
                        upstream: self.name.clone(),
                        timeout: deadline.saturating_duration_since(started),
                    });
                }
            };
            if let Some(limit) = err.body_too_large {
                return Err(GatewayError::PayloadTooLarge { limit });
            }
            if err.client_body {
                return Err(GatewayError::ClientBody { reason: err.detail });
            }
            if !err.connect {
                return Err(GatewayError::UpstreamProtocol {
                    upstream: self.name.clone(),
                    reason: err.detail,
                });
            }
            self.eject(index);
            tracing::warn!(upstream = %self.name, endpoint = %ep.authority, error = %err.detail, "connect failed");
            let body = if attempt + 1 < n { replay.body() } else { None };
            let (Some(body), Some((method, uri, headers))) = (body, head.as_ref()) else {
                return Err(GatewayError::UpstreamUnreachable {
                    upstream: self.name.clone(),
                    reason: err.detail,
                });
            };
            req = Request::new(body);
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = headers.clone();
            index = (index + 1) % n;
        }
        Err(GatewayError::UpstreamUnreachable {
            upstream: self.name.clone(),
            reason: "no endpoints".into(),
        })
    }
}

/// Marks a mirror copy: the endpoint's Host is sent with the `-shadow` suffix.
#[derive(Debug, Clone, Copy)]
struct Shadow;

/// The shadow Host: `-shadow` appended to the host part (`users.internal:8080` →
/// `users.internal-shadow:8080`, `[::1]:8080` → `[::1]-shadow:8080`).
pub fn shadow_host(host: &HeaderValue) -> HeaderValue {
    let text = host.to_str().unwrap_or("");
    let split = match text.rfind(':') {
        Some(i) if !text[i..].contains(']') => i,
        _ => text.len(),
    };
    let out = format!("{}-shadow{}", &text[..split], &text[split..]);
    HeaderValue::from_str(&out).unwrap_or_else(|_| host.clone())
}

/// How a request's body is sent again after a refused connection.
enum Replay {
    /// There was no body.
    Empty,
    /// The body is in memory.
    Bytes(Bytes),
    /// A streamed client body, if it was never read.
    Reclaim(Reclaim),
}

impl Replay {
    fn body(&self) -> Option<RequestBody> {
        match self {
            Replay::Empty => Some(RequestBody::empty()),
            Replay::Bytes(b) if b.is_empty() => Some(RequestBody::empty()),
            Replay::Bytes(b) => Some(RequestBody::full(b.clone())),
            Replay::Reclaim(r) => r.take(),
        }
    }
}

/// `Host` for an endpoint: `host`, or `host:port` unless the port is the scheme's default (the
/// form HTTP clients send, RFC 9110 §7.2).
fn host_header(scheme: &Scheme, authority: &Authority) -> HeaderValue {
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let text = match authority.port_u16() {
        Some(port) if port != default_port => authority.as_str(),
        _ => authority.host(),
    };
    HeaderValue::from_str(text).expect("a parsed authority is a valid header value")
}

/// An error and its causes on one line, for logs.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse() {
        let (s, a) = parse_endpoint("127.0.0.1:7001").unwrap();
        assert_eq!((s.as_str(), a.as_str()), ("http", "127.0.0.1:7001"));
        assert_eq!(
            parse_endpoint("https://api.example.com:443").unwrap().0,
            Scheme::HTTPS
        );
        assert!(parse_endpoint("127.0.0.1").unwrap_err().contains("port"));
        assert!(parse_endpoint("ftp://x:1").is_err());
        assert!(parse_endpoint("http://x:1/path").is_err());
        assert!(parse_endpoint("not an address").is_err());
    }

    #[test]
    fn shadow_hosts() {
        let shadow = |t: &'static str| shadow_host(&HeaderValue::from_static(t));
        assert_eq!(shadow("users.internal:8080"), "users.internal-shadow:8080");
        assert_eq!(shadow("api.example.com"), "api.example.com-shadow");
        assert_eq!(shadow("[::1]:8080"), "[::1]-shadow:8080");
        assert_eq!(shadow("[::1]"), "[::1]-shadow");
    }

    #[test]
    fn host_headers_drop_default_ports_only() {
        let host = |text: &str| {
            let (scheme, authority) = parse_endpoint(text).unwrap();
            host_header(&scheme, &authority)
        };
        assert_eq!(host("127.0.0.1:7001"), "127.0.0.1:7001");
        assert_eq!(host("http://api.example.com:80"), "api.example.com");
        assert_eq!(host("https://api.example.com:443"), "api.example.com");
        assert_eq!(host("https://api.example.com:80"), "api.example.com:80");
        assert_eq!(host("http://[::1]:8080"), "[::1]:8080");
    }
}
