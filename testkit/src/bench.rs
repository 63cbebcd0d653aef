//! The performance targets in one run (`cargo xtask bench`, the `exile-bench` binary): each
//! figure next to a baseline measured in the same run, their ratio, the target and whether it
//! is met. Real processes (master, spawner, supervisors, demo game) for spawns and
//! footprints; simulated spawners (real link streams, no processes) for scale and fan-out.
//! Loopback only; the tool, the master and the spawners share the machine, so figures are
//! those of that machine under that load.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use tokio_stream::StreamExt;

use crate::procstat::{CpuMeter, parent_pid, rss};
use crate::sim::{Fleet, SimSpawner, running_instances};
use crate::{
    Clients, MasterProcess, Sandbox, SandboxOptions, SpawnerProcessOptions, demo_game_bin,
};
use exile_api::v1 as pb;

/// Sizes of one run.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "exile-bench",
    about = "Exile's performance targets, as ratios, in one run"
)]
pub struct BenchArgs {
    /// Seconds and small sizes (what CI runs so the bench cannot rot); the explicit sizes
    /// below still apply.
    #[arg(long)]
    pub quick: bool,
    /// Spawns measured (the spawner then holds that many demo-game instances).
    #[arg(long)]
    pub spawns: Option<usize>,
    /// Simulated spawners of the scale run.
    #[arg(long)]
    pub spawners: Option<usize>,
    /// Instances each simulated spawner reports.
    #[arg(long, default_value_t = 20)]
    pub instances: usize,
    /// Seconds each loaded measurement lasts.
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Calls of each control RPC measured (idle, then under load).
    #[arg(long)]
    pub calls: Option<usize>,
    /// Watch subscribers of the fan-out run.
    #[arg(long)]
    pub subscribers: Option<usize>,
    /// Instance events per second of the fan-out run.
    #[arg(long)]
    pub events_per_sec: Option<u64>,
    /// Only these parts (spawn, scale, watch); all by default.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// The sizes a run uses, after `--quick` and the explicit ones.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    spawns: usize,
    spawners: usize,
    instances: usize,
    seconds: u64,
    calls: usize,
    subscribers: usize,
    events_per_sec: u64,
}

impl BenchArgs {
    fn sizes(&self) -> Sizes {
        let q = self.quick;
        Sizes {
            spawns: self.spawns.unwrap_or(if q { 10 } else { 200 }),
            spawners: self.spawners.unwrap_or(if q { 50 } else { 5_000 }),
            instances: self.instances,
            seconds: self.seconds.unwrap_or(if q { 3 } else { 30 }),
            calls: self.calls.unwrap_or(if q { 20 } else { 200 }),
            subscribers: self.subscribers.unwrap_or(if q { 20 } else { 500 }),
            events_per_sec: self.events_per_sec.unwrap_or(if q { 100 } else { 1_000 }),
        }
    }

    fn wants(&self, part: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|p| p == part)
    }
}

/// What a figure is measured in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Unit {
    Ms,
    /// Percent of one core.
    Cpu,
    /// Bytes, shown in MiB.
    Bytes,
    Count,
}

impl Unit {
    fn show(self, v: f64) -> String {
        match self {
            Unit::Ms => format!("{v:.2} ms"),
            Unit::Cpu => format!("{v:.1} %"),
            Unit::Bytes => format!("{:.1} MiB", v / MIB),
            Unit::Count => format!("{v:.0}"),
        }
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// What a figure should be.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Below this.
    Below(f64),
    /// At most this.
    AtMost(f64),
    /// At most this much above the baseline.
    OverBaselineAtMost(f64),
    /// Shown for reading the others; no target.
    None,
}

/// One line of the table.
#[derive(Debug, Clone)]
pub struct Row {
    part: &'static str,
    figure: String,
    unit: Unit,
    value: f64,
    baseline: Option<(String, f64)>,
    target: Target,
}

impl Row {
    fn new(part: &'static str, figure: impl Into<String>, unit: Unit, value: f64) -> Row {
        Row {
            part,
            figure: figure.into(),
            unit,
            value,
            baseline: None,
            target: Target::None,
        }
    }

