//! Views of builds, their activations, the builds a spawner holds, and rollouts.

use std::collections::BTreeMap;

use exile_api::v1 as pb;
use serde::Serialize;

use super::{PortView, enum_word, rfc3339, rollout_state, sorted};

/// A stored build.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildView {
    pub id: String,
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub size: u64,
    pub format: String,
    pub file_count: u64,
    pub unpacked_bytes: u64,
    pub chunk_count: u32,
    pub command: String,
    pub ports: Vec<PortView>,
    pub manifest: String,
    pub activations: Vec<ActivationView>,
    pub instance_count: u32,
    pub spawner_count: u32,
    pub created_by: String,
    pub created_at: Option<String>,
}

impl From<pb::Build> for BuildView {
    fn from(b: pb::Build) -> Self {
        Self {
            format: archive_format(b.format),
            id: b.id,
            name: b.name,
            version: b.version,
            sha256: b.sha256,
            size: b.size,
            file_count: b.file_count,
            unpacked_bytes: b.unpacked_bytes,
            chunk_count: b.chunk_count,
            command: b.command,
            ports: b.ports.into_iter().map(Into::into).collect(),
            manifest: b.manifest,
            activations: b.activations.into_iter().map(Into::into).collect(),
            instance_count: b.instance_count,
            spawner_count: b.spawner_count,
            created_by: b.created_by,
            created_at: rfc3339(b.created_at_unix_ms),
        }
    }
}

/// Where a version is the active one of its name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivationView {
    /// Empty: every spawner.
    pub selector: BTreeMap<String, String>,
    pub activated_at: Option<String>,
    pub activated_by: String,
}

impl From<pb::BuildActivation> for ActivationView {
    fn from(a: pb::BuildActivation) -> Self {
        Self {
            selector: sorted(a.selector),
            activated_at: rfc3339(a.activated_at_unix_ms),
            activated_by: a.activated_by,
        }
    }
}

/// What `build push` stored: the build, and what the upload added to the master's store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushView {
    #[serde(flatten)]
    pub build: BuildView,
    pub new_chunks: u32,
    pub new_bytes: u64,
}

/// What `build delete` freed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeletedBuildView {
    pub build: String,
    pub freed_chunks: u32,
    pub freed_bytes: u64,
}

/// A build a spawner holds on disk.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldBuildView {
    pub name: String,
    pub version: String,
    pub sha256: String,
    pub disk_bytes: u64,
    pub instance_count: u32,
    pub fetched_bytes: u64,
    pub installed_at: Option<String>,
}

impl From<pb::HeldBuild> for HeldBuildView {
    fn from(h: pb::HeldBuild) -> Self {
        Self {
            name: h.name,
            version: h.version,
            sha256: h.sha256,
            disk_bytes: h.disk_bytes,
            instance_count: h.instance_count,
            fetched_bytes: h.fetched_bytes,
            installed_at: rfc3339(h.installed_at_unix_ms),
        }
    }
}

/// A rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutView {
    pub id: String,
    pub build_name: String,
    pub to_version: String,
    pub state: String,
    pub total: u32,
    pub replaced: u32,
    pub in_progress: u32,
    pub waiting_allocated: u32,
    pub failed: u32,
    pub max_unavailable: u32,
    pub canary_percent: u32,
    pub failure_threshold: u32,
    pub spawner_selector: BTreeMap<String, String>,
    pub message: String,
    pub created_by: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

impl From<pb::Rollout> for RolloutView {
    fn from(r: pb::Rollout) -> Self {
        Self {
            state: rollout_state(r.state),
            id: r.id,
            build_name: r.build_name,
            to_version: r.to_version,
            total: r.total,
            replaced: r.replaced,
            in_progress: r.in_progress,
            waiting_allocated: r.waiting_allocated,
            failed: r.failed,
            max_unavailable: r.max_unavailable,
            canary_percent: r.canary_percent,
            failure_threshold: r.failure_threshold,
            spawner_selector: sorted(r.spawner_selector),
            message: r.message,
            created_by: r.created_by,
            started_at: rfc3339(r.started_at_unix_ms),
            finished_at: rfc3339(r.finished_at_unix_ms),
        }
    }
}

/// What `build rollback` did: the version active again and the rollout moving instances back.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RollbackView {
    pub build: Option<BuildView>,
    pub rollout: Option<RolloutView>,
}

