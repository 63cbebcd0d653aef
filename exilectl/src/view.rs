//! Serializable views of API messages: enums as lowercase words, times as RFC 3339 strings.
//!
//! prost types do not derive serde, and their raw shape (i32 enums, Unix milliseconds)
//! is not what a script wants to read, so every printed message goes through a view here.

mod build;
mod fleet;
mod settings;

use std::collections::{BTreeMap, HashMap};

use exile_api::v1 as pb;
use serde::Serialize;

pub use exile_api::format::{rfc3339, rfc3339_secs};

pub use build::{
    BuildView, DeletedBuildView, HeldBuildView, PushView, RollbackView, RolloutView,
    archive_format, instance_build, rollout_finished,
};
pub use fleet::{AllocationView, FleetScaledView, FleetView};
pub use settings::{SettingChangeView, SettingView};

/// Host or instance resource figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResourcesView {
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_total_bytes: u64,
    pub disk_used_bytes: u64,
    pub disk_total_bytes: u64,
    pub cpu_count: u32,
}

impl From<pb::Resources> for ResourcesView {
    fn from(r: pb::Resources) -> Self {
        Self {
            cpu_percent: r.cpu_percent,
            memory_bytes: r.memory_bytes,
            memory_total_bytes: r.memory_total_bytes,
            disk_used_bytes: r.disk_used_bytes,
            disk_total_bytes: r.disk_total_bytes,
            cpu_count: r.cpu_count,
        }
    }
}

/// One port of an instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortView {
    pub name: String,
    pub port: u32,
    pub protocol: String,
}

impl From<pb::Port> for PortView {
    fn from(p: pb::Port) -> Self {
        Self {
            protocol: enum_word(
                pb::Protocol::try_from(p.protocol).map(|v| v.as_str_name()),
                "PROTOCOL_",
                p.protocol,
            ),
            name: p.name,
            port: p.port,
        }
    }
}

/// A game-server instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceView {
    pub id: String,
    /// Name people gave it; empty when none.
    pub display_name: String,
    pub spawner_id: String,
    pub state: String,
    /// Empty for the spawner's host build.
    pub build_name: String,
    pub build_version: String,
    pub address: String,
    pub ports: Vec<PortView>,
    pub pid: u32,
    pub restart_count: u32,
    pub labels: BTreeMap<String, String>,
    pub players: u32,
    pub max_players: u32,
    pub resources: Option<ResourcesView>,
    pub created_at: Option<String>,
    pub started_at: Option<String>,
    pub state_changed_at: Option<String>,
    pub exit_code: Option<i32>,
    pub message: String,
}

impl From<pb::Instance> for InstanceView {
    fn from(i: pb::Instance) -> Self {
        Self {
            state: instance_state(i.state),
            id: i.id,
            display_name: i.display_name,
            spawner_id: i.spawner_id,
            build_name: i.build_name,
            build_version: i.build_version,
            address: i.address,
            ports: i.ports.into_iter().map(Into::into).collect(),
            pid: i.pid,
            restart_count: i.restart_count,
            labels: sorted(i.labels),
            players: i.players,
            max_players: i.max_players,
            resources: i.resources.map(Into::into),
            created_at: rfc3339(i.created_at_unix_ms),
            started_at: rfc3339(i.started_at_unix_ms),
            state_changed_at: rfc3339(i.state_changed_at_unix_ms),
            exit_code: i.exit_code,
            message: i.message,
        }
    }
}

/// A spawner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpawnerView {
    pub id: String,
    pub name: String,
    pub region: String,
    pub state: String,
    pub drained: bool,
    pub host: String,
    pub advertised_address: String,
    pub capacity: u32,
    pub instance_count: u32,
    pub labels: BTreeMap<String, String>,
    pub agent_version: String,
    pub active_build: String,
    pub builds: Vec<HeldBuildView>,
    pub resources: Option<ResourcesView>,
    pub last_seen: Option<String>,
    pub enrolled_at: Option<String>,
    /// Settings version it last acknowledged applying (0: none yet).
    pub settings_version: u64,
    /// What it could not apply of that version.
    pub settings_error: String,
}

impl From<pb::Spawner> for SpawnerView {
    fn from(s: pb::Spawner) -> Self {
        Self {
            state: spawner_state(s.state),
            id: s.id,
            name: s.name,
            region: s.region,
            drained: s.drained,
            host: s.host,
            advertised_address: s.advertised_address,
            capacity: s.capacity,
            instance_count: s.instance_count,
            labels: sorted(s.labels),
            agent_version: s.agent_version,
            active_build: s.active_build,
            builds: s.builds.into_iter().map(Into::into).collect(),
            resources: s.resources.map(Into::into),
            last_seen: rfc3339(s.last_seen_unix_ms),
            enrolled_at: rfc3339(s.enrolled_at_unix_ms),
            settings_version: s.settings_version,
            settings_error: s.settings_error,
        }
    }
}

