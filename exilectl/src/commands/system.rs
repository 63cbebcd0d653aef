//! `stats`, `audit` and `completion`: master figures, the audit log and shell scripts.

use anyhow::Result;
use clap::CommandFactory;
use exile_api::v1::{GetStatsRequest, ListAuditLogRequest, ListErrorsRequest};

use super::Ctx;
use crate::cli::{AuditArgs, Cli, ErrorsArgs};
use crate::client::RpcResult;
use crate::output::{self, emit, fields};
use crate::view::{AuditEntryView, ServerErrorView, StatsView};

pub async fn stats(ctx: &Ctx) -> Result<()> {
    let r = ctx
        .session
        .system()
        .get_stats(GetStatsRequest {})
        .await
        .or_explain(&ctx.session)?;
    let view = StatsView::from(r);
    emit(ctx.format, &view, |v| {
        fields(&[
            ("Master", ctx.session.master.clone()),
            ("Version", output::or_dash(&v.version)),
            ("Uptime", output::uptime(v.uptime_seconds)),
            (
                "Spawners",
                format!("{} online of {}", v.spawners_online, v.spawners_total),
            ),
            (
                "Instances",
                format!("{} running of {}", v.instances_running, v.instances_total),
            ),
            ("Players", v.players_total.to_string()),
            (
                "Requests",
                format!("{} ({} errors)", v.requests_total, v.errors_total),
            ),
            ("Memory", output::bytes(v.memory_bytes)),
            ("Spawner links", v.open_links.to_string()),
            ("Watch streams", v.watch_subscribers.to_string()),
            (
                "Traffic",
                format!(
                    "{} in, {} out",
                    output::bytes(v.bytes_in),
                    output::bytes(v.bytes_out)
                ),
            ),
        ])
    })
}

pub async fn audit(ctx: &Ctx, args: AuditArgs) -> Result<()> {
    let r = ctx
        .session
        .system()
        .list_audit_log(ListAuditLogRequest {
            limit: args.limit,
            before_id: args.before.unwrap_or(0),
            ..Default::default()
        })
        .await
        .or_explain(&ctx.session)?;
    let views: Vec<AuditEntryView> = r.entries.iter().cloned().map(Into::into).collect();
    emit(ctx.format, &views, |_| {
        if r.entries.is_empty() {
            return "No audit entries.".into();
        }
        let now = exile_api::now_unix_ms();
        let mut t = output::table(&[
            "ID", "WHEN", "ACTOR", "ACTION", "TARGET", "RESULT", "DETAIL", "PEER",
        ]);
        for e in &r.entries {
            t.add_row([
                e.id.to_string(),
                output::ago(e.at_unix_ms, now),
                output::or_dash(&e.actor),
                e.action.clone(),
                output::or_dash(&e.target),
                e.result.clone(),
                output::or_dash(&e.detail),
                output::or_dash(&e.peer),
            ]);
        }
        output::render(&t)
    })
}

pub async fn errors(ctx: &Ctx, args: ErrorsArgs) -> Result<()> {
    let r = ctx
        .session
        .system()
        .list_errors(ListErrorsRequest {
            limit: args.limit,
            method: args.method.unwrap_or_default(),
            code: args.code.unwrap_or_default(),
        })
        .await
        .or_explain(&ctx.session)?;
    let views: Vec<ServerErrorView> = r.errors.iter().cloned().map(Into::into).collect();
    emit(ctx.format, &views, |_| {
        if r.errors.is_empty() {
            return format!(
                "No failed calls remembered ({} since start).",
                r.errors_total
            );
        }
        let now = exile_api::now_unix_ms();
        let mut t = output::table(&["WHEN", "METHOD", "CODE", "PEER", "MESSAGE"]);
        for e in &r.errors {
            t.add_row([
                output::ago(e.at_unix_ms, now),
                e.method.clone(),
                e.code.clone(),
                output::or_dash(&e.peer),
                output::or_dash(&e.message),
            ]);
        }
        output::render(&t)
    })
}

/// Prints a completion script for `shell` on standard output.
pub fn completion(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = Cli::command();
    // Into a buffer first: clap_complete panics when stdout is a closed pipe.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "exilectl", &mut script);
    output::print_bytes(&script)
}
