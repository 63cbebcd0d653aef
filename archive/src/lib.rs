//! The one audited path by which Exile reads archives it did not write itself: game-server
//! builds (zip, tar, tar.gz, tar.zst) and instance backups (tar.gz). `inspect` checks an
//! archive without writing anything; `extract` writes it into an empty directory. Both walk
//! the entries through the same rules and caps, so an archive the master accepted unpacks
//! the same way on a spawner.
//!
//! The rules: no absolute path, no `..`, no empty or NUL name; paths and names bounded;
//! symbolic links only to relative targets that stay inside the root (resolved through the
//! archive's other links), and nothing placed beneath a link; no entry replacing another;
//! hard links only to a regular file that came earlier; no devices, fifos or sockets;
//! permissions kept as rwx masked with 0o755 (owner read/write always kept); entries,
//! unpacked bytes (counted as decompressed, never as declared) and the unpack ratio capped.

mod rules;
mod sink;
mod tar;
mod walk;
mod zip;
mod zstd;

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::Path;

/// Caps and choices of one inspection or extraction.
#[derive(Debug, Clone)]
pub struct Options {
    /// Most entries (files, directories, links).
    pub max_entries: u64,
    /// Most bytes the archive may unpack to.
    pub max_unpacked_bytes: u64,
    /// Largest ratio of unpacked bytes to archive bytes (zip bombs), checked once the
    /// unpacked size passes `ratio_floor_bytes`.
    pub max_ratio: u64,
    /// Unpacked size below which the ratio is not checked.
    pub ratio_floor_bytes: u64,
    /// Longest entry path, bytes.
    pub max_path_bytes: usize,
    /// When every entry sits under one top directory, unpack its contents instead (builds
    /// zipped with their folder). Off for backups.
    pub strip_single_top_dir: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_entries: 200_000,
            max_unpacked_bytes: 64 << 30,
            max_ratio: 200,
            ratio_floor_bytes: 64 << 20,
            max_path_bytes: 4096,
            strip_single_top_dir: false,
        }
    }
}

/// Archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// zip.
    Zip,
    /// tar + gzip.
    TarGz,
    /// tar + zstd.
    TarZst,
    /// plain tar.
    Tar,
}

/// What an archive holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Format detected from the first bytes.
    pub format: Option<Format>,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub dirs: u64,
    /// Symbolic links (all resolving inside the target).
    pub symlinks: u64,
    /// Bytes of all files unpacked.
    pub unpacked_bytes: u64,
    /// Text of `exile-build.toml` at the top (after stripping), when present and at most
    /// 64 KiB.
    pub manifest: Option<String>,
    /// The top directory that was stripped, when `strip_single_top_dir` applied.
    pub stripped_prefix: Option<String>,
}

/// Why an archive was refused or could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the archive or writing the target failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file concerned.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not an archive of a known format, or are corrupt.
    #[error("not a readable archive: {0}")]
    Format(String),
    /// An entry breaks a safety rule.
    #[error("unsafe entry {entry:?}: {reason}")]
    Unsafe {
        /// The entry's name as stored.
        entry: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The archive is over a cap.
    #[error("{0}")]
    Limit(String),
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Recognises a format from the first bytes of a file (at least 262 for plain tar).
fn sniff(head: &[u8]) -> Option<Format> {
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Some(Format::Zip)
    } else if head.starts_with(&[0x1f, 0x8b]) {
        Some(Format::TarGz)
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) || starts_with_skippable_frame(head) {
        Some(Format::TarZst)
    } else if head.get(257..262) == Some(b"ustar") {
        Some(Format::Tar)
    } else {
        None
    }
}

/// A zstd skippable frame (magic 0x184D2A50 to 0x184D2A5F, little-endian), as `pzstd` puts
/// before its frames.
fn starts_with_skippable_frame(head: &[u8]) -> bool {
    matches!(head, [b, 0x2a, 0x4d, 0x18, ..] if b & 0xf0 == 0x50)
}

/// Reads the first bytes of `source` to tell its format, then rewinds it.
fn sniff_source(source: &mut (impl Read + Seek), name: &dyn std::fmt::Display) -> Result<Format> {
    let io = |source| Error::Io {
        what: "could not read",
        path: name.to_string(),
        source,
    };
    let mut head = Vec::with_capacity(512);
    source
        .by_ref()
        .take(512)
        .read_to_end(&mut head)
        .map_err(io)?;
    let format = sniff(&head).ok_or_else(|| {
        Error::Format(format!(
            "{name} is not a zip, tar, tar.gz or tar.zst archive (its first bytes match none of them)"
        ))
    })?;
    source.rewind().map_err(io)?;
    Ok(format)
}

