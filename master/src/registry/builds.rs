//! The registry's side of uploaded builds: the catalogue under the registry's lock (so a
//! build's counts agree with the instances and spawners it counts), spawners' holdings, the
//! builds each spawner is told to hold, and the events builds emit.

use std::collections::HashMap;

use super::{Registry, SpawnerEntry, State, not_found_spawner};
use crate::builds::{Activation, BuildMeta, selector_text};
use crate::error::{Error, Result};
use exile_api::v1 as pb;

/// Most held builds a spawner may report; more are ignored (with a warning).
pub const MAX_HELD_BUILDS: usize = 1000;

/// Keeps the well-formed entries of a spawner's holdings, at most [`MAX_HELD_BUILDS`].
pub fn checked_held(spawner_id: &str, held: Vec<pb::HeldBuild>) -> Vec<pb::HeldBuild> {
    let total = held.len();
    let kept: Vec<pb::HeldBuild> = held
        .into_iter()
        .filter(|h| {
            exile_api::build::check_name(&h.name).is_ok()
                && exile_api::build::check_version(&h.version).is_ok()
                && exile_api::build::is_sha256_hex(&h.sha256)
        })
        .take(MAX_HELD_BUILDS)
        .collect();
    if kept.len() != total {
        tracing::warn!(spawner = %spawner_id, reported = total, kept = kept.len(), "spawner reported malformed or too many held builds; ignored those");
    }
    kept
}

