//! Settings the master pushes that this spawner applies while it runs (stop grace, log
//! rotation), each falling back to its flag when the master sends no value. Declarations and
//! bounds are `exile_api::settings`; the heartbeat interval is the link's own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use exile_api::settings::{self as decl, Value};

/// Key of the default stop grace.
pub const STOP_GRACE: &str = "spawners.stop_grace";
/// Key of the log rotation size.
pub const LOG_ROTATION_BYTES: &str = "spawners.log_rotation_bytes";
/// Key of the rotated log files kept.
pub const LOG_ROTATION_FILES: &str = "spawners.log_rotation_files";

/// The values in force, read by instance actors whenever they need one (a launch reads the
/// log limits, a stop or a spawn the grace), so a change applies from the next use.
#[derive(Debug)]
pub struct LiveSettings {
    stop_grace_ms: AtomicU64,
    log_max_bytes: AtomicU64,
    log_files: AtomicU32,
    flags: Flags,
}

/// The flag values.
#[derive(Clone, Copy, Debug)]
struct Flags {
    stop_grace: Duration,
    log_max_bytes: u64,
    log_files: u32,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl LiveSettings {
    /// Starts from the flags.
    pub fn new(stop_grace: Duration, log_max_bytes: u64, log_files: u32) -> Self {
        LiveSettings {
            stop_grace_ms: AtomicU64::new(millis(stop_grace)),
            log_max_bytes: AtomicU64::new(log_max_bytes),
            log_files: AtomicU32::new(log_files),
            flags: Flags {
                stop_grace,
                log_max_bytes,
                log_files,
            },
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

    /// Applies pushed values (key → canonical text); keys absent go back to their flag. A
    /// value that does not parse keeps the one in force and is reported; the others apply.
    pub fn apply(&self, values: &HashMap<String, String>) -> Result<(), String> {
        let mut errors = Vec::new();
        let mut read = |key: &str| -> Option<Value> {
            let text = values.get(key)?;
            match decl::lookup(key).and_then(|s| s.parse(text)) {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.push(e);
                    None
                }
            }
        };
        let grace = match read(STOP_GRACE) {
            Some(v) => v.as_u64(),
            None if values.contains_key(STOP_GRACE) => self.stop_grace_ms.load(Ordering::Relaxed),
            None => millis(self.flags.stop_grace),
        };
        let bytes = match read(LOG_ROTATION_BYTES) {
            Some(v) => v.as_u64(),
            None if values.contains_key(LOG_ROTATION_BYTES) => self.log_max_bytes(),
            None => self.flags.log_max_bytes,
        };
        let files = match read(LOG_ROTATION_FILES) {
            Some(v) => u32::try_from(v.as_u64()).unwrap_or(u32::MAX),
            None if values.contains_key(LOG_ROTATION_FILES) => self.log_files(),
            None => self.flags.log_files,
        };
        self.stop_grace_ms.store(grace, Ordering::Relaxed);
        self.log_max_bytes.store(bytes, Ordering::Relaxed);
        self.log_files.store(files, Ordering::Relaxed);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn pushed_values_apply_and_absent_ones_return_to_the_flags() {
        let live = LiveSettings::new(Duration::from_secs(10), 8 << 20, 4);
        live.apply(&values(&[
            (STOP_GRACE, "2s"),
            (LOG_ROTATION_BYTES, "64KiB"),
            (LOG_ROTATION_FILES, "2"),
        ]))
        .unwrap();
        assert_eq!(live.stop_grace(), Duration::from_secs(2));
        assert_eq!(live.log_max_bytes(), 64 << 10);
        assert_eq!(live.log_files(), 2);
        live.apply(&values(&[])).unwrap();
        assert_eq!(live.stop_grace(), Duration::from_secs(10));
        assert_eq!(live.log_max_bytes(), 8 << 20);
        assert_eq!(live.log_files(), 4);
    }

    #[test]
    fn a_bad_value_is_reported_and_keeps_the_one_in_force() {
        let live = LiveSettings::new(Duration::from_secs(10), 8 << 20, 4);
        live.apply(&values(&[(LOG_ROTATION_FILES, "3")])).unwrap();
        let e = live
            .apply(&values(&[(LOG_ROTATION_FILES, "0"), (STOP_GRACE, "1s")]))
            .unwrap_err();
        assert!(e.contains(LOG_ROTATION_FILES), "{e}");
        assert_eq!(live.log_files(), 3);
        assert_eq!(live.stop_grace(), Duration::from_secs(1));
    }
}
