//! A build's archive read straight from its cached chunks: the chunk files, in archive order,
//! seen as one seekable file. Installs unpack from it, so the archive is never assembled into
//! a second copy on disk (for a 1 GiB build that copy was a gigabyte written, flushed and
//! read back before anything could be unpacked).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;

/// The chunks of one archive as a single `Read + Seek` stream.
pub struct ChunkedArchive {
    /// (path, start offset, size) of every chunk, in order.
    parts: Vec<(PathBuf, u64, u64)>,
    len: u64,
    pos: u64,
    /// The chunk file open at the moment, its index and the position inside it.
    open: Option<(usize, File, u64)>,
}

impl ChunkedArchive {
    /// The archive made of `parts` (chunk file, size) in order.
    pub fn new(parts: impl IntoIterator<Item = (PathBuf, u64)>) -> Self {
        let mut offset = 0;
        let parts = parts
            .into_iter()
            .map(|(path, size)| {
                let part = (path, offset, size);
                offset += size;
                part
            })
            .collect();
        Self {
            parts,
            len: offset,
            pos: 0,
            open: None,
        }
    }

    /// Its length, bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The index of the chunk holding byte `pos` (`pos < len`).
    fn part_at(&self, pos: u64) -> usize {
        self.parts
            .partition_point(|(_, start, size)| start + size <= pos)
    }
}

impl Read for ChunkedArchive {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.pos >= self.len {
            return Ok(0);
        }
        let index = self.part_at(self.pos);
        let (path, start, size) = &self.parts[index];
        let within = self.pos - start;
        let reuse = matches!(&self.open, Some((i, _, at)) if *i == index && *at == within);
        if !reuse {
            let mut file = File::open(path)?;
            file.seek(SeekFrom::Start(within))?;
            self.open = Some((index, file, within));
        }
        let Some((_, file, at)) = self.open.as_mut() else {
            return Ok(0);
        };
        let room = usize::try_from(size - within).unwrap_or(usize::MAX);
        let want = buf.len().min(room);
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            // The cache file is shorter than its chunk: it was checked before the unpack,
            // so something changed it since.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("cached chunk {} ended early", path.display()),
            ));
        }
        *at += n as u64;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ChunkedArchive {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the archive",
            )
        })?;
        self.pos = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_read_and_seek_as_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let whole: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let cuts = [0usize, 1, 4_000, 4_001, 9_999, 10_000];
        let parts: Vec<(PathBuf, u64)> = cuts
            .windows(2)
            .enumerate()
            .map(|(i, w)| {
                let path = dir.path().join(format!("c{i}"));
                std::fs::write(&path, &whole[w[0]..w[1]]).unwrap();
                (path, (w[1] - w[0]) as u64)
            })
            .collect();
        let mut archive = ChunkedArchive::new(parts);
        assert_eq!(archive.len(), 10_000);
        let mut all = Vec::new();
        archive.read_to_end(&mut all).unwrap();
        assert_eq!(all, whole);

        for (from, n) in [(3_999u64, 5usize), (0, 2), (9_998, 2), (1, 9_999)] {
            archive.seek(SeekFrom::Start(from)).unwrap();
            let mut got = vec![0; n];
            archive.read_exact(&mut got).unwrap();
            assert_eq!(got, whole[from as usize..from as usize + n], "from {from}");
        }
        assert_eq!(archive.seek(SeekFrom::End(-3)).unwrap(), 9_997);
        let mut tail = Vec::new();
        archive.read_to_end(&mut tail).unwrap();
        assert_eq!(tail, whole[9_997..]);
        assert_eq!(archive.seek(SeekFrom::End(5)).unwrap(), 10_005);
        assert_eq!(
            archive.read(&mut [0; 4]).unwrap(),
            0,
            "past the end reads nothing"
        );
        assert!(archive.seek(SeekFrom::Current(-20_000)).is_err());

        // A cache file cut short is an error, not a short archive.
        std::fs::write(&archive.parts[1].0, b"xx").unwrap();
        archive.seek(SeekFrom::Start(0)).unwrap();
        let err = archive.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    }
}
