//! The fleet reconciler: one task that, on a tick and after every change, compares each
//! fleet with its members and acts. The decision is the pure [`decide`]; [`run`] feeds it the
//! registry's view, places new instances (reserved at once, started in the background),
//! removes surplus and dead ones, runs autoscalers and publishes each fleet's counts.
//!
//! Rules: Allocated instances are never removed (nor Reserved ones, which the SDK reports as
//! Allocated); instances of an unreachable spawner count until the grace has passed, then are
//! replaced elsewhere, and when the spawner comes back the surplus is removed from the Ready
//! ones. A fleet whose instances run another build than it names (a new `name@version`, or
//! a new active version of the build it follows) rolls within its max surge and max
//! unavailable ([`crate::rollout::rolling`]); Allocated ones wait for their match to end.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::autoscale;
use super::{Checked, ScaleCause, check_spec};
use crate::registry::{Member, SpawnerLoad};
use crate::rollout::rolling::{self, Limits};
use crate::service::SharedRef;
use crate::service::instance_api::{launch, reserve};
use exile_api::now_unix_ms;
use exile_api::v1 as pb;

/// Most instances one pass starts for one fleet (the next pass starts more).
const MAX_SPAWNS_PER_PASS: u32 = 64;
/// Least time between two passes started by wake-ups.
const MIN_GAP: std::time::Duration = std::time::Duration::from_millis(20);
/// How long a fleet waits after a failed start before placing again, ms.
const FAILURE_BACKOFF_MS: i64 = 2000;

/// What a pass decided for one fleet.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    /// Instances to place.
    pub spawn: u32,
    /// Instances to remove (surplus, outdated, dead), by id.
    pub remove: Vec<String>,
    /// The counts.
    pub status: pb::FleetStatus,
}

/// The build a fleet's instances should run.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// Whatever they run (the host build, or nothing resolves).
    Any,
    /// One version everywhere (`name@version`).
    Pinned(&'a str, &'a str),
    /// The followed build's active version, per spawner id (activations can differ by
    /// spawner); an instance on a spawner missing here is left as it is.
    PerSpawner(&'a HashMap<String, (String, String)>),
}

impl Target<'_> {
    /// Whether a member runs something else than it should.
    pub fn outdated(&self, m: &Member) -> bool {
        let differs = |n: &str, v: &str| m.build_name != n || m.build_version != v;
        match self {
            Target::Any => false,
            Target::Pinned(n, v) => differs(n, v),
            Target::PerSpawner(map) => map.get(&m.spawner_id).is_some_and(|(n, v)| differs(n, v)),
        }
    }
}

/// What `decide` needs besides the members.
pub struct Context<'a> {
    /// Replicas wanted.
    pub replicas: u32,
    /// The build instances should run.
    pub target: Target<'a>,
    /// How far a roll to a new build may stretch the fleet.
    pub limits: Limits,
    /// Fill hosts (remove from the least packed first).
    pub packed: bool,
    /// Unix ms now.
    pub now: i64,
    /// An unreachable spawner's instances count until this long after they became unknown
    /// (or after `counted_from`, whichever is later), ms.
    pub grace_ms: i64,
    /// Unix ms before which unknown instances' grace does not start (the master's start:
    /// after a restart every instance is unknown until its spawner links again).
    pub counted_from: i64,
    /// Instances whose removal is under way (not counted, not removed again).
    pub removing: &'a HashSet<String>,
    /// A build rollout of this fleet's build is running: it removes old instances itself.
    pub rollout_running: bool,
    /// Spawner loads.
    pub loads: &'a HashMap<String, SpawnerLoad>,
}

/// Ranks removable instances: not-ready before ready, then by the spawner strategy.
fn removal_order(ctx: &Context<'_>, ms: &mut [&Member]) {
    let ratio = |m: &Member| {
        let l = ctx.loads.get(&m.spawner_id).copied().unwrap_or_default();
        // Load as a fraction without floats: instances * 1e6 / capacity.
        u64::from(l.instances) * 1_000_000 / u64::from(l.capacity.max(1))
    };
    ms.sort_by(|a, b| {
        let ready = |m: &Member| m.state == pb::InstanceState::Ready;
        ready(a).cmp(&ready(b)).then_with(|| {
            if ctx.packed {
                // Empty the least packed hosts first.
                ratio(a).cmp(&ratio(b))
            } else {
                // Keep the spread: take from the most packed first.
                ratio(b).cmp(&ratio(a))
            }
        })
    });
}

