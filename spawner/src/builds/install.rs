//! One install up to the point of committing it: chunk list, missing chunks, the archive
//! checked (every chunk against its hash, the whole against the build's SHA-256), free space
//! checked, unpacked from the cached chunks into the scratch directory. Nothing here touches
//! `<name>/<version>/`; every scratch file is removed when dropped.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use exile_api::v1;
use sha2::{Digest, Sha256};

use super::blocking;
use super::chunked::ChunkedArchive;
use super::error::{BuildError, check_space};
use super::fetch::{Fetcher, MAX_CHUNK_BYTES, Master, sha256_hex};
use super::layout::{ChunkMeta, Layout, Scratch, free_bytes};

/// Assembly rounds (each may find damaged cached chunks and fetch them again).
const MAX_ROUNDS: u32 = 3;
/// Most chunk hashes [`Checked`] remembers before it starts afresh.
const MAX_CHECKED: usize = 200_000;

/// Cached chunks this process has checked against their hash (on arrival or in an earlier
/// install), so a redeploy hashes the whole archive once rather than every chunk again. A
/// chunk damaged since is still caught: the whole archive's hash then fails, and every chunk
/// is checked again (see [`verify`]).
#[derive(Debug, Default)]
pub struct Checked(std::sync::Mutex<HashSet<String>>);

impl Checked {
    fn set(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // Short sections, never across an await; a poisoned set is still a valid set.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn contains(&self, sha256: &str) -> bool {
        self.set().contains(sha256)
    }

    fn insert(&self, sha256: impl IntoIterator<Item = String>) {
        let mut set = self.set();
        if set.len() >= MAX_CHECKED {
            set.clear();
        }
        set.extend(sha256);
    }

    fn remove(&self, sha256: &str) {
        self.set().remove(sha256);
    }
}

/// A build unpacked in the scratch directory, ready to be moved into place.
#[derive(Debug)]
pub struct Unpacked {
    /// Its record (installed_at still to be set).
    pub meta: super::layout::BuildMeta,
    /// The unpacked tree.
    pub dir: Scratch,
    /// Time spent fetching, checking and unpacking (for the install's log line).
    pub phases: Phases,
}

/// Where an install's time went.
#[derive(Debug, Default, Clone, Copy)]
pub struct Phases {
    /// Fetching missing chunks (each checked as it arrives).
    pub fetch: std::time::Duration,
    /// Checking the cached chunks and the whole archive.
    pub verify: std::time::Duration,
    /// Inspecting and unpacking.
    pub unpack: std::time::Duration,
}

/// Fetches what is missing of `build`, assembles and checks its archive, and unpacks it.
pub async fn prepare(
    layout: &Arc<Layout>,
    master: &Master,
    checked: &Arc<Checked>,
    total: &AtomicU64,
    build: &v1::BuildRef,
    spec: &str,
) -> Result<Unpacked, BuildError> {
    let listing = master.chunk_list(&build.id, spec).await?;
    let size = check_listing(build, &listing, spec)?;
    let chunks: Vec<ChunkMeta> = listing
        .chunks
        .iter()
        .map(|c| ChunkMeta {
            sha256: c.sha256.clone(),
            size: u64::from(c.size),
        })
        .collect();
    let mut fetcher = Fetcher::new(master, layout, spec, total);
    let mut phases = Phases::default();
    let mut round = 0;
    loop {
        round += 1;
        let missing = missing_chunks(layout, &chunks);
        let missing_bytes = missing.iter().map(|c| c.size).sum();
        space(layout, missing_bytes, || {
            format!("fetch the missing chunks of {spec}")
        })?;
        let t = std::time::Instant::now();
        fetcher.fetch(&missing).await?;
        phases.fetch += t.elapsed();
        let (l, c, sha, s) = (
            layout.clone(),
            chunks.clone(),
            build.sha256.clone(),
            spec.to_owned(),
        );
        checked.insert(fetcher.take_fresh());
        let k = checked.clone();
        let t = std::time::Instant::now();
        let verified = blocking(move || verify(&l, &c, Some(&k), &sha, &s)).await?;
        phases.verify += t.elapsed();
        match verified {
            Verified::Sound => break,
            Verified::Damaged(damaged) if round < MAX_ROUNDS => {
                tracing::warn!(build = %spec, chunks = ?damaged, "cached chunks failed their check; fetching them again");
            }
            Verified::Damaged(damaged) => {
                return Err(BuildError::Corrupt(format!(
                    "cached chunks of build {spec} failed their check {MAX_ROUNDS} times in a row ({}); the disk under {} may be failing",
                    damaged.join(", "),
                    layout.root().display()
                )));
            }
        }
    }
    let (l, c, s) = (layout.clone(), chunks.clone(), spec.to_owned());
    let t = std::time::Instant::now();
    let (dir, summary) = blocking(move || unpack(&l, &c, &s)).await?;
    phases.unpack = t.elapsed();
    let manifest = (!listing.manifest.is_empty()).then(|| listing.manifest.clone());
    Ok(Unpacked {
        meta: super::layout::BuildMeta {
            id: build.id.clone(),
            name: build.name.clone(),
            version: build.version.clone(),
            sha256: build.sha256.clone(),
            size,
            installed_at_unix_ms: 0,
            chunks,
            disk_bytes: summary.unpacked_bytes,
            fetched_bytes: fetcher.fetched,
            manifest,
            unflushed_boot: None,
        },
        dir,
        phases,
    })
}

