//! The registry's state and every change the links make to it (attach, heartbeat,
//! reconcile, sweep, revision ordering), with no I/O: a change returns the events it causes
//! and the writes it needs as [`Effects`], which the [`Registry`](super::Registry) sends
//! (events while it still holds its lock, so they keep the order of the changes). Time comes
//! in as an argument where a rule depends on it, so the tests below drive it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::Persist;
use super::link::Link;
use crate::builds::Catalog;
use crate::convert::{instance_to_pb, record_from_status, spawner_to_pb};
use crate::error::Result;
use crate::model::{InstanceRecord, SpawnerInfo, is_running};
use exile_api::now_unix_ms;
use exile_api::v1 as pb;

/// What a change of the state causes outside it, in order.
#[derive(Default)]
pub(crate) struct Effects {
    /// Events for watchers.
    pub events: Vec<pb::watch_event::Kind>,
    /// Writes for the store.
    pub writes: Vec<Persist>,
    /// Links replaced by a newer one, to close.
    pub closed: Vec<Link>,
    /// Nobody watches: the wire form of changed spawners and instances is not built for
    /// nobody (a master driven by a matchmaker often has no dashboard open, and each
    /// allocation applies two statuses from the spawner: its confirmation and the match's end).
    pub unwatched: bool,
}

impl Effects {
    fn spawner(&mut self, st: &RegistryState, id: &str) {
        if self.unwatched {
            return;
        }
        if let Some(e) = st.spawners.get(id) {
            self.events
                .push(pb::watch_event::Kind::SpawnerUpdated(st.spawner_pb(e)));
        }
    }

    fn instance(&mut self, st: &RegistryState, id: &str) {
        if self.unwatched {
            return;
        }
        if let Some(r) = st.instances.get(id) {
            self.events
                .push(pb::watch_event::Kind::InstanceUpdated(st.instance_pb(r)));
        }
    }

    fn removed(&mut self, id: String) {
        self.writes.push(Persist::DeleteInstance(id.clone()));
        if !self.unwatched {
            self.events.push(pb::watch_event::Kind::InstanceRemoved(id));
        }
    }
}

/// A spawner as held in memory.
pub(crate) struct SpawnerEntry {
    pub(super) info: SpawnerInfo,
    pub(super) state: pb::SpawnerState,
    pub(super) resources: pb::Resources,
    pub(super) last_heartbeat: Instant,
    pub(super) link: Option<Link>,
    /// Instance states hidden behind Unknown while unreachable, restored if heartbeats resume
    /// on the same link.
    pub(super) before_unknown: HashMap<String, pb::InstanceState>,
    /// Uploaded builds it last reported holding (memory only: every hello repeats them).
    pub(super) held: Vec<pb::HeldBuild>,
    /// The settings version it last acknowledged (memory only: every link acknowledges
    /// the push that follows its welcome).
    pub(super) settings: super::settings::Acknowledged,
}

impl SpawnerEntry {
    pub(super) fn new(info: SpawnerInfo) -> Self {
        SpawnerEntry {
            info,
            state: pb::SpawnerState::Offline,
            resources: pb::Resources::default(),
            last_heartbeat: Instant::now(),
            link: None,
            before_unknown: HashMap::new(),
            held: Vec::new(),
            settings: super::settings::Acknowledged::default(),
        }
    }
}

/// The published rollouts, newest first.
pub(super) fn rollouts_newest_first(st: &RegistryState) -> Vec<pb::Rollout> {
    let mut v: Vec<pb::Rollout> = st.rollouts.values().cloned().collect();
    v.sort_by_key(|r| std::cmp::Reverse(r.started_at_unix_ms));
    v
}

/// Everything the registry holds in memory.
#[derive(Default)]
pub(crate) struct RegistryState {
    pub(super) spawners: HashMap<String, SpawnerEntry>,
    pub(super) instances: HashMap<String, InstanceRecord>,
    /// Instance ids per spawner, so per-spawner work never scans every instance (a heartbeat
    /// of one host must not cost in proportion to the whole fleet).
    pub(super) by_spawner: HashMap<String, std::collections::BTreeSet<String>>,
    /// Builds, activations and the counts builds show.
    pub(super) catalog: Catalog,
    /// Rollouts as published (running ones and the newest of each build name), by id.
    pub(super) rollouts: std::collections::BTreeMap<String, pb::Rollout>,
    /// Display names people gave instances, by id (only the master knows them, so they
    /// live beside the records spawners report, not in them).
    pub(super) names: HashMap<String, String>,
    /// Fleets as published (spec and counts), by name.
    pub(super) fleets: std::collections::BTreeMap<String, pb::Fleet>,
    /// What allocations set on instances (annotations, metadata, whether the spawner has
    /// confirmed), by instance id. Apart from the instance record: only allocated ones have it.
    pub(super) allocs: HashMap<String, super::allocation::AllocState>,
    /// Idempotency keys of recent allocations.
    pub(super) idempotency: super::allocation::Idempotency,
    /// Fleet members, Ready instances and Allocated counts, kept with every change so
    /// allocation and the reconciler never walk every instance.
    pub(super) index: super::index::Index,
}

