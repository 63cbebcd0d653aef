//! Uploaded game-server builds: checking and storing uploads content-addressed, activating
//! versions, deleting them with their chunks, and serving chunks to spawners. The registry
//! holds the catalogue in memory ([`catalog`]); the database holds the rows; the blob store
//! holds the bytes ([`blobs`]).

pub mod blobs;
pub mod catalog;
pub mod upload;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use exile_api::build::{BuildSpec, Manifest};
use exile_api::now_unix_ms;
use exile_api::v1 as pb;

pub use blobs::{BlobStore, Chunk, Chunked};
pub use catalog::{Activation, BuildChoice, BuildMeta, Catalog, selector_json, selector_text};
pub use upload::{Announced, Sessions, Upload};

use crate::error::{Error, Result};
use crate::model::Labels;
use crate::registry::Registry;
use crate::store::Store;

pub use exile_api::build::MAX_FETCH_CHUNKS;

/// Checks an archive without unpacking it. The archive module in production; tests of the
/// upload path may stand in a checker of their own.
pub type Inspector = fn(&Path) -> exile_archive::Result<exile_archive::Summary>;

/// The production inspector: the archive module's rules, with a single top directory (a
/// build zipped with its folder) stripped as spawners will strip it.
pub fn inspect_archive(path: &Path) -> exile_archive::Result<exile_archive::Summary> {
    exile_archive::inspect(
        path,
        &exile_archive::Options {
            strip_single_top_dir: true,
            ..exile_archive::Options::default()
        },
    )
}

/// Where and how builds are kept.
#[derive(Clone, Debug)]
pub struct BuildsConfig {
    /// The master's data dir: `blobs/` and `uploads/` go in it.
    pub data_dir: PathBuf,
    /// Largest archive accepted, bytes.
    pub max_bytes: u64,
    /// Archive checker.
    pub inspector: Inspector,
}

/// What a delete freed.
#[derive(Clone, Debug)]
pub struct Deleted {
    /// The build that was deleted.
    pub build: BuildMeta,
    /// Chunks no other build used, removed.
    pub freed_chunks: u32,
    /// Their bytes.
    pub freed_bytes: u64,
}

/// The builds of this master.
pub struct Builds {
    store: Store,
    registry: Arc<Registry>,
    blobs: BlobStore,
    uploads_dir: PathBuf,
    /// Largest archive accepted; settings replace it.
    max_bytes: AtomicU64,
    inspector: Inspector,
    /// Uploads begun with BeginUpload.
    pub sessions: Sessions,
    /// Serialises activations and deletes, so the database and the registry see them in the
    /// same order.
    changes: tokio::sync::Mutex<()>,
    /// Uploads hold it shared from storing their chunks until their rows are in; a
    /// collection holds it alone, so it never removes a blob an upload is about to use.
    gc: tokio::sync::RwLock<()>,
    bytes_served: AtomicU64,
}

fn io_error(what: &str) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::Internal(format!("{what}: {e}"))
}

fn joined(e: tokio::task::JoinError) -> Error {
    Error::Internal(format!("a blocking task failed: {e}"))
}

fn format_pb(f: Option<exile_archive::Format>) -> pb::ArchiveFormat {
    match f {
        Some(exile_archive::Format::Zip) => pb::ArchiveFormat::Zip,
        Some(exile_archive::Format::TarGz) => pb::ArchiveFormat::TarGz,
        Some(exile_archive::Format::TarZst) => pb::ArchiveFormat::TarZst,
        Some(exile_archive::Format::Tar) => pb::ArchiveFormat::Tar,
        None => pb::ArchiveFormat::Unspecified,
    }
}

