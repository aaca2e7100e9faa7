//! Upgraded connections (WebSocket and the other protocols a route allows): bytes copied both
//! ways until a side closes or the tunnel is idle for `limits.tunnel_idle_timeout`; a route's
//! `max_tunnels` caps how many are open at once; metrics count open tunnels and bytes. A tunnel
//! keeps its client connection's slot, so a drain waits for it up to `shutdown_grace`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::header::{
    CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION,
    UPGRADE,
};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::conn::TunnelCount;
use crate::metrics::Metrics;
use crate::net::h1::PendingUpgrade;

/// Where a client's side of a tunnel comes from once the protocol switched: Portico's
/// HTTP/1.1 server hands over the connection; hyper's HTTP/2 server an extended CONNECT stream.
pub enum ClientUpgrade {
    /// An HTTP/1.1 connection (after `101`).
    H1(PendingUpgrade),
    /// An HTTP/2 stream (extended CONNECT).
    Hyper(OnUpgrade),
}

/// Takes the client side of a tunnel from a request that offers to switch protocols.
pub fn client_upgrade<B>(req: &mut http::Request<B>) -> ClientUpgrade {
    match req.extensions_mut().remove::<PendingUpgrade>() {
        Some(p) => ClientUpgrade::H1(p),
        None => ClientUpgrade::Hyper(hyper::upgrade::on(req)),
    }
}

/// A route's cap on concurrent tunnels (`max_tunnels`; none: unlimited).
#[derive(Debug, Default)]
pub struct TunnelGate {
    open: Arc<AtomicUsize>,
    max: Option<usize>,
}

/// One open tunnel's place under its route's cap; freed on drop.
#[derive(Debug)]
pub struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl TunnelGate {
    /// A gate allowing `max` tunnels at once.
    pub fn new(max: Option<usize>) -> TunnelGate {
        TunnelGate {
            open: Arc::default(),
            max,
        }
    }

    /// A slot, unless the route already has `max_tunnels` open.
    pub fn enter(&self) -> Option<Slot> {
        let n = self.open.fetch_add(1, Ordering::Relaxed);
        let slot = Slot(self.open.clone());
        match self.max {
            Some(max) if n >= max => None,
            _ => Some(slot),
        }
    }
}

/// RFC 8441: an HTTP/2 extended CONNECT (`:protocol = websocket`) is turned into the
/// HTTP/1.1 upgrade request it stands for (GET, `Upgrade`, `Connection: upgrade`, a fresh
/// `Sec-WebSocket-Key`), so routing, guards and the upstream see one kind of upgrade.
/// Returns whether `req` was one; the answer is then [`answer_extended_connect`].
pub fn from_extended_connect<B>(req: &mut http::Request<B>) -> bool {
    if req.method() != http::Method::CONNECT || req.version() != http::Version::HTTP_2 {
        return false;
    }
    let Some(protocol) = req.extensions().get::<hyper::ext::Protocol>() else {
        return false;
    };
    let Ok(value) = HeaderValue::from_str(protocol.as_str()) else {
        return false;
    };
    let websocket = protocol.as_str().eq_ignore_ascii_case("websocket");
    *req.method_mut() = http::Method::GET;
    let h = req.headers_mut();
    h.insert(UPGRADE, value);
    h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    if websocket && !h.contains_key(SEC_WEBSOCKET_KEY) {
        h.insert(SEC_WEBSOCKET_KEY, nonce());
    }
    if websocket && !h.contains_key(SEC_WEBSOCKET_VERSION) {
        h.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
    }
    true
}

/// The HTTP/2 answer to an extended CONNECT whose upstream switched: 200, without the
/// HTTP/1.1 handshake fields.
pub fn answer_extended_connect(head: &mut http::response::Parts) {
    head.status = http::StatusCode::OK;
    for name in [UPGRADE, CONNECTION, SEC_WEBSOCKET_ACCEPT] {
        head.headers.remove(name);
    }
}

/// A `Sec-WebSocket-Key`: 16 unpredictable bytes in base64.
fn nonce() -> HeaderValue {
    use base64::Engine as _;
    use std::hash::{BuildHasher, Hasher};
    let mut bytes = [0u8; 16];
    for half in bytes.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        half.copy_from_slice(&h.finish().to_le_bytes());
    }
    let text = base64::engine::general_purpose::STANDARD.encode(bytes);
    HeaderValue::from_str(&text).expect("base64 is a valid header value")
}

