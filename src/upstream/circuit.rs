//! Bulkhead of one upstream (`[upstreams.NAME.circuit]`): at most `max_requests` requests in
//! flight to it; past the limit a request is refused at once (503 `overloaded`), never queued,
//! so one slow upstream cannot take the gateway's capacity from the others. With
//! `adaptive = true` the limit follows measured latency (`adaptive`) between `min_limit` and
//! `max_requests`.

pub mod adaptive;
pub mod compile;

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use prometheus_client::metrics::gauge::Gauge;

use adaptive::Gradient;

/// `[upstreams.NAME.circuit]`, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitSettings {
    /// Requests in flight to the upstream (the adaptive limit's ceiling).
    pub max_requests: u32,
    /// Requests waiting for a connection to open.
    pub max_pending: u32,
    /// Connections to the upstream.
    pub max_connections: u32,
    /// `Some(min_limit)` when the limit adapts to latency.
    pub adaptive: Option<u32>,
}

/// In-flight count and limit of one upstream.
#[derive(Debug)]
pub struct Circuit {
    settings: CircuitSettings,
    /// Requests in flight now (also the `portico_upstream_in_flight` series).
    in_flight: Gauge,
    /// The limit now (`max_requests`, or the adaptive limit).
    limit: AtomicU32,
    /// The adaptive limit's gauge.
    limit_gauge: Gauge,
    gradient: Option<Mutex<Gradient>>,
}

/// One admitted request; leaving frees its place.
#[derive(Debug)]
pub struct Permit<'a> {
    circuit: &'a Circuit,
    started: Instant,
}

impl Circuit {
    /// A circuit counting in `in_flight` and showing its limit in `limit_gauge`.
    pub fn new(settings: CircuitSettings, in_flight: Gauge, limit_gauge: Gauge) -> Circuit {
        let gradient = settings
            .adaptive
            .map(|min| Mutex::new(Gradient::new(min, settings.max_requests)));
        limit_gauge.set(i64::from(settings.max_requests));
        Circuit {
            settings,
            in_flight,
            limit: AtomicU32::new(settings.max_requests),
            limit_gauge,
            gradient,
        }
    }

    /// Its settings.
    pub fn settings(&self) -> CircuitSettings {
        self.settings
    }

    /// The in-flight limit now.
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    /// Admits a request, or `None` when the limit is reached (the caller answers 503).
    #[inline]
    pub fn admit(&self) -> Option<Permit<'_>> {
        let before = self.in_flight.inc();
        if before >= i64::from(self.limit.load(Ordering::Relaxed)) {
            self.in_flight.dec();
            return None;
        }
        Some(Permit {
            circuit: self,
            started: Instant::now(),
        })
    }
}

impl Permit<'_> {
    /// Reports the request's time to its response head (`failed`: no answer, or a 5xx) to
    /// the adaptive limit.
    pub fn done(self, failed: bool) {
        let c = self.circuit;
        let Some(g) = &c.gradient else { return };
        // A contended sample is skipped: the limit is a statistical figure.
        let Ok(mut g) = g.try_lock() else { return };
        let in_flight = u32::try_from(c.in_flight.get()).unwrap_or(0);
        let limit = g.sample(self.started.elapsed().as_secs_f64(), failed, in_flight);
        c.limit.store(limit, Ordering::Relaxed);
        c.limit_gauge.set(i64::from(limit));
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.circuit.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_the_limit_and_frees_on_drop() {
        let s = CircuitSettings {
            max_requests: 2,
            max_pending: 10,
            max_connections: 10,
            adaptive: None,
        };
        let c = Circuit::new(s, Gauge::default(), Gauge::default());
        let a = c.admit().expect("first");
        let b = c.admit().expect("second");
        assert!(c.admit().is_none());
        drop(a);
        let again = c.admit().expect("a place was freed");
        drop((b, again));
        assert_eq!(c.in_flight.get(), 0);
    }
}
