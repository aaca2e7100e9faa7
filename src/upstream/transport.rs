//! How one request travels to one endpoint: the pooled client (plain TCP, or TLS for `https`
//! endpoints) speaking the upstream's `protocol`: HTTP/1.1, HTTP/2 (prior-knowledge h2c on
//! `http://`, ALPN h2 on `https://`; one multiplexed connection per endpoint), or `auto`
//! (ALPN h2 or http/1.1 over TLS, HTTP/1.1 on plain TCP). Endpoint choice, failover and
//! timeouts are `Upstream`'s business.

use std::time::Duration;

use http::uri::PathAndQuery;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{Endpoint, UpstreamSettings};
use crate::body::{BodyTooLarge, ClientBodyError, RequestBody};

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// `[upstreams.NAME] protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (the default).
    #[default]
    Http1,
    /// HTTP/2 only: h2c with prior knowledge on `http://`, ALPN `h2` on `https://`.
    H2,
    /// ALPN offers `h2` and `http/1.1` over TLS; HTTP/1.1 on plain TCP.
    Auto,
}

impl Protocol {
    /// Reads `http1`, `h2` or `auto`.
    pub fn parse(text: &str) -> Result<Protocol, String> {
        match text {
            "http1" => Ok(Protocol::Http1),
            "h2" => Ok(Protocol::H2),
            "auto" => Ok(Protocol::Auto),
            other => Err(format!(
                "unknown protocol \"{other}\": expected \"http1\", \"h2\" or \"auto\""
            )),
        }
    }
}

/// Pooled connections to the endpoints of one upstream.
pub struct Transport {
    client: Client<Connector, RequestBody>,
}

/// Why a request did not get a response head from an endpoint.
#[derive(Debug)]
pub struct SendError {
    /// The connection could not be opened: nothing was sent, another endpoint may be tried.
    pub connect: bool,
    /// The request body went over `limits.max_body_bytes` while streaming.
    pub body_too_large: Option<u64>,
    /// Reading the client's body failed: the client's fault (400), not the endpoint's.
    pub client_body: bool,
    /// What happened, with its causes, for logs.
    pub detail: String,
}

impl Transport {
    /// A client with its own pool, honouring the upstream's connect timeout, pool sizes and TLS.
    pub fn new(settings: &UpstreamSettings) -> Transport {
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
        // ALPN offers what the protocol allows; the client speaks what was negotiated.
        let connector = match settings.protocol {
            Protocol::Http1 => builder.enable_http1().wrap_connector(http),
            Protocol::H2 => builder.enable_http2().wrap_connector(http),
            Protocol::Auto => builder.enable_all_versions().wrap_connector(http),
        };
        let mut client = Client::builder(TokioExecutor::new());
        client
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.max_idle_per_endpoint);
        if settings.protocol != Protocol::Http1 {
            // One connection per endpoint carries every stream; pings keep it (and a quiet
            // gRPC stream) alive and find a dead peer.
            client
                .http2_only(settings.protocol == Protocol::H2)
                .http2_keep_alive_interval(Some(Duration::from_secs(30)))
                .http2_keep_alive_timeout(Duration::from_secs(20))
                .http2_keep_alive_while_idle(true)
                .http2_adaptive_window(true);
        }
        let client = client.build(connector);
        Transport { client }
    }

    /// Sends `req` (its URI holds the path and query) to `ep` and waits for the response head.
    pub async fn send(
        &self,
        ep: &Endpoint,
        mut req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, SendError> {
        let path = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(ep.scheme.clone());
        parts.authority = Some(ep.authority.clone());
        parts.path_and_query = Some(path);
        *req.uri_mut() = Uri::from_parts(parts).expect("scheme, authority and path make a URI");
        self.client.request(req).await.map_err(|e| SendError {
            connect: e.is_connect(),
            body_too_large: body_too_large(&e),
            client_body: caused_by::<ClientBodyError>(&e),
            detail: super::error_chain(&e),
        })
    }
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

/// Whether `E` is among the causes of `err`.
fn caused_by<E: std::error::Error + 'static>(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if e.is::<E>() {
            return true;
        }
        cur = e.source();
    }
    false
}
