//! Reading zip archives (stored and deflated entries), in central-directory order.

use std::io::{BufReader, Read, Seek};

use crate::sink::Sink;
use crate::walk::{Entry, Walker, unsafe_entry};
use crate::{Error, Result};

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFIFO: u32 = 0o010_000;
const S_IFSOCK: u32 = 0o140_000;

fn format_error(e: impl std::fmt::Display) -> Error {
    Error::Format(format!("the zip archive is corrupt or unsupported: {e}"))
}

/// Walks every entry of a zip archive.
pub(crate) fn walk<S: Sink>(source: impl Read + Seek, walker: &mut Walker<'_, S>) -> Result<()> {
    let mut zip = zip::ZipArchive::new(BufReader::new(source)).map_err(format_error)?;
    let max_entries = walker.options().max_entries;
    if zip.len() as u64 > max_entries {
        return Err(Error::Limit(format!(
            "the archive holds more than {max_entries} entries, the limit"
        )));
    }
    if zip.has_duplicate_names() {
        // The zip reader keeps one entry per name, so the hidden one cannot be named.
        return Err(unsafe_entry(
            b"(central directory)",
            "two entries have the same name, and an archive may not replace its own entries".into(),
        ));
    }
    let max_path = walker.options().max_path_bytes;
    for i in 0..zip.len() {
        let shown = zip
            .name_for_index(i)
            .and_then(|n| n.ok())
            .map_or_else(|| format!("#{i}"), |n| n.into_owned());
        let mut file = zip
            .by_index(i)
            .map_err(|e| Error::Format(format!("entry {shown:?} cannot be read: {e}")))?;
        // Some Windows tools write `\` as the separator: read it as one, so `..\x` is `../x`.
        let name: Vec<u8> = file
            .name()
            .map_err(format_error)?
            .bytes()
            .map(|b| if b == b'\\' { b'/' } else { b })
            .collect();
        let mode = file.unix_mode();
        let kind = mode.map_or(0, |m| m & S_IFMT);
        let refuse = |what: &str| {
            Err(unsafe_entry(
                &name,
                format!("it is {what}, which an archive for Exile may not hold"),
            ))
        };
        let entry = match kind {
            _ if file.is_dir() => Entry::Dir,
            S_IFDIR => Entry::Dir,
            S_IFLNK => Entry::Symlink(walker.read_small(&name, &mut file, max_path)?),
            0 | S_IFREG => Entry::File,
            S_IFCHR => return refuse("a character device"),
            S_IFBLK => return refuse("a block device"),
            S_IFIFO => return refuse("a fifo"),
            S_IFSOCK => return refuse("a socket"),
            other => return refuse(&format!("an entry of unknown type {other:o}")),
        };
        walker.entry(&name, entry, mode, &mut file)?;
    }
    Ok(())
}
