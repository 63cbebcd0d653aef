//! Command-line and environment configuration of the spawner, with its validation.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::PathBuf;

// `.map` on the value parsers of `exile_api::cli`.
use clap::builder::TypedValueParser as _;

use crate::error::{Error, Result};

/// Exile spawner: links this host to the master and runs game-server instances.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "exile-spawner", version, about)]
pub struct Config {
    /// Address of the master's gRPC endpoint.
    #[arg(
        long,
        env = "EXILE_SPAWNER_MASTER",
        default_value = "http://127.0.0.1:7700"
    )]
    pub master: String,

    /// CA certificate (PEM) to trust for an https:// master instead of the system roots,
    /// e.g. the ca.pem of `exile-master certs init`.
    #[arg(long, env = "EXILE_SPAWNER_CA_FILE")]
    pub ca_file: Option<PathBuf>,

    /// Directory for the credential, the instance state and the instance directories.
    #[arg(
        long,
        env = "EXILE_SPAWNER_DATA_DIR",
        default_value = "exile-spawner-data"
    )]
    pub data_dir: PathBuf,

    /// Loopback address of the game-server SDK endpoint (handed to games as
    /// `EXILE_SDK_ADDR`). With port 0 the port first chosen is kept in the data dir and
    /// reused on later starts, so adopted games keep reaching it.
    #[arg(long, env = "EXILE_SPAWNER_SDK_LISTEN", default_value = "127.0.0.1:0")]
    pub sdk_listen: std::net::SocketAddr,

    /// Loopback address of the game-server SDK in its HTTP/JSON form, for engines without
    /// gRPC (handed to games as `EXILE_SDK_HTTP_ADDR`). Port 0 is kept across starts like
    /// --sdk-listen's.
    #[arg(
        long,
        env = "EXILE_SPAWNER_SDK_HTTP_LISTEN",
        default_value = "127.0.0.1:0"
    )]
    pub sdk_http_listen: std::net::SocketAddr,

    /// Let --sdk-listen and --sdk-http-listen take a non-loopback address. Their only guard is
    /// the per-instance secret, so by default they stay on loopback; allow this only when games
    /// cannot reach the host's loopback (a game in its own network namespace or container
    /// reaching the host over a bridge) and the address is not reachable from outside.
    #[arg(long, env = "EXILE_SPAWNER_SDK_ALLOW_NON_LOOPBACK")]
    pub sdk_allow_non_loopback: bool,

    /// One-time enrollment token; used only when no credential is stored in the data dir yet.
    #[arg(long, env = "EXILE_SPAWNER_ENROLLMENT_TOKEN", hide_env_values = true)]
    pub enrollment_token: Option<String>,

    /// File holding the enrollment token (read and trimmed); an alternative to --enrollment-token.
    #[arg(long, env = "EXILE_SPAWNER_ENROLLMENT_TOKEN_FILE")]
    pub enrollment_token_file: Option<PathBuf>,

    /// Name of this spawner [default: the host name].
    #[arg(long, env = "EXILE_SPAWNER_NAME")]
    pub name: Option<String>,

    /// Region used by the master for placement.
    #[arg(long, env = "EXILE_SPAWNER_REGION", default_value = "local")]
    pub region: String,

    /// Address players use to reach instances on this host.
    #[arg(
        long,
        env = "EXILE_SPAWNER_ADVERTISED_ADDRESS",
        default_value = "127.0.0.1"
    )]
    pub advertised_address: String,

    /// Maximum number of instances (in any state) this spawner holds.
    #[arg(long, env = "EXILE_SPAWNER_CAPACITY", default_value_t = 20)]
    pub capacity: u32,

    /// Placement label as key=value; repeat the flag for several labels.
    #[arg(long = "label", env = "EXILE_SPAWNER_LABELS", value_delimiter = ',')]
    pub labels: Vec<String>,

    /// Ports handed to instances, as first-last (both included). The run-time setting
    /// `spawners.port_range` (global, or for this spawner's region or a label) replaces it live
    /// for ports handed out from then on.
    #[arg(long, env = "EXILE_SPAWNER_PORT_RANGE", default_value = "7800-7999")]
    pub port_range: String,

    /// Loopback ports handed out in pairs to the Agones SDK of instances whose build speaks it
    /// (`sdk = "agones"` in its manifest), as first-last (both included); each such instance
    /// gets its own pair in `AGONES_SDK_GRPC_PORT` and `AGONES_SDK_HTTP_PORT`.
    #[arg(
        long,
        env = "EXILE_SPAWNER_AGONES_PORT_RANGE",
        default_value = "9357-9556"
    )]
    pub agones_port_range: String,

    /// Runs each instance's game as its own user: a uid from this range (first-last), kept
    /// for the instance's life, with the same number as its group and no supplementary
    /// groups. Needs the spawner to run as root (or with CAP_SETUID, CAP_SETGID, CAP_CHOWN
    /// and CAP_FOWNER). Pick numbers no account on the host uses and a range per spawner.
    /// Without it, games run as the spawner's own user, which a warning says at start.
    #[arg(long, env = "EXILE_SPAWNER_RUN_AS_UIDS")]
    pub run_as_uids: Option<String>,

    /// Most files a game may hold open (RLIMIT_NOFILE).
    #[arg(
        long,
        env = "EXILE_SPAWNER_GAME_MAX_OPEN_FILES",
        default_value_t = 65_536
    )]
    pub game_max_open_files: u64,

    /// Most processes and threads a game may run (RLIMIT_NPROC, which counts every process of
    /// a user: set only with --run-as-uids, where each game has a user of its own).
    #[arg(
        long,
        env = "EXILE_SPAWNER_GAME_MAX_PROCESSES",
        default_value_t = 4_096
    )]
    pub game_max_processes: u64,

    /// Memory cap of each game (all its processes together: `512MiB`, `2GiB`) when its
    /// build's manifest sets none (`[limits] memory`). Enforced through cgroups v2 where the
    /// host allows (see --cgroup-root); elsewhere games run uncapped and say so.
    #[arg(long, env = "EXILE_SPAWNER_GAME_MAX_MEMORY")]
    pub game_max_memory: Option<String>,

    /// CPU cap of each game in cores (`1.5`) when its build's manifest sets none
    /// (`[limits] cpu`). Enforced through cgroups v2 like the memory cap.
    #[arg(long, env = "EXILE_SPAWNER_GAME_MAX_CPU")]
    pub game_max_cpu: Option<f64>,

    /// The cgroup v2 directory under which capped games get a cgroup each (memory and cpu
    /// must be offered to it, and the spawner may write it). Default: the spawner's own
    /// cgroup, which systemd hands over with Delegate=yes; the spawner then moves itself into
    /// its `spawner` child.
    #[arg(long, env = "EXILE_SPAWNER_CGROUP_ROOT")]
    pub cgroup_root: Option<PathBuf>,

    /// Version name of the host build in --build-dir.
    #[arg(long, env = "EXILE_SPAWNER_BUILD_VERSION", default_value = "local")]
    pub build_version: String,

    /// Directory holding the host build (a game-server build installed on this host). Its
    /// `exile-build.toml`, if any, sets the host build's command, ports, environment, stop
    /// signal and restart/health defaults.
    #[arg(long, env = "EXILE_SPAWNER_BUILD_DIR", default_value = ".")]
    pub build_dir: PathBuf,

    /// Command that starts one instance of the host build, split like a shell would;
    /// placeholders {port} (the first port), {port:NAME}, {instance_id}, {data_dir} (the
    /// instance's directory) and {build_dir}. A relative program path containing a slash is
    /// taken relative to the build's directory. Uploaded builds whose manifest names no
    /// command run it too, in their own directory. Without it the spawner has no host build
    /// and runs uploaded builds only.
    #[arg(long, env = "EXILE_SPAWNER_BUILD_COMMAND")]
    pub build_command: Option<String>,

    /// Seconds between the stop signal and SIGKILL when stopping an instance (a build's
    /// manifest may set its own).
    #[arg(
        long = "stop-grace-period",
        env = "EXILE_SPAWNER_STOP_GRACE_PERIOD",
        default_value_t = 10
    )]
    pub stop_grace_period_secs: u64,

    /// Stop every instance when the spawner shuts down (by default they keep running and are
    /// adopted again by the next start).
    #[arg(long, env = "EXILE_SPAWNER_STOP_INSTANCES_ON_SHUTDOWN")]
    pub stop_instances_on_shutdown: bool,

    /// The `exile-supervisor` binary started for each instance [default: next to this
    /// binary].
    #[arg(long, env = "EXILE_SPAWNER_SUPERVISOR_BIN")]
    pub supervisor_bin: Option<PathBuf>,

    /// Size in bytes of one instance log file before it is rotated.
    #[arg(long, env = "EXILE_SPAWNER_LOG_FILE_MAX_BYTES", default_value_t = 8 << 20)]
    pub log_file_max_bytes: u64,

    /// Default restart policy for instances whose spawn does not name one. The run-time
    /// settings `spawners.restart_*` replace this and the other --restart-* flags live, field by
    /// field, for spawns from then on.
    #[arg(
        long,
        env = "EXILE_SPAWNER_RESTART_POLICY",
        value_parser = exile_api::cli::restart_mode().map(crate::restart::RestartMode::from),
        default_value = "never"
    )]
    pub restart_policy: crate::restart::RestartMode,

    /// Default crash-loop limit: restarts allowed within --restart-window.
    #[arg(long, env = "EXILE_SPAWNER_RESTART_MAX", default_value_t = 5)]
    pub restart_max: u32,

    /// Default window of the crash-loop limit, in seconds.
    #[arg(long, env = "EXILE_SPAWNER_RESTART_WINDOW", default_value_t = 300)]
    pub restart_window: u64,

    /// Default delay before the first restart, in milliseconds (doubles each time).
    #[arg(long, env = "EXILE_SPAWNER_RESTART_BACKOFF_MS", default_value_t = 1000)]
    pub restart_backoff_ms: u64,

    /// Default largest delay between restarts, in milliseconds.
    #[arg(
        long,
        env = "EXILE_SPAWNER_RESTART_BACKOFF_MAX_MS",
        default_value_t = 60_000
    )]
    pub restart_backoff_max_ms: u64,

    /// Rotated log files kept per instance besides the live one (the cap per instance is
    /// (this + 1) × --log-file-max-bytes).
    #[arg(long, env = "EXILE_SPAWNER_LOG_FILES", default_value_t = 4)]
    pub log_files: u32,

    /// Size in bytes of one file of the spawner's own log (`<data-dir>/logs/spawner.log`,
    /// readable with `exilectl logs --spawner`) before it is rotated; 0 keeps no log file.
    #[arg(long, env = "EXILE_SPAWNER_OWN_LOG_MAX_BYTES", default_value_t = 8 << 20)]
    pub own_log_max_bytes: u64,

    /// Rotated files of the spawner's own log kept besides the live one (the cap is
    /// (this + 1) × --own-log-max-bytes).
    #[arg(long, env = "EXILE_SPAWNER_OWN_LOG_FILES", default_value_t = 3)]
    pub own_log_files: u32,

    /// Which events go to the spawner's own log file, as `RUST_LOG` directives (stderr
    /// follows `RUST_LOG`).
    #[arg(long, env = "EXILE_SPAWNER_OWN_LOG_FILTER", default_value = "info")]
    pub own_log_filter: String,

    /// Seconds between the SDK health pings a game is expected to send. Only games that have
    /// called the SDK at least once are checked: a build without the SDK is never unhealthy.
    /// The run-time settings `spawners.health_*` and `spawners.unhealthy_action` replace this
    /// and the other --health-* flags live, field by field, for spawns from then on.
    #[arg(long, env = "EXILE_SPAWNER_HEALTH_PERIOD", default_value_t = 5.0)]
    pub health_period: f64,

    /// Missed health periods after which a game is marked Unhealthy (then --unhealthy-action
    /// applies; it is healthy again when its pings resume).
    #[arg(
        long,
        env = "EXILE_SPAWNER_HEALTH_FAILURE_THRESHOLD",
        default_value_t = 3
    )]
    pub health_failure_threshold: u32,

    /// Seconds after a start during which missing pings are not held against a game.
    #[arg(
        long,
        env = "EXILE_SPAWNER_HEALTH_INITIAL_DELAY",
        default_value_t = 0.0
    )]
    pub health_initial_delay: f64,

    /// What follows Unhealthy: leave the game running for inspection, or restart it with the
    /// backoff and crash-loop limit of its restart policy. A build's `exile-build.toml` and a
    /// spawn's own health check override this and the other --health-* flags.
    #[arg(
        long,
        env = "EXILE_SPAWNER_UNHEALTHY_ACTION",
        value_parser = exile_api::cli::unhealthy_action().map(crate::health::UnhealthyAction::from),
        default_value = "leave"
    )]
    pub unhealthy_action: crate::health::UnhealthyAction,

    /// Newest versions of each uploaded build name kept on disk by the clean-up, besides the
    /// versions instances use and those the master wants held. The run-time setting
    /// `builds.keep_versions` replaces it live, from the next clean-up.
    #[arg(long, env = "EXILE_SPAWNER_BUILDS_KEEP", default_value_t = 2)]
    pub builds_keep: u32,

    /// Seconds an uploaded build version must have gone unused (or, once installed, unrun)
    /// before the clean-up may remove it.
    #[arg(
        long = "builds-gc-grace-secs",
        env = "EXILE_SPAWNER_BUILDS_GC_GRACE_SECS",
        default_value_t = 600
    )]
    pub builds_gc_grace_secs: u64,
}

