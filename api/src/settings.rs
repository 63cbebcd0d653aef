//! The run-time settings: every one declared once here (key, category, type, bounds,
//! default, description, whether it is read-only at run time or needs a restart, and who
//! applies it), with the parser that validates a value against its declaration and the
//! scope rules of per-region and per-label overrides. The master, the spawner, exilectl and
//! the dashboard all read these declarations, so a bound never reads two ways.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A group of settings, as pages and `exilectl config list --category` show them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// The master itself: sessions, retention, uploads.
    Master,
    /// What every spawner applies: heartbeats, logs, stop grace.
    Spawners,
    /// Credentials and what callers may ask for.
    Security,
    /// Uploaded builds.
    Builds,
}

impl Category {
    /// Every category, in display order.
    pub const ALL: [Category; 4] = [
        Category::Master,
        Category::Spawners,
        Category::Security,
        Category::Builds,
    ];

    /// Lower-case name (`spawners`), the key prefix and the wire form.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Master => "master",
            Category::Spawners => "spawners",
            Category::Security => "security",
            Category::Builds => "builds",
        }
    }

    /// Parses a category name.
    pub fn parse(text: &str) -> Result<Category, String> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| {
                format!(
                    "unknown category {text:?}; one of: {}",
                    Category::ALL.map(Category::as_str).join(", ")
                )
            })
    }
}

/// The type of a setting, with its bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    /// `true` or `false`.
    Bool,
    /// A whole number within `min..=max`.
    Int {
        /// Smallest value.
        min: i64,
        /// Largest value.
        max: i64,
    },
    /// A duration (`250ms`, `30s`, `5m`, `12h`, `7d`, or combined `1h30m`) within bounds,
    /// in milliseconds.
    Duration {
        /// Shortest, milliseconds.
        min_ms: u64,
        /// Longest, milliseconds.
        max_ms: u64,
    },
    /// A size (`512`, `64KiB`, `8MiB`, `4GiB`) within bounds, in bytes.
    Bytes {
        /// Smallest.
        min: u64,
        /// Largest.
        max: u64,
    },
    /// Free text up to a length.
    Str {
        /// Longest, in bytes.
        max_len: usize,
    },
    /// One of a fixed set of words.
    Enum(&'static [&'static str]),
    /// A range of whole numbers `first-last` (both included, first ≤ last) within `min..=max`.
    Range {
        /// Smallest first.
        min: i64,
        /// Largest last.
        max: i64,
    },
    /// A comma-separated list of words.
    List {
        /// Most items.
        max_items: usize,
        /// Longest item, in bytes.
        max_item_len: usize,
    },
}

impl Type {
    /// Name of the type (`duration`), the wire form.
    pub fn name(&self) -> &'static str {
        match self {
            Type::Bool => "bool",
            Type::Int { .. } => "int",
            Type::Duration { .. } => "duration",
            Type::Bytes { .. } => "bytes",
            Type::Str { .. } => "string",
            Type::Enum(_) => "enum",
            Type::Range { .. } => "range",
            Type::List { .. } => "list",
        }
    }

    /// The bounds as people read them: `100ms..1m`, `one of: a, b`; empty for bool.
    pub fn bounds(&self) -> String {
        match *self {
            Type::Bool => String::new(),
            Type::Int { min, max } => format!("{min}..{max}"),
            Type::Range { min, max } => format!("first-last within {min}..{max}"),
            Type::Duration { min_ms, max_ms } => {
                format!("{}..{}", format_duration(min_ms), format_duration(max_ms))
            }
            Type::Bytes { min, max } => format!("{}..{}", format_bytes(min), format_bytes(max)),
            Type::Str { max_len } => format!("at most {max_len} bytes"),
            Type::Enum(words) => format!("one of: {}", words.join(", ")),
            Type::List {
                max_items,
                max_item_len,
            } => format!("at most {max_items} items of at most {max_item_len} bytes"),
        }
    }
}

/// Who applies a setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppliedBy {
    /// The master reads it; global only.
    Master,
    /// Pushed to spawners over the link; may be overridden per region or per spawner label.
    Spawner,
}

