//! The per-instance actor: the one task that owns an instance's process (a child, or an adopted
//! pid), carries out start/stop/restart/remove in order, watches for exits and reports every
//! change of its record to the manager.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use exile_api::limits::ResourceCaps;
use exile_api::v1;
use nix::sys::signal::Signal;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::backup::BackupRecord;
use crate::cgroup::Cgroups;
use crate::error::{Error, Result};
use crate::health::{HealthCheck, UnhealthyAction};
use crate::layout::InstanceDir;
use crate::process::{self, CommandTemplate, LaunchSpec};
use crate::restart::PendingRestart;
use crate::state::{HeldPort, InstanceRecord, State};
use crate::supervisor::ExitRecord;

/// How often an adopted process (not our child) is checked for exit.
const ADOPTED_POLL: Duration = Duration::from_millis(500);
/// How often a stopping process is checked for exit when it is not our child.
const STOP_POLL: Duration = Duration::from_millis(20);
/// Most player ids an instance tracks (Agones player tracking).
const MAX_PLAYER_IDS: usize = 1000;
/// Longest player id, bytes.
const MAX_PLAYER_ID: usize = 256;

/// A player id: 1 to [`MAX_PLAYER_ID`] bytes, no control characters.
fn check_player_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_PLAYER_ID || id.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "player id {id:?} must be 1 to {MAX_PLAYER_ID} bytes without control characters"
        )));
    }
    Ok(())
}

/// Lines of output a crash message ends with.
const CRASH_TAIL_LINES: u32 = 20;
/// Bytes of output a crash message may hold.
const CRASH_TAIL_BYTES: usize = 2048;
/// Time past the grace period for the supervisor to report the game gone.
const STOP_SLACK: Duration = Duration::from_secs(2);
/// How long to wait for a process group to vanish after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Deadline and cancellation of the command an operation belongs to.
#[derive(Debug, Clone, Default)]
pub struct OpContext {
    /// Past this instant the operation is not started any more.
    pub deadline: Option<tokio::time::Instant>,
    /// Cancelled when the master cancels the command.
    pub cancel: CancellationToken,
}

impl OpContext {
    /// Fails when the operation should not start any more.
    pub fn check(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        if self
            .deadline
            .is_some_and(|d| d <= tokio::time::Instant::now())
        {
            return Err(Error::DeadlineExceeded);
        }
        Ok(())
    }
}

/// What every instance actor shares.
#[derive(Debug)]
pub(crate) struct Settings {
    pub layout: crate::layout::Layout,
    /// The host build's command, which records older than uploaded builds run; `None` when
    /// the spawner has no host build.
    pub template: Option<CommandTemplate>,
    /// The spawner's name, for messages.
    pub spawner_name: String,
    /// Stop grace of records older than uploaded builds, and the log limits of launches:
    /// settings the master may change while instances run.
    pub live: Arc<crate::live::LiveSettings>,
    /// The supervisors games are launched under (one kept on standby).
    pub supervisors: process::Supervisors,
    /// Where the SDK endpoint listens, handed to games as `EXILE_SDK_ADDR`; `None` when the
    /// spawner serves no SDK (the games then get no SDK variables).
    pub sdk_addr: Option<std::net::SocketAddr>,
    /// Where the SDK's HTTP form listens, handed to games as `EXILE_SDK_HTTP_ADDR`.
    pub sdk_http_addr: Option<std::net::SocketAddr>,
    /// Health check of records that carry none (older than per-spawn health checks).
    pub health: HealthCheck,
    /// The users games run as and their limits.
    pub isolation: crate::isolation::Isolation,
}

impl Settings {
    /// The runtime directory of instance `id` (supervisor socket, exit file, logs).
    pub fn instance_dir(&self, id: &str) -> PathBuf {
        self.layout.instance(id).runtime().to_owned()
    }
}

pub(crate) type Reply = oneshot::Sender<Result<InstanceRecord>>;

/// Operations the manager forwards to an instance actor.
pub(crate) enum Op {
    /// Launch the process; `first` marks the spawn, which leaves nothing behind on failure.
    Start {
        first: bool,
        ctx: OpContext,
        reply: Reply,
    },
    Stop {
        grace: Option<Duration>,
        ctx: OpContext,
        reply: Reply,
    },
    Restart {
        grace: Option<Duration>,
        ctx: OpContext,
        reply: Reply,
    },
    Remove {
        ctx: OpContext,
        reply: Reply,
    },
    /// A call the game made about itself through the SDK.
    Sdk {
        call: SdkCall,
        reply: Reply,
    },
    /// Writes one line to the game's console (stdin), through its supervisor.
    Console {
        line: String,
        reply: oneshot::Sender<Result<()>>,
    },
    /// The directory of the instance's output logs, for a reader.
    Logs {
        reply: oneshot::Sender<Result<PathBuf>>,
    },
    /// Archives the game's files as backup `id`. The actor does nothing else meanwhile, so a
    /// restore or a removal waits for it.
    Backup {
        id: String,
        note: String,
        reply: oneshot::Sender<Result<BackupRecord>>,
    },
    /// Replaces the game's files by those of backup `id`; only while the game is down. The
    /// actor does nothing else meanwhile: a start (asked or automatic) waits its turn.
    Restore {
        id: String,
        reply: oneshot::Sender<Result<BackupRecord>>,
    },
    /// The spawner shuts down: stop the process or leave it running for re-adoption.
    Detach {
        stop: bool,
        done: oneshot::Sender<()>,
    },
}