    fn base(mut self, what: impl Into<String>, v: f64) -> Row {
        self.baseline = Some((what.into(), v));
        self
    }

    fn target(mut self, t: Target) -> Row {
        self.target = t;
        self
    }

    /// Whether the target is met (None: no target).
    pub fn pass(&self) -> Option<bool> {
        match self.target {
            Target::Below(t) => Some(self.value < t),
            Target::AtMost(t) => Some(self.value <= t),
            Target::OverBaselineAtMost(t) => {
                Some(self.value - self.baseline.as_ref().map_or(0.0, |b| b.1) <= t)
            }
            Target::None => None,
        }
    }

    fn target_text(&self) -> String {
        let u = self.unit;
        match self.target {
            Target::Below(t) => format!("< {}", u.show(t)),
            Target::AtMost(t) => format!("≤ {}", u.show(t)),
            Target::OverBaselineAtMost(t) => format!("≤ baseline + {}", u.show(t)),
            Target::None => "—".into(),
        }
    }
}

/// The table as Markdown (it reads as well in a terminal as in the README).
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| part | figure | measured | baseline (same run) | ratio | target | result |\n\
         |---|---|---:|---|---:|---|---|\n",
    );
    for r in rows {
        let (base, ratio) = match &r.baseline {
            Some((what, v)) => (
                format!("{} ({what})", r.unit.show(*v)),
                if *v > 0.0 {
                    format!("{:.2}×", r.value / v)
                } else {
                    "—".into()
                },
            ),
            None => ("—".into(), "—".into()),
        };
        let result = match r.pass() {
            Some(true) => "pass",
            Some(false) => "**miss**",
            None => "",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {base} | {ratio} | {} | {result} |\n",
            r.part,
            r.figure,
            r.unit.show(r.value),
            r.target_text()
        ));
    }
    out
}

/// Runs the parts asked for; the rows measured, and the errors of parts that failed.
pub async fn run(args: &BenchArgs) -> (Vec<Row>, Vec<String>) {
    let s = args.sizes();
    println!(
        "exile-bench{}: {} spawns; {} simulated spawners × {} instances for {} s, {} calls \
         per RPC; {} Watch subscribers at {} events/s",
        if args.quick { " --quick" } else { "" },
        s.spawns,
        s.spawners,
        s.instances,
        s.seconds,
        s.calls,
        s.subscribers,
        s.events_per_sec
    );
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    if args.wants("spawn") {
        let t = Instant::now();
        match spawns_and_footprints(&s, &mut rows).await {
            Ok(()) => println!("spawn and footprints: {:.0} s", t.elapsed().as_secs_f64()),
            Err(e) => errors.push(format!("spawn and footprints: {e:#}")),
        }
    }
    if args.wants("scale") {
        let t = Instant::now();
        match master_scale(&s, &mut rows).await {
            Ok(()) => println!("master scale: {:.0} s", t.elapsed().as_secs_f64()),
            Err(e) => errors.push(format!("master scale: {e:#}")),
        }
    }
    if args.wants("watch") {
        let t = Instant::now();
        match watch_fanout(&s, &mut rows).await {
            Ok(()) => println!("Watch fan-out: {:.0} s", t.elapsed().as_secs_f64()),
            Err(e) => errors.push(format!("Watch fan-out: {e:#}")),
        }
    }
    (rows, errors)
}

