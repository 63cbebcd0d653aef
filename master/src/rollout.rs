//! Rollouts: replacing the running instances of a build name by another version of it, and
//! rolling an activation back. The decisions are the pure [`plan::Plan`]; this module runs one
//! driver task per rollout that feeds it the registry's view, carries out its actions (spawn a
//! copy of an instance on the new version, stop and remove the old one) and publishes the
//! progress through the registry (Watch events, snapshots, GetRollout).
//!
//! Rollouts live in the master's memory: a master restart ends the running ones (the
//! instances already replaced stay replaced, and a new rollout picks up the rest).

pub mod plan;
pub mod rolling;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::auth::new_id;
use crate::builds::{BuildChoice, BuildMeta};
use crate::convert::{check_id, check_labels};
use crate::error::{Error, Result};
use crate::model::Labels;
use crate::registry::{Placement, Registry, map_command_error};
use crate::service::SharedRef;
use crate::service::instance_api::{SpawnPlan, spawn};
use exile_api::now_unix_ms;
use exile_api::v1 as pb;
use plan::{Action, Phase, Plan, Seen, Settings};

/// How long a new instance may take to serve before it counts as failed.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a new instance without the SDK must run before it counts as serving.
const SETTLE: Duration = Duration::from_secs(3);
/// How often a driver looks at the fleet (besides when an action it started ends).
const TICK: Duration = Duration::from_millis(250);
/// Most instances out of service at once a rollout may ask for.
const MAX_UNAVAILABLE: u32 = exile_api::limits::MAX_ROLLOUT_UNAVAILABLE;

/// Cancel handles of running rollouts, by id.
fn running() -> &'static Mutex<HashMap<String, CancellationToken>> {
    static RUNNING: OnceLock<Mutex<HashMap<String, CancellationToken>>> = OnceLock::new();
    RUNNING.get_or_init(Mutex::default)
}

fn lock_running() -> std::sync::MutexGuard<'static, HashMap<String, CancellationToken>> {
    // Inserts and removes only, never held across an await.
    running().lock().unwrap_or_else(|e| e.into_inner())
}

/// StartRollout.
pub async fn start(
    shared: &SharedRef,
    actor: &str,
    req: pb::StartRolloutRequest,
) -> Result<pb::Rollout> {
    let (name, version) = exile_api::build::BuildSpec::parse_exact(&req.build)
        .map_err(|e| Error::InvalidArgument(format!("build: {e}")))?;
    let selector = check_labels("spawner_selector", &req.spawner_selector)?;
    if req.canary_percent > 100 {
        return Err(Error::InvalidArgument(format!(
            "canary_percent must be 0 to 100, not {}",
            req.canary_percent
        )));
    }
    if req.max_unavailable > MAX_UNAVAILABLE {
        return Err(Error::InvalidArgument(format!(
            "max_unavailable must be at most {MAX_UNAVAILABLE}"
        )));
    }
    let target = shared.registry.find_build(&format!("{name}@{version}"))?;
    let mut restore = None;
    if req.activate {
        // What was active before, to put back should the rollout roll back.
        restore = shared
            .registry
            .activations()
            .into_iter()
            .find(|a| a.name == name && a.selector == selector && a.build_id != target.id)
            .and_then(|a| shared.registry.build_by_id(&a.build_id))
            .map(|b| (format!("{}@{}", b.name, b.version), selector.clone()));
        shared
            .builds
            .activate(&req.build, selector.clone(), actor)
            .await?;
    }
    launch(
        shared,
        actor,
        Launch {
            target: &target,
            restore,
            selector,
            max_unavailable: req.max_unavailable,
            canary_percent: req.canary_percent,
            failure_threshold: req.failure_threshold,
        },
    )
}

/// What a rollout is asked to do.
struct Launch<'a> {
    /// The version instances move to.
    target: &'a BuildMeta,
    /// The activation to put back if it rolls back (it activated its target).
    restore: Option<(String, Labels)>,
    /// Spawners whose instances it replaces.
    selector: Labels,
    max_unavailable: u32,
    canary_percent: u32,
    failure_threshold: u32,
}

