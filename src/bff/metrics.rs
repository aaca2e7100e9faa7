//! BFF counters: outcome and latency per profile, endpoint and part.
//!
//! Handles are created at config load and held by the compiled endpoint and parts, so a
//! request records with a few relaxed atomic adds and no label hashing. Counters of an
//! endpoint or part that still exists after a reload are carried over (they stay monotonic).
//! [`record_part`] and [`record_endpoint`] are the only places a request records anything:
//! the seam where the Prometheus registry is connected.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How a part ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered in time with usable JSON.
    Ok,
    /// Its own timeout or the response budget ran out.
    Timeout,
    /// Error status, connection failure, bad or oversized answer.
    Error,
    /// Never called: an input was missing or a part it depends on failed.
    Skipped,
}

impl Outcome {
    /// Every outcome, in counter order.
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Timeout,
        Outcome::Error,
        Outcome::Skipped,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Timeout => "timeout",
            Outcome::Error => "error",
            Outcome::Skipped => "skipped",
        }
    }
}

/// How a whole BFF response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// Every part answered.
    Complete,
    /// Some optional part is missing or defaulted.
    Partial,
    /// A required part failed (502/504) or an input was missing (400).
    Failed,
}

impl Completion {
    /// Every result, in counter order.
    pub const ALL: [Completion; 3] = [
        Completion::Complete,
        Completion::Partial,
        Completion::Failed,
    ];

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Completion::Complete => "complete",
            Completion::Partial => "partial",
            Completion::Failed => "failed",
        }
    }
}

/// Upper bounds (µs) of the latency histogram buckets; the last bucket is +Inf.
pub const BUCKETS_US: [u64; 11] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
];

/// A latency histogram: cumulative-ready bucket counts, sum and count.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_US.partition_point(|&b| b < us);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Per-bucket counts (not cumulative), the last one being +Inf.
    pub fn counts(&self) -> Vec<u64> {
        self.buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect()
    }

    /// Sum of observations in µs.
    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }
}

/// Counters of one part of one endpoint of one profile.
#[derive(Debug)]
pub struct PartStats {
    /// Profile name.
    pub profile: Arc<str>,
    /// Endpoint label, `METHOD /path`.
    pub endpoint: Arc<str>,
    /// Part name.
    pub part: Arc<str>,
    outcomes: [AtomicU64; 4],
    /// Call latency of parts that were called.
    pub latency: Histogram,
}

impl PartStats {
    /// Fresh counters.
    pub fn new(profile: Arc<str>, endpoint: Arc<str>, part: Arc<str>) -> PartStats {
        PartStats {
            profile,
            endpoint,
            part,
            outcomes: Default::default(),
            latency: Histogram::default(),
        }
    }

    /// Count of one outcome.
    pub fn count(&self, o: Outcome) -> u64 {
        self.outcomes[o as usize].load(Ordering::Relaxed)
    }
}

/// Counters of one endpoint of one profile.
#[derive(Debug)]
pub struct EndpointStats {
    /// Profile name.
    pub profile: Arc<str>,
    /// Endpoint label, `METHOD /path`.
    pub endpoint: Arc<str>,
    results: [AtomicU64; 3],
    /// Whole-response latency.
    pub latency: Histogram,
}

impl EndpointStats {
    /// Fresh counters.
    pub fn new(profile: Arc<str>, endpoint: Arc<str>) -> EndpointStats {
        EndpointStats {
            profile,
            endpoint,
            results: Default::default(),
            latency: Histogram::default(),
        }
    }

    /// Count of one result.
    pub fn count(&self, r: Completion) -> u64 {
        self.results[r as usize].load(Ordering::Relaxed)
    }
}

/// Records how a part ended; `took` is `None` for parts never called.
pub fn record_part(stats: &PartStats, outcome: Outcome, took: Option<Duration>) {
    stats.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    if let Some(t) = took {
        stats.latency.observe(t);
    }
}

/// Records how a whole response ended.
pub fn record_endpoint(stats: &EndpointStats, result: Completion, took: Duration) {
    stats.results[result as usize].fetch_add(1, Ordering::Relaxed);
    stats.latency.observe(took);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_buckets() {
        let s = PartStats::new("web".into(), "GET /home".into(), "profile".into());
        record_part(&s, Outcome::Ok, Some(Duration::from_micros(800)));
        record_part(&s, Outcome::Timeout, Some(Duration::from_millis(300)));
        record_part(&s, Outcome::Skipped, None);
        assert_eq!(s.count(Outcome::Ok), 1);
        assert_eq!(s.count(Outcome::Timeout), 1);
        assert_eq!(s.count(Outcome::Skipped), 1);
        assert_eq!(s.count(Outcome::Error), 0);
        let c = s.latency.counts();
        assert_eq!((c[0], c[8], c.iter().sum::<u64>()), (1, 1, 2));
        assert_eq!(s.latency.sum_us(), 300_800);
        let e = EndpointStats::new("web".into(), "GET /home".into());
        record_endpoint(&e, Completion::Partial, Duration::from_secs(9));
        assert_eq!(e.count(Completion::Partial), 1);
        assert_eq!(e.latency.counts()[BUCKETS_US.len()], 1);
    }
}
