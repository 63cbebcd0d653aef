//! Where builds live under `<data-dir>/builds/`, and the record kept beside each version.
//!
//! - `.chunks/<sha256>`: content-addressed cache of archive chunks, kept so a later version
//!   reuses them (a dot name, so no build name can collide with it);
//! - `<name>/<version>/`: an unpacked build, immutable once installed;
//! - `<name>/<version>.json`: its [`BuildMeta`] (mode 0600). It is written last, so a version
//!   directory without it is a leftover of an interrupted install and is removed at open;
//! - `.tmp/`: chunks being written, archives being assembled, builds being unpacked or
//!   removed; cleared at open.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use exile_api::v1;
use serde::{Deserialize, Serialize};

use super::error::BuildError;

/// One chunk of an archive, in archive order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkMeta {
    /// SHA-256, lowercase hex.
    pub sha256: String,
    /// Size, bytes.
    pub size: u64,
}

/// What the spawner remembers of an installed version (`<name>/<version>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildMeta {
    /// The master's build id.
    pub id: String,
    /// Build name.
    pub name: String,
    /// Version.
    pub version: String,
    /// SHA-256 of the archive.
    pub sha256: String,
    /// Archive size, bytes.
    pub size: u64,
    /// When it was installed, Unix ms.
    pub installed_at_unix_ms: i64,
    /// The archive's chunks in order.
    pub chunks: Vec<ChunkMeta>,
    /// Bytes it takes unpacked.
    pub disk_bytes: u64,
    /// Bytes fetched from the master to install it.
    pub fetched_bytes: u64,
    /// The `exile-build.toml` text the master gave with it.
    #[serde(default)]
    pub manifest: Option<String>,
    /// While the unpacked files may still sit only in the page cache: the host's boot id at
    /// install. Cleared once they are flushed. A record still carrying another boot's id
    /// after a restart means the host went down before the flush, so the tree may be torn:
    /// it is dropped and the version fetched again when needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unflushed_boot: Option<String>,
}

impl BuildMeta {
    /// The wire form (instances counted by the caller).
    pub fn to_held(&self) -> v1::HeldBuild {
        v1::HeldBuild {
            name: self.name.clone(),
            version: self.version.clone(),
            sha256: self.sha256.clone(),
            disk_bytes: self.disk_bytes,
            installed_at_unix_ms: self.installed_at_unix_ms,
            instance_count: 0,
            fetched_bytes: self.fetched_bytes,
        }
    }
}

/// Paths of the build store. Names and versions must have passed
/// `exile_api::build::check_name`/`check_version` (no separators, no leading dot) before they
/// are joined here.
#[derive(Debug)]
pub struct Layout {
    root: PathBuf,
    unique: AtomicU64,
}

