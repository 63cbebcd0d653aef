//! Secondary indexes over the registry's instances, kept by the registry's one writer on
//! every insert, change and removal (see `State::insert_instance`, `State::update_instance`,
//! `State::remove_instance`): fleet members by fleet, Ready instances by fleet and spawner,
//! and Allocated counts per spawner. Allocation and the reconciler read these instead of
//! walking every instance under the lock.

use std::collections::{BTreeSet, HashMap};

use crate::model::InstanceRecord;
use exile_api::fleet::FLEET_LABEL;
use exile_api::v1 as pb;

/// The indexes. Keys are derived from the record only (state, fleet label, spawner), so
/// unindexing the old form and indexing the new one keeps them exact.
#[derive(Default, Debug, PartialEq, Eq)]
pub(super) struct Index {
    /// Instances carrying the fleet label, by fleet name.
    pub members: HashMap<String, BTreeSet<String>>,
    /// Ready instances by fleet name ("" when it has none), then by spawner id.
    pub ready: HashMap<String, HashMap<String, BTreeSet<String>>>,
    /// Allocated instances per spawner id.
    pub allocated: HashMap<String, usize>,
}

fn fleet_of(r: &InstanceRecord) -> &str {
    r.labels.get(FLEET_LABEL).map_or("", String::as_str)
}

impl Index {
    /// Indexes a record as it is now.
    pub fn add(&mut self, r: &InstanceRecord) {
        let fleet = fleet_of(r);
        if !fleet.is_empty() {
            self.members
                .entry(fleet.to_owned())
                .or_default()
                .insert(r.id.clone());
        }
        match r.state {
            pb::InstanceState::Ready => {
                self.ready
                    .entry(fleet.to_owned())
                    .or_default()
                    .entry(r.spawner_id.clone())
                    .or_default()
                    .insert(r.id.clone());
            }
            pb::InstanceState::Allocated => {
                *self.allocated.entry(r.spawner_id.clone()).or_default() += 1;
            }
            _ => {}
        }
    }

    /// Forgets a record as it was indexed.
    pub fn remove(&mut self, r: &InstanceRecord) {
        let fleet = fleet_of(r);
        if !fleet.is_empty()
            && let Some(set) = self.members.get_mut(fleet)
        {
            set.remove(&r.id);
            if set.is_empty() {
                self.members.remove(fleet);
            }
        }
        match r.state {
            pb::InstanceState::Ready => {
                if let Some(by_spawner) = self.ready.get_mut(fleet) {
                    if let Some(set) = by_spawner.get_mut(&r.spawner_id) {
                        set.remove(&r.id);
                        if set.is_empty() {
                            by_spawner.remove(&r.spawner_id);
                        }
                    }
                    if by_spawner.is_empty() {
                        self.ready.remove(fleet);
                    }
                }
            }
            pb::InstanceState::Allocated => {
                if let Some(n) = self.allocated.get_mut(&r.spawner_id) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.allocated.remove(&r.spawner_id);
                    }
                }
            }
            _ => {}
        }
    }

    /// The indexes rebuilt from scratch, to check the maintained ones against.
    #[cfg(test)]
    pub fn rebuilt<'a>(records: impl Iterator<Item = &'a InstanceRecord>) -> Self {
        let mut i = Index::default();
        for r in records {
            i.add(r);
        }
        i
    }
}
