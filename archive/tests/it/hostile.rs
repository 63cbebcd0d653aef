//! Hostile archives: each refused by inspect and by extract, for every format that can carry
//! it, with the rule named and nothing written outside the target.

use exile_archive::Options;

use crate::support::*;

fn opts() -> Options {
    Options::default()
}

#[test]
fn zip_slip_through_dotdot_is_refused() {
    let why = "leaves the archive's root through \"..\"";
    refused_everywhere(&[file("../escape.txt", "x")], &opts(), why);
    refused_everywhere(
        &[file("ok.txt", "x"), file("a/../../escape.txt", "x")],
        &opts(),
        why,
    );
}

#[test]
fn absolute_paths_are_refused() {
    refused_everywhere(
        &[file("/tmp/exile-escape.txt", "x")],
        &opts(),
        "the path is absolute",
    );
}

#[test]
fn a_symlink_chain_out_of_the_root_is_refused() {
    // a -> . then a/b -> .. then a/b/c/file: each link alone looks inside, together they climb.
    let entries = [sym("a", "."), sym("a/b", ".."), file("a/b/c/file", "x")];
    refused_everywhere(
        &entries,
        &opts(),
        "beneath \"a\", a symbolic link in this archive",
    );
    // The same chain written as a/b/c/file through a link to a real directory.
    let entries = [dir("d"), sym("d/up", ".."), file("d/up/escape.txt", "x")];
    refused_everywhere(&entries, &opts(), "beneath \"d/up\"");
}

#[test]
fn a_link_that_escapes_only_through_another_link_is_refused() {
    // Lexically a/b/up/../../.. is the root; a/b/up is "..", so it is really one level up.
    let entries = [sym("a/b/up", ".."), sym("x", "a/b/up/../../..")];
    refused_everywhere(
        &entries,
        &opts(),
        "once the links it goes through are followed",
    );
}

#[test]
fn symlinks_out_of_the_root_are_refused() {
    refused_everywhere(&[sym("etc", "/etc")], &opts(), "the absolute path \"/etc\"");
    refused_everywhere(
        &[sym("x/up", "../../outside")],
        &opts(),
        "\"../../outside\", which leaves the archive's root",
    );
}

#[test]
fn hard_links_out_or_to_nothing_are_refused() {
    let why = "no regular file of that path came earlier";
    refused_everywhere(
        &[hard("h", "/etc/passwd")],
        &opts(),
        "hard link to \"/etc/passwd\"",
    );
    refused_everywhere(
        &[hard("h", "../outside")],
        &opts(),
        "hard link to \"../outside\"",
    );
    refused_everywhere(&[hard("h", "missing.txt")], &opts(), why);
    // A file that comes later does not count, nor a link to a file.
    refused_everywhere(&[hard("h", "f"), file("f", "x")], &opts(), why);
    refused_everywhere(
        &[file("f", "x"), sym("s", "f"), hard("h", "s")],
        &opts(),
        why,
    );
}

#[test]
fn devices_and_fifos_are_refused() {
    refused_everywhere(&[special("dev", Kind::Char)], &opts(), "a character device");
    refused_everywhere(&[special("disk", Kind::Block)], &opts(), "a block device");
    refused_everywhere(&[special("pipe", Kind::Fifo)], &opts(), "a fifo");
}

#[test]
fn a_later_entry_may_not_replace_an_earlier_one() {
    let why = "an earlier entry has the same path";
    refused_everywhere(
        &[file("a.txt", "one"), file("./a.txt", "two")],
        &opts(),
        why,
    );
    refused_everywhere(&[sym("d", "."), file("./d", "x")], &opts(), why);
    refused_everywhere(&[dir("d"), file("d", "x")], &opts(), why);
    refused_everywhere(
        &[file("f", "x"), file("f/inner", "x")],
        &opts(),
        "beneath \"f\", a file",
    );
    // The same name twice in a tar.
    let bytes = tar(&[file("a.txt", "one"), file("a.txt", "two")]);
    assert_refused("tar", &bytes, &opts(), why);
}

#[test]
fn a_zip_central_directory_with_one_name_twice_is_refused() {
    // Patch the second name of a zip into the first: both the local and central headers.
    let mut bytes = zip(&[file("aaaa.txt", "one"), file("bbbb.txt", "two")]);
    let mut i = 0;
    while let Some(at) = bytes[i..].windows(8).position(|w| w == b"bbbb.txt") {
        bytes[i + at..i + at + 8].copy_from_slice(b"aaaa.txt");
        i += at + 8;
    }
    assert_refused("zip", &bytes, &opts(), "two entries have the same name");
}

#[test]
fn too_many_entries_are_refused() {
    let entries: Vec<E> = (0..5).map(|i| file(&format!("f{i}"), "x")).collect();
    let options = Options {
        max_entries: 3,
        ..opts()
    };
    refused_everywhere(&entries, &options, "more than 3 entries");
}

