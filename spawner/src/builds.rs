//! Uploaded builds on this host: fetched from the master chunk by chunk (only the chunks the
//! cache lacks), verified, unpacked into immutable versioned directories, reported to the
//! master, fetched ahead when the master wants them, and collected when nothing needs them.
//! [`BuildStore`] is the only path that changes `<data-dir>/builds/` (its layout is described
//! in `builds/layout.rs`).

mod chunked;
mod error;
mod fetch;
mod gc;
mod install;
mod layout;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use exile_api::v1;
use futures::future::{BoxFuture, FutureExt, Shared};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tracing::instrument::WithSubscriber;

pub use error::BuildError;
use fetch::Master;
use layout::{BuildMeta, Layout};

use crate::backoff::Backoff;
use crate::config::Config;
use crate::enroll::Credential;
use crate::error::Result;

/// (name, version) of an installed build.
pub type BuildKey = (String, String);

/// Gives the (name, version) pairs the spawner's instances use now; collection never removes
/// those.
pub type InUseFn = Arc<dyn Fn() -> BoxFuture<'static, HashSet<BuildKey>> + Send + Sync>;

/// Settings of the build store.
#[derive(Debug, Clone)]
pub struct BuildsConfig {
    /// The spawner's data dir; builds live in its `builds/`.
    pub data_dir: PathBuf,
    /// Newest versions kept per build name by collection (`--builds-keep`), unless `live`
    /// has the setting `builds.keep_versions`.
    pub keep: usize,
    /// The settings pushed by the master, read at each collection; `None` keeps `keep`.
    pub live: Option<Arc<crate::live::LiveSettings>>,
    /// How long a version must have gone unused before collection removes it
    /// (`--builds-gc-grace-secs`).
    pub gc_grace: Duration,
    /// How often collection runs.
    pub gc_interval: Duration,
}

impl BuildsConfig {
    /// The settings from the spawner's flags.
    pub fn from_config(config: &Config) -> Self {
        let gc_grace = Duration::from_secs(config.builds_gc_grace_secs);
        Self {
            data_dir: config.data_dir.clone(),
            keep: usize::try_from(config.builds_keep).unwrap_or(usize::MAX),
            live: None,
            gc_grace,
            gc_interval: (gc_grace / 2).clamp(Duration::from_secs(1), Duration::from_secs(60)),
        }
    }
}

/// A build on disk, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledBuild {
    /// Build name.
    pub name: String,
    /// Version.
    pub version: String,
    /// SHA-256 of its archive.
    pub sha256: String,
    /// The unpacked build (`<data-dir>/builds/<name>/<version>`); never changes while the
    /// version is installed.
    pub dir: PathBuf,
    /// The `exile-build.toml` text the master gave with it, when there is one.
    pub manifest: Option<String>,
}

/// What one collection removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// The versions removed.
    pub versions: Vec<BuildKey>,
    /// Cached chunks removed.
    pub chunks: u64,
    /// Bytes freed (unpacked versions and chunks).
    pub bytes: u64,
}

/// The uploaded builds this spawner holds. Cheap to clone; every clone is the same store.
#[derive(Clone)]
pub struct BuildStore {
    inner: Arc<Inner>,
}

type Flight = Shared<BoxFuture<'static, Result<InstalledBuild, BuildError>>>;

/// An installed version and when something last used it.
struct Entry {
    meta: BuildMeta,
    last_used_unix_ms: i64,
}

