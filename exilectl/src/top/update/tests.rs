//! Every action through `update`: what it changes and which effects it asks for.

use exile_api::v1::{self as pb, InstanceState, watch_event::Kind};

use super::*;
use crate::top::action::Conn;
use crate::top::app::Identity;

fn inst(id: &str, spawner: &str, state: InstanceState) -> pb::Instance {
    pb::Instance {
        id: id.into(),
        spawner_id: spawner.into(),
        state: state as i32,
        ..Default::default()
    }
}

fn spawner(id: &str) -> pb::Spawner {
    pb::Spawner {
        id: id.into(),
        state: pb::SpawnerState::Online as i32,
        capacity: 10,
        ..Default::default()
    }
}

fn event(kind: Kind) -> Action {
    Action::Watch(Box::new(pb::WatchEvent {
        sequence: 1,
        at_unix_ms: 1_700_000_000_000,
        kind: Some(kind),
    }))
}

/// An app that has seen a snapshot of two spawners and three instances.
pub fn fleet() -> App {
    let mut app = App::new(Identity::default(), true, 1_700_000_000_000);
    update(
        &mut app,
        event(Kind::Snapshot(pb::Snapshot {
            spawners: vec![spawner("spw-a"), spawner("spw-b")],
            instances: vec![
                inst("inst-1", "spw-a", InstanceState::Running),
                inst("inst-2", "spw-b", InstanceState::Ready),
                inst("inst-3", "spw-a", InstanceState::Crashed),
            ],
            ..Default::default()
        })),
    );
    app
}

#[test]
fn snapshot_then_deltas_build_the_fleet() {
    let mut app = fleet();
    assert!(app.synced);
    assert_eq!(app.row_ids(View::Instances), ["inst-1", "inst-2", "inst-3"]);
    update(&mut app, event(Kind::InstanceRemoved("inst-2".into())));
    update(
        &mut app,
        event(Kind::InstanceUpdated(inst(
            "inst-4",
            "spw-b",
            InstanceState::Starting,
        ))),
    );
    update(&mut app, event(Kind::SpawnerRemoved("spw-b".into())));
    assert_eq!(app.row_ids(View::Instances), ["inst-1", "inst-3", "inst-4"]);
    assert_eq!(app.row_ids(View::Spawners), ["spw-a"]);
    // Deltas are remembered for the detail view's events; the snapshot is not.
    assert_eq!(app.events_about("inst-4").count(), 1);
    assert!(
        app.events_about("inst-4")
            .next()
            .unwrap()
            .contains("STARTING")
    );
    // Metrics update the spawner's figures without a line in the events.
    let mut m = spawner("spw-a");
    m.instance_count = 2;
    m.resources = Some(pb::Resources {
        cpu_percent: 50.0,
        ..Default::default()
    });
    update(&mut app, event(Kind::SpawnerMetrics(m)));
    assert_eq!(app.spawners["spw-a"].instance_count, 2);
    assert_eq!(app.events_about("spw-a").count(), 0);
}

#[test]
fn lagged_marks_the_view_stale_until_the_next_snapshot() {
    let mut app = fleet();
    update(&mut app, event(Kind::Lagged(12)));
    assert!(!app.synced);
    assert!(app.status.as_ref().unwrap().text.contains("12 events"));
    update(
        &mut app,
        event(Kind::Snapshot(pb::Snapshot {
            instances: vec![inst("inst-9", "spw-a", InstanceState::Running)],
            ..Default::default()
        })),
    );
    assert!(app.synced);
    // The fresh snapshot replaces everything, the removed rows included.
    assert_eq!(app.row_ids(View::Instances), ["inst-9"]);
}

#[test]
fn connection_states_and_identity_reach_the_header() {
    let mut app = fleet();
    let retry = Conn::Retrying {
        attempt: 2,
        in_ms: 1000,
        error: "down".into(),
    };
    update(&mut app, Action::Conn(retry.clone()));
    assert_eq!(app.conn, retry);
    update(
        &mut app,
        Action::Identity {
            subject: "ann".into(),
            role: "viewer".into(),
        },
    );
    assert_eq!(
        (app.identity.subject.as_str(), app.identity.role.as_str()),
        ("ann", "viewer")
    );
}

