//! The build manifest `exile-build.toml`: how a build is started (command template, ports,
//! environment, stop signal and grace) and the restart and health defaults of its instances.
//! The master checks it when a build is uploaded; the spawner reads it to run the build (and
//! for a host build, from `--build-dir`). Every field is optional:
//!
//! ```toml
//! sdk = "agones"          # exile (default) | agones: also serve the Agones SDK to instances
//! [agones.counters.rooms] # Agones counters each instance keeps (sdk = "agones" only)
//! count = 0               # default 0
//! capacity = 10           # default 1000
//! [agones.lists.players]  # Agones lists each instance keeps (sdk = "agones" only)
//! capacity = 16           # 0 to 1000, default 1000
//! values = []             # default none
//! [run]
//! command = "./server +set net_port {port:game} +set query_port {port:query}"
//! [env]
//! GAME_MODE = "ctf"
//! [[ports]]
//! name = "game"
//! protocol = "udp"        # tcp | udp | tcp+udp (default)
//! [[ports]]
//! name = "query"
//! protocol = "tcp"
//! [stop]
//! signal = "SIGINT"       # SIGTERM (default) | SIGINT | SIGQUIT | SIGHUP | SIGUSR1 | SIGUSR2
//! grace_secs = 30
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
//! [limits]                # caps of all the game's processes together (cgroups v2)
//! memory = "2GiB"         # 16MiB to 16384GiB; no swap beyond it
//! cpu = 1.5               # cores, 0.01 to 1024
//! ```
//!
//! Placeholders in the command: `{port}` (the first port), `{port:NAME}`, `{instance_id}`,
//! `{data_dir}` and `{build_dir}`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::counts::{Counter, Counts, List};
use crate::limits;
use crate::v1;

/// File name of the manifest at the top of a build.
pub const MANIFEST_FILE: &str = "exile-build.toml";
/// Largest manifest, bytes.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;
/// Most ports one instance of a build may hold.
pub const MAX_PORTS: usize = 16;
/// Longest stop grace a manifest may set, seconds.
pub const MAX_STOP_GRACE_SECS: u32 = 3600;
/// Placeholders a command template may use besides `{port:NAME}`.
pub const PLACEHOLDERS: [&str; 4] = ["{port}", "{instance_id}", "{data_dir}", "{build_dir}"];

/// Why a manifest cannot be used: the problem and, when known, the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// Line of the manifest, 1-based, when the problem has one.
    pub line: Option<usize>,
    /// What is wrong, naming the field.
    pub problem: String,
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.problem),
            None => f.write_str(&self.problem),
        }
    }
}

impl std::error::Error for ManifestError {}

fn problem(p: impl Into<String>) -> ManifestError {
    ManifestError {
        line: None,
        problem: p.into(),
    }
}

/// A checked manifest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Manifest {
    /// Start command template, split like a shell; `None` runs the spawner's own command.
    pub command: Option<Vec<String>>,
    /// Environment the build's processes get (before a spawn's own).
    pub env: BTreeMap<String, String>,
    /// Ports each instance holds, in order; never empty (one `game` port by default).
    pub ports: Vec<PortSpec>,
    /// Signal that asks the game to stop.
    pub stop_signal: StopSignal,
    /// Seconds between the stop signal and SIGKILL; `None` takes the spawner's default.
    pub stop_grace_secs: Option<u32>,
    /// Restart defaults; each 0 or unspecified field takes the spawner's.
    pub restart: v1::RestartPolicy,
    /// Health defaults; each unset field takes the spawner's.
    pub health: v1::HealthCheck,
    /// Which game-server SDK the build speaks besides Exile's own.
    pub sdk: SdkKind,
    /// The Agones counters and lists each instance starts with (`sdk = "agones"` only).
    pub agones: Counts,
    /// Memory and CPU caps of each instance; unset ones take the spawner's defaults.
    pub limits: limits::ResourceCaps,
}

/// The game-server SDK a build is written against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SdkKind {
    /// Exile's own SDK only (`EXILE_SDK_*`).
    #[default]
    Exile,
    /// Agones' SDK as well: each instance gets its own Agones SDK ports
    /// (`AGONES_SDK_GRPC_PORT`, `AGONES_SDK_HTTP_PORT`).
    Agones,
}

/// One named port of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortSpec {
    /// Name, e.g. `game` or `query`.
    pub name: String,
    /// Protocols reserved on it.
    pub protocol: v1::Protocol,
}

