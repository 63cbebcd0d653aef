//! Settings the master pushes that this spawner applies while it runs (stop grace, log
//! rotation, the port range, default restart policy and health check, backups and builds
//! kept), each falling back to its flag when the master sends no value. Declarations and
//! bounds are `exile_api::settings`; the heartbeat interval is the link's own.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use exile_api::settings::{self as decl, Value};
use exile_api::v1;

use crate::health::HealthCheck;
use crate::restart::RestartPolicy;

/// Key of the default stop grace.
pub const STOP_GRACE: &str = "spawners.stop_grace";
/// Key of the log rotation size.
pub const LOG_ROTATION_BYTES: &str = "spawners.log_rotation_bytes";
/// Key of the rotated log files kept.
pub const LOG_ROTATION_FILES: &str = "spawners.log_rotation_files";
/// Key of the ports handed to instances.
pub const PORT_RANGE: &str = "spawners.port_range";
/// Key of the backups kept per instance.
pub const BACKUPS_KEEP: &str = "spawners.backups_keep";
/// Key of the versions kept per build name.
pub const BUILDS_KEEP: &str = "builds.keep_versions";
/// Keys of the default restart policy: mode, limit, window, first and largest delay.
const RESTART: [&str; 5] = [
    "spawners.restart_policy",
    "spawners.restart_max",
    "spawners.restart_window",
    "spawners.restart_backoff",
    "spawners.restart_backoff_max",
];
/// Keys of the default health check: period, threshold, initial delay, action.
const HEALTH: [&str; 4] = [
    "spawners.health_period",
    "spawners.health_failure_threshold",
    "spawners.health_initial_delay",
    "spawners.unhealthy_action",
];

/// The values in force, read by instance actors, the manager and the build store whenever
/// they need one (a launch reads the log limits, a stop or a spawn the grace, a spawn the
/// port range and defaults), so a change applies from the next use.
#[derive(Debug)]
pub struct LiveSettings {
    stop_grace_ms: AtomicU64,
    log_max_bytes: AtomicU64,
    log_files: AtomicU32,
    /// First port in the high half, last in the low.
    ports: AtomicU32,
    backups_keep: AtomicU32,
    /// Negative: unset (the build store keeps its flag).
    builds_keep: AtomicI64,
    /// std Mutex: copied in and out, never held across an await.
    defaults: Mutex<(RestartPolicy, HealthCheck)>,
    flags: Flags,
}

/// The flag values the settings fall back to.
#[derive(Clone, Debug)]
pub struct Flags {
    /// `--stop-grace-period`.
    pub stop_grace: Duration,
    /// `--log-file-max-bytes`.
    pub log_max_bytes: u64,
    /// `--log-files`.
    pub log_files: u32,
    /// `--port-range`.
    pub ports: RangeInclusive<u16>,
    /// `--agones-port-range`, which a pushed port range must not overlap.
    pub agones_ports: RangeInclusive<u16>,
    /// The `--restart-*` flags.
    pub restart: RestartPolicy,
    /// The `--health-*` flags and `--unhealthy-action`.
    pub health: HealthCheck,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn pack(r: &RangeInclusive<u16>) -> u32 {
    (u32::from(*r.start()) << 16) | u32::from(*r.end())
}

fn unpack(n: u32) -> RangeInclusive<u16> {
    let first = u16::try_from(n >> 16).unwrap_or(u16::MAX);
    let last = u16::try_from(n & 0xffff).unwrap_or(u16::MAX);
    first..=last
}

/// A numeric setting (a count, or milliseconds) as a u32, saturating.
fn u32_of(v: &Value) -> u32 {
    u32::try_from(v.as_u64()).unwrap_or(u32::MAX)
}

impl LiveSettings {
    /// Starts from the flags.
    pub fn new(flags: Flags) -> Self {
        LiveSettings {
            stop_grace_ms: AtomicU64::new(millis(flags.stop_grace)),
            log_max_bytes: AtomicU64::new(flags.log_max_bytes),
            log_files: AtomicU32::new(flags.log_files),
            ports: AtomicU32::new(pack(&flags.ports)),
            backups_keep: AtomicU32::new(0),
            builds_keep: AtomicI64::new(-1),
            defaults: Mutex::new((flags.restart, flags.health)),
            flags,
        }
    }