/// A spawner with its instances (`spawner get`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpawnerDetailView {
    pub spawner: Option<SpawnerView>,
    pub instances: Vec<InstanceView>,
}

impl From<pb::GetSpawnerResponse> for SpawnerDetailView {
    fn from(r: pb::GetSpawnerResponse) -> Self {
        Self {
            spawner: r.spawner.map(Into::into),
            instances: r.instances.into_iter().map(Into::into).collect(),
        }
    }
}

/// A user account.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserView {
    pub username: String,
    pub role: String,
    pub created_at: Option<String>,
}

impl From<pb::User> for UserView {
    fn from(u: pb::User) -> Self {
        Self {
            role: role(u.role),
            username: u.username,
            created_at: rfc3339(u.created_at_unix_ms),
        }
    }
}

/// An API token, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiTokenView {
    pub id: String,
    pub name: String,
    pub role: String,
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    pub created_by: String,
    pub revoked: bool,
}

impl From<pb::ApiToken> for ApiTokenView {
    fn from(t: pb::ApiToken) -> Self {
        Self {
            role: role(t.role),
            id: t.id,
            name: t.name,
            created_at: rfc3339(t.created_at_unix_ms),
            expires_at: rfc3339(t.expires_at_unix_ms),
            created_by: t.created_by,
            revoked: t.revoked,
        }
    }
}

/// A new API token with its secret, shown once.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewApiTokenView {
    pub token: Option<ApiTokenView>,
    pub secret: String,
}

/// An enrollment token, without its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EnrollmentTokenView {
    pub id: String,
    pub description: String,
    pub created_at: Option<String>,
    pub expires_at: Option<String>,
    pub created_by: String,
    pub used_by_spawner: Option<String>,
    pub revoked: bool,
}

impl From<pb::EnrollmentToken> for EnrollmentTokenView {
    fn from(t: pb::EnrollmentToken) -> Self {
        Self {
            id: t.id,
            description: t.description,
            created_at: rfc3339(t.created_at_unix_ms),
            expires_at: rfc3339(t.expires_at_unix_ms),
            created_by: t.created_by,
            used_by_spawner: Some(t.used_by_spawner).filter(|s| !s.is_empty()),
            revoked: t.revoked,
        }
    }
}

/// A new enrollment token with its secret and the command that uses it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewEnrollmentTokenView {
    pub token: Option<EnrollmentTokenView>,
    pub secret: String,
    pub command: String,
}

/// Result of `login`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoginView {
    pub master: String,
    pub context: String,
    pub username: String,
    pub role: String,
    pub expires_at: Option<String>,
}

/// Result of `whoami`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WhoAmIView {
    pub master: String,
    pub context: Option<String>,
    pub subject: String,
    pub role: String,
    pub kind: String,
    pub expires_at: Option<String>,
}

/// A stored context; never its token.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContextView {
    pub name: String,
    pub master: String,
    pub current: bool,
    pub logged_in: bool,
}

/// Master statistics.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsView {
    pub version: String,
    pub uptime_seconds: u64,
    pub spawners_total: u32,
    pub spawners_online: u32,
    pub instances_total: u32,
    pub instances_running: u32,
    pub players_total: u32,
    pub requests_total: u64,
    pub errors_total: u64,
    pub memory_bytes: u64,
    pub open_links: u32,
    pub watch_subscribers: u32,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl From<pb::GetStatsResponse> for StatsView {
    fn from(s: pb::GetStatsResponse) -> Self {
        Self {
            version: s.version,
            uptime_seconds: s.uptime_seconds,
            spawners_total: s.spawners_total,
            spawners_online: s.spawners_online,
            instances_total: s.instances_total,
            instances_running: s.instances_running,
            players_total: s.players_total,
            requests_total: s.requests_total,
            errors_total: s.errors_total,
            memory_bytes: s.memory_bytes,
            open_links: s.open_links,
            watch_subscribers: s.watch_subscribers,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
        }
    }
}

/// One failed call the master remembers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerErrorView {
    pub at: Option<String>,
    pub method: String,
    pub code: String,
    pub peer: String,
    pub message: String,
}

impl From<pb::ServerError> for ServerErrorView {
    fn from(e: pb::ServerError) -> Self {
        Self {
            at: rfc3339(e.at_unix_ms),
            method: e.method,
            code: e.code,
            peer: e.peer,
            message: e.message,
        }
    }
}

