//! Which installed versions a collection removes: neither used by an instance nor wanted by
//! the master, not among the newest few of their name, and idle for the grace period.

use std::collections::BTreeMap;

/// An installed version as collection sees it.
#[derive(Debug, Clone)]
pub struct Version<'a> {
    /// Build name.
    pub name: &'a str,
    /// Version.
    pub version: &'a str,
    /// When it was installed, Unix ms.
    pub installed_at: i64,
    /// When an instance or an install last used it, Unix ms.
    pub last_used: i64,
}

/// The rules of one collection.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Newest versions kept per name whatever else holds.
    pub keep: usize,
    /// How long a version must have been idle, ms.
    pub grace_ms: i64,
    /// Now, Unix ms.
    pub now: i64,
}

/// The (name, version) pairs to remove; `protected` says which are in use or wanted.
pub fn doomed(
    versions: &[Version<'_>],
    policy: Policy,
    protected: impl Fn(&str, &str) -> bool,
) -> Vec<(String, String)> {
    let mut by_name: BTreeMap<&str, Vec<&Version<'_>>> = BTreeMap::new();
    for v in versions {
        by_name.entry(v.name).or_default().push(v);
    }
    let mut out = Vec::new();
    for mut list in by_name.into_values() {
        // Newest first; the version breaks ties so the order never depends on the map's.
        list.sort_by(|a, b| (b.installed_at, b.version).cmp(&(a.installed_at, a.version)));
        for v in list.into_iter().skip(policy.keep) {
            let idle = policy.now.saturating_sub(v.installed_at.max(v.last_used));
            if idle >= policy.grace_ms && !protected(v.name, v.version) {
                out.push((v.name.to_owned(), v.version.to_owned()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v<'a>(name: &'a str, version: &'a str, installed_at: i64, last_used: i64) -> Version<'a> {
        Version {
            name,
            version,
            installed_at,
            last_used,
        }
    }

    #[test]
    fn keeps_the_newest_the_protected_and_the_recently_used() {
        let versions = [
            v("game", "1", 100, 100),
            v("game", "2", 200, 200),
            v("game", "3", 300, 300),
            v("game", "4", 400, 400),
            v("game", "5", 500, 500),
            v("game", "6", 50, 950),
            v("other", "1", 10, 10),
        ];
        let policy = Policy {
            keep: 2,
            grace_ms: 100,
            now: 1000,
        };
        let protected = |name: &str, version: &str| name == "game" && version == "2";
        let mut gone = doomed(&versions, policy, protected);
        gone.sort();
        // 5 and 4 are the newest; 2 is protected; 6 was used 50 ms ago; "other" has one.
        assert_eq!(
            gone,
            [
                ("game".to_owned(), "1".to_owned()),
                ("game".into(), "3".into())
            ]
        );
        let none = doomed(
            &versions,
            Policy {
                grace_ms: 10_000,
                ..policy
            },
            |_, _| false,
        );
        assert!(none.is_empty(), "{none:?}");
        let all = doomed(
            &versions,
            Policy {
                keep: 0,
                grace_ms: 0,
                now: 1000,
            },
            |_, _| false,
        );
        assert_eq!(all.len(), versions.len());
    }
}
