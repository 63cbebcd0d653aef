//! Load figures for `exilectl top`: a real master (the built `exile-master`) holding a fleet
//! of simulated spawners' instances (default 50 × 20 = 1,000), changed at a steady rate
//! (default 100 instance events/s, plus each spawner's heartbeat every second), followed
//! by the real `exilectl top` in a tmux pseudo-terminal. It prints how long an event takes
//! to show on the screen (the master's fan-out, the stream, top's update and redraw, and
//! tmux's own drawing, p50/p99 over probes of a visible row), and top's CPU and RSS.
//!
//! `cargo build --release -p exile-master -p exilectl -p exile-testkit --bins`
//! `target/release/exile-bench-top --seconds 30`

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use exile_api::v1 as pb;
use exile_api::v1::spawner_link_client::SpawnerLinkClient;
use exile_testkit::procstat::{peak_rss, proc_usage};
use exile_testkit::{Bearer, clients, connect, login};

/// `exilectl top` under a busy fleet.
#[derive(Parser, Debug)]
struct Args {
    /// Simulated spawners.
    #[arg(long, default_value_t = 50)]
    spawners: usize,
    /// Instances per spawner.
    #[arg(long, default_value_t = 20)]
    instances: usize,
    /// Instance events per second across the fleet.
    #[arg(long, default_value_t = 100)]
    events_per_sec: u64,
    /// How long to measure.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Directory holding exile-master and exilectl (default: this binary's).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

const PASSWORD: &str = "bench-top-password";

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bins = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .ok_or_else(|| anyhow!("no directory"))?
            .to_owned(),
    };
    let dir = tempfile::tempdir()?;
    let mut master = Command::new(bins.join("exile-master"))
        .args([
            "--listen=127.0.0.1:0",
            &format!("--admin-password={PASSWORD}"),
        ])
        .arg(format!("--data-dir={}", dir.path().display()))
        .args(["--heartbeat-interval-ms=1000", "--heartbeat-ttl-ms=5000"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .context("start exile-master (build it first)")?;
    let stdout = master.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().ok_or_else(|| anyhow!("master exited"))??;
        if let Some(a) = line.strip_prefix("Exile master listening on http://") {
            break a.trim().parse()?;
        }
    };
    let tmux = Tmux {
        socket: dir.path().join("tmux.sock"),
    };
    let result = run(&args, addr, &bins, dir.path(), &tmux).await;
    let _ = tmux.cmd().arg("kill-server").output();
    let _ = master.kill();
    let _ = master.wait();
    result
}

