//! `build rollout …`: start a rollout, show or follow its progress, cancel it, list them.

use anyhow::{Result, anyhow, bail};
use exile_api::v1::{
    self as pb, CancelRolloutRequest, GetRolloutRequest, ListRolloutsRequest, RolloutState,
    StartRolloutRequest, WatchRequest, watch_event::Kind,
};

use super::super::Ctx;
use super::call;
use crate::cli::build::{
    RolloutArgs, RolloutCommand, RolloutTarget, SpawnerSelector, StartRolloutArgs,
};
use crate::client::RpcResult;
use crate::commands::watch::rollout_line;
use crate::output::{self, Format, emit, fields, print_data_line, print_line};
use crate::view::{RolloutView, rfc3339_secs, rollout_finished, rollout_state};

pub async fn run(ctx: &Ctx, args: RolloutArgs) -> Result<()> {
    match args.command {
        None => start(ctx, args.start).await,
        Some(RolloutCommand::Status { target, watch }) => {
            let target = target
                .map(|t| RolloutTarget::parse(&t))
                .transpose()
                .map_err(|e| anyhow!(e))?;
            match (target, watch) {
                (Some(t), true) => follow(ctx, t).await,
                (Some(t), false) => {
                    let r = get(ctx, &t).await?;
                    emit(ctx.format, &RolloutView::from(r.clone()), |_| {
                        status_fields(&r)
                    })
                }
                (None, true) => {
                    bail!("name the rollout to follow: a build name or a rollout id (rol-…)")
                }
                (None, false) => {
                    let r = call(
                        ctx,
                        ctx.session
                            .builds()
                            .list_rollouts(ListRolloutsRequest::default()),
                    )
                    .await?;
                    let running: Vec<pb::Rollout> = r
                        .rollouts
                        .into_iter()
                        .filter(|r| r.state == RolloutState::Running as i32)
                        .collect();
                    let views: Vec<RolloutView> = running.iter().cloned().map(Into::into).collect();
                    emit(ctx.format, &views, |_| {
                        if running.is_empty() {
                            "No rollout is running.".into()
                        } else {
                            rollout_table(&running)
                        }
                    })
                }
            }
        }
        Some(RolloutCommand::Cancel { id }) => {
            let r = call(
                ctx,
                ctx.session
                    .builds()
                    .cancel_rollout(CancelRolloutRequest { id: id.clone() }),
            )
            .await?;
            let r = r
                .rollout
                .ok_or_else(|| anyhow!("the master answered without the rollout"))?;
            emit(ctx.format, &RolloutView::from(r.clone()), |_| {
                format!(
                    "Cancelled rollout {id}: {}/{} instances replaced; replaced instances stay replaced.",
                    r.replaced, r.total
                )
            })
        }
        Some(RolloutCommand::List { name }) => {
            let r = call(
                ctx,
                ctx.session.builds().list_rollouts(ListRolloutsRequest {
                    build_name: name.unwrap_or_default(),
                }),
            )
            .await?;
            let views: Vec<RolloutView> = r.rollouts.iter().cloned().map(Into::into).collect();
            emit(ctx.format, &views, |_| {
                if r.rollouts.is_empty() {
                    "No rollouts.".into()
                } else {
                    rollout_table(&r.rollouts)
                }
            })
        }
    }
}

/// The request `build rollout NAME@VERSION` sends.
fn start_request(a: &StartRolloutArgs) -> Result<StartRolloutRequest> {
    let Some(build) = a.build.clone() else {
        bail!("name the version to roll out: NAME@VERSION");
    };
    Ok(StartRolloutRequest {
        build,
        max_unavailable: a.max_unavailable.unwrap_or(0),
        canary_percent: a.canary.unwrap_or(0),
        failure_threshold: a.failure_threshold.unwrap_or(0),
        spawner_selector: a.spawners.to_map().map_err(|e| anyhow!(e))?,
        activate: a.activate,
    })
}

async fn start(ctx: &Ctx, a: StartRolloutArgs) -> Result<()> {
    let req = start_request(&a)?;
    let build = req.build.clone();
    let r = call(ctx, ctx.session.builds().start_rollout(req)).await?;
    let r = r
        .rollout
        .ok_or_else(|| anyhow!("the master answered without the rollout"))?;
    let sentence = started_sentence(&build, &r);
    if !a.wait {
        return emit(ctx.format, &RolloutView::from(r), |_| sentence);
    }
    if ctx.format == Format::Table {
        print_line(&sentence)?;
    }
    follow(ctx, RolloutTarget::Id(r.id)).await
}

