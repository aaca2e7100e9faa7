//! What an upstream does around each attempt, configured (`ResilienceSettings`: retry policy,
//! budget, circuit) and running (`Resilience`: budget counts, in-flight count, their metric
//! series). Absent tables cost one `Option` check per request.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::circuit::{Circuit, CircuitSettings};
use super::retry::{Budget, BudgetSettings, RetryOn, RetryPolicy};
use crate::metrics::Metrics;

/// `[retry]` and `[circuit]` of an upstream, compiled (compared on reload).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResilienceSettings {
    /// The retry policy, when `[retry]` is present.
    pub retry: Option<Arc<RetryPolicy>>,
    /// The retry budget, when `[retry]` is present.
    pub budget: Option<BudgetSettings>,
    /// The bulkhead, when `[circuit]` is present.
    pub circuit: Option<CircuitSettings>,
}

/// The `reason` label values of `portico_upstream_retries_total`.
pub const REASONS: [&str; 7] = [
    "connect-failure",
    "reset",
    "timeout",
    "5xx",
    "gateway-error",
    "retriable-status",
    "hedge",
];

/// Running state: kept across reloads while the settings stay.
#[derive(Debug, Default)]
pub struct Resilience {
    /// Retry budget counts.
    pub budget: Option<Arc<Budget>>,
    /// In-flight count and limit.
    pub circuit: Option<Arc<Circuit>>,
    retries: [Counter; 7],
    exhausted: Counter,
    overloaded: Counter,
}

type Labels1 = [(&'static str, String); 1];
type Labels2 = [(&'static str, String); 2];

impl Resilience {
    /// Builds the state of upstream `name`; keeps `previous`'s budget counts and circuit when
    /// their settings are unchanged.
    pub fn build(
        name: &str,
        s: &ResilienceSettings,
        previous: Option<&Resilience>,
        metrics: Option<&Metrics>,
    ) -> Resilience {
        let budget = s.budget.map(|b| {
            previous
                .and_then(|p| p.budget.clone())
                .filter(|old| old.settings() == b)
                .unwrap_or_else(|| Arc::new(Budget::new(b)))
        });
        let label = || [("upstream", name.to_owned())];
        let gauge = |metric: &str, help: &str| {
            metrics.map_or_else(Gauge::default, |m| {
                let f: Family<Labels1, Gauge> = m.family(metric, help, Family::default);
                f.get_or_create_owned(&label())
            })
        };
        let counter = |metric: &str, help: &str| {
            metrics.map_or_else(Counter::default, |m| {
                let f: Family<Labels1, Counter> = m.family(metric, help, Family::default);
                f.get_or_create_owned(&label())
            })
        };
        let circuit = s.circuit.map(|c| {
            previous
                .and_then(|p| p.circuit.clone())
                .filter(|old| old.settings() == c)
                .unwrap_or_else(|| {
                    let in_flight = gauge(
                        "portico_upstream_in_flight",
                        "Requests in flight to an upstream with a [circuit], by upstream",
                    );
                    let limit = gauge(
                        "portico_upstream_concurrency_limit",
                        "In-flight limit of an upstream with a [circuit] (adaptive or max_requests)",
                    );
                    Arc::new(Circuit::new(c, in_flight, limit))
                })
        });
        let retries = REASONS.map(|reason| {
            metrics.map_or_else(Counter::default, |m| {
                let f: Family<Labels2, Counter> = m.family(
                    "portico_upstream_retries",
                    "Retries (and hedges) sent, by upstream and the failure that caused them",
                    Family::default,
                );
                f.get_or_create_owned(&[("upstream", name.to_owned()), ("reason", reason.into())])
            })
        });
        Resilience {
            budget,
            circuit,
            retries,
            exhausted: counter(
                "portico_retry_budget_exhausted",
                "Retries refused because the upstream's retry budget was spent, by upstream",
            ),
            overloaded: counter(
                "portico_upstream_overloaded",
                "Requests refused at once because an upstream's circuit was full, by upstream",
            ),
        }
    }

    /// Counts a retry for `reason` (one of [`REASONS`]).
    pub fn retried(&self, reason: &str) {
        if let Some(i) = REASONS.iter().position(|r| *r == reason) {
            self.retries[i].inc();
        }
    }

    /// Counts a retry the budget refused.
    pub fn budget_exhausted(&self) {
        self.exhausted.inc();
    }

    /// Counts a request the circuit refused.
    pub fn overloaded(&self) {
        self.overloaded.inc();
    }
}

/// Whether `on` retries a failure of kind `word`.
pub fn retries_on(on: RetryOn, word: &str) -> bool {
    RetryOn::WORDS
        .iter()
        .any(|(w, bit)| *w == word && on.contains(*bit))
}
