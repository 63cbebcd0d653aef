//! The command line's contract with scripts and shells: documented exit codes and working
//! completion scripts.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::harness::{Ctl, command, to_run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_tell_failures_apart() {
    let ctl = Ctl::start().await;
    // Not logged in: denied (4).
    let url = ctl.sb.master_url();
    ctl.run(&["--master", &url, "instance", "list"])
        .await
        .failure_code(4);
    ctl.login().await;
    ctl.run(&["instance", "list"]).await.success();
    // A command line clap rejects: usage (2); so is an argument the master rejects.
    ctl.run(&["instance", "spawn", "--no-such-flag"])
        .await
        .failure_code(2);
    let bad = ctl
        .run(&["instance", "spawn", "--label", "bad key!=x"])
        .await
        .failure_code(2);
    assert!(bad.stderr.contains("bad key!"), "{bad:#?}");
    // Nothing by that name: not found (3).
    let missing = ctl
        .run(&["instance", "get", "inst-000000000000"])
        .await
        .failure_code(3);
    assert!(missing.stderr.starts_with("error: "), "{missing:#?}");
    // A viewer may look but not touch: denied (4).
    let created = ctl
        .run(&[
            "token", "create", "v", "--role", "viewer", "--ttl", "1h", "-o", "json",
        ])
        .await
        .success()
        .json();
    let viewer = [("EXILE_TOKEN", created["secret"].as_str().unwrap())];
    ctl.run_with(&["instance", "spawn"], &viewer, "")
        .await
        .failure_code(4);
    // A state that does not allow it: refused (6).
    let ids = ctl.sb.spawner_ids().await.unwrap();
    let id = ctl.spawn_on(&ids[0]).await;
    ctl.wait_state(&id, &["ready", "running"]).await;
    ctl.run(&["instance", "start", &id]).await.failure_code(6);
    // No master there: unavailable (5).
    let dead = "http://127.0.0.1:9";
    ctl.run(&["--master", dead, "--timeout", "2s", "instance", "list"])
        .await
        .failure_code(5);
    // `spawn --wait` returns once the game runs, or says why it never did.
    let ran = ctl.spawn(&["--wait"]).await;
    assert!(
        ran["state"] == "running" || ran["state"] == "ready",
        "{ran:#?}"
    );
    let crashed = ctl
        .run(&[
            "instance",
            "spawn",
            "--wait",
            "--restart",
            "never",
            "--",
            "--no-such-game-flag",
        ])
        .await
        .failure_code(1);
    assert!(
        crashed.stderr.contains("is crashed before it ran"),
        "{crashed:#?}"
    );
    // The codes are documented where people look.
    let help = ctl.run(&["--help"]).await.success();
    assert!(help.stdout.contains("Exit codes: 0 ok"), "{help:#?}");
    ctl.shutdown().await;
}

/// Runs `exilectl completion <shell>` and returns the script.
fn script(shell: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = command(&dir.path().join("config.toml"), &["completion", shell])
        .output()
        .expect("exilectl runs");
    let run = to_run(out).success();
    run.stdout
}

#[test]
fn bash_completes_nouns_and_verbs() {
    let bash = script("bash");
    // Ask bash itself what it would offer after `exilectl ` and `exilectl instance re`.
    let probe = format!(
        "{bash}\n\
         complete_at() {{ COMP_WORDS=(\"$@\"); COMP_CWORD=$(( $# - 1 )); COMP_LINE=\"$*\"; \
         COMP_POINT=${{#COMP_LINE}}; COMPREPLY=(); _exilectl exilectl \"${{COMP_WORDS[-1]}}\" \
         \"${{COMP_WORDS[-2]}}\"; echo \"${{COMPREPLY[*]}}\"; }}\n\
         complete_at exilectl ''\n\
         complete_at exilectl instance re\n\
         complete_at exilectl top --view ''\n\
         complete_at exilectl config ''\n"
    );
    // The script is too long for an argument: bash reads it from stdin.
    let mut child = Command::new("bash")
        .args(["--norc", "--noprofile", "-s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("bash runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(probe.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(out.status.success() && lines.len() == 4, "{out:?}");
    for word in ["top", "instance", "watch", "config", "completion"] {
        assert!(lines[0].split(' ').any(|w| w == word), "{word}: {lines:?}");
    }
    assert!(lines[1].split(' ').any(|w| w == "restart"), "{lines:?}");
    assert!(lines[1].split(' ').any(|w| w == "remove"), "{lines:?}");
    assert_eq!(lines[2], "spawners instances builds", "{lines:?}");
    for verb in ["list", "get", "set", "reset", "history"] {
        assert!(lines[3].split(' ').any(|w| w == verb), "{verb}: {lines:?}");
    }
}

#[test]
fn zsh_and_fish_scripts_cover_every_command() {
    let zsh = script("zsh");
    assert!(zsh.starts_with("#compdef exilectl"), "{zsh}");
    let fish = script("fish");
    for word in ["top", "instance", "logs", "console", "config", "completion"] {
        assert!(zsh.contains(&format!("'{word}:")), "zsh lacks {word}");
        assert!(
            fish.lines()
                .any(|l| l.starts_with("complete -c exilectl")
                    && l.contains(&format!("-a \"{word}\""))),
            "fish lacks {word}"
        );
    }
}
