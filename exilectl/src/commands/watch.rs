//! `watch`: follows `EventService.Watch`, one line (or JSON object) per event, until Ctrl-C.

use anyhow::{Result, bail};
use exile_api::v1::{self as pb, InstanceState, SpawnerState, WatchRequest, watch_event::Kind};

use super::Ctx;
use crate::cli::WatchArgs;
use crate::client::RpcResult;
use crate::output::{self, Format, print_data_line, print_line};
use crate::view::{
    WatchEventView, instance_state, rfc3339_secs, rollout_finished, rollout_state, spawner_state,
};

pub async fn run(ctx: &Ctx, args: WatchArgs) -> Result<()> {
    let mut stream = ctx
        .session
        .events()
        .watch(WatchRequest {
            include_metrics: args.metrics,
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
            Ok(Some(event)) => print_event(ctx.format, event)?,
            Ok(None) => bail!(
                "the master at {} closed the event stream",
                ctx.session.master
            ),
            Err(status) => return Err(ctx.session.error(&status).context("event stream ended")),
        }
    }
}

fn print_event(format: Format, event: pb::WatchEvent) -> Result<()> {
    match format {
        Format::Table => print_line(&line(&event)),
        Format::Json => print_data_line(&output::json(&WatchEventView::from(event), false)?),
        Format::Yaml => print_data_line(&format!(
            "---\n{}",
            serde_yaml::to_string(&WatchEventView::from(event))?.trim_end()
        )),
    }
}

/// One human line for an event.
pub fn line(e: &pb::WatchEvent) -> String {
    let at = rfc3339_secs(e.at_unix_ms).unwrap_or_else(|| "-".into());
    let what = match &e.kind {
        Some(Kind::Snapshot(s)) => {
            let online = s
                .spawners
                .iter()
                .filter(|s| SpawnerState::from_wire(s.state).is_attached())
                .count();
            let running = s
                .instances
                .iter()
                .filter(|i| InstanceState::from_wire(i.state).is_serving())
                .count();
            let mut l = format!(
                "snapshot: {} spawners ({online} online), {} instances ({running} running)",
                s.spawners.len(),
                s.instances.len()
            );
            if !s.builds.is_empty() {
                l.push_str(&format!(", {} builds", s.builds.len()));
            }
            let rolling = s
                .rollouts
                .iter()
                .filter(|r| !rollout_finished(r.state))
                .count();
            if rolling > 0 {
                l.push_str(&format!(", {rolling} rollouts running"));
            }
            l
        }
        Some(Kind::SpawnerUpdated(s)) => format!(
            "spawner {} state {}{} instances {}/{}",
            s.id,
            spawner_state(s.state).to_ascii_uppercase(),
            if s.region.is_empty() {
                String::new()
            } else {
                format!(" region {}", s.region)
            },
            s.instance_count,
            s.capacity
        ),
        Some(Kind::SpawnerRemoved(id)) => format!("spawner {id} removed"),
        Some(Kind::InstanceUpdated(i)) => {
            let mut l = format!(
                "instance {} state {} on {}",
                i.id,
                instance_state(i.state).to_ascii_uppercase(),
                i.spawner_id
            );
            match i.ports.as_slice() {
                [] => {}
                [p] => l.push_str(&format!(" port {}", p.port)),
                ps => {
                    let list: Vec<String> = ps.iter().map(|p| p.port.to_string()).collect();
                    l.push_str(&format!(" ports {}", list.join(",")));
                }
            }
            // Games that report players through the SDK have a maximum; others show none.
            if i.max_players > 0 || i.players > 0 {
                l.push_str(&format!(" players {}/{}", i.players, i.max_players));
            }
            if !i.message.is_empty() {
                l.push_str(&format!(" ({})", i.message));
            }
            l
        }
        Some(Kind::InstanceRemoved(id)) => format!("instance {id} removed"),
        Some(Kind::SpawnerMetrics(s)) => {
            let r = s.resources.unwrap_or_default();
            format!(
                "spawner {} cpu {} mem {} / {} instances {}/{}",
                s.id,
                output::percent(r.cpu_percent),
                output::bytes(r.memory_bytes),
                output::bytes(r.memory_total_bytes),
                s.instance_count,
                s.capacity
            )
        }
        Some(Kind::BuildUpdated(b)) => format!(
            "build {}@{} ({}) instances {} spawners {}",
            b.name, b.version, b.id, b.instance_count, b.spawner_count
        ),
        Some(Kind::BuildRemoved(id)) => format!("build {id} removed"),
        Some(Kind::RolloutUpdated(r)) => rollout_line(r),
        Some(Kind::FleetUpdated(f)) => {
            let spec = f.spec.clone().unwrap_or_default();
            let st = f.status.clone().unwrap_or_default();
            let mut l = format!(
                "fleet {} replicas {} current {} ready {} allocated {}",
                f.name, spec.replicas, st.current, st.ready, st.allocated
            );
            if !st.message.is_empty() {
                l.push_str(&format!(": {}", st.message));
            }
            crate::output::clean(&l)
        }
        Some(Kind::FleetRemoved(name)) => format!("fleet {} deleted", crate::output::clean(name)),
        Some(Kind::FleetScaled(e)) => crate::output::clean(&format!(
            "fleet {} scaled {} -> {} by {}: {}",
            e.fleet, e.from, e.to, e.by, e.reason
        )),
        Some(Kind::Lagged(n)) => format!("lagged: {n} events lost, a new snapshot follows"),
        None => "unknown event (is exilectl older than the master?)".into(),
    };
    // Messages, regions and build names come from games and users.
    format!("{at} {}", output::clean(&what))
}

