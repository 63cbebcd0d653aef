//! The spawner's durable state: instance records in `<data_dir>/state.json`, and the atomic
//! file write every durable file goes through.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use exile_api::counts::Counts;
use exile_api::v1;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::ports::Protocol;

/// Lifecycle state of an instance as the spawner tracks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The process is being launched.
    Starting,
    /// The process runs.
    Running,
    /// The game said through the SDK that it accepts players.
    Ready,
    /// Handed to players (by the game through the SDK).
    Allocated,
    /// The game uses the SDK but missed its health pings; left running for inspection.
    Unhealthy,
    /// A stop was requested; waiting for the process group to exit.
    Stopping,
    /// Exited after a requested stop.
    Stopped,
    /// Exited without being asked to, or could not be launched.
    Crashed,
}

impl State {
    /// Whether a process is (or may be) alive in this state.
    pub fn has_process(self) -> bool {
        v1::InstanceState::from(self).has_process()
    }

    /// Lower-case name used in messages.
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Ready => "ready",
            State::Allocated => "allocated",
            State::Unhealthy => "unhealthy",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Crashed => "crashed",
        }
    }
}

impl From<State> for v1::InstanceState {
    fn from(state: State) -> Self {
        match state {
            State::Starting => v1::InstanceState::Starting,
            State::Running => v1::InstanceState::Running,
            State::Ready => v1::InstanceState::Ready,
            State::Allocated => v1::InstanceState::Allocated,
            State::Unhealthy => v1::InstanceState::Unhealthy,
            State::Stopping => v1::InstanceState::Stopping,
            State::Stopped => v1::InstanceState::Stopped,
            State::Crashed => v1::InstanceState::Crashed,
        }
    }
}

/// One named port an instance holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldPort {
    /// Name the build gives it, e.g. `game` or `query`.
    pub name: String,
    /// Protocols it is reserved for.
    pub protocol: Protocol,
    /// The number; 0 while none is held (the next start picks one).
    pub port: u16,
}

impl HeldPort {
    /// The one port of a build that names none: `game`, TCP and UDP.
    pub fn game(port: u16) -> Self {
        Self {
            name: "game".into(),
            protocol: Protocol::TcpUdp,
            port,
        }
    }

    /// The environment variable that carries it: `EXILE_PORT_<NAME>` in upper case, `-` as `_`.
    pub fn env_name(&self) -> String {
        format!(
            "EXILE_PORT_{}",
            self.name.to_ascii_uppercase().replace('-', "_")
        )
    }
}

/// What an instance runs, resolved once at spawn from its build (manifest over the spawner's
/// flags) and kept for the instance's life: a restart of the game, a restart of the spawner
/// and a re-adoption use exactly this, never whatever build is current by then.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRun {
    /// Name of the uploaded build; empty for the spawner's host build.
    pub name: String,
    /// The build's directory (`{build_dir}`); the game runs in its instance directory.
    pub dir: PathBuf,
    /// Command words, placeholders still in; the first is the program.
    pub command: Vec<String>,
    /// Environment from the build's manifest (the spawn's own goes on top of it).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Number of the signal that asks the game to stop.
    pub stop_signal: i32,
    /// Time between the stop signal and SIGKILL when a stop names none.
    pub stop_grace: Duration,
    /// The Agones counters and lists the manifest declares: what each launch of the game
    /// starts from.
    #[serde(default, skip_serializing_if = "Counts::is_empty")]
    pub agones_counts: Counts,
    /// Memory and CPU caps from the build's manifest; unset ones take the spawner's.
    #[serde(default)]
    pub caps: exile_api::limits::ResourceCaps,
}

