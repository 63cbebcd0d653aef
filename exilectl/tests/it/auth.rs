//! login/logout/whoami/contexts, tokens and roles, unreachable masters.

use crate::harness::{Ctl, command, to_run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_stores_a_private_context_and_logout_forgets_it() {
    let ctl = Ctl::start().await;
    let url = ctl.sb.master_url();

    let bad = ctl
        .run_with(
            &["login", "--master", &url, "--password-stdin"],
            &[],
            "wrong-password\n",
        )
        .await
        .failure();
    assert!(bad.stderr.starts_with("error: login failed"), "{bad:#?}");
    assert_eq!(bad.stderr.lines().count(), 1, "one sentence: {bad:#?}");
    assert!(!ctl.config_path().exists(), "a failed login stores nothing");

    let ok = ctl
        .run_with(
            &["login", "--master", &url, "--context", "dev"],
            &[("EXILE_PASSWORD", ctl.sb.admin_password())],
            "",
        )
        .await
        .success();
    assert!(
        ok.stdout.starts_with(&format!(
            "Logged in to {url} as admin (admin), session expires "
        )),
        "{ok:#?}"
    );

    let text = std::fs::read_to_string(ctl.config_path()).unwrap();
    let cfg: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(cfg["current"].as_str(), Some("dev"));
    let ctx = &cfg["context"][0];
    assert_eq!(ctx["master"].as_str(), Some(url.as_str()));
    let token = ctx["token"].as_str().unwrap().to_owned();
    assert!(!token.is_empty());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ctl.config_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let who = ctl.run(&["whoami", "-o", "json"]).await.success().json();
    assert_eq!(who["subject"], "admin");
    assert_eq!(who["role"], "admin");
    assert_eq!(who["kind"], "session");

    let list = ctl.run(&["context", "list", "-o", "json"]).await.success();
    assert!(!list.stdout.contains(&token), "tokens are never printed");
    assert_eq!(list.json()[0]["current"], true);

    ctl.run(&["logout"]).await.success();
    let after = ctl.run(&["whoami"]).await.failure();
    assert_eq!(
        after.stderr.trim(),
        "error: not logged in or session expired: run `exilectl login`"
    );
    // The revoked token no longer works even when given explicitly.
    let revoked = ctl
        .run_with(&["whoami"], &[("EXILE_TOKEN", &token)], "")
        .await
        .failure();
    assert!(revoked.stderr.contains("not logged in"), "{revoked:#?}");

    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_token_can_read_but_not_spawn() {
    let ctl = Ctl::start().await;
    ctl.login().await;

    let created = ctl
        .run(&[
            "token", "create", "ci", "--role", "viewer", "--ttl", "1d", "-o", "json",
        ])
        .await
        .success()
        .json();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["token"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["token"]["role"], "viewer");

    let tokens = ctl.run(&["token", "list", "-o", "json"]).await.success();
    assert!(!tokens.stdout.contains(&secret), "list never shows secrets");
    assert!(
        tokens
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == id.as_str())
    );

    let env = [("EXILE_TOKEN", secret.as_str())];
    let spawners = ctl
        .run_with(&["spawners", "ls", "-o", "json"], &env, "")
        .await
        .success();
    assert_eq!(spawners.json().as_array().unwrap().len(), 2);

    let denied = ctl
        .run_with(&["instance", "spawn", "--region", "local"], &env, "")
        .await
        .failure();
    assert!(
        denied.stderr.starts_with("error: permission denied: "),
        "{denied:#?}"
    );
    assert!(!denied.stderr.contains(&secret), "{denied:#?}");

    ctl.run(&["token", "revoke", &id]).await.success();
    let revoked = ctl.run_with(&["spawner", "list"], &env, "").await.failure();
    assert!(
        revoked.stderr.contains("not logged in or session expired"),
        "{revoked:#?}"
    );

    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_master_is_one_readable_sentence() {
    let dir = tempfile::tempdir().unwrap();
    // A port that nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("config.toml");
    let out = tokio::task::spawn_blocking(move || {
        command(&config, &["--master", &url, "--timeout", "5s", "stats"]).output()
    })
    .await
    .unwrap()
    .unwrap();
    let run = to_run(out).failure();
    assert!(
        run.stderr.starts_with(&format!(
            "error: cannot reach the master at http://127.0.0.1:{port}: "
        )),
        "{run:#?}"
    );

    let none = tokio::task::spawn_blocking({
        let config = dir.path().join("config.toml");
        move || command(&config, &["spawner", "list"]).output()
    })
    .await
    .unwrap()
    .unwrap();
    let run = to_run(none).failure();
    assert!(
        run.stderr.contains("exilectl login --master URL"),
        "{run:#?}"
    );
}
