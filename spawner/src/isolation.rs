//! Keeping a game away from the spawner and from the other games on its host.
//!
//! With `--run-as-uids FIRST-LAST` each instance runs as a user of its own (a uid from the
//! range, kept for the instance's life, the same number as its only group). Then a game
//! cannot read the spawner's credential or state (0600, the spawner's), another game's
//! environment (`/proc/<pid>/environ` is its owner's), data (0700, the other uid's) or
//! supervisor socket (0600 in a directory others may only pass through). Whatever the user,
//! every game starts with a clean environment (only what its build and spawn ask for, Exile's
//! own variables and the spawner's `PATH`, `LANG`, `LC_ALL` and `TZ`), `no_new_privs`, no
//! core dumps, and limits on open files and processes; see `supervisor`.
//!
//! Switching users needs root (or CAP_SETUID, CAP_SETGID, CAP_CHOWN, CAP_FOWNER). Without
//! it the spawner says so loudly at start and games run as its own user. Memory and CPU caps
//! need cgroups v2 with both controllers delegated to the spawner (see `cgroup`); without
//! them the spawner says so at start, and each capped instance in its message.

use std::collections::HashSet;
use std::io;
use std::ops::RangeInclusive;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::config::Config;
use crate::error::{Error, Result};

/// Variables of the spawner's own environment a game gets too: where programs are and how
/// text and time are shown. Nothing else of the spawner's reaches a game.
pub const INHERITED_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ"];

/// How games are confined on this spawner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    /// Uids handed to instances; `None` runs games as the spawner's user.
    pub uids: Option<RangeInclusive<u32>>,
    /// RLIMIT_NOFILE of a game.
    pub max_open_files: u64,
    /// RLIMIT_NPROC of a game.
    pub max_processes: u64,
    /// Memory and CPU caps of games whose build sets none.
    pub default_caps: exile_api::limits::ResourceCaps,
    /// Whether caps can be enforced here, and where.
    pub cgroups: crate::cgroup::Cgroups,
}

impl Default for Isolation {
    fn default() -> Self {
        Self {
            uids: None,
            max_open_files: 65_536,
            max_processes: 4_096,
            default_caps: exile_api::limits::ResourceCaps::default(),
            cgroups: crate::cgroup::Cgroups::default(),
        }
    }
}

impl Isolation {
    /// From the flags; a uid range the spawner cannot switch to (not root) is dropped with a
    /// loud warning, as is running games as root without one.
    pub fn from_config(config: &Config) -> Result<Self> {
        let wanted = config.run_as_uids()?;
        let root = nix::unistd::geteuid().is_root();
        let uids = match (wanted, root) {
            (Some(range), true) => Some(range),
            (Some(range), false) => {
                tracing::warn!(
                    "--run-as-uids {}-{} needs the spawner to run as root: games run as the spawner's own user (uid {}) and can read its credential and each other's files",
                    range.start(),
                    range.end(),
                    nix::unistd::geteuid()
                );
                None
            }
            (None, true) => {
                tracing::warn!(
                    "games run as root, like this spawner: give --run-as-uids FIRST-LAST so each game runs as a user of its own and cannot read the spawner's credential or other games"
                );
                None
            }
            (None, false) => {
                tracing::warn!(
                    "games run as the spawner's own user (uid {}): they can read its credential and each other's files; run the spawner as root with --run-as-uids FIRST-LAST to give each game a user of its own",
                    nix::unistd::geteuid()
                );
                None
            }
        };
        let cgroups = crate::cgroup::Cgroups::detect(config.cgroup_root.as_deref());
        match &cgroups {
            crate::cgroup::Cgroups::Available(tree) => tracing::info!(
                cgroup_root = %tree.root().display(),
                "memory/CPU caps of games enforced through cgroups v2"
            ),
            crate::cgroup::Cgroups::Unsupported(reason) => tracing::warn!(
                "memory/CPU caps unsupported: {reason}. Games whose build or spawner sets caps run without them and their instances say so"
            ),
        }
        Ok(Self {
            uids,
            max_open_files: config.game_max_open_files,
            max_processes: config.game_max_processes,
            default_caps: config.game_caps()?,
            cgroups,
        })
    }

    /// With uids to hand out: checks that games running as other users can pass through
    /// every directory above the data dir (which this spawner opens itself), so a start does
    /// not fail later on a `Permission denied` that names no culprit.
    pub fn check_reachable(&self, data_dir: &Path) -> Result<()> {
        if self.uids.is_none() {
            return Ok(());
        }
        for dir in data_dir.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(dir) else {
                continue;
            };
            if meta.permissions().mode() & 0o001 == 0 {
                return Err(Error::Config(format!(
                    "with --run-as-uids, games run as other users and must pass through {} to reach their directories under --data-dir {}: give it o+x (chmod o+x {}) or choose a data dir under /var/lib",
                    dir.display(),
                    data_dir.display(),
                    dir.display()
                )));
            }
        }
        Ok(())
    }

    /// The lowest uid of the range no other instance holds; `None` when all are taken (or no
    /// range is configured).
    pub fn pick_uid(&self, held: &HashSet<u32>) -> Option<u32> {
        self.uids.clone()?.find(|u| !held.contains(u))
    }

    /// Whether `uid` is one this spawner hands out.
    pub fn owns(&self, uid: u32) -> bool {
        self.uids.as_ref().is_some_and(|r| r.contains(&uid))
    }
}

