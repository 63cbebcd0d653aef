//! Allocation: picking a Ready instance that matches a matchmaker's selectors and moving it
//! to Allocated, under the registry's lock. The registry is the one writer of instance
//! states in the master, so two allocations can never take the same instance: there is no
//! optimistic retry and no conflict to count.
//!
//! The spawner hears of it afterwards (an `AllocateCommand` on the link). Until a status
//! carries the allocation's id, the allocation is *pending*: a status still saying Ready (sent
//! before the command reached the spawner) must not hand the instance out a second time, so
//! it is read as Allocated. A Ready status carrying the id is the match already over.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};

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
    /// Id of the pending allocation, which the spawner reports back once applied.
    pub id: String,
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
        let Some(rec) = st.update_instance(&id, |r| {
            r.state = pb::InstanceState::Allocated;
            r.state_changed_at = now;
            r.message = "allocated by the master".into();
            for (k, v) in &req.labels {
                r.labels.insert(k.clone(), v.clone());
            }
            r.clone()
        }) else {
            return Err(Error::Internal("the picked instance vanished".into()));
        };
        let a = st.allocs.entry(id.clone()).or_default();
        a.annotations.extend(req.annotations.clone());
        a.metadata.clone_from(&req.metadata);
        a.labels.clone_from(&req.labels);
        a.pending = true;
        a.id = crate::auth::new_id("alc");
        let allocation_id = a.id.clone();
        if !req.key.is_empty() {
            st.idempotency.by_key.insert(req.key.clone(), id.clone());
            st.idempotency.order.push_back((now, req.key.clone()));
        }
        self.emit_instance(&st, &id);
        let instance = Self::instance_pb(&st, &rec);
        // The copy taken above goes to the store as is.
        let _ = self.persist.send(super::Persist::Instance(Box::new(rec)));
        Ok(Allocated {
            instance,
            link,
            command: pb::AllocateCommand {
                instance_id: id,
                labels: req.labels.clone().into_iter().collect(),
                annotations: req.annotations.clone().into_iter().collect(),
                metadata: req.metadata.clone(),
                allocation_id,
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
        let freed = st.update_instance(id, |r| {
            (r.state == pb::InstanceState::Allocated).then(|| {
                r.state = pb::InstanceState::Ready;
                r.state_changed_at = exile_api::now_unix_ms();
                r.message = "the spawner did not take the allocation".into();
                r.clone()
            })
        });
        if let Some(Some(rec)) = freed {
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
            // Sent before the spawner applied the allocation (it reports the id of the last
            // one it applied): still ours. A Ready status after it is the match ending.
            Some(a) if a.pending && status.state == ready && status.allocation_id != a.id => {
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
                        id: status.allocation_id.clone(),
                    },
                );
            }
            None => {}
        }
    }
}

