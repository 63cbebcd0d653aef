//! The Agones SDK, served per instance to games written against an Agones client SDK: each
//! instance whose build says `sdk = "agones"` gets its own loopback port pair (gRPC in
//! `AGONES_SDK_GRPC_PORT`, HTTP/JSON in `AGONES_SDK_HTTP_PORT`), kept in its record for its
//! whole life. The port names the instance; since Agones clients send no secret, each call is
//! admitted only from one of the instance's own processes ([`peer`]).
//!
//! The calls are the shared SDK [`Core`]'s, so the Agones face cannot drift from Exile's own:
//! Ready, Allocate, Reserve, Shutdown, Health and labels act on the instance the same way.
//! Agones' counters and lists (its beta SDK) are those the build's manifest declares, kept in
//! the instance's record and changed only by its actor, like player tracking.
//! [`Host`] keeps one pair of listeners per such instance, opened as the manager reports the
//! instance and closed when it is removed.

pub mod grpc;
pub mod http;
pub mod json;
pub mod peer;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use exile_api::agones as pb;
use exile_api::agones::beta as beta_pb;
use exile_api::counts::{Counter, CounterUpdate, Counts, List, ListUpdate};
use exile_api::v1;
use tokio_util::sync::CancellationToken;
use tracing::instrument::WithSubscriber;

use crate::error::{Error, Result};
use crate::manager::Manager;
use crate::sdk::{Core, Who};

/// Prefix Agones puts before the keys a game sets through SetLabel and SetAnnotation.
pub const SDK_KEY_PREFIX: &str = "agones.dev/sdk-";

/// Longest reservation a game may ask for, seconds; Agones' "0 = until told otherwise" is
/// taken as this long.
const MAX_RESERVE_SECS: i64 = 86_400;

/// How many times (50 ms apart) a call that comes while the instance is still Starting waits
/// for the game's pid to be recorded.
const LAUNCH_WAIT_POLLS: u32 = 60;

/// What every instance's endpoint shares.
#[derive(Debug, Clone)]
pub struct HostSettings {
    /// `namespace` of the GameServer: the spawner's region.
    pub namespace: String,
    /// `status.address` of the GameServer: the address players reach the host at.
    pub address: String,
}

/// One instance's Agones endpoint: the calls of both front ends, each admitted only from one
/// of the instance's processes.
#[derive(Debug, Clone)]
pub struct Endpoint {
    core: Core,
    id: Arc<str>,
    settings: Arc<HostSettings>,
}

