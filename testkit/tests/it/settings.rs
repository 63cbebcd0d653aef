//! Run-time settings: every declared key round-trips, bounds name the key, changes are
//! audited with their old and new value, a viewer cannot change them, and spawner settings
//! reach every connected spawner (and an offline one on its return) and change what it does.

use std::path::Path;
use std::time::Duration;

use exile_api::settings::{self as decl, Type};
use exile_api::v1 as pb;
use exile_testkit::{Clients, Sandbox, SandboxOptions, eventually};

use crate::support::spawn;

const T: Duration = Duration::from_secs(20);

/// A valid value other than the default: the lower bound, else the upper one.
fn other_value(s: &decl::Setting) -> String {
    let candidates: Vec<String> = match s.ty {
        Type::Bool => vec!["true".into(), "false".into()],
        Type::Int { min, max } => vec![min.to_string(), max.to_string()],
        Type::Duration { min_ms, max_ms } => {
            vec![decl::format_duration(min_ms), decl::format_duration(max_ms)]
        }
        Type::Bytes { min, max } => vec![decl::format_bytes(min), decl::format_bytes(max)],
        Type::Str { .. } => vec!["a".into(), "b".into()],
        Type::Enum(words) => words.iter().map(|w| (*w).to_owned()).collect(),
        Type::List { .. } => vec!["a,b".into(), "c".into()],
        Type::Range { min, max } => vec![format!("{min}-{min}"), format!("{max}-{max}")],
    };
    candidates
        .into_iter()
        .find(|c| *c != s.default)
        .unwrap_or_else(|| panic!("{}: no value other than the default", s.key))
}

/// A value just outside the bounds, when the type has one.
fn out_of_bounds(s: &decl::Setting) -> Option<String> {
    match s.ty {
        Type::Int { max, .. } => Some((max + 1).to_string()),
        Type::Duration { max_ms, .. } => Some(decl::format_duration(max_ms + 1)),
        Type::Bytes { max, .. } => Some(decl::format_bytes(max + 1)),
        Type::Enum(_) => Some("no-such-word".into()),
        Type::Range { min, max } => Some(format!("{min}-{}", max + 1)),
        _ => None,
    }
}