/// Starts the driver of a rollout to `target` over the instances of its name on spawners
/// matching `selector`.
fn launch(shared: &SharedRef, actor: &str, l: Launch<'_>) -> Result<pb::Rollout> {
    let Launch {
        target,
        restore,
        selector,
        max_unavailable,
        canary_percent,
        failure_threshold,
    } = l;
    if let Some(r) = shared
        .registry
        .rollouts()
        .into_iter()
        .find(|r| r.build_name == target.name && r.finished_at_unix_ms == 0)
    {
        return Err(Error::FailedPrecondition(format!(
            "rollout {} of {} is still running; cancel it first",
            r.id, r.build_name
        )));
    }
    let sel: HashMap<String, String> = selector.clone().into_iter().collect();
    let targets: BTreeMap<String, String> = shared
        .registry
        .records_with_spawners()
        .into_iter()
        .filter(|(r, region, labels)| {
            r.build_name == target.name
                && r.build_version != target.version
                && r.state.has_process()
                && exile_api::build::selector_matches(&sel, region, labels)
        })
        .map(|(r, _, _)| (r.id, r.build_version))
        .collect();
    let total = u32::try_from(targets.len()).unwrap_or(u32::MAX);
    let canary = if canary_percent == 0 {
        0
    } else {
        (total * canary_percent).div_ceil(100).max(1)
    };
    // A request that gives none takes the setting in force now.
    let max_unavailable = if max_unavailable == 0 {
        u32::try_from(
            shared
                .settings
                .number(exile_api::settings::ROLLOUT_MAX_UNAVAILABLE),
        )
        .unwrap_or(1)
    } else {
        max_unavailable
    };
    let settings = Settings {
        max_unavailable: max_unavailable.max(1),
        canary,
        failure_threshold: failure_threshold.max(1),
        ready_timeout_ms: i64::try_from(READY_TIMEOUT.as_millis()).unwrap_or(i64::MAX),
        settle_ms: i64::try_from(SETTLE.as_millis()).unwrap_or(i64::MAX),
    };
    let view = pb::Rollout {
        id: new_id("rol"),
        build_name: target.name.clone(),
        to_version: target.version.clone(),
        state: pb::RolloutState::Running as i32,
        max_unavailable: settings.max_unavailable,
        canary_percent,
        failure_threshold: settings.failure_threshold,
        total,
        message: if total == 0 {
            format!("no instance of {} runs another version", target.name)
        } else {
            format!("replacing {total} instances")
        },
        created_by: actor.to_owned(),
        started_at_unix_ms: now_unix_ms(),
        spawner_selector: selector.into_iter().collect(),
        ..Default::default()
    };
    let cancel = shared.shutdown.child_token();
    lock_running().insert(view.id.clone(), cancel.clone());
    shared.registry.publish_rollout(view.clone());
    tracing::info!(rollout = %view.id, build = %format!("{}@{}", target.name, target.version), total, "rollout started");
    let plan = Plan::new(settings, target.version.clone(), targets);
    tokio::spawn(drive(shared.clone(), view.clone(), plan, cancel, restore));
    Ok(view)
}

/// What a finished action reports back to the driver.
enum Done {
    Spawned {
        like: String,
        result: Result<String>,
    },
    Removed {
        id: String,
        result: Result<()>,
    },
}