impl Config {
    /// A configuration with every default, for tests and embedding.
    pub fn with_defaults(master: impl Into<String>, data_dir: impl Into<PathBuf>) -> Self {
        use clap::Parser;
        let mut config = Config::parse_from(["exile-spawner"]);
        config.master = master.into();
        config.data_dir = data_dir.into();
        config
    }

    /// Checks every flag that needs more than clap's parsing.
    pub fn validate(&self) -> Result<()> {
        self.label_map()?;
        self.ports()?;
        self.run_as_uids()?;
        self.game_caps()?;
        if self.game_max_open_files < 64 || self.game_max_processes < 16 {
            return Err(Error::Config(
                "--game-max-open-files must be at least 64 and --game-max-processes at least 16"
                    .into(),
            ));
        }
        self.agones_ports()?;
        self.command_template()?;
        self.health()?;
        self.own_log_filter()?;
        self.sdk_addresses()?;
        if self.capacity == 0 {
            return Err(Error::Config("--capacity must be at least 1".into()));
        }
        if self.build_version.trim().is_empty() {
            return Err(Error::Config("--build-version must not be empty".into()));
        }
        Ok(())
    }

    /// Directory of the spawner's own log, `None` when it keeps none.
    pub fn own_log_dir(&self) -> Option<PathBuf> {
        (self.own_log_max_bytes > 0).then(|| crate::own_log::log_dir(&self.data_dir))
    }