/// Gives each instance of an older record (or of another range) a uid of the range, keeping
/// those that already hold one of it; the uid takes effect at the game's next start.
pub fn assign_missing_uids<'a>(
    iso: &Isolation,
    uids: impl IntoIterator<Item = &'a mut Option<u32>>,
) {
    if iso.uids.is_none() {
        return;
    }
    let mut held = HashSet::new();
    let mut missing = Vec::new();
    for uid in uids {
        match *uid {
            Some(u) if iso.owns(u) && held.insert(u) => {}
            _ => missing.push(uid),
        }
    }
    for uid in missing {
        *uid = iso.pick_uid(&held);
        if let Some(u) = *uid {
            held.insert(u);
        } else {
            tracing::warn!(
                "no uid left in --run-as-uids for an instance kept from before; it runs as the spawner's user"
            );
        }
    }
}

/// Gets an instance's directories ready for its game running as `uid`: every directory from
/// the spawner's data dir down to the instance's runtime directory may be passed through
/// (not listed) by others; the runtime directory stays the spawner's; the data directory and
/// everything in it become the game's, mode 0700 at the top. Links are never followed, so a
/// game that left a link to a host file behind cannot have it handed over.
pub fn prepare_instance(root: &Path, runtime: &Path, data: &Path, uid: u32) -> io::Result<()> {
    let mut dirs: Vec<&Path> = runtime
        .ancestors()
        .take_while(|d| d.starts_with(root))
        .collect();
    dirs.reverse();
    for dir in dirs {
        add_mode(dir, 0o711)?;
    }
    std::fs::create_dir_all(data)?;
    give(data, uid)?;
    std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
}

/// Gives `path` and everything under it to `uid` (as its group too), without following links.
fn give(path: &Path, uid: u32) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.uid() != uid || meta.gid() != uid {
        lchown(path, uid)?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            give(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

fn lchown(path: &Path, uid: u32) -> io::Result<()> {
    use nix::unistd::{Gid, Uid};
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        path,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(uid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(io::Error::from)
}

/// Adds `bits` to the mode of the directory `dir` (nothing is taken away).
fn add_mode(dir: &Path, bits: u32) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_dir() && mode & bits != bits {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | bits))?;
    }
    Ok(())
}

/// Makes an unpacked build readable by the users games run as, whatever the umask it was
/// unpacked under: directories `a+rx`, files `a+r` (and `a+x` where the owner may run them).
/// Links are left as they are.
pub fn share_build(dir: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(dir)?;
    let mode = meta.permissions().mode() & 0o7777;
    if meta.is_dir() {
        if mode & 0o755 != 0o755 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o755))?;
        }
        for entry in std::fs::read_dir(dir)? {
            share_build(&entry?.path())?;
        }
    } else if meta.is_file() {
        let want = if mode & 0o100 != 0 { 0o755 } else { 0o644 };
        if mode & want != want {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | want))?;
        }
    }
    Ok(())
}

/// The directories from `root` down to `dir` that others may pass through, so a game running
/// as another user reaches the build it runs.
pub fn open_path(root: &Path, dir: &Path) -> io::Result<()> {
    for d in dir.ancestors().take_while(|d| d.starts_with(root)) {
        add_mode(d, 0o711)?;
    }
    Ok(())
}

/// The error for a full uid range.
pub fn no_uid_left(spawner: &str, range: &RangeInclusive<u32>, id: &str) -> Error {
    Error::FailedPrecondition(format!(
        "spawner {spawner} has no uid left in {}-{} (--run-as-uids) for instance {id}",
        range.start(),
        range.end()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_the_lowest_free_of_the_range() {
        let iso = Isolation {
            uids: Some(61000..=61002),
            ..Default::default()
        };
        let mut held = HashSet::new();
        for want in [61000, 61001, 61002] {
            let u = iso.pick_uid(&held).unwrap();
            assert_eq!(u, want);
            held.insert(u);
        }
        assert_eq!(iso.pick_uid(&held), None);
        held.remove(&61001);
        assert_eq!(iso.pick_uid(&held), Some(61001));
        assert!(iso.owns(61002) && !iso.owns(60999));
        assert_eq!(Isolation::default().pick_uid(&HashSet::new()), None);
    }

    #[test]
    fn a_build_becomes_readable_and_its_programs_runnable_by_everyone() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("b");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700)).unwrap();
        let prog = root.join("server");
        let data = root.join("maps.pak");
        std::fs::write(&prog, b"#!/bin/sh\n").unwrap();
        std::fs::write(&data, b"x").unwrap();
        std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o600)).unwrap();
        let outside = dir.path().join("secret");
        std::fs::write(&outside, b"s").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
        share_build(&root).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o755);
        assert_eq!(mode(&prog), 0o755);
        assert_eq!(mode(&data), 0o644);
        // The link's target is not touched.
        assert_eq!(mode(&outside), 0o600);
    }
}