/// The tunnel series: open tunnels by route, bytes by route and direction.
struct Series {
    open: Gauge,
    up: Counter,
    down: Counter,
}

fn series(metrics: &Metrics, route: &str) -> Series {
    let open: Family<[(&'static str, String); 1], Gauge> = metrics.family(
        "portico_tunnels_open",
        "Upgraded connections (WebSocket...) open now, by route",
        Family::default,
    );
    let bytes: Family<[(&'static str, String); 2], Counter> = metrics.family(
        "portico_tunnel_bytes",
        "Bytes copied through upgraded connections, by route and direction (up: client to upstream)",
        Family::default,
    );
    let dir = |d: &str| [("route", route.to_owned()), ("direction", d.to_owned())];
    Series {
        open: open.get_or_create_owned(&[("route", route.to_owned())]),
        up: bytes.get_or_create_owned(&dir("up")),
        down: bytes.get_or_create_owned(&dir("down")),
    }
}

/// Everything a tunnel needs once the protocol switched.
pub struct Tunnel {
    /// The route's cap slot.
    pub slot: Slot,
    /// The client connection's count of tunnels (holds its slot while open).
    pub conn: Arc<TunnelCount>,
    /// `limits.tunnel_idle_timeout`.
    pub idle: Duration,
}

impl Tunnel {
    /// Waits for both sides to switch, then copies until done; runs on its own task.
    pub fn spawn(self, metrics: &Metrics, route: &str, client: ClientUpgrade, upstream: OnUpgrade) {
        let series = series(metrics, route);
        let held = self.conn.hold();
        tokio::spawn(async move {
            let Ok(upstream) = upstream.await else {
                return;
            };
            let upstream = TokioIo::new(upstream);
            series.open.inc();
            let ended = match client {
                ClientUpgrade::H1(p) => match p.take().await {
                    Some(client) => copy(client, upstream, self.idle, &series).await,
                    None => "client connection gone",
                },
                ClientUpgrade::Hyper(on) => match on.await {
                    Ok(client) => copy(TokioIo::new(client), upstream, self.idle, &series).await,
                    Err(_) => "client connection gone",
                },
            };
            series.open.dec();
            tracing::debug!(ended, "tunnel closed");
            drop((held, self.slot));
        });
    }
}

/// Copies both ways until both sides finished or nothing moved for `idle`; says why it ended.
async fn copy<A, B>(mut a: A, mut b: B, idle: Duration, series: &Series) -> &'static str
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf_a = vec![0u8; 16 * 1024];
    let mut buf_b = vec![0u8; 16 * 1024];
    let (mut a_open, mut b_open) = (true, true);
    let timer = tokio::time::sleep(idle);
    tokio::pin!(timer);
    while a_open || b_open {
        tokio::select! {
            r = a.read(&mut buf_a), if a_open => match r {
                Ok(0) | Err(_) => { a_open = false; let _ = b.shutdown().await; }
                Ok(n) => {
                    if b.write_all(&buf_a[..n]).await.is_err() { return "upstream write failed"; }
                    series.up.inc_by(n as u64);
                    timer.as_mut().reset(Instant::now() + idle);
                }
            },
            r = b.read(&mut buf_b), if b_open => match r {
                Ok(0) | Err(_) => { b_open = false; let _ = a.shutdown().await; }
                Ok(n) => {
                    if a.write_all(&buf_b[..n]).await.is_err() { return "client write failed"; }
                    series.down.inc_by(n as u64);
                    timer.as_mut().reset(Instant::now() + idle);
                }
            },
            _ = &mut timer => return "idle timeout",
        }
    }
    "closed"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_caps_open_tunnels() {
        let gate = TunnelGate::new(Some(2));
        let a = gate.enter().unwrap();
        let _b = gate.enter().unwrap();
        assert!(gate.enter().is_none());
        drop(a);
        assert!(gate.enter().is_some());
        assert!(TunnelGate::new(None).enter().is_some());
    }

    #[tokio::test]
    async fn idle_tunnels_close() {
        let (client, mut client_far) = tokio::io::duplex(64);
        let (upstream, mut upstream_far) = tokio::io::duplex(64);
        let m = Metrics::new();
        let s = series(&m, "r");
        let run =
            tokio::spawn(
                async move { copy(client, upstream, Duration::from_millis(100), &s).await },
            );
        client_far.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        upstream_far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        assert_eq!(run.await.unwrap(), "idle timeout");
        assert!(
            m.encode()
                .contains("portico_tunnel_bytes_total{route=\"r\",direction=\"up\"} 4")
        );
    }
}
