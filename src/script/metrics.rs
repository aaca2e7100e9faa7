//! Script metrics in the gateway's registry:
//! - `portico_script_calls_total{script}` and `portico_script_duration_seconds{script}`: hook
//!   calls and their time;
//! - `portico_script_errors_total{script, kind}`: budget, memory, runtime, bad-value,
//!   body-too-large.
//!
//! Handles are resolved when the config compiles; a call bumps a counter and a histogram.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use super::vm::FailKind;
use crate::metrics::Metrics;

type Labels<const N: usize> = [(&'static str, String); N];
type Hist = Family<Labels<1>, Histogram, fn() -> Histogram>;

fn script_histogram() -> Histogram {
    // 1 µs to ~16 ms, ×4 per bucket: a hook's budget is 1 ms by default.
    Histogram::new(exponential_buckets(1e-6, 4.0, 8))
}

/// The script families of one gateway.
#[derive(Debug, Clone)]
pub struct ScriptMetrics {
    calls: Family<Labels<1>, Counter>,
    duration: Hist,
    errors: Family<Labels<2>, Counter>,
}

impl ScriptMetrics {
    /// Registers (or finds) the families.
    pub fn new(m: &Metrics) -> ScriptMetrics {
        ScriptMetrics {
            calls: m.family(
                "portico_script_calls",
                "Script hook calls, by script",
                Family::default,
            ),
            duration: m.family(
                "portico_script_duration_seconds",
                "Time of script hook calls, by script",
                || Family::new_with_constructor(script_histogram as fn() -> Histogram),
            ),
            errors: m.family(
                "portico_script_errors",
                "Script hook failures, by script and kind",
                Family::default,
            ),
        }
    }

    /// The handles of one script.
    pub fn stats(&self, script: &str) -> ScriptStats {
        let label = [("script", script.to_owned())];
        ScriptStats {
            calls: Some(self.calls.get_or_create(&label).clone()),
            duration: Some(self.duration.get_or_create(&label).clone()),
            errors: Some(self.errors.clone()),
            name: script.to_owned(),
        }
    }
}

/// One script's series; the default records nothing (`portico check`).
#[derive(Debug, Default)]
pub struct ScriptStats {
    calls: Option<Counter>,
    duration: Option<Histogram>,
    errors: Option<Family<Labels<2>, Counter>>,
    name: String,
}

impl ScriptStats {
    /// One hook call that took `took`.
    pub fn observe(&self, took: Duration) {
        if let (Some(c), Some(h)) = (&self.calls, &self.duration) {
            c.inc();
            h.observe(took.as_secs_f64());
        }
    }

    /// One failure.
    pub fn error(&self, kind: FailKind) {
        if let Some(e) = &self.errors {
            e.get_or_create(&[
                ("script", self.name.clone()),
                ("kind", kind.as_str().to_owned()),
            ])
            .inc();
        }
    }
}
