//! The whole agent (`exile_spawner::run`) against a fake master: enrollment, hello, welcome,
//! commands and results, heartbeats, reconnects, rejected tokens and revoked credentials.
//! The fake master is shared with the other tests of the whole agent; it also serves uploaded
//! builds (see [`FakeBuilds`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exile_api::v1::spawner_link_server::{SpawnerLink, SpawnerLinkServer};
use exile_api::v1::{self, command::Action, master_message, spawner_message};
use exile_spawner::{Config, Credential, Error};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::support::*;

pub(crate) const TOKEN: &str = "enroll-me";
pub(crate) const CREDENTIAL: &str = "the-credential";

/// One accepted link, handed to the test.
pub(crate) struct Session {
    inbound: Streaming<v1::SpawnerMessage>,
    outbound: mpsc::Sender<Result<v1::MasterMessage, Status>>,
}

impl Session {
    pub(crate) async fn next(&mut self) -> spawner_message::Kind {
        let message = tokio::time::timeout(Duration::from_secs(10), self.inbound.message())
            .await
            .expect("no message from the spawner within 10 s")
            .expect("stream error")
            .expect("stream ended");
        message.kind.expect("empty message")
    }

    pub(crate) async fn send(&self, kind: master_message::Kind) {
        self.outbound
            .send(Ok(v1::MasterMessage { kind: Some(kind) }))
            .await
            .unwrap();
    }

    /// Skips messages until `pick` returns something.
    pub(crate) async fn until<T>(
        &mut self,
        mut pick: impl FnMut(spawner_message::Kind) -> Option<T>,
    ) -> T {
        loop {
            if let Some(found) = pick(self.next().await) {
                return found;
            }
        }
    }
}

struct FakeMaster {
    sessions: mpsc::UnboundedSender<Session>,
    rejected_links: Arc<AtomicUsize>,
    builds: Arc<FakeBuilds>,
}

/// Builds the fake master serves: archives split into fixed-size chunks. It counts what it
/// sends and can be told to misbehave.
#[derive(Default)]
pub(crate) struct FakeBuilds {
    state: Mutex<BuildsState>,
    served_bytes: AtomicU64,
    fetch_calls: AtomicUsize,
}

#[derive(Default)]
struct BuildsState {
    builds: HashMap<String, (v1::BuildRef, Vec<v1::ChunkRef>, String)>,
    chunks: HashMap<String, Vec<u8>>,
    /// The next FetchChunks stream fails after this many chunks.
    cut_after: Option<usize>,
    /// Chunks served with a flipped byte, and how many more times.
    corrupt: HashMap<String, u32>,
}

/// Lowercase hex SHA-256.
pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

impl FakeBuilds {
    /// Stores `archive` as build `id` (`name@version`), cut into `chunk_size` pieces, with a
    /// manifest text; returns the reference a master would send.
    pub(crate) fn register(
        &self,
        id: &str,
        name: &str,
        version: &str,
        archive: &[u8],
        chunk_size: usize,
        manifest: &str,
    ) -> v1::BuildRef {
        let build = v1::BuildRef {
            id: id.into(),
            name: name.into(),
            version: version.into(),
            sha256: sha256_hex(archive),
            size: archive.len() as u64,
        };
        let mut state = self.state.lock().unwrap();
        let mut refs = Vec::new();
        for piece in archive.chunks(chunk_size) {
            let sha = sha256_hex(piece);
            refs.push(v1::ChunkRef {
                sha256: sha.clone(),
                size: u32::try_from(piece.len()).unwrap(),
            });
            state.chunks.insert(sha, piece.to_vec());
        }
        state
            .builds
            .insert(id.into(), (build.clone(), refs, manifest.into()));
        build
    }

    /// The chunks of build `id`, in order.
    pub(crate) fn chunks_of(&self, id: &str) -> Vec<v1::ChunkRef> {
        self.state.lock().unwrap().builds[id].1.clone()
    }

    /// Makes the next FetchChunks stream fail after `n` chunks.
    pub(crate) fn cut_next_stream_after(&self, n: usize) {
        self.state.lock().unwrap().cut_after = Some(n);
    }

    /// Serves chunk `sha` corrupted the next `times` times it is asked for.
    pub(crate) fn corrupt(&self, sha: &str, times: u32) {
        self.state.lock().unwrap().corrupt.insert(sha.into(), times);
    }

    /// Chunk bytes sent so far.
    pub(crate) fn served(&self) -> u64 {
        self.served_bytes.load(Ordering::SeqCst)
    }

    /// FetchChunks calls so far.
    pub(crate) fn fetch_calls(&self) -> usize {
        self.fetch_calls.load(Ordering::SeqCst)
    }

