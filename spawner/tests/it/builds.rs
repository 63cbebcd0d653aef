//! Uploaded builds on a spawner against the fake master: installs through the link command,
//! chunk reuse across versions and changed archives, resumed and corrupted transfers, shared
//! downloads, refused references, collection, and what a restarted spawner reports.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use exile_api::v1::{self, command::Action, master_message, spawner_message};
use exile_spawner::{BuildStore, BuildsConfig, Credential, Error};
use tokio_util::sync::CancellationToken;

use crate::link::{
    CREDENTIAL, Harness, TOKEN, command, fake_master, result_for, sha256_hex, spawner_config,
};
use crate::support::*;

/// Chunk size of the fake master: 256 KiB.
const CHUNK: usize = 256 << 10;

/// Deterministic bytes that do not compress, so archives span several chunks.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// A tar stream of `files` under one top directory `game/` (which the spawner strips), with
/// fixed times and modes so equal contents give equal bytes.
fn tar(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut dir = tar::Header::new_gnu();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_mtime(1);
    dir.set_size(0);
    builder
        .append_data(&mut dir, "game/", std::io::empty())
        .unwrap();
    for (name, data) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_mtime(1);
        builder
            .append_data(&mut header, format!("game/{name}"), *data)
            .unwrap();
    }
    builder.into_inner().unwrap()
}

/// The same as a gzip'd tar.
fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar(files)).unwrap();
    gz.finish().unwrap()
}

/// A zip of `files` at its top.
fn zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        writer.start_file(*name, options).unwrap();
        writer.write_all(data).unwrap();
    }
    writer.finish().unwrap().into_inner()
}

/// A store over `dir` fetching from the fake master, keeping `keep` versions per name for
/// `grace`; `in_use` is what the instances use.
async fn open_store(
    master: &Harness,
    dir: &Path,
    keep: usize,
    grace: Duration,
    shutdown: &CancellationToken,
) -> BuildStore {
    let config = BuildsConfig {
        data_dir: dir.to_owned(),
        keep,
        live: None,
        gc_grace: grace,
        gc_interval: Duration::from_secs(3600),
    };
    let in_use: exile_spawner::builds::InUseFn = Arc::new(|| Box::pin(async { HashSet::new() }));
    let store = BuildStore::open(config, in_use, shutdown.child_token())
        .await
        .unwrap();
    let endpoint = tonic::transport::Endpoint::from_shared(master.url.clone()).unwrap();
    let credential = Credential {
        spawner_id: "sp-1".into(),
        credential: CREDENTIAL.into(),
    };
    store.connect(&endpoint, &credential).unwrap();
    store
}

/// Installs with a deadline, so a hang fails the test instead of stalling it.
async fn ensure(
    store: &BuildStore,
    build: &v1::BuildRef,
) -> exile_spawner::Result<exile_spawner::InstalledBuild> {
    tokio::time::timeout(Duration::from_secs(30), store.ensure(build))
        .await
        .expect("the install did not finish within 30 s")
}

fn welcome() -> master_message::Kind {
    master_message::Kind::Welcome(v1::Welcome {
        spawner_id: "sp-1".into(),
        heartbeat_interval_ms: 60_000,
    })
}

fn install(build: &v1::BuildRef) -> Action {
    Action::InstallBuild(v1::InstallBuildCommand {
        build: Some(build.clone()),
    })
}

