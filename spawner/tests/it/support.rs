//! Test helpers: the demo game binary, free port ranges, manager construction, waiting on
//! conditions with deadlines, and cleanup of the processes a test started.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use exile_spawner::process::CommandTemplate;
use exile_spawner::{InstanceRecord, Manager, ManagerConfig, State};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Path of the demo game binary: `EXILE_TEST_DEMO_GAME` when set (`cargo xtask test` sets it
/// to the one it has just built), else built on first use so `cargo test -p exile-spawner`
/// works on its own (cargo does not build a dependency's binaries for tests).
pub fn demo_game() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        if let Some(path) = std::env::var_os("EXILE_TEST_DEMO_GAME") {
            let path = PathBuf::from(path);
            assert!(
                path.exists(),
                "EXILE_TEST_DEMO_GAME: {} is missing",
                path.display()
            );
            return path;
        }
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/it-xxxx → target/<profile>/exile-demo-game
        let profile_dir = exe.parent().unwrap().parent().unwrap();
        let path = profile_dir.join("exile-demo-game");
        let status = exile_api::cargo_env::nested(&mut std::process::Command::new(env!("CARGO")))
            .args([
                "build",
                "--quiet",
                "-p",
                "exile-sdk",
                "--bin",
                "exile-demo-game",
            ])
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "building the demo game failed ({status:?}); using {}",
                path.display()
            );
        }
        assert!(path.exists(), "demo game not found at {}", path.display());
        path
    })
    .clone()
}

/// Path of the supervisor binary cargo built for these tests.
pub fn supervisor_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_exile-supervisor"))
}

/// The environment of process `pid`, read once its exec has finished. A parent's `spawn`
/// returns as soon as the kernel has switched the child to the new program, a moment before
/// the kernel lays out the new environment; until then `/proc/<pid>/environ` reads empty.
pub fn environ(pid: u32) -> Vec<(String, String)> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let raw = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        if !raw.is_empty() || std::time::Instant::now() > deadline {
            return raw
                .split(|b| *b == 0)
                .filter_map(|kv| {
                    let kv = String::from_utf8_lossy(kv);
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), v.to_owned()))
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A range of `len` ports, each free for TCP and UDP now, not handed to another test of this
/// process. Drawn at random below the kernel's ephemeral range, so the client sockets tests
/// open (which take ephemeral ports) never land in it; never a fixed number.
pub fn free_port_range(len: u16) -> std::ops::RangeInclusive<u16> {
    use rand::Rng;
    static TAKEN: Mutex<Vec<std::ops::RangeInclusive<u16>>> = Mutex::new(Vec::new());
    let ephemeral_low = exile_spawner::ports::ephemeral_range()
        .map(|r| *r.start())
        .unwrap_or(32768);
    let mut taken = TAKEN.lock().unwrap();
    for _ in 0..500 {
        let base = rand::rng().random_range(10_000..ephemeral_low - len);
        let range = base..=base + len - 1;
        let overlaps = taken
            .iter()
            .any(|r| r.start() <= range.end() && range.start() <= r.end());
        if overlaps {
            continue;
        }
        let all_free = range.clone().all(|p| {
            TcpListener::bind(("0.0.0.0", p)).is_ok() && UdpSocket::bind(("0.0.0.0", p)).is_ok()
        });
        if all_free {
            taken.push(range.clone());
            return range;
        }
    }
    panic!("no free port range of {len}");
}

/// Manager settings for a test: the demo game, a private port range, a short grace period.
pub fn config(
    data_dir: &Path,
    capacity: u32,
    ports: std::ops::RangeInclusive<u16>,
) -> ManagerConfig {
    ManagerConfig {
        name: "test-spawner".into(),
        data_dir: data_dir.to_owned(),
        capacity,
        ports,
        template: Some(CommandTemplate::new(
            vec![
                demo_game().to_string_lossy().into_owned(),
                "--port".into(),
                "{port}".into(),
            ],
            data_dir.to_owned(),
        )),
        host_manifest: Default::default(),
        build_version: "v1".into(),
        stop_grace: Duration::from_secs(5),
        supervisor_bin: supervisor_bin(),
        log_max_bytes: 8 << 20,
        log_files: 4,
        restart_default: Default::default(),
        sdk_addr: None,
        sdk_http_addr: None,
        agones_ports: free_port_range(4),
        health: exile_spawner::HealthCheck::default(),
        isolation: Default::default(),
    }
}

/// Same settings with a `/bin/sh -c` script as the build command.
pub fn script_config(data_dir: &Path, script: &str) -> ManagerConfig {
    let mut config = config(data_dir, 10, free_port_range(4));
    config.template = Some(CommandTemplate::new(
        vec!["/bin/sh".into(), "-c".into(), script.into()],
        data_dir.to_owned(),
    ));
    config.stop_grace = Duration::from_secs(1);
    config
}

/// Polls `manager` until `check` holds for instance `id`, or panics after 10 s.
pub async fn wait_for(
    manager: &Manager,
    id: &str,
    what: &str,
    check: impl Fn(&InstanceRecord) -> bool,
) -> InstanceRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let rec = manager.get(id).await.unwrap();
        if check(&rec) {
            return rec;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "instance {id} never became {what}: {rec:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `cond` holds, or panics after 10 s.
pub async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether any process of group `pgid` exists.
pub fn group_alive(pgid: u32) -> bool {
    exile_spawner::process::group_alive(pgid)
}

/// Whether process `pid` is alive (not a zombie).
pub fn alive(pid: u32) -> bool {
    exile_spawner::process::start_ticks(pid).is_some()
}

/// Sends SIGKILL to process `pid`.
pub fn kill9(pid: u32) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
}

