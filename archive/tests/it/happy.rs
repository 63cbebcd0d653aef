//! Archives that must unpack: a zipped build folder, executables, links inside the tree.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use exile_archive::{Format, Options};

use crate::support::*;

const MANIFEST: &str = "[run]\ncommand = \"bin/server\"\n";

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn build_entries(top: &str) -> Vec<E> {
    vec![
        dir(&format!("{top}/")),
        file(&format!("{top}/exile-build.toml"), MANIFEST),
        exe(&format!("{top}/bin/server"), "#!/bin/sh\n", 0o755),
        file(&format!("{top}/data/level.dat"), "level"),
        file(&format!("{top}/lib/lib.so.1"), "ELF"),
        sym(&format!("{top}/lib/lib.so"), "lib.so.1"),
        sym(&format!("{top}/bin/data"), "../data"),
    ]
}

#[test]
fn a_zipped_build_folder_is_stripped_and_its_manifest_returned() {
    let bytes = zip(&build_entries("game"));
    let s = Sandbox::new(&bytes, "zip");
    let options = Options {
        strip_single_top_dir: true,
        ..Options::default()
    };
    let inspected = s.inspect(&options).unwrap();
    assert!(!s.target.exists(), "inspect wrote the target");
    assert_eq!(inspected.format, Some(Format::Zip));
    assert_eq!(inspected.stripped_prefix.as_deref(), Some("game"));
    assert_eq!(inspected.manifest.as_deref(), Some(MANIFEST));
    assert_eq!(
        (inspected.files, inspected.dirs, inspected.symlinks),
        (4, 3, 2)
    );
    assert_eq!(
        inspected.unpacked_bytes,
        (MANIFEST.len() + 10 + 5 + 3) as u64
    );
    let extracted = s.extract(&options).unwrap();
    assert_eq!(extracted, inspected);
    let t = &s.target;
    assert!(!t.join("game").exists());
    assert_eq!(
        std::fs::read_to_string(t.join("exile-build.toml")).unwrap(),
        MANIFEST
    );
    assert_eq!(mode(&t.join("bin/server")), 0o755);
    assert_eq!(
        std::fs::read_link(t.join("lib/lib.so")).unwrap(),
        Path::new("lib.so.1")
    );
    assert_eq!(
        std::fs::read_to_string(t.join("lib/lib.so")).unwrap(),
        "ELF"
    );
    assert_eq!(
        std::fs::read_to_string(t.join("bin/data/level.dat")).unwrap(),
        "level"
    );
    assert!(s.outside().is_empty());

    // Without stripping, the folder stays and there is no manifest at the root.
    let kept = Sandbox::new(&bytes, "zip");
    let sum = kept.extract(&Options::default()).unwrap();
    assert_eq!((sum.stripped_prefix, sum.manifest), (None, None));
    assert!(kept.target.join("game/exile-build.toml").is_file());
}

