//! Body types: what the gateway sends to clients and to upstreams, without boxing the common cases.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;

mod client;
mod replay;
pub use client::ClientBody;
pub use replay::ReplayBuffer;

/// Boxed error used by bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of an upstream's response: from Portico's HTTP/1.1 client, or from hyper's (HTTP/2
/// connections and protocol upgrades).
#[derive(Debug)]
pub enum UpstreamBody {
    /// Read by `net::h1` straight from a pooled HTTP/1.1 connection.
    H1(crate::net::h1::ResponseBody),
    /// Read by hyper.
    Hyper(Incoming),
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            UpstreamBody::H1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::H1(b) => b.is_end_stream(),
            UpstreamBody::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::H1(b) => b.size_hint(),
            UpstreamBody::Hyper(b) => b.size_hint(),
        }
    }
}

/// A response body sent to a client: empty, one buffer, a streamed upstream body, or anything else.
#[derive(Debug, Default)]
pub enum Body {
    /// No bytes.
    #[default]
    Empty,
    /// One buffer, sent once.
    Full(Option<Bytes>),
    /// An upstream response streamed through as it arrives.
    Upstream(UpstreamBody),
    /// Any other body.
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
}

impl Body {
    /// A body of one buffer.
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let b = bytes.into();
        if b.is_empty() {
            Body::Empty
        } else {
            Body::Full(Some(b))
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Upstream(up) => Pin::new(up).poll_frame(cx),
            Body::Boxed(b) => Pin::new(b).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(b) => b.is_none(),
            Body::Upstream(inc) => inc.is_end_stream(),
            Body::Boxed(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Upstream(inc) => inc.size_hint(),
            Body::Boxed(b) => b.size_hint(),
        }
    }
}

/// The request body was larger than `limits.max_body_bytes`.
#[derive(Debug, thiserror::Error)]
#[error("request body exceeds {limit} bytes")]
pub struct BodyTooLarge {
    /// The configured limit.
    pub limit: u64,
}

/// Reading the client's request body failed (malformed chunked encoding, the client went
/// away): the client's fault, never the upstream's.
#[derive(Debug, thiserror::Error)]
#[error("client request body: {0}")]
pub struct ClientBodyError(#[source] pub BoxError);

/// A request body sent upstream: streamed from the client with a size cap.
///
/// A streamed body can be made *reclaimable*: if the upstream connection fails before the body
/// was polled, [`Reclaim::take`] gives it back so the request can go to another endpoint.
pub struct RequestBody {
    source: Source,
    hint: SizeHint,
    limit: u64,
    read: u64,
    /// The copy kept for a retry (only with a retry policy).
    tee: Option<ReplayBuffer>,
}

enum Source {
    Empty,
    Full(Option<Bytes>),
    Stream(ClientBody),
    Shared(Arc<Mutex<Option<ClientBody>>>),
}

/// Handle to get an unpolled streamed body back after a failed connection attempt.
pub struct Reclaim {
    slot: Arc<Mutex<Option<ClientBody>>>,
    limit: u64,
    kept: Option<ReplayBuffer>,
}

impl Reclaim {
    /// The body, under the same size cap, if the failed attempt never started reading it;
    /// else the copy in its replay buffer, if the body was read whole within the cap.
    pub fn take(&self) -> Option<RequestBody> {
        let unread = self.slot.lock().ok().and_then(|mut s| s.take());
        match unread {
            Some(body) => {
                let mut b = RequestBody::stream(body, self.limit);
                b.tee = self.kept.clone();
                Some(b)
            }
            None => self.kept.as_ref()?.whole().map(RequestBody::full),
        }
    }
}

impl RequestBody {
    /// An empty body.
    pub fn empty() -> Self {
        Self {
            source: Source::Empty,
            hint: SizeHint::with_exact(0),
            limit: u64::MAX,
            read: 0,
            tee: None,
        }
    }

    /// A body of one buffer (used for bodies the gateway builds itself).
    pub fn full(bytes: Bytes) -> Self {
        let hint = SizeHint::with_exact(bytes.len() as u64);
        Self {
            source: Source::Full(Some(bytes)),
            hint,
            limit: u64::MAX,
            read: 0,
            tee: None,
        }
    }

    /// A client body streamed through, failing with [`BodyTooLarge`] past `limit` bytes.
    pub fn stream(body: ClientBody, limit: u64) -> Self {
        let hint = body.size_hint();
        if body.is_end_stream() {
            return Self::empty();
        }
        Self {
            source: Source::Stream(body),
            hint,
            limit,
            read: 0,
            tee: None,
        }
    }

    /// Like [`RequestBody::stream`], plus a handle to reclaim the body if it was never polled;
    /// with `replay_cap`, a body of at most that many bytes is also kept as it streams, so
    /// the handle can give it again after it was sent.
    pub fn reclaimable(
        body: ClientBody,
        limit: u64,
        replay_cap: Option<u64>,
    ) -> (Self, Option<Reclaim>) {
        if body.is_end_stream() {
            return (Self::empty(), None);
        }
        let hint = body.size_hint();
        let slot = Arc::new(Mutex::new(Some(body)));
        // A body declared larger than the cap is never kept.
        let kept = replay_cap
            .filter(|cap| hint.lower() <= *cap)
            .map(ReplayBuffer::new);
        let me = Self {
            source: Source::Shared(slot.clone()),
            hint,
            limit,
            read: 0,
            tee: kept.clone(),
        };
        (me, Some(Reclaim { slot, limit, kept }))
    }

    /// The whole body when it is in memory and not sent yet (`Some(None)`: empty); `None` for
    /// a body streamed from the client.
    pub fn in_memory(&self) -> Option<Option<&Bytes>> {
        match &self.source {
            Source::Empty => Some(None),
            Source::Full(b) => Some(b.as_ref()),
            Source::Stream(_) | Source::Shared(_) => None,
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Source::Shared(slot) = &this.source {
            let taken = slot.lock().ok().and_then(|mut s| s.take());
            this.source = match taken {
                Some(body) => Source::Stream(body),
                None => Source::Empty,
            };
        }
        let frame = match &mut this.source {
            Source::Empty | Source::Shared(_) => return Poll::Ready(None),
            Source::Full(b) => return Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Source::Stream(inc) => match Pin::new(inc).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) => f,
                Poll::Ready(Some(Err(e))) => {
                    if let Some(t) = &this.tee {
                        t.lose();
                    }
                    return Poll::Ready(Some(Err(Box::new(ClientBodyError(e)))));
                }
                Poll::Ready(None) => {
                    if let Some(t) = &this.tee {
                        t.finish();
                    }
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            },
        };
        if let Some(data) = frame.data_ref() {
            this.read += data.len() as u64;
            if this.read > this.limit {
                this.source = Source::Empty;
                if let Some(t) = &this.tee {
                    t.lose();
                }
                return Poll::Ready(Some(Err(Box::new(BodyTooLarge { limit: this.limit }))));
            }
            if let Some(t) = &this.tee {
                t.push(data);
            }
        }
        if let (Some(t), Source::Stream(inc)) = (&this.tee, &this.source) {
            // A sender may stop polling once the body says it ended.
            if inc.is_end_stream() {
                t.finish();
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.source {
            Source::Empty => true,
            Source::Full(b) => b.is_none(),
            Source::Stream(inc) => inc.is_end_stream(),
            Source::Shared(_) => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.source {
            Source::Stream(inc) => inc.size_hint(),
            _ => self.hint,
        }
    }
}
