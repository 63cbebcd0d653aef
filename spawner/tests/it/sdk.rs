//! The game-server SDK endpoint: each game acts on its own instance, named by its secret.
//! The harness here serves both front ends; `sdk_http` drives the HTTP one.

use std::time::Duration;

use exile_api::v1;
use exile_api::v1::game_server_sdk_client::GameServerSdkClient;
use exile_spawner::{Manager, OpContext, SpawnSpec, State};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::support::*;

pub struct Harness {
    pub manager: Manager,
    pub stop: CancellationToken,
    pub dir: tempfile::TempDir,
    reaper: Reaper,
}

pub async fn harness() -> Harness {
    harness_with(|_| {}).await
}

/// Binds both SDK front ends in a fresh data dir, opens a manager and serves them.
pub async fn harness_with(tune: impl FnOnce(&mut exile_spawner::ManagerConfig)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut config = script_config(dir.path(), SDK_GAME);
    tune(&mut config);
    let (manager, stop) = serve_sdk(dir.path(), config).await;
    Harness {
        manager,
        stop,
        dir,
        reaper: Reaper::default(),
    }
}

/// Binds both SDK listeners in `dir` (ports kept there), opens the manager with their
/// addresses and serves them until the returned token is cancelled.
pub async fn serve_sdk(
    dir: &std::path::Path,
    mut config: exile_spawner::ManagerConfig,
) -> (Manager, CancellationToken) {
    let any = "127.0.0.1:0".parse().unwrap();
    let grpc = exile_spawner::sdk::grpc::bind(any, dir).await.unwrap();
    let http = exile_spawner::sdk::http::bind(any, dir).await.unwrap();
    config.sdk_addr = Some(grpc.local_addr().unwrap());
    config.sdk_http_addr = Some(http.local_addr().unwrap());
    let manager = Manager::open(config).await.unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(exile_spawner::sdk::grpc::serve(
        grpc,
        manager.clone(),
        stop.clone(),
    ));
    tokio::spawn(exile_spawner::sdk::http::serve(
        http,
        manager.clone(),
        stop.clone(),
    ));
    (manager, stop)
}

impl Harness {
    /// Spawns a game and returns the gRPC SDK address and secret it was given.
    async fn spawn(&mut self, id: &str) -> (String, String) {
        let vars = self.spawn_game(id).await;
        (vars.grpc, vars.token)
    }

    /// Spawns a game and returns the SDK variables it was given.
    pub async fn spawn_game(&mut self, id: &str) -> GameVars {
        self.spawn_game_spec(SpawnSpec {
            id: id.into(),
            ..Default::default()
        })
        .await
    }

    /// Spawns `spec` and returns the gRPC SDK address and secret its game was given.
    async fn spawn_spec(&mut self, spec: SpawnSpec) -> (String, String) {
        let vars = self.spawn_game_spec(spec).await;
        (vars.grpc, vars.token)
    }

    /// Spawns `spec` and returns the SDK variables its game was given.
    pub async fn spawn_game_spec(&mut self, spec: SpawnSpec) -> GameVars {
        let id = spec.id.clone();
        let rec = self
            .manager
            .spawn(spec, OpContext::default())
            .await
            .unwrap();
        self.reaper.watch(&rec);
        game_vars(self.dir.path(), &id).await
    }
}

/// A gRPC client sending `token` as its bearer secret (none when empty).
pub async fn client(
    addr: &str,
    token: &str,
) -> GameServerSdkClient<
    tonic::service::interceptor::InterceptedService<
        Channel,
        impl FnMut(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> + use<>,
    >,
> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let header = format!("Bearer {token}");
    let send = !token.is_empty();
    GameServerSdkClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
        if send {
            req.metadata_mut()
                .insert("authorization", header.parse().unwrap());
        }
        Ok(req)
    })
}

