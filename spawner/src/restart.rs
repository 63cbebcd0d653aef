//! Restart policy: whether and when an instance whose game server exited by itself is started
//! again, with exponential backoff and a crash-loop limit.

use std::collections::VecDeque;
use std::time::Duration;

use exile_api::v1;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// When to restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartMode {
    /// Never restart.
    #[default]
    Never,
    /// After a non-zero exit code or a signal.
    OnFailure,
    /// After any exit that was not a requested stop.
    Always,
}

impl From<v1::RestartMode> for RestartMode {
    /// The mode a word or a request names; `Unspecified` is the default, `never`.
    fn from(mode: v1::RestartMode) -> Self {
        match mode {
            v1::RestartMode::Unspecified | v1::RestartMode::Never => Self::Never,
            v1::RestartMode::OnFailure => Self::OnFailure,
            v1::RestartMode::Always => Self::Always,
        }
    }
}

/// A complete restart policy (defaults already applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// When to restart.
    pub mode: RestartMode,
    /// Restarts allowed within `window`; the next unexpected exit ends the instance Crashed.
    pub max_restarts: u32,
    /// The window `max_restarts` counts in.
    pub window: Duration,
    /// First delay; doubles with each restart in the window.
    pub backoff_base: Duration,
    /// Largest delay.
    pub backoff_max: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            mode: RestartMode::Never,
            max_restarts: 5,
            window: Duration::from_secs(300),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

impl RestartPolicy {
    /// The policy a spawn asked for, with `default` (the build's, then the spawner's) filling
    /// each field it left out.
    pub fn resolve(requested: Option<&v1::RestartPolicy>, default: &Self) -> Result<Self> {
        let Some(p) = requested else {
            return Ok(*default);
        };
        let mode = match v1::RestartMode::try_from(p.mode) {
            Ok(v1::RestartMode::Unspecified) => default.mode,
            Ok(mode) => RestartMode::from(mode),
            Err(_) => {
                return Err(Error::InvalidArgument(
                    "restart_policy.mode: unknown value".into(),
                ));
            }
        };
        let or = |v: u32, d: Duration, unit: fn(u64) -> Duration| {
            if v == 0 { d } else { unit(u64::from(v)) }
        };
        let policy = Self {
            mode,
            max_restarts: if p.max_restarts == 0 {
                default.max_restarts
            } else {
                p.max_restarts
            },
            window: or(p.window_seconds, default.window, Duration::from_secs),
            backoff_base: or(
                p.backoff_base_ms,
                default.backoff_base,
                Duration::from_millis,
            ),
            backoff_max: or(p.backoff_max_ms, default.backoff_max, Duration::from_millis),
        };
        if policy.backoff_base > policy.backoff_max {
            return Err(Error::InvalidArgument(
                "restart_policy: the backoff base exceeds its maximum".into(),
            ));
        }
        Ok(policy)
    }

    /// Whether an exit (clean or not) calls for a restart at all.
    pub fn wants_restart(&self, clean: bool) -> bool {
        match self.mode {
            RestartMode::Never => false,
            RestartMode::OnFailure => !clean,
            RestartMode::Always => true,
        }
    }
}

/// Automatic restarts made recently (Unix ms, oldest first), to apply the crash-loop limit and
/// the backoff. Wall-clock times, so the count survives a restart of the spawner in
/// `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RestartTracker {
    recent: VecDeque<i64>,
}

impl RestartTracker {
    /// The delay before the next restart, or `None` when the limit within the window is
    /// reached. Records the restart when there is one.
    pub fn next(&mut self, policy: &RestartPolicy, now_unix_ms: i64) -> Option<Duration> {
        let window = i64::try_from(policy.window.as_millis()).unwrap_or(i64::MAX);
        while self
            .recent
            .front()
            .is_some_and(|t| now_unix_ms.saturating_sub(*t) > window)
        {
            self.recent.pop_front();
        }
        let n = u32::try_from(self.recent.len()).unwrap_or(u32::MAX);
        if n >= policy.max_restarts {
            return None;
        }
        self.recent.push_back(now_unix_ms);
        let factor = 1u32.checked_shl(n.min(30)).unwrap_or(u32::MAX);
        Some(
            policy
                .backoff_base
                .saturating_mul(factor)
                .min(policy.backoff_max),
        )
    }

    /// Restarts counted in the current window.
    pub fn count(&self) -> usize {
        self.recent.len()
    }
}

/// A restart the policy scheduled and the spawner has not made yet; kept in `state.json` so
/// it survives the spawner's death during the backoff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingRestart {
    /// When it is due, Unix ms.
    pub due_unix_ms: i64,
    /// Why the game is restarted, e.g. "exited with code 3".
    pub reason: String,
}

impl PendingRestart {
    /// Time left until it is due (zero when overdue).
    pub fn delay(&self, now_unix_ms: i64) -> Duration {
        let left = self.due_unix_ms.saturating_sub(now_unix_ms);
        Duration::from_millis(u64::try_from(left).unwrap_or(0))
    }
}

/// The instance message while a restart waits out its backoff.
pub fn restarting_message(
    reason: &str,
    delay: Duration,
    tracker: &RestartTracker,
    policy: &RestartPolicy,
) -> String {
    format!(
        "{reason}; restarting in {:.1}s (restart {} of {} within {}s)",
        delay.as_secs_f64(),
        tracker.count(),
        policy.max_restarts,
        policy.window.as_secs()
    )
}

/// The instance message once the crash-loop limit is reached.
pub fn crash_loop_message(reason: &str, policy: &RestartPolicy) -> String {
    format!(
        "{reason}; crash loop: {} restarts within {}s, giving up",
        policy.max_restarts,
        policy.window.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_then_the_limit_stops_it() {
        let policy = RestartPolicy {
            mode: RestartMode::OnFailure,
            max_restarts: 4,
            window: Duration::from_secs(60),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(300),
        };
        let mut t = RestartTracker::default();
        let now = 1_700_000_000_000;
        let delays: Vec<_> = (0..5).map(|_| t.next(&policy, now)).collect();
        assert_eq!(
            delays,
            [
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(300)),
                Some(Duration::from_millis(300)),
                None
            ]
        );
        // Once the window has passed, restarts are allowed again from the base delay.
        let later = now + 61_000;
        assert_eq!(t.next(&policy, later), Some(Duration::from_millis(100)));
    }

    #[test]
    fn requested_policies_fill_in_defaults() {
        let default = RestartPolicy::default();
        assert_eq!(RestartPolicy::resolve(None, &default).unwrap(), default);
        let asked = v1::RestartPolicy {
            mode: v1::RestartMode::Always as i32,
            max_restarts: 2,
            ..Default::default()
        };
        let p = RestartPolicy::resolve(Some(&asked), &default).unwrap();
        assert_eq!(p.mode, RestartMode::Always);
        assert_eq!(p.max_restarts, 2);
        assert_eq!(p.window, default.window);
        // A policy that names no mode still sets the fields it gives.
        let no_mode = v1::RestartPolicy {
            max_restarts: 9,
            ..Default::default()
        };
        let p = RestartPolicy::resolve(Some(&no_mode), &default).unwrap();
        assert_eq!((p.mode, p.max_restarts), (default.mode, 9));
        let bad = v1::RestartPolicy {
            mode: 42,
            ..Default::default()
        };
        assert!(RestartPolicy::resolve(Some(&bad), &default).is_err());
    }
}
