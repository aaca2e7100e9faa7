//! The first request's deadline: `header_read_timeout` runs from connection open. hyper times
//! an HTTP/1.1 head once it is parsing one, but nothing times protocol detection (a silent
//! connection) or the HTTP/2 preface and SETTINGS (a dribbled or stalled handshake); without
//! this, such a connection holds a slot until `idle_timeout`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Sleep;

/// Whether a connection delivered its first request head.
#[derive(Debug, Default)]
pub struct FirstRequest(AtomicBool);

impl FirstRequest {
    /// Called when a request reaches the service (its head is complete).
    #[inline]
    pub fn arrived(&self) {
        if !self.0.load(Ordering::Relaxed) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    /// Whether a request has arrived.
    pub fn seen(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The timer armed at connection open; when it fires without [`FirstRequest::seen`], the
/// connection is dropped.
pub fn deadline(header_read_timeout: Duration) -> Sleep {
    tokio::time::sleep(header_read_timeout)
}
