//! Load generator for the master: many simulated spawners, each holding a real `Link` stream
//! with a hello carrying its instances and heartbeats every interval. It starts its own master
//! process (the built `exile-master`), measures that process's CPU and memory idle (baseline)
//! and under load in the same run, and prints the figures. Loopback only; it stops by itself.
//!
//! `cargo run --release -p exile-testkit --bin exile-loadgen -- --spawners 5000 --instances 20`

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use clap::Parser;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

use exile_api::v1 as pb;
use exile_api::v1::spawner_link_client::SpawnerLinkClient;
use exile_testkit::procstat::proc_usage;
use exile_testkit::{Bearer, clients, connect, login};

/// Simulated spawners against a real master.
#[derive(Parser, Debug)]
struct Args {
    /// Number of simulated spawners.
    #[arg(long, default_value_t = 500)]
    spawners: usize,
    /// Instances reported by each spawner.
    #[arg(long, default_value_t = 20)]
    instances: usize,
    /// Heartbeat interval.
    #[arg(long, default_value_t = 5000)]
    interval_ms: u64,
    /// How long to measure under load.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Link streams per HTTP/2 connection.
    #[arg(long, default_value_t = 50)]
    streams_per_connection: usize,
    /// The master binary (default: next to this one).
    #[arg(long)]
    master_bin: Option<PathBuf>,
}

/// CPU use of `pid` over `d`, in percent of one core, and its RSS at the end. With `report`,
/// prints the CPU and RSS of every 30 s slice too, so growth over a long run shows.
async fn cpu_over(pid: u32, d: Duration, report: bool) -> Result<(f64, u64)> {
    const TICKS_PER_S: f64 = 100.0; // USER_HZ on Linux
    const SLICE: Duration = Duration::from_secs(30);
    let (t0, _) = proc_usage(pid)?;
    let start = Instant::now();
    let (mut slice_ticks, mut slice_start) = (t0, start);
    loop {
        let left = d.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(left.min(SLICE)).await;
        if report && !d.saturating_sub(start.elapsed()).is_zero() {
            let (t, rss) = proc_usage(pid)?;
            #[allow(clippy::cast_precision_loss)]
            let pct = (t - slice_ticks) as f64 / TICKS_PER_S / slice_start.elapsed().as_secs_f64()
                * 100.0;
            println!(
                "  at {:>4} s: CPU {pct:5.1}% of a core, RSS {:.1} MiB",
                start.elapsed().as_secs(),
                rss as f64 / 1048576.0
            );
            (slice_ticks, slice_start) = (t, Instant::now());
        }
    }
    let (t1, rss) = proc_usage(pid)?;
    #[allow(clippy::cast_precision_loss)]
    let pct = (t1 - t0) as f64 / TICKS_PER_S / start.elapsed().as_secs_f64() * 100.0;
    Ok((pct, rss))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let bin = match &args.master_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("exile-master"),
    };
    let mut child = Command::new(&bin)
        .args(["--listen=127.0.0.1:0", "--admin-password=loadgen-password"])
        .arg(format!("--data-dir={}", dir.path().display()))
        .arg(format!("--heartbeat-interval-ms={}", args.interval_ms))
        .arg(format!("--heartbeat-ttl-ms={}", args.interval_ms * 3))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let pid = child.id();
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let mut lines = BufReader::new(stdout).lines();
    let addr: SocketAddr = loop {
        let line = lines.next().ok_or_else(|| anyhow!("master exited"))??;
        if let Some(a) = line.strip_prefix("Exile master listening on http://") {
            break a.trim().parse()?;
        }
    };
    let result = drive(&args, addr, pid).await;
    let _ = Command::new("kill").arg(pid.to_string()).status();
    let _ = child.wait();
    result
}

