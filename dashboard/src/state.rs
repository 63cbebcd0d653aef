//! Pure view-model reducers: the live picture built from `EventService.Watch` (snapshot, then
//! deltas), the figures the pages show, and the reconnect backoff. No browser APIs here, so
//! all of it is unit-tested on the host.

use std::collections::BTreeMap;

use exile_api::v1 as pb;
use pb::watch_event::Kind;

/// What the top-consumers list ranks by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consumption {
    /// CPU percent of one core.
    Cpu,
    /// Resident memory.
    Memory,
}

/// What the dashboard knows about the fleet, kept current by the watch stream.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fleet {
    /// Spawners by id.
    pub spawners: BTreeMap<String, pb::Spawner>,
    /// Instances by id.
    pub instances: BTreeMap<String, pb::Instance>,
    /// Uploaded builds by id.
    pub builds: BTreeMap<String, pb::Build>,
    /// Rollouts by id (running ones, and the newest of each build name).
    pub rollouts: BTreeMap<String, pb::Rollout>,
    /// Fleets by name.
    pub fleets: BTreeMap<String, pb::Fleet>,
    /// True once a snapshot arrived on the current stream.
    pub loaded: bool,
    /// Sequence number of the last event applied.
    pub sequence: u64,
}

impl Fleet {
    /// Applies one watch event. A snapshot replaces everything (it follows every
    /// (re)connect, so nothing stale survives a master restart); deltas patch one entry.
    pub fn apply(&mut self, ev: pb::WatchEvent) {
        self.sequence = ev.sequence;
        match ev.kind {
            Some(Kind::Snapshot(s)) => {
                self.spawners = s.spawners.into_iter().map(|x| (x.id.clone(), x)).collect();
                self.instances = s.instances.into_iter().map(|x| (x.id.clone(), x)).collect();
                self.builds = s.builds.into_iter().map(|x| (x.id.clone(), x)).collect();
                self.rollouts = s.rollouts.into_iter().map(|x| (x.id.clone(), x)).collect();
                self.fleets = s.fleets.into_iter().map(|x| (x.name.clone(), x)).collect();
                self.loaded = true;
            }
            Some(Kind::SpawnerUpdated(s)) => {
                self.spawners.insert(s.id.clone(), s);
            }
            Some(Kind::SpawnerMetrics(s)) => {
                // Metrics carry the newest resources; keep any other field we already have.
                match self.spawners.get_mut(&s.id) {
                    Some(known) => known.resources = s.resources,
                    None => {
                        self.spawners.insert(s.id.clone(), s);
                    }
                }
            }
            Some(Kind::SpawnerRemoved(id)) => {
                self.spawners.remove(&id);
                self.instances.retain(|_, i| i.spawner_id != id);
            }
            Some(Kind::InstanceUpdated(i)) => {
                self.instances.insert(i.id.clone(), i);
            }
            Some(Kind::InstanceRemoved(id)) => {
                self.instances.remove(&id);
            }
            Some(Kind::BuildUpdated(b)) => {
                self.builds.insert(b.id.clone(), b);
            }
            Some(Kind::BuildRemoved(id)) => {
                self.builds.remove(&id);
            }
            Some(Kind::RolloutUpdated(r)) => {
                self.rollouts.insert(r.id.clone(), r);
            }
            Some(Kind::FleetUpdated(f)) => {
                self.fleets.insert(f.name.clone(), f);
            }
            Some(Kind::FleetRemoved(name)) => {
                self.fleets.remove(&name);
            }
            // The new count also arrives as a FleetUpdated; this event only says who and why.
            Some(Kind::FleetScaled(_)) => {}
            // The server dropped events for us; the stream is restarted by the caller, which
            // brings a fresh snapshot.
            Some(Kind::Lagged(_)) | None => {}
        }
    }

