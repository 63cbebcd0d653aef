//! A spawner's live link as the registry holds it: the command channel, requests in
//! flight, and how link traffic (hello, heartbeats, events) updates the registry.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::Registry;
use crate::error::{Error, Result};
use crate::model::is_running;
use exile_api::now_unix_ms;
use exile_api::v1 as pb;

/// Handle to one live link (one `Link` stream). Cloned freely.
#[derive(Clone)]
pub struct Link {
    /// Distinguishes this stream from an older or newer one of the same spawner.
    pub generation: u64,
    tx: mpsc::Sender<pb::MasterMessage>,
    pending: Arc<Pending>,
    closed: CancellationToken,
}

#[derive(Default)]
struct Pending {
    next_id: AtomicU64,
    // std Mutex: inserts and removes only, never held across an await.
    waiters: Mutex<HashMap<u64, oneshot::Sender<pb::CommandResult>>>,
    // Log streams in flight, by request id. std Mutex for the same reason.
    logs: Mutex<HashMap<u64, LogSink>>,
}

/// Chunks a log stream may hold for a slow reader (at most 64 KiB each) before the stream is
/// closed: the spawner's files are the buffer, not the master's memory.
const LOG_BUFFER_CHUNKS: usize = 32;

struct LogSink {
    tx: mpsc::Sender<LogEvent>,
    overflowed: Arc<std::sync::atomic::AtomicBool>,
}

/// What a log stream yields.
#[derive(Debug)]
pub enum LogEvent {
    /// A piece of the log.
    Data(pb::LogData),
    /// The spawner's final answer: the stream is over (an error when it failed).
    Done(Box<pb::CommandResult>),
}

/// A log stream from a spawner. Dropping it cancels the command on the spawner.
pub struct LogStream {
    id: u64,
    rx: mpsc::Receiver<LogEvent>,
    overflowed: Arc<std::sync::atomic::AtomicBool>,
    link: Link,
    done: bool,
}

impl LogStream {
    /// The next event; an error when the reader fell behind or the link went away.
    pub async fn next(&mut self) -> Result<LogEvent> {
        let closed = self.link.closed.clone();
        let event = tokio::select! {
            biased;
            event = self.rx.recv() => event,
            () = closed.cancelled() => None,
        };
        match event {
            Some(event) => {
                if matches!(event, LogEvent::Done(_)) {
                    self.done = true;
                }
                Ok(event)
            }
            None if self.overflowed.load(Ordering::Relaxed) => Err(Error::ResourceExhausted(
                "the log stream was closed because the reader fell behind".into(),
            )),
            None => Err(Error::Unavailable(
                "the spawner disconnected during the log stream".into(),
            )),
        }
    }
}

impl Drop for LogStream {
    fn drop(&mut self) {
        self.link.forget_logs(self.id);
        if !self.done {
            let _ = self.link.tx.try_send(pb::MasterMessage {
                kind: Some(pb::master_message::Kind::Cancel(pb::Cancel {
                    request_id: self.id,
                })),
            });
        }
    }
}

impl Link {
    /// A link whose outgoing messages go to `tx`.
    pub fn new(generation: u64, tx: mpsc::Sender<pb::MasterMessage>) -> Self {
        Link {
            generation,
            tx,
            pending: Arc::new(Pending::default()),
            closed: CancellationToken::new(),
        }
    }

    /// Cancelled when the master wants this link gone (spawner removed or replaced).
    pub fn closed(&self) -> CancellationToken {
        self.closed.clone()
    }

    /// Ends the link: the stream task sees `closed()` and stops.
    pub fn close(&self) {
        self.closed.cancel();
        self.pending
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    fn forget_logs(&self, id: u64) {
        self.pending
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Hands a log piece to its stream. A reader that fell behind loses its stream (and the
    /// spawner is told to stop) rather than making the master buffer without limit.
    pub fn log_data(&self, data: pb::LogData) {
        let id = data.request_id;
        let mut logs = self.pending.logs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(sink) = logs.get(&id) else {
            return;
        };
        if sink.tx.try_send(LogEvent::Data(data)).is_err() {
            sink.overflowed.store(true, Ordering::Relaxed);
            logs.remove(&id);
            drop(logs);
            tracing::info!(request_id = id, "log reader fell behind; stream closed");
            let _ = self.tx.try_send(pb::MasterMessage {
                kind: Some(pb::master_message::Kind::Cancel(pb::Cancel {
                    request_id: id,
                })),
            });
        }
    }

    /// Starts a log stream (`logs` command). `timeout` bounds only the sending of the command:
    /// a followed stream has no deadline.
    pub async fn stream_logs(&self, cmd: pb::LogsCommand, timeout: Duration) -> Result<LogStream> {
        let id = self.pending.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::channel(LOG_BUFFER_CHUNKS);
        let overflowed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.pending
            .logs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                id,
                LogSink {
                    tx,
                    overflowed: overflowed.clone(),
                },
            );
        let stream = LogStream {
            id,
            rx,
            overflowed,
            link: self.clone(),
            done: false,
        };
        let cmd = pb::MasterMessage {
            kind: Some(pb::master_message::Kind::Command(pb::Command {
                request_id: id,
                deadline_unix_ms: 0,
                action: Some(pb::command::Action::Logs(cmd)),
            })),
        };
        match tokio::time::timeout(timeout, self.tx.send(cmd)).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(_)) => Err(Error::Unavailable("the spawner disconnected".into())),
            Err(_) => Err(Error::DeadlineExceeded(
                "the spawner's link is congested".into(),
            )),
        }
    }