/// Runs one rollout to its end. `restore`: the activation to put back if it rolls back (the
/// rollout activated its target).
async fn drive(
    shared: SharedRef,
    mut view: pb::Rollout,
    mut plan: Plan,
    cancel: CancellationToken,
    restore: Option<(String, Labels)>,
) {
    let id = view.id.clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cancelled = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(done) = rx.recv() => match done {
                Done::Spawned { like, result } => {
                    plan.spawned(&like, result.map_err(|e| e.to_string()));
                }
                Done::Removed { id, result } => plan.removed(&id, result.map_err(|e| e.to_string())),
            },
            () = cancel.cancelled(), if !cancelled => {
                cancelled = true;
                plan.cancel();
            }
        }
        if shared.shutdown.is_cancelled() {
            view.message = "the master shut down during the rollout".into();
            view.state = pb::RolloutState::Failed as i32;
            view.finished_at_unix_ms = now_unix_ms();
            shared.registry.publish_rollout(view);
            break;
        }
        let seen = fleet_view(&shared.registry);
        for action in plan.tick(&seen, now_unix_ms()) {
            let (shared, tx) = (shared.clone(), tx.clone());
            let build_name = view.build_name.clone();
            tokio::spawn(async move {
                let done = match action {
                    Action::Spawn {
                        like,
                        spawner_id,
                        version,
                    } => {
                        let result =
                            spawn_like(&shared, &like, &spawner_id, &build_name, &version).await;
                        Done::Spawned { like, result }
                    }
                    Action::Remove { id } => {
                        let result = remove(&shared, &id).await;
                        Done::Removed { id, result }
                    }
                };
                let _ = tx.send(done);
            });
        }
        let before = view.clone();
        let p = plan.progress();
        view.replaced = p.replaced;
        view.in_progress = p.in_progress;
        view.waiting_allocated = p.waiting_allocated;
        view.failed = p.failed;
        if !plan.message().is_empty() {
            view.message = plan.message().to_owned();
        } else if p.waiting_allocated > 0 && p.in_progress == 0 {
            view.message = format!(
                "waiting for {} allocated instances to be released",
                p.waiting_allocated
            );
        }
        if let Phase::Ended(state) = plan.phase() {
            view.state = state as i32;
            view.finished_at_unix_ms = now_unix_ms();
            tracing::info!(rollout = %view.id, state = ?state, message = %view.message, "rollout ended");
            shared.registry.publish_rollout(view);
            break;
        }
        if view != before {
            shared.registry.publish_rollout(view.clone());
        }
    }
    lock_running().remove(&id);
    if plan.phase() == Phase::Ended(pb::RolloutState::RolledBack)
        && let Some((spec, selector)) = restore
    {
        // New spawns must not keep landing on the version that failed.
        match shared
            .builds
            .activate(&spec, selector, &format!("rollout {id}"))
            .await
        {
            Ok(_) => {
                tracing::info!(rollout = %id, build = %spec, "activation restored after the rollback")
            }
            Err(e) => {
                tracing::warn!(rollout = %id, build = %spec, error = %e, "could not restore the activation after the rollback")
            }
        }
    }
}

/// The instances as the planner sees them.
fn fleet_view(registry: &Registry) -> HashMap<String, Seen> {
    registry
        .instance_states()
        .into_iter()
        .map(|(id, (spawner_id, state, state_changed_at))| {
            (
                id,
                Seen {
                    spawner_id,
                    state,
                    state_changed_at,
                },
            )
        })
        .collect()
}

/// Spawns an instance like `like` (its labels and spawn settings) on `spawner_id`, running
/// `name@version`.
async fn spawn_like(
    shared: &SharedRef,
    like: &str,
    spawner_id: &str,
    name: &str,
    version: &str,
) -> Result<String> {
    let old = shared
        .registry
        .record(like)
        .ok_or_else(|| Error::NotFound(format!("instance {like} is gone")))?;
    let plan = SpawnPlan {
        placement: Placement {
            spawner_id: spawner_id.to_owned(),
            region: String::new(),
            selector: Labels::new(),
            packed: false,
        },
        choice: BuildChoice::Exact {
            name: name.to_owned(),
            version: version.to_owned(),
        },
        host_version: String::new(),
        labels: old.labels.clone(),
        settings: old.spawn.clone(),
    };
    let instance = spawn(shared, plan, |_| {}, |_| {}).await?;
    tracing::info!(old = %like, new = %instance.id, version, "rollout spawned a replacement");
    Ok(instance.id)
}

