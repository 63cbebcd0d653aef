//! Limits and validators that the master, the spawner and the build manifest all apply:
//! ids, labels, spawn settings (args, env, restart and health), console lines. Each returns
//! a sentence naming the field, for people to act on.

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
/// Most instances out of service at once a rollout may ask for.
pub const MAX_ROLLOUT_UNAVAILABLE: u32 = 1000;
/// Most environment variables a spawn or a build may set.
pub const MAX_ENV_VARS: usize = 128;
/// Longest environment variable name, bytes.
pub const MAX_ENV_NAME: usize = 128;
/// Longest environment variable value, bytes.
pub const MAX_ENV_VALUE: usize = 4096;

/// Longest id of anything (instances, spawners, users, builds, uploads), bytes.
pub const MAX_ID: usize = 128;
/// Most labels an instance or a spawner may carry.
pub const MAX_LABELS: usize = 64;
/// Longest label key, bytes.
pub const MAX_LABEL_KEY: usize = 63;
/// Longest label value, bytes.
pub const MAX_LABEL_VALUE: usize = 256;
/// Most command-line arguments a spawn may add.
pub const MAX_ARGS: usize = 64;
/// Longest such argument, bytes.
pub const MAX_ARG: usize = 4096;

/// Checks an id given in a request: present and at most [`MAX_ID`] bytes.
pub fn check_id(field: &str, id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("{field}: required"));
    }
    if id.len() > MAX_ID {
        return Err(format!("{field}: longer than {MAX_ID} bytes"));
    }
    Ok(())
}

/// Whether `name` is 1 to `max` bytes of ASCII letters, digits, '.', '_' or '-': the shape of
/// names that travel in paths (instance ids, user names, Agones counter and list names).
pub fn is_plain_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// Checks an instance id, which a spawner turns into a directory name: 1 to [`MAX_ID`] of
/// letters, digits, '-', '_' or '.', and never `.` or `..`.
pub fn check_instance_id(id: &str) -> Result<(), String> {
    let ok = is_plain_name(id, MAX_ID) && id != "." && id != "..";
    if ok {
        Ok(())
    } else {
        Err(format!(
            "instance id {id:?} is invalid: use 1 to {MAX_ID} letters, digits, '-', '_' or '.'"
        ))
    }
}

/// Checks one label: a key of 1 to [`MAX_LABEL_KEY`] letters, digits, '.', '_', '-' or '/',
/// and a value of at most [`MAX_LABEL_VALUE`] bytes.
pub fn check_label(field: &str, key: &str, value: &str) -> Result<(), String> {
    let key_ok = !key.is_empty()
        && key.len() <= MAX_LABEL_KEY
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if !key_ok {
        return Err(format!(
            "{field}: key {key:?} must be 1 to {MAX_LABEL_KEY} characters of letters, digits, '.', '_', '-' or '/'"
        ));
    }
    if value.len() > MAX_LABEL_VALUE {
        return Err(format!(
            "{field}: value of {key} is longer than {MAX_LABEL_VALUE} bytes"
        ));
    }
    Ok(())
}

/// Checks a whole label set: at most [`MAX_LABELS`], each as [`check_label`] says.
pub fn check_labels<'a>(
    field: &str,
    labels: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("{field}: at most {MAX_LABELS} entries"));
    }
    for (k, v) in labels {
        check_label(field, k, v)?;
    }
    Ok(())
}

/// Checks the arguments a spawn adds: at most [`MAX_ARGS`], each at most [`MAX_ARG`] bytes
/// with no NUL (which no argv can carry).
pub fn check_args(args: &[String]) -> Result<(), String> {
    if args.len() > MAX_ARGS {
        return Err(format!("args: at most {MAX_ARGS} arguments"));
    }
    if let Some(i) = args
        .iter()
        .position(|a| a.len() > MAX_ARG || a.contains('\0'))
    {
        return Err(format!(
            "args: argument {} is longer than {MAX_ARG} bytes or has a NUL byte",
            i + 1
        ));
    }
    Ok(())
}

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

