//! How one request travels to one endpoint, over the endpoint's own pool (`pool`, owned by the
//! `Endpoint`): HTTP/1.1 connections (Portico's own client, `crate::net::h1`: one exchange at a
//! time, idle ones kept up to `max_idle_per_endpoint` for `pool_idle_timeout`; a protocol
//! upgrade goes on a connection of its own through hyper, `upgrade`), HTTP/2 connections
//! (`h2`: prior-knowledge h2c on `http://`, ALPN h2 on `https://`; many streams each), or
//! `auto` (ALPN h2 or http/1.1 over TLS, HTTP/1.1 on plain TCP). `connect` opens them (TCP,
//! TLS). Endpoint choice, failover and timeouts are `Upstream`'s business.

mod connect;
mod h2;
mod pool;
mod upgrade;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::Either;
use http::header::UPGRADE;
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri};

pub use pool::{Limits, Pool};

use super::{Endpoint, UpstreamSettings};
use crate::body::{BodyTooLarge, ClientBodyError, RequestBody, UpstreamBody};
use crate::net::added::Extra;
use crate::net::h1;

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

/// What the endpoints' pools of one upstream share: how connections are opened and kept, and
/// the upstream-wide connection limits.
pub struct Transport {
    id: u64,
    connector: connect::Connector,
    protocol: Protocol,
    max_idle: usize,
    idle_timeout: Duration,
    max_streams: u32,
    /// `max_connections` and `max_pending`, when `[circuit]` is configured.
    limits: Option<Arc<Limits>>,
}

/// Why a request did not get a response head from an endpoint.
#[derive(Debug, Default)]
pub struct SendError {
    /// The connection could not be opened: nothing was sent, another endpoint may be tried.
    pub connect: bool,
    /// `max_connections` or `max_pending` of the upstream's circuit was reached: nothing was
    /// sent, the request is refused at once.
    pub overloaded: bool,
    /// The request body went over `limits.max_body_bytes` while streaming.
    pub body_too_large: Option<u64>,
    /// Reading the client's body failed: the client's fault (400), not the endpoint's.
    pub client_body: bool,
    /// What happened, with its causes, for logs.
    pub detail: String,
}

/// Sends on connections found closed give the request back; a few such rounds at most.
const ROUNDS: usize = 4;

/// A fresh connection: HTTP/1.1, or HTTP/2 (listed in the pool).
enum Fresh {
    H1(Box<h1::Conn>),
    H2,
}

impl Transport {
    /// The transport of an upstream: connect timeout, TLS, protocol, pool sizes and limits.
    pub fn new(settings: &UpstreamSettings) -> Transport {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let limits = settings
            .resilience
            .circuit
            .map(|c| Arc::new(Limits::new(c.max_connections, c.max_pending)));
        Transport {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            connector: connect::Connector::new(settings),
            protocol: settings.protocol,
            max_idle: settings.max_idle_per_endpoint,
            idle_timeout: settings.pool_idle_timeout,
            max_streams: settings.max_concurrent_streams.max(1),
            limits,
        }
    }

    /// The id endpoint pools name their transport by.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// A new, empty pool for an endpoint.
    pub fn pool(&self) -> Arc<Pool> {
        Arc::new(Pool::new(self.id, self.max_idle, self.idle_timeout))
    }

    /// Connections open now to every endpoint (counted only under `[circuit]`).
    pub fn connections(&self) -> Option<u32> {
        self.limits.as_ref().map(|l| l.connections())
    }

    /// Sends `req` (its URI holds the path and query) with `extra` (the Host naming `ep`, the
    /// gateway's fields) to `ep` and waits for the response head.
    ///
    /// A plain function returning one of the two sends: an `async fn` here would keep its own
    /// copy of `req` beside the one the chosen send holds, in every request's future.
    pub fn send<'a>(
        &'a self,
        ep: &'a Endpoint,
        mut req: Request<RequestBody>,
        extra: Extra<'a>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, SendError>> + 'a {
        let h2_first = match self.protocol {
            Protocol::Http1 => false,
            Protocol::H2 => true,
            Protocol::Auto => ep.scheme == Scheme::HTTPS && h2::connections(&ep.pool) > 0,
        };
        // Only Portico's HTTP/1 encoder writes `extra` beside the map; hyper's senders (HTTP/2,
        // upgrades) get it in the map. An upgrade is known here, before any future exists.
        let upgrade = !h2_first && req.headers().contains_key(UPGRADE);
        if h2_first || upgrade {
            extra.move_into(req.headers_mut());
        }
        if h2_first {
            Either::Left(Either::Left(self.send_h2(ep, req)))
        } else if upgrade {
            Either::Left(Either::Right(Box::pin(self.send_upgrade(ep, req))))
        } else {
            Either::Right(self.send_h1(ep, req, extra))
        }
    }

    async fn send_h1(
        &self,
        ep: &Endpoint,
        mut req: Request<RequestBody>,
        extra: Extra<'_>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let mut last = None;
        for _ in 0..ROUNDS {
            let conn = match ep.pool.h1.checkout() {
                Some(c) => c,
                // Opening a connection is boxed: its state (connect, TLS handshake) would
                // otherwise sit in every request's future, which keep-alive rarely needs.
                None => match Box::pin(self.fresh(ep, self.pending()?)).await? {
                    Fresh::H1(c) => c,
                    Fresh::H2 => {
                        extra.move_into(req.headers_mut());
                        return Box::pin(self.send_h2(ep, req)).await;
                    }
                },
            };
            match h1::send(conn, &mut req, extra).await {
                Ok(resp) => return Ok(resp.map(UpstreamBody::H1)),
                // A kept connection the upstream closed meanwhile: try another.
                Err(f) if f.again => last = Some(f.error),
                Err(f) => return Err(failed(&f.error)),
            }
        }
        Err(closed(last.as_ref().map(|e| e as _)))
    }

