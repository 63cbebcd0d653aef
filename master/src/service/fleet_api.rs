//! FleetService and AllocationService: decode, call the fleet module or the registry, encode.

use tonic::{Request, Response, Status};

use super::SharedRef;
use crate::access::ctx;
use crate::convert::check_labels;
use crate::error::{Error, Result};
use crate::fleet::{self, ScaleCause};
use crate::model::Labels;
use crate::registry::{AllocRequest, Selector};
use exile_api::fleet::{FLEET_LABEL, MAX_ALLOCATION_METADATA, check_fleet_name, is_reserved_label};
use exile_api::v1 as pb;
use exile_api::v1::allocation_service_server::AllocationService;
use exile_api::v1::fleet_service_server::FleetService;

/// Handlers of FleetService.
pub struct FleetApi(pub SharedRef);

/// Handlers of AllocationService.
pub struct AllocationApi(pub SharedRef);

fn name_of(name: &str) -> Result<()> {
    check_fleet_name(name).map_err(Error::InvalidArgument)
}

#[tonic::async_trait]
impl FleetService for FleetApi {
    async fn create_fleet(
        &self,
        req: Request<pb::CreateFleetRequest>,
    ) -> Result<Response<pb::CreateFleetResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        c.set_target(r.name.chars().take(64).collect::<String>());
        let spec = r.spec.unwrap_or_default();
        c.set_detail(format!("build {:?} replicas {}", spec.build, spec.replicas));
        let fleet = fleet::create(&self.0, r.name, spec).await?;
        Ok(Response::new(pb::CreateFleetResponse {
            fleet: Some(fleet),
        }))
    }

    async fn get_fleet(
        &self,
        req: Request<pb::GetFleetRequest>,
    ) -> Result<Response<pb::GetFleetResponse>, Status> {
        let r = req.into_inner();
        name_of(&r.name)?;
        Ok(Response::new(pb::GetFleetResponse {
            fleet: Some(fleet::get(&self.0, &r.name)?),
        }))
    }

    async fn list_fleets(
        &self,
        _req: Request<pb::ListFleetsRequest>,
    ) -> Result<Response<pb::ListFleetsResponse>, Status> {
        Ok(Response::new(pb::ListFleetsResponse {
            fleets: self.0.registry.fleets(),
        }))
    }

    async fn update_fleet(
        &self,
        req: Request<pb::UpdateFleetRequest>,
    ) -> Result<Response<pb::UpdateFleetResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        name_of(&r.name)?;
        c.set_target(r.name.clone());
        let spec = r.spec.unwrap_or_default();
        c.set_detail(format!("build {:?} replicas {}", spec.build, spec.replicas));
        let fleet = fleet::update(&self.0, &r.name, spec).await?;
        Ok(Response::new(pb::UpdateFleetResponse {
            fleet: Some(fleet),
        }))
    }

    async fn scale_fleet(
        &self,
        req: Request<pb::ScaleFleetRequest>,
    ) -> Result<Response<pb::ScaleFleetResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        name_of(&r.name)?;
        c.set_target(r.name.clone());
        c.set_detail(format!("replicas {}", r.replicas));
        let actor = c.principal.actor();
        let fleet = fleet::scale(
            &self.0,
            &r.name,
            r.replicas,
            ScaleCause {
                by: &actor,
                reason: "scaled by hand".into(),
            },
            true,
        )
        .await?;
        Ok(Response::new(pb::ScaleFleetResponse { fleet: Some(fleet) }))
    }

    async fn delete_fleet(
        &self,
        req: Request<pb::DeleteFleetRequest>,
    ) -> Result<Response<pb::DeleteFleetResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        name_of(&r.name)?;
        c.set_target(r.name.clone());
        fleet::delete(&self.0, &r.name).await?;
        Ok(Response::new(pb::DeleteFleetResponse {}))
    }
}

