//! Backups and restores go through the instance's actor: a start never runs in the middle of
//! a restore, and the game's files live in `data/`, apart from the supervisor's.

use std::path::Path;

use exile_api::v1::CommandErrorKind;
use exile_spawner::{Manager, OpContext, SpawnSpec, State};

use crate::support::*;

/// Prints what the game finds in its data directory when it starts, then idles.
const SHOW_SAVE: &str =
    r#"echo "save=$(cat save.txt 2>/dev/null) big=$(wc -c 2>/dev/null < big.bin)"; exec sleep 60"#;

fn ctx() -> OpContext {
    OpContext::default()
}

fn spec(id: &str) -> SpawnSpec {
    SpawnSpec {
        id: id.into(),
        ..Default::default()
    }
}

/// Bytes that do not compress, so the archive and the restore take real work.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn output(data_dir: &Path, id: &str) -> String {
    read(data_dir.join(format!("instances/{id}/logs/output.log")))
}

#[tokio::test]
async fn a_start_sent_during_a_restore_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::open(script_config(dir.path(), SHOW_SAVE))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let rec = manager.spawn(spec("r"), ctx()).await.unwrap();
    reaper.watch(&rec);
    let data = dir.path().join("instances/r/data");
    std::fs::write(data.join("save.txt"), "v1").unwrap();
    const BIG: usize = 32 << 20;
    std::fs::write(data.join("big.bin"), noise(BIG)).unwrap();
    let backup = manager
        .backup("r", "b1".into(), "before".into())
        .await
        .unwrap();
    assert!(backup.size_bytes >= BIG as u64, "{backup:?}");

    // A running game's files are not replaced.
    let refused = manager.restore("r", "b1".into()).await.unwrap_err();
    assert_eq!(refused.kind(), CommandErrorKind::FailedPrecondition);
    assert!(
        refused.to_string().contains("stop it before restoring"),
        "{refused}"
    );

    manager.stop("r", None, ctx()).await.unwrap();
    std::fs::write(data.join("save.txt"), "v2").unwrap();
    std::fs::remove_file(data.join("big.bin")).unwrap();
    let before = output(dir.path(), "r");

    // The restore is asked first, the start right behind it (join polls in order, and each
    // request is sent on its first poll).
    let (restored, started) = tokio::join!(
        async {
            let r = manager.restore("r", "b1".into()).await;
            (r, tokio::time::Instant::now())
        },
        async {
            let r = manager.start("r", ctx()).await;
            (r, tokio::time::Instant::now())
        },
    );
    let (restored, restored_at) = restored;
    let (started, started_at) = started;
    assert_eq!(restored.unwrap().id, "b1");
    let started = started.unwrap();
    reaper.watch(&started);
    assert_eq!(started.state, State::Running, "{}", started.message);
    assert!(
        restored_at <= started_at,
        "the start answered before the restore"
    );
    // The game started on the restored files, all of them: the start did not interleave.
    eventually("the restarted game printed its save", || {
        output(dir.path(), "r").len() > before.len()
    })
    .await;
    let after = output(dir.path(), "r");
    let line = after[before.len()..].lines().next().unwrap_or_default();
    assert_eq!(line.trim(), format!("save=v1 big={BIG}"), "{after}");
    manager.shutdown(true).await.unwrap();
}

/// An instance directory an older spawner wrote (the game's files beside the supervisor's
/// logs, no `data/`) is adopted: its game starts again on its own files, now in `data/`.
#[tokio::test]
async fn an_instance_dir_of_an_older_spawner_is_brought_over() {
    let dir = tempfile::tempdir().unwrap();
    let first = Manager::open(script_config(dir.path(), SHOW_SAVE))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let rec = first.spawn(spec("old"), ctx()).await.unwrap();
    reaper.watch(&rec);
    first.stop("old", None, ctx()).await.unwrap();
    first.shutdown(true).await.unwrap();

    // Lay it out as an older spawner did: the game's files at the top, no marker.
    let inst = dir.path().join("instances/old");
    std::fs::remove_dir_all(inst.join("data")).unwrap();
    std::fs::remove_file(inst.join(".exile-layout")).unwrap();
    std::fs::write(inst.join("save.txt"), "from-before").unwrap();
    let before = output(dir.path(), "old");

    let second = Manager::open(script_config(dir.path(), SHOW_SAVE))
        .await
        .unwrap();
    assert_eq!(second.get("old").await.unwrap().state, State::Stopped);
    let started = second.start("old", ctx()).await.unwrap();
    reaper.watch(&started);
    eventually("the game printed its save", || {
        output(dir.path(), "old").len() > before.len()
    })
    .await;
    let after = output(dir.path(), "old");
    let line = after[before.len()..].lines().next().unwrap_or_default();
    assert_eq!(line.trim(), "save=from-before big=", "{after}");
    assert_eq!(read(inst.join("data/save.txt")), "from-before");
    assert!(!inst.join("save.txt").exists());
    // A backup of it holds the game's file and nothing of the supervisor's.
    let b = second
        .backup("old", "b1".into(), String::new())
        .await
        .unwrap();
    assert!(b.data_bytes < 1024, "{b:?}");
    second.shutdown(true).await.unwrap();
}