/// Decides one pass for one fleet.
pub fn decide(ctx: &Context<'_>, members: &[Member]) -> Decision {
    use pb::InstanceState as S;
    let mut d = Decision::default();
    let outdated = |m: &Member| ctx.target.outdated(m);
    let mut removable: Vec<&Member> = Vec::new();
    let (mut new_counted, mut old_held) = (0u32, 0u32);
    // Removals sent whose instance has not begun to stop: still there, so a roll counts them
    // against its surge (nothing else does: a crashed one is replaced at once).
    let mut leaving = 0u32;
    for m in members {
        if ctx.removing.contains(&m.id) {
            if !m.unknown
                && matches!(
                    m.state,
                    S::Ready | S::Allocated | S::Starting | S::Running | S::Unhealthy
                )
            {
                leaving += 1;
            }
            continue;
        }
        if m.unknown {
            if ctx.now - m.since.max(ctx.counted_from) < ctx.grace_ms {
                d.status.unknown += 1;
                if outdated(m) {
                    d.status.outdated += 1;
                } else {
                    new_counted += 1;
                }
            }
            continue;
        }
        match m.state {
            S::Allocated => d.status.allocated += 1,
            S::Ready => {
                d.status.ready += 1;
                removable.push(m);
            }
            S::Starting | S::Running | S::Unhealthy => {
                d.status.starting += 1;
                removable.push(m);
            }
            // On its way out: neither counted nor acted on.
            S::Stopping => continue,
            // Exited for good (past its restart policy) or never known: replaced, and removed.
            S::Stopped | S::Crashed | S::Unknown | S::Unspecified => {
                d.remove.push(m.id.clone());
                continue;
            }
        }
        if outdated(m) {
            d.status.outdated += 1;
            if m.state == S::Allocated {
                old_held += 1;
            }
        } else {
            new_counted += 1;
        }
    }
    d.status.current = d.status.ready + d.status.allocated + d.status.starting + d.status.unknown;
    let current = d.status.current;
    let (mut old, mut rest): (Vec<&Member>, Vec<&Member>) =
        removable.into_iter().partition(|m| outdated(m));
    removal_order(ctx, &mut old);
    removal_order(ctx, &mut rest);
    if d.status.outdated > 0 && !ctx.rollout_running {
        // Rolling to the new build: surge and unavailability within the fleet's limits.
        let step = rolling::step(
            ctx.limits,
            rolling::Counts {
                replicas: ctx.replicas,
                current: current + leaving,
                serving: d.status.ready + d.status.allocated,
                new: new_counted,
                held: old_held,
            },
        );
        d.spawn = step.spawn;
        // Taking one away must leave at least replicas - max_unavailable counted (so games
        // without the SDK, never Ready, still roll one by one), and a Ready one also at least
        // that many serving.
        let mut count_budget =
            current.saturating_sub(ctx.replicas.saturating_sub(ctx.limits.max_unavailable));
        let mut serving_budget = step.remove_serving;
        let mut take = |m: &Member, d: &mut Decision| {
            if count_budget == 0 {
                return false;
            }
            if m.state == pb::InstanceState::Ready {
                if serving_budget == 0 {
                    return false;
                }
                serving_budget -= 1;
            }
            count_budget -= 1;
            d.remove.push(m.id.clone());
            true
        };
        for m in old {
            take(m, &mut d);
        }
        // New ones beyond what is wanted (old Allocated ones keep their place).
        let mut surplus = step.surplus_new;
        for m in rest {
            if surplus == 0 {
                break;
            }
            if take(m, &mut d) {
                surplus -= 1;
            }
        }
    } else if current < ctx.replicas {
        d.spawn = ctx.replicas - current;
    } else if current > ctx.replicas && !ctx.rollout_running {
        // Scaling down: old ones first (only while a build rollout of the same name is not
        // running: it removes old instances itself), then by the spawner strategy.
        let mut surplus = current - ctx.replicas;
        for m in old.into_iter().chain(rest) {
            if surplus == 0 {
                break;
            }
            d.remove.push(m.id.clone());
            surplus -= 1;
        }
    }
    d.spawn = d.spawn.min(MAX_SPAWNS_PER_PASS);
    d
}

