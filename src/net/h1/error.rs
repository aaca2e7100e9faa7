//! What can go wrong in an HTTP/1.1 exchange with an upstream.

use std::io;

use crate::body::BoxError;

/// Why an exchange or a response body failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the connection failed.
    #[error("upstream connection: {0}")]
    Io(#[source] io::Error),
    /// The upstream closed the connection before a whole response head.
    #[error("upstream closed the connection before the response head")]
    ClosedBeforeHead,
    /// The upstream closed the connection before the body its framing announced.
    #[error("upstream closed the connection before the end of the response body")]
    ClosedMidBody,
    /// The response head is not valid HTTP/1.1 (or is too large).
    #[error("invalid response head: {0}")]
    Head(&'static str),
    /// The chunked response body is malformed.
    #[error("invalid chunked response body: {0}")]
    Chunked(&'static str),
    /// Reading the request body to send failed (its cause says whose fault it is).
    #[error("request body")]
    Body(#[source] BoxError),
    /// The request body was longer or shorter than its `content-length`.
    #[error("request body does not match its content-length")]
    BodyLength,
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl Error {
    /// What was wrong with a chunked body (for a client's body, reported as its own error).
    pub(super) fn chunked_reason(&self) -> &'static str {
        match self {
            Error::Chunked(reason) => reason,
            _ => "malformed",
        }
    }
}