impl RegistryState {
    /// Inserts or replaces an instance, keeping the index and the build counts right.
    pub(super) fn insert_instance(&mut self, rec: InstanceRecord) {
        let old = self.instances.get(&rec.id);
        if let Some(old) = old
            && old.spawner_id != rec.spawner_id
            && let Some(set) = self.by_spawner.get_mut(&old.spawner_id)
        {
            set.remove(&rec.id);
        }
        let old_build = old.and_then(build_of);
        let new_build = build_of(&rec);
        if old_build != new_build {
            if let Some((name, version)) = old_build {
                self.catalog.count_instance(&name, &version, false);
            }
            if let Some((name, version)) = new_build {
                self.catalog.count_instance(&name, &version, true);
            }
        }
        if let Some(old) = old {
            self.index.remove(old);
        }
        self.index.add(&rec);
        self.by_spawner
            .entry(rec.spawner_id.clone())
            .or_default()
            .insert(rec.id.clone());
        self.instances.insert(rec.id.clone(), rec);
    }

    /// Changes an instance in place, keeping the indexes right (every in-place change goes
    /// through here: state and labels decide what is allocatable). None if it is unknown.
    pub(super) fn update_instance<R>(
        &mut self,
        id: &str,
        f: impl FnOnce(&mut InstanceRecord) -> R,
    ) -> Option<R> {
        let r = self.instances.get_mut(id)?;
        self.index.remove(r);
        let spawner = r.spawner_id.clone();
        let build = build_of(r);
        let out = f(r);
        debug_assert_eq!(spawner, r.spawner_id, "an instance never moves in place");
        debug_assert_eq!(build, build_of(r), "builds change through insert_instance");
        self.index.add(r);
        Some(out)
    }

    /// Removes an instance, keeping the index right.
    pub(super) fn remove_instance(&mut self, id: &str) -> Option<InstanceRecord> {
        let rec = self.instances.remove(id)?;
        self.index.remove(&rec);
        self.names.remove(id);
        self.allocs.remove(id);
        if let Some((name, version)) = build_of(&rec) {
            self.catalog.count_instance(&name, &version, false);
        }
        if let Some(set) = self.by_spawner.get_mut(&rec.spawner_id) {
            set.remove(id);
            if set.is_empty() {
                self.by_spawner.remove(&rec.spawner_id);
            }
        }
        Some(rec)
    }

    /// Ids of a spawner's instances.
    pub(super) fn ids_of(&self, spawner_id: &str) -> Vec<String> {
        self.by_spawner
            .get(spawner_id)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Number of a spawner's instances.
    pub(super) fn count_of(&self, spawner_id: &str) -> usize {
        self.by_spawner
            .get(spawner_id)
            .map_or(0, std::collections::BTreeSet::len)
    }
}

/// The uploaded build an instance runs, as (name, version).
fn build_of(rec: &InstanceRecord) -> Option<(String, String)> {
    (!rec.build_name.is_empty()).then(|| (rec.build_name.clone(), rec.build_version.clone()))
}

impl RegistryState {
    /// A spawner's wire form.
    pub(super) fn spawner_pb(&self, e: &SpawnerEntry) -> pb::Spawner {
        let count = self.count_of(&e.info.id);
        let mut s = spawner_to_pb(
            &e.info,
            e.state,
            &e.resources,
            u32::try_from(count).unwrap_or(u32::MAX),
            &e.held,
        );
        s.settings_version = e.settings.version;
        s.settings_error.clone_from(&e.settings.error);
        s
    }

    /// An instance's wire form, with what only the master knows (name, annotations).
    pub(super) fn instance_pb(&self, rec: &InstanceRecord) -> pb::Instance {
        let addr = self
            .spawners
            .get(&rec.spawner_id)
            .map(|s| s.info.advertised_address.as_str())
            .unwrap_or("");
        let mut i = instance_to_pb(rec, addr);
        if let Some(name) = self.names.get(&rec.id) {
            i.display_name.clone_from(name);
        }
        if let Some(a) = self.allocs.get(&rec.id) {
            i.annotations = a
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
        }
        i
    }

