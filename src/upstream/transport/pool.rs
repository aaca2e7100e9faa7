//! The connections of one endpoint (owned by the `Endpoint`: an endpoint that leaves the set
//! drops its pool, so idle connections close while requests in flight finish), and the
//! upstream-wide connection and pending counts of `[upstreams.NAME.circuit]`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::h2;
use crate::net::h1::IdleList;

/// Idle HTTP/1.1 connections and live HTTP/2 connections of one endpoint.
pub struct Pool {
    /// The transport whose settings opened these connections (a reload that changes them
    /// starts new pools).
    owner: u64,
    /// Idle HTTP/1.1 connections, most recently used last.
    pub(super) h1: Arc<IdleList>,
    /// HTTP/2 connections with their streams in flight.
    pub(super) h2: Mutex<Vec<h2::Conn>>,
    /// One HTTP/2 connection is opened at a time; the others wait for it to share it.
    pub(super) h2_opening: tokio::sync::Mutex<()>,
    next: AtomicU64,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("owner", &self.owner).finish()
    }
}

impl Pool {
    /// An empty pool for connections opened by transport `owner`, keeping at most `max_idle`
    /// idle HTTP/1.1 connections for `idle_timeout` each.
    pub fn new(owner: u64, max_idle: usize, idle_timeout: Duration) -> Pool {
        Pool {
            owner,
            h1: IdleList::new(max_idle, idle_timeout),
            h2: Mutex::default(),
            h2_opening: tokio::sync::Mutex::default(),
            next: AtomicU64::new(0),
        }
    }

    /// The transport it belongs to.
    pub fn owner(&self) -> u64 {
        self.owner
    }

    /// A connection id unique in this pool.
    pub(super) fn id(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Idle HTTP/1.1 connections now.
    pub fn idle_h1(&self) -> usize {
        self.h1.len()
    }
}

/// Locks `m`, ignoring poisoning (the lists stay consistent: every change is one push,
/// pop or retain).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `max_connections` and `max_pending` of an upstream, counted over its endpoints.
#[derive(Debug)]
pub struct Limits {
    max_connections: u32,
    max_pending: u32,
    open: AtomicU32,
    pending: AtomicU32,
}

/// One open connection, counted until dropped.
pub struct Open(Arc<Limits>);

/// One request waiting for a connection to open, counted until dropped.
pub struct Pending<'a>(&'a Limits);

impl Limits {
    /// Limits with nothing counted yet.
    pub fn new(max_connections: u32, max_pending: u32) -> Limits {
        Limits {
            max_connections,
            max_pending,
            open: AtomicU32::new(0),
            pending: AtomicU32::new(0),
        }
    }

    /// Counts a request waiting for a connection, or `None` past `max_pending`.
    pub fn pending(&self) -> Option<Pending<'_>> {
        take(&self.pending, self.max_pending).then_some(Pending(self))
    }

    /// Counts a new connection, or `None` past `max_connections`.
    pub fn open(self: &Arc<Self>) -> Option<Open> {
        take(&self.open, self.max_connections).then(|| Open(self.clone()))
    }

    /// Connections open now.
    pub fn connections(&self) -> u32 {
        self.open.load(Ordering::Relaxed)
    }
}

fn take(count: &AtomicU32, max: u32) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
            (n < max).then(|| n + 1)
        })
        .is_ok()
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.pending.fetch_sub(1, Ordering::AcqRel);
    }
}
