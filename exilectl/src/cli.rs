//! Command-line grammar: every noun, verb and flag of exilectl (clap derive).

pub mod build;
pub mod config;
pub mod fleet;

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use exile_api::v1::{InstanceState, PlacementStrategy, Role};

use crate::output::Format;
pub use build::BuildCommand;
pub use config::ConfigCommand;
pub use fleet::{AllocateArgs, FleetCommand};

/// Exile command line: drive the master, its spawners and their game-server instances.
#[derive(Debug, Parser)]
#[command(
    name = "exilectl",
    version,
    about,
    propagate_version = true,
    after_help = crate::exit::HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Master URL, e.g. http://127.0.0.1:7700 (default: the context's).
    #[arg(long, env = "EXILE_MASTER", global = true, value_name = "URL")]
    pub master: Option<String>,
    /// Session or API token to use instead of the context's.
    #[arg(
        long,
        env = "EXILE_TOKEN",
        global = true,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// CA certificate (PEM) to trust for an https:// master instead of the system roots;
    /// `login` keeps it in the context.
    #[arg(long, env = "EXILE_CA_FILE", global = true, value_name = "FILE")]
    pub ca_file: Option<std::path::PathBuf>,
    /// Context to use (or, for `login`, to store) instead of the current one.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// Deadline of each call, e.g. 30s, 2m.
    #[arg(long, value_parser = parse_duration, default_value = "30s", global = true)]
    pub timeout: Duration,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign in to a master and store the session as a context.
    Login(LoginArgs),
    /// Revoke the current session and forget its token.
    Logout,
    /// Show who the current credential belongs to.
    Whoami,
    /// Manage stored contexts (master URL + token).
    #[command(subcommand)]
    Context(ContextCommand),
    /// Manage user accounts (admin).
    #[command(subcommand, visible_alias = "users")]
    User(UserCommand),
    /// Manage API tokens for services (admin).
    #[command(subcommand, visible_alias = "tokens")]
    Token(TokenCommand),
    /// Spawners and their enrollment tokens.
    #[command(subcommand, visible_alias = "spawners")]
    Spawner(SpawnerCommand),
    /// Game-server instances.
    #[command(subcommand, visible_aliases = ["instances", "inst"])]
    Instance(InstanceCommand),
    /// Uploaded game-server builds: push, activate, roll out, roll back, delete.
    #[command(subcommand, visible_alias = "builds")]
    Build(BuildCommand),
    /// Fleets: a count of instances of one build the master keeps, with an autoscaler.
    #[command(subcommand, visible_alias = "fleets")]
    Fleet(FleetCommand),
    /// Run-time settings by category: list, get, set, reset, history (changing takes
    /// admin; spawner settings reach every connected spawner at once).
    #[command(subcommand, visible_alias = "settings")]
    Config(ConfigCommand),
    /// Hand a Ready instance to players (what a matchmaker calls; allocator or operator).
    Allocate(AllocateArgs),
    /// Follow live events: a snapshot, then one line per change.
    Watch(WatchArgs),
    /// Print an instance's output log, or with --spawner a spawner's own log (operator).
    Logs(LogsArgs),
    /// Attach to an instance's console: its output live, and each line typed sent to the
    /// game server (operator; every line is audited).
    Console(ConsoleArgs),
    /// Master statistics.
    Stats,
    /// Recent audit log entries, newest first (admin).
    Audit(AuditArgs),
    /// The master's most recent failed calls, newest first (operator).
    Errors(ErrorsArgs),
    /// Resource history (CPU, memory, disk, players) of a spawner or an instance.
    Metrics(MetricsArgs),
    /// Backups of instance data: create, list, restore, delete.
    #[command(subcommand, visible_alias = "backups")]
    Backup(BackupCommand),
    /// Live terminal monitor: spawners, instances and builds as they change, with actions,
    /// logs and a console (q quits, ? lists every key).
    Top(TopArgs),
    /// Print a shell completion script.
    Completion {
        /// Shell to generate the script for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `exilectl top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// View to start in.
    #[arg(long, value_enum)]
    pub view: Option<TopView>,
    /// How often ages, uptimes and history refresh without events, e.g. 1s.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub tick: Duration,
}

/// A list view of `top`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TopView {
    Spawners,
    Instances,
    Builds,
}

impl From<TopView> for crate::top::action::View {
    fn from(v: TopView) -> Self {
        match v {
            TopView::Spawners => Self::Spawners,
            TopView::Instances => Self::Instances,
            TopView::Builds => Self::Builds,
        }
    }
}

