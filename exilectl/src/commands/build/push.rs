//! `build push`: hashes the archive, then streams it to the master as metadata and parts of
//! at most `MAX_UPLOAD_PART` bytes, read from the file as the transport asks for them, so
//! memory stays bounded whatever the archive's size.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Seek};
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use exile_api::build::{MAX_MANIFEST_BYTES, MAX_UPLOAD_PART, Manifest};
use exile_api::v1::{UploadBuildMetadata, UploadBuildRequest, upload_build_request::Kind};
use futures::{Stream, StreamExt};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

use super::super::Ctx;
use crate::cli::build::PushArgs;
use crate::output::{self, emit, fields};
use crate::view::{BuildView, PushView};

/// SHA-256 (lowercase hex) and length of some bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digested {
    pub sha256: String,
    pub size: u64,
}

/// Reads an archive as upload parts: each as full as the reader allows and never larger than
/// `MAX_UPLOAD_PART`, hashing what it hands out.
pub struct Parts<R> {
    reader: R,
    hasher: Sha256,
    size: u64,
    done: bool,
}

impl<R: Read> Parts<R> {
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            hasher: Sha256::new(),
            size: 0,
            done: false,
        }
    }

    /// The next part; `None` once the reader is exhausted.
    pub fn next_part(&mut self) -> io::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        let mut buf = vec![0u8; MAX_UPLOAD_PART];
        let mut filled = 0;
        // A reader may return less than asked (pipes, network file systems): fill the part so
        // the master gets few, full messages.
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => {
                    self.done = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            return Ok(None);
        }
        buf.truncate(filled);
        self.hasher.update(&buf);
        self.size += filled as u64;
        Ok(Some(buf))
    }

    /// What was handed out so far.
    pub fn digest(&self) -> Digested {
        Digested {
            sha256: hex::encode(self.hasher.clone().finalize()),
            size: self.size,
        }
    }
}

/// Hashes everything `reader` yields, telling `progress` each part's length.
pub fn digest(reader: impl Read, mut progress: impl FnMut(u64)) -> io::Result<Digested> {
    let mut parts = Parts::new(reader);
    while let Some(part) = parts.next_part()? {
        progress(part.len() as u64);
    }
    Ok(parts.digest())
}

pub async fn run(ctx: &Ctx, args: PushArgs) -> Result<()> {
    let path = args.file.clone();
    let shown = path.display().to_string();
    let file = File::open(&path).with_context(|| format!("cannot open {shown}"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {shown}"))?;
    if !meta.is_file() {
        bail!("{shown} is not a file: push an archive (.zip, .tar.gz, .tar.zst or .tar)");
    }
    if meta.len() == 0 {
        bail!("{shown} is empty: push an archive (.zip, .tar.gz, .tar.zst or .tar)");
    }
    let manifest = match &args.manifest {
        Some(m) => read_manifest(m)?,
        None => String::new(),
    };
    let reference = format!("{}@{}", args.name, args.version);

    let bar = progress_bar(!args.no_progress && io::stderr().is_terminal(), meta.len());
    bar.set_message("hashing");
    let (file, hashed) = {
        let bar = bar.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = file;
            let hashed = digest(&mut file, |n| bar.inc(n));
            (file, hashed)
        })
        .await
        .map_err(|e| anyhow!("hashing {shown} stopped: {e}"))?
    };
    let hashed = hashed.with_context(|| format!("cannot read {shown}"))?;
    let mut file = file;
    file.rewind()
        .with_context(|| format!("cannot read {shown}"))?;

    bar.reset();
    bar.set_length(hashed.size);
    bar.set_message("uploading");
    let (done_tx, done_rx) = oneshot::channel();
    let metadata = UploadBuildMetadata {
        name: args.name.clone(),
        version: args.version.clone(),
        sha256: hashed.sha256.clone(),
        size: hashed.size,
        file_name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        manifest,
    };
    let requests = upload_requests(metadata, Parts::new(file), bar.clone(), done_tx);
    let answer = ctx.session.builds().upload_build(requests).await;
    bar.finish_and_clear();
    let r = match answer {
        Ok(r) => r.into_inner(),
        Err(status) => {
            // A local failure explains a refused upload better than the master can. Only a
            // result already there counts: the stream may still be held by the transport.
            let mut done_rx = done_rx;
            match done_rx.try_recv() {
                Ok(Err(e)) => bail!("cannot read {shown} while uploading it: {e}"),
                Ok(Ok(sent)) if sent != hashed => bail!(
                    "{shown} changed while it was uploaded (it no longer matches the SHA-256 \
                     computed before): push it again once it is complete"
                ),
                _ => {}
            }
            return Err(ctx
                .session
                .error(&status)
                .context(format!("cannot push {reference}")));
        }
    };
    let build = r
        .build
        .ok_or_else(|| anyhow!("the master answered without the stored build"))?;
    let view = PushView {
        build: BuildView::from(build),
        new_chunks: r.new_chunks,
        new_bytes: r.new_bytes,
    };
    emit(ctx.format, &view, pushed)
}

