//! HTTPS listener: the rustls handshake (SNI, ALPN h2/http1.1, optional mTLS) with a timeout,
//! then the same connection served as plain HTTP.
//!
//! The `rustls::ServerConfig` lives in the `Runtime`, so a reload swaps certificates
//! all-or-nothing: each new handshake takes the config current when the connection was
//! accepted, and open connections go on with what they negotiated.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::conn::ConnInfo;
use crate::gateway::Gateway;
use crate::server::detect::Proto;
use crate::server::drain::Drain;
use crate::server::{Accepted, ConnTracker, accept_loop, serve_connection};
use crate::tls::ClientCert;

/// Accepts TLS connections until shutdown. Each connection gets its own task: the handshake
/// (bounded by `handshake_timeout`, with the certificates current at accept time) and then
/// `serve_connection` with `tls: true`.
pub async fn accept_tls(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    tracker: Arc<ConnTracker>,
    shutdown: watch::Receiver<bool>,
) {
    let drain = Drain::new();
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
            let (gateway, waiter) = (gateway.clone(), drain.waiter());
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
                        tracing::debug!(%peer, timeout_ms = timeout.as_millis() as u64, "TLS handshake timed out");
                        return;
                    }
                };
                let client_cert = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .map(|leaf| Arc::new(ClientCert::from_der(leaf)));
                let info = ConnInfo::new(peer, local, true, client_cert, Some(local.port()));
                let proto = Proto::from_alpn(stream.get_ref().1.alpn_protocol());
                serve_connection(stream, info, proto, gateway, waiter).await;
                drop(slot);
            })
        },
    )
    .await;
    // The loop ends at shutdown (or when the shutdown sender is gone): connections drain.
    drain.start();
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