/// Files of a version directory, relative, sorted.
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn install_command_unpacks_the_build_reports_it_and_a_restart_still_holds_it() {
    let mut master = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    let server = noise(1, 600 << 10);
    let data = noise(2, 500 << 10);
    let archive = tar_gz(&[("bin/server", &server), ("data/level.pak", &data)]);
    let v1_ref = master.builds.register(
        "bld-1",
        "arena",
        "1.0",
        &archive,
        CHUNK,
        "[run]\ncommand = \"bin/server\"\n",
    );
    let v2_ref = master
        .builds
        .register("bld-2", "arena", "2.0", &archive, CHUNK, "");
    assert!(master.builds.chunks_of("bld-1").len() >= 4);

    let mut config = spawner_config(&master.url, dir.path());
    config.enrollment_token = Some(TOKEN.into());
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(exile_spawner::run(config.clone(), shutdown.clone()));
    let mut session = master.session().await;
    let spawner_message::Kind::Hello(hello) = session.next().await else {
        panic!("the first message is not a hello");
    };
    assert!(hello.builds.is_empty(), "{:?}", hello.builds);
    session.send(welcome()).await;

    // Installed through the command: the result carries it, and so does a BuildsHeld.
    session.send(command(1, install(&v1_ref))).await;
    let mut held_seen = None;
    let result = session
        .until(|kind| match kind {
            spawner_message::Kind::BuildsHeld(h) => {
                held_seen = Some(h);
                None
            }
            spawner_message::Kind::CommandResult(r) if r.request_id == 1 => Some(r),
            _ => None,
        })
        .await;
    assert_eq!(result.error, "");
    let held = result.build.expect("the result names the installed build");
    assert_eq!(
        (held.name.as_str(), held.version.as_str()),
        ("arena", "1.0")
    );
    assert_eq!(held.sha256, v1_ref.sha256);
    assert_eq!(held.fetched_bytes, archive.len() as u64);
    assert_eq!(held.disk_bytes, (server.len() + data.len()) as u64);
    assert!(held.installed_at_unix_ms > 0);
    let held_seen = match held_seen {
        Some(h) => h,
        None => {
            session
                .until(|kind| match kind {
                    spawner_message::Kind::BuildsHeld(h) => Some(h),
                    _ => None,
                })
                .await
        }
    };
    assert_eq!(held_seen.builds, vec![held.clone()]);
    let version_dir = dir.path().join("builds/arena/1.0");
    assert_eq!(
        files_under(&version_dir),
        ["bin/server", "data/level.pak"],
        "the top directory is stripped"
    );
    assert_eq!(
        std::fs::read(version_dir.join("bin/server")).unwrap(),
        server
    );
    assert_eq!(master.builds.served(), archive.len() as u64);

    // The same archive under another version fetches nothing.
    session.send(command(2, install(&v2_ref))).await;
    let result = session.until(result_for(2)).await;
    assert_eq!(result.error, "");
    assert_eq!(result.build.unwrap().fetched_bytes, 0);
    assert_eq!(master.builds.served(), archive.len() as u64);
    assert_eq!(
        std::fs::read(dir.path().join("builds/arena/2.0/data/level.pak")).unwrap(),
        data
    );

    // A build the master does not hold comes back as not found.
    let mut unknown = v1_ref.clone();
    unknown.id = "bld-404".into();
    unknown.version = "9".into();
    session.send(command(3, install(&unknown))).await;
    let result = session.until(result_for(3)).await;
    assert_eq!(result.error_kind, v1::CommandErrorKind::NotFound as i32);
    assert!(result.error.contains("arena@9"), "{}", result.error);

    // A wanted build is fetched ahead, and reported.
    let zipped = zip(&[("server.sh", b"#!/bin/sh\nexit 0\n")]);
    let v3_ref = master
        .builds
        .register("bld-3", "arena", "3.0", &zipped, CHUNK, "");
    session
        .send(master_message::Kind::Config(v1::ConfigPush {
            wanted_builds: Some(v1::WantedBuilds {
                builds: vec![v3_ref.clone()],
            }),
            ..Default::default()
        }))
        .await;
    let held = session
        .until(|kind| match kind {
            spawner_message::Kind::BuildsHeld(h) if h.builds.len() == 3 => Some(h),
            _ => None,
        })
        .await;
    assert!(held.builds.iter().any(|b| b.version == "3.0"));
    assert_eq!(
        std::fs::read(dir.path().join("builds/arena/3.0/server.sh")).unwrap(),
        b"#!/bin/sh\nexit 0\n"
    );
    shut_down_agent(&shutdown, agent).await;

    // After a restart the hello lists what is on disk.
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(exile_spawner::run(config, shutdown.clone()));
    let mut session = master.session().await;
    let spawner_message::Kind::Hello(hello) = session.next().await else {
        panic!("the first message is not a hello");
    };
    let mut versions: Vec<_> = hello
        .builds
        .iter()
        .map(|b| (b.version.as_str(), b.sha256.as_str()))
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        [
            ("1.0", v1_ref.sha256.as_str()),
            ("2.0", v1_ref.sha256.as_str()),
            ("3.0", v3_ref.sha256.as_str())
        ]
    );
    shut_down_agent(&shutdown, agent).await;
    master.server.abort();
}