/// The push result for people.
fn pushed(v: &PushView) -> String {
    let b = &v.build;
    format!(
        "Pushed {}@{}.\n{}",
        b.name,
        b.version,
        fields(&[
            ("ID", b.id.clone()),
            ("SHA-256", b.sha256.clone()),
            ("Size", output::bytes(b.size)),
            (
                "Chunks",
                format!(
                    "{} ({} new, {} new)",
                    b.chunk_count,
                    v.new_chunks,
                    output::bytes(v.new_bytes)
                ),
            ),
        ])
    )
}

/// The text of a manifest given beside the archive, checked here so a mistake is named with
/// its line before anything is uploaded.
fn read_manifest(path: &Path) -> Result<String> {
    let shown = path.display();
    let mut text = String::new();
    File::open(path)
        .with_context(|| format!("cannot open {shown}"))?
        .take(MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {shown} (it must be UTF-8 text)"))?;
    Manifest::parse(&text).map_err(|e| anyhow!("{shown}: {e}"))?;
    Ok(text)
}

/// The upload's messages: the metadata, then the archive's parts, each read (on the blocking
/// pool) only when the transport asks for the next one. `done` gets what was read, or why
/// reading stopped; it is dropped unsent when the master ends the upload first.
fn upload_requests(
    metadata: UploadBuildMetadata,
    parts: Parts<File>,
    bar: ProgressBar,
    done: oneshot::Sender<io::Result<Digested>>,
) -> impl Stream<Item = UploadBuildRequest> + Send + 'static {
    let first = UploadBuildRequest {
        kind: Some(Kind::Metadata(metadata)),
    };
    let rest = futures::stream::unfold(Some((parts, done)), move |state| {
        let bar = bar.clone();
        async move {
            let (mut parts, done) = state?;
            let read = tokio::task::spawn_blocking(move || {
                let next = parts.next_part();
                (parts, next)
            })
            .await;
            match read {
                Ok((parts, Ok(Some(data)))) => {
                    bar.inc(data.len() as u64);
                    let msg = UploadBuildRequest {
                        kind: Some(Kind::Data(data)),
                    };
                    Some((msg, Some((parts, done))))
                }
                Ok((parts, Ok(None))) => {
                    let _ = done.send(Ok(parts.digest()));
                    None
                }
                Ok((_, Err(e))) => {
                    let _ = done.send(Err(e));
                    None
                }
                Err(e) => {
                    let _ = done.send(Err(io::Error::other(e.to_string())));
                    None
                }
            }
        }
    });
    futures::stream::once(async { first }).chain(rest)
}

