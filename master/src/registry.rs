//! The live registry of spawners and instances: in memory, event-sourced to `Watch`
//! subscribers, persisted on change (never per heartbeat) through a writer task.

mod allocation;
mod builds;
mod fleets;
mod index;
mod link;
mod placement;
mod settings;
mod state;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};

use crate::error::{Error, Result};
use crate::model::{InstanceRecord, SpawnerInfo, is_running};
use crate::store::Store;
pub use allocation::{AllocRequest, Allocated, Selector};
pub use builds::{MAX_HELD_BUILDS, checked_held};
use exile_api::now_unix_ms;
use exile_api::v1 as pb;
pub use fleets::{Member, SpawnerLoad};
pub use link::{Link, LogEvent, LogStream, map_command_error};
pub use placement::Placement;
pub use settings::LinkedSpawner;
use state::{Effects, RegistryState as State, SpawnerEntry, rollouts_newest_first};

/// A write for the persister task.
type Persist = crate::store::Write;

/// The registry. Cheap operations under one std Mutex (never held across an await);
/// events go out on a broadcast channel in the same order as the changes.
pub struct Registry {
    state: Mutex<State>,
    /// Shared, not copied into each slot: the channel's ring is allocated and written
    /// whole at start, and 8192 inline events were 3.7 MiB of an idle master's memory.
    events: broadcast::Sender<Arc<pb::WatchEvent>>,
    seq: AtomicU64,
    next_generation: AtomicU64,
    persist: mpsc::UnboundedSender<Persist>,
    heartbeat_ttl: Duration,
}

/// Counts for GetStats.
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    /// Spawners.
    pub spawners_total: u32,
    /// Spawners online or draining.
    pub spawners_online: u32,
    /// Instances.
    pub instances_total: u32,
    /// Instances with a live process.
    pub instances_running: u32,
    /// Players.
    pub players: u32,
    /// Spawner links open.
    pub links: u32,
    /// Watch streams open (each holds one receiver of the event channel).
    pub watchers: u32,
}

