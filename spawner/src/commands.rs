//! Carries out one master command against the instance manager or the build store, honouring
//! its deadline and cancellation, and sends the `CommandResult` back over the link.

use std::time::Duration;

use exile_api::build::Manifest;
use exile_api::v1::{self, command::Action, spawner_message};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::builds::BuildStore;
use crate::error::{Error, Result};
use crate::instance::OpContext;
use crate::logs::Piece;
use crate::manager::{BuildToRun, Manager, SpawnSpec};
use crate::own_log;
use crate::state::InstanceRecord;

/// What commands act on.
pub struct Context {
    /// The instances.
    pub manager: Manager,
    /// The uploaded builds.
    pub builds: BuildStore,
    /// What a `logs` command naming this spawner reads.
    pub own_log: own_log::Source,
}

/// What a command produced, besides success.
#[derive(Default)]
struct Done {
    instance: Option<InstanceRecord>,
    backups: Vec<v1::Backup>,
    build: Option<v1::HeldBuild>,
}

/// Runs `command` and reports its result on `tx`; returns its request id.
pub async fn execute(
    context: Context,
    command: v1::Command,
    cancel: CancellationToken,
    tx: mpsc::Sender<v1::SpawnerMessage>,
) -> u64 {
    let request_id = command.request_id;
    let deadline = deadline_instant(command.deadline_unix_ms, exile_api::now_unix_ms());
    let ctx = OpContext {
        deadline,
        cancel: cancel.clone(),
    };
    let run = dispatch(&context, command.action, ctx, request_id, &tx);
    let expired = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        result = run => result,
        () = cancel.cancelled() => Err(Error::Cancelled),
        () = expired => Err(Error::DeadlineExceeded),
    };
    let outcome = match result {
        Ok(done) => v1::CommandResult {
            request_id,
            error: String::new(),
            error_kind: v1::CommandErrorKind::Unspecified.into(),
            instance: done.instance.map(|r| r.to_status()),
            backups: done.backups,
            build: done.build,
        },
        Err(error) => {
            tracing::debug!(request_id, %error, "command failed");
            v1::CommandResult {
                request_id,
                error: error.to_string(),
                error_kind: error.kind().into(),
                instance: None,
                backups: Vec::new(),
                build: None,
            }
        }
    };
    let message = v1::SpawnerMessage {
        kind: Some(spawner_message::Kind::CommandResult(outcome)),
    };
    let _ = tx.send(message).await;
    request_id
}

/// The tokio instant matching a Unix-ms deadline; `None` when there is none (0).
fn deadline_instant(deadline_unix_ms: i64, now_unix_ms: i64) -> Option<tokio::time::Instant> {
    if deadline_unix_ms <= 0 {
        return None;
    }
    let left = u64::try_from(deadline_unix_ms.saturating_sub(now_unix_ms)).unwrap_or(0);
    Some(tokio::time::Instant::now() + Duration::from_millis(left))
}

fn grace(seconds: u32) -> Option<Duration> {
    (seconds > 0).then(|| Duration::from_secs(u64::from(seconds)))
}

/// Outgoing messages queued on the link above which log data waits, so heartbeats and command
/// results never sit behind more than a few log chunks.
const LOG_QUEUE_LIMIT: usize = 8;