/// `exilectl login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// User name.
    #[arg(long, short = 'u', default_value = "admin")]
    pub username: String,
    #[command(flatten)]
    pub password: PasswordArgs,
}

/// Where a password comes from; without either flag a TTY prompt asks for it.
#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Password (visible in the process list: prefer --password-stdin or the prompt).
    #[arg(
        long,
        env = "EXILE_PASSWORD",
        hide_env_values = true,
        conflicts_with = "password_stdin"
    )]
    pub password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `exilectl context …`.
#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// List stored contexts.
    #[command(visible_alias = "ls")]
    List,
    /// Make a context the current one.
    Use {
        /// Context name.
        name: String,
    },
    /// Delete a stored context (does not revoke its session).
    #[command(visible_alias = "rm")]
    Delete {
        /// Context name.
        name: String,
    },
}

/// `exilectl user …`.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Create {
        /// User name.
        name: String,
        /// Role of the new user.
        #[arg(long, value_enum)]
        role: RoleArg,
        #[command(flatten)]
        password: NewPasswordArgs,
    },
    /// List users.
    #[command(visible_alias = "ls")]
    List,
    /// Delete a user and revoke its sessions.
    #[command(visible_alias = "rm")]
    Delete {
        /// User name.
        name: String,
    },
    /// Change your own password (revokes your other sessions).
    Passwd {
        /// Read the current password, then the new one, from two lines of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
}

/// Password of a new account (not taken from EXILE_PASSWORD, which is the caller's own).
#[derive(Debug, Args)]
pub struct NewPasswordArgs {
    /// Password of the new user (visible in the process list: prefer --password-stdin).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// `exilectl token …`.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token; its secret is printed once.
    Create {
        /// Name, for people.
        name: String,
        /// Role of the token.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Lifetime, e.g. 30d (default: the master's, 90 days).
        #[arg(long, value_parser = parse_duration)]
        ttl: Option<Duration>,
    },
    /// List API tokens (without secrets).
    #[command(visible_alias = "ls")]
    List,
    /// Revoke an API token.
    Revoke {
        /// Token id.
        id: String,
    },
}

