//! Limits and validators of spawn settings that the master, the spawner and the build
//! manifest all apply. Each returns a sentence naming the field, for people to act on.

use std::ops::RangeInclusive;

use crate::v1;

/// Health periods a game may be held to, milliseconds: a tenth of a second to an hour.
pub const HEALTH_PERIOD_MS: RangeInclusive<u32> = 100..=3_600_000;
/// Most missed health periods before Unhealthy.
pub const MAX_HEALTH_FAILURES: u32 = 1000;
/// Longest health initial delay, milliseconds: a day.
pub const MAX_HEALTH_INITIAL_DELAY_MS: u32 = 86_400_000;
/// Most restarts a crash-loop window may allow.
pub const MAX_RESTARTS: u32 = 1000;
/// Longest crash-loop window, seconds: a week.
pub const MAX_RESTART_WINDOW_SECS: u32 = 7 * 86_400;
/// Most environment variables a spawn or a build may set.
pub const MAX_ENV_VARS: usize = 128;
/// Longest environment variable name, bytes.
pub const MAX_ENV_NAME: usize = 128;
/// Longest environment variable value, bytes.
pub const MAX_ENV_VALUE: usize = 4096;

/// Longest console line, bytes (without its newline).
pub const MAX_CONSOLE_LINE: usize = 1024;

/// Checks one console line: 1 to [`MAX_CONSOLE_LINE`] bytes, one line, no control characters
/// but tabs (a game's console must not be fed escape sequences or extra lines).
pub fn check_console_line(line: &str) -> Result<(), String> {
    if line.is_empty() || line.len() > MAX_CONSOLE_LINE {
        return Err(format!("line: give 1 to {MAX_CONSOLE_LINE} bytes"));
    }
    if line.chars().any(|c| c.is_control() && c != '\t') {
        return Err("line: one line only, without newlines or control characters".into());
    }
    Ok(())
}

/// Longest display name of an instance, characters.
pub const MAX_DISPLAY_NAME: usize = 64;