impl Op {
    /// Answers the operation with an error without running it.
    pub fn fail(self, error: Error) {
        match self {
            Op::Start { reply, .. }
            | Op::Stop { reply, .. }
            | Op::Restart { reply, .. }
            | Op::Remove { reply, .. }
            | Op::Sdk { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Op::Console { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Op::Logs { reply } => {
                let _ = reply.send(Err(error));
            }
            Op::Backup { reply, .. } | Op::Restore { reply, .. } => {
                let _ = reply.send(Err(error));
            }
            Op::Detach { done, .. } => {
                let _ = done.send(());
            }
        }
    }
}

/// What a game can change about its own instance through the SDK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkCall {
    /// The game is alive (every call says so; this one says nothing else).
    Health,
    /// The game accepts players: Running → Ready.
    Ready,
    /// The game was handed to players: Running/Ready → Allocated.
    Allocate,
    /// Allocated for a while, then Ready again unless Allocate or Ready comes first.
    Reserve {
        /// How long the reservation holds.
        ttl: Duration,
    },
    /// Players connected and players that fit.
    Players {
        /// Connected now.
        count: u32,
        /// Fit; 0 when unknown.
        max: u32,
    },
    /// Sets a label, or removes it when `value` is empty.
    Label {
        /// Label key.
        key: String,
        /// Label value.
        value: String,
    },
    /// Sets an annotation, or removes it when `value` is empty.
    Annotation {
        /// Annotation key.
        key: String,
        /// Annotation value.
        value: String,
    },
    /// A player joined (Agones player tracking): its id is added, the count follows.
    PlayerConnect {
        /// The player's id.
        id: String,
    },
    /// A player left: its id is removed, the count follows.
    PlayerDisconnect {
        /// The player's id.
        id: String,
    },
    /// How many players fit (Agones player tracking).
    PlayerCapacity {
        /// Players that fit.
        capacity: u32,
    },
    /// The master handed the instance to players (not the game: it learns it through
    /// WatchInstance): Ready → Allocated with what the allocation sets.
    Assign {
        /// Labels merged over the instance's.
        labels: BTreeMap<String, String>,
        /// Annotations merged over the instance's.
        annotations: BTreeMap<String, String>,
        /// Blob for the game.
        metadata: Vec<u8>,
        /// The master's id of this allocation.
        id: String,
    },
    /// Changes an Agones counter (Agones' UpdateCounter).
    UpdateCounter {
        /// The counter.
        name: String,
        /// The change.
        update: exile_api::counts::CounterUpdate,
    },
    /// Changes an Agones list's capacity or values (Agones' UpdateList).
    UpdateList {
        /// The list.
        name: String,
        /// The change.
        update: exile_api::counts::ListUpdate,
    },
    /// Appends a value to an Agones list.
    AddListValue {
        /// The list.
        name: String,
        /// The value.
        value: String,
    },
    /// Removes a value from an Agones list.
    RemoveListValue {
        /// The list.
        name: String,
        /// The value.
        value: String,
    },
}

/// Messages from instance actors to the manager.
pub(crate) enum ToManager {
    /// The record changed.
    Update(InstanceRecord),
    /// The instance needs its ports: for each of `wanted`, its previous number if it is
    /// still free, else a new one.
    ReservePorts {
        id: String,
        wanted: Vec<HeldPort>,
        reply: oneshot::Sender<Result<Vec<HeldPort>>>,
    },
    /// The instance is gone; the record is its last view.
    Removed(InstanceRecord),
    /// The answer to an operation. It goes through the manager, after the updates the
    /// operation caused, so a caller that asks the manager next sees the new state.
    Respond {
        reply: Reply,
        result: Result<InstanceRecord>,
    },
}

/// The supervised game an instance holds.
struct Proc {
    /// The supervisor as our child when this spawner launched it (so it gets reaped); `None`
    /// when it was adopted after a restart, and is then polled.
    child: Option<Box<Child>>,
    supervisor_pid: u32,
    supervisor_ticks: Option<u64>,
    /// The game's pid and process group.
    pid: u32,
    /// The instance directory, where the supervisor writes `exit.json`.
    dir: PathBuf,
}

impl Proc {
    /// Waits for the supervisor to exit (it outlives the game only to record its status) and
    /// returns the recorded exit, `None` when the supervisor died without writing it.
    async fn wait(&mut self, poll: Duration) -> Option<ExitRecord> {
        match &mut self.child {
            Some(child) => {
                let _ = child.wait().await;
            }
            None => {
                while process::is_alive(self.supervisor_pid, self.supervisor_ticks) {
                    tokio::time::sleep(poll).await;
                }
            }
        }
        ExitRecord::read(&self.dir)
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn wait_exit(proc: &mut Option<Proc>) -> Option<ExitRecord> {
    match proc {
        Some(p) => p.wait(ADOPTED_POLL).await,
        None => std::future::pending().await,
    }
}

/// Owns one instance. Created by the manager, driven by [`Op`]s.
pub(crate) struct InstanceActor {
    rec: InstanceRecord,
    proc: Option<Proc>,
    settings: Arc<Settings>,
    to_manager: mpsc::UnboundedSender<ToManager>,
    /// When the restart policy will start the game again (after an unexpected exit); the
    /// record's `pending_restart` holds the same, durably.
    restart_at: Option<tokio::time::Instant>,
    /// When the game last called the SDK; `None` while it never has since its start, and is
    /// then never checked.
    heard: Option<tokio::time::Instant>,
    /// When the current process started (or was adopted), for the health initial delay.
    started: tokio::time::Instant,
    /// The state an Unhealthy game returns to when its pings resume.
    healthy_state: State,
    /// When a reservation (Allocated through `Reserve`) lapses back to Ready.
    reserved_until: Option<tokio::time::Instant>,
    /// Why the game runs without the memory/CPU caps it asks for, added to the messages of
    /// its running states so operators see it; `None` when it has none or they hold.
    caps_note: Option<String>,
}

/// An instance's caps: its build's, each unset one the spawner's.
fn caps_of(rec: &InstanceRecord, settings: &Settings) -> ResourceCaps {
    let build = rec.build.as_ref().map(|b| b.caps).unwrap_or_default();
    build.or(settings.isolation.default_caps)
}

/// What an instance's messages say when its caps cannot be enforced.
fn caps_note(caps: &ResourceCaps, why: &str) -> String {
    format!(
        "memory/CPU caps unsupported, running without {}: {why}",
        caps.describe()
    )
}

/// The note of an instance whose caps this host cannot enforce at all.
fn unsupported_note(rec: &InstanceRecord, settings: &Settings) -> Option<String> {
    let caps = caps_of(rec, settings);
    match &settings.isolation.cgroups {
        Cgroups::Unsupported(why) if !caps.is_empty() => Some(caps_note(&caps, why)),
        _ => None,
    }
}

impl InstanceActor {
    /// An actor for a record without a process.
    pub fn new(
        rec: InstanceRecord,
        settings: Arc<Settings>,
        to_manager: mpsc::UnboundedSender<ToManager>,
    ) -> Self {
        // A restart pending when the spawner went down is made when due, at once if overdue.
        let restart_at = rec
            .pending_restart
            .as_ref()
            .map(|p| tokio::time::Instant::now() + p.delay(exile_api::now_unix_ms()));
        Self {
            caps_note: unsupported_note(&rec, &settings),
            rec,
            proc: None,
            settings,
            to_manager,
            restart_at,
            heard: None,
            started: tokio::time::Instant::now(),
            healthy_state: State::Running,
            reserved_until: None,
        }
    }

    /// An actor watching a process that survived a spawner restart.
    pub fn adopted(
        rec: InstanceRecord,
        settings: Arc<Settings>,
        to_manager: mpsc::UnboundedSender<ToManager>,
    ) -> Self {
        let proc = match (rec.pid, rec.supervisor_pid) {
            (Some(pid), Some(supervisor_pid)) => Some(Proc {
                child: None,
                supervisor_pid,
                supervisor_ticks: rec.supervisor_ticks,
                pid,
                dir: settings.instance_dir(&rec.id),
            }),
            _ => None,
        };
        // A game that had used the SDK is checked again, its clock restarted from now.
        let used_sdk = v1::InstanceState::from(rec.state).set_by_game();
        let now = tokio::time::Instant::now();
        let mut rec = rec;
        rec.reserved_until_unix_ms = 0;
        let caps_note = unsupported_note(&rec, &settings);
        if let Some(note) = &caps_note
            && !rec.message.contains(note.as_str())
        {
            rec.message = format!("{}; {note}", rec.message);
        }
        Self {
            caps_note,
            healthy_state: if rec.state == State::Unhealthy {
                State::Ready
            } else {
                rec.state
            },
            rec,
            proc,
            settings,
            to_manager,
            restart_at: None,
            heard: used_sdk.then_some(now),
            started: now,
            // A reservation is not persisted: after a spawner restart it simply holds until
            // the game calls Ready or Allocate.
            reserved_until: None,
        }
    }

    /// Runs until the instance is removed or detached.
    pub async fn run(mut self, mut ops: mpsc::UnboundedReceiver<Op>) {
        loop {
            let health_deadline = self.health_deadline();
            let reserved_until = self
                .reserved_until
                .filter(|_| self.rec.state == State::Allocated);
            tokio::select! {
                op = ops.recv() => {
                    let Some(op) = op else {
                        self.detach(false).await;
                        return;
                    };
                    if self.handle(op).await {
                        return;
                    }
                }
                status = wait_exit(&mut self.proc) => self.exited_unexpectedly(status).await,
                () = sleep_until(health_deadline) => self.unhealthy().await,
                () = sleep_until(reserved_until) => {
                    self.reserved_until = None;
                    self.rec.reserved_until_unix_ms = 0;
                    self.set_state(State::Ready, "reservation expired");
                }
                () = sleep_until(self.restart_at) => {
                    self.restart_at = None;
                    self.rec.restart_count = self.rec.restart_count.saturating_add(1);
                    if let Err(e) = self.start().await {
                        tracing::warn!(instance = %self.rec.id, error = %e, "automatic restart failed");
                        if self.rec.pending_restart.take().is_some() {
                            self.set_state(State::Crashed, format!("automatic restart failed: {e}"));
                        }
                    }
                }
            }
        }
    }

    /// Carries out one operation; true when the actor is done.
    async fn handle(&mut self, op: Op) -> bool {
        // An operator's start, stop, restart or removal replaces a restart the policy had
        // scheduled; a stop then simply leaves the instance stopped. A shutdown of the
        // spawner keeps it pending in the state file for the next start; an SDK call, the
        // console, the logs and backups change nothing about it (a restore delays it: the
        // actor is busy meanwhile).
        let operator = matches!(
            op,
            Op::Start { .. } | Op::Stop { .. } | Op::Restart { .. } | Op::Remove { .. }
        );
        if operator && self.restart_at.take().is_some() {
            self.rec.pending_restart = None;
            if let Op::Stop { reply, .. } = op {
                self.set_state(State::Stopped, "stopped; the pending restart was cancelled");
                self.respond(reply, Ok(self.rec.clone()));
                return false;
            }
            let message = format!("{}; pending restart cancelled", self.rec.message);
            self.set_state(State::Crashed, message);
        }
        match op {
            Op::Start { first, ctx, reply } => {
                let result = match ctx.check() {
                    Ok(()) => self.start().await,
                    Err(e) => Err(e),
                };
                if first && result.is_err() && self.proc.is_none() {
                    // A spawn that failed leaves no instance behind.
                    self.delete().await;
                    self.respond(reply, result.map(|()| self.rec.clone()));
                    return true;
                }
                self.respond(reply, result.map(|()| self.rec.clone()));
            }
            Op::Stop { grace, ctx, reply } => {
                let result = match ctx.check() {
                    Ok(()) => self.stop(grace).await,
                    Err(e) => Err(e),
                };
                self.respond(reply, result.map(|()| self.rec.clone()));
            }
            Op::Restart { grace, ctx, reply } => {
                let result = match ctx.check() {
                    Ok(()) => self.restart(grace).await,
                    Err(e) => Err(e),
                };
                self.respond(reply, result.map(|()| self.rec.clone()));
            }
            Op::Remove { ctx, reply } => {
                if let Err(e) = ctx.check() {
                    self.respond(reply, Err(e));
                    return false;
                }
                if self.proc.is_some()
                    && let Err(e) = self.stop(None).await
                {
                    self.respond(reply, Err(e));
                    return false;
                }
                let last = self.delete().await;
                self.respond(reply, Ok(last));
                return true;
            }
            Op::Sdk { call, reply } => {
                let result = self.sdk(call).map(|()| self.rec.clone());
                self.respond(reply, result);
            }
            Op::Console { line, reply } => {
                let _ = reply.send(self.console(&line).await);
            }
            Op::Logs { reply } => {
                let _ = reply.send(Ok(self.settings.layout.instance(&self.rec.id).logs()));
            }
            Op::Backup { id, note, reply } => {
                let _ = reply.send(self.backup(id, note).await);
            }
            Op::Restore { id, reply } => {
                let _ = reply.send(self.restore(id).await);
            }
            Op::Detach { stop, done } => {
                self.detach(stop).await;
                let _ = done.send(());
                return true;
            }
        }
        false
    }

    /// Writes one line to the game's console, if it runs and is not on its way out.
    async fn console(&self, line: &str) -> Result<()> {
        let id = &self.rec.id;
        if self.proc.is_none() || !v1::InstanceState::from(self.rec.state).accepts_console() {
            return Err(Error::FailedPrecondition(format!(
                "instance {id} is not running (it is {}); its console is closed",
                self.rec.state.name()
            )));
        }
        let dir = self.settings.instance_dir(id);
        let request = crate::supervisor::Request::Console(line.to_owned());
        crate::supervisor::request(&dir, &request).await?;
        Ok(())
    }

    /// Archives the game's files (a running game's as they are now).
    async fn backup(&mut self, id: String, note: String) -> Result<BackupRecord> {
        let layout = &self.settings.layout;
        let (inst, backups) = (layout.instance(&self.rec.id), layout.backups(&self.rec.id));
        let instance = self.rec.id.clone();
        let keep = self.settings.live.backups_keep();
        let made = tokio::task::spawn_blocking(move || -> Result<BackupRecord> {
            let made = crate::backup::create(&inst, &backups, &instance, &id, &note)?;
            // Retention runs here, in the actor that owns the instance's backups, once the
            // new one is complete; failing to prune does not fail the backup.
            match crate::backup::prune(&backups, keep) {
                Ok(gone) if !gone.is_empty() => {
                    tracing::info!(instance = %instance, deleted = ?gone, keep, "older backups deleted");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(instance = %instance, error = %e, "could not delete older backups"),
            }
            Ok(made)
        })
        .await
        .map_err(|e| Error::Internal(format!("the backup task failed: {e}")))?;
        // The game's SDK pings of meanwhile wait in the queue behind this operation: its
        // health clock restarts rather than judge them late.
        if self.heard.is_some() {
            self.heard = Some(tokio::time::Instant::now());
        }
        made
    }

    /// Restores a backup into the game's files, which needs the game down. Runs to its end
    /// before the actor takes its next operation.
    async fn restore(&mut self, id: String) -> Result<BackupRecord> {
        if self.proc.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "instance {} is {}; stop it before restoring a backup",
                self.rec.id,
                self.rec.state.name()
            )));
        }
        let layout = &self.settings.layout;
        let (inst, backups) = (layout.instance(&self.rec.id), layout.backups(&self.rec.id));
        tokio::task::spawn_blocking(move || {
            crate::backup::restore(&inst, &backups, &id, crate::backup::Limits::default())
        })
        .await
        .map_err(|e| Error::Internal(format!("the restore task failed: {e}")))?
    }

