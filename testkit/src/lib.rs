//! Test sandbox: a master on a temporary SQLite, N spawners and the demo game, all on
//! 127.0.0.1 with OS-chosen ports. Each part can be stopped, restarted or cut off.

pub mod bench;
mod master;
pub mod procstat;
pub mod proxy;
pub mod sim;
pub mod tls;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use exile_api::v1 as pb;
use exile_api::v1::allocation_service_client::AllocationServiceClient;
use exile_api::v1::auth_service_client::AuthServiceClient;
use exile_api::v1::build_service_client::BuildServiceClient;
use exile_api::v1::event_service_client::EventServiceClient;
use exile_api::v1::fleet_service_client::FleetServiceClient;
use exile_api::v1::instance_service_client::InstanceServiceClient;
use exile_api::v1::metrics_service_client::MetricsServiceClient;
use exile_api::v1::settings_service_client::SettingsServiceClient;
use exile_api::v1::spawner_service_client::SpawnerServiceClient;
use exile_api::v1::system_service_client::SystemServiceClient;
use master::RunningMaster;
pub use master::{MasterProcess, spawn_master};
pub use proxy::LinkProxy;

/// Password of the sandbox's `admin` user.
pub const ADMIN_PASSWORD: &str = "sandbox-admin-password";

/// What to start.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    /// Number of spawners.
    pub spawners: usize,
    /// Instances each spawner may run.
    pub capacity: u32,
    /// Heartbeat interval told to spawners.
    pub heartbeat_interval_ms: u64,
    /// Heartbeat TTL of the master.
    pub heartbeat_ttl_ms: u64,
    /// Build command of the spawners instead of the demo game (`{port}` etc. as usual).
    pub build_command: Option<String>,
    /// Host build directory of the spawners (its `exile-build.toml` is the host build's
    /// manifest) instead of the demo game's directory.
    pub build_dir: Option<PathBuf>,
    /// Static dashboard bundle the master serves (`--dashboard-dir`), if any.
    pub dashboard_dir: Option<PathBuf>,
    /// More master flags (e.g. `--fleet-unreachable-grace-ms=2000`).
    pub master_args: Vec<String>,
    /// Run the master as a real `exile-master` subprocess (so it can be killed with SIGKILL)
    /// instead of in this process.
    pub master_process: bool,
    /// Address the master listens on instead of 127.0.0.1, e.g. the host end of a veth pair
    /// so a spawner in another network namespace can reach it (clients use it too).
    pub master_ip: Option<IpAddr>,
    /// Serve the master over TLS with a certificate from the test CA (default: the
    /// `EXILE_TEST_TLS` environment switch, see [`tls::from_env`]).
    pub tls: bool,
    /// With `tls`: the master signs spawners' client certificates with the test CA at
    /// enrollment (`--spawner-ca-cert`/`--spawner-ca-key`).
    pub issue_spawner_certs: bool,
    /// More spawner flags (e.g. `--run-as-uids=63000-63099`), for every spawner.
    pub spawner_args: Vec<String>,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            spawners: 2,
            capacity: 20,
            heartbeat_interval_ms: 200,
            heartbeat_ttl_ms: 1500,
            build_command: None,
            build_dir: None,
            dashboard_dir: None,
            master_args: Vec::new(),
            master_process: false,
            master_ip: None,
            tls: tls::from_env(),
            issue_spawner_certs: false,
            spawner_args: Vec::new(),
        }
    }
}

/// How to run a spawner added with [`Sandbox::add_spawner_process`].
#[derive(Clone, Debug, Default)]
pub struct SpawnerProcessOptions {
    /// Master URL the spawner dials (default: a link proxy in front of the master).
    pub master_url: Option<String>,
    /// Data directory (default: `<sandbox>/<name>`).
    pub data_dir: Option<PathBuf>,
    /// Command the spawner runs under, e.g. `ip netns exec <ns>` (default: none).
    pub wrapper: Vec<String>,
}

