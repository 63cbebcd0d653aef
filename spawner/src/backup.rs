//! Backups of an instance's data directory (`instances/<id>/data/`, see [`crate::layout`]):
//! gzip'd tar archives under `<data_dir>/backups/<instance>/`, each with a JSON record (size,
//! SHA-256). Restores check the hash, unpack through `exile_archive` (the one audited path:
//! no absolute paths, `..`, links out, devices, foreign hard links or size bombs) and swap
//! the data in only once everything extracted cleanly.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::layout::InstanceDir;
use exile_api::v1 as pb;

/// Limits applied while restoring.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Most bytes of data an archive may expand to.
    pub max_bytes: u64,
    /// Most entries an archive may hold.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 20 << 30,
            max_entries: 1_000_000,
        }
    }
}

/// The record kept beside each archive.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct BackupRecord {
    /// Backup id.
    pub id: String,
    /// Instance id.
    pub instance_id: String,
    /// Creation time, Unix ms.
    pub created_at_unix_ms: i64,
    /// Archive size, bytes.
    pub size_bytes: u64,
    /// Archive SHA-256, hex.
    pub sha256: String,
    /// Note.
    pub note: String,
    /// Bytes archived before compression.
    pub data_bytes: u64,
}

impl BackupRecord {
    /// Wire form.
    pub fn to_pb(&self) -> pb::Backup {
        pb::Backup {
            id: self.id.clone(),
            instance_id: self.instance_id.clone(),
            created_at_unix_ms: self.created_at_unix_ms,
            size_bytes: self.size_bytes,
            sha256: self.sha256.clone(),
            note: self.note.clone(),
            data_bytes: self.data_bytes,
        }
    }
}

/// Where an instance's backups live.
pub fn dir_of(data_dir: &Path, instance_id: &str) -> PathBuf {
    crate::layout::Layout::new(data_dir).backups(instance_id)
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |e| Error::io(what, path, e)
}

fn check_backup_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "backup id {id:?} is not valid"
        )))
    }
}

/// A writer that hashes and counts what passes through.
struct Hashing<W> {
    inner: W,
    hash: Sha256,
    n: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Archives the game's files of `instance` into `backups_dir/<id>.tar.gz`. Blocking.
pub fn create(
    instance: &InstanceDir,
    backups_dir: &Path,
    instance_id: &str,
    id: &str,
    note: &str,
) -> Result<BackupRecord> {
    check_backup_id(id)?;
    std::fs::create_dir_all(backups_dir).map_err(io_err("could not create", backups_dir))?;
    let archive = backups_dir.join(format!("{id}.tar.gz"));
    let tmp = backups_dir.join(format!("{id}.tar.gz.tmp"));
    let written = write(instance, backups_dir, &archive, &tmp, instance_id, id, note);
    if written.is_err() {
        // Nothing of a failed backup stays: on a full disk a partial archive would keep the
        // disk full, and an archive without its record is listed nowhere.
        let _ = std::fs::remove_file(&tmp);
        let _ = std::fs::remove_file(&archive);
    }
    written
}

/// Writes the archive to `tmp`, renames it to `archive` and writes its record.
fn write(
    instance: &InstanceDir,
    backups_dir: &Path,
    archive: &Path,
    tmp: &Path,
    instance_id: &str,
    id: &str,
    note: &str,
) -> Result<BackupRecord> {
    let file = File::create(tmp).map_err(io_err("could not create", tmp))?;
    let hashing = Hashing {
        inner: file,
        hash: Sha256::new(),
        n: 0,
    };
    let mut tar = tar::Builder::new(GzEncoder::new(hashing, Compression::default()));
    // Links are archived as links, never followed out of the directory.
    tar.follow_symlinks(false);
    let mut data_bytes = 0;
    let (base, files) = instance
        .game_files()
        .map_err(io_err("could not read", instance.runtime()))?;
    for path in files {
        let name = path.strip_prefix(&base).unwrap_or(&path).to_path_buf();
        data_bytes += crate::metrics::dir_size(&path);
        let meta = std::fs::symlink_metadata(&path).map_err(io_err("could not read", &path))?;
        if meta.is_dir() {
            tar.append_dir_all(&name, &path)
                .map_err(io_err("could not archive", &path))?;
        } else {
            tar.append_path_with_name(&path, &name)
                .map_err(io_err("could not archive", &path))?;
        }
    }
    let gz = tar.into_inner().map_err(io_err("could not write", tmp))?;
    let mut hashing = gz.finish().map_err(io_err("could not write", tmp))?;
    hashing.flush().map_err(io_err("could not write", tmp))?;
    hashing
        .inner
        .sync_all()
        .map_err(io_err("could not sync", tmp))?;
    let rec = BackupRecord {
        id: id.to_owned(),
        instance_id: instance_id.to_owned(),
        created_at_unix_ms: exile_api::now_unix_ms(),
        size_bytes: hashing.n,
        sha256: hex::encode(hashing.hash.finalize()),
        note: note.to_owned(),
        data_bytes,
    };
    std::fs::rename(tmp, archive).map_err(io_err("could not rename", tmp))?;
    let json = serde_json::to_vec_pretty(&rec)
        .map_err(|e| Error::Internal(format!("could not encode the backup record: {e}")))?;
    crate::state::write_atomic(&backups_dir.join(format!("{id}.json")), &json, 0o600)?;
    Ok(rec)
}

/// The backups of one instance, newest first.
pub fn list(backups_dir: &Path) -> Result<Vec<BackupRecord>> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(backups_dir) else {
        return Ok(out);
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "json")
            && let Ok(bytes) = std::fs::read(&p)
            && let Ok(rec) = serde_json::from_slice::<BackupRecord>(&bytes)
        {
            out.push(rec);
        }
    }
    out.sort_by(|a, b| {
        b.created_at_unix_ms
            .cmp(&a.created_at_unix_ms)
            .then(b.id.cmp(&a.id))
    });
    Ok(out)
}