    /// The next message of a FetchChunks stream for `sha`, after `sent` chunks.
    fn next_chunk(&self, sha: &str, sent: usize) -> Result<v1::ChunkData, Status> {
        let mut state = self.state.lock().unwrap();
        if state.cut_after == Some(sent) {
            state.cut_after = None;
            return Err(Status::unavailable("the fake master cut the stream"));
        }
        let Some(data) = state.chunks.get(sha).cloned() else {
            return Err(Status::not_found(format!("no chunk {sha}")));
        };
        let mut data = data;
        if let Some(times) = state.corrupt.get_mut(sha)
            && *times > 0
        {
            *times -= 1;
            data[0] ^= 0xff;
        }
        self.served_bytes
            .fetch_add(data.len() as u64, Ordering::SeqCst);
        Ok(v1::ChunkData {
            sha256: sha.into(),
            data,
        })
    }
}

fn check_credential<T>(request: &Request<T>) -> Result<(), Status> {
    let auth = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {CREDENTIAL}")) {
        return Err(Status::unauthenticated("credential revoked"));
    }
    Ok(())
}

#[tonic::async_trait]
impl SpawnerLink for FakeMaster {
    async fn enroll(
        &self,
        request: Request<v1::EnrollRequest>,
    ) -> Result<Response<v1::EnrollResponse>, Status> {
        let request = request.into_inner();
        if request.token != TOKEN {
            return Err(Status::unauthenticated(
                "unknown or expired enrollment token",
            ));
        }
        assert!(!request.name.is_empty() && !request.host.is_empty());
        Ok(Response::new(v1::EnrollResponse {
            spawner_id: "sp-1".into(),
            credential: CREDENTIAL.into(),
            ..Default::default()
        }))
    }

    type LinkStream = ReceiverStream<Result<v1::MasterMessage, Status>>;