/// The declaration of one setting.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// Key, `category.name`.
    pub key: &'static str,
    /// Category.
    pub category: Category,
    /// Type and bounds.
    pub ty: Type,
    /// Default value, as text in the type's canonical form. A flag of the binary that
    /// applies the setting may set another default on that process.
    pub default: &'static str,
    /// What it does, for people.
    pub description: &'static str,
    /// Shown but not changeable at run time (its flag sets it).
    pub read_only: bool,
    /// A change is stored at once but takes effect at the next start.
    pub needs_restart: bool,
    /// Who applies it.
    pub applied_by: AppliedBy,
}

/// A parsed, valid value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A bool.
    Bool(bool),
    /// A whole number.
    Int(i64),
    /// A duration in milliseconds.
    Duration(u64),
    /// A size in bytes.
    Bytes(u64),
    /// Text (also an enum's word).
    Str(String),
    /// A range, both ends included.
    Range(i64, i64),
    /// A list of words.
    List(Vec<String>),
}

impl Value {
    /// The canonical text of the value (what is stored and shown): parsing it again gives
    /// the same value.
    pub fn to_text(&self) -> String {
        match self {
            Value::Bool(b) => b.to_string(),
            Value::Int(n) => n.to_string(),
            Value::Duration(ms) => format_duration(*ms),
            Value::Bytes(n) => format_bytes(*n),
            Value::Str(s) => s.clone(),
            Value::Range(first, last) => format!("{first}-{last}"),
            Value::List(items) => items.join(","),
        }
    }

    /// Milliseconds of a duration, bytes of a size, the number of an int (negative: 0).
    pub fn as_u64(&self) -> u64 {
        match self {
            Value::Duration(n) | Value::Bytes(n) => *n,
            Value::Int(n) => u64::try_from(*n).unwrap_or(0),
            Value::Bool(b) => u64::from(*b),
            Value::Str(_) | Value::Range(..) | Value::List(_) => 0,
        }
    }
}

impl Setting {
    /// Parses and validates `text`; the error names the key and the bound it broke.
    pub fn parse(&self, text: &str) -> Result<Value, String> {
        let key = self.key;
        let text = text.trim();
        let out_of = |shown: &str| {
            format!(
                "{key}: {shown} is outside {}, the bounds of this {} setting",
                self.ty.bounds(),
                self.ty.name()
            )
        };
        match self.ty {
            Type::Bool => match text {
                "true" | "on" | "yes" | "1" => Ok(Value::Bool(true)),
                "false" | "off" | "no" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!("{key}: {text:?} is not a bool (true or false)")),
            },
            Type::Int { min, max } => {
                let n: i64 = text
                    .parse()
                    .map_err(|_| format!("{key}: {text:?} is not a whole number"))?;
                if n < min || n > max {
                    return Err(out_of(&n.to_string()));
                }
                Ok(Value::Int(n))
            }
            Type::Duration { min_ms, max_ms } => {
                let ms = parse_duration(text).ok_or_else(|| {
                    format!("{key}: {text:?} is not a duration (e.g. 500ms, 30s, 5m, 12h, 7d)")
                })?;
                if ms < min_ms || ms > max_ms {
                    return Err(out_of(&format_duration(ms)));
                }
                Ok(Value::Duration(ms))
            }
            Type::Bytes { min, max } => {
                let n = parse_bytes(text).ok_or_else(|| {
                    format!("{key}: {text:?} is not a size (e.g. 4096, 64KiB, 8MiB, 4GiB)")
                })?;
                if n < min || n > max {
                    return Err(out_of(&format_bytes(n)));
                }
                Ok(Value::Bytes(n))
            }
            Type::Str { max_len } => {
                if text.len() > max_len || text.chars().any(char::is_control) {
                    return Err(format!(
                        "{key}: text must be at most {max_len} bytes without control characters"
                    ));
                }
                Ok(Value::Str(text.to_owned()))
            }
            Type::Range { min, max } => {
                // The syntax is the flags'; the bounds are this setting's, said as such.
                let (first, last) = crate::limits::parse_range(key, text, i64::MIN, i64::MAX)?;
                if first < min || last > max {
                    return Err(out_of(&format!("{first}-{last}")));
                }
                Ok(Value::Range(first, last))
            }
            Type::Enum(words) => words
                .iter()
                .find(|w| **w == text)
                .map(|w| Value::Str((*w).to_owned()))
                .ok_or_else(|| crate::limits::not_one_of(key, words, text)),
            Type::List {
                max_items,
                max_item_len,
            } => {
                let items: Vec<String> = text
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                if items.len() > max_items
                    || items.iter().any(|i| {
                        i.len() > max_item_len || i.chars().any(|c| c.is_control() || c == ',')
                    })
                {
                    return Err(format!("{key}: {}", self.ty.bounds()));
                }
                Ok(Value::List(items))
            }
        }
    }

    /// The declared default, parsed.
    pub fn default_value(&self) -> Value {
        // Every default is checked by a test against its own declaration.
        self.parse(self.default)
            .unwrap_or_else(|_| Value::Str(self.default.to_owned()))
    }
}

