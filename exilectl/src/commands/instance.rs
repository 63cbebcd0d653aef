//! `instance …`: spawn, list, inspect and drive game-server instances.

use std::time::Duration;

use anyhow::{Result, anyhow};
use exile_api::v1::{
    self as pb, GetInstanceRequest, InstanceState, ListInstancesRequest, PlacementStrategy,
    RemoveInstanceRequest, RenameInstanceRequest, RestartInstanceRequest, SpawnInstanceRequest,
    StartInstanceRequest, StopInstanceRequest,
};

use super::Ctx;
use crate::cli::{InstanceCommand, SpawnArgs};
use crate::client::RpcResult;
use crate::output::{self, emit, fields, print_line};
use crate::view::{InstanceView, PortView, instance_build, instance_state};

pub async fn run(ctx: &Ctx, cmd: InstanceCommand) -> Result<()> {
    let mut client = ctx.session.instances();
    let s = &ctx.session;
    match cmd {
        InstanceCommand::Spawn(args) => {
            let (wait, wait_timeout) = (args.wait, args.wait_timeout);
            let r = client
                .spawn_instance(spawn_request(*args))
                .await
                .or_explain(s)?;
            match r.instance {
                Some(i) if wait => {
                    let running = wait_running(ctx, i, wait_timeout).await?;
                    one(ctx, Some(running), "Spawned")
                }
                other => one(ctx, other, "Spawned"),
            }
        }
        InstanceCommand::List {
            spawner,
            state,
            watch: true,
        } => {
            let states = state
                .into_iter()
                .map(|st| InstanceState::from(st) as i32)
                .collect();
            super::list_watch::instances(ctx, spawner.unwrap_or_default(), states).await
        }
        InstanceCommand::List { spawner, state, .. } => {
            let r = client
                .list_instances(ListInstancesRequest {
                    spawner_id: spawner.unwrap_or_default(),
                    states: state
                        .into_iter()
                        .map(|st| InstanceState::from(st) as i32)
                        .collect(),
                })
                .await
                .or_explain(s)?;
            let views: Vec<InstanceView> = r.instances.iter().cloned().map(Into::into).collect();
            emit(ctx.format, &views, |_| {
                if r.instances.is_empty() {
                    "No instances.".into()
                } else {
                    instance_table(&r.instances)
                }
            })
        }
        InstanceCommand::Get { id } => {
            let r = client
                .get_instance(GetInstanceRequest { id })
                .await
                .or_explain(s)?;
            let view = r.instance.clone().map(InstanceView::from);
            emit(ctx.format, &view, |_| {
                r.instance.as_ref().map(instance_fields).unwrap_or_default()
            })
        }
        InstanceCommand::Start { id } => {
            let r = client
                .start_instance(StartInstanceRequest { id })
                .await
                .or_explain(s)?;
            one(ctx, r.instance, "Started")
        }
        InstanceCommand::Stop { id, grace } => {
            let r = client
                .stop_instance(StopInstanceRequest {
                    id,
                    grace_period_seconds: grace.unwrap_or(0),
                })
                .await
                .or_explain(s)?;
            one(ctx, r.instance, "Stopped")
        }
        InstanceCommand::Restart { id, grace } => {
            let r = client
                .restart_instance(RestartInstanceRequest {
                    id,
                    grace_period_seconds: grace.unwrap_or(0),
                })
                .await
                .or_explain(s)?;
            one(ctx, r.instance, "Restarted")
        }
        InstanceCommand::Rename { id, name } => {
            let r = client
                .rename_instance(RenameInstanceRequest {
                    id,
                    display_name: name,
                })
                .await
                .or_explain(s)?;
            let view = r.instance.clone().map(InstanceView::from);
            emit(ctx.format, &view, |_| match &r.instance {
                Some(i) if i.display_name.is_empty() => {
                    format!("Instance {} has no display name now.", i.id)
                }
                Some(i) => format!(
                    "Instance {} is now named {}.",
                    i.id,
                    output::clean(&i.display_name)
                ),
                None => "Renamed.".into(),
            })
        }
        InstanceCommand::Remove { id } => {
            client
                .remove_instance(RemoveInstanceRequest { id: id.clone() })
                .await
                .or_explain(s)?;
            print_line(&format!("Removed instance {id}."))
        }
    }
}