struct SandboxSpawner {
    name: String,
    args: Vec<String>,
    /// The link proxy (absent when the spawner dials the master another way).
    proxy: Option<LinkProxy>,
    /// Command the subprocess runs under (see [`SpawnerProcessOptions::wrapper`]).
    wrapper: Vec<String>,
    running: Option<(CancellationToken, JoinHandle<()>)>,
    /// The spawner as a real `exile-spawner` subprocess, when started that way.
    process: Option<std::process::Child>,
}

/// A whole Exile deployment in one process (game servers are real child processes).
pub struct Sandbox {
    dir: tempfile::TempDir,
    /// Where the master listens and clients reach it.
    master_addr: SocketAddr,
    master: Option<RunningMaster>,
    spawners: Vec<SandboxSpawner>,
    opts: SandboxOptions,
    admin_token: String,
    /// Process ids of game servers seen, killed on drop so no test leaves processes behind.
    seen_pids: Mutex<Vec<u32>>,
    /// The CA and server certificate when the master serves TLS.
    certs: Option<tls::SandboxCerts>,
}

/// Bearer-token interceptor for clients.
#[derive(Clone)]
pub struct Bearer(tonic::metadata::MetadataValue<tonic::metadata::Ascii>);

impl Bearer {
    /// From a token (session, API token or spawner credential).
    pub fn new(token: &str) -> Result<Self> {
        Ok(Bearer(
            format!("Bearer {token}")
                .parse()
                .context("token is not valid metadata")?,
        ))
    }
}

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        req.metadata_mut().insert("authorization", self.0.clone());
        Ok(req)
    }
}

/// A channel with a bearer token.
pub type Authed = InterceptedService<Channel, Bearer>;

/// Clients of every control service, all with the same token.
#[derive(Clone)]
pub struct Clients {
    /// AuthService.
    pub auth: AuthServiceClient<Authed>,
    /// SpawnerService.
    pub spawners: SpawnerServiceClient<Authed>,
    /// InstanceService.
    pub instances: InstanceServiceClient<Authed>,
    /// EventService.
    pub events: EventServiceClient<Authed>,
    /// SystemService.
    pub system: SystemServiceClient<Authed>,
    /// BuildService.
    pub builds: BuildServiceClient<Authed>,
    /// FleetService.
    pub fleets: FleetServiceClient<Authed>,
    /// AllocationService.
    pub allocations: AllocationServiceClient<Authed>,
    /// SettingsService.
    pub settings: SettingsServiceClient<Authed>,
    /// MetricsService.
    pub metrics: MetricsServiceClient<Authed>,
}

/// Logs to the test output once per process (RUST_LOG, default warnings only).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Path of the demo game binary, built next to the test binaries.
pub fn demo_game_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test> → target/<profile>/exile-demo-game
    for dir in exe.ancestors().skip(1).take(3) {
        let p = dir.join("exile-demo-game");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("exile-demo-game is not built: run `cargo build --workspace --bins` first")
}

/// Path of the instance supervisor binary, built next to the test binaries.
pub fn supervisor_bin() -> Result<PathBuf> {
    sibling_bin("exile-supervisor")
}

/// Path of the spawner binary, built next to the test binaries.
pub fn spawner_bin() -> Result<PathBuf> {
    sibling_bin("exile-spawner")
}

/// Path of the master binary, built next to the test binaries.
pub fn master_bin() -> Result<PathBuf> {
    sibling_bin("exile-master")
}

fn sibling_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    for dir in exe.ancestors().skip(1).take(3) {
        let p = dir.join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("{name} is not built: run `cargo build --workspace --bins` first")
}

/// Waits until `f` returns Some, polling every 25 ms, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A channel to `addr` (over TLS trusting the test CA when a sandbox master there serves TLS).
pub async fn connect(addr: SocketAddr) -> Result<Channel> {
    Ok(endpoint(addr)?.connect().await?)
}

/// One HTTP/1.1 GET of `path` from the sandbox master at `addr` on a fresh connection (over
/// TLS trusting the test CA when it serves TLS); the whole answer, head and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    http_get_with(addr, path, &[]).await
}

