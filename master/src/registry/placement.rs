//! Picking a spawner for a new instance and reserving its slot.

use std::collections::HashMap;

use super::{Link, Registry, State, live_link, not_found_spawner};
use crate::builds::BuildChoice;
use crate::error::{Error, Result};
use crate::model::{InstanceRecord, Labels};
use exile_api::now_unix_ms;
use exile_api::v1 as pb;

/// Where and what to place.
#[derive(Clone, Debug, Default)]
pub struct Placement {
    /// Named spawner, or empty to let the master pick.
    pub spawner_id: String,
    /// Region filter when picking.
    pub region: String,
    /// Labels a picked spawner must carry.
    pub selector: Labels,
    /// Fill hosts (packed) rather than spread (distributed).
    pub packed: bool,
}

impl Registry {
    /// Picks a spawner, resolves the build the instance runs there, then records the
    /// instance as Starting so concurrent placements see the slot taken (and a delete sees
    /// the build in use). Returns the record, the link to send the commands on, and the
    /// uploaded build to install first (None: the spawner's host build).
    pub fn reserve(
        &self,
        p: &Placement,
        build: &BuildChoice,
        mut rec: InstanceRecord,
    ) -> Result<(InstanceRecord, Link, Option<pb::BuildRef>)> {
        let mut st = self.lock();
        let spawner_id = if p.spawner_id.is_empty() {
            pick(&st, p)?
        } else {
            check_named(&st, &p.spawner_id)?
        };
        let e = st
            .spawners
            .get(&spawner_id)
            .ok_or_else(|| not_found_spawner(&spawner_id))?;
        let link = live_link(e)?;
        let labels: HashMap<String, String> = e
            .info
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let uploaded = st
            .catalog
            .resolve(build, &e.info.name, &e.info.region, &labels)?
            .map(crate::builds::BuildMeta::build_ref);
        match &uploaded {
            Some(b) => {
                rec.build_name.clone_from(&b.name);
                rec.build_version.clone_from(&b.version);
            }
            None => {
                rec.build_name.clear();
                if rec.build_version.is_empty() {
                    rec.build_version.clone_from(&e.info.active_build);
                }
            }
        }
        rec.spawner_id.clone_from(&spawner_id);
        rec.state = pb::InstanceState::Starting;
        rec.created_at = now_unix_ms();
        rec.state_changed_at = rec.created_at;
        st.insert_instance(rec.clone());
        self.save_instance(&rec);
        self.emit_instance(&st, &rec.id);
        self.emit_spawner(&st, &spawner_id);
        Ok((rec, link, uploaded))
    }
}

fn counts(st: &State) -> HashMap<&str, u32> {
    st.by_spawner
        .iter()
        .map(|(k, v)| (k.as_str(), u32::try_from(v.len()).unwrap_or(u32::MAX)))
        .collect()
}

fn check_named(st: &State, id: &str) -> Result<String> {
    let e = st.spawners.get(id).ok_or_else(|| not_found_spawner(id))?;
    live_link(e)?;
    if e.info.drained {
        return Err(Error::FailedPrecondition(format!(
            "spawner {} is draining and takes no new instances; undrain it first",
            e.info.name
        )));
    }
    let used = counts(st).get(id).copied().unwrap_or(0);
    if used >= e.info.capacity {
        return Err(Error::FailedPrecondition(format!(
            "spawner {} is at capacity ({used}/{} instances)",
            e.info.name, e.info.capacity
        )));
    }
    Ok(id.to_owned())
}

fn pick(st: &State, p: &Placement) -> Result<String> {
    let used = counts(st);
    let mut best: Option<(&str, u32, u32)> = None;
    let mut considered = 0;
    for e in st.spawners.values() {
        if e.state != pb::SpawnerState::Online || e.link.is_none() || e.info.drained {
            continue;
        }
        if !p.region.is_empty() && e.info.region != p.region {
            continue;
        }
        if !p
            .selector
            .iter()
            .all(|(k, v)| e.info.labels.get(k) == Some(v))
        {
            continue;
        }
        considered += 1;
        let n = used.get(e.info.id.as_str()).copied().unwrap_or(0);
        if n >= e.info.capacity {
            continue;
        }
        let better = match best {
            None => true,
            Some((bid, bn, bcap)) => {
                // Compare load ratios n/cap without floats: n * bcap vs bn * cap.
                let lhs = u64::from(n) * u64::from(bcap);
                let rhs = u64::from(bn) * u64::from(e.info.capacity);
                let ord = if p.packed {
                    rhs.cmp(&lhs)
                } else {
                    lhs.cmp(&rhs)
                };
                ord.then_with(|| e.info.id.as_str().cmp(bid)).is_lt()
            }
        };
        if better {
            best = Some((e.info.id.as_str(), n, e.info.capacity));
        }
    }
    match best {
        Some((id, _, _)) => Ok(id.to_owned()),
        None if considered == 0 => Err(Error::FailedPrecondition(format!(
            "no online spawner matches{}{}",
            if p.region.is_empty() {
                String::new()
            } else {
                format!(" region {}", p.region)
            },
            if p.selector.is_empty() {
                String::new()
            } else {
                format!(
                    " labels {}",
                    p.selector
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }
        ))),
        None => Err(Error::FailedPrecondition(format!(
            "all {considered} matching spawners are at capacity"
        ))),
    }
}