async fn drive(args: &Args, addr: SocketAddr, pid: u32) -> Result<()> {
    let (idle_cpu, idle_rss) = cpu_over(pid, Duration::from_secs(3), false).await?;
    println!(
        "master idle: {idle_cpu:.1}% of a core, RSS {:.1} MiB",
        idle_rss as f64 / 1048576.0
    );

    let token = login(addr, "admin", "loadgen-password").await?;
    let admin = clients(connect(addr).await?, &token)?;
    let t = Instant::now();
    let mut creds = Vec::with_capacity(args.spawners);
    let mut enroll = SpawnerLinkClient::new(connect(addr).await?);
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
        let r = enroll
            .enroll(pb::EnrollRequest {
                token: secret,
                name: format!("load-{i}"),
                host: format!("load-{i}"),
            })
            .await?
            .into_inner();
        creds.push(r.credential);
    }
    println!(
        "enrolled {} spawners in {:.1} s",
        args.spawners,
        t.elapsed().as_secs_f64()
    );

    let sent = Arc::new(AtomicU64::new(0));
    let stop = tokio_util::sync::CancellationToken::new();
    let mut channel: Option<Channel> = None;
    let mut tasks = Vec::new();
    let t = Instant::now();
    for (i, cred) in creds.into_iter().enumerate() {
        if i % args.streams_per_connection.max(1) == 0 {
            channel = Some(connect(addr).await?);
        }
        let ch = channel.clone().ok_or_else(|| anyhow!("no channel"))?;
        let (sent, stop, n, interval) =
            (sent.clone(), stop.clone(), args.instances, args.interval_ms);
        tasks.push(tokio::spawn(async move {
            simulate(ch, cred, i, n, interval, sent, stop).await
        }));
    }
    // Wait until every spawner shows online.
    let online = loop {
        let s = admin
            .system
            .clone()
            .get_stats(pb::GetStatsRequest {})
            .await?
            .into_inner();
        if s.spawners_online as usize >= args.spawners || t.elapsed() > Duration::from_secs(120) {
            break s.spawners_online;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "{online} spawners linked with {} instances in {:.1} s",
        online as usize * args.instances,
        t.elapsed().as_secs_f64()
    );

    let before = sent.load(Ordering::Relaxed);
    let (load_cpu, load_rss) = cpu_over(pid, Duration::from_secs(args.seconds), true).await?;
    let beats = sent.load(Ordering::Relaxed) - before;
    stop.cancel();
    for t in tasks {
        let _ = t.await;
    }
    #[allow(clippy::cast_precision_loss)]
    let rate = beats as f64 / args.seconds as f64;
    println!();
    println!(
        "spawners: {}  instances: {}  heartbeat interval: {} ms",
        args.spawners,
        args.spawners * args.instances,
        args.interval_ms
    );
    println!("heartbeats: {rate:.0}/s over {} s", args.seconds);
    println!(
        "master CPU: {load_cpu:.1}% of one core under load (idle {idle_cpu:.1}%, ratio {:.1}x)",
        load_cpu / idle_cpu.max(0.1)
    );
    println!(
        "master RSS: {:.1} MiB under load (idle {:.1} MiB, ratio {:.1}x)",
        load_rss as f64 / 1048576.0,
        idle_rss as f64 / 1048576.0,
        load_rss as f64 / idle_rss.max(1) as f64
    );
    println!(
        "targets (DESIGN.md): < 50% of a core and < 500 MiB for 5,000 spawners x 20 instances every 5 s"
    );
    Ok(())
}

async fn simulate(
    ch: Channel,
    cred: String,
    index: usize,
    instances: usize,
    interval_ms: u64,
    sent: Arc<AtomicU64>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<()> {
    let mut client = SpawnerLinkClient::with_interceptor(ch, Bearer::new(&cred)?);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::SpawnerMessage>(16);
    let statuses: Vec<pb::InstanceStatus> = (0..instances)
        .map(|j| pb::InstanceStatus {
            id: format!("inst-load-{index}-{j}"),
            state: pb::InstanceState::Running as i32,
            build_version: "load".into(),
            pid: 100_000 + u32::try_from(j).unwrap_or(0),
            revision: 1,
            ..Default::default()
        })
        .collect();
    let hello = pb::Hello {
        region: "load".into(),
        host: format!("load-{index}"),
        advertised_address: "127.0.0.1".into(),
        capacity: u32::try_from(instances.max(1)).unwrap_or(1),
        agent_version: "loadgen".into(),
        active_build: "load".into(),
        instances: statuses.clone(),
        name: format!("load-{index}"),
        ..Default::default()
    };
    tx.send(pb::SpawnerMessage {
        kind: Some(pb::spawner_message::Kind::Hello(hello)),
    })
    .await?;
    let mut inbound = client
        .link(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    // Spread the first beats over the interval like real hosts that started at different times.
    let offset = (index as u64 * 7919) % interval_ms.max(1);
    tokio::time::sleep(Duration::from_millis(offset)).await;
    let mut tick = tokio::time::interval(Duration::from_millis(interval_ms));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            m = inbound.next() => if m.is_none() { return Ok(()) },
            _ = tick.tick() => {
                let hb = pb::Heartbeat {
                    host: Some(pb::Resources { cpu_percent: 12.5, memory_bytes: 8 << 30, memory_total_bytes: 32 << 30, disk_used_bytes: 100 << 30, disk_total_bytes: 500 << 30, cpu_count: 16 }),
                    instances: statuses
                        .iter()
                        .map(|s| pb::InstanceMetrics { id: s.id.clone(), resources: Some(pb::Resources { cpu_percent: 5.0, memory_bytes: 300 << 20, ..Default::default() }), players: 8 })
                        .collect(),
                };
                if tx.send(pb::SpawnerMessage { kind: Some(pb::spawner_message::Kind::Heartbeat(hb)) }).await.is_err() {
                    return Ok(());
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
