//! `instance rename`: a display name beside the id, shown in lists and `top`, searchable,
//! kept across a master restart, refused when malformed, cleared with an empty name.

use crate::harness::Ctl;
use crate::tmux::Tmux;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_can_be_named_and_found_by_name() {
    let mut ctl = Ctl::start().await;
    ctl.login().await;
    let ids = ctl.sb.spawner_ids().await.unwrap();
    let id = ctl.spawn_on(&ids[0]).await;
    let other = ctl.spawn_on(&ids[1]).await;

    let said = ctl
        .run(&["instance", "rename", &id, "EU CTF #1"])
        .await
        .success();
    assert_eq!(
        said.stdout,
        format!("Instance {id} is now named EU CTF #1.\n")
    );
    let list = ctl.run(&["instance", "list"]).await.success();
    let row = list.stdout.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("EU CTF #1"), "{list:#?}");
    assert!(list.stdout.lines().next().unwrap().contains("NAME"));

    // Malformed names are refused with the rule; unknown instances are not found.
    let bad = ctl
        .run(&["instance", "rename", &id, "a\x1b[2Jb"])
        .await
        .failure_code(2);
    assert!(bad.stderr.contains("control characters"), "{bad:#?}");
    ctl.run(&["instance", "rename", "inst-000000000000", "x"])
        .await
        .failure_code(3);

    // The name survives a master restart (it is the master's alone).
    ctl.sb.stop_master().await.unwrap();
    ctl.sb.start_master().await.unwrap();
    let got = ctl
        .run(&["instance", "get", &id, "-o", "json"])
        .await
        .success()
        .json();
    assert_eq!(got["display_name"], "EU CTF #1");

    // `top` shows it and its filter finds the instance by it.
    if Tmux::available() {
        let cmd = format!(
            "env -u EXILE_MASTER -u EXILE_TOKEN EXILECTL_CONFIG='{}' '{}' top; sleep 600",
            ctl.config_path().display(),
            env!("CARGO_BIN_EXE_exilectl"),
        );
        let tmux = Tmux::start(ctl.dir.path(), 160, 30, &cmd);
        let t = &tmux;
        tokio::task::block_in_place(|| {
            t.wait("both instances", |s| s.contains(&id) && s.contains(&other));
            t.type_text("/ctf #1");
            t.key("Enter");
            t.wait("only the named one", |s| {
                s.lines()
                    .any(|l| l.contains(&id) && l.contains("EU CTF #1"))
                    && !s.contains(&other)
            });
            t.type_text("q");
        });
    }

    // An empty name clears it.
    ctl.run(&["instance", "rename", &id, ""]).await.success();
    let got = ctl
        .run(&["instance", "get", &id, "-o", "json"])
        .await
        .success()
        .json();
    assert_eq!(got["display_name"], "");
    ctl.shutdown().await;
}
