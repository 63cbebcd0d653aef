//! The sandbox's master: in this process, or as a real `exile-master` subprocess that can be
//! killed with SIGKILL; started, stopped and restarted on the same address and database.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{ADMIN_PASSWORD, Clients, Sandbox, clients, connect, eventually, login, master_bin};

/// The master the sandbox runs now.
pub(crate) enum RunningMaster {
    InProcess {
        shutdown: CancellationToken,
        done: JoinHandle<()>,
    },
    Process(std::process::Child),
}

impl Sandbox {
    fn master_args(&self) -> Vec<String> {
        let mut args = vec![
            "exile-master".to_owned(),
            format!("--listen={}", self.master_addr),
            format!("--data-dir={}", self.dir.path().join("master").display()),
            format!("--admin-password={ADMIN_PASSWORD}"),
            format!(
                "--heartbeat-interval-ms={}",
                self.opts.heartbeat_interval_ms
            ),
            format!("--heartbeat-ttl-ms={}", self.opts.heartbeat_ttl_ms),
            "--command-timeout-secs=20".to_owned(),
        ];
        match &self.certs {
            Some(c) => {
                args.push(format!("--tls-cert={}", c.cert.display()));
                args.push(format!("--tls-key={}", c.key.display()));
                if self.opts.issue_spawner_certs {
                    args.push(format!("--spawner-ca-cert={}", c.ca_file.display()));
                    args.push(format!("--spawner-ca-key={}", c.ca_key.display()));
                }
            }
            // A master on the host end of a veth pair (chaos tests) is not on loopback.
            None if !self.master_addr.ip().is_loopback() => {
                args.push("--insecure-listen".to_owned());
            }
            None => {}
        }
        if let Some(d) = &self.opts.dashboard_dir {
            args.push(format!("--dashboard-dir={}", d.display()));
        }
        args.extend(self.opts.master_args.iter().cloned());
        args
    }

    pub(crate) async fn launch_master(
        &self,
        listener: tokio::net::TcpListener,
    ) -> Result<RunningMaster> {
        if self.opts.master_process {
            // The subprocess binds the same address itself.
            drop(listener);
            return self.launch_master_process().await;
        }
        let config = exile_master::Config::try_parse_from(self.master_args())?;
        let shutdown = CancellationToken::new();
        let master = exile_master::start(config, listener, shutdown.clone()).await?;
        let done = tokio::spawn(master.wait());
        Ok(RunningMaster::InProcess { shutdown, done })
    }

    /// Starts `exile-master` on the sandbox's address and data dir and waits until it serves.
    async fn launch_master_process(&self) -> Result<RunningMaster> {
        let args = self.master_args();
        let log = self.dir.path().join("master-process.log");
        let child = spawn_master(
            &master_bin()?,
            &args[1..],
            self.master_addr,
            ADMIN_PASSWORD,
            "info,sqlx=warn,sea_orm=warn",
            &log,
        )
        .await?;
        Ok(RunningMaster::Process(child))
    }

    /// Stops the master (clean shutdown; SIGTERM for a subprocess).
    pub async fn stop_master(&mut self) -> Result<()> {
        match self.master.take() {
            Some(RunningMaster::InProcess { shutdown, done }) => {
                shutdown.cancel();
                tokio::time::timeout(Duration::from_secs(20), done)
                    .await
                    .context("master did not stop")??;
            }
            Some(RunningMaster::Process(mut child)) => {
                if let Ok(pid) = i32::try_from(child.id()) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
                let deadline = Instant::now() + Duration::from_secs(20);
                while child.try_wait()?.is_none() {
                    if Instant::now() >= deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        bail!("exile-master did not stop within 20 s of SIGTERM");
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Kills the master subprocess with SIGKILL (no clean-up at all) and reaps it. Needs
    /// `master_process`.
    pub fn kill_master(&mut self) -> Result<()> {
        match self.master.take() {
            Some(RunningMaster::Process(mut child)) => {
                child.kill()?;
                child.wait()?;
                Ok(())
            }
            other => {
                self.master = other;
                bail!("the master is not a running subprocess (set master_process)")
            }
        }
    }

    /// Process id of the master subprocess, if it runs as one.
    pub fn master_pid(&self) -> Option<u32> {
        match &self.master {
            Some(RunningMaster::Process(child)) => Some(child.id()),
            _ => None,
        }
    }

    /// Starts the master again on the same address and database.
    pub async fn start_master(&mut self) -> Result<()> {
        if self.master.is_some() {
            bail!("master is running already");
        }
        let addr = self.master_addr;
        let listener = eventually(
            "the master's port to be free",
            Duration::from_secs(10),
            || async move { tokio::net::TcpListener::bind(addr).await.ok() },
        )
        .await?;
        self.master = Some(self.launch_master(listener).await?);
        Ok(())
    }
}

/// Starts `bin` (an `exile-master`) with `args`, which must make it listen on `addr`, its
/// output (at `rust_log` level) appended to `log_path`, and waits until it serves (a login as `admin` with `password`
/// works; the binary binds before it opens its database). Fails with the log if it exits
/// first.
pub async fn spawn_master(
    bin: &Path,
    args: &[String],
    addr: SocketAddr,
    password: &str,
    rust_log: &str,
    log_path: &Path,
) -> Result<std::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    let mut child = std::process::Command::new(bin)
        .args(args)
        .env("RUST_LOG", rust_log)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("could not start {}", bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            bail!("exile-master exited at start ({status}):\n{log}");
        }
        let served = tokio::time::timeout(Duration::from_secs(5), login(addr, "admin", password));
        if let Ok(Ok(_)) = served.await {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("exile-master did not serve on {addr} within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A real `exile-master` process of its own for a load tool: a free loopback port, a
/// temporary data directory, an `admin` logged in. Killed when dropped.
pub struct MasterProcess {
    child: std::process::Child,
    addr: SocketAddr,
    token: String,
    dir: tempfile::TempDir,
}

impl MasterProcess {
    /// Starts `bin` (default: the `exile-master` built next to this program) with these
    /// heartbeat settings and `extra` flags; its log goes to `master.log` in its data dir.
    pub async fn start(
        bin: Option<PathBuf>,
        heartbeat_interval_ms: u64,
        heartbeat_ttl_ms: u64,
        extra: &[String],
    ) -> Result<MasterProcess> {
        const PASSWORD: &str = "load-tool-admin-password";
        let bin = match bin {
            Some(b) => b,
            None => master_bin()?,
        };
        let dir = tempfile::tempdir()?;
        // A free port: bound, read and released for the master to bind (loopback only).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let mut args = vec![
            format!("--listen={addr}"),
            format!("--data-dir={}", dir.path().join("data").display()),
            format!("--admin-password={PASSWORD}"),
            format!("--heartbeat-interval-ms={heartbeat_interval_ms}"),
            format!("--heartbeat-ttl-ms={heartbeat_ttl_ms}"),
        ];
        args.extend(extra.iter().cloned());
        let log = dir.path().join("master.log");
        let child = spawn_master(&bin, &args, addr, PASSWORD, "warn", &log).await?;
        let token = login(addr, "admin", PASSWORD).await?;
        Ok(MasterProcess {
            child,
            addr,
            token,
            dir,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A session token of `admin`.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Its temporary directory (data and log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Clients logged in as `admin`, on a new connection.
    pub async fn admin(&self) -> Result<Clients> {
        clients(connect(self.addr).await?, &self.token)
    }
}

impl Drop for MasterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
