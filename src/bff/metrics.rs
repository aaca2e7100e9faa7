//! BFF metrics: outcome and latency per profile, endpoint and part, in the gateway's registry.
//!
//! Families (registered once per gateway with [`Metrics::family`]):
//! - `portico_bff_parts_total{profile, endpoint, part, outcome}`: ok, timeout, error, skipped;
//! - `portico_bff_part_duration_seconds{profile, endpoint, part}`: time of parts that were called;
//! - `portico_bff_responses_total{profile, endpoint, result}`: complete, partial, failed.
//!
//! Each endpoint also gets the route series (`portico_requests_total{route=ID}` ...) under its
//! id, e.g. `mobile GET /home`. Handles are resolved at config load and held by the compiled
//! endpoint and parts, so a request records with a few atomic adds and no label hashing; the
//! same series are handed out again on reload, so counts go on.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::metrics::Metrics;

/// How a part ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered in time with usable JSON (or from its cache).
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

type PartLabels = [(&'static str, String); 4];
type EndpointLabels = [(&'static str, String); 3];
type DurationLabels = [(&'static str, String); 3];
type DurationFamily = Family<DurationLabels, Histogram, fn() -> Histogram>;

fn part_histogram() -> Histogram {
    // 0.5 ms to ~4 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// The BFF families of one registry.
struct Families {
    parts: Family<PartLabels, Counter>,
    durations: DurationFamily,
    responses: Family<EndpointLabels, Counter>,
}

fn families(m: &Metrics) -> Families {
    Families {
        parts: m.family(
            "portico_bff_parts",
            "BFF part calls, by profile, endpoint, part and outcome (ok, timeout, error, skipped)",
            Family::default,
        ),
        durations: m.family(
            "portico_bff_part_duration_seconds",
            "Time of BFF part calls, by profile, endpoint and part",
            || Family::new_with_constructor(part_histogram as fn() -> Histogram),
        ),
        responses: m.family(
            "portico_bff_responses",
            "BFF answers, by profile, endpoint and result (complete, partial, failed)",
            Family::default,
        ),
    }
}

/// Series of one part of one endpoint of one profile.
#[derive(Debug, Clone)]
pub struct PartStats {
    outcomes: [Counter; 4],
    latency: Histogram,
}

impl PartStats {
    /// The part's series in `metrics` (created on first use, the same ones on reload).
    pub fn new(metrics: &Metrics, profile: &str, endpoint: &str, part: &str) -> PartStats {
        let f = families(metrics);
        let labels = |o: Outcome| -> PartLabels {
            [
                ("profile", profile.to_owned()),
                ("endpoint", endpoint.to_owned()),
                ("part", part.to_owned()),
                ("outcome", o.as_str().to_owned()),
            ]
        };
        PartStats {
            outcomes: Outcome::ALL.map(|o| f.parts.get_or_create_owned(&labels(o))),
            latency: f.durations.get_or_create_owned(&[
                ("profile", profile.to_owned()),
                ("endpoint", endpoint.to_owned()),
                ("part", part.to_owned()),
            ]),
        }
    }

    /// Count of one outcome so far.
    pub fn count(&self, o: Outcome) -> u64 {
        self.outcomes[o as usize].get()
    }
}

/// Series of one endpoint of one profile.
#[derive(Debug, Clone)]
pub struct EndpointStats {
    results: [Counter; 3],
}

impl EndpointStats {
    /// The endpoint's series in `metrics`.
    pub fn new(metrics: &Metrics, profile: &str, endpoint: &str) -> EndpointStats {
        let f = families(metrics);
        EndpointStats {
            results: Completion::ALL.map(|c| {
                f.responses.get_or_create_owned(&[
                    ("profile", profile.to_owned()),
                    ("endpoint", endpoint.to_owned()),
                    ("result", c.as_str().to_owned()),
                ])
            }),
        }
    }

    /// Count of one result so far.
    pub fn count(&self, c: Completion) -> u64 {
        self.results[c as usize].get()
    }
}

/// Records how a part ended; `took` is `None` for parts never called.
#[inline]
pub fn record_part(stats: &PartStats, outcome: Outcome, took: Option<Duration>) {
    stats.outcomes[outcome as usize].inc();
    if let Some(t) = took {
        stats.latency.observe(t.as_secs_f64());
    }
}

/// Records how a whole response ended (its latency is in the endpoint's route series).
#[inline]
pub fn record_endpoint(stats: &EndpointStats, result: Completion) {
    stats.results[result as usize].inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_shared_across_compiles_and_exported() {
        let m = Metrics::new();
        let a = PartStats::new(&m, "web", "GET /home", "profile");
        record_part(&a, Outcome::Ok, Some(Duration::from_micros(800)));
        record_part(&a, Outcome::Skipped, None);
        // A reload compiles the part again: same series, counts go on.
        let b = PartStats::new(&m, "web", "GET /home", "profile");
        record_part(&b, Outcome::Ok, Some(Duration::from_millis(3)));
        assert_eq!(a.count(Outcome::Ok), 2);
        assert_eq!(b.count(Outcome::Skipped), 1);
        let e = EndpointStats::new(&m, "web", "GET /home");
        record_endpoint(&e, Completion::Partial);
        assert_eq!(e.count(Completion::Partial), 1);
        let text = m.encode();
        assert!(text.contains(r#"portico_bff_parts_total{profile="web",endpoint="GET /home",part="profile",outcome="ok"} 2"#), "{text}");
        assert!(text.contains(r#"portico_bff_part_duration_seconds_count{profile="web",endpoint="GET /home",part="profile"} 2"#), "{text}");
        assert!(text.contains(r#"portico_bff_responses_total{profile="web",endpoint="GET /home",result="partial"} 1"#), "{text}");
    }
}