/// Everything the spawner remembers about one instance across restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Id chosen by the master.
    pub id: String,
    /// Build version it runs.
    pub build_version: String,
    /// The build it runs; `None` in records older than uploaded builds, which run the
    /// spawner's host build as configured now.
    #[serde(default)]
    pub build: Option<BuildRun>,
    /// Ports it holds, in the build's order (the first is `{port}` and `EXILE_PORT`).
    #[serde(default)]
    pub ports: Vec<HeldPort>,
    /// The one game port of records older than named ports; read once, folded into `ports`.
    #[serde(default, rename = "port", skip_serializing)]
    pub(crate) legacy_port: Option<u16>,
    /// Process id while a process runs.
    pub pid: Option<u32>,
    /// Start time of the process in clock ticks since boot (`/proc/<pid>/stat` field 22),
    /// used to tell our process from a later one that reused the pid.
    pub start_ticks: Option<u64>,
    /// Process id of the instance's supervisor while a process runs.
    #[serde(default)]
    pub supervisor_pid: Option<u32>,
    /// Start time of the supervisor in clock ticks since boot.
    #[serde(default)]
    pub supervisor_ticks: Option<u64>,
    /// Labels given at spawn time.
    pub labels: BTreeMap<String, String>,
    /// Extra environment given at spawn time.
    pub env: BTreeMap<String, String>,
    /// Extra arguments given at spawn time.
    pub args: Vec<String>,
    /// Current state.
    pub state: State,
    /// Restarts so far.
    pub restart_count: u32,
    /// When the instance was created, Unix ms.
    pub created_at_unix_ms: i64,
    /// When the current process started, Unix ms; 0 when none runs.
    pub started_at_unix_ms: i64,
    /// Exit code of the last run when it exited normally.
    pub exit_code: Option<i32>,
    /// Reason for the state.
    pub message: String,
    /// Increases with every change, across spawner restarts; lets the master drop a status
    /// older than one it has applied.
    #[serde(default)]
    pub revision: u64,
    /// What to do when the game exits by itself.
    #[serde(default)]
    pub restart_policy: crate::restart::RestartPolicy,
    /// The instance's own SDK secret (`EXILE_SDK_TOKEN`); empty for records older than the
    /// SDK, which then cannot use it. `state.json` is private to the spawner's user.
    #[serde(default)]
    pub sdk_token: String,
    /// Players connected, as the game last reported through the SDK.
    #[serde(default)]
    pub players: u32,
    /// Players that fit, as the game last reported; 0 when unknown.
    #[serde(default)]
    pub max_players: u32,
    /// SDK health check of the instance; `None` in records older than per-spawn health
    /// checks, which take the spawner's default.
    #[serde(default)]
    pub health: Option<crate::health::HealthCheck>,
    /// Automatic restarts within the crash-loop window.
    #[serde(default)]
    pub restarts: crate::restart::RestartTracker,
    /// A restart waiting out its backoff; made when due even if the spawner restarts meanwhile.
    #[serde(default)]
    pub pending_restart: Option<crate::restart::PendingRestart>,
    /// Annotations set by the master's allocation; cleared when the game is Ready again.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The allocation's blob for the game; cleared when the game is Ready again.
    #[serde(default)]
    pub allocation_metadata: Vec<u8>,
    /// Id of the last allocation applied (kept: the master orders statuses by it).
    #[serde(default)]
    pub allocation_id: String,
    /// The instance's own Agones SDK ports, when its build speaks the Agones SDK; kept for
    /// the instance's life, so a restarted or re-adopted game keeps its address.
    #[serde(default)]
    pub agones: Option<AgonesPorts>,
    /// When the game's reservation (the SDK's Reserve) lapses back to Ready, Unix ms; 0 while
    /// none holds.
    #[serde(default)]
    pub reserved_until_unix_ms: i64,
    /// Players connected by id, as the game reported them through Agones' player tracking.
    #[serde(default)]
    pub player_ids: Vec<String>,
    /// The Agones counters and lists as the game left them (Agones' beta SDK); back to the
    /// build's declared ones at each launch.
    #[serde(default, skip_serializing_if = "Counts::is_empty")]
    pub agones_counts: Counts,
    /// The user (and group) the game runs as, from `--run-as-uids`; kept for the instance's
    /// life. `None`: the spawner's own user.
    #[serde(default)]
    pub run_uid: Option<u32>,
}

/// The loopback port pair of an instance's Agones SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgonesPorts {
    /// gRPC (`AGONES_SDK_GRPC_PORT`).
    pub grpc: u16,
    /// HTTP with JSON (`AGONES_SDK_HTTP_PORT`).
    pub http: u16,
}

impl InstanceRecord {
    /// The first port (`{port}`, `EXILE_PORT`), when one is held.
    pub fn port(&self) -> Option<u16> {
        self.ports.first().map(|p| p.port).filter(|p| *p != 0)
    }

    /// The port named `name`, when held.
    pub fn port_named(&self, name: &str) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.port)
            .filter(|p| *p != 0)
    }

    /// Name of the uploaded build it runs; empty for the host build.
    pub fn build_name(&self) -> &str {
        self.build.as_ref().map_or("", |b| b.name.as_str())
    }

    /// Brings a record written by an older spawner to the current shape: its one `port`
    /// becomes the `game` port.
    fn upgrade(&mut self) {
        if self.ports.is_empty() {
            self.ports = vec![HeldPort::game(self.legacy_port.unwrap_or(0))];
        }
        self.legacy_port = None;
    }

    /// The record as the link reports it.
    pub fn to_status(&self) -> v1::InstanceStatus {
        v1::InstanceStatus {
            id: self.id.clone(),
            state: v1::InstanceState::from(self.state).into(),
            build_version: self.build_version.clone(),
            build_name: self.build_name().to_owned(),
            ports: self
                .ports
                .iter()
                .filter(|p| p.port != 0)
                .map(|p| v1::Port {
                    name: p.name.clone(),
                    port: u32::from(p.port),
                    protocol: v1::Protocol::from(p.protocol).into(),
                })
                .collect(),
            pid: self.pid.unwrap_or(0),
            restart_count: self.restart_count,
            labels: self.labels.clone().into_iter().collect(),
            players: self.players,
            max_players: self.max_players,
            resources: None,
            started_at_unix_ms: if self.pid.is_some() {
                self.started_at_unix_ms
            } else {
                0
            },
            exit_code: self.exit_code,
            message: self.message.clone(),
            revision: self.revision,
            annotations: self.annotations.clone().into_iter().collect(),
            allocation_metadata: self.allocation_metadata.clone(),
            allocation_id: self.allocation_id.clone(),
            reserved_until_unix_ms: self.reserved_until_unix_ms,
            agones_grpc_port: self.agones.map_or(0, |a| u32::from(a.grpc)),
            agones_http_port: self.agones.map_or(0, |a| u32::from(a.http)),
        }
    }
}

