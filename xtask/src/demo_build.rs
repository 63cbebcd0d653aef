//! The demo game shipped as an uploaded build: packed with its `exile-build.toml` into a
//! reproducible tar.gz, then pushed and activated through `exilectl`, as an operator would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// Name the demo game is pushed under.
pub const NAME: &str = "demo";

/// Manifest packed beside the binary: the spawner starts it from the build's directory.
const MANIFEST: &str = "\
# The demo game as an uploaded build (written by `cargo xtask run`).
[run]
command = \"./exile-demo-game --port {port}\"
";

/// Modification time of every entry: a fixed one, so an unchanged binary packs to the same
/// bytes (and the same SHA-256) on every run.
const MTIME: u64 = 1_700_000_000;

/// A packed demo build.
pub struct DemoBuild {
    /// First 12 hex digits of the binary's SHA-256.
    pub version: String,
    /// The tar.gz.
    pub archive: PathBuf,
    /// SHA-256 of the tar.gz, lowercase hex.
    pub sha256: String,
}

impl DemoBuild {
    /// `demo@<version>`.
    pub fn reference(&self) -> String {
        format!("{NAME}@{}", self.version)
    }
}

/// Packs `game` and its manifest into `<dir>/demo-<version>.tar.gz`, the version being the
/// start of the binary's SHA-256: an unchanged binary is an unchanged build.
pub fn pack(game: &Path, dir: &Path) -> Result<DemoBuild> {
    let binary = std::fs::read(game).with_context(|| format!("read {}", game.display()))?;
    let version = hex::encode(Sha256::digest(&binary))[..12].to_owned();
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let archive = dir.join(format!("{NAME}-{version}.tar.gz"));
    let tmp = dir.join(format!(".{NAME}-{version}.tar.gz.tmp"));
    let file = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        file,
        flate2::Compression::default(),
    ));
    for (name, mode, bytes) in [
        ("exile-demo-game", 0o755, binary.as_slice()),
        ("exile-build.toml", 0o644, MANIFEST.as_bytes()),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_mtime(MTIME);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, name, bytes)
            .with_context(|| format!("pack {name}"))?;
    }
    let gz = tar.into_inner().context("finish the tar stream")?;
    let mut file = gz.finish().context("finish the gzip stream")?;
    file.flush()?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, &archive)
        .with_context(|| format!("move the archive to {}", archive.display()))?;
    let sha256 = hex::encode(Sha256::digest(
        std::fs::read(&archive).with_context(|| format!("read {}", archive.display()))?,
    ));
    Ok(DemoBuild {
        version,
        archive,
        sha256,
    })
}

/// Runs exilectl with its own config file (never the user's) and no credentials from the
/// environment.
fn exilectl(ctl: &Path, config: &Path, args: &[&str], stdin: &str) -> Result<Output> {
    let mut child = Command::new(ctl)
        .args(args)
        .env("EXILECTL_CONFIG", config)
        .env_remove("EXILE_MASTER")
        .env_remove("EXILE_TOKEN")
        .env_remove("EXILE_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run {}", ctl.display()))?;
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_owned()
}

/// Logs in as admin (retrying while the master comes up), pushes the build and activates it
/// on every spawner. A version already on the master with the same SHA-256 is the same build
/// (the master answers ALREADY_EXISTS): it is only activated again.
pub fn push_and_activate(
    ctl: &Path,
    config: &Path,
    master: &str,
    password: &str,
    build: &DemoBuild,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = exilectl(
            ctl,
            config,
            &["login", "--master", master, "--password-stdin"],
            &format!("{password}\n"),
        )?;
        if out.status.success() {
            break;
        }
        if Instant::now() > deadline {
            bail!("cannot log in to {master}: {}", stderr_of(&out));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let reference = build.reference();
    let archive = build.archive.display().to_string();
    let pushed = exilectl(
        ctl,
        config,
        &[
            "build",
            "push",
            &archive,
            "--name",
            NAME,
            "--version",
            &build.version,
            "--no-progress",
        ],
        "",
    )?;
    if !pushed.status.success() {
        let held = exilectl(ctl, config, &["build", "get", &reference, "-o", "json"], "")?;
        if !held.status.success() {
            bail!("cannot push the demo build: {}", stderr_of(&pushed));
        }
        if !String::from_utf8_lossy(&held.stdout).contains(&build.sha256) {
            bail!(
                "{reference} is on the master with another SHA-256 than {archive}; \
                 delete it (`exilectl build delete {reference}`) or the dev directory to start over"
            );
        }
    }
    let activated = exilectl(ctl, config, &["build", "activate", &reference], "")?;
    if !activated.status.success() {
        bail!(
            "cannot activate the demo build {reference}: {}",
            stderr_of(&activated)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_binary_packs_to_the_same_archive() {
        let dir = tempfile::tempdir().unwrap();
        let game = dir.path().join("exile-demo-game");
        std::fs::write(&game, b"#!/bin/sh\necho demo\n").unwrap();
        let a = pack(&game, &dir.path().join("builds")).unwrap();
        let first = std::fs::read(&a.archive).unwrap();
        let b = pack(&game, &dir.path().join("builds")).unwrap();
        assert_eq!(a.version, b.version);
        assert_eq!(a.version.len(), 12);
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(first, std::fs::read(&b.archive).unwrap());
        assert!(a.archive.ends_with(format!("demo-{}.tar.gz", a.version)));

        let mut entries = Vec::new();
        let gz = flate2::read::GzDecoder::new(std::fs::File::open(&a.archive).unwrap());
        for e in tar::Archive::new(gz).entries().unwrap() {
            let mut e = e.unwrap();
            let mut body = String::new();
            std::io::Read::read_to_string(&mut e, &mut body).unwrap();
            entries.push((
                e.path().unwrap().display().to_string(),
                e.header().mode().unwrap(),
                body,
            ));
        }
        assert_eq!(entries[0].0, "exile-demo-game");
        assert_eq!(entries[0].1, 0o755);
        assert_eq!(entries[1].0, "exile-build.toml");
        assert!(entries[1].2.contains("./exile-demo-game --port {port}"));

        std::fs::write(&game, b"#!/bin/sh\necho changed\n").unwrap();
        assert_ne!(
            pack(&game, &dir.path().join("builds")).unwrap().version,
            a.version
        );
    }
}
