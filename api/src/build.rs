//! Rules of uploaded builds that several crates apply: how names, versions and
//! `name@version` references are spelled, which spawners a selector picks, and the build
//! manifest `exile-build.toml`.

pub mod manifest;

use std::collections::HashMap;

pub use manifest::{MANIFEST_FILE, MAX_MANIFEST_BYTES, Manifest, ManifestError, SdkKind};

/// Longest build name or version, bytes.
pub const MAX_NAME_LEN: usize = 64;

/// Largest archive the master accepts unless configured otherwise: 4 GiB.
pub const DEFAULT_MAX_ARCHIVE_BYTES: u64 = 4 << 30;

/// Largest piece of an upload one message carries: 1 MiB.
pub const MAX_UPLOAD_PART: usize = 1 << 20;

/// Largest chunk of a stored build, bytes: the master never cuts a bigger one, and a
/// spawner refuses a chunk list that names one (link.proto). 2 MiB keeps one `ChunkData`
/// message (chunk + framing) under tonic's 4 MiB default message limit.
pub const MAX_CHUNK_BYTES: usize = 2 << 20;

/// Most chunks one FetchChunks request may name (link.proto).
pub const MAX_FETCH_CHUNKS: usize = 4096;

/// Checks a build name: 1 to 64 of `[A-Za-z0-9._-]`, starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    check_word("build name", name, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
    })
}

/// Checks a version: 1 to 64 of `[A-Za-z0-9._+-]`, starting with a letter or digit.
pub fn check_version(version: &str) -> Result<(), String> {
    check_word("build version", version, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+')
    })
}

fn check_word(what: &str, s: &str, allowed: impl Fn(char) -> bool) -> Result<(), String> {
    if s.is_empty() || s.len() > MAX_NAME_LEN {
        return Err(format!("{what} must be 1 to {MAX_NAME_LEN} characters"));
    }
    if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) || !s.chars().all(allowed) {
        return Err(format!(
            "{what} {s:?} must start with a letter or digit and use only letters, digits and . _ - (+ in versions)"
        ));
    }
    Ok(())
}

/// A reference to a build as people write it: `name@version`, or `name` alone (its active
/// version).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BuildSpec {
    /// Build name.
    pub name: String,
    /// Version, when one was named.
    pub version: Option<String>,
}

impl BuildSpec {
    /// Parses `name@version` or `name`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (name, version) = match s.split_once('@') {
            Some((n, v)) => (n, Some(v)),
            None => (s, None),
        };
        check_name(name)?;
        if let Some(v) = version {
            check_version(v)?;
        }
        Ok(Self {
            name: name.to_owned(),
            version: version.map(str::to_owned),
        })
    }

    /// Parses `name@version`, refusing a bare name.
    pub fn parse_exact(s: &str) -> Result<(String, String), String> {
        let spec = Self::parse(s)?;
        match spec.version {
            Some(v) => Ok((spec.name, v)),
            None => Err(format!("name a version: {s}@VERSION")),
        }
    }
}

impl std::fmt::Display for BuildSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(v) => write!(f, "{}@{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Whether a spawner matches a selector: every pair must match, the key `region` against the
/// spawner's region, any other key against its labels. An empty selector matches every
/// spawner.
pub fn selector_matches(
    selector: &HashMap<String, String>,
    region: &str,
    labels: &HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| {
        if k == "region" {
            region == v || labels.get(k) == Some(v)
        } else {
            labels.get(k) == Some(v)
        }
    })
}

/// Lowercase hex SHA-256 as builds and chunks are named: 64 hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_references_parse_and_refuse_what_would_be_a_path() {
        assert_eq!(
            BuildSpec::parse("openarena@0.8.9+r2").unwrap(),
            BuildSpec {
                name: "openarena".into(),
                version: Some("0.8.9+r2".into())
            }
        );
        assert_eq!(BuildSpec::parse("openarena").unwrap().version, None);
        for bad in [
            "",
            "@1",
            "a@",
            "../x@1",
            "a/b@1",
            ".hidden@1",
            "a@../1",
            "a@1@2",
            "a b",
        ] {
            assert!(BuildSpec::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(BuildSpec::parse_exact("openarena").is_err());
        assert!(BuildSpec::parse(&"x".repeat(65)).is_err());
        assert_eq!(BuildSpec::parse("a@1").unwrap().to_string(), "a@1");
    }

    #[test]
    fn selectors_match_region_and_labels() {
        let labels: HashMap<String, String> = [("gpu".to_owned(), "yes".to_owned())].into();
        let sel = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(selector_matches(&sel(&[]), "eu", &labels));
        assert!(selector_matches(&sel(&[("region", "eu")]), "eu", &labels));
        assert!(!selector_matches(&sel(&[("region", "us")]), "eu", &labels));
        assert!(selector_matches(
            &sel(&[("region", "eu"), ("gpu", "yes")]),
            "eu",
            &labels
        ));
        assert!(!selector_matches(&sel(&[("gpu", "no")]), "eu", &labels));
    }

    #[test]
    fn sha256_hex_is_lowercase_and_64_digits() {
        assert!(is_sha256_hex(&"a".repeat(64)));
        assert!(!is_sha256_hex(&"A".repeat(64)));
        assert!(!is_sha256_hex(&"a".repeat(63)));
        assert!(!is_sha256_hex(&format!("{}/", "a".repeat(63))));
    }
}
