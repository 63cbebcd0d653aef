//! Conversions between domain types and the wire types of `exile_api`.

use crate::model::{InstanceRecord, PortSpec, SpawnerInfo};
use exile_api::now_unix_ms;
use exile_api::v1 as pb;

/// Wire form of a spawner; `held` are the uploaded builds it reported holding.
pub fn spawner_to_pb(
    info: &SpawnerInfo,
    state: pb::SpawnerState,
    res: &pb::Resources,
    count: u32,
    held: &[pb::HeldBuild],
) -> pb::Spawner {
    pb::Spawner {
        id: info.id.clone(),
        name: info.name.clone(),
        region: info.region.clone(),
        state: state as i32,
        host: info.host.clone(),
        advertised_address: info.advertised_address.clone(),
        capacity: info.capacity,
        instance_count: count,
        labels: info
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        agent_version: info.agent_version.clone(),
        active_build: info.active_build.clone(),
        resources: Some(*res),
        last_seen_unix_ms: info.last_seen_at,
        enrolled_at_unix_ms: info.enrolled_at,
        drained: info.drained,
        builds: held.to_vec(),
        // What it acknowledged lives in the registry, which fills these in.
        settings_version: 0,
        settings_error: String::new(),
    }
}

/// An instance as seen by a caller who may not read game output
/// ([`crate::access::may_read_game_output`]): its message without the game's own text.
pub fn hide_game_output(i: &mut pb::Instance) {
    let own = exile_api::state::without_game_output(&i.message).len();
    i.message.truncate(own);
}

/// [`hide_game_output`] on every instance of a list, unless the caller may read game output.
pub fn instances_for(mut list: Vec<pb::Instance>, sees_output: bool) -> Vec<pb::Instance> {
    if !sees_output {
        list.iter_mut().for_each(hide_game_output);
    }
    list
}

/// Wire form of an instance; `address` is its spawner's advertised address.
pub fn instance_to_pb(r: &InstanceRecord, address: &str) -> pb::Instance {
    pb::Instance {
        id: r.id.clone(),
        spawner_id: r.spawner_id.clone(),
        state: r.state as i32,
        build_version: r.build_version.clone(),
        build_name: r.build_name.clone(),
        ports: r
            .ports
            .iter()
            .map(|p| pb::Port {
                name: p.name.clone(),
                port: p.port,
                protocol: p.protocol,
            })
            .collect(),
        pid: r.pid,
        restart_count: r.restart_count,
        labels: r
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        players: r.players,
        max_players: r.max_players,
        resources: Some(r.resources),
        created_at_unix_ms: r.created_at,
        started_at_unix_ms: r.started_at,
        state_changed_at_unix_ms: r.state_changed_at,
        exit_code: r.exit_code,
        message: r.message.clone(),
        address: address.to_owned(),
        // The registry adds the name people gave it and what an allocation set.
        display_name: String::new(),
        annotations: Default::default(),
    }
}

/// Domain record from a spawner's status, keeping what only the master knows
/// (creation time) from the previous record.
pub fn record_from_status(
    spawner_id: &str,
    s: pb::InstanceStatus,
    prev: Option<&InstanceRecord>,
) -> InstanceRecord {
    let state = pb::InstanceState::try_from(s.state).unwrap_or(pb::InstanceState::Unknown);
    let now = now_unix_ms();
    let state_changed_at = match prev {
        Some(p) if p.state == state => p.state_changed_at,
        _ => now,
    };
    // A spawner that does not report build names (older than uploaded builds) must not
    // erase the one the master recorded at spawn: an instance never changes its build.
    let build_name = if s.build_name.is_empty() {
        prev.map(|p| p.build_name.clone()).unwrap_or_default()
    } else {
        s.build_name
    };
    InstanceRecord {
        id: s.id,
        spawner_id: spawner_id.to_owned(),
        state,
        build_version: s.build_version,
        build_name,
        spawn: prev.map(|p| p.spawn.clone()).unwrap_or_default(),
        ports: s
            .ports
            .into_iter()
            .map(|p| PortSpec {
                name: p.name,
                port: p.port,
                protocol: p.protocol,
            })
            .collect(),
        pid: s.pid,
        restart_count: s.restart_count,
        labels: s.labels.into_iter().collect(),
        players: s.players,
        max_players: s.max_players,
        resources: s.resources.unwrap_or_default(),
        created_at: prev.map_or(now, |p| p.created_at),
        started_at: s.started_at_unix_ms,
        state_changed_at,
        exit_code: s.exit_code,
        message: s.message,
        revision: s.revision,
    }
}

/// A state as a lower-case word for messages.
pub fn spawner_state_word(s: pb::SpawnerState) -> &'static str {
    match s {
        pb::SpawnerState::Online => "online",
        pb::SpawnerState::Draining => "draining",
        pb::SpawnerState::Unreachable => "unreachable",
        pb::SpawnerState::Offline => "offline",
        pb::SpawnerState::Unspecified => "unknown",
    }
}

/// Checks a label map from a request (the rule is `exile_api::limits::check_labels`).
pub fn check_labels(
    field: &str,
    labels: &std::collections::HashMap<String, String>,
) -> crate::error::Result<crate::model::Labels> {
    exile_api::limits::check_labels(field, labels.iter())
        .map_err(crate::error::Error::InvalidArgument)?;
    Ok(labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Checks an id field: present and short (`exile_api::limits::check_id`).
pub fn check_id(field: &str, id: &str) -> crate::error::Result<()> {
    exile_api::limits::check_id(field, id).map_err(crate::error::Error::InvalidArgument)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_keeps_master_fields() {
        let prev = InstanceRecord {
            id: "i".into(),
            spawner_id: "s".into(),
            state: pb::InstanceState::Running,
            build_version: "1".into(),
            build_name: "openarena".into(),
            spawn: Default::default(),
            ports: vec![],
            pid: 1,
            restart_count: 0,
            labels: Default::default(),
            players: 0,
            max_players: 0,
            resources: Default::default(),
            created_at: 42,
            started_at: 0,
            state_changed_at: 43,
            exit_code: None,
            message: String::new(),
            revision: 0,
        };
        let s = pb::InstanceStatus {
            id: "i".into(),
            state: pb::InstanceState::Running as i32,
            pid: 7,
            ..Default::default()
        };
        let r = record_from_status("s", s, Some(&prev));
        assert_eq!(r.created_at, 42);
        assert_eq!(r.state_changed_at, 43, "same state keeps its change time");
        assert_eq!(r.pid, 7);
        assert_eq!(
            r.build_name, "openarena",
            "a status without a build name keeps it"
        );
        let s = pb::InstanceStatus {
            id: "i".into(),
            state: pb::InstanceState::Stopped as i32,
            ..Default::default()
        };
        let r = record_from_status("s", s, Some(&prev));
        assert!(r.state_changed_at > 43);
    }

    #[test]
    fn labels_are_validated() {
        let mut m = std::collections::HashMap::new();
        m.insert("mode".to_owned(), "ctf".to_owned());
        assert!(check_labels("labels", &m).is_ok());
        m.insert("bad key".to_owned(), "x".to_owned());
        assert!(check_labels("labels", &m).is_err());
        assert!(check_id("id", "").is_err());
        assert!(check_id("id", &"x".repeat(200)).is_err());
    }
}