    /// When the game is late enough to be Unhealthy; `None` when it is not checked (never
    /// used the SDK, not up, or already Unhealthy).
    fn health_deadline(&self) -> Option<tokio::time::Instant> {
        let heard = self.heard?;
        let checked = self.proc.is_some() && v1::InstanceState::from(self.rec.state).is_serving();
        if !checked {
            return None;
        }
        let health = self.health();
        let from = heard.max(self.started + health.initial_delay);
        Some(from + health.allowed_silence())
    }

    /// The instance's health check.
    fn health(&self) -> HealthCheck {
        self.rec.health.unwrap_or(self.settings.health)
    }

    /// The game missed its pings: mark it Unhealthy, and restart it if its check says so.
    async fn unhealthy(&mut self) {
        let health = self.health();
        self.healthy_state = self.rec.state;
        let silent = self.heard.map(|h| h.elapsed()).unwrap_or_default();
        let reason = format!(
            "unhealthy: missed {} health pings",
            health.failure_threshold
        );
        let detail = format!("no SDK health ping for {:.1}s", silent.as_secs_f64());
        tracing::warn!(instance = %self.rec.id, ?silent, action = ?health.action, "no SDK health ping; marking it unhealthy");
        match health.action {
            UnhealthyAction::Leave => {
                self.set_state(State::Unhealthy, format!("{reason} ({detail})"));
            }
            UnhealthyAction::Restart => {
                self.set_state(
                    State::Unhealthy,
                    format!("{reason} ({detail}); restarting it"),
                );
                if let Err(e) = self.stop(None).await {
                    tracing::warn!(instance = %self.rec.id, error = %e, "could not stop the unhealthy game");
                    return;
                }
                // The action asks for the restart whatever the policy's mode; its backoff and
                // crash-loop limit still apply.
                if let Err(message) = self.schedule_restart(reason) {
                    tracing::warn!(instance = %self.rec.id, %message, "unhealthy game not restarted");
                    self.set_state(State::Crashed, message);
                }
            }
        }
    }