/// A byte progress bar on standard error, or a hidden one.
fn progress_bar(visible: bool, len: u64) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:9} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes a call, like a pipe.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn parts_are_full_bounded_and_add_up_to_the_file() {
        for len in [
            1,
            MAX_UPLOAD_PART - 1,
            MAX_UPLOAD_PART,
            MAX_UPLOAD_PART + 1,
            3 * MAX_UPLOAD_PART + 12_345,
        ] {
            let bytes = data(len);
            let mut parts = Parts::new(Trickle {
                data: &bytes,
                step: 100_000,
            });
            let mut joined = Vec::new();
            let mut sizes = Vec::new();
            while let Some(p) = parts.next_part().unwrap() {
                assert!(p.len() <= MAX_UPLOAD_PART, "part of {} bytes", p.len());
                sizes.push(p.len());
                joined.extend_from_slice(&p);
            }
            assert_eq!(joined, bytes, "len {len}");
            // Every part but the last is full, even from a reader that trickles.
            let (last, full) = sizes.split_last().unwrap();
            assert!(full.iter().all(|&s| s == MAX_UPLOAD_PART), "{sizes:?}");
            assert!(*last > 0);
            assert_eq!(parts.next_part().unwrap(), None);
            let expected = hex::encode(Sha256::digest(&bytes));
            assert_eq!(
                parts.digest(),
                Digested {
                    sha256: expected,
                    size: len as u64
                }
            );
        }
    }

    #[test]
    fn digest_matches_a_known_hash_and_reports_progress() {
        let mut seen = 0;
        let d = digest(&b"abc"[..], |n| seen += n).unwrap();
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!((d.size, seen), (3, 3));
        let empty = digest(&b""[..], |_| {}).unwrap();
        assert_eq!(empty.size, 0);
        assert_eq!(
            empty.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn a_read_error_is_returned_not_hidden() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let e = Parts::new(Broken).next_part().unwrap_err();
        assert_eq!(e.to_string(), "disk on fire");
    }

    #[tokio::test]
    async fn the_stream_sends_metadata_then_the_file_in_bounded_parts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("game.zip");
        let bytes = data(2 * MAX_UPLOAD_PART + 7);
        std::fs::write(&path, &bytes).unwrap();
        let (tx, rx) = oneshot::channel();
        let msgs: Vec<UploadBuildRequest> = upload_requests(
            UploadBuildMetadata {
                name: "g".into(),
                ..Default::default()
            },
            Parts::new(File::open(&path).unwrap()),
            ProgressBar::hidden(),
            tx,
        )
        .collect()
        .await;
        assert!(matches!(&msgs[0].kind, Some(Kind::Metadata(m)) if m.name == "g"));
        let mut joined = Vec::new();
        for m in &msgs[1..] {
            let Some(Kind::Data(d)) = &m.kind else {
                panic!("metadata after the first message");
            };
            assert!(d.len() <= MAX_UPLOAD_PART);
            joined.extend_from_slice(d);
        }
        assert_eq!(msgs.len(), 4);
        assert_eq!(joined, bytes);
        let sent = rx.await.unwrap().unwrap();
        assert_eq!(sent.size, bytes.len() as u64);
        assert_eq!(sent.sha256, hex::encode(Sha256::digest(&bytes)));
    }

    #[test]
    fn a_bad_manifest_is_named_before_uploading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exile-build.toml");
        std::fs::write(&path, "[run]\ncommand = \"./s {prot}\"\n").unwrap();
        let e = read_manifest(&path).unwrap_err().to_string();
        assert!(
            e.contains("exile-build.toml") && e.contains("{prot}"),
            "{e}"
        );
        std::fs::write(&path, "[run]\ncommand = \"./s --port {port}\"\n").unwrap();
        assert!(read_manifest(&path).unwrap().contains("{port}"));
        std::fs::write(&path, "#".repeat(MAX_MANIFEST_BYTES + 1)).unwrap();
        assert!(read_manifest(&path).is_err());
    }
}
