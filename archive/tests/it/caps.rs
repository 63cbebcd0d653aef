//! Size caps: compression bombs (ratio) and the unpacked-bytes limit, counted on the bytes
//! really decompressed, refused before the rest is written.

use std::io::{self, Read};

use exile_archive::Options;

use crate::support::*;

const BOMB_BYTES: u64 = 200 << 20;

fn zeros(n: u64) -> impl Read {
    io::repeat(0).take(n)
}

fn tar_gz_of_zeros(n: u64) -> Vec<u8> {
    let enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut b = tar::Builder::new(enc);
    let h = raw_header(b"zeros.bin", tar::EntryType::Regular, b"", n, 0o644);
    b.append(&h, zeros(n)).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

fn zip_of_zeros(n: u64) -> Vec<u8> {
    use zip::write::SimpleFileOptions;
    let mut w = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
    let o = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9));
    w.start_file("zeros.bin", o).unwrap();
    io::copy(&mut zeros(n), &mut w).unwrap();
    w.finish().unwrap().into_inner()
}

/// Size of the partly written file in the target, if any.
fn written(s: &Sandbox) -> u64 {
    std::fs::metadata(s.target.join("zeros.bin")).map_or(0, |m| m.len())
}

#[test]
fn a_compression_bomb_is_refused_by_its_ratio() {
    let options = Options {
        max_ratio: 100,
        ratio_floor_bytes: 1 << 20,
        ..Options::default()
    };
    for (ext, bytes) in [
        ("tar.gz", tar_gz_of_zeros(BOMB_BYTES)),
        ("zip", zip_of_zeros(BOMB_BYTES)),
    ] {
        // 200 MB of zeros deflate to a few hundred KB: a ratio near 1000.
        assert!(bytes.len() < 1 << 20, "{ext}: {} bytes", bytes.len());
        assert_refused(ext, &bytes, &options, "times its own size");
        let s = Sandbox::new(&bytes, ext);
        s.extract(&options).unwrap_err();
        let cap = 100 * bytes.len() as u64;
        assert!(
            written(&s) <= cap,
            "{ext}: wrote {} bytes past the cap",
            written(&s)
        );
        // The same archive passes when the ratio allows it.
        let relaxed = Options {
            max_ratio: 10_000,
            ..options.clone()
        };
        let sum = s.inspect(&relaxed).unwrap();
        assert_eq!(sum.unpacked_bytes, BOMB_BYTES, "{ext}");
    }
}

#[test]
fn the_unpacked_size_cap_counts_real_bytes() {
    let options = Options {
        max_ratio: u64::MAX,
        ..small()
    };
    let n = 10 << 20;
    let plain = {
        let mut b = tar::Builder::new(Vec::new());
        let h = raw_header(b"zeros.bin", tar::EntryType::Regular, b"", n, 0o644);
        b.append(&h, zeros(n)).unwrap();
        b.into_inner().unwrap()
    };
    let cases = [
        ("tar", plain.clone()),
        ("tar.gz", gz(&plain)),
        ("tar.zst", zst(&plain)),
        ("zip", zip_of_zeros(n)),
    ];
    for (ext, bytes) in cases {
        assert_refused(ext, &bytes, &options, "unpacks to more than 1048576 bytes");
        let s = Sandbox::new(&bytes, ext);
        s.extract(&options).unwrap_err();
        assert!(written(&s) <= 1 << 20, "{ext}: wrote {}", written(&s));
    }
    // Many small files add up the same way.
    let many: Vec<E> = (0..20)
        .map(|i| file(&format!("f{i}"), &"y".repeat(100_000)))
        .collect();
    refused_everywhere(&many, &options, "unpacks to more than 1048576 bytes");
}

#[test]
fn data_hidden_in_directory_entries_is_counted() {
    // A directory header that carries data: never written, but decompressed, so counted.
    let mut b = tar::Builder::new(Vec::new());
    let n = 2 << 20;
    let h = raw_header(b"d/", tar::EntryType::Directory, b"", n, 0o755);
    b.append(&h, zeros(n)).unwrap();
    let bytes = gz(&b.into_inner().unwrap());
    let options = Options {
        max_ratio: u64::MAX,
        ..small()
    };
    assert_refused(
        "tar.gz",
        &bytes,
        &options,
        "unpacks to more than 1048576 bytes",
    );
}
