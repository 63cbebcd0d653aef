//! The rollout planner: which instance to replace next, when a replacement counts as done or
//! failed, when to roll back. Pure: it sees the instances as the registry shows them and says
//! what to do; the driver carries the actions out and reports back. Unit-tested on its own.
//!
//! One replacement: a new instance of the target version is spawned on the old one's spawner
//! with the old one's settings; once the new one serves (Ready or Allocated, or Running for
//! `settle_ms`), the old one is stopped and removed. At most `max_unavailable` replacements
//! are in flight. A new instance that ends (crash, stop, unhealthy) or does not serve within
//! `ready_timeout_ms` is a failure: it is removed and its old instance kept. At
//! `failure_threshold` failures the rollout turns back: in-flight new instances are removed
//! and every replaced instance is replaced again by its old version.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use exile_api::v1 as pb;

/// How a rollout proceeds.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Most replacements in flight at once (at least 1).
    pub max_unavailable: u32,
    /// Instances replaced before the rest may start (0: no canary step).
    pub canary: u32,
    /// Failed new instances after which the rollout rolls back (at least 1).
    pub failure_threshold: u32,
    /// How long a new instance may take to serve, milliseconds.
    pub ready_timeout_ms: i64,
    /// How long a new instance without the SDK must run before it counts as serving.
    pub settle_ms: i64,
}

/// An instance as the planner needs to see it.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    /// Spawner holding it.
    pub spawner_id: String,
    /// Its state.
    pub state: pb::InstanceState,
    /// When the state last changed, Unix ms.
    pub state_changed_at: i64,
}

/// Something for the driver to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Spawn a copy of `like` (same spawner, labels and settings) running `version`; report
    /// with [`Plan::spawned`].
    Spawn {
        /// The instance being replaced.
        like: String,
        /// Spawner to place it on.
        spawner_id: String,
        /// Version to run.
        version: String,
    },
    /// Stop and remove an instance; report with [`Plan::removed`].
    Remove {
        /// Instance id.
        id: String,
    },
}

/// Where the rollout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Replacing old instances by the target version.
    Forward,
    /// Putting replaced instances back on their old versions.
    RollingBack,
    /// Cancelled: finishing what is in flight, starting nothing.
    Cancelling,
    /// Over.
    Ended(pb::RolloutState),
}

#[derive(Clone, Debug)]
struct Slot {
    /// The instance being replaced.
    old: String,
    spawner_id: String,
    /// Version the new instance runs.
    version: String,
    /// Version the old instance ran (what a rollback goes back to).
    old_version: String,
    /// The new instance, once spawned.
    new: Option<String>,
    /// When the spawn was asked for.
    started_at: i64,
    /// Removal of the old instance asked for (the new one serves).
    removing_old: bool,
}

/// Progress figures, as the API shows them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Instances to replace when it started.
    pub total: u32,
    /// Replaced so far.
    pub replaced: u32,
    /// In flight.
    pub in_progress: u32,
    /// Held back because they are allocated.
    pub waiting_allocated: u32,
    /// New instances that failed.
    pub failed: u32,
}

/// One rollout's plan.
#[derive(Clone, Debug)]
pub struct Plan {
    settings: Settings,
    to_version: String,
    phase: Phase,
    /// Old instances still to replace, with the version each runs.
    todo: BTreeMap<String, String>,
    total: u32,
    slots: Vec<Slot>,
    /// Done replacements: new id → (old version, spawner), for a rollback.
    replaced: BTreeMap<String, (String, String)>,
    /// Old instances whose replacement failed: not tried again.
    given_up: BTreeSet<String>,
    failed: u32,
    waiting_allocated: u32,
    message: String,
}

/// A new instance serves: the game said Ready (or was allocated), or it has run for `settle`.
fn serves(s: &Seen, now: i64, settle_ms: i64) -> bool {
    match s.state {
        pb::InstanceState::Ready | pb::InstanceState::Allocated => true,
        pb::InstanceState::Running => now - s.state_changed_at >= settle_ms,
        _ => false,
    }
}

