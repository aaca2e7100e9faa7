//! HTTP/1.1 connections of one endpoint. A connection's task (`Driver`) drives hyper's
//! connection and puts its sender back in the endpoint's idle list once the exchange in
//! progress is over (hyper's readiness: the response body was read to its end); it closes
//! the connection when it stays idle for `pool_idle_timeout`, and takes it out of the idle list
//! when the upstream closes it, so a closed connection is not handed to the next request.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, Sleep};

use super::connect::Stream;
use super::pool::{Open, Pool, lock};
use crate::body::RequestBody;

/// An idle connection in the endpoint's list.
pub(in crate::upstream) struct Idle {
    id: u64,
    tx: SendRequest<RequestBody>,
    slot: Arc<Slot>,
}

/// Where a request hands its sender back to the connection's task after the response head.
#[derive(Default)]
pub(super) struct Slot(Mutex<SlotInner>);

#[derive(Default)]
struct SlotInner {
    tx: Option<SendRequest<RequestBody>>,
    waker: Option<Waker>,
}

/// A sender in use, with the way back to its connection.
pub(super) struct Busy {
    pub tx: SendRequest<RequestBody>,
    pub slot: Arc<Slot>,
}

impl Busy {
    /// Gives the sender back to its connection, which returns it to the idle list when the
    /// exchange is over.
    pub fn give_back(self) {
        let mut s = lock(&self.slot.0);
        s.tx = Some(self.tx);
        if let Some(w) = &s.waker {
            w.wake_by_ref();
        }
    }
}

/// The most recently used idle connection that can take a request now (others found closed
/// are dropped).
#[inline]
pub(super) fn checkout(pool: &Pool) -> Option<Busy> {
    let mut idle = lock(&pool.h1);
    while let Some(i) = idle.pop() {
        if i.tx.is_ready() {
            return Some(Busy {
                tx: i.tx,
                slot: i.slot,
            });
        }
    }
    None
}

/// How a connection's task keeps it.
pub(super) struct Keep {
    pub idle_timeout: Duration,
    pub max_idle: usize,
}

/// Starts the task of a new connection; the caller sends its first request on the sender.
pub(super) async fn start(
    stream: Stream,
    pool: &Arc<Pool>,
    keep: Keep,
    open: Option<Open>,
) -> hyper::Result<Busy> {
    let (tx, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    let slot = Arc::new(Slot::default());
    let driver = Driver {
        conn: conn.with_upgrades(),
        slot: slot.clone(),
        pool: Arc::downgrade(pool),
        id: pool.id(),
        waiting: None,
        idle: Box::pin(tokio::time::sleep(keep.idle_timeout)),
        armed: false,
        keep,
        _open: open,
    };
    tokio::spawn(driver);
    Ok(Busy { tx, slot })
}

/// The task of one connection (`C`: hyper's connection future, with upgrades).
struct Driver<C> {
    conn: C,
    slot: Arc<Slot>,
    pool: Weak<Pool>,
    id: u64,
    /// Given back, waiting for the exchange to end.
    waiting: Option<SendRequest<RequestBody>>,
    idle: Pin<Box<Sleep>>,
    /// The connection is in the idle list and `idle` runs.
    armed: bool,
    keep: Keep,
    _open: Option<Open>,
}

impl<C> Driver<C> {
    /// Puts the ready sender in the idle list; false when the list is full or gone.
    fn park(&mut self, tx: SendRequest<RequestBody>) -> bool {
        let Some(pool) = self.pool.upgrade() else {
            return false;
        };
        let mut idle = lock(&pool.h1);
        if idle.len() >= self.keep.max_idle {
            return false;
        }
        idle.push(Idle {
            id: self.id,
            tx,
            slot: self.slot.clone(),
        });
        true
    }

    /// Takes this connection out of the idle list; true when it was there.
    fn unpark(&self) -> bool {
        let Some(pool) = self.pool.upgrade() else {
            return false;
        };
        let mut idle = lock(&pool.h1);
        match idle.iter().position(|i| i.id == self.id) {
            Some(at) => {
                idle.remove(at);
                true
            }
            None => false,
        }
    }

    fn take_returned(&mut self, cx: &Context<'_>) {
        let mut s = lock(&self.slot.0);
        if !s.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            s.waker = Some(cx.waker().clone());
        }
        if let Some(tx) = s.tx.take() {
            self.waiting = Some(tx);
        }
    }
}

impl<C: Future + Unpin> Future for Driver<C> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            if Pin::new(&mut this.conn).poll(cx).is_ready() {
                this.unpark();
                return Poll::Ready(());
            }
            if this.waiting.is_none() {
                this.take_returned(cx);
            }
            if let Some(tx) = &mut this.waiting {
                match tx.poll_ready(cx) {
                    Poll::Pending => {}
                    Poll::Ready(Err(_)) => this.waiting = None,
                    Poll::Ready(Ok(())) => {
                        let tx = this.waiting.take().expect("checked above");
                        if this.park(tx) {
                            let at = Instant::now() + this.keep.idle_timeout;
                            this.idle.as_mut().reset(at);
                            this.armed = true;
                        }
                        // A sender dropped lets the connection end: poll it again.
                        continue;
                    }
                }
            }
            if this.armed && this.idle.as_mut().poll(cx).is_ready() {
                this.armed = false;
                if this.unpark() {
                    // Idle too long: dropping the connection closes it.
                    return Poll::Ready(());
                }
            }
            return Poll::Pending;
        }
    }
}
