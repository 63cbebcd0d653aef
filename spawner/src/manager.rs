//! The instance manager: one task that owns the registry of instances (records and the
//! senders of their actors), hands out ports, enforces capacity, persists `state.json` and
//! publishes instance events. It never waits on an actor, so a slow stop blocks nothing else.

mod task;

pub(crate) use task::validate_id as validate_instance_id;

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use exile_api::build::Manifest;
use exile_api::v1;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::instance::{Op, OpContext, Settings};
use crate::ports::PortAllocator;
use crate::process::{self, CommandTemplate};
use crate::state::{InstanceRecord, State, StateFile};
use crate::supervisor::ExitRecord;
use task::{ManagerTask, persist_loop};

/// What the manager needs from the configuration.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Spawner name, used in messages.
    pub name: String,
    /// Data directory (state file and instance directories).
    pub data_dir: PathBuf,
    /// Maximum number of instances in any state.
    pub capacity: u32,
    /// Ports handed to instances.
    pub ports: RangeInclusive<u16>,
    /// The host build's command (`--build-command`) in its directory (`--build-dir`); `None`
    /// when the spawner has no host build and runs uploaded builds only. Uploaded builds whose
    /// manifest names no command run these words in their own directory.
    pub template: Option<CommandTemplate>,
    /// The host build's manifest (`exile-build.toml` in `--build-dir`; every default when it
    /// has none).
    pub host_manifest: Manifest,
    /// Build version of the host build.
    pub build_version: String,
    /// Default time between the stop signal and SIGKILL (a build's manifest may set its own).
    pub stop_grace: Duration,
    /// The `exile-supervisor` binary.
    pub supervisor_bin: PathBuf,
    /// Size of one instance log file before rotation.
    pub log_max_bytes: u64,
    /// Rotated log files kept per instance.
    pub log_files: u32,
    /// The spawner's restart policy (its flags); a build's manifest goes over it, and a
    /// spawn's own policy over that.
    pub restart_default: crate::restart::RestartPolicy,
    /// The spawner's health check (its flags); a build's manifest goes over it, and a spawn's
    /// own check over that.
    pub health: crate::health::HealthCheck,
    /// Address of the SDK endpoint handed to games; `None` serves no SDK.
    pub sdk_addr: Option<std::net::SocketAddr>,
    /// Address of the SDK's HTTP form handed to games; `None` when it is not served.
    pub sdk_http_addr: Option<std::net::SocketAddr>,
    /// Loopback ports handed out in pairs to the Agones SDK of instances that speak it.
    pub agones_ports: RangeInclusive<u16>,
    /// The users games run as and their limits.
    pub isolation: crate::isolation::Isolation,
}

impl ManagerConfig {
    /// Derives the manager's settings from the spawner configuration and, when it has a host
    /// build, that build's `exile-build.toml`.
    pub fn from_config(config: &Config) -> Result<Self> {
        config.validate()?;
        let build_dir = std::path::absolute(&config.build_dir)
            .map_err(|e| Error::io("could not resolve", &config.build_dir, e))?;
        let restart_default = config.restart_default()?;
        let health = config.health()?;
        let command = config.command_template()?;
        let host_manifest = if command.is_some() {
            let manifest = crate::manifest::load(&build_dir)?;
            crate::manifest::check_host(&build_dir, &manifest, &restart_default, &health)?;
            manifest
        } else {
            Manifest::default()
        };
        let data_dir = std::path::absolute(&config.data_dir)
            .map_err(|e| Error::io("could not resolve", &config.data_dir, e))?;
        let isolation = crate::isolation::Isolation::from_config(config)?;
        isolation.check_reachable(&data_dir)?;
        let ports = config.ports()?;
        if let Some(eph) = crate::ports::ephemeral_range() {
            let n = crate::ports::ephemeral_overlap(&ports, &eph);
            if n > 0 {
                tracing::warn!(
                    "{n} port(s) of --port-range {}-{} are also in the kernel's range for outgoing connections ({}-{}): a game may find its port taken; move the range below {} or narrow net.ipv4.ip_local_port_range",
                    ports.start(),
                    ports.end(),
                    eph.start(),
                    eph.end(),
                    eph.start()
                );
            }
        }
        Ok(Self {
            name: config.spawner_name(),
            data_dir,
            capacity: config.capacity,
            ports,
            template: command.map(|words| CommandTemplate::new(words, build_dir)),
            host_manifest,
            build_version: config.build_version.clone(),
            stop_grace: Duration::from_secs(config.stop_grace_period_secs),
            supervisor_bin: config.supervisor_bin()?,
            log_max_bytes: config.log_file_max_bytes,
            log_files: config.log_files,
            restart_default,
            health,
            sdk_addr: None,
            sdk_http_addr: None,
            agones_ports: config.agones_ports()?,
            isolation,
        })
    }
}