fn selector(field: &str, s: &pb::AllocationSelector) -> Result<Selector> {
    if !s.fleet.is_empty() {
        check_fleet_name(&s.fleet).map_err(|e| Error::InvalidArgument(format!("{field}: {e}")))?;
    }
    Ok(Selector {
        fleet: s.fleet.clone(),
        labels: check_labels(&format!("{field}.labels"), &s.labels)?,
        min_free_players: s.min_free_players,
    })
}

fn settable(field: &str, m: &std::collections::HashMap<String, String>) -> Result<Labels> {
    let out = check_labels(field, m)?;
    if let Some(k) = out.keys().find(|k| is_reserved_label(k)) {
        return Err(Error::InvalidArgument(format!(
            "{field}: {k}: keys under exile/ belong to the platform"
        )));
    }
    Ok(out)
}

/// Checks an Allocate request and turns it into the registry's form.
pub fn alloc_request(r: pb::AllocateRequest) -> Result<AllocRequest> {
    if r.preferred.len() > 16 {
        return Err(Error::InvalidArgument(
            "preferred: at most 16 selectors".into(),
        ));
    }
    let mut selectors = Vec::with_capacity(r.preferred.len() + 1);
    for (i, p) in r.preferred.iter().enumerate() {
        selectors.push(selector(&format!("preferred[{i}]"), p)?);
    }
    selectors.push(selector("required", &r.required.unwrap_or_default())?);
    if r.metadata.len() > MAX_ALLOCATION_METADATA {
        return Err(Error::InvalidArgument(format!(
            "metadata: at most {MAX_ALLOCATION_METADATA} bytes"
        )));
    }
    if r.idempotency_key.len() > 128 {
        return Err(Error::InvalidArgument(
            "idempotency_key: at most 128 bytes".into(),
        ));
    }
    let packed = pb::PlacementStrategy::try_from(r.strategy)
        .map_err(|_| Error::InvalidArgument("strategy: unknown value".into()))?
        == pb::PlacementStrategy::Packed;
    Ok(AllocRequest {
        selectors,
        packed,
        labels: settable("labels", &r.labels)?,
        annotations: settable("annotations", &r.annotations)?,
        metadata: r.metadata,
        key: r.idempotency_key,
    })
}

#[tonic::async_trait]
impl AllocationService for AllocationApi {
    async fn allocate(
        &self,
        req: Request<pb::AllocateRequest>,
    ) -> Result<Response<pb::AllocateResponse>, Status> {
        let areq = alloc_request(req.into_inner())?;
        let out = self.0.registry.allocate(&areq, exile_api::now_unix_ms())?;
        let i = out.instance;
        if let Some(link) = out.link {
            // The spawner (and through it the game) hears of it in the background: the answer
            // does not wait for a round trip the allocation does not depend on.
            let (shared, cmd, spawner) = (self.0.clone(), out.command, i.spawner_id.clone());
            tokio::spawn(async move {
                let id = cmd.instance_id.clone();
                let action = pb::command::Action::Allocate(cmd);
                match link
                    .request(action, shared.command_timeout)
                    .await
                    .and_then(crate::registry::map_command_error)
                {
                    Ok(res) => {
                        if let Some(status) = res.instance {
                            shared.registry.apply_status(&spawner, status);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(instance = %id, error = %e, "the spawner did not take an allocation");
                        shared.registry.allocation_failed(&id);
                    }
                }
            });
        }
        if i.labels.contains_key(FLEET_LABEL) {
            // Its fleet's autoscaler may want more.
            self.0.fleets.wake.notify_one();
        }
        tracing::debug!(instance = %i.id, replayed = out.replayed, "allocated");
        Ok(Response::new(pb::AllocateResponse {
            fleet: i.labels.get(FLEET_LABEL).cloned().unwrap_or_default(),
            instance_id: i.id,
            spawner_id: i.spawner_id,
            address: i.address,
            ports: i.ports,
            labels: i.labels,
            replayed: out.replayed,
        }))
    }
}
