//! Resource history: recent samples from memory, older minutes from the database, kept
//! across a master restart.

use std::time::Duration;

use exile_api::v1 as pb;
use exile_testkit::{Sandbox, SandboxOptions, eventually};

use crate::support::spawn;

async fn history(
    sb: &Sandbox,
    target: pb::MetricsTarget,
    id: &str,
    from: i64,
) -> Result<Vec<pb::MetricPoint>, tonic::Status> {
    let mut c = exile_api::v1::metrics_service_client::MetricsServiceClient::with_interceptor(
        exile_testkit::connect(sb.master_addr()).await.unwrap(),
        exile_testkit::Bearer::new(sb.admin_token()).unwrap(),
    );
    let r = c
        .get_metrics_history(pb::GetMetricsHistoryRequest {
            target: target as i32,
            id: id.into(),
            from_unix_ms: from,
            to_unix_ms: 0,
            step_ms: 0,
        })
        .await?;
    Ok(r.into_inner().points)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_of_hosts_and_instances_survives_a_master_restart() {
    let mut sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let spawner = sb.spawner_ids().await.unwrap().remove(0);
    let inst = spawn(&admin, &spawner).await.unwrap();
    let start = exile_api::now_unix_ms() - 1000;

    let pts = eventually(
        "instance samples with memory",
        Duration::from_secs(20),
        || async {
            let p = history(&sb, pb::MetricsTarget::Instance, &inst.id, start)
                .await
                .ok()?;
            (p.len() >= 2 && p.iter().all(|x| x.memory_bytes > 0)).then_some(p)
        },
    )
    .await
    .unwrap();
    assert!(
        pts.windows(2).all(|w| w[0].at_unix_ms < w[1].at_unix_ms),
        "points in time order"
    );
    let host = history(&sb, pb::MetricsTarget::Spawner, &spawner, start)
        .await
        .unwrap();
    assert!(!host.is_empty() && host.iter().all(|x| x.memory_bytes > 0));

    sb.stop_master().await.unwrap();
    sb.start_master().await.unwrap();
    // What was sampled before the restart comes back from the database.
    let after = history(&sb, pb::MetricsTarget::Instance, &inst.id, start)
        .await
        .unwrap();
    assert!(!after.is_empty(), "history lost in the restart");
    assert!(after[0].at_unix_ms <= pts[0].at_unix_ms + 60_000);

    let e = history(&sb, pb::MetricsTarget::Instance, "inst-nope", 0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let e = history(&sb, pb::MetricsTarget::Unspecified, &inst.id, 0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    sb.shutdown().await;
}