impl Endpoint {
    fn who(&self) -> Who<'_> {
        Who::Instance(&self.id)
    }

    /// Admits a call that came from `peer` to our `ours`, or refuses it (and logs who it was)
    /// unless one of the instance's own processes made it.
    pub async fn admit(&self, peer: Option<SocketAddr>, ours: Option<SocketAddr>) -> Result<()> {
        let (Some(peer), Some(ours)) = (peer, ours) else {
            return Err(Error::PermissionDenied(
                "the caller's address is unknown, so it cannot be checked".into(),
            ));
        };
        let mut rec = self.core.manager.get(&self.id).await?;
        // A game may call before the spawner has recorded the pid of its launch.
        for _ in 0..LAUNCH_WAIT_POLLS {
            if rec.pid.is_some() || rec.state != crate::state::State::Starting {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            rec = self.core.manager.get(&self.id).await?;
        }
        let game = rec.pid;
        let verdict = tokio::task::spawn_blocking(move || peer::identify(peer, ours, game))
            .await
            .map_err(|e| Error::Internal(format!("the caller check failed: {e}")))?;
        match verdict {
            peer::Caller::Instance(_) => Ok(()),
            peer::Caller::Outsider(pid) => {
                tracing::warn!(instance = %self.id, %peer, caller_pid = pid, "Agones SDK call refused: the caller is not one of the instance's processes");
                Err(Error::PermissionDenied(format!(
                    "process {pid} is not one of instance {}'s processes; only they may use its Agones SDK port",
                    self.id
                )))
            }
            peer::Caller::Unknown => {
                tracing::warn!(instance = %self.id, %peer, "Agones SDK call refused: no visible process holds the caller's socket");
                Err(Error::PermissionDenied(format!(
                    "the caller is not one of instance {}'s processes; only they may use its Agones SDK port",
                    self.id
                )))
            }
        }
    }

    /// The instance as a GameServer, now.
    pub async fn game_server(&self) -> Result<pb::GameServer> {
        let rec = self.core.manager.get(&self.id).await?;
        Ok(game_server(
            &rec.to_status(),
            rec.health,
            &rec.agones_counts,
            &self.settings,
        ))
    }

    /// Ready: the instance becomes Ready.
    pub async fn ready(&self) -> Result<()> {
        self.core.ready(self.who()).await.map(drop)
    }

    /// Allocate: the instance becomes Allocated.
    pub async fn allocate(&self) -> Result<()> {
        self.core.allocate(self.who()).await.map(drop)
    }

    /// Shutdown: the instance is stopped, as asked.
    pub async fn shutdown(&self) -> Result<()> {
        self.core.shutdown(self.who()).await
    }

    /// One health ping.
    pub async fn health(&self) -> Result<()> {
        self.core.health(self.who()).await
    }

    /// Sets label `agones.dev/sdk-<key>`; an empty value removes it.
    pub async fn set_label(&self, key: &str, value: String) -> Result<()> {
        let key = format!("{SDK_KEY_PREFIX}{key}");
        self.core.set_label(self.who(), key, value).await.map(drop)
    }

    /// Sets annotation `agones.dev/sdk-<key>`; an empty value removes it.
    pub async fn set_annotation(&self, key: &str, value: String) -> Result<()> {
        let key = format!("{SDK_KEY_PREFIX}{key}");
        self.core
            .set_annotation(self.who(), key, value)
            .await
            .map(drop)
    }

    /// Reserved for `seconds` (0: the longest reservation there is).
    pub async fn reserve(&self, seconds: i64) -> Result<()> {
        let seconds = match seconds {
            0 => MAX_RESERVE_SECS,
            s if (1..=MAX_RESERVE_SECS).contains(&s) => s,
            s => {
                return Err(Error::InvalidArgument(format!(
                    "seconds must be 0 to {MAX_RESERVE_SECS}, not {s}"
                )));
            }
        };
        let seconds = u32::try_from(seconds).unwrap_or(u32::MAX);
        self.core.reserve(self.who(), seconds).await.map(drop)
    }

    /// The instance as a GameServer now, then after every change (counters and lists
    /// included: each of their changes is one).
    pub async fn watch(
        &self,
    ) -> Result<impl futures::Stream<Item = pb::GameServer> + Send + 'static> {
        use futures::StreamExt;
        let rec = self.core.manager.get(&self.id).await?;
        let views = self.core.watch(self.who()).await?;
        let settings = self.settings.clone();
        let health = rec.health;
        let manager = self.core.manager.clone();
        let id = self.id.clone();
        Ok(views.then(move |status| {
            let (manager, id, settings) = (manager.clone(), id.clone(), settings.clone());
            async move {
                // The link's status does not carry the counters and lists (they stay on this
                // host); the record, at least as new as `status`, does.
                let counts = match manager.get(&id).await {
                    Ok(rec) => rec.agones_counts,
                    Err(_) => Default::default(),
                };
                game_server(&status, health, &counts, &settings)
            }
        }))
    }

    /// Counters: one counter.
    pub async fn counter(&self, name: &str) -> Result<beta_pb::Counter> {
        let rec = self.core.caller(self.who()).await?;
        let counter = rec.agones_counts.counter(name)?;
        Ok(counter_pb(name, counter))
    }

    /// Counters: applies `update` to counter `name` and returns it.
    pub async fn update_counter(
        &self,
        name: String,
        update: CounterUpdate,
    ) -> Result<beta_pb::Counter> {
        let call = crate::instance::SdkCall::UpdateCounter {
            name: name.clone(),
            update,
        };
        let rec = self.core.manager.sdk(&self.id, call).await?;
        Ok(counter_pb(&name, rec.agones_counts.counter(&name)?))
    }

    /// Lists: one list.
    pub async fn list(&self, name: &str) -> Result<beta_pb::List> {
        let rec = self.core.caller(self.who()).await?;
        Ok(list_pb(name, rec.agones_counts.list(name)?))
    }

    /// Lists: applies `update` to list `name` and returns it.
    pub async fn update_list(&self, name: String, update: ListUpdate) -> Result<beta_pb::List> {
        let call = crate::instance::SdkCall::UpdateList {
            name: name.clone(),
            update,
        };
        self.list_after(name, call).await
    }

    /// Lists: appends `value` to list `name` and returns it.
    pub async fn add_list_value(&self, name: String, value: String) -> Result<beta_pb::List> {
        let call = crate::instance::SdkCall::AddListValue {
            name: name.clone(),
            value,
        };
        self.list_after(name, call).await
    }

    /// Lists: removes `value` from list `name` and returns it.
    pub async fn remove_list_value(&self, name: String, value: String) -> Result<beta_pb::List> {
        let call = crate::instance::SdkCall::RemoveListValue {
            name: name.clone(),
            value,
        };
        self.list_after(name, call).await
    }

    /// List `name` as `call`, applied by the instance's actor, left it.
    async fn list_after(
        &self,
        name: String,
        call: crate::instance::SdkCall,
    ) -> Result<beta_pb::List> {
        let rec = self.core.manager.sdk(&self.id, call).await?;
        Ok(list_pb(&name, rec.agones_counts.list(&name)?))
    }

    /// Player tracking: adds `id`; false when it was connected already.
    pub async fn player_connect(&self, id: String) -> Result<bool> {
        let before = self.core.caller(self.who()).await?;
        if before.player_ids.contains(&id) {
            return Ok(false);
        }
        let call = crate::instance::SdkCall::PlayerConnect { id };
        self.core.apply(self.who(), call).await.map(|_| true)
    }

    /// Player tracking: removes `id`; false when it was not connected.
    pub async fn player_disconnect(&self, id: String) -> Result<bool> {
        let before = self.core.caller(self.who()).await?;
        if !before.player_ids.contains(&id) {
            return Ok(false);
        }
        let call = crate::instance::SdkCall::PlayerDisconnect { id };
        self.core.apply(self.who(), call).await.map(|_| true)
    }

    /// Player tracking: sets the capacity.
    pub async fn set_player_capacity(&self, capacity: i64) -> Result<()> {
        let capacity = u32::try_from(capacity).map_err(|_| {
            Error::InvalidArgument(format!("count must be 0 to {}, not {capacity}", u32::MAX))
        })?;
        let call = crate::instance::SdkCall::PlayerCapacity { capacity };
        self.core.apply(self.who(), call).await.map(drop)
    }

    /// Player tracking: the capacity, the count, the ids.
    pub async fn players(&self) -> Result<(i64, Vec<String>)> {
        let rec = self.core.caller(self.who()).await?;
        Ok((i64::from(rec.max_players), rec.player_ids))
    }
}

