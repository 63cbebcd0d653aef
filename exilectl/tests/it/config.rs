//! `exilectl config …` against a sandbox: list by category as JSON, set, get, reset and
//! history, a refused value, and the version spawners acknowledge in `spawner get`.

use std::time::Duration;

use crate::harness::Ctl;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_commands_list_set_reset_and_show_history() {
    let ctl = Ctl::start().await;
    ctl.login().await;

    let listed = ctl
        .run(&["config", "list", "--category", "spawners", "-o", "json"])
        .await
        .success()
        .json();
    let entries = listed.as_array().unwrap();
    assert!(!entries.is_empty());
    for e in entries {
        assert_eq!(e["category"], "spawners", "{e}");
        for field in ["key", "type", "value", "default"] {
            assert!(e[field].is_string(), "{field} in {e}");
        }
    }
    let heartbeat = entries
        .iter()
        .find(|e| e["key"] == "spawners.heartbeat_interval")
        .unwrap();
    assert_eq!(heartbeat["type"], "duration");
    assert_eq!(heartbeat["value"], heartbeat["default"]);

    let set = ctl
        .run(&[
            "config",
            "set",
            "spawners.heartbeat_interval",
            "750ms",
            "-o",
            "json",
        ])
        .await
        .success()
        .json();
    assert_eq!(set["value"], "750ms");
    assert_eq!(set["is_set"], true);
    let version = set["version"].as_u64().unwrap();
    assert!(version > 0);

    let got = ctl
        .run(&["config", "get", "spawners.heartbeat_interval"])
        .await
        .success();
    assert!(got.stdout.contains("750ms"), "{got:#?}");

    let refused = ctl
        .run(&["config", "set", "spawners.heartbeat_interval", "5m"])
        .await
        .failure();
    assert!(
        refused.stderr.contains("spawners.heartbeat_interval")
            && refused.stderr.contains("100ms..1m"),
        "{refused:#?}"
    );

    // Both spawners acknowledge the version that carried the change.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let spawners = ctl
            .run(&["spawner", "list", "-o", "json"])
            .await
            .success()
            .json();
        let applied = spawners
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["settings_version"].as_u64() == Some(version))
            .count();
        if applied == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "spawners did not acknowledge version {version}: {spawners}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let reset = ctl
        .run(&[
            "config",
            "reset",
            "spawners.heartbeat_interval",
            "-o",
            "yaml",
        ])
        .await
        .success();
    assert!(reset.stdout.contains("is_set: false"), "{reset:#?}");

    let history = ctl
        .run(&[
            "config",
            "history",
            "spawners.heartbeat_interval",
            "-o",
            "json",
        ])
        .await
        .success()
        .json();
    let changes = history.as_array().unwrap();
    assert_eq!(changes.len(), 2, "{history}");
    assert_eq!(changes[0]["old_value"], "750ms");
    assert!(changes[0]["new_value"].is_null());
    assert!(changes[1]["old_value"].is_null());
    assert_eq!(changes[1]["new_value"], "750ms");
    assert_eq!(changes[1]["actor"], "admin");

    ctl.shutdown().await;
}