fn find(backups_dir: &Path, id: &str) -> Result<BackupRecord> {
    check_backup_id(id)?;
    list(backups_dir)?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| Error::NotFound(format!("no backup {id}")))
}

/// Deletes a backup.
pub fn delete(backups_dir: &Path, id: &str) -> Result<()> {
    find(backups_dir, id)?;
    for ext in ["tar.gz", "json"] {
        let p = backups_dir.join(format!("{id}.{ext}"));
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("could not delete", &p, e)),
        }
    }
    Ok(())
}

/// Deletes the backups of `backups_dir` beyond the newest `keep` (0 keeps them all), and
/// returns the ids deleted. Blocking; the instance's actor calls it after each new backup.
pub fn prune(backups_dir: &Path, keep: usize) -> Result<Vec<String>> {
    if keep == 0 {
        return Ok(Vec::new());
    }
    let mut deleted = Vec::new();
    for old in list(backups_dir)?.into_iter().skip(keep) {
        delete(backups_dir, &old.id)?;
        deleted.push(old.id);
    }
    Ok(deleted)
}

/// Unpacks a backup archive into `staging` (which must not exist) through the audited
/// archive rules: no path or link out of the directory, no devices, no hard links but to
/// files of the same archive, no entry replacing another, entries and bytes capped.
pub fn unpack(archive: &Path, staging: &Path, limits: Limits) -> Result<exile_archive::Summary> {
    let options = exile_archive::Options {
        max_entries: limits.max_entries,
        max_unpacked_bytes: limits.max_bytes,
        // Backups are ours and checked against their recorded hash; game data (preallocated
        // or zero-filled files) may compress far better than a build, and `max_bytes`
        // already bounds the disk a restore can fill.
        max_ratio: u64::MAX,
        strip_single_top_dir: false,
        ..exile_archive::Options::default()
    };
    exile_archive::extract(archive, staging, &options).map_err(|e| match e {
        exile_archive::Error::Io { what, path, source } => Error::Io {
            action: what,
            path: PathBuf::from(path),
            source,
        },
        refused => Error::FailedPrecondition(format!("refusing the archive: {refused}")),
    })
}

