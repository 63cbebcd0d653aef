//! Fleets as the registry holds them: the published fleets (spec and counts, for snapshots,
//! Get/List and Watch) and the view of their members the reconciler works from.

use std::collections::HashMap;

use super::{Registry, State};
use crate::model::InstanceRecord;
use exile_api::v1 as pb;

/// One instance of a fleet, as the reconciler sees it.
#[derive(Clone, Debug)]
pub struct Member {
    /// Instance id.
    pub id: String,
    /// Spawner id.
    pub spawner_id: String,
    /// State; for an instance hidden behind Unknown, the state it had before.
    pub state: pb::InstanceState,
    /// True while its spawner is unreachable.
    pub unknown: bool,
    /// When its state last changed (for an unknown one: when it became unknown), Unix ms.
    pub since: i64,
    /// Uploaded build name (empty: host build).
    pub build_name: String,
    /// Build version.
    pub build_version: String,
}

/// How full a spawner is.
#[derive(Clone, Copy, Debug, Default)]
pub struct SpawnerLoad {
    /// Instances on it.
    pub instances: u32,
    /// Capacity.
    pub capacity: u32,
}

/// Adds one instance to its fleet's members.
fn push_member(
    st: &State,
    out: &mut HashMap<String, Vec<Member>>,
    fleet: &str,
    r: &InstanceRecord,
) {
    let unknown = r.state == pb::InstanceState::Unknown;
    let state = if unknown {
        st.spawners
            .get(&r.spawner_id)
            .and_then(|e| e.before_unknown.get(&r.id).copied())
            .unwrap_or(pb::InstanceState::Unknown)
    } else {
        r.state
    };
    out.entry(fleet.to_owned()).or_default().push(Member {
        id: r.id.clone(),
        spawner_id: r.spawner_id.clone(),
        state,
        unknown,
        since: r.state_changed_at,
        build_name: r.build_name.clone(),
        build_version: r.build_version.clone(),
    });
}

impl Registry {
    /// Every fleet's members (instances carrying the fleet label), by fleet name, and the
    /// load of every spawner, in one pass under the lock.
    pub fn fleet_members(&self) -> (HashMap<String, Vec<Member>>, HashMap<String, SpawnerLoad>) {
        let st = self.lock();
        let mut out: HashMap<String, Vec<Member>> = HashMap::new();
        // The member index: instances outside fleets are never visited.
        for (fleet, ids) in &st.index.members {
            for r in ids.iter().filter_map(|id| st.instances.get(id)) {
                push_member(&st, &mut out, fleet, r);
            }
        }
        let loads = st
            .spawners
            .values()
            .map(|e| {
                (
                    e.info.id.clone(),
                    SpawnerLoad {
                        instances: u32::try_from(st.count_of(&e.info.id)).unwrap_or(u32::MAX),
                        capacity: e.info.capacity,
                    },
                )
            })
            .collect();
        (out, loads)
    }

    /// Publishes a fleet (created, changed, or new counts): kept for snapshots and sent to
    /// watchers when it differs from what was published.
    pub fn publish_fleet(&self, f: pb::Fleet) {
        let mut st = self.lock();
        if st.fleets.get(&f.name) == Some(&f) {
            return;
        }
        st.fleets.insert(f.name.clone(), f.clone());
        self.emit(pb::watch_event::Kind::FleetUpdated(f));
    }

    /// Forgets a deleted fleet.
    pub fn unpublish_fleet(&self, name: &str) {
        let mut st = self.lock();
        if st.fleets.remove(name).is_some() {
            self.emit(pb::watch_event::Kind::FleetRemoved(name.to_owned()));
        }
    }

    /// Tells watchers a fleet's replica count changed.
    pub fn fleet_scaled(&self, ev: pb::FleetScaled) {
        self.emit(pb::watch_event::Kind::FleetScaled(ev));
    }

    /// One published fleet.
    pub fn fleet(&self, name: &str) -> Option<pb::Fleet> {
        self.lock().fleets.get(name).cloned()
    }

    /// All published fleets, by name.
    pub fn fleets(&self) -> Vec<pb::Fleet> {
        self.lock().fleets.values().cloned().collect()
    }

    /// Whether a rollout of this build name is running (a fleet then leaves its surplus to
    /// the rollout, which removes old instances itself).
    pub fn rollout_running(&self, build_name: &str) -> bool {
        self.lock()
            .rollouts
            .values()
            .any(|r| r.finished_at_unix_ms == 0 && r.build_name == build_name)
    }

    /// For each spawner, the (name, version) a new instance of the build `name` follows
    /// runs there (its active version for that spawner); spawners where none is active are
    /// left out.
    pub fn active_versions(&self, name: &str) -> HashMap<String, (String, String)> {
        let st = self.lock();
        let choice = crate::builds::BuildChoice::Active(name.to_owned());
        st.spawners
            .values()
            .filter_map(|e| {
                let labels = e
                    .info
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let b = st
                    .catalog
                    .resolve(&choice, &e.info.name, &e.info.region, &labels)
                    .ok()
                    .flatten()?;
                Some((e.info.id.clone(), (b.name.clone(), b.version.clone())))
            })
            .collect()
    }

    /// Each spawner's region, by id.
    pub fn spawner_regions(&self) -> HashMap<String, String> {
        self.lock()
            .spawners
            .values()
            .map(|e| (e.info.id.clone(), e.info.region.clone()))
            .collect()
    }
}
