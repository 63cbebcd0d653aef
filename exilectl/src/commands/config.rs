//! `config …`: run-time settings by category.

use anyhow::Result;
use exile_api::v1 as pb;

use super::Ctx;
use crate::cli::ConfigCommand;
use crate::cli::config::scope;
use crate::client::RpcResult;
use crate::output::{self, emit, fields};
use crate::view::{SettingChangeView, SettingView};

pub async fn run(ctx: &Ctx, cmd: ConfigCommand) -> Result<()> {
    let mut client = ctx.session.settings();
    match cmd {
        ConfigCommand::List { category } => {
            let r = client
                .list_settings(pb::ListSettingsRequest {
                    category: category.unwrap_or_default(),
                })
                .await
                .or_explain(&ctx.session)?;
            let views: Vec<SettingView> = r.settings.into_iter().map(Into::into).collect();
            emit(ctx.format, &views, |v| settings_table(v))
        }
        ConfigCommand::Get { key } => {
            let r = client
                .get_setting(pb::GetSettingRequest { key })
                .await
                .or_explain(&ctx.session)?;
            show(ctx, r)
        }
        ConfigCommand::Set {
            key,
            value,
            region,
            label,
        } => {
            let r = client
                .set_setting(pb::SetSettingRequest {
                    key,
                    value,
                    scope: scope(region.as_deref(), label.as_deref()),
                })
                .await
                .or_explain(&ctx.session)?;
            show(ctx, r)
        }
        ConfigCommand::Reset { key, region, label } => {
            let r = client
                .reset_setting(pb::ResetSettingRequest {
                    key,
                    scope: scope(region.as_deref(), label.as_deref()),
                })
                .await
                .or_explain(&ctx.session)?;
            show(ctx, r)
        }
        ConfigCommand::History { key, limit } => {
            let r = client
                .get_setting_history(pb::GetSettingHistoryRequest { key, limit })
                .await
                .or_explain(&ctx.session)?;
            let views: Vec<SettingChangeView> = r.changes.into_iter().map(Into::into).collect();
            emit(ctx.format, &views, |v| history_table(v))
        }
    }
}

fn show(ctx: &Ctx, s: pb::SettingEntry) -> Result<()> {
    let view = SettingView::from(s);
    emit(ctx.format, &view, |v| {
        let overrides: Vec<String> = v
            .overrides
            .iter()
            .map(|o| format!("{}={}", o.scope, o.value))
            .collect();
        let mut flags = Vec::new();
        if v.read_only {
            flags.push("read-only");
        }
        if v.needs_restart {
            flags.push("needs restart");
        }
        fields(&[
            ("Key", v.key.clone()),
            ("Category", v.category.clone()),
            ("Type", v.ty.clone()),
            (
                "Value",
                if v.is_set {
                    v.value.clone()
                } else {
                    format!("{} (default)", v.value)
                },
            ),
            ("Default", v.default.clone()),
            ("Bounds", output::or_dash(&v.bounds)),
            ("Applied by", v.applied_by.clone()),
            ("Overrides", output::or_dash(&overrides.join(", "))),
            ("Flags", output::or_dash(&flags.join(", "))),
            ("Version", v.version.to_string()),
            ("Description", v.description.clone()),
        ])
    })
}

fn settings_table(views: &[SettingView]) -> String {
    let mut t = output::table(&["KEY", "TYPE", "VALUE", "DEFAULT", "OVERRIDES", "FLAGS"]);
    for v in views {
        let mut flags = Vec::new();
        if v.is_set {
            flags.push("set");
        }
        if v.read_only {
            flags.push("read-only");
        }
        if v.needs_restart {
            flags.push("restart");
        }
        t.add_row([
            v.key.clone(),
            v.ty.clone(),
            v.value.clone(),
            v.default.clone(),
            v.overrides.len().to_string(),
            output::or_dash(&flags.join(",")),
        ]);
    }
    output::render(&t)
}

fn history_table(views: &[SettingChangeView]) -> String {
    if views.is_empty() {
        return "No changes.".into();
    }
    let mut t = output::table(&["VERSION", "AT", "ACTOR", "SCOPE", "OLD", "NEW"]);
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "(default)".into());
    for v in views {
        t.add_row([
            v.version.to_string(),
            v.at.clone().unwrap_or_default(),
            output::clean(&v.actor),
            if v.scope.is_empty() {
                "global".into()
            } else {
                output::clean(&v.scope)
            },
            shown(&v.old_value),
            shown(&v.new_value),
        ]);
    }
    output::render(&t)
}
