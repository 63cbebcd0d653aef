//! Chaos, as tests: the master killed with SIGKILL under load, a spawner partitioned from
//! the master, a spawner's disk filling up. None of them may lose or duplicate an instance.

mod disk_full;
mod host;
mod partition;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use exile_api::v1 as pb;
use exile_testkit::{Clients, Sandbox, SandboxOptions, eventually};
use pb::InstanceState as S;

use crate::support::{is_up, process_census, spawn};

const SPAWNERS: usize = 5;
const PER_SPAWNER: usize = 20;

/// What the client was told succeeded.
#[derive(Default)]
struct Acked {
    /// Spawned (OK), in order.
    spawned: Vec<String>,
    /// Stopped (OK).
    stopped: HashSet<String>,
}

/// Spawns on each spawner in turn and stops what it spawned, until cancelled; failures (the
/// master is down) are expected and not recorded.
async fn churn(
    c: Clients,
    spawners: Vec<String>,
    acked: Arc<Mutex<Acked>>,
    stop: CancellationToken,
) {
    let mut n = 0usize;
    // Stopped instances keep their slot: bound the churn below each spawner's spare capacity.
    while !stop.is_cancelled() && n < 40 {
        let target = &spawners[n % spawners.len()];
        n += 1;
        let Ok(i) = spawn(&c, target).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        acked.lock().unwrap().spawned.push(i.id.clone());
        let stopped = c
            .instances
            .clone()
            .stop_instance(pb::StopInstanceRequest {
                id: i.id.clone(),
                // A game stopped while it is still starting may miss SIGTERM; keep the
                // SIGKILL that follows the grace period quick.
                grace_period_seconds: 1,
            })
            .await;
        if stopped.is_ok() {
            acked.lock().unwrap().stopped.insert(i.id);
        }
    }
}

fn acked_count(a: &Mutex<Acked>) -> usize {
    let a = a.lock().unwrap();
    a.spawned.len() + a.stopped.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_sigkill_under_load_loses_and_duplicates_nothing() {
    let started = Instant::now();
    let mut sb = Sandbox::start(SandboxOptions {
        spawners: SPAWNERS,
        capacity: 30,
        master_process: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let ids = sb.spawner_ids().await.unwrap();
    let targets: Vec<String> = ids
        .iter()
        .flat_map(|s| std::iter::repeat_n(s.clone(), PER_SPAWNER))
        .collect();
    let spawned: Vec<pb::Instance> = futures::stream::iter(targets)
        .map(|s| {
            let c = admin.clone();
            async move { spawn(&c, &s).await.unwrap() }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let fleet = eventually("the fleet up", Duration::from_secs(60), || async {
        let l = sb.instances().await.ok()?;
        (l.len() == SPAWNERS * PER_SPAWNER && l.iter().all(|i| is_up(i.state()))).then_some(l)
    })
    .await
    .unwrap();
    assert_eq!(fleet.len(), spawned.len());
    eprintln!("fleet of {} up after {:?}", fleet.len(), started.elapsed());

    // A client spawns and stops in a loop while the master dies.
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = CancellationToken::new();
    let client = tokio::spawn(churn(
        admin.clone(),
        ids.clone(),
        acked.clone(),
        stop.clone(),
    ));
    eventually(
        "a few acknowledged operations",
        Duration::from_secs(30),
        || async { (acked_count(&acked) >= 6).then_some(()) },
    )
    .await
    .unwrap();
    let old_pid = sb.master_pid().unwrap();
    sb.kill_master().unwrap();
    let acked_before_kill = acked_count(&acked);
    sb.start_master().await.unwrap();
    let serving = Instant::now();
    assert_ne!(sb.master_pid(), Some(old_pid));
    sb.wait_spawners_online(SPAWNERS, Duration::from_secs(30))
        .await
        .unwrap();
    let back = serving.elapsed();
    eprintln!("all {SPAWNERS} spawners back {back:?} after the new master began serving");
    assert!(
        back <= Duration::from_secs(2),
        "spawners back after {back:?}"
    );
    // The loop keeps going against the new master.
    eventually(
        "operations acknowledged by the new master",
        Duration::from_secs(30),
        || async { (acked_count(&acked) >= acked_before_kill + 4).then_some(()) },
    )
    .await
    .unwrap();
    stop.cancel();
    client.await.unwrap();

    let acked = std::mem::take(&mut *acked.lock().unwrap());
    // Every instance settles: the fleet and live churn up, stopped churn stopped.
    let now = eventually(
        "every instance settled",
        Duration::from_secs(30),
        || async {
            let l = sb.instances().await.ok()?;
            let settled = l.iter().all(|i| {
                if acked.stopped.contains(&i.id) {
                    i.state() == S::Stopped
                } else {
                    is_up(i.state()) || i.state() == S::Stopped
                }
            });
            settled.then_some(l)
        },
    )
    .await
    .unwrap();
    let census = process_census();
    let procs = |id: &str| census.get(id).copied().unwrap_or(0);
    let by_id: HashMap<&str, &pb::Instance> = now.iter().map(|i| (i.id.as_str(), i)).collect();
    assert_eq!(by_id.len(), now.len(), "an instance is listed twice");

    // The fleet: same processes, nothing lost, nothing doubled.
    for before in &fleet {
        let after = by_id
            .get(before.id.as_str())
            .unwrap_or_else(|| panic!("{} lost", before.id));
        assert!(is_up(after.state()), "{after:?}");
        assert_eq!(after.pid, before.pid, "{} restarted", before.id);
        assert_eq!(after.spawner_id, before.spawner_id);
        assert_eq!(procs(&before.id), 1, "{} duplicated", before.id);
    }
    // Acknowledged operations were kept.
    for id in &acked.spawned {
        let i = by_id
            .get(id.as_str())
            .unwrap_or_else(|| panic!("acknowledged spawn {id} lost"));
        if acked.stopped.contains(id) {
            assert_eq!(i.state(), S::Stopped, "acknowledged stop of {id} lost");
            assert_eq!(procs(id), 0, "{id} was stopped but runs");
        } else {
            assert_eq!(procs(id), usize::from(is_up(i.state())), "{i:?}");
        }
    }
    // Spawns that were in flight when the master died: whatever the spawners started is
    // known to the master (no orphan process), and nothing runs twice.
    let mut pids = HashSet::new();
    for i in &now {
        let n = procs(&i.id);
        if is_up(i.state()) {
            assert_eq!(n, 1, "{} runs {n} times", i.id);
            assert!(pids.insert(i.pid), "pid {} listed twice", i.pid);
        } else {
            assert_eq!(n, 0, "{} is {:?} but runs", i.id, i.state());
        }
    }
    for s in 0..SPAWNERS {
        let dir = sb.dir().join(sb.spawner_name(s)).join("instances");
        for e in std::fs::read_dir(&dir).unwrap() {
            let id = e.unwrap().file_name().to_string_lossy().into_owned();
            if procs(&id) > 0 {
                assert!(
                    by_id.contains_key(id.as_str()),
                    "{id} runs on a spawner but the master lost it"
                );
            }
        }
    }
    eprintln!(
        "{} spawns and {} stops acknowledged, {} spawned unacknowledged, {} instances listed; \
         {:?} in all",
        acked.spawned.len(),
        acked.stopped.len(),
        now.len() - fleet.len() - acked.spawned.len(),
        now.len(),
        started.elapsed()
    );
    sb.shutdown().await;
}
