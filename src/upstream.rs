//! Upstream clusters: endpoints, round-robin with passive ejection, a pooled client, forwarding.

mod call;
pub mod tls;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::{BodyTooLarge, Reclaim, RequestBody};
use crate::error::GatewayError;

/// Connector used by every upstream client: plain TCP, or TLS for `https://` endpoints.
pub type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

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
    client: Client<Connector, RequestBody>,
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
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*settings.tls.client_config).clone())
            .https_or_http();
        // The name was checked when the config was compiled.
        let fixed = settings.tls.server_name.as_ref().and_then(|n| {
            rustls_pki_types::ServerName::try_from(n.clone())
                .ok()
                .map(hyper_rustls::FixedServerNameResolver::new)
        });
        let builder = match fixed {
            Some(resolver) => builder.with_server_name_resolver(resolver),
            None => builder,
        };
        let connector = builder.enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.max_idle_per_endpoint)
            .build(connector);
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
            client,
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

    /// Sends a request (its URI holds only path and query) to the next endpoint. A refused
    /// connection ejects that endpoint and, when the body can still be replayed, tries the next.
    pub async fn forward(
        &self,
        mut req: Request<RequestBody>,
        reclaim: Option<Reclaim>,
        timeout: Duration,
    ) -> Result<Response<Incoming>, GatewayError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let path: PathAndQuery = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let n = self.endpoints.len();
        let mut index = self.pick();
        // Without a Host from the route (preserve_host), each attempt names its endpoint.
        let set_host = !req.headers().contains_key(HOST);
        // Keep what a retry needs only when a retry is possible.
        let replay = (n > 1).then(|| (req.method().clone(), req.headers().clone(), req.version()));
        for attempt in 0..n {
            let ep = &self.endpoints[index];
            *req.uri_mut() = Uri::from_parts({
                let mut p = http::uri::Parts::default();
                p.scheme = Some(ep.scheme.clone());
                p.authority = Some(ep.authority.clone());
                p.path_and_query = Some(path.clone());
                p
            })
            .expect("scheme, authority and path make a URI");
            if set_host {
                req.headers_mut().insert(HOST, ep.host_header.clone());
            }
            let result = tokio::time::timeout_at(deadline, self.client.request(req)).await;
            let err = match result {
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(GatewayError::UpstreamTimeout {
                        upstream: self.name.clone(),
                        timeout,
                    });
                }
            };
            if let Some(limit) = body_too_large(&err) {
                return Err(GatewayError::PayloadTooLarge { limit });
            }
            if !err.is_connect() {
                return Err(GatewayError::UpstreamProtocol {
                    upstream: self.name.clone(),
                    reason: error_chain(&err),
                });
            }
            self.eject(index);
            tracing::warn!(upstream = %self.name, endpoint = %ep.authority, error = %error_chain(&err), "connect failed");
            let next_body = match (&reclaim, attempt + 1 < n) {
                (_, false) => None,
                (None, true) => Some(RequestBody::empty()),
                (Some(r), true) => r.take().map(|b| RequestBody::stream(b, u64::MAX)),
            };
            let (Some(body), Some((method, headers, version))) = (next_body, replay.as_ref())
            else {
                return Err(GatewayError::UpstreamUnreachable {
                    upstream: self.name.clone(),
                    reason: error_chain(&err),
                });
            };
            let mut retry = Request::new(body);
            *retry.method_mut() = method.clone();
            *retry.headers_mut() = headers.clone();
            *retry.version_mut() = *version;
            req = retry;
            index = (index + 1) % n;
        }
        Err(GatewayError::UpstreamUnreachable {
            upstream: self.name.clone(),
            reason: "no endpoints".into(),
        })
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

fn body_too_large(err: &(dyn std::error::Error + 'static)) -> Option<u64> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<BodyTooLarge>() {
            return Some(t.limit);
        }
        cur = e.source();
    }
    None
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
