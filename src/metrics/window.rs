//! A sliding minute of one route's traffic for `/admin/stats`: 60 one-second slots of atomic
//! counters and a fixed log-scale latency histogram, so recording is a few relaxed atomic adds
//! and never allocates.
//!
//! A slot is reused when its second comes round again; the request that first sees the new
//! second clears it. Two requests racing over that clear can lose a count: fine for a status
//! page, and the Prometheus counters stay exact.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Seconds in the window.
pub const SECONDS: usize = 60;
/// Latency buckets: 4 per power of two of microseconds, up to 2^27 µs (~134 s).
const BUCKETS: usize = 27 * 4;

struct Slot {
    /// The second (since process start) this slot counts, +1 (0: never used).
    second: AtomicU64,
    requests: AtomicU32,
    errors: AtomicU32,
    latency: [AtomicU32; BUCKETS],
}

/// One route's (or BFF endpoint's) last minute.
pub struct Window {
    slots: Box<[Slot]>,
}

impl std::fmt::Debug for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Window").finish_non_exhaustive()
    }
}

/// What the last minute adds up to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Requests answered in the window.
    pub requests: u64,
    /// Of which 5xx.
    pub errors: u64,
    /// Requests per second over the window.
    pub rate: f64,
    /// Share of 5xx answers (0 when idle).
    pub error_rate: f64,
    /// Median latency in milliseconds (bucket upper bound; 0 when idle).
    pub p50_ms: f64,
    /// 99th percentile latency in milliseconds.
    pub p99_ms: f64,
}

fn now_second() -> u64 {
    second_of(Instant::now())
}

/// The window's second of `at` (1 for the process's first second).
fn second_of(at: Instant) -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    at.saturating_duration_since(*START.get_or_init(Instant::now))
        .as_secs()
        + 1
}

impl Default for Window {
    fn default() -> Self {
        let slot = || Slot {
            second: AtomicU64::new(0),
            requests: AtomicU32::new(0),
            errors: AtomicU32::new(0),
            latency: std::array::from_fn(|_| AtomicU32::new(0)),
        };
        Window {
            slots: (0..SECONDS).map(|_| slot()).collect(),
        }
    }
}

impl Window {
    /// Counts one answer, given at `now` (a clock reading the caller already has).
    #[inline]
    pub fn record(&self, now: Instant, server_error: bool, elapsed: Duration) {
        self.record_at(second_of(now), server_error, elapsed);
    }

    fn record_at(&self, second: u64, server_error: bool, elapsed: Duration) {
        let slot = &self.slots[(second % SECONDS as u64) as usize];
        let seen = slot.second.load(Relaxed);
        if seen != second
            && slot
                .second
                .compare_exchange(seen, second, Relaxed, Relaxed)
                .is_ok()
        {
            slot.requests.store(0, Relaxed);
            slot.errors.store(0, Relaxed);
            slot.latency.iter().for_each(|b| b.store(0, Relaxed));
        }
        slot.requests.fetch_add(1, Relaxed);
        if server_error {
            slot.errors.fetch_add(1, Relaxed);
        }
        slot.latency[bucket(elapsed)].fetch_add(1, Relaxed);
    }

    /// The last minute (the current, partial second included).
    pub fn summary(&self) -> Summary {
        self.summary_at(now_second())
    }

    fn summary_at(&self, now: u64) -> Summary {
        let (mut requests, mut errors) = (0u64, 0u64);
        let mut hist = [0u64; BUCKETS];
        for slot in self.slots.iter() {
            let s = slot.second.load(Relaxed);
            if s == 0 || s + (SECONDS as u64) <= now || s > now {
                continue;
            }
            requests += u64::from(slot.requests.load(Relaxed));
            errors += u64::from(slot.errors.load(Relaxed));
            for (h, b) in hist.iter_mut().zip(slot.latency.iter()) {
                *h += u64::from(b.load(Relaxed));
            }
        }
        // A young process has not lived a whole minute yet.
        let span = now.min(SECONDS as u64) as f64;
        Summary {
            requests,
            errors,
            rate: requests as f64 / span,
            error_rate: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p50_ms: quantile(&hist, 0.50),
            p99_ms: quantile(&hist, 0.99),
        }
    }
}

/// The bucket of a latency: 4 sub-buckets per power of two of microseconds.
fn bucket(elapsed: Duration) -> usize {
    let us = elapsed.as_micros().clamp(1, u128::from(u64::MAX)) as u64;
    let exp = 63 - us.leading_zeros() as usize;
    let sub = if exp >= 2 {
        ((us >> (exp - 2)) & 3) as usize
    } else {
        0
    };
    (exp * 4 + sub).min(BUCKETS - 1)
}

/// The upper bound of bucket `i`, in milliseconds.
fn upper_ms(i: usize) -> f64 {
    let (exp, sub) = (i / 4, i % 4);
    let base = (1u64 << exp) as f64;
    let upper = if exp >= 2 {
        base + base * (sub as f64 + 1.0) / 4.0
    } else {
        base * 2.0
    };
    upper / 1000.0
}

fn quantile(hist: &[u64; BUCKETS], q: f64) -> f64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return upper_ms(i);
        }
    }
    upper_ms(BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rate_errors_and_percentiles() {
        let w = Window::default();
        for i in 0..100u64 {
            let ms = if i < 98 { 10 } else { 500 };
            w.record_at(100 + i % 10, i % 10 == 0, Duration::from_millis(ms));
        }
        let s = w.summary_at(109);
        assert_eq!(s.requests, 100);
        assert_eq!(s.errors, 10);
        assert!((s.rate - 100.0 / 60.0).abs() < 1e-9);
        assert!((s.error_rate - 0.1).abs() < 1e-9);
        assert!(s.p50_ms >= 10.0 && s.p50_ms <= 12.5, "{s:?}");
        assert!(s.p99_ms >= 500.0 && s.p99_ms <= 625.0, "{s:?}");
    }

    #[test]
    fn old_seconds_fall_out_and_slots_are_reused() {
        let w = Window::default();
        w.record_at(5, false, Duration::from_millis(1));
        assert_eq!(w.summary_at(64).requests, 1);
        assert_eq!(w.summary_at(65).requests, 0);
        // Second 65 shares the slot of second 5: the old count is cleared.
        w.record_at(65, true, Duration::from_millis(1));
        let s = w.summary_at(65);
        assert_eq!((s.requests, s.errors), (1, 1));
    }

    #[test]
    fn buckets_are_monotonic() {
        let mut last = 0;
        for us in [1u64, 2, 3, 4, 5, 7, 8, 100, 1000, 10_000, 1 << 30] {
            let b = bucket(Duration::from_micros(us));
            assert!(b >= last);
            assert!(upper_ms(b) * 1000.0 >= us as f64 || b == BUCKETS - 1);
            last = b;
        }
    }
}