impl Layout {
    /// The layout under `<data_dir>/builds`.
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: crate::layout::Layout::new(data_dir).builds(),
            unique: AtomicU64::new(0),
        }
    }

    /// `<data_dir>/builds`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The chunk cache.
    pub fn chunks(&self) -> PathBuf {
        self.root.join(".chunks")
    }

    /// One cached chunk.
    pub fn chunk(&self, sha256: &str) -> PathBuf {
        self.chunks().join(sha256)
    }

    /// The scratch directory.
    pub fn tmp(&self) -> PathBuf {
        self.root.join(".tmp")
    }

    /// A fresh path in the scratch directory.
    pub fn tmp_path(&self, what: &str) -> PathBuf {
        let n = self.unique.fetch_add(1, Ordering::Relaxed);
        self.tmp()
            .join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// Directory of every version of a name.
    pub fn name_dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The unpacked version.
    pub fn version_dir(&self, name: &str, version: &str) -> PathBuf {
        self.name_dir(name).join(version)
    }

    /// The version's record.
    pub fn meta(&self, name: &str, version: &str) -> PathBuf {
        self.name_dir(name).join(format!("{version}.json"))
    }

    /// Creates the directories and empties the scratch directory.
    pub fn prepare(&self) -> Result<(), BuildError> {
        let tmp = self.tmp();
        match std::fs::remove_dir_all(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BuildError::io("could not clear", &tmp, &e)),
        }
        for dir in [self.root.clone(), self.chunks(), tmp] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| BuildError::io("could not create", &dir, &e))?;
        }
        Ok(())
    }

    /// Reads every installed version, removing leftovers of interrupted installs: version
    /// directories without a record, records without a directory, unreadable records.
    pub fn scan(&self) -> Result<Vec<BuildMeta>, BuildError> {
        let mut found = Vec::new();
        for name_entry in read_dir(&self.root)? {
            let name = name_entry.file_name().to_string_lossy().into_owned();
            if exile_api::build::check_name(&name).is_err() || !is_dir(&name_entry) {
                continue;
            }
            let name_dir = name_entry.path();
            let entries = read_dir(&name_dir)?;
            let mut records = std::collections::HashSet::new();
            for entry in &entries {
                let file = entry.file_name().to_string_lossy().into_owned();
                if file.starts_with('.') && file.ends_with(".tmp") {
                    // A record being written when the spawner stopped.
                    remove_file(&entry.path())?;
                    continue;
                }
                let Some(version) = file.strip_suffix(".json") else {
                    continue;
                };
                if exile_api::build::check_version(version).is_err() {
                    continue;
                }
                match self.read_meta(&entry.path(), &name, version) {
                    Some(meta) if self.version_dir(&name, version).is_dir() => {
                        records.insert(version.to_owned());
                        found.push(meta);
                    }
                    _ => {
                        tracing::warn!(build = %format!("{name}@{version}"), "dropping the record of an incomplete build");
                        remove_file(&entry.path())?;
                    }
                }
            }
            for entry in &entries {
                let version = entry.file_name().to_string_lossy().into_owned();
                if is_dir(entry)
                    && exile_api::build::check_version(&version).is_ok()
                    && !records.contains(&version)
                {
                    tracing::warn!(build = %format!("{name}@{version}"), "removing a build whose install did not finish");
                    drop(self.trash(&entry.path())?);
                }
            }
        }
        Ok(found)
    }

    fn read_meta(&self, path: &Path, name: &str, version: &str) -> Option<BuildMeta> {
        let bytes = std::fs::read(path).ok()?;
        let meta: BuildMeta = match serde_json::from_slice(&bytes) {
            Ok(meta) => meta,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable build record");
                return None;
            }
        };
        let chunks_ok = meta
            .chunks
            .iter()
            .all(|c| exile_api::build::is_sha256_hex(&c.sha256));
        if let Some(boot) = &meta.unflushed_boot
            && boot_id().as_ref() != Some(boot)
        {
            tracing::warn!(build = %format!("{name}@{version}"), "the host restarted before this build reached the disk");
            return None;
        }
        (meta.name == name && meta.version == version && chunks_ok).then_some(meta)
    }

    /// Writes a version's record atomically, readable by the owner only.
    pub fn write_meta(&self, meta: &BuildMeta) -> Result<(), BuildError> {
        let path = self.meta(&meta.name, &meta.version);
        let bytes = serde_json::to_vec_pretty(meta).map_err(|e| {
            BuildError::Internal(format!("could not encode {}: {e}", path.display()))
        })?;
        exile_api::fs::write_private(&path, &bytes)
            .map_err(|e| BuildError::io("could not write", &path, &e))
    }

    /// Moves a directory into the scratch directory, so it vanishes from its place at once
    /// (one rename); it is deleted when the returned guard drops. `None` when it did not
    /// exist.
    pub fn trash(&self, dir: &Path) -> Result<Option<Scratch>, BuildError> {
        let trash = self.tmp_path("removed");
        match std::fs::rename(dir, &trash) {
            Ok(()) => Ok(Some(Scratch::new(trash))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BuildError::io("could not remove", dir, &e)),
        }
    }
}

/// A file or directory in the scratch directory, removed when dropped unless kept.
#[derive(Debug)]
pub struct Scratch(Option<PathBuf>);

impl Scratch {
    pub fn new(path: PathBuf) -> Self {
        Self(Some(path))
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    /// Disarms the removal (the path was renamed elsewhere).
    pub fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            if let Err(e) = removed
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a scratch file");
            }
        }
    }
}

