//! Throttling of password and enrollment attempts: decaying failure scores per source, per
//! (source, user) and per user, with a backoff that doubles up to a cap. It slows whoever
//! keeps failing, never the account's owner elsewhere: the per-user score only applies to
//! sources that have failed recently themselves.
//!
//! An attempt is charged as a failure when it is admitted, before the password is hashed,
//! in the same critical section as the check, so N concurrent guesses cannot all pass the
//! check before any of them is counted. A success gives the charge back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How one kind of key forgives and slows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    /// Failures allowed before any wait.
    pub free: u32,
    /// Wait after the `free`-th failure; each further failure doubles it.
    pub base: Duration,
    /// Longest wait.
    pub cap: Duration,
    /// One failure is forgotten per `decay`, continuously.
    pub decay: Duration,
}

impl Policy {
    /// Wait imposed after a failure that brought the score to `score`.
    pub fn wait(&self, score: f64) -> Duration {
        // Rounded: a failure half forgotten still counts, so decay between attempts does
        // not undo the doubling.
        let failures = score.round();
        let free = f64::from(self.free);
        if failures < free {
            return Duration::ZERO;
        }
        // Clamped so the power of two stays finite; the cap is reached long before.
        let doublings = (failures - free).min(30.0);
        self.base.mul_f64(doublings.exp2()).min(self.cap)
    }
}

/// The numbers Exile uses (README, "Login throttling").
pub mod policy {
    use super::Policy;
    use std::time::Duration;

    /// Per source address, whatever the account: a NAT'd office mistyping stays free.
    pub const SOURCE: Policy = Policy {
        free: 20,
        base: Duration::from_secs(1),
        cap: Duration::from_secs(60),
        decay: Duration::from_secs(30),
    };
    /// Per source and account: the attacker guessing one account from one place.
    pub const PAIR: Policy = Policy {
        free: 5,
        base: Duration::from_secs(2),
        cap: Duration::from_secs(300),
        decay: Duration::from_secs(60),
    };
    /// Per account, over all sources; consulted only for sources with recent failures, so
    /// it slows a spread-out attack without locking the owner out.
    pub const USER: Policy = Policy {
        free: 50,
        base: Duration::from_secs(1),
        cap: Duration::from_secs(60),
        decay: Duration::from_secs(10),
    };
    /// Wrong current passwords given to ChangePassword by one session: a stolen session
    /// cannot guess the password at hash speed, and the owner, signing in again, has a
    /// session of its own.
    pub const PASSWORD_CHANGE: Policy = Policy {
        free: 3,
        base: Duration::from_secs(2),
        cap: Duration::from_secs(300),
        decay: Duration::from_secs(60),
    };
    /// Enrollment tokens tried per source.
    pub const ENROLL: Policy = Policy {
        free: 10,
        base: Duration::from_secs(2),
        cap: Duration::from_secs(300),
        decay: Duration::from_secs(60),
    };
}

/// A throttled key: what is limited, and by which policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// A client address.
    Source(String),
    /// A client address trying one account.
    Pair(String, String),
    /// An account.
    User(String),
    /// A client address trying enrollment tokens.
    Enroll(String),
    /// A session (by its hash) giving ChangePassword its current password.
    PasswordChange(String),
}

