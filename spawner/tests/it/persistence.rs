//! State on disk and re-adoption of instances across a spawner restart.

use exile_spawner::state::StateFile;
use exile_spawner::{Manager, OpContext, SpawnSpec, State};

use crate::support::*;

fn spec(id: &str) -> SpawnSpec {
    SpawnSpec {
        id: id.into(),
        args: vec!["--max-players".into(), "4".into()],
        ..Default::default()
    }
}

fn listening_lines(dir: &std::path::Path, id: &str) -> usize {
    read(dir.join(format!("instances/{id}/logs/output.log")))
        .matches("listening on port")
        .count()
}

#[tokio::test]
async fn running_instances_are_adopted_after_a_restart_and_never_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_port_range(5);
    let first = Manager::open(config(dir.path(), 5, ports.clone()))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let a = first.spawn(spec("a"), OpContext::default()).await.unwrap();
    let b = first.spawn(spec("b"), OpContext::default()).await.unwrap();
    reaper.watch(&a);
    reaper.watch(&b);
    for id in ["a", "b"] {
        eventually("the game started", || listening_lines(dir.path(), id) == 1).await;
    }
    first.shutdown(false).await.unwrap();
    assert!(
        alive(a.pid.unwrap()) && alive(b.pid.unwrap()),
        "shutdown stopped instances"
    );

    let saved = StateFile::load(dir.path()).unwrap();
    assert_eq!(saved.instances.len(), 2);
    assert!(saved.instances.iter().all(|r| r.start_ticks.is_some()));

    let second = Manager::open(config(dir.path(), 5, ports.clone()))
        .await
        .unwrap();
    let list = second.list().await.unwrap();
    assert_eq!(list.len(), 2);
    for (old, new) in [(&a, &list[0]), (&b, &list[1])] {
        assert_eq!(new.id, old.id);
        assert_eq!(new.state, State::Running);
        assert_eq!(new.pid, old.pid, "not the same process");
        assert_eq!(new.port(), old.port());
        assert_eq!(new.args, old.args);
    }
    // Still one game per instance: nothing was launched again.
    for id in ["a", "b"] {
        assert_eq!(listening_lines(dir.path(), id), 1);
    }
    assert_eq!(udp_status(a.port().unwrap())["max_players"], 4);

    // An adopted process that dies is noticed, with the status its supervisor recorded.
    kill9(a.pid.unwrap());
    let crashed = wait_for(&second, "a", "crashed", is(State::Crashed)).await;
    assert!(
        crashed
            .message
            .starts_with("killed by signal 9 (SIGKILL)\nlast output:\nlistening on port"),
        "{}",
        crashed.message
    );
    // An adopted process is stopped through its process group.
    let stopped = second.stop("b", None, OpContext::default()).await.unwrap();
    assert_eq!(stopped.state, State::Stopped);
    assert!(!group_alive(b.pid.unwrap()));
    // A new port allocation never hands out the ports the records hold.
    let c = second.spawn(spec("c"), OpContext::default()).await.unwrap();
    reaper.watch(&c);
    assert_ne!(c.port(), a.port());
    assert_ne!(c.port(), b.port());
    second.shutdown(true).await.unwrap();
    let saved = StateFile::load(dir.path()).unwrap();
    let states: Vec<_> = saved
        .instances
        .iter()
        .map(|r| (r.id.as_str(), r.state))
        .collect();
    assert_eq!(
        states,
        [
            ("a", State::Crashed),
            ("b", State::Stopped),
            ("c", State::Stopped)
        ]
    );
}

#[tokio::test]
async fn a_process_with_another_start_time_is_not_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_port_range(3);
    let first = Manager::open(config(dir.path(), 5, ports.clone()))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let rec = first.spawn(spec("x"), OpContext::default()).await.unwrap();
    reaper.watch(&rec);
    eventually("the game started", || listening_lines(dir.path(), "x") == 1).await;
    first.shutdown(false).await.unwrap();

    // Same pid, other start time: as if the pid had been reused by another program.
    let mut saved = StateFile::load(dir.path()).unwrap();
    let ticks = saved.instances[0].start_ticks.as_mut().unwrap();
    *ticks += 1;
    saved.save(dir.path()).unwrap();

    let second = Manager::open(config(dir.path(), 5, ports.clone()))
        .await
        .unwrap();
    let now = second.get("x").await.unwrap();
    assert_eq!(now.state, State::Crashed);
    assert_eq!(
        now.message,
        "exited while the spawner was down (exit status unknown)"
    );
    assert_eq!(now.pid, None);
    // Neither adopted nor killed nor launched again.
    assert!(alive(rec.pid.unwrap()), "the unrelated process was touched");
    assert_eq!(listening_lines(dir.path(), "x"), 1);
    second.shutdown(false).await.unwrap();
    assert_eq!(
        StateFile::load(dir.path()).unwrap().instances[0].state,
        State::Crashed
    );
}

