//! `watch`: snapshot first, then deltas, one JSON object per line.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::harness::Ctl;

/// The child's output lines, read on a thread so a silent watch fails on a deadline instead
/// of hanging.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_the_snapshot_then_instance_changes() {
    let ctl = Ctl::start().await;
    ctl.login().await;
    let ids = ctl.sb.spawner_ids().await.unwrap();

    let mut child = ctl
        .command(&["watch", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let next = |rx: &mpsc::Receiver<String>| -> Value {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("watch printed a line in time");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };

    let snapshot = tokio::task::block_in_place(|| next(&rx));
    assert_eq!(snapshot["type"], "snapshot", "{snapshot:#?}");
    assert_eq!(snapshot["spawners"].as_array().unwrap().len(), 2);

    let id = ctl.spawn_on(&ids[1]).await;

    let seen = tokio::task::block_in_place(|| {
        loop {
            let e = next(&rx);
            if e["type"] == "instance_updated" && e["instance"]["id"] == id.as_str() {
                break e;
            }
        }
    });
    assert_eq!(seen["instance"]["spawner_id"], ids[1].as_str());
    assert!(seen["sequence"].as_u64().unwrap() > 0);
    assert!(seen["at"].as_str().unwrap().ends_with('Z'));

    child.kill().unwrap();
    child.wait().unwrap();
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_shows_ready_and_player_counts_move() {
    let ctl = Ctl::start().await;
    ctl.login().await;
    let ids = ctl.sb.spawner_ids().await.unwrap();

    let mut child = ctl
        .command(&["watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let until = |rx: &mpsc::Receiver<String>, what: &str, ok: &dyn Fn(&str) -> bool| -> String {
        loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("watch printed no line with {what} in time"));
            if ok(&line) {
                return line;
            }
        }
    };

    let id = ctl.spawn_on(&ids[0]).await;
    let ready = tokio::task::block_in_place(|| {
        until(&rx, "READY", &|l| {
            l.contains(&format!("instance {id} state READY"))
        })
    });
    let port: u16 = ready
        .split(" port ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {ready}"));

    // Two players join the demo game over UDP, one leaves; the game tells the spawner
    // through the SDK and every count reaches the watch.
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for (msg, count) in [("join", 1), ("join", 2), ("leave", 1)] {
        sock.send_to(msg.as_bytes(), ("127.0.0.1", port)).unwrap();
        let want = format!("players {count}/16");
        tokio::task::block_in_place(|| {
            until(&rx, &want, &|l| l.contains(&id) && l.contains(&want))
        });
    }

    child.kill().unwrap();
    child.wait().unwrap();
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_watch_prints_the_list_then_each_change() {
    let ctl = Ctl::start().await;
    ctl.login().await;
    let ids = ctl.sb.spawner_ids().await.unwrap();
    let first = ctl.spawn_on(&ids[0]).await;

    // Table: the list with its header, then one row per change of the filtered spawner.
    let mut table = ctl
        .command(&["instance", "list", "--watch", "--spawner", &ids[1]])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rows = lines_of(&mut table);
    // JSON: one object per instance, then per change.
    let mut json = ctl
        .command(&["instance", "list", "-w", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let objects = lines_of(&mut json);
    let line = |rx: &mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("a line in time")
    };
    tokio::task::block_in_place(|| {
        assert_eq!(line(&rows), "No instances.");
        let snap: Value = serde_json::from_str(&line(&objects)).unwrap();
        assert_eq!(snap["id"], first.as_str());
    });

    let second = ctl.spawn_on(&ids[1]).await;
    ctl.wait_state(&second, &["ready"]).await;
    ctl.run(&["instance", "stop", &second]).await.success();
    tokio::task::block_in_place(|| {
        let mut states = Vec::new();
        while !states.iter().any(|s| s == "Stopped") {
            let row = line(&rows);
            assert!(
                row.starts_with(&second),
                "only the filtered spawner's rows: {row}"
            );
            states.push(row.split_whitespace().nth(3).unwrap_or_default().to_owned());
        }
        assert!(states.iter().any(|s| s == "Ready"), "{states:?}");
        loop {
            let v: Value = serde_json::from_str(&line(&objects)).unwrap();
            if v["id"] == second.as_str() && v["state"] == "stopped" {
                break;
            }
        }
    });
    ctl.run(&["instance", "remove", &second]).await.success();
    tokio::task::block_in_place(|| while line(&rows) != format!("{second} removed") {});

    for mut child in [table, json] {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawner_list_watch_shows_a_spawner_going_offline() {
    let mut ctl = Ctl::start().await;
    ctl.login().await;
    let ids = ctl.sb.spawner_ids().await.unwrap();
    let mut child = ctl
        .command(&["spawner", "list", "--watch"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rows = lines_of(&mut child);
    let line = |rx: &mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(20))
            .expect("a line in time")
    };
    tokio::task::block_in_place(|| {
        assert!(line(&rows).starts_with("ID "));
        let listed = [line(&rows), line(&rows)];
        assert!(
            ids.iter()
                .all(|id| listed.iter().any(|l| l.starts_with(id.as_str())))
        );
    });
    // spawner_ids() lists in the sandbox's order: index 1 is ids[1].
    ctl.sb.stop_spawner(1).await.unwrap();
    tokio::task::block_in_place(|| {
        loop {
            let row = line(&rows);
            if row.starts_with(ids[1].as_str()) && row.contains("Offline") {
                break;
            }
        }
    });
    child.kill().unwrap();
    child.wait().unwrap();
    ctl.shutdown().await;
}
