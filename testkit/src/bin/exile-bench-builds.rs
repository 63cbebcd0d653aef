//! Delivery benchmark for uploaded builds. It writes an incompressible build archive of
//! `--size-mib` to a temp dir (streaming, never whole in memory), times `cp` of that file as the
//! baseline (and one SHA-256 pass over it, the floor that checking what arrives sets), then
//! starts a master (in this process) and `--spawners` real `exile-spawner` processes, pushes
//! the archive with the streaming upload, has the first spawner install it alone (its CPU
//! time per GiB printed next to cp's) and then the others at once, pushes it unchanged as a second version and with one file changed as a third, and
//! prints one table: throughput against `cp`, bytes moved per redeploy, peak memory against
//! the archive size. Loopback only; every process and temp dir is removed at the end.
//!
//! `cargo run -p exile-testkit --bin exile-bench-builds -- --size-mib 1024 --spawners 3`

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use sha2::Digest;

use exile_api::v1 as pb;
use exile_testkit::{Clients, Sandbox, SandboxOptions, eventually};

const MIB: u64 = 1 << 20;
const PART: usize = exile_api::build::MAX_UPLOAD_PART;
/// Data files the archive's payload is split over.
const FILES: u64 = 4;
const NAME: &str = "bench";
const MANIFEST: &str = "[run]\ncommand = \"/bin/sleep 3600\"\n";

/// Builds delivery benchmark against a `cp` baseline measured in the same run.
#[derive(Parser, Debug)]
struct Args {
    /// Archive size in MiB.
    #[arg(long, default_value_t = 1024)]
    size_mib: u64,
    /// Spawner processes to deliver to.
    #[arg(long, default_value_t = 3)]
    spawners: usize,
    /// Smoke run: a 64 MiB archive.
    #[arg(long)]
    quick: bool,
}

/// Pseudo-random, incompressible bytes (xorshift64), produced as they are read.
struct Noise {
    x: u64,
    left: u64,
}

