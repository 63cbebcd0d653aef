//! EventService: a snapshot, then live deltas.

use std::pin::Pin;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};

use super::SharedRef;
use crate::access::{ctx, may_read_game_output};
use crate::convert::hide_game_output;
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
        let shared = self.0.clone();
        let (snapshot, mut rx) = shared.registry.subscribe();
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
        let stream = async_stream(move |tx| async move {
            if tx.send(Ok(shown(snapshot_event(snapshot)))).await.is_err() {
                return;
            }
            loop {
                let ev = tokio::select! {
                    _ = shared.shutdown.cancelled() => {
                        let _ = tx.send(Err(Status::unavailable("the master is shutting down"))).await;
                        return;
                    }
                    _ = tx.closed() => return,
                    ev = rx.recv() => ev,
                };
                let out = match ev {
                    Ok(ev) => {
                        if !include_metrics
                            && matches!(ev.kind, Some(pb::watch_event::Kind::SpawnerMetrics(_)))
                        {
                            continue;
                        }
                        vec![ev]
                    }
                    Err(RecvError::Lagged(n)) => {
                        // Too slow to keep up: say so, then start over from a fresh snapshot.
                        let (snap, fresh) = shared.registry.subscribe();
                        rx = fresh;
                        vec![
                            pb::WatchEvent {
                                sequence: 0,
                                at_unix_ms: now_unix_ms(),
                                kind: Some(pb::watch_event::Kind::Lagged(n)),
                            },
                            snapshot_event(snap),
                        ]
                    }
                    Err(RecvError::Closed) => return,
                };
                for ev in out {
                    if tx.send(Ok(shown(ev))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// A stream fed by a task through a small channel (backpressure on slow clients).
fn async_stream<F, Fut>(f: F) -> Events
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::WatchEvent, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(f(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