/// The restart modes as manifests, flags and settings write them, with what each means.
pub const RESTART_MODES: [(&str, v1::RestartMode, &str); 3] = [
    ("never", v1::RestartMode::Never, "never restart"),
    (
        "on-failure",
        v1::RestartMode::OnFailure,
        "restart after a non-zero exit code or a signal",
    ),
    (
        "always",
        v1::RestartMode::Always,
        "restart after any exit that was not a requested stop",
    ),
];

/// The words of [`RESTART_MODES`].
pub const RESTART_MODE_WORDS: &[&str] =
    &[RESTART_MODES[0].0, RESTART_MODES[1].0, RESTART_MODES[2].0];

/// The restart mode a word of [`RESTART_MODE_WORDS`] names.
pub fn restart_mode_named(word: &str) -> Option<v1::RestartMode> {
    RESTART_MODES
        .iter()
        .find(|(w, _, _)| *w == word)
        .map(|(_, mode, _)| *mode)
}

/// What to do with an unhealthy instance, as manifests, flags and settings write it, with
/// what each means.
pub const UNHEALTHY_ACTIONS: [(&str, v1::UnhealthyAction, &str); 2] = [
    (
        "leave",
        v1::UnhealthyAction::Leave,
        "mark it Unhealthy and leave it running for inspection",
    ),
    (
        "restart",
        v1::UnhealthyAction::Restart,
        "mark it Unhealthy, then stop and restart it (with its restart policy's backoff and \
         crash-loop limit)",
    ),
];

/// The words of [`UNHEALTHY_ACTIONS`].
pub const UNHEALTHY_ACTION_WORDS: &[&str] = &[UNHEALTHY_ACTIONS[0].0, UNHEALTHY_ACTIONS[1].0];

/// The action a word of [`UNHEALTHY_ACTION_WORDS`] names.
pub fn unhealthy_action_named(word: &str) -> Option<v1::UnhealthyAction> {
    UNHEALTHY_ACTIONS
        .iter()
        .find(|(w, _, _)| *w == word)
        .map(|(_, action, _)| *action)
}

/// A range as flags and settings write it: `first-last`, or one number for a range of one,
/// with `first <= last` and both within `min..=max`. `what` (a setting's key, a flag) names it
/// in the complaint.
pub fn parse_range(what: &str, text: &str, min: i64, max: i64) -> Result<(i64, i64), String> {
    let (first, last) = text.split_once('-').unwrap_or((text, text));
    let (Ok(first), Ok(last)) = (first.trim().parse::<i64>(), last.trim().parse::<i64>()) else {
        return Err(format!(
            "{what}: {text:?} is not a range (first-last, e.g. 7000-7999)"
        ));
    };
    if first > last {
        return Err(format!("{what}: {first}-{last} ends before it starts"));
    }
    if first < min || last > max {
        return Err(format!("{what}: {first}-{last} is outside {min}..{max}"));
    }
    Ok((first, last))
}