/// A new instance has failed for good.
fn ended(s: &Seen) -> bool {
    matches!(
        s.state,
        pb::InstanceState::Crashed
            | pb::InstanceState::Stopped
            | pb::InstanceState::Stopping
            | pb::InstanceState::Unhealthy
    )
}

/// An old instance may be replaced now: it runs and no players hold it.
fn replaceable(s: &Seen) -> bool {
    matches!(
        s.state,
        pb::InstanceState::Starting
            | pb::InstanceState::Running
            | pb::InstanceState::Ready
            | pb::InstanceState::Unhealthy
    )
}

impl Plan {
    /// A plan replacing `targets` (old instance id → its version) by `to_version`.
    pub fn new(
        mut settings: Settings,
        to_version: String,
        targets: BTreeMap<String, String>,
    ) -> Self {
        settings.max_unavailable = settings.max_unavailable.max(1);
        settings.failure_threshold = settings.failure_threshold.max(1);
        let total = u32::try_from(targets.len()).unwrap_or(u32::MAX);
        Self {
            settings,
            to_version,
            phase: Phase::Forward,
            todo: targets,
            total,
            slots: Vec::new(),
            replaced: BTreeMap::new(),
            given_up: BTreeSet::new(),
            failed: 0,
            waiting_allocated: 0,
            message: String::new(),
        }
    }

    /// Where it is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// What it is doing or why it ended.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Figures for the API.
    pub fn progress(&self) -> Progress {
        Progress {
            total: self.total,
            replaced: u32::try_from(self.replaced.len()).unwrap_or(u32::MAX),
            in_progress: u32::try_from(self.slots.len()).unwrap_or(u32::MAX),
            waiting_allocated: self.waiting_allocated,
            failed: self.failed,
        }
    }

    /// The version-to-be of every instance in flight or replaced, for the spawners' wanted
    /// builds: the target, and during a rollback the old versions.
    pub fn versions_in_use(&self) -> BTreeSet<String> {
        let mut v: BTreeSet<String> = self.slots.iter().map(|s| s.version.clone()).collect();
        if self.phase == Phase::Forward {
            v.insert(self.to_version.clone());
        }
        v
    }

    /// Stop starting replacements; what is in flight finishes or is undone.
    pub fn cancel(&mut self) {
        if matches!(self.phase, Phase::Forward | Phase::RollingBack) {
            self.phase = Phase::Cancelling;
            self.message = "cancelled; finishing the replacements in flight".into();
        }
    }

    /// The driver's spawn of a replacement for `like` ended.
    pub fn spawned(&mut self, like: &str, result: Result<String, String>) {
        let Some(i) = self
            .slots
            .iter()
            .position(|s| s.old == like && s.new.is_none())
        else {
            return;
        };
        match result {
            Ok(id) => self.slots[i].new = Some(id),
            Err(e) => {
                let slot = self.slots.remove(i);
                let why = format!("spawning on {} failed: {e}", slot.spawner_id);
                self.fail(slot, why);
            }
        }
    }

    /// The driver's removal of `id` ended (an error leaves the instance; it is retried on the
    /// next tick while it is still seen).
    pub fn removed(&mut self, id: &str, result: Result<(), String>) {
        if let Err(e) = result {
            tracing::warn!(instance = %id, error = %e, "rollout could not remove an instance");
            if let Some(s) = self.slots.iter_mut().find(|s| s.old == id) {
                s.removing_old = false;
            }
        }
    }

    fn fail(&mut self, slot: Slot, why: String) {
        self.failed += 1;
        self.given_up.insert(slot.old.clone());
        self.message = format!("replacing {} failed: {why}", slot.old);
    }

