//! A game that prints escape sequences and carries them in its labels cannot drive an
//! operator's terminal: `instance list/get`, `watch`, `logs` and `top` show the sequences
//! as text, and only `logs --raw` passes the bytes on.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use crate::harness::Ctl;
use crate::tmux::Tmux;

/// A title change (OSC 0), a screen clear and a colour (CSI): what a hostile game prints.
const EVIL_OUTPUT: &str = "crash \x1b]0;pwned\x07 \x1b[2J\x1b[31mred";
const EVIL_LABEL: &str = "\x1b]0;pwned\x07\u{9b}2J";
const SCRIPT: &str =
    "#!/bin/sh\nprintf 'crash \\033]0;pwned\\007 \\033[2J\\033[31mred\\n'\nexit 3\n";

/// A build whose game prints [`EVIL_OUTPUT`] and exits 3.
fn evil_archive(dir: &Path) -> PathBuf {
    let path = dir.join("evil.tar.gz");
    let gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&path).expect("create archive"),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    let manifest = "[run]\ncommand = \"./game.sh --port {port}\"\n";
    for (name, mode, bytes) in [
        ("game.sh", 0o755, SCRIPT.as_bytes()),
        ("exile-build.toml", 0o644, manifest.as_bytes()),
    ] {
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

#[track_caller]
fn no_raw_escapes(what: &str, text: &str) {
    assert!(
        !text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t')),
        "{what} let a control character through: {text:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_output_and_labels_are_shown_not_obeyed() {
    let tmux_ok = Tmux::available();
    let ctl = Ctl::start().await;
    ctl.login().await;
    let archive = evil_archive(ctl.dir.path());
    ctl.run(&[
        "build",
        "push",
        archive.to_str().unwrap(),
        "--name",
        "evil",
        "--version",
        "1",
    ])
    .await
    .success();
    let label = format!("evil={EVIL_LABEL}");
    let spawned = ctl
        .spawn(&["--build", "evil@1", "--restart", "never", "--label", &label])
        .await;
    let id = spawned["id"].as_str().unwrap().to_owned();
    ctl.wait_state(&id, &["crashed", "stopped"]).await;

    // Lists and details: the label is shown escaped; JSON carries it exactly, escaped.
    let list = ctl.run(&["instance", "list"]).await.success();
    no_raw_escapes("instance list", &list.stdout);
    assert!(list.stdout.contains(&id), "{list:#?}");
    let get = ctl.run(&["instance", "get", &id]).await.success();
    no_raw_escapes("instance get", &get.stdout);
    assert!(
        get.stdout.contains("evil=\\u{1b}]0;pwned\\u{7}\\u{9b}2J"),
        "{get:#?}"
    );
    let json = ctl
        .run(&["instance", "get", &id, "-o", "json"])
        .await
        .success();
    no_raw_escapes("instance get -o json", &json.stdout);
    assert_eq!(json.json()["labels"]["evil"], EVIL_LABEL);
    let yaml = ctl.run(&["instance", "list", "-o", "yaml"]).await.success();
    no_raw_escapes("instance list -o yaml", &yaml.stdout);

    // The game's output: escaped by default, the bytes themselves with --raw.
    let logs = ctl.run(&["logs", &id]).await.success();
    no_raw_escapes("logs", &logs.stdout);
    assert!(
        logs.stdout
            .contains("crash \\u{1b}]0;pwned\\u{7} \\u{1b}[2J\\u{1b}[31mred"),
        "{logs:#?}"
    );
    let raw = ctl.run(&["logs", &id, "--raw"]).await.success();
    assert!(raw.stdout.contains(EVIL_OUTPUT), "{raw:#?}");

    // `watch`: the snapshot in both forms.
    for format in ["table", "json"] {
        let mut child = ctl
            .command(&["watch", "-o", format])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let out = child.stdout.take().unwrap();
        tokio::task::block_in_place(|| BufReader::new(out).read_line(&mut line).unwrap());
        child.kill().unwrap();
        child.wait().unwrap();
        no_raw_escapes("watch", &line);
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let inst = v["instances"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["id"] == id.as_str())
                .unwrap();
            assert_eq!(inst["labels"]["evil"], EVIL_LABEL);
        }
    }

    // `top`: the detail view's labels and log show the sequences; the terminal's title
    // stays what it was.
    if tmux_ok {
        let cmd = format!(
            "env -u EXILE_MASTER -u EXILE_TOKEN EXILECTL_CONFIG='{}' '{}' top; sleep 600",
            ctl.config_path().display(),
            env!("CARGO_BIN_EXE_exilectl"),
        );
        let tmux = Tmux::start(ctl.dir.path(), 120, 32, &cmd);
        let t = &tmux;
        tokio::task::block_in_place(|| {
            t.wait("the instance", |s| s.contains("● live") && s.contains(&id));
            t.key("Enter");
            t.wait_for("labels evil=\\u{1b}]0;pwned\\u{7}\\u{9b}2J");
            t.wait_for("crash \\u{1b}]0;pwned\\u{7} \\u{1b}[2J\\u{1b}[31mred");
            assert_ne!(t.pane_title(), "pwned");
            t.type_text("q");
        });
    }
    ctl.shutdown().await;
}
