//! Load figures for `exilectl top`: a real master (the built `exile-master`) holding a fleet
//! of simulated spawners' instances (default 50 × 20 = 1,000), changed at a steady rate
//! (default 100 instance events/s, plus each spawner's heartbeat every second), followed
//! by the real `exilectl top` in a tmux pseudo-terminal. It prints how long an event takes
//! to show on the screen (the master's fan-out, the stream, top's update and redraw, and
//! tmux's own drawing, p50/p99 over probes of a visible row), and top's CPU and RSS.
//!
//! `cargo build --release -p exile-master -p exilectl -p exile-testkit --bins`
//! `target/release/exile-bench-top --seconds 30`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use tokio::sync::mpsc;

use exile_api::v1 as pb;
use exile_testkit::MasterProcess;
use exile_testkit::procstat::{peak_rss, proc_usage};
use exile_testkit::sim::{Fleet, SimSpawner};

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
    let master = MasterProcess::start(Some(bins.join("exile-master")), 1000, 5000, &[]).await?;
    let tmux = Tmux {
        socket: master.dir().join("tmux.sock"),
    };
    let result = run(&args, &master, &bins, &tmux).await;
    let _ = tmux.cmd().arg("kill-server").output();
    result
}

async fn run(args: &Args, master: &MasterProcess, bins: &Path, tmux: &Tmux) -> Result<()> {
    let (addr, token, dir) = (master.addr(), master.token(), master.dir());
    let admin = master.admin().await?;
    let mut links = Vec::new();
    let mut specs = Vec::new();
    for i in 0..args.spawners {
        let instances = (0..args.instances).map(|j| status(i, j, 0, 1)).collect();
        let mut spec = SimSpawner::new(&format!("bench-{i:03}"), instances, Duration::from_secs(1));
        spec.host = pb::Resources {
            cpu_percent: 150.0,
            memory_bytes: 8 << 30,
            memory_total_bytes: 32 << 30,
            disk_used_bytes: 100 << 30,
            disk_total_bytes: 500 << 30,
            cpu_count: 16,
        };
        let (tx, rx) = mpsc::channel(256);
        spec.events = Some(rx);
        links.push(tx);
        specs.push(spec);
    }
    let fleet = Fleet::start(&admin, addr, specs, args.spawners.max(1)).await?;
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
    fleet.stop().await?;

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
fn status(spawner: usize, j: usize, players: u32, revision: u64) -> pb::InstanceStatus {
    pb::InstanceStatus {
        id: format!("inst-bench-{spawner:03}-{j:02}"),
        state: pb::InstanceState::Running as i32,
        build_version: "bench".into(),
        pid: 100_000 + u32::try_from(j).unwrap_or(0),
        players,
        max_players: 0,
        revision,
        ..Default::default()
    }
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