    /// Size limits of the spawner's own log.
    pub fn own_log_limits(&self) -> crate::supervisor::logfile::LogLimits {
        crate::supervisor::logfile::LogLimits {
            max_bytes: self.own_log_max_bytes,
            keep: self.own_log_files,
        }
    }

    /// The filter of the spawner's own log file.
    pub fn own_log_filter(&self) -> Result<tracing_subscriber::EnvFilter> {
        tracing_subscriber::EnvFilter::try_new(&self.own_log_filter).map_err(|e| {
            Error::Config(format!(
                "--own-log-filter {:?} is not a valid filter: {e}",
                self.own_log_filter
            ))
        })
    }

    /// Refuses SDK endpoints off loopback unless --sdk-allow-non-loopback says so: they are
    /// guarded by nothing but the secrets handed to games.
    fn sdk_addresses(&self) -> Result<()> {
        if self.sdk_allow_non_loopback {
            return Ok(());
        }
        for (flag, addr) in [
            ("--sdk-listen", self.sdk_listen),
            ("--sdk-http-listen", self.sdk_http_listen),
        ] {
            if !addr.ip().is_loopback() {
                return Err(Error::Config(format!(
                    "{flag} {addr} is not a loopback address, which would expose the game-server SDK to the network; use 127.0.0.1 or ::1, or pass --sdk-allow-non-loopback if games reach the host from a network namespace"
                )));
            }
        }
        Ok(())
    }