impl Registry {
    /// Loads the registry from the store and starts its persister task. Every spawner starts
    /// Offline and every instance Unknown until its spawner links and says otherwise.
    pub async fn load(
        store: Store,
        heartbeat_ttl: Duration,
    ) -> Result<(std::sync::Arc<Self>, tokio::task::JoinHandle<()>)> {
        let mut state = State::default();
        for meta in store.list_builds().await? {
            state.catalog.insert(meta);
        }
        for a in store.list_activations().await? {
            state.catalog.activate(a);
        }
        for info in store.list_spawners().await? {
            state
                .spawners
                .insert(info.id.clone(), SpawnerEntry::new(info));
        }
        for mut rec in store.list_instances().await? {
            if !state.spawners.contains_key(&rec.spawner_id) {
                continue;
            }
            if is_running(rec.state) {
                rec.state = pb::InstanceState::Unknown;
            }
            state.insert_instance(rec);
        }
        for (id, name) in store.instance_display_names().await? {
            if state.instances.contains_key(&id) {
                state.names.insert(id, name);
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(8192);
        let reg = std::sync::Arc::new(Registry {
            state: Mutex::new(state),
            events,
            seq: AtomicU64::new(1),
            next_generation: AtomicU64::new(1),
            persist: tx,
            heartbeat_ttl,
        });
        let task = tokio::spawn(persister(store, rx));
        Ok((reg, task))
    }

    /// An empty registry over a fresh database in a temporary directory (kept while the
    /// directory lives).
    #[cfg(test)]
    pub(crate) async fn for_tests() -> (Arc<Registry>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        let store = crate::store::Store::new(crate::db::open(&url).await.expect("a database"));
        let (reg, _) = Registry::load(store, Duration::from_secs(15))
            .await
            .expect("a registry");
        (reg, dir)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, kind: pb::watch_event::Kind) {
        let ev = pb::WatchEvent {
            sequence: self.seq.fetch_add(1, Ordering::Relaxed),
            at_unix_ms: now_unix_ms(),
            kind: Some(kind),
        };
        // No subscribers is fine.
        let _ = self.events.send(Arc::new(ev));
    }

    /// Sends what a change of the state caused: called with the lock still held, so events
    /// go out in the order of the changes.
    fn apply(&self, fx: Effects) {
        for link in fx.closed {
            link.close();
        }
        for w in fx.writes {
            let _ = self.persist.send(w);
        }
        for kind in fx.events {
            self.emit(kind);
        }
    }

    /// Runs a change of the state under the lock and sends what it caused.
    fn change<T>(&self, f: impl FnOnce(&mut State, &mut Effects) -> T) -> T {
        let mut st = self.lock();
        // Under the lock, as in `emit_instance`: a watcher subscribing later gets a snapshot
        // that holds this change.
        let mut fx = Effects {
            unwatched: !self.watched(),
            ..Effects::default()
        };
        let out = f(&mut st, &mut fx);
        self.apply(fx);
        out
    }

    fn save_spawner(&self, info: &SpawnerInfo) {
        let _ = self.persist.send(Persist::Spawner(info.clone()));
    }

    fn save_instance(&self, rec: &InstanceRecord) {
        let _ = self.persist.send(Persist::Instance(Box::new(rec.clone())));
    }

    fn spawner_pb(&self, st: &State, e: &SpawnerEntry) -> pb::Spawner {
        st.spawner_pb(e)
    }

    fn instance_pb(st: &State, rec: &InstanceRecord) -> pb::Instance {
        st.instance_pb(rec)
    }

    /// Whether anyone watches. Checked under the lock before building an event: a watcher
    /// subscribes under the same lock and its snapshot already holds the change.
    fn watched(&self) -> bool {
        self.events.receiver_count() > 0
    }

    fn emit_spawner(&self, st: &State, id: &str) {
        if !self.watched() {
            return;
        }
        if let Some(e) = st.spawners.get(id) {
            self.emit(pb::watch_event::Kind::SpawnerUpdated(
                self.spawner_pb(st, e),
            ));
        }
    }

    fn emit_instance(&self, st: &State, id: &str) {
        // Nobody watching (a matchmaker-driven master often has no dashboard open): do not
        // build the wire form of an instance for nobody, on every allocation.
        if !self.watched() {
            return;
        }
        if let Some(r) = st.instances.get(id) {
            self.emit(pb::watch_event::Kind::InstanceUpdated(Self::instance_pb(
                st, r,
            )));
        }
    }

    /// Adds a newly enrolled spawner (Offline until it links).
    pub fn enrolled(&self, info: SpawnerInfo) {
        let mut st = self.lock();
        let id = info.id.clone();
        st.spawners.insert(id.clone(), SpawnerEntry::new(info));
        self.emit_spawner(&st, &id);
    }

    /// Subscribes to events and returns the snapshot they start after, atomically.
    pub fn subscribe(&self) -> (pb::Snapshot, broadcast::Receiver<Arc<pb::WatchEvent>>) {
        let st = self.lock();
        let rx = self.events.subscribe();
        (self.snapshot_locked(&st), rx)
    }

    fn snapshot_locked(&self, st: &State) -> pb::Snapshot {
        st.snapshot()
    }

    /// Publishes a rollout's progress: kept for snapshots and `GetRollout` (running ones, and
    /// the newest of each build name once ended) and sent to watchers.
    pub fn publish_rollout(&self, r: pb::Rollout) {
        let mut st = self.lock();
        if r.finished_at_unix_ms != 0 {
            // Ended: older ended rollouts of the same name give way to it.
            st.rollouts.retain(|id, o| {
                id == &r.id || o.build_name != r.build_name || o.finished_at_unix_ms == 0
            });
        }
        st.rollouts.insert(r.id.clone(), r.clone());
        self.emit(pb::watch_event::Kind::RolloutUpdated(r));
    }

    /// Published rollouts, newest first.
    pub fn rollouts(&self) -> Vec<pb::Rollout> {
        rollouts_newest_first(&self.lock())
    }

    /// Each instance's spawner, state and when the state changed: what a rollout watches,
    /// without building the wire form of the whole fleet.
    pub fn instance_states(&self) -> HashMap<String, (String, pb::InstanceState, i64)> {
        self.lock()
            .instances
            .values()
            .map(|r| {
                (
                    r.id.clone(),
                    (r.spawner_id.clone(), r.state, r.state_changed_at),
                )
            })
            .collect()
    }

    /// An instance as the master keeps it (with what its spawn asked for).
    pub fn record(&self, id: &str) -> Option<InstanceRecord> {
        self.lock().instances.get(id).cloned()
    }

    /// Every instance with its spawner's region and labels, for selectors.
    pub fn records_with_spawners(
        &self,
    ) -> Vec<(
        InstanceRecord,
        String,
        std::collections::HashMap<String, String>,
    )> {
        let st = self.lock();
        st.instances
            .values()
            .map(|r| {
                let (region, labels) = st
                    .spawners
                    .get(&r.spawner_id)
                    .map(|e| {
                        (
                            e.info.region.clone(),
                            e.info
                                .labels
                                .iter()
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect(),
                        )
                    })
                    .unwrap_or_default();
                (r.clone(), region, labels)
            })
            .collect()
    }

    /// The current view.
    pub fn snapshot(&self) -> pb::Snapshot {
        let st = self.lock();
        self.snapshot_locked(&st)
    }

    /// One spawner and its instances.
    pub fn get_spawner(&self, id: &str) -> Result<(pb::Spawner, Vec<pb::Instance>)> {
        let st = self.lock();
        let e = st.spawners.get(id).ok_or_else(|| not_found_spawner(id))?;
        let mut instances: Vec<_> = st
            .ids_of(id)
            .iter()
            .filter_map(|iid| st.instances.get(iid))
            .map(|r| Self::instance_pb(&st, r))
            .collect();
        instances.sort_by(|a, b| {
            a.created_at_unix_ms
                .cmp(&b.created_at_unix_ms)
                .then(a.id.cmp(&b.id))
        });
        Ok((self.spawner_pb(&st, e), instances))
    }

    /// One instance.
    pub fn get_instance(&self, id: &str) -> Result<pb::Instance> {
        let st = self.lock();
        let r = st.instances.get(id).ok_or_else(|| not_found_instance(id))?;
        Ok(Self::instance_pb(&st, r))
    }

    /// The spawner id holding an instance and that spawner's live link.
    pub fn route(&self, instance_id: &str) -> Result<(String, Link)> {
        let st = self.lock();
        let r = st
            .instances
            .get(instance_id)
            .ok_or_else(|| not_found_instance(instance_id))?;
        let e = st
            .spawners
            .get(&r.spawner_id)
            .ok_or_else(|| not_found_spawner(&r.spawner_id))?;
        let link = live_link(e)?;
        Ok((r.spawner_id.clone(), link))
    }

    /// A spawner's live link.
    pub fn spawner_link(&self, spawner_id: &str) -> Result<Link> {
        let st = self.lock();
        let e = st
            .spawners
            .get(spawner_id)
            .ok_or_else(|| not_found_spawner(spawner_id))?;
        live_link(e)
    }

    /// Gives an instance a display name (empty clears it), persists it and tells watchers.
    pub fn rename_instance(&self, id: &str, name: &str) -> Result<pb::Instance> {
        let mut st = self.lock();
        if !st.instances.contains_key(id) {
            return Err(not_found_instance(id));
        }
        if name.is_empty() {
            st.names.remove(id);
        } else {
            st.names.insert(id.to_owned(), name.to_owned());
        }
        let _ = self.persist.send(Persist::DisplayName {
            id: id.to_owned(),
            name: name.to_owned(),
        });
        self.emit_instance(&st, id);
        let rec = st.instances.get(id).ok_or_else(|| not_found_instance(id))?;
        Ok(Self::instance_pb(&st, rec))
    }

    /// Sets or clears the drained flag.
    pub fn set_drained(&self, id: &str, drained: bool) -> Result<pb::Spawner> {
        let mut st = self.lock();
        let e = st
            .spawners
            .get_mut(id)
            .ok_or_else(|| not_found_spawner(id))?;
        e.info.drained = drained;
        if e.state.is_attached() {
            e.state = if drained {
                pb::SpawnerState::Draining
            } else {
                pb::SpawnerState::Online
            };
        }
        let link = e.link.clone();
        self.save_spawner(&e.info);
        self.emit_spawner(&st, id);
        if let Some(link) = link {
            link.push_config(pb::ConfigPush {
                heartbeat_interval_ms: 0,
                drained,
                wanted_builds: None,
                settings: None,
            });
        }
        let e = st.spawners.get(id).ok_or_else(|| not_found_spawner(id))?;
        Ok(self.spawner_pb(&st, e))
    }

    /// Forgets a spawner and its instances; its link is closed. The caller deletes it from
    /// the store (which revokes its credential).
    pub fn remove_spawner(&self, id: &str) -> Result<()> {
        let mut st = self.lock();
        let e = st
            .spawners
            .remove(id)
            .ok_or_else(|| not_found_spawner(id))?;
        if let Some(link) = e.link {
            link.close();
        }
        st.catalog.held_changed(&e.held, &[]);
        for iid in st.ids_of(id) {
            st.remove_instance(&iid);
            self.emit(pb::watch_event::Kind::InstanceRemoved(iid));
        }
        self.emit(pb::watch_event::Kind::SpawnerRemoved(id.to_owned()));
        Ok(())
    }

    /// Counts for GetStats.
    pub fn counts(&self) -> Counts {
        let st = self.lock();
        let mut c = Counts {
            spawners_total: u32::try_from(st.spawners.len()).unwrap_or(u32::MAX),
            instances_total: u32::try_from(st.instances.len()).unwrap_or(u32::MAX),
            ..Counts::default()
        };
        for e in st.spawners.values() {
            if e.state.is_attached() {
                c.spawners_online += 1;
            }
            if e.link.is_some() {
                c.links += 1;
            }
        }
        c.watchers = u32::try_from(self.events.receiver_count()).unwrap_or(u32::MAX);
        for r in st.instances.values() {
            if is_running(r.state) {
                c.instances_running += 1;
            }
            c.players = c.players.saturating_add(r.players);
        }
        c
    }

    /// CPU (percent of one core) and memory of every linked spawner's host, summed.
    pub fn host_totals(&self) -> pb::Resources {
        let st = self.lock();
        let mut total = pb::Resources::default();
        for e in st.spawners.values().filter(|e| e.state.is_attached()) {
            total.cpu_percent += e.resources.cpu_percent;
            total.memory_bytes = total.memory_bytes.saturating_add(e.resources.memory_bytes);
            total.memory_total_bytes = total
                .memory_total_bytes
                .saturating_add(e.resources.memory_total_bytes);
            total.cpu_count = total.cpu_count.saturating_add(e.resources.cpu_count);
        }
        total
    }

    /// Marks spawners whose heartbeats stopped as Unreachable and their instances Unknown.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.change(|st, fx| st.sweep(fx, now, self.heartbeat_ttl));
    }
}

pub(super) fn not_found_spawner(id: &str) -> Error {
    Error::NotFound(format!("no spawner with id {id}"))
}

fn not_found_instance(id: &str) -> Error {
    Error::NotFound(format!("no instance with id {id}"))
}

fn live_link(e: &SpawnerEntry) -> Result<Link> {
    match &e.link {
        Some(l) if e.state.is_attached() => Ok(l.clone()),
        _ => Err(Error::Unavailable(format!(
            "spawner {} ({}) is {}; try again when it is online",
            e.info.name,
            e.info.id,
            crate::convert::spawner_state_word(e.state)
        ))),
    }
}

/// Shortest time between two commits of the persister. A change after a quiet spell is
/// written at once; under a stream of changes (allocations: each moves an instance two or
/// three times) the writes of this long are gathered into one transaction in which each row
/// is written once, so the store's cost follows the rows that changed, not the changes.
/// Nothing waits on these writes: the registry in memory is the truth while the master runs,
/// and an orderly shutdown writes what is gathered (the channel drains before it closes).
const COMMIT_GAP: Duration = Duration::from_millis(100);

/// Most changes gathered into one batch.
const MAX_BATCH: usize = 8192;

async fn persister(store: Store, mut rx: mpsc::UnboundedReceiver<Persist>) {
    let mut batch = Vec::with_capacity(256);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let started = tokio::time::Instant::now();
        for e in store.write_batch(&batch).await {
            tracing::error!(error = ?e, "could not persist a registry change");
        }
        batch.clear();
        tokio::time::sleep_until(started + COMMIT_GAP).await;
    }
}
