//! `exilectl top` in a real pseudo-terminal against a sandbox: switch views, filter, spawn,
//! stop with confirmation, open the log, use the console, ride out a master restart, quit —
//! and the terminal is given back.

use crate::harness::Ctl;
use crate::tmux::Tmux;

/// The shell line that runs `top` and then reports how it exited.
fn top_command(ctl: &Ctl, env: &str) -> String {
    format!(
        "env -u EXILE_MASTER -u EXILE_TOKEN -u NO_COLOR EXILECTL_CONFIG='{}' {env} '{}' top; echo TOP-EXITED $?; sleep 600",
        ctl.config_path().display(),
        env!("CARGO_BIN_EXE_exilectl"),
    )
}

/// The table row of the screen that starts with `id`.
fn row<'a>(screen: &'a str, id: &str) -> &'a str {
    let start = format!("│{id}");
    screen.lines().find(|l| l.contains(&start)).unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_drives_the_fleet_from_the_screen() {
    if !Tmux::available() {
        return;
    }
    let mut ctl = Ctl::start().await;
    ctl.login().await;
    let ids = ctl.sb.spawner_ids().await.unwrap();
    let first = ctl.spawn_on(&ids[0]).await;
    ctl.wait_state(&first, &["ready", "running"]).await;

    let tmux = Tmux::start(ctl.dir.path(), 120, 32, &top_command(&ctl, ""));
    let t = &tmux;
    let spawned = tokio::task::block_in_place(|| {
        t.wait("the live instance list", |s| {
            s.contains("● live") && s.contains(&first) && s.contains("admin (admin)")
        });
        assert!(t.alternate_screen(), "top runs on the alternate screen");

        // 1: spawners, both online.
        t.type_text("1");
        t.wait("both spawners", |s| {
            ids.iter().all(|id| row(s, id).contains("Online"))
        });
        // 2: instances again.
        t.type_text("2");
        t.wait_for(&first);

        // Spawn through the master's placement, confirmed.
        t.type_text("n");
        t.wait_for("Spawn an instance where the master places it? [y/N]");
        t.type_text("y");
        let s = t.wait_for("spawned inst-");
        let spawned = s
            .split("spawned ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .to_owned();
        t.wait("the new instance ready", |s| {
            row(s, &spawned).contains("Ready")
        });

        // Filter down to it: the other row goes.
        t.type_text("/");
        t.type_text(&spawned);
        t.key("Enter");
        t.wait("only the new instance", |s| {
            s.contains(&spawned) && !s.contains(&first)
        });

        // Stop asks first; `n` leaves it alone, `y` stops it.
        t.type_text("s");
        t.wait_for(&format!("Stop instance {spawned}? [y/N]"));
        t.type_text("n");
        t.wait_for("cancelled");
        assert!(row(&t.screen(), &spawned).contains("Ready"));
        t.type_text("s");
        t.wait_for(&format!("Stop instance {spawned}? [y/N]"));
        t.type_text("y");
        t.wait("the instance stopped", |s| {
            row(s, &spawned).contains("Stopped")
        });

        // Clear the filter, open the first instance: its log and its console.
        t.key("Escape");
        t.wait("both instances", |s| {
            s.contains(&first) && s.contains(&spawned)
        });
        t.type_text("/");
        t.type_text(&first);
        t.key("Enter");
        t.wait("only the first instance", |s| !s.contains(&spawned));
        t.key("Enter");
        t.wait_for(&format!("Instance {first}"));
        t.wait_for("listening on port");
        t.type_text("c");
        t.wait_for(&format!("console {first}>"));
        t.type_text("say hello from top");
        t.key("Enter");
        t.wait_for("[console] hello from top");
        // Escape leaves the console line, then the detail view, then the filter.
        t.key("Escape");
        t.wait("the console line closed", |s| {
            !s.contains(&format!("console {first}>"))
        });
        t.key("Escape");
        t.wait_for("Instances 1/2");
        t.key("Escape");
        t.wait_for("Instances 2/2");
        spawned
    });
    let stopped = ctl.wait_state(&spawned, &["stopped"]).await;
    assert_eq!(stopped["state"], "stopped");

    // The master goes away: the header says so and top keeps trying; it comes back live.
    ctl.sb.stop_master().await.unwrap();
    tokio::task::block_in_place(|| t.wait_for("retry"));
    ctl.sb.start_master().await.unwrap();
    tokio::task::block_in_place(|| {
        t.wait("live again", |s| s.contains("● live") && s.contains(&first));
        t.type_text("q");
        t.wait_for("TOP-EXITED 0");
        assert!(!t.alternate_screen(), "the alternate screen was left");
    });
    drop(tmux);
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_refusals_and_top_suspends_and_resumes() {
    if !Tmux::available() {
        return;
    }
    let ctl = Ctl::start().await;
    ctl.login().await;
    let ids = ctl.sb.spawner_ids().await.unwrap();
    let id = ctl.spawn_on(&ids[0]).await;
    ctl.wait_state(&id, &["ready", "running"]).await;
    let created = ctl
        .run(&[
            "token", "create", "watcher", "--role", "viewer", "--ttl", "1h", "-o", "json",
        ])
        .await
        .success()
        .json();
    let secret = created["secret"].as_str().unwrap().to_owned();

    // An interactive shell with job control, so Ctrl-Z and `fg` work as for a person.
    let shell = format!(
        "env -u EXILE_MASTER -u NO_COLOR PS1='$ ' EXILECTL_CONFIG='{}' EXILE_TOKEN='{secret}' bash --norc --noprofile -i",
        ctl.config_path().display()
    );
    let tmux = Tmux::start(ctl.dir.path(), 100, 30, &shell);
    let t = &tmux;
    tokio::task::block_in_place(|| {
        t.wait("the shell prompt", |s| s.trim_start().starts_with('$'));
        t.type_text(&format!(
            "'{}' top; echo TOP-EXITED $?",
            env!("CARGO_BIN_EXE_exilectl")
        ));
        t.key("Enter");
        t.wait("the viewer's live list", |s| {
            s.contains("● live") && s.contains("watcher (viewer)") && s.contains(&id)
        });

        // Changing the fleet is refused with the master's sentence, not a crash.
        t.type_text("s");
        t.wait_for(&format!("Stop instance {id}? [y/N]"));
        t.type_text("y");
        t.wait_for("permission denied");
        assert!(row(&t.screen(), &id).contains("Ready"));

        // The log needs an operator too: the pane says why it is empty.
        t.key("Enter");
        t.wait_for("Log (ended: permission denied");
        t.type_text("c");
        t.type_text("say hi");
        t.key("Enter");
        t.wait("the console refusal", |s| {
            s.lines()
                .any(|l| l.contains(&format!("console {id}>")) && l.contains("permission denied"))
        });
        t.key("Escape");
        t.key("Escape");

        // Ctrl-Z gives the shell back; `fg` brings the screen back whole.
        t.key("C-z");
        t.wait("the shell after Ctrl-Z", |s| s.contains("Stopped"));
        assert!(!t.alternate_screen());
        t.type_text("fg");
        t.key("Enter");
        t.wait("top again", |s| s.contains("● live") && s.contains(&id));
        assert!(t.alternate_screen());

        // Ctrl-C quits cleanly.
        t.key("C-c");
        t.wait("the shell prompt again", |s| !s.contains("● live"));
        t.type_text("echo TOP-EXITED $?");
        t.key("Enter");
        t.wait_for("TOP-EXITED 0");
        assert!(!t.alternate_screen());
    });
    drop(tmux);
    ctl.shutdown().await;
}
