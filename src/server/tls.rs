//! HTTPS listener: rustls handshake (SNI, ALPN h2/http1.1, optional mTLS) with a timeout, then
//! the same connection serving as plain HTTP; plus the `redirect_https` and HSTS helpers.
//!
//! The `rustls::ServerConfig` lives in the `Runtime`, so a reload swaps certificates
//! all-or-nothing: each new handshake takes the config current when the connection was
//! accepted, and open connections go on with what they negotiated.

pub mod certs;
pub mod client_cert;
pub mod compile;
pub mod sni;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_LENGTH, LOCATION};
use http::{HeaderName, HeaderValue, Response, StatusCode, Uri};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

pub use client_cert::ClientCert;

use crate::body::Body;
use crate::config::Runtime;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::server::{Accepted, ConnInfo, ConnTracker, accept_loop, serve_connection};

/// Whether and how the listener asks for client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No `client_ca`: no certificate is asked for.
    Off,
    /// A certificate is asked for; without one the handshake still succeeds.
    Optional,
    /// A handshake without a valid client certificate is refused.
    Required,
}

/// A served certificate, for logs and `portico check`.
#[derive(Debug, Clone)]
pub struct CertSummary {
    /// The PEM certificate file.
    pub file: PathBuf,
    /// Facts read from the leaf.
    pub meta: certs::CertMeta,
}

/// `[server.tls]`, compiled.
pub struct TlsSettings {
    /// HTTPS listener address.
    pub listen: SocketAddr,
    /// Certificates, client verifier, ALPN and versions, ready for handshakes.
    pub server_config: Arc<rustls::ServerConfig>,
    /// Time allowed from accept to a finished handshake.
    pub handshake_timeout: Duration,
    /// Client certificate policy.
    pub client_auth: ClientAuth,
    /// Header that carries the verified client certificate upstream (client copies removed).
    pub forward_client_cert: Option<HeaderName>,
    /// Plain-listener requests get a 308 to https.
    pub redirect_https: bool,
    /// Port for redirect URLs (`None`: the HTTPS listener's bound port).
    pub redirect_port: Option<u16>,
    /// `Strict-Transport-Security` value for HTTPS responses.
    pub hsts: Option<HeaderValue>,
    /// The certificates, in config order.
    pub certificates: Vec<CertSummary>,
    /// Every file read (certificates, keys, CA bundle).
    pub files: Vec<PathBuf>,
    /// Hash of everything `server_config` was built from; equal across a reload means the
    /// previous `server_config` (and its session-ticket keys) is kept.
    pub fingerprint: [u8; 32],
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings")
            .field("listen", &self.listen)
            .field("client_auth", &self.client_auth)
            .field("certificates", &self.certificates)
            .finish_non_exhaustive()
    }
}

/// Accepts TLS connections until shutdown. Each connection gets its own task: the handshake
/// (bounded by `handshake_timeout`, with the certificates current at accept time) and then
/// `serve_connection` with `tls: true`.
pub async fn accept_tls(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    tracker: Arc<ConnTracker>,
    shutdown: watch::Receiver<bool>,
) {
    let conn_shutdown = shutdown.clone();
    accept_loop(
        listener,
        &gateway.clone(),
        tracker,
        shutdown,
        "https",
        |a| {
            let rt = gateway.runtime();
            let Some(tls) = rt.tls.as_ref() else {
                tracing::debug!(peer = %a.peer, "TLS is no longer configured; closing connection");
                return None;
            };
            let acceptor = TlsAcceptor::from(tls.server_config.clone());
            let timeout = tls.handshake_timeout;
            let (gateway, shutdown) = (gateway.clone(), conn_shutdown.clone());
            Some(async move {
                let Accepted {
                    stream,
                    peer,
                    local,
                    slot,
                } = a;
                let stream = match tokio::time::timeout(timeout, handshake(stream, acceptor)).await
                {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, ?timeout, "TLS handshake timed out");
                        return;
                    }
                };
                let client_cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| Arc::new(ClientCert::from_der(leaf)));
                let info = ConnInfo {
                    peer,
                    local,
                    tls: true,
                    client_cert,
                    https_port: Some(local.port()),
                };
                serve_connection(stream, info, gateway, shutdown).await;
                drop(slot);
            })
        },
    )
    .await;
}

/// What a plain-HTTP client sent to the HTTPS port is told before the connection closes.
const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\n\
connection: close\r\ncontent-length: 42\r\n\r\nThis port speaks HTTPS; use https:// URLs.\n";

