//! The settings pages' pure side: a draft checked against the setting's declaration (the same
//! parser the master validates with), the categories as tabs, and each spawner's
//! acknowledgement of the settings version in force. Tested on the host.

use exile_api::settings::{self as decl, Category};
use exile_api::v1 as pb;
use exile_api::v1::SpawnerState;

/// The categories, in the order the master declares them, as URL segments.
pub fn categories() -> Vec<&'static str> {
    Category::ALL.iter().map(|c| c.as_str()).collect()
}

/// The canonical text of `draft` for `key` (what the master would store), or why the master
/// would refuse it (the key and the bound, in the master's own words).
pub fn check(key: &str, draft: &str) -> Result<String, String> {
    let setting = decl::lookup(key)?;
    setting.parse(draft).map(|v| v.to_text())
}

/// Whether `draft` differs from the value in force (compared canonically when it parses, so
/// `30000ms` against `30s` is not a change).
pub fn is_dirty(entry: &pb::SettingEntry, draft: &str) -> bool {
    match check(&entry.key, draft) {
        Ok(canonical) => canonical != entry.value,
        Err(_) => draft != entry.value,
    }
}

/// How far one spawner is with the settings version in force.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ack {
    /// It applied this version or a later one, every value.
    Applied,
    /// It applied this version but some values did not take (the rest did).
    Failed(String),
    /// Connected, not acknowledged yet.
    Pending,
    /// Not connected: it gets the version in force when it reconnects.
    Offline,
}

impl Ack {
    /// One word for badges and tests.
    pub fn word(&self) -> &'static str {
        match self {
            Ack::Applied => "applied",
            Ack::Failed(_) => "failed",
            Ack::Pending => "pending",
            Ack::Offline => "offline",
        }
    }

    /// Badge tone.
    pub fn tone(&self) -> &'static str {
        match self {
            Ack::Applied => "ok",
            Ack::Failed(_) => "bad",
            Ack::Pending => "warn",
            Ack::Offline => "muted",
        }
    }
}

/// Where `s` stands with settings `version`.
pub fn ack(s: &pb::Spawner, version: u64) -> Ack {
    let attached = SpawnerState::try_from(s.state).is_ok_and(|st| st.is_attached());
    if !attached {
        Ack::Offline
    } else if s.settings_version < version {
        Ack::Pending
    } else if !s.settings_error.is_empty() {
        Ack::Failed(s.settings_error.clone())
    } else {
        Ack::Applied
    }
}

/// How many spawners applied `version` out of those connected.
pub fn ack_counts(spawners: &[pb::Spawner], version: u64) -> (usize, usize) {
    let acks: Vec<Ack> = spawners.iter().map(|s| ack(s, version)).collect();
    let connected = acks.iter().filter(|a| **a != Ack::Offline).count();
    let applied = acks.iter().filter(|a| **a == Ack::Applied).count();
    (applied, connected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str) -> pb::SettingEntry {
        pb::SettingEntry {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }
    }

    #[test]
    fn drafts_are_checked_by_the_declaration() {
        let key = decl::HEARTBEAT_INTERVAL;
        let ok = check(key, "30000ms").unwrap();
        assert_eq!(ok, "30s");
        let err = check(key, "1ms").unwrap_err();
        assert!(err.contains(key), "{err}");
        assert!(
            check("no.such_key", "1")
                .unwrap_err()
                .contains("no.such_key")
        );
        assert!(!is_dirty(&entry(key, "30s"), "30000ms"));
        assert!(is_dirty(&entry(key, "30s"), "10s"));
        assert!(is_dirty(&entry(key, "30s"), "soon"));
    }

    #[test]
    fn acknowledgements() {
        let sp = |state: SpawnerState, v: u64, err: &str| pb::Spawner {
            id: "s".into(),
            state: state as i32,
            settings_version: v,
            settings_error: err.into(),
            ..Default::default()
        };
        assert_eq!(ack(&sp(SpawnerState::Online, 4, ""), 4), Ack::Applied);
        assert_eq!(ack(&sp(SpawnerState::Online, 5, ""), 4), Ack::Applied);
        assert_eq!(ack(&sp(SpawnerState::Online, 3, ""), 4), Ack::Pending);
        assert_eq!(
            ack(&sp(SpawnerState::Online, 4, "x: bad"), 4),
            Ack::Failed("x: bad".into())
        );
        assert_eq!(ack(&sp(SpawnerState::Unreachable, 4, ""), 4), Ack::Offline);
        let all = [
            sp(SpawnerState::Online, 4, ""),
            sp(SpawnerState::Online, 3, ""),
            sp(SpawnerState::Offline, 1, ""),
        ];
        assert_eq!(ack_counts(&all, 4), (1, 2));
        assert_eq!(categories().len(), Category::ALL.len());
    }
}
