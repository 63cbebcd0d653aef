//! Fleets against real spawners and demo games: reaching the count, replacing a killed game,
//! riding out a cut link (replacement after the grace, surplus removed on heal, an Allocated
//! instance untouched), and the buffer autoscaler.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use exile_api::fleet::FLEET_LABEL;
use exile_api::v1 as pb;
use exile_testkit::{Clients, Sandbox, SandboxOptions, eventually};
use pb::InstanceState as S;

/// The fleet's instances, by id.
async fn members(c: &Clients, fleet: &str) -> BTreeMap<String, pb::Instance> {
    c.instances
        .clone()
        .list_instances(pb::ListInstancesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .instances
        .into_iter()
        .filter(|i| i.labels.get(FLEET_LABEL).map(String::as_str) == Some(fleet))
        .map(|i| (i.id.clone(), i))
        .collect()
}

fn count(m: &BTreeMap<String, pb::Instance>, state: S) -> usize {
    m.values().filter(|i| i.state() == state).count()
}

fn spec(replicas: u32) -> pb::FleetSpec {
    pb::FleetSpec {
        replicas,
        labels: [("mode".to_owned(), "ctf".to_owned())].into(),
        // A killed game is not restarted in place: the fleet must replace it.
        restart_policy: Some(pb::RestartPolicy {
            mode: pb::RestartMode::Never as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_keeps_its_count_through_a_crash_and_a_cut_link() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 3,
        master_args: vec![
            "--fleet-unreachable-grace-ms=3000".into(),
            "--fleet-tick-ms=200".into(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let ids = sb.spawner_ids().await.unwrap();
    let t = Duration::from_secs(60);

    let f = admin
        .fleets
        .clone()
        .create_fleet(pb::CreateFleetRequest {
            name: "ctf".into(),
            spec: Some(spec(10)),
        })
        .await
        .unwrap()
        .into_inner()
        .fleet
        .unwrap();
    assert_eq!(f.spec.unwrap().replicas, 10);
    let m = eventually("10 Ready", t, || async {
        let m = members(&admin, "ctf").await;
        (count(&m, S::Ready) == 10 && m.len() == 10).then_some(m)
    })
    .await
    .unwrap();
    // Distributed over the three spawners: 4/3/3.
    let mut per: Vec<usize> = ids
        .iter()
        .map(|s| m.values().filter(|i| &i.spawner_id == s).count())
        .collect();
    per.sort_unstable();
    assert_eq!(per, vec![3, 3, 4], "{m:?}");
    assert!(
        m.values()
            .all(|i| i.labels.get("mode").map(String::as_str) == Some("ctf"))
    );
    // The status counts follow.
    eventually("status 10 ready", t, || async {
        let f = admin
            .fleets
            .clone()
            .get_fleet(pb::GetFleetRequest { name: "ctf".into() })
            .await
            .ok()?
            .into_inner()
            .fleet?;
        let s = f.status?;
        (s.ready == 10 && s.current == 10).then_some(())
    })
    .await
    .unwrap();

    // Kill a game on spawner 1: it ends Crashed (no restart) and is replaced.
    let victim = m.values().find(|i| i.spawner_id == ids[1]).unwrap().clone();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(victim.pid).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let m = eventually("the killed one replaced", t, || async {
        let m = members(&admin, "ctf").await;
        (!m.contains_key(&victim.id) && count(&m, S::Ready) == 10 && m.len() == 10).then_some(m)
    })
    .await
    .unwrap();

    // A game on spawner 0 is handed to players (through the SDK, as a game would).
    let held = m
        .values()
        .find(|i| i.spawner_id == ids[0])
        .unwrap()
        .id
        .clone();
    console(&admin, &held, "allocate").await;
    eventually("held allocated", t, || async {
        let m = members(&admin, "ctf").await;
        (m.get(&held)?.state() == S::Allocated).then_some(())
    })
    .await
    .unwrap();
    let on_cut: HashSet<String> = m
        .values()
        .filter(|i| i.spawner_id == ids[0])
        .map(|i| i.id.clone())
        .collect();

    // Cut spawner 0's link: after the TTL its instances are unknown, after the grace they are
    // replaced on the other two.
    sb.cut_link(0);
    let m = eventually("replacements on the reachable spawners", t, || async {
        let m = members(&admin, "ctf").await;
        let reachable = m
            .values()
            .filter(|i| i.spawner_id != ids[0] && i.state() == S::Ready)
            .count();
        (reachable == 10).then_some(m)
    })
    .await
    .unwrap();
    assert!(
        m.values()
            .filter(|i| i.spawner_id == ids[0])
            .all(|i| i.state() == S::Unknown),
        "{m:?}"
    );

    // Heal: the cut spawner's instances come back, the surplus Ready ones are removed, the
    // Allocated one stays, and the fleet settles at 10 counted.
    sb.heal_link(0);
    let m = eventually("surplus removed", t, || async {
        let m = members(&admin, "ctf").await;
        let live = m
            .values()
            .filter(|i| matches!(i.state(), S::Ready | S::Allocated))
            .count();
        (live == 10 && m.len() == 10).then_some(m)
    })
    .await
    .unwrap();
    assert_eq!(m.get(&held).map(pb::Instance::state), Some(S::Allocated));
    assert_eq!(count(&m, S::Ready), 9);
    // The spawner came back with its instances: no duplicates, and the held one was never
    // removed or replaced.
    assert!(on_cut.contains(&held));

    // Scale down to 3: Ready ones go, the Allocated one stays.
    admin
        .fleets
        .clone()
        .scale_fleet(pb::ScaleFleetRequest {
            name: "ctf".into(),
            replicas: 3,
        })
        .await
        .unwrap();
    let m = eventually("scaled to 3", t, || async {
        let m = members(&admin, "ctf").await;
        (m.len() == 3 && count(&m, S::Ready) == 2).then_some(m)
    })
    .await
    .unwrap();
    assert_eq!(m.get(&held).map(pb::Instance::state), Some(S::Allocated));

    // Deleting the fleet removes all but the Allocated instance.
    admin
        .fleets
        .clone()
        .delete_fleet(pb::DeleteFleetRequest { name: "ctf".into() })
        .await
        .unwrap();
    eventually("only the allocated one left", t, || async {
        let m = members(&admin, "ctf").await;
        (m.len() == 1 && m.contains_key(&held)).then_some(())
    })
    .await
    .unwrap();
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_specs_are_checked_and_persisted() {
    let mut sb = Sandbox::start(SandboxOptions {
        spawners: 0,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let mut fleets = admin.fleets.clone();
    let bad = |name: &str, spec: pb::FleetSpec| pb::CreateFleetRequest {
        name: name.into(),
        spec: Some(spec),
    };
    for (name, s, field) in [
        ("bad name", spec(1), "fleet name"),
        (
            "f",
            pb::FleetSpec {
                replicas: 1_000_000,
                ..spec(1)
            },
            "replicas",
        ),
        (
            "f",
            pb::FleetSpec {
                labels: [(FLEET_LABEL.to_owned(), "x".to_owned())].into(),
                ..spec(1)
            },
            "labels",
        ),
        (
            "f",
            pb::FleetSpec {
                autoscaler: Some(pb::FleetAutoscaler {
                    min_replicas: 5,
                    max_replicas: 2,
                    sync_interval_seconds: 0,
                    policy: Some(pb::fleet_autoscaler::Policy::Buffer(pb::BufferPolicy {
                        buffer_size: 1,
                        buffer_percent: 0,
                    })),
                }),
                ..spec(1)
            },
            "min_replicas",
        ),
    ] {
        let e = fleets.create_fleet(bad(name, s)).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    fleets.create_fleet(bad("keep", spec(0))).await.unwrap();
    let dup = fleets.create_fleet(bad("keep", spec(0))).await.unwrap_err();
    assert_eq!(dup.code(), tonic::Code::AlreadyExists);
    let missing = fleets
        .get_fleet(pb::GetFleetRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // A master restart keeps the fleet.
    sb.stop_master().await.unwrap();
    sb.start_master().await.unwrap();
    let admin = sb.admin().await.unwrap();
    let listed = admin
        .fleets
        .clone()
        .list_fleets(pb::ListFleetsRequest {})
        .await
        .unwrap()
        .into_inner()
        .fleets;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "keep");
    assert_eq!(
        listed[0]
            .spec
            .as_ref()
            .unwrap()
            .labels
            .get("mode")
            .map(String::as_str),
        Some("ctf")
    );
    sb.shutdown().await;
}
