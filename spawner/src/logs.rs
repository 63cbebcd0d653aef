//! Reading a rotated log for the master (an instance's output, or the spawner's own log):
//! the last N lines, then (when following) new output as it is written, across rotations, in
//! chunks of at most 64 KiB. The files are the buffer: a slow reader only reads later, it
//! never makes the spawner hold more than one chunk.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::supervisor::logfile::{LOG_NAME, rotated_path};

/// Largest piece of log sent in one message.
pub const CHUNK: usize = 64 * 1024;
/// Most bytes the initial tail may hold, whatever the line count.
const MAX_TAIL_BYTES: u64 = 4 << 20;
/// How often a followed log is checked for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// Rotated files looked at for a tail.
const MAX_ROTATED: u32 = 64;

/// One piece of log: bytes, and how many bytes were skipped before it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Piece {
    /// Raw output.
    pub data: Vec<u8>,
    /// Bytes lost before this piece (rotated away before they could be read, or beyond the
    /// tail size cap).
    pub skipped: u64,
}

/// Where a follower is in the live file.
struct Cursor {
    file: File,
    inode: u64,
    offset: u64,
}

/// The last `lines` lines of the log `name` in `log_dir` (across rotated files, newest last),
/// at most [`MAX_TAIL_BYTES`], and a cursor at the end of the live file.
fn tail(log_dir: &Path, name: &str, lines: u32) -> std::io::Result<(Piece, Option<Cursor>)> {
    let live = match File::open(rotated_path(log_dir, name, 0)) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let cursor = match &live {
        Some(f) => {
            let meta = f.metadata()?;
            Some(Cursor {
                file: f.try_clone()?,
                inode: meta.ino(),
                offset: meta.len(),
            })
        }
        None => None,
    };
    if lines == 0 {
        return Ok((Piece::default(), cursor));
    }
    let mut files: Vec<(File, u64)> = Vec::new();
    if let (Some(f), Some(c)) = (&live, &cursor) {
        files.push((f.try_clone()?, c.offset));
    }
    for n in 1..=MAX_ROTATED {
        match File::open(rotated_path(log_dir, name, n)) {
            Ok(f) => {
                let len = f.metadata()?.len();
                files.push((f, len));
            }
            Err(_) => break,
        }
    }
    // The newest bytes up to the cap, newest file first; then the line cut in memory.
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut budget = MAX_TAIL_BYTES;
    let mut unread = 0;
    for (mut f, len) in files {
        let take = len.min(budget);
        unread += len - take;
        if take > 0 {
            let mut buf = vec![0u8; usize::try_from(take).unwrap_or(0)];
            f.seek(SeekFrom::Start(len - take))?;
            f.read_exact(&mut buf)?;
            parts.push(buf);
        }
        budget -= take;
    }
    parts.reverse();
    let data = parts.concat();
    // The newline ending the last line does not start another one.
    let body = data.strip_suffix(b"\n").unwrap_or(&data);
    let mut count = 0;
    let mut cut = None;
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            count += 1;
            if count == lines {
                cut = Some(i + 1);
                break;
            }
        }
    }
    let (data, skipped) = match cut {
        Some(cut) => (data[cut..].to_vec(), 0),
        // Fewer lines than asked within the cap: all of it, and what the cap left out.
        None => (data, unread),
    };
    Ok((Piece { data, skipped }, cursor))
}

/// Sends the tail of an instance's output log, then (when `follow`) new output until the log
/// directory goes away (the instance was removed) or the caller drops the future. `send` gets
/// pieces of at most [`CHUNK`] bytes and may wait: the reader simply reads later.
pub async fn stream<F, Fut>(log_dir: PathBuf, tail_lines: u32, follow: bool, send: F) -> Result<()>
where
    F: FnMut(Piece) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    stream_named(log_dir, LOG_NAME, tail_lines, follow, send).await
}

/// [`stream`] for the log whose live file is `name` in `log_dir`.
pub async fn stream_named<F, Fut>(
    log_dir: PathBuf,
    name: &'static str,
    tail_lines: u32,
    follow: bool,
    mut send: F,
) -> Result<()>
where
    F: FnMut(Piece) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let dir = log_dir.clone();
    let (first, mut cursor) = tokio::task::spawn_blocking(move || tail(&dir, name, tail_lines))
        .await
        .map_err(|e| Error::Internal(format!("log reader panicked: {e}")))?
        .map_err(|e| Error::io("could not read", &log_dir, e))?;
    let mut skipped = first.skipped;
    for data in first.data.chunks(CHUNK) {
        if !send(Piece {
            data: data.to_vec(),
            skipped,
        })
        .await
        {
            return Ok(());
        }
        skipped = 0;
    }
    if skipped > 0
        && !send(Piece {
            data: vec![],
            skipped,
        })
        .await
    {
        return Ok(());
    }
    if !follow {
        return Ok(());
    }
    loop {
        if !log_dir.exists() {
            return Ok(());
        }
        let (next, c) = tokio::task::spawn_blocking({
            let dir = log_dir.clone();
            move || read_more(&dir, name, cursor)
        })
        .await
        .map_err(|e| Error::Internal(format!("log reader panicked: {e}")))?;
        cursor = c;
        match next {
            Some(piece) => {
                if !send(piece).await {
                    return Ok(());
                }
            }
            None => tokio::time::sleep(FOLLOW_POLL).await,
        }
    }
}

