//! Simulated spawners: a real `Link` stream with a hello carrying made-up instances, heartbeats,
//! and answers to the commands an allocation or a fleet sends (allocate, remove, stop). No
//! processes: for tests and load tools that need many Ready instances cheaply.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::{Bearer, Clients, connect};
use exile_api::v1 as pb;
use exile_api::v1::spawner_link_client::SpawnerLinkClient;

/// Enrolls a spawner named `name` and returns its credential.
pub async fn enroll(admin: &Clients, addr: SocketAddr, name: &str) -> Result<String> {
    let mut creds = enroll_many(admin, addr, &[name.to_owned()]).await?;
    creds
        .pop()
        .ok_or_else(|| anyhow::anyhow!("no credential for {name}"))
}

/// Enrolls a spawner for each of `names` over one connection; their credentials, in order.
pub async fn enroll_many(
    admin: &Clients,
    addr: SocketAddr,
    names: &[String],
) -> Result<Vec<String>> {
    let mut link = SpawnerLinkClient::new(connect(addr).await?);
    let mut creds = Vec::with_capacity(names.len());
    for name in names {
        let secret = admin
            .spawners
            .clone()
            .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
                ttl_seconds: 600,
                description: String::new(),
            })
            .await?
            .into_inner()
            .secret;
        let r = link
            .enroll(pb::EnrollRequest {
                token: secret,
                name: name.clone(),
                host: name.clone(),
            })
            .await?
            .into_inner();
        creds.push(r.credential);
    }
    Ok(creds)
}

/// Simulated spawners linked to one master, served until [`Fleet::stop`].
pub struct Fleet {
    tasks: Vec<tokio::task::JoinHandle<Result<Tally>>>,
    stop: CancellationToken,
}

impl Fleet {
    /// Enrolls every spawner of `specs` and links them, `per_connection` link streams to an
    /// HTTP/2 connection (as many hosts behind one proxy would be; it spares the load tool
    /// thousands of sockets).
    pub async fn start(
        admin: &Clients,
        addr: SocketAddr,
        specs: Vec<SimSpawner>,
        per_connection: usize,
    ) -> Result<Fleet> {
        let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
        let creds = enroll_many(admin, addr, &names).await?;
        let stop = CancellationToken::new();
        let mut tasks = Vec::with_capacity(specs.len());
        let mut channel: Option<Channel> = None;
        for (i, (spec, cred)) in specs.into_iter().zip(creds).enumerate() {
            let ch = match &channel {
                Some(ch) if i % per_connection.max(1) != 0 => ch.clone(),
                _ => {
                    let ch = connect(addr).await?;
                    channel = Some(ch.clone());
                    ch
                }
            };
            tasks.push(tokio::spawn(serve(ch, cred, spec, stop.clone())));
        }
        Ok(Fleet { tasks, stop })
    }

