//! The content-addressed blob store beside the database: each chunk of every build once, at
//! `<data-dir>/blobs/<first 2 hex>/<sha256>`, and the chunking that splits an archive into
//! those chunks.

use std::collections::{BTreeSet, HashSet};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use exile_api::build::is_sha256_hex;
use sha2::{Digest, Sha256};

/// Content-defined chunk sizes (FastCDC 2020), bytes. Cut points depend on the bytes around
/// them, not on offsets, so:
/// - an unchanged archive uploaded under a new version splits into exactly the same chunks
///   and stores nothing new (and spawners that hold the old version fetch nothing);
/// - changing one file inside a zip shifts every later offset, yet only the chunks around
///   that file's bytes (and the central directory at the end) change, where fixed-size
///   chunks would all change after the edit;
/// - 1 MiB on average keeps the chunk list of a 4 GiB build at ~4,000 rows, and the maximum
///   is [`exile_api::build::MAX_CHUNK_BYTES`] (2 MiB, what a spawner accepts); the 256 KiB
///   minimum avoids runs of tiny chunks.
pub const MIN_CHUNK: usize = 256 * 1024;
/// Average chunk size, bytes (see [`MIN_CHUNK`]).
pub const AVG_CHUNK: usize = 1024 * 1024;
/// Largest chunk, bytes (see [`MIN_CHUNK`]).
pub const MAX_CHUNK: usize = exile_api::build::MAX_CHUNK_BYTES;

/// One piece of an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
    /// Its size, bytes (at most [`MAX_CHUNK`]).
    pub size: u32,
}

/// An archive split into the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chunked {
    /// Its chunks in order.
    pub chunks: Vec<Chunk>,
    /// Chunks the store did not hold before.
    pub new_chunks: u32,
    /// Bytes of those chunks.
    pub new_bytes: u64,
}

/// Prefix of files being written; never a valid blob name, swept at start.
const TEMP_PREFIX: &str = ".tmp-";

/// Blobs whose bytes this process has checked against their hash, kept so that a build
/// delivered to many spawners is hashed once here rather than once per spawner (each
/// spawner checks every chunk it receives anyway). Cleared when it grows past this many.
const MAX_VERIFIED: usize = 200_000;

/// The blob directory.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
    /// Blobs checked since start (see [`MAX_VERIFIED`]). A std mutex: short sections, never
    /// held across an await.
    verified: Arc<Mutex<HashSet<String>>>,
}

fn private_dir(path: &Path) -> io::Result<()> {
    let mut b = DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    b.mode(0o700);
    b.create(path)
}

fn bad_hash(sha256: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{sha256:?} is not a SHA-256 in lowercase hex"),
    )
}

