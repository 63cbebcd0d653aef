//! SDK health checks: when a game that uses the SDK counts as unhealthy, and what the spawner
//! does about it.

use std::time::Duration;

use exile_api::v1;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Shortest health period a spawn may ask for.
pub const MIN_PERIOD: Duration = Duration::from_millis(100);
/// Longest health period a spawn may ask for.
pub const MAX_PERIOD: Duration = Duration::from_secs(3600);
/// Most missed periods a spawn may allow.
pub const MAX_FAILURE_THRESHOLD: u32 = 1000;
/// Longest initial delay a spawn may ask for.
pub const MAX_INITIAL_DELAY: Duration = Duration::from_secs(86_400);

/// What follows when a game misses its health pings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnhealthyAction {
    /// Mark it Unhealthy and leave it running for inspection.
    #[default]
    Leave,
    /// Mark it Unhealthy, stop it and restart it with the backoff and crash-loop limit of its
    /// restart policy.
    Restart,
}

impl From<v1::UnhealthyAction> for UnhealthyAction {
    /// The action a word or a request names; `Unspecified` is the default, `leave`.
    fn from(action: v1::UnhealthyAction) -> Self {
        match action {
            v1::UnhealthyAction::Unspecified | v1::UnhealthyAction::Leave => Self::Leave,
            v1::UnhealthyAction::Restart => Self::Restart,
        }
    }
}

/// When a game that uses the SDK counts as unhealthy: no SDK call for `failure_threshold`
/// periods, counted from its last call or, early on, from `initial_delay` after its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// Expected time between pings.
    pub period: Duration,
    /// Missed periods before the game is Unhealthy.
    pub failure_threshold: u32,
    /// Grace after a start.
    pub initial_delay: Duration,
    /// What follows Unhealthy.
    #[serde(default)]
    pub action: UnhealthyAction,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(5),
            failure_threshold: 3,
            initial_delay: Duration::ZERO,
            action: UnhealthyAction::Leave,
        }
    }
}

impl HealthCheck {
    /// The health check a spawn asked for, each field it left unset taken from `default`.
    pub fn resolve(requested: Option<&v1::HealthCheck>, default: &Self) -> Result<Self> {
        let Some(h) = requested else {
            return Ok(*default);
        };
        let action = match v1::UnhealthyAction::try_from(h.action) {
            Ok(v1::UnhealthyAction::Unspecified) => default.action,
            Ok(action) => UnhealthyAction::from(action),
            Err(_) => {
                return Err(Error::InvalidArgument(format!(
                    "health_check.action: {} is not a known action (use LEAVE or RESTART)",
                    h.action
                )));
            }
        };
        let ms = |v: Option<u32>, d: Duration| v.map_or(d, |v| Duration::from_millis(u64::from(v)));
        let check = Self {
            period: ms(h.period_ms, default.period),
            failure_threshold: h.failure_threshold.unwrap_or(default.failure_threshold),
            initial_delay: ms(h.initial_delay_ms, default.initial_delay),
            action,
        };
        if let Some(problem) = requested_problem(h) {
            return Err(Error::InvalidArgument(problem));
        }
        Ok(check)
    }

    /// How long a game may stay silent before it is Unhealthy.
    pub fn allowed_silence(&self) -> Duration {
        self.period.saturating_mul(self.failure_threshold)
    }
}

/// What is wrong with the fields a spawn set, in a sentence naming the field.
fn requested_problem(h: &v1::HealthCheck) -> Option<String> {
    let ms = |d: Duration| d.as_millis();
    if let Some(p) = h.period_ms
        && !(ms(MIN_PERIOD)..=ms(MAX_PERIOD)).contains(&u128::from(p))
    {
        return Some(format!(
            "health_check.period_ms must be {} to {} (an hour), not {p}",
            ms(MIN_PERIOD),
            ms(MAX_PERIOD)
        ));
    }
    if let Some(t) = h.failure_threshold
        && !(1..=MAX_FAILURE_THRESHOLD).contains(&t)
    {
        return Some(format!(
            "health_check.failure_threshold must be 1 to {MAX_FAILURE_THRESHOLD}, not {t}"
        ));
    }
    if let Some(d) = h.initial_delay_ms
        && u128::from(d) > ms(MAX_INITIAL_DELAY)
    {
        return Some(format!(
            "health_check.initial_delay_ms must be at most {} (a day), not {d}",
            ms(MAX_INITIAL_DELAY)
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_fields_override_the_default_one_by_one() {
        let default = HealthCheck::default();
        assert_eq!(HealthCheck::resolve(None, &default).unwrap(), default);
        let asked = v1::HealthCheck {
            period_ms: Some(250),
            action: v1::UnhealthyAction::Restart as i32,
            ..Default::default()
        };
        let got = HealthCheck::resolve(Some(&asked), &default).unwrap();
        assert_eq!(got.period, Duration::from_millis(250));
        assert_eq!(got.failure_threshold, default.failure_threshold);
        assert_eq!(got.initial_delay, default.initial_delay);
        assert_eq!(got.action, UnhealthyAction::Restart);
        // An explicit zero delay is a value, not "unset".
        let zero_delay = v1::HealthCheck {
            initial_delay_ms: Some(0),
            ..Default::default()
        };
        let base = HealthCheck {
            initial_delay: Duration::from_secs(9),
            ..default
        };
        assert_eq!(
            HealthCheck::resolve(Some(&zero_delay), &base)
                .unwrap()
                .initial_delay,
            Duration::ZERO
        );
    }

    #[test]
    fn zero_and_absurd_values_are_refused_naming_the_field() {
        let default = HealthCheck::default();
        for (bad, field) in [
            (
                v1::HealthCheck {
                    period_ms: Some(0),
                    ..Default::default()
                },
                "period_ms",
            ),
            (
                v1::HealthCheck {
                    period_ms: Some(u32::MAX),
                    ..Default::default()
                },
                "period_ms",
            ),
            (
                v1::HealthCheck {
                    failure_threshold: Some(0),
                    ..Default::default()
                },
                "failure_threshold",
            ),
            (
                v1::HealthCheck {
                    initial_delay_ms: Some(u32::MAX),
                    ..Default::default()
                },
                "initial_delay_ms",
            ),
            (
                v1::HealthCheck {
                    action: 7,
                    ..Default::default()
                },
                "action",
            ),
        ] {
            let err = HealthCheck::resolve(Some(&bad), &default)
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{err}");
        }
    }
}