    /// Instances of one spawner, oldest first.
    pub fn instances_of(&self, spawner_id: &str) -> Vec<pb::Instance> {
        let mut v: Vec<_> = self
            .instances
            .values()
            .filter(|i| i.spawner_id == spawner_id)
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            a.created_at_unix_ms
                .cmp(&b.created_at_unix_ms)
                .then(a.id.cmp(&b.id))
        });
        v
    }

    /// The `n` instances with a live process using the most CPU (or memory), biggest first.
    pub fn top_consumers(&self, by: Consumption, n: usize) -> Vec<pb::Instance> {
        let key = |i: &pb::Instance| {
            let r = i.resources.unwrap_or_default();
            match by {
                Consumption::Cpu => r.cpu_percent,
                Consumption::Memory => r.memory_bytes as f64,
            }
        };
        let mut v: Vec<_> = self
            .instances
            .values()
            .filter(|i| instance_is_live(i.state) && i.resources.is_some())
            .cloned()
            .collect();
        v.sort_by(|a, b| key(b).total_cmp(&key(a)).then(a.id.cmp(&b.id)));
        v.truncate(n);
        v
    }

    /// Instances of fleet `name` (by the label every fleet instance carries), oldest first.
    pub fn instances_of_fleet(&self, name: &str) -> Vec<pb::Instance> {
        let mut v: Vec<_> = self
            .instances
            .values()
            .filter(|i| {
                i.labels
                    .get(exile_api::fleet::FLEET_LABEL)
                    .map(String::as_str)
                    == Some(name)
            })
            .cloned()
            .collect();
        v.sort_by(|a, b| {
            a.created_at_unix_ms
                .cmp(&b.created_at_unix_ms)
                .then(a.id.cmp(&b.id))
        });
        v
    }

    /// Spawners sorted by name.
    pub fn spawners_sorted(&self) -> Vec<pb::Spawner> {
        let mut v: Vec<_> = self.spawners.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        v
    }

    /// Counts for the stats cards.
    pub fn counts(&self) -> Counts {
        Counts {
            spawners_total: self.spawners.len(),
            spawners_online: self
                .spawners
                .values()
                .filter(|s| pb::SpawnerState::from_wire(s.state).is_attached())
                .count(),
            instances_total: self.instances.len(),
            instances_running: self
                .instances
                .values()
                .filter(|i| instance_is_live(i.state))
                .count(),
            players: self.instances.values().map(|i| u64::from(i.players)).sum(),
        }
    }
}

/// Figures derived from the fleet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Spawners known.
    pub spawners_total: usize,
    /// Spawners online or draining.
    pub spawners_online: usize,
    /// Instances known.
    pub instances_total: usize,
    /// Instances with a live process.
    pub instances_running: usize,
    /// Players connected.
    pub players: u64,
}

/// True for states with a live game-server process (Unhealthy and Stopping included: the
/// game still runs).
pub fn instance_is_live(state: i32) -> bool {
    pb::InstanceState::from_wire(state).has_process()
}

/// Human name of a spawner state.
pub fn spawner_state_label(state: i32) -> &'static str {
    match pb::SpawnerState::try_from(state) {
        Ok(pb::SpawnerState::Online) => "Online",
        Ok(pb::SpawnerState::Draining) => "Draining",
        Ok(pb::SpawnerState::Unreachable) => "Unreachable",
        Ok(pb::SpawnerState::Offline) => "Offline",
        _ => "Unknown",
    }
}

/// Human name of an instance state.
pub fn instance_state_label(state: i32) -> &'static str {
    match pb::InstanceState::try_from(state) {
        Ok(pb::InstanceState::Starting) => "Starting",
        Ok(pb::InstanceState::Running) => "Running",
        Ok(pb::InstanceState::Ready) => "Ready",
        Ok(pb::InstanceState::Allocated) => "Allocated",
        Ok(pb::InstanceState::Stopping) => "Stopping",
        Ok(pb::InstanceState::Stopped) => "Stopped",
        Ok(pb::InstanceState::Crashed) => "Crashed",
        Ok(pb::InstanceState::Unhealthy) => "Unhealthy",
        _ => "Unknown",
    }
}