    /// The whole view, sorted.
    pub(super) fn snapshot(&self) -> pb::Snapshot {
        let mut spawners: Vec<_> = self.spawners.values().map(|e| self.spawner_pb(e)).collect();
        spawners.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        let mut instances: Vec<_> = self
            .instances
            .values()
            .map(|r| self.instance_pb(r))
            .collect();
        instances.sort_by(|a, b| {
            a.created_at_unix_ms
                .cmp(&b.created_at_unix_ms)
                .then(a.id.cmp(&b.id))
        });
        let builds = self
            .catalog
            .all()
            .into_iter()
            .map(|b| self.catalog.to_pb(b))
            .collect();
        let rollouts = rollouts_newest_first(self);
        pb::Snapshot {
            spawners,
            instances,
            builds,
            rollouts,
            fleets: self.fleets.values().cloned().collect(),
        }
    }

    /// A spawner linked with `hello` over `link`: an older link is replaced (and closed),
    /// its instances reconciled with what it reports, and it is Online (or Draining).
    pub(super) fn attach(
        &mut self,
        fx: &mut Effects,
        id: &str,
        hello: &pb::Hello,
        link: Link,
        now: Instant,
    ) -> Result<()> {
        let e = self
            .spawners
            .get_mut(id)
            .ok_or_else(|| super::not_found_spawner(id))?;
        if let Some(old) = e.link.replace(link) {
            fx.closed.push(old);
        }
        apply_hello(&mut e.info, hello);
        e.state = if e.info.drained {
            pb::SpawnerState::Draining
        } else {
            pb::SpawnerState::Online
        };
        e.last_heartbeat = now;
        e.before_unknown.clear();
        fx.writes.push(Persist::Spawner(e.info.clone()));
        self.hello_held(id, hello.builds.clone());
        self.reconcile(fx, id, &hello.instances);
        fx.spawner(self, id);
        Ok(())
    }

    /// Records the builds a spawner holds, from its hello.
    fn hello_held(&mut self, spawner_id: &str, held: Vec<pb::HeldBuild>) {
        let held = super::checked_held(spawner_id, held);
        let Some(e) = self.spawners.get_mut(spawner_id) else {
            return;
        };
        let old = std::mem::replace(&mut e.held, held.clone());
        self.catalog.held_changed(&old, &held);
    }

    /// Whether `generation` is the spawner's current link.
    fn is_current(&self, id: &str, generation: u64) -> bool {
        self.spawners
            .get(id)
            .and_then(|e| e.link.as_ref())
            .is_some_and(|l| l.generation == generation)
    }

    /// The link of `generation` ended: Offline when it closed cleanly, else Unreachable.
    /// Ignored when a newer link took over.
    pub(super) fn detach(&mut self, fx: &mut Effects, id: &str, generation: u64, clean: bool) {
        if !self.is_current(id, generation) {
            return;
        }
        if let Some(e) = self.spawners.get_mut(id) {
            e.link = None;
        }
        let state = if clean {
            pb::SpawnerState::Offline
        } else {
            pb::SpawnerState::Unreachable
        };
        self.mark_unknown(fx, id, state);
    }

    /// A heartbeat over the link of `generation`: figures in memory only. One that follows
    /// an Unreachable spell brings the spawner back with its instances' hidden states.
    /// `metrics_event` asks for a metrics event when nothing else changed.
    pub(super) fn heartbeat(
        &mut self,
        fx: &mut Effects,
        id: &str,
        generation: u64,
        hb: &mut pb::Heartbeat,
        now: Instant,
        metrics_event: bool,
    ) -> bool {
        if !self.is_current(id, generation) {
            return false;
        }
        // Figures only for its own instances: a spawner (a compromised one included) cannot
        // write another's. What is left is what the caller records as history too.
        hb.instances.retain(|m| {
            let own = self.instances.get(&m.id).is_some_and(|r| r.spawner_id == id);
            if !own {
                tracing::warn!(spawner = %id, instance = %m.id, "heartbeat figures for an instance the spawner does not own; ignored");
            }
            own
        });
        let Some(e) = self.spawners.get_mut(id) else {
            return false;
        };
        e.last_heartbeat = now;
        e.info.last_seen_at = now_unix_ms();
        e.resources = hb.host.unwrap_or_default();
        let recovered = e.state == pb::SpawnerState::Unreachable;
        if recovered {
            e.state = if e.info.drained {
                pb::SpawnerState::Draining
            } else {
                pb::SpawnerState::Online
            };
        }
        let restore = if recovered {
            std::mem::take(&mut e.before_unknown)
        } else {
            HashMap::new()
        };
        for m in &hb.instances {
            self.update_instance(&m.id, |r| {
                r.resources = m.resources.unwrap_or_default();
                r.players = m.players;
            });
        }
        if recovered {
            tracing::info!(spawner = %id, "heartbeats resumed: online");
            let now = now_unix_ms();
            for (iid, prior) in restore {
                let restored = self.update_instance(&iid, |r| {
                    (r.state == pb::InstanceState::Unknown).then(|| {
                        r.state = prior;
                        r.state_changed_at = now;
                        r.clone()
                    })
                });
                if let Some(Some(rec)) = restored {
                    fx.writes.push(Persist::Instance(Box::new(rec)));
                    fx.instance(self, &iid);
                }
            }
            fx.spawner(self, id);
        } else if metrics_event && let Some(e) = self.spawners.get(id) {
            fx.events
                .push(pb::watch_event::Kind::SpawnerMetrics(self.spawner_pb(e)));
        }
        true
    }