    /// Schedules an automatic restart with the backoff of the instance's policy, or returns
    /// the crash-loop message when its limit is reached.
    fn schedule_restart(&mut self, reason: String) -> std::result::Result<(), String> {
        let policy = self.rec.restart_policy;
        let now = exile_api::now_unix_ms();
        let Some(delay) = self.rec.restarts.next(&policy, now) else {
            return Err(crate::restart::crash_loop_message(&reason, &policy));
        };
        tracing::info!(instance = %self.rec.id, %reason, ?delay, "restarting the instance");
        let message =
            crate::restart::restarting_message(&reason, delay, &self.rec.restarts, &policy);
        self.restart_at = Some(tokio::time::Instant::now() + delay);
        self.rec.pending_restart = Some(PendingRestart {
            due_unix_ms: now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            reason,
        });
        self.set_state(State::Starting, message);
        Ok(())
    }

    /// Applies an SDK call; only a game whose process is up (and not being stopped) may
    /// change its instance. A call that changes nothing sends no event.
    fn sdk(&mut self, call: SdkCall) -> Result<()> {
        let live = self.proc.is_some() && v1::InstanceState::from(self.rec.state).is_up();
        if !live {
            return Err(Error::FailedPrecondition(format!(
                "instance {} is {}; the SDK only acts on a running game",
                self.rec.id,
                self.rec.state.name()
            )));
        }
        if let SdkCall::Assign {
            labels,
            annotations,
            metadata,
            id,
        } = call
        {
            return self.assign(labels, annotations, metadata, id);
        }
        self.heard = Some(tokio::time::Instant::now());
        if self.rec.state == State::Unhealthy {
            tracing::info!(instance = %self.rec.id, "SDK pings resumed");
            self.set_state(self.healthy_state, "SDK pings resumed");
        }
        match call {
            SdkCall::Health => {}
            SdkCall::Ready => match self.rec.state {
                _ if self.reserved_until.take().is_some() => {
                    self.rec.reserved_until_unix_ms = 0;
                    self.set_state(State::Ready, "the game is ready again")
                }
                State::Running => self.set_state(State::Ready, "the game is ready"),
                State::Ready => {}
                // An allocated game that calls Ready again has sent its players away: what
                // the allocation set was for that match.
                _ => {
                    self.rec.annotations.clear();
                    self.rec.allocation_metadata.clear();
                    self.set_state(State::Ready, "the game is ready again");
                }
            },
            SdkCall::Reserve { ttl } => {
                self.reserved_until = Some(tokio::time::Instant::now() + ttl);
                self.rec.reserved_until_unix_ms = exile_api::now_unix_ms()
                    .saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
                let message = format!("reserved by the game for {}s", ttl.as_secs());
                if self.rec.state == State::Unhealthy {
                    self.healthy_state = State::Allocated;
                    self.report();
                } else {
                    self.set_state(State::Allocated, message);
                }
            }
            SdkCall::Allocate => {
                self.reserved_until = None;
                let was_reserved = std::mem::take(&mut self.rec.reserved_until_unix_ms) != 0;
                if self.rec.state != State::Allocated || was_reserved {
                    self.set_state(State::Allocated, "allocated by the game");
                }
            }
            SdkCall::PlayerConnect { id } => {
                if !self.rec.player_ids.contains(&id) {
                    let capacity = self.rec.max_players;
                    if capacity != 0 && self.rec.player_ids.len() >= capacity as usize {
                        return Err(Error::FailedPrecondition(format!(
                            "player {id} cannot join: the instance is at its capacity of {capacity} players"
                        )));
                    }
                    check_player_id(&id)?;
                    if self.rec.player_ids.len() >= MAX_PLAYER_IDS {
                        return Err(Error::FailedPrecondition(format!(
                            "player {id} cannot join: the instance tracks {MAX_PLAYER_IDS} players already"
                        )));
                    }
                    self.rec.player_ids.push(id);
                    self.rec.players = u32::try_from(self.rec.player_ids.len()).unwrap_or(u32::MAX);
                    self.report();
                }
            }
            SdkCall::PlayerDisconnect { id } => {
                let before = self.rec.player_ids.len();
                self.rec.player_ids.retain(|p| *p != id);
                if self.rec.player_ids.len() != before {
                    self.rec.players = u32::try_from(self.rec.player_ids.len()).unwrap_or(u32::MAX);
                    self.report();
                }
            }
            SdkCall::PlayerCapacity { capacity } => {
                if self.rec.max_players != capacity {
                    self.rec.max_players = capacity;
                    self.report();
                }
            }
            SdkCall::Annotation { key, value } => {
                exile_api::limits::check_label("annotation", &key, &value)
                    .map_err(Error::InvalidArgument)?;
                if !value.is_empty()
                    && !self.rec.annotations.contains_key(&key)
                    && self.rec.annotations.len() >= exile_api::limits::MAX_LABELS
                {
                    return Err(Error::InvalidArgument(format!(
                        "annotation {key}: the instance has {} annotations already, the most it may carry",
                        exile_api::limits::MAX_LABELS
                    )));
                }
                let changed = if value.is_empty() {
                    self.rec.annotations.remove(&key).is_some()
                } else {
                    self.rec.annotations.insert(key, value.clone()).as_ref() != Some(&value)
                };
                if changed {
                    self.report();
                }
            }
            SdkCall::Players { count, max } => {
                if (self.rec.players, self.rec.max_players) != (count, max) {
                    self.rec.players = count;
                    self.rec.max_players = max;
                    self.report();
                }
            }
            // Handled above, before the game counts as heard from.
            SdkCall::Assign { .. } => {}
            SdkCall::UpdateCounter { name, update } => {
                self.change_counts(|c| c.update_counter(&name, update).map(drop))?;
            }
            SdkCall::UpdateList { name, update } => {
                self.change_counts(|c| c.update_list(&name, update).map(drop))?;
            }
            SdkCall::AddListValue { name, value } => {
                self.change_counts(|c| c.add_list_value(&name, &value).map(drop))?;
            }
            SdkCall::RemoveListValue { name, value } => {
                self.change_counts(|c| c.remove_list_value(&name, &value).map(drop))?;
            }
            SdkCall::Label { key, value } => {
                exile_api::limits::check_label("label", &key, &value)
                    .map_err(Error::InvalidArgument)?;
                if exile_api::fleet::is_reserved_label(&key) {
                    return Err(Error::InvalidArgument(format!(
                        "label {key}: keys under {} belong to the platform",
                        exile_api::fleet::RESERVED_LABEL_PREFIX
                    )));
                }
                if !value.is_empty()
                    && !self.rec.labels.contains_key(&key)
                    && self.rec.labels.len() >= exile_api::limits::MAX_LABELS
                {
                    return Err(Error::InvalidArgument(format!(
                        "label {key}: the instance has {} labels already, the most it may carry",
                        exile_api::limits::MAX_LABELS
                    )));
                }
                let changed = if value.is_empty() {
                    self.rec.labels.remove(&key).is_some()
                } else {
                    self.rec.labels.insert(key, value.clone()).as_ref() != Some(&value)
                };
                if changed {
                    self.report();
                }
            }
        }
        Ok(())
    }