const SECOND: u64 = 1000;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Key of the heartbeat interval, which the master also reads (its Welcome and the
/// heartbeat TTL check).
pub const HEARTBEAT_INTERVAL: &str = "spawners.heartbeat_interval";

/// Key of the switch that puts /metrics behind a token.
pub const METRICS_REQUIRE_TOKEN: &str = "master.metrics_require_token";

/// Key of the failed logins an address may make on an account before it waits.
pub const LOGIN_FREE_FAILURES: &str = "master.login_free_failures";

/// Key of the period after which one failed login is forgotten.
pub const LOGIN_FORGET_EVERY: &str = "master.login_forget_every";

/// Key of the longest wait for failed logins.
pub const LOGIN_MAX_WAIT: &str = "master.login_max_wait";

/// Key of the instances a rollout replaces at once by default.
pub const ROLLOUT_MAX_UNAVAILABLE: &str = "builds.rollout_max_unavailable";

/// THE declarations. A setting is declared here only when code applies it.
#[rustfmt::skip]
pub const SETTINGS: &[Setting] = &[
    Setting {
        key: "master.session_idle_timeout", category: Category::Master,
        ty: Type::Duration { min_ms: MINUTE, max_ms: 30 * DAY }, default: "12h",
        description: "A login session unused for this long ends (checked at each use).",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Master,
    },
    Setting {
        key: "master.session_max_age", category: Category::Master,
        ty: Type::Duration { min_ms: MINUTE, max_ms: 365 * DAY }, default: "7d",
        description: "A login session ends this long after login whatever its use (sessions created from then on).",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Master,
    },
    Setting {
        key: "master.upload_max_bytes", category: Category::Master,
        ty: Type::Bytes { min: MIB, max: 64 * GIB }, default: "4GiB",
        description: "Largest build archive an upload may announce.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Master,
    },
    Setting {
        key: "master.metrics_retention", category: Category::Master,
        ty: Type::Duration { min_ms: HOUR, max_ms: 365 * DAY }, default: "7d",
        description: "Downsampled metric history older than this is deleted (checked hourly).",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Master,
    },
    Setting {
        key: METRICS_REQUIRE_TOKEN, category: Category::Master,
        ty: Type::Bool, default: "false",
        description: "GET /metrics answers only a request with `Authorization: Bearer <token>` of a viewer or higher (an API token or a session).",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Master,
    },
    Setting {
        key: "master.audit_retention", category: Category::Master,
        ty: Type::Duration { min_ms: 0, max_ms: 3650 * DAY }, default: "0ms",
        description: "Audit entries older than this are deleted (checked hourly); 0ms keeps them forever.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Master,
    },
    Setting {
        key: "master.heartbeat_ttl", category: Category::Master,
        ty: Type::Duration { min_ms: 100, max_ms: 10 * MINUTE }, default: "15s",
        description: "A spawner without a heartbeat for this long becomes Unreachable (the master's --heartbeat-ttl-ms).",
        read_only: true, needs_restart: true, applied_by: AppliedBy::Master,
    },
    Setting {
        key: LOGIN_FREE_FAILURES, category: Category::Master,
        ty: Type::Int { min: 1, max: 1000 }, default: "5",
        description: "Failed logins one address may make on one account before it must wait (the first wait is 2s, doubling with each further failure). Applies from the next attempt.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Master,
    },
    Setting {
        key: LOGIN_FORGET_EVERY, category: Category::Master,
        ty: Type::Duration { min_ms: SECOND, max_ms: DAY }, default: "1m",
        description: "One failed login of an address on an account is forgotten per this period, continuously. Applies from the next attempt.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Master,
    },
    Setting {
        key: LOGIN_MAX_WAIT, category: Category::Master,
        ty: Type::Duration { min_ms: SECOND, max_ms: DAY }, default: "5m",
        description: "Longest wait (lockout) an address is given for failed logins on one account. Applies to failures from then on.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Master,
    },
    Setting {
        key: HEARTBEAT_INTERVAL, category: Category::Spawners,
        ty: Type::Duration { min_ms: 100, max_ms: MINUTE }, default: "5s",
        description: "How often spawners send heartbeats; must stay below master.heartbeat_ttl.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "spawners.stop_grace", category: Category::Spawners,
        ty: Type::Duration { min_ms: 0, max_ms: HOUR }, default: "10s",
        description: "Time between the stop signal and SIGKILL when a stop names none (a build's manifest goes over it). Unset: each spawner's --stop-grace-period.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "spawners.log_rotation_bytes", category: Category::Spawners,
        ty: Type::Bytes { min: 4 * KIB, max: GIB }, default: "8MiB",
        description: "Size of an instance's log file before it rotates, for processes started from then on. Unset: each spawner's --log-file-max-bytes.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "spawners.log_rotation_files", category: Category::Spawners,
        ty: Type::Int { min: 1, max: 100 }, default: "4",
        description: "Rotated log files kept per instance, for processes started from then on. Unset: each spawner's --log-files.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "spawners.port_range", category: Category::Spawners,
        ty: Type::Range { min: 1, max: 65535 }, default: "7800-7999",
        description: "Ports handed to new instances, first-last; instances holding ports keep them. Set per region or label to give those spawners their own range; a spawner refuses a range that overlaps its --agones-port-range. Unset: each spawner's --port-range.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "spawners.restart_policy", category: Category::Spawners,
        ty: Type::Enum(crate::limits::RESTART_MODE_WORDS), default: "never",
        description: "When an instance is restarted after it exits, for spawns that name no restart policy (a build's manifest goes over it). Unset: each spawner's --restart-policy.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "spawners.restart_max", category: Category::Spawners,
        ty: Type::Int { min: 1, max: crate::limits::MAX_RESTARTS as i64 }, default: "5",
        description: "Restarts allowed within spawners.restart_window before the instance ends Crashed, for spawns that name none (a build's manifest goes over it). Unset: each spawner's --restart-max.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "spawners.restart_window", category: Category::Spawners,
        ty: Type::Duration { min_ms: SECOND, max_ms: crate::limits::MAX_RESTART_WINDOW_SECS as u64 * SECOND }, default: "5m",
        description: "The window spawners.restart_max counts restarts in (whole seconds), for spawns that name none (a build's manifest goes over it). Unset: each spawner's --restart-window.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "spawners.restart_backoff", category: Category::Spawners,
        ty: Type::Duration { min_ms: 1, max_ms: HOUR }, default: "1s",
        description: "Delay before the first restart, doubling with each restart in the window, for spawns that name none (a build's manifest goes over it); must not exceed spawners.restart_backoff_max. Unset: each spawner's --restart-backoff-ms.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "spawners.restart_backoff_max", category: Category::Spawners,
        ty: Type::Duration { min_ms: 1, max_ms: DAY }, default: "1m",
        description: "Longest delay between restarts, for spawns that name none (a build's manifest goes over it). Unset: each spawner's --restart-backoff-max-ms.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "spawners.health_period", category: Category::Spawners,
        ty: Type::Duration { min_ms: *crate::limits::HEALTH_PERIOD_MS.start() as u64, max_ms: *crate::limits::HEALTH_PERIOD_MS.end() as u64 }, default: "5s",
        description: "Expected time between a game's SDK health pings, for spawns that name no health check (a build's manifest goes over it). Unset: each spawner's --health-period.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "spawners.health_failure_threshold", category: Category::Spawners,
        ty: Type::Int { min: 1, max: crate::limits::MAX_HEALTH_FAILURES as i64 }, default: "3",
        description: "Missed health periods after which a game is Unhealthy, for spawns that name no health check (a build's manifest goes over it). Unset: each spawner's --health-failure-threshold.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "spawners.health_initial_delay", category: Category::Spawners,
        ty: Type::Duration { min_ms: 0, max_ms: crate::limits::MAX_HEALTH_INITIAL_DELAY_MS as u64 }, default: "0ms",
        description: "Time after a start during which missed pings do not count, for spawns that name no health check (a build's manifest goes over it). Unset: each spawner's --health-initial-delay.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "spawners.unhealthy_action", category: Category::Spawners,
        ty: Type::Enum(crate::limits::UNHEALTHY_ACTION_WORDS), default: "leave",
        description: "What follows Unhealthy (leave the game running, or restart it under its restart policy), for spawns that name no health check (a build's manifest goes over it). Unset: each spawner's --unhealthy-action.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "spawners.backups_keep", category: Category::Spawners,
        ty: Type::Int { min: 0, max: 10000 }, default: "0",
        description: "Newest backups kept per instance: after each new backup of an instance, its older ones beyond this many are deleted. 0 (also when unset) keeps them all.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: "security.api_token_max_ttl", category: Category::Security,
        ty: Type::Duration { min_ms: HOUR, max_ms: 3650 * DAY }, default: "3650d",
        description: "Longest lifetime an API token may be created with.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Master,
    },
    Setting {
        key: crate::limits::ENV_ALLOWED_SETTING, category: Category::Security,
        ty: Type::List { max_items: 64, max_item_len: 128 }, default: "",
        description: "Environment names (or PREFIX* patterns) a spawn, fleet or build may give a game although they are refused by default: LD_*, PATH, shell hooks, language runtimes' option variables.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Master,
    },
    Setting {
        key: "builds.keep_versions", category: Category::Builds,
        ty: Type::Int { min: 0, max: 1000 }, default: "2",
        description: "Newest versions of each uploaded build name a spawner keeps on disk at its next clean-up, besides those instances use and those the master wants held. Unset: each spawner's --builds-keep.",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Spawner,
    },
    Setting {
        key: ROLLOUT_MAX_UNAVAILABLE, category: Category::Builds,
        ty: Type::Int { min: 1, max: crate::limits::MAX_ROLLOUT_UNAVAILABLE as i64 }, default: "1",
        description: "Instances a rollout replaces at once when its request gives no max_unavailable (rollouts started from then on).",
        read_only: false, needs_restart: false, applied_by: AppliedBy::Master,
    },
];

/// The declaration of a key.
pub fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

/// The declaration of a key, or an error listing what exists.
pub fn lookup(key: &str) -> Result<&'static Setting, String> {
    find(key)
        .ok_or_else(|| format!("unknown setting {key:?}; `exilectl config list` shows every key"))
}

