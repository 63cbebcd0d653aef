//! Fleets: a desired number of instances of one build, placed by a strategy and kept by the
//! master. This module owns the spec's rules, the create/update/scale/delete operations
//! (database first, then the registry's published copy, which the reconciler reads), and
//! starts the reconciler ([`reconcile`]) that keeps each fleet at its count and runs its
//! autoscaler ([`autoscale`]).

pub mod autoscale;
pub mod reconcile;

use std::time::Duration;

use tokio::sync::Notify;

use crate::builds::BuildChoice;
use crate::convert::check_labels;
use crate::error::{Error, Result};
use crate::model::{Labels, SpawnSettings};
use crate::registry::Placement;
use crate::service::Shared;
use crate::store::{AuditRecord, StoredFleet};
use exile_api::fleet::{FLEET_LABEL, MAX_FLEET_REPLICAS, check_fleet_name, is_reserved_label};
use exile_api::now_unix_ms;
use exile_api::v1 as pb;

/// Fleet settings of the master.
#[derive(Clone, Copy, Debug)]
pub struct FleetConfig {
    /// How long instances of an unreachable spawner still count before they are replaced.
    pub unreachable_grace: Duration,
    /// How often the reconciler looks at every fleet (it also looks after each change).
    pub tick: Duration,
}

/// What the fleet operations and the reconciler share.
pub struct FleetCtl {
    /// Serialises spec changes (people and autoscalers) so none is lost.
    write: tokio::sync::Mutex<()>,
    /// Wakes the reconciler before its tick (a spec changed, an allocation was made).
    pub wake: Notify,
    /// Settings.
    pub config: FleetConfig,
    /// TLS settings of webhooks over https.
    pub webhook_tls: std::sync::Arc<rustls::ClientConfig>,
}

impl FleetCtl {
    /// Controls with these settings.
    pub fn new(config: FleetConfig, webhook_tls: std::sync::Arc<rustls::ClientConfig>) -> Self {
        FleetCtl {
            write: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            config,
            webhook_tls,
        }
    }
}

/// A spec checked and turned into what a spawn needs.
pub struct Checked {
    /// Build to run.
    pub choice: BuildChoice,
    /// Regions a spawner may be in (empty: any).
    pub regions: Vec<String>,
    /// Spawner labels required.
    pub selector: Labels,
    /// Packed placement.
    pub packed: bool,
    /// Instance labels, the fleet label included.
    pub labels: Labels,
    /// Spawn settings.
    pub settings: SpawnSettings,
}

impl Checked {
    /// The spawn plan for one instance in `region` (empty: any).
    pub fn plan(&self, region: &str) -> crate::service::instance_api::SpawnPlan {
        crate::service::instance_api::SpawnPlan {
            placement: Placement {
                spawner_id: String::new(),
                region: region.to_owned(),
                selector: self.selector.clone(),
                packed: self.packed,
            },
            choice: self.choice.clone(),
            host_version: String::new(),
            labels: self.labels.clone(),
            settings: self.settings.clone(),
        }
    }

    /// The (name, version) every instance should run when the build is pinned; None when
    /// it follows an activation or is the host build.
    pub fn pinned(&self) -> Option<(&str, &str)> {
        match &self.choice {
            BuildChoice::Exact { name, version } => Some((name.as_str(), version.as_str())),
            _ => None,
        }
    }
}

