//! What the request path knows about the connection a request arrived on.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::tls::ClientCert;

/// The connection a request came on: set by the listener, read by the request path.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client (or the last proxy before us).
    pub peer: SocketAddr,
    /// Our address the client connected to.
    pub local: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// The client certificate rustls verified during the handshake (mTLS), if any.
    pub client_cert: Option<Arc<ClientCert>>,
    /// Port of this gateway's HTTPS listener, if any (where `redirect_https` points).
    pub https_port: Option<u16>,
}
