//! The SDK's HTTP/JSON form, driven with a plain HTTP/1.1 client: the same calls as gRPC,
//! the same secrets, and clear answers to every kind of bad request.

use std::time::Duration;

use exile_api::v1;
use exile_spawner::{OpContext, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::sdk::{harness, harness_with};
use crate::support::*;

/// The next event of instance `id` the link would forward to the master.
async fn next_event(
    events: &mut tokio::sync::broadcast::Receiver<v1::InstanceEvent>,
    id: &str,
) -> v1::InstanceStatus {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("no instance event within 10 s")
            .unwrap();
        if let Some(status) = event.status.filter(|s| s.id == id) {
            return status;
        }
    }
}

#[tokio::test]
async fn ready_players_and_labels_over_http_reach_the_instance_and_the_master() {
    let mut h = harness().await;
    let GameVars { http, token, .. } = h.spawn_game("g1").await;
    let sdk = SdkHttp::new(&http, &token);
    let got = sdk.get("/v1/instance").await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.headers["content-type"], "application/json");
    assert_eq!(got.json["instance"]["id"], "g1");
    assert_eq!(got.json["instance"]["state"], "INSTANCE_STATE_RUNNING");
    assert_eq!(
        got.json["instance"]["ports"][0]["port"],
        h.manager.get("g1").await.unwrap().port().unwrap()
    );

    // What the link forwards to the master: the events of the manager.
    let mut events = h.manager.subscribe();
    // As a script does it: a bare POST, no body, no content type.
    let ready = sdk.post("/v1/ready", "").await;
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.json["instance"]["state"], "INSTANCE_STATE_READY");
    assert_eq!(h.manager.get("g1").await.unwrap().state, State::Ready);
    let seen = next_event(&mut events, "g1").await;
    assert_eq!(seen.state(), v1::InstanceState::Ready);

    let players = sdk.post("/v1/players", r#"{"count":3,"max":16}"#).await;
    assert_eq!(players.status, 200, "{players:?}");
    assert_eq!(players.json["instance"]["players"], 3);
    assert_eq!(players.json["instance"]["max_players"], 16);
    let seen = next_event(&mut events, "g1").await;
    assert_eq!((seen.players, seen.max_players), (3, 16));
    let label = sdk
        .post("/v1/label", r#"{"key":"map","value":"dust"}"#)
        .await;
    assert_eq!(label.status, 200, "{label:?}");
    let rec = h.manager.get("g1").await.unwrap();
    assert_eq!((rec.players, rec.max_players), (3, 16));
    assert_eq!(rec.labels.get("map").map(String::as_str), Some("dust"));
    // An empty value removes the label, as over gRPC.
    sdk.post("/v1/label", r#"{"key":"map"}"#).await;
    assert!(h.manager.get("g1").await.unwrap().labels.is_empty());

    // The state rules and argument checks are the gRPC ones, said in a sentence.
    let too_many = sdk.post("/v1/players", r#"{"count":17,"max":16}"#).await;
    assert_eq!(too_many.status, 400, "{too_many:?}");
    assert_eq!(too_many.error(), "count 17 is more than max 16");
    let bad_key = sdk
        .post("/v1/label", r#"{"key":"no spaces","value":"x"}"#)
        .await;
    assert_eq!(bad_key.status, 400, "{bad_key:?}");
    assert!(bad_key.error().contains("no spaces"), "{bad_key:?}");

    h.stop.cancel();
    h.manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn the_http_watch_streams_one_line_per_change_and_ends_with_the_instance() {
    let mut h = harness().await;
    let GameVars { http, token, .. } = h.spawn_game("w").await;
    let sdk = SdkHttp::new(&http, &token);
    let mut watch = sdk.watch().await;
    let first = watch.next().await.unwrap();
    assert_eq!(first["instance"]["state"], "INSTANCE_STATE_RUNNING");

    sdk.post("/v1/ready", "").await;
    sdk.post("/v1/players", r#"{"count":2}"#).await;
    let next = watch.next().await.unwrap();
    assert_eq!(next["instance"]["state"], "INSTANCE_STATE_READY");
    let next = watch.next().await.unwrap();
    assert_eq!(next["instance"]["players"], 2);
    assert!(
        next["instance"]["revision"].as_u64() > first["instance"]["revision"].as_u64(),
        "{next}"
    );

    // Removal is the last line; then the answer ends.
    h.manager.remove("w", OpContext::default()).await.unwrap();
    let mut last = None;
    while let Some(line) = watch.next().await {
        last = Some(line);
    }
    assert_eq!(last.unwrap()["instance"]["id"], "w");

    h.stop.cancel();
    h.manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn health_pings_over_http_keep_a_game_healthy_and_their_absence_does_not() {
    let mut h = harness_with(|c| {
        c.health = exile_spawner::HealthCheck {
            period: Duration::from_millis(200),
            failure_threshold: 4,
            initial_delay: Duration::ZERO,
            ..Default::default()
        };
    })
    .await;
    let GameVars { http, token, .. } = h.spawn_game("pinger").await;
    let sdk = SdkHttp::new(&http, &token);
    assert_eq!(sdk.post("/v1/ready", "").await.status, 200);

    // Pinging well within the 800 ms threshold for twice that long keeps it Ready throughout.
    let mut events = h.manager.subscribe();
    let until = tokio::time::Instant::now() + Duration::from_millis(1600);
    while tokio::time::Instant::now() < until {
        let ping = sdk.post("/v1/health", "").await;
        assert_eq!((ping.status, &ping.json), (200, &serde_json::json!({})));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(h.manager.get("pinger").await.unwrap().state, State::Ready);
    while let Ok(event) = events.try_recv() {
        let status = event.status.unwrap();
        assert_ne!(status.state(), v1::InstanceState::Unhealthy, "{status:?}");
    }

    // Silence makes it Unhealthy; one ping brings it back.
    let rec = wait_for(&h.manager, "pinger", "unhealthy", is(State::Unhealthy)).await;
    assert!(
        rec.message.contains("no SDK health ping"),
        "{}",
        rec.message
    );
    assert_eq!(sdk.post("/v1/health", "").await.status, 200);
    assert_eq!(h.manager.get("pinger").await.unwrap().state, State::Ready);

    h.stop.cancel();
    h.manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn reserve_allocate_and_shutdown_over_http_follow_the_state_rules() {
    let mut h = harness().await;
    let GameVars { http, token, .. } = h.spawn_game("r").await;
    let sdk = SdkHttp::new(&http, &token);
    sdk.post("/v1/ready", "").await;
    let zero = sdk.post("/v1/reserve", r#"{"ttl_seconds":0}"#).await;
    assert_eq!(zero.status, 400, "{zero:?}");
    assert!(zero.error().contains("ttl_seconds"), "{zero:?}");
    let reserved = sdk.post("/v1/reserve", r#"{"ttl_seconds":1}"#).await;
    assert_eq!(reserved.status, 200, "{reserved:?}");
    assert_eq!(
        reserved.json["instance"]["state"],
        "INSTANCE_STATE_ALLOCATED"
    );
    let rec = wait_for(&h.manager, "r", "ready again", is(State::Ready)).await;
    assert_eq!(rec.message, "reservation expired");
    let allocated = sdk.post("/v1/allocate", "{}").await;
    assert_eq!(
        allocated.json["instance"]["state"],
        "INSTANCE_STATE_ALLOCATED"
    );

    let stop = sdk.post("/v1/shutdown", "").await;
    assert_eq!((stop.status, &stop.json), (200, &serde_json::json!({})));
    let rec = wait_for(&h.manager, "r", "stopped", is(State::Stopped)).await;
    assert_eq!(rec.message, "stopped", "a stop, not a crash");
    // A stopped game's secret still names it, but the state forbids the call: a conflict.
    let late = sdk.post("/v1/allocate", "").await;
    assert_eq!(late.status, 409, "{late:?}");
    assert!(late.error().contains("stopped"), "{late:?}");

    h.stop.cancel();
    h.manager.shutdown(true).await.unwrap();
}

/// Sends `head` and `body` on a raw connection and returns the status line and headers of the
/// answer (read up to the blank line, so a reset after it does not matter).
async fn raw_request(addr: &str, head: &str, body: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer and close before taking the whole body.
    let _ = stream.write_all(body).await;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("no answer within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "closed without an answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[tokio::test]
async fn bad_secrets_bodies_routes_and_methods_get_clear_answers_and_the_spawner_keeps_serving() {
    let mut h = harness().await;
    let GameVars { http, token, .. } = h.spawn_game("a").await;
    let GameVars { token: token_b, .. } = h.spawn_game("b").await;

    let short = token[..token.len() - 1].to_owned();
    let basic = format!("Basic {token}");
    for auth in [None, Some("Bearer not-a-secret"), Some(basic.as_str())] {
        let sdk = SdkHttp::with_authorization(&http, auth);
        let reply = sdk.post("/v1/ready", "").await;
        assert_eq!(reply.status, 401, "{auth:?}: {reply:?}");
        assert!(reply.error().contains("EXILE_SDK_TOKEN"), "{reply:?}");
        assert_eq!(sdk.get("/v1/instance").await.status, 401, "{auth:?}");
    }
    let reply = SdkHttp::new(&http, &short).post("/v1/ready", "").await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(h.manager.get("a").await.unwrap().state, State::Running);

    // B's secret acts on B only, whoever sends it; once B is gone it names nothing.
    let as_b = SdkHttp::new(&http, &token_b);
    assert_eq!(as_b.post("/v1/ready", "").await.status, 200);
    assert_eq!(h.manager.get("a").await.unwrap().state, State::Running);
    h.manager.remove("b", OpContext::default()).await.unwrap();
    assert_eq!(as_b.post("/v1/health", "").await.status, 401);
    assert_eq!(as_b.get("/v1/watch").await.status, 401);

    let sdk = SdkHttp::new(&http, &token);
    let garbage = sdk.post("/v1/players", "{count: three").await;
    assert_eq!(garbage.status, 400, "{garbage:?}");
    assert!(
        garbage
            .error()
            .starts_with("the request body is not valid JSON"),
        "{garbage:?}"
    );
    let misnamed = sdk.post("/v1/players", r#"{"current":3}"#).await;
    assert_eq!(misnamed.status, 400, "{misnamed:?}");
    assert!(
        misnamed.error().contains("unknown field `current`"),
        "{misnamed:?}"
    );
    let negative = sdk.post("/v1/reserve", r#"{"ttl_seconds":-5}"#).await;
    assert_eq!(negative.status, 400, "{negative:?}");
    let stray = sdk.post("/v1/ready", r#"{"now":true}"#).await;
    assert_eq!(stray.status, 400, "{stray:?}");
    assert_eq!(h.manager.get("a").await.unwrap().state, State::Running);

    let unknown = sdk.get("/v1/nope").await;
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(unknown.error().contains("/v1/nope"), "{unknown:?}");
    let wrong = sdk.get("/v1/ready").await;
    assert_eq!(wrong.status, 405, "{wrong:?}");
    assert_eq!(wrong.headers["allow"], "POST");
    assert!(wrong.error().contains("GET"), "{wrong:?}");
    assert_eq!(sdk.post("/v1/instance", "").await.status, 405);

    let big = vec![b' '; 100 * 1024];
    let head = format!(
        "POST /v1/players HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        big.len()
    );
    let answer = raw_request(&http, &head, &big).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    let head = format!("BREW /v1/ready HTTP/1.1\r\nHost: {http}\r\nContent-Length: x\r\n\r\n");
    let answer = raw_request(&http, &head, b"").await;
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");

    // Still serving, and still acting on the right instance.
    let after = sdk.post("/v1/ready", "").await;
    assert_eq!(after.status, 200, "{after:?}");
    assert_eq!(after.json["instance"]["id"], "a");

    h.stop.cancel();
    h.manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn the_curl_example_game_gets_ready_and_keeps_pinging() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "curl is not installed, so the curl example game cannot run; CI must run it (.ci/run installs curl)"
        );
        use std::io::Write as _;
        // Straight to stderr, past the harness's capture, so a passing skip is still seen.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: curl not installed; the curl example game was not run"
        );
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sdk/examples/http-game.sh")
        .canonicalize()
        .unwrap();
    let h = harness_with(|c| {
        c.template = Some(exile_spawner::process::CommandTemplate::new(
            vec!["/bin/sh".into(), script.to_string_lossy().into_owned()],
            script.parent().unwrap().to_owned(),
        ));
        c.health = exile_spawner::HealthCheck {
            period: Duration::from_millis(500),
            failure_threshold: 4,
            initial_delay: Duration::ZERO,
            ..Default::default()
        };
    })
    .await;
    let spec = exile_spawner::SpawnSpec {
        id: "sh".into(),
        ..Default::default()
    };
    let rec = h.manager.spawn(spec, OpContext::default()).await.unwrap();
    let _reaper = Reaper(vec![rec.pid.unwrap()]);
    let rec = wait_for(&h.manager, "sh", "labelled", |r| {
        r.labels.get("engine").map(String::as_str) == Some("sh")
    })
    .await;
    assert_eq!((rec.state, rec.max_players), (State::Ready, 16));
    // Its once-a-second pings keep it Ready well past the 2 s unhealthy threshold.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rec = h.manager.get("sh").await.unwrap();
    assert_eq!(rec.state, State::Ready, "{}", rec.message);

    h.stop.cancel();
    h.manager.shutdown(true).await.unwrap();
}
