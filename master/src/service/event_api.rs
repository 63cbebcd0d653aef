//! EventService: a snapshot, then live deltas.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::SharedRef;
use crate::access::{ctx, may_read_game_output};
use crate::convert::hide_game_output;
use crate::registry::Registry;
use exile_api::now_unix_ms;
use exile_api::v1 as pb;
use exile_api::v1::event_service_server::EventService;

/// Handlers of EventService.
pub struct EventApi(pub SharedRef);

type Events = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

fn snapshot_event(s: pb::Snapshot) -> pb::WatchEvent {
    pb::WatchEvent {
        sequence: 0,
        at_unix_ms: now_unix_ms(),
        kind: Some(pb::watch_event::Kind::Snapshot(s)),
    }
}

#[tonic::async_trait]
impl EventService for EventApi {
    type WatchStream = Events;

    async fn watch(
        &self,
        req: Request<pb::WatchRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let sees_output = may_read_game_output(&ctx(&req)?.principal);
        let include_metrics = req.into_inner().include_metrics;
        // What this caller may see of each event: crash messages without the game's output
        // unless it may read game logs.
        let shown = move |mut ev: pb::WatchEvent| {
            if !sees_output {
                match &mut ev.kind {
                    Some(pb::watch_event::Kind::InstanceUpdated(i)) => hide_game_output(i),
                    Some(pb::watch_event::Kind::Snapshot(s)) => {
                        s.instances.iter_mut().for_each(hide_game_output);
                    }
                    _ => {}
                }
            }
            ev
        };
        let feed = Feed::new(
            self.0.registry.clone(),
            self.0.shutdown.clone(),
            include_metrics,
        );
        // The response body pulls events straight from the broadcast channel: a burst of
        // events is encoded into one write with one wake-up of this stream, and a client too
        // slow to read them falls behind in the channel (Lagged, then a fresh snapshot).
        let stream = futures::stream::unfold(feed, move |mut f| async move {
            let next = f.next().await?;
            Some((next.map(shown), f))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// One watcher's place in the event stream.
struct Feed {
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    rx: broadcast::Receiver<Arc<pb::WatchEvent>>,
    /// Events to send before the channel's next: the snapshot, and after a lag the Lagged
    /// notice and a fresh snapshot.
    queued: VecDeque<pb::WatchEvent>,
    include_metrics: bool,
    ended: bool,
}

impl Feed {
    /// A watcher starting with a snapshot of the registry.
    fn new(registry: Arc<Registry>, shutdown: CancellationToken, include_metrics: bool) -> Self {
        let (snapshot, rx) = registry.subscribe();
        Self {
            registry,
            shutdown,
            rx,
            queued: VecDeque::from([snapshot_event(snapshot)]),
            include_metrics,
            ended: false,
        }
    }

    /// The next event for this watcher; `None` once the stream is over.
    async fn next(&mut self) -> Option<Result<pb::WatchEvent, Status>> {
        if self.ended {
            return None;
        }
        loop {
            if let Some(ev) = self.queued.pop_front() {
                return Some(Ok(ev));
            }
            let received = match self.rx.try_recv() {
                Err(TryRecvError::Empty) => {
                    tokio::select! {
                        biased;
                        () = self.shutdown.cancelled() => {
                            self.ended = true;
                            return Some(Err(Status::unavailable("the master is shutting down")));
                        }
                        ev = self.rx.recv() => ev,
                    }
                }
                Ok(ev) => Ok(ev),
                Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => Err(RecvError::Closed),
            };
            match received {
                Ok(ev) => {
                    if !self.include_metrics
                        && matches!(ev.kind, Some(pb::watch_event::Kind::SpawnerMetrics(_)))
                    {
                        continue;
                    }
                    return Some(Ok(Arc::unwrap_or_clone(ev)));
                }
                Err(RecvError::Lagged(n)) => {
                    // Too slow to keep up: say so, then start over from a fresh snapshot.
                    let (snap, fresh) = self.registry.subscribe();
                    self.rx = fresh;
                    self.queued.push_back(pb::WatchEvent {
                        sequence: 0,
                        at_unix_ms: now_unix_ms(),
                        kind: Some(pb::watch_event::Kind::Lagged(n)),
                    });
                    self.queued.push_back(snapshot_event(snap));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rollout(n: usize) -> pb::Rollout {
        pb::Rollout {
            id: format!("r{n}"),
            build_name: format!("b{n}"),
            ..Default::default()
        }
    }

    fn kind(ev: Option<Result<pb::WatchEvent, Status>>) -> pb::watch_event::Kind {
        ev.expect("the stream ended")
            .expect("an error instead of an event")
            .kind
            .expect("an event without a kind")
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_told_and_starts_over_from_a_snapshot() {
        use pb::watch_event::Kind;
        let (reg, _dir) = Registry::for_tests().await;
        let mut feed = Feed::new(reg.clone(), CancellationToken::new(), false);
        reg.publish_rollout(rollout(0));
        assert!(matches!(kind(feed.next().await), Kind::Snapshot(_)));
        assert!(matches!(kind(feed.next().await), Kind::RolloutUpdated(r) if r.id == "r0"));
        // More events than the channel holds, none read.
        for n in 1..=9000 {
            reg.publish_rollout(rollout(n));
        }
        let Kind::Lagged(missed) = kind(feed.next().await) else {
            panic!("no Lagged notice after 9000 unread events");
        };
        assert!(missed > 0);
        let Kind::Snapshot(snap) = kind(feed.next().await) else {
            panic!("no fresh snapshot after the Lagged notice");
        };
        assert!(snap.rollouts.iter().any(|r| r.id == "r9000"));
        // Then live again.
        reg.publish_rollout(rollout(9001));
        assert!(matches!(kind(feed.next().await), Kind::RolloutUpdated(r) if r.id == "r9001"));
    }

    #[tokio::test]
    async fn a_watcher_gets_unavailable_at_shutdown_and_then_the_end() {
        let (reg, _dir) = Registry::for_tests().await;
        let shutdown = CancellationToken::new();
        let mut feed = Feed::new(reg, shutdown.clone(), false);
        assert!(feed.next().await.is_some_and(|e| e.is_ok()));
        let waiting = tokio::spawn(async move {
            let first = feed.next().await;
            (first, feed.next().await)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        shutdown.cancel();
        let (first, then) = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.unwrap().unwrap_err().code(), tonic::Code::Unavailable);
        assert!(then.is_none());
    }
}
