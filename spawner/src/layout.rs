//! Where a spawner keeps what it holds, under its data dir. Every path below is made here.
//!
//! - `state.json`: the instance records; `credential.json`: the identity from enrollment;
//! - `logs/`: the spawner's own log;
//! - `builds/`: installed builds (laid out by `builds::layout`);
//! - `backups/<instance>/`: an instance's backups (they outlive the instance);
//! - `instances/<id>/`: one instance. The supervisor's runtime files sit at the top
//!   (`supervisor.sock`, `exit.json`, `logs/`); the game's own files live in `data/`, its
//!   working directory, `{data_dir}` and `EXILE_DATA_DIR`. A backup archives `data/` whole
//!   and a restore swaps it whole.
//!
//! Spawners before `data/` ran the game in `instances/<id>/` itself, beside the runtime files.
//! Such a directory is read as it is while its game runs ([`InstanceDir::game_files`]) and
//! brought to the current layout once the game is down ([`InstanceDir::prepare`]).

use std::io;
use std::path::{Path, PathBuf};

/// The supervisor's control socket, in an instance's runtime directory.
pub const SOCKET_NAME: &str = "supervisor.sock";
/// How the game ended, written by the supervisor, in an instance's runtime directory.
pub const EXIT_NAME: &str = "exit.json";
/// The game's output (and the supervisor's stderr), in an instance's runtime directory.
pub const LOGS_NAME: &str = "logs";
/// The game's own files, in an instance directory.
pub const DATA_NAME: &str = "data";
/// A restore being unpacked, beside `data/`.
const STAGING_NAME: &str = "data.restore";
/// The previous data while a restore swaps it out.
const SWAPPED_NAME: &str = "data.old";

/// Marks an instance directory in the current layout.
const MARKER_NAME: &str = ".exile-layout";
/// The game's files on their way into `data/`.
const MOVING_NAME: &str = ".data-moving";

/// What spawners before `data/` wrote beside the game's files at the top of an instance
/// directory; everything else there is the game's.
const LEGACY_RUNTIME: &[&str] = &[SOCKET_NAME, EXIT_NAME, LOGS_NAME];

/// The layout of one spawner data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            root: data_dir.into(),
        }
    }

    /// The data dir.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The instance records.
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// The stored credential.
    pub fn credential_file(&self) -> PathBuf {
        self.root.join("credential.json")
    }

    /// The spawner's own log directory.
    pub fn own_logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Installed builds.
    pub fn builds(&self) -> PathBuf {
        self.root.join("builds")
    }

    /// Every instance's directory.
    pub fn instances(&self) -> PathBuf {
        self.root.join("instances")
    }

    /// One instance's directory.
    pub fn instance(&self, id: &str) -> InstanceDir {
        InstanceDir::at(self.instances().join(id))
    }

    /// One instance's backups.
    pub fn backups(&self, instance_id: &str) -> PathBuf {
        self.root.join("backups").join(instance_id)
    }

    /// A file the spawner keeps at the top of its data dir (e.g. a kept port).
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

/// The directory of one instance: runtime files at the top, the game's files in `data/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceDir {
    dir: PathBuf,
}

impl InstanceDir {
    /// The instance directory at `dir` (the supervisor knows only that).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory itself, holding the supervisor's runtime files (its `--dir`).
    pub fn runtime(&self) -> &Path {
        &self.dir
    }