/// A rollout's progress on one line, as `watch` and `build rollout status --watch` print it.
pub fn rollout_line(r: &pb::Rollout) -> String {
    let mut l = format!(
        "rollout {} of {}@{} {} replaced {}/{}",
        r.id,
        r.build_name,
        r.to_version,
        rollout_state(r.state).to_ascii_uppercase(),
        r.replaced,
        r.total
    );
    if r.in_progress > 0 {
        l.push_str(&format!(" in progress {}", r.in_progress));
    }
    if r.waiting_allocated > 0 {
        l.push_str(&format!(" held back {}", r.waiting_allocated));
    }
    l.push_str(&format!(" failed {}", r.failed));
    if !r.message.is_empty() {
        l.push_str(&format!(" ({})", output::clean(&r.message)));
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_line() {
        let e = pb::WatchEvent {
            sequence: 1,
            at_unix_ms: 1_700_000_000_000,
            kind: Some(Kind::InstanceUpdated(pb::Instance {
                id: "inst-x".into(),
                spawner_id: "spw-y".into(),
                state: InstanceState::Running as i32,
                ports: vec![pb::Port {
                    port: 7801,
                    ..Default::default()
                }],
                ..Default::default()
            })),
        };
        assert_eq!(
            line(&e),
            "2023-11-14T22:13:20Z instance inst-x state RUNNING on spw-y port 7801"
        );
    }

    #[test]
    fn instance_line_shows_players_of_games_that_report_them() {
        let e = pb::WatchEvent {
            sequence: 2,
            at_unix_ms: 1_700_000_000_000,
            kind: Some(Kind::InstanceUpdated(pb::Instance {
                id: "inst-x".into(),
                spawner_id: "spw-y".into(),
                state: InstanceState::Ready as i32,
                players: 7,
                max_players: 16,
                message: "the game is ready".into(),
                ..Default::default()
            })),
        };
        assert_eq!(
            line(&e),
            "2023-11-14T22:13:20Z instance inst-x state READY on spw-y players 7/16 (the game is ready)"
        );
    }

    #[test]
    fn crash_output_in_a_message_is_shown_not_obeyed() {
        let e = pb::WatchEvent {
            sequence: 4,
            at_unix_ms: 1_700_000_000_000,
            kind: Some(Kind::InstanceUpdated(pb::Instance {
                id: "inst-x".into(),
                spawner_id: "spw-y".into(),
                state: InstanceState::Crashed as i32,
                message: "exited with code 3\nlast output:\n\x1b]0;pwned\x07".into(),
                ..Default::default()
            })),
        };
        assert_eq!(
            line(&e),
            "2023-11-14T22:13:20Z instance inst-x state CRASHED on spw-y (exited with code 3\\u{a}last output:\\u{a}\\u{1b}]0;pwned\\u{7})"
        );
    }

    #[test]
    fn rollout_line_shows_progress_and_why() {
        let e = pb::WatchEvent {
            sequence: 3,
            at_unix_ms: 1_700_000_000_000,
            kind: Some(Kind::RolloutUpdated(pb::Rollout {
                id: "rol-1".into(),
                build_name: "openarena".into(),
                to_version: "0.8.9".into(),
                state: pb::RolloutState::Running as i32,
                total: 6,
                replaced: 2,
                in_progress: 2,
                waiting_allocated: 1,
                message: "waiting for the canary".into(),
                ..Default::default()
            })),
        };
        assert_eq!(
            line(&e),
            "2023-11-14T22:13:20Z rollout rol-1 of openarena@0.8.9 RUNNING replaced 2/6 in progress 2 held back 1 failed 0 (waiting for the canary)"
        );
    }

    #[test]
    fn snapshot_line_counts() {
        let e = pb::WatchEvent {
            sequence: 0,
            at_unix_ms: 1_700_000_000_000,
            kind: Some(Kind::Snapshot(pb::Snapshot {
                spawners: vec![
                    pb::Spawner {
                        state: SpawnerState::Online as i32,
                        ..Default::default()
                    },
                    pb::Spawner {
                        state: SpawnerState::Offline as i32,
                        ..Default::default()
                    },
                ],
                instances: vec![pb::Instance {
                    state: InstanceState::Ready as i32,
                    ..Default::default()
                }],
                ..Default::default()
            })),
        };
        assert_eq!(
            line(&e),
            "2023-11-14T22:13:20Z snapshot: 2 spawners (1 online), 1 instances (1 running)"
        );
    }
}
