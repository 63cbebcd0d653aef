//! Allocation against simulated spawners (many Ready instances, no processes): no instance is
//! handed out twice under concurrency, idempotency keys replay, preferred selectors are tried
//! in order, and an allocator token can do nothing else. Against a real demo game: the game's
//! instance carries the allocation's annotations and returns to Ready when the match ends.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use exile_api::v1 as pb;
use exile_testkit::{Clients, Sandbox, SandboxOptions, clients, connect, eventually, sim};
use tokio_util::sync::CancellationToken;

fn labels(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn by_labels(kv: &[(&str, &str)]) -> pb::AllocationSelector {
    pb::AllocationSelector {
        labels: labels(kv),
        ..Default::default()
    }
}

async fn ready_count(c: &Clients, pool: &str) -> usize {
    c.instances
        .clone()
        .list_instances(pb::ListInstancesRequest {
            states: vec![pb::InstanceState::Ready as i32],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .instances
        .iter()
        .filter(|i| i.labels.get("pool").map(String::as_str) == Some(pool))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_allocations_never_share_an_instance() {
    let sb = Sandbox::master_only().await.unwrap();
    let admin = sb.admin().await.unwrap();
    let addr = sb.master_addr();
    let stop = CancellationToken::new();
    let mut sims = Vec::new();
    let mut add = |name: String, instances: Vec<pb::InstanceStatus>, cred: String| {
        let stop = stop.clone();
        sims.push(tokio::spawn(async move {
            let ch = connect(addr).await.unwrap();
            sim::run(
                ch,
                cred,
                name,
                instances,
                Duration::from_millis(200),
                None,
                stop,
            )
            .await
            .unwrap()
        }));
    };
    for i in 0..5 {
        let name = format!("sim-{i}");
        let cred = sim::enroll(&admin, addr, &name).await.unwrap();
        let insts = sim::ready_instances(&name, 20, &labels(&[("pool", "sim")]));
        add(name, insts, cred);
    }
    let cred = sim::enroll(&admin, addr, "sim-pref").await.unwrap();
    let mut pref =
        sim::ready_instances("pref-ctf", 1, &labels(&[("pool", "pref"), ("mode", "ctf")]));
    pref.extend(sim::ready_instances(
        "pref-dm",
        1,
        &labels(&[("pool", "pref"), ("mode", "dm")]),
    ));
    pref.extend(sim::ready_instances(
        "idem",
        2,
        &labels(&[("pool", "idem")]),
    ));
    add("sim-pref".into(), pref, cred);
    eventually("100 Ready", Duration::from_secs(30), || async {
        (ready_count(&admin, "sim").await == 100).then_some(())
    })
    .await
    .unwrap();

    // A matchmaker's token: it may allocate and nothing else.
    let secret = admin
        .auth
        .clone()
        .create_api_token(pb::CreateApiTokenRequest {
            name: "matchmaker".into(),
            role: pb::Role::Allocator as i32,
            ttl_seconds: 600,
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let mm = clients(connect(addr).await.unwrap(), &secret).unwrap();
    let denied = mm
        .instances
        .clone()
        .list_instances(pb::ListInstancesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let denied = mm
        .fleets
        .clone()
        .scale_fleet(pb::ScaleFleetRequest {
            name: "x".into(),
            replicas: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);

    // 200 at once against 100 Ready.
    let mut calls = Vec::new();
    for _ in 0..200 {
        let mut a = mm.allocations.clone();
        calls.push(tokio::spawn(async move {
            a.allocate(pb::AllocateRequest {
                required: Some(by_labels(&[("pool", "sim")])),
                annotations: labels(&[("match", "m")]),
                ..Default::default()
            })
            .await
        }));
    }
    let mut won = HashSet::new();
    let mut exhausted = 0;
    for c in calls {
        match c.await.unwrap() {
            Ok(r) => {
                let r = r.into_inner();
                assert!(!r.address.is_empty() && !r.ports.is_empty(), "{r:?}");
                assert!(
                    won.insert(r.instance_id),
                    "an instance was handed out twice"
                );
            }
            Err(s) => {
                assert_eq!(s.code(), tonic::Code::ResourceExhausted, "{s:?}");
                assert!(s.message().contains("pool=sim"), "{}", s.message());
                exhausted += 1;
            }
        }
    }
    assert_eq!((won.len(), exhausted), (100, 100));
    // Every spawner was told, and confirmed: the master shows them Allocated with the
    // annotation the spawner reports back.
    eventually("all confirmed", Duration::from_secs(20), || async {
        let all = admin
            .instances
            .clone()
            .list_instances(pb::ListInstancesRequest {
                states: vec![pb::InstanceState::Allocated as i32],
                ..Default::default()
            })
            .await
            .ok()?
            .into_inner()
            .instances;
        let confirmed = all
            .iter()
            .filter(|i| {
                won.contains(&i.id) && i.annotations.get("match").map(String::as_str) == Some("m")
            })
            .count();
        (confirmed == 100).then_some(())
    })
    .await
    .unwrap();

    // Preferred selectors in order, then the required one; the answer names what failed.
    let mut a = mm.allocations.clone();
    let pref_req = || pb::AllocateRequest {
        preferred: vec![by_labels(&[("pool", "pref"), ("mode", "ctf")])],
        required: Some(by_labels(&[("pool", "pref")])),
        ..Default::default()
    };
    let first = a.allocate(pref_req()).await.unwrap().into_inner();
    assert_eq!(first.instance_id, "pref-ctf-0");
    let second = a.allocate(pref_req()).await.unwrap().into_inner();
    assert_eq!(second.instance_id, "pref-dm-0");
    let none = a.allocate(pref_req()).await.unwrap_err();
    assert_eq!(none.code(), tonic::Code::ResourceExhausted);
    assert!(
        none.message().contains("mode=ctf,pool=pref") && none.message().contains("nor pool=pref"),
        "{}",
        none.message()
    );

    // The same idempotency key returns the same instance; another key another one.
    let keyed = |key: &str| pb::AllocateRequest {
        required: Some(by_labels(&[("pool", "idem")])),
        idempotency_key: key.into(),
        ..Default::default()
    };
    let k1 = a.allocate(keyed("k1")).await.unwrap().into_inner();
    assert!(!k1.replayed);
    let again = a.allocate(keyed("k1")).await.unwrap().into_inner();
    assert_eq!(again.instance_id, k1.instance_id);
    assert!(again.replayed);
    let k2 = a.allocate(keyed("k2")).await.unwrap().into_inner();
    assert_ne!(k2.instance_id, k1.instance_id);
    assert_eq!(
        a.allocate(keyed("k3")).await.unwrap_err().code(),
        tonic::Code::ResourceExhausted
    );
    // Bad input is refused with the field named.
    let big = a
        .allocate(pb::AllocateRequest {
            metadata: vec![0; 5000],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(big.code(), tonic::Code::InvalidArgument);
    assert!(big.message().contains("metadata"));

    stop.cancel();
    let mut told = sim::Tally::default();
    for s in sims {
        let t = s.await.unwrap();
        told.allocations += t.allocations;
        told.conflicts += t.conflicts;
    }
    // 100 + 2 preferred + 2 keyed: each allocation reached its spawner exactly once, and
    // never for an instance that was not Ready there.
    assert_eq!(
        told,
        sim::Tally {
            allocations: 104,
            conflicts: 0
        }
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_game_is_allocated_and_returns_to_ready() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        master_args: vec!["--fleet-tick-ms=200".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    admin
        .fleets
        .clone()
        .create_fleet(pb::CreateFleetRequest {
            name: "duel".into(),
            spec: Some(pb::FleetSpec {
                replicas: 2,
                labels: labels(&[("mode", "duel")]),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let t = Duration::from_secs(30);
    eventually("2 Ready", t, || async {
        let f = admin
            .fleets
            .clone()
            .get_fleet(pb::GetFleetRequest {
                name: "duel".into(),
            })
            .await
            .ok()?
            .into_inner()
            .fleet?;
        (f.status?.ready == 2).then_some(())
    })
    .await
    .unwrap();
    let got = admin
        .allocations
        .clone()
        .allocate(pb::AllocateRequest {
            required: Some(pb::AllocationSelector {
                fleet: "duel".into(),
                labels: labels(&[("mode", "duel")]),
                min_free_players: 0,
            }),
            labels: labels(&[("match", "m-7")]),
            annotations: labels(&[("team", "red")]),
            metadata: b"{\"map\":\"dust\"}".to_vec(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.fleet, "duel");
    // The spawner applied it: its status (what the game reads through WatchInstance) carries
    // the label and the annotation.
    let get = |id: String| {
        let mut c = admin.instances.clone();
        async move {
            c.get_instance(pb::GetInstanceRequest { id })
                .await
                .ok()?
                .into_inner()
                .instance
        }
    };
    eventually("confirmed by the spawner", t, || async {
        let i = get(got.instance_id.clone()).await?;
        (i.state() == pb::InstanceState::Allocated
            && i.labels.get("match").map(String::as_str) == Some("m-7")
            && i.annotations.get("team").map(String::as_str) == Some("red"))
        .then_some(())
    })
    .await
    .unwrap();
    // The allocated one still counts toward the fleet: no third instance is placed.
    eventually("counts 1 allocated, 1 ready", t, || async {
        let f = admin
            .fleets
            .clone()
            .get_fleet(pb::GetFleetRequest {
                name: "duel".into(),
            })
            .await
            .ok()?
            .into_inner()
            .fleet?;
        let s = f.status?;
        (s.allocated == 1 && s.ready == 1 && s.current == 2).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(sb.instances().await.unwrap().len(), 2);
    // The match ends: the game says Ready again and the allocation's annotations are gone.
    admin
        .instances
        .clone()
        .send_console_command(pb::SendConsoleCommandRequest {
            id: got.instance_id.clone(),
            line: "ready".into(),
        })
        .await
        .unwrap();
    eventually("Ready again", t, || async {
        let i = get(got.instance_id.clone()).await?;
        (i.state() == pb::InstanceState::Ready && i.annotations.is_empty()).then_some(())
    })
    .await
    .unwrap();
    sb.shutdown().await;
}
