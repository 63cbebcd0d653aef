//! Rollouts: replacing the running instances of a build name with another version, and
//! rolling an activation back.
//!
//! NOT IMPLEMENTED YET: every RPC here answers UNIMPLEMENTED ("rollouts are not available
//! yet"), and no rollout ever blocks a delete. The rest of BuildService does not depend on
//! this module beyond [`delete_blocker`].

use tonic::Status;

use crate::builds::BuildMeta;
use crate::service::Shared;
use exile_api::v1 as pb;

fn not_yet() -> Status {
    Status::unimplemented("rollouts are not available yet")
}

/// StartRollout.
pub async fn start(
    _shared: &Shared,
    _actor: &str,
    _req: pb::StartRolloutRequest,
) -> Result<pb::Rollout, Status> {
    Err(not_yet())
}

/// GetRollout.
pub async fn get(_shared: &Shared, _req: pb::GetRolloutRequest) -> Result<pb::Rollout, Status> {
    Err(not_yet())
}

/// ListRollouts.
pub async fn list(
    _shared: &Shared,
    _req: pb::ListRolloutsRequest,
) -> Result<Vec<pb::Rollout>, Status> {
    Err(not_yet())
}

/// CancelRollout.
pub async fn cancel(
    _shared: &Shared,
    _actor: &str,
    _req: pb::CancelRolloutRequest,
) -> Result<pb::Rollout, Status> {
    Err(not_yet())
}

/// RollbackBuild.
pub async fn rollback(
    _shared: &Shared,
    _actor: &str,
    _req: pb::RollbackBuildRequest,
) -> Result<pb::RollbackBuildResponse, Status> {
    Err(not_yet())
}

/// Why a build may not be deleted because of a rollout (a running one targets it), if so.
pub fn delete_blocker(_build: &BuildMeta) -> Option<String> {
    None
}
