//! Allocation: picking a Ready instance that matches a matchmaker's selectors and moving it
//! to Allocated, under the registry's lock. The registry is the one writer of instance
//! states in the master, so two allocations can never take the same instance: there is no
//! optimistic retry and no conflict to count.
//!
//! The spawner hears of it afterwards (an `AllocateCommand` on the link). Until it confirms,
//! the allocation is *pending*: a status still saying Ready (sent before the command reached
//! the spawner) must not hand the instance out a second time, so it is read as Allocated.

use std::collections::{HashMap, VecDeque};

use super::{Link, Registry, State, live_link};
use crate::error::{Error, Result};
use crate::model::Labels;
use exile_api::fleet::{FLEET_LABEL, IDEMPOTENCY_WINDOW_MS};
use exile_api::v1 as pb;

/// What allocations set on one instance.
#[derive(Clone, Debug, Default)]
pub(super) struct AllocState {
    /// Annotations (merged over earlier ones).
    pub annotations: Labels,
    /// The blob for the game.
    pub metadata: Vec<u8>,
    /// The master moved it to Allocated and the spawner has not confirmed yet.
    pub pending: bool,
    /// Labels the allocation set, to keep over a status that predates them.
    pub labels: Labels,
}

/// Recent idempotency keys and the instance each allocated, expiring in order.
#[derive(Default)]
pub(super) struct Idempotency {
    by_key: HashMap<String, String>,
    order: VecDeque<(i64, String)>,
}

impl Idempotency {
    fn prune(&mut self, now: i64) {
        while let Some((at, _)) = self.order.front() {
            if now - *at < IDEMPOTENCY_WINDOW_MS {
                break;
            }
            if let Some((_, key)) = self.order.pop_front() {
                self.by_key.remove(&key);
            }
        }
    }
}

/// Which instances one selector accepts.
#[derive(Clone, Debug, Default)]
pub struct Selector {
    /// Fleet name; empty: any.
    pub fleet: String,
    /// Labels the instance must carry.
    pub labels: Labels,
    /// Free player slots it must have; 0: no condition.
    pub min_free_players: u32,
}

impl Selector {
    fn matches(&self, r: &crate::model::InstanceRecord) -> bool {
        if !self.fleet.is_empty() && r.labels.get(FLEET_LABEL) != Some(&self.fleet) {
            return false;
        }
        if self.min_free_players > 0
            && r.max_players.saturating_sub(r.players) < self.min_free_players
        {
            return false;
        }
        self.labels.iter().all(|(k, v)| r.labels.get(k) == Some(v))
    }

    /// The selector in words, for the answer when nothing matched.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if !self.fleet.is_empty() {
            parts.push(format!("fleet={}", self.fleet));
        }
        parts.extend(self.labels.iter().map(|(k, v)| format!("{k}={v}")));
        if self.min_free_players > 0 {
            parts.push(format!("free players>={}", self.min_free_players));
        }
        if parts.is_empty() {
            "any instance".into()
        } else {
            parts.join(",")
        }
    }
}

/// A validated allocation request.
#[derive(Clone, Debug, Default)]
pub struct AllocRequest {
    /// Selectors in the order tried (preferred ones first, the required one last).
    pub selectors: Vec<Selector>,
    /// Prefer the spawner with the most allocated instances (else the fewest).
    pub packed: bool,
    /// Labels to set.
    pub labels: Labels,
    /// Annotations to set.
    pub annotations: Labels,
    /// Blob for the game.
    pub metadata: Vec<u8>,
    /// Idempotency key; empty: none.
    pub key: String,
}

/// An allocation made (or replayed).
pub struct Allocated {
    /// The instance after the change.
    pub instance: pb::Instance,
    /// The link to tell its spawner on (None when replayed: it was told already).
    pub link: Option<Link>,
    /// What to tell the spawner.
    pub command: pb::AllocateCommand,
    /// True when the key had already allocated this instance.
    pub replayed: bool,
}

