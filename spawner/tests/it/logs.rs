//! Output logs of real processes: a flood stays under the cap, a 1 MB line is streamed in
//! bounded pieces, the console reaches the game.

use std::time::Duration;

use exile_spawner::{Manager, OpContext, SpawnSpec, State};

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
