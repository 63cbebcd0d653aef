//! Backups through the CLI: create (with a console line first), modify, restore, delete.

use crate::harness::Ctl;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_modify_restore_round_trip() {
    let ctl = Ctl::start().await;
    ctl.login().await;
    let ids = ctl.sb.spawner_ids().await.unwrap();
    let id = ctl.spawn_on(&ids[0]).await;
    let dir = ctl.sb.dir().join("spawner-0").join("instances").join(&id);
    // The game's own files live in data/, apart from the supervisor's logs and socket.
    let data = dir.join("data");
    std::fs::create_dir_all(data.join("world")).unwrap();
    std::fs::write(data.join("world/level.dat"), b"level one\x00\x01\x02").unwrap();

    let made = ctl
        .run(&[
            "backup",
            "create",
            &id,
            "--pre-command",
            "say saving",
            "--wait",
            "1",
            "--note",
            "nightly",
            "-o",
            "json",
        ])
        .await
        .success()
        .json();
    let backup = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["sha256"].as_str().unwrap().len(), 64, "{made:#?}");
    // The console line reached the game before the archive was taken.
    let log = std::fs::read_to_string(dir.join("logs/output.log")).unwrap_or_default();
    assert!(
        log.contains("saving"),
        "console line not seen in the game's output: {log}"
    );

    std::fs::write(data.join("world/level.dat"), b"CHANGED").unwrap();
    // Restoring over a running instance is refused with a sentence.
    let refused = ctl
        .run(&["backup", "restore", &id, &backup, "--yes"])
        .await
        .failure();
    assert!(
        refused.stderr.contains("stop it before restoring"),
        "{refused:#?}"
    );
    ctl.run(&["instance", "stop", &id]).await.success();
    ctl.run(&["backup", "restore", &id, &backup, "--yes"])
        .await
        .success();
    assert_eq!(
        std::fs::read(data.join("world/level.dat")).unwrap(),
        b"level one\x00\x01\x02"
    );

    let list = ctl
        .run(&["backup", "list", &id, "-o", "json"])
        .await
        .success()
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{list:#?}");
    assert_eq!(list[0]["note"], "nightly");
    let missing = ctl
        .run(&["backup", "restore", &id, "b0", "--yes"])
        .await
        .failure();
    assert!(missing.stderr.contains("no backup b0"), "{missing:#?}");
    ctl.run(&["backup", "delete", &id, &backup]).await.success();
    let list = ctl
        .run(&["backup", "list", &id, "-o", "json"])
        .await
        .success()
        .json();
    assert!(list.as_array().unwrap().is_empty());

    let audit = ctl.run(&["audit", "-o", "json"]).await.success().json();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in ["CreateBackup", "RestoreBackup", "DeleteBackup"] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
    ctl.shutdown().await;
}
