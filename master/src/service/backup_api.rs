//! BackupService: instance data backups, carried out by the instance's spawner.

use std::time::Duration;

use tonic::{Request, Response, Status};

use super::SharedRef;
use crate::access::ctx;
use crate::convert::check_id;
use crate::error::{Error, Result};
use crate::registry::map_command_error;
use exile_api::v1 as pb;
use exile_api::v1::backup_service_server::BackupService;

/// Handlers of BackupService.
pub struct BackupApi(pub SharedRef);

/// Archiving a large world takes longer than an ordinary command.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(600);

impl BackupApi {
    async fn send(
        &self,
        instance_id: &str,
        action: pb::command::Action,
    ) -> Result<Vec<pb::Backup>> {
        check_id("instance_id", instance_id)?;
        let (_, link) = self.0.registry.route(instance_id)?;
        let timeout = BACKUP_TIMEOUT.max(self.0.command_timeout);
        let r = map_command_error(link.request(action, timeout).await?)?;
        Ok(r.backups)
    }

    /// Sends `action` for the one backup `req` names, audited under its instance with the
    /// backup as detail. Restore and delete differ only in the action.
    async fn on_backup<T>(
        &self,
        req: Request<T>,
        backup: impl FnOnce(T) -> pb::BackupRef,
        action: fn(pb::BackupRef) -> pb::command::Action,
    ) -> Result<()> {
        let c = ctx(&req)?;
        let r = backup(req.into_inner());
        c.set_target(r.instance_id.chars().take(128).collect::<String>());
        c.set_detail(format!(
            "backup {}",
            r.backup_id.chars().take(64).collect::<String>()
        ));
        check_id("backup_id", &r.backup_id)?;
        let instance_id = r.instance_id.clone();
        self.send(&instance_id, action(r)).await?;
        Ok(())
    }
}

#[tonic::async_trait]
impl BackupService for BackupApi {
    async fn create_backup(
        &self,
        req: Request<pb::CreateBackupRequest>,
    ) -> Result<Response<pb::CreateBackupResponse>, Status> {
        let c = ctx(&req)?;
        let r = req.into_inner();
        c.set_target(r.instance_id.chars().take(128).collect::<String>());
        if r.pre_command.contains(['\n', '\r']) {
            return Err(Error::InvalidArgument("pre_command: one line only".into()).into());
        }
        let action = pb::command::Action::Backup(pb::BackupCommand {
            instance_id: r.instance_id.clone(),
            pre_command: r.pre_command,
            pre_command_wait_seconds: r.pre_command_wait_seconds,
            note: r.note,
        });
        let backup = self.send(&r.instance_id, action).await?.into_iter().next();
        if let Some(b) = &backup {
            c.set_detail(format!(
                "backup {} ({} bytes, sha256 {})",
                b.id, b.size_bytes, b.sha256
            ));
        }
        Ok(Response::new(pb::CreateBackupResponse { backup }))
    }

    async fn list_backups(
        &self,
        req: Request<pb::ListBackupsRequest>,
    ) -> Result<Response<pb::ListBackupsResponse>, Status> {
        let r = req.into_inner();
        let action = pb::command::Action::ListBackups(pb::InstanceRef {
            instance_id: r.instance_id.clone(),
        });
        Ok(Response::new(pb::ListBackupsResponse {
            backups: self.send(&r.instance_id, action).await?,
        }))
    }

    async fn restore_backup(
        &self,
        req: Request<pb::RestoreBackupRequest>,
    ) -> Result<Response<pb::RestoreBackupResponse>, Status> {
        let backup = |r: pb::RestoreBackupRequest| pb::BackupRef {
            instance_id: r.instance_id,
            backup_id: r.backup_id,
        };
        self.on_backup(req, backup, pb::command::Action::RestoreBackup)
            .await?;
        Ok(Response::new(pb::RestoreBackupResponse {}))
    }

    async fn delete_backup(
        &self,
        req: Request<pb::DeleteBackupRequest>,
    ) -> Result<Response<pb::DeleteBackupResponse>, Status> {
        let backup = |r: pb::DeleteBackupRequest| pb::BackupRef {
            instance_id: r.instance_id,
            backup_id: r.backup_id,
        };
        self.on_backup(req, backup, pb::command::Action::DeleteBackup)
            .await?;
        Ok(Response::new(pb::DeleteBackupResponse {}))
    }
}