#[test]
fn stripping_copes_with_a_child_named_like_the_top_and_refuses_links_above_it() {
    let options = Options {
        strip_single_top_dir: true,
        ..Options::default()
    };
    let entries = [file("game/game/inner", "x"), file("game/other", "y")];
    let s = Sandbox::new(&tar(&entries), "tar");
    let sum = s.extract(&options).unwrap();
    assert_eq!(sum.stripped_prefix.as_deref(), Some("game"));
    assert_eq!(
        std::fs::read_to_string(s.target.join("game/inner")).unwrap(),
        "x"
    );
    assert_eq!(
        std::fs::read_to_string(s.target.join("other")).unwrap(),
        "y"
    );
    let names: Vec<_> = std::fs::read_dir(&s.target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // Inside the archive's root, but above the stripped folder: it would point out of the target.
    let entries = [file("game/a", "x"), sym("game/up", "../game/a")];
    for (ext, bytes) in every_format(&entries) {
        assert_refused(
            ext,
            &bytes,
            &options,
            "leaves the top directory that is stripped",
        );
        let s = Sandbox::new(&bytes, ext);
        s.extract(&Options::default()).unwrap();
    }

    // Two top entries: nothing stripped.
    let entries = [file("game/a", "x"), file("README", "y")];
    let s = Sandbox::new(&tar(&entries), "tar");
    assert_eq!(s.inspect(&options).unwrap().stripped_prefix, None);
}

#[test]
fn tar_gz_and_tar_zst_keep_the_exec_bit_and_drop_setuid() {
    let entries = [
        dir("./"),
        dir("./bin/"),
        exe("./bin/server", "#!/bin/sh\necho hi\n", 0o4755),
        exe("./bin/tool", "x", 0o6777),
        exe("./readonly.txt", "r", 0o444),
        file("./lib/lib.so.1", "ELF"),
        sym("./lib/lib.so", "lib.so.1"),
        hard("./lib/copy.so", "./lib/lib.so.1"),
    ];
    let plain = tar(&entries);
    for (ext, bytes, format) in [
        ("tar.gz", gz(&plain), Format::TarGz),
        ("tar.zst", zst(&plain), Format::TarZst),
        ("tar", plain.clone(), Format::Tar),
    ] {
        let s = Sandbox::new(&bytes, ext);
        assert_eq!(exile_archive::detect(&s.archive).unwrap(), format);
        let inspected = s.inspect(&Options::default()).unwrap();
        let sum = s.extract(&Options::default()).unwrap();
        assert_eq!(sum, inspected, "{ext}");
        assert_eq!((sum.files, sum.dirs, sum.symlinks), (5, 2, 1), "{ext}");
        let t = &s.target;
        assert_eq!(mode(&t.join("bin/server")), 0o755, "{ext}");
        assert_eq!(mode(&t.join("bin/tool")), 0o755, "{ext}");
        assert_eq!(mode(&t.join("readonly.txt")), 0o644, "{ext}");
        assert_eq!(
            std::fs::read_to_string(t.join("lib/lib.so")).unwrap(),
            "ELF"
        );
        assert_eq!(
            std::fs::read_to_string(t.join("lib/copy.so")).unwrap(),
            "ELF"
        );
        assert!(
            std::fs::symlink_metadata(t.join("lib/lib.so"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(s.outside().is_empty());
    }
}

#[test]
fn detection_reads_bytes_not_the_file_name() {
    let bytes = gz(&tar(&[file("a", "x")]));
    let s = Sandbox::new(&bytes, "zip");
    assert_eq!(exile_archive::detect(&s.archive).unwrap(), Format::TarGz);
    assert_eq!(s.extract(&Options::default()).unwrap().files, 1);
    // An empty zip is a zip.
    let empty = zip(&[]);
    let s = Sandbox::new(&empty, "bin");
    assert_eq!(exile_archive::detect(&s.archive).unwrap(), Format::Zip);
    assert_eq!(s.inspect(&Options::default()).unwrap().files, 0);
}

#[test]
fn zstd_files_of_several_frames_and_skippable_frames_are_read_whole() {
    let data = "z".repeat(50_000);
    let plain = tar(&[file("a.txt", &data), file("b.txt", "bee")]);
    let (head, tail) = plain.split_at(plain.len() / 3);
    // A skippable frame first (as pzstd writes), then two frames with another skippable
    // frame between them.
    let skippable = [0x50, 0x2a, 0x4d, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
    let mut bytes = skippable.to_vec();
    bytes.extend(zst(head));
    bytes.extend(skippable);
    bytes.extend(zst(tail));
    let s = Sandbox::new(&bytes, "tar.zst");
    assert_eq!(exile_archive::detect(&s.archive).unwrap(), Format::TarZst);
    let sum = s.extract(&Options::default()).unwrap();
    assert_eq!(sum.files, 2);
    assert_eq!(
        std::fs::read_to_string(s.target.join("a.txt")).unwrap(),
        data
    );
    assert_eq!(
        std::fs::read_to_string(s.target.join("b.txt")).unwrap(),
        "bee"
    );
}

#[test]
fn the_target_must_be_new_or_empty() {
    let bytes = tar(&[file("a", "x")]);
    let s = Sandbox::new(&bytes, "tar");
    std::fs::create_dir_all(&s.target).unwrap();
    s.extract(&Options::default()).unwrap();
    let e = s.extract(&Options::default()).unwrap_err().to_string();
    assert!(e.contains("the directory is not empty"), "{e}");
    assert_eq!(std::fs::read_to_string(s.target.join("a")).unwrap(), "x");
}

#[test]
fn backups_style_archives_round_trip() {
    // What tar::Builder writes from a real directory: the shape backups have.
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("world/region")).unwrap();
    std::fs::write(src.path().join("world/region/r.0.0"), vec![7u8; 70_000]).unwrap();
    std::fs::write(src.path().join("server.cfg"), "max=16").unwrap();
    std::os::unix::fs::symlink("world/region/r.0.0", src.path().join("current")).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all(".", src.path()).unwrap();
    let bytes = gz(&b.into_inner().unwrap());
    let s = Sandbox::new(&bytes, "tar.gz");
    let sum = s.extract(&Options::default()).unwrap();
    assert_eq!(sum.unpacked_bytes, 70_006);
    assert_eq!(
        std::fs::read(s.target.join("current")).unwrap(),
        vec![7u8; 70_000]
    );
    assert_eq!(
        std::fs::read_to_string(s.target.join("server.cfg")).unwrap(),
        "max=16"
    );
}

#[test]
fn gnu_and_pax_archives_from_the_system_tar_unpack() {
    // Names past the 100 bytes of a tar header: GNU writes long-name records, PAX writes
    // extended headers. Both must come out whole.
    let src = tempfile::tempdir().unwrap();
    let deep = src
        .path()
        .join("game")
        .join("d".repeat(120))
        .join("e".repeat(90));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f".repeat(150)), "deep").unwrap();
    std::fs::write(src.path().join("game/server"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        src.path().join("game/server"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let link_target = format!("{}/{}", "d".repeat(120), "e".repeat(90));
    std::os::unix::fs::symlink(&link_target, src.path().join("game/short")).unwrap();
    for format in ["gnu", "pax"] {
        let out = src.path().join(format!("{format}.tar.gz"));
        let status = std::process::Command::new("tar")
            .arg(format!("--format={format}"))
            .arg("-czf")
            .arg(&out)
            .arg("-C")
            .arg(src.path())
            .arg("game")
            .status()
            .expect("GNU tar runs");
        assert!(status.success(), "{format}");
        let s = Sandbox::new(&std::fs::read(&out).unwrap(), "tar.gz");
        let options = Options {
            strip_single_top_dir: true,
            ..Options::default()
        };
        let sum = s.extract(&options).unwrap();
        assert_eq!(sum.stripped_prefix.as_deref(), Some("game"), "{format}");
        let file = s.target.join(&link_target).join("f".repeat(150));
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "deep", "{format}");
        assert_eq!(mode(&s.target.join("server")), 0o755, "{format}");
        let via_link = s.target.join("short").join("f".repeat(150));
        assert_eq!(
            std::fs::read_to_string(via_link).unwrap(),
            "deep",
            "{format}"
        );
    }
}
