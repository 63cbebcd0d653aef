//! Receiving an archive: its bytes go to a private temporary file under the data dir while
//! they are hashed, with every announced fact checked as they come. Both upload forms use
//! this: the client stream (`UploadBuild`) and the resumable unary steps
//! (`BeginUpload`/`UploadPart`/`FinishUpload`), whose sessions live here too.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use exile_api::build::{MAX_MANIFEST_BYTES, MAX_UPLOAD_PART, Manifest, check_name, check_version};
use exile_api::v1 as pb;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// An upload session unused for this long is dropped with its bytes.
pub const SESSION_IDLE: Duration = Duration::from_secs(600);

/// What an upload announced, checked.
#[derive(Clone, Debug)]
pub struct Announced {
    /// Build name.
    pub name: String,
    /// Version.
    pub version: String,
    /// SHA-256 the bytes must have.
    pub sha256: String,
    /// Size the bytes must have.
    pub size: u64,
    /// Manifest text given beside the archive (checked); empty when none was.
    pub manifest: String,
}

impl Announced {
    /// Checks an upload's metadata against the naming rules and `max_bytes`.
    pub fn check(m: pb::UploadBuildMetadata, max_bytes: u64) -> Result<Self> {
        check_name(&m.name).map_err(|e| Error::InvalidArgument(format!("metadata.name: {e}")))?;
        check_version(&m.version)
            .map_err(|e| Error::InvalidArgument(format!("metadata.version: {e}")))?;
        if !exile_api::build::is_sha256_hex(&m.sha256) {
            return Err(Error::InvalidArgument(
                "metadata.sha256: give the archive's SHA-256 as 64 lowercase hex digits".into(),
            ));
        }
        if m.size == 0 {
            return Err(Error::InvalidArgument(
                "metadata.size: the archive is empty; there is nothing to upload".into(),
            ));
        }
        if m.size > max_bytes {
            return Err(Error::InvalidArgument(format!(
                "metadata.size: the archive has {} bytes, more than the {} this master accepts (--max-build-bytes)",
                m.size, max_bytes
            )));
        }
        if m.manifest.len() > MAX_MANIFEST_BYTES {
            return Err(Error::InvalidArgument(format!(
                "metadata.manifest: larger than {} KiB",
                MAX_MANIFEST_BYTES / 1024
            )));
        }
        if !m.manifest.is_empty() {
            // Refuse a bad manifest before any bytes are sent.
            Manifest::parse(&m.manifest)
                .map_err(|e| Error::InvalidArgument(format!("manifest: {e}")))?;
        }
        Ok(Announced {
            name: m.name,
            version: m.version,
            sha256: m.sha256,
            size: m.size,
            manifest: m.manifest,
        })
    }

    /// `name@version`.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// A file removed when dropped: however an upload ends, its bytes do not stay behind.
#[derive(Debug)]
pub struct TempFile(PathBuf);

impl TempFile {
    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "could not remove an upload's temporary file");
        }
    }
}

/// An upload in progress: what it announced and the bytes received so far.
pub struct Upload {
    /// What it announced.
    pub announced: Announced,
    temp: TempFile,
    /// The open file and the running hash; None while a write is in flight (or after one
    /// failed).
    sink: Option<(File, Sha256)>,
    received: u64,
}