#[tokio::test]
async fn a_changed_archive_fetches_only_its_changed_chunks() {
    let master = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let store = open_store(&master, dir.path(), 2, Duration::from_secs(600), &shutdown).await;
    let assets = noise(3, 1 << 20);
    let mut binary = noise(4, 400 << 10);
    let old = tar(&[("assets.pak", &assets), ("server", &binary)]);
    let old_ref = master
        .builds
        .register("bld-1", "arena", "1", &old, CHUNK, "");
    ensure(&store, &old_ref).await.unwrap();
    assert_eq!(store.fetched_bytes_total(), old.len() as u64);

    // A patch to the binary, same length: only the chunks holding it differ.
    binary[100_000..100_010].copy_from_slice(b"patched!!!");
    let new = tar(&[("assets.pak", &assets), ("server", &binary)]);
    assert_eq!(new.len(), old.len());
    let new_ref = master
        .builds
        .register("bld-2", "arena", "2", &new, CHUNK, "");
    let old_chunks: HashSet<String> = master
        .builds
        .chunks_of("bld-1")
        .into_iter()
        .map(|c| c.sha256)
        .collect();
    let changed: u64 = master
        .builds
        .chunks_of("bld-2")
        .iter()
        .filter(|c| !old_chunks.contains(&c.sha256))
        .map(|c| u64::from(c.size))
        .sum();
    assert!(changed > 0 && changed < new.len() as u64 / 2, "{changed}");

    let installed = ensure(&store, &new_ref).await.unwrap();
    let held = store.held_build("arena", "2").unwrap();
    assert_eq!(held.fetched_bytes, changed);
    assert_eq!(master.builds.served(), old.len() as u64 + changed);
    assert_eq!(installed.sha256, sha256_hex(&new));
    assert_eq!(installed.dir, dir.path().join("builds/arena/2"));
    assert_eq!(std::fs::read(installed.dir.join("server")).unwrap(), binary);
    // The old version is untouched.
    assert_ne!(
        std::fs::read(dir.path().join("builds/arena/1/server")).unwrap(),
        binary
    );
    shutdown.cancel();
    master.server.abort();
}

#[tokio::test]
async fn a_cut_stream_resumes_with_only_what_is_missing() {
    let master = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let store = open_store(&master, dir.path(), 2, Duration::from_secs(600), &shutdown).await;
    let payload = noise(5, 2 << 20);
    let archive = tar_gz(&[("server", &payload)]);
    let build = master
        .builds
        .register("bld-1", "arena", "1", &archive, CHUNK, "");
    assert!(master.builds.chunks_of("bld-1").len() >= 6);
    master.builds.cut_next_stream_after(3);

    let installed = ensure(&store, &build).await.unwrap();
    assert_eq!(master.builds.fetch_calls(), 2, "one cut, one resume");
    assert_eq!(
        master.builds.served(),
        archive.len() as u64,
        "no chunk was sent twice"
    );
    assert_eq!(installed.sha256, sha256_hex(&archive));
    assert_eq!(
        std::fs::read(installed.dir.join("server")).unwrap(),
        payload
    );
    assert!(installed.manifest.is_none());
    shutdown.cancel();
    master.server.abort();
}