/// One audited action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntryView {
    pub id: i64,
    pub at: Option<String>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub result: String,
    pub detail: String,
    pub peer: String,
}

impl From<pb::AuditEntry> for AuditEntryView {
    fn from(e: pb::AuditEntry) -> Self {
        Self {
            id: e.id,
            at: rfc3339(e.at_unix_ms),
            actor: e.actor,
            action: e.action,
            target: e.target,
            result: e.result,
            detail: e.detail,
            peer: e.peer,
        }
    }
}

/// One event of `watch`, printed as one JSON object per line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchEventView {
    pub sequence: u64,
    pub at: Option<String>,
    #[serde(flatten)]
    pub event: EventView,
}

/// What happened, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventView {
    Snapshot {
        spawners: Vec<SpawnerView>,
        instances: Vec<InstanceView>,
        builds: Vec<BuildView>,
        rollouts: Vec<RolloutView>,
        fleets: Vec<FleetView>,
    },
    SpawnerUpdated {
        spawner: SpawnerView,
    },
    SpawnerRemoved {
        id: String,
    },
    InstanceUpdated {
        instance: InstanceView,
    },
    InstanceRemoved {
        id: String,
    },
    SpawnerMetrics {
        spawner: SpawnerView,
    },
    Lagged {
        lost: u64,
    },
    BuildUpdated {
        build: BuildView,
    },
    BuildRemoved {
        id: String,
    },
    RolloutUpdated {
        rollout: RolloutView,
    },
    FleetUpdated {
        fleet: FleetView,
    },
    FleetRemoved {
        name: String,
    },
    FleetScaled {
        scaled: FleetScaledView,
    },
    /// An event kind this exilectl does not know (a newer master).
    Unknown,
}

impl From<pb::WatchEvent> for WatchEventView {
    fn from(e: pb::WatchEvent) -> Self {
        use pb::watch_event::Kind;
        let event = match e.kind {
            Some(Kind::Snapshot(s)) => EventView::Snapshot {
                spawners: s.spawners.into_iter().map(Into::into).collect(),
                instances: s.instances.into_iter().map(Into::into).collect(),
                builds: s.builds.into_iter().map(Into::into).collect(),
                rollouts: s.rollouts.into_iter().map(Into::into).collect(),
                fleets: s.fleets.into_iter().map(Into::into).collect(),
            },
            Some(Kind::SpawnerUpdated(s)) => EventView::SpawnerUpdated { spawner: s.into() },
            Some(Kind::SpawnerRemoved(id)) => EventView::SpawnerRemoved { id },
            Some(Kind::InstanceUpdated(i)) => EventView::InstanceUpdated { instance: i.into() },
            Some(Kind::InstanceRemoved(id)) => EventView::InstanceRemoved { id },
            Some(Kind::SpawnerMetrics(s)) => EventView::SpawnerMetrics { spawner: s.into() },
            Some(Kind::Lagged(lost)) => EventView::Lagged { lost },
            Some(Kind::BuildUpdated(b)) => EventView::BuildUpdated { build: b.into() },
            Some(Kind::BuildRemoved(id)) => EventView::BuildRemoved { id },
            Some(Kind::RolloutUpdated(r)) => EventView::RolloutUpdated { rollout: r.into() },
            Some(Kind::FleetUpdated(f)) => EventView::FleetUpdated { fleet: f.into() },
            Some(Kind::FleetRemoved(name)) => EventView::FleetRemoved { name },
            Some(Kind::FleetScaled(e)) => EventView::FleetScaled { scaled: e.into() },
            None => EventView::Unknown,
        };
        Self {
            sequence: e.sequence,
            at: rfc3339(e.at_unix_ms),
            event,
        }
    }
}

/// `INSTANCE_STATE_RUNNING` → `running`.
pub fn instance_state(v: i32) -> String {
    enum_word(
        pb::InstanceState::try_from(v).map(|s| s.as_str_name()),
        "INSTANCE_STATE_",
        v,
    )
}

/// `ROLLOUT_STATE_RUNNING` → `running`.
pub fn rollout_state(v: i32) -> String {
    enum_word(
        pb::RolloutState::try_from(v).map(|s| s.as_str_name()),
        "ROLLOUT_STATE_",
        v,
    )
}

/// `SPAWNER_STATE_ONLINE` → `online`.
pub fn spawner_state(v: i32) -> String {
    enum_word(
        pb::SpawnerState::try_from(v).map(|s| s.as_str_name()),
        "SPAWNER_STATE_",
        v,
    )
}

/// `ROLE_ADMIN` → `admin`.
pub fn role(v: i32) -> String {
    enum_word(pb::Role::try_from(v).map(|s| s.as_str_name()), "ROLE_", v)
}