    /// An allocation by the master: only a Ready game may be handed to players.
    fn assign(
        &mut self,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
        metadata: Vec<u8>,
        id: String,
    ) -> Result<()> {
        if self.rec.state != State::Ready {
            return Err(Error::FailedPrecondition(format!(
                "instance {} is {}; only a Ready instance can be allocated",
                self.rec.id,
                self.rec.state.name()
            )));
        }
        self.reserved_until = None;
        self.rec.reserved_until_unix_ms = 0;
        self.rec.labels.extend(labels);
        self.rec.annotations.extend(annotations);
        self.rec.allocation_metadata = metadata;
        self.rec.allocation_id = id;
        self.set_state(State::Allocated, "allocated by the master");
        Ok(())
    }

    fn respond(&self, reply: Reply, result: Result<InstanceRecord>) {
        if let Err(mpsc::error::SendError(ToManager::Respond { reply, result })) =
            self.to_manager.send(ToManager::Respond { reply, result })
        {
            let _ = reply.send(result);
        }
    }

    /// Applies a change to the Agones counters and lists; a refused change leaves them as
    /// they were, and only a real change is reported.
    fn change_counts(
        &mut self,
        change: impl FnOnce(
            &mut exile_api::counts::Counts,
        ) -> Result<(), exile_api::counts::CountsError>,
    ) -> Result<()> {
        let before = self.rec.agones_counts.clone();
        change(&mut self.rec.agones_counts)?;
        if self.rec.agones_counts != before {
            self.report();
        }
        Ok(())
    }