    async fn link(
        &self,
        request: Request<Streaming<v1::SpawnerMessage>>,
    ) -> Result<Response<Self::LinkStream>, Status> {
        if let Err(status) = check_credential(&request) {
            self.rejected_links.fetch_add(1, Ordering::SeqCst);
            return Err(status);
        }
        let (outbound, rx) = mpsc::channel(64);
        let _ = self.sessions.send(Session {
            inbound: request.into_inner(),
            outbound,
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_build_chunks(
        &self,
        request: Request<v1::GetBuildChunksRequest>,
    ) -> Result<Response<v1::GetBuildChunksResponse>, Status> {
        check_credential(&request)?;
        let id = request.into_inner().build_id;
        let state = self.builds.state.lock().unwrap();
        let Some((build, chunks, manifest)) = state.builds.get(&id) else {
            return Err(Status::not_found(format!("build {id} does not exist")));
        };
        Ok(Response::new(v1::GetBuildChunksResponse {
            build: Some(build.clone()),
            chunks: chunks.clone(),
            format: v1::ArchiveFormat::Unspecified.into(),
            manifest: manifest.clone(),
        }))
    }

    type FetchChunksStream = ReceiverStream<Result<v1::ChunkData, Status>>;

    async fn fetch_chunks(
        &self,
        request: Request<v1::FetchChunksRequest>,
    ) -> Result<Response<Self::FetchChunksStream>, Status> {
        check_credential(&request)?;
        let hashes = request.into_inner().sha256;
        assert!(
            hashes.len() <= 4096,
            "{} chunks asked at once",
            hashes.len()
        );
        self.builds.fetch_calls.fetch_add(1, Ordering::SeqCst);
        let builds = self.builds.clone();
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            for (sent, sha) in hashes.iter().enumerate() {
                let next = builds.next_chunk(sha, sent);
                let end = next.is_err();
                if tx.send(next).await.is_err() || end {
                    return;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

pub(crate) struct Harness {
    pub(crate) url: String,
    sessions: mpsc::UnboundedReceiver<Session>,
    rejected_links: Arc<AtomicUsize>,
    pub(crate) builds: Arc<FakeBuilds>,
    pub(crate) server: tokio::task::JoinHandle<()>,
}

pub(crate) async fn fake_master() -> Harness {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, sessions) = mpsc::unbounded_channel();
    let rejected_links = Arc::new(AtomicUsize::new(0));
    let builds = Arc::new(FakeBuilds::default());
    let service = SpawnerLinkServer::new(FakeMaster {
        sessions: tx,
        rejected_links: rejected_links.clone(),
        builds: builds.clone(),
    });
    let server = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await;
    });
    Harness {
        url,
        sessions,
        rejected_links,
        builds,
        server,
    }
}

impl Harness {
    pub(crate) async fn session(&mut self) -> Session {
        tokio::time::timeout(Duration::from_secs(15), self.sessions.recv())
            .await
            .expect("the spawner did not link within 15 s")
            .unwrap()
    }
}

pub(crate) fn spawner_config(url: &str, data_dir: &std::path::Path) -> Config {
    let mut config = Config::with_defaults(url, data_dir);
    let game = demo_game().to_string_lossy().into_owned();
    config.build_command = Some(format!(
        "{} --port {{port}}",
        shlex::try_quote(&game).unwrap()
    ));
    let ports = free_port_range(4);
    config.port_range = format!("{}-{}", ports.start(), ports.end());
    config.name = Some("it-spawner".into());
    config.region = "eu-test".into();
    config.labels = vec!["gpu=no".into()];
    config.stop_grace_period_secs = 5;
    config.supervisor_bin = Some(supervisor_bin());
    config
}

pub(crate) fn command(request_id: u64, action: Action) -> master_message::Kind {
    master_message::Kind::Command(v1::Command {
        request_id,
        deadline_unix_ms: exile_api::now_unix_ms() + 10_000,
        action: Some(action),
    })
}

pub(crate) fn result_for(
    id: u64,
) -> impl FnMut(spawner_message::Kind) -> Option<v1::CommandResult> {
    move |kind| match kind {
        spawner_message::Kind::CommandResult(r) if r.request_id == id => Some(r),
        _ => None,
    }
}

#[tokio::test]
async fn enrolls_links_runs_commands_and_relinks_with_a_fresh_hello() {
    let mut master = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = spawner_config(&master.url, dir.path());
    config.enrollment_token = Some(TOKEN.into());
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(exile_spawner::run(config, shutdown.clone()));
    let mut reaper = Reaper::default();

    let mut session = master.session().await;
    let spawner_message::Kind::Hello(hello) = session.next().await else {
        panic!("the first message is not a hello");
    };
    assert_eq!(hello.name, "it-spawner");
    assert_eq!(hello.region, "eu-test");
    assert_eq!(hello.capacity, 20);
    assert_eq!(hello.labels.get("gpu").map(String::as_str), Some("no"));
    assert_eq!(hello.active_build, "local");
    assert_eq!(hello.agent_version, env!("CARGO_PKG_VERSION"));
    assert!(hello.instances.is_empty());
    let stored = Credential::load(dir.path()).unwrap().unwrap();
    assert_eq!(stored.spawner_id, "sp-1");

    session
        .send(master_message::Kind::Welcome(v1::Welcome {
            spawner_id: "sp-1".into(),
            heartbeat_interval_ms: 100,
        }))
        .await;
    let spawn = Action::Spawn(v1::SpawnCommand {
        instance_id: "game-1".into(),
        args: vec!["--max-players".into(), "8".into()],
        ..Default::default()
    });
    session.send(command(1, spawn)).await;
    let result = session.until(result_for(1)).await;
    assert_eq!(result.error, "");
    let status = result.instance.unwrap();
    assert_eq!(status.state, v1::InstanceState::Running as i32);
    let port = u16::try_from(status.ports[0].port).unwrap();
    let pid = status.pid;
    reaper.0.push(pid);
    assert_eq!(udp_status(port)["max_players"], 8);

    // Errors come back classified, and a heartbeat reports the instance.
    session
        .send(command(
            2,
            Action::Start(v1::InstanceRef {
                instance_id: "nope".into(),
            }),
        ))
        .await;
    let result = session.until(result_for(2)).await;
    assert_eq!(result.error_kind, v1::CommandErrorKind::NotFound as i32);
    assert!(result.error.contains("nope"));
    let heartbeat = session
        .until(|kind| match kind {
            spawner_message::Kind::Heartbeat(hb) if !hb.instances.is_empty() => Some(hb),
            _ => None,
        })
        .await;
    assert_eq!(heartbeat.instances[0].id, "game-1");
    assert!(heartbeat.instances[0].resources.unwrap().memory_bytes > 0);
    assert!(heartbeat.host.unwrap().cpu_count > 0);

    // The master goes away mid-stream: the spawner relinks with the full snapshot.
    drop(session);
    let mut session = master.session().await;
    let spawner_message::Kind::Hello(hello) = session.next().await else {
        panic!("no hello after relinking");
    };
    assert_eq!(hello.instances.len(), 1);
    assert_eq!(hello.instances[0].id, "game-1");
    assert_eq!(hello.instances[0].pid, pid);
    session
        .send(master_message::Kind::Welcome(v1::Welcome {
            spawner_id: "sp-1".into(),
            heartbeat_interval_ms: 100,
        }))
        .await;
    // Stop over the new link, with its events.
    let stop = Action::Stop(v1::StopCommand {
        instance_id: "game-1".into(),
        grace_period_seconds: 0,
    });
    session.send(command(3, stop)).await;
    let mut states = Vec::new();
    let result = session
        .until(|kind| match kind {
            spawner_message::Kind::InstanceEvent(e) => {
                states.push(e.status.unwrap().state);
                None
            }
            spawner_message::Kind::CommandResult(r) if r.request_id == 3 => Some(r),
            _ => None,
        })
        .await;
    assert_eq!(result.error, "");
    assert_eq!(
        result.instance.unwrap().state,
        v1::InstanceState::Stopped as i32
    );
    assert!(
        states.contains(&(v1::InstanceState::Stopping as i32)),
        "{states:?}"
    );
    assert!(!group_alive(pid));

    shut_down_agent(&shutdown, agent).await;
    master.server.abort();
}

#[tokio::test]
async fn a_rejected_enrollment_token_ends_run_with_a_clear_error() {
    let master = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = spawner_config(&master.url, dir.path());
    config.enrollment_token = Some("wrong".into());
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        exile_spawner::run(config, CancellationToken::new()),
    )
    .await
    .expect("run kept retrying a rejected token");
    let err = result.unwrap_err();
    assert!(matches!(err, Error::EnrollmentRejected(_)), "{err:?}");
    assert!(err.to_string().contains("enrollment token"), "{err}");
    assert!(
        !err.to_string().contains("wrong"),
        "the token leaked into the error"
    );
    assert!(Credential::load(dir.path()).unwrap().is_none());
    master.server.abort();
}

#[tokio::test]
async fn no_credential_and_no_token_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = spawner_config("http://127.0.0.1:1", dir.path());
    let err = exile_spawner::run(config, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--enrollment-token"), "{err}");
}

#[tokio::test]
async fn a_revoked_credential_is_retried_until_shutdown() {
    let master = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    Credential {
        spawner_id: "sp-9".into(),
        credential: "revoked".into(),
    }
    .store(dir.path())
    .unwrap();
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(exile_spawner::run(
        spawner_config(&master.url, dir.path()),
        shutdown.clone(),
    ));
    let rejected = master.rejected_links.clone();
    eventually("two rejected link attempts", || {
        rejected.load(Ordering::SeqCst) >= 2
    })
    .await;
    assert!(!agent.is_finished(), "run gave up on a rejected credential");
    shut_down_agent(&shutdown, agent).await;
    master.server.abort();
}

#[tokio::test]
async fn a_game_ready_over_http_reaches_the_master_and_open_watches_do_not_hold_shutdown() {
    let mut master = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = spawner_config(&master.url, dir.path());
    config.enrollment_token = Some(TOKEN.into());
    config.stop_instances_on_shutdown = true;
    config.build_command = Some(format!(
        "/bin/sh -c {}",
        shlex::try_quote(SDK_GAME).unwrap()
    ));
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(exile_spawner::run(config, shutdown.clone()));
    let mut reaper = Reaper::default();

    let mut session = master.session().await;
    session
        .until(|kind| matches!(kind, spawner_message::Kind::Hello(_)).then_some(()))
        .await;
    session
        .send(master_message::Kind::Welcome(v1::Welcome {
            spawner_id: "sp-1".into(),
            heartbeat_interval_ms: 100,
        }))
        .await;
    let spawn = Action::Spawn(v1::SpawnCommand {
        instance_id: "web-1".into(),
        ..Default::default()
    });
    session.send(command(1, spawn)).await;
    let result = session.until(result_for(1)).await;
    assert_eq!(result.error, "");
    reaper.0.push(result.instance.unwrap().pid);

    let GameVars { grpc, http, token } = game_vars(dir.path(), "web-1").await;
    assert!(
        http.starts_with("127.0.0.1:") && http != grpc,
        "{http} {grpc}"
    );

    // A watch on each form stays open across the change and the shutdown.
    let sdk = SdkHttp::new(&http, &token);
    let mut http_watch = sdk.watch().await;
    let mut grpc_watch = crate::sdk::client(&grpc, &token)
        .await
        .watch_instance(v1::SdkWatchInstanceRequest {})
        .await
        .unwrap()
        .into_inner();
    http_watch.next().await.unwrap();
    grpc_watch.message().await.unwrap().unwrap();

    let ready = sdk.post("/v1/ready", "").await;
    assert_eq!(ready.status, 200, "{ready:?}");
    let seen = session
        .until(|kind| match kind {
            spawner_message::Kind::InstanceEvent(e) => e
                .status
                .filter(|s| s.id == "web-1" && s.state() == v1::InstanceState::Ready),
            _ => None,
        })
        .await;
    assert_eq!(seen.message, "the game is ready");

    shut_down_agent(&shutdown, agent).await;
    // Both watches were ended rather than holding the endpoints open.
    while http_watch.next().await.is_some() {}
    while tokio::time::timeout(Duration::from_secs(10), grpc_watch.message())
        .await
        .expect("the gRPC watch stayed open")
        .is_ok_and(|m| m.is_some())
    {}
    master.server.abort();
}
