//! Random tar archives mixing files, directories, `..`, absolute names, symlinks with random
//! targets and hard links: extraction never creates anything outside the target, every link
//! it leaves resolves inside, and inspect's verdict equals extract's.

use proptest::prelude::*;

use exile_archive::Options;

use crate::support::*;

fn part() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        4 => Just("a"),
        3 => Just("b"),
        2 => Just("c"),
        2 => Just(".."),
        1 => Just("."),
    ]
}

fn path() -> impl Strategy<Value = String> {
    (
        prop::bool::weighted(0.1),
        prop::collection::vec(part(), 1..5),
    )
        .prop_map(|(abs, parts)| {
            let joined = parts.join("/");
            if abs { format!("/{joined}") } else { joined }
        })
}

fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => path(),
        1 => Just("/etc".to_owned()),
        1 => Just("/tmp/exile-prop".to_owned()),
    ]
}

fn entry() -> impl Strategy<Value = E> {
    prop_oneof![
        4 => path().prop_map(|p| file(&p, "data")),
        2 => path().prop_map(|p| dir(&p)),
        3 => (path(), target()).prop_map(|(p, t)| sym(&p, &t)),
        1 => (path(), path()).prop_map(|(p, t)| hard(&p, &t)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn extraction_stays_inside_and_agrees_with_inspection(
        entries in prop::collection::vec(entry(), 1..12),
        strip in any::<bool>(),
        gzip in any::<bool>(),
    ) {
        let plain = tar(&entries);
        let (ext, bytes) = if gzip { ("tar.gz", gz(&plain)) } else { ("tar", plain) };
        let s = Sandbox::new(&bytes, ext);
        let options = Options { strip_single_top_dir: strip, ..Options::default() };
        let inspected = s.inspect(&options).map_err(|e| e.to_string());
        let extracted = s.extract(&options).map_err(|e| e.to_string());
        prop_assert_eq!(&inspected, &extracted);
        prop_assert_eq!(s.outside(), Vec::<std::path::PathBuf>::new());
        if extracted.is_ok() {
            let root = std::fs::canonicalize(&s.target).unwrap();
            let mut escaped = Vec::new();
            walk(&s.target, &mut |p| {
                let is_link = std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
                if is_link && let Ok(real) = std::fs::canonicalize(p) && !real.starts_with(&root) {
                    escaped.push((p.to_path_buf(), real));
                }
            });
            prop_assert!(escaped.is_empty(), "links out of the target: {:?}", escaped);
        }
    }
}