/// Checks a spec; errors name the field.
pub fn check_spec(name: &str, spec: &pb::FleetSpec) -> Result<Checked> {
    check_fleet_name(name).map_err(Error::InvalidArgument)?;
    if spec.replicas > MAX_FLEET_REPLICAS {
        return Err(Error::InvalidArgument(format!(
            "replicas: at most {MAX_FLEET_REPLICAS}"
        )));
    }
    let choice = BuildChoice::parse(&spec.build, "")?;
    let placement = spec.placement.clone().unwrap_or_default();
    if placement.regions.len() > 32 || placement.regions.iter().any(|r| r.len() > 64) {
        return Err(Error::InvalidArgument(
            "placement.regions: at most 32 regions of at most 64 bytes".into(),
        ));
    }
    let selector = check_labels("placement.spawner_selector", &placement.spawner_selector)?;
    let packed = pb::PlacementStrategy::try_from(placement.strategy)
        .map_err(|_| Error::InvalidArgument("placement.strategy: unknown value".into()))?
        == pb::PlacementStrategy::Packed;
    let mut labels = check_labels("labels", &spec.labels)?;
    if let Some(k) = labels.keys().find(|k| is_reserved_label(k)) {
        return Err(Error::InvalidArgument(format!(
            "labels: {k}: keys under exile/ belong to the platform"
        )));
    }
    labels.insert(FLEET_LABEL.to_owned(), name.to_owned());
    exile_api::limits::check_env(spec.env.iter()).map_err(Error::InvalidArgument)?;
    if spec.args.len() > 64 || spec.args.iter().any(|a| a.len() > 4096 || a.contains('\0')) {
        return Err(Error::InvalidArgument(
            "args: at most 64 arguments of at most 4096 bytes, without NUL".into(),
        ));
    }
    if let Some(p) = &spec.restart_policy {
        exile_api::limits::check_restart_policy(p).map_err(Error::InvalidArgument)?;
    }
    if let Some(h) = &spec.health_check {
        exile_api::limits::check_health_check(h).map_err(Error::InvalidArgument)?;
    }
    if let Some(a) = &spec.autoscaler {
        autoscale::check(a)?;
    }
    if let Some(r) = &spec.rollout
        && (r.max_surge > MAX_FLEET_REPLICAS || r.max_unavailable > MAX_FLEET_REPLICAS)
    {
        return Err(Error::InvalidArgument(format!(
            "rollout: max_surge and max_unavailable are at most {MAX_FLEET_REPLICAS}"
        )));
    }
    Ok(Checked {
        choice,
        regions: placement.regions,
        selector,
        packed,
        labels,
        settings: SpawnSettings {
            env: spec.env.clone().into_iter().collect(),
            args: spec.args.clone(),
            restart_policy: spec.restart_policy,
            health_check: spec.health_check,
            agones_sdk: false,
        },
    })
}

fn to_pb(f: &StoredFleet, status: Option<pb::FleetStatus>) -> pb::Fleet {
    pb::Fleet {
        name: f.name.clone(),
        spec: Some(f.spec.clone()),
        status: Some(status.unwrap_or_default()),
        created_at_unix_ms: f.created_at,
        updated_at_unix_ms: f.updated_at,
    }
}

fn stored(f: &pb::Fleet) -> StoredFleet {
    StoredFleet {
        name: f.name.clone(),
        spec: f.spec.clone().unwrap_or_default(),
        created_at: f.created_at_unix_ms,
        updated_at: f.updated_at_unix_ms,
    }
}

/// Publishes the stored fleets at start (counts follow from the first reconciler pass).
pub async fn load(shared: &Shared) -> Result<()> {
    for f in shared.store.list_fleets().await? {
        shared.registry.publish_fleet(to_pb(&f, None));
    }
    Ok(())
}

fn not_found(name: &str) -> Error {
    Error::NotFound(format!("no fleet named {name}"))
}

/// CreateFleet.
pub async fn create(shared: &Shared, name: String, spec: pb::FleetSpec) -> Result<pb::Fleet> {
    check_spec(&name, &spec)?;
    shared.settings.check_env_policy(spec.env.keys())?;
    let _w = shared.fleets.write.lock().await;
    let now = now_unix_ms();
    let f = StoredFleet {
        name,
        spec,
        created_at: now,
        updated_at: now,
    };
    shared.store.insert_fleet(&f).await?;
    let out = to_pb(&f, None);
    shared.registry.publish_fleet(out.clone());
    shared.fleets.wake.notify_one();
    Ok(out)
}