/// `ARCHIVE_FORMAT_TAR_GZ` → `tar_gz`.
pub fn archive_format(v: i32) -> String {
    enum_word(
        pb::ArchiveFormat::try_from(v).map(|f| f.as_str_name()),
        "ARCHIVE_FORMAT_",
        v,
    )
}

/// Whether a rollout has ended (its state no longer changes).
pub fn rollout_finished(state: i32) -> bool {
    matches!(
        pb::RolloutState::try_from(state),
        Ok(pb::RolloutState::Succeeded
            | pb::RolloutState::Cancelled
            | pb::RolloutState::RolledBack
            | pb::RolloutState::Failed)
    )
}

/// The build an instance runs as people write it: `name@version` for an uploaded build, the
/// version alone for a spawner's host build, empty when neither is known.
pub fn instance_build(i: &pb::Instance) -> String {
    match (i.build_name.as_str(), i.build_version.as_str()) {
        ("", v) => v.to_owned(),
        (n, "") => n.to_owned(),
        (n, v) => format!("{n}@{v}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    pub fn build() -> pb::Build {
        pb::Build {
            id: "bld-1".into(),
            name: "openarena".into(),
            version: "0.8.9".into(),
            sha256: "ab".repeat(32),
            size: 3 << 20,
            format: pb::ArchiveFormat::TarGz as i32,
            manifest: "[run]\ncommand = \"./oa --port {port:game}\"\n".into(),
            created_by: "admin".into(),
            created_at_unix_ms: 1_700_000_000_000,
            chunk_count: 4,
            file_count: 12,
            unpacked_bytes: 9 << 20,
            activations: vec![pb::BuildActivation {
                selector: HashMap::from([
                    ("region".into(), "eu".into()),
                    ("gpu".into(), "yes".into()),
                ]),
                activated_at_unix_ms: 1_700_000_100_000,
                activated_by: "ops".into(),
            }],
            instance_count: 3,
            spawner_count: 2,
            command: "./oa --port {port:game}".into(),
            ports: vec![pb::Port {
                name: "game".into(),
                port: 0,
                protocol: pb::Protocol::Udp as i32,
            }],
        }
    }

    #[test]
    fn build_view_names_its_format_and_sorts_selectors() {
        let v = BuildView::from(build());
        assert_eq!(v.format, "tar_gz");
        assert_eq!(v.created_at.as_deref(), Some("2023-11-14T22:13:20.000Z"));
        assert_eq!(v.ports[0].protocol, "udp");
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["size"], 3 << 20);
        assert_eq!(json["activations"][0]["activated_by"], "ops");
        let keys: Vec<_> = json["activations"][0]["selector"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["gpu", "region"]);
        assert_eq!(archive_format(99), "unknown(99)");
    }

    #[test]
    fn push_view_is_the_build_plus_what_it_added() {
        let json = serde_json::to_value(PushView {
            build: build().into(),
            new_chunks: 1,
            new_bytes: 42,
        })
        .unwrap();
        assert_eq!(json["id"], "bld-1");
        assert_eq!(json["sha256"], "ab".repeat(32));
        assert_eq!(json["new_chunks"], 1);
        assert_eq!(json["new_bytes"], 42);
    }

    #[test]
    fn rollout_view_and_end_states() {
        let v = RolloutView::from(pb::Rollout {
            id: "rol-1".into(),
            state: pb::RolloutState::RolledBack as i32,
            finished_at_unix_ms: 0,
            ..Default::default()
        });
        assert_eq!(v.state, "rolled_back");
        assert_eq!(v.finished_at, None);
        assert!(!rollout_finished(pb::RolloutState::Running as i32));
        assert!(!rollout_finished(pb::RolloutState::Unspecified as i32));
        for s in [
            pb::RolloutState::Succeeded,
            pb::RolloutState::Cancelled,
            pb::RolloutState::RolledBack,
            pb::RolloutState::Failed,
        ] {
            assert!(rollout_finished(s as i32), "{s:?}");
        }
    }

    #[test]
    fn instances_name_uploaded_builds_with_their_version() {
        let mut i = pb::Instance {
            build_version: "demo-1".into(),
            ..Default::default()
        };
        assert_eq!(instance_build(&i), "demo-1");
        i.build_name = "openarena".into();
        i.build_version = "0.8.9".into();
        assert_eq!(instance_build(&i), "openarena@0.8.9");
        i.build_version.clear();
        i.build_name.clear();
        assert_eq!(instance_build(&i), "");
    }
}
