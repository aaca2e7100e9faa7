//! What the request path knows about the connection a request arrived on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::HeaderValue;
use tokio::sync::Notify;

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
    /// Upgraded tunnels open from this connection: its task (and its place in a drain) waits
    /// for them.
    pub tunnels: Arc<TunnelCount>,
    /// The peer's address as an `X-Forwarded-For` value (IPv4-mapped IPv6 as IPv4), written
    /// once here rather than on every request.
    pub forwarded_for: HeaderValue,
}

impl ConnInfo {
    /// A new connection's facts; no tunnel open yet.
    pub fn new(
        peer: SocketAddr,
        local: SocketAddr,
        tls: bool,
        client_cert: Option<Arc<ClientCert>>,
        https_port: Option<u16>,
    ) -> ConnInfo {
        let forwarded_for = HeaderValue::from_str(&crate::net::canonical(peer.ip()).to_string())
            .expect("an IP address is a valid header value");
        ConnInfo {
            peer,
            local,
            tls,
            client_cert,
            https_port,
            tunnels: Arc::default(),
            forwarded_for,
        }
    }

    /// The scheme the client used: `https` over TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// Tunnels still open on one client connection.
#[derive(Debug, Default)]
pub struct TunnelCount {
    open: AtomicUsize,
    closed: Notify,
}

/// Held by an open tunnel; dropping it counts the tunnel closed.
#[derive(Debug)]
pub struct TunnelHold(Arc<TunnelCount>);

impl TunnelCount {
    /// Counts one more open tunnel until the hold is dropped.
    pub fn hold(self: &Arc<Self>) -> TunnelHold {
        self.open.fetch_add(1, Ordering::SeqCst);
        TunnelHold(self.clone())
    }

    /// Waits until no tunnel of this connection is open.
    pub async fn wait_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TunnelHold {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_the_peer_address_unmapped() {
        let local = "127.0.0.1:80".parse().unwrap();
        for (peer, value) in [
            ("10.20.30.40:5000", "10.20.30.40"),
            ("[::ffff:10.0.0.1]:5000", "10.0.0.1"),
            ("[2001:db8::1]:5000", "2001:db8::1"),
        ] {
            let info = ConnInfo::new(peer.parse().unwrap(), local, false, None, None);
            assert_eq!(info.forwarded_for, value);
        }
    }
}
