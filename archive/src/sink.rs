//! Where admitted entries go: nowhere ([`Discard`], for `inspect`) or into the target
//! directory ([`Disk`], for `extract`).
//!
//! Why `Disk` never writes outside the target: the target starts empty and is a real
//! directory (checked, then canonicalized); the rules admit no entry beneath a path that is a
//! link or a file in the archive, and no entry that replaces another; so every parent is a
//! directory this sink made itself with `mkdir`, which never follows a link. Symbolic links
//! are only made at the very end, after every file and directory, so nothing is ever written
//! through one. Files are still opened with `O_CREAT | O_EXCL | O_NOFOLLOW` and every parent
//! is checked to be a real directory before use, in case something else changes the target
//! while we work.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::rules::{self, Rel};
use crate::walk::unsafe_entry;
use crate::{Error, Result};

/// Permission bits kept from an archive: rwx for owner, group and other, never setuid,
/// setgid or sticky, never write for group or other.
const MODE_MASK: u32 = 0o755;

/// Receives the entries the rules admitted.
pub(crate) trait Sink {
    /// A directory; `mode` is set for an explicit entry, `new` when it did not exist yet.
    fn dir(&mut self, rel: &[Vec<u8>], mode: Option<u32>, new: bool) -> Result<()>;
    /// A regular file whose bytes `data` yields (metered by the walk). Must read `data` to
    /// its end; a read error surfaces as any `Err`, which the walk replaces with its cause.
    fn file(&mut self, rel: &Rel, mode: u32, data: &mut dyn Read) -> Result<()>;
    /// A hard link to a regular file admitted earlier.
    fn hard_link(&mut self, rel: &Rel, to: &Rel) -> Result<()>;
    /// The end: strip the top directory when given, then make the symbolic links.
    fn finish(&mut self, strip: Option<&[u8]>, links: &[(Rel, Vec<u8>)]) -> Result<()>;
}

/// A read error placeholder: the walk reports the real cause it kept.
fn read_failed(e: &io::Error) -> Error {
    Error::Format(e.to_string())
}

/// Writes nothing; reads every file to its end so the caps see the real sizes.
#[derive(Debug, Default)]
pub(crate) struct Discard;

impl Sink for Discard {
    fn dir(&mut self, _: &[Vec<u8>], _: Option<u32>, _: bool) -> Result<()> {
        Ok(())
    }

    fn file(&mut self, _: &Rel, _: u32, data: &mut dyn Read) -> Result<()> {
        io::copy(data, &mut io::sink())
            .map(|_| ())
            .map_err(|e| read_failed(&e))
    }

    fn hard_link(&mut self, _: &Rel, _: &Rel) -> Result<()> {
        Ok(())
    }

    fn finish(&mut self, _: Option<&[u8]>, _: &[(Rel, Vec<u8>)]) -> Result<()> {
        Ok(())
    }
}

/// Writes into a target directory that was empty.
#[derive(Debug)]
pub(crate) struct Disk {
    root: PathBuf,
    /// Explicit directory modes, applied at the end (a read-only directory would stop the
    /// files inside it from being written).
    dir_modes: Vec<(Rel, u32)>,
    /// Copy buffer, reused across files.
    buf: Vec<u8>,
}

fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

impl Disk {
    /// Prepares `target`: creates it when missing; refuses one that is not an empty, real
    /// directory.
    pub(crate) fn prepare(target: &Path) -> Result<Disk> {
        match fs::symlink_metadata(target) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
                    fs::create_dir_all(parent).map_err(io_error("could not create", parent))?;
                }
                fs::create_dir(target).map_err(io_error("could not create", target))?;
            }
            Err(e) => return Err(io_error("could not read", target)(e)),
            Ok(meta) => {
                let refuse = |why: &str| {
                    io_error("refusing to extract into", target)(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        why.to_owned(),
                    ))
                };
                if !meta.file_type().is_dir() {
                    return Err(refuse("it exists and is not a directory"));
                }
                let mut listing =
                    fs::read_dir(target).map_err(io_error("could not read", target))?;
                if listing.next().is_some() {
                    return Err(refuse("the directory is not empty"));
                }
            }
        }
        let root = fs::canonicalize(target).map_err(io_error("could not resolve", target))?;
        Ok(Disk {
            root,
            dir_modes: Vec::new(),
            buf: vec![0u8; 64 << 10],
        })
    }

    fn path(&self, rel: &[Vec<u8>]) -> PathBuf {
        self.root.join(OsStr::from_bytes(&rules::join(rel)))
    }

    /// Checks that the parent of `rel` is a real directory (not a link) in the target.
    fn check_parent(&self, rel: &[Vec<u8>]) -> Result<PathBuf> {
        let path = self.path(rel);
        let parent = self.path(&rel[..rel.len().saturating_sub(1)]);
        let real_dir = fs::symlink_metadata(&parent).is_ok_and(|m| m.file_type().is_dir());
        if !real_dir {
            return Err(unsafe_entry(
                &rules::join(rel),
                "its parent is not a real directory inside the target".into(),
            ));
        }
        Ok(path)
    }
}

