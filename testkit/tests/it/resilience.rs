//! Link cuts, master restarts and spawner restarts lose and duplicate nothing.

use std::time::{Duration, Instant};

use exile_api::v1 as pb;
use exile_testkit::{Sandbox, SandboxOptions, eventually};
use pb::InstanceState as S;

use crate::support::{Watcher, is_up, processes_of, spawn};

async fn spawner_state(sb: &Sandbox, id: &str) -> Option<pb::SpawnerState> {
    let r = sb
        .admin()
        .await
        .ok()?
        .spawners
        .get_spawner(pb::GetSpawnerRequest { id: id.into() })
        .await
        .ok()?;
    r.into_inner().spawner.map(|s| s.state())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_link_goes_unreachable_within_ttl_and_comes_back_intact() {
    let opts = SandboxOptions::default();
    let ttl = Duration::from_millis(opts.heartbeat_ttl_ms);
    let sb = Sandbox::start(opts).await.unwrap();
    let admin = sb.admin().await.unwrap();
    let ids = sb.spawner_ids().await.unwrap();
    let a = spawn(&admin, &ids[0]).await.unwrap();
    let b = spawn(&admin, &ids[0]).await.unwrap();
    let mut w = Watcher::open(&admin).await.unwrap();

    let cut_at = Instant::now();
    sb.cut_link(0);
    w.until("spawner 0 unreachable", |w| {
        w.spawners.get(&ids[0]) == Some(&pb::SpawnerState::Unreachable)
    })
    .await
    .unwrap();
    let took = cut_at.elapsed();
    // TTL plus one sweep period and scheduling slack on a busy machine.
    assert!(took < ttl * 3, "unreachable after {took:?}, TTL {ttl:?}");
    w.until("instances unknown", |w| {
        w.state(&a.id) == Some(S::Unknown) && w.state(&b.id) == Some(S::Unknown)
    })
    .await
    .unwrap();
    assert_eq!(
        spawner_state(&sb, &ids[1]).await,
        Some(pb::SpawnerState::Online),
        "the other spawner is unaffected"
    );
    // Spawning on the cut-off spawner fails clearly instead of hanging.
    let err = spawn(&admin, &ids[0]).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<tonic::Status>().unwrap().code(),
        tonic::Code::Unavailable
    );

    sb.heal_link(0);
    w.until("spawner 0 online", |w| {
        w.spawners.get(&ids[0]) == Some(&pb::SpawnerState::Online)
    })
    .await
    .unwrap();
    w.until("instances running", |w| {
        w.state(&a.id).is_some_and(is_up) && w.state(&b.id).is_some_and(is_up)
    })
    .await
    .unwrap();
    let now = sb.instances().await.unwrap();
    for before in [&a, &b] {
        let after = now.iter().find(|i| i.id == before.id).unwrap();
        assert_eq!(after.pid, before.pid, "same process after the cut");
        assert_eq!(processes_of(&before.id), 1);
    }
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_restart_keeps_registry_credentials_and_instances() {
    let mut sb = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let admin = sb.admin().await.unwrap();
    let ids = sb.spawner_ids().await.unwrap();
    let a = spawn(&admin, &ids[0]).await.unwrap();
    let b = spawn(&admin, &ids[1]).await.unwrap();
    let token = admin
        .auth
        .clone()
        .create_api_token(pb::CreateApiTokenRequest {
            name: "ci".into(),
            role: pb::Role::Viewer as i32,
            ttl_seconds: 3600,
        })
        .await
        .unwrap()
        .into_inner()
        .secret;

    sb.stop_master().await.unwrap();
    sb.start_master().await.unwrap();
    // The same spawners come back by themselves with their stored credentials.
    sb.wait_spawners_online(2, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        sb.spawner_ids().await.unwrap(),
        ids,
        "no spawner enrolled twice"
    );
    let list = sb
        .admin()
        .await
        .unwrap()
        .spawners
        .list_spawners(pb::ListSpawnersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.spawners.len(), 2);
    let now = eventually(
        "instances running again",
        Duration::from_secs(20),
        || async {
            let l = sb.instances().await.ok()?;
            l.iter().all(|i| is_up(i.state())).then_some(l)
        },
    )
    .await
    .unwrap();
    assert_eq!(now.len(), 2);
    for before in [&a, &b] {
        let after = now
            .iter()
            .find(|i| i.id == before.id)
            .expect("instance kept");
        assert_eq!(after.pid, before.pid);
        assert_eq!(after.created_at_unix_ms, before.created_at_unix_ms);
    }
    // Sessions and API tokens survive too.
    let viewer = exile_testkit::clients(
        exile_testkit::connect(sb.master_addr()).await.unwrap(),
        &token,
    )
    .unwrap();
    let who = viewer
        .auth
        .clone()
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(who.subject, "ci");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawner_restart_readopts_without_duplicates() {
    let mut sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let ids = sb.spawner_ids().await.unwrap();
    let mut before = Vec::new();
    for _ in 0..3 {
        before.push(spawn(&admin, &ids[0]).await.unwrap());
    }
    sb.stop_spawner(0).await.unwrap();
    eventually("spawner offline", Duration::from_secs(10), || async {
        (spawner_state(&sb, &ids[0]).await == Some(pb::SpawnerState::Offline)).then_some(())
    })
    .await
    .unwrap();
    for i in &before {
        assert_eq!(processes_of(&i.id), 1, "game servers outlive their spawner");
    }
    sb.start_spawner(0).unwrap();
    sb.wait_spawners_online(1, Duration::from_secs(20))
        .await
        .unwrap();
    let now = eventually("instances running", Duration::from_secs(20), || async {
        let l = sb.instances().await.ok()?;
        (l.len() == 3 && l.iter().all(|i| is_up(i.state()))).then_some(l)
    })
    .await
    .unwrap();
    for b in &before {
        let a = now.iter().find(|i| i.id == b.id).unwrap();
        assert_eq!(a.pid, b.pid, "re-adopted, not relaunched");
        assert_eq!(processes_of(&b.id), 1, "no duplicate process");
    }
    // Adopted instances can still be stopped.
    let r = admin
        .instances
        .clone()
        .stop_instance(pb::StopInstanceRequest {
            id: before[0].id.clone(),
            grace_period_seconds: 5,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.instance.unwrap().state(), S::Stopped);
    assert_eq!(processes_of(&before[0].id), 0);
    sb.shutdown().await;
}
