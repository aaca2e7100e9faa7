//! A request body as a client sends it: read by Portico's HTTP/1.1 server, or by hyper's
//! HTTP/2 server.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use super::BoxError;
use crate::net::h1::Inbound;

/// The body of a request from a client.
#[derive(Debug)]
pub enum ClientBody {
    /// Read from an HTTP/1.1 connection by `net::h1`.
    H1(Inbound),
    /// Read by hyper (HTTP/2 streams).
    Hyper(Incoming),
}

impl ClientBody {
    /// A request without a body.
    pub fn empty() -> ClientBody {
        ClientBody::H1(Inbound::empty())
    }
}

impl From<Incoming> for ClientBody {
    fn from(b: Incoming) -> ClientBody {
        ClientBody::Hyper(b)
    }
}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ClientBody::H1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            ClientBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::H1(b) => b.is_end_stream(),
            ClientBody::Hyper(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::H1(b) => b.size_hint(),
            ClientBody::Hyper(b) => b.size_hint(),
        }
    }
}