    /// An instance event from the spawner over the link of `generation`.
    pub(super) fn instance_event(
        &mut self,
        fx: &mut Effects,
        id: &str,
        generation: u64,
        ev: pb::InstanceEvent,
    ) {
        if !self.is_current(id, generation) {
            return;
        }
        let Some(status) = ev.status else { return };
        if ev.removed {
            if self
                .instances
                .get(&status.id)
                .is_some_and(|r| r.spawner_id == id)
            {
                self.remove_instance(&status.id);
                fx.removed(status.id);
                fx.spawner(self, id);
            }
            return;
        }
        self.upsert_status(fx, id, status);
    }

    /// Applies a status the spawner reported (event, command result or hello), unless it is
    /// older than the one applied (its revision is lower) or the instance is another's.
    pub(super) fn upsert_status(
        &mut self,
        fx: &mut Effects,
        spawner_id: &str,
        mut status: pb::InstanceStatus,
    ) {
        let iid = status.id.clone();
        match self.instances.get(&iid) {
            Some(r) if r.spawner_id != spawner_id => {
                tracing::warn!(instance = %iid, spawner = %spawner_id, owner = %r.spawner_id, "spawner reported an instance another spawner owns; ignored");
                return;
            }
            Some(r) if status.revision != 0 && status.revision < r.revision => {
                // Older than what we applied: an event that crossed a command result.
                return;
            }
            _ => {}
        }
        super::Registry::allocation_seen(self, &mut status);
        let prev = self.instances.get(&iid);
        let is_new = prev.is_none();
        let rec = record_from_status(spawner_id, status, prev);
        if prev == Some(&rec) {
            return;
        }
        fx.writes.push(Persist::Instance(Box::new(rec.clone())));
        self.insert_instance(rec);
        fx.instance(self, &iid);
        if is_new {
            fx.spawner(self, spawner_id);
        }
    }

    /// Makes the view of a spawner's instances equal to what it reported. A spawn in flight
    /// (Starting, younger than a minute) it does not report yet is left to its request.
    pub(super) fn reconcile(
        &mut self,
        fx: &mut Effects,
        spawner_id: &str,
        reported: &[pb::InstanceStatus],
    ) {
        let now = now_unix_ms();
        let known: std::collections::HashSet<&str> =
            reported.iter().map(|s| s.id.as_str()).collect();
        let gone: Vec<String> = self
            .ids_of(spawner_id)
            .iter()
            .filter_map(|iid| self.instances.get(iid))
            .filter(|r| !known.contains(r.id.as_str()))
            // A spawn in flight has no process yet; leave it to its request.
            .filter(|r| !(r.state == pb::InstanceState::Starting && now - r.created_at < 60_000))
            .map(|r| r.id.clone())
            .collect();
        for iid in gone {
            tracing::info!(instance = %iid, spawner = %spawner_id, "instance no longer on its spawner: removed");
            self.remove_instance(&iid);
            fx.removed(iid);
        }
        for status in reported {
            self.upsert_status(fx, spawner_id, status.clone());
        }
    }

    /// Drops an instance (a reservation whose spawn failed).
    pub(super) fn forget_instance(&mut self, fx: &mut Effects, id: &str) {
        if let Some(r) = self.remove_instance(id) {
            fx.removed(id.to_owned());
            fx.spawner(self, &r.spawner_id);
        }
    }

    /// Marks linked spawners whose last heartbeat is older than `ttl` Unreachable, and their
    /// instances Unknown.
    pub(super) fn sweep(&mut self, fx: &mut Effects, now: Instant, ttl: Duration) {
        let stale: Vec<String> = self
            .spawners
            .values()
            .filter(|e| {
                e.state.is_attached() && now.saturating_duration_since(e.last_heartbeat) > ttl
            })
            .map(|e| e.info.id.clone())
            .collect();
        for id in stale {
            tracing::warn!(spawner = %id, "no heartbeat within the TTL: unreachable");
            self.mark_unknown(fx, &id, pb::SpawnerState::Unreachable);
        }
    }