/// A counter as Agones' beta SDK answers it.
fn counter_pb(name: &str, c: Counter) -> beta_pb::Counter {
    beta_pb::Counter {
        name: name.to_owned(),
        count: c.count,
        capacity: c.capacity,
    }
}

/// A list as Agones' beta SDK answers it.
fn list_pb(name: &str, l: &List) -> beta_pb::List {
    beta_pb::List {
        name: name.to_owned(),
        capacity: l.capacity,
        values: l.values.clone(),
    }
}

/// The Agones word for an instance state.
pub fn state_name(state: v1::InstanceState, reserved: bool) -> &'static str {
    use v1::InstanceState as S;
    match state {
        S::Starting => "Creating",
        // Up, not Ready yet: where an Agones game sits until it calls Ready.
        S::Running => "Scheduled",
        S::Ready => "Ready",
        S::Allocated if reserved => "Reserved",
        S::Allocated => "Allocated",
        S::Unhealthy | S::Crashed => "Unhealthy",
        S::Stopping | S::Stopped => "Shutdown",
        S::Unknown | S::Unspecified => "Unknown",
    }
}

/// A GameServer view of an instance: name and uid the instance id, namespace the region,
/// labels and annotations the instance's, state in Agones' words, ports by name, players,
/// counters and lists.
pub fn game_server(
    status: &v1::InstanceStatus,
    health: Option<crate::health::HealthCheck>,
    counts: &Counts,
    settings: &HostSettings,
) -> pb::GameServer {
    use pb::game_server::{ObjectMeta, Spec, Status, spec, status as st};
    let revision = i64::try_from(status.revision).unwrap_or(i64::MAX);
    let deleting = matches!(
        status.state(),
        v1::InstanceState::Stopping | v1::InstanceState::Stopped
    );
    let health = health.map(|h| spec::Health {
        disabled: false,
        period_seconds: secs(h.period),
        failure_threshold: i32::try_from(h.failure_threshold).unwrap_or(i32::MAX),
        initial_delay_seconds: secs(h.initial_delay),
    });
    pb::GameServer {
        object_meta: Some(ObjectMeta {
            name: status.id.clone(),
            namespace: settings.namespace.clone(),
            uid: status.id.clone(),
            resource_version: status.revision.to_string(),
            generation: revision,
            creation_timestamp: status.started_at_unix_ms / 1000,
            deletion_timestamp: if deleting {
                exile_api::now_unix_ms() / 1000
            } else {
                0
            },
            annotations: status.annotations.clone(),
            labels: status.labels.clone(),
        }),
        spec: Some(Spec { health }),
        status: Some(Status {
            state: state_name(status.state(), status.reserved_until_unix_ms != 0).to_owned(),
            address: settings.address.clone(),
            ports: status
                .ports
                .iter()
                .map(|p| st::Port {
                    name: p.name.clone(),
                    port: i32::try_from(p.port).unwrap_or(0),
                })
                .collect(),
            players: Some(st::PlayerStatus {
                count: i64::from(status.players),
                capacity: i64::from(status.max_players),
                ids: Vec::new(),
            }),
            counters: (counts.counters.iter())
                .map(|(name, c)| {
                    let counter = st::CounterStatus {
                        count: c.count,
                        capacity: c.capacity,
                    };
                    (name.clone(), counter)
                })
                .collect(),
            lists: (counts.lists.iter())
                .map(|(name, l)| {
                    let list = st::ListStatus {
                        capacity: l.capacity,
                        values: l.values.clone(),
                    };
                    (name.clone(), list)
                })
                .collect(),
            addresses: vec![st::Address {
                r#type: "ExternalIP".into(),
                address: settings.address.clone(),
            }],
        }),
    }
}

