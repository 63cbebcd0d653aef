//! The one wrapper of the generated gRPC clients: grpc-web through the browser's fetch
//! (tonic-web-wasm-client) to the origin that served the page, with the session token as
//! `authorization: Bearer …` on every call.

use std::collections::HashMap;

use exile_api::v1 as pb;
use pb::allocation_service_client::AllocationServiceClient;
use pb::auth_service_client::AuthServiceClient;
use pb::build_service_client::BuildServiceClient;
use pb::event_service_client::EventServiceClient;
use pb::fleet_service_client::FleetServiceClient;
use pb::instance_service_client::InstanceServiceClient;
use pb::metrics_service_client::MetricsServiceClient;
use pb::settings_service_client::SettingsServiceClient;
use pb::spawner_service_client::SpawnerServiceClient;
use pb::system_service_client::SystemServiceClient;
use tonic_web_wasm_client::Client;

/// A failed call, reduced to what the UI needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// The session is missing, expired or revoked: the user must log in again.
    pub unauthenticated: bool,
    /// The user's role does not allow the call: asking again cannot help.
    pub denied: bool,
    /// A sentence for the user (the server's status message when it gave one).
    pub message: String,
    /// The gRPC status code, for callers that retry some failures.
    pub code: tonic::Code,
}

impl ApiError {
    /// A failure found on this side (an answer missing a field, a file that cannot be read).
    pub fn local(message: impl Into<String>) -> Self {
        ApiError {
            unauthenticated: false,
            denied: false,
            message: message.into(),
            code: tonic::Code::Internal,
        }
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        let message = if s.message().is_empty() {
            format!("request failed: {:?}", s.code())
        } else {
            s.message().to_owned()
        };
        ApiError {
            unauthenticated: s.code() == tonic::Code::Unauthenticated,
            denied: s.code() == tonic::Code::PermissionDenied,
            message,
            code: s.code(),
        }
    }
}

/// Result of an API call.
pub type ApiResult<T> = Result<T, ApiError>;

/// An instance action offered in the UI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstanceAction {
    /// Start a stopped instance.
    Start,
    /// Stop (SIGTERM, grace period, SIGKILL).
    Stop,
    /// Stop, then start.
    Restart,
    /// Forget a stopped instance.
    Remove,
}

impl InstanceAction {
    /// Lower-case verb ("stop"), used in labels and test ids.
    pub fn verb(self) -> &'static str {
        match self {
            InstanceAction::Start => "start",
            InstanceAction::Stop => "stop",
            InstanceAction::Restart => "restart",
            InstanceAction::Remove => "remove",
        }
    }

    /// "-ing" form for progress messages ("Stopping").
    pub fn progressive(self) -> &'static str {
        match self {
            InstanceAction::Start => "Starting",
            InstanceAction::Stop => "Stopping",
            InstanceAction::Restart => "Restarting",
            InstanceAction::Remove => "Removing",
        }
    }

    /// Capitalised verb ("Stop") for buttons.
    pub fn title(self) -> &'static str {
        match self {
            InstanceAction::Start => "Start",
            InstanceAction::Stop => "Stop",
            InstanceAction::Restart => "Restart",
            InstanceAction::Remove => "Remove",
        }
    }

    /// Whether the action interrupts players and must be confirmed first.
    pub fn destructive(self) -> bool {
        !matches!(self, InstanceAction::Start)
    }
}

/// Clients of the master that served this page.
#[derive(Clone, Debug, PartialEq)]
pub struct Api {
    origin: String,
    token: Option<String>,
}

impl Api {
    /// Talks to the page's own origin; `token` is the session (None before login).
    pub fn new(token: Option<String>) -> Self {
        let origin = web_sys::window()
            .and_then(|w| w.location().origin().ok())
            .unwrap_or_default();
        Api { origin, token }
    }

    fn client(&self) -> Client {
        Client::new(self.origin.clone())
    }

    fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        if let Some(t) = &self.token
            && let Ok(v) = format!("Bearer {t}").parse()
        {
            r.metadata_mut().insert("authorization", v);
        }
        r
    }

    /// Logs in; returns the session token.
    pub async fn login(&self, username: &str, password: &str) -> ApiResult<String> {
        let r = AuthServiceClient::new(self.client())
            .login(pb::LoginRequest {
                username: username.into(),
                password: password.into(),
            })
            .await?;
        Ok(r.into_inner().token)
    }

    /// Ends the session on the master.
    pub async fn logout(&self) -> ApiResult<()> {
        AuthServiceClient::new(self.client())
            .logout(self.req(pb::LogoutRequest {}))
            .await?;
        Ok(())
    }

    /// Opens the event stream (snapshot first), metrics included.
    pub async fn watch(&self) -> ApiResult<tonic::Streaming<pb::WatchEvent>> {
        Ok(EventServiceClient::new(self.client())
            .watch(self.req(pb::WatchRequest {
                include_metrics: true,
            }))
            .await?
            .into_inner())
    }

    /// Master figures (uptime, requests, errors).
    pub async fn stats(&self) -> ApiResult<pb::GetStatsResponse> {
        Ok(SystemServiceClient::new(self.client())
            .get_stats(self.req(pb::GetStatsRequest {}))
            .await?
            .into_inner())
    }

    /// Spawns an instance on `spawner_id` with `labels`.
    pub async fn spawn(
        &self,
        spawner_id: &str,
        labels: HashMap<String, String>,
    ) -> ApiResult<pb::Instance> {
        let r = InstanceServiceClient::new(self.client())
            .spawn_instance(self.req(pb::SpawnInstanceRequest {
                spawner_id: spawner_id.into(),
                labels,
                ..Default::default()
            }))
            .await?;
        r.into_inner()
            .instance
            .ok_or_else(|| ApiError::local("the master answered without an instance"))
    }

    /// Runs `action` on instance `id`.
    pub async fn instance_action(&self, action: InstanceAction, id: &str) -> ApiResult<()> {
        let mut c = InstanceServiceClient::new(self.client());
        let id = id.to_owned();
        match action {
            InstanceAction::Start => {
                c.start_instance(self.req(pb::StartInstanceRequest { id }))
                    .await?;
            }
            InstanceAction::Stop => {
                c.stop_instance(self.req(pb::StopInstanceRequest {
                    id,
                    grace_period_seconds: 0,
                }))
                .await?;
            }
            InstanceAction::Restart => {
                c.restart_instance(self.req(pb::RestartInstanceRequest {
                    id,
                    grace_period_seconds: 0,
                }))
                .await?;
            }
            InstanceAction::Remove => {
                c.remove_instance(self.req(pb::RemoveInstanceRequest { id }))
                    .await?;
            }
        }
        Ok(())
    }

    /// Drains (`true`) or undrains a spawner.
    pub async fn set_drained(&self, id: &str, drained: bool) -> ApiResult<()> {
        let mut c = SpawnerServiceClient::new(self.client());
        if drained {
            c.drain_spawner(self.req(pb::DrainSpawnerRequest { id: id.into() }))
                .await?;
        } else {
            c.undrain_spawner(self.req(pb::UndrainSpawnerRequest { id: id.into() }))
                .await?;
        }
        Ok(())
    }

    /// Opens instance `id`'s output log: the last `tail_lines` lines, then new output as it
    /// is written. Dropping the stream aborts the request.
    // The request is growing other ways to pick a log; they keep their defaults here.
    #[allow(clippy::needless_update)]
    pub async fn stream_logs(
        &self,
        id: &str,
        tail_lines: u32,
    ) -> ApiResult<tonic::Streaming<pb::LogChunk>> {
        Ok(InstanceServiceClient::new(self.client())
            .stream_logs(self.req(pb::StreamLogsRequest {
                source: Some(pb::stream_logs_request::Source::Id(id.into())),
                follow: true,
                tail_lines,
            }))
            .await?
            .into_inner())
    }

    /// Writes one line to instance `id`'s console (operators only); the game answers in its log.
    pub async fn send_console(&self, id: &str, line: &str) -> ApiResult<()> {
        InstanceServiceClient::new(self.client())
            .send_console_command(self.req(pb::SendConsoleCommandRequest {
                id: id.into(),
                line: line.into(),
            }))
            .await?;
        Ok(())
    }

    /// Resource samples of a spawner's host or an instance between two Unix-millisecond times,
    /// oldest first.
    pub async fn metrics_history(
        &self,
        target: pb::MetricsTarget,
        id: &str,
        from_unix_ms: i64,
        to_unix_ms: i64,
    ) -> ApiResult<Vec<pb::MetricPoint>> {
        Ok(MetricsServiceClient::new(self.client())
            .get_metrics_history(self.req(pb::GetMetricsHistoryRequest {
                target: target.into(),
                id: id.into(),
                from_unix_ms,
                to_unix_ms,
                step_ms: 0,
            }))
            .await?
            .into_inner()
            .points)
    }

    /// Who the session belongs to and its role.
    pub async fn whoami(&self) -> ApiResult<pb::WhoAmIResponse> {
        Ok(AuthServiceClient::new(self.client())
            .who_am_i(self.req(pb::WhoAmIRequest {}))
            .await?
            .into_inner())
    }

    /// Announces an upload (browsers cannot send client streams); returns its id.
    pub async fn begin_upload(&self, metadata: pb::UploadBuildMetadata) -> ApiResult<String> {
        Ok(BuildServiceClient::new(self.client())
            .begin_upload(self.req(pb::BeginUploadRequest {
                metadata: Some(metadata),
            }))
            .await?
            .into_inner()
            .upload_id)
    }

    /// Sends the part of upload `upload_id` at `offset`; returns the bytes the master holds.
    pub async fn upload_part(&self, upload_id: &str, offset: u64, data: Vec<u8>) -> ApiResult<u64> {
        Ok(BuildServiceClient::new(self.client())
            .upload_part(self.req(pb::UploadPartRequest {
                upload_id: upload_id.into(),
                offset,
                data,
            }))
            .await?
            .into_inner()
            .received)
    }

    /// Asks the master to check and store an upload whose bytes all arrived.
    pub async fn finish_upload(&self, upload_id: &str) -> ApiResult<pb::UploadBuildResponse> {
        Ok(BuildServiceClient::new(self.client())
            .finish_upload(self.req(pb::FinishUploadRequest {
                upload_id: upload_id.into(),
            }))
            .await?
            .into_inner())
    }

    /// Makes `build` (`name@version`) the active version on the spawners `selector` picks.
    pub async fn activate_build(
        &self,
        build: &str,
        selector: HashMap<String, String>,
    ) -> ApiResult<()> {
        BuildServiceClient::new(self.client())
            .activate_build(self.req(pb::ActivateBuildRequest {
                build: build.into(),
                spawner_selector: selector,
            }))
            .await?;
        Ok(())
    }

    /// Deletes `build` (`name@version`); the master refuses while it is in use.
    pub async fn delete_build(&self, build: &str) -> ApiResult<pb::DeleteBuildResponse> {
        Ok(BuildServiceClient::new(self.client())
            .delete_build(self.req(pb::DeleteBuildRequest {
                build: build.into(),
            }))
            .await?
            .into_inner())
    }

    /// Starts replacing running instances with another version.
    pub async fn start_rollout(&self, req: pb::StartRolloutRequest) -> ApiResult<pb::Rollout> {
        BuildServiceClient::new(self.client())
            .start_rollout(self.req(req))
            .await?
            .into_inner()
            .rollout
            .ok_or_else(|| ApiError::local("the master answered without a rollout"))
    }

    /// Stops a running rollout where it is.
    pub async fn cancel_rollout(&self, id: &str) -> ApiResult<()> {
        BuildServiceClient::new(self.client())
            .cancel_rollout(self.req(pb::CancelRolloutRequest { id: id.into() }))
            .await?;
        Ok(())
    }

    /// Creates fleet `name` with `spec`.
    pub async fn create_fleet(&self, name: &str, spec: pb::FleetSpec) -> ApiResult<pb::Fleet> {
        FleetServiceClient::new(self.client())
            .create_fleet(self.req(pb::CreateFleetRequest {
                name: name.into(),
                spec: Some(spec),
            }))
            .await?
            .into_inner()
            .fleet
            .ok_or_else(|| ApiError::local("the master answered without a fleet"))
    }

    /// Sets fleet `name`'s replica count.
    pub async fn scale_fleet(&self, name: &str, replicas: u32) -> ApiResult<pb::Fleet> {
        FleetServiceClient::new(self.client())
            .scale_fleet(self.req(pb::ScaleFleetRequest {
                name: name.into(),
                replicas,
            }))
            .await?
            .into_inner()
            .fleet
            .ok_or_else(|| ApiError::local("the master answered without a fleet"))
    }

    /// Deletes fleet `name`.
    pub async fn delete_fleet(&self, name: &str) -> ApiResult<()> {
        FleetServiceClient::new(self.client())
            .delete_fleet(self.req(pb::DeleteFleetRequest { name: name.into() }))
            .await?;
        Ok(())
    }

    /// Allocates one Ready instance.
    pub async fn allocate(&self, req: pb::AllocateRequest) -> ApiResult<pb::AllocateResponse> {
        Ok(AllocationServiceClient::new(self.client())
            .allocate(self.req(req))
            .await?
            .into_inner())
    }

    /// Every user (admin).
    pub async fn list_users(&self) -> ApiResult<Vec<pb::User>> {
        Ok(AuthServiceClient::new(self.client())
            .list_users(self.req(pb::ListUsersRequest {}))
            .await?
            .into_inner()
            .users)
    }

    /// Creates a user (admin).
    pub async fn create_user(&self, req: pb::CreateUserRequest) -> ApiResult<()> {
        AuthServiceClient::new(self.client())
            .create_user(self.req(req))
            .await?;
        Ok(())
    }

    /// Changes a user's role and/or password (admin).
    pub async fn update_user(&self, req: pb::UpdateUserRequest) -> ApiResult<()> {
        AuthServiceClient::new(self.client())
            .update_user(self.req(req))
            .await?;
        Ok(())
    }

    /// Deletes a user (admin).
    pub async fn delete_user(&self, username: &str) -> ApiResult<()> {
        AuthServiceClient::new(self.client())
            .delete_user(self.req(pb::DeleteUserRequest {
                username: username.into(),
            }))
            .await?;
        Ok(())
    }

    /// Every API token, without secrets (admin).
    pub async fn list_api_tokens(&self) -> ApiResult<Vec<pb::ApiToken>> {
        Ok(AuthServiceClient::new(self.client())
            .list_api_tokens(self.req(pb::ListApiTokensRequest {}))
            .await?
            .into_inner()
            .tokens)
    }

    /// Creates an API token; the answer holds its secret, shown once (admin).
    pub async fn create_api_token(
        &self,
        req: pb::CreateApiTokenRequest,
    ) -> ApiResult<pb::CreateApiTokenResponse> {
        Ok(AuthServiceClient::new(self.client())
            .create_api_token(self.req(req))
            .await?
            .into_inner())
    }

    /// Revokes an API token (admin).
    pub async fn revoke_api_token(&self, id: &str) -> ApiResult<()> {
        AuthServiceClient::new(self.client())
            .revoke_api_token(self.req(pb::RevokeApiTokenRequest { id: id.into() }))
            .await?;
        Ok(())
    }

    /// Every enrollment token, without secrets (admin).
    pub async fn list_enrollment_tokens(&self) -> ApiResult<Vec<pb::EnrollmentToken>> {
        Ok(SpawnerServiceClient::new(self.client())
            .list_enrollment_tokens(self.req(pb::ListEnrollmentTokensRequest {}))
            .await?
            .into_inner()
            .tokens)
    }

    /// Creates an enrollment token; the answer holds its secret, shown once (admin).
    pub async fn create_enrollment_token(
        &self,
        req: pb::CreateEnrollmentTokenRequest,
    ) -> ApiResult<pb::CreateEnrollmentTokenResponse> {
        Ok(SpawnerServiceClient::new(self.client())
            .create_enrollment_token(self.req(req))
            .await?
            .into_inner())
    }

    /// Revokes an enrollment token (admin).
    pub async fn revoke_enrollment_token(&self, id: &str) -> ApiResult<()> {
        SpawnerServiceClient::new(self.client())
            .revoke_enrollment_token(self.req(pb::RevokeEnrollmentTokenRequest { id: id.into() }))
            .await?;
        Ok(())
    }

    /// One page of the audit log, newest first (admin).
    pub async fn audit_log(&self, req: pb::ListAuditLogRequest) -> ApiResult<Vec<pb::AuditEntry>> {
        Ok(SystemServiceClient::new(self.client())
            .list_audit_log(self.req(req))
            .await?
            .into_inner()
            .entries)
    }

    /// Every setting with its value, and the settings version in force.
    pub async fn list_settings(&self) -> ApiResult<pb::ListSettingsResponse> {
        Ok(SettingsServiceClient::new(self.client())
            .list_settings(self.req(pb::ListSettingsRequest::default()))
            .await?
            .into_inner())
    }

    /// Sets a setting's global value (admin); INVALID_ARGUMENT names the key and the bound.
    pub async fn set_setting(&self, key: &str, value: &str) -> ApiResult<pb::SettingEntry> {
        Ok(SettingsServiceClient::new(self.client())
            .set_setting(self.req(pb::SetSettingRequest {
                key: key.into(),
                value: value.into(),
                scope: String::new(),
            }))
            .await?
            .into_inner())
    }

    /// Removes a setting's global value: its default is in force again (admin).
    pub async fn reset_setting(&self, key: &str) -> ApiResult<pb::SettingEntry> {
        Ok(SettingsServiceClient::new(self.client())
            .reset_setting(self.req(pb::ResetSettingRequest {
                key: key.into(),
                scope: String::new(),
            }))
            .await?
            .into_inner())
    }

    /// The changes of one setting, newest first.
    pub async fn setting_history(&self, key: &str) -> ApiResult<Vec<pb::SettingChange>> {
        Ok(SettingsServiceClient::new(self.client())
            .get_setting_history(self.req(pb::GetSettingHistoryRequest {
                key: key.into(),
                limit: 20,
            }))
            .await?
            .into_inner()
            .changes)
    }

    /// The master's recent failed calls, newest first (operator).
    pub async fn list_errors(
        &self,
        req: pb::ListErrorsRequest,
    ) -> ApiResult<pb::ListErrorsResponse> {
        Ok(SystemServiceClient::new(self.client())
            .list_errors(self.req(req))
            .await?
            .into_inner())
    }

    /// The master's own performance between two Unix-millisecond times, oldest first.
    pub async fn master_history(
        &self,
        from_unix_ms: i64,
        to_unix_ms: i64,
    ) -> ApiResult<pb::GetMasterHistoryResponse> {
        Ok(MetricsServiceClient::new(self.client())
            .get_master_history(self.req(pb::GetMasterHistoryRequest {
                from_unix_ms,
                to_unix_ms,
                step_ms: 0,
            }))
            .await?
            .into_inner())
    }
}