    /// Sets the spawner's state and hides its instances' states behind Unknown (kept, to be
    /// restored if heartbeats resume on the same link).
    fn mark_unknown(&mut self, fx: &mut Effects, id: &str, state: pb::SpawnerState) {
        let now = now_unix_ms();
        let mut hidden = HashMap::new();
        let mut changed = Vec::new();
        for iid in self.ids_of(id) {
            self.update_instance(&iid, |r| {
                if r.state != pb::InstanceState::Unknown && is_running(r.state) {
                    hidden.insert(r.id.clone(), r.state);
                    r.state = pb::InstanceState::Unknown;
                    r.state_changed_at = now;
                    changed.push(r.id.clone());
                }
            });
        }
        if let Some(e) = self.spawners.get_mut(id) {
            e.state = state;
            e.before_unknown.extend(hidden);
        }
        fx.spawner(self, id);
        for iid in changed {
            fx.instance(self, &iid);
        }
    }
}

/// Takes what a spawner's hello says about it.
fn apply_hello(info: &mut SpawnerInfo, h: &pb::Hello) {
    if !h.name.is_empty() {
        info.name.clone_from(&h.name);
    }
    info.region.clone_from(&h.region);
    info.host.clone_from(&h.host);
    info.advertised_address.clone_from(&h.advertised_address);
    info.capacity = h.capacity;
    info.labels = h
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    info.agent_version.clone_from(&h.agent_version);
    info.active_build.clone_from(&h.active_build);
    info.last_seen_at = now_unix_ms();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use pb::watch_event::Kind;

    const TTL: Duration = Duration::from_secs(15);

    fn info(id: &str) -> SpawnerInfo {
        SpawnerInfo {
            id: id.into(),
            name: id.into(),
            region: String::new(),
            host: "h".into(),
            advertised_address: "10.0.0.1".into(),
            capacity: 10,
            labels: Labels::new(),
            agent_version: String::new(),
            active_build: String::new(),
            drained: false,
            enrolled_at: 0,
            last_seen_at: 0,
        }
    }

    fn status(id: &str, state: pb::InstanceState, revision: u64) -> pb::InstanceStatus {
        pb::InstanceStatus {
            id: id.into(),
            state: state as i32,
            revision,
            ..Default::default()
        }
    }

    fn hello(instances: Vec<pb::InstanceStatus>) -> pb::Hello {
        pb::Hello {
            name: "one".into(),
            capacity: 10,
            instances,
            ..Default::default()
        }
    }

    /// A state with spawner `sp` enrolled, and a link of `generation` for it (the receiver
    /// is kept so the link stays open).
    fn enrolled() -> RegistryState {
        let mut st = RegistryState::default();
        st.spawners
            .insert("sp".into(), SpawnerEntry::new(info("sp")));
        st
    }

    /// The maintained indexes equal ones rebuilt from every instance.
    fn assert_index_exact(st: &RegistryState) {
        assert_eq!(
            st.index,
            super::super::index::Index::rebuilt(st.instances.values())
        );
    }

    fn link(generation: u64) -> (Link, tokio::sync::mpsc::Receiver<pb::MasterMessage>) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (Link::new(generation, tx), rx)
    }

    fn spawner_state(st: &RegistryState) -> pb::SpawnerState {
        st.spawners["sp"].state
    }

    fn state_of(st: &RegistryState, id: &str) -> pb::InstanceState {
        st.instances[id].state
    }

