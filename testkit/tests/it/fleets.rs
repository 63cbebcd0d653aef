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
    let mut sb = Sandbox::master_only().await.unwrap();
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

/// Replica counts of the fleet_scaled events seen on a Watch, in order.
fn scale_events(c: &Clients) -> tokio::sync::mpsc::UnboundedReceiver<(u32, u32, String)> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut events = c.events.clone();
    tokio::spawn(async move {
        let mut s = events
            .watch(pb::WatchRequest {
                include_metrics: false,
            })
            .await
            .unwrap()
            .into_inner();
        while let Ok(Some(ev)) = s.message().await {
            if let Some(pb::watch_event::Kind::FleetScaled(e)) = ev.kind
                && tx.send((e.from, e.to, e.by)).is_err()
            {
                return;
            }
        }
    });
    rx
}

/// Scale events until one reaches `to`.
async fn scaled_until(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(u32, u32, String)>,
    to: u32,
) -> Vec<(u32, u32, String)> {
    let mut seen = Vec::new();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let done = ev.1 == to;
        seen.push(ev);
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buffer_autoscaler_follows_allocations_within_its_bounds() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 2,
        master_args: vec!["--fleet-tick-ms=200".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let mut scaled = scale_events(&admin);
    let t = Duration::from_secs(60);
    admin
        .fleets
        .clone()
        .create_fleet(pb::CreateFleetRequest {
            name: "pool".into(),
            spec: Some(pb::FleetSpec {
                autoscaler: Some(pb::FleetAutoscaler {
                    min_replicas: 10,
                    max_replicas: 20,
                    sync_interval_seconds: 1,
                    policy: Some(pb::fleet_autoscaler::Policy::Buffer(pb::BufferPolicy {
                        buffer_size: 5,
                        buffer_percent: 0,
                    })),
                }),
                ..spec(10)
            }),
        })
        .await
        .unwrap();
    eventually("10 Ready", t, || async {
        (count(&members(&admin, "pool").await, S::Ready) == 10).then_some(())
    })
    .await
    .unwrap();
    // People stay within the autoscaler's bounds.
    let e = admin
        .fleets
        .clone()
        .scale_fleet(pb::ScaleFleetRequest {
            name: "pool".into(),
            replicas: 30,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);

    // Allocate 8: the buffer of 5 Ready above them makes 13.
    let mut held = Vec::new();
    for _ in 0..8 {
        let r = admin
            .allocations
            .clone()
            .allocate(pb::AllocateRequest {
                required: Some(pb::AllocationSelector {
                    fleet: "pool".into(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        held.push(r.instance_id);
    }
    let m = eventually("13 with 5 Ready", t, || async {
        let m = members(&admin, "pool").await;
        (m.len() == 13 && count(&m, S::Ready) == 5 && count(&m, S::Allocated) == 8).then_some(m)
    })
    .await
    .unwrap();
    assert!(held.iter().all(|id| m.contains_key(id)));
    // Watch saw the autoscaler grow it (step by step, as allocations came) to 13.
    let steps = scaled_until(&mut scaled, 13).await;
    assert_eq!(steps.first().map(|e| e.0), Some(10), "{steps:?}");
    assert!(
        steps.iter().all(|e| e.1 > e.0 && e.2 == "autoscaler"),
        "{steps:?}"
    );

    // Six matches end: 2 allocated + 5 = 7 is below min, so 10; the 2 allocated stay.
    for id in &held[..6] {
        console(&admin, id, "ready").await;
    }
    let m = eventually("back to 10", t, || async {
        let m = members(&admin, "pool").await;
        (m.len() == 10 && count(&m, S::Allocated) == 2).then_some(m)
    })
    .await
    .unwrap();
    assert!(
        held[6..]
            .iter()
            .all(|id| m.get(id).map(pb::Instance::state) == Some(S::Allocated))
    );
    let steps = scaled_until(&mut scaled, 10).await;
    assert!(steps.iter().all(|e| e.1 < e.0 && e.1 >= 10), "{steps:?}");
    // The autoscaler's changes are in the audit log.
    let audit = admin
        .system
        .clone()
        .list_audit_log(pb::ListAuditLogRequest {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let by_autoscaler: Vec<&str> = audit
        .iter()
        .filter(|e| e.action == "ScaleFleet" && e.actor == "autoscaler")
        .map(|e| e.detail.as_str())
        .collect();
    assert!(
        by_autoscaler.iter().any(|d| d.contains("-> 13"))
            && by_autoscaler.iter().any(|d| d.contains("-> 10")),
        "{by_autoscaler:?}"
    );
    // The rest end: still never below min.
    for id in &held[6..] {
        console(&admin, id, "ready").await;
    }
    eventually("10 Ready", t, || async {
        let m = members(&admin, "pool").await;
        (m.len() == 10 && count(&m, S::Ready) == 10).then_some(())
    })
    .await
    .unwrap();
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_autoscaler_is_asked_and_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The webhook: always asks for 50 replicas, and counts what it was sent.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/scale", l.local_addr().unwrap());
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = vec![0u8; 16384];
            let n = s.read(&mut buf).await.unwrap_or(0);
            let _ = seen_tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let body = r#"{"replicas": 50}"#;
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        }
    });
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
            name: "hooked".into(),
            spec: Some(pb::FleetSpec {
                autoscaler: Some(pb::FleetAutoscaler {
                    min_replicas: 1,
                    max_replicas: 3,
                    sync_interval_seconds: 1,
                    policy: Some(pb::fleet_autoscaler::Policy::Webhook(pb::WebhookPolicy {
                        url,
                        timeout_ms: 500,
                    })),
                }),
                ..spec(1)
            }),
        })
        .await
        .unwrap();
    // The fleet's status went to the webhook as JSON.
    let req = tokio::time::timeout(Duration::from_secs(30), seen.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(req.starts_with("POST /scale"), "{req}");
    assert!(req.contains("\"name\":\"hooked\""), "{req}");
    // 50 asked, 3 allowed.
    eventually("3 Ready", Duration::from_secs(60), || async {
        let m = members(&admin, "hooked").await;
        let f = admin
            .fleets
            .clone()
            .get_fleet(pb::GetFleetRequest {
                name: "hooked".into(),
            })
            .await
            .ok()?
            .into_inner()
            .fleet?;
        (f.spec?.replicas == 3 && count(&m, S::Ready) == 3).then_some(())
    })
    .await
    .unwrap();
    sb.shutdown().await;
}
