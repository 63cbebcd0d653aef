//! `top`'s side of the connection: follows the Watch stream with backoff, and runs the
//! effects `update` asks for as tasks that report back as actions. Nothing here touches
//! the state or the terminal.

use std::time::Duration;

use exile_api::v1::{
    self as pb, DrainSpawnerRequest, GetMetricsHistoryRequest, MetricsTarget,
    RemoveInstanceRequest, RemoveSpawnerRequest, RestartInstanceRequest, SendConsoleCommandRequest,
    SpawnInstanceRequest, StartInstanceRequest, StopInstanceRequest, StreamLogsRequest,
    UndrainSpawnerRequest, WatchRequest, WhoAmIRequest, stream_logs_request::Source,
};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tonic::Status;

use super::action::{Action, Conn, Effect, Op, Target};
use crate::client::{Session, describe};
use crate::output;
use crate::view::{instance_state, role};

/// Lines of log shown when a detail view opens.
const LOG_TAIL: u32 = 200;
/// First and longest wait between Watch attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Runs effects against the master.
pub struct Net {
    session: Session,
    tx: UnboundedSender<Action>,
    /// Deadline of one unary call.
    timeout: Duration,
    logs: Option<JoinHandle<()>>,
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(h) = self.logs.take() {
            h.abort();
        }
    }
}

impl Net {
    pub fn new(session: Session, tx: UnboundedSender<Action>, timeout: Duration) -> Self {
        Self {
            session,
            tx,
            timeout,
            logs: None,
        }
    }

    /// Follows `Watch` until the receiver is gone: a snapshot, then deltas; on any failure
    /// it says so, waits (doubling up to 10 s, with jitter) and opens a new stream, whose
    /// snapshot replaces what `top` knew.
    pub fn follow_watch(&self) -> JoinHandle<()> {
        let (session, tx) = (self.session.clone(), self.tx.clone());
        tokio::spawn(async move {
            let mut attempt = 0u32;
            loop {
                if tx.send(Action::Conn(Conn::Connecting { attempt })).is_err() {
                    return;
                }
                let error = match session
                    .events()
                    .watch(WatchRequest {
                        include_metrics: true,
                    })
                    .await
                {
                    Ok(resp) => {
                        let mut stream = resp.into_inner();
                        let mut first = true;
                        loop {
                            match stream.message().await {
                                Ok(Some(event)) => {
                                    if first {
                                        first = false;
                                        attempt = 0;
                                        let _ = tx.send(Action::Conn(Conn::Live));
                                    }
                                    if tx.send(Action::Watch(Box::new(event))).is_err() {
                                        return;
                                    }
                                }
                                Ok(None) => break "the master closed the event stream".to_owned(),
                                Err(s) => break describe(&s, &session.master),
                            }
                        }
                    }
                    Err(s) => describe(&s, &session.master),
                };
                let wait = backoff(attempt);
                attempt = attempt.saturating_add(1);
                let retrying = Conn::Retrying {
                    attempt,
                    in_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    error,
                };
                if tx.send(Action::Conn(retrying)).is_err() {
                    return;
                }
                tokio::time::sleep(wait).await;
            }
        })
    }

    /// Asks who the credential belongs to, for the header.
    pub fn identify(&self) {
        let (session, tx, timeout) = (self.session.clone(), self.tx.clone(), self.timeout);
        tokio::spawn(async move {
            let mut auth = session.auth();
            let call = auth.who_am_i(WhoAmIRequest {});
            if let Ok(Ok(r)) = tokio::time::timeout(timeout, call).await {
                let r = r.into_inner();
                let _ = tx.send(Action::Identity {
                    subject: r.subject,
                    role: role(r.role),
                });
            }
        });
    }

    pub fn run(&mut self, effect: Effect) {
        match effect {
            Effect::Run(op) => self.operation(op),
            Effect::FollowLogs(target) => self.follow_logs(target),
            Effect::StopLogs => {
                if let Some(h) = self.logs.take() {
                    h.abort();
                }
            }
            Effect::FetchHistory(target) => self.history(target),
            // The event loop owns the terminal and handles this one itself.
            Effect::Suspend => {}
        }
    }

    fn operation(&self, op: Op) {
        let (session, tx, timeout) = (self.session.clone(), self.tx.clone(), self.timeout);
        tokio::spawn(async move {
            let result = match tokio::time::timeout(timeout, call(&session, &op)).await {
                Ok(Ok(sentence)) => Ok(sentence),
                Ok(Err(status)) => Err(describe(&status, &session.master)),
                Err(_) => Err(format!(
                    "the master at {} did not answer in time (see --timeout)",
                    session.master
                )),
            };
            let _ = tx.send(Action::Done { op, result });
        });
    }

