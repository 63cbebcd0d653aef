//! The link to the master: one `Connect` stream at a time (hello, heartbeats, events, command
//! results out; welcome, commands, cancellations, config in), reconnected forever with backoff.

use std::collections::HashMap;
use std::time::Duration;

use exile_api::v1::spawner_link_client::SpawnerLinkClient;
use exile_api::v1::{self, master_message, spawner_message};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tracing::instrument::WithSubscriber;

use crate::backoff::Backoff;
use crate::builds::BuildStore;
use crate::commands;
use crate::config::{Config, host_name};
use crate::enroll::Credential;
use crate::error::{Error, Result};
use crate::manager::Manager;
use crate::metrics::Sampling;
use crate::own_log;

/// Heartbeat interval until the master's Welcome says otherwise.
const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(5000);
/// How long the master has to answer the hello.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(15);
/// Outgoing messages buffered per link.
const OUTBOX: usize = 1024;

/// A channel endpoint to the master with keepalive, so a dead master is noticed, and TLS
/// as `tls` says for an https:// master.
pub fn endpoint(master: &str, tls: &exile_api::tls::ClientTls) -> Result<Endpoint> {
    let endpoint =
        Endpoint::from_shared(master.to_owned()).map_err(|source| Error::MasterAddress {
            address: master.to_owned(),
            source,
        })?;
    let endpoint = tls.apply(endpoint).map_err(|source| Error::MasterAddress {
        address: master.to_owned(),
        source,
    })?;
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true))
}

/// Everything the link needs.
pub struct Link {
    config: Config,
    endpoint: Endpoint,
    credential: Credential,
    manager: Manager,
    builds: BuildStore,
    /// Started by [`Link::run`].
    sampling: Option<Sampling>,
    heartbeat: Duration,
}

/// How a session ended.
enum End {
    Shutdown,
    Failed {
        welcomed: bool,
        unauthenticated: bool,
        reason: String,
    },
}

fn failed(welcomed: bool, reason: impl Into<String>) -> End {
    End::Failed {
        welcomed,
        unauthenticated: false,
        reason: reason.into(),
    }
}

