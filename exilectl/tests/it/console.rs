//! `exilectl logs` and `exilectl console` driven as a person would: attach, type, read.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::Ctl;

/// Lines of a child's stdout, read on a thread so a test can wait with a deadline.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Waits (blocking, with a deadline) for a line containing `needle`.
fn wait_line(rx: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let hit = line.contains(needle);
                seen.push(line);
                if hit {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {needle:?}; saw {seen:#?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_console_as_a_user_drives_them() {
    let ctl = Ctl::start().await;
    ctl.login().await;
    let spawned = ctl.spawn(&["--restart", "on-failure"]).await;
    let id = spawned["id"].as_str().unwrap().to_owned();

    // `logs --tail`: the game's first line, once it has written it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let run = ctl.run(&["logs", &id, "--tail", "5"]).await.success();
        if run.stdout.contains("listening on port") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{run:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // `console`: type a line, see the game answer in the live output, end with EOF.
    let config = ctl.config_path();
    let id2 = id.clone();
    tokio::task::spawn_blocking(move || {
        let mut console = crate::harness::command(&config, &["console", &id2])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let rx = lines_of(&mut console);
        wait_line(&rx, "listening on port");
        let mut stdin = console.stdin.take().unwrap();
        writeln!(stdin, "say hello from the console").unwrap();
        wait_line(&rx, "[console] hello from the console");
        drop(stdin);
        let status = console.wait().unwrap();
        assert!(status.success(), "console exited with {status}");
    })
    .await
    .unwrap();

    // `logs -f` keeps showing new output until interrupted.
    let config = ctl.config_path();
    let id3 = id.clone();
    let follower = tokio::task::spawn_blocking(move || {
        let mut follow = crate::harness::command(&config, &["logs", &id3, "-f", "--tail", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let rx = lines_of(&mut follow);
        let seen = wait_line(&rx, "[console] second line");
        let _ = follow.kill();
        let _ = follow.wait();
        seen
    });
    // Keep typing until the follower has attached and shown it (no fixed sleep).
    let mut sent = 0;
    while !follower.is_finished() {
        assert!(sent < 200, "the follower never showed the line");
        let run = ctl
            .run_with(&["console", &id, "--tail", "0"], &[], "say second line\n")
            .await
            .success();
        drop(run);
        sent += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = follower.await.unwrap();
    assert!(
        seen.iter().all(|l| !l.contains("listening on port")),
        "--tail 0 showed old output: {seen:#?}"
    );

    // An unknown instance is a clear error.
    let missing = ctl
        .run_with(&["console", "inst-nope"], &[], "say hi\n")
        .await
        .failure();
    assert!(
        missing.stderr.to_lowercase().contains("not found") || missing.stderr.contains("inst-nope"),
        "{missing:#?}"
    );
    ctl.shutdown().await;
}
