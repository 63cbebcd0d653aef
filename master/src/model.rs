//! Domain types of the master, apart from the wire types in `exile_api`.

use std::collections::BTreeMap;
use std::fmt;

use exile_api::v1 as pb;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Role of a person or API token. Ordered: a higher role can do all a lower one can.
/// `Allocator` sits below `Viewer`: it may read nothing and only allocate (and ask who it is; see
/// `access::Access::Allocate`), so a matchmaker's credential cannot stop servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// May allocate instances and nothing else (API tokens only).
    Allocator,
    /// Read-only.
    Viewer,
    /// Drives spawners and instances.
    Operator,
    /// Manages users, tokens and enrollment too.
    Admin,
}

impl Role {
    /// Name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Allocator => "allocator",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "allocator" => Some(Role::Allocator),
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<i32> for Role {
    type Error = Error;
    fn try_from(v: i32) -> Result<Self, Error> {
        match pb::Role::try_from(v) {
            Ok(pb::Role::Allocator) => Ok(Role::Allocator),
            Ok(pb::Role::Viewer) => Ok(Role::Viewer),
            Ok(pb::Role::Operator) => Ok(Role::Operator),
            Ok(pb::Role::Admin) => Ok(Role::Admin),
            _ => Err(Error::InvalidArgument(
                "role: must be allocator, viewer, operator or admin".into(),
            )),
        }
    }
}

impl From<Role> for pb::Role {
    fn from(r: Role) -> Self {
        match r {
            Role::Allocator => pb::Role::Allocator,
            Role::Viewer => pb::Role::Viewer,
            Role::Operator => pb::Role::Operator,
            Role::Admin => pb::Role::Admin,
        }
    }
}

/// Who is making a call, established by the access layer.
#[derive(Clone, Debug)]
pub enum Principal {
    /// A signed-in person.
    User {
        /// User name.
        username: String,
        /// Role.
        role: Role,
        /// Hash of the session token (to log out).
        session_hash: String,
        /// Session expiry, Unix ms.
        expires_at: i64,
    },
    /// A service using a named API token.
    ApiToken {
        /// Token id.
        id: String,
        /// Token name.
        name: String,
        /// Role.
        role: Role,
        /// Expiry, Unix ms.
        expires_at: i64,
    },
    /// A spawner using its credential.
    Spawner {
        /// Spawner id.
        id: String,
    },
    /// A call to a public method.
    Anonymous,
}

impl Principal {
    /// Name written to the audit log.
    pub fn actor(&self) -> String {
        match self {
            Principal::User { username, .. } => username.clone(),
            Principal::ApiToken { name, .. } => format!("token:{name}"),
            Principal::Spawner { id } => format!("spawner:{id}"),
            Principal::Anonymous => "anonymous".into(),
        }
    }

    /// Role for people and services; spawners and anonymous callers have none.
    pub fn role(&self) -> Option<Role> {
        match self {
            Principal::User { role, .. } | Principal::ApiToken { role, .. } => Some(*role),
            _ => None,
        }
    }
}

/// One port held by an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// Name known to the build.
    pub name: String,
    /// Port number.
    pub port: u32,
    /// Protocol as its proto name number.
    pub protocol: i32,
}

/// Labels, kept sorted for stable output.
pub type Labels = BTreeMap<String, String>;

/// Durable facts about a spawner (what the database keeps).
#[derive(Clone, Debug, PartialEq)]
pub struct SpawnerInfo {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Region.
    pub region: String,
    /// Host name.
    pub host: String,
    /// Address players use.
    pub advertised_address: String,
    /// Max instances.
    pub capacity: u32,
    /// Placement labels.
    pub labels: Labels,
    /// Spawner software version.
    pub agent_version: String,
    /// Default build.
    pub active_build: String,
    /// Drained by an operator.
    pub drained: bool,
    /// Enrollment time, Unix ms.
    pub enrolled_at: i64,
    /// Last heartbeat or state change seen, Unix ms.
    pub last_seen_at: i64,
}

