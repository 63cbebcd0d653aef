//! The spawner's data directory fills up: spawns and backups fail saying the disk is full,
//! the game already running keeps running, the spawner stays online, and once space is freed
//! spawning works again.

use std::time::Duration;

use exile_api::v1 as pb;
use exile_api::v1::backup_service_client::BackupServiceClient;
use exile_testkit::{Authed, Bearer, Sandbox, SandboxOptions, SpawnerProcessOptions, eventually};
use tonic::service::interceptor::InterceptedService;

use super::host::{Tmpfs, skip};
use crate::support::{is_up, processes_of, spawn};

/// Whether an error tells the operator the disk is full.
fn says_disk_full(message: &str) -> bool {
    let m = message.to_lowercase();
    m.contains("no space left") || m.contains("disk is full") || m.contains("disk full")
}

async fn backup(
    c: &mut BackupServiceClient<Authed>,
    instance: &str,
) -> Result<pb::Backup, tonic::Status> {
    c.create_backup(pb::CreateBackupRequest {
        instance_id: instance.into(),
        note: "chaos".into(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().backup.unwrap_or_default())
}

async fn instance(sb: &Sandbox, id: &str) -> pb::Instance {
    sb.admin()
        .await
        .unwrap()
        .instances
        .get_instance(pb::GetInstanceRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_data_disk_fails_spawns_and_backups_clearly_and_harms_nothing() {
    // Declared before the sandbox so it is unmounted after the sandbox killed its processes.
    let disk = match Tmpfs::mount(64) {
        Ok(d) => d,
        Err(why) => return skip(&why),
    };
    let opts = SandboxOptions {
        spawners: 0,
        ..Default::default()
    };
    let ttl = Duration::from_millis(opts.heartbeat_ttl_ms);
    let mut sb = Sandbox::start(opts).await.unwrap();
    sb.add_spawner_process(
        "full-0",
        SpawnerProcessOptions {
            data_dir: Some(disk.path().join("spawner")),
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
    let mut backups = BackupServiceClient::new(InterceptedService::new(
        exile_testkit::connect(sb.master_addr()).await.unwrap(),
        Bearer::new(sb.admin_token()).unwrap(),
    ));
    let running = spawn(&admin, &id).await.unwrap();
    let running = eventually("the first instance up", Duration::from_secs(20), || async {
        let i = instance(&sb, &running.id).await;
        is_up(i.state()).then_some(i)
    })
    .await
    .unwrap();
    // With room, a backup works: what fails below fails for the disk.
    backup(&mut backups, &running.id).await.unwrap();

    let filler = disk.fill().unwrap();
    let full_since = now_ms();

    let err = spawn(&admin, &id).await.unwrap_err();
    let status = err.downcast_ref::<tonic::Status>().unwrap();
    assert!(
        says_disk_full(status.message()),
        "a spawn on a full disk says so: {status:?}"
    );
    eprintln!("spawn on a full disk: {}", status.message());
    let status = backup(&mut backups, &running.id).await.unwrap_err();
    eprintln!("backup on a full disk: {}", status.message());
    assert!(
        says_disk_full(status.message()),
        "a backup on a full disk says so: {status:?}"
    );
    // Nothing of the failed backup stays behind to keep the disk full: only the first one.
    let backups_dir = disk.path().join("spawner/backups").join(&running.id);
    let mut left: Vec<String> = std::fs::read_dir(&backups_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert!(
        left.len() == 2 && left.iter().all(|n| !n.ends_with(".tmp")),
        "a failed backup left files: {left:?}"
    );

    // The spawner keeps heartbeating (seen well after the disk filled) and stays online.
    let seen = eventually(
        "a heartbeat a TTL after the disk filled",
        ttl * 10,
        || async {
            let s = sb
                .admin()
                .await
                .ok()?
                .spawners
                .get_spawner(pb::GetSpawnerRequest { id: id.clone() })
                .await
                .ok()?
                .into_inner()
                .spawner?;
            let late = s.last_seen_unix_ms > full_since + ttl.as_millis() as i64;
            late.then_some(s)
        },
    )
    .await
    .unwrap();
    assert_eq!(seen.state(), pb::SpawnerState::Online, "{seen:?}");
    // The game that was running is untouched.
    let now = instance(&sb, &running.id).await;
    assert!(is_up(now.state()), "{now:?}");
    assert_eq!(now.pid, running.pid, "same process");
    assert_eq!(processes_of(&running.id), 1);
    let listed = sb.instances().await.unwrap();
    assert_eq!(listed.len(), 1, "the failed spawn left nothing: {listed:?}");

    // Space back: spawning and backups work again.
    std::fs::remove_file(&filler).unwrap();
    let again = spawn(&admin, &id).await.unwrap();
    eventually("the new instance up", Duration::from_secs(20), || async {
        is_up(instance(&sb, &again.id).await.state()).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(processes_of(&again.id), 1);
    backup(&mut backups, &running.id).await.unwrap();
    sb.shutdown().await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
