//! Load generator for the master: many simulated spawners, each holding a real `Link` stream
//! with a hello carrying its instances and heartbeats every interval. It starts its own master
//! process (the built `exile-master`), measures that process's CPU and memory idle (baseline)
//! and under load in the same run, and prints the figures. Loopback only; it stops by itself.
//!
//! `cargo run --release -p exile-testkit --bin exile-loadgen -- --spawners 5000 --instances 20`

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::Parser;

use exile_testkit::MasterProcess;
use exile_testkit::bench::load_fleet;
use exile_testkit::procstat::proc_usage;
use exile_testkit::sim::Fleet;

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
    let master = MasterProcess::start(
        args.master_bin.clone(),
        args.interval_ms,
        args.interval_ms * 3,
        &[],
    )
    .await?;
    drive(&args, &master).await
}

async fn drive(args: &Args, master: &MasterProcess) -> Result<()> {
    let pid = master.pid();
    let (idle_cpu, idle_rss) = cpu_over(pid, Duration::from_secs(3), false).await?;
    println!(
        "master idle: {idle_cpu:.1}% of a core, RSS {:.1} MiB",
        idle_rss as f64 / 1048576.0
    );

    let admin = master.admin().await?;
    let sent = Arc::new(AtomicU64::new(0));
    let mut specs = load_fleet(
        args.spawners,
        args.instances,
        Duration::from_millis(args.interval_ms),
    );
    for s in &mut specs {
        s.beats = Some(sent.clone());
    }
    let t = Instant::now();
    let fleet = Fleet::start(&admin, master.addr(), specs, args.streams_per_connection).await?;
    println!(
        "enrolled {} spawners in {:.1} s",
        args.spawners,
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let online = Fleet::wait_online(&admin, args.spawners, Duration::from_secs(120)).await?;
    println!(
        "{online} spawners linked with {} instances in {:.1} s",
        online * args.instances,
        t.elapsed().as_secs_f64()
    );

    let before = sent.load(Ordering::Relaxed);
    let (load_cpu, load_rss) = cpu_over(pid, Duration::from_secs(args.seconds), true).await?;
    let beats = sent.load(Ordering::Relaxed) - before;
    fleet.stop().await?;
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