/// What a spawn asked for besides its placement and build: kept with the instance so that it
/// can be spawned again the same way (a rollout replacing it by another version).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpawnSettings {
    /// Extra environment variables.
    pub env: BTreeMap<String, String>,
    /// Extra arguments.
    pub args: Vec<String>,
    /// Restart policy asked for.
    pub restart_policy: Option<pb::RestartPolicy>,
    /// Health check asked for.
    pub health_check: Option<pb::HealthCheck>,
    /// Serve the Agones SDK to the instance whatever its build's manifest says.
    pub agones_sdk: bool,
}

impl SpawnSettings {
    /// The stored form: the protobuf encoding of the same fields of a SpawnCommand, in hex.
    pub fn encode(&self) -> String {
        use prost::Message;
        let cmd = pb::SpawnCommand {
            env: self.env.clone().into_iter().collect(),
            args: self.args.clone(),
            restart_policy: self.restart_policy,
            health_check: self.health_check,
            agones_sdk: self.agones_sdk,
            ..Default::default()
        };
        hex::encode(cmd.encode_to_vec())
    }

    /// Reads the stored form; anything unreadable (or empty, for instances older than this
    /// column) is no settings.
    pub fn decode(stored: &str) -> Self {
        use prost::Message;
        let Some(cmd) = hex::decode(stored)
            .ok()
            .and_then(|b| pb::SpawnCommand::decode(b.as_slice()).ok())
        else {
            return Self::default();
        };
        Self {
            env: cmd.env.into_iter().collect(),
            args: cmd.args,
            restart_policy: cmd.restart_policy,
            health_check: cmd.health_check,
            agones_sdk: cmd.agones_sdk,
        }
    }
}

/// An instance as the master keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct InstanceRecord {
    /// Id.
    pub id: String,
    /// Spawner id.
    pub spawner_id: String,
    /// State.
    pub state: pb::InstanceState,
    /// Build version.
    pub build_version: String,
    /// Name of the uploaded build it runs; empty for its spawner's host build.
    pub build_name: String,
    /// What its spawn asked for, to spawn it again alike.
    pub spawn: SpawnSettings,
    /// Ports.
    pub ports: Vec<PortSpec>,
    /// Process id.
    pub pid: u32,
    /// Restarts so far.
    pub restart_count: u32,
    /// Labels.
    pub labels: Labels,
    /// Players connected.
    pub players: u32,
    /// Player capacity.
    pub max_players: u32,
    /// Latest resource figures (memory only, never persisted).
    pub resources: pb::Resources,
    /// Creation time, Unix ms.
    pub created_at: i64,
    /// Process start, Unix ms.
    pub started_at: i64,
    /// Last state change, Unix ms.
    pub state_changed_at: i64,
    /// Exit code of the last run.
    pub exit_code: Option<i32>,
    /// Reason for the state.
    pub message: String,
    /// Spawner-side revision of the last status applied (memory only).
    pub revision: u64,
}

/// States in which an instance's process is alive.
pub fn is_running(state: pb::InstanceState) -> bool {
    state.has_process()
}

/// One resource sample of a spawner or an instance (the metrics history keeps them, the store
/// persists their one-minute means). Kept compact: there may be one series per instance
/// across thousands of hosts.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    /// Unix ms.
    pub at: i64,
    /// CPU % of one core.
    pub cpu: f32,
    /// Players.
    pub players: u32,
    /// Resident memory, bytes.
    pub memory: u64,
    /// Disk used, bytes.
    pub disk: u64,
}

impl Sample {
    /// Wire form.
    pub fn to_pb(self) -> pb::MetricPoint {
        pb::MetricPoint {
            at_unix_ms: self.at,
            cpu_percent: f64::from(self.cpu),
            memory_bytes: self.memory,
            disk_used_bytes: self.disk,
            players: self.players,
        }
    }
}