#[tokio::test]
async fn corrupted_chunks_are_fetched_again_and_twice_is_an_error_naming_the_chunk() {
    let master = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let store = open_store(&master, dir.path(), 2, Duration::from_secs(600), &shutdown).await;
    let archive = tar_gz(&[("server", &noise(6, 1 << 20))]);
    let build = master
        .builds
        .register("bld-1", "arena", "1", &archive, CHUNK, "[run]\n");
    let chunks = master.builds.chunks_of("bld-1");
    let bad = &chunks[1];

    // Twice in a row: refused, naming the chunk, nothing installed.
    master.builds.corrupt(&bad.sha256, 2);
    let err = ensure(&store, &build).await.unwrap_err();
    assert!(err.to_string().contains(&bad.sha256), "{err}");
    assert_eq!(err.kind(), v1::CommandErrorKind::Internal);
    assert!(store.held().is_empty());
    assert!(!dir.path().join("builds/arena/1").exists());

    // Once: fetched again, and the failure above did not stick.
    master.builds.corrupt(&bad.sha256, 1);
    let served = master.builds.served();
    let installed = ensure(&store, &build).await.unwrap();
    assert_eq!(installed.manifest.as_deref(), Some("[run]\n"));
    assert_eq!(
        master.builds.served() - served,
        u64::from(bad.size) * 2,
        "only the corrupted chunk came again"
    );

    // A cached chunk damaged on disk is dropped and fetched again.
    let cached = dir.path().join("builds/.chunks").join(&chunks[2].sha256);
    let mut bytes = std::fs::read(&cached).unwrap();
    bytes[10] ^= 1;
    std::fs::write(&cached, bytes).unwrap();
    let again = master
        .builds
        .register("bld-2", "arena", "2", &archive, CHUNK, "");
    ensure(&store, &again).await.unwrap();
    assert_eq!(
        store.held_build("arena", "2").unwrap().fetched_bytes,
        u64::from(chunks[2].size)
    );
    assert_eq!(
        sha256_hex(&std::fs::read(&cached).unwrap()),
        chunks[2].sha256
    );
    shutdown.cancel();
    master.server.abort();
}

#[tokio::test]
async fn concurrent_installs_of_one_build_share_one_download() {
    let master = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let store = open_store(&master, dir.path(), 2, Duration::from_secs(600), &shutdown).await;
    let archive = tar_gz(&[("server", &noise(7, 3 << 20))]);
    let build = master
        .builds
        .register("bld-1", "arena", "1", &archive, CHUNK, "");
    let mut held = store.subscribe();
    held.mark_unchanged();

    let other = store.clone();
    let (a, b, c) = tokio::join!(
        ensure(&store, &build),
        ensure(&store, &build),
        ensure(&other, &build)
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(master.builds.served(), archive.len() as u64);
    assert_eq!(store.fetched_bytes_total(), archive.len() as u64);
    assert_eq!(master.builds.fetch_calls(), 1);
    assert!(held.has_changed().unwrap(), "the held set did not signal");
    assert_eq!(store.held().len(), 1);
    // Nothing is left in the scratch directory.
    assert_eq!(
        std::fs::read_dir(dir.path().join("builds/.tmp"))
            .unwrap()
            .count(),
        0
    );
    shutdown.cancel();
    master.server.abort();
}

#[tokio::test]
async fn a_wrong_or_malformed_reference_is_refused_and_installs_nothing() {
    let master = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    let shutdown = CancellationToken::new();
    let store = open_store(&master, dir.path(), 2, Duration::from_secs(600), &shutdown).await;
    let archive = tar_gz(&[("server", b"x")]);
    let build = master
        .builds
        .register("bld-1", "arena", "1", &archive, CHUNK, "");

    let mut wrong = build.clone();
    wrong.sha256 = "0".repeat(64);
    let err = ensure(&store, &wrong).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("arena@1") && text.contains(&"0".repeat(64)) && text.contains(&build.sha256),
        "{text}"
    );
    assert_eq!(err.kind(), v1::CommandErrorKind::FailedPrecondition);
    assert_eq!(master.builds.served(), 0);
    assert!(store.held().is_empty());
    assert!(!dir.path().join("builds/arena/1").exists());

    for (name, version, sha) in [
        ("../etc", "1", build.sha256.as_str()),
        ("arena", "../../x", build.sha256.as_str()),
        ("arena", "1", "../../../etc/passwd"),
    ] {
        let bad = v1::BuildRef {
            name: name.into(),
            version: version.into(),
            sha256: sha.into(),
            ..build.clone()
        };
        let err = ensure(&store, &bad).await.unwrap_err();
        assert!(matches!(err, Error::Build(_)), "{err:?}");
        assert_eq!(err.kind(), v1::CommandErrorKind::InvalidArgument, "{err}");
    }
    assert_eq!(master.builds.fetch_calls(), 0);
    shutdown.cancel();
    master.server.abort();
}

