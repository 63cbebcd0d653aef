//! Spawner settings on the registry: the linked spawners a change is pushed to, and the
//! settings version each one acknowledged applying.

use super::{Registry, SpawnerEntry};
use crate::model::Labels;
use exile_api::v1 as pb;

/// A linked spawner, as a settings push needs it.
pub struct LinkedSpawner {
    /// Id.
    pub id: String,
    /// Region.
    pub region: String,
    /// Labels.
    pub labels: Labels,
    /// Whether it is drained (repeated in every push).
    pub drained: bool,
    /// Its link.
    pub link: super::Link,
}

/// What a spawner last acknowledged.
#[derive(Clone, Debug, Default)]
pub(super) struct Acknowledged {
    /// Version applied.
    pub version: u64,
    /// What did not apply.
    pub error: String,
}

impl Registry {
    /// The spawners linked now (or just `only`, when it is linked).
    pub fn linked(&self, only: Option<&str>) -> Vec<LinkedSpawner> {
        let st = self.lock();
        let linked = |e: &SpawnerEntry| {
            e.link.clone().map(|link| LinkedSpawner {
                id: e.info.id.clone(),
                region: e.info.region.clone(),
                labels: e.info.labels.clone(),
                drained: e.info.drained,
                link,
            })
        };
        match only {
            Some(id) => st.spawners.get(id).and_then(linked).into_iter().collect(),
            None => st.spawners.values().filter_map(linked).collect(),
        }
    }

    /// A spawner acknowledged applying a settings version on link `generation`.
    pub fn settings_applied(&self, id: &str, generation: u64, applied: pb::SettingsApplied) {
        let mut st = self.lock();
        let Some(e) = st.spawners.get_mut(id) else {
            return;
        };
        if e.link.as_ref().map(|l| l.generation) != Some(generation) {
            return;
        }
        if !applied.error.is_empty() {
            tracing::warn!(spawner = %id, version = applied.version, error = %applied.error, "spawner could not apply every setting");
        }
        e.settings = Acknowledged {
            version: applied.version,
            error: applied.error,
        };
        self.emit_spawner(&st, id);
    }
}