    /// The supervisor's control socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join(SOCKET_NAME)
    }

    /// How the game ended.
    pub fn exit_file(&self) -> PathBuf {
        self.dir.join(EXIT_NAME)
    }

    /// The game's output logs.
    pub fn logs(&self) -> PathBuf {
        self.dir.join(LOGS_NAME)
    }

    /// The game's own files (current layout).
    pub fn data(&self) -> PathBuf {
        self.dir.join(DATA_NAME)
    }

    /// Where a restore unpacks before it swaps `data/`.
    pub fn staging(&self) -> PathBuf {
        self.dir.join(STAGING_NAME)
    }

    /// Written by spawners that keep the game's files in `data/`; an existing instance
    /// directory without it is in the older layout.
    fn marker(&self) -> PathBuf {
        self.dir.join(MARKER_NAME)
    }

    /// The game's files still sit beside the runtime files, as spawners before `data/` left
    /// them (or a move to `data/` was cut short).
    pub fn is_legacy(&self) -> bool {
        self.dir.is_dir() && !self.marker().exists()
    }

    /// Where the game runs: `data/`, or the directory itself while an older spawner's game
    /// still runs there.
    pub fn game_dir(&self) -> PathBuf {
        if self.is_legacy() {
            self.dir.clone()
        } else {
            self.data()
        }
    }

    /// The game's files, for a backup: the directory they are relative to and its entries,
    /// sorted. Reads both layouts, so a game an older spawner started can be backed up while
    /// it runs. Empty when the game never ran.
    pub fn game_files(&self) -> io::Result<(PathBuf, Vec<PathBuf>)> {
        let base = self.game_dir();
        let legacy = base == self.dir;
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&base) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((base, out)),
            Err(e) => return Err(e),
        };
        for e in entries {
            let e = e?;
            if legacy && LEGACY_RUNTIME.iter().any(|r| e.file_name() == *r) {
                continue;
            }
            out.push(e.path());
        }
        out.sort();
        Ok((base, out))
    }

    /// Makes the directory ready for the game, which must be down: a new one gets `data/`,
    /// one in the older layout has the game's files moved into `data/` (a game file that was
    /// itself named `data` lands in `data/data`). Renames within one directory, nothing
    /// copied; a move cut short is finished by the next call.
    pub fn prepare(&self) -> io::Result<()> {
        let moving = self.dir.join(MOVING_NAME);
        if self.is_legacy() {
            std::fs::create_dir_all(&moving)?;
            let (_, entries) = self.game_files()?;
            for entry in entries {
                if entry == moving {
                    continue;
                }
                let name = entry.file_name().unwrap_or_default();
                std::fs::rename(&entry, moving.join(name))?;
            }
            // Marked before the last rename: from here on the move only needs that rename.
            std::fs::File::create(self.marker())?;
        }
        if moving.exists() {
            std::fs::rename(&moving, self.data())?;
        }
        std::fs::create_dir_all(self.data())?;
        if !self.marker().exists() {
            std::fs::File::create(self.marker())?;
        }
        Ok(())
    }

    /// Swaps a fully unpacked [`staging`](Self::staging) in as `data/`; the old data is
    /// removed after.
    pub fn swap_in_staging(&self) -> io::Result<()> {
        let data = self.data();
        let old = self.dir.join(SWAPPED_NAME);
        let _ = std::fs::remove_dir_all(&old);
        match std::fs::rename(&data, &old) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::rename(self.staging(), &data)?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn paths_of_a_data_dir() {
        let l = Layout::new("/d");
        assert_eq!(l.state_file(), Path::new("/d/state.json"));
        assert_eq!(l.credential_file(), Path::new("/d/credential.json"));
        assert_eq!(l.own_logs(), Path::new("/d/logs"));
        assert_eq!(l.builds(), Path::new("/d/builds"));
        assert_eq!(l.backups("i1"), Path::new("/d/backups/i1"));
        let i = l.instance("i1");
        assert_eq!(i.runtime(), Path::new("/d/instances/i1"));
        assert_eq!(i.socket(), Path::new("/d/instances/i1/supervisor.sock"));
        assert_eq!(i.exit_file(), Path::new("/d/instances/i1/exit.json"));
        assert_eq!(i.logs(), Path::new("/d/instances/i1/logs"));
        assert_eq!(i.data(), Path::new("/d/instances/i1/data"));
        // Not there yet: a new instance, in the current layout.
        assert!(!i.is_legacy());
        assert_eq!(i.game_dir(), Path::new("/d/instances/i1/data"));
    }

    /// An instance directory written by an older spawner: the game's files beside the
    /// runtime files, one of them even named `data`.
    fn legacy(dir: &Path) {
        write(&dir.join("world/level.dat"), "level one");
        write(&dir.join("server.cfg"), "max=16");
        write(&dir.join("data/players.db"), "players");
        std::os::unix::fs::symlink("world/level.dat", dir.join("current")).unwrap();
        write(&dir.join("logs/output.log"), "runtime");
        write(&dir.join("exit.json"), "{}");
    }

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn top(i: &InstanceDir) -> Vec<String> {
        let mut top: Vec<_> = std::fs::read_dir(i.runtime())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        top
    }

    #[test]
    fn an_older_instance_dir_is_read_then_brought_over() {
        let t = tempfile::tempdir().unwrap();
        let i = Layout::new(t.path()).instance("old");
        legacy(i.runtime());
        assert!(i.is_legacy());
        assert_eq!(i.game_dir(), i.runtime());
        let (base, files) = i.game_files().unwrap();
        assert_eq!(base, i.runtime());
        assert_eq!(names(&files), ["current", "data", "server.cfg", "world"]);

        i.prepare().unwrap();
        assert!(!i.is_legacy());
        let data = i.data();
        assert_eq!(read(&data.join("world/level.dat")), "level one");
        assert_eq!(read(&data.join("server.cfg")), "max=16");
        assert_eq!(read(&data.join("data/players.db")), "players");
        assert_eq!(read(&data.join("current")), "level one");
        // The runtime files stay where the supervisor and the spawner look for them.
        assert_eq!(read(&i.logs().join("output.log")), "runtime");
        assert!(i.exit_file().exists());
        assert_eq!(top(&i), [MARKER_NAME, "data", "exit.json", "logs"]);
        let (base, files) = i.game_files().unwrap();
        assert_eq!(base, data);
        assert_eq!(names(&files), ["current", "data", "server.cfg", "world"]);

        // Again: nothing moves.
        i.prepare().unwrap();
        assert_eq!(read(&data.join("server.cfg")), "max=16");
        assert_eq!(read(&data.join("data/players.db")), "players");
        assert!(!data.join("data/data").exists());
    }

    #[test]
    fn a_move_cut_short_is_finished() {
        let t = tempfile::tempdir().unwrap();
        for cut_after in ["one entry moved", "marked"] {
            let i = Layout::new(t.path()).instance(cut_after.split(' ').next().unwrap());
            legacy(i.runtime());
            let moving = i.runtime().join(MOVING_NAME);
            std::fs::create_dir(&moving).unwrap();
            std::fs::rename(i.runtime().join("server.cfg"), moving.join("server.cfg")).unwrap();
            if cut_after == "marked" {
                for rest in ["world", "data", "current"] {
                    std::fs::rename(i.runtime().join(rest), moving.join(rest)).unwrap();
                }
                std::fs::File::create(i.marker()).unwrap();
            }
            i.prepare().unwrap();
            assert_eq!(read(&i.data().join("server.cfg")), "max=16", "{cut_after}");
            assert_eq!(read(&i.data().join("world/level.dat")), "level one");
            assert_eq!(read(&i.data().join("data/players.db")), "players");
            assert_eq!(top(&i), [MARKER_NAME, "data", "exit.json", "logs"]);
        }
    }

    #[test]
    fn a_new_instance_dir_gets_an_empty_data_dir() {
        let t = tempfile::tempdir().unwrap();
        let i = Layout::new(t.path()).instance("new");
        assert_eq!(i.game_files().unwrap().1, Vec::<PathBuf>::new());
        i.prepare().unwrap();
        assert!(!i.is_legacy());
        assert_eq!(std::fs::read_dir(i.data()).unwrap().count(), 0);
        // The game's logs never count as its data.
        write(&i.logs().join("output.log"), "runtime");
        write(&i.data().join("save.dat"), "save");
        assert_eq!(names(&i.game_files().unwrap().1), ["save.dat"]);
    }

    #[test]
    fn a_staged_restore_replaces_data_whole() {
        let t = tempfile::tempdir().unwrap();
        let i = Layout::new(t.path()).instance("r");
        i.prepare().unwrap();
        write(&i.data().join("old.txt"), "old");
        write(&i.staging().join("new.txt"), "new");
        i.swap_in_staging().unwrap();
        assert_eq!(read(&i.data().join("new.txt")), "new");
        assert!(!i.data().join("old.txt").exists());
        assert!(!i.staging().exists());
    }
}