    /// Sends settings without waiting; dropped if the link is congested.
    pub fn push_config(&self, cfg: pb::ConfigPush) {
        let _ = self.tx.try_send(pb::MasterMessage {
            kind: Some(pb::master_message::Kind::Config(cfg)),
        });
    }

    /// Hands a command result to whoever waits for it.
    pub fn complete(&self, result: pb::CommandResult) {
        let waiter = self
            .pending
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&result.request_id);
        match waiter {
            Some(w) => {
                let _ = w.send(result);
            }
            None => {
                let sink = self
                    .pending
                    .logs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&result.request_id);
                match sink {
                    // Waits for room: the end marker must not be lost behind data.
                    Some(sink) => {
                        tokio::spawn(async move {
                            let _ = sink.tx.send(LogEvent::Done(Box::new(result))).await;
                        });
                    }
                    None => tracing::debug!(
                        request_id = result.request_id,
                        "result for a request nobody waits for"
                    ),
                }
            }
        }
    }

    /// Sends a command and waits for its result until `timeout`. Many may be in flight.
    pub async fn request(
        &self,
        action: pb::command::Action,
        timeout: Duration,
    ) -> Result<pb::CommandResult> {
        let id = self.pending.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (otx, orx) = oneshot::channel();
        self.pending
            .waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, otx);
        let deadline =
            now_unix_ms().saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
        let cmd = pb::MasterMessage {
            kind: Some(pb::master_message::Kind::Command(pb::Command {
                request_id: id,
                deadline_unix_ms: deadline,
                action: Some(action),
            })),
        };
        let forget = || {
            self.pending
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        };
        match tokio::time::timeout(timeout, self.tx.send(cmd)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => {
                forget();
                return Err(Error::Unavailable("the spawner disconnected".into()));
            }
            Err(_) => {
                forget();
                return Err(Error::DeadlineExceeded(
                    "the spawner's link is congested".into(),
                ));
            }
        }
        // A little slack past the deadline so the spawner's own DEADLINE_EXCEEDED wins.
        match tokio::time::timeout(timeout + Duration::from_secs(2), orx).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(_)) => Err(Error::Unavailable(
                "the spawner disconnected before answering".into(),
            )),
            Err(_) => {
                forget();
                let _ = self.tx.try_send(pb::MasterMessage {
                    kind: Some(pb::master_message::Kind::Cancel(pb::Cancel {
                        request_id: id,
                    })),
                });
                Err(Error::DeadlineExceeded(format!(
                    "the spawner did not answer within {} s",
                    timeout.as_secs()
                )))
            }
        }
    }
}

/// Turns a failed command result into an error; Ok(result) when it succeeded.
pub fn map_command_error(r: pb::CommandResult) -> Result<pb::CommandResult> {
    if r.error.is_empty() {
        return Ok(r);
    }
    use pb::CommandErrorKind as K;
    Err(match K::try_from(r.error_kind).unwrap_or(K::Internal) {
        K::NotFound => Error::NotFound(r.error),
        K::FailedPrecondition => Error::FailedPrecondition(r.error),
        K::InvalidArgument => Error::InvalidArgument(r.error),
        K::DeadlineExceeded => Error::DeadlineExceeded(r.error),
        K::Internal | K::Unspecified => {
            Error::Unavailable(format!("the spawner failed: {}", r.error))
        }
    })
}

impl Registry {
    /// Registers a new stream for `id` from its hello: replaces any older link (whose
    /// requests fail), reconciles the instances, marks the spawner Online (or Draining).
    pub fn attach(
        &self,
        id: &str,
        hello: &pb::Hello,
        tx: mpsc::Sender<pb::MasterMessage>,
    ) -> Result<Link> {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let link = Link::new(generation, tx);
        let now = Instant::now();
        self.change(|st, fx| st.attach(fx, id, hello, link.clone(), now))?;
        Ok(link)
    }