impl Registry {
    /// Allocates one Ready instance for `req`, or says which selectors found nothing.
    pub fn allocate(&self, req: &AllocRequest, now: i64) -> Result<Allocated> {
        let mut st = self.lock();
        st.idempotency.prune(now);
        if !req.key.is_empty()
            && let Some(iid) = st.idempotency.by_key.get(&req.key)
            && let Some(r) = st.instances.get(iid)
        {
            return Ok(Allocated {
                instance: Self::instance_pb(&st, r),
                link: None,
                command: pb::AllocateCommand::default(),
                replayed: true,
            });
        }
        let Some(id) = req
            .selectors
            .iter()
            .find_map(|sel| pick(&st, sel, req.packed))
        else {
            let tried: Vec<String> = req.selectors.iter().map(Selector::describe).collect();
            return Err(Error::ResourceExhausted(format!(
                "no Ready instance matches {}",
                tried.join(", nor ")
            )));
        };
        let link = st
            .instances
            .get(&id)
            .and_then(|r| st.spawners.get(&r.spawner_id))
            .map(live_link)
            .transpose()?;
        let Some(r) = st.instances.get_mut(&id) else {
            return Err(Error::Internal("the picked instance vanished".into()));
        };
        r.state = pb::InstanceState::Allocated;
        r.state_changed_at = now;
        r.message = "allocated by the master".into();
        for (k, v) in &req.labels {
            r.labels.insert(k.clone(), v.clone());
        }
        let rec = r.clone();
        let a = st.allocs.entry(id.clone()).or_default();
        a.annotations.extend(req.annotations.clone());
        a.metadata.clone_from(&req.metadata);
        a.labels.clone_from(&req.labels);
        a.pending = true;
        if !req.key.is_empty() {
            st.idempotency.by_key.insert(req.key.clone(), id.clone());
            st.idempotency.order.push_back((now, req.key.clone()));
        }
        self.save_instance(&rec);
        self.emit_instance(&st, &id);
        Ok(Allocated {
            instance: Self::instance_pb(&st, &rec),
            link,
            command: pb::AllocateCommand {
                instance_id: id,
                labels: req.labels.clone().into_iter().collect(),
                annotations: req.annotations.clone().into_iter().collect(),
                metadata: req.metadata.clone(),
            },
            replayed: false,
        })
    }

    /// The spawner refused or never answered an allocation: unless a status came meanwhile,
    /// the instance is Ready again (the spawner never moved it).
    pub fn allocation_failed(&self, id: &str) {
        let mut st = self.lock();
        let pending = st.allocs.get(id).is_some_and(|a| a.pending);
        if !pending {
            return;
        }
        st.allocs.remove(id);
        if let Some(r) = st.instances.get_mut(id)
            && r.state == pb::InstanceState::Allocated
        {
            r.state = pb::InstanceState::Ready;
            r.state_changed_at = exile_api::now_unix_ms();
            r.message = "the spawner did not take the allocation".into();
            let rec = r.clone();
            self.save_instance(&rec);
            self.emit_instance(&st, id);
        }
    }

    /// Adjusts a status from the spawner for an allocation it may not have applied yet, and
    /// keeps the allocation facts it reports. Called before the status is applied.
    pub(super) fn allocation_seen(st: &mut State, status: &mut pb::InstanceStatus) {
        let ready = pb::InstanceState::Ready as i32;
        let allocated = pb::InstanceState::Allocated as i32;
        match st.allocs.get_mut(&status.id) {
            Some(a) if a.pending && status.state == ready => {
                // Sent before the spawner applied the allocation: still ours.
                status.state = allocated;
                for (k, v) in &a.labels {
                    status.labels.insert(k.clone(), v.clone());
                }
                status
                    .annotations
                    .clone_from(&a.annotations.clone().into_iter().collect());
                status.allocation_metadata.clone_from(&a.metadata);
            }
            Some(a) => {
                a.pending = false;
                a.annotations = status.annotations.clone().into_iter().collect();
                a.metadata.clone_from(&status.allocation_metadata);
                if status.state != allocated && a.annotations.is_empty() && a.metadata.is_empty() {
                    st.allocs.remove(&status.id);
                }
            }
            None if !status.annotations.is_empty() || !status.allocation_metadata.is_empty() => {
                st.allocs.insert(
                    status.id.clone(),
                    AllocState {
                        annotations: status.annotations.clone().into_iter().collect(),
                        metadata: status.allocation_metadata.clone(),
                        pending: false,
                        labels: Labels::new(),
                    },
                );
            }
            None => {}
        }
    }
}

/// The Ready instance `sel` takes: on the spawner with the most (packed) or fewest
/// (distributed) allocated instances among those holding a match.
fn pick(st: &State, sel: &Selector, packed: bool) -> Option<String> {
    let mut candidates: Vec<(&str, &str)> = Vec::new();
    for r in st.instances.values() {
        if r.state == pb::InstanceState::Ready && sel.matches(r) {
            candidates.push((r.id.as_str(), r.spawner_id.as_str()));
        }
    }
    if candidates.len() <= 1 {
        return candidates.first().map(|(id, _)| (*id).to_owned());
    }
    let mut allocated: HashMap<&str, usize> = HashMap::new();
    for (_, sp) in &candidates {
        allocated.entry(sp).or_insert_with(|| {
            st.by_spawner.get(*sp).map_or(0, |ids| {
                ids.iter()
                    .filter_map(|i| st.instances.get(i))
                    .filter(|r| r.state == pb::InstanceState::Allocated)
                    .count()
            })
        });
    }
    let load = |sp: &str| allocated.get(sp).copied().unwrap_or(0);
    let best = if packed {
        candidates
            .iter()
            .max_by(|a, b| load(a.1).cmp(&load(b.1)).then(b.1.cmp(a.1)))
    } else {
        candidates
            .iter()
            .min_by(|a, b| load(a.1).cmp(&load(b.1)).then(a.1.cmp(b.1)))
    };
    best.map(|(id, _)| (*id).to_owned())
}