/// Stops (with its grace) and removes an instance.
async fn remove(shared: &SharedRef, id: &str) -> Result<()> {
    let (_, link) = shared.registry.route(id)?;
    let action = pb::command::Action::Remove(pb::InstanceRef {
        instance_id: id.to_owned(),
    });
    match link
        .request(action, shared.command_timeout)
        .await
        .and_then(map_command_error)
    {
        Ok(_) | Err(Error::NotFound(_)) => {
            shared.registry.forget_instance(id);
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// GetRollout.
pub async fn get(shared: &SharedRef, req: pb::GetRolloutRequest) -> Result<pb::Rollout> {
    let all = shared.registry.rollouts();
    match (req.id.is_empty(), req.build_name.is_empty()) {
        (false, true) => {
            check_id("id", &req.id)?;
            all.into_iter()
                .find(|r| r.id == req.id)
                .ok_or_else(|| Error::NotFound(format!("rollout {} not found", req.id)))
        }
        (true, false) => {
            exile_api::build::check_name(&req.build_name).map_err(Error::InvalidArgument)?;
            all.into_iter()
                .find(|r| r.build_name == req.build_name)
                .ok_or_else(|| {
                    Error::NotFound(format!("no rollout of {} is known", req.build_name))
                })
        }
        _ => Err(Error::InvalidArgument(
            "give either id or build_name".into(),
        )),
    }
}

/// ListRollouts.
pub async fn list(shared: &SharedRef, req: pb::ListRolloutsRequest) -> Result<Vec<pb::Rollout>> {
    let mut all = shared.registry.rollouts();
    if !req.build_name.is_empty() {
        all.retain(|r| r.build_name == req.build_name);
    }
    Ok(all)
}

/// CancelRollout.
pub async fn cancel(
    shared: &SharedRef,
    _actor: &str,
    req: pb::CancelRolloutRequest,
) -> Result<pb::Rollout> {
    check_id("id", &req.id)?;
    let token = lock_running().get(&req.id).cloned();
    let Some(token) = token else {
        let known = shared
            .registry
            .rollouts()
            .into_iter()
            .find(|r| r.id == req.id);
        return match known {
            Some(r) => Err(Error::FailedPrecondition(format!(
                "rollout {} has already ended",
                r.id
            ))),
            None => Err(Error::NotFound(format!("rollout {} not found", req.id))),
        };
    };
    token.cancel();
    // The driver notices within a tick; answer with the rollout as it ends.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let r = get(
            shared,
            pb::GetRolloutRequest {
                id: req.id.clone(),
                ..Default::default()
            },
        )
        .await?;
        if r.finished_at_unix_ms != 0 || tokio::time::Instant::now() >= deadline {
            return Ok(r);
        }
        tokio::time::sleep(TICK).await;
    }
}

/// RollbackBuild: activate the version active before the current one for the selector, then
/// roll the name's instances to it.
pub async fn rollback(
    shared: &SharedRef,
    actor: &str,
    req: pb::RollbackBuildRequest,
) -> Result<pb::RollbackBuildResponse> {
    exile_api::build::check_name(&req.name).map_err(Error::InvalidArgument)?;
    let selector = check_labels("spawner_selector", &req.spawner_selector)?;
    let current = shared
        .registry
        .activations()
        .into_iter()
        .find(|a| a.name == req.name && a.selector == selector)
        .ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "{} has no activation for {} to roll back",
                req.name,
                crate::builds::selector_text(&selector)
            ))
        })?;
    let previous = shared
        .store
        .previous_activation(&req.name, &selector, &current.build_id)
        .await?
        .and_then(|id| shared.registry.build_by_id(&id))
        .ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "no version of {} was active before the current one",
                req.name
            ))
        })?;
    let spec = format!("{}@{}", previous.name, previous.version);
    let build = shared
        .builds
        .activate(&spec, selector.clone(), actor)
        .await?;
    let rollout = launch(
        shared,
        actor,
        Launch {
            target: &previous,
            restore: None,
            selector,
            max_unavailable: req.max_unavailable,
            canary_percent: 0,
            failure_threshold: 1,
        },
    )?;
    Ok(pb::RollbackBuildResponse {
        build: Some(build),
        rollout: (rollout.total > 0).then_some(rollout),
    })
}

/// Why a build may not be deleted because of a rollout (a running one targets it), if so.
pub fn delete_blocker(registry: &Registry, build: &BuildMeta) -> Option<String> {
    registry
        .rollouts()
        .into_iter()
        .find(|r| {
            r.finished_at_unix_ms == 0
                && r.build_name == build.name
                && r.to_version == build.version
        })
        .map(|r| format!("rollout {} is moving instances to it", r.id))
}