/// The TLS handshake. A first byte that is not a TLS handshake record ends the connection at
/// once (an HTTP request gets a short 400 in plain text, other garbage nothing).
async fn handshake(
    stream: TcpStream,
    acceptor: TlsAcceptor,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    let n = stream.peek(&mut first).await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed before the handshake",
        ));
    }
    const HANDSHAKE_RECORD: u8 = 0x16;
    if first[0] != HANDSHAKE_RECORD {
        let mut stream = stream;
        if first[0].is_ascii_uppercase() {
            // Read what was sent so closing does not reset the connection before the client
            // has read the answer.
            let mut sink = [0u8; 4096];
            let _ = stream.try_read(&mut sink);
            let _ = stream.write_all(PLAIN_HTTP_ANSWER).await;
            let _ = stream.shutdown().await;
        }
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a TLS handshake (plaintext or garbage)",
        ));
    }
    acceptor.accept(stream).await
}

/// `redirect_https`: for a request on the plain listener, the 308 to the same host, path and
/// query on https; `None` when the request is to be served as is.
pub fn redirect_https(
    rt: &Runtime,
    conn: &ConnInfo,
    host: Option<&str>,
    uri: &Uri,
) -> Result<Option<Response<Body>>, GatewayError> {
    let Some(tls) = rt.tls.as_ref().filter(|t| t.redirect_https && !conn.tls) else {
        return Ok(None);
    };
    let host = host.filter(|h| {
        !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
    });
    let Some(host) = host else {
        return Err(GatewayError::BadRequest(
            "A valid Host header is needed to redirect to HTTPS.",
        ));
    };
    let port = tls.redirect_port.or(conn.https_port).unwrap_or(443);
    let mut location = String::with_capacity(host.len() + uri.path().len() + 24);
    location.push_str("https://");
    if host.contains(':') {
        location.push('[');
        location.push_str(host);
        location.push(']');
    } else {
        location.push_str(host);
    }
    if port != 443 {
        location.push(':');
        location.push_str(&port.to_string());
    }
    location.push_str(uri.path_and_query().map_or("/", |pq| pq.as_str()));
    let location = HeaderValue::try_from(location)
        .map_err(|_| GatewayError::BadRequest("The request target cannot be redirected."))?;
    let mut resp = Response::new(Body::full(""));
    *resp.status_mut() = StatusCode::PERMANENT_REDIRECT;
    resp.headers_mut().insert(LOCATION, location);
    resp.headers_mut()
        .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    Ok(Some(resp))
}

/// Adds `Strict-Transport-Security` to a response sent over TLS, when configured.
pub fn add_hsts(rt: &Runtime, conn: &ConnInfo, headers: &mut http::HeaderMap) {
    if let Some(v) = rt
        .tls
        .as_ref()
        .and_then(|t| t.hsts.as_ref())
        .filter(|_| conn.tls)
    {
        headers.insert(http::header::STRICT_TRANSPORT_SECURITY, v.clone());
    }
}

/// One line per served certificate (file, names, days left), for `portico check`.
pub fn describe(tls: &TlsSettings) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    let mut out = format!(
        "https on {} (client certificates: {:?})\n",
        tls.listen, tls.client_auth
    );
    for (i, c) in tls.certificates.iter().enumerate() {
        let names = if c.meta.dns_names.is_empty() {
            "(no DNS names)".to_string()
        } else {
            c.meta.dns_names.join(", ")
        };
        let days = (c.meta.not_after - now) / 86_400;
        let default = if i == 0 { " [default]" } else { "" };
        out.push_str(&format!(
            "  {}: {names}{default}; expires in {days} days\n",
            c.file.display()
        ));
    }
    out
}

/// Binds the HTTPS listener when `[server.tls]` is configured and records its port in the
/// gateway (for `redirect_https`); logs each certificate it serves.
pub async fn bind(
    gateway: &Gateway,
) -> Result<Option<(TcpListener, SocketAddr)>, crate::gateway::StartError> {
    let rt = gateway.runtime();
    let Some(tls) = rt.tls.as_ref() else {
        return Ok(None);
    };
    let addr = tls.listen;
    let bind_error = |source| crate::gateway::StartError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;
    gateway.set_https_port(bound.port());
    for c in &tls.certificates {
        tracing::info!(
            file = %c.file.display(),
            names = ?c.meta.dns_names,
            not_after = c.meta.not_after,
            "serving certificate"
        );
    }
    tracing::info!(https_addr = %bound, client_auth = ?tls.client_auth, "listening (HTTPS: h2 and HTTP/1.1)");
    Ok(Some((listener, bound)))
}