/// The `q`-quantile of `v` (sorted here), by rank.
fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let i = ((v.len() as f64 - 1.0) * q).round() as usize;
    v[i.min(v.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[allow(clippy::cast_precision_loss)]
fn f(n: u64) -> f64 {
    n as f64
}

/// A loopback port nobody listens on now.
fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// When each instance was first seen by a Watch in a state with a process (Running or on).
#[derive(Default)]
struct SeenRunning {
    at: Mutex<HashMap<String, Instant>>,
    changed: tokio::sync::Notify,
}

impl SeenRunning {
    async fn follow(self: Arc<Self>, mut admin: Clients) -> Result<()> {
        let mut stream = admin
            .events
            .watch(pb::WatchRequest {
                include_metrics: false,
            })
            .await?
            .into_inner();
        while let Some(ev) = stream.next().await {
            let ev = ev?;
            if let Some(pb::watch_event::Kind::InstanceUpdated(i)) = ev.kind {
                let state = pb::InstanceState::try_from(i.state).unwrap_or_default();
                if matches!(state, pb::InstanceState::Running | pb::InstanceState::Ready) {
                    let now = Instant::now();
                    self.at
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(i.id)
                        .or_insert(now);
                    self.changed.notify_waiters();
                }
            }
        }
        Ok(())
    }

    async fn wait(&self, id: &str, limit: Duration) -> Result<Instant> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.changed.notified();
            if let Some(t) = self.at.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
                return Ok(*t);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                bail!("instance {id} was not seen Running within {limit:?}");
            }
        }
    }
}

