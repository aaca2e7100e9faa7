//! Opening a connection to an endpoint: TCP (connect timeout, no Nagle), then TLS for `https`
//! endpoints with the upstream's compiled client config, the protocol's ALPN offer and SNI from
//! `server_name` (or the endpoint's host).

use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::Scheme;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::Protocol;
use crate::upstream::{Endpoint, UpstreamSettings};

/// What every connection of one upstream is opened with.
pub struct Connector {
    timeout: Duration,
    tls: TlsConnector,
    /// `server_name`, parsed once (checked when the config was compiled).
    server_name: Option<ServerName<'static>>,
}

/// An open connection: plain TCP or TLS over TCP.
pub enum Stream {
    /// `http://` endpoints.
    Plain(TcpStream),
    /// `https://` endpoints.
    Tls(Box<TlsStream<TcpStream>>),
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

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
