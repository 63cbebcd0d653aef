//! Restart policy against real processes: backoff, crash-loop limit, clean exits.

use std::time::Duration;

use exile_api::v1;
use exile_spawner::{Manager, OpContext, SpawnSpec, State};

use crate::support::*;

fn spec(id: &str, mode: v1::RestartMode, max: u32) -> SpawnSpec {
    SpawnSpec {
        id: id.into(),
        restart_policy: Some(v1::RestartPolicy {
            mode: mode as i32,
            max_restarts: max,
            window_seconds: 60,
            backoff_base_ms: 100,
            backoff_max_ms: 400,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_crash_loop_is_restarted_with_backoff_then_ends_crashed_with_its_last_output() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"echo "booting $$"; echo "fatal: map not found" >&2; exit 3"#;
    let manager = Manager::open(script_config(dir.path(), script))
        .await
        .unwrap();
    let mut events = manager.subscribe();
    let started = std::time::Instant::now();
    manager
        .spawn(
            spec("loop", v1::RestartMode::OnFailure, 3),
            OpContext::default(),
        )
        .await
        .unwrap();
    let end = wait_for(&manager, "loop", "crashed for good", |r| {
        r.state == State::Crashed
    })
    .await;
    let took = started.elapsed();
    assert_eq!(end.restart_count, 3);
    assert_eq!(end.exit_code, Some(3));
    assert!(
        end.message
            .starts_with("exited with code 3; crash loop: 3 restarts within 60s"),
        "{}",
        end.message
    );
    assert!(
        end.message.contains("fatal: map not found"),
        "{}",
        end.message
    );
    assert!(end.message.len() <= 2048 + 200, "{}", end.message.len());
    // Backoff 100 + 200 + 400 ms at least.
    assert!(took >= Duration::from_millis(700), "gave up after {took:?}");
    // Every restart went through Starting with a sentence saying when.
    let mut restarting = 0;
    while let Ok(ev) = events.try_recv() {
        let s = ev.status.unwrap();
        if s.message.contains("restarting in") {
            restarting += 1;
        }
    }
    assert_eq!(restarting, 3);
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn on_failure_leaves_a_clean_exit_alone_and_always_restarts_it() {
    let dir = tempfile::tempdir().unwrap();
    let script = r#"echo once; exit 0"#;
    let manager = Manager::open(script_config(dir.path(), script))
        .await
        .unwrap();
    manager
        .spawn(
            spec("clean", v1::RestartMode::OnFailure, 3),
            OpContext::default(),
        )
        .await
        .unwrap();
    let done = wait_for(&manager, "clean", "stopped", is(State::Stopped)).await;
    assert_eq!(done.restart_count, 0);
    assert_eq!(done.exit_code, Some(0));

    manager
        .spawn(
            spec("again", v1::RestartMode::Always, 2),
            OpContext::default(),
        )
        .await
        .unwrap();
    let done = wait_for(&manager, "again", "gave up", |r| {
        r.restart_count == 2 && r.state == State::Stopped
    })
    .await;
    assert!(done.message.contains("crash loop"), "{}", done.message);
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn a_stop_during_the_backoff_cancels_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::open(script_config(dir.path(), "exit 1"))
        .await
        .unwrap();
    let mut s = spec("slow", v1::RestartMode::OnFailure, 5);
    if let Some(p) = s.restart_policy.as_mut() {
        p.backoff_base_ms = 60_000;
        p.backoff_max_ms = 60_000;
    }
    manager.spawn(s, OpContext::default()).await.unwrap();
    wait_for(&manager, "slow", "waiting to restart", |r| {
        r.message.contains("restarting in")
    })
    .await;
    let now = manager
        .stop("slow", None, OpContext::default())
        .await
        .unwrap();
    assert_eq!(now.state, State::Stopped);
    assert!(
        now.message.contains("pending restart was cancelled"),
        "{}",
        now.message
    );
    assert_eq!(now.restart_count, 0);
    manager.shutdown(true).await.unwrap();
}

/// Manager settings built the way the binary builds them: from flags, over a build directory
/// holding `manifest` as its `exile-build.toml`.
fn from_build_dir(
    data: &std::path::Path,
    build: &std::path::Path,
    manifest: &str,
) -> exile_spawner::Result<exile_spawner::ManagerConfig> {
    std::fs::write(build.join("exile-build.toml"), manifest).unwrap();
    let ports = free_port_range(4);
    let mut config = exile_spawner::Config::with_defaults("http://127.0.0.1:1", data);
    config.build_dir = build.to_owned();
    config.build_command = Some(r#"/bin/sh -c "exit 3""#.into());
    config.port_range = format!("{}-{}", ports.start(), ports.end());
    config.supervisor_bin = Some(supervisor_bin());
    exile_spawner::ManagerConfig::from_config(&config)
}

#[tokio::test]
async fn a_build_manifest_sets_the_policy_of_spawns_that_name_none() {
    let data = tempfile::tempdir().unwrap();
    let build = tempfile::tempdir().unwrap();
    let manifest = r#"
[restart]
policy = "on-failure"
max_restarts = 2
window_secs = 60
backoff_ms = 50
backoff_max_ms = 100
"#;
    let config = from_build_dir(data.path(), build.path(), manifest).unwrap();
    let manager = Manager::open(config).await.unwrap();
    let ask = |id: &str, policy: Option<v1::RestartPolicy>| SpawnSpec {
        id: id.into(),
        restart_policy: policy,
        ..Default::default()
    };
    // No policy: the manifest's.
    manager
        .spawn(ask("build", None), OpContext::default())
        .await
        .unwrap();
    // A policy of its own wins over the manifest...
    let never = v1::RestartPolicy {
        mode: v1::RestartMode::Never as i32,
        ..Default::default()
    };
    manager
        .spawn(ask("own", Some(never)), OpContext::default())
        .await
        .unwrap();
    // ...field by field: only the limit here, the mode and backoff still the manifest's.
    let one = v1::RestartPolicy {
        max_restarts: 1,
        ..Default::default()
    };
    manager
        .spawn(ask("limit", Some(one)), OpContext::default())
        .await
        .unwrap();
    for (id, restarts) in [("build", 2), ("own", 0), ("limit", 1)] {
        let end = wait_for(&manager, id, "crashed for good", |r| {
            r.state == State::Crashed && r.pending_restart.is_none()
        })
        .await;
        assert_eq!(end.restart_count, restarts, "{id}: {}", end.message);
        assert_eq!(end.exit_code, Some(3));
        if restarts > 0 {
            assert!(
                end.message
                    .contains(&format!("crash loop: {restarts} restarts within 60s")),
                "{id}: {}",
                end.message
            );
        }
    }
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn a_malformed_build_manifest_stops_the_spawner_with_a_sentence_naming_it() {
    let data = tempfile::tempdir().unwrap();
    let build = tempfile::tempdir().unwrap();
    let err = from_build_dir(
        data.path(),
        build.path(),
        "[restart]\npolicy = \"sometimes\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("exile-build.toml"), "{err}");

    // The real binary refuses to start, before it touches its data dir or the master.
    let manifest = build.path().join("exile-build.toml");
    std::fs::write(&manifest, "[health]\nperiod_secs = 5\ncolour = \"red\"\n").unwrap();
    let data_dir = data.path().join("never-created");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_exile-spawner"))
        .arg("--master=http://127.0.0.1:1")
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--build-dir={}", build.path().display()))
        .arg("--build-command=./game --port {port}")
        .arg(format!("--supervisor-bin={}", supervisor_bin().display()))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let expected = format!(
        "the build manifest {} is malformed: line 3: unknown field `colour`",
        manifest.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!data_dir.exists());
}

#[tokio::test]
async fn a_restart_pending_at_a_clean_shutdown_is_made_by_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let script = "if [ -e failed-once ]; then exec sleep 60; fi; touch failed-once; exit 4";
    let first = Manager::open(script_config(dir.path(), script))
        .await
        .unwrap();
    let mut s = spec("later", v1::RestartMode::OnFailure, 5);
    if let Some(p) = s.restart_policy.as_mut() {
        p.backoff_base_ms = 2_000;
        p.backoff_max_ms = 2_000;
    }
    first.spawn(s, OpContext::default()).await.unwrap();
    wait_for(&first, "later", "waiting to restart", |r| {
        r.pending_restart.is_some()
    })
    .await;
    first.shutdown(false).await.unwrap();
    let saved = exile_spawner::state::StateFile::load(dir.path()).unwrap();
    let pending = saved.instances[0].pending_restart.clone();
    assert_eq!(
        pending.map(|p| p.reason),
        Some("exited with code 4".to_owned()),
        "the shutdown dropped the pending restart"
    );

    let second = Manager::open(script_config(dir.path(), script))
        .await
        .unwrap();
    let back = wait_for(&second, "later", "restarted", is(State::Running)).await;
    let mut reaper = Reaper::default();
    reaper.watch(&back);
    assert_eq!(back.restart_count, 1);
    assert_eq!(back.exit_code, Some(4));
    second.shutdown(true).await.unwrap();
}