fn started_sentence(build: &str, r: &pb::Rollout) -> String {
    let canary = if r.canary_percent > 0 {
        format!(", {}% first as a canary", r.canary_percent)
    } else {
        String::new()
    };
    format!(
        "Started rollout {} to {build}: {} instances to replace, {} at a time{canary} on {} \
         (follow it with `exilectl build rollout status {} --watch`).",
        r.id,
        r.total,
        r.max_unavailable.max(1),
        SpawnerSelector::describe(&r.spawner_selector),
        r.id
    )
}

async fn get(ctx: &Ctx, target: &RolloutTarget) -> Result<pb::Rollout> {
    let req = match target {
        RolloutTarget::Id(id) => GetRolloutRequest {
            id: id.clone(),
            ..Default::default()
        },
        RolloutTarget::Name(name) => GetRolloutRequest {
            build_name: name.clone(),
            ..Default::default()
        },
    };
    call(ctx, ctx.session.builds().get_rollout(req))
        .await?
        .rollout
        .ok_or_else(|| anyhow!("the master answered without the rollout"))
}

/// Prints a rollout's progress until it ends: its state now, then one line per change from
/// the event stream. Succeeds only when the rollout succeeded.
async fn follow(ctx: &Ctx, target: RolloutTarget) -> Result<()> {
    let mut stream = ctx
        .session
        .events()
        .watch(WatchRequest {
            include_metrics: false,
        })
        .await
        .or_explain(&ctx.session)?;
    // Every change after the snapshot arrives as an event, so the state read after it misses
    // nothing.
    let first = stream.message().await.map_err(|s| ctx.session.error(&s))?;
    if first.is_none() {
        bail!(
            "the master at {} closed the event stream",
            ctx.session.master
        );
    }
    let mut last = get(ctx, &target).await?;
    show(ctx.format, exile_api::now_unix_ms(), &last)?;
    let id = last.id.clone();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    while !rollout_finished(last.state) {
        let next = tokio::select! {
            _ = &mut ctrl_c => bail!(
                "stopped following rollout {id}; it goes on (`exilectl build rollout status {id}`)"
            ),
            next = stream.message() => next,
        };
        let event = match next {
            Ok(Some(e)) => e,
            Ok(None) => bail!(
                "the master closed the event stream before rollout {id} ended; follow it again \
                 with `exilectl build rollout status {id} --watch`"
            ),
            Err(s) => {
                return Err(ctx
                    .session
                    .error(&s)
                    .context(format!("the event stream ended before rollout {id} did")));
            }
        };
        let (at, now) = match event.kind {
            Some(Kind::RolloutUpdated(r)) if r.id == id => (event.at_unix_ms, r),
            // Events were lost: read the rollout again rather than miss its end.
            Some(Kind::Lagged(_)) => (
                exile_api::now_unix_ms(),
                get(ctx, &RolloutTarget::Id(id.clone())).await?,
            ),
            _ => continue,
        };
        if now != last {
            show(ctx.format, at, &now)?;
            last = now;
        }
    }
    outcome(&last)
}

/// One progress line (table) or one compact object (JSON) or YAML document per state.
fn show(format: Format, at_unix_ms: i64, r: &pb::Rollout) -> Result<()> {
    let view = RolloutView::from(r.clone());
    match format {
        Format::Table => print_line(&format!(
            "{} {}",
            rfc3339_secs(at_unix_ms).unwrap_or_else(|| "-".into()),
            rollout_line(r)
        )),
        Format::Json => print_data_line(&output::json(&view, false)?),
        Format::Yaml => print_data_line(&format!(
            "---\n{}",
            serde_yaml::to_string(&view)?.trim_end()
        )),
    }
}

/// Ok when the rollout succeeded; otherwise the error says how it ended and why.
fn outcome(r: &pb::Rollout) -> Result<()> {
    if r.state == RolloutState::Succeeded as i32 {
        return Ok(());
    }
    let how = rollout_state(r.state).replace('_', " ");
    let why = if r.message.is_empty() {
        String::new()
    } else {
        format!(": {}", output::clean(&r.message))
    };
    bail!(
        "rollout {} of {}@{} {how} after replacing {}/{} instances{why}",
        r.id,
        r.build_name,
        r.to_version,
        r.replaced,
        r.total
    )
}

/// `3/6 replaced, 1 in progress, 1 held back, 0 failed`.
fn progress(r: &pb::Rollout) -> String {
    let mut s = format!("{}/{} replaced", r.replaced, r.total);
    if r.in_progress > 0 {
        s.push_str(&format!(", {} in progress", r.in_progress));
    }
    if r.waiting_allocated > 0 {
        s.push_str(&format!(
            ", {} held back (allocated or reserved)",
            r.waiting_allocated
        ));
    }
    s.push_str(&format!(", {} failed", r.failed));
    s
}

