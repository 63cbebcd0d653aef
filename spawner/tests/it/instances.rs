//! Instance lifecycle against real processes: spawn, stop, crash, capacity, ports, grace.

use std::collections::HashSet;
use std::time::Duration;

use exile_api::v1::{self, CommandErrorKind};
use exile_spawner::{Error, Manager, OpContext, SpawnSpec, State};

use crate::support::*;

fn spec(id: &str) -> SpawnSpec {
    SpawnSpec {
        id: id.into(),
        ..Default::default()
    }
}

fn ctx() -> OpContext {
    OpContext::default()
}

#[tokio::test]
async fn spawns_three_on_distinct_ports_and_stops_one() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::open(config(dir.path(), 20, free_port_range(10)))
        .await
        .unwrap();
    let mut events = manager.subscribe();
    let mut reaper = Reaper::default();
    let mut ports = HashSet::new();
    for id in ["a", "b", "c"] {
        let mut s = spec(id);
        s.env.insert("GREETING".into(), "hi".into());
        s.labels.insert("mode".into(), "ctf".into());
        let rec = manager.spawn(s, ctx()).await.unwrap();
        reaper.watch(&rec);
        assert_eq!(rec.state, State::Running);
        assert_eq!(rec.build_version, "v1");
        let port = rec.port().unwrap();
        assert!(ports.insert(port), "port {port} handed out twice");
        // The game really listens on its port and sees its instance id.
        assert_eq!(udp_status(port)["instance"], id);
    }
    let a = manager.get("a").await.unwrap();
    let log = dir.path().join("instances/a/logs/output.log");
    eventually("the game logs its port", || {
        read(&log).contains(&format!("listening on port {}", a.port().unwrap()))
    })
    .await;

    let pid = a.pid.unwrap();
    let stopped = manager.stop("a", None, ctx()).await.unwrap();
    assert_eq!(stopped.state, State::Stopped);
    assert_eq!(stopped.pid, None);
    assert_eq!(
        stopped.exit_code,
        Some(0),
        "the demo game exits 0 on SIGTERM"
    );
    assert!(!group_alive(pid), "process group {pid} survived the stop");
    assert!(read(&log).contains("shutting down"));
    // The others are untouched.
    for id in ["b", "c"] {
        assert_eq!(manager.get(id).await.unwrap().state, State::Running);
    }

    // Events: a went starting → running → stopping → stopped.
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        let status = event.status.unwrap();
        if status.id == "a" {
            seen.push(status.state);
        }
    }
    let expected: Vec<i32> = [
        v1::InstanceState::Starting,
        v1::InstanceState::Running,
        v1::InstanceState::Stopping,
        v1::InstanceState::Stopped,
    ]
    .into_iter()
    .map(Into::into)
    .collect();
    assert_eq!(seen, expected);
    let others: Vec<u32> = manager
        .list()
        .await
        .unwrap()
        .iter()
        .filter_map(|r| r.pid)
        .collect();
    assert_eq!(others.len(), 2);
    // Shutting down with stop_instances stops the rest.
    manager.shutdown(true).await.unwrap();
    for pid in others {
        assert!(!group_alive(pid), "{pid} survived a stopping shutdown");
    }
}