    /// The stream of `generation` ended. Ignored when a newer stream took over.
    pub fn detach(&self, id: &str, generation: u64, clean: bool) {
        self.change(|st, fx| st.detach(fx, id, generation, clean));
    }

    /// A heartbeat: metrics in memory only. Entries for instances the spawner does not own
    /// are dropped from `hb`; false when the heartbeat is not of the spawner's current link.
    pub fn heartbeat(
        &self,
        id: &str,
        generation: u64,
        hb: &mut pb::Heartbeat,
        with_event: bool,
    ) -> bool {
        // Nobody watching: do not build an event per heartbeat for nobody.
        let metrics_event = with_event && self.events.receiver_count() > 0;
        let now = Instant::now();
        self.change(|st, fx| st.heartbeat(fx, id, generation, hb, now, metrics_event))
    }

    /// An instance event from the spawner.
    pub fn instance_event(&self, id: &str, generation: u64, ev: pb::InstanceEvent) {
        self.change(|st, fx| st.instance_event(fx, id, generation, ev));
    }

    /// Applies a status the spawner reported (event, command result or hello).
    pub fn apply_status(&self, spawner_id: &str, status: pb::InstanceStatus) {
        self.change(|st, fx| st.upsert_status(fx, spawner_id, status));
    }

    /// Drops a reservation whose spawn failed.
    pub fn forget_instance(&self, id: &str) {
        self.change(|st, fx| st.forget_instance(fx, id));
    }

    /// True when the instance's process is alive as far as the master knows.
    pub fn instance_running(&self, id: &str) -> bool {
        self.lock()
            .instances
            .get(id)
            .is_some_and(|r| is_running(r.state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::master_message::Kind;

    async fn open(link: &Link, rx: &mut mpsc::Receiver<pb::MasterMessage>) -> (LogStream, u64) {
        let logs = link
            .stream_logs(
                pb::LogsCommand {
                    instance_id: "i".into(),
                    follow: true,
                    ..Default::default()
                },
                Duration::from_secs(1),
            )
            .await
            .unwrap();
        let id = match rx.recv().await.unwrap().kind {
            Some(Kind::Command(c)) => c.request_id,
            other => panic!("{other:?}"),
        };
        (logs, id)
    }

    fn chunk(request_id: u64) -> pb::LogData {
        pb::LogData {
            request_id,
            data: vec![b'x'; 64 * 1024],
            skipped_bytes: 0,
        }
    }

    #[tokio::test]
    async fn a_slow_log_reader_is_cut_off_and_the_spawner_told() {
        let (tx, mut rx) = mpsc::channel(1024);
        let link = Link::new(1, tx);
        let (mut logs, id) = open(&link, &mut rx).await;
        for _ in 0..=LOG_BUFFER_CHUNKS {
            link.log_data(chunk(id));
        }
        match rx.recv().await.unwrap().kind {
            Some(Kind::Cancel(c)) => assert_eq!(c.request_id, id),
            other => panic!("{other:?}"),
        }
        // What was buffered is delivered, then a clear error instead of more memory.
        for _ in 0..LOG_BUFFER_CHUNKS {
            assert!(matches!(logs.next().await.unwrap(), LogEvent::Data(_)));
        }
        assert!(matches!(
            logs.next().await,
            Err(Error::ResourceExhausted(_))
        ));
        // Later pieces for that stream are dropped on the floor.
        link.log_data(chunk(id));
    }

    #[tokio::test]
    async fn a_client_going_away_cancels_and_a_result_ends_the_stream() {
        let (tx, mut rx) = mpsc::channel(1024);
        let link = Link::new(1, tx);
        let (logs, id) = open(&link, &mut rx).await;
        drop(logs);
        match rx.recv().await.unwrap().kind {
            Some(Kind::Cancel(c)) => assert_eq!(c.request_id, id),
            other => panic!("{other:?}"),
        }

        let (mut logs, id) = open(&link, &mut rx).await;
        link.log_data(chunk(id));
        link.complete(pb::CommandResult {
            request_id: id,
            ..Default::default()
        });
        assert!(matches!(logs.next().await.unwrap(), LogEvent::Data(_)));
        assert!(matches!(logs.next().await.unwrap(), LogEvent::Done(_)));
        drop(logs);
        // A finished stream sends no Cancel.
        assert!(rx.try_recv().is_err());

        // The link closing ends a stream with UNAVAILABLE.
        let (mut logs, _) = open(&link, &mut rx).await;
        link.close();
        assert!(matches!(logs.next().await, Err(Error::Unavailable(_))));
    }
}
