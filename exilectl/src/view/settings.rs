//! Serialisable views of settings and their changes (`-o json|yaml`).

use exile_api::v1 as pb;
use serde::Serialize;

use super::rfc3339;

/// A value for spawners of a region or with a label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OverrideView {
    pub scope: String,
    pub value: String,
}

/// A setting with its declaration and value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingView {
    pub key: String,
    pub category: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub value: String,
    pub default: String,
    /// Whether a value was set (false: the default is in force).
    pub is_set: bool,
    pub bounds: String,
    pub description: String,
    pub read_only: bool,
    pub needs_restart: bool,
    pub applied_by: String,
    pub overrides: Vec<OverrideView>,
    /// Settings version of its last change.
    pub version: u64,
}

impl From<pb::SettingEntry> for SettingView {
    fn from(s: pb::SettingEntry) -> Self {
        Self {
            key: s.key,
            category: s.category,
            ty: s.r#type,
            value: s.value,
            default: s.default_value,
            is_set: s.is_set,
            bounds: s.bounds,
            description: s.description,
            read_only: s.read_only,
            needs_restart: s.needs_restart,
            applied_by: s.applied_by,
            overrides: s
                .overrides
                .into_iter()
                .map(|o| OverrideView {
                    scope: o.scope,
                    value: o.value,
                })
                .collect(),
            version: s.version,
        }
    }
}

/// One change of a setting.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SettingChangeView {
    pub version: u64,
    pub key: String,
    /// Empty for global.
    pub scope: String,
    /// None when no value was set before.
    pub old_value: Option<String>,
    /// None on a reset.
    pub new_value: Option<String>,
    pub actor: String,
    pub at: Option<String>,
}

impl From<pb::SettingChange> for SettingChangeView {
    fn from(c: pb::SettingChange) -> Self {
        Self {
            version: c.version,
            key: c.key,
            scope: c.scope,
            old_value: c.had_old.then_some(c.old_value),
            new_value: c.has_new.then_some(c.new_value),
            actor: c.actor,
            at: rfc3339(c.at_unix_ms),
        }
    }
}