/// Polls the instance until its game server runs, with a spinner on a terminal; an
/// instance that ends first, or a deadline that passes, is an error naming why.
async fn wait_running(ctx: &Ctx, first: pb::Instance, limit: Duration) -> Result<pb::Instance> {
    let spinner = output::spinner("");
    let deadline = tokio::time::Instant::now() + limit;
    let mut client = ctx.session.instances();
    let mut i = first;
    // A game that dies on a bad flag is Running for a moment first: Running counts once it
    // has lasted RUNNING_SETTLE (Ready and Allocated at once, the game said so itself).
    let mut running_since: Option<tokio::time::Instant> = None;
    let result = loop {
        spinner.set_message(format!(
            "instance {} on {}: {}",
            i.id,
            i.spawner_id,
            output::title(&instance_state(i.state))
        ));
        let running = i.state == InstanceState::Running as i32;
        match waited(&i) {
            Some(Ok(())) if !running => break Ok(i),
            Some(Ok(())) => {
                let since = *running_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= RUNNING_SETTLE {
                    break Ok(i);
                }
            }
            Some(Err(why)) => break Err(anyhow!(why)),
            None => running_since = None,
        }
        if tokio::time::Instant::now() >= deadline {
            break Err(anyhow!(
                "instance {} is still {} after {} (see --wait-timeout)",
                i.id,
                instance_state(i.state),
                output::uptime(limit.as_secs())
            ));
        }
        tokio::time::sleep(WAIT_POLL).await;
        let id = i.id.clone();
        match client
            .get_instance(GetInstanceRequest { id })
            .await
            .or_explain(&ctx.session)?
            .instance
        {
            Some(next) => i = next,
            None => break Err(anyhow!("instance {} is gone", i.id)),
        }
    };
    spinner.finish_and_clear();
    result
}

/// Whether waiting for `i` to run is over: `Some(Ok)` once it runs, `Some(Err)` with the
/// reason when it ended first, `None` while it is still on its way.
fn waited(i: &pb::Instance) -> Option<Result<(), String>> {
    let state = InstanceState::try_from(i.state).unwrap_or(InstanceState::Unknown);
    if state.is_serving() {
        return Some(Ok(()));
    }
    match state {
        InstanceState::Crashed | InstanceState::Stopped | InstanceState::Unhealthy => {
            Some(Err(format!(
                "instance {} is {} before it ran: {}",
                i.id,
                instance_state(i.state),
                output::or_dash(&output::clean(&i.message))
            )))
        }
        _ => None,
    }
}

/// How long `spawn --wait` sees a game Running before it counts as running.
const RUNNING_SETTLE: Duration = Duration::from_secs(1);

/// How often `spawn --wait` asks for the instance's state.
const WAIT_POLL: Duration = Duration::from_millis(200);

fn spawn_request(a: SpawnArgs) -> SpawnInstanceRequest {
    SpawnInstanceRequest {
        spawner_id: a.spawner.unwrap_or_default(),
        region: a.region.unwrap_or_default(),
        spawner_selector: a.selectors.into_iter().collect(),
        build_version: a.host_build_version.unwrap_or_default(),
        build: a.build.unwrap_or_default(),
        labels: a.labels.into_iter().collect(),
        env: a.env.into_iter().collect(),
        args: a.args,
        strategy: a
            .strategy
            .map_or(PlacementStrategy::Unspecified, PlacementStrategy::from)
            as i32,
        restart_policy: a.restart.map(|mode| pb::RestartPolicy {
            mode: mode as i32,
            max_restarts: a.max_restarts.unwrap_or(0),
            window_seconds: a.restart_window.unwrap_or(0),
            ..Default::default()
        }),
        health_check: health_check(
            a.health_period,
            a.health_failure_threshold,
            a.health_initial_delay,
            a.unhealthy,
        ),
        agones_sdk: a.agones_sdk,
    }
}

