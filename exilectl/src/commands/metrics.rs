//! `metrics`: the resource history of a spawner or an instance.

use anyhow::Result;
use exile_api::v1::{GetMetricsHistoryRequest, MetricsTarget};
use serde::Serialize;

use super::Ctx;
use crate::cli::{MetricsArgs, MetricsKind};
use crate::client::RpcResult;
use crate::output::{self, emit};
use crate::view::rfc3339_secs;

/// One row of history.
#[derive(Debug, Serialize)]
pub struct MetricPointView {
    /// Bucket start, RFC 3339.
    pub at: Option<String>,
    /// CPU % of one core.
    pub cpu_percent: f64,
    /// Resident memory, bytes.
    pub memory_bytes: u64,
    /// Disk used, bytes.
    pub disk_used_bytes: u64,
    /// Players.
    pub players: u32,
}

pub async fn run(ctx: &Ctx, args: MetricsArgs) -> Result<()> {
    let target = match args.kind {
        MetricsKind::Spawner => MetricsTarget::Spawner,
        MetricsKind::Instance => MetricsTarget::Instance,
    };
    let now = exile_api::now_unix_ms();
    let since = i64::try_from(args.since.as_millis()).unwrap_or(i64::MAX / 2);
    let step = match args.step {
        Some(s) => u64::try_from(s.as_millis()).unwrap_or(u64::MAX),
        None => u64::try_from((since / 30).max(1000)).unwrap_or(1000),
    };
    let r = ctx
        .session
        .metrics()
        .get_metrics_history(GetMetricsHistoryRequest {
            target: target as i32,
            id: args.id.clone(),
            from_unix_ms: now.saturating_sub(since),
            to_unix_ms: now,
            step_ms: step,
        })
        .await
        .or_explain(&ctx.session)?;
    let views: Vec<MetricPointView> = r
        .points
        .iter()
        .map(|p| MetricPointView {
            at: rfc3339_secs(p.at_unix_ms),
            cpu_percent: p.cpu_percent,
            memory_bytes: p.memory_bytes,
            disk_used_bytes: p.disk_used_bytes,
            players: p.players,
        })
        .collect();
    emit(ctx.format, &views, |_| {
        if r.points.is_empty() {
            return format!(
                "No samples for {} in the last {}.",
                args.id,
                output::uptime(u64::try_from(since / 1000).unwrap_or(0))
            );
        }
        let mut t = output::table(&["TIME", "CPU", "MEMORY", "DISK", "PLAYERS"]);
        for p in &r.points {
            t.add_row(vec![
                rfc3339_secs(p.at_unix_ms).unwrap_or_default(),
                output::percent(p.cpu_percent),
                output::bytes(p.memory_bytes),
                output::bytes(p.disk_used_bytes),
                p.players.to_string(),
            ]);
        }
        output::render(&t)
    })
}