/// State the reconciler keeps between passes.
#[derive(Default)]
struct Memory {
    /// Instances whose removal was sent and has not finished.
    removing: Arc<Mutex<HashSet<String>>>,
    /// Per fleet: until when to hold off placing, and why.
    failed: Arc<Mutex<HashMap<String, (i64, String)>>>,
    /// Per fleet: when its webhook was last asked.
    webhook_at: HashMap<String, Instant>,
    /// Per fleet: the webhook's latest answer, not applied yet. Webhooks are asked in the
    /// background so a slow one never holds up the other fleets.
    webhook_answers: Arc<Mutex<HashMap<String, u32>>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Short sections only, never held across an await.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs until shutdown.
pub async fn run(shared: SharedRef) {
    let counted_from = now_unix_ms();
    let mut memory = Memory::default();
    let mut tick = tokio::time::interval(shared.fleets.config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => break,
            _ = tick.tick() => {}
            () = shared.fleets.wake.notified() => {
                // Wake-ups come with every allocation; at thousands a second one pass per
                // MIN_GAP sees them all (a pass reads the whole registry).
                tokio::time::sleep(MIN_GAP).await;
            }
        }
        pass(&shared, &mut memory, counted_from).await;
    }
}

async fn pass(shared: &SharedRef, memory: &mut Memory, counted_from: i64) {
    let fleets = shared.registry.fleets();
    let (mut members, loads) = shared.registry.fleet_members();
    let now = now_unix_ms();
    let grace_ms =
        i64::try_from(shared.fleets.config.unreachable_grace.as_millis()).unwrap_or(i64::MAX);
    for mut fleet in fleets {
        let ms = members.remove(&fleet.name).unwrap_or_default();
        let spec = fleet.spec.clone().unwrap_or_default();
        let checked = match check_spec(&fleet.name, &spec) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(fleet = %fleet.name, error = %e, "stored fleet spec is invalid");
                continue;
            }
        };
        let removing = locked(&memory.removing).clone();
        let rollout_running = match checked.pinned() {
            Some((name, _)) => shared.registry.rollout_running(name),
            None => match &checked.choice {
                crate::builds::BuildChoice::Active(name) => shared.registry.rollout_running(name),
                _ => false,
            },
        };
        let followed = match &checked.choice {
            crate::builds::BuildChoice::Active(name) => shared.registry.active_versions(name),
            _ => HashMap::new(),
        };
        let target = match (&checked.choice, checked.pinned()) {
            (_, Some((n, v))) => Target::Pinned(n, v),
            (crate::builds::BuildChoice::Active(_), None) => Target::PerSpawner(&followed),
            _ => Target::Any,
        };
        let ctx = Context {
            replicas: spec.replicas,
            target,
            limits: Limits::of(spec.rollout.as_ref()),
            packed: checked.packed,
            now,
            grace_ms,
            counted_from,
            removing: &removing,
            rollout_running,
            loads: &loads,
        };
        let mut d = decide(&ctx, &ms);
        if let Some(a) = &spec.autoscaler
            && let Some(to) = autoscaled(shared, memory, &fleet, a, &d.status)
            && to != spec.replicas
        {
            let reason = format!(
                "{} allocated, {} ready: autoscaler asks for {to}",
                d.status.allocated, d.status.ready
            );
            match super::scale(
                shared,
                &fleet.name,
                to,
                ScaleCause {
                    by: "autoscaler",
                    reason,
                },
                false,
            )
            .await
            {
                Ok(f) => {
                    fleet = f;
                    let ctx = Context {
                        replicas: to,
                        ..ctx
                    };
                    d = decide(&ctx, &ms);
                }
                Err(e) => {
                    tracing::warn!(fleet = %fleet.name, error = %e, "autoscaler could not scale")
                }
            }
        }
        for id in &d.remove {
            remove(shared, memory, id.clone());
        }
        let held = locked(&memory.failed)
            .get(&fleet.name)
            .filter(|(until, _)| *until > now)
            .map(|(_, why)| why.clone());
        d.status.message = match held {
            Some(why) => why,
            None if d.spawn > 0 => place(shared, memory, &fleet.name, &checked, d.spawn, &ms),
            None => String::new(),
        };
        fleet.status = Some(d.status);
        shared.registry.publish_fleet(fleet);
    }
    // Members of deleted fleets: removed, except Allocated ones (their match goes on).
    let removing = locked(&memory.removing).clone();
    for (name, ms) in members {
        if shared.registry.fleet(&name).is_some() {
            continue;
        }
        for m in ms {
            if !m.unknown && m.state != pb::InstanceState::Allocated && !removing.contains(&m.id) {
                remove(shared, memory, m.id);
            }
        }
    }
}