/// Signals a manifest may choose to stop a game with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum StopSignal {
    /// SIGTERM.
    #[default]
    #[serde(rename = "SIGTERM")]
    Term,
    /// SIGINT (what many game servers take as Ctrl-C).
    #[serde(rename = "SIGINT")]
    Int,
    /// SIGQUIT.
    #[serde(rename = "SIGQUIT")]
    Quit,
    /// SIGHUP.
    #[serde(rename = "SIGHUP")]
    Hup,
    /// SIGUSR1.
    #[serde(rename = "SIGUSR1")]
    Usr1,
    /// SIGUSR2.
    #[serde(rename = "SIGUSR2")]
    Usr2,
}

impl StopSignal {
    /// The signal's number on Linux.
    pub fn number(self) -> i32 {
        match self {
            Self::Term => 15,
            Self::Int => 2,
            Self::Quit => 3,
            Self::Hup => 1,
            Self::Usr1 => 10,
            Self::Usr2 => 12,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(default)]
    sdk: SdkKind,
    #[serde(default)]
    run: RawRun,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<RawPort>,
    #[serde(default)]
    stop: RawStop,
    #[serde(default)]
    restart: RawRestart,
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    agones: RawAgones,
    #[serde(default)]
    limits: RawLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgones {
    #[serde(default)]
    counters: BTreeMap<String, RawCounter>,
    #[serde(default)]
    lists: BTreeMap<String, RawList>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCounter {
    #[serde(default)]
    count: i64,
    #[serde(default = "default_capacity")]
    capacity: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    #[serde(default = "default_capacity")]
    capacity: i64,
    #[serde(default)]
    values: Vec<String>,
}

fn default_capacity() -> i64 {
    crate::counts::DEFAULT_CAPACITY
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    memory: Option<RawSize>,
    cpu: Option<f64>,
}

/// A size written as text (`"2GiB"`) or as a number of bytes.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    command: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPort {
    name: String,
    #[serde(default)]
    protocol: RawProtocol,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
enum RawProtocol {
    #[serde(rename = "tcp")]
    Tcp,
    #[serde(rename = "udp")]
    Udp,
    #[default]
    #[serde(rename = "tcp+udp")]
    TcpUdp,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStop {
    signal: Option<StopSignal>,
    grace_secs: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRestart {
    /// A word of `limits::RESTART_MODE_WORDS`.
    policy: Option<String>,
    max_restarts: Option<u32>,
    window_secs: Option<u32>,
    backoff_ms: Option<u32>,
    backoff_max_ms: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    period_secs: Option<f64>,
    failure_threshold: Option<u32>,
    initial_delay_secs: Option<f64>,
    /// A word of `limits::UNHEALTHY_ACTION_WORDS`.
    action: Option<String>,
}

/// Seconds (fractions allowed) as whole milliseconds within `max_ms`.
fn secs_to_ms(field: &str, secs: f64, max_ms: u32) -> Result<u32, ManifestError> {
    let ms = secs * 1000.0;
    if !ms.is_finite() || ms < 0.0 || ms > f64::from(max_ms) {
        return Err(problem(format!(
            "{field} must be 0 to {} seconds, not {secs}",
            max_ms / 1000
        )));
    }
    // In range and finite, so the cast cannot truncate.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(ms.round() as u32)
}

impl Manifest {
    /// Parses and checks a manifest's text.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(problem(format!(
                "{MANIFEST_FILE} is larger than {} KiB",
                MAX_MANIFEST_BYTES / 1024
            )));
        }
        let raw: Raw = toml::from_str(text).map_err(|e| ManifestError {
            line: e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1),
            problem: e.message().trim_end().to_owned(),
        })?;
        Self::check(raw)
    }

    fn check(raw: Raw) -> Result<Self, ManifestError> {
        let mut ports = Vec::new();
        for p in raw.ports {
            let ok = !p.name.is_empty()
                && p.name.len() <= 32
                && p.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
            if !ok {
                return Err(problem(format!(
                    "ports: name {:?} must be 1 to 32 of a-z, 0-9, - and _",
                    p.name
                )));
            }
            if ports.iter().any(|q: &PortSpec| q.name == p.name) {
                return Err(problem(format!("ports: {} is named twice", p.name)));
            }
            ports.push(PortSpec {
                name: p.name,
                protocol: match p.protocol {
                    RawProtocol::Tcp => v1::Protocol::Tcp,
                    RawProtocol::Udp => v1::Protocol::Udp,
                    RawProtocol::TcpUdp => v1::Protocol::TcpUdp,
                },
            });
        }
        if ports.len() > MAX_PORTS {
            return Err(problem(format!("ports: at most {MAX_PORTS}")));
        }
        if ports.is_empty() {
            ports.push(PortSpec {
                name: "game".into(),
                protocol: v1::Protocol::TcpUdp,
            });
        }
        let command = match raw.run.command {
            None => None,
            Some(c) => {
                let words =
                    shlex::split(&c).ok_or_else(|| problem("run.command has unbalanced quotes"))?;
                if words.is_empty() {
                    return Err(problem("run.command must not be empty"));
                }
                for w in &words {
                    check_placeholders(w, &ports)?;
                }
                Some(words)
            }
        };
        limits::check_env(raw.env.iter()).map_err(problem)?;
        if let Some(g) = raw.stop.grace_secs
            && g > MAX_STOP_GRACE_SECS
        {
            return Err(problem(format!(
                "stop.grace_secs must be at most {MAX_STOP_GRACE_SECS}, not {g}"
            )));
        }
        let r = raw.restart;
        let restart = v1::RestartPolicy {
            mode: match r.policy.as_deref() {
                None => v1::RestartMode::Unspecified,
                Some(word) => limits::restart_mode_named(word).ok_or_else(|| {
                    problem(limits::not_one_of(
                        "restart.policy",
                        limits::RESTART_MODE_WORDS,
                        word,
                    ))
                })?,
            } as i32,
            max_restarts: r.max_restarts.unwrap_or(0),
            window_seconds: match r.window_secs {
                Some(0) => {
                    return Err(problem(format!(
                        "restart.window_secs must be 1 to {}",
                        limits::MAX_RESTART_WINDOW_SECS
                    )));
                }
                w => w.unwrap_or(0),
            },
            backoff_base_ms: r.backoff_ms.unwrap_or(0),
            backoff_max_ms: r.backoff_max_ms.unwrap_or(0),
        };
        if r.max_restarts == Some(0) {
            return Err(problem(format!(
                "restart.max_restarts must be 1 to {}",
                limits::MAX_RESTARTS
            )));
        }
        limits::check_restart_policy(&restart)
            .map_err(|e| problem(e.replace("restart_policy.", "restart.")))?;
        let h = raw.health;
        let health = v1::HealthCheck {
            period_ms: h
                .period_secs
                .map(|s| secs_to_ms("health.period_secs", s, *limits::HEALTH_PERIOD_MS.end()))
                .transpose()?,
            failure_threshold: h.failure_threshold,
            initial_delay_ms: h
                .initial_delay_secs
                .map(|s| {
                    secs_to_ms(
                        "health.initial_delay_secs",
                        s,
                        limits::MAX_HEALTH_INITIAL_DELAY_MS,
                    )
                })
                .transpose()?,
            action: match h.action.as_deref() {
                None => v1::UnhealthyAction::Unspecified,
                Some(word) => limits::unhealthy_action_named(word).ok_or_else(|| {
                    problem(limits::not_one_of(
                        "health.action",
                        limits::UNHEALTHY_ACTION_WORDS,
                        word,
                    ))
                })?,
            } as i32,
        };
        limits::check_health_check(&health)
            .map_err(|e| problem(e.replace("health_check.", "health.")))?;
        let agones = Counts {
            counters: (raw.agones.counters.into_iter())
                .map(|(name, c)| {
                    let counter = Counter {
                        count: c.count,
                        capacity: c.capacity,
                    };
                    (name, counter)
                })
                .collect(),
            lists: (raw.agones.lists.into_iter())
                .map(|(name, l)| {
                    let list = List {
                        capacity: l.capacity,
                        values: l.values,
                    };
                    (name, list)
                })
                .collect(),
        };
        agones.check().map_err(problem)?;
        if !agones.is_empty() && raw.sdk != SdkKind::Agones {
            return Err(problem(
                "agones.counters and agones.lists are kept for the Agones SDK: add sdk = \"agones\"",
            ));
        }
        let caps = limits::ResourceCaps {
            memory_bytes: match raw.limits.memory {
                None => None,
                Some(RawSize::Bytes(n)) => {
                    limits::check_memory_cap("limits.memory", n).map_err(problem)?;
                    Some(n)
                }
                Some(RawSize::Text(t)) => {
                    Some(limits::parse_memory_cap("limits.memory", &t).map_err(problem)?)
                }
            },
            cpu_millicores: raw
                .limits
                .cpu
                .map(|c| limits::cpu_cap_millicores("limits.cpu", c))
                .transpose()
                .map_err(problem)?,
        };
        Ok(Self {
            limits: caps,
            command,
            env: raw.env,
            ports,
            stop_signal: raw.stop.signal.unwrap_or_default(),
            stop_grace_secs: raw.stop.grace_secs,
            restart,
            health,
            sdk: raw.sdk,
            agones,
        })
    }

    /// The ports as the API shows them (numbers 0: a spawner picks them per instance).
    pub fn port_templates(&self) -> Vec<v1::Port> {
        self.ports
            .iter()
            .map(|p| v1::Port {
                name: p.name.clone(),
                port: 0,
                protocol: p.protocol as i32,
            })
            .collect()
    }
}

