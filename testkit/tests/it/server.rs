//! The master's own figures and error log: failed calls are remembered with their method,
//! status, client and message (newest first, filterable, operators only), and GetStats counts
//! spawner links, Watch streams and the bytes that crossed the API.

use std::time::Duration;

use exile_api::v1 as pb;
use exile_testkit::{Sandbox, SandboxOptions, eventually};

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_calls_are_in_the_error_log_and_traffic_is_counted() {
    let sb = Sandbox::start(SandboxOptions::default()).await.unwrap();
    sb.wait_spawners_online(2, T).await.unwrap();
    let admin = sb.admin().await.unwrap();
    let mut system = admin.system.clone();
    let before = system
        .get_stats(pb::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.open_links, 2, "{before:?}");
    assert!(before.bytes_in > 0 && before.bytes_out > 0, "{before:?}");

    // A Watch stream open while stats are read.
    let mut watch = admin
        .events
        .clone()
        .watch(pb::WatchRequest::default())
        .await
        .unwrap()
        .into_inner();
    watch.message().await.unwrap();
    let s = eventually("the Watch stream counted", T, || {
        let mut system = system.clone();
        async move {
            let s = system
                .get_stats(pb::GetStatsRequest {})
                .await
                .ok()?
                .into_inner();
            (s.watch_subscribers >= 1).then_some(s)
        }
    })
    .await
    .unwrap();
    assert!(s.bytes_out > before.bytes_out, "{before:?} → {s:?}");
    drop(watch);

    // Two failures of different kinds: a viewer's StopInstance and a missing instance.
    let (viewer, _) = sb
        .clients_with_role("errors-viewer", pb::Role::Viewer)
        .await
        .unwrap();
    let denied = viewer
        .instances
        .clone()
        .stop_instance(pb::StopInstanceRequest {
            id: "probe-denied".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
    let missing = admin
        .instances
        .clone()
        .get_instance(pb::GetInstanceRequest {
            id: "probe-missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let all = system
        .list_errors(pb::ListErrorsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(all.errors_total >= 2 && all.capacity > 0, "{all:?}");
    let newest = &all.errors[0];
    assert_eq!(newest.method, "/exile.v1.InstanceService/GetInstance");
    assert_eq!(newest.code, "NotFound");
    assert!(newest.message.contains("probe-missing"), "{newest:?}");
    assert_eq!(newest.peer, "127.0.0.1");
    let stop = &all.errors[1];
    assert_eq!(stop.method, "/exile.v1.InstanceService/StopInstance");
    assert_eq!(stop.code, "PermissionDenied");
    assert!(stop.at_unix_ms <= newest.at_unix_ms);

    // Filters: by method (any case) and by code; a limit.
    let only_stop = system
        .list_errors(pb::ListErrorsRequest {
            method: "stopinstance".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .errors;
    assert!(
        !only_stop.is_empty()
            && only_stop
                .iter()
                .all(|e| e.method.ends_with("/StopInstance")),
        "{only_stop:?}"
    );
    let only_not_found = system
        .list_errors(pb::ListErrorsRequest {
            code: "notfound".into(),
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .errors;
    assert_eq!(only_not_found.len(), 1);
    assert_eq!(only_not_found[0].code, "NotFound");

    // The error log is for operators: a viewer is refused (and that refusal is logged too).
    let refused = viewer
        .system
        .clone()
        .list_errors(pb::ListErrorsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_samples_its_own_performance() {
    let sb = Sandbox::start(SandboxOptions {
        master_args: vec!["--performance-sample-ms=200".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    sb.wait_spawners_online(2, T).await.unwrap();
    let admin = sb.admin().await.unwrap();
    let metrics = admin.metrics.clone();
    // Traffic for the latency histogram while the sampler runs.
    let history = eventually("points with links, heartbeats and requests", T, || {
        let (mut metrics, mut system) = (metrics.clone(), admin.system.clone());
        async move {
            system.get_stats(pb::GetStatsRequest {}).await.ok()?;
            // The last minute at the sampling period (the default range buckets by 12 s).
            let r = metrics
                .get_master_history(pb::GetMasterHistoryRequest {
                    from_unix_ms: exile_api::now_unix_ms() - 60_000,
                    to_unix_ms: 0,
                    step_ms: 200,
                })
                .await
                .ok()?
                .into_inner();
            let last = r.points.last()?;
            (r.points.len() >= 3
                && last.links == 2
                && last.heartbeats_per_sec > 0.0
                && last.requests_per_sec > 0.0
                && last.p50_ms > 0.0)
                .then_some(r)
        }
    })
    .await
    .unwrap();
    assert_eq!(history.sample_ms, 200);
    let last = history.points.last().unwrap();
    assert!(last.p99_ms >= last.p50_ms, "{last:?}");
    assert!(
        last.memory_bytes > 0 && last.fleet_memory_bytes > 0,
        "{last:?}"
    );
    assert!(
        history
            .points
            .windows(2)
            .all(|w| w[0].at_unix_ms < w[1].at_unix_ms),
        "points out of order"
    );

    // A range that ends before it starts is refused with a sentence.
    let bad = metrics
        .clone()
        .get_master_history(pb::GetMasterHistoryRequest {
            from_unix_ms: 2_000,
            to_unix_ms: 1_000,
            step_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().contains("from_unix_ms"), "{}", bad.message());
    sb.shutdown().await;
}