/// Colour class of a state badge: `ok`, `warn`, `bad` or `idle`.
pub fn state_tone(label: &str) -> &'static str {
    match label {
        "Online" | "Running" | "Ready" | "Allocated" => "ok",
        "Draining" | "Starting" | "Stopping" | "Unknown" => "warn",
        "Unreachable" | "Crashed" | "Unhealthy" => "bad",
        _ => "idle",
    }
}

// Figures read the same here as in exilectl: one home for how they are written.
pub use exile_api::format::{
    bytes as format_bytes, cpu_share as host_cpu_percent, duration as format_duration,
    percent_of as percent,
};

/// Uptime of an instance at `now_ms`, or "—" when it has no live process.
pub fn instance_uptime(i: &pb::Instance, now_ms: i64) -> String {
    if !instance_is_live(i.state) || i.started_at_unix_ms <= 0 {
        return "—".into();
    }
    let secs = (now_ms - i.started_at_unix_ms).max(0) / 1000;
    format_duration(u64::try_from(secs).unwrap_or(0))
}

/// Delay before reconnect attempt `attempt` (0-based): 500 ms doubling up to 10 s.
pub fn backoff_ms(attempt: u32) -> u32 {
    500u32.saturating_mul(1u32 << attempt.min(5)).min(10_000)
}

/// Parses "k=v, k2=v2" into labels; blank input is no labels. Errors name the bad part.
pub fn parse_labels(s: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                out.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            _ => return Err(format!("label \"{part}\" is not key=value")),
        }
    }
    Ok(out)
}

/// Connection state of the watch stream plus the fleet it feeds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Live {
    /// The fleet as last seen.
    pub fleet: Fleet,
    /// A snapshot arrived on the current stream.
    pub connected: bool,
    /// The stream broke and is being re-established (the UI shows a banner).
    pub reconnecting: bool,
}

/// What can happen to the watch stream.
#[derive(Clone, Debug, PartialEq)]
pub enum LiveAction {
    /// An event arrived (boxed: a snapshot is far larger than the other variants).
    Event(Box<pb::WatchEvent>),
    /// The stream ended or could not be opened; a retry is scheduled.
    Disconnected,
    /// Logged out: forget everything.
    Reset,
}

impl Live {
    /// Pure transition.
    pub fn next(mut self, action: LiveAction) -> Live {
        match action {
            LiveAction::Event(ev) => {
                let ev = *ev;
                if matches!(ev.kind, Some(Kind::Snapshot(_))) {
                    self.connected = true;
                    self.reconnecting = false;
                }
                self.fleet.apply(ev);
            }
            LiveAction::Disconnected => {
                self.connected = false;
                self.reconnecting = true;
            }
            LiveAction::Reset => self = Live::default(),
        }
        self
    }
}

impl yew::Reducible for Live {
    type Action = LiveAction;