/// GetFleet.
pub fn get(shared: &Shared, name: &str) -> Result<pb::Fleet> {
    shared.registry.fleet(name).ok_or_else(|| not_found(name))
}

/// UpdateFleet: the whole spec is replaced.
pub async fn update(shared: &Shared, name: &str, spec: pb::FleetSpec) -> Result<pb::Fleet> {
    check_spec(name, &spec)?;
    shared.settings.check_env_policy(spec.env.keys())?;
    let _w = shared.fleets.write.lock().await;
    let mut f = get(shared, name)?;
    f.spec = Some(spec);
    f.updated_at_unix_ms = now_unix_ms();
    shared.store.save_fleet(&stored(&f)).await?;
    shared.registry.publish_fleet(f.clone());
    shared.fleets.wake.notify_one();
    Ok(f)
}

/// Who changed a replica count and why, for the audit log and Watch.
pub struct ScaleCause<'a> {
    /// Actor (user, token or `autoscaler`).
    pub by: &'a str,
    /// A sentence.
    pub reason: String,
}

/// ScaleFleet (and the autoscalers): sets the replica count. People stay within an
/// autoscaler's bounds, so the two do not fight over the count.
pub async fn scale(
    shared: &Shared,
    name: &str,
    replicas: u32,
    cause: ScaleCause<'_>,
    by_person: bool,
) -> Result<pb::Fleet> {
    if replicas > MAX_FLEET_REPLICAS {
        return Err(Error::InvalidArgument(format!(
            "replicas: at most {MAX_FLEET_REPLICAS}"
        )));
    }
    let _w = shared.fleets.write.lock().await;
    let mut f = get(shared, name)?;
    let mut spec = f.spec.clone().unwrap_or_default();
    if by_person
        && let Some(a) = &spec.autoscaler
        && !(a.min_replicas..=a.max_replicas).contains(&replicas)
    {
        return Err(Error::FailedPrecondition(format!(
            "fleet {name} has an autoscaler keeping it within {}..={} replicas; change its bounds (fleet update) to go outside them",
            a.min_replicas, a.max_replicas
        )));
    }
    let from = spec.replicas;
    if from == replicas {
        return Ok(f);
    }
    spec.replicas = replicas;
    f.spec = Some(spec);
    f.updated_at_unix_ms = now_unix_ms();
    shared.store.save_fleet(&stored(&f)).await?;
    shared.registry.publish_fleet(f.clone());
    shared.registry.fleet_scaled(pb::FleetScaled {
        fleet: name.to_owned(),
        from,
        to: replicas,
        by: cause.by.to_owned(),
        reason: cause.reason.clone(),
    });
    if !by_person {
        // People's scale calls are audited by the access layer; an autoscaler's are not calls.
        let rec = AuditRecord {
            at: now_unix_ms(),
            actor: cause.by.to_owned(),
            action: "ScaleFleet".into(),
            target: name.to_owned(),
            result: "ok".into(),
            detail: format!("{from} -> {replicas}: {}", cause.reason),
            peer: String::new(),
        };
        if let Err(e) = shared.store.insert_audit(rec).await {
            tracing::error!(error = %e, "could not write the audit log");
        }
    }
    tracing::info!(fleet = %name, from, to = replicas, by = %cause.by, "fleet scaled");
    shared.fleets.wake.notify_one();
    Ok(f)
}

/// DeleteFleet: the reconciler then removes its instances (never Allocated ones).
pub async fn delete(shared: &Shared, name: &str) -> Result<()> {
    let _w = shared.fleets.write.lock().await;
    get(shared, name)?;
    shared.store.delete_fleet(name).await?;
    shared.registry.unpublish_fleet(name);
    shared.fleets.wake.notify_one();
    Ok(())
}
