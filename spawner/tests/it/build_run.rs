//! Running instances of a build directory with that build's manifest: its own command, named
//! ports, environment, stop signal and grace; several builds side by side, each instance
//! keeping its build across restarts of the game and of the spawner.

use std::path::{Path, PathBuf};
use std::time::Duration;

use exile_api::build::Manifest;
use exile_api::v1::{self, CommandErrorKind};
use exile_spawner::state::StateFile;
use exile_spawner::{BuildToRun, InstanceRecord, Manager, OpContext, SpawnSpec, State};

use crate::support::*;

fn ctx() -> OpContext {
    OpContext::default()
}

/// A build directory: the demo game copied in, `manifest` as its `exile-build.toml`, and
/// `files` beside them.
fn build_dir(manifest: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // Copied by a child process: a file this (multi-threaded) test process had open for
    // writing could be inherited by a game forked meanwhile and make its exec fail (ETXTBSY).
    let status = std::process::Command::new("cp")
        .arg(demo_game())
        .arg(dir.path().join("exile-demo-game"))
        .status()
        .unwrap();
    assert!(status.success(), "cp of the demo game failed");
    std::fs::write(dir.path().join("exile-build.toml"), manifest).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// The build in `dir` as the install side hands it over: its directory and parsed manifest.
fn build(name: &str, version: &str, dir: &Path) -> BuildToRun {
    let text = std::fs::read_to_string(dir.join("exile-build.toml")).unwrap();
    BuildToRun {
        name: name.into(),
        version: version.into(),
        dir: dir.to_owned(),
        manifest: Manifest::parse(&text).unwrap(),
    }
}

fn spawn_of(id: &str, build: &BuildToRun) -> SpawnSpec {
    SpawnSpec {
        id: id.into(),
        build: Some(build.clone()),
        ..Default::default()
    }
}

fn env_of(pid: u32, name: &str) -> Option<String> {
    environ(pid)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// `path` with every link resolved, as `/proc` shows it.
fn canon(path: impl AsRef<Path>) -> PathBuf {
    path.as_ref().canonicalize().unwrap()
}

/// The program process `pid` runs.
fn exe(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).unwrap()
}

/// Waits until instance `id` runs a process other than `old_pid`.
async fn wait_relaunched(manager: &Manager, id: &str, old_pid: Option<u32>) -> InstanceRecord {
    wait_for(manager, id, "running again", |r| {
        r.state == State::Running && r.pid.is_some() && r.pid != old_pid
    })
    .await
}

const TWO_PORTS: &str = r#"
[run]
command = "./exile-demo-game --port {port:game} --max-players 3"
[env]
GAME_MODE = "ctf"
[[ports]]
name = "game"
protocol = "tcp+udp"
[[ports]]
name = "query"
protocol = "tcp"
"#;

#[tokio::test]
async fn a_build_runs_with_its_command_named_ports_and_environment() {
    let data = tempfile::tempdir().unwrap();
    let dir = build_dir(TWO_PORTS, &[]);
    let arena = build("arena", "1.0", dir.path());
    let manager = Manager::open(config(data.path(), 5, free_port_range(6)))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let a = manager.spawn(spawn_of("a", &arena), ctx()).await.unwrap();
    reaper.watch(&a);
    let mut b = spawn_of("b", &arena);
    b.env.insert("GAME_MODE".into(), "ffa".into());
    b.env.insert("GREETING".into(), "hi".into());
    let b = manager.spawn(b, ctx()).await.unwrap();
    reaper.watch(&b);

    let mut all = Vec::new();
    for rec in [&a, &b] {
        assert_eq!(rec.state, State::Running, "{}", rec.message);
        let names: Vec<_> = rec.ports.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["game", "query"]);
        all.extend(rec.ports.iter().map(|p| p.port));
        let pid = rec.pid.unwrap();
        // The build's own program, run from its directory, in the instance's data directory.
        assert_eq!(exe(pid), canon(dir.path().join("exile-demo-game")));
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap();
        let game_dir = data.path().join("instances").join(&rec.id).join("data");
        assert_eq!(cwd, canon(&game_dir));
        assert_eq!(
            env_of(pid, "EXILE_DATA_DIR"),
            Some(canon(&game_dir).display().to_string())
        );
        let game = rec.port_named("game").unwrap();
        let query = rec.port_named("query").unwrap();
        assert_eq!(env_of(pid, "EXILE_PORT"), Some(game.to_string()));
        assert_eq!(env_of(pid, "EXILE_PORT_GAME"), Some(game.to_string()));
        assert_eq!(env_of(pid, "EXILE_PORT_QUERY"), Some(query.to_string()));
        // `{port:game}` reached the command line: the game answers there.
        let status = udp_status(game);
        assert_eq!(status["instance"], rec.id.as_str());
        assert_eq!(status["max_players"], 3);
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 4, "ports handed out twice: {a:?} {b:?}");
    // The manifest's environment, and the spawn's over it.
    assert_eq!(env_of(a.pid.unwrap(), "GAME_MODE").as_deref(), Some("ctf"));
    assert_eq!(env_of(b.pid.unwrap(), "GAME_MODE").as_deref(), Some("ffa"));
    assert_eq!(env_of(b.pid.unwrap(), "GREETING").as_deref(), Some("hi"));

    let status = manager.get("a").await.unwrap().to_status();
    assert_eq!(status.build_name, "arena");
    assert_eq!(status.build_version, "1.0");
    let ports: Vec<_> = status
        .ports
        .iter()
        .map(|p| (p.name.as_str(), p.port, p.protocol))
        .collect();
    assert_eq!(
        ports,
        [
            (
                "game",
                u32::from(a.port_named("game").unwrap()),
                v1::Protocol::TcpUdp as i32
            ),
            (
                "query",
                u32::from(a.port_named("query").unwrap()),
                v1::Protocol::Tcp as i32
            ),
        ]
    );
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn each_port_is_checked_for_its_own_protocols_and_all_are_released_on_remove() {
    let data = tempfile::tempdir().unwrap();
    let range = free_port_range(3);
    // Another program holds UDP on the first port: a TCP-only port may still take it.
    let squatter = std::net::UdpSocket::bind(("0.0.0.0", *range.start())).unwrap();
    let dir = build_dir(
        r#"
[run]
command = "./exile-demo-game --port {port:game}"
[[ports]]
name = "query"
protocol = "tcp"
[[ports]]
name = "game"
"#,
        &[],
    );
    let b = build("qg", "1", dir.path());
    let manager = Manager::open(config(data.path(), 5, range.clone()))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let x = manager.spawn(spawn_of("x", &b), ctx()).await.unwrap();
    reaper.watch(&x);
    assert_eq!(x.port_named("query"), Some(*range.start()));
    assert_ne!(x.port_named("game"), Some(*range.start()));

    // One port of the range is left (a tcp+udp one at that): the next instance, needing two,
    // is refused with a sentence naming what it lacks, and leaves nothing behind.
    let err = manager.spawn(spawn_of("y", &b), ctx()).await.unwrap_err();
    assert_eq!(err.kind(), CommandErrorKind::FailedPrecondition);
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "no free port left in {}-{}",
            range.start(),
            range.end()
        )) && text.contains("of instance y (it needs 2 ports and only 1 is free)"),
        "{text}"
    );
    assert!(manager.get("y").await.is_err());

    // Removing x releases both of its ports.
    manager.remove("x", ctx()).await.unwrap();
    drop(squatter);
    let y = manager.spawn(spawn_of("y", &b), ctx()).await.unwrap();
    reaper.watch(&y);
    assert_eq!(y.state, State::Running, "{}", y.message);
    manager.shutdown(true).await.unwrap();
}

