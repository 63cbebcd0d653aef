//! What tools see on the master's one port: health, reflection, /healthz, /metrics and the
//! dashboard fallback.

use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use exile_api::v1 as pb;
use exile_testkit::{Sandbox, SandboxOptions};

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    exile_testkit::http_get(addr, path).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_healthz_and_metrics_need_no_token() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let ch = exile_testkit::connect(sb.master_addr()).await.unwrap();

    let health = HealthClient::new(ch.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "exile.v1.InstanceService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = ServerReflectionClient::new(ch.clone())
        .server_reflection_info(futures::stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let first = answers.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = first.message_response else {
        panic!("unexpected reflection answer {first:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "exile.v1.InstanceService",
        "exile.v1.SpawnerLink",
        "exile.v1.AuthService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }

    let healthz = http_get(sb.master_addr(), "/healthz").await;
    assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
    assert!(healthz.contains("\"status\":\"ok\""));
    let metrics = http_get(sb.master_addr(), "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(metrics.contains("exile_spawners_online 1"), "{metrics}");
    // Without a built dashboard the page says how to build it rather than a bare 404.
    let page = http_get(sb.master_addr(), "/spawners").await;
    assert!(
        page.starts_with("HTTP/1.1 404") && page.contains("xtask dashboard"),
        "{page}"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_behind_a_token_answer_only_a_viewer_or_higher() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    admin
        .settings
        .clone()
        .set_setting(pb::SetSettingRequest {
            key: exile_api::settings::METRICS_REQUIRE_TOKEN.into(),
            value: "true".into(),
            scope: String::new(),
        })
        .await
        .unwrap();
    let get = |headers: Vec<(&'static str, String)>| {
        let addr = sb.master_addr();
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            exile_testkit::http_get_with(addr, "/metrics", &h)
                .await
                .unwrap()
        }
    };
    let none = get(vec![]).await;
    assert!(none.starts_with("HTTP/1.1 401"), "{none}");
    assert!(none.contains("master.metrics_require_token"), "{none}");
    assert!(!none.contains("exile_spawners"), "{none}");
    let wrong = get(vec![("Authorization", "Bearer exk_not-a-token".into())]).await;
    assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
    // An allocator's token reads nothing, /metrics included.
    let (_, alloc) = sb
        .clients_with_role("scraper-alloc", pb::Role::Allocator)
        .await
        .unwrap();
    let by_alloc = get(vec![("Authorization", format!("Bearer {alloc}"))]).await;
    assert!(by_alloc.starts_with("HTTP/1.1 401"), "{by_alloc}");
    let (_, viewer) = sb
        .clients_with_role("scraper", pb::Role::Viewer)
        .await
        .unwrap();
    let ok = get(vec![("Authorization", format!("Bearer {viewer}"))]).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("exile_spawners_online 1"), "{ok}");
    // Turned off again: open as before.
    admin
        .settings
        .clone()
        .reset_setting(pb::ResetSettingRequest {
            key: exile_api::settings::METRICS_REQUIRE_TOKEN.into(),
            scope: String::new(),
        })
        .await
        .unwrap();
    assert!(get(vec![]).await.starts_with("HTTP/1.1 200"));
    sb.shutdown().await;
}
