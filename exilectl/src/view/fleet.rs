//! Serialisable views of fleets, scale events and allocations (`-o json|yaml`).

use std::collections::BTreeMap;

use exile_api::v1 as pb;
use serde::Serialize;

use super::rfc3339;

/// A fleet's autoscaler.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoscalerView {
    pub policy: String,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub sync_interval_seconds: u32,
    pub buffer_size: Option<u32>,
    pub buffer_percent: Option<u32>,
    pub webhook_url: Option<String>,
    pub webhook_timeout_ms: Option<u32>,
}

/// A fleet with its counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetView {
    pub name: String,
    pub build: String,
    pub replicas: u32,
    pub current: u32,
    pub ready: u32,
    pub allocated: u32,
    pub starting: u32,
    pub unknown: u32,
    pub regions: Vec<String>,
    pub spawner_selector: BTreeMap<String, String>,
    pub strategy: String,
    pub labels: BTreeMap<String, String>,
    pub autoscaler: Option<AutoscalerView>,
    pub max_surge: u32,
    pub max_unavailable: u32,
    pub outdated: u32,
    pub message: String,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

/// `PLACEMENT_STRATEGY_PACKED` → `packed`.
fn strategy_word(v: i32) -> String {
    match pb::PlacementStrategy::try_from(v) {
        Ok(pb::PlacementStrategy::Packed) => "packed".into(),
        Ok(_) => "distributed".into(),
        Err(_) => v.to_string(),
    }
}

impl From<pb::Fleet> for FleetView {
    fn from(f: pb::Fleet) -> Self {
        let spec = f.spec.unwrap_or_default();
        let status = f.status.unwrap_or_default();
        let placement = spec.placement.unwrap_or_default();
        let autoscaler = spec.autoscaler.map(|a| {
            use pb::fleet_autoscaler::Policy;
            let (policy, size, pct, url, timeout) = match a.policy {
                Some(Policy::Buffer(b)) if b.buffer_percent > 0 => {
                    ("buffer", None, Some(b.buffer_percent), None, None)
                }
                Some(Policy::Buffer(b)) => ("buffer", Some(b.buffer_size), None, None, None),
                Some(Policy::Webhook(w)) => {
                    ("webhook", None, None, Some(w.url), Some(w.timeout_ms))
                }
                None => ("none", None, None, None, None),
            };
            AutoscalerView {
                policy: policy.into(),
                min_replicas: a.min_replicas,
                max_replicas: a.max_replicas,
                sync_interval_seconds: a.sync_interval_seconds,
                buffer_size: size,
                buffer_percent: pct,
                webhook_url: url,
                webhook_timeout_ms: timeout,
            }
        });
        let (max_surge, max_unavailable) = exile_api::fleet::rollout_limits(spec.rollout.as_ref());
        Self {
            name: f.name,
            build: spec.build,
            replicas: spec.replicas,
            current: status.current,
            ready: status.ready,
            allocated: status.allocated,
            starting: status.starting,
            unknown: status.unknown,
            regions: placement.regions,
            spawner_selector: placement.spawner_selector.into_iter().collect(),
            strategy: strategy_word(placement.strategy),
            labels: spec.labels.into_iter().collect(),
            autoscaler,
            max_surge,
            max_unavailable,
            outdated: status.outdated,
            message: status.message,
            created_at: rfc3339(f.created_at_unix_ms),
            updated_at: rfc3339(f.updated_at_unix_ms),
        }
    }
}

/// A replica count change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetScaledView {
    pub fleet: String,
    pub from: u32,
    pub to: u32,
    pub by: String,
    pub reason: String,
}

impl From<pb::FleetScaled> for FleetScaledView {
    fn from(e: pb::FleetScaled) -> Self {
        Self {
            fleet: e.fleet,
            from: e.from,
            to: e.to,
            by: e.by,
            reason: e.reason,
        }
    }
}

/// An allocation's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AllocationView {
    pub instance_id: String,
    pub spawner_id: String,
    pub address: String,
    pub ports: Vec<super::PortView>,
    pub labels: BTreeMap<String, String>,
    pub fleet: String,
    pub replayed: bool,
}

impl From<pb::AllocateResponse> for AllocationView {
    fn from(a: pb::AllocateResponse) -> Self {
        Self {
            instance_id: a.instance_id,
            spawner_id: a.spawner_id,
            address: a.address,
            ports: a.ports.into_iter().map(Into::into).collect(),
            labels: a.labels.into_iter().collect(),
            fleet: a.fleet,
            replayed: a.replayed,
        }
    }
}
