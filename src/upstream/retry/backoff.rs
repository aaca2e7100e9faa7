//! Full-jitter exponential backoff: the wait before retry `n` is uniform in
//! `[0, min(max, base × 2^(n-1))]` (AWS architecture blog, "Exponential Backoff and Jitter"),
//! so clients that failed together do not retry together.

use std::time::Duration;

use crate::upstream::balance::rng::Rng;

/// `backoff = { base, max }`, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Upper bound of the first wait.
    pub base: Duration,
    /// Largest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(25),
            max: Duration::from_millis(250),
        }
    }
}

impl Backoff {
    /// The ceiling of the wait before retry `retry` (1 for the first retry).
    pub fn ceiling(&self, retry: u32) -> Duration {
        let shift = retry.saturating_sub(1).min(20);
        self.base.saturating_mul(1 << shift).min(self.max)
    }

    /// The wait before retry `retry`: uniform in `[0, ceiling]`.
    pub fn delay(&self, retry: u32, rng: &mut Rng) -> Duration {
        self.ceiling(retry).mul_f64(rng.unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_up_to_max() {
        let b = Backoff::default();
        let ms = |n| b.ceiling(n).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5), ms(40)],
            [25, 50, 100, 200, 250, 250]
        );
    }

    #[test]
    fn delays_are_jittered_within_the_ceiling() {
        let b = Backoff::default();
        let mut rng = Rng::seeded(7);
        let waits: Vec<Duration> = (0..200).map(|_| b.delay(2, &mut rng)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(50)));
        let short = waits
            .iter()
            .filter(|w| **w < Duration::from_millis(25))
            .count();
        assert!(
            (60..140).contains(&short),
            "uniform spread, got {short} of 200 below half"
        );
    }
}