/// The complaint about `word`, given for `what` (a setting's key, a manifest's field), which
/// must be one of `words`.
pub fn not_one_of(what: &str, words: &[&str], word: &str) -> String {
    format!("{what}: {word:?} is not one of: {}", words.join(", "))
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

/// Environment names no game is given unless the `security.env_allowed` setting names them:
/// each changes how the game's programs load or run (the dynamic linker, the shell, language
/// runtimes' option and module-path variables, glibc's tunables and lookups), so whoever may
/// spawn could otherwise run code of their choosing inside any build. A trailing `*` is a
/// prefix.
pub const REFUSED_ENV: &[&str] = &[
    "LD_*",
    "DYLD_*",
    "GLIBC_TUNABLES",
    "GCONV_PATH",
    "LOCPATH",
    "HOSTALIASES",
    "RES_OPTIONS",
    "MALLOC_*",
    "PATH",
    "IFS",
    "ENV",
    "BASH_ENV",
    "BASH_FUNC_*",
    "SHELLOPTS",
    "BASHOPTS",
    "PS4",
    "PROMPT_COMMAND",
    "JAVA_TOOL_OPTIONS",
    "_JAVA_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "NODE_OPTIONS",
    "NODE_PATH",
    "PYTHON*",
    "PERL5OPT",
    "PERL5LIB",
    "PERLLIB",
    "RUBYOPT",
    "RUBYLIB",
    "DOTNET_STARTUP_HOOKS",
    "CORECLR_*",
    "MONO_*",
];

/// Whether `name` matches `pattern`: the same name, or a prefix when the pattern ends in `*`.
pub fn env_pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// Checks the names a spawn, a fleet or a build gives a game against [`REFUSED_ENV`]; a name
/// that `allowed` (the `security.env_allowed` setting: names or `PREFIX*` patterns) matches
/// passes.
pub fn check_env_policy<'a>(
    names: impl IntoIterator<Item = &'a String>,
    allowed: &[String],
) -> Result<(), String> {
    for name in names {
        let Some(rule) = REFUSED_ENV
            .iter()
            .find(|pattern| env_pattern_matches(pattern, name))
        else {
            continue;
        };
        if allowed.iter().any(|a| env_pattern_matches(a, name)) {
            continue;
        }
        return Err(format!(
            "env: {name} is refused for games (it matches {rule}, which changes how the game's programs load or run); an admin may allow it with `exilectl config set {ENV_ALLOWED_SETTING} {name}`"
        ));
    }
    Ok(())
}

/// The setting that lists environment names allowed despite [`REFUSED_ENV`].
pub const ENV_ALLOWED_SETTING: &str = "security.env_allowed";

/// Smallest memory cap of a game, bytes: 16 MiB. Below it no game server starts; the kernel
/// would kill it at once.
pub const MIN_MEMORY_CAP: u64 = 16 << 20;
/// Largest memory cap of a game, bytes: 16 TiB.
pub const MAX_MEMORY_CAP: u64 = 16 << 40;
/// CPU caps of a game, thousandths of a core: a hundredth of a core to 1024 cores.
pub const CPU_CAP_MILLICORES: RangeInclusive<u32> = 10..=1_024_000;

/// Memory and CPU caps of one game (all its processes together), enforced by a spawner
/// through cgroups v2 where its host allows; `None` leaves that resource uncapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ResourceCaps {
    /// Most memory, bytes (cgroup `memory.max`; no swap beyond it).
    pub memory_bytes: Option<u64>,
    /// Most CPU time, thousandths of a core per wall-clock second (cgroup `cpu.max`).
    pub cpu_millicores: Option<u32>,
}

impl ResourceCaps {
    /// Whether nothing is capped.
    pub fn is_empty(&self) -> bool {
        self.memory_bytes.is_none() && self.cpu_millicores.is_none()
    }

    /// These caps, each unset one taken from `defaults`.
    #[must_use]
    pub fn or(self, defaults: Self) -> Self {
        Self {
            memory_bytes: self.memory_bytes.or(defaults.memory_bytes),
            cpu_millicores: self.cpu_millicores.or(defaults.cpu_millicores),
        }
    }

    /// `memory 2GiB, cpu 1.5 cores`, for messages; `no caps` when empty.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(m) = self.memory_bytes {
            parts.push(format!("memory {}", crate::settings::format_bytes(m)));
        }
        if let Some(c) = self.cpu_millicores {
            parts.push(format!("cpu {} cores", f64::from(c) / 1000.0));
        }
        if parts.is_empty() {
            return "no caps".to_owned();
        }
        parts.join(", ")
    }
}

/// Parses a memory cap (`2GiB`, `512MiB`, or bytes) within [`MIN_MEMORY_CAP`] and
/// [`MAX_MEMORY_CAP`]; `field` names it in the error.
pub fn parse_memory_cap(field: &str, text: &str) -> Result<u64, String> {
    let bytes = crate::settings::parse_bytes(text)
        .ok_or_else(|| format!("{field}: {text:?} is not a size (e.g. 512MiB, 2GiB)"))?;
    check_memory_cap(field, bytes)?;
    Ok(bytes)
}