    /// Looks at the instances now and says what to do next.
    pub fn tick(&mut self, view: &HashMap<String, Seen>, now: i64) -> Vec<Action> {
        let mut actions = Vec::new();
        if matches!(self.phase, Phase::Ended(_)) {
            return actions;
        }
        // Follow the replacements in flight.
        let mut i = 0;
        while i < self.slots.len() {
            let slot = &mut self.slots[i];
            let Some(new) = slot.new.clone() else {
                i += 1;
                continue;
            };
            if slot.removing_old {
                if !view.contains_key(&slot.old) {
                    let slot = self.slots.remove(i);
                    if self.phase == Phase::RollingBack {
                        // A rollback step: `new` now runs the old version again; nothing to
                        // remember.
                        self.replaced.remove(&slot.old);
                    } else {
                        self.replaced
                            .insert(new, (slot.old_version.clone(), slot.spawner_id.clone()));
                    }
                    continue;
                }
                i += 1;
                continue;
            }
            match view.get(&new) {
                Some(s) if serves(s, now, self.settings.settle_ms) => {
                    slot.removing_old = true;
                    actions.push(Action::Remove {
                        id: slot.old.clone(),
                    });
                    i += 1;
                }
                Some(s) if !ended(s) && now - slot.started_at < self.settings.ready_timeout_ms => {
                    i += 1;
                }
                seen => {
                    let why = match seen {
                        None => format!("the new instance {new} disappeared"),
                        Some(s) if ended(s) => format!(
                            "the new instance {new} ended {}",
                            s.state
                                .as_str_name()
                                .trim_start_matches("INSTANCE_STATE_")
                                .to_ascii_lowercase()
                        ),
                        Some(_) => format!(
                            "the new instance {new} did not serve within {} s",
                            self.settings.ready_timeout_ms / 1000
                        ),
                    };
                    let slot = self.slots.remove(i);
                    if seen.is_some() {
                        actions.push(Action::Remove { id: new });
                    }
                    self.fail(slot, why);
                }
            }
        }
        if self.phase == Phase::Forward && self.failed >= self.settings.failure_threshold {
            self.start_rollback(&mut actions);
        }
        match self.phase {
            Phase::Forward => self.launch_forward(view, now, &mut actions),
            Phase::RollingBack => self.launch_back(view, now, &mut actions),
            Phase::Cancelling | Phase::Ended(_) => {}
        }
        self.maybe_end(view);
        actions
    }

    fn start_rollback(&mut self, actions: &mut Vec<Action>) {
        self.phase = Phase::RollingBack;
        self.message = format!(
            "{} new instances failed (threshold {}): rolling back; last: {}",
            self.failed, self.settings.failure_threshold, self.message
        );
        // New instances still coming up are removed; their old ones stay.
        self.slots.retain(|s| {
            if s.removing_old {
                return true;
            }
            if let Some(new) = &s.new {
                actions.push(Action::Remove { id: new.clone() });
            }
            false
        });
    }

    fn launch_forward(
        &mut self,
        view: &HashMap<String, Seen>,
        now: i64,
        actions: &mut Vec<Action>,
    ) {
        // Targets that are gone (removed by someone) no longer count.
        self.todo.retain(|id, _| view.contains_key(id));
        let in_flight = self.slots.len();
        let mut room = (self.settings.max_unavailable as usize).saturating_sub(in_flight);
        if self.settings.canary > 0 && (self.replaced.len() as u32) < self.settings.canary {
            let canary_left =
                (self.settings.canary as usize).saturating_sub(self.replaced.len() + in_flight);
            room = room.min(canary_left);
        }
        let busy: BTreeSet<&str> = self.slots.iter().map(|s| s.old.as_str()).collect();
        let mut waiting = 0;
        let mut launch = Vec::new();
        for (id, version) in &self.todo {
            if busy.contains(id.as_str()) || self.given_up.contains(id) {
                continue;
            }
            let Some(seen) = view.get(id) else { continue };
            if seen.state == pb::InstanceState::Allocated {
                waiting += 1;
                continue;
            }
            if !replaceable(seen) {
                continue;
            }
            if launch.len() < room {
                launch.push((id.clone(), version.clone(), seen.spawner_id.clone()));
            }
        }
        self.waiting_allocated = waiting;
        for (id, old_version, spawner_id) in launch {
            self.todo.remove(&id);
            actions.push(Action::Spawn {
                like: id.clone(),
                spawner_id: spawner_id.clone(),
                version: self.to_version.clone(),
            });
            self.slots.push(Slot {
                old: id,
                spawner_id,
                version: self.to_version.clone(),
                old_version,
                new: None,
                started_at: now,
                removing_old: false,
            });
        }
    }