/// Checks an instance's display name: at most [`MAX_DISPLAY_NAME`] characters, no control
/// characters, no spaces at either end. Empty is allowed: it clears the name.
pub fn check_display_name(name: &str) -> Result<(), String> {
    if name.chars().count() > MAX_DISPLAY_NAME {
        return Err(format!(
            "display_name: at most {MAX_DISPLAY_NAME} characters"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("display_name: no control characters or line breaks".into());
    }
    if name.trim() != name {
        return Err("display_name: no spaces at the start or the end".into());
    }
    Ok(())
}

/// Checks a restart policy's fields (0 means "the default" for each number).
pub fn check_restart_policy(p: &v1::RestartPolicy) -> Result<(), String> {
    v1::RestartMode::try_from(p.mode)
        .map_err(|_| format!("restart_policy.mode: {} is not a known mode", p.mode))?;
    if p.max_restarts > MAX_RESTARTS {
        return Err(format!(
            "restart_policy.max_restarts must be at most {MAX_RESTARTS}, not {}",
            p.max_restarts
        ));
    }
    if p.window_seconds > MAX_RESTART_WINDOW_SECS {
        return Err(format!(
            "restart_policy.window_seconds must be at most {MAX_RESTART_WINDOW_SECS} (a week), not {}",
            p.window_seconds
        ));
    }
    if p.backoff_max_ms != 0 && p.backoff_base_ms > p.backoff_max_ms {
        return Err(format!(
            "restart_policy.backoff_base_ms ({}) must not exceed backoff_max_ms ({})",
            p.backoff_base_ms, p.backoff_max_ms
        ));
    }
    Ok(())
}

/// Checks a health check's fields (each unset one takes a default later).
pub fn check_health_check(h: &v1::HealthCheck) -> Result<(), String> {
    v1::UnhealthyAction::try_from(h.action).map_err(|_| {
        format!(
            "health_check.action: {} is not a known action (use LEAVE or RESTART)",
            h.action
        )
    })?;
    if let Some(p) = h.period_ms
        && !HEALTH_PERIOD_MS.contains(&p)
    {
        return Err(format!(
            "health_check.period_ms must be {} to {} (an hour), not {p}",
            HEALTH_PERIOD_MS.start(),
            HEALTH_PERIOD_MS.end()
        ));
    }
    if let Some(t) = h.failure_threshold
        && !(1..=MAX_HEALTH_FAILURES).contains(&t)
    {
        return Err(format!(
            "health_check.failure_threshold must be 1 to {MAX_HEALTH_FAILURES}, not {t}"
        ));
    }
    if let Some(d) = h.initial_delay_ms
        && d > MAX_HEALTH_INITIAL_DELAY_MS
    {
        return Err(format!(
            "health_check.initial_delay_ms must be at most {MAX_HEALTH_INITIAL_DELAY_MS} (a day), not {d}"
        ));
    }
    Ok(())
}

/// Checks one environment variable a spawn or a build sets. `EXILE_*` names are the
/// spawner's own.
pub fn check_env_var(name: &str, value: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ENV_NAME
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(format!("env: {name:?} is not a valid variable name"));
    }
    if name.starts_with("EXILE_") {
        return Err(format!("env: {name} is reserved for the spawner"));
    }
    if value.len() > MAX_ENV_VALUE || value.contains('\0') {
        return Err(format!(
            "env: the value of {name} is longer than {MAX_ENV_VALUE} bytes or has a NUL byte"
        ));
    }
    Ok(())
}

/// Checks a whole set of environment variables.
pub fn check_env<'a>(
    vars: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), String> {
    if vars.len() > MAX_ENV_VARS {
        return Err(format!("env: at most {MAX_ENV_VARS} variables"));
    }
    for (k, v) in vars {
        check_env_var(k, v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_short_printable_and_trimmed() {
        assert_eq!(check_display_name(""), Ok(()));
        assert_eq!(check_display_name("EU CTF #1 — Ünïcode"), Ok(()));
        assert!(check_display_name(&"x".repeat(MAX_DISPLAY_NAME)).is_ok());
        assert!(check_display_name(&"x".repeat(MAX_DISPLAY_NAME + 1)).is_err());
        assert!(check_display_name("a\x1b]0;t\x07").is_err());
        assert!(check_display_name("a\nb").is_err());
        assert!(check_display_name(" a").is_err());
    }

    #[test]
    fn restart_and_health_bounds_name_the_field() {
        assert!(check_restart_policy(&v1::RestartPolicy::default()).is_ok());
        let e = check_restart_policy(&v1::RestartPolicy {
            max_restarts: 1001,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("max_restarts"), "{e}");
        let e = check_restart_policy(&v1::RestartPolicy {
            backoff_base_ms: 10,
            backoff_max_ms: 5,
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("backoff_base_ms"), "{e}");
        assert!(check_health_check(&v1::HealthCheck::default()).is_ok());
        let e = check_health_check(&v1::HealthCheck {
            period_ms: Some(99),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("period_ms"), "{e}");
        let e = check_health_check(&v1::HealthCheck {
            failure_threshold: Some(0),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.contains("failure_threshold"), "{e}");
        assert!(
            check_health_check(&v1::HealthCheck {
                initial_delay_ms: Some(MAX_HEALTH_INITIAL_DELAY_MS + 1),
                ..Default::default()
            })
            .is_err()
        );
    }

    #[test]
    fn console_lines_are_one_bounded_line() {
        assert!(check_console_line("say hi\tall").is_ok());
        assert!(check_console_line(&"x".repeat(MAX_CONSOLE_LINE)).is_ok());
        assert!(check_console_line(&"x".repeat(MAX_CONSOLE_LINE + 1)).is_err());
        assert!(check_console_line("").is_err());
        assert!(check_console_line("a\nb").is_err());
        assert!(check_console_line("a\u{1b}]0;x\u{7}").is_err());
    }

    #[test]
    fn env_names_are_checked_and_exile_ones_reserved() {
        assert!(check_env_var("MAP", "dust").is_ok());
        assert!(check_env_var("1MAP", "").is_err());
        assert!(check_env_var("MA-P", "").is_err());
        assert!(
            check_env_var("EXILE_PORT", "1")
                .unwrap_err()
                .contains("reserved")
        );
        assert!(check_env_var("A", "a\0b").is_err());
    }
}
