//! SpawnerService: enrollment tokens and the spawner registry.

use tonic::{Request, Response, Status};

use super::SharedRef;
use crate::access::{ctx, may_read_game_output};
use crate::auth::{ENROLLMENT_PREFIX, hash_secret, new_id, new_secret};
use crate::convert::{check_id, instances_for};
use crate::db::entities::enrollment_token;
use crate::error::Error;
use exile_api::now_unix_ms;
use exile_api::v1 as pb;
use exile_api::v1::spawner_service_server::SpawnerService;

/// Handlers of SpawnerService.
pub struct SpawnerApi(pub SharedRef);

fn enrollment_pb(t: &enrollment_token::Model) -> pb::EnrollmentToken {
    pb::EnrollmentToken {
        id: t.id.clone(),
        description: t.description.clone(),
        created_at_unix_ms: t.created_at,
        expires_at_unix_ms: t.expires_at,
        created_by: t.created_by.clone(),
        used_by_spawner: t.used_by_spawner.clone(),
        revoked: t.revoked,
    }
}

/// Creates an enrollment token and returns its record and secret.
pub async fn create_enrollment_token(
    shared: &super::Shared,
    ttl_seconds: u64,
    description: String,
    created_by: String,
) -> crate::error::Result<(enrollment_token::Model, String)> {
    let ttl = if ttl_seconds == 0 { 3600 } else { ttl_seconds };
    if ttl > 30 * 86_400 {
        return Err(Error::InvalidArgument(
            "ttl_seconds: at most 30 days".into(),
        ));
    }
    if description.len() > 256 {
        return Err(Error::InvalidArgument(
            "description: at most 256 bytes".into(),
        ));
    }
    let secret = new_secret(ENROLLMENT_PREFIX);
    let now = now_unix_ms();
    let t = enrollment_token::Model {
        id: new_id("enr"),
        token_hash: hash_secret(&secret),
        description,
        created_by,
        created_at: now,
        expires_at: now.saturating_add(i64::try_from(ttl).unwrap_or(3600).saturating_mul(1000)),
        used_by_spawner: String::new(),
        revoked: false,
    };
    shared.store.insert_enrollment_token(t.clone()).await?;
    Ok((t, secret))
}

#[tonic::async_trait]
impl SpawnerService for SpawnerApi {
    async fn create_enrollment_token(
        &self,
        req: Request<pb::CreateEnrollmentTokenRequest>,
    ) -> Result<Response<pb::CreateEnrollmentTokenResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        let (t, secret) =
            create_enrollment_token(&self.0, r.ttl_seconds, r.description, c.principal.actor())
                .await?;
        c.set_target(t.id.clone());
        Ok(Response::new(pb::CreateEnrollmentTokenResponse {
            token: Some(enrollment_pb(&t)),
            secret,
        }))
    }

    async fn list_enrollment_tokens(
        &self,
        _req: Request<pb::ListEnrollmentTokensRequest>,
    ) -> Result<Response<pb::ListEnrollmentTokensResponse>, Status> {
        let tokens = self.0.store.list_enrollment_tokens().await?;
        Ok(Response::new(pb::ListEnrollmentTokensResponse {
            tokens: tokens.iter().map(enrollment_pb).collect(),
        }))
    }

    async fn revoke_enrollment_token(
        &self,
        req: Request<pb::RevokeEnrollmentTokenRequest>,
    ) -> Result<Response<pb::RevokeEnrollmentTokenResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        check_id("id", &r.id)?;
        c.set_target(r.id.clone());
        if !self.0.store.revoke_enrollment_token(&r.id).await? {
            return Err(Error::NotFound(format!("no enrollment token with id {}", r.id)).into());
        }
        Ok(Response::new(pb::RevokeEnrollmentTokenResponse {}))
    }

    async fn list_spawners(
        &self,
        req: Request<pb::ListSpawnersRequest>,
    ) -> Result<Response<pb::ListSpawnersResponse>, Status> {
        let r = req.into_inner();
        let mut spawners = self.0.registry.snapshot().spawners;
        if !r.region.is_empty() {
            spawners.retain(|s| s.region == r.region);
        }
        Ok(Response::new(pb::ListSpawnersResponse { spawners }))
    }

    async fn get_spawner(
        &self,
        req: Request<pb::GetSpawnerRequest>,
    ) -> Result<Response<pb::GetSpawnerResponse>, Status> {
        let sees_output = may_read_game_output(&ctx(&req)?.principal);
        let r = req.into_inner();
        check_id("id", &r.id)?;
        let (spawner, instances) = self.0.registry.get_spawner(&r.id)?;
        Ok(Response::new(pb::GetSpawnerResponse {
            spawner: Some(spawner),
            instances: instances_for(instances, sees_output),
        }))
    }

    async fn drain_spawner(
        &self,
        req: Request<pb::DrainSpawnerRequest>,
    ) -> Result<Response<pb::DrainSpawnerResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        check_id("id", &r.id)?;
        c.set_target(r.id.clone());
        let spawner = self.0.registry.set_drained(&r.id, true)?;
        Ok(Response::new(pb::DrainSpawnerResponse {
            spawner: Some(spawner),
        }))
    }

    async fn undrain_spawner(
        &self,
        req: Request<pb::UndrainSpawnerRequest>,
    ) -> Result<Response<pb::UndrainSpawnerResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        check_id("id", &r.id)?;
        c.set_target(r.id.clone());
        let spawner = self.0.registry.set_drained(&r.id, false)?;
        Ok(Response::new(pb::UndrainSpawnerResponse {
            spawner: Some(spawner),
        }))
    }

    async fn remove_spawner(
        &self,
        req: Request<pb::RemoveSpawnerRequest>,
    ) -> Result<Response<pb::RemoveSpawnerResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        check_id("id", &r.id)?;
        c.set_target(r.id.clone());
        // Revoke first: from here on a handshake with its certificate fails.
        let revoked = self
            .0
            .store
            .revoke_spawner_certs(&r.id, exile_api::now_unix_ms())
            .await?;
        self.0.spawner_tls.revoke(revoked);
        self.0.registry.remove_spawner(&r.id)?;
        self.0.store.delete_spawner(&r.id).await?;
        Ok(Response::new(pb::RemoveSpawnerResponse {}))
    }
}