impl Noise {
    fn new(seed: u64, len: u64) -> Noise {
        Noise {
            x: seed.wrapping_mul(6_364_136_223_846_793_005) | 1,
            left: len,
        }
    }
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        for chunk in buf[..n].chunks_mut(8) {
            self.x ^= self.x << 13;
            self.x ^= self.x >> 7;
            self.x ^= self.x << 17;
            let bytes = self.x.to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A writer that counts what went through it, to know where each file's data starts.
struct Counting<W> {
    inner: W,
    n: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes an uncompressed tar of the manifest and `FILES` noise files totalling `size`
/// bytes; returns the offset in the archive of the middle file's data and its length.
fn write_archive(path: &Path, size: u64) -> Result<(u64, u64)> {
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut tar = tar::Builder::new(Counting {
        inner: BufWriter::with_capacity(PART, file),
        n: 0,
    });
    let mut header = tar::Header::new_gnu();
    header.set_size(MANIFEST.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "exile-build.toml", MANIFEST.as_bytes())?;
    let per_file = (size / FILES).max(MIB) / 512 * 512;
    let mut middle = (0, per_file);
    for i in 0..FILES {
        if i == FILES / 2 {
            // The data follows the file's 512-byte header (short names need no extension).
            middle.0 = tar.get_ref().n + 512;
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(per_file);
        header.set_mode(0o644);
        tar.append_data(
            &mut header,
            format!("data/part-{i}.bin"),
            Noise::new(i + 1, per_file),
        )?;
    }
    tar.into_inner()?.inner.flush()?;
    Ok(middle)
}

/// Overwrites 1 MiB in the middle of the file whose data starts at `offset` with other noise.
fn change_one_file(path: &Path, offset: u64, len: u64) -> Result<u64> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let n = MIB.min(len);
    f.seek(SeekFrom::Start(offset + (len - n) / 2))?;
    std::io::copy(&mut Noise::new(0xC0FFEE, n), &mut f)?;
    f.sync_all()?;
    Ok(n)
}

fn sha256_of(path: &Path) -> Result<String> {
    let mut f = File::open(path)?;
    let mut h = sha2::Sha256::new();
    let mut buf = vec![0u8; PART];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Peak resident set (`VmHWM`) of a process, in bytes.
fn peak_rss(pid: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| anyhow!("no VmHWM in /proc/{pid}/status"))
}

#[allow(clippy::cast_precision_loss)]
/// CPU seconds (user + system) a process has used; for `self`, also those of the children
/// it has waited for.
fn cpu_seconds(pid: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow!("unreadable /proc/{pid}/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14 to 17 of stat(5); `rest` starts at field 3.
    let tick = |i: usize| -> Result<f64> {
        Ok(fields
            .get(i - 3)
            .ok_or_else(|| anyhow!("short /proc/{pid}/stat"))?
            .parse::<f64>()?)
    };
    // /proc reports ticks of USER_HZ, which Linux fixes at 100 for user space.
    let hz = 100.0;
    let children = if pid == "self" {
        tick(16)? + tick(17)?
    } else {
        0.0
    };
    Ok((tick(14)? + tick(15)? + children) / hz)
}

/// CPU seconds per GiB of `size` bytes.
fn per_gib(cpu: f64, size: u64) -> f64 {
    cpu * f((1 << 30) as u64) / f(size.max(1))
}

fn f(n: u64) -> f64 {
    n as f64
}

fn mbps(bytes: u64, d: Duration) -> f64 {
    f(bytes) / 1e6 / d.as_secs_f64().max(1e-9)
}

/// Pushes the archive with the client stream, reading it in 1 MiB parts.
async fn upload(
    c: &Clients,
    path: &Path,
    version: &str,
) -> Result<(pb::UploadBuildResponse, Duration)> {
    use pb::upload_build_request::Kind;
    let size = std::fs::metadata(path)?.len();
    let sha256 = sha256_of(path)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::UploadBuildRequest>(4);
    tx.send(pb::UploadBuildRequest {
        kind: Some(Kind::Metadata(pb::UploadBuildMetadata {
            name: NAME.into(),
            version: version.into(),
            sha256,
            size,
            file_name: "bench.tar".into(),
            manifest: String::new(),
        })),
    })
    .await?;
    let p = path.to_path_buf();
    let reader = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut f = File::open(&p)?;
        loop {
            let mut buf = vec![0u8; PART];
            let mut got = 0;
            while got < PART {
                let n = f.read(&mut buf[got..])?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            if got == 0 {
                return Ok(());
            }
            buf.truncate(got);
            if tx
                .blocking_send(pb::UploadBuildRequest {
                    kind: Some(Kind::Data(buf)),
                })
                .is_err()
            {
                // The upload ended early; its answer says why.
                return Ok(());
            }
        }
    });
    let t = Instant::now();
    let r = c
        .builds
        .clone()
        .upload_build(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await;
    let took = t.elapsed();
    reader.await??;
    let r = r.map_err(|s| anyhow!("upload of {NAME}@{version} failed: {}", s.message()))?;
    Ok((r.into_inner(), took))
}

/// Spawns an instance of `name@version` on every spawner at once (the master installs the
/// build first) and returns, per spawner, the time until its spawn answered and the build as
/// the spawner holds it.
async fn install_everywhere(
    c: &Clients,
    ids: &[String],
    version: &str,
) -> Result<Vec<(Duration, pb::HeldBuild)>> {
    let t = Instant::now();
    let spawns = ids.iter().map(|id| {
        let mut inst = c.instances.clone();
        let req = pb::SpawnInstanceRequest {
            spawner_id: id.clone(),
            build: format!("{NAME}@{version}"),
            ..Default::default()
        };
        async move {
            let r = inst.spawn_instance(req).await;
            (r, t.elapsed())
        }
    });
    let done = futures::future::join_all(spawns).await;
    let mut out = Vec::new();
    for (id, (r, took)) in ids.iter().zip(done) {
        r.map_err(|s| anyhow!("spawn of {NAME}@{version} on {id} failed: {}", s.message()))?;
        let held = eventually(
            &format!("spawner {id} to report {NAME}@{version}"),
            Duration::from_secs(30),
            || {
                let mut sp = c.spawners.clone();
                async move {
                    let s = sp
                        .get_spawner(pb::GetSpawnerRequest { id: id.clone() })
                        .await
                        .ok()?
                        .into_inner()
                        .spawner?;
                    s.builds
                        .into_iter()
                        .find(|b| b.name == NAME && b.version == version)
                }
            },
        )
        .await?;
        out.push((took, held));
    }
    Ok(out)
}

/// Figures measured before the system starts.
struct Baseline {
    /// `cp` of the archive, MB/s.
    cp: f64,
    /// `cp`'s CPU seconds per GiB.
    cp_cpu_per_gib: f64,
    /// One SHA-256 pass over the archive, MB/s.
    sha: f64,
}

struct Row {
    figure: String,
    value: String,
    baseline: String,
    ratio: String,
    target: String,
}

fn row(
    figure: impl Into<String>,
    value: String,
    baseline: String,
    ratio: String,
    target: &str,
) -> Row {
    Row {
        figure: figure.into(),
        value,
        baseline,
        ratio,
        target: target.into(),
    }
}

fn bytes(n: u64) -> String {
    if n >= MIB {
        format!("{:.1} MiB", f(n) / f(MIB))
    } else {
        format!("{n} B")
    }
}

fn pct(n: u64, of: u64) -> String {
    format!("{:.2} %", f(n) * 100.0 / f(of.max(1)))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let size_mib = if args.quick { 64 } else { args.size_mib };
    if size_mib < FILES || args.spawners == 0 {
        bail!("the archive needs at least {FILES} MiB and there must be at least one spawner");
    }
    let dir = tempfile::tempdir()?;
    let archive = dir.path().join("bench.tar");
    println!("writing a {size_mib} MiB archive to {}", archive.display());
    let (mid_offset, mid_len) = write_archive(&archive, size_mib * MIB)?;
    let size = std::fs::metadata(&archive)?.len();

    // Baseline: copying the file on the same disk.
    // The median of three, each after a sync so that writing back the last copy does not
    // land on the next one.
    let copy = dir.path().join("copy.tar");
    let mut runs = Vec::new();
    for _ in 0..3 {
        nix::unistd::sync();
        let cpu0 = cpu_seconds("self")?;
        let t = Instant::now();
        let st = std::process::Command::new("cp")
            .arg(&archive)
            .arg(&copy)
            .status()
            .context("run cp")?;
        let took = t.elapsed();
        // Only cp runs as a child here, so the children's share is cp's.
        let cpu = cpu_seconds("self")? - cpu0;
        if !st.success() {
            bail!("cp of the archive failed: {st}");
        }
        std::fs::remove_file(&copy)?;
        runs.push((took, cpu));
    }
    runs.sort_by_key(|r| r.0);
    let (cp_time, cp_cpu) = runs[1];
    let cp = mbps(size, cp_time);
    println!("cp (median of 3): {cp:.0} MB/s, {cp_cpu:.2} CPU s");
    nix::unistd::sync();
    // The floor that checking what arrived sets: one SHA-256 pass over the archive.
    let t = Instant::now();
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut File::open(&archive)?, &mut hasher)?;
    let _ = hasher.finalize();
    let sha = mbps(size, t.elapsed());
    println!("sha256: {sha:.0} MB/s");
    let base = Baseline {
        cp,
        cp_cpu_per_gib: per_gib(cp_cpu, size),
        sha,
    };

    let mut sb = Sandbox::start(SandboxOptions {
        spawners: args.spawners,
        heartbeat_interval_ms: 500,
        heartbeat_ttl_ms: 3000,
        ..Default::default()
    })
    .await?;
    let result = bench(&mut sb, &args, &archive, size, &base, (mid_offset, mid_len)).await;
    sb.shutdown().await;
    drop(dir);
    let rows = result?;
    print_table(&rows);
    Ok(())
}

/// Replaces the in-process spawners with real `exile-spawner` processes; their pids.
async fn spawner_processes(sb: &mut Sandbox, n: usize) -> Result<Vec<u32>> {
    let admin = sb.admin().await?;
    for i in 0..n {
        sb.stop_spawner(i).await?;
    }
    eventually(
        "the in-process spawners to go offline",
        Duration::from_secs(20),
        || {
            let mut c = admin.spawners.clone();
            async move {
                let l = c
                    .list_spawners(pb::ListSpawnersRequest::default())
                    .await
                    .ok()?
                    .into_inner();
                l.spawners
                    .iter()
                    .all(|s| s.state != pb::SpawnerState::Online as i32)
                    .then_some(())
            }
        },
    )
    .await?;
    let mut pids = Vec::new();
    for i in 0..n {
        pids.push(sb.start_spawner_process(i)?);
    }
    sb.wait_spawners_online(n, Duration::from_secs(30)).await?;
    Ok(pids)
}

async fn bench(
    sb: &mut Sandbox,
    args: &Args,
    archive: &Path,
    size: u64,
    base: &Baseline,
    (mid_offset, mid_len): (u64, u64),
) -> Result<Vec<Row>> {
    let cp = base.cp;
    let pids = spawner_processes(sb, args.spawners).await?;
    let ids = sb.spawner_ids().await?;
    let c = sb.admin().await?;
    let mut rows = vec![row(
        "archive size",
        bytes(size),
        String::new(),
        String::new(),
        "",
    )];
    let ratio = |v: f64| format!("{:.2}x", v / cp.max(1e-9));
    let cp_s = format!("cp {cp:.0} MB/s");

    // First push and delivery.
    let (r, took) = upload(&c, archive, "1").await?;
    let up = mbps(size, took);
    println!(
        "v1 uploaded in {:.2} s: {} new chunks, {}",
        took.as_secs_f64(),
        r.new_chunks,
        bytes(r.new_bytes)
    );
    rows.push(row(
        "upload (v1)",
        format!("{up:.0} MB/s"),
        cp_s.clone(),
        ratio(up),
        ">= 0.5x",
    ));
    rows.push(row(
        "sha256 of the archive (checking's floor)",
        format!("{:.0} MB/s", base.sha),
        cp_s.clone(),
        ratio(base.sha),
        "",
    ));
    // Spawner 0 alone, as on a fleet where each spawner has its host to itself; then the
    // others at once, sharing this machine's cores with each other and the master.
    let mut deliveries = Vec::new();
    let cpu0 = cpu_seconds(&pids[0].to_string())?;
    let solo = install_everywhere(&c, &ids[..1], "1").await?;
    let solo_cpu = cpu_seconds(&pids[0].to_string())? - cpu0;
    deliveries.extend(solo.into_iter().map(|d| (d, "alone")));
    let rest_label = format!("{} at once", ids.len() - 1);
    if ids.len() > 1 {
        let rest = install_everywhere(&c, &ids[1..], "1").await?;
        deliveries.extend(rest.into_iter().map(|d| (d, rest_label.as_str())));
    }
    for (i, ((took, held), how)) in deliveries.into_iter().enumerate() {
        let v = mbps(size, took);
        println!(
            "v1 on spawner {i} ({how}) in {:.2} s, fetched {}",
            took.as_secs_f64(),
            bytes(held.fetched_bytes)
        );
        rows.push(row(
            format!("delivery spawner {i} (v1, {how})"),
            format!("{v:.0} MB/s"),
            cp_s.clone(),
            ratio(v),
            ">= 0.5x",
        ));
        if i == 0 {
            rows.push(row(
                "spawner 0 CPU per GiB delivered (v1, alone)",
                format!("{:.2} s", per_gib(solo_cpu, size)),
                format!("cp {:.2} s", base.cp_cpu_per_gib),
                format!(
                    "{:.2}x",
                    per_gib(solo_cpu, size) / base.cp_cpu_per_gib.max(1e-9)
                ),
                "",
            ));
        }
        rows.push(row(
            format!("fetched spawner {i} (v1)"),
            bytes(held.fetched_bytes),
            bytes(size),
            pct(held.fetched_bytes, size),
            "~100 %",
        ));
    }

    // Unchanged archive under another version.
    let (r, took) = upload(&c, archive, "2").await?;
    println!("v2 (unchanged) uploaded in {:.2} s", took.as_secs_f64());
    rows.push(row(
        "redeploy upload new bytes (v2)",
        format!("{} ({} chunks)", bytes(r.new_bytes), r.new_chunks),
        bytes(size),
        pct(r.new_bytes, size),
        "< 1 %",
    ));
    for (i, (took, held)) in install_everywhere(&c, &ids, "2")
        .await?
        .into_iter()
        .enumerate()
    {
        println!("v2 on spawner {i} in {:.2} s", took.as_secs_f64());
        rows.push(row(
            format!("redeploy fetched spawner {i} (v2)"),
            bytes(held.fetched_bytes),
            bytes(size),
            pct(held.fetched_bytes, size),
            "< 1 %",
        ));
    }

    // One file changed: 1 MiB in the middle of the middle file.
    let changed = change_one_file(archive, mid_offset, mid_len)?;
    let (r, took) = upload(&c, archive, "3").await?;
    println!(
        "v3 ({} changed) uploaded in {:.2} s",
        bytes(changed),
        took.as_secs_f64()
    );
    rows.push(row(
        "one-file change upload new bytes (v3)",
        format!("{} ({} chunks)", bytes(r.new_bytes), r.new_chunks),
        bytes(size),
        pct(r.new_bytes, size),
        &format!("~{} changed", bytes(changed)),
    ));
    for (i, (took, held)) in install_everywhere(&c, &ids, "3")
        .await?
        .into_iter()
        .enumerate()
    {
        println!("v3 on spawner {i} in {:.2} s", took.as_secs_f64());
        rows.push(row(
            format!("one-file change fetched spawner {i} (v3)"),
            bytes(held.fetched_bytes),
            bytes(size),
            pct(held.fetched_bytes, size),
            &format!("~{} changed", bytes(changed)),
        ));
    }

    // Where each spawner's install time went, from its own log.
    for i in 0..pids.len() {
        let log = sb.dir().join(format!("spawner-process-{i}.log"));
        for line in std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("build installed"))
        {
            println!("spawner {i}: {}", line.trim());
        }
    }

    // Peak memory against the archive size.
    let own = peak_rss("self")?;
    rows.push(row(
        "peak RSS master (in-process, with this client)",
        bytes(own),
        bytes(size),
        format!("{:.2}x", f(own) / f(size)),
        "flat in archive size",
    ));
    for (i, pid) in pids.iter().enumerate() {
        let p = peak_rss(&pid.to_string())?;
        rows.push(row(
            format!("peak RSS spawner {i} (pid {pid})"),
            bytes(p),
            bytes(size),
            format!("{:.2}x", f(p) / f(size)),
            "flat in archive size",
        ));
    }
    Ok(rows)
}

fn print_table(rows: &[Row]) {
    let w = |get: fn(&Row) -> &str, head: &str| {
        rows.iter()
            .map(|r| get(r).chars().count())
            .chain([head.len()])
            .max()
            .unwrap_or(0)
    };
    let w0 = w(|r| &r.figure, "figure");
    let w1 = w(|r| &r.value, "value");
    let w2 = w(|r| &r.baseline, "baseline");
    let w3 = w(|r| &r.ratio, "ratio");
    println!();
    println!(
        "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  target",
        "figure", "value", "baseline", "ratio"
    );
    for r in rows {
        println!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}  {}",
            r.figure, r.value, r.baseline, r.ratio, r.target
        );
    }
}