/// The count the fleet's autoscaler asks for now, if it has one and it is due.
fn autoscaled(
    shared: &SharedRef,
    memory: &mut Memory,
    fleet: &pb::Fleet,
    a: &pb::FleetAutoscaler,
    status: &pb::FleetStatus,
) -> Option<u32> {
    match &a.policy {
        Some(pb::fleet_autoscaler::Policy::Buffer(_)) => {
            autoscale::buffer_target(a, status.allocated)
        }
        Some(pb::fleet_autoscaler::Policy::Webhook(w)) => {
            let due = memory
                .webhook_at
                .get(&fleet.name)
                .is_none_or(|at| at.elapsed() >= autoscale::sync_interval(a));
            if due {
                memory.webhook_at.insert(fleet.name.clone(), Instant::now());
                let mut with_status = fleet.clone();
                with_status.status = Some(status.clone());
                let (a, w, answers) = (a.clone(), w.clone(), memory.webhook_answers.clone());
                let tls = shared.fleets.webhook_tls.clone();
                tokio::spawn(async move {
                    match autoscale::webhook_target(&a, &w, &with_status, &tls).await {
                        Ok(n) => {
                            locked(&answers).insert(with_status.name, n);
                        }
                        // The count stays as it is: a webhook that fails changes nothing.
                        Err(e) => {
                            tracing::warn!(fleet = %with_status.name, error = %e, "autoscaler webhook failed");
                        }
                    }
                });
            }
            locked(&memory.webhook_answers).remove(&fleet.name)
        }
        None => None,
    }
}

/// Sends the removal of one instance in the background.
fn remove(shared: &SharedRef, memory: &Memory, id: String) {
    if !locked(&memory.removing).insert(id.clone()) {
        return;
    }
    let (shared, removing) = (shared.clone(), memory.removing.clone());
    tokio::spawn(async move {
        let result = match shared.registry.route(&id) {
            Ok((_, link)) => {
                let action = pb::command::Action::Remove(pb::InstanceRef {
                    instance_id: id.clone(),
                });
                link.request(action, shared.command_timeout)
                    .await
                    .and_then(crate::registry::map_command_error)
                    .map(drop)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) | Err(crate::error::Error::NotFound(_)) => {
                shared.registry.forget_instance(&id);
                tracing::info!(instance = %id, "fleet instance removed");
            }
            Err(e) => {
                tracing::warn!(instance = %id, error = %e, "could not remove a fleet instance")
            }
        }
        locked(&removing).remove(&id);
        shared.fleets.wake.notify_one();
    });
}

/// Places `n` instances; returns why it could not, empty when all were placed.
fn place(
    shared: &SharedRef,
    memory: &Memory,
    fleet: &str,
    checked: &Checked,
    n: u32,
    members: &[Member],
) -> String {
    // Regions: the one with the fewest of this fleet's instances first.
    let mut per_region: HashMap<&str, usize> =
        checked.regions.iter().map(|r| (r.as_str(), 0)).collect();
    let regions_of = shared.registry.spawner_regions();
    for m in members {
        if let Some(r) = regions_of.get(&m.spawner_id)
            && let Some(c) = per_region.get_mut(r.as_str())
        {
            *c += 1;
        }
    }
    for _ in 0..n {
        let mut order: Vec<&str> = checked.regions.iter().map(String::as_str).collect();
        order.sort_by_key(|r| per_region.get(r).copied().unwrap_or(0));
        if order.is_empty() {
            order.push("");
        }
        let mut last_err = None;
        let mut placed = None;
        for region in order {
            match reserve(shared, checked.plan(region), |_| {}) {
                Ok(r) => {
                    placed = Some((region, r));
                    break;
                }
                Err(e) => last_err = Some(e),
            }
        }
        let Some((region, reserved)) = placed else {
            let why = format!(
                "cannot place an instance: {}",
                last_err.map_or_else(|| "no region".to_owned(), |e| e.to_string())
            );
            tracing::debug!(fleet, %why, "fleet short of instances");
            return why;
        };
        if let Some(c) = per_region.get_mut(region) {
            *c += 1;
        }
        let (shared, failed, fleet) = (shared.clone(), memory.failed.clone(), fleet.to_owned());
        tokio::spawn(async move {
            let id = reserved.id().to_owned();
            if let Err(e) = launch(&shared, reserved).await {
                tracing::warn!(fleet = %fleet, instance = %id, error = %e, "fleet instance did not start");
                let until = now_unix_ms() + FAILURE_BACKOFF_MS;
                locked(&failed).insert(fleet, (until, format!("an instance did not start: {e}")));
            }
            shared.fleets.wake.notify_one();
        });
    }
    String::new()
}

#[cfg(test)]
mod tests;
