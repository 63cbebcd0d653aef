//! Simulated spawners: a real `Link` stream with a hello carrying made-up instances, heartbeats,
//! and answers to the commands an allocation or a fleet sends (allocate, remove, stop). No
//! processes: for tests and load tools that need many Ready instances cheaply.

use std::collections::HashMap;
use std::net::SocketAddr;
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
    let r = SpawnerLinkClient::new(connect(addr).await?)
        .enroll(pb::EnrollRequest {
            token: secret,
            name: name.into(),
            host: name.into(),
        })
        .await?
        .into_inner();
    Ok(r.credential)
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
    let mut tick = tokio::time::interval(heartbeat);
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
                    let ev = pb::InstanceEvent { status: Some(s.clone()), removed: false };
                    if tx.send(pb::SpawnerMessage { kind: Some(pb::spawner_message::Kind::InstanceEvent(ev)) }).await.is_err() {
                        return Ok(tally);
                    }
                }
                continue;
            }
            _ = tick.tick() => {
                let hb = pb::Heartbeat {
                    host: Some(pb::Resources::default()),
                    instances: held
                        .values()
                        .map(|s| pb::InstanceMetrics { id: s.id.clone(), resources: None, players: s.players })
                        .collect(),
                };
                if tx.send(pb::SpawnerMessage { kind: Some(pb::spawner_message::Kind::Heartbeat(hb)) }).await.is_err() {
                    return Ok(tally);
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
            tx.send(pb::SpawnerMessage {
                kind: Some(pb::spawner_message::Kind::InstanceEvent(
                    pb::InstanceEvent {
                        status: Some(s),
                        removed: true,
                    },
                )),
            })
            .await?;
        }
    }
}