struct Inner {
    layout: Arc<Layout>,
    config: BuildsConfig,
    in_use: InUseFn,
    // The std mutexes below guard short sections and are never held across an await.
    master: Mutex<Option<Master>>,
    /// Installed versions. Also held while a version is moved into or out of its place, so
    /// collection and installs never see it half-moved.
    index: Mutex<BTreeMap<BuildKey, Entry>>,
    /// Installs under way, shared by every caller asking for the same version.
    inflight: Mutex<HashMap<BuildKey, Flight>>,
    /// The builds the master wants held.
    wanted: watch::Sender<Vec<v1::BuildRef>>,
    /// Bumped whenever the set of installed versions changes.
    held: watch::Sender<u64>,
    fetched_total: AtomicU64,
    /// Cached chunks already checked against their hash.
    checked: Arc<install::Checked>,
    shutdown: CancellationToken,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere never leaves these maps half-updated in a way worth refusing.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn spec(name: &str, version: &str) -> String {
    format!("{name}@{version}")
}

impl BuildStore {
    /// Opens the store in `config.data_dir/builds`: empties its scratch directory, removes
    /// what interrupted installs left, reads the installed versions, and starts fetching
    /// wanted builds and collecting unused ones until `shutdown`. Fetching needs
    /// [`connect`](Self::connect) first.
    pub async fn open(
        config: BuildsConfig,
        in_use: InUseFn,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        // Absolute, so the directories handed out stay right whatever a process's cwd.
        let data_dir = std::path::absolute(&config.data_dir)
            .map_err(|e| crate::Error::io("could not resolve", &config.data_dir, e))?;
        let layout = Arc::new(Layout::new(&data_dir));
        let l = layout.clone();
        let found = blocking(move || {
            l.prepare()?;
            l.scan()
        })
        .await?;
        // A restart starts every grace period afresh: instances may not be adopted yet.
        let now = exile_api::now_unix_ms();
        let index = found
            .into_iter()
            .map(|meta| {
                let key = (meta.name.clone(), meta.version.clone());
                let entry = Entry {
                    meta,
                    last_used_unix_ms: now,
                };
                (key, entry)
            })
            .collect();
        let store = Self {
            inner: Arc::new(Inner {
                layout,
                config,
                in_use,
                master: Mutex::new(None),
                index: Mutex::new(index),
                inflight: Mutex::new(HashMap::new()),
                wanted: watch::Sender::new(Vec::new()),
                held: watch::Sender::new(0),
                fetched_total: AtomicU64::new(0),
                checked: Arc::default(),
                shutdown,
            }),
        };
        let unflushed: Vec<BuildMeta> = lock(&store.inner.index)
            .values()
            .filter(|e| e.meta.unflushed_boot.is_some())
            .map(|e| e.meta.clone())
            .collect();
        for meta in &unflushed {
            store.flush_later(meta);
        }
        tokio::spawn(store.clone().fetch_wanted().with_current_subscriber());
        tokio::spawn(
            store
                .clone()
                .collect_periodically()
                .with_current_subscriber(),
        );
        Ok(store)
    }

    /// Lets the store fetch from the master at `endpoint`, authenticated with `credential`
    /// like the link.
    pub fn connect(&self, endpoint: &Endpoint, credential: &Credential) -> Result<()> {
        let master = Master::new(endpoint, credential)?;
        *lock(&self.inner.master) = Some(master);
        Ok(())
    }

    /// Makes sure `build` is installed and says where. Returns at once when it already is
    /// (same SHA-256); otherwise fetches the chunks the cache lacks, checks and unpacks the
    /// archive, and reports it installed only once it is complete on disk. Concurrent calls
    /// for one version share one download; a failure is not remembered.
    pub async fn ensure(&self, build: &v1::BuildRef) -> Result<InstalledBuild> {
        check_ref(build)?;
        let key = (build.name.clone(), build.version.clone());
        // A second round only when another archive of the same version was being installed.
        for _ in 0..2 {
            if let Some(found) = self.lookup(build) {
                return Ok(found);
            }
            let installed = self.flight(&key, build).await?;
            if installed.sha256 == build.sha256 {
                return Ok(installed);
            }
        }
        Err(BuildError::Conflict(format!(
            "build {} is being installed with another archive at the same time; try again",
            spec(&build.name, &build.version)
        ))
        .into())
    }

    /// Where an installed version is, if it is installed.
    pub fn installed(&self, name: &str, version: &str) -> Option<InstalledBuild> {
        let index = lock(&self.inner.index);
        let entry = index.get(&(name.to_owned(), version.to_owned()))?;
        Some(self.describe(&entry.meta))
    }

    /// Every installed build (instance counts left 0: the caller knows its instances).
    pub fn held(&self) -> Vec<v1::HeldBuild> {
        lock(&self.inner.index)
            .values()
            .map(|e| e.meta.to_held())
            .collect()
    }

    /// One installed build as the master sees it.
    pub fn held_build(&self, name: &str, version: &str) -> Option<v1::HeldBuild> {
        lock(&self.inner.index)
            .get(&(name.to_owned(), version.to_owned()))
            .map(|e| e.meta.to_held())
    }

    /// Changes whenever a version is installed or removed.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.held.subscribe()
    }

    /// Bytes fetched from the master since the store opened.
    pub fn fetched_bytes_total(&self) -> u64 {
        self.inner.fetched_total.load(Ordering::Relaxed)
    }

