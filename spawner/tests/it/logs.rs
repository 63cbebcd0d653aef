//! Output logs of real processes: a flood stays under the cap, a 1 MB line is streamed in
//! bounded pieces, the console reaches the game. The spawner's own log: written by the whole
//! agent, rotated under its cap, streamed over the link.

use std::time::Duration;

use exile_api::v1::{self, command::Action, master_message, spawner_message};
use exile_spawner::{Manager, OpContext, SpawnSpec, State};
use tokio_util::sync::CancellationToken;

use crate::link::{Session, TOKEN, command, fake_master, result_for, spawner_config};
use crate::support::*;

fn spec(id: &str) -> SpawnSpec {
    SpawnSpec {
        id: id.into(),
        ..Default::default()
    }
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum()
}

#[tokio::test]
async fn a_flooding_server_stays_under_the_log_cap() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = script_config(dir.path(), "yes 'flood flood flood flood'");
    config.log_max_bytes = 256 * 1024;
    config.log_files = 2;
    let cap = 3 * 256 * 1024;
    let manager = Manager::open(config).await.unwrap();
    let mut reaper = Reaper::default();
    reaper.watch(
        &manager
            .spawn(spec("flood"), OpContext::default())
            .await
            .unwrap(),
    );
    let logs = dir.path().join("instances/flood/logs");
    // Far more than the cap goes through: rotated files come and go.
    eventually("the oldest kept file is rotated", || {
        logs.join("output.log.2").exists()
    })
    .await;
    for _ in 0..20 {
        let output: u64 = ["output.log", "output.log.1", "output.log.2"]
            .iter()
            .filter_map(|f| std::fs::metadata(logs.join(f)).ok())
            .map(|m| m.len())
            .sum();
        assert!(output <= cap, "{output} bytes of output logs, cap {cap}");
        assert!(!logs.join("output.log.3").exists());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("flood: log dir holds {} bytes (cap {cap})", dir_size(&logs));
    manager
        .stop("flood", None, OpContext::default())
        .await
        .unwrap();
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn a_one_megabyte_line_is_streamed_in_bounded_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let script =
        r#"head -c 1048576 /dev/zero | tr '\0' 'x'; echo; echo done; read line; echo "got $line""#;
    let manager = Manager::open(script_config(dir.path(), script))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    reaper.watch(
        &manager
            .spawn(spec("big"), OpContext::default())
            .await
            .unwrap(),
    );
    let log = dir.path().join("instances/big/logs/output.log");
    eventually("the line is written", || read(&log).contains("done")).await;
    let mut pieces = Vec::new();
    manager
        .logs("big", 10, false, |p| {
            pieces.push(p.data.len());
            std::future::ready(true)
        })
        .await
        .unwrap();
    assert!(pieces.iter().all(|n| *n <= 64 * 1024), "{pieces:?}");
    assert_eq!(pieces.iter().sum::<usize>(), 1_048_576 + 1 + 5);

    // The console line reaches the script's stdin through the supervisor.
    manager.console("big", "hello").await.unwrap();
    eventually("the answer is logged", || read(&log).contains("got hello")).await;
    // One line only.
    assert!(manager.console("big", "a\nb").await.is_err());
    let exited = wait_for(&manager, "big", "stopped", |r| r.state == State::Stopped).await;
    assert_eq!(exited.exit_code, Some(0));
    // The console of an instance that is not running is refused with a sentence.
    let err = manager.console("big", "again").await.unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
    manager.shutdown(true).await.unwrap();
}

/// Sends a `logs` command and gathers its data until its result.
async fn read_logs(
    session: &mut Session,
    request_id: u64,
    logs: v1::LogsCommand,
) -> (String, v1::CommandResult) {
    session.send(command(request_id, Action::Logs(logs))).await;
    let mut data = Vec::new();
    let result = within(session.until(|kind| match kind {
        spawner_message::Kind::LogData(d) if d.request_id == request_id => {
            assert!(d.data.len() <= 64 * 1024);
            data.extend_from_slice(&d.data);
            None
        }
        spawner_message::Kind::CommandResult(r) if r.request_id == request_id => Some(r),
        _ => None,
    }))
    .await;
    (String::from_utf8_lossy(&data).into_owned(), result)
}

/// `fut`, or a failed test after 20 s (heartbeats keep `Session::until` from timing out).
async fn within<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), fut)
        .await
        .expect("not within 20 s")
}

fn spawner_logs(spawner_id: &str, tail_lines: u32) -> v1::LogsCommand {
    v1::LogsCommand {
        spawner_id: spawner_id.into(),
        tail_lines,
        ..Default::default()
    }
}