const RESTARTING: &str = r#"
[run]
command = "./exile-demo-game --port {port}"
[restart]
policy = "on-failure"
backoff_ms = 50
backoff_max_ms = 100
"#;

#[tokio::test]
async fn two_versions_run_side_by_side_and_a_restart_keeps_each_its_build() {
    let data = tempfile::tempdir().unwrap();
    let v1_dir = build_dir(RESTARTING, &[]);
    let v2_dir = build_dir(RESTARTING, &[]);
    let v1 = build("arena", "1.0", v1_dir.path());
    let v2 = build("arena", "2.0", v2_dir.path());
    let manager = Manager::open(config(data.path(), 5, free_port_range(4)))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let old = manager.spawn(spawn_of("old", &v1), ctx()).await.unwrap();
    let new = manager.spawn(spawn_of("new", &v2), ctx()).await.unwrap();
    reaper.watch(&old);
    reaper.watch(&new);
    assert_eq!(
        exe(old.pid.unwrap()),
        canon(v1_dir.path().join("exile-demo-game"))
    );
    assert_eq!(
        exe(new.pid.unwrap()),
        canon(v2_dir.path().join("exile-demo-game"))
    );
    assert_eq!(old.build_version, "1.0");
    assert_eq!(new.build_version, "2.0");
    assert_ne!(old.port(), new.port());

    // The game of `old` dies: the manifest's restart policy brings the same build back.
    kill9(old.pid.unwrap());
    let again = wait_relaunched(&manager, "old", old.pid).await;
    reaper.watch(&again);
    assert_eq!(again.restart_count, 1, "{}", again.message);
    assert_eq!(
        exe(again.pid.unwrap()),
        canon(v1_dir.path().join("exile-demo-game"))
    );
    assert_eq!(again.build_version, "1.0");
    assert_eq!(again.build, old.build);
    // An operator's restart too.
    let restarted = manager.restart("old", None, ctx()).await.unwrap();
    reaper.watch(&restarted);
    assert_eq!(
        exe(restarted.pid.unwrap()),
        canon(v1_dir.path().join("exile-demo-game"))
    );
    assert_eq!(restarted.build, old.build);
    // The other instance was never touched.
    assert_eq!(manager.get("new").await.unwrap().pid, new.pid);
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn a_spawner_restart_readopts_each_instance_with_its_build() {
    let data = tempfile::tempdir().unwrap();
    let v1_dir = build_dir(RESTARTING, &[]);
    let v2_dir = build_dir(TWO_PORTS, &[]);
    let v1 = build("arena", "1.0", v1_dir.path());
    let v2 = build("arena", "2.0", v2_dir.path());
    let ports = free_port_range(5);
    let first = Manager::open(config(data.path(), 5, ports.clone()))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let a = first.spawn(spawn_of("a", &v1), ctx()).await.unwrap();
    let b = first.spawn(spawn_of("b", &v2), ctx()).await.unwrap();
    reaper.watch(&a);
    reaper.watch(&b);
    first.shutdown(false).await.unwrap();

    // The next start has no host build at all: the instances carry their own.
    let mut cfg = config(data.path(), 5, ports);
    cfg.template = None;
    let second = Manager::open(cfg).await.unwrap();
    for old in [&a, &b] {
        let now = second.get(&old.id).await.unwrap();
        assert_eq!(now.state, State::Running, "{}", now.message);
        assert_eq!(now.pid, old.pid, "{} was launched again", old.id);
        assert_eq!(now.build, old.build);
        assert_eq!(now.build_version, old.build_version);
        assert_eq!(now.ports, old.ports);
    }
    assert_eq!(
        second.get("b").await.unwrap().to_status().build_name,
        "arena"
    );
    // A crash of the adopted game restarts its own build.
    kill9(a.pid.unwrap());
    let again = wait_relaunched(&second, "a", a.pid).await;
    reaper.watch(&again);
    assert_eq!(
        exe(again.pid.unwrap()),
        canon(v1_dir.path().join("exile-demo-game"))
    );
    assert_eq!(again.port(), a.port(), "the old port is kept while free");
    // A stop and a start of the adopted two-port instance keep its build and ports.
    second.stop("b", None, ctx()).await.unwrap();
    let started = second.start("b", ctx()).await.unwrap();
    reaper.watch(&started);
    assert_eq!(
        exe(started.pid.unwrap()),
        canon(v2_dir.path().join("exile-demo-game"))
    );
    assert_eq!(started.ports, b.ports);
    second.shutdown(true).await.unwrap();
}

/// A game that reports the signal that stopped it in `got-signal` (in its instance directory)
/// and says where it runs from.
const SIGNAL_GAME: &str = r#"
trap 'echo INT > got-signal; exit 0' INT
trap 'echo TERM > got-signal; exit 0' TERM
echo "build=$1 cwd=$(pwd) ready"
while :; do sleep 1; done
"#;

/// A game that ignores the stop signal, so only SIGKILL ends it.
const STUBBORN_GAME: &str = r#"
trap '' INT
echo ready
while :; do sleep 1; done
"#;

#[tokio::test]
async fn the_manifest_stop_signal_and_grace_are_what_the_game_gets() {
    let data = tempfile::tempdir().unwrap();
    let dir = build_dir(
        r#"
[run]
command = "/bin/sh {build_dir}/game.sh {build_dir}"
[stop]
signal = "SIGINT"
grace_secs = 8
"#,
        &[("game.sh", SIGNAL_GAME)],
    );
    let stubborn_dir = build_dir(
        r#"
[run]
command = "/bin/sh {build_dir}/game.sh"
[stop]
signal = "SIGINT"
grace_secs = 1
"#,
        &[("game.sh", STUBBORN_GAME)],
    );
    let polite = build("polite", "1", dir.path());
    let stubborn = build("stubborn", "1", stubborn_dir.path());
    // The spawner's own grace is longer than the stubborn build's.
    let manager = Manager::open(config(data.path(), 5, free_port_range(4)))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let rec = manager.spawn(spawn_of("p", &polite), ctx()).await.unwrap();
    reaper.watch(&rec);
    let instance_dir = data.path().join("instances/p");
    let log = instance_dir.join("logs/output.log");
    eventually("the game started", || read(&log).contains("ready")).await;
    assert!(
        read(&log).contains(&format!(
            "build={} cwd={} ready",
            dir.path().display(),
            canon(instance_dir.join("data")).display()
        )),
        "{}",
        read(&log)
    );
    let stopped = manager.stop("p", None, ctx()).await.unwrap();
    assert_eq!(stopped.state, State::Stopped);
    assert_eq!(stopped.message, "stopped");
    assert_eq!(stopped.exit_code, Some(0));
    assert_eq!(read(instance_dir.join("data/got-signal")).trim(), "INT");
    assert!(!group_alive(rec.pid.unwrap()));

    // The manifest's grace applies to a stop that names none; a stop's own grace still wins.
    for (id, grace, expect) in [
        ("s1", None, "stopped with SIGKILL after the 1s grace period"),
        (
            "s2",
            Some(Duration::from_millis(300)),
            "stopped with SIGKILL after the 0.3s grace period",
        ),
    ] {
        let rec = manager.spawn(spawn_of(id, &stubborn), ctx()).await.unwrap();
        reaper.watch(&rec);
        let log = data.path().join(format!("instances/{id}/logs/output.log"));
        eventually("the game started", || read(&log).contains("ready")).await;
        let stopped = manager.stop(id, grace, ctx()).await.unwrap();
        assert_eq!(stopped.message, expect, "{id}");
        assert!(!group_alive(rec.pid.unwrap()));
    }
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn a_spawner_without_a_host_build_runs_only_uploaded_builds() {
    let data = tempfile::tempdir().unwrap();
    let mut cfg = config(data.path(), 5, free_port_range(4));
    cfg.template = None;
    let manager = Manager::open(cfg).await.unwrap();
    let err = manager
        .spawn(
            SpawnSpec {
                id: "host".into(),
                ..Default::default()
            },
            ctx(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), CommandErrorKind::FailedPrecondition);
    assert_eq!(
        err.to_string(),
        "spawner test-spawner has no host build (--build-command); name an uploaded build"
    );
    // A build without run.command has nothing to run here either.
    let bare_dir = build_dir("", &[]);
    let err = manager
        .spawn(
            spawn_of("bare", &build("bare", "1", bare_dir.path())),
            ctx(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), CommandErrorKind::FailedPrecondition);
    assert!(
        err.to_string()
            .starts_with("build bare@1 has no run.command in its exile-build.toml"),
        "{err}"
    );
    // A build that is not on disk is refused, not run from elsewhere.
    let mut gone = build("arena", "1.0", build_dir(TWO_PORTS, &[]).path());
    gone.dir = data.path().join("builds/arena/1.0");
    let err = manager
        .spawn(spawn_of("gone", &gone), ctx())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), CommandErrorKind::FailedPrecondition);
    assert!(err.to_string().contains("not installed"), "{err}");
    assert!(manager.list().await.unwrap().is_empty());
    // One with its own command runs.
    let dir = build_dir(TWO_PORTS, &[]);
    let rec = manager
        .spawn(spawn_of("up", &build("arena", "1.0", dir.path())), ctx())
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    reaper.watch(&rec);
    assert_eq!(rec.state, State::Running, "{}", rec.message);
    manager.shutdown(true).await.unwrap();
}