    /// Default time between the stop signal and SIGKILL.
    pub fn stop_grace(&self) -> Duration {
        Duration::from_millis(self.stop_grace_ms.load(Ordering::Relaxed))
    }

    /// Size of an instance log file before rotation.
    pub fn log_max_bytes(&self) -> u64 {
        self.log_max_bytes.load(Ordering::Relaxed)
    }

    /// Rotated log files kept per instance.
    pub fn log_files(&self) -> u32 {
        self.log_files.load(Ordering::Relaxed)
    }

    /// Ports handed to instances from now on.
    pub fn port_range(&self) -> RangeInclusive<u16> {
        unpack(self.ports.load(Ordering::Relaxed))
    }

    /// Newest backups kept per instance; 0 keeps them all.
    pub fn backups_keep(&self) -> usize {
        usize::try_from(self.backups_keep.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// Versions kept per build name, when the master set it (else the build store's flag).
    pub fn builds_keep(&self) -> Option<usize> {
        usize::try_from(self.builds_keep.load(Ordering::Relaxed)).ok()
    }

    /// The restart policy and health check of spawns that name none, before a build's
    /// manifest goes over them.
    pub fn defaults(&self) -> (RestartPolicy, HealthCheck) {
        *self.defaults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies pushed values (key → canonical text); keys absent go back to their flag. A
    /// value that does not parse (or, for the port range, overlaps the Agones ports; for the
    /// restart policy, has a first delay above its largest) keeps the one in force and is
    /// reported; the others apply.
    pub fn apply(&self, values: &HashMap<String, String>) -> Result<(), String> {
        let mut errors = Vec::new();
        let mut read = |key: &str| -> Read {
            let Some(text) = values.get(key) else {
                return Read::Unset;
            };
            match decl::lookup(key).and_then(|s| s.parse(text)) {
                Ok(v) => Read::Set(v),
                Err(e) => {
                    errors.push(e);
                    Read::Bad
                }
            }
        };
        let grace = match read(STOP_GRACE) {
            Read::Set(v) => v.as_u64(),
            Read::Bad => self.stop_grace_ms.load(Ordering::Relaxed),
            Read::Unset => millis(self.flags.stop_grace),
        };
        let bytes = match read(LOG_ROTATION_BYTES) {
            Read::Set(v) => v.as_u64(),
            Read::Bad => self.log_max_bytes(),
            Read::Unset => self.flags.log_max_bytes,
        };
        let files = match read(LOG_ROTATION_FILES) {
            Read::Set(v) => u32::try_from(v.as_u64()).unwrap_or(u32::MAX),
            Read::Bad => self.log_files(),
            Read::Unset => self.flags.log_files,
        };
        let ports = read(PORT_RANGE);
        let backups = match read(BACKUPS_KEEP) {
            Read::Set(v) => u32::try_from(v.as_u64()).unwrap_or(u32::MAX),
            Read::Bad => self.backups_keep.load(Ordering::Relaxed),
            Read::Unset => 0,
        };
        let builds = match read(BUILDS_KEEP) {
            Read::Set(v) => i64::try_from(v.as_u64()).unwrap_or(i64::MAX),
            Read::Bad => self.builds_keep.load(Ordering::Relaxed),
            Read::Unset => -1,
        };
        let restart = RESTART.map(&mut read);
        let health = HEALTH.map(&mut read);
        let ports = match ports {
            Read::Set(Value::Range(first, last)) => match self.checked_ports(first, last) {
                Ok(r) => r,
                Err(e) => {
                    errors.push(e);
                    self.port_range()
                }
            },
            Read::Set(_) | Read::Bad => self.port_range(),
            Read::Unset => self.flags.ports.clone(),
        };
        let (mut restart_in_force, mut health_in_force) = self.defaults();
        if !restart.iter().any(|r| matches!(r, Read::Bad)) {
            match self.restart_default(&restart) {
                Ok(p) => restart_in_force = p,
                Err(e) => errors.push(e),
            }
        }
        if !health.iter().any(|r| matches!(r, Read::Bad)) {
            match self.health_default(&health) {
                Ok(h) => health_in_force = h,
                Err(e) => errors.push(e),
            }
        }
        self.stop_grace_ms.store(grace, Ordering::Relaxed);
        self.log_max_bytes.store(bytes, Ordering::Relaxed);
        self.log_files.store(files, Ordering::Relaxed);
        self.ports.store(pack(&ports), Ordering::Relaxed);
        self.backups_keep.store(backups, Ordering::Relaxed);
        self.builds_keep.store(builds, Ordering::Relaxed);
        *self.defaults.lock().unwrap_or_else(|e| e.into_inner()) =
            (restart_in_force, health_in_force);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// A pushed port range, refused when it overlaps the Agones SDK ports.
    fn checked_ports(&self, first: i64, last: i64) -> Result<RangeInclusive<u16>, String> {
        let (Ok(first), Ok(last)) = (u16::try_from(first), u16::try_from(last)) else {
            return Err(format!("{PORT_RANGE}: {first}-{last} is not a port range"));
        };
        let agones = &self.flags.agones_ports;
        if crate::ports::overlap(&(first..=last), agones) {
            return Err(format!(
                "{PORT_RANGE}: {first}-{last} overlaps this spawner's --agones-port-range {}-{}",
                agones.start(),
                agones.end()
            ));
        }
        Ok(first..=last)
    }

    /// The restart flags with the values set over them, field by field.
    fn restart_default(&self, r: &[Read; 5]) -> Result<RestartPolicy, String> {
        let mode = match r[0].value() {
            Some(Value::Str(w)) => exile_api::limits::restart_mode_named(w),
            _ => None,
        }
        .unwrap_or(v1::RestartMode::Unspecified);
        let set = v1::RestartPolicy {
            mode: mode as i32,
            max_restarts: r[1].value().map_or(0, u32_of),
            window_seconds: r[2].value().map_or(0, |v| u32_of(v) / 1000),
            backoff_base_ms: r[3].value().map_or(0, u32_of),
            backoff_max_ms: r[4].value().map_or(0, u32_of),
        };
        RestartPolicy::resolve(Some(&set), &self.flags.restart).map_err(|_| {
            format!(
                "{} must not exceed {} (counting this spawner's flags); the restart defaults in force stay",
                RESTART[3], RESTART[4]
            )
        })
    }

    /// The health flags with the values set over them, field by field.
    fn health_default(&self, h: &[Read; 4]) -> Result<HealthCheck, String> {
        let action = match h[3].value() {
            Some(Value::Str(w)) => exile_api::limits::unhealthy_action_named(w),
            _ => None,
        }
        .unwrap_or(v1::UnhealthyAction::Unspecified);
        let set = v1::HealthCheck {
            period_ms: h[0].value().map(u32_of),
            failure_threshold: h[1].value().map(u32_of),
            initial_delay_ms: h[2].value().map(u32_of),
            action: action as i32,
        };
        HealthCheck::resolve(Some(&set), &self.flags.health).map_err(|e| e.to_string())
    }
}

/// A pushed value, as read.
enum Read {
    /// Not sent: the flag applies.
    Unset,
    /// Sent and valid.
    Set(Value),
    /// Sent but invalid (reported): the value in force stays.
    Bad,
}

impl Read {
    fn value(&self) -> Option<&Value> {
        match self {
            Read::Set(v) => Some(v),
            Read::Unset | Read::Bad => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::UnhealthyAction;
    use crate::restart::RestartMode;

    fn values(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn live() -> LiveSettings {
        LiveSettings::new(Flags {
            stop_grace: Duration::from_secs(10),
            log_max_bytes: 8 << 20,
            log_files: 4,
            ports: 7800..=7999,
            agones_ports: 9357..=9556,
            restart: RestartPolicy::default(),
            health: HealthCheck::default(),
        })
    }

    #[test]
    fn pushed_values_apply_and_absent_ones_return_to_the_flags() {
        let live = live();
        live.apply(&values(&[
            (STOP_GRACE, "2s"),
            (LOG_ROTATION_BYTES, "64KiB"),
            (LOG_ROTATION_FILES, "2"),
            (PORT_RANGE, "20000-20009"),
            (BACKUPS_KEEP, "3"),
            (BUILDS_KEEP, "0"),
        ]))
        .unwrap();
        assert_eq!(live.stop_grace(), Duration::from_secs(2));
        assert_eq!(live.log_max_bytes(), 64 << 10);
        assert_eq!(live.log_files(), 2);
        assert_eq!(live.port_range(), 20000..=20009);
        assert_eq!(live.backups_keep(), 3);
        assert_eq!(live.builds_keep(), Some(0));
        live.apply(&values(&[])).unwrap();
        assert_eq!(live.stop_grace(), Duration::from_secs(10));
        assert_eq!(live.log_max_bytes(), 8 << 20);
        assert_eq!(live.log_files(), 4);
        assert_eq!(live.port_range(), 7800..=7999);
        assert_eq!(live.backups_keep(), 0, "unset keeps every backup");
        assert_eq!(live.builds_keep(), None, "unset: the --builds-keep flag");
    }

    #[test]
    fn a_bad_value_is_reported_and_keeps_the_one_in_force() {
        let live = live();
        live.apply(&values(&[(LOG_ROTATION_FILES, "3")])).unwrap();
        let e = live
            .apply(&values(&[(LOG_ROTATION_FILES, "0"), (STOP_GRACE, "1s")]))
            .unwrap_err();
        assert!(e.contains(LOG_ROTATION_FILES), "{e}");
        assert_eq!(live.log_files(), 3);
        assert_eq!(live.stop_grace(), Duration::from_secs(1));
    }

    #[test]
    fn a_port_range_over_the_agones_ports_is_refused() {
        let live = live();
        live.apply(&values(&[(PORT_RANGE, "7000-7099")])).unwrap();
        let e = live
            .apply(&values(&[(PORT_RANGE, "9000-9400")]))
            .unwrap_err();
        assert!(e.contains("--agones-port-range 9357-9556"), "{e}");
        assert_eq!(live.port_range(), 7000..=7099, "the range in force stays");
    }

    #[test]
    fn restart_and_health_defaults_go_over_the_flags_field_by_field() {
        let live = live();
        live.apply(&values(&[
            ("spawners.restart_policy", "on-failure"),
            ("spawners.restart_backoff", "250ms"),
            ("spawners.health_period", "2s"),
            ("spawners.unhealthy_action", "restart"),
        ]))
        .unwrap();
        let (restart, health) = live.defaults();
        assert_eq!(restart.mode, RestartMode::OnFailure);
        assert_eq!(restart.backoff_base, Duration::from_millis(250));
        assert_eq!(restart.max_restarts, RestartPolicy::default().max_restarts);
        assert_eq!(health.period, Duration::from_secs(2));
        assert_eq!(health.action, UnhealthyAction::Restart);
        assert_eq!(
            health.failure_threshold,
            HealthCheck::default().failure_threshold
        );

        // A first delay above the largest (the flag's 1m) is refused as a whole.
        let e = live
            .apply(&values(&[
                ("spawners.restart_policy", "always"),
                ("spawners.restart_backoff", "2m"),
            ]))
            .unwrap_err();
        assert!(e.contains("spawners.restart_backoff_max"), "{e}");
        assert_eq!(live.defaults().0, restart, "the policy in force stays");
        assert_eq!(
            live.defaults().1,
            HealthCheck::default(),
            "health, unset now, is back to the flags"
        );
        live.apply(&values(&[])).unwrap();
        assert_eq!(live.defaults().0, RestartPolicy::default());
    }
}
