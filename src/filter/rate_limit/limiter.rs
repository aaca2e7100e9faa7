//! One policy's GCRA limiter: governor's keyed `RateLimiter` over a capped store, with counters
//! and the numbers the RateLimit headers need.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, QuantaClock};
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::{Quota, RateLimiter};

use super::store::{CappedStore, SharedStore};

/// What one check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted; `remaining` more requests would be admitted right now, and the bucket is
    /// full again after `full_in`.
    Admitted {
        /// Requests left in the burst.
        remaining: u32,
        /// Time until the bucket is full.
        full_in: Duration,
    },
    /// Refused; the next request on this key is admitted after `retry_after`.
    Limited {
        /// Time to wait.
        retry_after: Duration,
    },
}

/// A keyed GCRA limiter. Generic over the clock so tests drive it with a fake one.
pub struct Limiter<C: Clock = QuantaClock> {
    gcra: RateLimiter<u64, SharedStore, C, StateInformationMiddleware>,
    store: std::sync::Arc<CappedStore>,
    interval: Duration,
    burst: u32,
    admitted: AtomicU64,
    limited: AtomicU64,
    /// Set once the background sweeper runs for this limiter.
    pub(super) sweeper_started: std::sync::OnceLock<()>,
}

impl<C: Clock> std::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("interval", &self.interval)
            .field("burst", &self.burst)
            .field("keys", &self.len())
            .field("admitted", &self.admitted())
            .field("limited", &self.limited())
            .finish()
    }
}

impl<C: Clock> Limiter<C> {
    /// `count` requests per `per`, bursts of `burst`, at most `max_keys` keys tracked.
    pub fn new(count: u32, per: Duration, burst: u32, max_keys: usize, clock: C) -> Limiter<C> {
        let interval = (per / count.max(1)).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(interval)
            .expect("interval is at least 1ns")
            .allow_burst(burst);
        let store = std::sync::Arc::new(CappedStore::new(max_keys));
        Limiter {
            gcra: RateLimiter::<u64, SharedStore, C, NoOpMiddleware<C::Instant>>::new(
                quota,
                SharedStore(store.clone()),
                clock,
            )
            .with_middleware::<StateInformationMiddleware>(),
            store,
            interval,
            burst: burst.get(),
            admitted: AtomicU64::new(0),
            limited: AtomicU64::new(0),
            sweeper_started: std::sync::OnceLock::new(),
        }
    }

    /// Takes one cell from `key`'s bucket if it has one.
    pub fn check(&self, key: u64) -> Outcome {
        match self.gcra.check_key(&key) {
            Ok(snapshot) => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
                let remaining = snapshot.remaining_burst_capacity();
                Outcome::Admitted {
                    remaining,
                    full_in: self.interval * self.burst.saturating_sub(remaining),
                }
            }
            Err(not_until) => {
                self.limited.fetch_add(1, Ordering::Relaxed);
                Outcome::Limited {
                    retry_after: not_until.wait_time_from(self.gcra.clock().now()),
                }
            }
        }
    }

    /// Drops keys whose buckets are full again (indistinguishable from new ones) and gives
    /// memory back when the map emptied out.
    pub fn sweep(&self) {
        let store_len_before = self.len();
        self.gcra.retain_recent();
        if self.len() < store_len_before / 2 || self.is_empty() {
            self.gcra.shrink_to_fit();
        }
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.gcra.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Requests admitted so far.
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }

    /// Requests refused so far.
    pub fn limited(&self) -> u64 {
        self.limited.load(Ordering::Relaxed)
    }

    /// Checks that went to the shared overflow bucket because `max_keys` keys were tracked.
    pub fn overflowed(&self) -> u64 {
        self.store.overflowed()
    }

    /// The key store (for memory checks).
    pub fn store(&self) -> &CappedStore {
        &self.store
    }

    /// Time one cell takes to come back.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Bucket size.
    pub fn burst(&self) -> u32 {
        self.burst
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limiter(
        count: u32,
        per: Duration,
        burst: u32,
        max_keys: usize,
    ) -> (Limiter<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (
            Limiter::new(count, per, burst, max_keys, clock.clone()),
            clock,
        )
    }

    #[test]
    fn burst_then_refill() {
        let (l, clock) = limiter(10, Duration::from_secs(1), 3, 100);
        for left in [2, 1, 0] {
            assert!(matches!(l.check(7), Outcome::Admitted { remaining, .. } if remaining == left));
        }
        let Outcome::Limited { retry_after } = l.check(7) else {
            panic!("burst of 3 exhausted")
        };
        assert_eq!(retry_after, Duration::from_millis(100));
        clock.advance(Duration::from_millis(99));
        assert!(
            matches!(l.check(7), Outcome::Limited { retry_after } if retry_after == Duration::from_millis(1))
        );
        clock.advance(Duration::from_millis(1));
        assert!(matches!(l.check(7), Outcome::Admitted { remaining: 0, .. }));
        clock.advance(Duration::from_secs(1));
        assert!(
            matches!(l.check(7), Outcome::Admitted { remaining: 2, full_in } if full_in == Duration::from_millis(100))
        );
        assert!(
            matches!(l.check(8), Outcome::Admitted { remaining: 2, .. }),
            "keys are independent"
        );
        assert_eq!((l.admitted(), l.limited()), (6, 2));
    }

    #[test]
    fn slow_rates_wait_whole_periods() {
        let (l, clock) = limiter(1, Duration::from_secs(60), 1, 10);
        assert!(matches!(l.check(1), Outcome::Admitted { .. }));
        assert!(
            matches!(l.check(1), Outcome::Limited { retry_after } if retry_after == Duration::from_secs(60))
        );
        clock.advance(Duration::from_secs(59));
        assert!(
            matches!(l.check(1), Outcome::Limited { retry_after } if retry_after == Duration::from_secs(1))
        );
    }

    #[test]
    fn concurrent_checks_on_one_key_never_over_admit() {
        let (l, _clock) = limiter(1, Duration::from_secs(3600), 250, 10);
        let l = Arc::new(l);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let l = l.clone();
                std::thread::spawn(move || {
                    (0..1_000)
                        .filter(|_| matches!(l.check(42), Outcome::Admitted { .. }))
                        .count()
                })
            })
            .collect();
        let admitted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(admitted, 250, "exactly the burst, with the clock frozen");
        assert_eq!(l.limited(), 8_000 - 250);
    }

    #[test]
    fn a_flood_of_distinct_keys_stays_under_the_cap() {
        let max = 10_000;
        let (l, clock) = limiter(10, Duration::from_secs(1), 5, max);
        for k in 0..1_000_000u64 {
            // Spread keys like digests would be.
            let key = k.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            l.check(key);
            if k % 100_000 == 0 {
                assert!(l.len() <= max);
            }
        }
        assert_eq!(l.len(), max);
        assert!(l.overflowed() >= 990_000);
        let cap_before = l.store().capacity();
        assert!(
            cap_before < max * 4,
            "slots stay near the cap: {cap_before}"
        );
        // Idle keys are dropped once their buckets are full again, and memory is returned.
        clock.advance(Duration::from_secs(2));
        l.sweep();
        assert_eq!(l.len(), 0);
        assert!(l.store().capacity() < cap_before);
        // New keys are tracked again after the sweep.
        assert!(matches!(l.check(1), Outcome::Admitted { remaining: 4, .. }));
        assert_eq!(l.len(), 1);
    }
}