    /// The health check from the flags.
    pub fn health(&self) -> Result<crate::health::HealthCheck> {
        let secs = |flag: &str, v: f64| {
            std::time::Duration::try_from_secs_f64(v).map_err(|_| {
                Error::Config(format!("{flag} must be a non-negative number of seconds"))
            })
        };
        let period = secs("--health-period", self.health_period)?;
        if period.is_zero() || self.health_failure_threshold == 0 {
            return Err(Error::Config(
                "--health-period and --health-failure-threshold must be above 0".into(),
            ));
        }
        Ok(crate::health::HealthCheck {
            period,
            failure_threshold: self.health_failure_threshold,
            initial_delay: secs("--health-initial-delay", self.health_initial_delay)?,
            action: self.unhealthy_action,
        })
    }

    /// The default restart policy from the flags.
    pub fn restart_default(&self) -> Result<crate::restart::RestartPolicy> {
        let policy = crate::restart::RestartPolicy {
            mode: self.restart_policy,
            max_restarts: self.restart_max,
            window: std::time::Duration::from_secs(self.restart_window),
            backoff_base: std::time::Duration::from_millis(self.restart_backoff_ms),
            backoff_max: std::time::Duration::from_millis(self.restart_backoff_max_ms),
        };
        if policy.backoff_base > policy.backoff_max {
            return Err(Error::Config(
                "--restart-backoff-ms must not exceed --restart-backoff-max-ms".into(),
            ));
        }
        Ok(policy)
    }