/// Version written into `state.json`.
pub const STATE_VERSION: u32 = 1;

/// Contents of `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    /// Format version, for later migrations.
    pub version: u32,
    /// Every instance the spawner holds.
    pub instances: Vec<InstanceRecord>,
}

impl StateFile {
    /// Path of the state file in a data dir.
    pub fn path(data_dir: &Path) -> PathBuf {
        crate::layout::Layout::new(data_dir).state_file()
    }

    /// Reads the state file; a missing file is an empty state. Records written by older
    /// spawners are brought to the current shape.
    pub fn load(data_dir: &Path) -> Result<Self> {
        let path = Self::path(data_dir);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let mut state: Self = serde_json::from_slice(&bytes)
                    .map_err(|source| Error::Parse { path, source })?;
                state.instances.iter_mut().for_each(InstanceRecord::upgrade);
                Ok(state)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io("could not read", path, e)),
        }
    }

    /// Writes the state file atomically.
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        save_records(data_dir, self.version, self.instances.iter())
    }
}

/// What the spawner's persister writes: the manager's records, shared rather than copied, so
/// a change to one instance costs the manager a vector of pointers, not a copy of every record.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every instance the spawner holds.
    pub instances: Vec<std::sync::Arc<InstanceRecord>>,
}

impl Snapshot {
    /// Writes it as the state file, atomically.
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        save_records(data_dir, STATE_VERSION, self.instances.iter().map(|r| &**r))
    }
}

/// `state.json` as written: the same shape as [`StateFile`], over borrowed records.
#[derive(Serialize)]
struct StateFileOut<'a> {
    version: u32,
    instances: Vec<&'a InstanceRecord>,
}

fn save_records<'a>(
    data_dir: &Path,
    version: u32,
    records: impl Iterator<Item = &'a InstanceRecord>,
) -> Result<()> {
    let path = StateFile::path(data_dir);
    let out = StateFileOut {
        version,
        instances: records.collect(),
    };
    // Compact: the file is rewritten on every change of any instance, and a spawner holding
    // hundreds of them should not spend its CPU on indentation.
    let bytes = serde_json::to_vec(&out).map_err(|source| Error::Parse {
        path: path.clone(),
        source,
    })?;
    // 0600: the records hold each instance's SDK secret.
    write_atomic(&path, &bytes, 0o600)
}

/// Free bytes a new instance needs in the data directory: room for the state file that
/// records it (a few KiB per instance) and the first lines of its logs.
pub const MIN_FREE_FOR_INSTANCE: u64 = 1 << 20;

/// Refuses a new instance when the data directory's disk is full. The state file that records
/// an instance is written after it starts; on a full disk that write fails and the instance
/// would run unrecorded, so a spawner restart would no longer know it (lost, or started twice).
pub fn check_room_for_instance(data_dir: &Path) -> Result<()> {
    let free = crate::disk::free_bytes(data_dir)
        .map_err(|e| Error::io("could not read the free space of", data_dir, e))?;
    if free < MIN_FREE_FOR_INSTANCE {
        return Err(Error::FailedPrecondition(format!(
            "no space left on the disk of the data directory {} ({free} bytes free, a new \
             instance needs {MIN_FREE_FOR_INSTANCE}): the disk is full; free space and retry",
            data_dir.display()
        )));
    }
    Ok(())
}