    fn follow_logs(&mut self, target: Target) {
        if let Some(h) = self.logs.take() {
            h.abort();
        }
        let (session, tx) = (self.session.clone(), self.tx.clone());
        self.logs = Some(tokio::spawn(async move {
            let source = match &target {
                Target::Instance(id) => Source::Id(id.clone()),
                Target::Spawner(id) => Source::SpawnerId(id.clone()),
            };
            let req = StreamLogsRequest {
                source: Some(source),
                follow: true,
                tail_lines: LOG_TAIL,
            };
            let error = match session.instances().stream_logs(req).await {
                Ok(resp) => {
                    let mut stream = resp.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(chunk)) => {
                                let action = Action::Log {
                                    target: target.clone(),
                                    data: chunk.data,
                                    skipped: chunk.skipped_bytes,
                                };
                                if tx.send(action).is_err() {
                                    return;
                                }
                            }
                            Ok(None) => break None,
                            Err(s) => break Some(describe(&s, &session.master)),
                        }
                    }
                }
                Err(s) => Some(describe(&s, &session.master)),
            };
            let _ = tx.send(Action::LogEnded { target, error });
        }));
    }

    fn history(&self, target: Target) {
        let (session, tx, timeout) = (self.session.clone(), self.tx.clone(), self.timeout);
        tokio::spawn(async move {
            let (kind, id) = match &target {
                Target::Spawner(id) => (MetricsTarget::Spawner, id.clone()),
                Target::Instance(id) => (MetricsTarget::Instance, id.clone()),
            };
            let mut metrics = session.metrics();
            let call = metrics.get_metrics_history(GetMetricsHistoryRequest {
                target: kind as i32,
                id,
                ..Default::default()
            });
            // No history is not worth a message: the sparklines stay empty until samples come.
            if let Ok(Ok(r)) = tokio::time::timeout(timeout, call).await {
                let _ = tx.send(Action::History {
                    target,
                    points: r.into_inner().points,
                });
            }
        });
    }
}

/// One call for an operation; its answer as the sentence `top` shows.
async fn call(session: &Session, op: &Op) -> Result<String, Status> {
    let mut inst = session.instances();
    let mut spw = session.spawners();
    let state = |i: Option<pb::Instance>| {
        i.map(|i| format!(": {}", output::title(&instance_state(i.state))))
            .unwrap_or_default()
    };
    Ok(match op.clone() {
        Op::Spawn(spawner) => {
            let r = inst
                .spawn_instance(SpawnInstanceRequest {
                    spawner_id: spawner.unwrap_or_default(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            match r.instance {
                Some(i) => format!("spawned {} on {}", i.id, i.spawner_id),
                None => "spawned".into(),
            }
        }
        Op::Start(id) => {
            let r = inst
                .start_instance(StartInstanceRequest { id: id.clone() })
                .await?;
            format!("started {id}{}", state(r.into_inner().instance))
        }
        Op::Stop(id) => {
            let r = inst
                .stop_instance(StopInstanceRequest {
                    id: id.clone(),
                    grace_period_seconds: 0,
                })
                .await?;
            format!("stopped {id}{}", state(r.into_inner().instance))
        }
        Op::Restart(id) => {
            let r = inst
                .restart_instance(RestartInstanceRequest {
                    id: id.clone(),
                    grace_period_seconds: 0,
                })
                .await?;
            format!("restarted {id}{}", state(r.into_inner().instance))
        }
        Op::Remove(id) => {
            inst.remove_instance(RemoveInstanceRequest { id: id.clone() })
                .await?;
            format!("removed {id}")
        }
        Op::Drain(id) => {
            spw.drain_spawner(DrainSpawnerRequest { id: id.clone() })
                .await?;
            format!("drained {id}")
        }
        Op::Undrain(id) => {
            spw.undrain_spawner(UndrainSpawnerRequest { id: id.clone() })
                .await?;
            format!("undrained {id}")
        }
        Op::RemoveSpawner(id) => {
            spw.remove_spawner(RemoveSpawnerRequest { id: id.clone() })
                .await?;
            format!("removed spawner {id}")
        }
        Op::Console { id, line } => {
            inst.send_console_command(SendConsoleCommandRequest {
                id: id.clone(),
                line: line.clone(),
            })
            .await?;
            format!("sent `{line}` to {id}")
        }
    })
}

/// Wait before the attempt after `attempt` failures: doubling from 250 ms to 10 s, minus up
/// to a fifth at random so many `top`s do not reconnect to a restarted master in step.
pub fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_MIN
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(BACKOFF_MAX);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    base - base / 5 * (nanos % 1000) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_ceiling_with_bounded_jitter() {
        for (attempt, base) in [(0, 250), (1, 500), (2, 1000), (10, 10_000), (40, 10_000)] {
            let got = backoff(attempt).as_millis();
            assert!(got <= base && got >= base * 4 / 5, "{attempt}: {got}");
        }
    }
}