impl Builds {
    /// Opens the blob store, drops what an earlier run left half done (upload files, blobs no
    /// build uses) and returns the builds of this master.
    pub async fn open(
        store: Store,
        registry: Arc<Registry>,
        config: BuildsConfig,
    ) -> Result<Arc<Self>> {
        let blobs = BlobStore::open(config.data_dir.join("blobs"))
            .map_err(io_error("cannot open the blob store"))?;
        let uploads_dir = config.data_dir.join("uploads");
        let dir = uploads_dir.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            // Uploads do not survive a restart: their files are garbage now.
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            let mut b = std::fs::DirBuilder::new();
            b.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
            b.create(&dir)
        })
        .await
        .map_err(joined)?
        .map_err(io_error("cannot prepare the uploads directory"))?;
        let builds = Arc::new(Builds {
            store,
            registry,
            blobs,
            uploads_dir,
            max_bytes: AtomicU64::new(config.max_bytes),
            inspector: config.inspector,
            sessions: Sessions::default(),
            changes: tokio::sync::Mutex::new(()),
            gc: tokio::sync::RwLock::new(()),
            bytes_served: AtomicU64::new(0),
        });
        let (chunks, bytes) = builds.collect_all_garbage().await?;
        if chunks > 0 {
            tracing::info!(chunks, bytes, "removed blobs no build uses");
        }
        Ok(builds)
    }

    /// Bytes of chunks served to spawners since start.
    pub fn bytes_served(&self) -> u64 {
        self.bytes_served.load(Ordering::Relaxed)
    }

    /// Replaces the largest archive size accepted, for uploads begun from now on.
    pub fn set_max_bytes(&self, max_bytes: u64) {
        self.max_bytes.store(max_bytes, Ordering::Relaxed);
    }

    /// Starts an upload: checks what it announces and opens its temporary file.
    pub fn begin(&self, metadata: pb::UploadBuildMetadata) -> Result<Upload> {
        let announced = Announced::check(metadata, self.max_bytes.load(Ordering::Relaxed))?;
        if let Ok(b) = self.registry.find_build(&announced.reference()) {
            return Err(Error::AlreadyExists(format!(
                "{} exists already ({}); upload under another version or delete it first",
                b.reference(),
                b.id
            )));
        }
        Upload::create(&self.uploads_dir, announced)
    }

    /// Checks an upload whose bytes all arrived and stores it: archive rules, manifest,
    /// chunks into the blob store, rows in one transaction. On any refusal nothing of it
    /// stays (its file is removed; chunks it wrote are collected).
    /// `env_allowed`: the `security.env_allowed` setting, which the manifest's environment is
    /// checked against.
    pub async fn finish(
        &self,
        upload: Upload,
        actor: &str,
        env_allowed: &[String],
    ) -> Result<pb::UploadBuildResponse> {
        let (announced, temp) = upload.complete()?;
        let reference = announced.reference();
        if self
            .store
            .build_exists(&announced.name, &announced.version)
            .await?
        {
            return Err(Error::AlreadyExists(format!(
                "{reference} exists already; upload under another version or delete it first"
            )));
        }
        let inspector = self.inspector;
        let path = temp.path().to_owned();
        let summary = tokio::task::spawn_blocking(move || inspector(&path))
            .await
            .map_err(joined)?
            .map_err(|e| match e {
                exile_archive::Error::Io { .. } => {
                    Error::Internal(format!("reading upload of {reference}: {e}"))
                }
                refused => Error::InvalidArgument(format!("the archive was refused: {refused}")),
            })?;
        let manifest = if announced.manifest.is_empty() {
            summary.manifest.clone().unwrap_or_default()
        } else {
            announced.manifest.clone()
        };
        let parsed = if manifest.is_empty() {
            None
        } else {
            let m = Manifest::parse(&manifest)
                .map_err(|e| Error::InvalidArgument(format!("manifest: {e}")))?;
            exile_api::limits::check_env_policy(m.env.keys(), env_allowed)
                .map_err(|e| Error::InvalidArgument(format!("manifest: {e}")))?;
            Some(m)
        };

        let gc = self.gc.read().await;
        let blobs = self.blobs.clone();
        let path = temp.path().to_owned();
        let chunked = tokio::task::spawn_blocking(move || blobs.store_file(&path))
            .await
            .map_err(joined)?
            .map_err(io_error("cannot store an upload's chunks"))?;
        let mut meta = BuildMeta {
            id: crate::auth::new_id("bld"),
            name: announced.name,
            version: announced.version,
            sha256: announced.sha256,
            size: announced.size,
            format: format_pb(summary.format),
            manifest,
            created_by: actor.to_owned(),
            created_at: now_unix_ms(),
            chunk_count: u32::try_from(chunked.chunks.len()).unwrap_or(u32::MAX),
            file_count: summary.files,
            unpacked_bytes: summary.unpacked_bytes,
            command: String::new(),
            ports: Vec::new(),
        };
        if let Some(m) = &parsed {
            meta.describe(m);
        }
        let inserted = self.store.insert_build(&meta, &chunked.chunks).await;
        drop(gc);
        drop(temp);
        if let Err(e) = inserted {
            // The chunks this upload wrote belong to no build now.
            let hashes = chunked.chunks.iter().map(|c| c.sha256.clone()).collect();
            if let Err(gc_err) = self.collect(hashes).await {
                tracing::warn!(error = %gc_err, "could not collect a failed upload's chunks");
            }
            return Err(e);
        }
        tracing::info!(build = %meta.reference(), id = %meta.id, chunks = chunked.chunks.len(), new_chunks = chunked.new_chunks, "build stored");
        let build = self.registry.build_added(meta);
        Ok(pb::UploadBuildResponse {
            build: Some(build),
            new_chunks: chunked.new_chunks,
            new_bytes: chunked.new_bytes,
        })
    }

    /// Makes `name@version` the active version of its name on the spawners `selector` picks
    /// (replacing the activation of the same selector) and tells spawners what to hold.
    pub async fn activate(&self, spec: &str, selector: Labels, actor: &str) -> Result<pb::Build> {
        let (name, version) = BuildSpec::parse_exact(spec)
            .map_err(|e| Error::InvalidArgument(format!("build: {e}")))?;
        let _order = self.changes.lock().await;
        let meta = self.registry.find_build(&format!("{name}@{version}"))?;
        let a = Activation {
            name,
            selector,
            build_id: meta.id,
            activated_at: now_unix_ms(),
            activated_by: actor.to_owned(),
        };
        self.store.activate_build(&a).await?;
        Ok(self.registry.set_activation(a))
    }

    /// Deletes a build that nothing uses, then removes the chunks no other build shares.
    pub async fn delete(&self, spec: &str) -> Result<Deleted> {
        let _order = self.changes.lock().await;
        let meta = self.registry.find_build(spec)?;
        if let Some(why) = crate::rollout::delete_blocker(&self.registry, &meta) {
            return Err(Error::FailedPrecondition(why));
        }
        let meta = self.registry.take_build_for_delete(&meta.id)?;
        let gc = self.gc.write().await;
        let chunks = match self.store.delete_build(&meta.id).await {
            Ok(c) => c,
            Err(e) => {
                self.registry.restore_build(meta);
                return Err(e);
            }
        };
        self.registry.build_removed(&meta.id);
        let hashes = chunks.into_iter().map(|c| c.sha256).collect();
        let (freed_chunks, freed_bytes) = self.collect_locked(hashes, &gc).await?;
        drop(gc);
        tracing::info!(build = %meta.reference(), freed_chunks, freed_bytes, "build deleted");
        Ok(Deleted {
            build: meta,
            freed_chunks,
            freed_bytes,
        })
    }

    /// Removes those of `candidates` that no build uses.
    async fn collect(&self, candidates: Vec<String>) -> Result<(u32, u64)> {
        let gc = self.gc.write().await;
        self.collect_locked(candidates, &gc).await
    }

    async fn collect_locked(
        &self,
        candidates: Vec<String>,
        _gc: &tokio::sync::RwLockWriteGuard<'_, ()>,
    ) -> Result<(u32, u64)> {
        let candidates: Vec<String> = candidates
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let used = self.store.referenced_chunks(&candidates).await?;
        let unused: Vec<String> = candidates
            .into_iter()
            .filter(|h| !used.contains(h))
            .collect();
        self.remove_blobs(unused).await
    }

    /// Removes every blob no build uses (after a crash between storing chunks and rows).
    pub async fn collect_all_garbage(&self) -> Result<(u32, u64)> {
        let _gc = self.gc.write().await;
        let blobs = self.blobs.clone();
        let present = tokio::task::spawn_blocking(move || blobs.sweep_and_list())
            .await
            .map_err(joined)?
            .map_err(io_error("cannot list the blob store"))?;
        let used = self.store.all_chunk_hashes().await?;
        let unused = present.into_iter().filter(|h| !used.contains(h)).collect();
        self.remove_blobs(unused).await
    }

    async fn remove_blobs(&self, hashes: Vec<String>) -> Result<(u32, u64)> {
        let blobs = self.blobs.clone();
        tokio::task::spawn_blocking(move || {
            let (mut n, mut bytes) = (0u32, 0u64);
            for h in hashes {
                match blobs.remove(&h) {
                    Ok(Some(len)) => {
                        n += 1;
                        bytes += len;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(chunk = %h, error = %e, "could not remove an unused blob")
                    }
                }
            }
            (n, bytes)
        })
        .await
        .map_err(joined)
    }

    /// What a spawner needs to fetch a build: its reference, chunk list, format, manifest.
    pub async fn chunk_list(&self, build_id: &str) -> Result<pb::GetBuildChunksResponse> {
        crate::convert::check_id("build_id", build_id)?;
        let meta = self
            .registry
            .build_by_id(build_id)
            .ok_or_else(|| Error::NotFound(format!("no build with id {build_id}")))?;
        let chunks = self.store.build_chunks(&meta.id).await?;
        Ok(pb::GetBuildChunksResponse {
            build: Some(meta.build_ref()),
            chunks: chunks
                .into_iter()
                .map(|c| pb::ChunkRef {
                    sha256: c.sha256,
                    size: c.size,
                })
                .collect(),
            format: meta.format as i32,
            manifest: meta.manifest,
        })
    }

    /// Checks a FetchChunks request: at most [`MAX_FETCH_CHUNKS`] well-formed hashes, each
    /// of a chunk some stored build uses.
    pub async fn check_fetch(&self, hashes: &[String]) -> Result<()> {
        if hashes.len() > MAX_FETCH_CHUNKS {
            return Err(Error::InvalidArgument(format!(
                "sha256: at most {MAX_FETCH_CHUNKS} chunks a call, not {}",
                hashes.len()
            )));
        }
        if let Some(bad) = hashes.iter().find(|h| !exile_api::build::is_sha256_hex(h)) {
            return Err(Error::InvalidArgument(format!(
                "sha256: {:?} is not a SHA-256 in lowercase hex",
                bad.chars().take(80).collect::<String>()
            )));
        }
        let known = self.store.referenced_chunks(hashes).await?;
        if let Some(missing) = hashes.iter().find(|h| !known.contains(*h)) {
            return Err(Error::NotFound(format!(
                "chunk {missing} belongs to no stored build"
            )));
        }
        Ok(())
    }

    /// One chunk's bytes, checked against its hash and counted as served.
    pub async fn read_chunk(&self, sha256: String) -> Result<pb::ChunkData> {
        let blobs = self.blobs.clone();
        let hash = sha256.clone();
        let data = tokio::task::spawn_blocking(move || blobs.read(&hash))
            .await
            .map_err(joined)?
            .map_err(|e| {
                Error::Internal(format!(
                    "chunk {sha256} is missing or damaged in the blob store: {e}"
                ))
            })?;
        self.bytes_served
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        Ok(pb::ChunkData { sha256, data })
    }
}

#[cfg(test)]
mod tests;
