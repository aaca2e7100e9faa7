//! HTTP/2 connections of one endpoint: each carries up to `max_concurrent_streams` requests
//! at once (counted by the gateway from the request until its response head); when every
//! connection is full another is opened, one at a time per endpoint. A connection that ends
//! (peer gone, GOAWAY, failed keep-alive ping) leaves the list.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::connect::Stream;
use super::pool::{Open, Pool, lock};
use crate::body::RequestBody;

/// A live connection and its streams in flight.
pub(in crate::upstream) struct Conn {
    id: u64,
    tx: SendRequest<RequestBody>,
    streams: Arc<AtomicU32>,
}

/// A stream counted on its connection until dropped.
pub(super) struct Busy {
    pub tx: SendRequest<RequestBody>,
    streams: Arc<AtomicU32>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The least loaded connection with a free stream (closed ones are dropped).
#[inline]
pub(super) fn checkout(pool: &Pool, cap: u32) -> Option<Busy> {
    let mut conns = lock(&pool.h2);
    conns.retain(|c| !c.tx.is_closed());
    let c = conns
        .iter()
        .filter(|c| c.streams.load(Ordering::Acquire) < cap)
        .min_by_key(|c| c.streams.load(Ordering::Relaxed))?;
    c.streams.fetch_add(1, Ordering::AcqRel);
    Some(Busy {
        tx: c.tx.clone(),
        streams: c.streams.clone(),
    })
}

/// Starts a new connection's task and lists it in `pool`.
pub(super) async fn start(
    stream: Stream,
    pool: &Arc<Pool>,
    open: Option<Open>,
) -> hyper::Result<()> {
    let (tx, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        // Pings keep a quiet connection (and a long gRPC stream) alive and find a dead peer.
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .adaptive_window(true)
        .handshake(TokioIo::new(stream))
        .await?;
    let id = pool.id();
    let weak = Arc::downgrade(pool);
    tokio::spawn(async move {
        let _ = conn.await;
        drop(open);
        if let Some(pool) = weak.upgrade() {
            lock(&pool.h2).retain(|c| c.id != id);
        }
    });
    lock(&pool.h2).push(Conn {
        id,
        tx,
        streams: Arc::new(AtomicU32::new(0)),
    });
    Ok(())
}

/// Connections listed now (tests, status).
pub(super) fn connections(pool: &Pool) -> usize {
    lock(&pool.h2).len()
}