    /// The supervisor binary: the flag, or `exile-supervisor` next to the running binary.
    pub fn supervisor_bin(&self) -> Result<PathBuf> {
        let path = match &self.supervisor_bin {
            Some(path) => {
                std::path::absolute(path).map_err(|e| Error::io("could not resolve", path, e))?
            }
            None => std::env::current_exe()
                .map_err(|e| Error::io("could not locate", "the spawner binary", e))?
                .with_file_name("exile-supervisor"),
        };
        if !path.is_file() {
            return Err(Error::Config(format!(
                "the instance supervisor {} does not exist; install exile-supervisor next to exile-spawner or pass --supervisor-bin",
                path.display()
            )));
        }
        Ok(path)
    }

    /// The labels as a map, rejecting entries without `=` or with an empty key.
    pub fn label_map(&self) -> Result<BTreeMap<String, String>> {
        let mut map = BTreeMap::new();
        for entry in &self.labels {
            let Some((key, value)) = entry.split_once('=') else {
                return Err(Error::Config(format!(
                    "label `{entry}` must look like key=value"
                )));
            };
            let key = key.trim();
            if key.is_empty() {
                return Err(Error::Config(format!("label `{entry}` has an empty key")));
            }
            if map
                .insert(key.to_owned(), value.trim().to_owned())
                .is_some()
            {
                return Err(Error::Config(format!("label `{key}` is given twice")));
            }
        }
        Ok(map)
    }

    /// The caps of games whose build sets none (`--game-max-memory`, `--game-max-cpu`).
    pub fn game_caps(&self) -> Result<exile_api::limits::ResourceCaps> {
        use exile_api::limits;
        Ok(limits::ResourceCaps {
            memory_bytes: self
                .game_max_memory
                .as_deref()
                .map(|m| limits::parse_memory_cap("--game-max-memory", m))
                .transpose()
                .map_err(Error::Config)?,
            cpu_millicores: self
                .game_max_cpu
                .map(|c| limits::cpu_cap_millicores("--game-max-cpu", c))
                .transpose()
                .map_err(Error::Config)?,
        })
    }