/// Lowercase enum name without its prefix; a value this build does not know shows its number.
fn enum_word<E>(name: Result<&str, E>, prefix: &str, raw: i32) -> String {
    match name {
        Ok(n) => n.strip_prefix(prefix).unwrap_or(n).to_ascii_lowercase(),
        Err(_) => format!("unknown({raw})"),
    }
}

fn sorted(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> pb::Instance {
        pb::Instance {
            id: "inst-1".into(),
            spawner_id: "spw-1".into(),
            state: pb::InstanceState::Running as i32,
            ports: vec![pb::Port {
                name: "game".into(),
                port: 7801,
                protocol: pb::Protocol::TcpUdp as i32,
            }],
            labels: HashMap::from([("b".into(), "2".into()), ("a".into(), "1".into())]),
            created_at_unix_ms: 1_700_000_000_000,
            exit_code: Some(3),
            resources: Some(pb::Resources {
                cpu_percent: 12.5,
                memory_bytes: 1024,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn instance_view() {
        let v = InstanceView::from(instance());
        assert_eq!(v.state, "running");
        assert_eq!(v.ports[0].protocol, "tcp_udp");
        assert_eq!(v.created_at.as_deref(), Some("2023-11-14T22:13:20.000Z"));
        assert_eq!(v.started_at, None);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["state"], "running");
        assert_eq!(json["exit_code"], 3);
        assert_eq!(json["resources"]["cpu_percent"], 12.5);
        // Labels come out sorted, so output is stable.
        let keys: Vec<_> = json["labels"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        assert_eq!(keys, ["a", "b"]);
    }

    #[test]
    fn enums_and_unknown_values() {
        assert_eq!(spawner_state(pb::SpawnerState::Draining as i32), "draining");
        assert_eq!(instance_state(pb::InstanceState::Unknown as i32), "unknown");
        assert_eq!(role(pb::Role::Operator as i32), "operator");
        assert_eq!(role(0), "unspecified");
        assert_eq!(instance_state(99), "unknown(99)");
    }

    #[test]
    fn tokens_never_carry_unused_fields() {
        let v = EnrollmentTokenView::from(pb::EnrollmentToken {
            id: "et-1".into(),
            ..Default::default()
        });
        assert_eq!(v.used_by_spawner, None);
        assert_eq!(v.expires_at, None);
    }

    #[test]
    fn watch_events_are_tagged() {
        let e = WatchEventView::from(pb::WatchEvent {
            sequence: 7,
            at_unix_ms: 1_700_000_000_000,
            kind: Some(pb::watch_event::Kind::InstanceUpdated(instance())),
        });
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "instance_updated");
        assert_eq!(json["sequence"], 7);
        assert_eq!(json["instance"]["id"], "inst-1");

        let lag = serde_json::to_value(WatchEventView::from(pb::WatchEvent {
            sequence: 8,
            at_unix_ms: 0,
            kind: Some(pb::watch_event::Kind::Lagged(5)),
        }))
        .unwrap();
        assert_eq!(lag["type"], "lagged");
        assert_eq!(lag["lost"], 5);
        assert!(lag["at"].is_null());

        let rollout = serde_json::to_value(WatchEventView::from(pb::WatchEvent {
            sequence: 9,
            at_unix_ms: 1_700_000_000_000,
            kind: Some(pb::watch_event::Kind::RolloutUpdated(pb::Rollout {
                id: "rol-1".into(),
                build_name: "openarena".into(),
                state: pb::RolloutState::Running as i32,
                replaced: 2,
                total: 6,
                ..Default::default()
            })),
        }))
        .unwrap();
        assert_eq!(rollout["type"], "rollout_updated");
        assert_eq!(rollout["rollout"]["id"], "rol-1");
        assert_eq!(rollout["rollout"]["state"], "running");
        assert_eq!(rollout["rollout"]["replaced"], 2);
    }

    #[test]
    fn spawners_show_the_builds_they_hold() {
        let v = SpawnerView::from(pb::Spawner {
            id: "spw-1".into(),
            builds: vec![pb::HeldBuild {
                name: "openarena".into(),
                version: "0.8.9".into(),
                disk_bytes: 5 << 20,
                instance_count: 2,
                fetched_bytes: 0,
                installed_at_unix_ms: 1_700_000_000_000,
                ..Default::default()
            }],
            ..Default::default()
        });
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["builds"][0]["name"], "openarena");
        assert_eq!(json["builds"][0]["disk_bytes"], 5 << 20);
        assert_eq!(json["builds"][0]["fetched_bytes"], 0);
        assert_eq!(
            json["builds"][0]["installed_at"],
            "2023-11-14T22:13:20.000Z"
        );
    }
}