    /// Waits until the master counts at least `n` spawners online; how many it counts.
    pub async fn wait_online(admin: &Clients, n: usize, timeout: Duration) -> Result<usize> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let s = admin
                .system
                .clone()
                .get_stats(pb::GetStatsRequest {})
                .await?
                .into_inner();
            let online = s.spawners_online as usize;
            if online >= n {
                return Ok(online);
            }
            if std::time::Instant::now() >= deadline {
                anyhow::bail!("{online} of {n} simulated spawners online after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops every spawner; what they saw, summed.
    pub async fn stop(self) -> Result<Tally> {
        self.stop.cancel();
        let mut sum = Tally::default();
        for t in self.tasks {
            let t = t.await??;
            sum.allocations += t.allocations;
            sum.conflicts += t.conflicts;
        }
        Ok(sum)
    }
}

/// `n` Ready instances with these labels, ids prefixed by `prefix`.
pub fn ready_instances(
    prefix: &str,
    n: usize,
    labels: &HashMap<String, String>,
) -> Vec<pb::InstanceStatus> {
    (0..n)
        .map(|j| pb::InstanceStatus {
            id: format!("{prefix}-{j}"),
            state: pb::InstanceState::Ready as i32,
            build_version: "sim".into(),
            ports: vec![pb::Port {
                name: "game".into(),
                port: 20_000 + u32::try_from(j).unwrap_or(0),
                protocol: pb::Protocol::TcpUdp as i32,
            }],
            pid: 100_000 + u32::try_from(j).unwrap_or(0),
            labels: labels.clone(),
            max_players: 16,
            revision: 1,
            ..Default::default()
        })
        .collect()
}

/// What a simulated spawner saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Allocations applied (the instance was Ready).
    pub allocations: u64,
    /// Allocations of an instance that was not Ready here: the master handed out an
    /// instance it should not have (a conflict).
    pub conflicts: u64,
}

/// A simulated spawner: what it reports and how.
#[derive(Debug)]
pub struct SimSpawner {
    /// Its name (and host).
    pub name: String,
    /// Instances its hello carries.
    pub instances: Vec<pb::InstanceStatus>,
    /// Heartbeat interval.
    pub heartbeat: Duration,
    /// Delay before the first heartbeat, so a fleet's beats spread over the interval like
    /// hosts started at different times.
    pub first_beat_after: Duration,
    /// Host figures each heartbeat carries.
    pub host: pb::Resources,
    /// Figures of each instance in heartbeats (none: no instance figures).
    pub instance_resources: Option<pb::Resources>,
    /// Every allocated instance goes back to Ready that long after (a match ending).
    pub release_after: Option<Duration>,
    /// Statuses to report as instance events, as they come (a changing fleet).
    pub events: Option<tokio::sync::mpsc::Receiver<pb::InstanceStatus>>,
    /// Counts the heartbeats sent.
    pub beats: Option<Arc<AtomicU64>>,
}

impl SimSpawner {
    /// A spawner named `name` holding `instances`, beating every `heartbeat`.
    pub fn new(name: &str, instances: Vec<pb::InstanceStatus>, heartbeat: Duration) -> Self {
        SimSpawner {
            name: name.to_owned(),
            instances,
            heartbeat,
            first_beat_after: Duration::ZERO,
            host: pb::Resources::default(),
            instance_resources: None,
            release_after: None,
            events: None,
            beats: None,
        }
    }
}

/// `n` Running instances, ids prefixed by `prefix` (as a busy host reports them).
pub fn running_instances(prefix: &str, n: usize) -> Vec<pb::InstanceStatus> {
    let mut v = ready_instances(prefix, n, &HashMap::new());
    for s in &mut v {
        s.state = pb::InstanceState::Running as i32;
        s.ports.clear();
    }
    v
}

/// Links a simulated spawner and serves it until `stop`. With `release_after`, every
/// allocated instance goes back to Ready that long after (a match ending), as a game would
/// report it.
pub async fn run(
    ch: Channel,
    credential: String,
    name: String,
    instances: Vec<pb::InstanceStatus>,
    heartbeat: Duration,
    release_after: Option<Duration>,
    stop: CancellationToken,
) -> Result<Tally> {
    let mut spec = SimSpawner::new(&name, instances, heartbeat);
    spec.release_after = release_after;
    serve(ch, credential, spec, stop).await
}

/// Links the simulated spawner `spec` with `credential` and serves it until `stop`.
pub async fn serve(
    ch: Channel,
    credential: String,
    spec: SimSpawner,
    stop: CancellationToken,
) -> Result<Tally> {
    let SimSpawner {
        name,
        instances,
        heartbeat,
        first_beat_after,
        host,
        instance_resources,
        release_after,
        mut events,
        beats,
    } = spec;
    let mut client = SpawnerLinkClient::with_interceptor(ch, Bearer::new(&credential)?);
    let (tx, rx) = tokio::sync::mpsc::channel::<pb::SpawnerMessage>(1024);
    let hello = pb::Hello {
        region: "sim".into(),
        host: name.clone(),
        advertised_address: "127.0.0.1".into(),
        capacity: u32::try_from(instances.len().max(1)).unwrap_or(1),
        agent_version: "sim".into(),
        active_build: "sim".into(),
        instances: instances.clone(),
        name,
        ..Default::default()
    };
    tx.send(pb::SpawnerMessage {
        kind: Some(pb::spawner_message::Kind::Hello(hello)),
    })
    .await?;
    let mut inbound = client
        .link(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut held: HashMap<String, pb::InstanceStatus> =
        instances.into_iter().map(|s| (s.id.clone(), s)).collect();
    let mut tally = Tally::default();
    let (release_tx, mut release_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + first_beat_after, heartbeat);
    let event = |s: pb::InstanceStatus, removed: bool| pb::SpawnerMessage {
        kind: Some(pb::spawner_message::Kind::InstanceEvent(
            pb::InstanceEvent {
                status: Some(s),
                removed,
            },
        )),
    };
    loop {
        let msg = tokio::select! {
            () = stop.cancelled() => return Ok(tally),
            m = inbound.next() => match m {
                Some(Ok(m)) => m,
                _ => return Ok(tally),
            },
            Some(id) = release_rx.recv() => {
                if let Some(s) = held.get_mut(&id) {
                    s.state = pb::InstanceState::Ready as i32;
                    s.annotations.clear();
                    s.allocation_metadata.clear();
                    s.revision += 1;
                    if tx.send(event(s.clone(), false)).await.is_err() {
                        return Ok(tally);
                    }
                }
                continue;
            }
            Some(s) = async {
                match events.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                held.insert(s.id.clone(), s.clone());
                if tx.send(event(s, false)).await.is_err() {
                    return Ok(tally);
                }
                continue;
            }
            _ = tick.tick() => {
                let hb = pb::Heartbeat {
                    host: Some(host),
                    instances: held
                        .values()
                        .map(|s| pb::InstanceMetrics { id: s.id.clone(), resources: instance_resources, players: s.players })
                        .collect(),
                };
                if tx.send(pb::SpawnerMessage { kind: Some(pb::spawner_message::Kind::Heartbeat(hb)) }).await.is_err() {
                    return Ok(tally);
                }
                if let Some(b) = &beats {
                    b.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
        };
        let Some(pb::master_message::Kind::Command(cmd)) = msg.kind else {
            continue;
        };
        let mut result = pb::CommandResult {
            request_id: cmd.request_id,
            ..Default::default()
        };
        let mut removed = None;
        match cmd.action {
            Some(pb::command::Action::Allocate(a)) => match held.get_mut(&a.instance_id) {
                Some(s) if s.state == pb::InstanceState::Ready as i32 => {
                    s.state = pb::InstanceState::Allocated as i32;
                    s.labels.extend(a.labels);
                    s.annotations.extend(a.annotations);
                    s.allocation_metadata = a.metadata;
                    s.allocation_id = a.allocation_id;
                    s.revision += 1;
                    tally.allocations += 1;
                    result.instance = Some(s.clone());
                    if let Some(after) = release_after {
                        let (tx, id) = (release_tx.clone(), s.id.clone());
                        tokio::spawn(async move {
                            tokio::time::sleep(after).await;
                            let _ = tx.send(id);
                        });
                    }
                }
                Some(s) => {
                    tally.conflicts += 1;
                    result.error = format!("instance {} is not Ready", s.id);
                    result.error_kind = pb::CommandErrorKind::FailedPrecondition as i32;
                }
                None => {
                    result.error = format!("no instance {}", a.instance_id);
                    result.error_kind = pb::CommandErrorKind::NotFound as i32;
                }
            },
            Some(pb::command::Action::Remove(r)) => match held.remove(&r.instance_id) {
                Some(s) => removed = Some(s),
                None => {
                    result.error = format!("no instance {}", r.instance_id);
                    result.error_kind = pb::CommandErrorKind::NotFound as i32;
                }
            },
            Some(pb::command::Action::Stop(c)) => {
                answer_state(
                    &mut held,
                    &c.instance_id,
                    pb::InstanceState::Stopped,
                    &mut result,
                );
            }
            Some(pb::command::Action::Start(r)) => {
                answer_state(
                    &mut held,
                    &r.instance_id,
                    pb::InstanceState::Running,
                    &mut result,
                );
            }
            _ => {
                result.error = "a simulated spawner runs no processes".into();
                result.error_kind = pb::CommandErrorKind::FailedPrecondition as i32;
            }
        }
        tx.send(pb::SpawnerMessage {
            kind: Some(pb::spawner_message::Kind::CommandResult(result)),
        })
        .await?;
        if let Some(s) = removed {
            tx.send(event(s, true)).await?;
        }
    }
}

/// Moves instance `id` to `state` (a stop or a start that a process would take), answering
/// as a spawner does: the status after the command, or NOT_FOUND.
fn answer_state(
    held: &mut HashMap<String, pb::InstanceStatus>,
    id: &str,
    state: pb::InstanceState,
    result: &mut pb::CommandResult,
) {
    match held.get_mut(id) {
        Some(s) => {
            s.state = state as i32;
            s.revision += 1;
            result.instance = Some(s.clone());
        }
        None => {
            result.error = format!("no instance {id}");
            result.error_kind = pb::CommandErrorKind::NotFound as i32;
        }
    }
}