fn status_fields(r: &pb::Rollout) -> String {
    let now = exile_api::now_unix_ms();
    let canary = if r.canary_percent > 0 {
        format!("{}%", r.canary_percent)
    } else {
        "none".into()
    };
    fields(&[
        ("ID", r.id.clone()),
        ("Build", format!("{}@{}", r.build_name, r.to_version)),
        ("State", output::title(&rollout_state(r.state))),
        ("Progress", progress(r)),
        (
            "Policy",
            format!(
                "max unavailable {}, canary {canary}, failure threshold {}",
                r.max_unavailable, r.failure_threshold
            ),
        ),
        (
            "Spawners",
            output::clean(&SpawnerSelector::describe(&r.spawner_selector)),
        ),
        ("Message", output::or_dash(&output::clean(&r.message))),
        (
            "Started",
            format!(
                "{} by {}",
                output::ago(r.started_at_unix_ms, now),
                output::or_dash(&output::clean(&r.created_by))
            ),
        ),
        ("Ended", output::ago(r.finished_at_unix_ms, now)),
    ])
}

fn rollout_table(rollouts: &[pb::Rollout]) -> String {
    let now = exile_api::now_unix_ms();
    let mut t = output::table(&[
        "ID", "BUILD", "STATE", "REPLACED", "FAILED", "HELD", "STARTED", "ENDED",
    ]);
    for r in rollouts {
        t.add_row([
            r.id.clone(),
            format!("{}@{}", r.build_name, r.to_version),
            output::title(&rollout_state(r.state)),
            format!("{}/{}", r.replaced, r.total),
            r.failed.to_string(),
            r.waiting_allocated.to_string(),
            output::ago(r.started_at_unix_ms, now),
            output::ago(r.finished_at_unix_ms, now),
        ]);
    }
    output::render(&t)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{BuildCommand, Cli, Command};

    fn rollout(state: RolloutState) -> pb::Rollout {
        pb::Rollout {
            id: "rol-1".into(),
            build_name: "openarena".into(),
            to_version: "0.8.9".into(),
            state: state as i32,
            total: 6,
            replaced: 3,
            in_progress: 1,
            waiting_allocated: 1,
            max_unavailable: 2,
            canary_percent: 10,
            failure_threshold: 1,
            ..Default::default()
        }
    }

    #[test]
    fn only_a_succeeded_rollout_is_a_success() {
        assert!(outcome(&rollout(RolloutState::Succeeded)).is_ok());
        let mut r = rollout(RolloutState::RolledBack);
        r.message = "2 new instances crashed".into();
        let e = outcome(&r).unwrap_err().to_string();
        assert_eq!(
            e,
            "rollout rol-1 of openarena@0.8.9 rolled back after replacing 3/6 instances: 2 new instances crashed"
        );
        assert!(outcome(&rollout(RolloutState::Failed)).is_err());
        assert!(outcome(&rollout(RolloutState::Cancelled)).is_err());
    }

    #[test]
    fn status_shows_progress_and_policy() {
        let out = status_fields(&rollout(RolloutState::Running));
        for want in [
            "openarena@0.8.9",
            "Running",
            "3/6 replaced, 1 in progress, 1 held back (allocated or reserved), 0 failed",
            "max unavailable 2, canary 10%, failure threshold 1",
            "every spawner",
        ] {
            assert!(out.contains(want), "{want:?} missing in:\n{out}");
        }
        let table = rollout_table(&[rollout(RolloutState::RolledBack)]);
        assert!(table.contains("Rolled back"), "{table}");
        assert!(table.contains("3/6"), "{table}");
    }

    #[test]
    fn the_start_request_carries_every_flag() {
        let cli = Cli::try_parse_from([
            "exilectl",
            "build",
            "rollout",
            "openarena@0.8.9",
            "--max-unavailable",
            "2",
            "--canary",
            "10%",
            "--failure-threshold",
            "3",
            "--spawners",
            "region=eu,gpu=yes",
            "--activate",
        ])
        .unwrap();
        let Command::Build(BuildCommand::Rollout(args)) = cli.command else {
            panic!("wrong command");
        };
        assert!(args.command.is_none());
        let req = start_request(&args.start).unwrap();
        assert_eq!(req.build, "openarena@0.8.9");
        assert_eq!(req.max_unavailable, 2);
        assert_eq!(req.canary_percent, 10);
        assert_eq!(req.failure_threshold, 3);
        assert_eq!(req.spawner_selector.len(), 2);
        assert_eq!(req.spawner_selector["region"], "eu");
        assert!(req.activate);
        let sentence = started_sentence(&req.build, &rollout(RolloutState::Running));
        assert!(
            sentence.contains("6 instances to replace, 2 at a time, 10% first as a canary"),
            "{sentence}"
        );
    }
}