/// The Ready instance `sel` takes: on the spawner with the most (packed) or fewest
/// (distributed) allocated instances among those holding a match (ties: the lower spawner
/// id), the first match there in id order. Reads the index (Ready instances by fleet and
/// spawner, Allocated counts per spawner): it runs for every allocation, under the lock, so
/// it never walks instances that are not Ready, nor fleets the selector does not name.
fn pick(st: &State, sel: &Selector, packed: bool) -> Option<String> {
    let groups: Vec<&HashMap<String, BTreeSet<String>>> = if sel.fleet.is_empty() {
        st.index.ready.values().collect()
    } else {
        st.index.ready.get(&sel.fleet).into_iter().collect()
    };
    // Best spawner on top: packed wants the most allocated, distributed the fewest, ties
    // the lower id. A heap rather than a sort: the first spawner tried nearly always holds
    // a match, so ordering them all is wasted work on every allocation.
    let mut spawners: BinaryHeap<(i64, Reverse<&str>)> = groups
        .iter()
        .copied()
        .flat_map(HashMap::keys)
        .map(|sp| {
            let n = st.index.allocated.get(sp).copied().unwrap_or(0);
            let n = i64::try_from(n).unwrap_or(i64::MAX);
            (if packed { n } else { -n }, Reverse(sp.as_str()))
        })
        .collect();
    let mut tried = None;
    while let Some((_, Reverse(sp))) = spawners.pop() {
        // A spawner with Ready instances of several fleets comes up once per fleet.
        if tried == Some(sp) {
            continue;
        }
        tried = Some(sp);
        let found = groups
            .iter()
            .copied()
            .filter_map(|g| g.get(sp))
            .flatten()
            .find(|id| st.instances.get(*id).is_some_and(|r| sel.matches(r)));
        if let Some(id) = found {
            return Some(id.clone());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SpawnerInfo;

    impl Registry {
        /// The maintained indexes equal ones rebuilt from every instance.
        fn assert_index_exact(&self) {
            let st = self.lock();
            assert_eq!(
                st.index,
                super::super::index::Index::rebuilt(st.instances.values())
            );
        }
    }

    fn spawner(id: &str) -> SpawnerInfo {
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

    async fn registry() -> (std::sync::Arc<Registry>, tempfile::TempDir) {
        let (reg, dir) = Registry::for_tests().await;
        reg.enrolled(spawner("spw-1"));
        (reg, dir)
    }

    fn status(id: &str, state: pb::InstanceState, revision: u64) -> pb::InstanceStatus {
        pb::InstanceStatus {
            id: id.into(),
            state: state as i32,
            labels: [("mode".to_owned(), "ctf".to_owned())].into(),
            revision,
            ..Default::default()
        }
    }

    fn req(key: &str) -> AllocRequest {
        AllocRequest {
            selectors: vec![Selector {
                labels: [("mode".to_owned(), "ctf".to_owned())].into(),
                ..Default::default()
            }],
            key: key.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_stale_ready_never_frees_an_allocation_but_the_match_end_does() {
        let (reg, _dir) = registry().await;
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let hello = pb::Hello {
            advertised_address: "10.0.0.1".into(),
            capacity: 10,
            instances: vec![status("i-1", pb::InstanceState::Ready, 1)],
            ..Default::default()
        };
        reg.attach("spw-1", &hello, tx).unwrap();
        let a = reg.allocate(&req(""), 1000).unwrap();
        assert_eq!(a.instance.state(), pb::InstanceState::Allocated);
        assert_eq!(a.instance.address, "10.0.0.1");
        assert!(a.link.is_some());
        let alloc_id = a.command.allocation_id.clone();
        assert!(!alloc_id.is_empty());
        // Nothing else matches.
        let e = reg.allocate(&req(""), 1000).err().unwrap();
        assert!(e.to_string().contains("mode=ctf"), "{e}");
        // A status sent before the spawner applied it (a players update, say) changes nothing.
        reg.apply_status("spw-1", status("i-1", pb::InstanceState::Ready, 2));
        assert_eq!(
            reg.get_instance("i-1").unwrap().state(),
            pb::InstanceState::Allocated
        );
        assert!(reg.allocate(&req(""), 1000).is_err());
        // The spawner applied it, and later the match ended: a Ready carrying its id frees it,
        // even when the confirmation itself is overtaken (applied after, and older).
        let mut over = status("i-1", pb::InstanceState::Ready, 4);
        over.allocation_id.clone_from(&alloc_id);
        reg.apply_status("spw-1", over);
        let mut confirmed = status("i-1", pb::InstanceState::Allocated, 3);
        confirmed.allocation_id.clone_from(&alloc_id);
        reg.apply_status("spw-1", confirmed);
        assert_eq!(
            reg.get_instance("i-1").unwrap().state(),
            pb::InstanceState::Ready
        );
        assert!(reg.allocate(&req(""), 2000).is_ok());
    }

    #[tokio::test]
    async fn keys_replay_within_the_window_and_a_refused_allocation_is_undone() {
        let (reg, _dir) = registry().await;
        let (tx, _rx) = tokio::sync::mpsc::channel(16);
        let hello = pb::Hello {
            instances: vec![
                status("i-1", pb::InstanceState::Ready, 1),
                status("i-2", pb::InstanceState::Ready, 1),
            ],
            ..Default::default()
        };
        reg.attach("spw-1", &hello, tx).unwrap();
        let first = reg.allocate(&req("k"), 1000).unwrap();
        let again = reg.allocate(&req("k"), 2000).unwrap();
        assert_eq!(first.instance.id, again.instance.id);
        assert!(again.replayed && again.link.is_none());
        // Past the window the key is forgotten: the other instance.
        let later = reg
            .allocate(&req("k"), 1000 + IDEMPOTENCY_WINDOW_MS)
            .unwrap();
        assert_ne!(later.instance.id, first.instance.id);
        // The spawner refused the second: it is Ready again and allocatable.
        reg.allocation_failed(&later.instance.id);
        assert_eq!(
            reg.get_instance(&later.instance.id).unwrap().state(),
            pb::InstanceState::Ready
        );
        let again = reg
            .allocate(&req(""), 1000 + IDEMPOTENCY_WINDOW_MS)
            .unwrap();
        assert_eq!(again.instance.id, later.instance.id);
    }

    fn in_fleet(id: &str, fleet: &str, state: pb::InstanceState) -> pb::InstanceStatus {
        let mut s = status(id, state, 1);
        s.labels.insert(FLEET_LABEL.into(), fleet.into());
        s
    }

    fn of_fleet(fleet: &str, packed: bool) -> AllocRequest {
        AllocRequest {
            selectors: vec![Selector {
                fleet: fleet.into(),
                ..Default::default()
            }],
            packed,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn the_index_follows_every_change_and_picks_by_strategy() {
        let (reg, _dir) = registry().await;
        reg.enrolled(spawner("spw-2"));
        let (tx, _rx) = tokio::sync::mpsc::channel(64);
        // spw-1: one already allocated (of another fleet) and two Ready of fleet a;
        // spw-2: two Ready of fleet a, one Ready of fleet b, one starting.
        let one = pb::Hello {
            instances: vec![
                in_fleet("i-10", "b", pb::InstanceState::Allocated),
                in_fleet("i-11", "a", pb::InstanceState::Ready),
                in_fleet("i-12", "a", pb::InstanceState::Ready),
            ],
            ..Default::default()
        };
        let two = pb::Hello {
            instances: vec![
                in_fleet("i-21", "a", pb::InstanceState::Ready),
                in_fleet("i-22", "a", pb::InstanceState::Ready),
                in_fleet("i-23", "b", pb::InstanceState::Ready),
                in_fleet("i-24", "a", pb::InstanceState::Starting),
            ],
            ..Default::default()
        };
        reg.attach("spw-1", &one, tx.clone()).unwrap();
        let link2 = reg.attach("spw-2", &two, tx.clone()).unwrap();
        reg.assert_index_exact();
        // Packed: the spawner with the most allocated (spw-1), lowest id first.
        let a = reg.allocate(&of_fleet("a", true), 1).unwrap();
        assert_eq!(a.instance.id, "i-11");
        reg.assert_index_exact();
        // Distributed: the fewest allocated (spw-2 has none).
        let a = reg.allocate(&of_fleet("a", false), 1).unwrap();
        assert_eq!(a.instance.id, "i-21");
        reg.assert_index_exact();
        // A fleet selector never takes another fleet's instance.
        let b = reg.allocate(&of_fleet("b", true), 1).unwrap();
        assert_eq!(b.instance.id, "i-23");
        assert!(reg.allocate(&of_fleet("b", true), 1).is_err());
        // The starting one becomes Ready through a status: allocatable.
        let mut ready = in_fleet("i-24", "a", pb::InstanceState::Ready);
        ready.revision = 2;
        reg.apply_status("spw-2", ready);
        reg.assert_index_exact();
        // A spawner going away hides its Ready ones: only spw-1's last one is left.
        reg.detach("spw-2", link2.generation, false);
        reg.assert_index_exact();
        let a = reg.allocate(&of_fleet("a", false), 1).unwrap();
        assert_eq!(a.instance.id, "i-12");
        assert!(reg.allocate(&of_fleet("a", false), 1).is_err());
        reg.assert_index_exact();
        reg.attach("spw-2", &two, tx.clone()).unwrap();
        reg.assert_index_exact();
        // A refused allocation is Ready again; a removed instance is gone from the index.
        reg.allocation_failed(&a.instance.id);
        reg.assert_index_exact();
        reg.forget_instance("i-22");
        reg.assert_index_exact();
        let (members, _) = reg.fleet_members();
        let mut a_ids: Vec<String> = members["a"].iter().map(|m| m.id.clone()).collect();
        a_ids.sort();
        assert_eq!(a_ids, ["i-11", "i-12", "i-21", "i-24"]);
        reg.remove_spawner("spw-2").unwrap();
        reg.assert_index_exact();
    }
}