/// Writes `data` as a new file at `tmp` and renames it to `path`, so `path` never holds a
/// partly written file while the host stays up. Not flushed: callers check what they read back.
pub fn write_file(tmp: &Path, path: &Path, data: &[u8]) -> Result<(), BuildError> {
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(tmp)?;
        file.write_all(data)?;
        drop(file);
        std::fs::rename(tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        BuildError::io("could not write", path, &e)
    })
}

/// This boot of the host (Linux's random boot id), or None where the kernel does not say.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_owned())
}

/// Flushes the file system holding `dir` (one syncfs beats an fsync per file of a large
/// tree).
pub fn flush_fs(dir: &Path) -> Result<(), BuildError> {
    std::fs::File::open(dir)
        .and_then(|d| nix::unistd::syncfs(&d).map_err(std::io::Error::from))
        .map_err(|e| BuildError::io("could not flush", dir, &e))
}

/// Removes a file; a missing one is fine.
pub fn remove_file(path: &Path) -> Result<(), BuildError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(BuildError::io("could not remove", path, &e)),
    }
}

/// Bytes free for an unprivileged writer in the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> Result<u64, BuildError> {
    crate::disk::free_bytes(dir)
        .map_err(|e| BuildError::io("could not read the free space of", dir, &e))
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>, BuildError> {
    let entries = std::fs::read_dir(dir).map_err(|e| BuildError::io("could not read", dir, &e))?;
    entries
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| BuildError::io("could not read", dir, &e))
}

fn is_dir(entry: &std::fs::DirEntry) -> bool {
    entry.file_type().is_ok_and(|t| t.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(name: &str, version: &str) -> BuildMeta {
        BuildMeta {
            id: "bld-1".into(),
            name: name.into(),
            version: version.into(),
            sha256: "a".repeat(64),
            size: 3,
            installed_at_unix_ms: 5,
            chunks: vec![ChunkMeta {
                sha256: "b".repeat(64),
                size: 3,
            }],
            disk_bytes: 9,
            fetched_bytes: 3,
            manifest: Some("[run]".into()),
            unflushed_boot: None,
        }
    }

    #[test]
    fn scan_keeps_complete_versions_and_removes_leftovers() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.prepare().unwrap();
        // Complete.
        std::fs::create_dir_all(layout.version_dir("game", "1")).unwrap();
        layout.write_meta(&meta("game", "1")).unwrap();
        // Unpacked but never recorded.
        std::fs::create_dir_all(layout.version_dir("game", "2")).unwrap();
        // Recorded but gone.
        layout.write_meta(&meta("game", "3")).unwrap();
        // A record for another name.
        std::fs::create_dir_all(layout.version_dir("game", "4")).unwrap();
        let wrong = serde_json::to_vec(&meta("other", "4")).unwrap();
        std::fs::write(layout.meta("game", "4"), wrong).unwrap();
        // Scratch left by a crash.
        std::fs::write(layout.tmp().join("junk"), b"x").unwrap();
        // Installed but not flushed before the host went down (another boot's id).
        std::fs::create_dir_all(layout.version_dir("game", "5")).unwrap();
        let mut torn = meta("game", "5");
        torn.unflushed_boot = Some("another-boot".into());
        layout.write_meta(&torn).unwrap();
        // Installed in this boot and not flushed yet: still good.
        std::fs::create_dir_all(layout.version_dir("game", "6")).unwrap();
        let mut pending = meta("game", "6");
        pending.unflushed_boot = boot_id();
        layout.write_meta(&pending).unwrap();

        layout.prepare().unwrap();
        let mut found = layout.scan().unwrap();
        found.sort_by(|a, b| a.version.cmp(&b.version));
        assert_eq!(found, vec![meta("game", "1"), pending]);
        assert!(!layout.version_dir("game", "5").exists());
        assert!(!layout.meta("game", "5").exists());
        assert!(layout.version_dir("game", "1").is_dir());
        assert!(!layout.version_dir("game", "2").exists());
        assert!(!layout.meta("game", "3").exists());
        assert!(!layout.version_dir("game", "4").exists());
        assert!(!layout.meta("game", "4").exists());
        assert_eq!(std::fs::read_dir(layout.tmp()).unwrap().count(), 0);
        let mode = std::fs::metadata(layout.meta("game", "1"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
