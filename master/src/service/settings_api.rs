//! SettingsService: decode, call the settings, encode. Changes are audited with the old and
//! the new value.

use tonic::{Request, Response, Status};

use super::SharedRef;
use crate::access::ctx;
use exile_api::v1 as pb;
use exile_api::v1::settings_service_server::SettingsService;

/// Handlers of SettingsService.
pub struct SettingsApi(pub SharedRef);

/// A key as the audit log names it (bounded: it came from the caller).
fn target(key: &str) -> String {
    key.chars().take(96).collect()
}

#[tonic::async_trait]
impl SettingsService for SettingsApi {
    async fn list_settings(
        &self,
        req: Request<pb::ListSettingsRequest>,
    ) -> Result<Response<pb::ListSettingsResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(self.0.settings.list(&r.category)?))
    }

    async fn get_setting(
        &self,
        req: Request<pb::GetSettingRequest>,
    ) -> Result<Response<pb::SettingEntry>, Status> {
        Ok(Response::new(self.0.settings.get(&req.into_inner().key)?))
    }

    async fn set_setting(
        &self,
        req: Request<pb::SetSettingRequest>,
    ) -> Result<Response<pb::SettingEntry>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        c.set_target(target(&r.key));
        let (entry, detail) = self
            .0
            .settings
            .change(
                &self.0.registry,
                &c.principal.actor(),
                &r.key,
                &r.scope,
                Some(&r.value),
            )
            .await?;
        c.set_detail(detail);
        Ok(Response::new(entry))
    }

    async fn reset_setting(
        &self,
        req: Request<pb::ResetSettingRequest>,
    ) -> Result<Response<pb::SettingEntry>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        c.set_target(target(&r.key));
        let (entry, detail) = self
            .0
            .settings
            .change(
                &self.0.registry,
                &c.principal.actor(),
                &r.key,
                &r.scope,
                None,
            )
            .await?;
        c.set_detail(detail);
        Ok(Response::new(entry))
    }

    async fn get_setting_history(
        &self,
        req: Request<pb::GetSettingHistoryRequest>,
    ) -> Result<Response<pb::GetSettingHistoryResponse>, Status> {
        let r = req.into_inner();
        Ok(Response::new(pb::GetSettingHistoryResponse {
            changes: self.0.settings.history(&r.key, r.limit).await?,
        }))
    }
}