    /// The uids games run as (`--run-as-uids`), `None` when not given.
    pub fn run_as_uids(&self) -> Result<Option<RangeInclusive<u32>>> {
        let Some(text) = &self.run_as_uids else {
            return Ok(None);
        };
        let bad = || {
            Error::Config(format!(
                "--run-as-uids `{text}` must look like 61000-61999: first-last, neither 0 (root) nor above 4294967294, at most 1000000 uids"
            ))
        };
        if !text.contains('-') {
            return Err(bad());
        }
        let (first, last) =
            exile_api::limits::parse_range("--run-as-uids", text, 1, i64::from(u32::MAX - 1))
                .map_err(|_| bad())?;
        let (Ok(first), Ok(last)) = (u32::try_from(first), u32::try_from(last)) else {
            return Err(bad());
        };
        if last - first >= 1_000_000 {
            return Err(bad());
        }
        Ok(Some(first..=last))
    }

    /// The port range, parsed from `first-last` (or a single port).
    pub fn ports(&self) -> Result<RangeInclusive<u16>> {
        parse_port_range("--port-range", &self.port_range)
    }

    /// The Agones SDK port range; it must not overlap the game port range.
    pub fn agones_ports(&self) -> Result<RangeInclusive<u16>> {
        let range = parse_port_range("--agones-port-range", &self.agones_port_range)?;
        let games = self.ports()?;
        if crate::ports::overlap(&range, &games) {
            return Err(Error::Config(format!(
                "--agones-port-range {} overlaps --port-range {}; give them separate ports",
                self.agones_port_range, self.port_range
            )));
        }
        Ok(range)
    }

    /// The build command split into words, placeholders still in; `None` when there is no
    /// host build.
    pub fn command_template(&self) -> Result<Option<Vec<String>>> {
        let Some(command) = &self.build_command else {
            return Ok(None);
        };
        let words = shlex::split(command).ok_or_else(|| {
            Error::Config(format!("--build-command `{command}` has unbalanced quotes"))
        })?;
        if words.is_empty() {
            return Err(Error::Config("--build-command must not be empty".into()));
        }
        Ok(Some(words))
    }

    /// The spawner's name: --name, else the host name.
    pub fn spawner_name(&self) -> String {
        self.name.clone().unwrap_or_else(host_name)
    }

    /// The enrollment token from --enrollment-token or --enrollment-token-file, if any.
    pub fn read_enrollment_token(&self) -> Result<Option<String>> {
        if let Some(token) = &self.enrollment_token {
            let token = token.trim();
            if !token.is_empty() {
                return Ok(Some(token.to_owned()));
            }
        }
        if let Some(path) = &self.enrollment_token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::io("could not read the enrollment token file", path, e))?;
            let token = text.trim();
            if token.is_empty() {
                return Err(Error::Config(format!(
                    "the enrollment token file {} is empty",
                    path.display()
                )));
            }
            return Ok(Some(token.to_owned()));
        }
        Ok(None)
    }
}

/// Host name of this machine, or "localhost" when it cannot be read.
pub fn host_name() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "localhost".to_owned())
}

