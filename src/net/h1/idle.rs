//! The idle connections of one endpoint: most recently used last, at most `max`, each closed
//! after `timeout` idle (at checkout, or by a reaper task that runs while any are idle) or when
//! the upstream closes it (seen at checkout and by the reaper).

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::conn::Conn;

/// Idle connections of one endpoint.
pub struct IdleList {
    inner: Mutex<Inner>,
    max: usize,
    timeout: Duration,
}

#[derive(Default)]
struct Inner {
    /// Boxed: a connection moves between this list, the exchange and the response body on
    /// every request, and a pointer moves cheaper than the connection.
    #[allow(clippy::vec_box)]
    conns: Vec<Box<Conn>>,
    /// A reaper task is running.
    reaping: bool,
}

impl std::fmt::Debug for IdleList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdleList")
            .field("max", &self.max)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl IdleList {
    /// An empty list keeping at most `max` connections, each for at most `timeout` idle.
    pub fn new(max: usize, timeout: Duration) -> Arc<IdleList> {
        Arc::new(IdleList {
            inner: Mutex::default(),
            max,
            timeout,
        })
    }

    /// The most recently used connection that can still carry a request. Expired and closed
    /// ones met on the way are closed.
    pub fn checkout(&self) -> Option<Box<Conn>> {
        let now = Instant::now();
        let mut dead = Vec::new();
        let found = {
            let mut inner = self.lock();
            loop {
                let Some(c) = inner.conns.pop() else {
                    break None;
                };
                if now.saturating_duration_since(c.since) >= self.timeout {
                    // The rest are older still.
                    dead.push(c);
                    dead.append(&mut inner.conns);
                    break None;
                }
                if c.io.idle_closed() {
                    dead.push(c);
                    continue;
                }
                break Some(c);
            }
        };
        // Closed outside the lock.
        drop(dead);
        found
    }

    /// Keeps `conn` for the next request, or closes it when the list is full.
    pub(super) fn park(self: &Arc<Self>, mut conn: Box<Conn>) {
        conn.since = Instant::now();
        conn.reused = true;
        conn.rest();
        let mut inner = self.lock();
        if inner.conns.len() >= self.max {
            drop(inner);
            return;
        }
        inner.conns.push(conn);
        if !inner.reaping {
            // (Outside a runtime nothing reaps; checkout still closes expired connections.)
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                inner.reaping = true;
                rt.spawn(reap(Arc::downgrade(self), self.timeout));
            }
        }
    }

    /// Idle connections now.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    /// Whether none is idle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Closes connections idle for `timeout` or closed by the upstream, waking when the oldest
/// expires; ends when the list is empty or dropped (one spawn per quiet period, not per
/// request).
async fn reap(list: Weak<IdleList>, timeout: Duration) {
    let mut wait = timeout;
    loop {
        tokio::time::sleep(wait).await;
        let Some(list) = list.upgrade() else {
            return;
        };
        let now = Instant::now();
        let dead: Vec<Box<Conn>>;
        {
            let mut inner = list.lock();
            let fresh = inner
                .conns
                .iter()
                .position(|c| now.saturating_duration_since(c.since) < timeout)
                .unwrap_or(inner.conns.len());
            let mut gone: Vec<Box<Conn>> = inner.conns.drain(..fresh).collect();
            let (closed, open): (Vec<_>, Vec<_>) =
                inner.conns.drain(..).partition(|c| c.io.idle_closed());
            inner.conns = open;
            gone.extend(closed);
            dead = gone;
            match inner.conns.first() {
                None => inner.reaping = false,
                Some(oldest) => {
                    wait = (oldest.since + timeout).saturating_duration_since(now)
                        + Duration::from_millis(1);
                }
            }
            if !inner.reaping {
                drop(inner);
                drop(dead);
                return;
            }
        }
        drop(dead);
    }
}