#[test]
fn views_selection_and_jumps() {
    let mut app = fleet();
    assert!(update(&mut app, Action::Show(View::Spawners)).is_empty());
    assert_eq!(app.view, View::Spawners);
    update(&mut app, Action::Show(View::Instances));
    assert_eq!(app.selected_id().as_deref(), Some("inst-1"));
    update(&mut app, Action::Move(1));
    assert_eq!(app.selected_id().as_deref(), Some("inst-2"));
    update(&mut app, Action::Move(10));
    assert_eq!(app.selected_id().as_deref(), Some("inst-3"));
    update(&mut app, Action::Jump(false));
    assert_eq!(app.selected_id().as_deref(), Some("inst-1"));
    update(&mut app, Action::Jump(true));
    assert_eq!(app.selected_id().as_deref(), Some("inst-3"));
    // The selection follows its row when another row is removed above it.
    update(&mut app, event(Kind::InstanceRemoved("inst-1".into())));
    assert_eq!(app.selected_id().as_deref(), Some("inst-3"));
    update(&mut app, Action::Quit);
    assert!(app.quit);
    assert_eq!(update(&mut app, Action::Suspend), [Effect::Suspend]);
    assert!(update(&mut app, Action::Redraw).is_empty());
    assert!(app.dirty);
}

#[test]
fn filter_is_typed_live_matches_labels_and_clears() {
    let mut app = fleet();
    app.instances
        .get_mut("inst-2")
        .unwrap()
        .labels
        .insert("mode".into(), "ctf".into());
    update(&mut app, Action::StartFilter);
    assert_eq!(app.mode, Mode::Filter);
    for c in "CRASH".chars() {
        update(&mut app, Action::Input(c));
    }
    assert_eq!(app.row_ids(View::Instances), ["inst-3"]);
    for _ in 0..5 {
        update(&mut app, Action::Erase);
    }
    for c in "mode=ctf".chars() {
        update(&mut app, Action::Input(c));
    }
    assert_eq!(app.row_ids(View::Instances), ["inst-2"]);
    update(&mut app, Action::Submit);
    assert_eq!(
        (&app.mode, app.filter.as_str()),
        (&Mode::Normal, "mode=ctf")
    );
    // Display names are searched too.
    app.instances.get_mut("inst-3").unwrap().display_name = "EU CTF #1".into();
    app.filter = "ctf #".into();
    assert_eq!(app.row_ids(View::Instances), ["inst-3"]);
    update(&mut app, Action::Back);
    assert_eq!(app.filter, "");
    update(&mut app, Action::StartFilter);
    update(&mut app, Action::Input('x'));
    update(&mut app, Action::Cancel);
    assert_eq!((&app.mode, app.filter.as_str()), (&Mode::Normal, ""));
}

#[test]
fn sort_cycles_columns_and_reverses() {
    let mut app = fleet();
    app.instances.get_mut("inst-1").unwrap().players = 5;
    app.instances.get_mut("inst-3").unwrap().players = 9;
    // STATE is the fourth instance column: crashed < ready < running.
    for _ in 0..3 {
        update(&mut app, Action::SortNext);
    }
    assert_eq!(app.row_ids(View::Instances), ["inst-3", "inst-2", "inst-1"]);
    update(&mut app, Action::SortReverse);
    assert_eq!(app.row_ids(View::Instances), ["inst-1", "inst-2", "inst-3"]);
    // PLAYERS sorts by number.
    app.sort[View::Instances.index()] = (6, true);
    assert_eq!(app.row_ids(View::Instances), ["inst-3", "inst-1", "inst-2"]);
    for _ in 0..instances::COLUMNS.len() - 6 {
        update(&mut app, Action::SortNext);
    }
    assert_eq!(app.sort[View::Instances.index()].0, 0, "wraps around");
}

