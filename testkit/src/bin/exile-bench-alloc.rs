//! Allocation benchmark: starts its own master process, links simulated spawners holding
//! `--spawners × --instances` Ready instances (each allocated one returns to Ready after
//! `--release-ms`, like a short match), then at each client count measures a baseline (plain
//! `GetInstance` calls) and `Allocate` calls for `--seconds` each: calls/s, p50 and p99
//! latency, RESOURCE_EXHAUSTED answers, other errors, and the master's CPU and RSS. Conflicts
//! (an allocation reaching a spawner for an instance that was not Ready there) are counted by
//! the simulated spawners and must be 0. Loopback only; client and master share the machine.
//!
//! `cargo run --release -p exile-testkit --bin exile-bench-alloc -- --clients 1,16,64`

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use clap::Parser;

use exile_api::v1 as pb;
use exile_testkit::procstat::proc_usage;
use exile_testkit::sim::{self, Fleet, SimSpawner};
use exile_testkit::{MasterProcess, clients, connect};

/// Allocation throughput and latency against a real master.
#[derive(Parser, Debug)]
struct Args {
    /// Simulated spawners.
    #[arg(long, default_value_t = 100)]
    spawners: usize,
    /// Ready instances each holds.
    #[arg(long, default_value_t = 20)]
    instances: usize,
    /// Seconds each measurement lasts.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// An allocated instance is Ready again this long after (ms).
    #[arg(long, default_value_t = 500)]
    release_ms: u64,
    /// Concurrent clients, one measurement each.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    clients: Vec<usize>,
    /// Clients per HTTP/2 connection.
    #[arg(long, default_value_t = 16)]
    clients_per_connection: usize,
    /// The master binary (default: next to this one).
    #[arg(long)]
    master_bin: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let master = MasterProcess::start(args.master_bin.clone(), 5000, 15000, &[]).await?;
    drive(&args, &master).await
}

/// One measurement.
#[derive(Default)]
struct Run {
    ok: u64,
    exhausted: u64,
    errors: u64,
    micros: Vec<u32>,
    secs: f64,
    cpu: f64,
    rss: u64,
}

impl Run {
    fn pct(&self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return 0.0;
        }
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let i = ((self.micros.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.micros[i]) / 1000.0
    }
}

#[derive(Clone, Copy)]
enum Call {
    GetInstance,
    Allocate,
}

/// Where and how long to measure.
struct Setup<'a> {
    addr: SocketAddr,
    pid: u32,
    per_connection: usize,
    seconds: u64,
    /// The instance the baseline reads.
    probe: &'a str,
}

async fn measure(setup: &Setup<'_>, token: &str, call: Call, n: usize) -> Result<Run> {
    let Setup {
        addr,
        pid,
        per_connection,
        seconds,
        probe,
    } = *setup;
    let mut channels = Vec::new();
    for _ in 0..n.div_ceil(per_connection.max(1)) {
        channels.push(connect(addr).await?);
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (t0, _) = proc_usage(pid)?;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..n {
        let c = clients(channels[i / per_connection.max(1)].clone(), token)?;
        let probe = probe.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut r = Run::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                let outcome = match call {
                    Call::GetInstance => c
                        .instances
                        .clone()
                        .get_instance(pb::GetInstanceRequest { id: probe.clone() })
                        .await
                        .map(drop),
                    Call::Allocate => c
                        .allocations
                        .clone()
                        .allocate(pb::AllocateRequest {
                            required: Some(pb::AllocationSelector {
                                labels: [("mode".to_owned(), "ctf".to_owned())].into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        })
                        .await
                        .map(drop),
                };
                r.micros
                    .push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                match outcome {
                    Ok(()) => r.ok += 1,
                    Err(s) if s.code() == tonic::Code::ResourceExhausted => r.exhausted += 1,
                    Err(_) => r.errors += 1,
                }
            }
            r
        }));
    }
    let mut all = Run::default();
    for t in tasks {
        let r = t.await?;
        all.ok += r.ok;
        all.exhausted += r.exhausted;
        all.errors += r.errors;
        all.micros.extend(r.micros);
    }
    all.secs = start.elapsed().as_secs_f64();
    let (t1, rss) = proc_usage(pid)?;
    #[allow(clippy::cast_precision_loss)]
    {
        all.cpu = (t1 - t0) as f64 / 100.0 / all.secs * 100.0;
    }
    all.rss = rss;
    all.micros.sort_unstable();
    Ok(all)
}