/// An uploaded build installed on this host, as a spawn runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildToRun {
    /// Build name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The directory it is unpacked in (immutable: `<data-dir>/builds/<name>/<version>/`).
    pub dir: PathBuf,
    /// Its parsed manifest.
    pub manifest: Manifest,
}

/// Parameters of a new instance.
#[derive(Debug, Clone, Default)]
pub struct SpawnSpec {
    /// Instance id (chosen by the master); also the directory name.
    pub id: String,
    /// Build version; empty means the host build's (or the uploaded build's, with `build`).
    pub build_version: String,
    /// The uploaded build to run; `None` runs the host build (`--build-command`).
    pub build: Option<BuildToRun>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Extra arguments appended to the command template.
    pub args: Vec<String>,
    /// Restart policy asked for; `None` (or each field left unset) takes the build's default.
    pub restart_policy: Option<v1::RestartPolicy>,
    /// Health check asked for; `None` (or each field left unset) takes the build's default.
    pub health_check: Option<v1::HealthCheck>,
    /// Serve the Agones SDK to this instance even when its build's manifest does not ask.
    pub agones: bool,
}

enum Request {
    Spawn {
        // Boxed: a spec with its build's manifest dwarfs every other request.
        spec: Box<SpawnSpec>,
        ctx: OpContext,
        reply: oneshot::Sender<Result<InstanceRecord>>,
    },
    Forward {
        id: String,
        op: Op,
    },
    List {
        reply: oneshot::Sender<Vec<InstanceRecord>>,
    },
    Shutdown {
        stop: bool,
        done: oneshot::Sender<()>,
    },
}

/// Whether the record's supervisor is still the process it launched (pid and start time),
/// and the game it reported is still there.
fn supervisor_alive(rec: &InstanceRecord) -> bool {
    let supervisor = rec.supervisor_pid.is_some_and(|pid| {
        rec.supervisor_ticks.is_some() && process::is_alive(pid, rec.supervisor_ticks)
    });
    supervisor
        && rec
            .pid
            .is_some_and(|pid| rec.start_ticks.is_some() && process::is_alive(pid, rec.start_ticks))
}

