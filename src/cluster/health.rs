//! The store's health: counts consecutive errors, switches to local decisions for a backoff
//! period after `error_threshold` of them, then lets one probe call through at a time until
//! the store answers again. Time is passed in, so tests drive it with a fake clock.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Whether to call the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Call it; `probe` when this call tests a store that was failing.
    Call {
        /// Whether this is the one probe of a backoff period.
        probe: bool,
    },
    /// Decide locally without calling.
    Local,
}

/// A change of mode a caller logs and counts (once per switch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// No change.
    None,
    /// Healthy → deciding locally.
    Degraded,
    /// Deciding locally → shared again.
    Recovered,
}

/// Lock-free health state of one store.
#[derive(Debug)]
pub struct Health {
    threshold: u32,
    backoff: Duration,
    errors_in_row: AtomicU32,
    degraded: AtomicBool,
    /// When (nanoseconds on the caller's clock) the next probe may go out.
    retry_at: AtomicU64,
    probing: AtomicBool,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Health {
    /// Healthy; degrades after `threshold` consecutive errors for `backoff`.
    pub fn new(threshold: u32, backoff: Duration) -> Health {
        Health {
            threshold: threshold.max(1),
            backoff,
            errors_in_row: AtomicU32::new(0),
            degraded: AtomicBool::new(false),
            retry_at: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    /// Whether decisions are made locally now.
    pub fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Acquire)
    }

    /// Decides whether a call at `now` goes to the store.
    pub fn gate(&self, now: Duration) -> Gate {
        if !self.degraded.load(Ordering::Acquire) {
            return Gate::Call { probe: false };
        }
        if nanos(now) < self.retry_at.load(Ordering::Acquire) {
            return Gate::Local;
        }
        // One probe at a time: the others keep deciding locally and pay no timeout.
        if self.probing.swap(true, Ordering::AcqRel) {
            return Gate::Local;
        }
        Gate::Call { probe: true }
    }

    /// Records an answer from the store.
    pub fn succeeded(&self, probe: bool) -> Switch {
        self.errors_in_row.store(0, Ordering::Release);
        if probe {
            self.probing.store(false, Ordering::Release);
        }
        if self.degraded.swap(false, Ordering::AcqRel) {
            Switch::Recovered
        } else {
            Switch::None
        }
    }

    /// Records a failed call at `now`.
    pub fn failed(&self, now: Duration, probe: bool) -> Switch {
        let until = nanos(now).saturating_add(nanos(self.backoff));
        if probe {
            self.retry_at.store(until, Ordering::Release);
            self.probing.store(false, Ordering::Release);
            return Switch::None;
        }
        let n = self.errors_in_row.fetch_add(1, Ordering::AcqRel) + 1;
        if n < self.threshold {
            return Switch::None;
        }
        // Set the deadline before the flag, so no caller sees "degraded" with an old deadline.
        self.retry_at.store(until, Ordering::Release);
        if self.degraded.swap(true, Ordering::AcqRel) {
            Switch::None
        } else {
            Switch::Degraded
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn degrades_after_threshold_then_probes_once_per_backoff() {
        let h = Health::new(3, 1000 * MS);
        assert_eq!(h.gate(Duration::ZERO), Gate::Call { probe: false });
        assert_eq!(h.failed(MS, false), Switch::None);
        assert_eq!(h.failed(2 * MS, false), Switch::None);
        assert_eq!(h.failed(3 * MS, false), Switch::Degraded);
        assert_eq!(h.failed(4 * MS, false), Switch::None, "logged once");
        assert!(h.is_degraded());
        assert_eq!(h.gate(500 * MS), Gate::Local, "backing off");
        assert_eq!(h.gate(1004 * MS), Gate::Call { probe: true });
        assert_eq!(h.gate(1005 * MS), Gate::Local, "one probe at a time");
        assert_eq!(h.failed(1025 * MS, true), Switch::None);
        assert_eq!(
            h.gate(1500 * MS),
            Gate::Local,
            "a failed probe restarts the backoff"
        );
        assert_eq!(h.gate(2025 * MS), Gate::Call { probe: true });
        assert_eq!(h.succeeded(true), Switch::Recovered);
        assert!(!h.is_degraded());
        assert_eq!(h.gate(2026 * MS), Gate::Call { probe: false });
    }

    #[test]
    fn an_answer_resets_the_error_count() {
        let h = Health::new(3, 1000 * MS);
        h.failed(Duration::ZERO, false);
        h.failed(Duration::ZERO, false);
        assert_eq!(h.succeeded(false), Switch::None);
        assert_eq!(h.failed(Duration::ZERO, false), Switch::None);
        assert_eq!(h.failed(Duration::ZERO, false), Switch::None);
        assert!(!h.is_degraded());
    }
}