/// Whole seconds of a duration, for the Agones health spec.
fn secs(d: std::time::Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}

/// Keeps an Agones endpoint open for every instance that has Agones ports, for as long as the
/// instance exists.
pub struct Host {
    manager: Manager,
    settings: Arc<HostSettings>,
    shutdown: CancellationToken,
    served: HashMap<String, Served>,
}

/// One instance's open endpoint.
struct Served {
    ports: (u16, u16),
    stop: CancellationToken,
}

impl Host {
    /// A host over `manager`'s instances; nothing is served until [`Host::run`].
    pub fn new(manager: Manager, settings: HostSettings, shutdown: CancellationToken) -> Self {
        Self {
            manager,
            settings: Arc::new(settings),
            shutdown,
            served: HashMap::new(),
        }
    }

    /// Serves every instance's endpoint until `shutdown` is cancelled: the instances there are
    /// now, then those the manager reports later; an endpoint closes with its instance.
    pub async fn run(mut self) -> Result<()> {
        use tokio::sync::broadcast::error::RecvError;
        let mut events = self.manager.subscribe();
        for rec in self.manager.list().await? {
            self.keep(&rec.to_status(), false);
        }
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break,
                event = events.recv() => match event {
                    Ok(v1::InstanceEvent { status: Some(status), removed }) => {
                        self.keep(&status, removed);
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => {
                        // Events were missed: take the whole list again.
                        if let Ok(records) = self.manager.list().await {
                            let live: Vec<String> = records.iter().map(|r| r.id.clone()).collect();
                            self.served.retain(|id, s| {
                                let keep = live.contains(id);
                                if !keep {
                                    s.stop.cancel();
                                }
                                keep
                            });
                            for rec in records {
                                self.keep(&rec.to_status(), false);
                            }
                        }
                    }
                    Err(RecvError::Closed) => break,
                },
            }
        }
        for served in self.served.values() {
            served.stop.cancel();
        }
        Ok(())
    }

    /// Opens the endpoint of an instance that has Agones ports (if not open already), or
    /// closes it once the instance is removed.
    fn keep(&mut self, status: &v1::InstanceStatus, removed: bool) {
        let ports = (
            u16::try_from(status.agones_grpc_port).unwrap_or(0),
            u16::try_from(status.agones_http_port).unwrap_or(0),
        );
        if removed || ports.0 == 0 || ports.1 == 0 {
            if let Some(served) = self.served.remove(&status.id) {
                served.stop.cancel();
            }
            return;
        }
        if self
            .served
            .get(&status.id)
            .is_some_and(|s| s.ports == ports)
        {
            return;
        }
        if let Some(old) = self.served.remove(&status.id) {
            old.stop.cancel();
        }
        match self.open(&status.id, ports) {
            Ok(stop) => {
                tracing::info!(instance = %status.id, grpc = ports.0, http = ports.1, "Agones SDK endpoint open");
                self.served
                    .insert(status.id.clone(), Served { ports, stop });
            }
            // Tried again on the instance's next change.
            Err(e) => {
                tracing::error!(instance = %status.id, error = %e, "could not open the instance's Agones SDK ports; its game cannot reach the Agones SDK");
            }
        }
    }

    fn open(&self, id: &str, (grpc_port, http_port): (u16, u16)) -> Result<CancellationToken> {
        let bind = |port: u16| {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            std::net::TcpListener::bind(addr)
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .and_then(tokio::net::TcpListener::from_std)
                .map_err(|e| Error::Config(format!("could not listen on {addr}: {e}")))
        };
        let grpc_listener = bind(grpc_port)?;
        let http_listener = bind(http_port)?;
        let stop = self.shutdown.child_token();
        let endpoint = Endpoint {
            core: Core {
                manager: self.manager.clone(),
                shutdown: stop.clone(),
            },
            id: Arc::from(id),
            settings: self.settings.clone(),
        };
        let instance = id.to_owned();
        let serve_grpc = grpc::serve(grpc_listener, endpoint.clone(), stop.clone());
        let serve_http = http::serve(http_listener, endpoint, stop.clone());
        tokio::spawn(
            async move {
                let (g, h) = tokio::join!(serve_grpc, serve_http);
                for result in [g, h] {
                    if let Err(e) = result {
                        tracing::error!(instance = %instance, error = %e, "Agones SDK endpoint failed");
                    }
                }
            }
            .with_current_subscriber(),
        );
        Ok(stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> HostSettings {
        HostSettings {
            namespace: "eu".into(),
            address: "203.0.113.7".into(),
        }
    }

    #[test]
    fn states_read_in_agones_words() {
        use v1::InstanceState as S;
        assert_eq!(state_name(S::Running, false), "Scheduled");
        assert_eq!(state_name(S::Ready, false), "Ready");
        assert_eq!(state_name(S::Allocated, false), "Allocated");
        assert_eq!(state_name(S::Allocated, true), "Reserved");
        assert_eq!(state_name(S::Stopping, false), "Shutdown");
        assert_eq!(state_name(S::Stopped, false), "Shutdown");
        assert_eq!(state_name(S::Crashed, false), "Unhealthy");
    }

    #[test]
    fn the_game_server_is_the_instance() {
        let status = v1::InstanceStatus {
            id: "g-1".into(),
            state: v1::InstanceState::Allocated.into(),
            ports: vec![v1::Port {
                name: "game".into(),
                port: 7777,
                protocol: v1::Protocol::Udp.into(),
            }],
            labels: [("agones.dev/sdk-map".to_owned(), "dust".to_owned())].into(),
            annotations: [("agones.dev/sdk-round".to_owned(), "3".to_owned())].into(),
            players: 2,
            max_players: 8,
            revision: 12,
            started_at_unix_ms: 1_700_000_000_123,
            reserved_until_unix_ms: 1_700_000_100_000,
            ..Default::default()
        };
        let health = crate::health::HealthCheck::default();
        let counts = Counts {
            counters: [(
                "rooms".to_owned(),
                Counter {
                    count: 2,
                    capacity: 5,
                },
            )]
            .into(),
            lists: [(
                "players".to_owned(),
                List {
                    capacity: 8,
                    values: vec!["p1".into()],
                },
            )]
            .into(),
        };
        let gs = game_server(&status, Some(health), &counts, &settings());
        let meta = gs.object_meta.unwrap();
        assert_eq!((meta.name.as_str(), meta.namespace.as_str()), ("g-1", "eu"));
        assert_eq!(meta.resource_version, "12");
        assert_eq!(meta.creation_timestamp, 1_700_000_000);
        assert_eq!(meta.labels["agones.dev/sdk-map"], "dust");
        assert_eq!(meta.annotations["agones.dev/sdk-round"], "3");
        let st = gs.status.unwrap();
        assert_eq!(st.state, "Reserved");
        assert_eq!(st.address, "203.0.113.7");
        assert_eq!(
            (st.ports[0].name.as_str(), st.ports[0].port),
            ("game", 7777)
        );
        let players = st.players.unwrap();
        assert_eq!((players.count, players.capacity), (2, 8));
        assert_eq!(
            (st.counters["rooms"].count, st.counters["rooms"].capacity),
            (2, 5)
        );
        assert_eq!(st.lists["players"].capacity, 8);
        assert_eq!(st.lists["players"].values, ["p1"]);
        let h = gs.spec.unwrap().health.unwrap();
        assert_eq!(
            h.failure_threshold,
            i32::try_from(health.failure_threshold).unwrap()
        );
    }
}