#[tokio::test]
async fn collection_removes_idle_versions_but_keeps_wanted_in_use_and_newest() {
    let master = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    let shared = noise(8, 300 << 10);
    let mut refs = Vec::new();
    for n in 1..=4u64 {
        let archive = tar(&[
            ("shared.pak", &shared),
            ("own.pak", &noise(100 + n, 300 << 10)),
        ]);
        refs.push(master.builds.register(
            &format!("bld-{n}"),
            "arena",
            &n.to_string(),
            &archive,
            CHUNK,
            "",
        ));
    }
    let in_use: HashSet<(String, String)> = [("arena".to_owned(), "1".to_owned())].into();

    // Within the grace period nothing goes.
    let shutdown = CancellationToken::new();
    let store = open_store(&master, dir.path(), 1, Duration::from_secs(3600), &shutdown).await;
    for build in &refs {
        ensure(&store, build).await.unwrap();
    }
    store.set_wanted(vec![refs[1].clone()]);
    let collected = store.collect(&in_use);
    assert!(collected.versions.is_empty(), "{collected:?}");
    assert_eq!(store.held().len(), 4);
    shutdown.cancel();

    // Past it (a fresh store over the same directory, grace 0): version 3 is neither in use
    // (1), wanted (2) nor the newest (4).
    let shutdown = CancellationToken::new();
    let store = open_store(&master, dir.path(), 1, Duration::ZERO, &shutdown).await;
    assert_eq!(store.held().len(), 4, "the versions were read back");
    store.set_wanted(vec![refs[1].clone()]);
    let mut held = store.subscribe();
    held.mark_unchanged();
    let collected = store.collect(&in_use);
    assert_eq!(collected.versions, [("arena".to_owned(), "3".to_owned())]);
    assert!(held.has_changed().unwrap());
    let mut left: Vec<String> = store.held().into_iter().map(|b| b.version).collect();
    left.sort();
    assert_eq!(left, ["1", "2", "4"]);
    assert!(!dir.path().join("builds/arena/3").exists());
    assert!(!dir.path().join("builds/arena/3.json").exists());
    assert!(dir.path().join("builds/arena/1/own.pak").is_file());

    // Chunks only version 3 used are gone; the shared ones stay.
    let cached = |sha: &str| dir.path().join("builds/.chunks").join(sha).exists();
    let kept: HashSet<String> = [1, 2, 4]
        .iter()
        .flat_map(|n| master.builds.chunks_of(&format!("bld-{n}")))
        .map(|c| c.sha256)
        .collect();
    let only_3: Vec<_> = master
        .builds
        .chunks_of("bld-3")
        .into_iter()
        .filter(|c| !kept.contains(&c.sha256))
        .collect();
    assert!(!only_3.is_empty());
    assert!(collected.chunks >= only_3.len() as u64);
    assert!(only_3.iter().all(|c| !cached(&c.sha256)));
    assert!(kept.iter().all(|sha| cached(sha)));

    // Nothing in use, nothing wanted: only the newest stays.
    store.set_wanted(Vec::new());
    let collected = store.collect(&HashSet::new());
    assert_eq!(collected.versions.len(), 2, "{collected:?}");
    let left: Vec<String> = store.held().into_iter().map(|b| b.version).collect();
    assert_eq!(left, ["4"]);
    // A removed version comes back on demand, reusing the chunks still cached.
    let served = master.builds.served();
    ensure(&store, &refs[0]).await.unwrap();
    assert!(master.builds.served() - served < refs[0].size);
    shutdown.cancel();
    master.server.abort();
}