#[tokio::test]
async fn ready_and_players_reach_the_instance_and_its_watchers() {
    let mut h = harness().await;
    let (addr, token) = h.spawn("g1").await;
    let mut sdk = client(&addr, &token).await;
    let got = sdk
        .get_instance(v1::SdkGetInstanceRequest {})
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(got.id, "g1");
    assert_eq!(got.state(), v1::InstanceState::Running);
    let mut watch = sdk
        .watch_instance(v1::SdkWatchInstanceRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap().instance.unwrap();
    assert_eq!(first.state(), v1::InstanceState::Running);

    let before = h.manager.get("g1").await.unwrap().revision;
    let ready = sdk
        .ready(v1::SdkReadyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ready.instance.unwrap().state(), v1::InstanceState::Ready);
    let rec = h.manager.get("g1").await.unwrap();
    assert_eq!(rec.state, State::Ready);
    assert!(rec.revision > before);

    sdk.set_players(v1::SdkSetPlayersRequest { count: 3, max: 16 })
        .await
        .unwrap();
    sdk.set_label(v1::SdkSetLabelRequest {
        key: "map".into(),
        value: "dust".into(),
    })
    .await
    .unwrap();
    let rec = h.manager.get("g1").await.unwrap();
    assert_eq!((rec.players, rec.max_players), (3, 16));
    assert_eq!(rec.labels.get("map").map(String::as_str), Some("dust"));
    let status = rec.to_status();
    assert_eq!((status.players, status.max_players), (3, 16));

    // The watcher sees Ready, then the players, then the label, in that order.
    let mut seen = Vec::new();
    let deadline = Duration::from_secs(10);
    while seen.len() < 3 {
        let next = tokio::time::timeout(deadline, watch.message())
            .await
            .expect("a watch update in time")
            .unwrap()
            .unwrap()
            .instance
            .unwrap();
        seen.push((next.state(), next.players, next.labels.get("map").cloned()));
    }
    assert_eq!(
        seen,
        [
            (v1::InstanceState::Ready, 0, None),
            (v1::InstanceState::Ready, 3, None),
            (v1::InstanceState::Ready, 3, Some("dust".to_owned())),
        ]
    );

    // A bad label is the game's mistake, said as such.
    let err = sdk
        .set_label(v1::SdkSetLabelRequest {
            key: "no spaces".into(),
            value: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

    // A game cannot grow its labels past what the master accepts from anyone else.
    let room = exile_api::limits::MAX_LABELS - rec.labels.len();
    for i in 0..room {
        sdk.set_label(v1::SdkSetLabelRequest {
            key: format!("k{i}"),
            value: "v".into(),
        })
        .await
        .unwrap();
    }
    let err = sdk
        .set_label(v1::SdkSetLabelRequest {
            key: "one-too-many".into(),
            value: "v".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert!(err.message().contains("labels already"), "{err}");
    // Changing or clearing one it has is still fine.
    for value in ["w", ""] {
        sdk.set_label(v1::SdkSetLabelRequest {
            key: "k0".into(),
            value: value.into(),
        })
        .await
        .unwrap();
    }
    let err = sdk
        .set_label(v1::SdkSetLabelRequest {
            key: "map".into(),
            value: "x".repeat(exile_api::limits::MAX_LABEL_VALUE + 1),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

    h.stop.cancel();
    h.manager.shutdown(true).await.unwrap();
}

/// Starts a gRPC call whose request body never ends, as a game stuck mid-call would: the
/// endpoint holds it open for as long as the connection lives. Returns once the endpoint has
/// taken the call up.
async fn stall_a_call(addr: &str) {
    use tonic::codegen::Service;
    let mut channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let never = http_body_util::StreamBody::new(futures::stream::pending::<
        Result<hyper::body::Frame<hyper::body::Bytes>, tonic::Status>,
    >());
    let request = http::Request::post(format!("http://{addr}/exile.v1.GameServerSdk/Ready"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(never))
        .unwrap();
    futures::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .unwrap();
    tokio::spawn(channel.call(request));
    // A later call on the same connection is answered only after the endpoint has read the
    // stalled call's headers.
    let err = GameServerSdkClient::new(channel)
        .get_instance(v1::SdkGetInstanceRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
}

#[tokio::test]
async fn a_grpc_call_that_never_completes_does_not_hold_the_spawner_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    // No master answers, so the spawner keeps trying to enroll and serves the SDK meanwhile.
    let mut config = exile_spawner::Config::with_defaults("http://127.0.0.1:1", dir.path());
    config.enrollment_token = Some("unused".into());
    config.supervisor_bin = Some(supervisor_bin());
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(exile_spawner::run(config, shutdown.clone()));
    let port_file = dir.path().join("sdk-port");
    eventually("the SDK endpoint is bound", || {
        read(&port_file).parse::<u16>().is_ok()
    })
    .await;
    stall_a_call(&format!("127.0.0.1:{}", read(&port_file))).await;

    shut_down_agent(&shutdown, agent).await;
}

#[tokio::test]
async fn a_game_acts_only_on_its_own_instance() {
    let mut h = harness().await;
    let (addr, token_a) = h.spawn("a").await;
    let (_, token_b) = h.spawn("b").await;
    assert_ne!(token_a, token_b);

    for bad in ["", "not-a-secret", &token_a[..token_a.len() - 1]] {
        let mut sdk = client(&addr, bad).await;
        let err = sdk.ready(v1::SdkReadyRequest {}).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad:?}: {err}");
        let err = sdk
            .get_instance(v1::SdkGetInstanceRequest {})
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unauthenticated, "{bad:?}: {err}");
    }

    // B's secret acts on B only, whoever sends it.
    let mut as_b = client(&addr, &token_b).await;
    as_b.ready(v1::SdkReadyRequest {}).await.unwrap();
    assert_eq!(h.manager.get("b").await.unwrap().state, State::Ready);
    assert_eq!(h.manager.get("a").await.unwrap().state, State::Running);
    let mut as_a = client(&addr, &token_a).await;
    let a = as_a
        .get_instance(v1::SdkGetInstanceRequest {})
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(a.id, "a");

    // A removed instance's secret stops working.
    h.manager.remove("b", OpContext::default()).await.unwrap();
    let err = as_b.health(v1::SdkHealthRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");

    h.stop.cancel();
    h.manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn the_sdk_ports_and_secrets_survive_a_spawner_restart() {
    let mut h = harness().await;
    let GameVars { grpc, http, token } = h.spawn_game("keep").await;
    client(&grpc, &token)
        .await
        .ready(v1::SdkReadyRequest {})
        .await
        .unwrap();
    // The spawner goes away, leaving the game running; a new one comes up on the same dir.
    h.stop.cancel();
    h.manager.shutdown(false).await.unwrap();
    let (manager, stop) = serve_sdk(h.dir.path(), script_config(h.dir.path(), SDK_GAME)).await;
    let rec = manager.get("keep").await.unwrap();
    assert_eq!(rec.state, State::Ready, "{}", rec.message);
    // The adopted game still holds the addresses of the first start: both must answer there.
    let mut sdk = client(&grpc, &token).await;
    sdk.set_players(v1::SdkSetPlayersRequest { count: 1, max: 8 })
        .await
        .unwrap();
    assert_eq!(manager.get("keep").await.unwrap().players, 1);
    let reply = SdkHttp::new(&http, &token)
        .post("/v1/players", r#"{"count":2,"max":8}"#)
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(manager.get("keep").await.unwrap().players, 2);
    stop.cancel();
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn a_silent_sdk_user_goes_unhealthy_and_back_but_a_game_without_the_sdk_never_does() {
    let mut h = harness_with(|c| {
        c.health = exile_spawner::HealthCheck {
            period: Duration::from_millis(100),
            failure_threshold: 3,
            initial_delay: Duration::ZERO,
            ..Default::default()
        };
    })
    .await;
    let (addr, _) = h.spawn("no-sdk").await;
    let (_, token) = h.spawn("silent").await;
    let mut sdk = client(&addr, &token).await;
    sdk.ready(v1::SdkReadyRequest {}).await.unwrap();

    let rec = wait_for(&h.manager, "silent", "unhealthy", is(State::Unhealthy)).await;
    assert!(
        rec.message.contains("no SDK health ping"),
        "{}",
        rec.message
    );
    // Started earlier and never heard from, yet not unhealthy: it never used the SDK.
    assert_eq!(h.manager.get("no-sdk").await.unwrap().state, State::Running);

    sdk.health(v1::SdkHealthRequest {}).await.unwrap();
    let rec = h.manager.get("silent").await.unwrap();
    assert_eq!(rec.state, State::Ready, "pings resumed: {}", rec.message);

    h.stop.cancel();
    h.manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn a_reservation_lapses_to_ready_and_shutdown_is_a_requested_stop() {
    let mut h = harness().await;
    let (addr, token) = h.spawn("r").await;
    let mut sdk = client(&addr, &token).await;
    sdk.ready(v1::SdkReadyRequest {}).await.unwrap();
    let err = sdk
        .reserve(v1::SdkReserveRequest { ttl_seconds: 0 })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    let reserved = sdk
        .reserve(v1::SdkReserveRequest { ttl_seconds: 1 })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    assert_eq!(reserved.state(), v1::InstanceState::Allocated);
    let rec = wait_for(&h.manager, "r", "ready again", is(State::Ready)).await;
    assert_eq!(rec.message, "reservation expired");

    // Allocate ends a reservation for good.
    sdk.reserve(v1::SdkReserveRequest { ttl_seconds: 1 })
        .await
        .unwrap();
    sdk.allocate(v1::SdkAllocateRequest {}).await.unwrap();

    sdk.shutdown(v1::SdkShutdownRequest {}).await.unwrap();
    let rec = wait_for(&h.manager, "r", "stopped", is(State::Stopped)).await;
    assert_eq!(rec.message, "stopped", "a stop, not a crash");
    h.stop.cancel();
    h.manager.shutdown(true).await.unwrap();
}

/// A spawn whose own health check is short, with `action`.
fn checked(id: &str, action: v1::UnhealthyAction) -> SpawnSpec {
    SpawnSpec {
        id: id.into(),
        health_check: Some(v1::HealthCheck {
            period_ms: Some(100),
            failure_threshold: Some(3),
            initial_delay_ms: Some(0),
            action: action as i32,
        }),
        restart_policy: Some(v1::RestartPolicy {
            backoff_base_ms: 100,
            backoff_max_ms: 100,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_spawns_own_health_check_wins_and_restart_or_leave_is_carried_out() {
    // The spawner's own check would take an hour to notice anything.
    let mut h = harness_with(|c| {
        c.health = exile_spawner::HealthCheck {
            period: Duration::from_secs(3600),
            ..Default::default()
        };
    })
    .await;
    let mut pinged = Vec::new();
    for (id, spec) in [
        ("restart", checked("restart", v1::UnhealthyAction::Restart)),
        ("leave", checked("leave", v1::UnhealthyAction::Leave)),
        (
            "default",
            SpawnSpec {
                id: "default".into(),
                ..Default::default()
            },
        ),
    ] {
        let (addr, token) = h.spawn_spec(spec).await;
        // One call makes the game one that is checked; then it falls silent.
        client(&addr, &token)
            .await
            .health(v1::SdkHealthRequest {})
            .await
            .unwrap();
        pinged.push(h.manager.get(id).await.unwrap());
    }
    let mut events = h.manager.subscribe();

    let before = &pinged[0];
    let after = wait_for(&h.manager, "restart", "restarted", |r| {
        r.restart_count == 1 && r.state == State::Running
    })
    .await;
    h.reaper.watch(&after);
    assert_ne!(after.pid, before.pid, "not a new process");
    assert_eq!(
        after.message,
        "restarted automatically after: unhealthy: missed 3 health pings"
    );
    // It went through Unhealthy, saying why, before it was restarted.
    let mut said = Vec::new();
    while let Ok(ev) = events.try_recv() {
        let s = ev.status.unwrap();
        if s.id == "restart" {
            said.push((s.state(), s.message));
        }
    }
    assert!(
        said.iter()
            .any(|(st, m)| *st == v1::InstanceState::Unhealthy
                && m.starts_with("unhealthy: missed 3 health pings (no SDK health ping for")),
        "{said:?}"
    );
    assert!(
        said.iter()
            .any(|(_, m)| m.contains("restarting in 0.1s (restart 1 of 5")),
        "{said:?}"
    );

    // Meanwhile the one told to leave it is still Unhealthy, in the same process, and the
    // one with the spawner's hour-long period is still fine.
    let left = wait_for(&h.manager, "leave", "unhealthy", is(State::Unhealthy)).await;
    assert_eq!(left.pid, pinged[1].pid);
    assert_eq!(left.restart_count, 0);
    assert!(alive(left.pid.unwrap()));
    assert_eq!(
        h.manager.get("default").await.unwrap().state,
        State::Running
    );

    h.stop.cancel();
    h.manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn an_unhealthy_restart_counts_toward_the_crash_loop_limit() {
    let mut h = harness().await;
    let mut spec = checked("flaky", v1::UnhealthyAction::Restart);
    spec.restart_policy = Some(v1::RestartPolicy {
        max_restarts: 1,
        backoff_base_ms: 100,
        backoff_max_ms: 100,
        ..Default::default()
    });
    for round in 0..2 {
        let (addr, token) = if round == 0 {
            h.spawn_spec(spec.clone()).await
        } else {
            // The restarted game prints its variables again.
            let rec = wait_for(&h.manager, "flaky", "restarted", |r| {
                r.restart_count == 1 && r.state == State::Running
            })
            .await;
            h.reaper.watch(&rec);
            let log = h.dir.path().join("instances/flaky/logs/output.log");
            eventually("the restarted game printed its variables", || {
                read(&log).matches("token=").count() == 2
            })
            .await;
            let text = read(&log);
            let line = text.lines().rfind(|l| l.contains("token=")).unwrap();
            let addr = line
                .split("sdk=")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            let token = line.split("token=").nth(1).unwrap().trim();
            (addr.to_owned(), token.to_owned())
        };
        client(&addr, &token)
            .await
            .health(v1::SdkHealthRequest {})
            .await
            .unwrap();
    }
    let end = wait_for(&h.manager, "flaky", "given up", is(State::Crashed)).await;
    assert_eq!(end.restart_count, 1);
    assert!(
        end.message
            .starts_with("unhealthy: missed 3 health pings; crash loop: 1 restarts within"),
        "{}",
        end.message
    );
    assert_eq!(end.pid, None);
    h.stop.cancel();
    h.manager.shutdown(true).await.unwrap();
}