fn open(path: &Path) -> Result<(File, Format, u64)> {
    let io = |what| {
        move |source| Error::Io {
            what,
            path: path.display().to_string(),
            source,
        }
    };
    let mut file = File::open(path).map_err(io("could not open"))?;
    let len = file.metadata().map_err(io("could not read"))?.len();
    let format = sniff_source(&mut file, &path.display())?;
    Ok((file, format, len))
}

/// Detects the format from the first bytes (never from the file name).
pub fn detect(path: &Path) -> Result<Format> {
    open(path).map(|(_, format, _)| format)
}

fn walk_source<S: sink::Sink>(
    source: impl Read + Seek,
    format: Format,
    len: u64,
    options: &Options,
    sink: S,
) -> Result<Summary> {
    let mut walker = walk::Walker::new(options, format, len, sink);
    match format {
        Format::Zip => zip::walk(source, &mut walker)?,
        Format::Tar => tar::walk(BufReader::new(source), &mut walker)?,
        Format::TarGz => tar::walk(
            flate2::read::MultiGzDecoder::new(BufReader::new(source)),
            &mut walker,
        )?,
        Format::TarZst => tar::walk(zstd::Decoder::new(BufReader::new(source)), &mut walker)?,
    }
    walker.finish()
}

fn run<S: sink::Sink>(path: &Path, options: &Options, sink: S) -> Result<Summary> {
    let (file, format, len) = open(path)?;
    walk_source(file, format, len, options, sink)
}

/// An archive that is not one file on disk: any readable, seekable source of `len` bytes
/// (a build assembled from its cached chunks, for one), named `name` in errors.
pub struct Source<R> {
    /// The bytes.
    pub reader: R,
    /// Their length.
    pub len: u64,
    /// What errors call it.
    pub name: String,
}

/// [`inspect`] for an archive read from `source`.
pub fn inspect_source<R: Read + Seek>(mut source: Source<R>, options: &Options) -> Result<Summary> {
    let format = sniff_source(&mut source.reader, &source.name)?;
    walk_source(source.reader, format, source.len, options, sink::Discard)
}

/// [`extract`] for an archive read from `source`.
pub fn extract_source<R: Read + Seek>(
    mut source: Source<R>,
    target: &Path,
    options: &Options,
) -> Result<Summary> {
    let disk = sink::Disk::prepare(target)?;
    let format = sniff_source(&mut source.reader, &source.name)?;
    walk_source(source.reader, format, source.len, options, disk)
}

/// Checks every entry of the archive against the rules without writing anything. Reads
/// (and decompresses) the whole archive, so the caps see the real sizes. Blocking: async
/// callers run it on a blocking thread.
pub fn inspect(path: &Path, options: &Options) -> Result<Summary> {
    run(path, options, sink::Discard)
}

/// Unpacks the archive into `target`, which must not exist (it is created, with its
/// parents) or be an empty directory. Applies the same rules as [`inspect`], entry by entry,
/// and stops at the first refusal or cap without writing the rest.
///
/// Nothing is ever written outside `target`. On an error `target` may hold part of the
/// archive: the caller deletes it (build installs and backup restores unpack into a staging
/// directory and move it into place only on success). Blocking, like [`inspect`].
///
/// One difference from [`inspect`] is possible: a path within `max_path_bytes` may still be
/// too long for the OS once joined to `target` (PATH_MAX), which only extraction sees.
pub fn extract(path: &Path, target: &Path, options: &Options) -> Result<Summary> {
    let disk = sink::Disk::prepare(target)?;
    run(path, options, disk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_recognised_by_their_first_bytes() {
        assert_eq!(sniff(b"PK\x03\x04rest"), Some(Format::Zip));
        assert_eq!(sniff(b"PK\x05\x06"), Some(Format::Zip));
        assert_eq!(sniff(&[0x1f, 0x8b, 8, 0]), Some(Format::TarGz));
        assert_eq!(sniff(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Some(Format::TarZst));
        assert_eq!(sniff(&[0x5e, 0x2a, 0x4d, 0x18, 0]), Some(Format::TarZst));
        assert_eq!(sniff(&[0x60, 0x2a, 0x4d, 0x18, 0]), None);
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert_eq!(sniff(&tar), Some(Format::Tar));
        assert_eq!(sniff(b"hello"), None);
        assert_eq!(sniff(&[0u8; 512]), None);
    }
}