/// Parses `first-last` (both included) or a single port number.
pub fn parse_port_range(flag: &str, text: &str) -> Result<RangeInclusive<u16>> {
    let (first, last) = exile_api::limits::parse_range(flag, text, 1, i64::from(u16::MAX))
        .map_err(Error::Config)?;
    let port = |p: i64| u16::try_from(p).map_err(|e| Error::Config(format!("{flag}: {e}")));
    Ok(port(first)?..=port(last)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    #[test]
    fn cli_is_consistent() {
        Config::command().debug_assert();
    }

    #[test]
    fn defaults_are_valid() {
        let config = Config::parse_from(["exile-spawner"]);
        config.validate().unwrap();
        assert_eq!(config.ports().unwrap(), 7800..=7999);
        assert_eq!(config.capacity, 20);
        assert!(!config.stop_instances_on_shutdown);
        assert_eq!(config.builds_keep, 2);
        assert_eq!(config.builds_gc_grace_secs, 600);
    }

    #[test]
    fn labels_are_parsed_and_validated() {
        let config =
            Config::parse_from(["exile-spawner", "--label", "gpu=yes", "--label", "zone = a"]);
        let map = config.label_map().unwrap();
        assert_eq!(map.get("gpu").map(String::as_str), Some("yes"));
        assert_eq!(map.get("zone").map(String::as_str), Some("a"));
        for bad in ["novalue", "=x"] {
            let config = Config::parse_from(["exile-spawner", "--label", bad]);
            assert!(config.validate().is_err(), "{bad} accepted");
        }
        let twice = Config::parse_from(["exile-spawner", "--label", "a=1", "--label", "a=2"]);
        assert!(twice.label_map().is_err());
    }

    #[test]
    fn run_as_uid_ranges() {
        let with = |text: &str| {
            let mut c = Config::with_defaults("http://m", "/tmp/x");
            c.run_as_uids = Some(text.into());
            c.run_as_uids()
        };
        assert_eq!(with("61000-61999").unwrap(), Some(61000..=61999));
        for bad in [
            "0-10",
            "10-5",
            "x-1",
            "61000",
            "1-4294967295",
            "1-2000000",
            "",
        ] {
            assert!(with(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn port_ranges() {
        let parse = |text| parse_port_range("--port-range", text);
        assert_eq!(parse("7000-7010").unwrap(), 7000..=7010);
        assert_eq!(parse("7000").unwrap(), 7000..=7000);
        for bad in ["", "0-10", "10-5", "a-b", "70000-70001", "1-2-3"] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains("--port-range: "), "{bad}: {e}");
        }
    }

    #[test]
    fn build_command_is_split_like_a_shell() {
        let mut config = Config::parse_from(["exile-spawner"]);
        assert_eq!(config.command_template().unwrap(), None);
        config.build_command = Some(r#"./game -name "my server" --port {port}"#.into());
        assert_eq!(
            config.command_template().unwrap().unwrap(),
            ["./game", "-name", "my server", "--port", "{port}"]
        );
        config.build_command = Some(r#"./game "unclosed"#.into());
        assert!(config.validate().is_err());
        config.build_command = Some("  ".into());
        assert!(config.validate().is_err());
    }

    #[test]
    fn sdk_endpoints_stay_on_loopback_unless_allowed() {
        for flag in ["--sdk-listen", "--sdk-http-listen"] {
            for ok in ["127.0.0.1:0", "127.0.0.2:7000", "[::1]:0"] {
                let config = Config::parse_from(["exile-spawner", flag, ok]);
                config.validate().unwrap();
            }
            for bad in ["0.0.0.0:0", "10.0.0.5:7000", "[::]:0"] {
                let config = Config::parse_from(["exile-spawner", flag, bad]);
                let message = config.validate().unwrap_err().to_string();
                assert!(
                    message.contains(flag) && message.contains("--sdk-allow-non-loopback"),
                    "{flag} {bad}: {message}"
                );
                let allowed =
                    Config::parse_from(["exile-spawner", flag, bad, "--sdk-allow-non-loopback"]);
                allowed.validate().unwrap();
            }
        }
    }

    #[test]
    fn token_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "  secret-token\n").unwrap();
        let mut config = Config::parse_from(["exile-spawner"]);
        assert_eq!(config.read_enrollment_token().unwrap(), None);
        config.enrollment_token_file = Some(path.clone());
        assert_eq!(
            config.read_enrollment_token().unwrap().as_deref(),
            Some("secret-token")
        );
        std::fs::write(&path, "\n").unwrap();
        assert!(config.read_enrollment_token().is_err());
    }
}