/// Checks a memory cap in bytes: [`MIN_MEMORY_CAP`] to [`MAX_MEMORY_CAP`].
pub fn check_memory_cap(field: &str, bytes: u64) -> Result<(), String> {
    use crate::settings::format_bytes;
    if !(MIN_MEMORY_CAP..=MAX_MEMORY_CAP).contains(&bytes) {
        return Err(format!(
            "{field} must be {} to {}, not {}",
            format_bytes(MIN_MEMORY_CAP),
            format_bytes(MAX_MEMORY_CAP),
            format_bytes(bytes)
        ));
    }
    Ok(())
}

/// A CPU cap given in cores (`1.5`) as thousandths of a core, within
/// [`CPU_CAP_MILLICORES`]; `field` names it in the error.
pub fn cpu_cap_millicores(field: &str, cores: f64) -> Result<u32, String> {
    let millis = (cores * 1000.0).round();
    let (lo, hi) = (*CPU_CAP_MILLICORES.start(), *CPU_CAP_MILLICORES.end());
    if !millis.is_finite() || millis < f64::from(lo) || millis > f64::from(hi) {
        return Err(format!(
            "{field} must be {} to {} cores, not {cores}",
            f64::from(lo) / 1000.0,
            f64::from(hi) / 1000.0
        ));
    }
    // In range and finite, so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(millis as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_caps_are_bounded_and_fall_back_field_by_field() {
        assert_eq!(parse_memory_cap("limits.memory", "2GiB"), Ok(2 << 30));
        assert_eq!(parse_memory_cap("limits.memory", "16MiB"), Ok(16 << 20));
        let e = parse_memory_cap("limits.memory", "1MiB").unwrap_err();
        assert_eq!(e, "limits.memory must be 16MiB to 16384GiB, not 1MiB");
        let e = parse_memory_cap("limits.memory", "lots").unwrap_err();
        assert!(
            e.starts_with("limits.memory: \"lots\" is not a size"),
            "{e}"
        );
        assert_eq!(cpu_cap_millicores("limits.cpu", 1.5), Ok(1500));
        assert_eq!(cpu_cap_millicores("limits.cpu", 0.01), Ok(10));
        assert_eq!(cpu_cap_millicores("limits.cpu", 1024.0), Ok(1_024_000));
        for bad in [0.0, 0.004, -1.0, 1025.0, f64::NAN, f64::INFINITY] {
            let e = cpu_cap_millicores("limits.cpu", bad).unwrap_err();
            assert!(
                e.starts_with("limits.cpu must be 0.01 to 1024 cores"),
                "{e}"
            );
        }
        let build = ResourceCaps {
            memory_bytes: Some(1 << 30),
            cpu_millicores: None,
        };
        let spawner = ResourceCaps {
            memory_bytes: Some(4 << 30),
            cpu_millicores: Some(2000),
        };
        let both = build.or(spawner);
        assert_eq!(both.memory_bytes, Some(1 << 30));
        assert_eq!(both.cpu_millicores, Some(2000));
        assert_eq!(both.describe(), "memory 1GiB, cpu 2 cores");
        assert!(ResourceCaps::default().is_empty());
        assert_eq!(ResourceCaps::default().describe(), "no caps");
    }

    #[test]
    fn loader_shell_and_runtime_variables_are_refused_unless_allowed() {
        let names = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        for bad in [
            "LD_PRELOAD",
            "LD_LIBRARY_PATH",
            "PATH",
            "BASH_ENV",
            "ENV",
            "SHELLOPTS",
            "PS4",
            "JAVA_TOOL_OPTIONS",
            "NODE_OPTIONS",
            "PYTHONPATH",
            "PYTHONSTARTUP",
            "GLIBC_TUNABLES",
            "BASH_FUNC_x%%",
        ] {
            let err = check_env_policy(&names(&[bad]), &[]).unwrap_err();
            assert!(
                err.contains(bad) && err.contains(ENV_ALLOWED_SETTING),
                "{err}"
            );
        }
        for fine in [
            "GAME_MODE",
            "MAP",
            "PATHFINDER",
            "LDAP_URL",
            "MY_PATH",
            "ENVIRONMENT",
        ] {
            assert_eq!(check_env_policy(&names(&[fine]), &[]), Ok(()), "{fine}");
        }
        // An allow-list entry lets exactly what it names through.
        let allowed = names(&["LD_LIBRARY_PATH", "PYTHON*"]);
        assert_eq!(
            check_env_policy(&names(&["LD_LIBRARY_PATH", "PYTHONPATH"]), &allowed),
            Ok(())
        );
        assert!(check_env_policy(&names(&["LD_PRELOAD"]), &allowed).is_err());
    }

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
    fn ids_labels_and_args_are_bounded() {
        assert!(check_id("id", "spw-1").is_ok());
        assert_eq!(check_id("id", "").unwrap_err(), "id: required");
        assert!(check_id("id", &"x".repeat(MAX_ID + 1)).is_err());
        for ok in ["i-1", "a.b_c", &"x".repeat(MAX_ID)] {
            assert!(check_instance_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(MAX_ID + 1)] {
            assert!(check_instance_id(bad).is_err(), "{bad}");
        }
        assert!(check_label("labels", "mode", "ctf").is_ok());
        assert!(check_label("labels", "agones.dev/sdk-x", "").is_ok());
        assert!(check_label("labels", "", "x").is_err());
        assert!(check_label("labels", "a b", "x").is_err());
        assert!(check_label("labels", &"k".repeat(MAX_LABEL_KEY + 1), "x").is_err());
        let e = check_label("labels", "k", &"v".repeat(MAX_LABEL_VALUE + 1)).unwrap_err();
        assert!(e.starts_with("labels: value of k"), "{e}");
        let many: std::collections::HashMap<String, String> = (0..=MAX_LABELS)
            .map(|i| (format!("k{i}"), String::new()))
            .collect();
        assert!(check_labels("labels", many.iter()).is_err());
        assert!(check_labels("labels", many.iter().take(MAX_LABELS)).is_ok());
        assert!(check_args(&["-x".into(), "y".into()]).is_ok());
        assert!(check_args(&vec![String::new(); MAX_ARGS + 1]).is_err());
        assert!(
            check_args(&["a\0b".into()])
                .unwrap_err()
                .contains("argument 1")
        );
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

    #[test]
    fn every_restart_mode_and_unhealthy_action_word_names_one() {
        let modes: Vec<_> = RESTART_MODE_WORDS
            .iter()
            .map(|w| restart_mode_named(w).unwrap())
            .collect();
        assert_eq!(
            modes,
            [
                v1::RestartMode::Never,
                v1::RestartMode::OnFailure,
                v1::RestartMode::Always
            ]
        );
        let actions: Vec<_> = UNHEALTHY_ACTION_WORDS
            .iter()
            .map(|w| unhealthy_action_named(w).unwrap())
            .collect();
        assert_eq!(
            actions,
            [v1::UnhealthyAction::Leave, v1::UnhealthyAction::Restart]
        );
        assert_eq!(restart_mode_named("sometimes"), None);
        assert_eq!(unhealthy_action_named("RESTART"), None);
        assert_eq!(parse_range("r", "7000-7010", 1, 65535), Ok((7000, 7010)));
        assert_eq!(parse_range("r", " 7000 ", 1, 65535), Ok((7000, 7000)));
        for (bad, says) in [
            ("", "is not a range"),
            ("a-b", "is not a range"),
            ("1-2-3", "is not a range"),
            ("10-5", "ends before it starts"),
            ("0-10", "is outside 1..65535"),
            ("70000-70001", "is outside 1..65535"),
        ] {
            let e = parse_range("r", bad, 1, 65535).unwrap_err();
            assert!(e.starts_with("r: ") && e.contains(says), "{bad}: {e}");
        }
        assert_eq!(
            not_one_of("restart.policy", RESTART_MODE_WORDS, "sometimes"),
            "restart.policy: \"sometimes\" is not one of: never, on-failure, always"
        );
    }
}