    fn launch_back(&mut self, view: &HashMap<String, Seen>, now: i64, actions: &mut Vec<Action>) {
        let room = (self.settings.max_unavailable as usize).saturating_sub(self.slots.len());
        let busy: BTreeSet<String> = self.slots.iter().map(|s| s.old.clone()).collect();
        let next: Vec<(String, String, String)> = self
            .replaced
            .iter()
            .filter(|(id, _)| !busy.contains(*id) && !self.given_up.contains(*id))
            .filter(|(id, _)| {
                view.get(*id)
                    .is_some_and(|s| s.state != pb::InstanceState::Allocated)
            })
            .take(room)
            .map(|(id, (v, sp))| (id.clone(), v.clone(), sp.clone()))
            .collect();
        // Replaced instances that vanished need no way back.
        self.replaced.retain(|id, _| view.contains_key(id));
        for (id, version, spawner_id) in next {
            actions.push(Action::Spawn {
                like: id.clone(),
                spawner_id: spawner_id.clone(),
                version: version.clone(),
            });
            self.slots.push(Slot {
                old: id,
                spawner_id,
                version,
                old_version: self.to_version.clone(),
                new: None,
                started_at: now,
                removing_old: false,
            });
        }
    }

    fn maybe_end(&mut self, view: &HashMap<String, Seen>) {
        if !self.slots.is_empty() {
            return;
        }
        match self.phase {
            Phase::Forward => {
                let left = self
                    .todo
                    .keys()
                    .filter(|id| !self.given_up.contains(*id))
                    .filter(|id| {
                        view.get(*id).is_some_and(|s| {
                            replaceable(s) || s.state == pb::InstanceState::Allocated
                        })
                    })
                    .count();
                if left == 0 {
                    self.phase = Phase::Ended(pb::RolloutState::Succeeded);
                    self.message = if self.failed == 0 {
                        format!("{} instances run {}", self.replaced.len(), self.to_version)
                    } else {
                        format!(
                            "{} instances run {}; {} could not be replaced ({})",
                            self.replaced.len(),
                            self.to_version,
                            self.failed,
                            self.message
                        )
                    };
                }
            }
            Phase::RollingBack => {
                let left = self
                    .replaced
                    .keys()
                    .filter(|id| !self.given_up.contains(*id))
                    .count();
                if left == 0 {
                    self.phase = Phase::Ended(pb::RolloutState::RolledBack);
                }
            }
            Phase::Cancelling => {
                self.phase = Phase::Ended(pb::RolloutState::Cancelled);
                self.message = format!("cancelled after replacing {}", self.replaced.len());
            }
            Phase::Ended(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::InstanceState as S;

    fn settings(max_unavailable: u32, canary: u32, failure_threshold: u32) -> Settings {
        Settings {
            max_unavailable,
            canary,
            failure_threshold,
            ready_timeout_ms: 60_000,
            settle_ms: 3_000,
        }
    }

    /// A fleet view the tests edit, and a plan over `n` old instances `o1..on` on two spawners.
    struct World {
        view: HashMap<String, Seen>,
        now: i64,
        next: u32,
    }

    impl World {
        fn new(n: u32) -> (Self, BTreeMap<String, String>) {
            let mut view = HashMap::new();
            let mut targets = BTreeMap::new();
            for i in 1..=n {
                view.insert(
                    format!("o{i}"),
                    Seen {
                        spawner_id: format!("s{}", i % 2),
                        state: S::Ready,
                        state_changed_at: 0,
                    },
                );
                targets.insert(format!("o{i}"), "1".to_owned());
            }
            (
                Self {
                    view,
                    now: 1_000,
                    next: 0,
                },
                targets,
            )
        }

        fn set(&mut self, id: &str, state: S) {
            let s = self.view.get_mut(id).unwrap();
            s.state = state;
            s.state_changed_at = self.now;
        }

        /// Carries out the actions as a perfect driver would: spawns come up Starting, removals
        /// take effect at once. Returns the ids spawned.
        fn run(&mut self, plan: &mut Plan, actions: Vec<Action>) -> Vec<String> {
            let mut spawned = Vec::new();
            for a in actions {
                match a {
                    Action::Spawn {
                        like, spawner_id, ..
                    } => {
                        self.next += 1;
                        let id = format!("n{}", self.next);
                        self.view.insert(
                            id.clone(),
                            Seen {
                                spawner_id,
                                state: S::Starting,
                                state_changed_at: self.now,
                            },
                        );
                        plan.spawned(&like, Ok(id.clone()));
                        spawned.push(id);
                    }
                    Action::Remove { id } => {
                        self.view.remove(&id);
                        plan.removed(&id, Ok(()));
                    }
                }
            }
            spawned
        }

        fn tick(&mut self, plan: &mut Plan) -> Vec<String> {
            self.now += 100;
            let actions = plan.tick(&self.view, self.now);
            self.run(plan, actions)
        }
    }

    #[test]
    fn replaces_at_most_max_unavailable_at_a_time_and_ends_succeeded() {
        let (mut w, targets) = World::new(6);
        let mut plan = Plan::new(settings(2, 0, 1), "2".into(), targets);
        let mut seen_max = 0;
        for _ in 0..100 {
            let new = w.tick(&mut plan);
            seen_max = seen_max.max(plan.progress().in_progress);
            for id in new {
                w.set(&id, S::Ready);
            }
            if plan.phase() != Phase::Forward {
                break;
            }
        }
        assert_eq!(
            plan.phase(),
            Phase::Ended(pb::RolloutState::Succeeded),
            "{}",
            plan.message()
        );
        assert_eq!(seen_max, 2);
        assert_eq!(plan.progress().replaced, 6);
        assert!((1..=6).all(|i| !w.view.contains_key(&format!("o{i}"))));
        assert_eq!(w.view.len(), 6);
    }

    #[test]
    fn an_allocated_instance_waits_until_it_is_free() {
        let (mut w, targets) = World::new(3);
        w.set("o2", S::Allocated);
        let mut plan = Plan::new(settings(1, 0, 1), "2".into(), targets);
        for _ in 0..50 {
            for id in w.tick(&mut plan) {
                w.set(&id, S::Ready);
            }
        }
        assert_eq!(plan.phase(), Phase::Forward);
        assert_eq!(plan.progress().replaced, 2);
        assert_eq!(plan.progress().waiting_allocated, 1);
        assert!(
            w.view.contains_key("o2"),
            "an allocated instance was touched"
        );
        w.set("o2", S::Ready);
        for _ in 0..10 {
            for id in w.tick(&mut plan) {
                w.set(&id, S::Ready);
            }
        }
        assert_eq!(plan.phase(), Phase::Ended(pb::RolloutState::Succeeded));
        assert!(!w.view.contains_key("o2"));
    }

    #[test]
    fn a_canary_goes_first_alone() {
        let (mut w, targets) = World::new(10);
        let mut plan = Plan::new(settings(5, 2, 1), "2".into(), targets);
        let first = w.tick(&mut plan);
        assert_eq!(first.len(), 2, "only the canary starts");
        // Nothing more while the canary is not serving.
        assert!(w.tick(&mut plan).is_empty());
        for id in first {
            w.set(&id, S::Ready);
        }
        w.tick(&mut plan); // old canary instances removed
        let rest = w.tick(&mut plan);
        assert_eq!(rest.len(), 5, "after the canary, max_unavailable applies");
    }

    #[test]
    fn running_without_sdk_serves_after_the_settle_time() {
        let (mut w, targets) = World::new(1);
        let mut plan = Plan::new(settings(1, 0, 1), "2".into(), targets);
        let new = w.tick(&mut plan);
        w.set(&new[0], S::Running);
        w.tick(&mut plan);
        assert!(w.view.contains_key("o1"), "removed before the settle time");
        w.now += 3_000;
        w.tick(&mut plan);
        assert!(!w.view.contains_key("o1"));
    }

    #[test]
    fn crashing_new_instances_roll_everything_back() {
        let (mut w, targets) = World::new(4);
        let mut plan = Plan::new(settings(1, 0, 2), "2".into(), targets);
        // The first replacement works.
        let n1 = w.tick(&mut plan);
        w.set(&n1[0], S::Ready);
        w.tick(&mut plan); // o1 removed
        let n2 = w.tick(&mut plan);
        assert_eq!(plan.progress().replaced, 1);
        // The next two crash; the tick that sees the second one starts the way back.
        w.set(&n2[0], S::Crashed);
        let n3 = w.tick(&mut plan);
        assert_eq!(plan.progress().failed, 1);
        w.set(&n3[0], S::Crashed);
        let mut back = w.tick(&mut plan);
        assert_eq!(plan.progress().failed, 2);
        assert_eq!(plan.phase(), Phase::RollingBack, "{}", plan.message());
        // The rollback spawns version 1 in place of the one replaced instance.
        for _ in 0..5 {
            for id in &back {
                if w.view.contains_key(id) {
                    w.set(id, S::Ready);
                }
            }
            back.extend(w.tick(&mut plan));
            for id in &back {
                if w.view.contains_key(id) {
                    w.set(id, S::Ready);
                }
            }
        }
        assert_eq!(back.len(), 1);
        assert!(
            !w.view.contains_key(&n1[0]),
            "the new-version instance was not removed"
        );
        assert_eq!(plan.phase(), Phase::Ended(pb::RolloutState::RolledBack));
        // Crashed new instances were removed; old ones that were never replaced remain.
        assert!(w.view.values().all(|s| s.state != S::Crashed));
        assert_eq!(w.view.len(), 4);
    }

    #[test]
    fn a_new_instance_that_never_serves_times_out() {
        let (mut w, targets) = World::new(1);
        let mut plan = Plan::new(settings(1, 0, 5), "2".into(), targets);
        let new = w.tick(&mut plan);
        w.now += 61_000;
        w.tick(&mut plan);
        assert!(!w.view.contains_key(&new[0]));
        assert!(w.view.contains_key("o1"));
        assert_eq!(plan.progress().failed, 1);
        assert!(
            plan.message().contains("did not serve"),
            "{}",
            plan.message()
        );
        // Given up on o1, nothing else to do: ends, saying so.
        w.tick(&mut plan);
        assert_eq!(plan.phase(), Phase::Ended(pb::RolloutState::Succeeded));
        assert!(
            plan.message().contains("could not be replaced"),
            "{}",
            plan.message()
        );
    }

    #[test]
    fn a_failed_spawn_counts_and_cancel_stops_new_work() {
        let (mut w, targets) = World::new(3);
        let mut plan = Plan::new(settings(1, 0, 3), "2".into(), targets);
        w.now += 100;
        let actions = plan.tick(&w.view, w.now);
        let Action::Spawn { like, .. } = &actions[0] else {
            panic!("{actions:?}")
        };
        plan.spawned(like, Err("no free port".into()));
        assert_eq!(plan.progress().failed, 1);
        assert!(plan.message().contains("no free port"));
        plan.cancel();
        assert!(w.tick(&mut plan).is_empty());
        assert_eq!(plan.phase(), Phase::Ended(pb::RolloutState::Cancelled));
        assert_eq!(w.view.len(), 3);
    }
}