/// Checks the master's chunk list against the reference; returns the archive size.
fn check_listing(
    build: &v1::BuildRef,
    listing: &v1::GetBuildChunksResponse,
    spec: &str,
) -> Result<u64, BuildError> {
    if let Some(theirs) = &listing.build {
        if theirs.name != build.name || theirs.version != build.version {
            return Err(BuildError::Conflict(format!(
                "build id {} is {}@{} on the master, not {spec}",
                build.id, theirs.name, theirs.version
            )));
        }
        if theirs.sha256 != build.sha256 {
            return Err(BuildError::Conflict(format!(
                "the master's build {spec} has the archive SHA-256 {}, but the install asked for {}; nothing was installed",
                theirs.sha256, build.sha256
            )));
        }
    }
    let mut total: u64 = 0;
    for chunk in &listing.chunks {
        if !exile_api::build::is_sha256_hex(&chunk.sha256) {
            return Err(BuildError::Corrupt(format!(
                "the master's chunk list of build {spec} names a malformed chunk hash {:?}",
                chunk.sha256
            )));
        }
        if chunk.size == 0 || u64::from(chunk.size) > MAX_CHUNK_BYTES {
            return Err(BuildError::Corrupt(format!(
                "the master's chunk list of build {spec} gives chunk {} a size of {} bytes (1 to {MAX_CHUNK_BYTES} expected)",
                chunk.sha256, chunk.size
            )));
        }
        total += u64::from(chunk.size);
    }
    let expected = match (&listing.build, build.size) {
        (_, size) if size > 0 => size,
        (Some(theirs), _) => theirs.size,
        (None, _) => total,
    };
    if total != expected || total == 0 {
        return Err(BuildError::Conflict(format!(
            "the chunks of build {spec} add up to {total} bytes, but the archive is {expected} bytes; nothing was installed"
        )));
    }
    Ok(total)
}

/// Chunks of the list not in the cache, each once.
fn missing_chunks(layout: &Layout, chunks: &[ChunkMeta]) -> Vec<ChunkMeta> {
    let mut seen = std::collections::HashSet::new();
    chunks
        .iter()
        .filter(|c| seen.insert(c.sha256.as_str()) && !layout.chunk(&c.sha256).is_file())
        .cloned()
        .collect()
}

fn space(layout: &Layout, needed: u64, what: impl FnOnce() -> String) -> Result<(), BuildError> {
    if needed == 0 {
        return Ok(());
    }
    check_space(what, needed, free_bytes(layout.root())?, layout.root())
}

enum Verified {
    /// Every chunk is in the cache, matches its hash, and together they make the archive.
    Sound,
    /// Cached chunks that were missing or failed their check (the damaged ones are deleted).
    Damaged(Vec<String>),
}

