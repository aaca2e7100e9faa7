//! How a request's body is sent again: after a refused connection, a retry or a hedge.

use bytes::Bytes;

use crate::body::{Reclaim, RequestBody};

/// How a request's body is sent again after a refused connection.
pub(super) enum Replay {
    /// There was no body.
    Empty,
    /// The body is in memory.
    Bytes(Bytes),
    /// A streamed client body: again if it was never read, or from its replay buffer.
    Reclaim(Reclaim),
}

impl Replay {
    pub(super) fn body(&self) -> Option<RequestBody> {
        match self {
            Replay::Empty => Some(RequestBody::empty()),
            Replay::Bytes(b) if b.is_empty() => Some(RequestBody::empty()),
            Replay::Bytes(b) => Some(RequestBody::full(b.clone())),
            Replay::Reclaim(r) => r.take(),
        }
    }
}