    fn report(&mut self) {
        self.rec.revision += 1;
        let _ = self.to_manager.send(ToManager::Update(self.rec.clone()));
    }

    fn set_state(&mut self, state: State, message: impl Into<String>) {
        let mut message = message.into();
        if let Some(note) = &self.caps_note
            && matches!(state, State::Running | State::Ready | State::Allocated)
        {
            message = if message.is_empty() {
                note.clone()
            } else {
                format!("{message}; {note}")
            };
        }
        self.rec.state = state;
        self.rec.message = message;
        self.report();
    }

    async fn start(&mut self) -> Result<()> {
        if self.proc.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "instance {} is already {}; stop it first",
                self.rec.id,
                self.rec.state.name()
            )));
        }
        // First: an instance whose build cannot run needs no ports.
        let template = self.template()?;
        let (tx, rx) = oneshot::channel();
        let _ = self.to_manager.send(ToManager::ReservePorts {
            id: self.rec.id.clone(),
            wanted: self.rec.ports.clone(),
            reply: tx,
        });
        let ports = rx.await.map_err(|_| Error::ManagerGone)??;
        self.rec.ports = ports;
        self.launch(&template).await
    }

    /// The command the instance runs: its build's, or for a record older than uploaded builds
    /// the host build's.
    fn template(&self) -> Result<CommandTemplate> {
        match &self.rec.build {
            Some(build) => Ok(CommandTemplate::new(
                build.command.clone(),
                build.dir.clone(),
            )),
            None => self.settings.template.clone().ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "spawner {} has no host build (--build-command); name an uploaded build",
                    self.settings.spawner_name
                ))
            }),
        }
    }

    /// The signal that asks the game to stop, from its build.
    fn stop_signal(&self) -> Signal {
        self.rec
            .build
            .as_ref()
            .and_then(|b| Signal::try_from(b.stop_signal).ok())
            .unwrap_or(Signal::SIGTERM)
    }

    /// The grace of a stop that names none: its build's, else the spawner's.
    fn stop_grace(&self) -> Duration {
        self.rec
            .build
            .as_ref()
            .map_or_else(|| self.settings.live.stop_grace(), |b| b.stop_grace)
    }

    /// The cgroup the game joins, its caps written in, when it has caps and this host can
    /// enforce them; otherwise why not goes into the instance's messages and the log.
    fn cgroup_for_launch(&mut self) -> Option<PathBuf> {
        let caps = caps_of(&self.rec, &self.settings);
        self.caps_note = None;
        if caps.is_empty() {
            return None;
        }
        let why = match &self.settings.isolation.cgroups {
            Cgroups::Available(tree) => match tree.create(&self.rec.id, &caps) {
                Ok(dir) => return Some(dir),
                Err(e) => format!(
                    "could not set up the cgroup {}: {e}",
                    tree.instance(&self.rec.id).display()
                ),
            },
            Cgroups::Unsupported(why) => why.clone(),
        };
        tracing::warn!(instance = %self.rec.id, caps = %caps.describe(), "memory/CPU caps unsupported: {why}; the game runs without them");
        self.caps_note = Some(caps_note(&caps, &why));
        None
    }

    fn launch_spec(
        &self,
        template: &CommandTemplate,
        inst: &InstanceDir,
        cgroup: Option<PathBuf>,
    ) -> LaunchSpec {
        let dir = &inst.data();
        let ports = &self.rec.ports;
        let (program, args) = template.expand(ports, &self.rec.id, dir, &self.rec.args);
        let mut env = vec![
            ("EXILE_INSTANCE_ID".to_owned(), self.rec.id.clone()),
            (
                "EXILE_PORT".to_owned(),
                self.rec.port().unwrap_or(0).to_string(),
            ),
            (
                "EXILE_DATA_DIR".to_owned(),
                dir.to_string_lossy().into_owned(),
            ),
        ];
        env.extend(ports.iter().map(|p| (p.env_name(), p.port.to_string())));
        // The build's environment, then the spawn's over it. The SDK variables come last and
        // neither can name them: the secret is the spawner's to hand out.
        let build_env = self
            .rec
            .build
            .as_ref()
            .map(|b| b.env.clone())
            .unwrap_or_default();
        env.extend(
            crate::manifest::merged_env(&build_env, &self.rec.env)
                .into_iter()
                .filter(|(k, _)| !k.starts_with("EXILE_SDK_") && !k.starts_with("AGONES_SDK_")),
        );
        if let Some(agones) = self.rec.agones {
            env.push(("AGONES_SDK_GRPC_PORT".to_owned(), agones.grpc.to_string()));
            env.push(("AGONES_SDK_HTTP_PORT".to_owned(), agones.http.to_string()));
        }
        if !self.rec.sdk_token.is_empty() {
            let served: Vec<(String, String)> = [
                ("EXILE_SDK_ADDR", self.settings.sdk_addr),
                ("EXILE_SDK_HTTP_ADDR", self.settings.sdk_http_addr),
            ]
            .into_iter()
            .filter_map(|(name, addr)| Some((name.to_owned(), addr?.to_string())))
            .collect();
            if !served.is_empty() {
                env.extend(served);
                env.push(("EXILE_SDK_TOKEN".to_owned(), self.rec.sdk_token.clone()));
            }
        }
        LaunchSpec {
            supervisors: self.settings.supervisors.clone(),
            program,
            args,
            dir: inst.runtime().to_owned(),
            cwd: dir.to_owned(),
            env,
            log_max_bytes: self.settings.live.log_max_bytes(),
            log_files: self.settings.live.log_files(),
            uid: self.run_uid(),
            max_open_files: self.settings.isolation.max_open_files,
            max_processes: self.settings.isolation.max_processes,
            cgroup,
        }
    }

    /// The user the game runs as: its own uid while the spawner hands them out.
    fn run_uid(&self) -> Option<u32> {
        self.rec
            .run_uid
            .filter(|u| self.settings.isolation.owns(*u))
    }

    /// The instance's directories made ready for its game's user, and the build it runs
    /// reachable by that user.
    fn prepare_for_user(&self, inst: &InstanceDir, template: &CommandTemplate) -> Result<()> {
        let Some(uid) = self.run_uid() else {
            return Ok(());
        };
        let root = self.settings.layout.root();
        crate::isolation::prepare_instance(root, inst.runtime(), &inst.data(), uid)
            .map_err(|e| Error::io("could not prepare for its user", inst.runtime(), e))?;
        let build_dir = template.build_dir();
        crate::isolation::open_path(root, build_dir)
            .map_err(|e| Error::io("could not open for its user", build_dir, e))
    }

    async fn launch(&mut self, template: &CommandTemplate) -> Result<()> {
        // After an automatic restart the exit that caused it stays on record.
        if self.rec.pending_restart.is_none() {
            self.rec.exit_code = None;
        }
        self.rec.players = 0;
        self.rec.max_players = 0;
        self.rec.player_ids.clear();
        // A new game process knows nothing of the last one's counters and lists.
        self.rec.agones_counts = (self.rec.build.as_ref())
            .map(|b| b.agones_counts.clone())
            .unwrap_or_default();
        self.rec.reserved_until_unix_ms = 0;
        self.reserved_until = None;
        self.heard = None;
        self.started = tokio::time::Instant::now();
        self.set_state(State::Starting, "starting");
        // The game is down: an instance directory an older spawner laid out is brought
        // over to the current layout here.
        let inst = self.settings.layout.instance(&self.rec.id);
        let cgroup = self.cgroup_for_launch();
        let result = match inst.prepare() {
            Ok(()) => match self.prepare_for_user(&inst, template) {
                Ok(()) => process::launch(&self.launch_spec(template, &inst, cgroup)).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(Error::io("could not prepare", inst.runtime(), e)),
        };
        match result {
            Ok(launched) => {
                self.rec.pid = Some(launched.pid);
                self.rec.start_ticks = launched.start_ticks;
                self.rec.supervisor_pid = Some(launched.supervisor_pid);
                self.rec.supervisor_ticks = launched.supervisor_ticks;
                self.rec.started_at_unix_ms = exile_api::now_unix_ms();
                self.proc = Some(Proc {
                    child: Some(Box::new(launched.child)),
                    supervisor_pid: launched.supervisor_pid,
                    supervisor_ticks: launched.supervisor_ticks,
                    pid: launched.pid,
                    dir: inst.runtime().to_owned(),
                });
                let message = match self.rec.pending_restart.take() {
                    Some(p) => format!("restarted automatically after: {}", p.reason),
                    None => String::new(),
                };
                self.set_state(State::Running, message);
                // Logged after the state is reported, which the master and watchers wait for.
                tracing::info!(instance = %self.rec.id, pid = launched.pid, ports = ?self.rec.ports, build = %self.rec.build_name(), version = %self.rec.build_version, "instance started");
                Ok(())
            }
            Err(e) => {
                tracing::warn!(instance = %self.rec.id, error = %e, "instance failed to start");
                self.rec.pending_restart = None;
                self.set_state(State::Crashed, e.to_string());
                Err(e)
            }
        }
    }

    async fn stop(&mut self, grace: Option<Duration>) -> Result<()> {
        let Some(mut proc) = self.proc.take() else {
            return Err(Error::FailedPrecondition(format!(
                "instance {} is not running (it is {})",
                self.rec.id,
                self.rec.state.name()
            )));
        };
        let grace = grace.unwrap_or_else(|| self.stop_grace());
        let signal = self.stop_signal();
        let pgid = proc.pid;
        self.set_state(State::Stopping, "stopping");
        // The supervisor runs the signal → grace → SIGKILL sequence itself, so a stop goes
        // through even if this spawner dies meanwhile. If it does not answer, do it from here.
        let request = crate::supervisor::Request::Stop { grace, signal };
        let asked = crate::supervisor::request(&proc.dir, &request)
            .await
            .inspect_err(|e| tracing::warn!(instance = %self.rec.id, error = %e, "supervisor did not take the stop; signalling the group"))
            .is_ok();
        if !asked {
            let _ = process::signal_group(pgid, signal);
        }
        let mut exit = tokio::time::timeout(grace + STOP_SLACK, proc.wait(STOP_POLL))
            .await
            .ok();
        if exit.is_none() {
            tracing::info!(instance = %self.rec.id, ?grace, "grace period over, sending SIGKILL");
            let _ = process::signal_group(pgid, Signal::SIGKILL);
            match tokio::time::timeout(KILL_WAIT, proc.wait(STOP_POLL)).await {
                Ok(e) => exit = Some(e),
                Err(_) => {
                    self.proc = Some(proc);
                    return Err(Error::Internal(format!(
                        "process {pgid} of instance {} did not exit after SIGKILL",
                        self.rec.id
                    )));
                }
            }
        }
        let exit = exit.flatten();
        // Leftover members of the group (the game's own children) go with it.
        let _ = process::signal_group(pgid, Signal::SIGKILL);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while process::group_alive(pgid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(STOP_POLL).await;
        }
        let message = match exit {
            Some(e) if e.signal == Some(Signal::SIGKILL as i32) => format!(
                "stopped with SIGKILL after the {}s grace period",
                grace.as_secs_f64()
            ),
            _ => "stopped".to_owned(),
        };
        self.finish_stop(exit, message);
        Ok(())
    }

    fn finish_stop(&mut self, exit: Option<ExitRecord>, message: String) {
        tracing::info!(instance = %self.rec.id, "instance stopped");
        self.rec.pid = None;
        self.rec.start_ticks = None;
        self.rec.supervisor_pid = None;
        self.rec.supervisor_ticks = None;
        self.rec.exit_code = exit.and_then(|e| e.code);
        self.set_state(State::Stopped, message);
    }

    async fn restart(&mut self, grace: Option<Duration>) -> Result<()> {
        if self.proc.is_some() {
            self.stop(grace).await?;
        }
        self.rec.restart_count = self.rec.restart_count.saturating_add(1);
        self.start().await
    }

    async fn exited_unexpectedly(&mut self, exit: Option<ExitRecord>) {
        let pid = self.proc.take().map(|p| p.pid).or(self.rec.pid);
        let mut message = match exit {
            Some(exit) => exit.describe(),
            None => "the instance supervisor died without recording an exit status".to_owned(),
        };
        let clean = exit.is_some_and(|e| e.is_clean());
        if let Some(pgid) = pid {
            // Never leave a game running without its supervisor (no console, no log).
            let _ = process::signal_group(pgid, Signal::SIGKILL);
        }
        self.rec.pid = None;
        self.rec.start_ticks = None;
        self.rec.supervisor_pid = None;
        self.rec.supervisor_ticks = None;
        self.rec.exit_code = exit.and_then(|e| e.code);
        if self.rec.restart_policy.wants_restart(clean) {
            match self.schedule_restart(message) {
                Ok(()) => return,
                Err(crash_loop) => message = crash_loop,
            }
        }
        if clean {
            tracing::info!(instance = %self.rec.id, ?pid, %message, "instance exited by itself");
            self.set_state(State::Stopped, message);
        } else {
            tracing::warn!(instance = %self.rec.id, ?pid, %message, "instance crashed");
            let tail = self.last_output().await;
            if !tail.is_empty() {
                message = format!("{message}{}{tail}", exile_api::state::GAME_OUTPUT_MARKER);
            }
            self.set_state(State::Crashed, message);
        }
    }

    /// The end of the instance's output log (at most [`CRASH_TAIL_BYTES`]), for a crash
    /// message.
    async fn last_output(&self) -> String {
        let dir = self.settings.layout.instance(&self.rec.id).logs();
        let mut out = Vec::new();
        let read = crate::logs::stream(dir, CRASH_TAIL_LINES, false, |p| {
            out.extend_from_slice(&p.data);
            std::future::ready(true)
        })
        .await;
        if read.is_err() {
            return String::new();
        }
        let start = out.len().saturating_sub(CRASH_TAIL_BYTES);
        let text = String::from_utf8_lossy(&out[start..]);
        // A cut in the middle of a character shows as one replacement char; drop it.
        text.trim_start_matches('\u{fffd}').trim_end().to_owned()
    }

    /// Deletes the instance directory and tells the manager the instance is gone.
    async fn delete(&mut self) -> InstanceRecord {
        let dir = self.settings.instance_dir(&self.rec.id);
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err((dir, e)),
            _ => Ok(()),
        })
        .await;
        if let Ok(Err((dir, e))) = removed {
            tracing::warn!(instance = %self.rec.id, dir = %dir.display(), error = %e, "could not delete the instance directory");
        }
        // Its cgroup goes after its processes (the kill waits for them to be reaped).
        if let Cgroups::Available(tree) = &self.settings.isolation.cgroups {
            let (tree, id) = (tree.clone(), self.rec.id.clone());
            let cgroup = tree.instance(&id);
            let removed = tokio::task::spawn_blocking(move || tree.remove(&id)).await;
            if let Ok(Err(e)) = removed {
                tracing::warn!(instance = %self.rec.id, cgroup = %cgroup.display(), error = %e, "could not remove the instance's cgroup");
            }
        }
        tracing::info!(instance = %self.rec.id, "instance removed");
        self.rec.revision += 1;
        let _ = self.to_manager.send(ToManager::Removed(self.rec.clone()));
        self.rec.clone()
    }

    async fn detach(&mut self, stop: bool) {
        if stop
            && self.proc.is_some()
            && let Err(e) = self.stop(None).await
        {
            tracing::warn!(instance = %self.rec.id, error = %e, "could not stop instance at shutdown");
        }
        // Dropping a tokio Child neither kills nor waits on it: the game keeps running and the
        // next spawner adopts it.
        self.proc = None;
    }
}
