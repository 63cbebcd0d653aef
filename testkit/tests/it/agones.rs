//! Games written against Agones' SDK, unchanged, under a real spawner: the REST SDK driven
//! with curl, the official Node.js SDK from npm and the official Rust SDK from crates.io, a
//! fleet's Agones game handed out by a matchmaker, and calls from outside the instance
//! refused. Each game goes Ready → SetLabel → Health → Allocate → Reserve → Shutdown, one step
//! each time the test drops a `go-N` file in its directory, so every step is seen in Exile's
//! Watch before the next.

use std::path::{Path, PathBuf};
use std::time::Duration;

use exile_api::v1 as pb;
use exile_testkit::{Clients, Sandbox, SandboxOptions, eventually};
use pb::InstanceState as S;
use serde_json::json;

use crate::support::Watcher;

/// The games' sources in this crate.
fn games_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("agones")
}

/// The counters and lists every Agones test build declares; the games count on them.
const COUNTS: &str = "[agones.counters.rooms]\ncount = 1\ncapacity = 10\n[agones.lists.players]\ncapacity = 3\nvalues = [\"bot\"]\n";

/// A host build whose manifest asks for the Agones SDK, declares [`COUNTS`] and runs
/// `command`.
fn agones_build(command: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!("sdk = \"agones\"\n{COUNTS}[run]\ncommand = {command:?}\n");
    std::fs::write(dir.path().join("exile-build.toml"), manifest).unwrap();
    dir
}