async fn set(
    c: &Clients,
    key: &str,
    value: &str,
    scope: &str,
) -> Result<pb::SettingEntry, tonic::Status> {
    c.settings
        .clone()
        .set_setting(pb::SetSettingRequest {
            key: key.into(),
            value: value.into(),
            scope: scope.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn audit(c: &Clients) -> Vec<pb::AuditEntry> {
    c.system
        .clone()
        .list_audit_log(pb::ListAuditLogRequest {
            limit: 1000,
            before_id: 0,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .entries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_declared_key_round_trips_within_its_bounds_and_every_change_is_audited() {
    let sb = Sandbox::master_only().await.unwrap();
    let admin = sb.admin().await.unwrap();
    let listed = admin
        .settings
        .clone()
        .list_settings(pb::ListSettingsRequest::default())
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<&str> = listed.settings.iter().map(|s| s.key.as_str()).collect();
    let declared: Vec<&str> = decl::SETTINGS.iter().map(|s| s.key).collect();
    assert_eq!(
        keys, declared,
        "the master lists every declared key, in order"
    );
    assert_eq!(listed.version, 0, "no change yet");

    let mut version = 0;
    for s in decl::SETTINGS {
        let entry = listed.settings.iter().find(|e| e.key == s.key).unwrap();
        assert_eq!(entry.category, s.category.as_str());
        assert_eq!(entry.r#type, s.ty.name());
        assert!(!entry.is_set);
        assert_eq!(
            entry.value, entry.default_value,
            "{}: the default is in force",
            s.key
        );
        if s.read_only {
            let e = set(&admin, s.key, &other_value(s), "").await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{}", s.key);
            assert!(e.message().contains(s.key), "{}", e.message());
            continue;
        }
        let value = other_value(s);
        let got = set(&admin, s.key, &value, "").await.unwrap();
        version += 1;
        assert_eq!(got.value, value, "{} round-trips", s.key);
        assert!(got.is_set);
        assert_eq!(got.version, version);
        let read = admin
            .settings
            .clone()
            .get_setting(pb::GetSettingRequest { key: s.key.into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(read.value, value, "{} reads back", s.key);
        if let Some(bad) = out_of_bounds(s) {
            let e = set(&admin, s.key, &bad, "").await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{} = {bad}", s.key);
            assert!(
                e.message().contains(s.key) && e.message().contains(&s.ty.bounds()),
                "the error names {} and its bounds: {}",
                s.key,
                e.message()
            );
        }
        let reset = admin
            .settings
            .clone()
            .reset_setting(pb::ResetSettingRequest {
                key: s.key.into(),
                scope: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        version += 1;
        assert!(!reset.is_set);
        assert_eq!(
            reset.value, reset.default_value,
            "{} is back to its default",
            s.key
        );

        let history = admin
            .settings
            .clone()
            .get_setting_history(pb::GetSettingHistoryRequest {
                key: s.key.into(),
                limit: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .changes;
        assert_eq!(history.len(), 2, "{}: set and reset", s.key);
        assert!(!history[0].has_new && history[0].had_old);
        assert_eq!(history[0].old_value, value);
        assert!(history[1].has_new && !history[1].had_old);
        assert_eq!(history[1].new_value, value);
        assert_eq!(history[1].actor, "admin");
    }
    // A scope is for settings spawners apply only; an unknown key is NOT_FOUND.
    let e = set(&admin, "master.upload_max_bytes", "1GiB", "region:eu")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition);
    let e = set(&admin, "master.nope", "1", "").await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert!(e.message().contains("master.nope"));
    // Beyond the bounds: the heartbeat interval must stay below the heartbeat TTL.
    let e = set(&admin, decl::HEARTBEAT_INTERVAL, "30s", "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("master.heartbeat_ttl"),
        "{}",
        e.message()
    );

    // Every change is in the audit log with its old and new value.
    let entries = audit(&admin).await;
    for s in decl::SETTINGS.iter().filter(|s| !s.read_only) {
        let value = other_value(s);
        let sets: Vec<_> = entries
            .iter()
            .filter(|e| e.action == "SetSetting" && e.target == s.key && e.result == "ok")
            .collect();
        assert_eq!(sets.len(), 1, "{}: one audited set", s.key);
        assert!(
            sets[0].detail.contains(&format!("(default) -> {value}")),
            "{}: {}",
            s.key,
            sets[0].detail
        );
        let resets: Vec<_> = entries
            .iter()
            .filter(|e| e.action == "ResetSetting" && e.target == s.key)
            .collect();
        assert_eq!(resets.len(), 1, "{}: one audited reset", s.key);
        assert!(
            resets[0].detail.contains(&format!("{value} -> (default)")),
            "{}: {}",
            s.key,
            resets[0].detail
        );
    }
    assert!(
        entries
            .iter()
            .any(|e| e.action == "SetSetting" && e.result == "InvalidArgument"),
        "refused changes are audited too"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_reads_settings_but_cannot_change_them() {
    let sb = Sandbox::master_only().await.unwrap();
    let admin = sb.admin().await.unwrap();
    let (viewer, _) = sb
        .clients_with_role("reader", pb::Role::Viewer)
        .await
        .unwrap();
    let list = viewer
        .settings
        .clone()
        .list_settings(pb::ListSettingsRequest {
            category: "spawners".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!list.settings.is_empty());
    assert!(list.settings.iter().all(|s| s.category == "spawners"));
    let e = set(&viewer, decl::HEARTBEAT_INTERVAL, "1s", "")
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let e = viewer
        .settings
        .clone()
        .reset_setting(pb::ResetSettingRequest {
            key: decl::HEARTBEAT_INTERVAL.into(),
            scope: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let got = admin
        .settings
        .clone()
        .get_setting(pb::GetSettingRequest {
            key: decl::HEARTBEAT_INTERVAL.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!got.is_set, "the viewer changed nothing");
    assert!(
        audit(&admin)
            .await
            .iter()
            .any(|e| e.action == "SetSetting" && e.result == "PERMISSION_DENIED"),
        "the denied change is audited"
    );
    sb.shutdown().await;
}

/// A spawner as the master shows it.
async fn spawner(c: &Clients, id: &str) -> pb::Spawner {
    c.spawners
        .clone()
        .get_spawner(pb::GetSpawnerRequest { id: id.into() })
        .await
        .unwrap()
        .into_inner()
        .spawner
        .unwrap()
}

/// The settings version a spawner acknowledged.
async fn acknowledged(c: &Clients, id: &str) -> u64 {
    spawner(c, id).await.settings_version
}

async fn wait_acknowledged(c: &Clients, id: &str, version: u64) {
    eventually(
        &format!("{id} applies settings version {version}"),
        T,
        || async { (acknowledged(c, id).await == version).then_some(()) },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_reaches_both_spawners_and_an_offline_one_catches_up() {
    let mut sb = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let admin = sb.admin().await.unwrap();
    let ids = sb.spawner_ids().await.unwrap();

    let v1 = set(&admin, decl::HEARTBEAT_INTERVAL, "300ms", "")
        .await
        .unwrap()
        .version;
    assert_eq!(v1, 1);
    for id in &ids {
        wait_acknowledged(&admin, id, v1).await;
    }

    sb.stop_spawner(1).await.unwrap();
    eventually("spawner 1 offline", T, || async {
        let s = admin
            .spawners
            .clone()
            .get_spawner(pb::GetSpawnerRequest { id: ids[1].clone() })
            .await
            .ok()?
            .into_inner()
            .spawner?;
        (s.state() == pb::SpawnerState::Offline).then_some(())
    })
    .await
    .unwrap();
    let v2 = set(&admin, "spawners.stop_grace", "3s", "")
        .await
        .unwrap()
        .version;
    assert_eq!(v2, 2);
    wait_acknowledged(&admin, &ids[0], v2).await;
    assert_eq!(
        acknowledged(&admin, &ids[1]).await,
        v1,
        "an offline spawner still shows the version it last applied"
    );

    sb.start_spawner(1).unwrap();
    wait_acknowledged(&admin, &ids[1], v2).await;
    sb.shutdown().await;
}

/// Sends `n` console lines of about 900 bytes, which the demo game prints to its log.
async fn write_output(c: &Clients, id: &str, n: usize) {
    let line = format!("say {}", "x".repeat(900));
    for _ in 0..n {
        c.instances
            .clone()
            .send_console_command(pb::SendConsoleCommandRequest {
                id: id.into(),
                line: line.clone(),
            })
            .await
            .unwrap();
    }
}

fn log_size(dir: &Path) -> u64 {
    std::fs::metadata(dir.join("output.log")).map_or(0, |m| m.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_rotation_change_applies_live_where_its_scope_says() {
    let sb = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let admin = sb.admin().await.unwrap();
    let ids = sb.spawner_ids().await.unwrap();

    // Only spawners labelled host=spawner-0 rotate at 4 KiB; the other keeps its flag (8 MiB).
    let scope = format!("label:host={}", sb.spawner_name(0));
    let entry = set(&admin, "spawners.log_rotation_bytes", "4KiB", &scope)
        .await
        .unwrap();
    assert!(!entry.is_set, "an override leaves the global value unset");
    assert_eq!(entry.overrides.len(), 1);
    assert_eq!(entry.overrides[0].scope, scope);
    for id in &ids {
        wait_acknowledged(&admin, id, entry.version).await;
    }

    // Both spawners run an instance started after the change, and both write ~11 KB.
    let small = spawn(&admin, &ids[0]).await.unwrap();
    let large = spawn(&admin, &ids[1]).await.unwrap();
    write_output(&admin, &small.id, 12).await;
    write_output(&admin, &large.id, 12).await;
    let logs = |i: usize, id: &str| {
        sb.spawner_data_dir(i)
            .unwrap()
            .join("instances")
            .join(id)
            .join("logs")
    };
    let (small_dir, large_dir) = (logs(0, &small.id), logs(1, &large.id));
    eventually("the 4 KiB log rotated", T, || async {
        small_dir.join("output.log.1").is_file().then_some(())
    })
    .await
    .unwrap();
    assert!(
        log_size(&small_dir) <= 4096,
        "the current file stays near the new limit"
    );
    eventually("the other instance's output written", T, || async {
        (log_size(&large_dir) >= 10_000).then_some(())
    })
    .await
    .unwrap();
    assert!(
        !large_dir.join("output.log.1").exists(),
        "the spawner outside the scope kept its own limit"
    );
    sb.shutdown().await;
}

/// The number of an instance's game port.
fn game_port(i: &pb::Instance) -> u32 {
    i.ports.first().map(|p| p.port).expect("a game port")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_range_set_for_a_region_or_a_label_applies_to_new_instances_live() {
    let sb = Sandbox::start(SandboxOptions::default()).await.unwrap();
    let admin = sb.admin().await.unwrap();
    let ids = sb.spawner_ids().await.unwrap();
    let before = spawn(&admin, &ids[0]).await.unwrap();
    let old_port = game_port(&before);

    // Ranges in the gap the sandbox leaves between its spawners' own (2,000 ports apart).
    let region = (old_port + 1000, old_port + 1019);
    let label = (old_port + 1500, old_port + 1519);
    set(
        &admin,
        "spawners.port_range",
        &format!("{}-{}", region.0, region.1),
        "region:local",
    )
    .await
    .unwrap();
    let scope = format!("label:host={}", sb.spawner_name(1));
    let version = set(
        &admin,
        "spawners.port_range",
        &format!("{}-{}", label.0, label.1),
        &scope,
    )
    .await
    .unwrap()
    .version;
    for id in &ids {
        wait_acknowledged(&admin, id, version).await;
    }

    // Without a restart of either spawner: the region's range on spawner 0, the label's
    // (which beats the region) on spawner 1.
    let in_region = spawn(&admin, &ids[0]).await.unwrap();
    let in_label = spawn(&admin, &ids[1]).await.unwrap();
    let p = game_port(&in_region);
    assert!((region.0..=region.1).contains(&p), "{p} not in {region:?}");
    let p = game_port(&in_label);
    assert!((label.0..=label.1).contains(&p), "{p} not in {label:?}");
    let still = admin
        .instances
        .clone()
        .get_instance(pb::GetInstanceRequest {
            id: before.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(
        game_port(&still),
        old_port,
        "a running instance keeps its port"
    );

    // A range over the spawner's Agones ports is refused by that spawner, which says so and
    // keeps the range in force.
    let v = set(&admin, "spawners.port_range", "1-65535", &scope)
        .await
        .unwrap()
        .version;
    wait_acknowledged(&admin, &ids[1], v).await;
    let error = spawner(&admin, &ids[1]).await.settings_error;
    assert!(error.contains("--agones-port-range"), "{error:?}");
    let p = game_port(&spawn(&admin, &ids[1]).await.unwrap());
    assert!((label.0..=label.1).contains(&p), "{p} not in {label:?}");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_throttle_locks_out_after_the_failures_set() {
    let sb = Sandbox::master_only().await.unwrap();
    let admin = sb.admin().await.unwrap();
    let ch = exile_testkit::connect(sb.master_addr()).await.unwrap();
    let login = |password: &str| {
        let mut c = pb::auth_service_client::AuthServiceClient::new(ch.clone());
        let req = pb::LoginRequest {
            username: "admin".into(),
            password: password.into(),
        };
        async move { c.login(req).await.map(|_| ()) }
    };
    set(&admin, decl::LOGIN_FREE_FAILURES, "2", "")
        .await
        .unwrap();
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(login("wrong-password").await.unwrap_err().code());
    }
    use tonic::Code::{ResourceExhausted, Unauthenticated};
    assert_eq!(
        codes,
        [Unauthenticated, Unauthenticated, ResourceExhausted],
        "two failures allowed, not the default five"
    );
    let e = login(sb.admin_password()).await.unwrap_err();
    assert_eq!(e.code(), ResourceExhausted, "locked out: {e:?}");
    sb.shutdown().await;
}
