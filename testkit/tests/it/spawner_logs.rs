//! StreamLogs for a spawner's own log: each in-process spawner has its own file, and a
//! request names exactly one target that must be known and connected.

use std::time::Duration;

use exile_api::v1 as pb;
use exile_api::v1::stream_logs_request::Source;
use exile_testkit::{Sandbox, SandboxOptions, eventually};
use futures::StreamExt;

async fn read_all(sb: &Sandbox, req: pb::StreamLogsRequest) -> Result<String, tonic::Status> {
    let mut admin = sb.admin().await.unwrap();
    let mut stream = admin.instances.stream_logs(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?.data);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

fn spawner_log(spawner_id: &str) -> pb::StreamLogsRequest {
    pb::StreamLogsRequest {
        source: Some(Source::SpawnerId(spawner_id.into())),
        tail_lines: 50,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawner_log_names_one_known_connected_spawner() {
    let mut sb = Sandbox::start(SandboxOptions {
        spawners: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let ids = sb.spawner_ids().await.unwrap();

    // Two spawners in one process, each with its own log.
    for (mine, other) in [(&ids[0], &ids[1]), (&ids[1], &ids[0])] {
        let text = read_all(&sb, spawner_log(mine)).await.unwrap();
        assert!(text.contains("linked to the master"), "{text}");
        assert!(text.contains(mine.as_str()), "{text}");
        assert!(!text.contains(other.as_str()), "{text}");
    }

    // The oneof names one target at most; naming none is refused.
    let status = read_all(&sb, pb::StreamLogsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("spawner_id"), "{status:?}");

    let status = read_all(&sb, spawner_log("sp-nope")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert_eq!(status.message(), "no spawner with id sp-nope");

    // A stopped spawner is unavailable until it links again.
    sb.stop_spawner(0).await.unwrap();
    let status = eventually(
        "the stopped spawner to be unavailable",
        Duration::from_secs(20),
        || {
            let sb = &sb;
            let id = ids[0].clone();
            async move { read_all(sb, spawner_log(&id)).await.err() }
        },
    )
    .await
    .unwrap();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    sb.start_spawner(0).unwrap();
    sb.wait_spawners_online(2, Duration::from_secs(20))
        .await
        .unwrap();
    // Its log goes on in the same file: the start before the stop is still there.
    let text = read_all(&sb, spawner_log(&ids[0])).await.unwrap();
    assert!(text.contains("spawner stopped"), "{text}");
    assert_eq!(text.matches("spawner started").count(), 2, "{text}");
    sb.shutdown().await;
}