/// SHA-256 of some bytes, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl BlobStore {
    /// Opens (creating it, mode 0700) the store at `root`.
    pub fn open(root: PathBuf) -> io::Result<Self> {
        private_dir(&root)?;
        Ok(BlobStore {
            root,
            verified: Arc::default(),
        })
    }

    /// Where a blob lives. Only ever called with a checked hash, so the path cannot leave
    /// the store.
    fn path_of(&self, sha256: &str) -> io::Result<PathBuf> {
        if !is_sha256_hex(sha256) {
            return Err(bad_hash(sha256));
        }
        Ok(self.root.join(&sha256[..2]).join(sha256))
    }

    /// Stores `data` under its hash unless a blob of that size is there already; returns
    /// whether it wrote it. The bytes go to a temporary file in the same directory, are
    /// flushed to disk and then renamed, so a crash leaves either the whole blob or a
    /// temporary file that the start-up sweep removes. The directory entry itself is made
    /// durable by [`BlobStore::sync_dirs`], once per upload rather than once per chunk.
    pub fn put(&self, sha256: &str, data: &[u8]) -> io::Result<bool> {
        let path = self.path_of(sha256)?;
        if let Ok(m) = std::fs::metadata(&path)
            && m.len() == data.len() as u64
        {
            return Ok(false);
        }
        let dir = path
            .parent()
            .ok_or_else(|| io::Error::other("blob path without a directory"))?;
        private_dir(dir)?;
        let tmp = dir.join(format!("{TEMP_PREFIX}{:016x}", rand::random::<u64>()));
        let written = (|| {
            let mut opts = OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            opts.mode(0o600);
            let mut f = opts.open(&tmp)?;
            f.write_all(data)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(true)
    }

    /// Flushes the directory entries of the blobs with these hashes.
    pub fn sync_dirs<'a>(&self, hashes: impl IntoIterator<Item = &'a str>) -> io::Result<()> {
        let prefixes: BTreeSet<&str> = hashes
            .into_iter()
            .filter(|h| is_sha256_hex(h))
            .map(|h| &h[..2])
            .collect();
        for p in prefixes {
            File::open(self.root.join(p))?.sync_all()?;
        }
        Ok(())
    }

    fn verified(&self) -> MutexGuard<'_, HashSet<String>> {
        self.verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A blob's bytes, checked against its hash the first time this process reads it (a
    /// damaged blob is an error, never served).
    pub fn read(&self, sha256: &str) -> io::Result<Vec<u8>> {
        let path = self.path_of(sha256)?;
        let mut f = File::open(&path)?;
        let len = f.metadata()?.len();
        if len > MAX_CHUNK as u64 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {sha256} is {len} bytes, larger than any chunk"),
            ));
        }
        let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        f.read_to_end(&mut data)?;
        if self.verified().contains(sha256) {
            return Ok(data);
        }
        if sha256_hex(&data) != sha256 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("blob {sha256} does not match its hash (damaged on disk)"),
            ));
        }
        let mut verified = self.verified();
        if verified.len() >= MAX_VERIFIED {
            verified.clear();
        }
        verified.insert(sha256.to_owned());
        Ok(data)
    }

    /// Removes a blob; returns its size, or None when it was not there.
    pub fn remove(&self, sha256: &str) -> io::Result<Option<u64>> {
        let path = self.path_of(sha256)?;
        self.verified().remove(sha256);
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(Some(len)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Hashes of every blob. Temporary files left by a crash are removed on the way, so call
    /// it only while no upload writes (at start).
    pub fn sweep_and_list(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for dir in std::fs::read_dir(&self.root)? {
            let dir = dir?;
            if !dir.file_type()?.is_dir() {
                continue;
            }
            for f in std::fs::read_dir(dir.path())? {
                let f = f?;
                let name = f.file_name().to_string_lossy().into_owned();
                if name.starts_with(TEMP_PREFIX) {
                    let _ = std::fs::remove_file(f.path());
                } else if is_sha256_hex(&name) && f.file_type()?.is_file() {
                    out.push(name);
                }
            }
        }
        Ok(out)
    }

    /// Splits the file at `path` into content-defined chunks and stores those the store
    /// lacks. Memory stays at a couple of chunks whatever the file's size.
    pub fn store_file(&self, path: &Path) -> io::Result<Chunked> {
        let file = File::open(path)?;
        let mut out = Chunked::default();
        for piece in fastcdc::v2020::StreamCDC::new(file, MIN_CHUNK, AVG_CHUNK, MAX_CHUNK) {
            let piece = piece.map_err(io::Error::from)?;
            let sha256 = sha256_hex(&piece.data);
            let size = u32::try_from(piece.data.len())
                .map_err(|_| io::Error::other("a chunk larger than 4 GiB"))?;
            if self.put(&sha256, &piece.data)? {
                out.new_chunks += 1;
                out.new_bytes += u64::from(size);
            }
            out.chunks.push(Chunk { sha256, size });
        }
        self.sync_dirs(out.chunks.iter().map(|c| c.sha256.as_str()))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic bytes that do not repeat (so chunk boundaries come from content).
    pub(crate) fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = BlobStore::open(dir.path().join("blobs")).unwrap();
        (dir, s)
    }

    fn file(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    #[test]
    fn the_same_bytes_make_the_same_chunks_and_store_nothing_twice() {
        let (dir, s) = store();
        let data = noise(1, 9 * 1024 * 1024);
        let a = s.store_file(&file(dir.path(), "a", &data)).unwrap();
        assert!(a.chunks.len() >= 4, "{} chunks", a.chunks.len());
        assert!(a.chunks.iter().all(|c| c.size as usize <= MAX_CHUNK));
        assert_eq!(
            a.chunks.iter().map(|c| u64::from(c.size)).sum::<u64>(),
            data.len() as u64
        );
        assert_eq!(a.new_bytes, data.len() as u64);
        let b = s.store_file(&file(dir.path(), "b", &data)).unwrap();
        assert_eq!(b.chunks, a.chunks);
        assert_eq!((b.new_chunks, b.new_bytes), (0, 0));
        // Concatenated, the blobs are the file.
        let mut joined = Vec::new();
        for c in &a.chunks {
            joined.extend(s.read(&c.sha256).unwrap());
        }
        assert!(joined == data);
    }

    #[test]
    fn one_changed_region_stores_only_the_chunks_around_it() {
        let (dir, s) = store();
        let mut data = noise(2, 16 * 1024 * 1024);
        let a = s.store_file(&file(dir.path(), "a", &data)).unwrap();
        // Insert 100 bytes in the middle: every later offset shifts.
        let mid = data.len() / 2;
        data.splice(mid..mid, noise(3, 100));
        let b = s.store_file(&file(dir.path(), "b", &data)).unwrap();
        assert!(
            b.new_chunks <= 3,
            "{} of {} chunks are new",
            b.new_chunks,
            b.chunks.len()
        );
        assert!(b.new_bytes <= 3 * MAX_CHUNK as u64);
        assert!(a.chunks.len() > 8);
    }

    #[test]
    fn blobs_are_private_and_a_failed_write_leaves_no_temporary_file() {
        use std::os::unix::fs::PermissionsExt;
        let (dir, s) = store();
        let data = b"hello".to_vec();
        let sha = sha256_hex(&data);
        assert!(s.put(&sha, &data).unwrap());
        assert!(
            !s.put(&sha, &data).unwrap(),
            "an existing blob is not rewritten"
        );
        let path = dir.path().join("blobs").join(&sha[..2]).join(&sha);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(mode(&dir.path().join("blobs")), 0o700);

        // A write that cannot finish (the destination is a directory) leaves only what was
        // there before: no temporary file beside it, no blob.
        let other = sha256_hex(b"other");
        std::fs::create_dir_all(dir.path().join("blobs").join(&other[..2]).join(&other)).unwrap();
        assert!(s.put(&other, b"other").is_err());
        let names: Vec<String> = std::fs::read_dir(dir.path().join("blobs").join(&other[..2]))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [other]);

        // A temporary file left by a crash is swept at start and is never listed as a blob.
        std::fs::write(path.with_file_name(".tmp-crashed"), b"half").unwrap();
        assert_eq!(s.sweep_and_list().unwrap(), [sha]);
        assert!(!path.with_file_name(".tmp-crashed").exists());
    }

    #[test]
    fn a_damaged_blob_is_refused_and_bad_names_never_become_paths() {
        let (dir, s) = store();
        let sha = sha256_hex(b"payload");
        s.put(&sha, b"payload").unwrap();
        std::fs::write(
            dir.path().join("blobs").join(&sha[..2]).join(&sha),
            b"paylaod",
        )
        .unwrap();
        let e = s.read(&sha).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        for bad in ["../../etc/passwd", "", &"A".repeat(64)] {
            assert_eq!(s.read(bad).unwrap_err().kind(), io::ErrorKind::InvalidInput);
            assert!(s.put(bad, b"x").is_err());
            assert!(s.remove(bad).is_err());
        }
        assert_eq!(s.remove(&sha).unwrap(), Some(7));
        assert_eq!(s.remove(&sha).unwrap(), None);
    }
}
