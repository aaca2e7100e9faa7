//! The adaptive in-flight limit: a gradient limiter in the style of Netflix
//! concurrency-limits' Gradient2. Two moving averages of the time to response head are kept:
//! a short one (last ~10 samples) and a long one (last ~100, the baseline). Each sample sets
//!
//! ```text
//! gradient  = clamp(1.5 × long / short, 0.5, 1.0)      // 1.0 while latency is normal
//! target    = limit × gradient + sqrt(limit)           // sqrt(limit): room to probe upward
//! limit     = clamp(0.8 × limit + 0.2 × target, min_limit, max_requests)
//! ```
//!
//! When latency rises well above the baseline the gradient falls towards 0.5 and the limit
//! shrinks each sample, so excess requests are refused at once instead of queuing. When it
//! recovers the gradient is 1.0 and the limit grows by about `0.2 × sqrt(limit)` per sample.
//! A failed exchange counts as twice its latency. The limit does not grow while less than
//! half of it is used (no growth without evidence), and a baseline far above the recent
//! latency decays towards it, so a long slow spell does not leave a stale baseline.

/// Gradient limiter state (behind a mutex in `Circuit`; samples are pure arithmetic).
#[derive(Debug, Clone)]
pub struct Gradient {
    limit: f64,
    min: f64,
    max: f64,
    short: f64,
    long: f64,
    samples: u64,
}

impl Gradient {
    /// Starts at `max_requests`.
    pub fn new(min_limit: u32, max_requests: u32) -> Gradient {
        Gradient {
            limit: f64::from(max_requests),
            min: f64::from(min_limit.max(1)),
            max: f64::from(max_requests.max(1)),
            short: 0.0,
            long: 0.0,
            samples: 0,
        }
    }

    /// The limit now.
    pub fn limit(&self) -> u32 {
        self.limit as u32
    }

    /// Takes one sample (`rtt` in seconds) with `in_flight` requests out; returns the limit.
    pub fn sample(&mut self, rtt: f64, failed: bool, in_flight: u32) -> u32 {
        let rtt = if failed { rtt * 2.0 } else { rtt }.max(1e-6);
        if self.samples == 0 {
            self.short = rtt;
            self.long = rtt;
        } else {
            self.short = 0.9 * self.short + 0.1 * rtt;
            self.long = 0.99 * self.long + 0.01 * rtt;
        }
        self.samples += 1;
        if self.long > 2.0 * self.short {
            self.long = 0.95 * self.long + 0.05 * self.short;
        }
        let gradient = (1.5 * self.long / self.short).clamp(0.5, 1.0);
        if gradient >= 1.0 && f64::from(in_flight) < self.limit / 2.0 {
            return self.limit();
        }
        let target = self.limit * gradient + self.limit.sqrt();
        self.limit = (0.8 * self.limit + 0.2 * target).clamp(self.min, self.max);
        self.limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falls_when_latency_rises_tenfold_and_rises_on_recovery() {
        let mut g = Gradient::new(2, 100);
        for _ in 0..200 {
            g.sample(0.005, false, 60);
        }
        assert_eq!(g.limit(), 100, "normal latency keeps the ceiling");
        for _ in 0..30 {
            g.sample(0.050, false, 60);
        }
        let low = g.limit();
        assert!(low < 30, "limit fell to {low}");
        for _ in 0..60 {
            g.sample(0.005, false, 60);
        }
        assert!(
            g.limit() > low + 20,
            "limit rose from {low} to {}",
            g.limit()
        );
    }

    #[test]
    fn stays_within_bounds_and_idles_without_load() {
        let mut g = Gradient::new(5, 50);
        for _ in 0..500 {
            g.sample(0.001, false, 50);
        }
        for _ in 0..500 {
            g.sample(1.0, true, 50);
        }
        assert!(g.limit() >= 5);
        let mut idle = Gradient::new(5, 50);
        idle.limit = 10.0;
        idle.sample(0.001, false, 1);
        assert_eq!(idle.limit(), 10, "no growth while mostly unused");
    }
}
