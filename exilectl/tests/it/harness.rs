//! Runs the exilectl binary with its own config file, from async tests, without blocking
//! the runtime that hosts the sandbox.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use exile_testkit::{Sandbox, SandboxOptions};

/// A sandbox plus an exilectl config file of its own.
pub struct Ctl {
    pub sb: Sandbox,
    pub dir: tempfile::TempDir,
}

/// What one run printed.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Fails the test with both streams when the command failed.
    #[track_caller]
    pub fn success(self) -> Self {
        assert!(self.ok, "exilectl failed: {self:#?}");
        self
    }

    /// Fails the test when the command succeeded; checks the exit code is a documented one
    /// (1 to 6, see `exilectl --help`).
    #[track_caller]
    pub fn failure(self) -> Self {
        assert!(!self.ok, "exilectl should have failed: {self:#?}");
        assert!(matches!(self.code, Some(1..=6)), "{self:#?}");
        self
    }

    /// Fails the test unless the command failed with exit code `code`.
    #[track_caller]
    pub fn failure_code(self, code: i32) -> Self {
        assert_eq!(self.code, Some(code), "{self:#?}");
        self
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

impl Ctl {
    pub async fn start() -> Ctl {
        let sb = Sandbox::start(SandboxOptions {
            spawners: 2,
            ..Default::default()
        })
        .await
        .expect("sandbox starts");
        Ctl {
            sb,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("exile/config.toml")
    }

    /// A command with a clean environment apart from the config path.
    pub fn command(&self, args: &[&str]) -> std::process::Command {
        command(&self.config_path(), args)
    }

    /// Runs exilectl with `args` and `env`, feeding `stdin`.
    pub async fn run_with(&self, args: &[&str], env: &[(&str, &str)], stdin: &str) -> Run {
        let mut cmd = assert_cmd::Command::from_std(self.command(args));
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.write_stdin(stdin.to_owned())
            .timeout(Duration::from_secs(60));
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .expect("join")
            .expect("exilectl runs");
        to_run(out)
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        self.run_with(args, &[], "").await
    }

    /// Logs in as admin through stdin, as a script would.
    pub async fn login(&self) {
        let url = self.sb.master_url();
        let mut args = vec!["login", "--master", &url, "--password-stdin"];
        let ca = self.sb.ca_file().map(|p| p.display().to_string());
        if let Some(ca) = &ca {
            args.extend(["--ca-file", ca]);
        }
        self.run_with(&args, &[], &format!("{}\n", self.sb.admin_password()))
            .await
            .success();
    }

    /// Runs `instance spawn <args> -o json`, which must succeed, and returns the instance.
    pub async fn spawn(&self, args: &[&str]) -> serde_json::Value {
        let args = [&["instance", "spawn"], args, &["-o", "json"]].concat();
        self.run(&args).await.success().json()
    }

    /// Spawns an instance on `spawner` and returns its id.
    pub async fn spawn_on(&self, spawner: &str) -> String {
        let spawned = self.spawn(&["--spawner", spawner]).await;
        spawned["id"]
            .as_str()
            .expect("the instance has an id")
            .to_owned()
    }

    /// Polls `instance get` until the state is one of `states` (20 s at most).
    pub async fn wait_state(&self, id: &str, states: &[&str]) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let inst = self
                .run(&["instance", "get", id, "-o", "json"])
                .await
                .success()
                .json();
            if states.iter().any(|s| inst["state"] == *s) {
                return inst;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never reached {states:?}: {inst:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn shutdown(self) {
        self.sb.shutdown().await;
    }
}

pub fn command(config: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_exilectl"));
    cmd.args(args)
        .env("EXILECTL_CONFIG", config)
        .env_remove("EXILE_MASTER")
        .env_remove("EXILE_TOKEN")
        .env_remove("EXILE_PASSWORD");
    cmd
}

pub fn to_run(out: Output) -> Run {
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