    /// The builds the master wants held (its `ConfigPush.wanted_builds`): those missing are
    /// fetched in the background, one at a time, and none of them is collected.
    pub fn set_wanted(&self, builds: Vec<v1::BuildRef>) {
        let builds: Vec<v1::BuildRef> = builds
            .into_iter()
            .filter(|b| match check_ref(b) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "ignoring a malformed wanted build");
                    false
                }
            })
            .collect();
        tracing::info!(
            builds = ?builds.iter().map(|b| spec(&b.name, &b.version)).collect::<Vec<_>>(),
            "the master wants these builds held"
        );
        self.inner.wanted.send_replace(builds);
    }

    /// Removes the versions that are neither in `in_use` nor wanted, beyond the newest
    /// `keep` of each name, once they have gone unused for the grace period; then the cached
    /// chunks no remaining version uses (and older than the grace period, so a retried
    /// install finds what it fetched). Does file work: call it off the async threads.
    pub fn collect(&self, in_use: &HashSet<BuildKey>) -> Collected {
        let inner = &self.inner;
        let now = exile_api::now_unix_ms();
        let grace_ms = i64::try_from(inner.config.gc_grace.as_millis()).unwrap_or(i64::MAX);
        let wanted: HashSet<BuildKey> = inner
            .wanted
            .borrow()
            .iter()
            .map(|b| (b.name.clone(), b.version.clone()))
            .collect();
        let mut out = Collected::default();
        let mut trash = Vec::new();
        {
            let mut index = lock(&inner.index);
            for (key, entry) in index.iter_mut() {
                if in_use.contains(key) {
                    entry.last_used_unix_ms = now;
                }
            }
            let versions: Vec<gc::Version<'_>> = index
                .values()
                .map(|e| gc::Version {
                    name: &e.meta.name,
                    version: &e.meta.version,
                    installed_at: e.meta.installed_at_unix_ms,
                    last_used: e.last_used_unix_ms,
                })
                .collect();
            let policy = gc::Policy {
                keep: inner
                    .config
                    .live
                    .as_ref()
                    .and_then(|l| l.builds_keep())
                    .unwrap_or(inner.config.keep),
                grace_ms,
                now,
            };
            let doomed = gc::doomed(&versions, policy, |name, version| {
                let key = (name.to_owned(), version.to_owned());
                in_use.contains(&key) || wanted.contains(&key)
            });
            for key in doomed {
                let (name, version) = (&key.0, &key.1);
                // The record goes first: without it the directory is a leftover either way.
                let removed = layout::remove_file(&inner.layout.meta(name, version))
                    .and_then(|()| inner.layout.trash(&inner.layout.version_dir(name, version)));
                match removed {
                    Ok(dir) => {
                        trash.extend(dir);
                        if let Some(entry) = index.remove(&key) {
                            out.bytes += entry.meta.disk_bytes;
                        }
                        tracing::info!(build = %spec(name, version), "removed an unused build");
                        out.versions.push(key);
                    }
                    Err(e) => {
                        tracing::warn!(build = %spec(name, version), error = %e, "could not remove an unused build");
                    }
                }
            }
        }
        // Deleting the trees takes time; nobody sees them any more.
        drop(trash);
        if !out.versions.is_empty() {
            inner.held.send_modify(|n| *n += 1);
        }
        self.collect_chunks(grace_ms, &mut out);
        out
    }

    fn collect_chunks(&self, grace_ms: i64, out: &mut Collected) {
        let inner = &self.inner;
        let referenced: HashSet<String> = lock(&inner.index)
            .values()
            .flat_map(|e| e.meta.chunks.iter().map(|c| c.sha256.clone()))
            .collect();
        // An install under way may rely on chunks no installed version references yet.
        if !lock(&inner.inflight).is_empty() {
            return;
        }
        let dir = inner.layout.chunks();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !exile_api::build::is_sha256_hex(&name) || referenced.contains(&name) {
                continue;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let age_ms = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            if age_ms < grace_ms {
                continue;
            }
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    out.chunks += 1;
                    out.bytes += meta.len();
                }
                Err(e) => {
                    tracing::warn!(path = %entry.path().display(), error = %e, "could not remove an unused chunk");
                }
            }
        }
    }

    fn describe(&self, meta: &BuildMeta) -> InstalledBuild {
        InstalledBuild {
            name: meta.name.clone(),
            version: meta.version.clone(),
            sha256: meta.sha256.clone(),
            dir: self.inner.layout.version_dir(&meta.name, &meta.version),
            manifest: meta.manifest.clone(),
        }
    }

    /// The installed version when its archive is the one asked for; marks it used.
    fn lookup(&self, build: &v1::BuildRef) -> Option<InstalledBuild> {
        let mut index = lock(&self.inner.index);
        let entry = index.get_mut(&(build.name.clone(), build.version.clone()))?;
        if entry.meta.sha256 != build.sha256 {
            return None;
        }
        entry.last_used_unix_ms = exile_api::now_unix_ms();
        Some(self.describe(&entry.meta))
    }

    /// The install of `key` under way, or a new one. It runs as its own task, so a caller
    /// that gives up (deadline, cancellation) does not waste what others wait for.
    fn flight(&self, key: &BuildKey, build: &v1::BuildRef) -> Flight {
        let mut inflight = lock(&self.inner.inflight);
        if let Some(flight) = inflight.get(key) {
            return flight.clone();
        }
        let store = self.clone();
        let (build, task_key) = (build.clone(), key.clone());
        let task = tokio::spawn(
            async move {
                let result = store.install(&build).await;
                if let Err(e) = &result {
                    tracing::warn!(build = %spec(&build.name, &build.version), error = %e, "build install failed");
                }
                lock(&store.inner.inflight).remove(&task_key);
                result
            }
            .with_current_subscriber(),
        );
        let flight = async move {
            task.await.unwrap_or_else(|e| {
                Err(BuildError::Internal(format!(
                    "the install task failed: {e}"
                )))
            })
        }
        .boxed()
        .shared();
        inflight.insert(key.clone(), flight.clone());
        flight
    }

    async fn install(&self, build: &v1::BuildRef) -> Result<InstalledBuild, BuildError> {
        let spec = spec(&build.name, &build.version);
        let key = (build.name.clone(), build.version.clone());
        let other = lock(&self.inner.index)
            .get(&key)
            .map(|e| e.meta.sha256.clone());
        if let Some(other) = other
            && other != build.sha256
            && (self.inner.in_use)().await.contains(&key)
        {
            return Err(BuildError::Conflict(format!(
                "this spawner holds {spec} with another archive ({other}) and instances use it; remove them before installing the new archive"
            )));
        }
        let master = lock(&self.inner.master).clone().ok_or_else(|| {
            BuildError::Unavailable(format!(
                "cannot fetch build {spec}: this spawner is not linked to the master yet"
            ))
        })?;
        let started = tokio::time::Instant::now();
        let unpacked = install::prepare(
            &self.inner.layout,
            &master,
            &self.inner.checked,
            &self.inner.fetched_total,
            build,
            &spec,
        )
        .await?;
        let phases = unpacked.phases;
        let store = self.clone();
        let meta = blocking(move || store.commit(unpacked)).await?;
        if meta.unflushed_boot.is_some() {
            self.flush_later(&meta);
        }
        tracing::info!(
            build = %spec,
            fetched_bytes = meta.fetched_bytes,
            disk_bytes = meta.disk_bytes,
            elapsed = ?started.elapsed(),
            fetch = ?phases.fetch,
            verify = ?phases.verify,
            unpack = ?phases.unpack,
            "build installed"
        );
        Ok(self.describe(&meta))
    }

    /// Moves an unpacked build into place and records it; from here on it is installed.
    fn commit(&self, unpacked: install::Unpacked) -> Result<BuildMeta, BuildError> {
        let install::Unpacked { mut meta, dir, .. } = unpacked;
        let layout = &self.inner.layout;
        let (name, version) = (meta.name.clone(), meta.version.clone());
        let name_dir = layout.name_dir(&name);
        std::fs::create_dir_all(&name_dir)
            .map_err(|e| BuildError::io("could not create", &name_dir, &e))?;
        let target = layout.version_dir(&name, &version);
        meta.installed_at_unix_ms = exile_api::now_unix_ms();
        // The files are flushed after the instance that waits for them has started (see
        // `BuildMeta::unflushed_boot`); where the host's boot cannot be told, now.
        meta.unflushed_boot = layout::boot_id();
        if meta.unflushed_boot.is_none() {
            layout::flush_fs(dir.path())?;
        }
        let mut index = lock(&self.inner.index);
        // Another archive of this version (not in use, checked before fetching), or what an
        // interrupted install left: neither is reported installed any more.
        let replaced = index.remove(&(name.clone(), version.clone())).is_some();
        let result = (|| {
            layout::remove_file(&layout.meta(&name, &version))?;
            let old = layout.trash(&target)?;
            std::fs::rename(dir.path(), &target)
                .map_err(|e| BuildError::io("could not move the unpacked build to", &target, &e))?;
            dir.keep();
            if let Err(e) = layout.write_meta(&meta) {
                drop(layout.trash(&target));
                return Err(e);
            }
            index.insert(
                (name.clone(), version.clone()),
                Entry {
                    meta: meta.clone(),
                    last_used_unix_ms: meta.installed_at_unix_ms,
                },
            );
            Ok(old)
        })();
        drop(index);
        let changed = replaced || result.is_ok();
        if changed {
            self.inner.held.send_modify(|n| *n += 1);
        }
        // Any old tree is deleted here, outside the lock.
        result.map(|_old| meta)
    }

    /// Flushes an installed version's files in the background and then marks its record
    /// durable, unless the version was removed or replaced meanwhile.
    fn flush_later(&self, meta: &BuildMeta) {
        let store = self.clone();
        let key = (meta.name.clone(), meta.version.clone());
        let installed_at = meta.installed_at_unix_ms;
        let dir = self.inner.layout.version_dir(&meta.name, &meta.version);
        let flush = move || {
            layout::flush_fs(&dir)?;
            let mut index = lock(&store.inner.index);
            let Some(entry) = index
                .get_mut(&key)
                .filter(|e| e.meta.installed_at_unix_ms == installed_at)
            else {
                return Ok(());
            };
            let mut meta = entry.meta.clone();
            meta.unflushed_boot = None;
            store.inner.layout.write_meta(&meta)?;
            entry.meta = meta;
            Ok(())
        };
        let spec = spec(&meta.name, &meta.version);
        tokio::spawn(
            async move {
                if let Err(e) = blocking(flush).await {
                    tracing::warn!(build = %spec, error = %e, "could not flush the build to disk; a host crash would make this spawner fetch it again");
                }
            }
            .with_current_subscriber(),
        );
    }

    /// Fetches the wanted builds the store lacks, one at a time, retrying with backoff.
    async fn fetch_wanted(self) {
        let mut wanted = self.inner.wanted.subscribe();
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let shutdown = self.inner.shutdown.clone();
        loop {
            let list = wanted.borrow_and_update().clone();
            let mut failed = false;
            for build in list {
                if self.lookup(&build).is_some() {
                    continue;
                }
                let spec = spec(&build.name, &build.version);
                tracing::info!(build = %spec, "fetching a build the master wants held");
                let result = tokio::select! {
                    result = self.ensure(&build) => result,
                    () = shutdown.cancelled() => return,
                };
                if let Err(e) = result {
                    tracing::warn!(build = %spec, error = %e, "could not fetch a wanted build; will retry");
                    failed = true;
                }
            }
            let retry = if failed {
                Some(backoff.next_delay())
            } else {
                backoff.reset();
                None
            };
            let sleep = async {
                match retry {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = wanted.changed() => if changed.is_err() { return },
                () = sleep => {}
            }
        }
    }

    /// Runs [`collect`](Self::collect) every `gc_interval` with the caller's in-use set.
    async fn collect_periodically(self) {
        let shutdown = self.inner.shutdown.clone();
        let mut ticker = tokio::time::interval(self.inner.config.gc_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let in_use = tokio::select! {
                in_use = (self.inner.in_use)() => in_use,
                () = shutdown.cancelled() => return,
            };
            let store = self.clone();
            match tokio::task::spawn_blocking(move || store.collect(&in_use)).await {
                Ok(out) if out != Collected::default() => {
                    tracing::info!(
                        versions = out.versions.len(),
                        chunks = out.chunks,
                        freed_bytes = out.bytes,
                        "collected unused builds"
                    );
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "build collection failed"),
            }
        }
    }
}

/// Refuses a reference that could not name a build (or would escape the builds directory).
fn check_ref(build: &v1::BuildRef) -> Result<(), BuildError> {
    exile_api::build::check_name(&build.name).map_err(BuildError::Invalid)?;
    exile_api::build::check_version(&build.version).map_err(BuildError::Invalid)?;
    let spec = spec(&build.name, &build.version);
    if build.id.is_empty() {
        return Err(BuildError::Invalid(format!(
            "the reference to build {spec} has no build id"
        )));
    }
    if !exile_api::build::is_sha256_hex(&build.sha256) {
        return Err(BuildError::Invalid(format!(
            "the reference to build {spec} has a malformed SHA-256 {:?} (64 lowercase hex digits expected)",
            build.sha256
        )));
    }
    Ok(())
}

/// Runs file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BuildError> + Send + 'static,
) -> Result<T, BuildError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| BuildError::Internal(format!("a build store task failed: {e}")))?
}