/// Sends one log piece over the link, after control traffic; false when the link is gone.
async fn send_log(tx: &mpsc::Sender<v1::SpawnerMessage>, request_id: u64, piece: Piece) -> bool {
    while tx.max_capacity() - tx.capacity() > LOG_QUEUE_LIMIT {
        if tx.is_closed() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let message = v1::SpawnerMessage {
        kind: Some(spawner_message::Kind::LogData(v1::LogData {
            request_id,
            data: piece.data,
            skipped_bytes: piece.skipped,
        })),
    };
    tx.send(message).await.is_ok()
}

/// A command's successful outcome listing backups.
fn backups(backups: Vec<v1::Backup>) -> Done {
    Done {
        backups,
        ..Done::default()
    }
}

async fn dispatch(
    context: &Context,
    action: Option<Action>,
    ctx: OpContext,
    request_id: u64,
    tx: &mpsc::Sender<v1::SpawnerMessage>,
) -> Result<Done> {
    let Context {
        manager,
        builds,
        own_log,
    } = context;
    match action {
        Some(Action::InstallBuild(install)) => {
            let Some(build) = install.build else {
                return Err(Error::InvalidArgument(
                    "an install_build command must name a build".into(),
                ));
            };
            let installed = builds.ensure(&build).await?;
            let held = builds
                .held_build(&installed.name, &installed.version)
                .ok_or_else(|| {
                    Error::Internal(format!(
                        "build {}@{} was removed right after it was installed",
                        installed.name, installed.version
                    ))
                })?;
            Ok(Done {
                build: Some(held),
                ..Done::default()
            })
        }
        Some(Action::Backup(cmd)) => {
            let rec = crate::backup::create_for(manager, cmd).await?;
            Ok(backups(vec![rec.to_pb()]))
        }
        Some(Action::ListBackups(target)) => {
            let list = crate::backup::list_for(manager, &target.instance_id).await?;
            Ok(backups(
                list.iter()
                    .map(crate::backup::BackupRecord::to_pb)
                    .collect(),
            ))
        }
        Some(Action::RestoreBackup(r)) => {
            let rec = crate::backup::restore_for(manager, &r).await?;
            Ok(backups(vec![rec.to_pb()]))
        }
        Some(Action::DeleteBackup(r)) => {
            crate::backup::delete_for(manager, &r).await?;
            Ok(Done::default())
        }
        Some(Action::Logs(logs)) => {
            let send = |piece| send_log(tx, request_id, piece);
            match (logs.instance_id.is_empty(), logs.spawner_id.is_empty()) {
                (false, true) => {
                    manager
                        .logs(&logs.instance_id, logs.tail_lines, logs.follow, send)
                        .await?;
                }
                (true, false) => {
                    own_log
                        .stream(&logs.spawner_id, logs.tail_lines, logs.follow, send)
                        .await?;
                }
                (false, false) => {
                    return Err(Error::InvalidArgument(
                        "a logs command names an instance or the spawner, not both".into(),
                    ));
                }
                (true, true) => {
                    return Err(Error::InvalidArgument(
                        "a logs command must name an instance or the spawner".into(),
                    ));
                }
            }
            Ok(Done::default())
        }
        Some(Action::Console(console)) => {
            manager.console(&console.instance_id, &console.line).await?;
            Ok(Done::default())
        }
        other => dispatch_instance(manager, builds, other, ctx)
            .await
            .map(|r| Done {
                instance: Some(r),
                ..Done::default()
            }),
    }
}

/// Installs an uploaded build if needed and reads the manifest it is run by (the master's
/// copy: a manifest given at upload wins over the archive's).
async fn build_to_run(builds: &BuildStore, wanted: &v1::BuildRef) -> Result<BuildToRun> {
    let installed = builds.ensure(wanted).await?;
    let manifest = Manifest::parse(installed.manifest.as_deref().unwrap_or("")).map_err(|e| {
        Error::FailedPrecondition(format!(
            "the manifest of build {}@{} cannot be used: {e}",
            installed.name, installed.version
        ))
    })?;
    Ok(BuildToRun {
        name: installed.name,
        version: installed.version,
        dir: installed.dir,
        manifest,
    })
}

async fn dispatch_instance(
    manager: &Manager,
    builds: &BuildStore,
    action: Option<Action>,
    ctx: OpContext,
) -> Result<InstanceRecord> {
    match action {
        Some(Action::Spawn(spawn)) => {
            // An uploaded build is installed first (joining a download under way); a spawn
            // never falls back to the host build in its place.
            let build = match &spawn.build {
                None => None,
                Some(wanted) => Some(build_to_run(builds, wanted).await?),
            };
            let spec = SpawnSpec {
                id: spawn.instance_id,
                build_version: spawn.build_version,
                build,
                labels: spawn.labels.into_iter().collect(),
                env: spawn.env.into_iter().collect(),
                args: spawn.args,
                restart_policy: spawn.restart_policy,
                health_check: spawn.health_check,
                agones: spawn.agones_sdk,
            };
            manager.spawn(spec, ctx).await
        }
        Some(Action::Start(target)) => manager.start(&target.instance_id, ctx).await,
        Some(Action::Stop(stop)) => {
            manager
                .stop(&stop.instance_id, grace(stop.grace_period_seconds), ctx)
                .await
        }
        Some(Action::Restart(stop)) => {
            manager
                .restart(&stop.instance_id, grace(stop.grace_period_seconds), ctx)
                .await
        }
        Some(Action::Remove(target)) => manager.remove(&target.instance_id, ctx).await,
        Some(Action::Allocate(a)) => {
            let call = crate::instance::SdkCall::Assign {
                labels: a.labels.into_iter().collect(),
                annotations: a.annotations.into_iter().collect(),
                metadata: a.metadata,
                id: a.allocation_id,
            };
            manager.sdk(&a.instance_id, call).await
        }
        Some(
            Action::Logs(_)
            | Action::Console(_)
            | Action::Backup(_)
            | Action::ListBackups(_)
            | Action::RestoreBackup(_)
            | Action::DeleteBackup(_)
            | Action::InstallBuild(_),
        )
        | None => Err(Error::InvalidArgument(
            "the command has no action this spawner understands".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn deadlines_map_to_instants() {
        assert!(deadline_instant(0, 1000).is_none());
        let now = tokio::time::Instant::now();
        let d = deadline_instant(3000, 1000).unwrap();
        assert_eq!(d - now, Duration::from_millis(2000));
        let past = deadline_instant(500, 1000).unwrap();
        assert_eq!(past, now);
    }

    #[test]
    fn zero_grace_means_the_default() {
        assert_eq!(grace(0), None);
        assert_eq!(grace(3), Some(Duration::from_secs(3)));
    }
}
