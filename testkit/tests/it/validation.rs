//! Malformed and oversized requests get INVALID_ARGUMENT and change nothing.

use std::collections::HashMap;

use exile_api::v1 as pb;
use exile_testkit::{Sandbox, SandboxOptions};

use crate::access::call_raw;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_are_invalid_arguments() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let ch = exile_testkit::connect(sb.master_addr()).await.unwrap();
    let path = "/exile.v1.InstanceService/SpawnInstance";

    // Bytes that are not a protobuf message.
    let got = call_raw(
        ch.clone(),
        path,
        Some(sb.admin_token()),
        vec![0xff, 0xff, 0xff, 0xff, 0x0f],
    )
    .await;
    assert_eq!(got, tonic::Code::InvalidArgument);
    // A 5 MiB message.
    let got = call_raw(ch.clone(), path, Some(sb.admin_token()), vec![0u8; 5 << 20]).await;
    assert_eq!(got, tonic::Code::InvalidArgument);

    // Well-formed but bad fields.
    let bad_label: HashMap<String, String> = [("bad key!".to_owned(), "x".to_owned())].into();
    let many: HashMap<String, String> = (0..100)
        .map(|i| (format!("k{i}"), "v".to_owned()))
        .collect();
    let reserved: HashMap<String, String> = [("EXILE_PORT".to_owned(), "1".to_owned())].into();
    for req in [
        pb::SpawnInstanceRequest {
            labels: bad_label,
            ..Default::default()
        },
        pb::SpawnInstanceRequest {
            labels: many,
            ..Default::default()
        },
        pb::SpawnInstanceRequest {
            env: reserved,
            ..Default::default()
        },
        pb::SpawnInstanceRequest {
            args: vec!["a\0b".into()],
            ..Default::default()
        },
        pb::SpawnInstanceRequest {
            strategy: 99,
            ..Default::default()
        },
    ] {
        let e = admin
            .instances
            .clone()
            .spawn_instance(req)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
    }
    // Health checks: zero, absurd and unknown values, each named in the answer.
    let health = |h: pb::HealthCheck| pb::SpawnInstanceRequest {
        health_check: Some(h),
        ..Default::default()
    };
    for (req, field) in [
        (
            health(pb::HealthCheck {
                period_ms: Some(0),
                ..Default::default()
            }),
            "health_check.period_ms",
        ),
        (
            health(pb::HealthCheck {
                period_ms: Some(u32::MAX),
                ..Default::default()
            }),
            "health_check.period_ms",
        ),
        (
            health(pb::HealthCheck {
                failure_threshold: Some(0),
                ..Default::default()
            }),
            "health_check.failure_threshold",
        ),
        (
            health(pb::HealthCheck {
                failure_threshold: Some(1_000_000),
                ..Default::default()
            }),
            "health_check.failure_threshold",
        ),
        (
            health(pb::HealthCheck {
                initial_delay_ms: Some(u32::MAX),
                ..Default::default()
            }),
            "health_check.initial_delay_ms",
        ),
        (
            health(pb::HealthCheck {
                action: 9,
                ..Default::default()
            }),
            "health_check.action",
        ),
    ] {
        let e = admin
            .instances
            .clone()
            .spawn_instance(req)
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{}", e.message());
        assert!(e.message().contains(field), "{}", e.message());
    }
    let e = admin
        .instances
        .clone()
        .get_instance(pb::GetInstanceRequest { id: String::new() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = admin
        .auth
        .clone()
        .create_user(pb::CreateUserRequest {
            username: "x y".into(),
            password: "long enough".into(),
            role: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    let e = admin
        .auth
        .clone()
        .create_user(pb::CreateUserRequest {
            username: "ok".into(),
            password: "long enough".into(),
            role: 42,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    // Nothing was created by any of it.
    assert!(sb.instances().await.unwrap().is_empty());
    // And the master still serves.
    admin
        .system
        .clone()
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap();
    sb.shutdown().await;
}