/// Refuses a `{…}` placeholder that is not known (a typo would otherwise reach the game).
fn check_placeholders(word: &str, ports: &[PortSpec]) -> Result<(), ManifestError> {
    let mut rest = word;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            return Ok(());
        };
        let ph = &rest[start..=start + len];
        let known = PLACEHOLDERS.contains(&ph)
            || ph
                .strip_prefix("{port:")
                .and_then(|n| n.strip_suffix('}'))
                .is_some_and(|n| ports.iter().any(|p| p.name == n));
        if !known {
            return Err(problem(format!(
                "run.command: {ph} is not a placeholder (use {}, or {{port:NAME}} with a port NAME of [[ports]])",
                PLACEHOLDERS.join(", ")
            )));
        }
        rest = &rest[start + len + 1..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_manifest_gives_one_game_port_and_no_command() {
        let m = Manifest::parse("").unwrap();
        assert_eq!(m.command, None);
        assert_eq!(m.ports.len(), 1);
        assert_eq!(m.ports[0].name, "game");
        assert_eq!(m.ports[0].protocol, v1::Protocol::TcpUdp);
        assert_eq!(m.stop_signal, StopSignal::Term);
    }

    #[test]
    fn the_sdk_is_exile_unless_the_manifest_says_agones() {
        assert_eq!(Manifest::parse("").unwrap().sdk, SdkKind::Exile);
        let m = Manifest::parse("sdk = \"agones\"\n[run]\ncommand = \"./server\"\n").unwrap();
        assert_eq!(m.sdk, SdkKind::Agones);
        let e = Manifest::parse("sdk = \"steam\"").unwrap_err();
        assert!(e.problem.contains("unknown variant `steam`"), "{e}");
    }

    #[test]
    fn restart_and_health_words_are_the_shared_ones() {
        let m =
            Manifest::parse("[restart]\npolicy = \"on-failure\"\n[health]\naction = \"restart\"\n")
                .unwrap();
        assert_eq!(m.restart.mode, v1::RestartMode::OnFailure as i32);
        assert_eq!(m.health.action, v1::UnhealthyAction::Restart as i32);
        let e = Manifest::parse("[restart]\npolicy = \"sometimes\"\n").unwrap_err();
        assert!(
            e.problem
                .contains("restart.policy: \"sometimes\" is not one of: never, on-failure, always"),
            "{e}"
        );
        let e = Manifest::parse("[health]\naction = \"reboot\"\n").unwrap_err();
        assert!(
            e.problem
                .contains("health.action: \"reboot\" is not one of: leave, restart"),
            "{e}"
        );
    }

    #[test]
    fn agones_counters_and_lists_are_declared_checked_and_defaulted() {
        let m = Manifest::parse(
            "sdk = \"agones\"\n[agones.counters.rooms]\ncapacity = 10\n[agones.counters.games]\n[agones.lists.players]\ncapacity = 4\nvalues = [\"bot\"]\n",
        )
        .unwrap();
        assert_eq!(
            m.agones.counters["rooms"],
            Counter {
                count: 0,
                capacity: 10
            }
        );
        assert_eq!(m.agones.counters["games"].capacity, 1000);
        assert_eq!(m.agones.lists["players"].values, ["bot"]);
        assert!(Manifest::parse("").unwrap().agones.is_empty());
        let e = Manifest::parse("[agones.counters.rooms]\n").unwrap_err();
        assert!(e.problem.contains("sdk = \"agones\""), "{e}");
        let e =
            Manifest::parse("sdk = \"agones\"\n[agones.counters.rooms]\ncount = 5\ncapacity = 4\n")
                .unwrap_err();
        assert!(e.problem.contains("agones.counters.rooms"), "{e}");
        let e = Manifest::parse("sdk = \"agones\"\n[agones.lists.players]\ncapacity = 5000\n")
            .unwrap_err();
        assert!(e.problem.contains("0 to 1000"), "{e}");
        let e =
            Manifest::parse("sdk = \"agones\"\n[agones.lists.players]\nsize = 5\n").unwrap_err();
        assert!(e.problem.contains("size"), "{e}");
    }

    #[test]
    fn a_full_manifest_is_read() {
        let m = Manifest::parse(
            r#"
[run]
command = "./server -name 'my server' --port {port:game} --query {port:query} --dir {data_dir}"
[env]
MODE = "ctf"
[[ports]]
name = "game"
protocol = "udp"
[[ports]]
name = "query"
protocol = "tcp"
[stop]
signal = "SIGINT"
grace_secs = 20
[restart]
policy = "on-failure"
max_restarts = 3
[health]
period_secs = 0.5
action = "leave"
"#,
        )
        .unwrap();
        let cmd = m.command.unwrap();
        assert_eq!(cmd[0], "./server");
        assert_eq!(cmd[2], "my server");
        assert_eq!(m.ports.len(), 2);
        assert_eq!(m.ports[1].protocol, v1::Protocol::Tcp);
        assert_eq!(m.env["MODE"], "ctf");
        assert_eq!(m.stop_signal.number(), 2);
        assert_eq!(m.stop_grace_secs, Some(20));
        assert_eq!(m.restart.mode, v1::RestartMode::OnFailure as i32);
        assert_eq!(m.restart.max_restarts, 3);
        assert_eq!(m.health.period_ms, Some(500));
        assert_eq!(m.health.action, v1::UnhealthyAction::Leave as i32);
    }

    #[test]
    fn limits_are_read_as_sizes_and_cores_and_bounded() {
        let m = Manifest::parse("[limits]\nmemory = \"2GiB\"\ncpu = 1.5\n").unwrap();
        assert_eq!(m.limits.memory_bytes, Some(2 << 30));
        assert_eq!(m.limits.cpu_millicores, Some(1500));
        let m = Manifest::parse("[limits]\nmemory = 268435456\ncpu = 2\n").unwrap();
        assert_eq!(m.limits.memory_bytes, Some(256 << 20));
        assert_eq!(m.limits.cpu_millicores, Some(2000));
        assert!(Manifest::parse("").unwrap().limits.is_empty());
        let e = Manifest::parse("[limits]\nmemory = \"1MiB\"\n").unwrap_err();
        assert!(e.problem.starts_with("limits.memory must be 16MiB"), "{e}");
        let e = Manifest::parse("[limits]\ncpu = 0\n").unwrap_err();
        assert!(e.problem.starts_with("limits.cpu must be 0.01"), "{e}");
        let e = Manifest::parse("[limits]\nswap = 1\n").unwrap_err();
        assert!(e.problem.contains("swap"), "{e}");
    }

    #[test]
    fn mistakes_are_named_with_their_line_or_field() {
        let e = Manifest::parse("[run]\ncommand = \"x\"\nbogus = 1\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.problem.contains("bogus"), "{e}");
        let e = Manifest::parse("[run]\ncommand = \"./s {prot}\"\n").unwrap_err();
        assert!(e.problem.contains("{prot}"), "{e}");
        let e = Manifest::parse("[run]\ncommand = \"./s {port:rcon}\"\n").unwrap_err();
        assert!(e.problem.contains("{port:rcon}"), "{e}");
        let e = Manifest::parse("[[ports]]\nname = \"a\"\n[[ports]]\nname = \"a\"\n").unwrap_err();
        assert!(e.problem.contains("twice"), "{e}");
        let e = Manifest::parse("[env]\nEXILE_PORT = \"1\"\n").unwrap_err();
        assert!(e.problem.contains("reserved"), "{e}");
        let e = Manifest::parse("[stop]\nsignal = \"SIGKILL\"\n").unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
        let e = Manifest::parse("[health]\nperiod_secs = 0.01\n").unwrap_err();
        assert!(e.problem.contains("health.period_ms"), "{e}");
        let e = Manifest::parse("[health]\nperiod_secs = -1\n").unwrap_err();
        assert!(e.problem.contains("health.period_secs"), "{e}");
        let e = Manifest::parse("[restart]\nmax_restarts = 5000\n").unwrap_err();
        assert!(e.problem.contains("restart.max_restarts"), "{e}");
        let e = Manifest::parse("[restart]\nbackoff_ms = 10\nbackoff_max_ms = 5\n").unwrap_err();
        assert!(e.problem.contains("backoff"), "{e}");
        assert!(Manifest::parse(&"#".repeat(MAX_MANIFEST_BYTES + 1)).is_err());
    }
}