/// The health check the flags ask for; `None` when none is given. Seconds become
/// milliseconds, saturating, so the master names any absurd value.
fn health_check(
    period: Option<f64>,
    failure_threshold: Option<u32>,
    initial_delay: Option<f64>,
    action: Option<pb::UnhealthyAction>,
) -> Option<pb::HealthCheck> {
    if period.is_none()
        && failure_threshold.is_none()
        && initial_delay.is_none()
        && action.is_none()
    {
        return None;
    }
    // `as` saturates a float to the integer's range, which is what we want here.
    let ms = |secs: f64| (secs * 1000.0).round() as u32;
    Some(pb::HealthCheck {
        period_ms: period.map(ms),
        failure_threshold,
        initial_delay_ms: initial_delay.map(ms),
        action: action.unwrap_or(pb::UnhealthyAction::Unspecified) as i32,
    })
}

/// Prints the instance a command returned: a sentence for people, the object otherwise.
fn one(ctx: &Ctx, instance: Option<pb::Instance>, verb: &str) -> Result<()> {
    let view = instance.clone().map(InstanceView::from);
    emit(ctx.format, &view, |_| match &instance {
        Some(i) => {
            let ports = ports(i);
            format!(
                "{verb} instance {} on spawner {}: {}{}",
                i.id,
                i.spawner_id,
                output::title(&instance_state(i.state)),
                if ports == "-" {
                    String::new()
                } else {
                    format!(", ports {ports}")
                }
            )
        }
        None => format!("{verb}."),
    })
}

/// `7801/udp,7802/tcp`.
pub fn ports(i: &pb::Instance) -> String {
    let list: Vec<String> = i
        .ports
        .iter()
        .map(|p| {
            let v = PortView::from(p.clone());
            format!("{}/{}", v.port, v.protocol.replace('_', "+"))
        })
        .collect();
    output::or_dash(&list.join(","))
}

/// The instance list table, shared with `spawner get`.
pub fn instance_table(instances: &[pb::Instance]) -> String {
    let now = exile_api::now_unix_ms();
    let mut t = output::table(&[
        "ID", "NAME", "SPAWNER", "STATE", "BUILD", "ADDRESS", "PORTS", "PLAYERS", "CPU", "MEMORY",
        "AGE",
    ]);
    for i in instances {
        let r = i.resources.unwrap_or_default();
        t.add_row([
            i.id.clone(),
            output::or_dash(&output::clean(&i.display_name)),
            i.spawner_id.clone(),
            output::title(&instance_state(i.state)),
            output::or_dash(&output::clean(&instance_build(i))),
            output::or_dash(&i.address),
            ports(i),
            players(i),
            output::percent(r.cpu_percent),
            output::bytes(r.memory_bytes),
            output::ago(i.created_at_unix_ms, now)
                .trim_end_matches(" ago")
                .to_owned(),
        ]);
    }
    output::render(&t)
}

fn players(i: &pb::Instance) -> String {
    if i.max_players > 0 {
        format!("{}/{}", i.players, i.max_players)
    } else {
        i.players.to_string()
    }
}

