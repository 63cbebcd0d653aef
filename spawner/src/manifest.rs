//! The build manifest `exile-build.toml`: the restart and health defaults a build carries for
//! its own instances. A spawn's own settings win over it, and it wins over the spawner's flags,
//! field by field. A build without the file changes nothing.
//!
//! ```toml
//! [restart]
//! policy = "on-failure"   # never | on-failure | always
//! max_restarts = 5
//! window_secs = 300
//! backoff_ms = 1000
//! backoff_max_ms = 60000
//! [health]
//! period_secs = 5
//! failure_threshold = 3
//! initial_delay_secs = 10
//! action = "restart"      # restart | leave
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::health::{self, HealthCheck, UnhealthyAction};
use crate::restart::{RestartMode, RestartPolicy};

/// Name of the manifest in a build directory.
pub const FILE_NAME: &str = "exile-build.toml";

/// Most restarts a manifest may allow within its window.
const MAX_RESTARTS: u32 = 1000;
/// Longest crash-loop window a manifest may set: a week.
const MAX_WINDOW_SECS: u64 = 7 * 86_400;

/// Contents of `exile-build.toml`; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildManifest {
    /// Restart policy defaults.
    #[serde(default)]
    pub restart: RestartDefaults,
    /// Health check defaults.
    #[serde(default)]
    pub health: HealthDefaults,
}

/// The `[restart]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestartDefaults {
    /// When to restart.
    pub policy: Option<PolicyName>,
    /// Crash-loop limit: restarts allowed within the window.
    pub max_restarts: Option<u32>,
    /// Window of the crash-loop limit, seconds.
    pub window_secs: Option<u64>,
    /// Delay before the first restart, milliseconds.
    pub backoff_ms: Option<u64>,
    /// Largest delay between restarts, milliseconds.
    pub backoff_max_ms: Option<u64>,
}

/// The `[health]` table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthDefaults {
    /// Seconds between expected SDK health pings.
    pub period_secs: Option<f64>,
    /// Missed periods before Unhealthy.
    pub failure_threshold: Option<u32>,
    /// Seconds after a start during which missing pings do not count.
    pub initial_delay_secs: Option<f64>,
    /// What follows Unhealthy.
    pub action: Option<ActionName>,
}

/// A restart mode as the manifest spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyName {
    /// Never restart.
    Never,
    /// After a failure.
    OnFailure,
    /// After any exit.
    Always,
}

/// An unhealthy action as the manifest spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActionName {
    /// Leave it for inspection.
    Leave,
    /// Restart it.
    Restart,
}

impl BuildManifest {
    /// Reads `exile-build.toml` from `build_dir`; `None` when there is none.
    pub fn load(build_dir: &Path) -> Result<Option<Self>> {
        let path = build_dir.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("could not read the build manifest", path, e)),
        }
    }

    /// Parses a manifest's text; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                    format!("line {line}: ")
                })
                .unwrap_or_default();
            malformed(path, format!("{at}{}", e.message().trim_end()))
        })
    }

    /// The restart policy of spawns that name none: the manifest's fields over `flags`.
    pub fn restart_policy(&self, flags: &RestartPolicy, path: &Path) -> Result<RestartPolicy> {
        let r = &self.restart;
        let policy = RestartPolicy {
            mode: r.policy.map_or(flags.mode, |p| match p {
                PolicyName::Never => RestartMode::Never,
                PolicyName::OnFailure => RestartMode::OnFailure,
                PolicyName::Always => RestartMode::Always,
            }),
            max_restarts: r.max_restarts.unwrap_or(flags.max_restarts),
            window: r.window_secs.map_or(flags.window, Duration::from_secs),
            backoff_base: r
                .backoff_ms
                .map_or(flags.backoff_base, Duration::from_millis),
            backoff_max: r
                .backoff_max_ms
                .map_or(flags.backoff_max, Duration::from_millis),
        };
        if r.max_restarts.is_some_and(|m| m > MAX_RESTARTS) {
            return Err(malformed(
                path,
                format!("restart.max_restarts must be at most {MAX_RESTARTS}"),
            ));
        }
        if r.window_secs.is_some_and(|w| w == 0 || w > MAX_WINDOW_SECS) {
            return Err(malformed(
                path,
                format!("restart.window_secs must be 1 to {MAX_WINDOW_SECS} (a week)"),
            ));
        }
        if policy.backoff_base > policy.backoff_max {
            return Err(malformed(
                path,
                format!(
                    "restart.backoff_ms ({} ms) must not exceed restart.backoff_max_ms ({} ms, counting the spawner's default)",
                    policy.backoff_base.as_millis(),
                    policy.backoff_max.as_millis()
                ),
            ));
        }
        Ok(policy)
    }

    /// The health check of spawns that name none: the manifest's fields over `flags`.
    pub fn health_check(&self, flags: &HealthCheck, path: &Path) -> Result<HealthCheck> {
        let h = &self.health;
        let secs = |field: &str, v: Option<f64>, default: Duration, max: Duration| match v {
            None => Ok(default),
            Some(v) => Duration::try_from_secs_f64(v)
                .ok()
                .filter(|d| *d <= max)
                .ok_or_else(|| {
                    malformed(
                        path,
                        format!(
                            "health.{field} must be 0 to {} seconds, not {v}",
                            max.as_secs()
                        ),
                    )
                }),
        };
        let period = secs(
            "period_secs",
            h.period_secs,
            flags.period,
            health::MAX_PERIOD,
        )?;
        if h.period_secs.is_some() && period < health::MIN_PERIOD {
            return Err(malformed(
                path,
                format!(
                    "health.period_secs must be at least {} seconds",
                    health::MIN_PERIOD.as_secs_f64()
                ),
            ));
        }
        let failure_threshold = h.failure_threshold.unwrap_or(flags.failure_threshold);
        if h.failure_threshold.is_some()
            && !(1..=health::MAX_FAILURE_THRESHOLD).contains(&failure_threshold)
        {
            return Err(malformed(
                path,
                format!(
                    "health.failure_threshold must be 1 to {}",
                    health::MAX_FAILURE_THRESHOLD
                ),
            ));
        }
        Ok(HealthCheck {
            period,
            failure_threshold,
            initial_delay: secs(
                "initial_delay_secs",
                h.initial_delay_secs,
                flags.initial_delay,
                health::MAX_INITIAL_DELAY,
            )?,
            action: h.action.map_or(flags.action, |a| match a {
                ActionName::Leave => UnhealthyAction::Leave,
                ActionName::Restart => UnhealthyAction::Restart,
            }),
        })
    }
}