/// Where a value applies: everywhere, to spawners of a region, or to spawners with a label.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Everywhere.
    Global,
    /// Spawners of one region.
    Region(String),
    /// Spawners carrying the label `key=value`.
    Label(String, String),
}

impl Scope {
    /// Parses `""` (global), `region:NAME` or `label:KEY=VALUE`.
    pub fn parse(text: &str) -> Result<Scope, String> {
        let text = text.trim();
        if text.is_empty() || text == "global" {
            return Ok(Scope::Global);
        }
        if let Some(region) = text.strip_prefix("region:") {
            crate::limits::check_id("scope region", region)?;
            return Ok(Scope::Region(region.to_owned()));
        }
        if let Some(label) = text.strip_prefix("label:")
            && let Some((k, v)) = label.split_once('=')
        {
            crate::limits::check_label("scope label", k, v)?;
            return Ok(Scope::Label(k.to_owned(), v.to_owned()));
        }
        Err(format!(
            "scope {text:?}: empty (global), region:NAME or label:KEY=VALUE"
        ))
    }

    /// The wire and storage form: `""`, `region:NAME`, `label:KEY=VALUE`.
    pub fn to_text(&self) -> String {
        match self {
            Scope::Global => String::new(),
            Scope::Region(r) => format!("region:{r}"),
            Scope::Label(k, v) => format!("label:{k}={v}"),
        }
    }