/// A supervisor whose game is gone is about to record the exit and leave: give it a moment,
/// so the exit status is not reported unknown by a race.
async fn settle_supervisor(rec: &InstanceRecord) {
    let Some(pid) = rec.supervisor_pid else {
        return;
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while process::is_alive(pid, rec.supervisor_ticks) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Settles a record whose supervisor is gone: the exit it recorded (if any) becomes the state,
/// and a game left without its supervisor is killed rather than left unmanaged. Returns the
/// recorded exit.
fn recover_exit(rec: &mut InstanceRecord, dir: &std::path::Path) -> Option<ExitRecord> {
    if let Some(pid) = rec.pid
        && process::is_alive(pid, rec.start_ticks)
    {
        tracing::warn!(instance = %rec.id, pid, "game outlived its supervisor; killing it");
        let _ = process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
    }
    let exit = ExitRecord::read(dir);
    match exit {
        Some(exit) => {
            tracing::warn!(instance = %rec.id, exit = %exit.describe(), "instance exited while the spawner was down");
            rec.state = if exit.is_clean() {
                State::Stopped
            } else {
                State::Crashed
            };
            rec.message = format!("{} while the spawner was down", exit.describe());
            rec.exit_code = exit.code;
        }
        None => {
            tracing::warn!(instance = %rec.id, "instance exited while the spawner was down");
            rec.state = State::Crashed;
            rec.message = "exited while the spawner was down (exit status unknown)".into();
            rec.exit_code = None;
        }
    }
    rec.pid = None;
    rec.start_ticks = None;
    rec.supervisor_pid = None;
    rec.supervisor_ticks = None;
    exit
}

/// Applies the restart policy to a game that exited while the spawner was down (`stopping`:
/// a stop had been asked for, which is never undone). The restart is due a backoff after the
/// exit, so at once when the spawner was down longer than that.
fn restart_after_exit_while_down(
    rec: &mut InstanceRecord,
    exit: Option<ExitRecord>,
    stopping: bool,
) {
    let requested = stopping || exit.is_some_and(|e| e.stop_requested);
    let clean = exit.is_some_and(|e| e.is_clean());
    let policy = rec.restart_policy;
    if requested || !policy.wants_restart(clean) {
        return;
    }
    let now = exile_api::now_unix_ms();
    let reason = rec.message.clone();
    let Some(delay) = rec.restarts.next(&policy, now) else {
        rec.message = crate::restart::crash_loop_message(&reason, &policy);
        return;
    };
    let exited_at = exit.map_or(now, |e| e.exited_at_unix_ms.min(now));
    let due = exited_at.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    let pending = crate::restart::PendingRestart {
        due_unix_ms: due,
        reason,
    };
    tracing::info!(instance = %rec.id, delay = ?pending.delay(now), "restarting an instance that exited while the spawner was down");
    rec.message = crate::restart::restarting_message(
        &pending.reason,
        pending.delay(now),
        &rec.restarts,
        &policy,
    );
    rec.state = State::Starting;
    rec.pending_restart = Some(pending);
}

/// A spawner that dies while launching a pending restart may leave a game whose pid it never
/// recorded. Its supervisor still answers on the instance's socket: stop that game, so the
/// restart about to be made is the only process of the instance.
async fn end_unrecorded_launch(dir: &std::path::Path) {
    use crate::supervisor::Request;
    let Ok(answer) = crate::supervisor::request(dir, &Request::Ping).await else {
        return;
    };
    tracing::warn!(dir = %dir.display(), "a game launched as the spawner went down was never recorded; stopping it");
    let stop = Request::Stop {
        grace: Duration::ZERO,
        signal: nix::sys::signal::Signal::SIGTERM,
    };
    let _ = crate::supervisor::request(dir, &stop).await;
    let Ok(pid) = answer.trim().parse::<u32>() else {
        return;
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while process::group_alive(pid) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = process::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
}

/// Compares secrets without stopping at the first difference.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Handle to the instance manager; cheap to clone.
#[derive(Clone)]
pub struct Manager {
    requests: mpsc::UnboundedSender<Request>,
    events: broadcast::Sender<v1::InstanceEvent>,
    layout: crate::layout::Layout,
    live: Arc<crate::live::LiveSettings>,
    supervisors: crate::process::Supervisors,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").finish_non_exhaustive()
    }
}

impl Manager {
    /// Loads `state.json`, adopts the processes that survived (same pid and start time), marks
    /// the others crashed, and starts the manager task.
    pub async fn open(config: ManagerConfig) -> Result<Self> {
        let layout = crate::layout::Layout::new(config.data_dir.clone());
        let instances_dir = layout.instances();
        std::fs::create_dir_all(&instances_dir)
            .map_err(|e| Error::io("could not create", &instances_dir, e))?;
        let saved = StateFile::load(&config.data_dir)?;
        // Records older than per-spawn health checks take the host build's default, as they
        // did before.
        let host_health = crate::manifest::health_default(&config.host_manifest, &config.health)
            .unwrap_or(config.health);
        let settings = Arc::new(Settings {
            layout,
            template: config.template.clone(),
            spawner_name: config.name.clone(),
            live: Arc::new(crate::live::LiveSettings::new(crate::live::Flags {
                stop_grace: config.stop_grace,
                log_max_bytes: config.log_max_bytes,
                log_files: config.log_files,
                ports: config.ports.clone(),
                agones_ports: config.agones_ports.clone(),
                restart: config.restart_default,
                health: config.health,
            })),
            supervisors: crate::process::Supervisors::new(config.supervisor_bin.clone()),
            sdk_addr: config.sdk_addr,
            sdk_http_addr: config.sdk_http_addr,
            health: host_health,
            isolation: config.isolation.clone(),
        });
        let (to_manager, from_actors) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(1024);
        let mut task = ManagerTask {
            ports: PortAllocator::new(config.ports.clone()),
            agones_ports: PortAllocator::new(config.agones_ports.clone()),
            config,
            settings,
            instances: BTreeMap::new(),
            events: events.clone(),
            to_manager,
            persist: None,
        };
        let mut saved_instances = saved.instances;
        crate::isolation::assign_missing_uids(
            &task.config.isolation,
            saved_instances.iter_mut().map(|r| &mut r.run_uid),
        );
        for mut rec in saved_instances {
            rec.health.get_or_insert(host_health);
            let adopt = rec.state.has_process() && supervisor_alive(&rec);
            let pending = rec.pid.is_none() && rec.pending_restart.is_some();
            if adopt {
                tracing::info!(instance = %rec.id, pid = ?rec.pid, "adopted a running instance");
                // A game that had said Ready (or was allocated) keeps saying so.
                if !v1::InstanceState::from(rec.state).set_by_game() {
                    rec.state = State::Running;
                }
                rec.message = "adopted after a spawner restart".into();
            } else if pending {
                // The game had exited and its restart was waiting out the backoff: the actor
                // makes it when due. Its exit code is on the record already.
                tracing::info!(instance = %rec.id, "a restart was pending when the spawner went down");
                end_unrecorded_launch(&task.settings.instance_dir(&rec.id)).await;
            } else if rec.state.has_process() {
                settle_supervisor(&rec).await;
                let dir = task.settings.instance_dir(&rec.id);
                let stopping = rec.state == State::Stopping;
                let exit = recover_exit(&mut rec, &dir);
                restart_after_exit_while_down(&mut rec, exit, stopping);
            }
            if adopt || rec.state != State::Starting {
                rec.pending_restart = None;
            }
            rec.revision += 1;
            task.add_actor(rec, adopt);
        }
        let (persist_tx, persist_rx) = watch::channel(task.snapshot());
        let data_dir = task.config.data_dir.clone();
        let persister = crate::own_log::spawn(persist_loop(data_dir, persist_rx));
        task.persist = Some(persist_tx);
        task.save();
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let layout = task.settings.layout.clone();
        let live = task.settings.live.clone();
        let supervisors = task.settings.supervisors.clone();
        crate::own_log::spawn(task.run(requests_rx, from_actors, persister));
        Ok(Self {
            requests,
            events,
            layout,
            live,
            supervisors,
        })
    }

    /// The pid of the supervisor kept on standby for the next spawn, if one is ready.
    pub fn supervisor_on_standby(&self) -> Option<u32> {
        self.supervisors.standby_pid()
    }

    /// The settings the master may change while instances run.
    pub fn live(&self) -> &Arc<crate::live::LiveSettings> {
        &self.live
    }

    /// The spawner's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.layout.root()
    }

    /// Where everything lives in the data directory.
    pub fn layout(&self) -> &crate::layout::Layout {
        &self.layout
    }

    /// Creates an instance and starts its process.
    pub async fn spawn(&self, spec: SpawnSpec, ctx: OpContext) -> Result<InstanceRecord> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Spawn {
            spec: Box::new(spec),
            ctx,
            reply,
        })?;
        rx.await.map_err(|_| Error::ManagerGone)?
    }

    /// Starts a stopped or crashed instance (on its old port when still free).
    pub async fn start(&self, id: &str, ctx: OpContext) -> Result<InstanceRecord> {
        self.forward(id, |reply| Op::Start {
            first: false,
            ctx,
            reply,
        })
        .await
    }

    /// Stops a running instance: its build's stop signal to its group, `grace` (or its
    /// build's, or the spawner's default), SIGKILL.
    pub async fn stop(
        &self,
        id: &str,
        grace: Option<Duration>,
        ctx: OpContext,
    ) -> Result<InstanceRecord> {
        self.forward(id, |reply| Op::Stop { grace, ctx, reply })
            .await
    }

    /// Stops (when running) then starts an instance, counting a restart.
    pub async fn restart(
        &self,
        id: &str,
        grace: Option<Duration>,
        ctx: OpContext,
    ) -> Result<InstanceRecord> {
        self.forward(id, |reply| Op::Restart { grace, ctx, reply })
            .await
    }

    /// Stops (when running) and deletes an instance with its directory; returns its last view.
    pub async fn remove(&self, id: &str, ctx: OpContext) -> Result<InstanceRecord> {
        self.forward(id, |reply| Op::Remove { ctx, reply }).await
    }

    /// Every instance, ordered by id.
    pub async fn list(&self) -> Result<Vec<InstanceRecord>> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::List { reply })?;
        rx.await.map_err(|_| Error::ManagerGone)
    }

    /// One instance.
    pub async fn get(&self, id: &str) -> Result<InstanceRecord> {
        self.list()
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| Error::NotFound(id.to_owned()))
    }

    /// Sends an instance's log: the last `tail_lines` lines, then new output while `follow`,
    /// in pieces of at most 64 KiB handed to `send` (which returns false to stop).
    pub async fn logs<F, Fut>(&self, id: &str, tail_lines: u32, follow: bool, send: F) -> Result<()>
    where
        F: FnMut(crate::logs::Piece) -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let dir = self.forward(id, |reply| Op::Logs { reply }).await?;
        crate::logs::stream(dir, tail_lines, follow, send).await
    }

    /// Writes one line to the console (stdin) of a running instance, through its actor and
    /// its supervisor.
    pub async fn console(&self, id: &str, line: &str) -> Result<()> {
        exile_api::limits::check_console_line(line).map_err(Error::InvalidArgument)?;
        let line = line.to_owned();
        self.forward(id, |reply| Op::Console { line, reply }).await
    }

    /// Archives the game's files of instance `id` as backup `backup_id`, through its actor:
    /// no restore or removal of the instance runs meanwhile.
    pub async fn backup(
        &self,
        id: &str,
        backup_id: String,
        note: String,
    ) -> Result<crate::backup::BackupRecord> {
        self.forward(id, |reply| Op::Backup {
            id: backup_id,
            note,
            reply,
        })
        .await
    }

    /// Restores backup `backup_id` into instance `id`, whose game must be down, through its
    /// actor: a start asked meanwhile waits until the restore has finished.
    pub async fn restore(
        &self,
        id: &str,
        backup_id: String,
    ) -> Result<crate::backup::BackupRecord> {
        self.forward(id, |reply| Op::Restore {
            id: backup_id,
            reply,
        })
        .await
    }

    /// The instance an SDK secret belongs to; [`Error::Unauthenticated`] for any other.
    pub async fn by_sdk_token(&self, token: &str) -> Result<InstanceRecord> {
        if token.is_empty() {
            return Err(Error::Unauthenticated);
        }
        self.list()
            .await?
            .into_iter()
            .find(|r| !r.sdk_token.is_empty() && constant_time_eq(&r.sdk_token, token))
            .ok_or(Error::Unauthenticated)
    }

    /// Applies an SDK call of instance `id` (the caller has authenticated it).
    pub async fn sdk(&self, id: &str, call: crate::instance::SdkCall) -> Result<InstanceRecord> {
        self.forward(id, |reply| Op::Sdk { call, reply }).await
    }

    /// Instance events (every state change, and removals) from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<v1::InstanceEvent> {
        self.events.subscribe()
    }

    /// Ends the manager: stops every instance when `stop_instances`, else leaves them running
    /// for the next start to adopt; returns once the state file is written.
    pub async fn shutdown(&self, stop_instances: bool) -> Result<()> {
        let (done, rx) = oneshot::channel();
        self.send(Request::Shutdown {
            stop: stop_instances,
            done,
        })?;
        rx.await.map_err(|_| Error::ManagerGone)
    }

    fn send(&self, request: Request) -> Result<()> {
        self.requests.send(request).map_err(|_| Error::ManagerGone)
    }

    async fn forward<T>(
        &self,
        id: &str,
        make: impl FnOnce(oneshot::Sender<Result<T>>) -> Op,
    ) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Forward {
            id: id.to_owned(),
            op: make(reply),
        })?;
        rx.await.map_err(|_| Error::ManagerGone)?
    }
}
