//! Reading tar streams (plain, gzip or zstd). The `tar` crate reads raw headers only: GNU
//! long names and PAX records are handled here so their size is checked before a byte of
//! them is buffered (the crate would read them whole into memory).

use std::io::Read;

use tar::EntryType;

use crate::rules;
use crate::sink::Sink;
use crate::walk::{Entry, Walker, unsafe_entry};
use crate::{Error, Result};

/// Largest PAX extended header accepted, bytes (paths, link paths, times, a few xattrs).
pub(crate) const MAX_PAX_BYTES: u64 = 64 << 10;

/// Names and sizes that extension headers set for the next entry.
#[derive(Debug, Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
    pax_size: Option<u64>,
    any: bool,
}

fn format_error(e: impl std::fmt::Display) -> Error {
    Error::Format(format!("the tar stream is corrupt: {e}"))
}

/// Reads a header's whole data after checking its size against `cap`.
fn read_bounded<S: Sink>(
    walker: &mut Walker<'_, S>,
    name: &[u8],
    data: &mut dyn Read,
    size: u64,
    cap: u64,
    what: &str,
) -> Result<Vec<u8>> {
    if size > cap {
        return Err(unsafe_entry(
            name,
            format!("it is a {what} of {size} bytes, over the limit of {cap} bytes"),
        ));
    }
    let bytes = walker.read_small(name, data, cap as usize)?;
    if bytes.len() as u64 != size {
        return Err(format_error(format!(
            "the archive ends inside the {what} {:?}",
            rules::show(name)
        )));
    }
    Ok(bytes)
}

fn strip_nul(mut bytes: Vec<u8>) -> Vec<u8> {
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    bytes
}

/// Walks every entry of a tar stream.
pub(crate) fn walk<S: Sink>(reader: impl Read, walker: &mut Walker<'_, S>) -> Result<()> {
    let max_path = walker.options().max_path_bytes as u64;
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(format_error)?.raw(true);
    let mut pending = Pending::default();
    for entry in entries {
        let mut entry = entry.map_err(format_error)?;
        let header_name = entry.path_bytes().into_owned();
        let size = entry.size();
        let kind = entry.header().entry_type();
        match kind {
            EntryType::GNULongName | EntryType::GNULongLink => {
                let what = if kind == EntryType::GNULongName {
                    "GNU long name"
                } else {
                    "GNU long link target"
                };
                let bytes = strip_nul(read_bounded(
                    walker,
                    &header_name,
                    &mut entry,
                    size,
                    max_path + 1,
                    what,
                )?);
                let slot = if kind == EntryType::GNULongName {
                    &mut pending.long_name
                } else {
                    &mut pending.long_link
                };
                if slot.replace(bytes).is_some() {
                    return Err(format_error(format!(
                        "two {what} records describe one entry"
                    )));
                }
                pending.any = true;
                continue;
            }
            EntryType::XHeader => {
                let bytes = read_bounded(
                    walker,
                    &header_name,
                    &mut entry,
                    size,
                    MAX_PAX_BYTES,
                    "PAX header",
                )?;
                apply_pax(&header_name, &bytes, max_path, &mut pending)?;
                pending.any = true;
                continue;
            }
            EntryType::XGlobalHeader => {
                // Global records (comments, charsets) change nothing we use; bounded all the same.
                read_bounded(
                    walker,
                    &header_name,
                    &mut entry,
                    size,
                    MAX_PAX_BYTES,
                    "PAX global header",
                )?;
                continue;
            }
            _ => {}
        }
        let pending_now = std::mem::take(&mut pending);
        let name = pending_now
            .pax_path
            .or(pending_now.long_name)
            .unwrap_or(header_name);
        if let Some(pax_size) = pending_now.pax_size
            && pax_size != size
        {
            return Err(unsafe_entry(
                &name,
                format!(
                    "its PAX size record ({pax_size} bytes) disagrees with its header ({size} bytes)"
                ),
            ));
        }
        let link = pending_now
            .pax_link
            .or(pending_now.long_link)
            .or_else(|| entry.link_name_bytes().map(|l| l.into_owned()));
        let refuse = |what: &str| {
            Err(unsafe_entry(
                &name,
                format!("it is {what}, which an archive for Exile may not hold"),
            ))
        };
        let item = match kind {
            EntryType::Regular | EntryType::Continuous if name.ends_with(b"/") => Entry::Dir,
            EntryType::Regular | EntryType::Continuous => Entry::File,
            EntryType::Directory => Entry::Dir,
            EntryType::Symlink => Entry::Symlink(link.unwrap_or_default()),
            EntryType::Link => Entry::HardLink(link.unwrap_or_default()),
            EntryType::Char => return refuse("a character device"),
            EntryType::Block => return refuse("a block device"),
            EntryType::Fifo => return refuse("a fifo"),
            EntryType::GNUSparse => return refuse("a sparse file"),
            other => {
                return refuse(&format!(
                    "an entry of tar type {:?}",
                    char::from(other.as_byte())
                ));
            }
        };
        let mode = entry.header().mode().ok();
        let read = walker.entry(&name, item, mode, &mut entry)?;
        if read != size {
            return Err(format_error(format!(
                "the archive ends inside entry {:?}",
                rules::show(&name)
            )));
        }
    }
    if pending.any {
        return Err(format_error(
            "the archive ends after a long-name or PAX header that describes no entry",
        ));
    }
    Ok(())
}

/// Takes the records of a PAX extended header that matter here.
fn apply_pax(header_name: &[u8], bytes: &[u8], max_path: u64, pending: &mut Pending) -> Result<()> {
    for record in tar::PaxExtensions::new(bytes) {
        let record = record.map_err(format_error)?;
        let key = record.key_bytes();
        let value = record.value_bytes();
        match key {
            b"path" | b"linkpath" => {
                if value.len() as u64 > max_path {
                    return Err(unsafe_entry(
                        header_name,
                        format!(
                            "its PAX {} record is {} bytes, over the limit of {max_path} bytes",
                            rules::show(key),
                            value.len()
                        ),
                    ));
                }
                let slot = if key == b"path" {
                    &mut pending.pax_path
                } else {
                    &mut pending.pax_link
                };
                *slot = Some(value.to_vec());
            }
            b"size" => {
                let size = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| format_error("a PAX size record is not a number"))?;
                pending.pax_size = Some(size);
            }
            _ if key.starts_with(b"GNU.sparse.") => {
                return Err(unsafe_entry(
                    header_name,
                    "it describes a sparse file, which an archive for Exile may not hold".into(),
                ));
            }
            _ => {}
        }
    }
    Ok(())
}
