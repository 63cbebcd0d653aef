//! `exilectl logs --spawner`: a spawner's own log, as an operator reads it.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::Ctl;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawners_own_log_is_printed_and_followed() {
    let ctl = Ctl::start().await;
    ctl.login().await;
    let ids = ctl.sb.spawner_ids().await.unwrap();
    let (first, second) = (ids[0].clone(), ids[1].clone());

    // The tail holds what the spawner said when it linked, and only that spawner's lines.
    let run = ctl
        .run(&["logs", "--spawner", &first, "--tail", "20"])
        .await
        .success();
    assert!(run.stdout.contains("linked to the master"), "{run:#?}");
    assert!(run.stdout.contains(&first), "{run:#?}");
    assert!(!run.stdout.contains(&second), "{run:#?}");
    assert!(run.stdout.lines().count() <= 20, "{run:#?}");

    // `-f` shows a spawn on that spawner as it happens.
    let config = ctl.config_path();
    let (tx, lines) = mpsc::channel();
    let mut follow = crate::harness::command(&config, &["logs", "--spawner", &first, "-f"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The follower is attached once it has printed the tail (the link line is in it).
    let seen = tokio::task::spawn_blocking(move || {
        let line = lines.recv_timeout(Duration::from_secs(20));
        (line, lines)
    })
    .await
    .unwrap();
    let (Ok(_), lines) = seen else {
        panic!("the follower printed nothing");
    };
    let spawned = ctl
        .run(&["instance", "spawn", "--spawner", &first, "-o", "json"])
        .await
        .success()
        .json();
    let id = spawned["id"].as_str().unwrap().to_owned();
    let needle = id.clone();
    let seen = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = Vec::new();
        while let Ok(line) =
            lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        {
            let hit = line.contains(&needle) && line.contains("instance started");
            seen.push(line);
            if hit {
                return Ok(seen);
            }
        }
        Err(seen)
    })
    .await
    .unwrap();
    let _ = follow.kill();
    let _ = follow.wait();
    if let Err(seen) = seen {
        panic!("no \"instance started\" line for {id}; saw {seen:#?}");
    }

    // Mistakes are one sentence and exit code 1.
    let unknown = ctl
        .run(&["logs", "--spawner", "sp-nope", "--tail", "5"])
        .await
        .failure();
    assert_eq!(
        unknown.stderr.trim(),
        "error: no spawner with id sp-nope",
        "{unknown:#?}"
    );
    let both = ctl.run(&["logs", &id, "--spawner", &first]).await.failure();
    assert!(both.stderr.contains("not both"), "{both:#?}");
    assert_eq!(both.stderr.trim().lines().count(), 1, "{both:#?}");
    let neither = ctl.run(&["logs"]).await.failure();
    assert!(neither.stderr.contains("--spawner"), "{neither:#?}");
    assert_eq!(neither.stderr.trim().lines().count(), 1, "{neither:#?}");

    // `exilectl logs <instance>` still prints the instance's own output.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let run = ctl.run(&["logs", &id, "--tail", "5"]).await.success();
        if run.stdout.contains("listening on port") {
            assert!(!run.stdout.contains("linked to the master"), "{run:#?}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{run:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ctl.shutdown().await;
}