impl Sink for Disk {
    fn dir(&mut self, rel: &[Vec<u8>], mode: Option<u32>, new: bool) -> Result<()> {
        if new {
            let path = self.check_parent(rel)?;
            fs::create_dir(&path).map_err(io_error("could not create", &path))?;
        }
        if let Some(mode) = mode {
            self.dir_modes.push((rel.to_vec(), mode));
        }
        Ok(())
    }

    fn file(&mut self, rel: &Rel, mode: u32, data: &mut dyn Read) -> Result<()> {
        let path = self.check_parent(rel)?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(io_error("could not create", &path))?;
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_failed(&e)),
            };
            file.write_all(&self.buf[..n])
                .map_err(io_error("could not write", &path))?;
        }
        // Owner read/write are kept so the service can always read and replace what it unpacked.
        set_mode(&file, (mode & MODE_MASK) | 0o600, &path)
    }

    fn hard_link(&mut self, rel: &Rel, to: &Rel) -> Result<()> {
        let path = self.check_parent(rel)?;
        let from = self.path(to);
        // linkat without AT_SYMLINK_FOLLOW: a link is never followed (and `to` is a file).
        fs::hard_link(&from, &path).map_err(io_error("could not link", &path))
    }

    fn finish(&mut self, strip: Option<&[u8]>, links: &[(Rel, Vec<u8>)]) -> Result<()> {
        let cut = usize::from(strip.is_some());
        if let Some(top) = strip {
            self.lift(top)?;
        }
        for (rel, mode) in &self.dir_modes {
            if rel.len() <= cut {
                continue;
            }
            let path = self.path(&rel[cut..]);
            // Owner rwx are kept so the service can always remove what it unpacked.
            fs::set_permissions(&path, Permissions::from_mode((mode & MODE_MASK) | 0o700))
                .map_err(io_error("could not set the mode of", &path))?;
        }
        for (rel, target) in links {
            let rel = &rel[cut..];
            let path = self.check_parent(rel)?;
            std::os::unix::fs::symlink(OsStr::from_bytes(target), &path)
                .map_err(io_error("could not create the link", &path))?;
        }
        Ok(())
    }
}

impl Disk {
    /// Moves the contents of the single top directory up into the root.
    fn lift(&self, top: &[u8]) -> Result<()> {
        let top_path = self.root.join(OsStr::from_bytes(top));
        let mut names = HashSet::new();
        for child in fs::read_dir(&top_path).map_err(io_error("could not read", &top_path))? {
            let child = child.map_err(io_error("could not read", &top_path))?;
            names.insert(child.file_name());
        }
        // The root holds only `top`; park it under a name none of its children has.
        let parked_name = (0u32..)
            .map(|n| format!(".exile-strip-{n}"))
            .find(|n| !names.contains(OsStr::new(n)))
            .unwrap_or_else(|| ".exile-strip".into());
        let parked = self.root.join(parked_name);
        fs::rename(&top_path, &parked).map_err(io_error("could not move", &top_path))?;
        for name in names {
            let from = parked.join(&name);
            fs::rename(&from, self.root.join(&name)).map_err(io_error("could not move", &from))?;
        }
        fs::remove_dir(&parked).map_err(io_error("could not remove", &parked))
    }
}

fn set_mode(file: &File, mode: u32, path: &Path) -> Result<()> {
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(io_error("could not set the mode of", path))
}