impl Key {
    /// The policy of this key, given the address-and-account policy in force.
    fn policy(&self, pair: Policy) -> Policy {
        match self {
            Key::Source(_) => policy::SOURCE,
            Key::Pair(..) => pair,
            Key::User(_) => policy::USER,
            Key::Enroll(_) => policy::ENROLL,
            Key::PasswordChange(_) => policy::PASSWORD_CHANGE,
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Score {
    /// Failures, drained by the policy's decay since `at`.
    failures: f64,
    at: Instant,
    /// No attempt is admitted before this.
    until: Instant,
}

impl Score {
    fn current(&self, p: &Policy, now: Instant) -> f64 {
        let drained = now.saturating_duration_since(self.at).as_secs_f64() / p.decay.as_secs_f64();
        (self.failures - drained).max(0.0)
    }
}

/// Keys kept before decayed ones are dropped (bounds memory under a spray of names).
const PRUNE_ABOVE: usize = 100_000;

/// Where the address-and-account policy in force comes from (the run-time settings), read
/// once per attempt so a change applies from the next one.
pub type PairPolicy = Box<dyn Fn() -> Policy + Send + Sync>;

/// The scores of every key.
pub struct Throttle {
    // std Mutex: held for a few map operations, never across an await.
    scores: Mutex<HashMap<Key, Score>>,
    pair: PairPolicy,
}

impl Default for Throttle {
    /// The fixed numbers of [`policy`].
    fn default() -> Self {
        Throttle::new(Box::new(|| policy::PAIR))
    }
}

/// An admitted attempt, charged as a failure until it is settled. Dropped unsettled (the
/// request went away while its password was being hashed) it stays a failure.
#[must_use = "settle the attempt with succeeded() or not_judged()"]
pub struct Attempt<'a> {
    throttle: &'a Throttle,
    /// Each charged key with the wait its failure earns.
    keys: Vec<(Key, Duration)>,
    /// The address-and-account policy it was admitted under.
    pair: Policy,
    settled: bool,
}

impl Throttle {
    /// A throttle whose address-and-account policy is read from `pair` at each attempt.
    pub fn new(pair: PairPolicy) -> Self {
        Throttle {
            scores: Mutex::default(),
            pair,
        }
    }

    /// Admits an attempt on `keys` and charges it, or says how long to wait. `conditional`
    /// keys are charged too but only hold the attempt back when some key of `keys` already
    /// has failures.
    pub fn admit(&self, keys: Vec<Key>, conditional: Vec<Key>) -> Result<Attempt<'_>, Duration> {
        self.admit_at(keys, conditional, Instant::now())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Score>> {
        self.scores.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn admit_at(
        &self,
        mut keys: Vec<Key>,
        conditional: Vec<Key>,
        now: Instant,
    ) -> Result<Attempt<'_>, Duration> {
        let pair = (self.pair)();
        let mut scores = self.lock();
        let suspicious = keys.iter().any(|k| {
            scores
                .get(k)
                .is_some_and(|s| s.current(&k.policy(pair), now) > 0.0)
        });
        let checked = if suspicious {
            keys.len() + conditional.len()
        } else {
            keys.len()
        };
        keys.extend(conditional);
        let wait = keys[..checked]
            .iter()
            .filter_map(|k| scores.get(k))
            .map(|s| s.until.saturating_duration_since(now))
            .max()
            .unwrap_or_default();
        if !wait.is_zero() {
            return Err(wait);
        }
        if scores.len() > PRUNE_ABOVE {
            scores.retain(|k, s| s.current(&k.policy(pair), now) > 0.0 || s.until > now);
        }
        let keys = keys
            .into_iter()
            .map(|k| {
                let p = k.policy(pair);
                let s = scores.entry(k.clone()).or_insert(Score {
                    failures: 0.0,
                    at: now,
                    until: now,
                });
                s.failures = s.current(&p, now) + 1.0;
                s.at = now;
                let wait = p.wait(s.failures);
                s.until = s.until.max(now + wait);
                (k, wait)
            })
            .collect();
        Ok(Attempt {
            throttle: self,
            keys,
            pair,
            settled: false,
        })
    }

    /// How long `key` must wait at `now` (tests and diagnostics).
    #[cfg(test)]
    fn wait_of(&self, key: &Key, now: Instant) -> Duration {
        self.lock()
            .get(key)
            .map(|s| s.until.saturating_duration_since(now))
            .unwrap_or_default()
    }

    #[cfg(test)]
    fn score_of(&self, key: &Key, now: Instant) -> f64 {
        self.lock()
            .get(key)
            .map(|s| s.current(&key.policy((self.pair)()), now))
            .unwrap_or_default()
    }
}

impl Attempt<'_> {
    /// The attempt succeeded: its charge is given back, and a source's failures on this
    /// account are forgotten.
    pub fn succeeded(mut self) {
        self.settle(Instant::now(), true, true);
    }

    /// The attempt was never judged (no hash ran: the master was busy, or the store
    /// failed): its charge is given back.
    pub fn not_judged(mut self) {
        self.settle(Instant::now(), true, false);
    }

    /// The attempt failed: the backoff runs from now, when the failure is known.
    pub fn failed(mut self) {
        self.settle(Instant::now(), false, false);
    }

    fn settle(&mut self, now: Instant, refund: bool, forget_pair: bool) {
        if self.settled {
            return;
        }
        self.settled = true;
        let mut scores = self.throttle.lock();
        for (k, wait) in &self.keys {
            let p = k.policy(self.pair);
            if forget_pair && matches!(k, Key::Pair(..)) {
                scores.remove(k);
                continue;
            }
            let Some(s) = scores.get_mut(k) else { continue };
            if refund {
                s.failures = (s.current(&p, now) - 1.0).max(0.0);
                s.at = now;
                // Back to the wait the remaining failures earned, counted from now.
                s.until = s.until.min(now + p.wait(s.failures));
            } else if !wait.is_zero() {
                s.until = s.until.max(now + *wait);
            }
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.settle(Instant::now(), false, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(a: &str) -> Key {
        Key::Source(a.into())
    }
    fn pair(a: &str, u: &str) -> Key {
        Key::Pair(a.into(), u.into())
    }
    fn user(u: &str) -> Key {
        Key::User(u.into())
    }

    /// Login keys of `addr` trying `name`, as [`crate::auth::Auth::login`] builds them.
    fn login<'t>(
        t: &'t Throttle,
        addr: &str,
        name: &str,
        now: Instant,
    ) -> Result<Attempt<'t>, Duration> {
        t.admit_at(vec![src(addr), pair(addr, name)], vec![user(name)], now)
    }

    fn fail_at(mut a: Attempt<'_>, now: Instant) {
        a.settle(now, false, false);
    }

    fn succeed_at(mut a: Attempt<'_>, now: Instant) {
        a.settle(now, true, true);
    }

    #[test]
    fn waits_double_up_to_the_cap() {
        let p = policy::PAIR;
        assert_eq!(p.wait(4.4), Duration::ZERO);
        assert_eq!(p.wait(4.6), Duration::from_secs(2));
        assert_eq!(p.wait(5.0), Duration::from_secs(2));
        assert_eq!(p.wait(6.0), Duration::from_secs(4));
        assert_eq!(p.wait(9.4), Duration::from_secs(32));
        assert_eq!(p.wait(1e9), Duration::from_secs(300));
    }

    #[test]
    fn the_attacker_is_slowed_and_the_owner_elsewhere_is_not() {
        let t = Throttle::default();
        let t0 = Instant::now();
        for i in 0..5 {
            let a = login(&t, "6.6.6.6", "admin", t0).expect("free failures");
            fail_at(a, t0 + Duration::from_millis(i));
        }
        let at = t0 + Duration::from_millis(10);
        let wait = login(&t, "6.6.6.6", "admin", at)
            .err()
            .expect("blocked after 5");
        assert!(
            wait > Duration::from_secs(1) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        // The owner, from an address with no failures, is admitted at once and succeeds.
        succeed_at(
            login(&t, "10.0.0.1", "admin", at).expect("owner admitted"),
            at,
        );
        // The attacker tries again when told: admitted, fails, waits twice as long.
        let t1 = at + wait;
        fail_at(
            login(&t, "6.6.6.6", "admin", t1).expect("after the wait"),
            t1,
        );
        assert_eq!(
            t.wait_of(&pair("6.6.6.6", "admin"), t1),
            Duration::from_secs(4)
        );
        // One failure is forgotten per minute: after ten quiet minutes, all are.
        let t2 = t1 + Duration::from_secs(600);
        assert_eq!(t.score_of(&pair("6.6.6.6", "admin"), t2), 0.0);
        assert!(login(&t, "6.6.6.6", "admin", t2).is_ok(), "forgiven");
    }

    #[test]
    fn an_attacker_every_twelve_seconds_never_locks_the_owner_out() {
        let t = Throttle::default();
        let mut now = Instant::now();
        for _ in 0..1000 {
            if let Ok(a) = login(&t, "6.6.6.6", "admin", now) {
                fail_at(a, now);
            }
            let owner = login(&t, "10.0.0.1", "admin", now).expect("owner admitted");
            succeed_at(owner, now);
            now += Duration::from_secs(12);
        }
    }

    #[test]
    fn concurrent_guesses_are_charged_before_they_are_judged() {
        let t = Throttle::default();
        let now = Instant::now();
        let admitted: Vec<_> = (0..20)
            .filter_map(|_| login(&t, "6.6.6.6", "admin", now).ok())
            .collect();
        assert_eq!(admitted.len(), 5, "five free guesses, the rest wait");
        drop(admitted);
        assert!(
            login(&t, "6.6.6.6", "admin", now).is_err(),
            "dropped = failed"
        );
    }

    #[test]
    fn a_success_gives_its_charge_back() {
        let t = Throttle::default();
        let now = Instant::now();
        for _ in 0..4 {
            fail_at(login(&t, "1.2.3.4", "bob", now).unwrap(), now);
        }
        succeed_at(login(&t, "1.2.3.4", "bob", now).unwrap(), now);
        assert_eq!(t.score_of(&pair("1.2.3.4", "bob"), now), 0.0);
        assert_eq!(t.score_of(&src("1.2.3.4"), now), 4.0);
        for _ in 0..4 {
            fail_at(login(&t, "1.2.3.4", "bob", now).unwrap(), now);
        }
        assert!(
            login(&t, "1.2.3.4", "bob", now).is_ok(),
            "the success reset the pair"
        );
    }

    #[test]
    fn the_per_user_score_only_slows_sources_that_fail() {
        let t = Throttle::default();
        let now = Instant::now();
        // A spread-out attack: 60 sources, one failure each, on admin.
        for i in 0..60 {
            let a = format!("6.6.{}.{}", i / 256, i % 256);
            if let Ok(att) = login(&t, &a, "admin", now) {
                fail_at(att, now);
            }
        }
        assert!(t.wait_of(&user("admin"), now) > Duration::ZERO);
        // A source that failed once more is slowed by the account's score...
        assert!(login(&t, "6.6.0.1", "admin", now).is_err());
        // ...a clean source is not.
        succeed_at(login(&t, "10.0.0.1", "admin", now).expect("owner"), now);
    }

    #[test]
    fn the_account_limits_in_force_apply_from_the_next_attempt() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32, Ordering};
        let free = Arc::new(AtomicU32::new(2));
        let read = free.clone();
        let t = Throttle::new(Box::new(move || Policy {
            free: read.load(Ordering::Relaxed),
            cap: Duration::from_secs(30),
            ..policy::PAIR
        }));
        let now = Instant::now();
        for _ in 0..2 {
            fail_at(login(&t, "6.6.6.6", "admin", now).expect("free"), now);
        }
        assert!(
            login(&t, "6.6.6.6", "admin", now).is_err(),
            "two free, not five"
        );
        // Raised: the same score no longer earns a wait...
        free.store(4, Ordering::Relaxed);
        let a = login(&t, "6.6.6.6", "admin", now);
        assert!(a.is_err(), "the wait already earned stands");
        let later = now + Duration::from_secs(2);
        fail_at(
            login(&t, "6.6.6.6", "admin", later).expect("after it"),
            later,
        );
        fail_at(
            login(&t, "6.6.6.6", "admin", later).expect("4 free now"),
            later,
        );
        // ...and the cap in force bounds the waits.
        let mut at = later;
        for _ in 0..20 {
            if let Ok(a) = login(&t, "6.6.6.6", "admin", at) {
                fail_at(a, at);
            }
            at += Duration::from_secs(31);
        }
        let wait = t.wait_of(&pair("6.6.6.6", "admin"), at - Duration::from_secs(31));
        assert!(wait <= Duration::from_secs(30), "{wait:?}");
        assert!(wait > Duration::from_secs(8), "{wait:?}");
    }

    #[test]
    fn many_users_from_one_source_are_slowed_by_the_source_score() {
        let t = Throttle::default();
        let now = Instant::now();
        let admitted = (0..100)
            .filter_map(|i| login(&t, "6.6.6.6", &format!("u{i}"), now).ok())
            .map(|a| fail_at(a, now))
            .count();
        assert_eq!(admitted, 20);
        // Another source trying one of those accounts is unaffected.
        succeed_at(login(&t, "10.0.0.1", "u3", now).expect("other source"), now);
    }
}