/// Spawn overhead against a raw fork/exec, then the footprints of the master, the spawner
/// idle and the spawner holding what was spawned.
async fn spawns_and_footprints(s: &Sizes, rows: &mut Vec<Row>) -> Result<()> {
    let n = s.spawns.max(1);
    let mut sb = Sandbox::start(SandboxOptions {
        spawners: 0,
        capacity: u32::try_from(n + 5)?,
        heartbeat_interval_ms: 1000,
        heartbeat_ttl_ms: 5000,
        master_process: true,
        ..Default::default()
    })
    .await?;
    let result = spawns_in(&mut sb, n, rows).await;
    // Every game seen is killed by the sandbox; their supervisors go with them.
    let supervisors = result.as_ref().map(Vec::clone).unwrap_or_default();
    sb.shutdown().await;
    for pid in supervisors {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    result.map(|_| ())
}

/// The spawn part; the supervisors' pids, for clean-up.
async fn spawns_in(sb: &mut Sandbox, n: usize, rows: &mut Vec<Row>) -> Result<Vec<u32>> {
    const SETTLE: Duration = Duration::from_secs(2);
    let master_pid = sb
        .master_pid()
        .ok_or_else(|| anyhow!("no master process"))?;
    tokio::time::sleep(SETTLE).await;
    let master_idle = rss(master_pid)?;
    let (_, spawner_pid) = sb
        .add_spawner_process(
            "bench",
            SpawnerProcessOptions {
                master_url: Some(sb.master_url()),
                ..Default::default()
            },
        )
        .await?;
    sb.wait_spawners_online(1, Duration::from_secs(30)).await?;
    tokio::time::sleep(SETTLE).await;
    let spawner_idle = rss(spawner_pid)?;
    let spawner_id = sb
        .spawner_ids()
        .await?
        .pop()
        .ok_or_else(|| anyhow!("the spawner is not registered"))?;

    let admin = sb.admin().await?;
    let seen = Arc::new(SeenRunning::default());
    let watcher = tokio::spawn(seen.clone().follow(admin.clone()));
    // Let the Watch's snapshot arrive before the first spawn.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let game = demo_game_bin()?;
    let mut raw = Vec::with_capacity(n);
    let mut spawned = Vec::with_capacity(n);
    let mut client = admin.instances.clone();
    // Interleaved, so both see the same moments of the machine's other load.
    for i in 0..n {
        let port = free_port()?.to_string();
        let t = Instant::now();
        let mut child = std::process::Command::new(&game)
            .args(["--port", &port])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("exec {}", game.display()))?;
        // `spawn` returns once the exec happened (the child reports a failed exec before).
        raw.push(ms(t.elapsed()));
        let _ = child.kill();
        let _ = child.wait();

        let t = Instant::now();
        let inst = client
            .spawn_instance(pb::SpawnInstanceRequest {
                spawner_id: spawner_id.clone(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("spawn {} of {n}", i + 1))?
            .into_inner()
            .instance
            .ok_or_else(|| anyhow!("SpawnInstance answered no instance"))?;
        let running = seen.wait(&inst.id, Duration::from_secs(30)).await?;
        spawned.push(ms(running.saturating_duration_since(t)));
    }
    watcher.abort();

    tokio::time::sleep(SETTLE).await;
    let spawner_busy = rss(spawner_pid)?;
    let instances = sb.instances().await?;
    let mut games = Vec::new();
    let mut supervisors = Vec::new();
    for i in instances.iter().filter(|i| i.pid > 1) {
        games.push(rss(i.pid)?);
        let sup = parent_pid(i.pid)?;
        if sup != spawner_pid && sup > 1 {
            supervisors.push((sup, rss(sup)?));
        }
    }
    if games.len() < n {
        bail!("{} of {n} instances have a process", games.len());
    }
    let sup_pids: Vec<u32> = supervisors.iter().map(|s| s.0).collect();

    let raw_p50 = quantile(&mut raw, 0.5);
    let raw_p99 = quantile(&mut raw, 0.99);
    let base = format!("fork/exec of the demo game, {n}×");
    rows.push(
        Row::new(
            "spawn",
            format!("SpawnInstance → Running (Watch), p50 of {n}"),
            Unit::Ms,
            quantile(&mut spawned, 0.5),
        )
        .base(&base, raw_p50)
        .target(Target::OverBaselineAtMost(5.0)),
    );
    rows.push(
        Row::new(
            "spawn",
            format!("SpawnInstance → Running (Watch), p99 of {n}"),
            Unit::Ms,
            quantile(&mut spawned, 0.99),
        )
        .base(&base, raw_p99)
        .target(Target::OverBaselineAtMost(20.0)),
    );
    rows.push(
        Row::new("footprint", "master RSS, idle", Unit::Bytes, f(master_idle))
            .target(Target::AtMost(20.0 * MIB)),
    );
    rows.push(
        Row::new(
            "footprint",
            "spawner RSS, idle",
            Unit::Bytes,
            f(spawner_idle),
        )
        .target(Target::AtMost(15.0 * MIB)),
    );
    rows.push(
        Row::new(
            "footprint",
            format!("spawner RSS, {n} demo-game instances"),
            Unit::Bytes,
            f(spawner_busy),
        )
        .base("idle", f(spawner_idle))
        .target(Target::AtMost(40.0 * MIB)),
    );
    let sup_sum: u64 = supervisors.iter().map(|s| s.1).sum();
    let game_sum: u64 = games.iter().sum();
    let count = supervisors.len().max(1) as u64;
    rows.push(
        Row::new(
            "footprint",
            format!("supervisors' RSS, sum of {}", supervisors.len()),
            Unit::Bytes,
            f(sup_sum),
        )
        .base(format!("the {} games", games.len()), f(game_sum)),
    );
    rows.push(
        Row::new(
            "footprint",
            "supervisor RSS, mean per process",
            Unit::Bytes,
            f(sup_sum / count),
        )
        .base("a game", f(game_sum / games.len().max(1) as u64)),
    );
    Ok(sup_pids)
}

/// The control RPCs whose latency is measured.
#[derive(Clone, Copy, Debug)]
enum Rpc {
    GetInstance,
    StopInstance,
}

/// Latencies (ms) of `rpc` on each of `ids` in turn, one call at a time, spread over
/// `spread` (none: back to back).
async fn latencies(
    admin: &Clients,
    rpc: Rpc,
    ids: &[String],
    spread: Duration,
) -> Result<Vec<f64>> {
    let mut c = admin.instances.clone();
    let gap = spread / u32::try_from(ids.len().max(1))?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let t = Instant::now();
        match rpc {
            Rpc::GetInstance => {
                c.get_instance(pb::GetInstanceRequest { id: id.clone() })
                    .await
                    .with_context(|| format!("GetInstance {id}"))?;
            }
            Rpc::StopInstance => {
                c.stop_instance(pb::StopInstanceRequest {
                    id: id.clone(),
                    grace_period_seconds: 0,
                })
                .await
                .with_context(|| format!("StopInstance {id}"))?;
            }
        }
        let took = t.elapsed();
        out.push(ms(took));
        tokio::time::sleep(gap.saturating_sub(took)).await;
    }
    Ok(out)
}

/// The loadgen's fleet (simulated spawners × instances, heartbeat 5 s): the master's CPU and
/// RSS, and control RPCs to a simulated spawner, against the same with the master idle.
async fn master_scale(s: &Sizes, rows: &mut Vec<Row>) -> Result<()> {
    const BEAT: Duration = Duration::from_secs(5);
    let master = MasterProcess::start(None, 5000, 15000, &[]).await?;
    let admin = master.admin().await?;
    let calls = s.calls.max(1);
    let probe = SimSpawner::new("probe", running_instances("probe", 2 * calls), BEAT);
    let ids: Vec<String> = probe.instances.iter().map(|i| i.id.clone()).collect();
    let probe = Fleet::start(&admin, master.addr(), vec![probe], 1).await?;
    Fleet::wait_online(&admin, 1, Duration::from_secs(30)).await?;

    let idle = CpuMeter::start(master.pid())?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle_cpu = idle.percent()?;
    let idle_rss = rss(master.pid())?;
    let get_idle = latencies(&admin, Rpc::GetInstance, &ids[..calls], Duration::ZERO).await?;
    let stop_idle = latencies(&admin, Rpc::StopInstance, &ids[..calls], Duration::ZERO).await?;

    let t = Instant::now();
    let fleet = Fleet::start(
        &admin,
        master.addr(),
        load_fleet(s.spawners, s.instances, BEAT),
        50,
    )
    .await?;
    Fleet::wait_online(&admin, s.spawners + 1, Duration::from_secs(600)).await?;
    println!(
        "  {} simulated spawners × {} instances linked in {:.1} s",
        s.spawners,
        s.instances,
        t.elapsed().as_secs_f64()
    );
    // One heartbeat round first, so every spawner beats during the window.
    tokio::time::sleep(BEAT).await;
    let window = Duration::from_secs(s.seconds.max(1));
    let load = CpuMeter::start(master.pid())?;
    let started = Instant::now();
    let get_load = latencies(&admin, Rpc::GetInstance, &ids[calls..], window / 2).await?;
    let stop_load = latencies(&admin, Rpc::StopInstance, &ids[calls..], window / 2).await?;
    tokio::time::sleep(window.saturating_sub(started.elapsed())).await;
    let load_cpu = load.percent()?;
    let load_rss = rss(master.pid())?;
    fleet.stop().await?;
    probe.stop().await?;

    let what = format!("{} × {}, beat 5 s", s.spawners, s.instances);
    rows.push(
        Row::new("scale", format!("master CPU, {what}"), Unit::Cpu, load_cpu)
            .base("idle", idle_cpu)
            .target(Target::Below(50.0)),
    );
    rows.push(
        Row::new(
            "scale",
            format!("master RSS, {what}"),
            Unit::Bytes,
            f(load_rss),
        )
        .base("idle", f(idle_rss))
        .target(Target::Below(500.0 * MIB)),
    );
    for (name, mut under, mut idle) in [
        ("GetInstance", get_load, get_idle),
        ("StopInstance → simulated spawner", stop_load, stop_idle),
    ] {
        rows.push(
            Row::new(
                "scale",
                format!("{name} p99 of {calls}, under load"),
                Unit::Ms,
                quantile(&mut under, 0.99),
            )
            .base("master idle", quantile(&mut idle, 0.99))
            .target(Target::Below(50.0)),
        );
    }
    Ok(())
}

/// The loadgen's fleet: `spawners` hosts of `instances` Running instances each, beating
/// every `beat` with host and instance figures, their first beats spread over the interval.
pub fn load_fleet(spawners: usize, instances: usize, beat: Duration) -> Vec<SimSpawner> {
    let beat_ms = u64::try_from(beat.as_millis()).unwrap_or(u64::MAX).max(1);
    (0..spawners)
        .map(|i| {
            let name = format!("load-{i}");
            let mut s = SimSpawner::new(&name, running_instances(&name, instances), beat);
            s.first_beat_after = Duration::from_millis((i as u64 * 7919) % beat_ms);
            s.host = pb::Resources {
                cpu_percent: 12.5,
                memory_bytes: 8 << 30,
                memory_total_bytes: 32 << 30,
                disk_used_bytes: 100 << 30,
                disk_total_bytes: 500 << 30,
                cpu_count: 16,
            };
            s.instance_resources = Some(pb::Resources {
                cpu_percent: 5.0,
                memory_bytes: 300 << 20,
                ..Default::default()
            });
            s
        })
        .collect()
}

/// What one fan-out measurement saw.
struct Fanout {
    /// Origin → delivery, ms, of every delivery at every subscriber.
    latencies: Vec<f64>,
    /// Deliveries expected (events sent × subscribers) and made.
    expected: u64,
    delivered: u64,
    cpu: f64,
    rss: u64,
}

/// Instance events flowing from simulated spawners to Watch subscribers: origin → delivery
/// at every subscriber with many subscribers, against one.
async fn watch_fanout(s: &Sizes, rows: &mut Vec<Row>) -> Result<()> {
    let master = MasterProcess::start(None, 5000, 15000, &[]).await?;
    let admin = master.admin().await?;
    // Enough instances that each changes about once a second.
    let per = 20;
    let hosts = usize::try_from(s.events_per_sec)?.div_ceil(per).max(1);
    let mut senders = Vec::new();
    let mut specs = Vec::new();
    for h in 0..hosts {
        let name = format!("churn-{h}");
        let mut spec =
            SimSpawner::new(&name, running_instances(&name, per), Duration::from_secs(5));
        let (tx, rx) = tokio::sync::mpsc::channel(1024);
        spec.events = Some(rx);
        senders.push((tx, spec.instances.clone()));
        specs.push(spec);
    }
    let fleet = Fleet::start(&admin, master.addr(), specs, 50).await?;
    Fleet::wait_online(&admin, hosts, Duration::from_secs(60)).await?;
    let epoch = Instant::now();
    let window = Duration::from_secs(s.seconds.max(1));
    let mut senders = senders;
    let one = fanout(&master, 1, s.events_per_sec, window, epoch, &mut senders).await?;
    let many = fanout(
        &master,
        s.subscribers,
        s.events_per_sec,
        window,
        epoch,
        &mut senders,
    )
    .await?;
    fleet.stop().await?;

    let subs = s.subscribers;
    let rate = s.events_per_sec;
    for (q, target) in [(0.5, Target::None), (0.99, Target::Below(100.0))] {
        let (mut m, mut b) = (many.latencies.clone(), one.latencies.clone());
        rows.push(
            Row::new(
                "watch",
                format!("event → {subs} subscribers at {rate}/s, p{:.0}", q * 100.0),
                Unit::Ms,
                quantile(&mut m, q),
            )
            .base("1 subscriber", quantile(&mut b, q))
            .target(target),
        );
    }
    rows.push(
        Row::new(
            "watch",
            format!("deliveries missed of {}", many.expected),
            Unit::Count,
            f(many.expected.saturating_sub(many.delivered)),
        )
        .base(
            "1 subscriber",
            f(one.expected.saturating_sub(one.delivered)),
        )
        .target(Target::AtMost(0.0)),
    );
    rows.push(
        Row::new(
            "watch",
            format!("master CPU, {subs} subscribers"),
            Unit::Cpu,
            many.cpu,
        )
        .base("1 subscriber", one.cpu),
    );
    rows.push(
        Row::new(
            "watch",
            format!("master RSS, {subs} subscribers"),
            Unit::Bytes,
            f(many.rss),
        )
        .base("1 subscriber", f(one.rss)),
    );
    Ok(())
}

/// Marks an instance event with its origin: microseconds since `epoch`, in the status
/// message (carried as is to every subscriber).
const ORIGIN: &str = "bench-origin-us=";

async fn fanout(
    master: &MasterProcess,
    subscribers: usize,
    rate: u64,
    window: Duration,
    epoch: Instant,
    senders: &mut [(
        tokio::sync::mpsc::Sender<pb::InstanceStatus>,
        Vec<pb::InstanceStatus>,
    )],
) -> Result<Fanout> {
    // Subscribers as dashboards open them: a connection and a viewer token for each few,
    // under the master's cap of streams per credential.
    const PER_CONNECTION: usize = 25;
    let stop = tokio_util::sync::CancellationToken::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(subscribers.max(1));
    let mut subs = Vec::with_capacity(subscribers);
    let mut clients: Option<Clients> = None;
    let admin = master.admin().await?;
    for i in 0..subscribers {
        if i % PER_CONNECTION == 0 {
            let secret = admin
                .auth
                .clone()
                .create_api_token(pb::CreateApiTokenRequest {
                    name: format!("bench-watcher-{i}"),
                    role: pb::Role::Viewer as i32,
                    ttl_seconds: 3600,
                })
                .await?
                .into_inner()
                .secret;
            clients = Some(crate::clients(
                crate::connect(master.addr()).await?,
                &secret,
            )?);
        }
        let mut c = clients.clone().ok_or_else(|| anyhow!("no connection"))?;
        let (stop, ready) = (stop.clone(), ready_tx.clone());
        subs.push(tokio::spawn(async move {
            let mut stream = c
                .events
                .watch(pb::WatchRequest {
                    include_metrics: false,
                })
                .await?
                .into_inner();
            let mut lat = Vec::new();
            // The origin each instance last showed, so a repeat of it (an update for
            // another reason) is not counted again.
            let mut last: HashMap<String, u64> = HashMap::new();
            loop {
                let ev = tokio::select! {
                    () = stop.cancelled() => break,
                    ev = stream.next() => match ev {
                        Some(ev) => ev?,
                        None => bail!("the Watch stream ended"),
                    },
                };
                match ev.kind {
                    Some(pb::watch_event::Kind::Snapshot(_)) => {
                        let _ = ready.send(()).await;
                    }
                    Some(pb::watch_event::Kind::InstanceUpdated(inst)) => {
                        if let Some(us) = inst
                            .message
                            .strip_prefix(ORIGIN)
                            .and_then(|v| v.parse::<u64>().ok())
                            && last.insert(inst.id, us) != Some(us)
                        {
                            let now = u64::try_from(epoch.elapsed().as_micros())?;
                            lat.push(f(now.saturating_sub(us)) / 1000.0);
                        }
                    }
                    _ => {}
                }
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    drop(ready_tx);
    for _ in 0..subscribers {
        tokio::time::timeout(Duration::from_secs(60), ready_rx.recv())
            .await
            .context("a subscriber's snapshot did not come within 60 s")?;
    }

    let meter = CpuMeter::start(master.pid())?;
    let started = tokio::time::Instant::now();
    let mut sent: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let hosts = senders.len();
    while started.elapsed() < window {
        tick.tick().await;
        // Catch up to the rate by the clock, whatever the timer's granularity.
        let due = u64::try_from(started.elapsed().as_micros())? * rate / 1_000_000;
        while sent < due {
            let k = usize::try_from(sent)?;
            let (tx, insts) = &mut senders[k % hosts];
            let len = insts.len();
            let i = &mut insts[(k / hosts) % len];
            i.revision += 1;
            i.players = (i.players + 1) % 16;
            i.message = format!("{ORIGIN}{}", epoch.elapsed().as_micros());
            tx.send(i.clone()).await?;
            sent += 1;
        }
    }
    let cpu = meter.percent()?;
    let rss = rss(master.pid())?;
    // What is in flight arrives, then the subscribers stop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.cancel();
    let mut latencies = Vec::new();
    let mut delivered = 0u64;
    for s in subs {
        let lat = s.await??;
        delivered += lat.len() as u64;
        latencies.extend(lat);
    }
    Ok(Fanout {
        latencies,
        expected: sent * subscribers as u64,
        delivered,
        cpu,
        rss,
    })
}

/// The directory of the binaries a run uses.
pub fn binaries() -> Result<PathBuf> {
    Ok(crate::master_bin()?
        .parent()
        .ok_or_else(|| anyhow!("no directory"))?
        .to_owned())
}
