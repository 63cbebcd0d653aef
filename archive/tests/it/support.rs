//! Archive writers that put any name in (as an attacker's tool would) and a sandbox that
//! proves nothing lands outside the target.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use exile_archive::{Options, Result, Summary};

/// One entry to write.
#[derive(Debug, Clone)]
pub enum Kind {
    File(Vec<u8>, u32),
    Dir,
    Symlink(String),
    HardLink(String),
    Char,
    Block,
    Fifo,
}

#[derive(Debug, Clone)]
pub struct E {
    pub name: String,
    pub kind: Kind,
}

pub fn file(name: &str, data: &str) -> E {
    E {
        name: name.into(),
        kind: Kind::File(data.as_bytes().to_vec(), 0o644),
    }
}

pub fn exe(name: &str, data: &str, mode: u32) -> E {
    E {
        name: name.into(),
        kind: Kind::File(data.as_bytes().to_vec(), mode),
    }
}

pub fn dir(name: &str) -> E {
    E {
        name: name.into(),
        kind: Kind::Dir,
    }
}

pub fn sym(name: &str, target: &str) -> E {
    E {
        name: name.into(),
        kind: Kind::Symlink(target.into()),
    }
}

pub fn hard(name: &str, target: &str) -> E {
    E {
        name: name.into(),
        kind: Kind::HardLink(target.into()),
    }
}

pub fn special(name: &str, kind: Kind) -> E {
    E {
        name: name.into(),
        kind,
    }
}

/// A tar header with the name and link copied byte for byte (no checks by the writer).
pub fn raw_header(
    name: &[u8],
    kind: tar::EntryType,
    link: &[u8],
    size: u64,
    mode: u32,
) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

/// Appends one entry to a tar builder.
pub fn append(b: &mut tar::Builder<Vec<u8>>, e: &E) {
    use tar::EntryType as T;
    let (kind, link, data, mode): (T, &[u8], &[u8], u32) = match &e.kind {
        Kind::File(data, mode) => (T::Regular, b"", data, *mode),
        Kind::Dir => (T::Directory, b"", b"", 0o755),
        Kind::Symlink(t) => (T::Symlink, t.as_bytes(), b"", 0o777),
        Kind::HardLink(t) => (T::Link, t.as_bytes(), b"", 0o644),
        Kind::Char => (T::Char, b"", b"", 0o644),
        Kind::Block => (T::Block, b"", b"", 0o644),
        Kind::Fifo => (T::Fifo, b"", b"", 0o644),
    };
    let h = raw_header(e.name.as_bytes(), kind, link, data.len() as u64, mode);
    b.append(&h, data).unwrap();
}

pub fn tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        append(&mut b, e);
    }
    b.into_inner().unwrap()
}

pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

pub fn zst(bytes: &[u8]) -> Vec<u8> {
    ruzstd::encoding::compress_to_vec(bytes, ruzstd::encoding::CompressionLevel::Fastest)
}

pub fn zip(entries: &[E]) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let base = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for e in entries {
        match &e.kind {
            Kind::File(data, mode) => {
                w.start_file(e.name.as_str(), base.unix_permissions(*mode))
                    .unwrap();
                w.write_all(data).unwrap();
            }
            Kind::Dir => w.add_directory(e.name.as_str(), base).unwrap(),
            Kind::Symlink(t) => w.add_symlink(e.name.as_str(), t.as_str(), base).unwrap(),
            other => panic!("zip cannot hold {other:?}"),
        }
    }
    w.finish().unwrap().into_inner()
}

/// The archive in each format that can hold these entries: (extension, bytes).
pub fn every_format(entries: &[E]) -> Vec<(&'static str, Vec<u8>)> {
    let plain = tar(entries);
    let mut out = vec![("tar", plain.clone()), ("tar.gz", gz(&plain))];
    let zip_can = entries
        .iter()
        .all(|e| matches!(e.kind, Kind::File(..) | Kind::Dir | Kind::Symlink(_)));
    if zip_can {
        out.push(("zip", zip(entries)));
    }
    out
}

/// A temp dir with the archive in one place and the target three levels down in another, so
/// any escape (`..`, a link out) would land beside the target, where `outside` sees it.
pub struct Sandbox {
    _tmp: tempfile::TempDir,
    pub archive: PathBuf,
    pub jail: PathBuf,
    pub target: PathBuf,
}

impl Sandbox {
    pub fn new(bytes: &[u8], ext: &str) -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let archive = tmp.path().join("in").join(format!("archive.{ext}"));
        std::fs::create_dir_all(archive.parent().unwrap()).unwrap();
        std::fs::write(&archive, bytes).unwrap();
        let jail = tmp.path().join("jail");
        let target = jail.join("a/b/target");
        std::fs::create_dir_all(&jail).unwrap();
        Sandbox {
            _tmp: tmp,
            archive,
            jail,
            target,
        }
    }

    pub fn inspect(&self, options: &Options) -> Result<Summary> {
        exile_archive::inspect(&self.archive, options)
    }

    pub fn extract(&self, options: &Options) -> Result<Summary> {
        exile_archive::extract(&self.archive, &self.target, options)
    }

    /// Everything in the jail other than the target, its two parents and what is inside it.
    pub fn outside(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        walk(&self.jail, &mut |p| {
            let allowed = p == self.jail.join("a")
                || p == self.jail.join("a/b")
                || p.starts_with(&self.target);
            if !allowed {
                found.push(p.to_path_buf());
            }
        });
        found
    }
}

/// Visits every path under `dir`, never following links.
pub fn walk(dir: &Path, visit: &mut dyn FnMut(&Path)) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        visit(&p);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            walk(&p, visit);
        }
    }
}

/// Small caps so the cap tests stay fast.
pub fn small() -> Options {
    Options {
        max_entries: 1000,
        max_unpacked_bytes: 1 << 20,
        max_ratio: 100,
        ratio_floor_bytes: 1 << 20,
        max_path_bytes: 4096,
        strip_single_top_dir: false,
    }
}

/// Asserts that inspect and extract both refuse the archive with the same error, whose text
/// holds `expect`, and that nothing was written outside the target.
pub fn assert_refused(ext: &str, bytes: &[u8], options: &Options, expect: &str) {
    let s = Sandbox::new(bytes, ext);
    let inspected = s
        .inspect(options)
        .expect_err("inspect accepted it")
        .to_string();
    assert!(
        inspected.contains(expect),
        "{ext}: inspect said {inspected:?}, wanted {expect:?}"
    );
    let extracted = s
        .extract(options)
        .expect_err("extract accepted it")
        .to_string();
    assert_eq!(inspected, extracted, "{ext}: inspect and extract disagree");
    assert_eq!(
        s.outside(),
        Vec::<PathBuf>::new(),
        "{ext}: written outside the target"
    );
}

/// The same, for every format that can hold the entries.
pub fn refused_everywhere(entries: &[E], options: &Options, expect: &str) {
    for (ext, bytes) in every_format(entries) {
        assert_refused(ext, &bytes, options, expect);
    }
}