/// Reads the cached chunks in archive order, checking each against its hash (except those
/// `checked` already holds) and the whole against the build's SHA-256. Nothing is written:
/// the unpack reads the same chunk files.
fn verify(
    layout: &Layout,
    chunks: &[ChunkMeta],
    checked: Option<&Checked>,
    sha256: &str,
    spec: &str,
) -> Result<Verified, BuildError> {
    let mut whole = Sha256::new();
    let mut damaged: Vec<String> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let mut buf = Vec::new();
    for chunk in chunks {
        let cached = layout.chunk(&chunk.sha256);
        buf.clear();
        let read =
            std::fs::File::open(&cached).and_then(|f| f.take(chunk.size + 1).read_to_end(&mut buf));
        match read {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                damaged.push(chunk.sha256.clone());
                continue;
            }
            Err(e) => return Err(BuildError::io("could not read", &cached, &e)),
        }
        let trusted = seen.contains(chunk.sha256.as_str())
            || checked.is_some_and(|k| k.contains(&chunk.sha256));
        if buf.len() as u64 != chunk.size || (!trusted && sha256_hex(&buf) != chunk.sha256) {
            super::layout::remove_file(&cached)?;
            if let Some(k) = checked {
                k.remove(&chunk.sha256);
            }
            damaged.push(chunk.sha256.clone());
            continue;
        }
        seen.insert(&chunk.sha256);
        if damaged.is_empty() {
            whole.update(&buf);
        }
    }
    if !damaged.is_empty() {
        damaged.dedup();
        return Ok(Verified::Damaged(damaged));
    }
    let got = hex::encode(whole.finalize());
    if got != sha256
        && let Some(k) = checked
    {
        // A chunk checked earlier may have changed on disk since: check them all.
        let verified = verify(layout, chunks, None, sha256, spec);
        match &verified {
            Ok(Verified::Sound) => k.insert(chunks.iter().map(|c| c.sha256.clone())),
            Ok(Verified::Damaged(damaged)) => damaged.iter().for_each(|d| k.remove(d)),
            Err(_) => {}
        }
        return verified;
    }
    if got == sha256
        && let Some(k) = checked
    {
        k.insert(chunks.iter().map(|c| c.sha256.clone()));
    }
    if got != sha256 {
        let size: u64 = chunks.iter().map(|c| c.size).sum();
        return Err(BuildError::Corrupt(format!(
            "the archive of build {spec} assembled from its {} chunks ({size} bytes) has the SHA-256 {got}, not {sha256}; the master's chunk list does not match the build",
            chunks.len()
        )));
    }
    Ok(Verified::Sound)
}

/// The archive as the cached chunks hold it.
fn archive(
    layout: &Layout,
    chunks: &[ChunkMeta],
    spec: &str,
) -> exile_archive::Source<ChunkedArchive> {
    let reader = ChunkedArchive::new(chunks.iter().map(|c| (layout.chunk(&c.sha256), c.size)));
    exile_archive::Source {
        len: reader.len(),
        reader,
        name: format!("the archive of build {spec}"),
    }
}

