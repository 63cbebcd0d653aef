//! Uploaded builds through the CLI: push a real archive of the demo game, list, get,
//! activate, spawn it, see it on the spawner, and delete it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::harness::Ctl;

const MANIFEST: &str = "[run]\ncommand = \"./exile-demo-game --port {port}\"\n";

/// A tar.gz holding the demo game and `manifest` (when given) at its top.
fn demo_archive(dir: &Path, file: &str, manifest: Option<&str>) -> PathBuf {
    let game = std::fs::read(exile_testkit::demo_game_bin().expect("demo game built"))
        .expect("read the demo game");
    let path = dir.join(file);
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).expect("create archive"),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    let mut entries = vec![("exile-demo-game", 0o755, game.as_slice())];
    if let Some(m) = manifest {
        entries.push(("exile-build.toml", 0o644, m.as_bytes()));
    }
    for (name, mode, bytes) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(mode);
        h.set_mtime(1_700_000_000);
        tar.append_data(&mut h, name, bytes).expect("append");
    }
    tar.into_inner()
        .expect("tar")
        .finish()
        .expect("gzip")
        .flush()
        .expect("flush");
    path
}

fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).expect("read archive")))
}

/// The element of a JSON array whose `key` is `value`.
#[track_caller]
fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .and_then(|l| l.iter().find(|x| x[key] == value))
        .unwrap_or_else(|| panic!("no {key}={value} in {list:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_activate_spawn_and_delete_a_build() {
    let ctl = Ctl::start().await;
    ctl.login().await;
    let ids = ctl.sb.spawner_ids().await.unwrap();
    let archive = demo_archive(ctl.dir.path(), "demo.tar.gz", Some(MANIFEST));
    let path = archive.to_str().unwrap();
    let sha = sha256_of(&archive);
    let size = std::fs::metadata(&archive).unwrap().len();

    // Push: the master stores what was hashed here; no progress bar without a terminal.
    let pushed = ctl
        .run(&[
            "build",
            "push",
            path,
            "--name",
            "demo",
            "--version",
            "1",
            "-o",
            "json",
        ])
        .await
        .success();
    assert_eq!(pushed.stderr, "", "{pushed:#?}");
    let pushed = pushed.json();
    assert_eq!(pushed["name"], "demo");
    assert_eq!(pushed["version"], "1");
    assert_eq!(pushed["sha256"], sha.as_str());
    assert_eq!(pushed["size"], size);
    assert_eq!(pushed["format"], "tar_gz");
    assert_eq!(pushed["command"], "./exile-demo-game --port {port}");
    assert!(pushed["new_chunks"].as_u64().unwrap() > 0, "{pushed:#?}");
    assert!(pushed["new_bytes"].as_u64().unwrap() > 0, "{pushed:#?}");
    let id = pushed["id"].as_str().unwrap().to_owned();

    // The same name@version again is refused, in one sentence.
    let again = ctl
        .run(&["build", "push", path, "--name", "demo", "--version", "1"])
        .await
        .failure();
    assert_eq!(again.stderr.lines().count(), 1, "{again:#?}");
    assert!(again.stderr.contains("cannot push demo@1"), "{again:#?}");

    // The same bytes under another version add nothing to the store.
    let twin = ctl
        .run(&[
            "build",
            "push",
            path,
            "--name",
            "demo",
            "--version",
            "2",
            "-o",
            "json",
        ])
        .await
        .success()
        .json();
    assert_eq!(twin["sha256"], sha.as_str());
    assert_eq!(twin["new_chunks"], 0, "{twin:#?}");
    assert_eq!(twin["new_bytes"], 0, "{twin:#?}");

    let listed = ctl
        .run(&["build", "list", "--name", "demo", "-o", "json"])
        .await
        .success()
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed:#?}");
    assert_eq!(find(&listed, "id", &id)["sha256"], sha.as_str());
    let table = ctl.run(&["build", "ls"]).await.success();
    assert!(table.stdout.contains("demo@1"), "{table:#?}");
    assert!(table.stdout.contains(&sha[..12]), "{table:#?}");

    let got = ctl.run(&["build", "get", "demo@1"]).await.success();
    assert!(got.stdout.contains(&id), "{got:#?}");
    assert!(got.stdout.contains(&sha), "{got:#?}");
    assert!(
        got.stdout.contains("./exile-demo-game --port {port}"),
        "{got:#?}"
    );
    let missing = ctl.run(&["build", "get", "demo@9"]).await.failure();
    assert_eq!(missing.stderr.lines().count(), 1, "{missing:#?}");

    // Activate for every spawner, then spawn it by name@version and by name alone.
    let active = ctl
        .run(&["build", "activate", "demo@1", "-o", "json"])
        .await
        .success()
        .json();
    let activations = active["activations"].as_array().unwrap();
    assert_eq!(activations.len(), 1, "{active:#?}");
    assert!(
        activations[0]["selector"].as_object().unwrap().is_empty(),
        "{active:#?}"
    );
    let exact = ctl
        .spawn(&["--spawner", &ids[0], "--build", "demo@1"])
        .await;
    let exact_id = exact["id"].as_str().unwrap().to_owned();
    assert_eq!(exact["build_name"], "demo", "{exact:#?}");
    assert_eq!(exact["build_version"], "1", "{exact:#?}");
    let by_name = ctl.spawn(&["--spawner", &ids[1], "--build", "demo"]).await;
    assert_eq!(by_name["build_version"], "1", "{by_name:#?}");
    let up = ctl.wait_state(&exact_id, &["running", "ready"]).await;
    assert!(up["pid"].as_u64().unwrap() > 0, "{up:#?}");
    let table = ctl
        .run(&["instance", "list", "--spawner", &ids[0]])
        .await
        .success();
    assert!(table.stdout.contains("demo@1"), "{table:#?}");

    // The spawner holds it on disk, and says so.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let detail = ctl
            .run(&["spawner", "get", &ids[0], "-o", "json"])
            .await
            .success()
            .json();
        let held = detail["spawner"]["builds"].as_array().cloned();
        if let Some(b) = held
            .unwrap_or_default()
            .iter()
            .find(|b| b["name"] == "demo" && b["version"] == "1")
        {
            assert!(b["disk_bytes"].as_u64().unwrap() > 0, "{detail:#?}");
            assert_eq!(b["sha256"], sha.as_str());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spawner never reported demo@1: {detail:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let table = ctl.run(&["spawner", "get", &ids[0]]).await.success();
    assert!(table.stdout.contains("demo@1"), "{table:#?}");

    // Deleting: refused without a terminal unless --yes, refused while in use.
    let unconfirmed = ctl.run(&["build", "delete", "demo@2"]).await.failure();
    assert!(unconfirmed.stderr.contains("--yes"), "{unconfirmed:#?}");
    let in_use = ctl
        .run(&["build", "delete", "demo@1", "--yes"])
        .await
        .failure();
    assert_eq!(in_use.stderr.lines().count(), 1, "{in_use:#?}");
    let deleted = ctl
        .run(&["build", "rm", "demo@2", "--yes", "-o", "json"])
        .await
        .success()
        .json();
    // Its chunks are demo@1's too: nothing is freed.
    assert_eq!(deleted["build"], "demo@2");
    assert_eq!(deleted["freed_chunks"], 0, "{deleted:#?}");
    let listed = ctl
        .run(&["build", "list", "-o", "json"])
        .await
        .success()
        .json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["version"] != "2"),
        "{listed:#?}"
    );

    let audit = ctl.run(&["audit", "-o", "json"]).await.success().json();
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in ["UploadBuild", "ActivateBuild", "DeleteBuild"] {
        assert!(actions.contains(&a), "{a} not audited: {actions:?}");
    }
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_pushes_say_why() {
    let ctl = Ctl::start().await;
    ctl.login().await;
    let dir = ctl.dir.path();

    // Not an archive: the master's reason reaches the user.
    let junk = dir.join("junk.zip");
    std::fs::write(&junk, b"this is not an archive at all").unwrap();
    let refused = ctl
        .run(&[
            "build",
            "push",
            junk.to_str().unwrap(),
            "--name",
            "junk",
            "--version",
            "1",
        ])
        .await
        .failure();
    assert_eq!(refused.stderr.lines().count(), 1, "{refused:#?}");
    assert!(
        refused.stderr.starts_with("error: cannot push junk@1: "),
        "{refused:#?}"
    );
    let listed = ctl
        .run(&["build", "list", "-o", "json"])
        .await
        .success()
        .json();
    assert!(listed.as_array().unwrap().is_empty(), "{listed:#?}");

    // Local mistakes are named before anything is sent.
    let empty = dir.join("empty.zip");
    std::fs::write(&empty, b"").unwrap();
    let e = ctl
        .run(&[
            "build",
            "push",
            empty.to_str().unwrap(),
            "--name",
            "e",
            "--version",
            "1",
        ])
        .await
        .failure();
    assert!(e.stderr.contains("is empty"), "{e:#?}");
    let archive = demo_archive(dir, "demo.tar.gz", None);
    let manifest = dir.join("exile-build.toml");
    std::fs::write(
        &manifest,
        "[run]\ncommand = \"./exile-demo-game\"\nport = 1\n",
    )
    .unwrap();
    let bad = ctl
        .run(&[
            "build",
            "push",
            archive.to_str().unwrap(),
            "--name",
            "demo",
            "--version",
            "1",
            "--manifest",
            manifest.to_str().unwrap(),
        ])
        .await
        .failure();
    assert!(bad.stderr.contains("line 3"), "{bad:#?}");

    // A manifest given beside the archive is the build's.
    std::fs::write(&manifest, MANIFEST).unwrap();
    let pushed = ctl
        .run(&[
            "build",
            "push",
            archive.to_str().unwrap(),
            "--name",
            "demo",
            "--version",
            "1",
            "--manifest",
            manifest.to_str().unwrap(),
            "-o",
            "json",
        ])
        .await
        .success()
        .json();
    assert_eq!(pushed["manifest"], MANIFEST);
    assert_eq!(pushed["command"], "./exile-demo-game --port {port}");
    ctl.shutdown().await;
}