async fn drive(args: &Args, master: &MasterProcess) -> Result<()> {
    let (addr, pid, token) = (master.addr(), master.pid(), master.token());
    let admin = master.admin().await?;
    let total = args.spawners * args.instances;
    let labels: HashMap<String, String> = [("mode".to_owned(), "ctf".to_owned())].into();
    let t = Instant::now();
    let specs = (0..args.spawners)
        .map(|i| {
            let name = format!("sim-{i}");
            let insts = sim::ready_instances(&name, args.instances, &labels);
            let mut s = SimSpawner::new(&name, insts, Duration::from_secs(5));
            s.release_after = Some(Duration::from_millis(args.release_ms));
            s
        })
        .collect();
    let fleet = Fleet::start(&admin, addr, specs, 50).await?;
    let probe = loop {
        let ready = admin
            .instances
            .clone()
            .list_instances(pb::ListInstancesRequest {
                states: vec![pb::InstanceState::Ready as i32],
                ..Default::default()
            })
            .await?
            .into_inner()
            .instances;
        if ready.len() >= total {
            break ready[0].id.clone();
        }
        if t.elapsed() > Duration::from_secs(120) {
            return Err(anyhow!("only {} of {total} Ready after 120 s", ready.len()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "{} simulated spawners with {total} Ready instances in {:.1} s; each allocated one is Ready again after {} ms",
        args.spawners,
        t.elapsed().as_secs_f64(),
        args.release_ms
    );
    let secret = admin
        .auth
        .clone()
        .create_api_token(pb::CreateApiTokenRequest {
            name: "bench-matchmaker".into(),
            role: pb::Role::Allocator as i32,
            ttl_seconds: 3600,
        })
        .await?
        .into_inner()
        .secret;
    let (_, idle_rss) = proc_usage(pid)?;
    println!(
        "master RSS before the runs: {:.1} MiB",
        idle_rss as f64 / 1_048_576.0
    );
    println!();
    println!(
        "{:>7}  {:<11}  {:>9}  {:>7}  {:>7}  {:>9}  {:>6}  {:>10}  {:>8}",
        "clients",
        "call",
        "calls/s",
        "p50 ms",
        "p99 ms",
        "exhausted",
        "errors",
        "master CPU",
        "RSS MiB"
    );
    let setup = Setup {
        addr,
        pid,
        per_connection: args.clients_per_connection,
        seconds: args.seconds,
        probe: &probe,
    };
    for &n in &args.clients {
        for (call, name, tok) in [
            (Call::GetInstance, "GetInstance", token),
            (Call::Allocate, "Allocate", secret.as_str()),
        ] {
            let r = measure(&setup, tok, call, n).await?;
            #[allow(clippy::cast_precision_loss)]
            let rate = r.ok as f64 / r.secs;
            println!(
                "{n:>7}  {name:<11}  {rate:>9.0}  {:>7.2}  {:>7.2}  {:>9}  {:>6}  {:>9.1}%  {:>8.1}",
                r.pct(0.5),
                r.pct(0.99),
                r.exhausted,
                r.errors,
                r.cpu,
                r.rss as f64 / 1_048_576.0
            );
            // Let every allocated instance come back before the next run.
            tokio::time::sleep(Duration::from_millis(args.release_ms + 200)).await;
        }
    }
    let tally = fleet.stop().await?;
    println!();
    println!(
        "allocations applied by the spawners: {}; conflicts (an allocation of an instance that was not Ready on its spawner): {}",
        tally.allocations, tally.conflicts
    );
    println!("target (DESIGN.md): >= 2,000 allocations/s with p99 < 20 ms on one master");
    Ok(())
}