async fn run(args: &Args, addr: SocketAddr, bins: &Path, dir: &Path, tmux: &Tmux) -> Result<()> {
    let token = login(addr, "admin", PASSWORD).await?;
    let admin = clients(connect(addr).await?, &token)?;
    let mut enroll = SpawnerLinkClient::new(connect(addr).await?);
    let mut links = Vec::new();
    let channel = connect(addr).await?;
    for i in 0..args.spawners {
        let secret = admin
            .spawners
            .clone()
            .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
                ttl_seconds: 600,
                description: String::new(),
            })
            .await?
            .into_inner()
            .secret;
        let cred = enroll
            .enroll(pb::EnrollRequest {
                token: secret,
                name: format!("bench-{i:03}"),
                host: format!("bench-{i:03}"),
            })
            .await?
            .into_inner()
            .credential;
        links.push(spawner(channel.clone(), &cred, i, args.instances).await?);
    }
    let total = args.spawners * args.instances;
    println!("fleet: {} spawners, {total} instances", args.spawners);

    // The real top, exec'd so the pane's process is top itself.
    let ctl = bins.join("exilectl");
    let cmd = format!(
        "exec env EXILECTL_CONFIG='{}' EXILE_MASTER='http://{addr}' EXILE_TOKEN='{token}' '{}' top",
        dir.join("config.toml").display(),
        ctl.display()
    );
    tmux.start(160, 50, &cmd)?;
    tmux.wait(Duration::from_secs(30), |s| {
        s.contains("● live") && s.contains(&format!("Instances {total}"))
    })
    .context("top never showed the whole fleet")?;
    let pid: u32 = tmux.query("#{pane_pid}")?.parse()?;

    // Background churn: `events_per_sec` status changes, round robin over the fleet.
    let stop = tokio_util::sync::CancellationToken::new();
    let churn = {
        let (links, stop, rate) = (links.clone(), stop.clone(), args.events_per_sec.max(1));
        let per = args.instances;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
            let mut n: u64 = 0;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return n,
                    _ = tick.tick() => {}
                }
                // Instance 0 of spawner 0 is the probe; churn leaves it alone.
                let k = 1 + (n as usize % (links.len() * per - 1));
                let (s, j) = (k / per, k % per);
                let _ = links[s].send(status(s, j, (n % 500) as u32, n + 2)).await;
                n += 1;
            }
        })
    };

    // Probes: change the first row's players and time until the screen shows it.
    let (t0, _) = proc_usage(pid)?;
    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut revision = 1_000_000u64;
    while start.elapsed() < Duration::from_secs(args.seconds) {
        revision += 1;
        let players = 7000 + u32::try_from(latencies.len() % 2000).unwrap_or(0);
        let want = players.to_string();
        let sent = Instant::now();
        links[0].send(status(0, 0, players, revision)).await?;
        let shown = tmux.wait(Duration::from_secs(5), |s| {
            s.lines()
                .find(|l| l.contains("│inst-bench-000-00 "))
                .is_some_and(|row| row.split_whitespace().any(|w| w == want))
        });
        match shown {
            Ok(_) => latencies.push(sent.elapsed()),
            Err(e) => bail!("probe {players} never showed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (t1, rss) = proc_usage(pid)?;
    let hwm = peak_rss(pid)?;
    let elapsed = start.elapsed().as_secs_f64();
    stop.cancel();
    let churned = churn.await?;

    latencies.sort();
    let pick = |q: f64| {
        // The q-quantile by rank; the list is never empty past the loop above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[i].as_secs_f64() * 1000.0
    };
    #[allow(clippy::cast_precision_loss)]
    let cpu = (t1 - t0) as f64 / 100.0 / elapsed * 100.0;
    #[allow(clippy::cast_precision_loss)]
    let rate = churned as f64 / elapsed;
    println!(
        "events: {rate:.0} instance events/s + {} heartbeats/s for {elapsed:.0} s",
        args.spawners
    );
    println!(
        "redraw latency (event sent → on screen), {} probes: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
    println!(
        "exilectl top: CPU {cpu:.1}% of one core, RSS {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / 1048576.0,
        hwm as f64 / 1048576.0
    );
    println!("targets (issue 10): p99 < 100 ms, < 5% of a core, < 30 MiB");
    Ok(())
}

/// One instance's status as its spawner reports it.
fn status(spawner: usize, j: usize, players: u32, revision: u64) -> pb::SpawnerMessage {
    pb::SpawnerMessage {
        kind: Some(pb::spawner_message::Kind::InstanceEvent(
            pb::InstanceEvent {
                status: Some(pb::InstanceStatus {
                    id: format!("inst-bench-{spawner:03}-{j:02}"),
                    state: pb::InstanceState::Running as i32,
                    build_version: "bench".into(),
                    pid: 100_000 + u32::try_from(j).unwrap_or(0),
                    players,
                    max_players: 0,
                    revision,
                    ..Default::default()
                }),
                removed: false,
            },
        )),
    }
}

/// Links one simulated spawner with `n` running instances and heartbeats every second;
/// returns the sender for its further messages.
async fn spawner(
    ch: tonic::transport::Channel,
    cred: &str,
    index: usize,
    n: usize,
) -> Result<mpsc::Sender<pb::SpawnerMessage>> {
    let mut client = SpawnerLinkClient::with_interceptor(ch, Bearer::new(cred)?);
    let (tx, rx) = mpsc::channel::<pb::SpawnerMessage>(256);
    let instances = (0..n)
        .map(|j| match status(index, j, 0, 1).kind {
            Some(pb::spawner_message::Kind::InstanceEvent(e)) => e.status.unwrap_or_default(),
            _ => pb::InstanceStatus::default(),
        })
        .collect();
    tx.send(pb::SpawnerMessage {
        kind: Some(pb::spawner_message::Kind::Hello(pb::Hello {
            region: "bench".into(),
            host: format!("bench-{index:03}"),
            advertised_address: "127.0.0.1".into(),
            capacity: u32::try_from(n.max(1)).unwrap_or(1),
            agent_version: "bench".into(),
            active_build: "bench".into(),
            instances,
            name: format!("bench-{index:03}"),
            ..Default::default()
        })),
    })
    .await?;
    let mut inbound = client
        .link(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let beats = tx.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                m = inbound.next() => if m.is_none() { return },
                _ = tick.tick() => {
                    let hb = pb::Heartbeat {
                        host: Some(pb::Resources { cpu_percent: 150.0, memory_bytes: 8 << 30, memory_total_bytes: 32 << 30, disk_used_bytes: 100 << 30, disk_total_bytes: 500 << 30, cpu_count: 16 }),
                        instances: vec![],
                    };
                    if beats.send(pb::SpawnerMessage { kind: Some(pb::spawner_message::Kind::Heartbeat(hb)) }).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    Ok(tx)
}

/// A private tmux server to run top in.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).args(["-f", "/dev/null"]);
        c
    }

    fn start(&self, width: u16, height: u16, shell_command: &str) -> Result<()> {
        let out = self
            .cmd()
            .args(["new-session", "-d", "-s", "b", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .arg(shell_command)
            .env("TERM", "xterm-256color")
            .output()
            .context("run tmux (is it installed?)")?;
        if !out.status.success() {
            bail!("tmux new-session: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }

    fn query(&self, format: &str) -> Result<String> {
        let out = self
            .cmd()
            .args(["display-message", "-p", "-t", "b", format])
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Polls the screen every 2 ms until `ok` holds.
    fn wait(&self, limit: Duration, ok: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Instant::now() + limit;
        loop {
            let out = self
                .cmd()
                .args(["capture-pane", "-p", "-t", "b"])
                .output()?;
            let screen = String::from_utf8_lossy(&out.stdout).into_owned();
            if ok(&screen) {
                return Ok(screen);
            }
            if Instant::now() > deadline {
                bail!("timed out; screen:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