/// The next piece after `cursor`, following a rotation (the old file is read to its end
/// first, through the handle kept open) or a truncation.
fn read_more(
    log_dir: &Path,
    name: &str,
    cursor: Option<Cursor>,
) -> (Option<Piece>, Option<Cursor>) {
    let live = rotated_path(log_dir, name, 0);
    let Some(mut c) = cursor else {
        // No live file yet: start at its beginning once it exists.
        return match File::open(&live) {
            Ok(file) => {
                let inode = file.metadata().map(|m| m.ino()).unwrap_or(0);
                let cursor = Cursor {
                    file,
                    inode,
                    offset: 0,
                };
                read_more(log_dir, name, Some(cursor))
            }
            Err(_) => (None, None),
        };
    };
    let len = c.file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut skipped = 0;
    if len < c.offset {
        // Truncated in place (no rotated files kept): what was after our offset is lost.
        skipped = 0;
        c.offset = 0;
    }
    if len > c.offset {
        let n = usize::try_from((len - c.offset).min(CHUNK as u64)).unwrap_or(CHUNK);
        let mut buf = vec![0u8; n];
        let read = c
            .file
            .seek(SeekFrom::Start(c.offset))
            .and_then(|_| c.file.read(&mut buf));
        if let Ok(got) = read
            && got > 0
        {
            buf.truncate(got);
            c.offset += got as u64;
            return (Some(Piece { data: buf, skipped }), Some(c));
        }
    }
    // At the end of our file: has the live name moved on to a new file?
    match std::fs::metadata(&live) {
        Ok(meta) if meta.ino() != c.inode => match File::open(&live) {
            Ok(file) => {
                let next = Cursor {
                    file,
                    inode: meta.ino(),
                    offset: 0,
                };
                read_more(log_dir, name, Some(next))
            }
            Err(_) => (None, Some(c)),
        },
        _ => (None, Some(c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::supervisor::logfile::{LogLimits, RotatingLog};

    async fn collect(dir: &Path, lines: u32) -> Vec<u8> {
        let mut out = Vec::new();
        stream(dir.to_owned(), lines, false, |p| {
            out.extend_from_slice(&p.data);
            std::future::ready(true)
        })
        .await
        .unwrap();
        out
    }

    #[tokio::test]
    async fn tail_spans_rotated_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RotatingLog::open(
            dir.path(),
            LogLimits {
                max_bytes: 20,
                keep: 10,
            },
        )
        .unwrap();
        for i in 0..30 {
            log.write(format!("line {i}\n").as_bytes()).unwrap();
        }
        let out = String::from_utf8(collect(dir.path(), 5).await).unwrap();
        assert_eq!(out, "line 25\nline 26\nline 27\nline 28\nline 29\n");
        log.write(b"partial").unwrap();
        let out = String::from_utf8(collect(dir.path(), 2).await).unwrap();
        assert_eq!(out, "line 29\npartial");
        assert!(collect(dir.path(), 0).await.is_empty());
        let all = String::from_utf8(collect(dir.path(), 1000).await).unwrap();
        assert!(all.ends_with("line 29\npartial"), "{all}");
    }

    #[tokio::test]
    async fn follow_reads_across_a_rotation_in_bounded_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let limits = LogLimits {
            max_bytes: 100_000,
            keep: 2,
        };
        let mut log = RotatingLog::open(dir.path(), limits).unwrap();
        log.write(b"old\n").unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Piece>(4);
        let path = dir.path().to_owned();
        let task = tokio::spawn(stream(path, 1, true, move |p| {
            let tx = tx.clone();
            async move { tx.send(p).await.is_ok() }
        }));
        // The tail arrives once the follower holds its place in the live file.
        let first = rx.recv().await.unwrap();
        assert_eq!(first.data, b"old\n");
        // 150 KB without a newline, crossing a rotation.
        log.write(&vec![b'x'; 150_000]).unwrap();
        log.write(b"\nend\n").unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"end\n") {
            let p = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            assert!(p.data.len() <= CHUNK);
            got.extend_from_slice(&p.data);
        }
        assert_eq!(got.len(), 150_000 + 5);
        task.abort();
    }
}