/// `exilectl backup …`.
#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Archive an instance's data directory (tar + gzip) on its spawner.
    Create {
        /// Instance id.
        instance: String,
        /// Console line sent first if the instance runs, e.g. "save-all".
        #[arg(long)]
        pre_command: Option<String>,
        /// Seconds to wait after the console line.
        #[arg(long, default_value_t = 2)]
        wait: u32,
        /// Note stored with the backup.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// List an instance's backups, newest first.
    #[command(visible_alias = "ls")]
    List {
        /// Instance id.
        instance: String,
    },
    /// Replace a stopped instance's data with a backup.
    Restore {
        /// Instance id.
        instance: String,
        /// Backup id.
        backup: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Delete a backup.
    #[command(visible_alias = "rm")]
    Delete {
        /// Instance id.
        instance: String,
        /// Backup id.
        backup: String,
    },
}

/// `exilectl spawner …`.
#[derive(Debug, Subcommand)]
pub enum SpawnerCommand {
    /// Enrollment tokens for new spawners.
    #[command(subcommand, visible_alias = "tokens")]
    Token(EnrollmentTokenCommand),
    /// List spawners.
    #[command(visible_alias = "ls")]
    List {
        /// Only spawners of this region.
        #[arg(long)]
        region: Option<String>,
        /// After the list, print each spawner again as it changes, until Ctrl-C.
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Show one spawner and its instances.
    Get {
        /// Spawner id.
        id: String,
    },
    /// Stop placing new instances on a spawner.
    Drain {
        /// Spawner id.
        id: String,
    },
    /// Let a drained spawner take placements again.
    Undrain {
        /// Spawner id.
        id: String,
    },
    /// Remove a spawner, revoke its credential and forget its instances.
    #[command(visible_alias = "rm")]
    Remove {
        /// Spawner id.
        id: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

/// `exilectl spawner token …`.
#[derive(Debug, Subcommand)]
pub enum EnrollmentTokenCommand {
    /// Create a one-time enrollment token; its secret is printed once.
    Create {
        /// Lifetime, e.g. 1h.
        #[arg(long, value_parser = parse_duration, default_value = "1h")]
        ttl: Duration,
        /// Note for people.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List enrollment tokens (without secrets).
    #[command(visible_alias = "ls")]
    List,
    /// Revoke an unused enrollment token.
    Revoke {
        /// Token id.
        id: String,
    },
}

/// `exilectl instance …`.
#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Create and start an instance.
    Spawn(Box<SpawnArgs>),
    /// List instances.
    #[command(visible_alias = "ls")]
    List {
        /// Only instances of this spawner.
        #[arg(long)]
        spawner: Option<String>,
        /// Only instances in these states (repeat or separate with commas).
        #[arg(long, value_enum, value_delimiter = ',')]
        state: Vec<StateArg>,
        /// After the list, print each instance again as it changes, until Ctrl-C.
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Show one instance.
    Get {
        /// Instance id.
        id: String,
    },
    /// Start a stopped or crashed instance.
    Start {
        /// Instance id.
        id: String,
    },
    /// Stop an instance: SIGTERM, grace period, SIGKILL.
    Stop {
        /// Instance id.
        id: String,
        /// Seconds between SIGTERM and SIGKILL (default: the spawner's).
        #[arg(long)]
        grace: Option<u32>,
    },
    /// Stop and start an instance again.
    Restart {
        /// Instance id.
        id: String,
        /// Seconds between SIGTERM and SIGKILL (default: the spawner's).
        #[arg(long)]
        grace: Option<u32>,
    },
    /// Stop if needed and delete an instance and its directory.
    #[command(visible_alias = "rm")]
    Remove {
        /// Instance id.
        id: String,
    },
    /// Give an instance a display name, shown beside its id (an empty name clears it).
    Rename {
        /// Instance id.
        id: String,
        /// New display name, e.g. "EU CTF #1" (at most 64 characters).
        name: String,
    },
}

/// `exilectl instance spawn`.
#[derive(Debug, Args)]
pub struct SpawnArgs {
    /// Spawner to use (default: the master picks one).
    #[arg(long)]
    pub spawner: Option<String>,
    /// Wait until the game server runs (a spinner on a terminal); fail if it ends first.
    #[arg(long)]
    pub wait: bool,
    /// Longest wait with --wait, e.g. 2m.
    #[arg(long, value_parser = parse_duration, default_value = "2m", requires = "wait")]
    pub wait_timeout: Duration,
    /// Only spawners of this region, when the master picks.
    #[arg(long)]
    pub region: Option<String>,
    /// Only spawners carrying this label, when the master picks (repeatable).
    #[arg(long = "selector", value_name = "KEY=VALUE", value_parser = parse_key_val)]
    pub selectors: Vec<(String, String)>,
    /// Label of the instance (repeatable).
    #[arg(long = "label", short = 'l', value_name = "KEY=VALUE", value_parser = parse_key_val)]
    pub labels: Vec<(String, String)>,
    /// Extra environment variable (repeatable).
    #[arg(long = "env", short = 'e', value_name = "KEY=VALUE", value_parser = parse_key_val)]
    pub env: Vec<(String, String)>,
    /// Uploaded build to run: NAME@VERSION, or NAME for the version active on the chosen
    /// spawner (default: the one build active there, else the spawner's host build).
    #[arg(long, value_name = "NAME[@VERSION]", value_parser = parse_build_spec)]
    pub build: Option<String>,
    /// Version of the spawner's host build (its --build-command) to run instead.
    #[arg(long, value_name = "VERSION", conflicts_with = "build")]
    pub host_build_version: Option<String>,
    /// Placement strategy, when the master picks.
    #[arg(long, value_enum)]
    pub strategy: Option<StrategyArg>,
    /// Restart the game server when it exits by itself (default: the spawner's policy).
    #[arg(long, value_parser = exile_api::cli::restart_mode())]
    pub restart: Option<exile_api::v1::RestartMode>,
    /// Crash-loop limit: restarts allowed within --restart-window before it ends Crashed.
    #[arg(long, requires = "restart")]
    pub max_restarts: Option<u32>,
    /// Window of the crash-loop limit, in seconds.
    #[arg(long, requires = "restart")]
    pub restart_window: Option<u32>,
    /// Seconds between the SDK health pings the game is expected to send (default: the
    /// build's, then the spawner's).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub health_period: Option<f64>,
    /// Missed health periods after which the instance is Unhealthy.
    #[arg(long, value_name = "N")]
    pub health_failure_threshold: Option<u32>,
    /// Seconds after each start during which missing pings do not count.
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub health_initial_delay: Option<f64>,
    /// What follows Unhealthy: leave it running for inspection, or restart it (with the
    /// backoff and crash-loop limit of its restart policy).
    #[arg(long, value_parser = exile_api::cli::unhealthy_action())]
    pub unhealthy: Option<exile_api::v1::UnhealthyAction>,
    /// Serve the Agones SDK to the instance (`AGONES_SDK_GRPC_PORT`, `AGONES_SDK_HTTP_PORT`)
    /// even when its build's manifest does not say `sdk = "agones"`.
    #[arg(long)]
    pub agones_sdk: bool,
    /// Extra arguments for the game server, after `--`.
    #[arg(last = true, value_name = "ARGS")]
    pub args: Vec<String>,
}

/// `exilectl logs`.
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Instance whose output to print (give this or --spawner).
    pub instance: Option<String>,
    /// Print this spawner's own log (links, spawns, failures) instead of an instance's output.
    #[arg(long, value_name = "SPAWNER_ID")]
    pub spawner: Option<String>,
    /// Keep printing new output until interrupted.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Number of last lines to print first (default 100, or 10 with --follow).
    #[arg(long, short = 'n')]
    pub tail: Option<u32>,
    /// Write the output's bytes as they are, escape sequences included (for files and
    /// pipes); by default control and escape sequences are shown, not obeyed.
    #[arg(long)]
    pub raw: bool,
}

/// `exilectl console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// Instance id.
    pub instance: String,
    /// Number of last lines to show on attaching.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub tail: u32,
}

/// `exilectl watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Also show spawner heartbeat figures (frequent).
    #[arg(long)]
    pub metrics: bool,
}

/// `exilectl audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Maximum number of entries (the master caps it at 1000).
    #[arg(long, short = 'n', default_value_t = 50)]
    pub limit: u32,
    /// Only entries older than this id, for paging.
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
}

/// `exilectl errors`.
#[derive(Debug, Args)]
pub struct ErrorsArgs {
    /// Maximum number of entries (the master keeps the last 256).
    #[arg(long, short = 'n', default_value_t = 50)]
    pub limit: u32,
    /// Only methods whose path contains this (case-insensitive), e.g. `StopInstance`.
    #[arg(long)]
    pub method: Option<String>,
    /// Only this status code, e.g. `PermissionDenied`.
    #[arg(long)]
    pub code: Option<String>,
}

/// `exilectl metrics`.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// What the id names.
    #[arg(value_enum)]
    pub kind: MetricsKind,
    /// Spawner or instance id.
    pub id: String,
    /// How far back to look, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub since: Duration,
    /// Bucket width, e.g. 10s, 1m; by default about 30 rows.
    #[arg(long, value_parser = parse_duration)]
    pub step: Option<Duration>,
}