#[test]
fn help_toggles_and_back_closes_it() {
    let mut app = fleet();
    update(&mut app, Action::ToggleHelp);
    assert_eq!(app.mode, Mode::Help);
    update(&mut app, Action::ToggleHelp);
    assert_eq!(app.mode, Mode::Normal);
    update(&mut app, Action::ToggleHelp);
    update(&mut app, Action::Back);
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn operations_ask_first_and_run_only_on_yes() {
    let mut app = fleet();
    update(&mut app, Action::Move(1));
    update(&mut app, Action::Ask(OpKind::Stop));
    assert_eq!(app.mode, Mode::Confirm(Op::Stop("inst-2".into())));
    assert!(update(&mut app, Action::Answer(false)).is_empty());
    assert_eq!(app.mode, Mode::Normal);
    for (kind, op) in [
        (OpKind::Stop, Op::Stop("inst-2".into())),
        (OpKind::Start, Op::Start("inst-2".into())),
        (OpKind::Restart, Op::Restart("inst-2".into())),
        (OpKind::Remove, Op::Remove("inst-2".into())),
        (OpKind::Spawn, Op::Spawn(None)),
    ] {
        update(&mut app, Action::Ask(kind));
        assert_eq!(update(&mut app, Action::Answer(true)), [Effect::Run(op)]);
    }
    // Instances have no drain.
    update(&mut app, Action::Ask(OpKind::Drain));
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.status.as_ref().unwrap().error);

    update(&mut app, Action::Show(View::Spawners));
    update(&mut app, Action::Move(1));
    for (kind, op) in [
        (OpKind::Spawn, Op::Spawn(Some("spw-b".into()))),
        (OpKind::Drain, Op::Drain("spw-b".into())),
        (OpKind::Undrain, Op::Undrain("spw-b".into())),
        (OpKind::Remove, Op::RemoveSpawner("spw-b".into())),
    ] {
        update(&mut app, Action::Ask(kind));
        assert_eq!(app.mode, Mode::Confirm(op.clone()));
        assert_eq!(update(&mut app, Action::Answer(true)), [Effect::Run(op)]);
    }
    update(&mut app, Action::Ask(OpKind::Stop));
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .text
            .contains("select an instance")
    );
    // Escape at the question cancels too.
    update(&mut app, Action::Ask(OpKind::Drain));
    update(&mut app, Action::Cancel);
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn results_show_the_masters_sentence() {
    let mut app = fleet();
    update(
        &mut app,
        Action::Done {
            op: Op::Stop("inst-1".into()),
            result: Ok("stopped inst-1".into()),
        },
    );
    assert_eq!(app.status.as_ref().unwrap().text, "stopped inst-1");
    update(
        &mut app,
        Action::Done {
            op: Op::Console {
                id: "inst-1".into(),
                line: "say hi".into(),
            },
            result: Err("permission denied: needs operator".into()),
        },
    );
    let s = app.status.clone().unwrap();
    assert!(s.error && s.text == "permission denied: needs operator");
    // A key press clears the sentence; news from the master does not.
    update(&mut app, Action::Tick(1));
    assert!(app.status.is_some());
    update(&mut app, Action::Move(1));
    assert!(app.status.is_none());
}

