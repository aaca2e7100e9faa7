//! The retry budget of one upstream: retries may be at most `ratio` of the requests of the last
//! ten seconds (retries themselves are not counted as requests), plus a steady allowance of
//! `min_per_second` retries every second so low traffic can still retry. This is what keeps a
//! failing upstream from facing a retry storm. Counts live in ten one-second buckets of atomics
//! (a slightly stale bucket under a race only shifts a count by one second).

use std::sync::atomic::{AtomicU64, Ordering};

/// Seconds of history the ratio looks at.
const WINDOW: usize = 10;

/// `budget = { ratio, min_per_second }`, compiled. The ratio is kept in millionths so the
/// settings compare exactly on reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSettings {
    /// Retries per request, in millionths (`0.2` → 200,000).
    pub ratio_ppm: u32,
    /// Retries allowed every second whatever the ratio.
    pub min_per_second: u32,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        BudgetSettings {
            ratio_ppm: 200_000,
            min_per_second: 10,
        }
    }
}

#[derive(Debug, Default)]
struct Bucket {
    /// The second this bucket counts (seconds of `clock_ms`, plus one so 0 means unused).
    second: AtomicU64,
    requests: AtomicU64,
    /// Retries taken from the ratio.
    retries: AtomicU64,
    /// Retries taken from the per-second allowance.
    steady: AtomicU64,
}

/// Request and retry counts of one upstream, shared by its generations across reloads.
#[derive(Debug)]
pub struct Budget {
    settings: BudgetSettings,
    buckets: [Bucket; WINDOW],
}

impl Budget {
    /// An empty budget.
    pub fn new(settings: BudgetSettings) -> Budget {
        Budget {
            settings,
            buckets: Default::default(),
        }
    }

    /// Its settings.
    pub fn settings(&self) -> BudgetSettings {
        self.settings
    }

    /// The bucket of second `now_ms / 1000`, cleared if it still holds an older second.
    fn bucket(&self, now_ms: u64) -> &Bucket {
        let second = now_ms / 1000 + 1;
        let b = &self.buckets[(second as usize) % WINDOW];
        let seen = b.second.load(Ordering::Acquire);
        if seen != second
            && b.second
                .compare_exchange(seen, second, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            b.requests.store(0, Ordering::Relaxed);
            b.retries.store(0, Ordering::Relaxed);
            b.steady.store(0, Ordering::Relaxed);
        }
        b
    }

    /// Counts a request (a first try) at `now_ms`.
    #[inline]
    pub fn request(&self, now_ms: u64) {
        self.bucket(now_ms).requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one retry from the budget at `now_ms`; false when the budget is spent (the
    /// caller then answers with the failure it has).
    pub fn try_retry(&self, now_ms: u64) -> bool {
        let current = self.bucket(now_ms);
        let min = u64::from(self.settings.min_per_second);
        if current.steady.fetch_add(1, Ordering::Relaxed) < min {
            return true;
        }
        let second = now_ms / 1000 + 1;
        let (mut requests, mut retries) = (0u64, 0u64);
        for b in &self.buckets {
            let s = b.second.load(Ordering::Acquire);
            if s != 0 && s + (WINDOW as u64) > second && s <= second {
                requests += b.requests.load(Ordering::Relaxed);
                retries += b.retries.load(Ordering::Relaxed);
            }
        }
        // retries + 1 <= ratio × requests, in integers.
        let allowed = (retries + 1) * 1_000_000 <= requests * u64::from(self.settings.ratio_ppm);
        if allowed {
            current.retries.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(ratio_ppm: u32, min_per_second: u32) -> Budget {
        Budget::new(BudgetSettings {
            ratio_ppm,
            min_per_second,
        })
    }

    #[test]
    fn ratio_of_recent_requests() {
        let b = budget(200_000, 0);
        for _ in 0..100 {
            b.request(5_000);
        }
        let granted = (0..100).filter(|_| b.try_retry(5_500)).count();
        assert_eq!(granted, 20);
        // Ten seconds later those requests no longer count.
        assert!(!b.try_retry(16_000));
    }

    #[test]
    fn steady_allowance_each_second_without_reserve() {
        let b = budget(200_000, 3);
        let first = (0..10).filter(|_| b.try_retry(1_000)).count();
        assert_eq!(
            first, 3,
            "no start-up reserve beyond one second's allowance"
        );
        let next = (0..10).filter(|_| b.try_retry(2_000)).count();
        assert_eq!(next, 3);
    }

    #[test]
    fn both_allowances_add_up() {
        let b = budget(500_000, 2);
        for _ in 0..10 {
            b.request(3_000);
        }
        let granted = (0..50).filter(|_| b.try_retry(3_100)).count();
        assert_eq!(granted, 2 + 5);
    }
}
