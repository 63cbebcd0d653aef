//! What tools see on the master's one port: health, reflection, /healthz, /metrics and the
//! dashboard fallback.

use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

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