#[test]
fn detail_follows_logs_fetches_history_and_closes() {
    let mut app = fleet();
    let fx = update(&mut app, Action::Open);
    let target = Target::Instance("inst-1".into());
    assert_eq!(
        fx,
        [
            Effect::FollowLogs(target.clone()),
            Effect::FetchHistory(target.clone())
        ]
    );
    update(
        &mut app,
        Action::History {
            target: target.clone(),
            points: vec![pb::MetricPoint::default(); 3],
        },
    );
    // History of another target (a late answer) is ignored.
    update(
        &mut app,
        Action::History {
            target: Target::Instance("inst-2".into()),
            points: vec![],
        },
    );
    assert_eq!(app.detail.as_ref().unwrap().history.len(), 3);
    // A live update of the instance adds a sample.
    let mut live = inst("inst-1", "spw-a", InstanceState::Running);
    live.resources = Some(pb::Resources::default());
    update(&mut app, event(Kind::InstanceUpdated(live)));
    assert_eq!(app.detail.as_ref().unwrap().history.len(), 4);
    // The clock asks for the history again every so often.
    let opened = app.now_ms;
    assert!(update(&mut app, Action::Tick(opened + 1)).is_empty());
    assert_eq!(
        update(&mut app, Action::Tick(opened + HISTORY_EVERY_MS)),
        [Effect::FetchHistory(target.clone())]
    );
    for (n, line) in ["a", "b", "c"].iter().enumerate() {
        update(
            &mut app,
            Action::Log {
                target: target.clone(),
                data: format!("{line}\n").into_bytes(),
                skipped: 0,
            },
        );
        assert_eq!(app.detail.as_ref().unwrap().log.len(), n + 1);
    }
    update(&mut app, Action::LogPause);
    assert!(app.detail.as_ref().unwrap().log.paused);
    update(&mut app, Action::Move(-1));
    assert_eq!(app.detail.as_ref().unwrap().log.back(), 1);
    update(&mut app, Action::Jump(false));
    assert_eq!(app.detail.as_ref().unwrap().log.back(), 2);
    update(&mut app, Action::Jump(true));
    let log = &app.detail.as_ref().unwrap().log;
    assert!(!log.paused && log.back() == 0);
    update(&mut app, Action::LogPause);
    update(&mut app, Action::LogPause);
    assert!(!app.detail.as_ref().unwrap().log.paused);
    update(
        &mut app,
        Action::LogEnded {
            target: target.clone(),
            error: Some("permission denied: x".into()),
        },
    );
    assert_eq!(
        app.detail.as_ref().unwrap().log.ended.as_deref(),
        Some("permission denied: x")
    );
    assert_eq!(update(&mut app, Action::Back), [Effect::StopLogs]);
    assert!(app.detail.is_none());
    // Builds have no detail.
    update(&mut app, Action::Show(View::Builds));
    assert!(update(&mut app, Action::Open).is_empty());
}

#[test]
fn console_sends_lines_and_refuses_outside_an_instance() {
    let mut app = fleet();
    update(&mut app, Action::StartConsole);
    assert_eq!(app.mode, Mode::Normal);
    assert!(app.status.as_ref().unwrap().error);
    update(&mut app, Action::Open);
    update(&mut app, Action::StartConsole);
    assert_eq!(app.mode, Mode::Console(String::new()));
    for c in "say hi".chars() {
        update(&mut app, Action::Input(c));
    }
    update(&mut app, Action::Erase);
    update(&mut app, Action::Input('!'));
    assert_eq!(
        update(&mut app, Action::Submit),
        [Effect::Run(Op::Console {
            id: "inst-1".into(),
            line: "say h!".into()
        })]
    );
    // Still open for the next line; an empty line sends nothing; too long is refused here.
    assert_eq!(app.mode, Mode::Console(String::new()));
    assert!(update(&mut app, Action::Submit).is_empty());
    for _ in 0..=exile_api::limits::MAX_CONSOLE_LINE {
        update(&mut app, Action::Input('x'));
    }
    assert!(update(&mut app, Action::Submit).is_empty());
    assert!(app.status.as_ref().unwrap().error);
    update(&mut app, Action::Cancel);
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn command_line_switches_views_spawns_and_quits() {
    let mut app = fleet();
    let run = |app: &mut App, text: &str| {
        update(app, Action::StartCommand);
        for c in text.chars() {
            update(app, Action::Input(c));
        }
        update(app, Action::Submit)
    };
    run(&mut app, "spawners");
    assert_eq!(app.view, View::Spawners);
    run(&mut app, "b");
    assert_eq!(app.view, View::Builds);
    run(&mut app, "inst");
    assert_eq!(app.view, View::Instances);
    run(&mut app, "spawn spw-b");
    assert_eq!(app.mode, Mode::Confirm(Op::Spawn(Some("spw-b".into()))));
    update(&mut app, Action::Answer(false));
    run(&mut app, "nope");
    assert!(
        app.status
            .as_ref()
            .unwrap()
            .text
            .contains("unknown command `nope`")
    );
    run(&mut app, "help");
    assert_eq!(app.mode, Mode::Help);
    update(&mut app, Action::ToggleHelp);
    run(&mut app, "q");
    assert!(app.quit);
}