/// Writes `bytes` to `path` so readers see the old or the new contents, never a mix
/// (`exile_api::fs::write_atomic`).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    exile_api::fs::write_atomic(path, bytes, mode)
        .map_err(|e| Error::io("could not write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> InstanceRecord {
        InstanceRecord {
            id: id.into(),
            build_version: "v1".into(),
            build: Some(BuildRun {
                name: "arena".into(),
                dir: PathBuf::from("/data/builds/arena/v1"),
                command: vec!["./server".into(), "{port:query}".into()],
                env: BTreeMap::from([("MODE".into(), "ctf".into())]),
                stop_signal: 2,
                stop_grace: Duration::from_secs(20),
                agones_counts: counts(),
                caps: exile_api::limits::ResourceCaps {
                    memory_bytes: Some(1 << 30),
                    cpu_millicores: None,
                },
            }),
            ports: vec![
                HeldPort::game(7800),
                HeldPort {
                    name: "query".into(),
                    protocol: Protocol::Tcp,
                    port: 7801,
                },
            ],
            legacy_port: None,
            pid: Some(42),
            start_ticks: Some(1234),
            supervisor_pid: Some(41),
            supervisor_ticks: Some(1233),
            labels: BTreeMap::from([("mode".into(), "ctf".into())]),
            env: BTreeMap::new(),
            args: vec!["-x".into()],
            state: State::Running,
            restart_count: 2,
            created_at_unix_ms: 1,
            started_at_unix_ms: 2,
            exit_code: None,
            message: String::new(),
            revision: 3,
            restart_policy: Default::default(),
            sdk_token: "secret".into(),
            players: 3,
            max_players: 16,
            health: Some(Default::default()),
            restarts: Default::default(),
            pending_restart: Some(crate::restart::PendingRestart {
                due_unix_ms: 5,
                reason: "exited with code 3".into(),
            }),
            annotations: BTreeMap::from([("match".into(), "m-1".into())]),
            allocation_metadata: b"{\"map\":\"dust\"}".to_vec(),
            allocation_id: "alc-1".into(),
            agones: Some(AgonesPorts {
                grpc: 9357,
                http: 9358,
            }),
            reserved_until_unix_ms: 7,
            player_ids: vec!["p1".into()],
            agones_counts: {
                let mut c = counts();
                if let Some(l) = c.lists.get_mut("players") {
                    l.values.push("p1".into());
                }
                c
            },
            run_uid: Some(61000),
        }
    }

    fn counts() -> Counts {
        Counts {
            counters: BTreeMap::from([(
                "rooms".into(),
                exile_api::counts::Counter {
                    count: 1,
                    capacity: 10,
                },
            )]),
            lists: BTreeMap::from([(
                "players".into(),
                exile_api::counts::List {
                    capacity: 8,
                    values: vec![],
                },
            )]),
        }
    }

    #[test]
    fn records_of_older_spawners_read_with_no_counters_or_lists() {
        let mut json = serde_json::to_value(record("a")).unwrap();
        let rec = json.as_object_mut().unwrap();
        rec.remove("agones_counts");
        rec["build"]
            .as_object_mut()
            .unwrap()
            .remove("agones_counts");
        let old: InstanceRecord = serde_json::from_value(json).unwrap();
        assert!(old.agones_counts.is_empty());
        assert!(old.build.unwrap().agones_counts.is_empty());
        let kept: InstanceRecord =
            serde_json::from_value(serde_json::to_value(record("a")).unwrap()).unwrap();
        assert_eq!(kept.agones_counts.lists["players"].values, ["p1"]);
    }

    #[test]
    fn state_file_round_trips_and_missing_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(StateFile::load(dir.path()).unwrap(), StateFile::default());
        let state = StateFile {
            version: 1,
            instances: vec![record("a"), record("b")],
        };
        state.save(dir.path()).unwrap();
        assert_eq!(StateFile::load(dir.path()).unwrap(), state);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["state.json"]);
    }

    #[test]
    fn corrupt_state_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(StateFile::path(dir.path()), "{not json").unwrap();
        let err = StateFile::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
    }

    #[test]
    fn port_env_names_are_upper_case_with_underscores() {
        let p = HeldPort {
            name: "rcon-tcp_2".into(),
            protocol: Protocol::Tcp,
            port: 1,
        };
        assert_eq!(p.env_name(), "EXILE_PORT_RCON_TCP_2");
    }

    #[test]
    fn write_atomic_sets_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.json");
        write_atomic(&path, b"{}", 0o600).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn status_reports_ports_and_hides_start_time_without_process() {
        let mut rec = record("a");
        let status = rec.to_status();
        assert_eq!(status.ports.len(), 2);
        assert_eq!(status.ports[0].port, 7800);
        assert_eq!(status.ports[1].name, "query");
        assert_eq!(status.ports[1].port, 7801);
        assert_eq!(status.ports[1].protocol, v1::Protocol::Tcp as i32);
        assert_eq!(status.build_name, "arena");
        assert_eq!(status.build_version, "v1");
        assert_eq!(status.pid, 42);
        assert_eq!(status.started_at_unix_ms, 2);
        rec.pid = None;
        rec.state = State::Stopped;
        let status = rec.to_status();
        assert_eq!(status.pid, 0);
        assert_eq!(status.started_at_unix_ms, 0);
        assert_eq!(status.state, v1::InstanceState::Stopped as i32);
    }
}