    fn removed(fx: &Effects) -> Vec<&str> {
        fx.events
            .iter()
            .filter_map(|k| match k {
                Kind::InstanceRemoved(id) => Some(id.as_str()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_spawner_cannot_write_another_spawners_instances() {
        let mut st = enrolled();
        st.spawners
            .insert("evil".into(), SpawnerEntry::new(info("evil")));
        let t0 = Instant::now();
        let (l1, _r1) = link(1);
        let (l2, _r2) = link(1);
        let mut fx = Effects::default();
        let mut a = status("a", pb::InstanceState::Ready, 1);
        a.players = 3;
        st.attach(&mut fx, "sp", &hello(vec![a]), l1, t0).unwrap();
        st.attach(&mut fx, "evil", &hello(vec![]), l2, t0).unwrap();

        // Its heartbeat naming `a`: nothing of it is applied, and nothing left to record.
        let mut hb = pb::Heartbeat {
            instances: vec![pb::InstanceMetrics {
                id: "a".into(),
                players: 99,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(st.heartbeat(&mut fx, "evil", 1, &mut hb, t0, false));
        assert!(hb.instances.is_empty());
        assert_eq!(st.instances["a"].players, 3);
        // Its status or removal of `a`: ignored, `a` still Ready on its own spawner.
        let mut fx = Effects::default();
        let mut stolen = status("a", pb::InstanceState::Stopped, 9);
        stolen.players = 0;
        st.instance_event(
            &mut fx,
            "evil",
            1,
            pb::InstanceEvent {
                status: Some(stolen.clone()),
                removed: false,
            },
        );
        st.instance_event(
            &mut fx,
            "evil",
            1,
            pb::InstanceEvent {
                status: Some(stolen),
                removed: true,
            },
        );
        assert!(fx.events.is_empty() && fx.writes.is_empty());
        assert_eq!(state_of(&st, "a"), pb::InstanceState::Ready);
        assert_eq!(st.instances["a"].spawner_id, "sp");
        // The owner's own heartbeat still lands.
        let mut own = pb::Heartbeat {
            instances: vec![pb::InstanceMetrics {
                id: "a".into(),
                players: 4,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert!(st.heartbeat(&mut fx, "sp", 1, &mut own, t0, false));
        assert_eq!(own.instances.len(), 1);
        assert_eq!(st.instances["a"].players, 4);
    }

    #[test]
    fn attach_reconciles_and_an_older_link_is_closed() {
        let mut st = enrolled();
        let t0 = Instant::now();
        let (l1, _r1) = link(1);
        let mut fx = Effects::default();
        st.attach(
            &mut fx,
            "sp",
            &hello(vec![
                status("a", pb::InstanceState::Running, 1),
                status("b", pb::InstanceState::Stopped, 1),
            ]),
            l1,
            t0,
        )
        .unwrap();
        assert_eq!(spawner_state(&st), pb::SpawnerState::Online);
        assert_eq!(
            st.spawners["sp"].info.name, "one",
            "the hello's name is taken"
        );
        assert_eq!(state_of(&st, "a"), pb::InstanceState::Running);
        assert_eq!(st.count_of("sp"), 2);
        assert!(fx.closed.is_empty());
        assert!(matches!(fx.writes[0], Persist::Spawner(_)));
        // The spawner's event comes last, after its instances'.
        assert!(matches!(fx.events.last(), Some(Kind::SpawnerUpdated(s)) if s.instance_count == 2));

        // It links again and reports only `a`: `b` is gone, the first link closed. A spawn
        // in flight (Starting, just created) that it does not report yet stays.
        let mut fresh = crate::convert::record_from_status(
            "sp",
            status("c", pb::InstanceState::Starting, 0),
            None,
        );
        fresh.created_at = now_unix_ms();
        st.insert_instance(fresh);
        let (l2, _r2) = link(2);
        let mut fx = Effects::default();
        st.attach(
            &mut fx,
            "sp",
            &hello(vec![status("a", pb::InstanceState::Running, 2)]),
            l2,
            t0,
        )
        .unwrap();
        assert_eq!(fx.closed.len(), 1);
        assert_eq!(fx.closed[0].generation, 1);
        assert_eq!(removed(&fx), ["b"]);
        assert!(
            fx.writes
                .iter()
                .any(|w| matches!(w, Persist::DeleteInstance(id) if id == "b"))
        );
        assert!(st.instances.contains_key("c"));
        assert_eq!(st.count_of("sp"), 2);

        let mut fx = Effects::default();
        assert!(
            st.attach(&mut fx, "nobody", &hello(vec![]), link(3).0, t0)
                .is_err()
        );
        assert!(fx.events.is_empty() && fx.writes.is_empty());
    }

    #[test]
    fn an_older_revision_never_overwrites_a_newer_one() {
        let mut st = enrolled();
        let (l1, _r1) = link(1);
        let mut fx = Effects::default();
        st.attach(&mut fx, "sp", &hello(vec![]), l1, Instant::now())
            .unwrap();
        let mut fx = Effects::default();
        st.upsert_status(&mut fx, "sp", status("a", pb::InstanceState::Ready, 5));
        assert_eq!(state_of(&st, "a"), pb::InstanceState::Ready);
        // A new instance: its event, then its spawner's (the count changed).
        assert!(matches!(
            fx.events[..],
            [Kind::InstanceUpdated(_), Kind::SpawnerUpdated(_)]
        ));

        // Revision 4 crossed a command result of revision 5: dropped, nothing sent.
        let mut fx = Effects::default();
        st.upsert_status(&mut fx, "sp", status("a", pb::InstanceState::Running, 4));
        assert_eq!(state_of(&st, "a"), pb::InstanceState::Ready);
        assert!(fx.events.is_empty() && fx.writes.is_empty());

        // The same status again changes nothing either.
        st.upsert_status(&mut fx, "sp", status("a", pb::InstanceState::Ready, 5));
        assert!(fx.events.is_empty() && fx.writes.is_empty());

        // Newer, and revision 0 (a spawner that does not count), apply.
        st.upsert_status(&mut fx, "sp", status("a", pb::InstanceState::Stopping, 6));
        assert_eq!(state_of(&st, "a"), pb::InstanceState::Stopping);
        st.upsert_status(&mut fx, "sp", status("a", pb::InstanceState::Stopped, 0));
        assert_eq!(state_of(&st, "a"), pb::InstanceState::Stopped);
        assert_eq!(fx.writes.len(), 2);

        // Another spawner cannot report it.
        st.spawners
            .insert("other".into(), SpawnerEntry::new(info("other")));
        let mut fx = Effects::default();
        st.upsert_status(&mut fx, "other", status("a", pb::InstanceState::Running, 9));
        assert_eq!(state_of(&st, "a"), pb::InstanceState::Stopped);
        assert_eq!(st.instances["a"].spawner_id, "sp");
        assert!(fx.events.is_empty());
    }

    #[test]
    fn sweep_hides_states_and_a_heartbeat_on_the_same_link_restores_them() {
        let mut st = enrolled();
        let t0 = Instant::now();
        let (l1, _r1) = link(1);
        let mut fx = Effects::default();
        st.attach(
            &mut fx,
            "sp",
            &hello(vec![
                status("a", pb::InstanceState::Ready, 1),
                status("b", pb::InstanceState::Stopped, 1),
            ]),
            l1,
            t0,
        )
        .unwrap();

        // Within the TTL: nothing.
        let mut fx = Effects::default();
        st.sweep(&mut fx, t0 + TTL, TTL);
        assert_eq!(spawner_state(&st), pb::SpawnerState::Online);
        assert!(fx.events.is_empty());

        // Past it: Unreachable, the running instance Unknown, the stopped one as it was.
        st.sweep(&mut fx, t0 + TTL + Duration::from_millis(1), TTL);
        assert_eq!(spawner_state(&st), pb::SpawnerState::Unreachable);
        assert_eq!(state_of(&st, "a"), pb::InstanceState::Unknown);
        assert_eq!(state_of(&st, "b"), pb::InstanceState::Stopped);
        assert_eq!(fx.events.len(), 2, "the spawner and one instance");
        // Hidden behind Unknown: no longer Ready in the index allocation reads.
        assert!(st.index.ready.is_empty());
        assert_index_exact(&st);
        // Sweeping again changes nothing.
        let mut fx = Effects::default();
        st.sweep(&mut fx, t0 + 2 * TTL, TTL);
        assert!(fx.events.is_empty());

        // A heartbeat of another generation is not this link's: ignored.
        let hb = pb::Heartbeat::default();
        st.heartbeat(&mut fx, "sp", 7, &mut hb.clone(), t0 + 2 * TTL, true);
        assert_eq!(spawner_state(&st), pb::SpawnerState::Unreachable);
        assert!(fx.events.is_empty());

        // One on the link: Online, `a` Ready again (and persisted), then the spawner's event.
        st.heartbeat(&mut fx, "sp", 1, &mut hb.clone(), t0 + 2 * TTL, true);
        assert_eq!(spawner_state(&st), pb::SpawnerState::Online);
        assert_eq!(state_of(&st, "a"), pb::InstanceState::Ready);
        assert_eq!(st.index.ready[""]["sp"].len(), 1);
        assert_index_exact(&st);
        assert!(matches!(
            fx.events[..],
            [Kind::InstanceUpdated(_), Kind::SpawnerUpdated(_)]
        ));
        assert_eq!(fx.writes.len(), 1);

        // An ordinary heartbeat: a metrics event only when asked for.
        let mut fx = Effects::default();
        st.heartbeat(&mut fx, "sp", 1, &mut hb.clone(), t0 + 2 * TTL, false);
        assert!(fx.events.is_empty());
        st.heartbeat(&mut fx, "sp", 1, &mut hb.clone(), t0 + 2 * TTL, true);
        assert!(matches!(fx.events[..], [Kind::SpawnerMetrics(_)]));
        assert!(fx.writes.is_empty(), "heartbeats are never written");
    }

    #[test]
    fn detach_of_a_replaced_link_is_ignored() {
        let mut st = enrolled();
        let t0 = Instant::now();
        let mut fx = Effects::default();
        let (l1, _r1) = link(1);
        st.attach(
            &mut fx,
            "sp",
            &hello(vec![status("a", pb::InstanceState::Running, 1)]),
            l1,
            t0,
        )
        .unwrap();
        let (l2, _r2) = link(2);
        st.attach(
            &mut fx,
            "sp",
            &hello(vec![status("a", pb::InstanceState::Running, 1)]),
            l2,
            t0,
        )
        .unwrap();
        let mut fx = Effects::default();
        st.detach(&mut fx, "sp", 1, false);
        assert_eq!(spawner_state(&st), pb::SpawnerState::Online);
        assert!(fx.events.is_empty());
        // The instance event of the old link is ignored as well.
        st.instance_event(
            &mut fx,
            "sp",
            1,
            pb::InstanceEvent {
                status: Some(status("a", pb::InstanceState::Crashed, 3)),
                removed: false,
            },
        );
        assert_eq!(state_of(&st, "a"), pb::InstanceState::Running);

        // The current link closing cleanly: Offline, its instances Unknown.
        st.detach(&mut fx, "sp", 2, true);
        assert_eq!(spawner_state(&st), pb::SpawnerState::Offline);
        assert_eq!(state_of(&st, "a"), pb::InstanceState::Unknown);
        assert!(st.spawners["sp"].link.is_none());
    }

    #[test]
    fn a_removal_event_and_a_forgotten_reservation_drop_the_instance() {
        let mut st = enrolled();
        let mut fx = Effects::default();
        let (l1, _r1) = link(1);
        st.attach(
            &mut fx,
            "sp",
            &hello(vec![
                status("a", pb::InstanceState::Stopped, 1),
                status("b", pb::InstanceState::Stopped, 1),
            ]),
            l1,
            Instant::now(),
        )
        .unwrap();
        let mut fx = Effects::default();
        st.instance_event(
            &mut fx,
            "sp",
            1,
            pb::InstanceEvent {
                status: Some(status("a", pb::InstanceState::Stopped, 2)),
                removed: true,
            },
        );
        assert!(!st.instances.contains_key("a"));
        assert_eq!(removed(&fx), ["a"]);
        let mut fx = Effects::default();
        st.forget_instance(&mut fx, "b");
        st.forget_instance(&mut fx, "b");
        assert_eq!(removed(&fx), ["b"]);
        assert_eq!(st.count_of("sp"), 0);
    }

    /// The link's decode path under hostile input: bytes a spawner (or whoever holds its
    /// credential) sends, decoded as the master decodes them and applied to the registry as
    /// the link handler applies them, never panic and leave the indexes exact.
    mod hostile_link_messages {
        use super::*;
        use pb::spawner_message::Kind as Msg;
        use proptest::prelude::*;
        use prost::Message;

        /// Valid messages of each kind, the starting points of the mutations.
        fn seeds() -> Vec<Vec<u8>> {
            let mut a = status("a", pb::InstanceState::Ready, 3);
            a.labels.insert("mode".into(), "ctf".into());
            a.players = 4;
            let msgs = [
                Msg::Hello(hello(vec![
                    a.clone(),
                    status("b", pb::InstanceState::Allocated, 1),
                ])),
                Msg::Heartbeat(pb::Heartbeat {
                    instances: vec![pb::InstanceMetrics {
                        id: "a".into(),
                        players: 9,
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                Msg::InstanceEvent(pb::InstanceEvent {
                    status: Some(a),
                    removed: false,
                }),
                Msg::InstanceEvent(pb::InstanceEvent {
                    status: Some(status("b", pb::InstanceState::Stopped, 7)),
                    removed: true,
                }),
            ];
            msgs.into_iter()
                .map(|k| pb::SpawnerMessage { kind: Some(k) }.encode_to_vec())
                .collect()
        }

        /// What the link handler does with a decoded message, on a linked spawner.
        fn apply(m: pb::SpawnerMessage) {
            let mut st = enrolled();
            let mut fx = Effects::default();
            let now = Instant::now();
            let (l, _r) = link(1);
            let base = hello(vec![status("a", pb::InstanceState::Ready, 1)]);
            match m.kind {
                Some(Msg::Hello(h)) if crate::service::link_api::check_hello(&h).is_ok() => {
                    let _ = st.attach(&mut fx, "sp", &h, l, now);
                }
                Some(Msg::Heartbeat(mut hb)) => {
                    st.attach(&mut fx, "sp", &base, l, now).unwrap();
                    st.heartbeat(&mut fx, "sp", 1, &mut hb, now, true);
                }
                Some(Msg::InstanceEvent(ev)) => {
                    st.attach(&mut fx, "sp", &base, l, now).unwrap();
                    st.instance_event(&mut fx, "sp", 1, ev);
                }
                _ => {}
            }
            st.sweep(&mut fx, now + 2 * TTL, TTL);
            assert_index_exact(&st);
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]

            #[test]
            fn mutated_link_messages_never_panic_the_master(
                seed in 0usize..4,
                edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..12),
                cut in any::<usize>(),
                tail in proptest::collection::vec(any::<u8>(), 0..48),
            ) {
                let mut bytes = seeds()[seed].clone();
                for (at, b) in edits {
                    let i = at % bytes.len();
                    bytes[i] = b;
                }
                bytes.truncate(cut % (bytes.len() + 1));
                bytes.extend(tail);
                if let Ok(m) = pb::SpawnerMessage::decode(bytes.as_slice()) {
                    apply(m);
                }
            }

            #[test]
            fn random_bytes_never_panic_the_master(
                bytes in proptest::collection::vec(any::<u8>(), 0..256),
            ) {
                if let Ok(m) = pb::SpawnerMessage::decode(bytes.as_slice()) {
                    apply(m);
                }
            }
        }
    }
}