/// Restores backup `id` into `instance`, whose game is down: checks the hash, extracts beside
/// its data, then swaps the data whole. On any refusal the instance's data is untouched.
pub fn restore(
    instance: &InstanceDir,
    backups_dir: &Path,
    id: &str,
    limits: Limits,
) -> Result<BackupRecord> {
    let rec = find(backups_dir, id)?;
    let archive = backups_dir.join(format!("{id}.tar.gz"));
    let mut f = File::open(&archive).map_err(io_err("could not open", &archive))?;
    let mut hash = Sha256::new();
    io::copy(&mut f, &mut hash).map_err(io_err("could not read", &archive))?;
    if hex::encode(hash.finalize()) != rec.sha256 {
        return Err(Error::FailedPrecondition(format!(
            "backup {id} is corrupt: its SHA-256 does not match the record"
        )));
    }
    // The game is down: an older layout is brought over first, so the data swaps whole.
    instance
        .prepare()
        .map_err(io_err("could not prepare", instance.runtime()))?;
    let staging = instance.staging();
    let _ = std::fs::remove_dir_all(&staging);
    if let Err(e) = unpack(&archive, &staging, limits) {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    if let Err(e) = instance.swap_in_staging() {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(Error::io(
            "could not swap in the restored data at",
            instance.data(),
            e,
        ));
    }
    Ok(rec)
}

/// Backs up an instance through the manager: optional console line first when it runs.
pub async fn create_for(
    manager: &crate::manager::Manager,
    cmd: pb::BackupCommand,
) -> Result<BackupRecord> {
    let rec = manager.get(&cmd.instance_id).await?;
    if cmd.note.len() > 256 || cmd.pre_command.len() > 1024 {
        return Err(Error::InvalidArgument(
            "note or pre_command: too long".into(),
        ));
    }
    if !cmd.pre_command.is_empty() && rec.state.has_process() {
        manager.console(&cmd.instance_id, &cmd.pre_command).await?;
        let wait = if cmd.pre_command_wait_seconds == 0 {
            2
        } else {
            cmd.pre_command_wait_seconds.min(300)
        };
        tokio::time::sleep(std::time::Duration::from_secs(u64::from(wait))).await;
    }
    let id = format!("b{}", exile_api::now_unix_ms());
    manager.backup(&cmd.instance_id, id, cmd.note).await
}

/// Lists an instance's backups (the instance may be gone: its backups stay until deleted).
pub async fn list_for(
    manager: &crate::manager::Manager,
    instance_id: &str,
) -> Result<Vec<BackupRecord>> {
    crate::manager::validate_instance_id(instance_id)?;
    list(&dir_of(manager.data_dir(), instance_id))
}

/// Restores a backup into a stopped or crashed instance, through its actor.
pub async fn restore_for(
    manager: &crate::manager::Manager,
    r: &pb::BackupRef,
) -> Result<BackupRecord> {
    crate::manager::validate_instance_id(&r.instance_id)?;
    manager.restore(&r.instance_id, r.backup_id.clone()).await
}

/// Deletes a backup.
pub async fn delete_for(manager: &crate::manager::Manager, r: &pb::BackupRef) -> Result<()> {
    crate::manager::validate_instance_id(&r.instance_id)?;
    delete(&dir_of(manager.data_dir(), &r.instance_id), &r.backup_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, s: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, s).unwrap();
    }

    #[test]
    fn prune_keeps_the_newest_and_zero_keeps_all() {
        let t = tempfile::tempdir().unwrap();
        let layout = crate::layout::Layout::new(t.path());
        let i1 = layout.instance("i1");
        i1.prepare().unwrap();
        write(&i1.data().join("a"), "a");
        let bdir = layout.backups("i1");
        for n in 1..=4 {
            let mut rec = create(&i1, &bdir, "i1", &format!("b{n}"), "").unwrap();
            // Distinct creation times, b4 the newest.
            rec.created_at_unix_ms = n;
            std::fs::write(
                bdir.join(format!("b{n}.json")),
                serde_json::to_vec(&rec).unwrap(),
            )
            .unwrap();
        }
        assert!(prune(&bdir, 0).unwrap().is_empty());
        assert_eq!(list(&bdir).unwrap().len(), 4);
        assert_eq!(prune(&bdir, 2).unwrap(), ["b2", "b1"]);
        let left: Vec<String> = list(&bdir).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(left, ["b4", "b3"]);
        assert!(!bdir.join("b1.tar.gz").exists(), "the archive goes too");
    }

    #[test]
    fn backup_modify_restore_gives_the_original_bytes() {
        let t = tempfile::tempdir().unwrap();
        let layout = crate::layout::Layout::new(t.path());
        let i1 = layout.instance("i1");
        i1.prepare().unwrap();
        let inst = i1.data();
        let bdir = layout.backups("i1");
        write(&inst.join("world/level.dat"), "level one");
        write(&inst.join("server.cfg"), "max=16");
        std::os::unix::fs::symlink("world/level.dat", inst.join("current")).unwrap();
        write(&i1.logs().join("output.log"), "runtime, not data");
        let rec = create(&i1, &bdir, "i1", "b1", "before update").unwrap();
        assert_eq!(rec.sha256.len(), 64);
        assert!(rec.size_bytes > 0);
        write(&inst.join("world/level.dat"), "CHANGED");
        std::fs::remove_file(inst.join("server.cfg")).unwrap();
        write(&inst.join("new.txt"), "added after");
        restore(&i1, &bdir, "b1", Limits::default()).unwrap();
        assert_eq!(
            std::fs::read_to_string(inst.join("world/level.dat")).unwrap(),
            "level one"
        );
        assert_eq!(
            std::fs::read_to_string(inst.join("server.cfg")).unwrap(),
            "max=16"
        );
        assert!(!inst.join("new.txt").exists());
        assert_eq!(
            std::fs::read_link(inst.join("current")).unwrap(),
            Path::new("world/level.dat")
        );
        assert_eq!(
            std::fs::read_to_string(i1.logs().join("output.log")).unwrap(),
            "runtime, not data"
        );
        // The runtime files were not archived.
        let names = archive_names(&bdir.join("b1.tar.gz"));
        assert!(names.iter().all(|n| !n.starts_with("logs")), "{names:?}");
        assert_eq!(list(&bdir).unwrap(), vec![rec]);
        delete(&bdir, "b1").unwrap();
        assert!(list(&bdir).unwrap().is_empty());
        assert!(matches!(delete(&bdir, "b1"), Err(Error::NotFound(_))));
    }

    fn archive_names(archive: &Path) -> Vec<String> {
        let gz = flate2::read::GzDecoder::new(File::open(archive).unwrap());
        tar::Archive::new(gz)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    /// An instance an older spawner laid out (its game's files beside the runtime files) is
    /// backed up as it is while its game runs, and brought to the current layout by a restore.
    #[test]
    fn an_instance_in_the_older_layout_is_backed_up_and_restored() {
        let t = tempfile::tempdir().unwrap();
        let layout = crate::layout::Layout::new(t.path());
        let old = layout.instance("old");
        let dir = old.runtime();
        write(&dir.join("save/world.dat"), "world");
        write(&dir.join("logs/output.log"), "runtime");
        write(&dir.join("exit.json"), "{}");
        let bdir = layout.backups("old");
        create(&old, &bdir, "old", "b1", "").unwrap();
        let mut names = archive_names(&bdir.join("b1.tar.gz"));
        names.sort();
        assert_eq!(names, ["save/", "save/world.dat"]);
        write(&dir.join("save/world.dat"), "CHANGED");
        restore(&old, &bdir, "b1", Limits::default()).unwrap();
        assert!(!old.is_legacy());
        assert_eq!(
            std::fs::read_to_string(old.data().join("save/world.dat")).unwrap(),
            "world"
        );
        assert!(!dir.join("save").exists());
        assert_eq!(
            std::fs::read_to_string(old.logs().join("output.log")).unwrap(),
            "runtime"
        );
    }

    /// One raw archive entry: name, type, link target, data.
    type RawEntry<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);

    /// Writes a raw tar.gz with the given entries and its record.
    fn hostile(bdir: &Path, id: &str, entries: &[RawEntry<'_>]) {
        std::fs::create_dir_all(bdir).unwrap();
        let archive = bdir.join(format!("{id}.tar.gz"));
        let mut b = tar::Builder::new(GzEncoder::new(
            File::create(&archive).unwrap(),
            Compression::fast(),
        ));
        for (name, kind, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            // Write the raw name so `..` and absolute paths get in, as an attacker's tool would.
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
        let sha = hex::encode(Sha256::digest(std::fs::read(&archive).unwrap()));
        let rec = BackupRecord {
            id: id.into(),
            instance_id: "i1".into(),
            created_at_unix_ms: 1,
            size_bytes: 1,
            sha256: sha,
            note: String::new(),
            data_bytes: 0,
        };
        std::fs::write(
            bdir.join(format!("{id}.json")),
            serde_json::to_vec(&rec).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn hostile_archives_are_refused_and_leave_the_data_alone() {
        let t = tempfile::tempdir().unwrap();
        let layout = crate::layout::Layout::new(t.path());
        let i1 = layout.instance("i1");
        i1.prepare().unwrap();
        let inst = i1.data();
        let bdir = layout.backups("i1");
        write(&inst.join("keep.txt"), "original");
        use tar::EntryType as E;
        let cases: Vec<(&str, Vec<RawEntry<'_>>)> = vec![
            ("dotdot", vec![("../escape.txt", E::Regular, "", b"x")]),
            (
                "absolute",
                vec![("/tmp/exile-abs.txt", E::Regular, "", b"x")],
            ),
            ("linkout", vec![("evil", E::Symlink, "/etc", b"")]),
            ("linkup", vec![("a/evil", E::Symlink, "../../outside", b"")]),
            (
                "through-link",
                vec![("d", E::Symlink, ".", b""), ("d", E::Regular, "", b"x")],
            ),
            ("hardlink", vec![("h", E::Link, "/etc/passwd", b"")]),
            ("device", vec![("dev", E::Char, "", b"")]),
        ];
        for (id, entries) in &cases {
            hostile(&bdir, id, entries);
            let e = restore(&i1, &bdir, id, Limits::default()).unwrap_err();
            assert!(matches!(e, Error::FailedPrecondition(_)), "{id}: {e}");
            assert_eq!(
                std::fs::read_to_string(inst.join("keep.txt")).unwrap(),
                "original",
                "{id}"
            );
            assert!(!t.path().join("instances/escape.txt").exists());
            assert!(!i1.staging().exists(), "{id}: staging left behind");
        }
        // A chain of links, each inside on its own, that would climb out together:
        // a -> ., a/b -> .., then a file written through a/b/c.
        hostile(
            &bdir,
            "chain",
            &[
                ("a", E::Symlink, ".", b""),
                ("a/b", E::Symlink, "..", b""),
                ("a/b/c/escape.txt", E::Regular, "", b"x"),
            ],
        );
        let e = restore(&i1, &bdir, "chain", Limits::default()).unwrap_err();
        assert!(matches!(e, Error::FailedPrecondition(_)), "{e}");
        assert!(e.to_string().contains("beneath \"a\""), "{e}");
        assert_eq!(
            std::fs::read_to_string(inst.join("keep.txt")).unwrap(),
            "original"
        );
        assert!(!i1.staging().exists());
        let mut everything = Vec::new();
        let mut stack = vec![t.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if std::fs::symlink_metadata(&p).unwrap().is_dir() {
                    stack.push(p.clone());
                }
                everything.push(p.strip_prefix(t.path()).unwrap().to_path_buf());
            }
        }
        assert!(
            everything.iter().all(|p| !p.ends_with("escape.txt")),
            "{everything:?}"
        );
        // A size bomb is stopped by the limit.
        hostile(&bdir, "big", &[("big.bin", E::Regular, "", &[0u8; 4096])]);
        let e = restore(
            &i1,
            &bdir,
            "big",
            Limits {
                max_bytes: 1024,
                max_entries: 10,
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("unpacks to more than 1024 bytes"),
            "{e}"
        );
        // A tampered archive fails its hash check.
        create(&i1, &bdir, "i1", "ok1", "").unwrap();
        let arch = bdir.join("ok1.tar.gz");
        let mut bytes = std::fs::read(&arch).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&arch, bytes).unwrap();
        assert!(
            restore(&i1, &bdir, "ok1", Limits::default())
                .unwrap_err()
                .to_string()
                .contains("corrupt")
        );
        assert!(matches!(
            restore(&i1, &bdir, "../x", Limits::default()),
            Err(Error::InvalidArgument(_))
        ));
    }
}
