//! TLS settings shared by the HTTPS listener and HTTPS upstreams: certificate files, SNI,
//! client certificates, the compiled `[server.tls]`, and the `redirect_https` and HSTS helpers.
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

pub use client_cert::ClientCert;

use crate::body::Body;
use crate::conn::ConnInfo;
use crate::error::GatewayError;

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

/// `redirect_https`: for a request on the plain listener, the 308 to the same host, path and
/// query on https; `None` when the request is to be served as is.
pub fn redirect_https(
    tls: Option<&TlsSettings>,
    conn: &ConnInfo,
    host: Option<&str>,
    uri: &Uri,
) -> Result<Option<Response<Body>>, GatewayError> {
    let Some(tls) = tls.filter(|t| t.redirect_https && !conn.tls) else {
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
pub fn add_hsts(tls: Option<&TlsSettings>, conn: &ConnInfo, headers: &mut http::HeaderMap) {
    if let Some(v) = tls.and_then(|t| t.hsts.as_ref()).filter(|_| conn.tls) {
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