    /// Whether a spawner of `region` with `labels` is in this scope.
    pub fn matches(&self, region: &str, labels: &dyn Fn(&str) -> Option<String>) -> bool {
        match self {
            Scope::Global => true,
            Scope::Region(r) => r == region,
            Scope::Label(k, v) => labels(k).as_deref() == Some(v.as_str()),
        }
    }

    /// Precedence when several scopes match: a label beats a region beats global.
    pub fn rank(&self) -> u8 {
        match self {
            Scope::Global => 0,
            Scope::Region(_) => 1,
            Scope::Label(..) => 2,
        }
    }
}

/// Checks that a value may be set in a scope: overrides exist only for settings spawners
/// apply, and read-only settings are never set.
pub fn check_settable(setting: &Setting, scope: &Scope) -> Result<(), String> {
    if setting.read_only {
        return Err(format!(
            "{}: read-only at run time; it is set by the master's flags",
            setting.key
        ));
    }
    if *scope != Scope::Global && setting.applied_by != AppliedBy::Spawner {
        return Err(format!(
            "{}: only settings spawners apply take a region or label scope",
            setting.key
        ));
    }
    Ok(())
}

/// The value a spawner of `region` with `labels` gets for each key among `values` (key →
/// scope → text): the matching scope of highest rank; label ties go to the smaller label.
pub fn resolve_for(
    values: &BTreeMap<String, BTreeMap<Scope, String>>,
    region: &str,
    labels: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, scopes) in values {
        let best = scopes
            .iter()
            .filter(|(s, _)| s.matches(region, labels))
            .max_by(|(a, _), (b, _)| a.rank().cmp(&b.rank()).then_with(|| b.cmp(a)));
        if let Some((_, text)) = best {
            out.insert(key.clone(), text.clone());
        }
    }
    out
}

