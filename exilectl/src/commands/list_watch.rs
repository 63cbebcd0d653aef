//! `instance list --watch` and `spawner list --watch`: the list from the Watch stream's
//! snapshot, then each row again whenever it changes (as kubectl's `--watch` does), until
//! Ctrl-C. In JSON and YAML, one object per instance or spawner and per change.

use std::collections::HashSet;

use anyhow::{Result, bail};
use exile_api::v1::{self as pb, WatchRequest, watch_event::Kind};
use serde::Serialize;

use super::Ctx;
use super::instance::instance_table;
use super::spawner::spawner_table;
use crate::client::RpcResult;
use crate::output::{self, Format, print_data_line, print_line};
use crate::view::{InstanceView, SpawnerView};

/// Follows instances, keeping those of `spawner` (empty: all) in `states` (empty: all).
pub async fn instances(ctx: &Ctx, spawner: String, states: Vec<i32>) -> Result<()> {
    let keep = |i: &pb::Instance| {
        (spawner.is_empty() || i.spawner_id == spawner)
            && (states.is_empty() || states.contains(&i.state))
    };
    let mut shown = HashSet::new();
    follow(ctx, |kind| match kind {
        Kind::Snapshot(s) => {
            let rows: Vec<pb::Instance> = s.instances.into_iter().filter(|i| keep(i)).collect();
            shown = rows.iter().map(|i| i.id.clone()).collect();
            match ctx.format {
                Format::Table if rows.is_empty() => print_line("No instances."),
                Format::Table => print_line(&instance_table(&rows)),
                f => rows
                    .into_iter()
                    .try_for_each(|i| object(f, &InstanceView::from(i))),
            }
        }
        // One that left the filter (stopped, moved) is shown once more, so the change is seen.
        Kind::InstanceUpdated(i) if keep(&i) || shown.contains(&i.id) => {
            if keep(&i) {
                shown.insert(i.id.clone());
            } else {
                shown.remove(&i.id);
            }
            match ctx.format {
                Format::Table => print_line(second_line(&instance_table(&[i]))),
                f => object(f, &InstanceView::from(i)),
            }
        }
        Kind::InstanceRemoved(id) if shown.remove(&id) => removed(ctx.format, &id),
        _ => Ok(()),
    })
    .await
}

/// Follows spawners, keeping those of `region` (empty: all).
pub async fn spawners(ctx: &Ctx, region: String) -> Result<()> {
    let keep = |s: &pb::Spawner| region.is_empty() || s.region == region;
    let mut shown = HashSet::new();
    follow(ctx, |kind| match kind {
        Kind::Snapshot(s) => {
            let rows: Vec<pb::Spawner> = s.spawners.into_iter().filter(|s| keep(s)).collect();
            shown = rows.iter().map(|s| s.id.clone()).collect();
            match ctx.format {
                Format::Table => print_line(&spawner_table(&rows)),
                f => rows
                    .into_iter()
                    .try_for_each(|s| object(f, &SpawnerView::from(s))),
            }
        }
        Kind::SpawnerUpdated(s) if keep(&s) => {
            shown.insert(s.id.clone());
            match ctx.format {
                Format::Table => print_line(second_line(&spawner_table(&[s]))),
                f => object(f, &SpawnerView::from(s)),
            }
        }
        Kind::SpawnerRemoved(id) if shown.remove(&id) => removed(ctx.format, &id),
        _ => Ok(()),
    })
    .await
}

/// Hands every event of the Watch stream to `on` until Ctrl-C or the stream fails.
async fn follow(ctx: &Ctx, mut on: impl FnMut(Kind) -> Result<()>) -> Result<()> {
    let mut stream = ctx
        .session
        .events()
        .watch(WatchRequest {
            include_metrics: false,
        })
        .await
        .or_explain(&ctx.session)?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let next = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            next = stream.message() => next,
        };
        match next {
            Ok(Some(pb::WatchEvent {
                kind: Some(kind), ..
            })) => on(kind)?,
            Ok(Some(_)) => {}
            Ok(None) => bail!(
                "the master at {} closed the event stream",
                ctx.session.master
            ),
            Err(status) => return Err(ctx.session.error(&status).context("event stream ended")),
        }
    }
}

/// The row of a one-row table, without its header.
fn second_line(table: &str) -> &str {
    table.lines().nth(1).unwrap_or_default()
}

/// One object: a JSON line or a YAML document.
fn object<T: Serialize>(format: Format, value: &T) -> Result<()> {
    match format {
        Format::Yaml => print_data_line(&format!(
            "---\n{}",
            serde_yaml::to_string(value)?.trim_end()
        )),
        _ => print_data_line(&output::json(value, false)?),
    }
}

fn removed(format: Format, id: &str) -> Result<()> {
    match format {
        Format::Table => print_line(&format!("{id} removed")),
        f => object(f, &serde_json::json!({ "id": id, "removed": true })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_row_is_printed_without_the_header() {
        let i = pb::Instance {
            id: "inst-1".into(),
            spawner_id: "spw-1".into(),
            ..Default::default()
        };
        let row = second_line(&instance_table(&[i])).to_owned();
        assert!(row.starts_with("inst-1 "), "{row}");
        assert!(!row.contains("SPAWNER"), "{row}");
    }
}