/// Target of `exilectl metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsKind {
    /// A spawner's host.
    Spawner,
    /// One instance.
    Instance,
}

/// A role, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// May only allocate instances (a matchmaker's API token).
    Allocator,
    /// Read-only access.
    Viewer,
    /// Can drive spawners and instances.
    Operator,
    /// Can also manage users, tokens and enrollment.
    Admin,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Self {
        match r {
            RoleArg::Allocator => Role::Allocator,
            RoleArg::Viewer => Role::Viewer,
            RoleArg::Operator => Role::Operator,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// A placement strategy, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrategyArg {
    /// Least loaded spawner first.
    Distributed,
    /// Most loaded spawner with room first.
    Packed,
}

impl From<StrategyArg> for PlacementStrategy {
    fn from(s: StrategyArg) -> Self {
        match s {
            StrategyArg::Distributed => PlacementStrategy::Distributed,
            StrategyArg::Packed => PlacementStrategy::Packed,
        }
    }
}

/// An instance state, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Starting,
    Running,
    Ready,
    Allocated,
    Stopping,
    Stopped,
    Crashed,
    Unhealthy,
    Unknown,
}

impl From<StateArg> for InstanceState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Starting => InstanceState::Starting,
            StateArg::Running => InstanceState::Running,
            StateArg::Ready => InstanceState::Ready,
            StateArg::Allocated => InstanceState::Allocated,
            StateArg::Stopping => InstanceState::Stopping,
            StateArg::Stopped => InstanceState::Stopped,
            StateArg::Crashed => InstanceState::Crashed,
            StateArg::Unhealthy => InstanceState::Unhealthy,
            StateArg::Unknown => InstanceState::Unknown,
        }
    }
}

// One parser for durations, shared with the dashboard's TTL fields.
pub use exile_api::format::parse_duration;

