//! The one audited path by which Exile reads archives it did not write itself: game-server
//! builds (zip, tar, tar.gz, tar.zst) and instance backups (tar.gz). `inspect` checks an
//! archive without writing anything; `extract` writes it into an empty directory. Both apply
//! the same rules, so an archive the master accepted unpacks the same way on a spawner.
//!
//! (Interface skeleton; the implementation lands with the archive work.)

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

/// Detects the format from the first bytes.
pub fn detect(path: &Path) -> Result<Format> {
    let _ = path;
    Err(Error::Format("archive support is not built yet".into()))
}

/// Checks every entry of the archive against the rules without writing anything.
pub fn inspect(path: &Path, options: &Options) -> Result<Summary> {
    let _ = (path, options);
    Err(Error::Format("archive support is not built yet".into()))
}

/// Unpacks the archive into `target`, which must not exist or be empty.
pub fn extract(path: &Path, target: &Path, options: &Options) -> Result<Summary> {
    let _ = (path, target, options);
    Err(Error::Format("archive support is not built yet".into()))
}