fn labels_map(e: &SpawnerEntry) -> HashMap<String, String> {
    e.info
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl Registry {
    fn emit_build(&self, st: &State, id: &str) {
        if let Some(b) = st.catalog.get(id) {
            self.emit(pb::watch_event::Kind::BuildUpdated(st.catalog.to_pb(b)));
        }
    }

    /// A newly stored build: added and announced.
    pub fn build_added(&self, meta: BuildMeta) -> pb::Build {
        let mut st = self.lock();
        let id = meta.id.clone();
        st.catalog.insert(meta);
        self.emit_build(&st, &id);
        st.catalog
            .get(&id)
            .map(|b| st.catalog.to_pb(b))
            .unwrap_or_default()
    }

    /// Builds, newest first; only versions of `name` when it is not empty.
    pub fn list_builds(&self, name: &str) -> Vec<pb::Build> {
        let st = self.lock();
        st.catalog
            .all()
            .into_iter()
            .filter(|b| name.is_empty() || b.name == name)
            .map(|b| st.catalog.to_pb(b))
            .collect()
    }

    /// One build by `name@version` or id.
    pub fn get_build(&self, spec: &str) -> Result<pb::Build> {
        let st = self.lock();
        let b = st.catalog.lookup(spec)?;
        Ok(st.catalog.to_pb(b))
    }

    /// One build's facts by `name@version` or id.
    pub fn find_build(&self, spec: &str) -> Result<BuildMeta> {
        self.lock().catalog.lookup(spec).cloned()
    }

    /// One build's facts by id.
    pub fn build_by_id(&self, id: &str) -> Option<BuildMeta> {
        self.lock().catalog.get(id).cloned()
    }

    /// Every activation (for rollouts and rollbacks).
    pub fn activations(&self) -> Vec<Activation> {
        self.lock().catalog.activations().to_vec()
    }

    /// Sets an activation (already stored): announces the build it names and the one it
    /// replaced, and tells every linked spawner what it should now hold.
    pub fn set_activation(&self, a: Activation) -> pb::Build {
        let id = a.build_id.clone();
        let mut st = self.lock();
        let replaced = st.catalog.activate(a);
        if let Some(old) = replaced
            && old.build_id != id
        {
            self.emit_build(&st, &old.build_id);
        }
        self.emit_build(&st, &id);
        self.push_wanted_locked(&st, None);
        st.catalog
            .get(&id)
            .map(|b| st.catalog.to_pb(b))
            .unwrap_or_default()
    }

    /// Takes a build out of the catalogue for deletion, unless an instance runs it or it is
    /// activated anywhere: from here no spawn can pick it. The caller deletes its rows and
    /// then calls [`Registry::build_removed`], or [`Registry::restore_build`] on failure.
    pub fn take_build_for_delete(&self, id: &str) -> Result<BuildMeta> {
        let mut st = self.lock();
        let b = st
            .catalog
            .get(id)
            .ok_or_else(|| Error::NotFound(format!("no build with id {id}")))?;
        let reference = b.reference();
        let n = st.catalog.instance_count(&b.name, &b.version);
        if n > 0 {
            let example = st
                .instances
                .values()
                .find(|r| r.build_name == b.name && r.build_version == b.version)
                .map(|r| r.id.clone())
                .unwrap_or_default();
            return Err(Error::FailedPrecondition(format!(
                "{reference} is used by {n} instance(s) (e.g. {example}); remove them or move them to another version first"
            )));
        }
        if let Some(a) = st.catalog.activations_of(id).first() {
            return Err(Error::FailedPrecondition(format!(
                "{reference} is the active version of {} for {}; activate another version there first",
                b.name,
                selector_text(&a.selector)
            )));
        }
        st.catalog
            .remove(id)
            .ok_or_else(|| Error::NotFound(format!("no build with id {id}")))
    }

    /// Puts back a build whose deletion failed.
    pub fn restore_build(&self, meta: BuildMeta) {
        self.lock().catalog.insert(meta);
    }

    /// Announces a deleted build.
    pub fn build_removed(&self, id: &str) {
        self.emit(pb::watch_event::Kind::BuildRemoved(id.to_owned()));
    }

    /// Sets what a spawner holds (from `BuildsHeld` on the link of `generation`).
    pub fn builds_held(&self, spawner_id: &str, generation: u64, held: Vec<pb::HeldBuild>) {
        let held = checked_held(spawner_id, held);
        let mut st = self.lock();
        let Some(e) = st.spawners.get_mut(spawner_id) else {
            return;
        };
        if e.link.as_ref().map(|l| l.generation) != Some(generation) {
            return;
        }
        if e.held == held {
            return;
        }
        let old = std::mem::replace(&mut e.held, held.clone());
        st.catalog.held_changed(&old, &held);
        self.emit_spawner(&st, spawner_id);
    }

    /// Tells a linked spawner which builds to hold.
    pub fn push_wanted_builds(&self, spawner_id: &str) -> Result<()> {
        let st = self.lock();
        if !st.spawners.contains_key(spawner_id) {
            return Err(not_found_spawner(spawner_id));
        }
        self.push_wanted_locked(&st, Some(spawner_id));
        Ok(())
    }

    /// Sends `ConfigPush{wanted_builds}` to one linked spawner, or to all.
    fn push_wanted_locked(&self, st: &State, only: Option<&str>) {
        let targets: Box<dyn Iterator<Item = &SpawnerEntry>> = match only {
            Some(id) => Box::new(st.spawners.get(id).into_iter()),
            None => Box::new(st.spawners.values()),
        };
        for e in targets {
            let Some(link) = &e.link else { continue };
            let builds = st.catalog.wanted_builds(&e.info.region, &labels_map(e));
            link.push_config(pb::ConfigPush {
                heartbeat_interval_ms: 0,
                drained: e.info.drained,
                wanted_builds: Some(pb::WantedBuilds { builds }),
                settings: None,
            });
        }
    }

    /// Announces builds whose instance or holder counts changed since the last call: called
    /// on a timer, so a burst of spawns makes one event per build, not one per spawn.
    pub fn flush_build_updates(&self) {
        let mut st = self.lock();
        let dirty = st.catalog.take_dirty();
        if dirty.is_empty() || self.events.receiver_count() == 0 {
            return;
        }
        for id in dirty {
            self.emit_build(&st, &id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_holdings_are_dropped() {
        let ok = pb::HeldBuild {
            name: "oa".into(),
            version: "1.0".into(),
            sha256: "a".repeat(64),
            ..Default::default()
        };
        let bad_name = pb::HeldBuild {
            name: "../x".into(),
            ..ok.clone()
        };
        let bad_sha = pb::HeldBuild {
            sha256: "nope".into(),
            ..ok.clone()
        };
        assert_eq!(
            checked_held("s", vec![ok.clone(), bad_name, bad_sha]),
            vec![ok.clone()]
        );
        assert_eq!(
            checked_held("s", vec![ok; MAX_HELD_BUILDS + 5]).len(),
            MAX_HELD_BUILDS
        );
    }
}