impl Upload {
    /// Opens a new temporary file (mode 0600) in `dir` for an announced upload.
    pub fn create(dir: &Path, announced: Announced) -> Result<Self> {
        let path = dir.join(format!("{}.part", crate::auth::new_id("upl")));
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        opts.mode(0o600);
        let file = opts.open(&path).map_err(|e| {
            Error::Internal(format!(
                "cannot create an upload file in {}: {e}",
                dir.display()
            ))
        })?;
        Ok(Upload {
            announced,
            temp: TempFile(path),
            sink: Some((file, Sha256::new())),
            received: 0,
        })
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Appends the next bytes. Refuses a part over [`MAX_UPLOAD_PART`] and any byte past the
    /// announced size (the caller stops reading then: the upload is wrong, not slow).
    pub async fn write(&mut self, data: Vec<u8>) -> Result<()> {
        check_part(&data)?;
        let len = data.len() as u64;
        if self.received.saturating_add(len) > self.announced.size {
            return Err(Error::InvalidArgument(format!(
                "the upload sends more than the {} bytes its metadata announced; nothing was stored",
                self.announced.size
            )));
        }
        let (mut file, mut hasher) = self.sink.take().ok_or_else(|| {
            Error::Internal("an upload's file is gone after a failed write".into())
        })?;
        let sink = tokio::task::spawn_blocking(move || {
            hasher.update(&data);
            file.write_all(&data).map(|()| (file, hasher))
        })
        .await
        .map_err(|e| Error::Internal(format!("upload writer: {e}")))?
        .map_err(|e| Error::Internal(format!("cannot write an upload file: {e}")))?;
        self.sink = Some(sink);
        self.received += len;
        Ok(())
    }

    /// Checks that every announced byte arrived with the announced hash; returns the file
    /// holding them (removed when dropped).
    pub fn complete(mut self) -> Result<(Announced, TempFile)> {
        let size = self.announced.size;
        if self.received != size {
            return Err(Error::InvalidArgument(format!(
                "the upload ended after {} of the {size} bytes announced; nothing was stored",
                self.received
            )));
        }
        let (file, hasher) = self.sink.take().ok_or_else(|| {
            Error::Internal("an upload's file is gone after a failed write".into())
        })?;
        drop(file);
        let got = hex::encode(hasher.finalize());
        if got != self.announced.sha256 {
            return Err(Error::InvalidArgument(format!(
                "the bytes received hash to SHA-256 {got}, not {} as announced (changed or damaged on the way?); nothing was stored",
                self.announced.sha256
            )));
        }
        Ok((self.announced, self.temp))
    }
}

/// Refuses a part larger than one message may carry.
pub fn check_part(data: &[u8]) -> Result<()> {
    if data.len() > MAX_UPLOAD_PART {
        return Err(Error::InvalidArgument(format!(
            "a part carries at most {MAX_UPLOAD_PART} bytes; this one has {}",
            data.len()
        )));
    }
    Ok(())
}

/// An upload begun with BeginUpload.
pub struct Session {
    /// The principal that began it (audit actor form); only it may continue it.
    pub owner: String,
    /// The upload; None once it finished or failed.
    pub upload: Option<Upload>,
    /// Last part or begin.
    pub last_used: tokio::time::Instant,
}

/// Uploads begun with BeginUpload, in memory: a master restart drops them (and the start-up
/// sweep their files), and the client begins again.
#[derive(Default)]
pub struct Sessions {
    // std Mutex: map lookups only, never held across an await; each session has its own
    // async lock for its writes.
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Session>>>>,
}

fn no_session(id: &str) -> Error {
    Error::NotFound(format!(
        "no upload {id} of yours is in progress (it finished, failed, or was dropped after 10 idle minutes); begin it again"
    ))
}

impl Sessions {
    /// Keeps an upload under a new id.
    pub fn insert(&self, owner: String, upload: Upload) -> String {
        let id = crate::auth::new_id("upl");
        let s = Session {
            owner,
            upload: Some(upload),
            last_used: tokio::time::Instant::now(),
        };
        self.lock()
            .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(s)));
        id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<Session>>>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The session `id` if `owner` began it. Another principal's upload is reported as
    /// missing: ids are not to be probed.
    pub async fn get(&self, id: &str, owner: &str) -> Result<Arc<tokio::sync::Mutex<Session>>> {
        let s = self.lock().get(id).cloned().ok_or_else(|| no_session(id))?;
        if s.lock().await.owner != owner {
            return Err(no_session(id));
        }
        Ok(s)
    }

    /// Forgets a session (its upload, if still held, is dropped with its file).
    pub fn forget(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Drops sessions idle for `idle` or longer (those busy with a part are left alone);
    /// returns how many.
    pub fn reap(&self, idle: Duration) -> usize {
        let now = tokio::time::Instant::now();
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, s| match s.try_lock() {
            Ok(s) => now.duration_since(s.last_used) < idle,
            Err(_) => true,
        });
        before - map.len()
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