    fn reduce(self: std::rc::Rc<Self>, action: LiveAction) -> std::rc::Rc<Self> {
        std::rc::Rc::new((*self).clone().next(action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spawner(id: &str, state: pb::SpawnerState) -> pb::Spawner {
        pb::Spawner {
            id: id.into(),
            name: format!("name-{id}"),
            state: state as i32,
            ..Default::default()
        }
    }

    fn instance(id: &str, spawner: &str, state: pb::InstanceState) -> pb::Instance {
        pb::Instance {
            id: id.into(),
            spawner_id: spawner.into(),
            state: state as i32,
            ..Default::default()
        }
    }

    fn ev(seq: u64, kind: Kind) -> pb::WatchEvent {
        pb::WatchEvent {
            sequence: seq,
            at_unix_ms: 0,
            kind: Some(kind),
        }
    }

    fn snapshot() -> pb::WatchEvent {
        ev(
            1,
            Kind::Snapshot(pb::Snapshot {
                spawners: vec![
                    spawner("a", pb::SpawnerState::Online),
                    spawner("b", pb::SpawnerState::Offline),
                ],
                instances: vec![
                    instance("i1", "a", pb::InstanceState::Running),
                    instance("i2", "a", pb::InstanceState::Stopped),
                    instance("i3", "b", pb::InstanceState::Ready),
                ],
                ..Default::default()
            }),
        )
    }

    #[test]
    fn snapshot_replaces_everything() {
        let mut f = Fleet::default();
        f.apply(ev(
            0,
            Kind::InstanceUpdated(instance("old", "x", pb::InstanceState::Running)),
        ));
        f.apply(snapshot());
        assert!(f.loaded);
        assert!(!f.instances.contains_key("old"));
        assert_eq!(f.spawners.len(), 2);
        assert_eq!(
            f.counts(),
            Counts {
                spawners_total: 2,
                spawners_online: 1,
                instances_total: 3,
                instances_running: 2,
                players: 0
            }
        );
    }

    #[test]
    fn deltas_patch_entries() {
        let mut f = Fleet::default();
        f.apply(snapshot());
        f.apply(ev(
            2,
            Kind::InstanceUpdated(instance("i2", "a", pb::InstanceState::Starting)),
        ));
        f.apply(ev(
            3,
            Kind::InstanceUpdated(instance("i4", "b", pb::InstanceState::Running)),
        ));
        f.apply(ev(4, Kind::InstanceRemoved("i1".into())));
        f.apply(ev(
            5,
            Kind::SpawnerUpdated(spawner("b", pb::SpawnerState::Online)),
        ));
        assert_eq!(f.sequence, 5);
        let c = f.counts();
        assert_eq!((c.instances_total, c.instances_running), (3, 3));
        assert_eq!(c.spawners_online, 2);
        let ids: Vec<_> = f.instances_of("b").into_iter().map(|i| i.id).collect();
        assert_eq!(ids, ["i3", "i4"]);
    }

    #[test]
    fn metrics_update_resources_only() {
        let mut f = Fleet::default();
        f.apply(snapshot());
        let mut m = pb::Spawner {
            id: "a".into(),
            resources: Some(pb::Resources {
                cpu_percent: 42.0,
                ..Default::default()
            }),
            ..Default::default()
        };
        m.name = String::new();
        f.apply(ev(2, Kind::SpawnerMetrics(m)));
        let a = &f.spawners["a"];
        assert_eq!(a.name, "name-a");
        assert_eq!(a.resources.as_ref().map(|r| r.cpu_percent), Some(42.0));
    }

    #[test]
    fn fleets_follow_the_stream() {
        let fleet = |name: &str, ready: u32| pb::Fleet {
            name: name.into(),
            status: Some(pb::FleetStatus {
                ready,
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut f = Fleet::default();
        f.apply(ev(
            1,
            Kind::Snapshot(pb::Snapshot {
                fleets: vec![fleet("a", 0), fleet("b", 1)],
                instances: vec![
                    pb::Instance {
                        labels: [(exile_api::fleet::FLEET_LABEL.to_owned(), "a".to_owned())].into(),
                        ..instance("i1", "s", pb::InstanceState::Ready)
                    },
                    instance("i2", "s", pb::InstanceState::Ready),
                ],
                ..Default::default()
            }),
        ));
        assert_eq!(f.fleets.len(), 2);
        f.apply(ev(2, Kind::FleetUpdated(fleet("a", 2))));
        f.apply(ev(3, Kind::FleetRemoved("b".into())));
        assert_eq!(f.fleets.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!(f.fleets["a"].status.as_ref().map(|s| s.ready), Some(2));
        let ids: Vec<_> = f
            .instances_of_fleet("a")
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["i1"]);
        assert!(f.instances_of_fleet("b").is_empty());
    }

    #[test]
    fn removing_a_spawner_drops_its_instances() {
        let mut f = Fleet::default();
        f.apply(snapshot());
        f.apply(ev(2, Kind::SpawnerRemoved("a".into())));
        assert_eq!(f.spawners.len(), 1);
        assert_eq!(f.instances.keys().collect::<Vec<_>>(), ["i3"]);
    }

    #[test]
    fn labels_and_tones() {
        assert_eq!(
            spawner_state_label(pb::SpawnerState::Online as i32),
            "Online"
        );
        assert_eq!(
            instance_state_label(pb::InstanceState::Stopped as i32),
            "Stopped"
        );
        assert_eq!(instance_state_label(99), "Unknown");
        assert_eq!(state_tone("Running"), "ok");
        assert_eq!(state_tone("Crashed"), "bad");
        assert_eq!(state_tone("Stopped"), "idle");
    }

    #[test]
    fn formatting() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(1536), "1.5 KiB");
        assert_eq!(format_bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
        assert_eq!(format_duration(42), "42s");
        assert_eq!(format_duration(312), "5m 12s");
        assert_eq!(format_duration(3 * 86_400 + 4 * 3_600), "3d 4h");
        assert_eq!(percent(1.0, 4.0), 25.0);
        assert_eq!(percent(5.0, 0.0), 0.0);
        assert_eq!(percent(9.0, 4.0), 100.0);
        let r = pb::Resources {
            cpu_percent: 150.0,
            cpu_count: 2,
            ..Default::default()
        };
        assert_eq!(host_cpu_percent(&r), 75.0);
    }

    #[test]
    fn uptime_only_for_live_instances() {
        let mut i = instance("i", "a", pb::InstanceState::Running);
        i.started_at_unix_ms = 1_000;
        assert_eq!(instance_uptime(&i, 62_000), "1m 1s");
        i.state = pb::InstanceState::Stopped as i32;
        assert_eq!(instance_uptime(&i, 62_000), "—");
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff_ms(0), 500);
        assert_eq!(backoff_ms(1), 1_000);
        assert_eq!(backoff_ms(4), 8_000);
        assert_eq!(backoff_ms(5), 10_000);
        assert_eq!(backoff_ms(60), 10_000);
    }

    #[test]
    fn labels_parse() {
        let l = parse_labels(" mode = ctf, map=dust ").unwrap();
        assert_eq!(l.get("mode").map(String::as_str), Some("ctf"));
        assert_eq!(l.len(), 2);
        assert!(parse_labels("").unwrap().is_empty());
        assert!(parse_labels("oops").unwrap_err().contains("oops"));
    }

    #[test]
    fn live_shows_reconnecting_until_a_snapshot() {
        let l = Live::default().next(LiveAction::Event(Box::new(snapshot())));
        assert!(l.connected && !l.reconnecting);
        let l = l.next(LiveAction::Disconnected);
        assert!(!l.connected && l.reconnecting);
        // Data stays on screen while reconnecting.
        assert_eq!(l.fleet.spawners.len(), 2);
        let l = l.next(LiveAction::Event(Box::new(ev(
            7,
            Kind::InstanceUpdated(instance("i9", "a", pb::InstanceState::Running)),
        ))));
        assert!(
            l.reconnecting,
            "a delta alone does not prove a fresh stream"
        );
        let l = l.next(LiveAction::Event(Box::new(snapshot())));
        assert!(l.connected && !l.reconnecting);
        assert_eq!(l.next(LiveAction::Reset), Live::default());
    }

    #[test]
    fn top_consumers_rank_live_instances() {
        let mut f = Fleet::default();
        let mut add = |id: &str, state: pb::InstanceState, cpu: f64, mem: u64| {
            let mut i = instance(id, "a", state);
            i.resources = Some(pb::Resources {
                cpu_percent: cpu,
                memory_bytes: mem,
                ..Default::default()
            });
            f.instances.insert(id.into(), i);
        };
        add("busy", pb::InstanceState::Running, 90.0, 10);
        add("fat", pb::InstanceState::Allocated, 5.0, 900);
        add("mid", pb::InstanceState::Ready, 40.0, 300);
        add("gone", pb::InstanceState::Stopped, 99.0, 999);
        f.instances.insert(
            "new".into(),
            instance("new", "a", pb::InstanceState::Running),
        );
        let ids = |v: Vec<pb::Instance>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(
            ids(f.top_consumers(Consumption::Cpu, 5)),
            ["busy", "mid", "fat"]
        );
        assert_eq!(ids(f.top_consumers(Consumption::Memory, 2)), ["fat", "mid"]);
    }
}
