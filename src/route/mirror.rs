//! Mirroring (dark launch): a copy of a share of a route's requests goes to a shadow upstream,
//! fire and forget. The shadow's answer is read and dropped; it never delays, fails or changes
//! the client's answer.
//!
//! Choices: the copy is the request as the route forwards it (rewritten path, forwarding
//! headers), with a Host that has `-shadow` appended to its host part. Bodies up to `max_body`
//! (known from Content-Length) are copied whole; a request whose body is larger or of unknown
//! length (chunked) is not mirrored at all, since a copy without its body would be a different
//! request; it is counted as `dropped_body`. Upgrades (WebSocket) are never mirrored. Each
//! route caps its shadow requests in flight; a copy over the cap is dropped and counted as
//! `dropped_capacity`, never queued. A shadow exchange (answer body included) has its own
//! timeout; failures and timeouts count as `error`.

pub mod compile;

use std::sync::Arc;
use std::time::Duration;

use crate::body::ClientBody;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::request::Parts;
use http_body::Body as _;
use http_body_util::BodyExt;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;

use super::chance::Chance;
use crate::body::UpstreamBody;
use crate::error::GatewayError;
use crate::upstream::Upstream;

/// A compiled `mirror = {...}`.
#[derive(Debug)]
pub struct Mirror {
    /// The shadow upstream.
    pub upstream: Arc<Upstream>,
    /// Share of requests copied.
    pub chance: Chance,
    /// Largest body copied.
    pub max_body: u64,
    /// Time a shadow exchange may take.
    pub timeout: Duration,
    /// Free shadow slots of this route.
    pub slots: Arc<Semaphore>,
    /// `portico_mirror_requests_total{route,outcome}`.
    pub counts: Arc<Counts>,
}

/// Outcome counters of one route's mirror.
#[derive(Debug, Default)]
pub struct Counts {
    /// Copies sent.
    pub sent: Counter,
    /// Copies not sent: the route's shadow slots were all busy.
    pub dropped_capacity: Counter,
    /// Copies not sent: body too large or of unknown length.
    pub dropped_body: Counter,
    /// Copies that got no answer in time (connect failure, timeout, broken exchange).
    pub error: Counter,
}

impl Mirror {
    /// Whether this request is copied: the roll, never upgrades, and a body of known length up
    /// to `max_body` (bodies too large are counted as dropped).
    pub fn wants(&self, parts: &Parts, body: &ClientBody, upgrading: bool) -> bool {
        if upgrading || !self.chance.hit() {
            return false;
        }
        if body.is_end_stream() {
            return true;
        }
        let known = body.size_hint().exact().or_else(|| {
            let cl = parts.headers.get(CONTENT_LENGTH)?.to_str().ok()?;
            cl.parse().ok()
        });
        match known {
            Some(n) if n <= self.max_body && !parts.headers.contains_key(TRANSFER_ENCODING) => true,
            _ => {
                self.counts.dropped_body.inc();
                false
            }
        }
    }

    /// Sends a copy of a request head (as forwarded) and its body in the background, if a
    /// shadow slot is free. Returns at once.
    pub fn send(&self, parts: &Parts, body: Bytes) {
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            self.counts.dropped_capacity.inc();
            return;
        };
        self.counts.sent.inc();
        let mut headers = parts.headers.clone();
        // A preserved client Host gets the suffix here; else the upstream names the endpoint.
        if let Some(shadow) = headers.get(HOST).map(crate::upstream::shadow_host) {
            headers.insert(HOST, shadow);
        }
        let method = parts.method.clone();
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let upstream = self.upstream.clone();
        let counts = self.counts.clone();
        let timeout = self.timeout;
        // The copy's attempts belong to the client request's trace.
        let scope = crate::trace::current();
        tokio::spawn(async move {
            let _slot = slot;
            let until = tokio::time::Instant::now() + timeout;
            let exchange = async {
                let resp = upstream
                    .call_shadow(&method, path, headers, body, until)
                    .await?;
                // Read and drop the answer so the pooled connection can be reused.
                resp.into_body()
                    .collect()
                    .await
                    .map_err(|e| GatewayError::UpstreamProtocol {
                        upstream: upstream.name.clone(),
                        reason: e.to_string(),
                    })?;
                Ok::<(), GatewayError>(())
            };
            let exchange = crate::trace::maybe_in_scope(scope, exchange);
            match tokio::time::timeout_at(until, exchange).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    counts.error.inc();
                    tracing::debug!(upstream = %upstream.name, error = %e, "shadow request failed");
                }
                Err(_) => {
                    counts.error.inc();
                    tracing::debug!(upstream = %upstream.name, "shadow request timed out");
                }
            }
        });
    }
}

impl Mirror {
    /// Forwards a request chosen by [`Mirror::wants`]: reads its (small) body, sends the copy
    /// in the background, and the original to `upstream` within `timeout`.
    pub async fn forward(
        &self,
        upstream: &Upstream,
        parts: Parts,
        body: ClientBody,
        limit: u64,
        timeout: Duration,
        key: Option<u64>,
    ) -> Result<http::Response<UpstreamBody>, GatewayError> {
        let body = read_body(body, limit).await?;
        self.send(&parts, body.clone());
        let path = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        let until = tokio::time::Instant::now() + timeout;
        upstream
            .call(&parts.method, path, parts.headers, body, until, key)
            .await
    }
}

/// Reads a body already known to be at most `limit` bytes into memory (for a mirrored request:
/// the same bytes go to the upstream and the shadow).
pub async fn read_body(body: ClientBody, limit: u64) -> Result<Bytes, GatewayError> {
    let limited = http_body_util::Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::PayloadTooLarge { limit })
        }
        Err(_) => Err(GatewayError::BadRequest(
            "The request body could not be read.",
        )),
    }
}