/// A sandbox with one spawner whose host build is `build`.
async fn sandbox(build: &tempfile::TempDir, command: &str) -> Sandbox {
    Sandbox::start(SandboxOptions {
        spawners: 1,
        capacity: 4,
        build_command: Some(command.to_owned()),
        build_dir: Some(build.path().to_owned()),
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn spawn(admin: &Clients, env: &[(&str, &str)]) -> pb::Instance {
    admin
        .instances
        .clone()
        .spawn_instance(pb::SpawnInstanceRequest {
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap()
}

/// The game's directory (the instance's `data/`), where it runs and leaves its files.
fn instance_dir(sb: &Sandbox, id: &str) -> PathBuf {
    sb.dir()
        .join(sb.spawner_name(0))
        .join("instances")
        .join(id)
        .join("data")
}

/// The contents of `name` in `dir` once the game has written it (non-empty).
async fn file(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    eventually(
        &format!("{name} from the game"),
        Duration::from_secs(30),
        || {
            let text = std::fs::read_to_string(&path).ok();
            async move { text.filter(|t| !t.trim().is_empty()) }
        },
    )
    .await
    .unwrap()
}

/// Waits until the game has left `name` (maybe empty) in `dir`.
async fn wait_for(dir: &Path, name: &str) {
    let path = dir.join(name);
    eventually(
        &format!("{name} from the game"),
        Duration::from_secs(30),
        || {
            let there = path.exists();
            async move { there.then_some(()) }
        },
    )
    .await
    .unwrap();
}

/// A counters/lists call of the REST game: its HTTP code and its answer.
async fn beta_call(dir: &Path, name: &str) -> (String, serde_json::Value) {
    let code = file(dir, &format!("{name}.code")).await.trim().to_owned();
    let body = serde_json::from_str(&file(dir, &format!("{name}.json")).await).unwrap();
    (code, body)
}

fn go(dir: &Path, step: u32) {
    std::fs::write(dir.join(format!("go-{step}")), "").unwrap();
}

/// The Agones ports the game was handed, as it wrote them down.
async fn agones_ports(dir: &Path) -> (u16, u16) {
    let text = file(dir, "agones-ports").await;
    let mut words = text.split_whitespace().map(|w| w.parse::<u16>().unwrap());
    (words.next().unwrap(), words.next().unwrap())
}

/// Walks a game through every step, checking each in Exile's Watch, and returns its
/// directory once it has asked to shut down and is Stopped.
async fn walk(sb: &Sandbox, w: &mut Watcher, id: &str) -> PathBuf {
    let dir = instance_dir(sb, id);
    w.until("the game Ready", |w| w.state(id) == Some(S::Ready))
        .await
        .unwrap();
    go(&dir, 1);
    w.until("the game's label", |w| {
        w.last[id]
            .labels
            .get("agones.dev/sdk-map")
            .map(String::as_str)
            == Some("dust")
    })
    .await
    .unwrap();
    go(&dir, 2);
    w.until("the game Allocated", |w| w.state(id) == Some(S::Allocated))
        .await
        .unwrap();
    go(&dir, 3);
    w.until("the reservation", |w| {
        w.last[id]
            .message
            .starts_with("reserved by the game for 30s")
    })
    .await
    .unwrap();
    go(&dir, 4);
    // Counters, lists and reads the game makes while reserved, then the shutdown it asks for.
    wait_for(&dir, "counts.done").await;
    file(&dir, "gameserver.json").await;
    go(&dir, 5);
    w.until("the game Stopped", |w| w.state(id) == Some(S::Stopped))
        .await
        .unwrap();
    assert_eq!(
        w.history[id],
        vec![
            S::Starting,
            S::Running,
            S::Ready,
            S::Allocated,
            S::Stopping,
            S::Stopped
        ],
        "every step of the game in Exile's Watch"
    );
    assert_eq!(
        crate::support::processes_of(id),
        0,
        "nothing of the game is left"
    );
    dir
}

/// The states a game's WatchGameServer saw, in order, repeats folded. A game may open its
/// watch before the spawner has recorded its launch (`Creating`), and its process group gets
/// the stop signal about when `Shutdown` is streamed: those two ends are left out.
fn states_seen(
    watch_log: &str,
    state: impl Fn(&serde_json::Value) -> &serde_json::Value,
) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for line in watch_log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let s = state(&v).as_str().unwrap().to_owned();
        if seen.last() != Some(&s) && s != "Creating" && s != "Shutdown" {
            seen.push(s);
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rest_sdk_game_runs_unchanged_under_curl() {
    if !have("curl", "the Agones REST SDK game") {
        return;
    }
    let command = format!("/bin/sh {}", games_dir().join("rest-game.sh").display());
    let build = agones_build(&command);
    let sb = sandbox(&build, &command).await;
    let admin = sb.admin().await.unwrap();
    let mut w = Watcher::open(&admin).await.unwrap();
    let game = spawn(&admin, &[]).await;
    let dir = walk(&sb, &mut w, &game.id).await;

    let last = &w.last[&game.id];
    assert_eq!(last.labels["agones.dev/sdk-map"], "dust");
    assert_eq!(last.annotations["agones.dev/sdk-round"], "1");
    // GET /gameserver, as Agones' REST SDK answers it.
    let gs: serde_json::Value = serde_json::from_str(&file(&dir, "gameserver.json").await).unwrap();
    assert_eq!(file(&dir, "gameserver.code").await.trim(), "200");
    assert_eq!(gs["object_meta"]["name"], game.id.as_str());
    assert_eq!(gs["object_meta"]["namespace"], "local");
    assert_eq!(gs["object_meta"]["labels"]["agones.dev/sdk-map"], "dust");
    assert_eq!(
        gs["object_meta"]["annotations"]["agones.dev/sdk-round"],
        "1"
    );
    assert_eq!(gs["status"]["state"], "Reserved");
    assert_eq!(gs["status"]["address"], "127.0.0.1");
    assert_eq!(gs["status"]["ports"][0]["name"], "game");
    assert_eq!(gs["status"]["ports"][0]["port"], game.ports[0].port);
    // Counters and lists, as Agones' gateway answers them: `rooms` was 1 of 10 and went up
    // by 1 at step 1, `players` held "bot" with room for 3.
    let calls = [
        (
            "counter-early",
            "200",
            json!({"name": "rooms", "count": "2", "capacity": "10"}),
        ),
        (
            "counter-get",
            "200",
            json!({"name": "rooms", "count": "2", "capacity": "10"}),
        ),
        (
            "counter-add",
            "200",
            json!({"name": "rooms", "count": "4", "capacity": "10"}),
        ),
        (
            "counter-capacity",
            "200",
            json!({"name": "rooms", "count": "4", "capacity": "5"}),
        ),
        (
            "list-capacity",
            "200",
            json!({"name": "players", "capacity": "4", "values": ["bot"]}),
        ),
        (
            "list-add",
            "200",
            json!({"name": "players", "capacity": "4", "values": ["bot", "p1"]}),
        ),
        (
            "list-remove",
            "200",
            json!({"name": "players", "capacity": "4", "values": ["p1"]}),
        ),
        (
            "list-get",
            "200",
            json!({"name": "players", "capacity": "4", "values": ["p1"]}),
        ),
    ];
    for (name, code, answer) in calls {
        assert_eq!(
            beta_call(&dir, name).await,
            (code.to_owned(), answer),
            "{name}"
        );
    }
    // Refusals in gRPC's words: OUT_OF_RANGE, NOT_FOUND, ALREADY_EXISTS.
    for (name, http, grpc) in [
        ("counter-over", "400", 11),
        ("counter-unknown", "404", 5),
        ("list-again", "409", 6),
    ] {
        let (code, body) = beta_call(&dir, name).await;
        assert_eq!(
            (code.as_str(), &body["code"]),
            (http, &json!(grpc)),
            "{name}: {body}"
        );
        assert!(
            !body["message"].as_str().unwrap().is_empty(),
            "{name}: {body}"
        );
    }
    // GetGameServer shows them, last as the game left them.
    assert_eq!(
        gs["status"]["counters"],
        json!({"rooms": {"count": "4", "capacity": "5"}})
    );
    assert_eq!(
        gs["status"]["lists"],
        json!({"players": {"capacity": "4", "values": ["p1"]}})
    );
    assert_eq!(file(&dir, "shutdown.code").await.trim(), "200");
    // Its WatchGameServer saw each change, as `{"result": GameServer}` lines, a counter's
    // too.
    let watch_log = file(&dir, "watch.log").await;
    assert!(
        watch_log.lines().any(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .is_ok_and(|v| v["result"]["status"]["counters"]["rooms"]["count"] == "2")
        }),
        "no WatchGameServer view showed the counter's change:\n{watch_log}"
    );
    let seen = states_seen(&watch_log, |v| &v["result"]["status"]["state"]);
    assert_eq!(
        seen,
        ["Scheduled", "Ready", "Allocated", "Reserved"],
        "the states WatchGameServer streamed"
    );
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agones_game_in_a_fleet_is_allocated_by_a_matchmaker() {
    if !have("curl", "the Agones fleet allocation test") {
        return;
    }
    let command = format!("/bin/sh {}", games_dir().join("rest-game.sh").display());
    let build = agones_build(&command);
    let sb = sandbox(&build, &command).await;
    let admin = sb.admin().await.unwrap();
    let mut w = Watcher::open(&admin).await.unwrap();
    admin
        .fleets
        .clone()
        .create_fleet(pb::CreateFleetRequest {
            name: "arena".into(),
            spec: Some(pb::FleetSpec {
                replicas: 1,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    // The game says Ready through Agones' SDK: only then may the fleet hand it out.
    w.until("the fleet's game Ready", |w| {
        w.last.values().any(|i| i.state() == S::Ready)
    })
    .await
    .unwrap();
    let id = w
        .last
        .values()
        .find(|i| i.state() == S::Ready)
        .unwrap()
        .id
        .clone();
    let allocated = admin
        .allocations
        .clone()
        .allocate(pb::AllocateRequest {
            required: Some(pb::AllocationSelector {
                fleet: "arena".into(),
                ..Default::default()
            }),
            labels: [("match".to_owned(), "m-1".to_owned())].into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(allocated.instance_id, id);
    w.until("the game Allocated", |w| w.state(&id) == Some(S::Allocated))
        .await
        .unwrap();
    // The game learns it through WatchGameServer, as under Agones, with the match's label.
    let watch_log = instance_dir(&sb, &id).join("watch.log");
    eventually(
        "the game's watch to show the allocation",
        Duration::from_secs(30),
        || {
            let log = std::fs::read_to_string(&watch_log).unwrap_or_default();
            async move {
                log.lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .any(|v| {
                        v["result"]["status"]["state"] == "Allocated"
                            && v["result"]["object_meta"]["labels"]["match"] == "m-1"
                    })
                    .then_some(())
            }
        },
    )
    .await
    .unwrap();
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spawn_flag_serves_the_agones_sdk_to_any_build() {
    if !have("curl", "the Agones spawn flag test") {
        return;
    }
    let command = format!("/bin/sh {}", games_dir().join("rest-game.sh").display());
    // A manifest that does not ask for the Agones SDK.
    let build = tempfile::tempdir().unwrap();
    let manifest = format!("[run]\ncommand = {command:?}\n");
    std::fs::write(build.path().join("exile-build.toml"), manifest).unwrap();
    let sb = sandbox(&build, &command).await;
    let admin = sb.admin().await.unwrap();
    let mut w = Watcher::open(&admin).await.unwrap();
    let game = admin
        .instances
        .clone()
        .spawn_instance(pb::SpawnInstanceRequest {
            agones_sdk: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    w.until("the game Ready through the Agones SDK", |w| {
        w.state(&game.id) == Some(S::Ready)
    })
    .await
    .unwrap();
    let (grpc_port, http_port) = agones_ports(&instance_dir(&sb, &game.id)).await;
    assert!(grpc_port > 0 && http_port > 0 && grpc_port != http_port);
    sb.shutdown().await;
}

/// Whether something listens on loopback `port`.
async fn listening(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_spawner_serves_the_same_agones_ports_to_the_adopted_game() {
    if !have("curl", "the Agones re-adoption test") {
        return;
    }
    let command = format!("/bin/sh {}", games_dir().join("rest-game.sh").display());
    let build = agones_build(&command);
    let mut sb = sandbox(&build, &command).await;
    let admin = sb.admin().await.unwrap();
    let mut w = Watcher::open(&admin).await.unwrap();
    let game = spawn(&admin, &[]).await;
    let dir = instance_dir(&sb, &game.id);
    let (grpc_port, http_port) = agones_ports(&dir).await;
    w.until("the game Ready", |w| w.state(&game.id) == Some(S::Ready))
        .await
        .unwrap();
    // Step 1 (its counter up by one, then its label, then its annotation) is over before
    // the spawner goes away.
    go(&dir, 1);
    w.until("the game's annotation", |w| {
        w.last[&game.id]
            .annotations
            .get("agones.dev/sdk-round")
            .map(String::as_str)
            == Some("1")
    })
    .await
    .unwrap();

    sb.stop_spawner(0).await.unwrap();
    let t = Duration::from_secs(30);
    eventually("the Agones ports closed with the spawner", t, || async {
        (!listening(grpc_port).await && !listening(http_port).await).then_some(())
    })
    .await
    .unwrap();
    sb.start_spawner(0).unwrap();
    eventually("the Agones ports open again", t, || async {
        (listening(grpc_port).await && listening(http_port).await).then_some(())
    })
    .await
    .unwrap();
    // The game, never restarted, goes on with the ports it was handed at its start.
    go(&dir, 2);
    w.until("the game Allocated after the restart", |w| {
        w.state(&game.id) == Some(S::Allocated)
    })
    .await
    .unwrap();
    go(&dir, 3);
    w.until("the reservation after the restart", |w| {
        w.last[&game.id]
            .message
            .starts_with("reserved by the game for 30s")
    })
    .await
    .unwrap();
    go(&dir, 4);
    wait_for(&dir, "counts.done").await;
    // The counter kept its step-1 value across the restart: 1 declared, plus 1.
    assert_eq!(beta_call(&dir, "counter-get").await.1["count"], "2");
    // Unknown while the spawner was away; never Starting again.
    let mut seen: Vec<S> = w.history[&game.id]
        .iter()
        .copied()
        .filter(|s| *s != S::Unknown)
        .collect();
    seen.dedup();
    assert_eq!(
        seen,
        vec![S::Starting, S::Running, S::Ready, S::Allocated],
        "the game was adopted, not started again: {:?}",
        w.history[&game.id]
    );
    sb.shutdown().await;
}

/// Whether `tool` runs; when it does not, a loud skip, or under CI a failure (`.ci/run`
/// installs every tool these tests use).
fn have(tool: &str, why: &str) -> bool {
    let ok = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        crate::support::cannot_run(
            why,
            &format!("{tool} is not installed (.ci/run installs it)"),
        );
    }
    ok
}

/// This workspace's target directory, where the tests keep what they install or build.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    )
}

/// Installs the Node.js game's dependencies (`@google-cloud/agones-sdk`) from npm into
/// `target/agones-node` with `npm ci`, exactly as `testkit/agones/package-lock.json` pins
/// them; again only when the lock file changes. `None` (a loud skip) without node and npm.
fn node_sdk() -> Option<PathBuf> {
    let why = "the Agones Node.js SDK game";
    if !have("node", why) || !have("npm", why) {
        return None;
    }
    let target = target_dir().join("agones-node");
    std::fs::create_dir_all(&target).unwrap();
    let lock = std::fs::read(games_dir().join("package-lock.json")).unwrap();
    let installed = target.join("node_modules/.installed-from-lock");
    if std::fs::read(&installed).ok().as_deref() != Some(&lock[..]) {
        for file in ["package.json", "package-lock.json"] {
            std::fs::copy(games_dir().join(file), target.join(file)).unwrap();
        }
        let started = std::time::Instant::now();
        // No install scripts: the SDK and its dependencies are plain JavaScript.
        let out = std::process::Command::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund"])
            .current_dir(&target)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "npm ci (@google-cloud/agones-sdk) failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&installed, &lock).unwrap();
        println!(
            "npm ci for the Node.js Agones game: {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    Some(target.join("node_modules"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_sdk_game_runs_unchanged() {
    let Some(modules) = node_sdk() else {
        return;
    };
    let command = format!("node {}", games_dir().join("node-game.js").display());
    let build = agones_build(&command);
    let sb = sandbox(&build, &command).await;
    let admin = sb.admin().await.unwrap();
    let mut w = Watcher::open(&admin).await.unwrap();
    let node_path = modules.to_string_lossy().into_owned();
    // NODE_PATH is refused for games unless an admin lets it through, as a studio that
    // ships its modules outside the build would.
    crate::support::set_setting(&admin, exile_api::limits::ENV_ALLOWED_SETTING, "NODE_PATH").await;
    let game = spawn(&admin, &[("NODE_PATH", &node_path)]).await;
    let dir = walk(&sb, &mut w, &game.id).await;
    let errors = std::fs::read_to_string(dir.join("errors.log")).unwrap_or_default();
    assert!(errors.is_empty(), "the game reported errors:\n{errors}");

    // getGameServer as the SDK hands it to the game.
    let gs: serde_json::Value = serde_json::from_str(&file(&dir, "gameserver.json").await).unwrap();
    assert_eq!(gs["objectMeta"]["name"], game.id.as_str());
    assert_eq!(gs["status"]["state"], "Reserved");
    assert!(
        gs["objectMeta"]["labelsMap"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["agones.dev/sdk-map", "dust"])),
        "{gs}"
    );
    // Counters and lists through the SDK's beta (11: OUT_OF_RANGE).
    assert_eq!(
        file(&dir, "counts.log").await,
        "start 1\nmoved 3\npast capacity 11\nlist [\"bot\",\"n1\"]\n"
    );
    let seen = states_seen(&file(&dir, "watch.log").await, |v| &v["state"]);
    assert_eq!(
        seen,
        ["Scheduled", "Ready", "Allocated", "Reserved"],
        "the states WatchGameServer streamed"
    );
    sb.shutdown().await;
}

/// A raw HTTP/1.1 request to the instance's Agones HTTP port: the status code and body.
async fn http(port: u16, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (code, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_instances_own_processes_reach_its_agones_ports() {
    if !have("curl", "the Agones port isolation test") {
        return;
    }
    let command = format!("/bin/sh {}", games_dir().join("rest-game.sh").display());
    let build = agones_build(&command);
    let sb = sandbox(&build, &command).await;
    let admin = sb.admin().await.unwrap();
    let mut w = Watcher::open(&admin).await.unwrap();
    let a = spawn(&admin, &[]).await;
    let a_dir = instance_dir(&sb, &a.id);
    let (grpc_port, http_port) = agones_ports(&a_dir).await;
    w.until("A Ready", |w| w.state(&a.id) == Some(S::Ready))
        .await
        .unwrap();

    // This test process is not one of A's.
    let (code, body) = http(http_port, "POST", "/allocate").await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body.contains("only they may use its Agones SDK port"),
        "{body}"
    );
    let mut client = exile_api::agones::sdk_client::SdkClient::new(
        exile_testkit::connect(([127, 0, 0, 1], grpc_port).into())
            .await
            .unwrap(),
    );
    let refused = client
        .allocate(exile_api::agones::Empty {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    // Nor is instance B's game, calling A's port with curl.
    let port = http_port.to_string();
    let b = spawn(&admin, &[("OTHER_AGONES_HTTP_PORT", &port)]).await;
    let b_dir = instance_dir(&sb, &b.id);
    assert_eq!(file(&b_dir, "other.code").await.trim(), "403");
    assert!(file(&b_dir, "other.json").await.contains("\"code\":7"));
    // B's own port works for B.
    w.until("B Ready", |w| w.state(&b.id) == Some(S::Ready))
        .await
        .unwrap();
    // Nor any other local process.
    let other = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-d",
            "{}",
        ])
        .arg(format!("http://127.0.0.1:{http_port}/ready"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&other.stdout), "403");
    // A was never allocated by any of them.
    assert_eq!(w.state(&a.id), Some(S::Ready));
    // Nor its counters and lists.
    let mut beta = exile_api::agones::beta::sdk_client::SdkClient::new(
        exile_testkit::connect(([127, 0, 0, 1], grpc_port).into())
            .await
            .unwrap(),
    );
    let refused = beta
        .get_counter(exile_api::agones::beta::GetCounterRequest {
            name: "rooms".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let (code, body) = http(http_port, "GET", "/v1beta1/counters/rooms").await;
    assert_eq!(code, 403, "{body}");
    // A service Exile does not serve answers UNIMPLEMENTED with a sentence, whoever asks.
    let channel = exile_testkit::connect(([127, 0, 0, 1], grpc_port).into())
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    );
    let answer: Result<tonic::Response<exile_api::agones::Empty>, _> = grpc
        .unary(
            tonic::Request::new(exile_api::agones::Empty {}),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await;
    let status = answer.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    assert!(
        status.message().contains("agones.dev.sdk.beta.SDK"),
        "{status:?}"
    );
    // Older Agones SDKs call counters on the alpha service: told where they went.
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/agones.dev.sdk.alpha.SDK/GetCounter");
    let answer: Result<tonic::Response<exile_api::agones::Empty>, _> = grpc
        .unary(
            tonic::Request::new(exile_api::agones::Empty {}),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await;
    let status = answer.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    assert!(
        status.message().contains("update the game's Agones SDK"),
        "{status:?}"
    );
    sb.shutdown().await;
}

/// Builds the Rust game (`testkit/agones-rust-game`, on the `agones` crate from crates.io,
/// whose build script needs `protoc`) into `target/agones-rust-game` and returns the binary;
/// prints how long the build took. `None` (a loud skip) without protoc. `cargo xtask test`
/// builds it the same way before the tests start, so this finds it done.
fn rust_game() -> Option<PathBuf> {
    if !have(
        "protoc",
        "the Agones Rust SDK game (its `agones` crate compiles protos with protoc)",
    ) {
        return None;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = root.join("agones-rust-game/Cargo.toml");
    let target = target_dir().join("agones-rust-game");
    let started = std::time::Instant::now();
    // As `cargo xtask test` builds it beforehand, so this finds that build done.
    let out = exile_api::cargo_env::nested(&mut std::process::Command::new(env!("CARGO")))
        .args(["build", "--locked", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        // The workspace's compile wrappers (CI's clippy-driver) are not for this project.
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CLIPPY_ARGS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Rust Agones game did not build:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!(
        "agones-rust-game build (agones crate, its own lock): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Some(target.join("debug/agones-rust-game"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_sdk_game_runs_unchanged() {
    let Some(game) = rust_game() else {
        return;
    };
    let command = game.display().to_string();
    let build = agones_build(&command);
    let sb = sandbox(&build, &command).await;
    let admin = sb.admin().await.unwrap();
    let mut w = Watcher::open(&admin).await.unwrap();
    let game = spawn(&admin, &[]).await;
    let dir = walk(&sb, &mut w, &game.id).await;
    let errors = std::fs::read_to_string(dir.join("errors.log")).unwrap_or_default();
    assert!(errors.is_empty(), "the game reported errors:\n{errors}");

    let gs: serde_json::Value = serde_json::from_str(&file(&dir, "gameserver.json").await).unwrap();
    assert_eq!(gs["name"], game.id.as_str());
    assert_eq!(gs["state"], "Reserved");
    // Counters and lists through the crate's beta(): 11 OUT_OF_RANGE, 5 NOT_FOUND, 6
    // ALREADY_EXISTS; GetGameServer shows where they ended.
    assert_eq!(
        file(&dir, "counts.log").await,
        [
            "start 1",
            "moved 2",
            "set 5/5",
            "past capacity 11",
            "below zero 11",
            "unknown 5",
            "again 6",
            "gone 5",
            "list 1/4 p1=true bot=false [\"p1\"]",
            "gameserver rooms 5/5 players 4/[\"p1\"]",
            "",
        ]
        .join("\n")
    );
    let watch_log = file(&dir, "watch.log").await;
    let seen = states_seen(&watch_log, |v| &v["state"]);
    assert_eq!(
        seen,
        ["Scheduled", "Ready", "Allocated", "Reserved"],
        "the states WatchGameServer streamed"
    );
    assert!(watch_log.contains("\"map\":\"dust\""), "{watch_log}");
    sb.shutdown().await;
}
