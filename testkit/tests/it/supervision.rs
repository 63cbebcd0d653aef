//! Instances live through a `kill -9` of their spawner: re-adopted with the same processes,
//! logs and console still working, exit codes recorded while the spawner was down.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use exile_api::v1 as pb;
use exile_testkit::{Sandbox, SandboxOptions, eventually};
use futures::StreamExt;
use pb::InstanceState as S;

use crate::support::{is_up, processes_of, spawn};

/// Resident set size of a process in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn instance_dir(sb: &Sandbox, spawner: usize, id: &str) -> PathBuf {
    sb.dir()
        .join(sb.spawner_name(spawner))
        .join("instances")
        .join(id)
}

fn log_of(sb: &Sandbox, id: &str) -> String {
    std::fs::read_to_string(instance_dir(sb, 0, id).join("logs/output.log")).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_spawner_keeps_twenty_instances_with_logs_console_and_exit_codes() {
    let mut sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        capacity: 20,
        ..Default::default()
    })
    .await
    .unwrap();
    let ids = sb.spawner_ids().await.unwrap();
    // The honest test: a real exile-spawner process, killed with SIGKILL.
    sb.stop_spawner(0).await.unwrap();
    let pid = sb.start_spawner_process(0).unwrap();
    sb.wait_spawners_online(1, Duration::from_secs(30))
        .await
        .unwrap();
    let admin = sb.admin().await.unwrap();
    let mut before = Vec::new();
    for _ in 0..20 {
        before.push(spawn(&admin, &ids[0]).await.unwrap());
    }
    let _ = sb.instances().await.unwrap();
    for i in &before {
        eventually(
            "the game logs its start",
            Duration::from_secs(20),
            || async {
                log_of(&sb, &i.id)
                    .contains("listening on port")
                    .then_some(())
            },
        )
        .await
        .unwrap();
    }
    println!(
        "spawner RSS with 20 instances: {} KiB; one supervisor: {} KiB",
        rss_kib(pid),
        std::fs::read_to_string(instance_dir(&sb, 0, &before[0].id).join("logs/supervisor.log"))
            .map(|_| rss_kib(supervisor_pid(&before[0].id)))
            .unwrap_or(0)
    );

    sb.kill_spawner_process(0).unwrap();
    // While the spawner is gone: the console still reaches the game and its output still
    // reaches the log, and one game exits with a code of its own.
    let quitter = &before[19];
    exile_spawner::supervisor::request(
        &instance_dir(&sb, 0, &before[0].id),
        &exile_spawner::supervisor::Request::Console("say while-down".into()),
    )
    .await
    .unwrap();
    exile_spawner::supervisor::request(
        &instance_dir(&sb, 0, &quitter.id),
        &exile_spawner::supervisor::Request::Console("quit".into()),
    )
    .await
    .unwrap();
    eventually(
        "the console line is logged",
        Duration::from_secs(10),
        || async {
            log_of(&sb, &before[0].id)
                .contains("[console] while-down")
                .then_some(())
        },
    )
    .await
    .unwrap();
    eventually(
        "the quitter's exit is recorded",
        Duration::from_secs(10),
        || async {
            instance_dir(&sb, 0, &quitter.id)
                .join("exit.json")
                .exists()
                .then_some(())
        },
    )
    .await
    .unwrap();

    let restarted = Instant::now();
    let pid = sb.start_spawner_process(0).unwrap();
    let now = eventually(
        "19 instances running again",
        Duration::from_secs(30),
        || async {
            let l = sb.instances().await.ok()?;
            let running = l.iter().filter(|i| is_up(i.state())).count();
            (running == 19 && l.len() == 20).then_some(l)
        },
    )
    .await
    .unwrap();
    let took = restarted.elapsed();
    let mut adopted = 0;
    for b in &before[..19] {
        let a = now.iter().find(|i| i.id == b.id).unwrap();
        assert_eq!(a.pid, b.pid, "re-adopted, not relaunched");
        assert_eq!(a.ports, b.ports, "kept its port");
        assert_eq!(processes_of(&b.id), 1, "no duplicate process");
        adopted += 1;
    }
    let q = now.iter().find(|i| i.id == quitter.id).unwrap();
    assert_eq!(processes_of(&quitter.id), 0);
    assert_eq!(q.state(), S::Stopped, "{}", q.message);
    assert_eq!(q.exit_code, Some(0), "{}", q.message);
    // Logs and console through the master after the re-adoption: follow the log, send a
    // console line, see the game's answer arrive in the stream.
    let target = &before[3];
    let mut logs = admin
        .instances
        .clone()
        .stream_logs(pb::StreamLogsRequest {
            source: Some(pb::stream_logs_request::Source::Id(target.id.clone())),
            follow: true,
            tail_lines: 5,
        })
        .await
        .unwrap()
        .into_inner();
    let mut seen = String::new();
    let first = tokio::time::timeout(Duration::from_secs(10), logs.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    seen.push_str(&String::from_utf8_lossy(&first.data));
    assert!(seen.contains("listening on port"), "{seen}");
    admin
        .instances
        .clone()
        .send_console_command(pb::SendConsoleCommandRequest {
            id: target.id.clone(),
            line: "say hello".into(),
        })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains("[console] hello") {
        assert!(Instant::now() < deadline, "no console echo in {seen:?}");
        let chunk = tokio::time::timeout(Duration::from_secs(10), logs.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(chunk.data.len() <= 64 * 1024);
        seen.push_str(&String::from_utf8_lossy(&chunk.data));
    }
    drop(logs);
    // The console line is in the audit log with its text.
    eventually(
        "the console line audited",
        Duration::from_secs(10),
        || async {
            let audit = admin
                .system
                .clone()
                .list_audit_log(pb::ListAuditLogRequest {
                    limit: 50,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            audit
                .entries
                .iter()
                .any(|e| {
                    e.action.ends_with("SendConsoleCommand")
                        && e.target == target.id
                        && e.detail.contains("say hello")
                })
                .then_some(())
        },
    )
    .await
    .unwrap();
    // A console line for a stopped instance is refused with a sentence.
    let err = admin
        .instances
        .clone()
        .send_console_command(pb::SendConsoleCommandRequest {
            id: quitter.id.clone(),
            line: "say hi".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

    println!(
        "re-adopted {adopted}/19 live instances (1 exited while down, code recorded) in {took:?} \
         from spawner start to all reported; spawner RSS after re-adoption: {} KiB",
        rss_kib(pid)
    );
    sb.shutdown().await;
}

/// Pid of the supervisor of instance `id` (the supervisor working in its directory).
fn supervisor_pid(id: &str) -> u32 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let supervisor = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains("exile-supervisor"));
            supervisor
                && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.ends_with(id))
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashing_server_is_restarted_with_backoff_then_crashed_with_its_last_output() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    // The demo game refuses an unknown flag: exit code 2 and a complaint on stderr.
    let spawned = admin
        .instances
        .clone()
        .spawn_instance(pb::SpawnInstanceRequest {
            args: vec!["--no-such-flag".into()],
            restart_policy: Some(pb::RestartPolicy {
                mode: pb::RestartMode::OnFailure as i32,
                max_restarts: 2,
                window_seconds: 60,
                backoff_base_ms: 50,
                backoff_max_ms: 200,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    let end = eventually("the instance gives up", Duration::from_secs(20), || async {
        let l = sb.instances().await.ok()?;
        l.into_iter()
            .find(|i| i.id == spawned.id && i.state() == S::Crashed && i.restart_count == 2)
    })
    .await
    .unwrap();
    assert_eq!(end.exit_code, Some(2), "{}", end.message);
    assert!(end.message.contains("crash loop"), "{}", end.message);
    assert!(end.message.contains("--no-such-flag"), "{}", end.message);
    assert_eq!(processes_of(&spawned.id), 0);
    // Its whole log can still be read after the fact.
    let mut logs = admin
        .instances
        .clone()
        .stream_logs(pb::StreamLogsRequest {
            source: Some(pb::stream_logs_request::Source::Id(spawned.id.clone())),
            follow: false,
            tail_lines: 1000,
        })
        .await
        .unwrap()
        .into_inner();
    let mut all = Vec::new();
    while let Some(chunk) = logs.next().await {
        all.extend_from_slice(&chunk.unwrap().data);
    }
    let text = String::from_utf8_lossy(&all);
    let runs = text.matches("error: unexpected argument").count();
    assert_eq!(runs, 3, "one start and two restarts: {text}");

    // The game's output is for those who may read its log: a viewer gets the crash message
    // without it, through every call that shows an instance.
    let (mut viewer, _) = sb
        .clients_with_role("crash-viewer", pb::Role::Viewer)
        .await
        .unwrap();
    let own = exile_api::state::without_game_output(&end.message).to_owned();
    assert!(
        own.contains("crash loop") && !own.contains("--no-such-flag"),
        "{own}"
    );
    let got = viewer
        .instances
        .get_instance(pb::GetInstanceRequest {
            id: spawned.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(got.message, own);
    let listed = viewer
        .instances
        .list_instances(pb::ListInstancesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .instances;
    assert_eq!(listed[0].message, own);
    let on_spawner = viewer
        .spawners
        .get_spawner(pb::GetSpawnerRequest {
            id: spawned.spawner_id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .instances;
    assert_eq!(on_spawner[0].message, own);
    let mut watch = viewer
        .events
        .watch(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    let first = watch.next().await.unwrap().unwrap();
    let Some(pb::watch_event::Kind::Snapshot(snap)) = first.kind else {
        panic!("the first event is not a snapshot: {first:?}");
    };
    assert_eq!(snap.instances[0].message, own);
    // A live change reaches the viewer cut too: restart it so it crashes again.
    admin
        .instances
        .clone()
        .start_instance(pb::StartInstanceRequest {
            id: spawned.id.clone(),
        })
        .await
        .unwrap();
    let mut crashed_again = None;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(20), watch.next())
        .await
        .unwrap()
    {
        if let Some(pb::watch_event::Kind::InstanceUpdated(i)) = ev.unwrap().kind
            && i.state() == S::Crashed
        {
            crashed_again = Some(i);
            break;
        }
    }
    let again = crashed_again.expect("the watch ended before the crash");
    assert!(
        !again.message.contains("--no-such-flag"),
        "{}",
        again.message
    );
    // The operator still reads it.
    let full = admin
        .instances
        .clone()
        .get_instance(pb::GetInstanceRequest {
            id: spawned.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert!(full.message.contains("--no-such-flag"), "{}", full.message);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_ignoring_sigterm_is_killed_with_its_group_after_the_grace_period() {
    // The server and a child of its own both ignore SIGTERM.
    let script =
        r#"trap '' TERM; (while :; do sleep 0.1; done) & echo ready; while :; do sleep 0.1; done"#;
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        build_command: Some(format!("/bin/sh -c \"{script}\"")),
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let ids = sb.spawner_ids().await.unwrap();
    let inst = spawn(&admin, &ids[0]).await.unwrap();
    let _ = sb.instances().await.unwrap();
    eventually(
        "the server and its child run",
        Duration::from_secs(10),
        || async {
            (log_of(&sb, &inst.id).contains("ready") && processes_of(&inst.id) >= 3).then_some(())
        },
    )
    .await
    .unwrap();
    let asked = Instant::now();
    let stopped = admin
        .instances
        .clone()
        .stop_instance(pb::StopInstanceRequest {
            id: inst.id.clone(),
            grace_period_seconds: 1,
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    let took = asked.elapsed();
    assert_eq!(stopped.state(), S::Stopped);
    assert!(stopped.message.contains("SIGKILL"), "{}", stopped.message);
    assert!(took >= Duration::from_secs(1), "stopped after {took:?}");
    assert_eq!(processes_of(&inst.id), 0, "a member of the group survived");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_and_a_slow_reader_break_neither_the_link_nor_the_master() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        build_command: Some("/bin/sh -c \"yes flood-flood-flood-flood\"".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let ids = sb.spawner_ids().await.unwrap();
    let flood = spawn(&admin, &ids[0]).await.unwrap();
    let _ = sb.instances().await.unwrap();
    let mut logs = admin
        .instances
        .clone()
        .stream_logs(pb::StreamLogsRequest {
            source: Some(pb::stream_logs_request::Source::Id(flood.id.clone())),
            follow: true,
            tail_lines: 0,
        })
        .await
        .unwrap()
        .into_inner();
    // A reader slower than the flood: the master closes its stream rather than buffer.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut received = 0usize;
    let status = loop {
        assert!(
            Instant::now() < deadline,
            "still streaming after {received} bytes"
        );
        match tokio::time::timeout(Duration::from_secs(20), logs.next())
            .await
            .unwrap()
        {
            Some(Ok(chunk)) => {
                assert!(chunk.data.len() <= 64 * 1024);
                received += chunk.data.len();
            }
            Some(Err(status)) => break status,
            None => panic!("the stream ended without an error"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    println!("slow reader cut off after {received} bytes");
    // The link is intact: the spawner is online and answers commands at once.
    let again = admin
        .instances
        .clone()
        .stop_instance(pb::StopInstanceRequest {
            id: flood.id.clone(),
            grace_period_seconds: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(again.state(), S::Stopped);
    let spawner = admin
        .spawners
        .clone()
        .get_spawner(pb::GetSpawnerRequest { id: ids[0].clone() })
        .await
        .unwrap()
        .into_inner()
        .spawner
        .unwrap();
    assert_eq!(spawner.state(), pb::SpawnerState::Online);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_pending_in_backoff_is_made_once_after_a_kill_9_of_the_spawner() {
    // Crashes with code 3 on its first run only; every run says so in its log.
    let script =
        "echo run; if [ -e crashed-once ]; then exec sleep 600; fi; touch crashed-once; exit 3";
    let mut sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        build_command: Some(format!("/bin/sh -c \"{script}\"")),
        ..Default::default()
    })
    .await
    .unwrap();
    let ids = sb.spawner_ids().await.unwrap();
    sb.stop_spawner(0).await.unwrap();
    sb.start_spawner_process(0).unwrap();
    sb.wait_spawners_online(1, Duration::from_secs(30))
        .await
        .unwrap();
    let admin = sb.admin().await.unwrap();
    let inst = admin
        .instances
        .clone()
        .spawn_instance(pb::SpawnInstanceRequest {
            spawner_id: ids[0].clone(),
            restart_policy: Some(pb::RestartPolicy {
                mode: pb::RestartMode::OnFailure as i32,
                max_restarts: 5,
                window_seconds: 300,
                // Long enough that the spawner is surely dead before it is due.
                backoff_base_ms: 8_000,
                backoff_max_ms: 8_000,
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    let state_file = sb.dir().join(sb.spawner_name(0)).join("state.json");
    eventually(
        "the pending restart is on disk",
        Duration::from_secs(20),
        || async { (pending_on_disk(&state_file, &inst.id) == Some(true)).then_some(()) },
    )
    .await
    .unwrap();
    sb.kill_spawner_process(0).unwrap();
    // Killed during the backoff: the game ran once and nothing runs now.
    assert_eq!(log_of(&sb, &inst.id).matches("run\n").count(), 1);
    assert_eq!(processes_of(&inst.id), 0);

    sb.start_spawner_process(0).unwrap();
    let back = eventually(
        "the instance restarted by the new spawner",
        Duration::from_secs(40),
        || async {
            let l = sb.instances().await.ok()?;
            l.into_iter()
                .find(|i| i.id == inst.id && i.state() == S::Running && i.pid != 0)
        },
    )
    .await
    .unwrap();
    assert_eq!(back.restart_count, 1, "{}", back.message);
    assert_eq!(back.exit_code, Some(3), "{}", back.message);
    assert_eq!(
        back.message,
        "restarted automatically after: exited with code 3"
    );
    eventually("the game runs", Duration::from_secs(10), || async {
        (processes_of(&inst.id) == 1).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(log_of(&sb, &inst.id).matches("run\n").count(), 2);
    // The pending restart is done with: on disk too, so no later start makes it again.
    eventually(
        "the restart is off the state file",
        Duration::from_secs(10),
        || async { (pending_on_disk(&state_file, &inst.id) == Some(false)).then_some(()) },
    )
    .await
    .unwrap();
    sb.kill_spawner_process(0).unwrap();
    sb.shutdown().await;
}

/// Whether the spawner's state file holds a pending restart for instance `id`; `None` while
/// the file or the instance cannot be read.
fn pending_on_disk(state_file: &std::path::Path, id: &str) -> Option<bool> {
    let state: serde_json::Value = serde_json::from_slice(&std::fs::read(state_file).ok()?).ok()?;
    let record = state["instances"]
        .as_array()?
        .iter()
        .find(|i| i["id"] == id)?;
    Some(record["pending_restart"].is_object())
}
