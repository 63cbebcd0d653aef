//! A log file rotated by size (`output.log`, `output.log.1`, … `output.log.<keep>` for an
//! instance's output; the spawner's own log uses the same scheme under another name), so a
//! flood never holds more than `max_bytes * (keep + 1)` bytes on disk.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the live log file in the log directory.
pub const LOG_NAME: &str = "output.log";

/// Size and count limits of the rotated log.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    /// Largest size of one file before it is rotated.
    pub max_bytes: u64,
    /// Rotated files kept besides the live one.
    pub keep: u32,
}

impl LogLimits {
    /// The most bytes the log can hold on disk.
    pub fn total_cap(&self) -> u64 {
        self.max_bytes.saturating_mul(u64::from(self.keep) + 1)
    }
}

/// The live file, its size, and the rotation rule.
#[derive(Debug)]
pub struct RotatingLog {
    dir: PathBuf,
    name: &'static str,
    limits: LogLimits,
    file: File,
    size: u64,
}

/// Path of the instance log's live file (`n == 0`) or of its rotated file `n`.
pub fn log_path(dir: &Path, n: u32) -> PathBuf {
    rotated_path(dir, LOG_NAME, n)
}

/// Path of the live file `name` (`n == 0`) or of its rotated file `n`.
pub fn rotated_path(dir: &Path, name: &str, n: u32) -> PathBuf {
    if n == 0 {
        dir.join(name)
    } else {
        dir.join(format!("{name}.{n}"))
    }
}

impl RotatingLog {
    /// Opens (appending to) the instance log's live file in `dir`.
    pub fn open(dir: &Path, limits: LogLimits) -> std::io::Result<Self> {
        Self::open_named(dir, LOG_NAME, limits)
    }

    /// Opens (appending to) the live file `name` in `dir`, creating `dir` when needed.
    pub fn open_named(dir: &Path, name: &'static str, limits: LogLimits) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let file = Self::open_live(dir, name)?;
        let size = file.metadata()?.len();
        Ok(Self {
            dir: dir.to_owned(),
            name,
            limits: LogLimits {
                max_bytes: limits.max_bytes.max(1),
                keep: limits.keep,
            },
            file,
            size,
        })
    }

    fn open_live(dir: &Path, name: &str) -> std::io::Result<File> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(rotated_path(dir, name, 0))
    }

    /// Appends `bytes`, rotating as often as needed so no file passes the limit.
    pub fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            if self.size >= self.limits.max_bytes {
                self.rotate()?;
            }
            let room = usize::try_from(self.limits.max_bytes - self.size).unwrap_or(usize::MAX);
            let n = room.min(bytes.len());
            self.file.write_all(&bytes[..n])?;
            self.size += n as u64;
            bytes = &bytes[n..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        if self.limits.keep == 0 {
            self.file.set_len(0)?;
        } else {
            let path = |n| rotated_path(&self.dir, self.name, n);
            let _ = std::fs::remove_file(path(self.limits.keep));
            for n in (1..self.limits.keep).rev() {
                let from = path(n);
                if from.exists() {
                    std::fs::rename(from, path(n + 1))?;
                }
            }
            std::fs::rename(path(0), path(1))?;
            self.file = Self::open_live(&self.dir, self.name)?;
        }
        self.size = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn rotation_keeps_the_newest_bytes_under_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LogLimits {
            max_bytes: 100,
            keep: 2,
        };
        let mut log = RotatingLog::open(dir.path(), limits).unwrap();
        for i in 0..1000u32 {
            log.write(format!("line {i}\n").as_bytes()).unwrap();
        }
        // One huge write is cut across files rather than kept whole.
        log.write(&[b'x'; 10_000]).unwrap();
        log.write(b"last\n").unwrap();
        assert!(total(dir.path()) <= limits.total_cap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 3);
        let live = std::fs::read_to_string(log_path(dir.path(), 0)).unwrap();
        assert!(live.ends_with("last\n"), "{live}");
    }

    #[test]
    fn keep_zero_truncates_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LogLimits {
            max_bytes: 10,
            keep: 0,
        };
        let mut log = RotatingLog::open(dir.path(), limits).unwrap();
        log.write(b"0123456789abc").unwrap();
        assert_eq!(
            std::fs::read_to_string(log_path(dir.path(), 0)).unwrap(),
            "abc"
        );
    }
}
