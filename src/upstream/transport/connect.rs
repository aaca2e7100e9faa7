//! Opening a connection to an endpoint: TCP (connect timeout, no Nagle), then TLS for `https`
//! endpoints with the upstream's compiled client config, the protocol's ALPN offer and SNI from
//! `server_name` (or the endpoint's host).

use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Protocol;
pub use crate::net::stream::Stream;
use crate::upstream::{Endpoint, UpstreamSettings};

/// What every connection of one upstream is opened with.
pub struct Connector {
    timeout: Duration,
    tls: TlsConnector,
    /// `server_name`, parsed once (checked when the config was compiled).
    server_name: Option<ServerName<'static>>,
}

impl Connector {
    /// The connector of an upstream: its connect timeout, TLS client config and ALPN offer.
    pub fn new(settings: &UpstreamSettings) -> Connector {
        let mut config = (*settings.tls.client_config).clone();
        config.alpn_protocols = match settings.protocol {
            Protocol::Http1 => vec![b"http/1.1".to_vec()],
            Protocol::H2 => vec![b"h2".to_vec()],
            Protocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        };
        let server_name = settings
            .tls
            .server_name
            .as_ref()
            .and_then(|n| ServerName::try_from(n.clone()).ok());
        Connector {
            timeout: settings.connect_timeout,
            tls: TlsConnector::from(Arc::new(config)),
            server_name,
        }
    }

    /// Opens a connection to `ep`; `true` with it when TLS's ALPN chose `h2`.
    pub async fn connect(&self, ep: &Endpoint) -> io::Result<(Stream, bool)> {
        let host = ep.authority.host();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let https = ep.scheme == Scheme::HTTPS;
        let port = ep
            .authority
            .port_u16()
            .unwrap_or(if https { 443 } else { 80 });
        let tcp = match bare.parse::<IpAddr>() {
            Ok(ip) => tokio::time::timeout(self.timeout, TcpStream::connect((ip, port))).await,
            Err(_) => tokio::time::timeout(self.timeout, TcpStream::connect((bare, port))).await,
        };
        let tcp = match tcp {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(io::Error::new(e.kind(), format!("tcp connect: {e}"))),
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("tcp connect timed out after {:?}", self.timeout),
                ));
            }
        };
        tcp.set_nodelay(true)?;
        if !https {
            return Ok((Stream::Plain(tcp), false));
        }
        let name = match &self.server_name {
            Some(n) => n.clone(),
            None => ServerName::try_from(bare.to_owned()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("bad server name {bare}"),
                )
            })?,
        };
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("tls handshake: {e}")))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        Ok((Stream::Tls(Box::new(tls)), h2))
    }
}
