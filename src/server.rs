//! Listeners and connections: accept loop, then HTTP/1.1 served by Portico's own codec
//! (`h1`) or HTTP/2 (h2c, ALPN h2) by hyper's (`h2`) once the protocol is known.

pub mod detect;
mod drain;
mod h1;
mod h2;
pub mod preface;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};

use crate::conn::ConnInfo;
use crate::gateway::Gateway;
use crate::net::h1::Wire;
use detect::Proto;
use drain::{Drain, Waiter};

/// Counts open connections so shutdown can wait for them to drain.
#[derive(Debug, Default)]
pub struct ConnTracker {
    open: AtomicUsize,
    drained: Notify,
}

/// Held by each open connection; dropping it marks the connection closed.
pub struct ConnGuard(Arc<ConnTracker>);

impl ConnTracker {
    /// Registers a new connection.
    pub fn open(self: &Arc<Self>) -> ConnGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        ConnGuard(self.clone())
    }

    /// Number of open connections.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Waits until no connection is open.
    pub async fn wait_drained(&self) {
        loop {
            let notified = self.drained.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.drained.notify_waiters();
        }
    }
}

/// One accepted TCP connection and the slot (connection count, cap permit) it holds until the
/// task serving it ends.
pub struct Accepted {
    /// The socket.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// Our address the client connected to.
    pub local: SocketAddr,
    /// Dropped when the connection ends.
    pub slot: (ConnGuard, OwnedSemaphorePermit),
}

/// The accept loop shared by every listener: enforces `limits.max_connections`, sets
/// TCP_NODELAY, and hands each connection to `start`, whose future (if any) runs on its own
/// task. Ends at shutdown, which drops the listener so new connections are refused.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    gateway: &Gateway,
    tracker: Arc<ConnTracker>,
    mut shutdown: watch::Receiver<bool>,
    kind: &'static str,
    mut start: F,
) where
    F: FnMut(Accepted) -> Option<Fut>,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(gateway.runtime().limits.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(error = %e, listener = kind, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(%peer, listener = kind, "connection limit reached; closing new connection");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().unwrap_or(peer);
        let slot = (tracker.open(), permit);
        if let Some(serve) = start(Accepted {
            stream,
            peer,
            local,
            slot,
        }) {
            tokio::spawn(serve);
        }
    }
}

/// Accepts plain TCP connections (HTTP/1.1 and h2c) until shutdown.
pub async fn accept_plain(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    tracker: Arc<ConnTracker>,
    shutdown: watch::Receiver<bool>,
) {
    let drain = Drain::new();
    accept_loop(listener, &gateway.clone(), tracker, shutdown, "http", |a| {
        let info = ConnInfo::new(a.peer, a.local, false, None, gateway.https_port());
        let (gateway, waiter) = (gateway.clone(), drain.waiter());
        Some(async move {
            serve_connection(a.stream, info, None, gateway, waiter).await;
            drop(a.slot);
        })
    })
    .await;
    // The loop ends at shutdown (or when the shutdown sender is gone): connections drain.
    drain.start();
}

/// Serves one connection (plain or TLS) until it closes, is idle too long, or shutdown drains it.
/// `proto` is what TLS negotiated (ALPN), if anything; otherwise the first bytes decide.
pub async fn serve_connection<I>(
    io: I,
    info: ConnInfo,
    proto: Option<Proto>,
    gateway: Arc<Gateway>,
    mut drain: Waiter,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    let opened = tokio::time::Instant::now();
    let first_deadline = preface::deadline(gateway.runtime().limits.header_read_timeout);
    tokio::pin!(first_deadline);
    let mut io = detect::Prefixed::new(io);
    let proto = match proto {
        Some(p) => p,
        // A silent connection, or one stalled in the preface, is timed by the first
        // request's deadline; a drain closes it at once.
        None => tokio::select! {
            p = io.detect() => match p {
                Some(p) => p,
                None => return,
            },
            _ = &mut first_deadline => {
                tracing::debug!(peer = %info.peer, "no request head within header_read_timeout; closing");
                return;
            }
            () = drain.wait() => return,
        },
    };
    let tunnels = info.tunnels.clone();
    match proto {
        Proto::Http1 => {
            let (io, first, n) = io.into_parts();
            let wire = Wire::new(Box::new(io), &first[..n]);
            h1::serve(wire, &info, &gateway, &mut drain, opened).await;
        }
        // Boxed: an HTTP/1 connection's task does not carry the size of an HTTP/2 one.
        Proto::Http2 => {
            Box::pin(h2::serve(io, info, gateway, drain, first_deadline.as_mut())).await;
        }
    }
    // Tunnels upgraded from this connection keep its slot: a drain waits for them (up to
    // `shutdown_grace`, after which the process exits and closes them).
    tunnels.wait_closed().await;
}
