//! The one walk over an archive's entries that `inspect` and `extract` share: it applies the
//! rules and the caps to each entry as it comes, meters the bytes really decompressed, and
//! hands what passes to a [`Sink`] (nothing written, or the target directory).

use std::io::{self, Read};

use crate::rules::{self, Kind, Rel, Tree};
use crate::sink::Sink;
use crate::{Error, Format, Options, Result, Summary};

/// Name of the build manifest at the (stripped) root.
pub(crate) const MANIFEST: &[u8] = b"exile-build.toml";

/// Largest build manifest, bytes.
pub(crate) const MAX_MANIFEST_BYTES: usize = 64 << 10;

/// One entry as the format readers see it.
#[derive(Debug)]
pub(crate) enum Entry {
    /// A directory.
    Dir,
    /// A regular file; its bytes follow.
    File,
    /// A symbolic link to this target.
    Symlink(Vec<u8>),
    /// A hard link to this earlier entry (tar).
    HardLink(Vec<u8>),
}

/// The caps on the bytes an archive unpacks to.
#[derive(Debug)]
struct Meter {
    max_bytes: u64,
    max_ratio: u64,
    ratio_floor: u64,
    archive_len: u64,
    bytes: u64,
}

impl Meter {
    fn charge(&mut self, n: u64) -> Result<()> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > self.max_bytes {
            return Err(Error::Limit(format!(
                "the archive unpacks to more than {} bytes, the limit",
                self.max_bytes
            )));
        }
        if self.bytes > self.ratio_floor
            && self.bytes > self.archive_len.saturating_mul(self.max_ratio)
        {
            return Err(Error::Limit(format!(
                "the archive unpacks to more than {} times its own size of {} bytes, which is \
                 refused as a compression bomb",
                self.max_ratio, self.archive_len
            )));
        }
        Ok(())
    }
}

/// What became of the `exile-build.toml` candidates.
#[derive(Debug)]
enum Captured {
    /// A regular file's first bytes (at most the limit plus one).
    Text(Vec<u8>, u64),
    /// Something else than a regular file.
    NotAFile,
}

/// A reader that charges every byte to the meter before handing it on, and keeps the first
/// bytes of a manifest candidate. Failures are kept so the walk reports them, not the
/// sink's generic I/O error.
struct Metered<'a> {
    inner: &'a mut dyn Read,
    meter: &'a mut Meter,
    name: &'a [u8],
    keep: Option<&'a mut Vec<u8>>,
    read: u64,
    failure: Option<Error>,
}

impl Read for Metered<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                self.failure = Some(Error::Format(format!(
                    "entry {:?} could not be read: {e}",
                    rules::show(self.name)
                )));
                return Err(io::Error::other("the archive could not be read"));
            }
        };
        if let Err(e) = self.meter.charge(n as u64) {
            self.failure = Some(e);
            return Err(io::Error::other("a cap was passed"));
        }
        self.read += n as u64;
        if let Some(keep) = self.keep.as_deref_mut() {
            let room = (MAX_MANIFEST_BYTES + 1).saturating_sub(keep.len());
            keep.extend_from_slice(&buf[..n.min(room)]);
        }
        Ok(n)
    }
}

/// The walk: rules, caps and the sink, entry after entry.
pub(crate) struct Walker<'o, S> {
    options: &'o Options,
    format: Format,
    meter: Meter,
    tree: Tree,
    sink: S,
    entries: u64,
    files: u64,
    file_bytes: u64,
    root_manifest: Option<Captured>,
    top_manifest: Option<Captured>,
}

impl<'o, S: Sink> Walker<'o, S> {
    /// A walk over an archive of `archive_len` bytes.
    pub(crate) fn new(options: &'o Options, format: Format, archive_len: u64, sink: S) -> Self {
        Walker {
            options,
            format,
            meter: Meter {
                max_bytes: options.max_unpacked_bytes,
                max_ratio: options.max_ratio,
                ratio_floor: options.ratio_floor_bytes,
                archive_len,
                bytes: 0,
            },
            tree: Tree::default(),
            sink,
            entries: 0,
            files: 0,
            file_bytes: 0,
            root_manifest: None,
            top_manifest: None,
        }
    }

    /// The options of this walk.
    pub(crate) fn options(&self) -> &Options {
        self.options
    }

    /// Reads a small piece of entry data (a zip symlink's target), metered, refusing more
    /// than `max` bytes.
    pub(crate) fn read_small(
        &mut self,
        name: &[u8],
        data: &mut dyn Read,
        max: usize,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut metered = Metered {
            inner: data,
            meter: &mut self.meter,
            name,
            keep: None,
            read: 0,
            failure: None,
        };
        let r = (&mut metered).take(max as u64 + 1).read_to_end(&mut out);
        if let Some(e) = metered.failure.take() {
            return Err(e);
        }
        r.map_err(|e| {
            Error::Format(format!(
                "entry {:?} could not be read: {e}",
                rules::show(name)
            ))
        })?;
        if out.len() > max {
            return Err(unsafe_entry(
                name,
                format!("its link target is longer than {max} bytes"),
            ));
        }
        Ok(out)
    }