/// A command that fails and leaves one line naming `id` in the log (at debug level).
fn failing(request_id: u64, id: &str) -> master_message::Kind {
    command(
        request_id,
        Action::Start(v1::InstanceRef {
            instance_id: id.into(),
        }),
    )
}

#[tokio::test]
async fn the_spawner_log_is_written_rotated_under_its_cap_and_streamed() {
    let mut master = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = spawner_config(&master.url, dir.path());
    config.enrollment_token = Some(TOKEN.into());
    config.own_log_max_bytes = 4096;
    config.own_log_files = 2;
    config.own_log_filter = "info,exile_spawner=debug".into();
    let cap = 3 * 4096;
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(exile_spawner::run(config, shutdown.clone()));
    let mut session = master.session().await;
    session
        .send(master_message::Kind::Welcome(v1::Welcome {
            spawner_id: "sp-1".into(),
            heartbeat_interval_ms: 100,
        }))
        .await;
    let logs = dir.path().join("logs");
    let live = logs.join("spawner.log");
    eventually("the link is in the spawner log", || {
        read(&live).contains("linked to the master")
    })
    .await;

    // The tail over the link holds what the agent said, from its own tasks too.
    session.send(failing(1, "missing-1")).await;
    within(session.until(result_for(1))).await;
    eventually("the failed command is logged", || {
        read(&live).contains("missing-1")
    })
    .await;
    let (text, result) = read_logs(&mut session, 2, spawner_logs("sp-1", 20)).await;
    assert_eq!(result.error, "");
    assert!(text.contains("spawner started"), "{text}");
    assert!(text.contains("linked to the master"), "{text}");
    assert!(text.contains("missing-1"), "{text}");

    // Wrong targets are answered, not fatal.
    let (_, result) = read_logs(&mut session, 3, spawner_logs("sp-2", 20)).await;
    assert_eq!(result.error_kind, v1::CommandErrorKind::NotFound as i32);
    assert!(result.error.contains("sp-2"), "{}", result.error);
    let both = v1::LogsCommand {
        instance_id: "game-1".into(),
        ..spawner_logs("sp-1", 20)
    };
    let (_, result) = read_logs(&mut session, 4, both).await;
    assert_eq!(
        result.error_kind,
        v1::CommandErrorKind::InvalidArgument as i32
    );
    let (_, result) = read_logs(&mut session, 5, spawner_logs("", 20)).await;
    assert_eq!(
        result.error_kind,
        v1::CommandErrorKind::InvalidArgument as i32
    );

    // A follower sees new lines as they are written. Its one-line tail says it holds its
    // place in the file; only then is the new line logged, so it cannot fall before it.
    session
        .send(command(
            6,
            Action::Logs(v1::LogsCommand {
                follow: true,
                ..spawner_logs("sp-1", 1)
            }),
        ))
        .await;
    within(session.until(|kind| match kind {
        spawner_message::Kind::LogData(d) if d.request_id == 6 => Some(()),
        _ => None,
    }))
    .await;
    session.send(failing(7, "followed-1")).await;
    let mut followed = Vec::new();
    within(session.until(|kind| match kind {
        spawner_message::Kind::LogData(d) if d.request_id == 6 => {
            followed.extend_from_slice(&d.data);
            String::from_utf8_lossy(&followed)
                .contains("followed-1")
                .then_some(())
        }
        _ => None,
    }))
    .await;
    session
        .send(master_message::Kind::Cancel(v1::Cancel { request_id: 6 }))
        .await;
    within(session.until(result_for(6))).await;

    // Far more than the cap: the oldest lines rotate away, the files stay under the cap.
    for i in 0..200 {
        session.send(failing(100 + i, &format!("flood-{i}"))).await;
    }
    within(session.until(result_for(299))).await;
    eventually("the last failure is logged", || {
        read(&live).contains("flood-199")
    })
    .await;
    let mut names: Vec<String> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["spawner.log", "spawner.log.1", "spawner.log.2"]);
    let mut total = 0;
    let mut kept = String::new();
    for name in &names {
        let text = read(logs.join(name));
        assert!(text.len() <= 4096, "{name} holds {} bytes", text.len());
        total += text.len();
        kept.push_str(&text);
    }
    assert!(total <= cap, "{total} bytes kept, cap {cap}");
    assert!(!kept.contains("spawner started"), "not rotated away");

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("run did not return after shutdown")
        .unwrap()
        .unwrap();
    master.server.abort();
}