/// [`http_get`] with extra request headers.
pub async fn http_get_with(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    let mut out = Vec::new();
    if tls::is_tls(addr) {
        let ca = tls::test_ca()?.cert.clone();
        let mut h = tls::handshake(addr, ca.as_bytes(), &[b"http/1.1"], None).await?;
        h.stream.write_all(req.as_bytes()).await?;
        // A peer that closes without close_notify is still a complete answer here.
        if let Err(e) = h.stream.read_to_end(&mut out).await
            && e.kind() != std::io::ErrorKind::UnexpectedEof
        {
            return Err(e.into());
        }
    } else {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.write_all(req.as_bytes()).await?;
        s.read_to_end(&mut out).await?;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// The URL of the sandbox master at `addr`: https:// when it serves TLS.
pub fn url_of(addr: SocketAddr) -> String {
    let scheme = if tls::is_tls(addr) { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

/// An endpoint for the master at `addr`, TLS set up as [`connect`] does.
pub fn endpoint(addr: SocketAddr) -> Result<tonic::transport::Endpoint> {
    let e = tonic::transport::Endpoint::from_shared(url_of(addr))?;
    if !tls::is_tls(addr) {
        return Ok(e);
    }
    let client = exile_api::tls::ClientTls {
        ca_pem: Some(tls::test_ca()?.cert.clone().into_bytes()),
        identity: None,
    };
    Ok(client.apply(e)?)
}

/// Clients of every control service with `token`.
pub fn clients(channel: Channel, token: &str) -> Result<Clients> {
    let b = Bearer::new(token)?;
    let svc = || InterceptedService::new(channel.clone(), b.clone());
    Ok(Clients {
        auth: AuthServiceClient::new(svc()),
        spawners: SpawnerServiceClient::new(svc()),
        instances: InstanceServiceClient::new(svc()),
        events: EventServiceClient::new(svc()),
        system: SystemServiceClient::new(svc()),
        builds: BuildServiceClient::new(svc()),
        fleets: FleetServiceClient::new(svc()),
        allocations: AllocationServiceClient::new(svc()),
        settings: SettingsServiceClient::new(svc()),
        metrics: MetricsServiceClient::new(svc()),
    })
}

/// Logs in and returns a session token.
pub async fn login(addr: SocketAddr, username: &str, password: &str) -> Result<String> {
    let mut c = AuthServiceClient::new(connect(addr).await?);
    let r = c
        .login(pb::LoginRequest {
            username: username.into(),
            password: password.into(),
        })
        .await
        .map_err(|s| anyhow!("login failed: {}", s.message()))?;
    Ok(r.into_inner().token)
}

impl Sandbox {
    /// A master alone, with every other option at its default: what tests of the master's
    /// own services start from.
    pub async fn master_only() -> Result<Sandbox> {
        Self::start(SandboxOptions {
            spawners: 0,
            ..Default::default()
        })
        .await
    }

    /// Starts a master and `opts.spawners` enrolled spawners, and waits until all are online.
    pub async fn start(opts: SandboxOptions) -> Result<Sandbox> {
        init_tracing();
        let dir = tempfile::tempdir()?;
        // Others may pass through (not list) it, as through /var/lib, so games that run as
        // users of their own (--run-as-uids) reach their directories.
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o711),
        )?;
        let ip = opts.master_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let listener = tokio::net::TcpListener::bind((ip, 0)).await?;
        let master_addr = listener.local_addr()?;
        let certs = if opts.tls {
            Some(tls::SandboxCerts::write(&dir.path().join("tls"), ip)?)
        } else {
            None
        };
        tls::mark(master_addr, opts.tls);
        let mut sb = Sandbox {
            certs,
            dir,
            master_addr,
            master: None,
            spawners: Vec::new(),
            opts: opts.clone(),
            admin_token: String::new(),
            seen_pids: Mutex::new(Vec::new()),
        };
        sb.master = Some(sb.launch_master(listener).await?);
        sb.admin_token = login(master_addr, "admin", ADMIN_PASSWORD).await?;
        for i in 0..opts.spawners {
            sb.add_spawner(&format!("spawner-{i}")).await?;
        }
        sb.wait_spawners_online(opts.spawners, Duration::from_secs(20))
            .await?;
        Ok(sb)
    }

    /// Enrolls and starts one more spawner named `name` (through its own link proxy).
    pub async fn add_spawner(&mut self, name: &str) -> Result<usize> {
        let index = self
            .enroll_spawner(name, SpawnerProcessOptions::default())
            .await?;
        self.start_spawner(index)?;
        Ok(index)
    }

    /// Enrolls one more spawner named `name` and starts it as a real `exile-spawner`
    /// subprocess as `opts` say. Returns its index and pid.
    pub async fn add_spawner_process(
        &mut self,
        name: &str,
        opts: SpawnerProcessOptions,
    ) -> Result<(usize, u32)> {
        let index = self.enroll_spawner(name, opts).await?;
        let pid = self.start_spawner_process(index)?;
        Ok((index, pid))
    }

    async fn enroll_spawner(&mut self, name: &str, opts: SpawnerProcessOptions) -> Result<usize> {
        let token = self
            .admin()
            .await?
            .spawners
            .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
                ttl_seconds: 600,
                description: name.into(),
            })
            .await?
            .into_inner()
            .secret;
        let (proxy, master_url) = match opts.master_url {
            Some(url) => (None, url),
            None => {
                let proxy = LinkProxy::start(self.master_addr).await?;
                let scheme = if self.certs.is_some() {
                    "https"
                } else {
                    "http"
                };
                let url = format!("{scheme}://{}", proxy.addr);
                (Some(proxy), url)
            }
        };
        let data_dir = opts.data_dir.unwrap_or_else(|| self.dir.path().join(name));
        let game = demo_game_bin()?;
        let index = self.spawners.len();
        let span = self.opts.capacity.max(1) * 3;
        let base = port_base(index, span);
        let mut args = vec![
            "exile-spawner".to_owned(),
            format!("--master={master_url}"),
            format!("--data-dir={}", data_dir.display()),
            format!("--enrollment-token={token}"),
            format!("--name={name}"),
            "--region=local".to_owned(),
            format!("--label=host={name}"),
            format!("--capacity={}", self.opts.capacity),
            format!("--port-range={}-{}", base, base + span),
            // Right after the game ports, a pair per instance (and one to spare).
            format!(
                "--agones-port-range={}-{}",
                base + span + 1,
                base + span + 2 + self.opts.capacity.max(1) * 2
            ),
            "--build-version=demo-1".to_owned(),
            match &self.opts.build_dir {
                Some(dir) => format!("--build-dir={}", dir.display()),
                None => format!(
                    "--build-dir={}",
                    game.parent().unwrap_or(Path::new(".")).display()
                ),
            },
            match &self.opts.build_command {
                Some(command) => format!("--build-command={command}"),
                None => format!("--build-command={} --port {{port}}", game.display()),
            },
            "--stop-grace-period=5".to_owned(),
            format!("--supervisor-bin={}", supervisor_bin()?.display()),
        ];
        if let Some(c) = &self.certs {
            args.push(format!("--ca-file={}", c.ca_file.display()));
        }
        args.extend(self.opts.spawner_args.iter().cloned());
        self.spawners.push(SandboxSpawner {
            name: name.to_owned(),
            args,
            proxy,
            wrapper: opts.wrapper,
            running: None,
            process: None,
        });
        Ok(index)
    }

    /// Starts spawner `i` (again).
    pub fn start_spawner(&mut self, i: usize) -> Result<()> {
        let s = self
            .spawners
            .get_mut(i)
            .ok_or_else(|| anyhow!("no spawner {i}"))?;
        if s.running.is_some() || s.process.is_some() {
            bail!("spawner {i} is running already");
        }
        let config = exile_spawner::Config::try_parse_from(&s.args)?;
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let name = s.name.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = exile_spawner::run(config, c).await {
                tracing::error!(spawner = %name, error = %e, "spawner stopped with an error");
            }
        });
        s.running = Some((cancel, task));
        Ok(())
    }

    /// Stops spawner `i` cleanly; its game servers keep running.
    pub async fn stop_spawner(&mut self, i: usize) -> Result<()> {
        let s = self
            .spawners
            .get_mut(i)
            .ok_or_else(|| anyhow!("no spawner {i}"))?;
        if let Some((cancel, task)) = s.running.take() {
            cancel.cancel();
            tokio::time::timeout(Duration::from_secs(20), task)
                .await
                .context("spawner did not stop")??;
        }
        Ok(())
    }

    /// Starts spawner `i` as a real `exile-spawner` subprocess (same flags and data dir as the
    /// in-process one, which must be stopped); its log goes to `<sandbox>/<name>.log`.
    /// Returns its pid.
    pub fn start_spawner_process(&mut self, i: usize) -> Result<u32> {
        let bin = spawner_bin()?;
        let log_path = self.dir.path().join(format!("spawner-process-{i}.log"));
        let s = self
            .spawners
            .get_mut(i)
            .ok_or_else(|| anyhow!("no spawner {i}"))?;
        if s.running.is_some() || s.process.is_some() {
            bail!("spawner {i} is running already");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)?;
        let mut command = match s.wrapper.split_first() {
            Some((program, wrapper_args)) => {
                let mut c = std::process::Command::new(program);
                c.args(wrapper_args).arg(bin);
                c
            }
            None => std::process::Command::new(bin),
        };
        let child = command
            .args(&s.args[1..])
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("could not start exile-spawner")?;
        let pid = child.id();
        s.process = Some(child);
        Ok(pid)
    }

    /// Kills spawner `i`'s subprocess with SIGKILL (no clean-up at all) and reaps it.
    pub fn kill_spawner_process(&mut self, i: usize) -> Result<()> {
        let s = self
            .spawners
            .get_mut(i)
            .ok_or_else(|| anyhow!("no spawner {i}"))?;
        let mut child = s
            .process
            .take()
            .ok_or_else(|| anyhow!("spawner {i} is not a running subprocess"))?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Cuts spawner `i`'s network path to the master (bytes stop; sockets stay open).
    pub fn cut_link(&self, i: usize) {
        if let Some(p) = self.spawners.get(i).and_then(|s| s.proxy.as_ref()) {
            p.cut();
        }
    }

    /// Restores spawner `i`'s network path.
    pub fn heal_link(&self, i: usize) {
        if let Some(p) = self.spawners.get(i).and_then(|s| s.proxy.as_ref()) {
            p.heal();
        }
    }

    /// The master's gRPC URL (https:// in TLS mode).
    pub fn master_url(&self) -> String {
        let scheme = if self.certs.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.master_addr)
    }

    /// The CA clients must trust, when the master serves TLS.
    pub fn ca_file(&self) -> Option<&Path> {
        self.certs.as_ref().map(|c| c.ca_file.as_path())
    }

    /// The master's certificate files, when it serves TLS.
    pub fn tls_certs(&self) -> Option<&tls::SandboxCerts> {
        self.certs.as_ref()
    }

    /// The master's address.
    pub fn master_addr(&self) -> SocketAddr {
        self.master_addr
    }

    /// Password of `admin`.
    pub fn admin_password(&self) -> &str {
        ADMIN_PASSWORD
    }

    /// A session token of `admin`.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Data directory of spawner `i`.
    pub fn spawner_data_dir(&self, i: usize) -> Option<PathBuf> {
        let s = self.spawners.get(i)?;
        s.args
            .iter()
            .find_map(|a| a.strip_prefix("--data-dir="))
            .map(PathBuf::from)
    }

    /// The sandbox's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Clients logged in as `admin`.
    pub async fn admin(&self) -> Result<Clients> {
        clients(connect(self.master_addr).await?, &self.admin_token)
    }

    /// Clients holding a new API token `name` of `role` (made by `admin`, valid an hour),
    /// and its secret.
    pub async fn clients_with_role(&self, name: &str, role: pb::Role) -> Result<(Clients, String)> {
        let secret = self
            .admin()
            .await?
            .auth
            .create_api_token(pb::CreateApiTokenRequest {
                name: name.into(),
                role: role as i32,
                ttl_seconds: 3600,
            })
            .await?
            .into_inner()
            .secret;
        Ok((clients(connect(self.master_addr).await?, &secret)?, secret))
    }

    /// Name of spawner `i`.
    pub fn spawner_name(&self, i: usize) -> &str {
        self.spawners.get(i).map_or("", |s| s.name.as_str())
    }

    /// Ids of all spawners, in the order they were added.
    pub async fn spawner_ids(&self) -> Result<Vec<String>> {
        let list = self
            .admin()
            .await?
            .spawners
            .list_spawners(pb::ListSpawnersRequest::default())
            .await?
            .into_inner();
        self.spawners
            .iter()
            .map(|s| {
                list.spawners
                    .iter()
                    .find(|x| x.name == s.name)
                    .map(|x| x.id.clone())
                    .ok_or_else(|| anyhow!("spawner {} is not registered", s.name))
            })
            .collect()
    }

    /// Waits until `n` spawners are online.
    pub async fn wait_spawners_online(&self, n: usize, timeout: Duration) -> Result<()> {
        let admin = self.admin().await?;
        eventually(&format!("{n} spawners online"), timeout, || {
            let mut c = admin.spawners.clone();
            async move {
                let l = c
                    .list_spawners(pb::ListSpawnersRequest::default())
                    .await
                    .ok()?
                    .into_inner();
                let online = l
                    .spawners
                    .iter()
                    .filter(|s| s.state == pb::SpawnerState::Online as i32)
                    .count();
                (online >= n).then_some(())
            }
        })
        .await
    }

    /// Lists instances as admin and remembers their pids for clean-up.
    pub async fn instances(&self) -> Result<Vec<pb::Instance>> {
        let l = self
            .admin()
            .await?
            .instances
            .list_instances(pb::ListInstancesRequest::default())
            .await?
            .into_inner();
        let mut seen = self.seen_pids.lock().unwrap_or_else(|e| e.into_inner());
        seen.extend(l.instances.iter().map(|i| i.pid).filter(|p| *p > 1));
        Ok(l.instances)
    }

    /// Stops everything; game servers of the sandbox are killed.
    pub async fn shutdown(mut self) {
        let _ = self.instances().await;
        for i in 0..self.spawners.len() {
            let _ = self.stop_spawner(i).await;
        }
        let _ = self.stop_master().await;
        self.kill_seen();
    }

    fn kill_seen(&self) {
        let pids = std::mem::take(&mut *self.seen_pids.lock().unwrap_or_else(|e| e.into_inner()));
        for pid in pids {
            if let Ok(pid) = i32::try_from(pid) {
                // Each game server leads its own process group.
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        // A launch that raced the shutdown (a fleet still filling up, a rollout's next
        // replacement) left a game nobody listed: every supervisor works in its instance's
        // directory and every game in its data directory, all under this sandbox's.
        kill_working_under(self.dir.path());
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for s in &mut self.spawners {
            if let Some((c, _)) = s.running.take() {
                c.cancel();
            }
            if let Some(mut child) = s.process.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        match self.master.take() {
            Some(RunningMaster::InProcess { shutdown, .. }) => shutdown.cancel(),
            Some(RunningMaster::Process(mut child)) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            None => {}
        }
        self.kill_seen();
        if self.certs.is_some() {
            tls::mark(self.master_addr, false);
        }
    }
}

/// Kills (SIGKILL) every process whose working directory is under `root`.
fn kill_working_under(root: &Path) {
    let Ok(root) = std::fs::canonicalize(root) else {
        return;
    };
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let me = std::process::id();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        let under =
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd.starts_with(&root));
        if let (true, Ok(pid)) = (under, i32::try_from(pid)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// First game port of the `index`th spawner of a sandbox: random so parallel sandboxes
/// rarely meet (the allocator checks every port anyway), and below the kernel's range for
/// outgoing connections, where a test's own connections could take a game's port between
/// its allocation and the game's bind.
fn port_base(index: usize, span: u32) -> u32 {
    let top = exile_spawner::ports::ephemeral_range()
        .map(|r| u32::from(*r.start()))
        .filter(|&lo| lo >= 20_000)
        .unwrap_or(65_000);
    // Five slots of 2,000 ports for a sandbox's spawners, the random offset below the rest.
    let room = top.saturating_sub(10_000 + 10_000 + span).max(100);
    10_000 + (rand_u32() % room) / 100 * 100 + (index as u32 % 5) * 2_000
}

fn rand_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    t ^ std::process::id().wrapping_mul(2_654_435_761)
}
