//! Spawners, enrollment tokens and the instance lifecycle through the CLI, and the audit log.

use std::time::Duration;

use serde_json::Value;

use crate::harness::Ctl;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawners_enrollment_and_instance_lifecycle() {
    let ctl = Ctl::start().await;
    ctl.login().await;
    let ids = ctl.sb.spawner_ids().await.unwrap();

    // Spawners.
    let list = ctl
        .run(&["spawner", "list", "-o", "json"])
        .await
        .success()
        .json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:#?}");
    assert!(list.iter().all(|s| s["state"] == "online"), "{list:#?}");
    let table = ctl.run(&["spawners", "ls"]).await.success();
    assert!(table.stdout.contains("Online"), "{table:#?}");
    assert!(!table.stdout.contains("SPAWNER_STATE"), "{table:#?}");

    // Enrollment tokens: the secret is shown once, with a ready-to-paste command.
    let created = ctl
        .run(&[
            "spawner",
            "token",
            "create",
            "--ttl",
            "1h",
            "--description",
            "host-9",
            "-o",
            "json",
        ])
        .await
        .success()
        .json();
    let secret = created["secret"].as_str().unwrap();
    let token_id = created["token"]["id"].as_str().unwrap();
    assert_eq!(
        created["command"].as_str().unwrap(),
        format!(
            "exile-spawner --master {} --enrollment-token {secret}",
            ctl.sb.master_url()
        )
    );
    let tokens = ctl
        .run(&["spawner", "token", "list", "-o", "json"])
        .await
        .success();
    assert!(!tokens.stdout.contains(secret));
    let tokens = tokens.json();
    let tok = find(&tokens, token_id);
    assert_eq!(tok["description"], "host-9");
    assert_eq!(tok["revoked"], false);
    ctl.run(&["spawner", "token", "revoke", token_id])
        .await
        .success();
    let tokens = ctl
        .run(&["spawner", "token", "ls", "-o", "json"])
        .await
        .success()
        .json();
    assert_eq!(find(&tokens, token_id)["revoked"], true);

    // Spawn on a named spawner.
    let spawned = ctl
        .spawn(&["--spawner", &ids[0], "--label", "mode=ctf"])
        .await;
    let id = spawned["id"].as_str().unwrap().to_owned();
    assert_eq!(spawned["spawner_id"], ids[0].as_str());
    assert_eq!(spawned["labels"]["mode"], "ctf");

    let listed = ctl
        .run(&["inst", "ls", "--spawner", &ids[0], "-o", "json"])
        .await
        .success()
        .json();
    let inst = find(&listed, &id);
    assert_eq!(inst["spawner_id"], ids[0].as_str());
    let up = ctl.wait_state(&id, &["running", "ready"]).await;
    assert!(up["pid"].as_u64().unwrap() > 0, "{up:#?}");
    let by_state = ctl
        .run(&[
            "instances",
            "list",
            "--state",
            "running,ready",
            "-o",
            "json",
        ])
        .await
        .success()
        .json();
    find(&by_state, &id);

    let detail = ctl
        .run(&["spawner", "get", &ids[0], "-o", "json"])
        .await
        .success()
        .json();
    assert_eq!(detail["spawner"]["id"], ids[0].as_str());
    find(&detail["instances"], &id);

    let got = ctl.run(&["instance", "get", &id]).await.success();
    assert!(got.stdout.contains(&id), "{got:#?}");

    // Stop, then remove.
    ctl.run(&["instance", "stop", &id, "--grace", "5"])
        .await
        .success();
    ctl.wait_state(&id, &["stopped"]).await;
    let removed = ctl.run(&["instance", "rm", &id]).await.success();
    assert_eq!(removed.stdout.trim(), format!("Removed instance {id}."));
    let listed = ctl
        .run(&["instance", "list", "-o", "json"])
        .await
        .success()
        .json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["id"] != id.as_str()),
        "{listed:#?}"
    );
    let missing = ctl.run(&["instance", "get", &id]).await.failure();
    assert_eq!(missing.stderr.lines().count(), 1, "{missing:#?}");

    // The audit log shows the spawn, by whom and on what.
    let audit = ctl
        .run(&["audit", "--limit", "50", "-o", "json"])
        .await
        .success()
        .json();
    let spawn = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "SpawnInstance" && e["target"] == id.as_str())
        .unwrap_or_else(|| panic!("no SpawnInstance entry for {id}: {audit:#?}"));
    assert_eq!(spawn["actor"], "admin");
    assert_eq!(spawn["result"], "ok");

    let stats = ctl.run(&["stats", "-o", "yaml"]).await.success();
    assert!(stats.stdout.contains("spawners_online: 2"), "{stats:#?}");

    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_undrain_and_placement() {
    let ctl = Ctl::start().await;
    ctl.login().await;
    let ids = ctl.sb.spawner_ids().await.unwrap();

    let drained = ctl
        .run(&["spawner", "drain", &ids[0], "-o", "json"])
        .await
        .success()
        .json();
    assert_eq!(drained["drained"], true);

    // With one spawner drained, the master must place on the other one.
    let placed = ctl.spawn(&["--region", "local"]).await;
    assert_eq!(placed["spawner_id"], ids[1].as_str(), "{placed:#?}");

    let undrained = ctl
        .run(&["spawner", "undrain", &ids[0], "-o", "json"])
        .await
        .success()
        .json();
    assert_eq!(undrained["drained"], false);

    // Removing a spawner without --yes and without a terminal is refused.
    let refused = ctl.run(&["spawner", "remove", &ids[0]]).await.failure();
    assert!(refused.stderr.contains("--yes"), "{refused:#?}");
    ctl.run(&["spawner", "rm", &ids[0], "--yes"])
        .await
        .success();
    let list = ctl
        .run(&["spawner", "list", "-o", "json"])
        .await
        .success()
        .json();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"] != ids[0].as_str()),
        "{list:#?}"
    );

    ctl.shutdown().await;
}

/// The element of a JSON array whose `id` is `id`.
#[track_caller]
fn find<'a>(list: &'a Value, id: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|x| x["id"] == id))
        .unwrap_or_else(|| panic!("no {id} in {list:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_history_of_an_instance_and_its_host() {
    let ctl = Ctl::start().await;
    ctl.login().await;
    let ids = ctl.sb.spawner_ids().await.unwrap();
    let id = ctl.spawn_on(&ids[0]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let rows = loop {
        let out = ctl
            .run(&[
                "metrics", "instance", &id, "--since", "5m", "--step", "1s", "-o", "json",
            ])
            .await
            .success()
            .json();
        let rows = out.as_array().cloned().unwrap_or_default();
        if rows.len() >= 2 {
            break rows;
        }
        assert!(std::time::Instant::now() < deadline, "no history: {out:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        rows.iter().all(|r| r["memory_bytes"].as_u64().unwrap() > 0),
        "{rows:#?}"
    );
    let table = ctl
        .run(&["metrics", "spawner", &ids[0], "--since", "5m"])
        .await
        .success();
    assert!(table.stdout.contains("MEMORY"), "{table:#?}");
    let missing = ctl
        .run(&["metrics", "instance", "inst-nope"])
        .await
        .failure();
    assert!(
        missing.stderr.contains("no instance with id inst-nope"),
        "{missing:#?}"
    );
    ctl.shutdown().await;
}