/// Kills the process groups it holds when dropped, so a failing test leaves nothing behind.
#[derive(Default)]
pub struct Reaper(pub Vec<u32>);

impl Reaper {
    pub fn watch(&mut self, rec: &InstanceRecord) {
        if let Some(pid) = rec.pid {
            self.0.push(pid);
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
    }
}

/// Sends one UDP datagram to the demo game and returns the reply.
pub fn udp_status(port: u16) -> serde_json::Value {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 1500];
    // The game may still be binding: retry a few times within the deadline.
    for _ in 0..50 {
        socket.send_to(b"status", ("127.0.0.1", port)).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            return serde_json::from_slice(&buf[..n]).unwrap();
        }
    }
    panic!("no UDP answer on port {port}");
}

/// Cancels `shutdown` and checks that the agent's `run` then returns, without an error, within
/// 10 s.
pub async fn shut_down_agent(
    shutdown: &tokio_util::sync::CancellationToken,
    agent: tokio::task::JoinHandle<exile_spawner::Result<()>>,
) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .expect("run did not return within 10 s of shutdown")
        .unwrap()
        .unwrap();
}

/// A game script that hands its SDK variables to the test through its log, then idles.
pub const SDK_GAME: &str =
    r#"echo "sdk=$EXILE_SDK_ADDR http=$EXILE_SDK_HTTP_ADDR token=$EXILE_SDK_TOKEN"; exec sleep 60"#;

/// The SDK variables one game was given.
pub struct GameVars {
    /// `EXILE_SDK_ADDR`.
    pub grpc: String,
    /// `EXILE_SDK_HTTP_ADDR`.
    pub http: String,
    /// `EXILE_SDK_TOKEN`.
    pub token: String,
}

/// Waits for the game of instance `id` under `data_dir` to print its SDK variables, as
/// [`SDK_GAME`] does, and returns them.
pub async fn game_vars(data_dir: &Path, id: &str) -> GameVars {
    let log = data_dir.join(format!("instances/{id}/logs/output.log"));
    eventually("the game printed its SDK variables", || {
        read(&log).contains("token=")
    })
    .await;
    let line = read(&log);
    let var = |name: &str| {
        line.split(&format!("{name}="))
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let vars = GameVars {
        grpc: var("sdk"),
        http: var("http"),
        token: var("token"),
    };
    assert!(
        !vars.grpc.is_empty() && !vars.http.is_empty() && vars.token.len() >= 32,
        "{line}"
    );
    vars
}

/// Reads a file to a string, empty when missing.
pub fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// True when the record is in `state`.
pub fn is(state: State) -> impl Fn(&InstanceRecord) -> bool {
    move |r| r.state == state
}

/// A plain HTTP/1.1 client for the SDK's HTTP form, sending a fixed `Authorization` value.
pub struct SdkHttp {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<hyper::body::Bytes>,
    >,
    addr: String,
    authorization: Option<String>,
}

/// One HTTP answer: status, headers and the body parsed as JSON.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub json: serde_json::Value,
}

impl HttpReply {
    /// The `error` sentence of an error answer.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or_default()
    }
}

impl SdkHttp {
    /// A client sending `Authorization: Bearer <token>` (nothing when `token` is empty).
    pub fn new(addr: &str, token: &str) -> Self {
        let authorization = (!token.is_empty()).then(|| format!("Bearer {token}"));
        Self::with_authorization(addr, authorization.as_deref())
    }

    /// A client sending `authorization` as it is.
    pub fn with_authorization(addr: &str, authorization: Option<&str>) -> Self {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        Self {
            client,
            addr: addr.to_owned(),
            authorization: authorization.map(str::to_owned),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: &str,
    ) -> http::Response<hyper::body::Incoming> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.addr));
        if let Some(a) = &self.authorization {
            request = request.header(http::header::AUTHORIZATION, a);
        }
        let request = request
            .body(http_body_util::Full::new(hyper::body::Bytes::from(
                body.to_owned(),
            )))
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.client.request(request))
            .await
            .expect("no HTTP answer within 10 s")
            .unwrap()
    }

    /// Sends one request and reads the whole answer.
    pub async fn call(&self, method: &str, path: &str, body: &str) -> HttpReply {
        use http_body_util::BodyExt;
        let response = self.send(method, path, body).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        HttpReply {
            status,
            headers,
            json,
        }
    }

    /// `POST path` with `body`.
    pub async fn post(&self, path: &str, body: &str) -> HttpReply {
        self.call("POST", path, body).await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> HttpReply {
        self.call("GET", path, "").await
    }

    /// Opens `GET /v1/watch`, checking that it is accepted as a stream of JSON lines.
    pub async fn watch(&self) -> JsonLines {
        let response = self.send("GET", "/v1/watch", "").await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[http::header::CONTENT_TYPE],
            "application/x-ndjson"
        );
        JsonLines {
            body: response.into_body(),
            buf: Vec::new(),
        }
    }
}

/// A newline-delimited JSON answer, read line by line.
pub struct JsonLines {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl JsonLines {
    /// The next line, `None` once the stream ends; panics when none comes within 10 s.
    pub async fn next(&mut self) -> Option<serde_json::Value> {
        use http_body_util::BodyExt;
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let frame = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("no watch line within 10 s");
            match frame {
                None => {
                    assert!(self.buf.is_empty(), "the stream ended mid-line");
                    return None;
                }
                Some(frame) => {
                    if let Ok(data) = frame.unwrap().into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}