#[tokio::test]
async fn kill_9_is_reported_as_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::open(config(dir.path(), 5, free_port_range(3)))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let rec = manager.spawn(spec("x"), ctx()).await.unwrap();
    reaper.watch(&rec);
    kill9(rec.pid.unwrap());
    let crashed = wait_for(&manager, "x", "crashed", is(State::Crashed)).await;
    assert!(crashed.message.contains("signal 9"), "{}", crashed.message);
    assert_eq!(crashed.exit_code, None);
    assert_eq!(crashed.pid, None);
    // A crashed instance keeps its port and can be started again on it.
    let again = manager.start("x", ctx()).await.unwrap();
    reaper.watch(&again);
    assert_eq!(again.state, State::Running);
    assert_eq!(again.port(), rec.port());
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn capacity_is_enforced_with_a_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::open(config(dir.path(), 2, free_port_range(5)))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    for id in ["a", "b"] {
        reaper.watch(&manager.spawn(spec(id), ctx()).await.unwrap());
    }
    // Stopped instances still count.
    manager.stop("a", None, ctx()).await.unwrap();
    let err = manager.spawn(spec("c"), ctx()).await.unwrap_err();
    assert_eq!(err.kind(), CommandErrorKind::FailedPrecondition);
    assert_eq!(
        err.to_string(),
        "spawner test-spawner is at capacity (2/2 instances)"
    );
    // Removing one frees a slot.
    manager.remove("a", ctx()).await.unwrap();
    reaper.watch(&manager.spawn(spec("c"), ctx()).await.unwrap());
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn ports_run_out_and_busy_ports_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let range = free_port_range(3);
    // Another program holds the first port (UDP only): it must be skipped.
    let squatter = std::net::UdpSocket::bind(("0.0.0.0", *range.start())).unwrap();
    let manager = Manager::open(config(dir.path(), 10, range.clone()))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let mut got = Vec::new();
    for id in ["a", "b"] {
        let rec = manager.spawn(spec(id), ctx()).await.unwrap();
        reaper.watch(&rec);
        got.push(rec.port().unwrap());
    }
    assert!(!got.contains(range.start()), "{got:?} includes a busy port");
    let err = manager.spawn(spec("c"), ctx()).await.unwrap_err();
    assert_eq!(err.kind(), CommandErrorKind::FailedPrecondition);
    assert!(err.to_string().contains("no free port"), "{err}");
    assert!(
        manager.get("c").await.is_err(),
        "a refused spawn left an instance"
    );
    drop(squatter);
    reaper.watch(&manager.spawn(spec("c"), ctx()).await.unwrap());
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn a_program_ignoring_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    // A child of its own that ignores SIGTERM too: the SIGKILL must reach the whole group.
    let script = r#"trap "" TERM; (while :; do sleep 0.05; done) & echo ready; while :; do sleep 0.05; done"#;
    let manager = Manager::open(script_config(dir.path(), script))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let rec = manager.spawn(spec("stubborn"), ctx()).await.unwrap();
    reaper.watch(&rec);
    let pid = rec.pid.unwrap();
    let log = dir.path().join("instances/stubborn/logs/output.log");
    eventually("the script started", || read(&log).contains("ready")).await;

    let started = std::time::Instant::now();
    let stopped = manager
        .stop("stubborn", Some(Duration::from_millis(500)), ctx())
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(500), "stopped after {took:?}");
    assert_eq!(stopped.state, State::Stopped);
    assert!(stopped.message.contains("SIGKILL"), "{}", stopped.message);
    assert!(!group_alive(pid));
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn a_slow_stop_blocks_no_other_command() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"trap "" TERM; echo ready; while :; do sleep 0.05; done"#;
    let manager = Manager::open(script_config(dir.path(), script))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    for id in ["slow", "quick"] {
        reaper.watch(&manager.spawn(spec(id), ctx()).await.unwrap());
        let log = dir.path().join(format!("instances/{id}/logs/output.log"));
        eventually("the script trapped SIGTERM", || {
            read(&log).contains("ready")
        })
        .await;
    }
    let slow = tokio::spawn({
        let manager = manager.clone();
        async move {
            manager
                .stop("slow", Some(Duration::from_secs(3)), OpContext::default())
                .await
        }
    });
    wait_for(&manager, "slow", "stopping", is(State::Stopping)).await;
    // Meanwhile other instances are spawned and stopped at once (the quick one is killed
    // after a short grace since it ignores SIGTERM too).
    let third = manager.spawn(spec("third"), ctx()).await.unwrap();
    reaper.watch(&third);
    manager
        .stop("quick", Some(Duration::from_millis(100)), ctx())
        .await
        .unwrap();
    assert!(!slow.is_finished(), "the slow stop should still be running");
    assert_eq!(manager.get("slow").await.unwrap().state, State::Stopping);
    let stopped = slow.await.unwrap().unwrap();
    assert_eq!(stopped.state, State::Stopped);
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn start_restart_remove_and_state_errors() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::open(config(dir.path(), 5, free_port_range(4)))
        .await
        .unwrap();
    let mut events = manager.subscribe();
    let mut reaper = Reaper::default();
    let first = manager.spawn(spec("r"), ctx()).await.unwrap();
    reaper.watch(&first);

    let err = manager.start("r", ctx()).await.unwrap_err();
    assert_eq!(err.kind(), CommandErrorKind::FailedPrecondition);
    assert!(err.to_string().contains("already running"), "{err}");
    let err = manager.spawn(spec("r"), ctx()).await.unwrap_err();
    assert_eq!(err.kind(), CommandErrorKind::FailedPrecondition);
    let err = manager.spawn(spec("../evil"), ctx()).await.unwrap_err();
    assert_eq!(err.kind(), CommandErrorKind::InvalidArgument);
    let mut other = spec("o");
    other.build_version = "v2".into();
    let err = manager.spawn(other, ctx()).await.unwrap_err();
    assert_eq!(err.kind(), CommandErrorKind::FailedPrecondition);
    for err in [
        manager.stop("nope", None, ctx()).await.unwrap_err(),
        manager.start("nope", ctx()).await.unwrap_err(),
        manager.restart("nope", None, ctx()).await.unwrap_err(),
        manager.remove("nope", ctx()).await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), CommandErrorKind::NotFound, "{err}");
    }

    let restarted = manager.restart("r", None, ctx()).await.unwrap();
    reaper.watch(&restarted);
    assert_eq!(restarted.restart_count, 1);
    assert_eq!(restarted.state, State::Running);
    assert_ne!(restarted.pid, first.pid);
    assert!(!alive(first.pid.unwrap()));

    manager.stop("r", None, ctx()).await.unwrap();
    let err = manager.stop("r", None, ctx()).await.unwrap_err();
    assert_eq!(err.kind(), CommandErrorKind::FailedPrecondition);
    let started = manager.start("r", ctx()).await.unwrap();
    reaper.watch(&started);
    assert_eq!(
        started.port(),
        first.port(),
        "the old port is reused when free"
    );
    assert_eq!(udp_status(started.port().unwrap())["instance"], "r");

    let instance_dir = dir.path().join("instances/r");
    assert!(instance_dir.exists());
    let last = manager.remove("r", ctx()).await.unwrap();
    assert!(!alive(started.pid.unwrap()));
    assert!(!instance_dir.exists());
    assert_eq!(last.id, "r");
    assert_eq!(
        manager.get("r").await.unwrap_err().kind(),
        CommandErrorKind::NotFound
    );
    let mut removed = false;
    while let Ok(event) = events.try_recv() {
        removed |= event.removed && event.status.is_some_and(|s| s.id == "r");
    }
    assert!(removed, "no removed event");
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn a_spawn_that_cannot_launch_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), 5, free_port_range(2));
    cfg.template = Some(exile_spawner::process::CommandTemplate::new(
        vec!["/nonexistent/game".into()],
        dir.path().to_owned(),
    ));
    let manager = Manager::open(cfg).await.unwrap();
    let err = manager.spawn(spec("ghost"), ctx()).await.unwrap_err();
    assert!(matches!(err, Error::Launch { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/game"), "{err}");
    assert!(manager.list().await.unwrap().is_empty());
    assert!(!dir.path().join("instances/ghost").exists());
    manager.shutdown(false).await.unwrap();
}

#[tokio::test]
async fn expired_or_cancelled_operations_do_not_run() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::open(config(dir.path(), 5, free_port_range(2)))
        .await
        .unwrap();
    let past = OpContext {
        deadline: Some(tokio::time::Instant::now()),
        ..Default::default()
    };
    let err = manager.spawn(spec("late"), past).await.unwrap_err();
    assert_eq!(err.kind(), CommandErrorKind::DeadlineExceeded);
    assert!(manager.list().await.unwrap().is_empty());

    let mut reaper = Reaper::default();
    reaper.watch(&manager.spawn(spec("on"), ctx()).await.unwrap());
    let cancelled = OpContext::default();
    cancelled.cancel.cancel();
    let err = manager.stop("on", None, cancelled).await.unwrap_err();
    assert_eq!(err.kind(), CommandErrorKind::DeadlineExceeded);
    assert_eq!(manager.get("on").await.unwrap().state, State::Running);
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn the_environment_reaches_the_game_but_no_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::open(script_config(
        dir.path(),
        r#"echo "token=$GAME_TOKEN"; sleep 30"#,
    ))
    .await
    .unwrap();
    let mut reaper = Reaper::default();
    let mut s = spec("env");
    s.env.insert("GAME_TOKEN".into(), "hunter2-secret".into());
    let rec = manager.spawn(s, ctx()).await.unwrap();
    reaper.watch(&rec);
    let log = dir.path().join("instances/env/logs/output.log");
    eventually("the game printed it", || {
        read(&log).contains("token=hunter2-secret")
    })
    .await;
    let supervisor = rec.supervisor_pid.unwrap();
    let cmdline = std::fs::read(format!("/proc/{supervisor}/cmdline")).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains("hunter2"));
    let environ = std::fs::read(format!("/proc/{supervisor}/environ")).unwrap();
    assert!(!String::from_utf8_lossy(&environ).contains("hunter2"));
    assert!(!String::from_utf8_lossy(&environ).contains("EXILE_INSTANCE_ID"));
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn a_spawn_takes_the_supervisor_on_standby_and_another_is_made_ready() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::open(script_config(dir.path(), "sleep 30"))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    eventually("a supervisor is on standby", || {
        manager.supervisor_on_standby().is_some()
    })
    .await;
    let first = manager.supervisor_on_standby().unwrap();
    let rec = manager.spawn(spec("a"), ctx()).await.unwrap();
    reaper.watch(&rec);
    assert_eq!(rec.state, State::Running);
    assert_eq!(rec.supervisor_pid, Some(first), "the standby runs it");
    // It moved into the instance's directory and names no instance on its command line.
    let cwd = std::fs::read_link(format!("/proc/{first}/cwd")).unwrap();
    assert!(cwd.ends_with("instances/a"), "{}", cwd.display());
    let cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{first}/cmdline")).unwrap())
            .into_owned();
    assert!(cmdline.ends_with("\0--standby\0"), "{cmdline:?}");
    eventually("another supervisor is on standby", || {
        manager.supervisor_on_standby().is_some_and(|p| p != first)
    })
    .await;

    // A standby that died is not handed an instance: the spawn starts a supervisor of its own.
    let second = manager.supervisor_on_standby().unwrap();
    kill9(second);
    let rec = manager.spawn(spec("b"), ctx()).await.unwrap();
    reaper.watch(&rec);
    assert_eq!(rec.state, State::Running);
    assert!(!matches!(rec.supervisor_pid, Some(p) if p == first || p == second));
    eventually("a third supervisor is on standby", || {
        manager
            .supervisor_on_standby()
            .is_some_and(|p| p != second && alive(p))
    })
    .await;
    let third = manager.supervisor_on_standby().unwrap();

    // The spawner's end is the standby's: it reads the end of its stdin and exits.
    manager.shutdown(true).await.unwrap();
    drop(manager);
    eventually("the standby exits with its spawner", || !alive(third)).await;
}
