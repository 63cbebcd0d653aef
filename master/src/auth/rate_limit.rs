//! Decaying failure counters for login attempts, per account and per address.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts failures per key; each failure adds one, and the count drains by one every
/// `decay`. A key is blocked while its count is at or above its limit.
pub struct RateLimiter {
    account_limit: f64,
    address_limit: f64,
    decay: Duration,
    // std Mutex: held for a few map operations, never across an await.
    scores: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// `account_limit` applies to keys starting with `user:`, `address_limit` to the rest.
    pub fn new(account_limit: f64, address_limit: f64, decay: Duration) -> Self {
        RateLimiter {
            account_limit,
            address_limit,
            decay,
            scores: Mutex::new(HashMap::new()),
        }
    }

    fn limit(&self, key: &str) -> f64 {
        if key.starts_with("user:") {
            self.account_limit
        } else {
            self.address_limit
        }
    }

    fn decayed(&self, score: f64, since: Instant, now: Instant) -> f64 {
        let drained = now.duration_since(since).as_secs_f64() / self.decay.as_secs_f64();
        (score - drained).max(0.0)
    }

    /// How long until every key is allowed again; None when none is blocked.
    pub fn blocked(&self, keys: &[String]) -> Option<Duration> {
        self.blocked_at(keys, Instant::now())
    }

    fn blocked_at(&self, keys: &[String], now: Instant) -> Option<Duration> {
        let scores = self.scores.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|k| {
                let (s, t) = scores.get(k)?;
                let score = self.decayed(*s, *t, now);
                let limit = self.limit(k);
                (score >= limit).then(|| self.decay.mul_f64(score - limit + 1.0))
            })
            .max()
    }

    /// Records a failure for every key.
    pub fn fail(&self, keys: &[String]) {
        self.fail_at(keys, Instant::now());
    }

    fn fail_at(&self, keys: &[String], now: Instant) {
        let mut scores = self.scores.lock().unwrap_or_else(|e| e.into_inner());
        if scores.len() > 100_000 {
            // Bound memory under a spray of names: forget keys that have decayed to zero.
            let decay = self.decay;
            scores.retain(|_, (s, t)| {
                *s - now.duration_since(*t).as_secs_f64() / decay.as_secs_f64() > 0.0
            });
        }
        for k in keys {
            let entry = scores.entry(k.clone()).or_insert((0.0, now));
            let score = self.decayed(entry.0, entry.1, now) + 1.0;
            *entry = (score, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_limit_and_decays() {
        let rl = RateLimiter::new(3.0, 10.0, Duration::from_secs(10));
        let keys = vec!["user:bob".to_owned(), "addr:1.2.3.4".to_owned()];
        let t0 = Instant::now();
        assert!(rl.blocked_at(&keys, t0).is_none());
        for _ in 0..3 {
            rl.fail_at(&keys, t0);
        }
        let wait = rl.blocked_at(&keys, t0).expect("blocked after 3 failures");
        assert_eq!(wait, Duration::from_secs(10));
        // Another account from the same address is not blocked by bob's failures.
        let alice = ["user:alice".to_owned(), "addr:1.2.3.4".to_owned()];
        assert!(rl.blocked_at(&alice, t0).is_none());
        // One decay period later one failure has drained: allowed again.
        assert!(rl.blocked_at(&keys, t0 + Duration::from_secs(11)).is_none());
        // 1.9 left: one more failure (2.9) is still allowed, a second (3.9) blocks.
        let t1 = t0 + Duration::from_secs(11);
        rl.fail_at(&keys, t1);
        assert!(rl.blocked_at(&keys, t1).is_none());
        rl.fail_at(&keys, t1);
        assert!(rl.blocked_at(&keys, t0 + Duration::from_secs(11)).is_some());
    }
}