    /// A protocol upgrade (WebSocket) on a connection of its own, through hyper's client,
    /// which hands over the connection after a 101.
    async fn send_upgrade(
        &self,
        ep: &Endpoint,
        req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let (stream, _, open) = self.open(ep, self.pending()?).await?;
        upgrade::send(stream, req, open)
            .await
            .map(|r| r.map(UpstreamBody::Hyper))
            .map_err(|e| failed(&e))
    }

    async fn send_h2(
        &self,
        ep: &Endpoint,
        mut req: Request<RequestBody>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        absolute(&mut req, ep);
        let mut last = None;
        for _ in 0..ROUNDS {
            let mut busy = match h2::checkout(&ep.pool, self.max_streams) {
                Some(b) => b,
                None => Box::pin(self.open_h2(ep)).await?,
            };
            match busy.tx.try_send_request(req).await {
                Ok(resp) => return Ok(resp.map(UpstreamBody::Hyper)),
                Err(mut e) => match e.take_message() {
                    Some(back) => {
                        req = back;
                        last = Some(e.into_error());
                    }
                    None => return Err(failed(&e.into_error())),
                },
            }
        }
        Err(closed(last.as_ref().map(|e| e as _)))
    }

    /// Waits for the endpoint's connection being opened, or opens one.
    async fn open_h2(&self, ep: &Endpoint) -> Result<h2::Busy, SendError> {
        let pending = self.pending()?;
        let _one = ep.pool.h2_opening.lock().await;
        if let Some(b) = h2::checkout(&ep.pool, self.max_streams) {
            return Ok(b);
        }
        match self.fresh(ep, pending).await? {
            Fresh::H2 => h2::checkout(&ep.pool, self.max_streams).ok_or_else(|| SendError {
                connect: true,
                detail: "the new HTTP/2 connection closed at once".into(),
                ..SendError::default()
            }),
            // `auto` got http/1.1 from ALPN: its sender is not needed here.
            Fresh::H1(_) => Err(SendError {
                connect: true,
                detail: "the endpoint chose http/1.1".into(),
                ..SendError::default()
            }),
        }
    }

    /// Opens a connection to `ep` under the upstream's limits (`_pending`: this request
    /// counted as waiting for it): the stream, whether TLS's ALPN chose h2, and its count
    /// under `max_connections`.
    async fn open(
        &self,
        ep: &Endpoint,
        _pending: Option<pool::Pending<'_>>,
    ) -> Result<(connect::Stream, bool, Option<pool::Open>), SendError> {
        let open = match &self.limits {
            None => None,
            Some(l) => Some(l.open().ok_or_else(|| overloaded("max_connections"))?),
        };
        let (stream, alpn_h2) = self.connector.connect(ep).await.map_err(|e| SendError {
            connect: true,
            detail: format!("connect to {}: {e}", ep.authority),
            ..SendError::default()
        })?;
        Ok((stream, alpn_h2, open))
    }

    /// Opens a connection to `ep` for the endpoint's pool.
    async fn fresh(
        &self,
        ep: &Endpoint,
        pending: Option<pool::Pending<'_>>,
    ) -> Result<Fresh, SendError> {
        let (stream, alpn_h2, open) = self.open(ep, pending).await?;
        let h2 = match self.protocol {
            Protocol::Http1 => false,
            Protocol::H2 => true,
            Protocol::Auto => alpn_h2,
        };
        if h2 {
            h2::start(stream, &ep.pool, open)
                .await
                .map_err(|e| SendError {
                    connect: true,
                    detail: format!(
                        "handshake with {}: {}",
                        ep.authority,
                        super::error_chain(&e)
                    ),
                    ..SendError::default()
                })?;
            return Ok(Fresh::H2);
        }
        let counted = open.map(|o| Box::new(o) as Box<dyn std::any::Any + Send + Sync>);
        Ok(Fresh::H1(h1::Conn::new(stream, &ep.pool.h1, counted)))
    }

    fn pending(&self) -> Result<Option<pool::Pending<'_>>, SendError> {
        match &self.limits {
            None => Ok(None),
            Some(l) => l
                .pending()
                .map(Some)
                .ok_or_else(|| overloaded("max_pending")),
        }
    }
}

/// HTTP/2 requests carry the endpoint's scheme and authority.
fn absolute(req: &mut Request<RequestBody>, ep: &Endpoint) {
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
}

fn overloaded(limit: &str) -> SendError {
    SendError {
        overloaded: true,
        detail: format!("{limit} reached"),
        ..SendError::default()
    }
}

/// Every connection tried was found closed before the request was written: like a refused
/// connection, nothing was sent.
fn closed(last: Option<&(dyn std::error::Error + 'static)>) -> SendError {
    SendError {
        connect: true,
        detail: last.map_or_else(|| "connections closed".to_owned(), super::error_chain),
        ..SendError::default()
    }
}

fn failed(e: &(dyn std::error::Error + 'static)) -> SendError {
    SendError {
        connect: false,
        overloaded: false,
        body_too_large: body_too_large(e),
        client_body: caused_by::<ClientBodyError>(e),
        detail: super::error_chain(e),
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
