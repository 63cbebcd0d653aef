//! Exponential backoff with jitter for reconnects and enrollment retries.

use std::time::Duration;

use rand::Rng;

/// Doubles from `min` to `max`; each delay is jittered by ±20 % so many spawners that lost
/// the same master do not come back in lockstep.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    /// A backoff starting at `min` and capped at `max`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            current: min,
        }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let factor = rand::rng().random_range(0.8..=1.2);
        base.mul_f64(factor).min(self.max)
    }

    /// Back to the shortest delay (after a link that worked).
    pub fn reset(&mut self) {
        self.current = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_with_bounded_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(160) && first <= Duration::from_millis(240));
        let mut last = first;
        for _ in 0..20 {
            last = b.next_delay();
            assert!(last <= Duration::from_secs(10));
        }
        assert!(last >= Duration::from_secs(8), "{last:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(240));
    }
}