/// A number of seconds, fractions allowed: never negative, never infinite.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a number of seconds (0 or more)")),
    }
}

/// Parses `KEY=VALUE`; the value may be empty and may itself contain `=`.
pub fn parse_key_val(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    let k = k.trim();
    if k.is_empty() {
        return Err(format!("`{s}` has an empty key"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// `name` or `name@version`, checked as the master will.
pub(crate) fn parse_build_spec(s: &str) -> Result<String, String> {
    exile_api::build::BuildSpec::parse(s).map(|spec| spec.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_values() {
        assert_eq!(parse_key_val("a=b"), Ok(("a".into(), "b".into())));
        assert_eq!(parse_key_val("a="), Ok(("a".into(), String::new())));
        assert_eq!(parse_key_val("k=v=w"), Ok(("k".into(), "v=w".into())));
        assert!(parse_key_val("novalue").is_err());
        assert!(parse_key_val("=v").is_err());
    }

    #[test]
    fn spawn_parses_trailing_args_and_pairs() {
        let cli = Cli::try_parse_from([
            "exilectl",
            "inst",
            "spawn",
            "--label",
            "mode=ctf",
            "-e",
            "A=1",
            "--selector",
            "gpu=yes",
            "--strategy",
            "packed",
            "--",
            "-batchmode",
            "--port",
            "1",
        ])
        .unwrap();
        let Command::Instance(InstanceCommand::Spawn(a)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(a.labels, vec![("mode".into(), "ctf".into())]);
        assert_eq!(a.env, vec![("A".into(), "1".into())]);
        assert_eq!(a.selectors, vec![("gpu".into(), "yes".into())]);
        assert_eq!(a.strategy, Some(StrategyArg::Packed));
        assert_eq!(a.args, vec!["-batchmode", "--port", "1"]);
    }

    #[test]
    fn aliases_and_states() {
        let cli = Cli::try_parse_from([
            "exilectl",
            "instances",
            "ls",
            "--state",
            "running,ready",
            "--state",
            "crashed",
        ])
        .unwrap();
        let Command::Instance(InstanceCommand::List { state, .. }) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(
            state,
            vec![StateArg::Running, StateArg::Ready, StateArg::Crashed]
        );
        assert!(Cli::try_parse_from(["exilectl", "spawners", "rm", "x", "--yes"]).is_ok());
        assert!(Cli::try_parse_from(["exilectl", "-o", "json", "spawner", "token", "ls"]).is_ok());
    }

    #[test]
    fn spawn_takes_an_uploaded_build_or_a_host_build_version() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from([&["exilectl", "instance", "spawn"], args].concat()).map(
                |c| match c.command {
                    Command::Instance(InstanceCommand::Spawn(a)) => a,
                    other => panic!("parsed as {other:?}"),
                },
            )
        };
        let a = parse(&["--build", "openarena@0.8.9"]).unwrap();
        assert_eq!(a.build.as_deref(), Some("openarena@0.8.9"));
        assert_eq!(a.host_build_version, None);
        assert_eq!(
            parse(&["--build", "openarena"]).unwrap().build.as_deref(),
            Some("openarena")
        );
        let host = parse(&["--host-build-version", "demo-1"]).unwrap();
        assert_eq!(
            (host.build, host.host_build_version.as_deref()),
            (None, Some("demo-1"))
        );
        assert!(parse(&["--build", "a/b"]).is_err());
        assert!(parse(&["--build", "a@"]).is_err());
        assert!(parse(&["--build", "a@1", "--host-build-version", "x"]).is_err());
    }

    #[test]
    fn spawn_health_flags() {
        let cli = Cli::try_parse_from([
            "exilectl",
            "instance",
            "spawn",
            "--health-period",
            "5",
            "--health-failure-threshold",
            "3",
            "--health-initial-delay",
            "0.5",
            "--unhealthy",
            "restart",
        ])
        .unwrap();
        let Command::Instance(InstanceCommand::Spawn(a)) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(a.health_period, Some(5.0));
        assert_eq!(a.health_failure_threshold, Some(3));
        assert_eq!(a.health_initial_delay, Some(0.5));
        assert_eq!(a.unhealthy, Some(exile_api::v1::UnhealthyAction::Restart));
        for bad in [
            ["--health-period", "-1"],
            ["--health-period", "inf"],
            ["--health-failure-threshold", "-3"],
            ["--unhealthy", "reboot"],
        ] {
            let args = ["exilectl", "instance", "spawn", bad[0], bad[1]];
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?} accepted");
        }
    }
}
