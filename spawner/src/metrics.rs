//! Host and per-instance resource figures for heartbeats, via sysinfo, refreshing only what
//! is reported (the instances' own processes, not the whole process table). [`Sampling`]
//! runs the sampler in a task of its own on a blocking thread, so commands and cancels on the
//! link never wait behind a refresh or a walk of a large instance directory; the link sends
//! the latest sample.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use exile_api::v1;
use sysinfo::{DiskRefreshKind, Disks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How long an instance directory's size is reused before it is walked again: the walk reads
/// every file's metadata, and disk use changes slowly next to CPU and memory.
const DIR_SIZE_MAX_AGE: Duration = Duration::from_secs(30);

/// One running instance to measure.
#[derive(Debug, Clone)]
pub struct Target {
    /// Instance id.
    pub id: String,
    /// Its process.
    pub pid: u32,
    /// Its directory.
    pub dir: PathBuf,
    /// Players the game last reported through the SDK (the master takes the heartbeat's
    /// figure as current, so it must be the real one, not a placeholder).
    pub players: u32,
}

/// Keeps the sysinfo state between samples (CPU figures are differences between refreshes).
pub struct Sampler {
    system: Option<System>,
    disks: Option<Disks>,
    data_dir: PathBuf,
    /// Instance directory sizes and when they were walked.
    dir_sizes: HashMap<PathBuf, (Instant, u64)>,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler")
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

impl Sampler {
    /// A sampler for the file system holding `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        let system = match System::new() {
            Ok(system) => Some(system),
            Err(e) => {
                tracing::warn!(error = %e, "system metrics are unavailable");
                None
            }
        };
        let disks = match Disks::new_with_refreshed_list_specifics(storage()) {
            Ok(disks) => Some(disks),
            Err(e) => {
                tracing::warn!(error = %e, "disk metrics are unavailable");
                None
            }
        };
        let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        Self {
            system,
            disks,
            data_dir,
            dir_sizes: HashMap::new(),
        }
    }

    /// The size of an instance directory, walked again once [`DIR_SIZE_MAX_AGE`] old.
    fn dir_size(&mut self, dir: &Path, now: Instant) -> u64 {
        match self.dir_sizes.get(dir) {
            Some((at, size)) if now.duration_since(*at) < DIR_SIZE_MAX_AGE => *size,
            _ => {
                let size = dir_size(dir);
                self.dir_sizes.insert(dir.to_owned(), (now, size));
                size
            }
        }
    }

    /// Host figures and one entry per target.
    pub fn sample(&mut self, targets: &[Target]) -> v1::Heartbeat {
        let mut host = v1::Resources::default();
        let now = Instant::now();
        self.dir_sizes
            .retain(|dir, _| targets.iter().any(|t| &t.dir == dir));
        let mut instances: Vec<v1::InstanceMetrics> = Vec::with_capacity(targets.len());
        for t in targets {
            instances.push(v1::InstanceMetrics {
                id: t.id.clone(),
                resources: Some(v1::Resources {
                    disk_used_bytes: self.dir_size(&t.dir, now),
                    ..Default::default()
                }),
                players: t.players,
            });
        }
        if let Some(system) = &mut self.system {
            system.refresh_cpu_usage();
            system.refresh_memory();
            let cpu_count = system.cpus().len();
            host.cpu_count = u32::try_from(cpu_count).unwrap_or(u32::MAX);
            // sysinfo gives the average over CPUs; the API wants percent of one core.
            host.cpu_percent = f64::from(system.global_cpu_usage()) * cpu_count as f64;
            host.memory_bytes = system.used_memory();
            host.memory_total_bytes = system.total_memory();

            let pids: Vec<Pid> = targets.iter().map(|t| Pid::from_u32(t.pid)).collect();
            system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&pids),
                true,
                ProcessRefreshKind::nothing()
                    .with_cpu()
                    .with_memory()
                    .without_tasks(),
            );
            for (target, metrics) in targets.iter().zip(instances.iter_mut()) {
                if let (Some(process), Some(res)) = (
                    system.process(Pid::from_u32(target.pid)),
                    metrics.resources.as_mut(),
                ) {
                    res.cpu_percent = f64::from(process.cpu_usage());
                    res.memory_bytes = process.memory();
                }
            }
        }
        let disks = self.disks.as_mut().map(|disks| {
            disks.refresh_specifics(true, storage());
            &*disks
        });
        if let Some(disk) = disks
            .into_iter()
            .flat_map(|disks| disks.iter())
            .filter(|d| self.data_dir.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len())
        {
            host.disk_total_bytes = disk.total_space();
            host.disk_used_bytes = disk.total_space().saturating_sub(disk.available_space());
        }
        v1::Heartbeat {
            host: Some(host),
            instances,
        }
    }
}