fn instance_fields(i: &pb::Instance) -> String {
    let now = exile_api::now_unix_ms();
    let r = i.resources.unwrap_or_default();
    let mut labels: Vec<String> = i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    fields(&[
        ("ID", i.id.clone()),
        ("Name", output::or_dash(&output::clean(&i.display_name))),
        ("Spawner", i.spawner_id.clone()),
        ("State", output::title(&instance_state(i.state))),
        ("Since", output::ago(i.state_changed_at_unix_ms, now)),
        ("Message", output::or_dash(&output::clean(&i.message))),
        ("Build", output::or_dash(&output::clean(&instance_build(i)))),
        ("Address", output::or_dash(&i.address)),
        ("Ports", ports(i)),
        (
            "PID",
            if i.pid == 0 {
                "-".into()
            } else {
                i.pid.to_string()
            },
        ),
        ("Restarts", i.restart_count.to_string()),
        (
            "Exit code",
            i.exit_code.map_or_else(|| "-".into(), |c| c.to_string()),
        ),
        ("Players", players(i)),
        ("Labels", output::or_dash(&output::clean(&labels.join(",")))),
        ("CPU", output::percent(r.cpu_percent)),
        ("Memory", output::bytes(r.memory_bytes)),
        ("Disk", output::bytes(r.disk_used_bytes)),
        ("Created", output::ago(i.created_at_unix_ms, now)),
        ("Started", output::ago(i.started_at_unix_ms, now)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::StrategyArg;

    #[test]
    fn spawn_request_carries_every_flag() {
        let req = spawn_request(SpawnArgs {
            spawner: None,
            wait: false,
            wait_timeout: Duration::from_secs(1),
            region: Some("eu".into()),
            selectors: vec![("gpu".into(), "yes".into())],
            labels: vec![("mode".into(), "ctf".into())],
            env: vec![("A".into(), "1".into())],
            build: Some("openarena@0.8.9".into()),
            host_build_version: None,
            strategy: Some(StrategyArg::Packed),
            restart: Some(pb::RestartMode::OnFailure),
            max_restarts: Some(3),
            restart_window: None,
            health_period: Some(0.5),
            health_failure_threshold: Some(4),
            health_initial_delay: None,
            unhealthy: Some(pb::UnhealthyAction::Restart),
            agones_sdk: true,
            args: vec!["-x".into()],
        });
        assert!(req.agones_sdk);
        assert_eq!(req.spawner_id, "");
        assert_eq!(req.region, "eu");
        assert_eq!(req.spawner_selector["gpu"], "yes");
        assert_eq!(req.labels["mode"], "ctf");
        assert_eq!(req.env["A"], "1");
        assert_eq!(req.build, "openarena@0.8.9");
        assert_eq!(req.build_version, "");
        assert_eq!(req.strategy, PlacementStrategy::Packed as i32);
        assert_eq!(req.args, ["-x"]);
        let policy = req.restart_policy.unwrap();
        assert_eq!(policy.mode, pb::RestartMode::OnFailure as i32);
        assert_eq!(policy.max_restarts, 3);
        assert_eq!(policy.window_seconds, 0);
        let health = req.health_check.unwrap();
        assert_eq!(health.period_ms, Some(500));
        assert_eq!(health.failure_threshold, Some(4));
        assert_eq!(health.initial_delay_ms, None);
        assert_eq!(health.action, pb::UnhealthyAction::Restart as i32);
        assert_eq!(health_check(None, None, None, None), None);
    }

    #[test]
    fn waiting_ends_when_the_game_runs_or_ends() {
        let at = |state: InstanceState, message: &str| pb::Instance {
            id: "inst-1".into(),
            state: state as i32,
            message: message.into(),
            ..Default::default()
        };
        assert_eq!(waited(&at(InstanceState::Starting, "")), None);
        assert_eq!(waited(&at(InstanceState::Running, "")), Some(Ok(())));
        assert_eq!(waited(&at(InstanceState::Ready, "")), Some(Ok(())));
        assert_eq!(
            waited(&at(InstanceState::Crashed, "exited with code 2\x1b[2J")),
            Some(Err(
                "instance inst-1 is crashed before it ran: exited with code 2\\u{1b}[2J".into()
            ))
        );
    }

    #[test]
    fn table_shows_human_states_and_ports() {
        let i = pb::Instance {
            id: "inst-1".into(),
            spawner_id: "spw-1".into(),
            state: InstanceState::Running as i32,
            ports: vec![pb::Port {
                name: "game".into(),
                port: 7801,
                protocol: pb::Protocol::Udp as i32,
            }],
            max_players: 16,
            players: 3,
            ..Default::default()
        };
        let out = instance_table(&[i]);
        assert!(out.contains("Running"), "{out}");
        assert!(out.contains("7801/udp"), "{out}");
        assert!(out.contains("3/16"), "{out}");
        assert!(!out.contains("INSTANCE_STATE"), "{out}");
    }

    #[test]
    fn table_shows_the_build_as_name_at_version() {
        let uploaded = pb::Instance {
            id: "inst-1".into(),
            build_name: "openarena".into(),
            build_version: "0.8.9".into(),
            ..Default::default()
        };
        let host = pb::Instance {
            id: "inst-2".into(),
            build_version: "demo-1".into(),
            ..Default::default()
        };
        let out = instance_table(&[uploaded, host]);
        let row = |id: &str| out.lines().find(|l| l.starts_with(id)).unwrap().to_owned();
        assert!(row("inst-1").contains(" openarena@0.8.9 "), "{out}");
        assert!(row("inst-2").contains(" demo-1 "), "{out}");
        assert!(!row("inst-2").contains('@'), "{out}");
    }
}