/// A duration in milliseconds, read by the one duration parser (`crate::format::parse_duration`:
/// `250ms`, `30s`, `5m`, `12h`, `7d`, `2w` or sums of them; a bare number is seconds). None
/// when malformed or beyond u64 milliseconds.
pub fn parse_duration(text: &str) -> Option<u64> {
    let d = crate::format::parse_duration(text).ok()?;
    u64::try_from(d.as_millis()).ok()
}

/// The shortest exact form of a duration: `250ms`, `30s`, `1h30m`, `7d`.
pub fn format_duration(ms: u64) -> String {
    if ms == 0 {
        return "0ms".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, name) in [
        (DAY, "d"),
        (HOUR, "h"),
        (MINUTE, "m"),
        (SECOND, "s"),
        (1, "ms"),
    ] {
        if rest >= unit {
            let _ = write!(out, "{}{name}", rest / unit);
            rest %= unit;
        }
    }
    out
}

/// Parses `4096`, `64KiB`, `8MiB`, `4GiB` (also `KB`/`MB`/`GB`/`K`/`M`/`G` as binary
/// units). None when malformed or too large.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    if split == 0 {
        return None;
    }
    let n: u64 = text[..split].parse().ok()?;
    let unit = match text[split..].trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => KIB,
        "M" | "MB" | "MiB" => MIB,
        "G" | "GB" | "GiB" => GIB,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// The exact form of a size in the largest whole unit: `4GiB`, `8MiB`, `1000`.
pub fn format_bytes(n: u64) -> String {
    for (unit, name) in [(GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{}{name}", n / unit);
        }
    }
    n.to_string()
}

