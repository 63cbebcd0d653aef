//! `backup`: create, list, restore and delete instance data backups.

use anyhow::{Result, bail};
use exile_api::v1::{
    Backup, CreateBackupRequest, DeleteBackupRequest, ListBackupsRequest, RestoreBackupRequest,
};
use serde::Serialize;

use super::{Ctx, confirm};
use crate::cli::BackupCommand;
use crate::client::RpcResult;
use crate::output::{self, emit, print_line};
use crate::view::rfc3339;

/// A backup as printed.
#[derive(Debug, Serialize)]
pub struct BackupView {
    /// Backup id.
    pub id: String,
    /// Instance id.
    pub instance_id: String,
    /// Creation time, RFC 3339.
    pub created_at: Option<String>,
    /// Archive size, bytes.
    pub size_bytes: u64,
    /// Data size before compression, bytes.
    pub data_bytes: u64,
    /// Archive SHA-256.
    pub sha256: String,
    /// Note.
    pub note: String,
}

impl From<&Backup> for BackupView {
    fn from(b: &Backup) -> Self {
        BackupView {
            id: b.id.clone(),
            instance_id: b.instance_id.clone(),
            created_at: rfc3339(b.created_at_unix_ms),
            size_bytes: b.size_bytes,
            data_bytes: b.data_bytes,
            sha256: b.sha256.clone(),
            note: b.note.clone(),
        }
    }
}

fn table(list: &[Backup]) -> String {
    if list.is_empty() {
        return "No backups.".into();
    }
    let now = exile_api::now_unix_ms();
    let mut t = output::table(&["ID", "CREATED", "SIZE", "DATA", "SHA256", "NOTE"]);
    for b in list {
        t.add_row(vec![
            b.id.clone(),
            output::ago(b.created_at_unix_ms, now),
            output::bytes(b.size_bytes),
            output::bytes(b.data_bytes),
            b.sha256.chars().take(12).collect(),
            output::or_dash(&b.note),
        ]);
    }
    output::render(&t)
}

pub async fn run(ctx: &Ctx, cmd: BackupCommand) -> Result<()> {
    let mut client = ctx.session.backups();
    match cmd {
        BackupCommand::Create {
            instance,
            pre_command,
            wait,
            note,
        } => {
            let spinner = output::spinner(format!("backing up {}", output::clean(&instance)));
            let r = client
                .create_backup(CreateBackupRequest {
                    instance_id: instance.clone(),
                    pre_command: pre_command.unwrap_or_default(),
                    pre_command_wait_seconds: wait,
                    note,
                })
                .await;
            spinner.finish_and_clear();
            let r = r.or_explain(&ctx.session)?;
            let Some(b) = r.backup else {
                bail!("the master returned no backup")
            };
            emit(ctx.format, &BackupView::from(&b), |v| {
                format!(
                    "Backed up {instance}: backup {} ({} archived from {}, sha256 {}).",
                    v.id,
                    output::bytes(v.size_bytes),
                    output::bytes(v.data_bytes),
                    v.sha256
                )
            })
        }
        BackupCommand::List { instance } => {
            let r = client
                .list_backups(ListBackupsRequest {
                    instance_id: instance,
                })
                .await
                .or_explain(&ctx.session)?;
            let views: Vec<BackupView> = r.backups.iter().map(BackupView::from).collect();
            emit(ctx.format, &views, |_| table(&r.backups))
        }
        BackupCommand::Restore {
            instance,
            backup,
            yes,
        } => {
            if !yes
                && !confirm(&format!(
                    "Replace the data of {instance} with backup {backup}?"
                ))?
            {
                bail!("not restored");
            }
            let spinner = output::spinner(format!(
                "restoring {} into {}",
                output::clean(&backup),
                output::clean(&instance)
            ));
            let r = client
                .restore_backup(RestoreBackupRequest {
                    instance_id: instance.clone(),
                    backup_id: backup.clone(),
                })
                .await;
            spinner.finish_and_clear();
            r.or_explain(&ctx.session)?;
            print_line(&format!("Restored backup {backup} into {instance}."))
        }
        BackupCommand::Delete { instance, backup } => {
            client
                .delete_backup(DeleteBackupRequest {
                    instance_id: instance.clone(),
                    backup_id: backup.clone(),
                })
                .await
                .or_explain(&ctx.session)?;
            print_line(&format!("Deleted backup {backup} of {instance}."))
        }
    }
}
