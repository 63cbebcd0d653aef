//! A spawner in its own network namespace is cut off from the master for 30 s: it becomes
//! Unreachable after the TTL, its instances Unknown; on heal they reconcile with the same
//! processes and nothing is duplicated.

use std::time::{Duration, Instant};

use exile_api::v1 as pb;
use exile_testkit::{Sandbox, SandboxOptions, SpawnerProcessOptions};
use pb::InstanceState as S;

use super::host::{NetNs, skip};
use crate::support::{Watcher, is_up, processes_of, spawn};

/// How long the partition lasts (what operators see in a real network cut).
const PARTITION: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_spawner_goes_unreachable_and_reconciles_on_heal() {
    // Declared before the sandbox so it is removed after the sandbox killed its processes.
    let ns = match NetNs::create() {
        Ok(ns) => ns,
        Err(why) => return skip(&why),
    };
    let opts = SandboxOptions {
        spawners: 0,
        // Loopback is not reachable from another namespace: the host end of the pair is.
        master_ip: Some(ns.host_ip.into()),
        ..Default::default()
    };
    let ttl = Duration::from_millis(opts.heartbeat_ttl_ms);
    let mut sb = Sandbox::start(opts).await.unwrap();
    sb.add_spawner_process(
        "netns-0",
        SpawnerProcessOptions {
            master_url: Some(sb.master_url()),
            wrapper: ns.exec_prefix(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    sb.wait_spawners_online(1, Duration::from_secs(20))
        .await
        .unwrap();
    let id = sb.spawner_ids().await.unwrap().remove(0);
    let admin = sb.admin().await.unwrap();
    let mut before = Vec::new();
    for _ in 0..3 {
        before.push(spawn(&admin, &id).await.unwrap());
    }
    let mut w = Watcher::open(&admin).await.unwrap();
    w.until("instances up", |w| {
        before.iter().all(|i| w.state(&i.id).is_some_and(is_up))
    })
    .await
    .unwrap();
    let before = sb.instances().await.unwrap();
    assert_eq!(before.len(), 3);

    let cut_at = Instant::now();
    ns.cut().unwrap();
    w.until("the spawner unreachable", |w| {
        w.spawners.get(&id) == Some(&pb::SpawnerState::Unreachable)
    })
    .await
    .unwrap();
    let took = cut_at.elapsed();
    // TTL plus one sweep period and scheduling slack on a busy machine.
    assert!(took < ttl * 3, "unreachable after {took:?}, TTL {ttl:?}");
    w.until("instances unknown", |w| {
        before.iter().all(|i| w.state(&i.id) == Some(S::Unknown))
    })
    .await
    .unwrap();

    // The partition lasts its full length; the games keep running on the far side.
    tokio::time::sleep(PARTITION.saturating_sub(cut_at.elapsed())).await;
    let mid = sb.instances().await.unwrap();
    assert!(
        mid.iter().all(|i| i.state() == S::Unknown),
        "still unknown at the end of the partition: {mid:?}"
    );
    for i in &before {
        assert_eq!(
            processes_of(&i.id),
            1,
            "{} runs through the partition",
            i.id
        );
    }

    let healed_at = Instant::now();
    ns.heal().unwrap();
    w.until("the spawner online", |w| {
        w.spawners.get(&id) == Some(&pb::SpawnerState::Online)
    })
    .await
    .unwrap();
    w.until("instances up again", |w| {
        before.iter().all(|i| w.state(&i.id).is_some_and(is_up))
    })
    .await
    .unwrap();
    eprintln!("reconciled {:?} after the heal", healed_at.elapsed());
    let after = sb.instances().await.unwrap();
    assert_eq!(after.len(), 3, "no instance lost or added: {after:?}");
    for b in &before {
        let a = after.iter().find(|i| i.id == b.id).unwrap();
        assert_eq!(a.pid, b.pid, "{} is the same process after the heal", b.id);
        assert_eq!(a.spawner_id, id);
        assert_eq!(processes_of(&b.id), 1, "{} is not duplicated", b.id);
    }
    sb.shutdown().await;
}
