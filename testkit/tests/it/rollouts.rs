//! Rollouts end to end: demo-game instances of an uploaded build on two spawners are replaced
//! by another version one at a time, with their labels and settings; an instance a game marked
//! Allocated is left until it is released; a version whose game exits at once is rolled back
//! by itself, and the activation the rollout made is put back.

use std::io::Write;
use std::time::Duration;

use sha2::Digest;

use exile_api::v1 as pb;
use exile_testkit::{Clients, Sandbox, SandboxOptions, demo_game_bin, eventually};

const MANIFEST: &str = "[run]\ncommand = \"./exile-demo-game --port {port}\"\n";

/// A tar.gz build holding `files`, each (path, bytes, mode).
fn tar_gz(files: &[(&str, Vec<u8>, u32)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_cksum();
        tar.append_data(&mut h, path, data.as_slice()).unwrap();
    }
    let mut gz = tar.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

/// The demo game as a build; `tag` makes each version's archive its own.
fn demo_build(tag: &str) -> Vec<u8> {
    let game = std::fs::read(demo_game_bin().unwrap()).unwrap();
    tar_gz(&[
        ("exile-demo-game", game, 0o755),
        ("exile-build.toml", MANIFEST.as_bytes().to_vec(), 0o644),
        ("VERSION", tag.as_bytes().to_vec(), 0o644),
    ])
}

/// A build whose game exits with code 3 as soon as it starts.
fn broken_build() -> Vec<u8> {
    tar_gz(&[
        ("run.sh", b"#!/bin/sh\nexit 3\n".to_vec(), 0o755),
        (
            "exile-build.toml",
            b"[run]\ncommand = \"./run.sh\"\n[restart]\npolicy = \"never\"\n".to_vec(),
            0o644,
        ),
    ])
}

async fn push(c: &Clients, name: &str, version: &str, data: &[u8]) {
    use pb::upload_build_request::Kind;
    let mut msgs = vec![pb::UploadBuildRequest {
        kind: Some(Kind::Metadata(pb::UploadBuildMetadata {
            name: name.into(),
            version: version.into(),
            sha256: hex::encode(sha2::Sha256::digest(data)),
            size: data.len() as u64,
            file_name: format!("{name}.tar.gz"),
            manifest: String::new(),
        })),
    }];
    msgs.extend(data.chunks(1 << 20).map(|p| pb::UploadBuildRequest {
        kind: Some(Kind::Data(p.to_vec())),
    }));
    c.builds
        .clone()
        .upload_build(futures::stream::iter(msgs))
        .await
        .unwrap_or_else(|e| panic!("push {name}@{version}: {e}"));
}

async fn spawn(c: &Clients, build: &str) -> pb::Instance {
    c.instances
        .clone()
        .spawn_instance(pb::SpawnInstanceRequest {
            build: build.into(),
            labels: [("mode".to_owned(), "ctf".to_owned())].into(),
            env: [("MATCH".to_owned(), "7".to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("spawn {build}: {e}"))
        .into_inner()
        .instance
        .unwrap()
}

async fn instances(c: &Clients) -> Vec<pb::Instance> {
    c.instances
        .clone()
        .list_instances(pb::ListInstancesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .instances
}

async fn rollout(c: &Clients, id: &str) -> pb::Rollout {
    c.builds
        .clone()
        .get_rollout(pb::GetRolloutRequest {
            id: id.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rollout
        .unwrap()
}

async fn console(c: &Clients, id: &str, line: &str) {
    c.instances
        .clone()
        .send_console_command(pb::SendConsoleCommandRequest {
            id: id.into(),
            line: line.into(),
        })
        .await
        .unwrap();
}

fn state(i: &pb::Instance) -> pb::InstanceState {
    pb::InstanceState::from_wire(i.state)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_replaces_instances_alike_and_waits_for_an_allocated_one() {
    let sb = Sandbox::start(SandboxOptions::default()).await.unwrap();
    sb.wait_spawners_online(2, Duration::from_secs(20))
        .await
        .unwrap();
    let c = sb.admin().await.unwrap();
    push(&c, "demo", "1", &demo_build("1")).await;
    push(&c, "demo", "2", &demo_build("2")).await;
    let mut old = Vec::new();
    for _ in 0..6 {
        old.push(spawn(&c, "demo@1").await.id);
    }
    eventually(
        "six Ready instances of demo@1",
        Duration::from_secs(60),
        || {
            let c = c.clone();
            async move {
                let all = instances(&c).await;
                (all.iter()
                    .filter(|i| state(i) == pb::InstanceState::Ready)
                    .count()
                    == 6)
                    .then_some(())
            }
        },
    )
    .await
    .unwrap();
    let spawners: std::collections::BTreeSet<String> = instances(&c)
        .await
        .into_iter()
        .map(|i| i.spawner_id)
        .collect();
    assert_eq!(spawners.len(), 2, "spread over both spawners");

    // A match starts on one of them.
    let held = old[2].clone();
    console(&c, &held, "allocate").await;
    eventually("the allocated instance", Duration::from_secs(20), || {
        let (c, held) = (c.clone(), held.clone());
        async move {
            instances(&c)
                .await
                .iter()
                .any(|i| i.id == held && state(i) == pb::InstanceState::Allocated)
                .then_some(())
        }
    })
    .await
    .unwrap();

    let started = c
        .builds
        .clone()
        .start_rollout(pb::StartRolloutRequest {
            build: "demo@2".into(),
            max_unavailable: 1,
            activate: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rollout
        .unwrap();
    assert_eq!(started.total, 6);
    assert_eq!(started.state, pb::RolloutState::Running as i32);

    // Five are replaced; the allocated one waits, untouched.
    let r = eventually(
        "five replaced, one waiting",
        Duration::from_secs(120),
        || {
            let (c, id) = (c.clone(), started.id.clone());
            async move {
                let r = rollout(&c, &id).await;
                (r.replaced == 5 && r.waiting_allocated == 1).then_some(r)
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(r.state, pb::RolloutState::Running as i32, "{r:?}");
    assert_eq!(r.failed, 0, "{r:?}");
    let now = instances(&c).await;
    let kept = now
        .iter()
        .find(|i| i.id == held)
        .expect("the allocated one is gone");
    assert_eq!(state(kept), pb::InstanceState::Allocated);
    assert_eq!(kept.build_version, "1");
    let new: Vec<&pb::Instance> = now.iter().filter(|i| i.build_version == "2").collect();
    assert_eq!(new.len(), 5, "{now:?}");
    for i in &new {
        assert!(!old.contains(&i.id), "{} was not a new instance", i.id);
        assert_eq!(i.build_name, "demo");
        assert_eq!(i.labels.get("mode").map(String::as_str), Some("ctf"));
        assert!(
            exile_testkit::procstat::environ(i.pid)
                .unwrap()
                .iter()
                .any(|v| v == "MATCH=7"),
            "the spawn's env was not carried over"
        );
    }

    // The match ends: the last one is replaced and the rollout succeeds.
    console(&c, &held, "ready").await;
    let r = eventually("the rollout to succeed", Duration::from_secs(60), || {
        let (c, id) = (c.clone(), started.id.clone());
        async move {
            let r = rollout(&c, &id).await;
            (r.finished_at_unix_ms != 0).then_some(r)
        }
    })
    .await
    .unwrap();
    assert_eq!(r.state, pb::RolloutState::Succeeded as i32, "{r:?}");
    assert_eq!(r.replaced, 6);
    let now = instances(&c).await;
    assert_eq!(now.len(), 6, "{now:?}");
    assert!(
        now.iter()
            .all(|i| i.build_version == "2" && !old.contains(&i.id))
    );
    // The version is active now: a plain spawn of the name gets it.
    assert_eq!(spawn(&c, "demo").await.build_version, "2");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_whose_game_exits_at_once_is_rolled_back_by_itself() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    sb.wait_spawners_online(1, Duration::from_secs(20))
        .await
        .unwrap();
    let c = sb.admin().await.unwrap();
    push(&c, "demo", "1", &demo_build("1")).await;
    push(&c, "demo", "3", &broken_build()).await;
    c.builds
        .clone()
        .activate_build(pb::ActivateBuildRequest {
            build: "demo@1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut old = Vec::new();
    for _ in 0..3 {
        old.push(spawn(&c, "demo").await.id);
    }
    let started = c
        .builds
        .clone()
        .start_rollout(pb::StartRolloutRequest {
            build: "demo@3".into(),
            max_unavailable: 1,
            failure_threshold: 1,
            activate: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .rollout
        .unwrap();
    // Deleting the target of a running rollout is refused.
    let refused = c
        .builds
        .clone()
        .delete_build(pb::DeleteBuildRequest {
            build: "demo@3".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    let r = eventually("the rollout to end", Duration::from_secs(90), || {
        let (c, id) = (c.clone(), started.id.clone());
        async move {
            let r = rollout(&c, &id).await;
            (r.finished_at_unix_ms != 0).then_some(r)
        }
    })
    .await
    .unwrap();
    assert_eq!(r.state, pb::RolloutState::RolledBack as i32, "{r:?}");
    assert_eq!(r.failed, 1, "{r:?}");
    assert!(r.message.contains("rolling back"), "{}", r.message);
    // The old instances still run, the crashed new one is gone.
    let now = eventually(
        "only the old instances left",
        Duration::from_secs(30),
        || {
            let c = c.clone();
            async move {
                let all = instances(&c).await;
                (all.len() == 3).then_some(all)
            }
        },
    )
    .await
    .unwrap();
    for i in &now {
        assert!(old.contains(&i.id), "{now:?}");
        assert_eq!(i.build_version, "1");
        assert!(state(i).has_process(), "{i:?}");
    }
    // The activation went back to the version that works.
    let build = c
        .builds
        .clone()
        .get_build(pb::GetBuildRequest {
            build: "demo@1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .build
        .unwrap();
    assert_eq!(build.activations.len(), 1, "{build:?}");
    sb.shutdown().await;
}

/// A fleet's members as Watch shows them: state and version by id, and the fewest serving
/// (Ready or Allocated) and most counted ever seen, and every state each member went through.
#[derive(Default)]
struct FleetView {
    now: std::collections::HashMap<String, (pb::InstanceState, String)>,
    history: std::collections::HashMap<String, Vec<pb::InstanceState>>,
    fewest_serving: Option<usize>,
    most: usize,
}

impl FleetView {
    fn serving(&self) -> usize {
        self.now
            .values()
            .filter(|(s, _)| matches!(s, pb::InstanceState::Ready | pb::InstanceState::Allocated))
            .count()
    }

    fn on(&self, version: &str, s: pb::InstanceState) -> usize {
        self.now
            .values()
            .filter(|(st, v)| *st == s && v == version)
            .count()
    }
}

/// Follows fleet `name` through Watch from now on.
async fn watch_fleet(c: &Clients, name: &str) -> std::sync::Arc<std::sync::Mutex<FleetView>> {
    use futures::StreamExt;
    use pb::watch_event::Kind;
    let mut stream = c
        .events
        .clone()
        .watch(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    let view = std::sync::Arc::new(std::sync::Mutex::new(FleetView::default()));
    let (v, name) = (view.clone(), name.to_owned());
    let seen = move |v: &mut FleetView, i: &pb::Instance| {
        if i.labels.get(exile_api::fleet::FLEET_LABEL) != Some(&name) {
            return;
        }
        // Stopping ones are on their way out, ended ones gone: neither serving nor counted.
        if matches!(
            state(i),
            pb::InstanceState::Stopping | pb::InstanceState::Stopped | pb::InstanceState::Crashed
        ) {
            v.now.remove(&i.id);
        } else {
            v.now
                .insert(i.id.clone(), (state(i), i.build_version.clone()));
        }
        let h = v.history.entry(i.id.clone()).or_default();
        if h.last() != Some(&state(i)) {
            h.push(state(i));
        }
    };
    let first = stream.next().await.unwrap().unwrap();
    let Some(Kind::Snapshot(snap)) = first.kind else {
        panic!("no snapshot first")
    };
    {
        let mut g = v.lock().unwrap();
        for i in &snap.instances {
            seen(&mut g, i);
        }
    }
    tokio::spawn(async move {
        while let Some(Ok(ev)) = stream.next().await {
            let mut g = v.lock().unwrap();
            match ev.kind {
                Some(Kind::InstanceUpdated(i)) => seen(&mut g, &i),
                Some(Kind::InstanceRemoved(id)) => {
                    g.now.remove(&id);
                }
                _ => continue,
            }
            let serving = g.serving();
            g.fewest_serving = Some(g.fewest_serving.map_or(serving, |f| f.min(serving)));
            g.most = g.most.max(g.now.len());
        }
    });
    view
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_rolls_to_a_new_build_within_its_limits_and_follows_activations() {
    let sb = Sandbox::start(SandboxOptions {
        master_args: vec!["--fleet-tick-ms=200".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    sb.wait_spawners_online(2, Duration::from_secs(20))
        .await
        .unwrap();
    let c = sb.admin().await.unwrap();
    for v in ["1", "2", "3"] {
        push(&c, "demo", v, &demo_build(v)).await;
    }
    let t = Duration::from_secs(90);
    let mut spec = pb::FleetSpec {
        build: "demo@1".into(),
        replicas: 6,
        labels: [("mode".to_owned(), "ctf".to_owned())].into(),
        rollout: Some(pb::FleetRolloutStrategy {
            max_surge: 1,
            max_unavailable: 1,
        }),
        ..Default::default()
    };
    c.fleets
        .clone()
        .create_fleet(pb::CreateFleetRequest {
            name: "ctf".into(),
            spec: Some(spec.clone()),
        })
        .await
        .unwrap();
    let view = watch_fleet(&c, "ctf").await;
    eventually("6 Ready on demo@1", t, || {
        let view = view.clone();
        async move { (view.lock().unwrap().on("1", pb::InstanceState::Ready) == 6).then_some(()) }
    })
    .await
    .unwrap();
    // Two matches start.
    let mut held = Vec::new();
    for _ in 0..2 {
        let a = c
            .allocations
            .clone()
            .allocate(pb::AllocateRequest {
                required: Some(pb::AllocationSelector {
                    fleet: "ctf".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        held.push(a.instance_id);
    }
    eventually("2 Allocated", t, || {
        let view = view.clone();
        async move {
            (view.lock().unwrap().on("1", pb::InstanceState::Allocated) == 2).then_some(())
        }
    })
    .await
    .unwrap();
    {
        let mut g = view.lock().unwrap();
        g.fewest_serving = None;
        g.most = 0;
        g.history = g
            .now
            .iter()
            .map(|(id, (s, _))| (id.clone(), vec![*s]))
            .collect();
    }

    // To demo@2: the four Ready ones move, never fewer than 5 serving nor more than 7 in
    // all; the two Allocated ones stay on demo@1, untouched.
    spec.build = "demo@2".into();
    c.fleets
        .clone()
        .update_fleet(pb::UpdateFleetRequest {
            name: "ctf".into(),
            spec: Some(spec.clone()),
        })
        .await
        .unwrap();
    eventually("4 Ready on demo@2, 2 Allocated on demo@1", t, || {
        let view = view.clone();
        async move {
            let g = view.lock().unwrap();
            (g.on("2", pb::InstanceState::Ready) == 4
                && g.on("1", pb::InstanceState::Allocated) == 2
                && g.now.len() == 6)
                .then_some(())
        }
    })
    .await
    .unwrap();
    {
        let g = view.lock().unwrap();
        let fewest = g.fewest_serving.unwrap();
        assert!(fewest >= 5, "{fewest} serving at one point");
        assert!(g.most <= 7, "{} instances at one point", g.most);
        for id in &held {
            assert_eq!(
                g.history[id],
                vec![pb::InstanceState::Allocated],
                "{id} was touched"
            );
        }
    }
    // The status says two are on an older build (the Allocated ones).
    eventually("status: 2 outdated, 2 allocated", t, || {
        let c = c.clone();
        async move {
            let s = c
                .fleets
                .clone()
                .get_fleet(pb::GetFleetRequest { name: "ctf".into() })
                .await
                .ok()?
                .into_inner()
                .fleet?
                .status?;
            (s.outdated == 2 && s.allocated == 2 && s.ready == 4).then_some(())
        }
    })
    .await
    .unwrap();

    // One match ends: that instance is Ready again on demo@1, then moves to demo@2.
    console(&c, &held[0], "ready").await;
    eventually("5 Ready on demo@2", t, || {
        let view = view.clone();
        async move {
            let g = view.lock().unwrap();
            (g.on("2", pb::InstanceState::Ready) == 5 && g.now.len() == 6).then_some(())
        }
    })
    .await
    .unwrap();

    // Following the build's active version: nothing moves until a version is activated.
    spec.build = "demo".into();
    c.fleets
        .clone()
        .update_fleet(pb::UpdateFleetRequest {
            name: "ctf".into(),
            spec: Some(spec.clone()),
        })
        .await
        .unwrap();
    c.builds
        .clone()
        .activate_build(pb::ActivateBuildRequest {
            build: "demo@3".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    {
        let mut g = view.lock().unwrap();
        g.fewest_serving = None;
        g.most = 0;
    }
    eventually("5 Ready on demo@3", t, || {
        let view = view.clone();
        async move {
            let g = view.lock().unwrap();
            (g.on("3", pb::InstanceState::Ready) == 5
                && g.on("1", pb::InstanceState::Allocated) == 1
                && g.now.len() == 6)
                .then_some(())
        }
    })
    .await
    .unwrap();
    {
        let g = view.lock().unwrap();
        assert!(g.fewest_serving.unwrap() >= 5, "{:?}", g.fewest_serving);
        assert!(g.most <= 7, "{}", g.most);
        assert_eq!(g.history[&held[1]], vec![pb::InstanceState::Allocated]);
    }
    sb.shutdown().await;
}