    /// Takes one entry: checks it, writes it through the sink, and returns how many bytes
    /// of data were read from `data` (all of it).
    pub(crate) fn entry(
        &mut self,
        name: &[u8],
        entry: Entry,
        mode: Option<u32>,
        data: &mut dyn Read,
    ) -> Result<u64> {
        self.entries += 1;
        if self.entries > self.options.max_entries {
            return Err(Error::Limit(format!(
                "the archive holds more than {} entries, the limit",
                self.options.max_entries
            )));
        }
        let max_path = self.options.max_path_bytes;
        let rel = rules::normalize(name, max_path).map_err(|r| unsafe_entry(name, r))?;
        let (kind, link) = match &entry {
            Entry::Dir => (Kind::Dir, None),
            Entry::File | Entry::HardLink(_) => (Kind::File, None),
            Entry::Symlink(target) => {
                rules::check_symlink_target(&rel, target, max_path)
                    .map_err(|r| unsafe_entry(name, r))?;
                (Kind::Symlink, Some(target.as_slice()))
            }
        };
        let hard_target = match &entry {
            Entry::HardLink(target) => Some(self.hard_link_target(name, target)?),
            _ => None,
        };
        let (implied, new) = self
            .tree
            .admit(&rel, kind, link)
            .map_err(|r| unsafe_entry(name, r))?;
        for depth in implied {
            self.sink.dir(&rel[..depth], None, true)?;
        }
        let candidate = self.manifest_slot(&rel);
        let mut keep = Vec::new();
        let mut metered = Metered {
            inner: data,
            meter: &mut self.meter,
            name,
            keep: None,
            read: 0,
            failure: None,
        };
        let written = match entry {
            Entry::File => {
                if candidate.is_some() {
                    metered.keep = Some(&mut keep);
                }
                self.sink.file(&rel, mode.unwrap_or(0o644), &mut metered)
            }
            Entry::Dir => self.sink.dir(&rel, Some(mode.unwrap_or(0o755)), new),
            Entry::Symlink(_) => Ok(()),
            Entry::HardLink(_) => match &hard_target {
                Some(to) => self.sink.hard_link(&rel, to),
                None => Ok(()),
            },
        }
        .and_then(|()| {
            // Whatever a non-file entry carries is read and metered, never kept.
            io::copy(&mut metered, &mut io::sink())
                .map(|_| ())
                .map_err(|e| Error::Format(e.to_string()))
        });
        let read = metered.read;
        if let Some(failure) = metered.failure.take() {
            return Err(failure);
        }
        written?;
        match kind {
            Kind::File => {
                self.files += 1;
                if hard_target.is_none() {
                    self.file_bytes += read;
                }
            }
            Kind::Dir | Kind::Symlink => {}
        }
        if let Some(slot) = candidate {
            let captured = if hard_target.is_none() && kind == Kind::File {
                Captured::Text(keep, read)
            } else {
                Captured::NotAFile
            };
            match slot {
                Slot::Root => self.root_manifest = Some(captured),
                Slot::Top => self.top_manifest = Some(captured),
            }
        }
        Ok(read)
    }

    /// Checks a hard link: it must name a regular file that came earlier.
    fn hard_link_target(&self, name: &[u8], target: &[u8]) -> Result<Rel> {
        let to = rules::normalize(target, self.options.max_path_bytes).map_err(|r| {
            unsafe_entry(
                name,
                format!("it is a hard link to \"{}\", and {r}", rules::show(target)),
            )
        })?;
        if to.is_empty() || !self.tree.is_file(&to) {
            return Err(unsafe_entry(
                name,
                format!(
                    "it is a hard link to \"{}\", and no regular file of that path came earlier in the archive",
                    rules::show(target)
                ),
            ));
        }
        Ok(to)
    }

    /// Whether `rel` could be the manifest: at the root, or under the first top directory.
    fn manifest_slot(&self, rel: &Rel) -> Option<Slot> {
        match rel.as_slice() {
            [name] if name == MANIFEST => Some(Slot::Root),
            [top, name] if name == MANIFEST && Some(top.as_slice()) == self.tree.first_top() => {
                Some(Slot::Top)
            }
            _ => None,
        }
    }

    /// Applies the end-of-archive rules (links through links, the manifest), strips the top
    /// directory when asked, and lets the sink finish (links are made last).
    pub(crate) fn finish(mut self) -> Result<Summary> {
        let strip = if self.options.strip_single_top_dir {
            self.tree.single_top().map(<[u8]>::to_vec)
        } else {
            None
        };
        let floor = usize::from(strip.is_some());
        self.tree
            .check_links(floor)
            .map_err(|(link, reason)| unsafe_entry(&rules::join(&link), reason))?;
        let (captured, manifest_name) = match &strip {
            Some(top) => (
                self.top_manifest.take(),
                rules::join(&[top.clone(), MANIFEST.to_vec()]),
            ),
            None => (self.root_manifest.take(), MANIFEST.to_vec()),
        };
        let manifest = match captured {
            None => None,
            Some(Captured::NotAFile) => {
                return Err(unsafe_entry(
                    &manifest_name,
                    "the build manifest must be a regular file".into(),
                ));
            }
            Some(Captured::Text(bytes, len)) => {
                if len > MAX_MANIFEST_BYTES as u64 {
                    return Err(Error::Limit(format!(
                        "the build manifest {:?} is {len} bytes, over the limit of {MAX_MANIFEST_BYTES} bytes",
                        rules::show(&manifest_name)
                    )));
                }
                Some(String::from_utf8(bytes).map_err(|_| {
                    Error::Format(format!(
                        "the build manifest {:?} is not UTF-8 text",
                        rules::show(&manifest_name)
                    ))
                })?)
            }
        };
        self.sink.finish(strip.as_deref(), self.tree.links())?;
        Ok(Summary {
            format: Some(self.format),
            files: self.files,
            dirs: self.tree.dirs() - u64::from(strip.is_some()),
            symlinks: self.tree.links().len() as u64,
            unpacked_bytes: self.file_bytes,
            manifest,
            stripped_prefix: strip.as_deref().map(rules::show),
        })
    }
}

/// Where a manifest candidate sits.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Root,
    Top,
}

/// The refusal of one entry.
pub(crate) fn unsafe_entry(name: &[u8], reason: String) -> Error {
    Error::Unsafe {
        entry: rules::show(name),
        reason,
    }
}
