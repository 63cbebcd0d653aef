//! Game isolation, as attacks: a game that tries to read the spawner's credential, another
//! game's environment or files, or to reach another game's supervisor socket fails; a game
//! carries none of the spawner's environment; a spawn, fleet or build that sets a loader or
//! runtime-hook variable is refused. Uid switching needs root: CI runs as root, elsewhere
//! the uid test skips loudly.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use exile_api::v1 as pb;
use exile_testkit::{Clients, Sandbox, SandboxOptions, eventually};
use futures::StreamExt;

use crate::support::{cannot_run, set_setting, spawn};

/// A "game" that runs each console line in a shell, between markers the test finds in its
/// log: what an attacker who took over a game server can do.
const SHELL_GAME: &str = r#"/bin/sh -c 'while IFS= read -r line; do sh -c "$line" 2>&1; done'"#;

/// The uids the sandbox's spawner hands out.
const UIDS: (u32, u32) = (63_000, 63_099);

/// The instance's whole log so far.
async fn log_of(c: &Clients, id: &str) -> String {
    let mut stream = c
        .instances
        .clone()
        .stream_logs(pb::StreamLogsRequest {
            source: Some(pb::stream_logs_request::Source::Id(id.into())),
            tail_lines: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap().data);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Runs `cmd` in game `id` through its console; what it printed (stdout and stderr).
async fn run(c: &Clients, id: &str, n: u32, cmd: &str) -> String {
    let (begin, end) = (format!("<<{n}>>"), format!("<</{n}>>"));
    c.instances
        .clone()
        .send_console_command(pb::SendConsoleCommandRequest {
            id: id.into(),
            line: format!("echo '{begin}'; {cmd}; echo '{end}'"),
        })
        .await
        .unwrap();
    eventually(
        &format!("the output of `{cmd}`"),
        Duration::from_secs(20),
        || async {
            let log = log_of(c, id).await;
            let from = log.find(&format!("{begin}\n"))? + begin.len() + 1;
            let to = from + log[from..].find(&format!("{end}\n"))?;
            Some(log[from..to].to_owned())
        },
    )
    .await
    .unwrap()
}

async fn running(c: &Clients, id: &str) -> pb::Instance {
    eventually("the game running", Duration::from_secs(20), || async {
        let i = c
            .instances
            .clone()
            .get_instance(pb::GetInstanceRequest { id: id.into() })
            .await
            .ok()?
            .into_inner()
            .instance?;
        (i.state() == pb::InstanceState::Running && i.pid != 0).then_some(i)
    })
    .await
    .unwrap()
}

/// The uid of process `pid`, from its status.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_game_cannot_reach_the_spawner_or_another_game() {
    if !nix::unistd::geteuid().is_root() {
        cannot_run(
            "game isolation test",
            "switching a game's user needs root (CI runs as root)",
        );
        return;
    }
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        build_command: Some(SHELL_GAME.into()),
        spawner_args: vec![format!("--run-as-uids={}-{}", UIDS.0, UIDS.1)],
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let spawner = sb.spawner_ids().await.unwrap().remove(0);
    let a = spawn(&admin, &spawner).await.unwrap();
    let b = spawn(&admin, &spawner).await.unwrap();
    let a = running(&admin, &a.id).await;
    let b = running(&admin, &b.id).await;
    let root = sb.spawner_data_dir(0).unwrap();
    let layout = exile_spawner::layout::Layout::new(&root);
    let (a_dir, b_dir) = (layout.instance(&a.id), layout.instance(&b.id));

    // Each game runs as a user of its own from the range, not as the spawner's.
    let (ua, ub) = (uid_of(a.pid), uid_of(b.pid));
    assert_ne!(ua, ub);
    for u in [ua, ub] {
        assert!((UIDS.0..=UIDS.1).contains(&u), "uid {u}");
    }
    assert_eq!(run(&admin, &a.id, 1, "id -u").await.trim(), ua.to_string());
    // Its data directory is its own, 0700; its own files it may write.
    let data = std::fs::metadata(a_dir.data()).unwrap();
    assert_eq!((data.uid(), data.mode() & 0o777), (ua, 0o700));
    assert_eq!(
        run(&admin, &a.id, 2, "echo saved > own.txt && cat own.txt").await,
        "saved\n"
    );

    // The spawner's credential: there, and out of reach.
    let credential = layout.credential_file();
    assert!(credential.is_file());
    let out = run(&admin, &a.id, 3, &format!("cat {}", credential.display())).await;
    assert!(out.contains("Permission denied"), "{out}");
    // The other game's environment (its SDK token among it) and files.
    let out = run(&admin, &a.id, 4, &format!("cat /proc/{}/environ", b.pid)).await;
    assert!(out.contains("Permission denied"), "{out}");
    let out = run(&admin, &a.id, 5, &format!("ls {}", b_dir.data().display())).await;
    assert!(out.contains("Permission denied"), "{out}");
    // The other game's supervisor socket: connecting needs write access to it, which an
    // open for writing tests too (a reachable socket answers "No such device or address").
    // In a subshell: a failed redirection ends a POSIX shell.
    let socket = b_dir.socket();
    let meta = std::fs::metadata(&socket).unwrap();
    assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (0, 0o600));
    let out = run(&admin, &a.id, 6, &format!("(: > {})", socket.display())).await;
    assert!(out.contains("Permission denied"), "{out}");

    // Nothing of the spawner's environment: this process (where the spawner runs) has
    // cargo's variables, the game none of them; HOME is the game's data directory.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let env = run(&admin, &a.id, 7, "env").await;
    assert!(!env.contains("CARGO_"), "{env}");
    assert!(
        env.lines()
            .any(|l| l == format!("HOME={}", a_dir.data().display())),
        "{env}"
    );
    assert!(
        env.lines()
            .any(|l| l == format!("EXILE_INSTANCE_ID={}", a.id))
    );
    // No new privileges through setuid programs, no core dumps, the open-file limit.
    let out = run(
        &admin,
        &a.id,
        8,
        "grep NoNewPrivs /proc/self/status; ulimit -c; ulimit -n",
    )
    .await;
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let open_files = 65_536.min(hard).to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["NoNewPrivs:\t1", "0", open_files.as_str()], "{out}");
    sb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_and_runtime_hook_variables_are_refused_unless_an_admin_allows_them() {
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let spawner = sb.spawner_ids().await.unwrap().remove(0);
    let with_env = |name: &str| pb::SpawnInstanceRequest {
        spawner_id: spawner.clone(),
        env: [(name.to_owned(), "/tmp/evil.so".to_owned())].into(),
        ..Default::default()
    };
    for name in [
        "LD_PRELOAD",
        "BASH_ENV",
        "NODE_OPTIONS",
        "PYTHONPATH",
        "PATH",
    ] {
        let e = admin
            .instances
            .clone()
            .spawn_instance(with_env(name))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{name}: {e:?}");
        assert!(
            e.message().contains(name) && e.message().contains("security.env_allowed"),
            "{}",
            e.message()
        );
    }
    // A fleet's template is held to the same policy.
    let e = admin
        .fleets
        .clone()
        .create_fleet(pb::CreateFleetRequest {
            name: "hooked".into(),
            spec: Some(pb::FleetSpec {
                replicas: 0,
                env: [("JAVA_TOOL_OPTIONS".to_owned(), "-javaagent:x".to_owned())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("JAVA_TOOL_OPTIONS"), "{}", e.message());

    // An admin allows one name: that one passes and reaches the game, the rest stay refused.
    set_setting(&admin, "security.env_allowed", "LD_BIND_NOW").await;
    let mut req = with_env("LD_BIND_NOW");
    req.env.insert("LD_BIND_NOW".into(), "1".into());
    let i = admin
        .instances
        .clone()
        .spawn_instance(req)
        .await
        .unwrap()
        .into_inner()
        .instance
        .unwrap();
    let i = eventually("the game up", Duration::from_secs(20), || async {
        let l = sb.instances().await.ok()?;
        l.into_iter()
            .find(|x| x.id == i.id && x.pid != 0 && crate::support::is_up(x.state()))
    })
    .await
    .unwrap();
    let env = exile_testkit::procstat::environ(i.pid).unwrap();
    assert!(env.iter().any(|v| v == "LD_BIND_NOW=1"), "{env:?}");
    let e = admin
        .instances
        .clone()
        .spawn_instance(with_env("LD_PRELOAD"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    sb.shutdown().await;
}

/// Memory and CPU caps from a build's manifest, through cgroups v2. Where the host can give
/// a test a cgroup with both controllers (root, a cgroup v2 host), the game and what it forks
/// run in the instance's cgroup with the caps written there, and the cgroup goes with the
/// instance. Elsewhere (cgroup v1 or hybrid hosts, no delegation) the game runs uncapped and
/// its instance says why. Either way the test prints which path it took.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_cpu_caps_bind_the_game_or_the_instance_says_they_are_unsupported() {
    use exile_spawner::cgroup;
    let build = tempfile::tempdir().unwrap();
    std::fs::write(
        build.path().join("exile-build.toml"),
        "[limits]\nmemory = \"64MiB\"\ncpu = 0.5\n",
    )
    .unwrap();
    // A cgroup of the test's own under the top of a cgroup v2 hierarchy that hands memory
    // and cpu to its children: only root on a cgroup v2 host may make one.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let top = cgroup::locate_own("0::/\n", &mountinfo).ok();
    let enabled = |dir: &std::path::Path| {
        std::fs::read_to_string(dir.join("cgroup.subtree_control")).is_ok_and(|s| {
            cgroup::CONTROLLERS
                .iter()
                .all(|c| s.split_whitespace().any(|e| e == *c))
        })
    };
    let test_root = top
        .filter(|top| nix::unistd::geteuid().is_root() && enabled(top))
        .map(|top| top.join(format!("exile-test-{}", std::process::id())))
        .filter(|dir| std::fs::create_dir(dir).is_ok());
    let _cleanup = TestCgroup(test_root.clone());
    let mut spawner_args = Vec::new();
    if let Some(root) = &test_root {
        spawner_args.push(format!("--cgroup-root={}", root.display()));
    }
    let sb = Sandbox::start(SandboxOptions {
        spawners: 1,
        build_command: Some(SHELL_GAME.into()),
        build_dir: Some(build.path().to_owned()),
        spawner_args,
        ..Default::default()
    })
    .await
    .unwrap();
    let admin = sb.admin().await.unwrap();
    let spawner = sb.spawner_ids().await.unwrap().remove(0);
    let game = spawn(&admin, &spawner).await.unwrap();
    let game = running(&admin, &game.id).await;
    const UNSUPPORTED: &str =
        "memory/CPU caps unsupported, running without memory 64MiB, cpu 0.5 cores: ";

    if let Some(reason) = game.message.split_once(UNSUPPORTED).map(|(_, r)| r) {
        eprintln!("caps: the unsupported path ({reason})");
        assert!(
            test_root.is_none(),
            "a cgroup with memory and cpu was there: {reason}"
        );
        assert!(!reason.is_empty());
        // The game runs all the same, in no cgroup of Exile's.
        let own = std::fs::read_to_string(format!("/proc/{}/cgroup", game.pid)).unwrap();
        assert!(!own.contains("/exile-"), "{own}");
        assert_eq!(run(&admin, &game.id, 1, "echo alive").await, "alive\n");
    } else {
        eprintln!("caps: the cgroup v2 path ({:?})", test_root);
        assert_eq!(game.message, "", "no note when the caps hold");
        // The game and a process it forks are in the instance's cgroup.
        let suffix = format!("/exile-{}", game.id);
        let own = std::fs::read_to_string(format!("/proc/{}/cgroup", game.pid)).unwrap();
        let dir = cgroup::locate_own(&own, &mountinfo).unwrap();
        assert!(dir.ends_with(&suffix[1..]), "{}", dir.display());
        if let Some(root) = &test_root {
            assert_eq!(dir, root.join(&suffix[1..]));
        }
        let child = run(&admin, &game.id, 1, "cat /proc/self/cgroup").await;
        assert!(child.trim_end().ends_with(&suffix), "{child}");
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        assert_eq!(read("memory.max").trim(), (64u64 << 20).to_string());
        assert_eq!(read("cpu.max").trim(), "50000 100000");
        admin
            .instances
            .clone()
            .remove_instance(pb::RemoveInstanceRequest {
                id: game.id.clone(),
            })
            .await
            .unwrap();
        eventually("the cgroup removed", Duration::from_secs(10), || async {
            (!dir.exists()).then_some(())
        })
        .await
        .unwrap();
    }
    sb.shutdown().await;
}

/// A cgroup the test made: removed at the end whatever happened, with any child the test
/// left (its processes killed first).
struct TestCgroup(Option<std::path::PathBuf>);

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let Some(root) = &self.0 else { return };
        for child in std::fs::read_dir(root).into_iter().flatten().flatten() {
            if child.path().is_dir() {
                let _ = std::fs::write(child.path().join("cgroup.kill"), "1");
                for _ in 0..100 {
                    if std::fs::remove_dir(child.path()).is_ok() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        let _ = std::fs::remove_dir(root);
    }
}
