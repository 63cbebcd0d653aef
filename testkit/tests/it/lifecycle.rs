//! Spawning, watching, stopping and removing instances across spawners.

use std::collections::HashSet;

use exile_api::v1 as pb;
use exile_testkit::{Sandbox, SandboxOptions};
use pb::InstanceState as S;

use crate::support::{Watcher, is_up, processes_of, spawn, udp_status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_instances_across_two_spawners_every_change_watched() {
    let sb = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let admin = sb.admin().await.unwrap();
    let mut w = Watcher::open(&admin).await.unwrap();

    let mut ids = Vec::new();
    for _ in 0..10 {
        let i = spawn(&admin, "").await.unwrap();
        assert!(
            is_up(i.state()),
            "spawn answers once the process runs: {:?}",
            i.state()
        );
        ids.push(i);
    }
    let spawner_ids = sb.spawner_ids().await.unwrap();
    for s in &spawner_ids {
        let n = ids.iter().filter(|i| &i.spawner_id == s).count();
        assert_eq!(n, 5, "distributed placement puts 5 on each spawner");
    }
    let ports: HashSet<u32> = ids.iter().map(|i| i.ports[0].port).collect();
    assert_eq!(ports.len(), 10, "every instance has its own port");
    // The demo game calls the SDK's Ready once its sockets are bound.
    w.until("10 ready", |w| {
        ids.iter().all(|i| w.state(&i.id) == Some(S::Ready))
    })
    .await
    .unwrap();
    for i in &ids {
        assert_eq!(
            w.history[&i.id],
            vec![S::Starting, S::Running, S::Ready],
            "{} went Starting → Running → Ready",
            i.id
        );
        assert!(i.pid > 1);
        assert_eq!(processes_of(&i.id), 1);
    }
    // The games really serve on their ports.
    let status = udp_status(ids[0].ports[0].port).await.unwrap();
    assert!(status.contains("players"), "status answer: {status}");

    for i in &ids[..5] {
        let r = admin
            .instances
            .clone()
            .stop_instance(pb::StopInstanceRequest {
                id: i.id.clone(),
                grace_period_seconds: 5,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.instance.unwrap().state(), S::Stopped);
    }
    w.until("5 stopped", |w| {
        ids[..5].iter().all(|i| w.state(&i.id) == Some(S::Stopped))
    })
    .await
    .unwrap();
    for i in &ids[..5] {
        assert_eq!(
            w.history[&i.id],
            vec![S::Starting, S::Running, S::Ready, S::Stopping, S::Stopped]
        );
        assert_eq!(
            processes_of(&i.id),
            0,
            "stopped instance has no process left"
        );
    }
    // Start one again, then remove everything (running ones included).
    let again = admin
        .instances
        .clone()
        .start_instance(pb::StartInstanceRequest {
            id: ids[0].id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert!(is_up(again.state()), "{:?}", again.state());
    for i in &ids {
        admin
            .instances
            .clone()
            .remove_instance(pb::RemoveInstanceRequest { id: i.id.clone() })
            .await
            .unwrap();
    }
    w.until("10 removed", |w| {
        ids.iter().all(|i| w.removed.contains(&i.id))
    })
    .await
    .unwrap();
    assert!(sb.instances().await.unwrap().is_empty());
    for i in &ids {
        assert_eq!(processes_of(&i.id), 0);
    }

    // The audit log has every spawn, stop and removal, with who did it.
    let audit = admin
        .system
        .clone()
        .list_audit_log(pb::ListAuditLogRequest {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let count = |action: &str| {
        audit
            .iter()
            .filter(|e| e.action == action && e.result == "ok")
            .count()
    };
    assert_eq!(count("SpawnInstance"), 10);
    assert_eq!(count("StopInstance"), 5);
    assert_eq!(count("RemoveInstance"), 10);
    assert!(
        audit
            .iter()
            .filter(|e| e.action == "SpawnInstance")
            .all(|e| e.actor == "admin" && e.target.starts_with("inst-"))
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capacity_drain_and_placement_errors_are_clear() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 2,
        capacity: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let ids = sb.spawner_ids().await.unwrap();
    spawn(&admin, &ids[0]).await.unwrap();
    spawn(&admin, &ids[0]).await.unwrap();
    let err = spawn(&admin, &ids[0]).await.unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().unwrap();
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("at capacity (2/2"),
        "{}",
        status.message()
    );

    // Draining spawner 1 leaves no room anywhere.
    admin
        .spawners
        .clone()
        .drain_spawner(pb::DrainSpawnerRequest { id: ids[1].clone() })
        .await
        .unwrap();
    let err = spawn(&admin, "").await.unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().unwrap();
    assert_eq!(
        status.code(),
        tonic::Code::FailedPrecondition,
        "{}",
        status.message()
    );
    let err = spawn(&admin, &ids[1]).await.unwrap_err();
    assert!(
        err.downcast_ref::<tonic::Status>()
            .unwrap()
            .message()
            .contains("draining")
    );
    admin
        .spawners
        .clone()
        .undrain_spawner(pb::UndrainSpawnerRequest { id: ids[1].clone() })
        .await
        .unwrap();
    let placed = spawn(&admin, "").await.unwrap();
    assert_eq!(
        placed.spawner_id, ids[1],
        "the master picks the spawner with room"
    );

    let err = spawn(&admin, "spw-nope").await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<tonic::Status>().unwrap().code(),
        tonic::Code::NotFound
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_game_reports_ready_and_players_through_the_sdk() {
    let sb = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let admin = sb.admin().await.unwrap();
    let mut w = Watcher::open(&admin).await.unwrap();
    let i = spawn(&admin, "").await.unwrap();
    w.until("ready", |w| w.state(&i.id) == Some(S::Ready))
        .await
        .unwrap();
    let port = u16::try_from(i.ports[0].port).unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(b"join", ("127.0.0.1", port)).await.unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = tokio::time::timeout(std::time::Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).contains("\"players\":1"),
        "join answer: {}",
        String::from_utf8_lossy(&buf[..n])
    );
    w.until("one player", |w| w.players.get(&i.id) == Some(&1))
        .await
        .unwrap();
    // Heartbeats (every 200 ms here) carry the count too; the next ones must not reset it.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let listed = sb.instances().await.unwrap();
    let me = listed.iter().find(|x| x.id == i.id).unwrap();
    assert_eq!((me.players, me.max_players), (1, 16));
    assert_eq!(me.state(), S::Ready);
}