#[test]
fn empty_and_root_names_are_refused() {
    refused_everywhere(&[file(".", "x")], &opts(), "the archive's root itself");
    refused_everywhere(&[sym(".", "a")], &opts(), "the archive's root itself");
}

#[test]
fn over_long_paths_and_names_are_refused() {
    let options = Options {
        max_path_bytes: 64,
        ..opts()
    };
    let long = format!("{}/f", "d".repeat(70));
    refused_everywhere(&[file(&long, "x")], &options, "the name is 72 bytes long");
    let component = "c".repeat(300);
    // Zip names are not limited to 100 bytes like a tar header's.
    assert_refused(
        "zip",
        &zip(&[file(&component, "x")]),
        &opts(),
        "a component of 300 bytes",
    );
}

/// A GNU long-name record of `len` bytes followed by a file.
fn gnu_long_name(len: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let name = vec![b'n'; len];
    let h = raw_header(
        b"././@LongLink",
        tar::EntryType::GNULongName,
        b"",
        len as u64,
        0o644,
    );
    b.append(&h, name.as_slice()).unwrap();
    append(&mut b, &file("short", "x"));
    b.into_inner().unwrap()
}

/// One PAX record.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = 1 + key.len() + 1 + value.len() + 1;
    let mut len = body + 1;
    while len.to_string().len() + body != len {
        len = len.to_string().len() + body;
    }
    let mut out = format!("{len} {key}=").into_bytes();
    out.extend_from_slice(value);
    out.push(b'\n');
    out
}

/// A PAX header with these records followed by a file.
pub fn pax(records: &[u8], then: &E) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let h = raw_header(
        b"PaxHeaders/f",
        tar::EntryType::XHeader,
        b"",
        records.len() as u64,
        0o644,
    );
    b.append(&h, records).unwrap();
    append(&mut b, then);
    b.into_inner().unwrap()
}

#[test]
fn long_names_and_pax_headers_over_the_caps_are_refused_before_buffering() {
    let o = opts();
    // A GNU long name the size of the whole default path limit plus a little.
    let bytes = gnu_long_name(5000);
    assert_refused(
        "tar",
        &bytes,
        &o,
        "a GNU long name of 5000 bytes, over the limit of 4097 bytes",
    );
    assert_refused("tar.gz", &gz(&bytes), &o, "GNU long name of 5000 bytes");
    // A long name within the cap is honoured and checked like any name.
    let bytes = gnu_long_name(300);
    assert_refused("tar", &bytes, &o, "a component of 300 bytes");
    // A PAX path record over the path limit.
    let records = pax_record("path", "p".repeat(5000).as_bytes());
    let bytes = pax(&records, &file("short", "x"));
    assert_refused("tar", &bytes, &o, "PAX path record is 5000 bytes");
    // A PAX header over its own cap (a megabyte of comments), refused before it is read.
    let records = pax_record("comment", &vec![b'c'; 1 << 20]);
    let bytes = pax(&records, &file("short", "x"));
    assert_refused("tar.gz", &gz(&bytes), &o, "a PAX header of 1048");
    // A PAX path record is a name like any other.
    let bytes = pax(&pax_record("path", b"../escape.txt"), &file("short", "x"));
    assert_refused("tar", &bytes, &o, "through \"..\"");
    // A PAX size that disagrees with the header would desynchronise readers: refused.
    let bytes = pax(&pax_record("size", b"0"), &file("short", "x"));
    assert_refused("tar", &bytes, &o, "disagrees with its header");
}

#[test]
fn manifests_over_the_cap_or_not_text_are_refused() {
    let big = "#".repeat(70_000);
    refused_everywhere(
        &[file("exile-build.toml", &big)],
        &opts(),
        "over the limit of 65536 bytes",
    );
    let entries = [E {
        name: "exile-build.toml".into(),
        kind: Kind::File(vec![0xff, 0xfe, b'x'], 0o644),
    }];
    refused_everywhere(&entries, &opts(), "is not UTF-8 text");
    refused_everywhere(
        &[sym("exile-build.toml", "other.toml")],
        &opts(),
        "must be a regular file",
    );
}

#[test]
fn unknown_bytes_are_not_an_archive() {
    let s = Sandbox::new(b"just some text, long enough to be read as a header", "zip");
    let e = s.inspect(&opts()).unwrap_err().to_string();
    assert!(
        e.contains("not a zip, tar, tar.gz or tar.zst archive"),
        "{e}"
    );
    assert!(s.extract(&opts()).is_err());
    // A corrupt gzip stream is reported as such, not as an entry.
    let mut bytes = gz(&tar(&[file("a", &"x".repeat(10_000))]));
    let mid = bytes.len() / 2;
    bytes.truncate(mid);
    assert_refused("tar.gz", &bytes, &opts(), "not a readable archive");
}