#[tokio::test]
async fn a_state_file_of_the_old_shape_loads_and_behaves_as_before() {
    let data = tempfile::tempdir().unwrap();
    let ports = free_port_range(4);
    let first = Manager::open(config(data.path(), 5, ports.clone()))
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    let host = |id: &str| SpawnSpec {
        id: id.into(),
        ..Default::default()
    };
    let a = first.spawn(host("a"), ctx()).await.unwrap();
    let b = first.spawn(host("b"), ctx()).await.unwrap();
    reaper.watch(&a);
    reaper.watch(&b);
    first.stop("b", None, ctx()).await.unwrap();
    first.shutdown(false).await.unwrap();

    // Rewrite state.json the way spawners before uploaded builds wrote it: one `port`, no
    // build and no named ports.
    let path = StateFile::path(data.path());
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for rec in json["instances"].as_array_mut().unwrap() {
        let rec = rec.as_object_mut().unwrap();
        let port = rec["ports"][0]["port"].clone();
        rec.remove("ports");
        rec.remove("build");
        rec.insert("port".into(), port);
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();
    let loaded = StateFile::load(data.path()).unwrap();
    assert_eq!(loaded.instances[0].build, None);
    assert_eq!(loaded.instances[0].port(), a.port());

    let second = Manager::open(config(data.path(), 5, ports)).await.unwrap();
    let now = second.get("a").await.unwrap();
    assert_eq!(now.state, State::Running, "{}", now.message);
    assert_eq!(now.pid, a.pid, "the running game was not adopted");
    assert_eq!(now.port(), a.port());
    let status = now.to_status();
    assert_eq!(status.build_name, "");
    assert_eq!(status.build_version, "v1");
    assert_eq!(status.ports.len(), 1);
    assert_eq!(status.ports[0].name, "game");
    assert_eq!(status.ports[0].protocol, v1::Protocol::TcpUdp as i32);
    // A stop is SIGTERM as before (the demo game exits 0 on it).
    let stopped = second.stop("a", None, ctx()).await.unwrap();
    assert_eq!(stopped.exit_code, Some(0), "{}", stopped.message);
    // A stopped one starts the host build on its old port.
    let started = second.start("b", ctx()).await.unwrap();
    reaper.watch(&started);
    assert_eq!(started.port(), b.port());
    assert_eq!(exe(started.pid.unwrap()), canon(demo_game()));
    assert_eq!(udp_status(started.port().unwrap())["instance"], "b");
    second.shutdown(true).await.unwrap();

    // Written back in the new shape.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let b_json = &json["instances"][1];
    assert_eq!(b_json["id"], "b");
    assert!(b_json.get("port").is_none(), "{b_json}");
    assert_eq!(b_json["ports"][0]["name"], "game");
    assert_eq!(b_json["ports"][0]["port"], u64::from(b.port().unwrap()));
}

#[tokio::test]
async fn the_host_build_manifest_sets_command_ports_and_env_of_host_spawns() {
    let data = tempfile::tempdir().unwrap();
    let dir = build_dir(TWO_PORTS, &[]);
    let ports = free_port_range(4);
    let mut config = exile_spawner::Config::with_defaults("http://127.0.0.1:1", data.path());
    config.build_dir = dir.path().to_owned();
    // The manifest's run.command wins over the flag's, which would fail at once.
    config.build_command = Some("/bin/false".into());
    config.port_range = format!("{}-{}", ports.start(), ports.end());
    config.supervisor_bin = Some(supervisor_bin());
    let manager = Manager::open(exile_spawner::ManagerConfig::from_config(&config).unwrap())
        .await
        .unwrap();
    let rec = manager
        .spawn(
            SpawnSpec {
                id: "h".into(),
                ..Default::default()
            },
            ctx(),
        )
        .await
        .unwrap();
    let mut reaper = Reaper::default();
    reaper.watch(&rec);
    assert_eq!(rec.state, State::Running, "{}", rec.message);
    let pid = rec.pid.unwrap();
    assert_eq!(exe(pid), canon(dir.path().join("exile-demo-game")));
    assert_eq!(rec.ports.len(), 2);
    assert_eq!(env_of(pid, "GAME_MODE").as_deref(), Some("ctf"));
    let status = rec.to_status();
    assert_eq!(status.build_name, "");
    assert_eq!(status.build_version, "local");
    assert_eq!(udp_status(rec.port_named("game").unwrap())["instance"], "h");
    manager.shutdown(true).await.unwrap();
}