/// The defaults of spawns that name none: the manifest in `build_dir` (if any) over the
/// spawner's flags.
pub fn build_defaults(
    build_dir: &Path,
    restart_flags: &RestartPolicy,
    health_flags: &HealthCheck,
) -> Result<(RestartPolicy, HealthCheck)> {
    let Some(manifest) = BuildManifest::load(build_dir)? else {
        return Ok((*restart_flags, *health_flags));
    };
    let path = build_dir.join(FILE_NAME);
    let restart = manifest.restart_policy(restart_flags, &path)?;
    let health = manifest.health_check(health_flags, &path)?;
    tracing::info!(manifest = %path.display(), ?restart, ?health, "build defaults from the build manifest");
    Ok((restart, health))
}

fn malformed(path: &Path, problem: String) -> Error {
    Error::Manifest {
        path: PathBuf::from(path),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> PathBuf {
        PathBuf::from("/builds/game/exile-build.toml")
    }

    #[test]
    fn the_documented_example_parses_and_layers_over_the_flags() {
        let text = r#"
[restart]
policy = "on-failure"   # never | on-failure | always
max_restarts = 5
window_secs = 300
backoff_ms = 1000
backoff_max_ms = 60000
[health]
period_secs = 5
failure_threshold = 3
initial_delay_secs = 10
action = "restart"      # restart | leave
"#;
        let m = BuildManifest::parse(text, &path()).unwrap();
        let restart = m
            .restart_policy(&RestartPolicy::default(), &path())
            .unwrap();
        assert_eq!(restart.mode, RestartMode::OnFailure);
        assert_eq!(restart.max_restarts, 5);
        let health = m.health_check(&HealthCheck::default(), &path()).unwrap();
        assert_eq!(health.initial_delay, Duration::from_secs(10));
        assert_eq!(health.action, UnhealthyAction::Restart);
    }

    #[test]
    fn missing_fields_keep_the_flags() {
        let m = BuildManifest::parse("[health]\nperiod_secs = 0.5\n", &path()).unwrap();
        let flags = HealthCheck {
            failure_threshold: 7,
            ..Default::default()
        };
        let h = m.health_check(&flags, &path()).unwrap();
        assert_eq!(h.period, Duration::from_millis(500));
        assert_eq!(h.failure_threshold, 7);
        let empty = BuildManifest::parse("", &path()).unwrap();
        let flags = RestartPolicy::default();
        assert_eq!(empty.restart_policy(&flags, &path()).unwrap(), flags);
    }

    #[test]
    fn mistakes_are_one_sentence_naming_the_file_and_the_line() {
        for (text, expect) in [
            ("[restart]\ncolour = 1\n", "line 2: unknown field `colour`"),
            (
                "[restart]\npolicy = \"sometimes\"\n",
                "line 2: unknown variant",
            ),
            ("[health]\nperiod_secs = \"5\"\n", "line 2: invalid type"),
            ("[helth]\n", "line 1: unknown field `helth`"),
            ("[restart\n", "line 1"),
        ] {
            let err = BuildManifest::parse(text, &path()).unwrap_err().to_string();
            assert!(
                err.starts_with("the build manifest /builds/game/exile-build.toml is malformed: "),
                "{err}"
            );
            assert!(err.contains(expect), "{text:?}: {err}");
            assert!(!err.trim_end().contains('\n'), "not one line: {err}");
        }
        for (text, expect) in [
            ("[health]\nperiod_secs = 0\n", "health.period_secs"),
            ("[health]\nperiod_secs = -1\n", "health.period_secs"),
            (
                "[health]\nfailure_threshold = 0\n",
                "health.failure_threshold",
            ),
            ("[restart]\nbackoff_ms = 90000\n", "restart.backoff_ms"),
            ("[restart]\nwindow_secs = 0\n", "restart.window_secs"),
        ] {
            let m = BuildManifest::parse(text, &path()).unwrap();
            let err = m
                .health_check(&HealthCheck::default(), &path())
                .and_then(|_| m.restart_policy(&RestartPolicy::default(), &path()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(expect), "{text:?}: {err}");
            assert!(err.contains("exile-build.toml"), "{err}");
        }
    }
}