/// Checks the archive (verified by [`verify`]) and the room it needs, and unpacks it from
/// its cached chunks into a scratch directory.
///
/// The unpacked files are not flushed here: the build store records the version as not yet
/// durable and flushes it in the background (see `BuildStore::commit`), so an instance can
/// start from the page cache at once instead of waiting for a gigabyte to reach the disk.
fn unpack(
    layout: &Layout,
    chunks: &[ChunkMeta],
    spec: &str,
) -> Result<(Scratch, exile_archive::Summary), BuildError> {
    let options = exile_archive::Options {
        strip_single_top_dir: true,
        ..Default::default()
    };
    let refused = |e: exile_archive::Error| match e {
        exile_archive::Error::Io { .. } => {
            BuildError::Io(format!("could not unpack build {spec}: {e}"))
        }
        other => BuildError::Archive(format!(
            "the archive of build {spec} cannot be unpacked: {other}"
        )),
    };
    let summary =
        exile_archive::inspect_source(archive(layout, chunks, spec), &options).map_err(refused)?;
    space(layout, summary.unpacked_bytes, || {
        format!("unpack build {spec}")
    })?;
    let dir = Scratch::new(layout.tmp_path("unpack"));
    exile_archive::extract_source(archive(layout, chunks, spec), dir.path(), &options)
        .map_err(refused)?;
    // Games may run as users of their own (--run-as-uids): they read and run the build, so
    // it is readable by all whatever the archive's modes or the umask.
    crate::isolation::share_build(dir.path())
        .map_err(|e| BuildError::io("could not share the unpacked build", dir.path(), &e))?;
    Ok((dir, summary))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(sizes: &[u32]) -> v1::GetBuildChunksResponse {
        v1::GetBuildChunksResponse {
            build: Some(reference()),
            chunks: sizes
                .iter()
                .enumerate()
                .map(|(i, size)| v1::ChunkRef {
                    sha256: format!("{i:064x}"),
                    size: *size,
                })
                .collect(),
            format: 0,
            manifest: String::new(),
        }
    }

    fn reference() -> v1::BuildRef {
        v1::BuildRef {
            id: "bld-1".into(),
            name: "game".into(),
            version: "1".into(),
            sha256: "a".repeat(64),
            size: 30,
        }
    }

    #[test]
    fn chunk_lists_are_checked_against_the_reference() {
        assert_eq!(
            check_listing(&reference(), &listing(&[10, 20]), "game@1").unwrap(),
            30
        );
        let short = check_listing(&reference(), &listing(&[10, 10]), "game@1").unwrap_err();
        assert!(short.to_string().contains("20 bytes"), "{short}");
        let mut other = reference();
        other.sha256 = "b".repeat(64);
        let err = check_listing(&other, &listing(&[10, 20]), "game@1").unwrap_err();
        assert!(matches!(err, BuildError::Conflict(_)), "{err}");
        assert!(err.to_string().contains(&"b".repeat(64)), "{err}");
        let mut bad = listing(&[10, 20]);
        bad.chunks[0].sha256 = "../../etc/passwd".into();
        assert!(check_listing(&reference(), &bad, "game@1").is_err());
        let huge = listing(&[10, (MAX_CHUNK_BYTES + 1) as u32]);
        assert!(check_listing(&reference(), &huge, "game@1").is_err());
    }

    #[test]
    fn verification_deletes_a_damaged_cached_chunk_and_checks_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.prepare().unwrap();
        let parts: [&[u8]; 2] = [b"hello ", b"world"];
        let chunks: Vec<ChunkMeta> = parts
            .iter()
            .map(|p| ChunkMeta {
                sha256: sha256_hex(p),
                size: p.len() as u64,
            })
            .collect();
        let whole = sha256_hex(b"hello world");
        std::fs::write(layout.chunk(&chunks[0].sha256), parts[0]).unwrap();
        std::fs::write(layout.chunk(&chunks[1].sha256), b"w0rld").unwrap();
        let Verified::Damaged(damaged) = verify(&layout, &chunks, None, &whole, "g@1").unwrap()
        else {
            panic!("a damaged chunk went unnoticed");
        };
        assert_eq!(damaged, [chunks[1].sha256.clone()]);
        assert!(!layout.chunk(&chunks[1].sha256).exists());
        assert!(layout.chunk(&chunks[0].sha256).exists());

        std::fs::write(layout.chunk(&chunks[1].sha256), parts[1]).unwrap();
        assert!(matches!(
            verify(&layout, &chunks, None, &whole, "g@1").unwrap(),
            Verified::Sound
        ));
        let mut read = Vec::new();
        archive(&layout, &chunks, "g@1")
            .reader
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, b"hello world");

        let err = match verify(&layout, &chunks, None, &"c".repeat(64), "g@1") {
            Err(e) => e,
            Ok(_) => panic!("a wrong whole hash was accepted"),
        };
        assert!(matches!(err, BuildError::Corrupt(_)), "{err}");

        // A chunk checked before is not hashed again, but the whole still is: a chunk file
        // changed since is found and deleted, not passed as the build.
        let checked = Checked::default();
        checked.insert([chunks[1].sha256.clone()]);
        std::fs::write(layout.chunk(&chunks[1].sha256), b"w0rld").unwrap();
        let Verified::Damaged(damaged) =
            verify(&layout, &chunks, Some(&checked), &whole, "g@1").unwrap()
        else {
            panic!("a changed chunk passed as the build");
        };
        assert_eq!(damaged, [chunks[1].sha256.clone()]);
        assert!(!checked.contains(&chunks[1].sha256));
        // Once sound, both are remembered.
        std::fs::write(layout.chunk(&chunks[1].sha256), parts[1]).unwrap();
        assert!(matches!(
            verify(&layout, &chunks, Some(&checked), &whole, "g@1").unwrap(),
            Verified::Sound
        ));
        assert!(chunks.iter().all(|c| checked.contains(&c.sha256)));
        assert_eq!(std::fs::read_dir(layout.tmp()).unwrap().count(), 0);
    }
}