#[tokio::test]
async fn a_process_that_died_while_down_is_marked_crashed() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_port_range(3);
    let first = Manager::open(config(dir.path(), 5, ports.clone()))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let rec = first.spawn(spec("x"), OpContext::default()).await.unwrap();
    reaper.watch(&rec);
    first.shutdown(false).await.unwrap();
    kill9(rec.pid.unwrap());
    eventually("the process is gone", || !alive(rec.pid.unwrap())).await;

    let second = Manager::open(config(dir.path(), 5, ports)).await.unwrap();
    let now = second.get("x").await.unwrap();
    assert_eq!(now.state, State::Crashed);
    assert_eq!(
        now.message,
        "killed by signal 9 (SIGKILL) while the spawner was down"
    );
    // It can be started again, on its old port.
    let again = second.start("x", OpContext::default()).await.unwrap();
    reaper.watch(&again);
    assert_eq!(again.port(), rec.port());
    second.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn an_exit_code_while_down_is_recorded_by_the_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let script = "read line; exit 7";
    let first = Manager::open(script_config(dir.path(), script))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let rec = first.spawn(spec("x"), OpContext::default()).await.unwrap();
    reaper.watch(&rec);
    first.shutdown(false).await.unwrap();
    // The game reads its console: the supervisor still carries the line with no spawner.
    let instance_dir = dir.path().join("instances/x");
    exit_through_console(&instance_dir, "bye").await;

    let second = Manager::open(script_config(dir.path(), script))
        .await
        .unwrap();
    let now = second.get("x").await.unwrap();
    assert_eq!(now.state, State::Crashed);
    assert_eq!(now.exit_code, Some(7));
    assert_eq!(now.message, "exited with code 7 while the spawner was down");
    second.shutdown(false).await.unwrap();
}

#[tokio::test]
async fn a_game_that_fails_while_the_spawner_is_down_gets_its_restart_policy() {
    let dir = tempfile::tempdir().unwrap();
    // Fails with 7 when told to on its console, the first time only.
    let script = "echo run; if [ -e failed-once ]; then exec sleep 60; fi; read line; touch failed-once; exit 7";
    let first = Manager::open(script_config(dir.path(), script))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let spec = SpawnSpec {
        id: "x".into(),
        restart_policy: Some(exile_api::v1::RestartPolicy {
            mode: exile_api::v1::RestartMode::OnFailure as i32,
            max_restarts: 3,
            window_seconds: 60,
            backoff_base_ms: 100,
            backoff_max_ms: 100,
        }),
        ..Default::default()
    };
    let rec = first.spawn(spec, OpContext::default()).await.unwrap();
    reaper.watch(&rec);
    first.shutdown(false).await.unwrap();
    let instance_dir = dir.path().join("instances/x");
    exit_through_console(&instance_dir, "fail").await;

    let second = Manager::open(script_config(dir.path(), script))
        .await
        .unwrap();
    let back = wait_for(&second, "x", "restarted", is(State::Running)).await;
    reaper.watch(&back);
    assert_eq!(back.restart_count, 1);
    assert_eq!(back.exit_code, Some(7));
    assert_eq!(
        back.message,
        "restarted automatically after: exited with code 7 while the spawner was down"
    );
    assert_ne!(back.pid, rec.pid);
    let log = instance_dir.join("logs/output.log");
    eventually("the second run logged", || {
        read(&log).matches("run\n").count() == 2
    })
    .await;
    second.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn a_launch_the_spawner_never_recorded_is_not_left_beside_its_pending_restart() {
    let dir = tempfile::tempdir().unwrap();
    let script = "echo run; exec sleep 60";
    let first = Manager::open(script_config(dir.path(), script))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let rec = first
        .spawn(
            SpawnSpec {
                id: "x".into(),
                ..Default::default()
            },
            OpContext::default(),
        )
        .await
        .unwrap();
    reaper.watch(&rec);
    first.shutdown(false).await.unwrap();
    // As if the spawner had died between launching a due restart and recording its pid.
    let mut saved = StateFile::load(dir.path()).unwrap();
    let r = &mut saved.instances[0];
    r.state = State::Starting;
    (r.pid, r.start_ticks, r.supervisor_pid, r.supervisor_ticks) = (None, None, None, None);
    r.pending_restart = Some(exile_spawner::restart::PendingRestart {
        due_unix_ms: 0,
        reason: "exited with code 3".into(),
    });
    saved.save(dir.path()).unwrap();

    let second = Manager::open(script_config(dir.path(), script))
        .await
        .unwrap();
    let back = wait_for(&second, "x", "restarted", is(State::Running)).await;
    reaper.watch(&back);
    assert_ne!(back.pid, rec.pid);
    eventually("the unrecorded game is gone", || !alive(rec.pid.unwrap())).await;
    assert!(alive(back.pid.unwrap()));
    second.shutdown(true).await.unwrap();
}

/// Sends `line` to a game through its supervisor alone (no spawner running) and waits until
/// the supervisor has recorded the game's exit.
async fn exit_through_console(instance_dir: &std::path::Path, line: &str) {
    let request = exile_spawner::supervisor::Request::Console(line.to_owned());
    exile_spawner::supervisor::request(instance_dir, &request)
        .await
        .expect("the supervisor takes the console line");
    eventually("the exit is recorded", || {
        instance_dir.join("exit.json").exists()
    })
    .await;
}