/// The sampler running on its own: samples every period (the heartbeat interval) and keeps
/// the latest result for the link.
pub struct Sampling {
    latest: watch::Receiver<Option<v1::Heartbeat>>,
    period: watch::Sender<Duration>,
}

impl Sampling {
    /// Starts sampling the instances `manager` holds every `period`, first at once, until
    /// `shutdown`.
    pub fn spawn(
        data_dir: &Path,
        manager: crate::manager::Manager,
        period: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let (latest_tx, latest) = watch::channel(None);
        let (period_tx, mut period_rx) = watch::channel(period);
        let data_dir = data_dir.to_owned();
        tokio::spawn(async move {
            let layout = crate::layout::Layout::new(data_dir.clone());
            let mut sampler = Some(Sampler::new(&data_dir));
            loop {
                let targets = targets(&manager, &layout).await;
                let Some(mut s) = sampler.take() else { return };
                let Ok((s, heartbeat)) = tokio::task::spawn_blocking(move || {
                    let heartbeat = s.sample(&targets);
                    (s, heartbeat)
                })
                .await
                else {
                    tracing::error!("the resource sampler failed; heartbeats carry no figures");
                    return;
                };
                sampler = Some(s);
                latest_tx.send_replace(Some(heartbeat));
                let period = (*period_rx.borrow_and_update()).max(Duration::from_millis(100));
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(period) => {}
                    // A new period starts a new wait.
                    Ok(()) = period_rx.changed() => {}
                }
            }
        });
        Self {
            latest,
            period: period_tx,
        }
    }

    /// Samples every `period` from now on.
    pub fn set_period(&self, period: Duration) {
        self.period
            .send_if_modified(|p| std::mem::replace(p, period) != period);
    }

    /// The latest sample, if one was taken yet.
    pub fn latest(&self) -> Option<v1::Heartbeat> {
        self.latest.borrow().clone()
    }
}

/// The instances with a process, to be measured.
async fn targets(manager: &crate::manager::Manager, layout: &crate::layout::Layout) -> Vec<Target> {
    manager
        .list()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| {
            r.pid.map(|pid| Target {
                dir: layout.instance(&r.id).runtime().to_owned(),
                id: r.id,
                pid,
                players: r.players,
            })
        })
        .collect()
}

fn storage() -> DiskRefreshKind {
    DiskRefreshKind::nothing().with_storage()
}

/// Bytes of the regular files under `dir` (links not followed).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_size_sums_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("logs")).unwrap();
        std::fs::write(dir.path().join("logs/b"), [0u8; 50]).unwrap();
        assert_eq!(dir_size(dir.path()), 150);
        assert_eq!(dir_size(&dir.path().join("missing")), 0);
    }

    #[test]
    fn sample_reports_host_and_own_process() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), [0u8; 10]).unwrap();
        let mut sampler = Sampler::new(dir.path());
        let target = Target {
            id: "self".into(),
            pid: std::process::id(),
            dir: dir.path().to_owned(),
            players: 7,
        };
        let hb = sampler.sample(std::slice::from_ref(&target));
        assert_eq!(hb.instances[0].players, 7, "the SDK's count goes out as is");
        let host = hb.host.unwrap();
        assert!(host.cpu_count >= 1);
        assert!(host.memory_total_bytes >= host.memory_bytes && host.memory_bytes > 0);
        assert!(host.disk_total_bytes > 0, "no disk found for the data dir");
        let me = hb.instances[0].resources.unwrap();
        assert!(me.memory_bytes > 0);
        assert_eq!(me.disk_used_bytes, 10);

        // The directory is not walked again on every sample.
        std::fs::write(dir.path().join("g"), [0u8; 5]).unwrap();
        let hb = sampler.sample(std::slice::from_ref(&target));
        assert_eq!(hb.instances[0].resources.unwrap().disk_used_bytes, 10);
        let at = sampler.dir_sizes.get_mut(dir.path()).unwrap();
        at.0 -= DIR_SIZE_MAX_AGE;
        let hb = sampler.sample(std::slice::from_ref(&target));
        assert_eq!(hb.instances[0].resources.unwrap().disk_used_bytes, 15);
        // An instance no longer measured is forgotten.
        sampler.sample(&[]);
        assert!(sampler.dir_sizes.is_empty());
    }
}