#[tokio::test]
async fn a_spawn_naming_an_uploaded_build_installs_it_and_runs_it_by_its_manifest() {
    let mut master = fake_master().await;
    let dir = tempfile::tempdir().unwrap();
    let game = std::fs::read(demo_game()).unwrap();
    let archive = tar_gz(&[("exile-demo-game", &game)]);
    // The manifest the master hands out (as if given at upload) names two ports.
    let build = master.builds.register(
        "bld-7",
        "demo",
        "7",
        &archive,
        CHUNK,
        "[run]\ncommand = \"./exile-demo-game --port {port:game}\"\n\
         [[ports]]\nname = \"game\"\n[[ports]]\nname = \"query\"\nprotocol = \"tcp\"\n\
         [env]\nGAME_MODE = \"ctf\"\n",
    );
    let mut config = spawner_config(&master.url, dir.path());
    config.enrollment_token = Some(TOKEN.into());
    config.build_command = None;
    config.stop_instances_on_shutdown = true;
    let shutdown = CancellationToken::new();
    let agent = tokio::spawn(exile_spawner::run(config, shutdown.clone()));
    let mut session = master.session().await;
    let spawner_message::Kind::Hello(_) = session.next().await else {
        panic!("the first message is not a hello");
    };
    session.send(welcome()).await;
    session
        .send(command(
            1,
            Action::Spawn(v1::SpawnCommand {
                instance_id: "inst-built".into(),
                build_version: "7".into(),
                build: Some(build.clone()),
                ..Default::default()
            }),
        ))
        .await;
    // The install is reported (BuildsHeld) on its way to the spawn's result.
    let mut held = None;
    let result = session
        .until(|kind| match kind {
            spawner_message::Kind::BuildsHeld(h) => {
                held = Some(h);
                None
            }
            spawner_message::Kind::CommandResult(r) if r.request_id == 1 => Some(r),
            _ => None,
        })
        .await;
    assert_eq!(result.error, "", "{result:?}");
    let held = held.expect("no BuildsHeld before the spawn's result");
    assert_eq!(held.builds.len(), 1);
    assert_eq!(held.builds[0].version, "7");
    let status = result.instance.unwrap();
    assert_eq!(
        (status.build_name.as_str(), status.build_version.as_str()),
        ("demo", "7")
    );
    let names: Vec<&str> = status.ports.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["game", "query"]);
    // The process is the build's own binary, with the manifest's environment.
    let pid = status.pid;
    assert!(pid > 0);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, dir.path().join("builds/demo/7/exile-demo-game"));
    let environ = environ(pid);
    assert!(
        environ.iter().any(|(k, v)| k == "GAME_MODE" && v == "ctf"),
        "{environ:?}"
    );
    assert_eq!(master.builds.served(), archive.len() as u64);
    shut_down_agent(&shutdown, agent).await;
    assert!(!group_alive(pid), "the game outlived a stopping shutdown");
    master.server.abort();
}