impl Link {
    /// A link for this spawner.
    pub fn new(
        config: Config,
        endpoint: Endpoint,
        credential: Credential,
        manager: Manager,
        builds: BuildStore,
    ) -> Self {
        Self {
            config,
            endpoint,
            credential,
            manager,
            builds,
            sampling: None,
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }

    /// Keeps a link up until `shutdown`; never gives up on its own.
    pub async fn run(mut self, shutdown: CancellationToken) {
        self.sampling = Some(Sampling::spawn(
            &self.config.data_dir,
            self.manager.clone(),
            self.heartbeat,
            shutdown.child_token(),
        ));
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
        let mut auth_backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        loop {
            let delay = match self.session(&shutdown).await {
                End::Shutdown => return,
                End::Failed {
                    welcomed,
                    unauthenticated,
                    reason,
                } => {
                    if welcomed {
                        backoff.reset();
                        auth_backoff.reset();
                    }
                    if unauthenticated {
                        let delay = auth_backoff.next_delay();
                        tracing::error!(
                            spawner_id = %self.credential.spawner_id,
                            ?delay,
                            "the master rejected this spawner's credential ({reason}); it may \
                             have been revoked. To enroll again, delete {} and restart with a new \
                             --enrollment-token. Retrying.",
                            Credential::path(&self.config.data_dir).display()
                        );
                        delay
                    } else {
                        let delay = backoff.next_delay();
                        tracing::warn!(%reason, ?delay, "link to the master lost, reconnecting");
                        delay
                    }
                }
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn hello(&self) -> Result<v1::Hello> {
        let instances = self.manager.list().await?;
        Ok(v1::Hello {
            region: self.config.region.clone(),
            host: host_name(),
            advertised_address: self.config.advertised_address.clone(),
            capacity: self.config.capacity,
            labels: self.config.label_map()?.into_iter().collect(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            // The host build's version; none without a host build (uploaded builds are
            // reported in `builds`).
            active_build: if self.config.build_command.is_some() {
                self.config.build_version.clone()
            } else {
                String::new()
            },
            instances: instances.iter().map(|r| r.to_status()).collect(),
            name: self.config.spawner_name(),
            builds: held_with_counts(self.builds.held(), &instances),
        })
    }

    async fn session(&mut self, shutdown: &CancellationToken) -> End {
        let channel = tokio::select! {
            channel = self.endpoint.connect() => match channel {
                Ok(channel) => channel,
                Err(e) => return failed(false, format!("could not reach the master: {e}")),
            },
            () = shutdown.cancelled() => return End::Shutdown,
        };
        // Subscribe before the snapshot so no change falls between the two.
        let mut events = self.manager.subscribe();
        let mut held = self.builds.subscribe();
        held.mark_unchanged();
        let hello = match self.hello().await {
            Ok(hello) => hello,
            Err(e) => return failed(false, format!("could not build the hello: {e}")),
        };
        let (tx, rx) = mpsc::channel(OUTBOX);
        let _ = tx.try_send(msg(spawner_message::Kind::Hello(hello)));
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        let bearer = format!("Bearer {}", self.credential.credential);
        match bearer.parse() {
            Ok(value) => {
                request.metadata_mut().insert("authorization", value);
            }
            Err(_) => {
                return End::Failed {
                    welcomed: false,
                    unauthenticated: true,
                    reason: "the stored credential holds characters not allowed in metadata".into(),
                };
            }
        }
        let mut client = SpawnerLinkClient::new(channel);
        let response = tokio::select! {
            response = client.link(request) => response,
            () = shutdown.cancelled() => return End::Shutdown,
        };
        let mut inbound = match response {
            Ok(response) => response.into_inner(),
            Err(status) => return status_end(false, &status),
        };
        let first = tokio::select! {
            first = tokio::time::timeout(WELCOME_TIMEOUT, inbound.message()) => first,
            () = shutdown.cancelled() => return End::Shutdown,
        };
        match first {
            Ok(Ok(Some(v1::MasterMessage {
                kind: Some(master_message::Kind::Welcome(welcome)),
            }))) => {
                if welcome.heartbeat_interval_ms > 0 {
                    self.heartbeat =
                        Duration::from_millis(u64::from(welcome.heartbeat_interval_ms));
                }
                if let Some(s) = &self.sampling {
                    s.set_period(self.heartbeat);
                }
                tracing::info!(spawner_id = %welcome.spawner_id, heartbeat = ?self.heartbeat, "linked to the master");
            }
            Ok(Ok(Some(other))) => {
                return failed(false, format!("expected a welcome, got {:?}", other.kind));
            }
            Ok(Ok(None)) => return failed(false, "the master closed the link before welcoming"),
            Ok(Err(status)) => return status_end(false, &status),
            Err(_) => return failed(false, "the master did not welcome within 15 s"),
        }

        let mut ticker = heartbeat_ticker(self.heartbeat);
        // What commands send (results, streamed chunks) passes through here, after the
        // instance events queued before it: the master never sees a command's result before
        // the state changes that led to it (a Stop's Stopping, then its Stopped).
        let (results, mut from_commands) = mpsc::channel::<v1::SpawnerMessage>(OUTBOX);
        let mut running: HashMap<u64, CancellationToken> = HashMap::new();
        let mut tasks: JoinSet<u64> = JoinSet::new();
        let end = loop {
            tokio::select! {
                () = shutdown.cancelled() => break End::Shutdown,
                _ = ticker.tick() => {
                    let heartbeat = self.heartbeat_message().await;
                    // A full outbox means the master is not reading; skip rather than stall.
                    if tx.try_send(msg(spawner_message::Kind::Heartbeat(heartbeat))).is_err() {
                        tracing::debug!("outbox full, heartbeat skipped");
                    }
                }
                event = events.recv() => match event {
                    Ok(event) => {
                        if tx.send(msg(spawner_message::Kind::InstanceEvent(event))).await.is_err() {
                            break failed(true, "the outgoing stream closed");
                        }
                    }
                    // A fresh hello carries the full snapshot, which beats replaying.
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        break failed(true, format!("{n} instance events were dropped; resyncing"));
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        break failed(true, "the instance manager stopped");
                    }
                },
                // The store outlives the link, so `changed` never fails here.
                Ok(()) = held.changed() => {
                    let instances = self.manager.list().await.unwrap_or_default();
                    let builds = v1::BuildsHeld {
                        builds: held_with_counts(self.builds.held(), &instances),
                    };
                    if tx.send(msg(spawner_message::Kind::BuildsHeld(builds))).await.is_err() {
                        break failed(true, "the outgoing stream closed");
                    }
                }
                Some(out) = from_commands.recv() => {
                    let mut lost = None;
                    loop {
                        match events.try_recv() {
                            Ok(event) => {
                                if tx.send(msg(spawner_message::Kind::InstanceEvent(event))).await.is_err() {
                                    lost = Some("the outgoing stream closed".to_owned());
                                    break;
                                }
                            }
                            Err(broadcast::error::TryRecvError::Empty) => break,
                            Err(broadcast::error::TryRecvError::Lagged(n)) => {
                                lost = Some(format!("{n} instance events were dropped; resyncing"));
                                break;
                            }
                            Err(broadcast::error::TryRecvError::Closed) => {
                                lost = Some("the instance manager stopped".to_owned());
                                break;
                            }
                        }
                    }
                    if let Some(why) = lost {
                        break failed(true, why);
                    }
                    if tx.send(out).await.is_err() {
                        break failed(true, "the outgoing stream closed");
                    }
                }
                message = inbound.message() => match message {
                    Ok(Some(message)) => {
                        if let Some(new) = self.on_master_message(message, &results, &mut running, &mut tasks) {
                            ticker = heartbeat_ticker(new);
                        }
                    }
                    Ok(None) => break failed(true, "the master closed the link"),
                    Err(status) => break status_end(true, &status),
                },
                Some(done) = tasks.join_next() => {
                    if let Ok(request_id) = done {
                        running.remove(&request_id);
                    }
                }
            }
        };
        // Commands already running finish on their own; their results are lost with this
        // stream, and the next hello reports the outcome.
        drop(tx);
        if matches!(end, End::Shutdown) {
            // Give the master a moment to see our half-close as a clean end.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while let Ok(Some(_)) = inbound.message().await {}
            })
            .await;
        }
        end
    }

    /// Handles one master message; returns a new heartbeat interval when it changed.
    fn on_master_message(
        &mut self,
        message: v1::MasterMessage,
        tx: &mpsc::Sender<v1::SpawnerMessage>,
        running: &mut HashMap<u64, CancellationToken>,
        tasks: &mut JoinSet<u64>,
    ) -> Option<Duration> {
        match message.kind? {
            master_message::Kind::Command(command) => {
                let cancel = CancellationToken::new();
                running.insert(command.request_id, cancel.clone());
                let own_log = own_log::Source {
                    spawner_id: self.credential.spawner_id.clone(),
                    dir: self.config.own_log_dir(),
                };
                let context = commands::Context {
                    manager: self.manager.clone(),
                    builds: self.builds.clone(),
                    own_log,
                };
                tasks.spawn(
                    commands::execute(context, command, cancel, tx.clone())
                        .with_current_subscriber(),
                );
                None
            }
            master_message::Kind::Cancel(cancel) => {
                if let Some(token) = running.get(&cancel.request_id) {
                    token.cancel();
                }
                None
            }
            master_message::Kind::Config(push) => {
                tracing::info!(drained = push.drained, "configuration pushed by the master");
                if let Some(wanted) = push.wanted_builds {
                    self.builds.set_wanted(wanted.builds);
                }
                let mut interval = push.heartbeat_interval_ms;
                if let Some(settings) = push.settings {
                    let (heartbeat, applied) = self.apply_settings(&settings);
                    if let Some(heartbeat) = heartbeat {
                        interval = heartbeat;
                    }
                    // A full outbox means the master is not reading; the next push (or the
                    // next link) is acknowledged instead.
                    let _ = tx.try_send(msg(spawner_message::Kind::SettingsApplied(applied)));
                }
                if interval == 0 {
                    return None;
                }
                let heartbeat = Duration::from_millis(u64::from(interval));
                if heartbeat == self.heartbeat {
                    return None;
                }
                self.heartbeat = heartbeat;
                if let Some(s) = &self.sampling {
                    s.set_period(self.heartbeat);
                }
                Some(self.heartbeat)
            }
            master_message::Kind::Welcome(_) => {
                tracing::debug!("ignoring a second welcome");
                None
            }
        }
    }

    /// Applies pushed settings; returns the heartbeat interval they name (milliseconds) and
    /// the acknowledgement to send.
    fn apply_settings(&self, settings: &v1::SpawnerSettings) -> (Option<u32>, v1::SettingsApplied) {
        let mut errors = Vec::new();
        let heartbeat = settings
            .values
            .get(exile_api::settings::HEARTBEAT_INTERVAL)
            .and_then(|text| {
                exile_api::settings::lookup(exile_api::settings::HEARTBEAT_INTERVAL)
                    .and_then(|s| s.parse(text))
                    .map_err(|e| errors.push(e))
                    .ok()
            })
            .map(|v| u32::try_from(v.as_u64()).unwrap_or(u32::MAX));
        if let Err(e) = self.manager.live().apply(&settings.values) {
            errors.push(e);
        }
        let error = errors.join("; ");
        if error.is_empty() {
            tracing::info!(version = settings.version, "settings applied");
        } else {
            tracing::warn!(version = settings.version, %error, "settings applied in part");
        }
        (
            heartbeat,
            v1::SettingsApplied {
                version: settings.version,
                error,
            },
        )
    }

    /// The latest resource sample, with each instance's player count as it is now (the
    /// master takes the heartbeat's figure as current) and only instances still held.
    async fn heartbeat_message(&mut self) -> v1::Heartbeat {
        let mut heartbeat = self
            .sampling
            .as_ref()
            .and_then(Sampling::latest)
            .unwrap_or_default();
        let players: HashMap<String, u32> = self
            .manager
            .list()
            .await
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.id, r.players))
            .collect();
        heartbeat
            .instances
            .retain_mut(|m| match players.get(&m.id) {
                Some(&p) => {
                    m.players = p;
                    true
                }
                None => false,
            });
        heartbeat
    }
}

fn msg(kind: spawner_message::Kind) -> v1::SpawnerMessage {
    v1::SpawnerMessage { kind: Some(kind) }
}

fn heartbeat_ticker(period: Duration) -> tokio::time::Interval {
    let mut ticker = tokio::time::interval(period.max(Duration::from_millis(100)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker
}

fn status_end(welcomed: bool, status: &tonic::Status) -> End {
    End::Failed {
        welcomed,
        unauthenticated: status.code() == tonic::Code::Unauthenticated,
        reason: format!("{:?}: {}", status.code(), status.message()),
    }
}

/// The held builds with how many of this spawner's instances run each.
fn held_with_counts(
    mut held: Vec<v1::HeldBuild>,
    instances: &[crate::state::InstanceRecord],
) -> Vec<v1::HeldBuild> {
    for h in &mut held {
        let n = instances
            .iter()
            .filter(|r| {
                r.build_version == h.version && r.build.as_ref().is_some_and(|b| b.name == h.name)
            })
            .count();
        h.instance_count = u32::try_from(n).unwrap_or(u32::MAX);
    }
    held
}