/// The settings table of the README, generated from the declarations.
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| key | type | default | bounds | applied by | description |\n|---|---|---|---|---|---|\n",
    );
    for s in SETTINGS {
        let mut notes = String::new();
        if s.read_only {
            notes.push_str(" (read-only)");
        }
        if s.needs_restart {
            notes.push_str(" (needs restart)");
        }
        let _ = writeln!(
            out,
            "| `{}` | {} | `{}` | {} | {} | {}{} |",
            s.key,
            s.ty.name(),
            s.default,
            s.ty.bounds(),
            match s.applied_by {
                AppliedBy::Master => "master",
                AppliedBy::Spawner => "spawners",
            },
            s.description,
            notes
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_declaration_is_sound() {
        let mut keys = std::collections::HashSet::new();
        for s in SETTINGS {
            assert!(keys.insert(s.key), "{} declared twice", s.key);
            assert!(
                s.key.starts_with(&format!("{}.", s.category.as_str())),
                "{} is not under its category",
                s.key
            );
            let v = s
                .parse(s.default)
                .unwrap_or_else(|e| panic!("default of {}: {e}", s.key));
            assert_eq!(v.to_text(), s.default, "{}: default not canonical", s.key);
            assert!(!s.description.is_empty());
        }
    }

    #[test]
    fn values_round_trip_through_their_text() {
        for s in SETTINGS {
            let v = s.default_value();
            assert_eq!(s.parse(&v.to_text()), Ok(v), "{}", s.key);
        }
        let s = lookup(HEARTBEAT_INTERVAL).unwrap();
        assert_eq!(s.parse("1500ms").unwrap().to_text(), "1s500ms");
        assert_eq!(s.parse("1m").unwrap(), Value::Duration(60_000));
    }

    #[test]
    fn bounds_errors_name_the_key_and_the_bound() {
        let s = lookup(HEARTBEAT_INTERVAL).unwrap();
        let e = s.parse("2m").unwrap_err();
        assert!(
            e.contains(HEARTBEAT_INTERVAL) && e.contains("100ms..1m"),
            "{e}"
        );
        let e = s.parse("soon").unwrap_err();
        assert!(e.contains(HEARTBEAT_INTERVAL), "{e}");
        let e = lookup("spawners.log_rotation_files")
            .unwrap()
            .parse("0")
            .unwrap_err();
        assert!(e.contains("1..100"), "{e}");
        assert!(lookup("nope").unwrap_err().contains("nope"));
    }

    #[test]
    fn port_ranges_parse_within_their_bounds() {
        let s = lookup("spawners.port_range").unwrap();
        assert_eq!(s.parse(" 7000 - 7099 "), Ok(Value::Range(7000, 7099)));
        assert_eq!(s.parse("7000").unwrap().to_text(), "7000-7000");
        assert!(s.parse("7099-7000").unwrap_err().contains("ends before"));
        let e = s.parse("0-10").unwrap_err();
        assert!(e.contains("1..65535") && e.contains(s.key), "{e}");
        assert!(s.parse("70000-70001").is_err());
        assert!(s.parse("a-b").unwrap_err().contains("not a range"));
    }

    #[test]
    fn durations_and_sizes_parse_and_print() {
        assert_eq!(parse_duration("1h30m"), Some(90 * MINUTE));
        assert_eq!(parse_duration("45"), Some(45 * SECOND));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(format_duration(90 * MINUTE + 5), "1h30m5ms");
        assert_eq!(parse_bytes("8MiB"), Some(8 * MIB));
        assert_eq!(parse_bytes("8 MB"), Some(8 * MIB));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(format_bytes(3 * MIB), "3MiB");
        assert_eq!(format_bytes(1000), "1000");
    }

    #[test]
    fn the_narrowest_matching_scope_wins() {
        let mut values = BTreeMap::new();
        let mut scopes = BTreeMap::new();
        scopes.insert(Scope::Global, "5s".to_owned());
        scopes.insert(Scope::Region("eu".into()), "2s".to_owned());
        scopes.insert(Scope::Label("tier".into(), "gold".into()), "1s".to_owned());
        values.insert(HEARTBEAT_INTERVAL.to_owned(), scopes);
        let gold = |k: &str| (k == "tier").then(|| "gold".to_owned());
        let none = |_: &str| -> Option<String> { None };
        let get = |region: &str, labels: &dyn Fn(&str) -> Option<String>| {
            resolve_for(&values, region, labels)[HEARTBEAT_INTERVAL].clone()
        };
        assert_eq!(get("eu", &gold), "1s");
        assert_eq!(get("eu", &none), "2s");
        assert_eq!(get("us", &none), "5s");
        assert_eq!(
            Scope::parse("label:tier=gold").unwrap().to_text(),
            "label:tier=gold"
        );
        assert!(Scope::parse("zone:x").is_err());
    }

    #[test]
    fn the_readme_lists_every_setting() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let start = "<!-- settings-table:start -->\n";
        let end = "<!-- settings-table:end -->";
        let from = readme.find(start).unwrap() + start.len();
        let to = readme.find(end).unwrap();
        assert_eq!(
            &readme[from..to],
            markdown_table(),
            "README.md's settings table is stale; paste the table above between its markers"
        );
    }

    #[test]
    fn only_spawner_settings_take_a_scope_and_read_only_ones_none() {
        let master = lookup("master.upload_max_bytes").unwrap();
        assert!(check_settable(master, &Scope::Region("eu".into())).is_err());
        assert!(check_settable(master, &Scope::Global).is_ok());
        let ttl = lookup("master.heartbeat_ttl").unwrap();
        assert!(check_settable(ttl, &Scope::Global).is_err());
    }
}
