//! The game-server SDK endpoint: a loopback gRPC server where each game acts on its own
//! instance, named by the per-instance secret it was given in `EXILE_SDK_TOKEN`.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;

use exile_api::v1;
use exile_api::v1::game_server_sdk_server::{GameServerSdk, GameServerSdkServer};
use futures::Stream;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::error::{Error, Result};
use crate::instance::{OpContext, SdkCall};
use crate::manager::Manager;
use crate::state::InstanceRecord;

/// Longest reservation a game may ask for: one day.
const MAX_RESERVE_SECS: u32 = 86_400;

/// File in the data dir that remembers the SDK port chosen for `--sdk-listen` port 0.
const PORT_FILE: &str = "sdk-port";

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Unauthenticated => Status::unauthenticated(e.to_string()),
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
            Error::InvalidArgument(_) | Error::Config(_) => Status::invalid_argument(e.to_string()),
            Error::DeadlineExceeded => Status::deadline_exceeded(e.to_string()),
            Error::Cancelled => Status::cancelled(e.to_string()),
            Error::ManagerGone => Status::unavailable(e.to_string()),
            other => {
                tracing::error!(error = %other, "SDK call failed");
                Status::internal("internal error; see the spawner log")
            }
        }
    }
}

/// Binds the SDK listener. With port 0, the port kept in `data_dir` from an earlier start is
/// tried first (games adopted after a restart still hold its address), then a new one, which
/// is kept for next time.
pub async fn bind(addr: SocketAddr, data_dir: &Path) -> Result<TcpListener> {
    let port_file = data_dir.join(PORT_FILE);
    if addr.port() == 0
        && let Some(port) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok())
    {
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(listener) => return Ok(listener),
            Err(e) => {
                tracing::warn!(port, error = %e, "the SDK port of the last start is taken; picking a new one (games adopted from it lose the SDK)");
            }
        }
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("could not listen for the SDK on {addr}: {e}")))?;
    if addr.port() == 0 {
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("could not read the address of", &port_file, e))?
            .port();
        crate::state::write_atomic(&port_file, port.to_string().as_bytes(), 0o644)?;
    }
    Ok(listener)
}

/// Serves the SDK on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    manager: Manager,
    shutdown: CancellationToken,
) -> Result<()> {
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tonic::transport::Server::builder()
        .add_service(GameServerSdkServer::new(SdkService { manager }))
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .map_err(|e| Error::Internal(format!("the SDK endpoint failed: {e}")))
}

/// The `GameServerSdk` service over the manager.
#[derive(Debug, Clone)]
pub struct SdkService {
    manager: Manager,
}

impl SdkService {
    /// The caller's instance, from its bearer secret.
    async fn caller<T>(&self, request: &Request<T>) -> Result<InstanceRecord> {
        let token = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        self.manager.by_sdk_token(token.trim()).await
    }

    async fn apply<T>(&self, request: &Request<T>, call: SdkCall) -> Result<v1::InstanceStatus> {
        let rec = self.caller(request).await?;
        Ok(self.manager.sdk(&rec.id, call).await?.to_status())
    }
}

type WatchStream =
    Pin<Box<dyn Stream<Item = Result<v1::SdkWatchInstanceResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl GameServerSdk for SdkService {
    async fn ready(
        &self,
        request: Request<v1::SdkReadyRequest>,
    ) -> Result<Response<v1::SdkReadyResponse>, Status> {
        let instance = self.apply(&request, SdkCall::Ready).await?;
        Ok(Response::new(v1::SdkReadyResponse {
            instance: Some(instance),
        }))
    }

    async fn health(
        &self,
        request: Request<v1::SdkHealthRequest>,
    ) -> Result<Response<v1::SdkHealthResponse>, Status> {
        self.apply(&request, SdkCall::Health).await?;
        Ok(Response::new(v1::SdkHealthResponse {}))
    }

    async fn set_players(
        &self,
        request: Request<v1::SdkSetPlayersRequest>,
    ) -> Result<Response<v1::SdkSetPlayersResponse>, Status> {
        let v1::SdkSetPlayersRequest { count, max } = *request.get_ref();
        if max != 0 && count > max {
            return Err(
                Error::InvalidArgument(format!("count {count} is more than max {max}")).into(),
            );
        }
        let instance = self
            .apply(&request, SdkCall::Players { count, max })
            .await?;
        Ok(Response::new(v1::SdkSetPlayersResponse {
            instance: Some(instance),
        }))
    }

    async fn set_label(
        &self,
        request: Request<v1::SdkSetLabelRequest>,
    ) -> Result<Response<v1::SdkSetLabelResponse>, Status> {
        let call = SdkCall::Label {
            key: request.get_ref().key.clone(),
            value: request.get_ref().value.clone(),
        };
        let instance = self.apply(&request, call).await?;
        Ok(Response::new(v1::SdkSetLabelResponse {
            instance: Some(instance),
        }))
    }

    async fn get_instance(
        &self,
        request: Request<v1::SdkGetInstanceRequest>,
    ) -> Result<Response<v1::SdkGetInstanceResponse>, Status> {
        let rec = self.caller(&request).await?;
        Ok(Response::new(v1::SdkGetInstanceResponse {
            instance: Some(rec.to_status()),
        }))
    }

    type WatchInstanceStream = WatchStream;

    async fn watch_instance(
        &self,
        request: Request<v1::SdkWatchInstanceRequest>,
    ) -> Result<Response<Self::WatchInstanceStream>, Status> {
        // Subscribe before reading the current view, so no change falls in between.
        let events = self.manager.subscribe();
        let rec = self.caller(&request).await?;
        let first = rec.to_status();
        let state = WatchState {
            events,
            id: rec.id,
            revision: first.revision,
            first: Some(first),
            done: false,
        };
        let stream = futures::stream::unfold(state, |mut st| async move {
            let status = st.next().await?;
            Some((
                Ok(v1::SdkWatchInstanceResponse {
                    instance: Some(status),
                }),
                st,
            ))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn shutdown(
        &self,
        request: Request<v1::SdkShutdownRequest>,
    ) -> Result<Response<v1::SdkShutdownResponse>, Status> {
        let rec = self.caller(&request).await?;
        if !rec.state.has_process() {
            return Err(Error::FailedPrecondition(format!(
                "instance {} is {}; nothing to stop",
                rec.id,
                rec.state.name()
            ))
            .into());
        }
        // The stop waits for this very game to exit: answer first, stop in the background.
        let manager = self.manager.clone();
        tokio::spawn(async move {
            if let Err(e) = manager.stop(&rec.id, None, OpContext::default()).await {
                tracing::warn!(instance = %rec.id, error = %e, "stop asked by the game failed");
            }
        });
        Ok(Response::new(v1::SdkShutdownResponse {}))
    }

    async fn allocate(
        &self,
        request: Request<v1::SdkAllocateRequest>,
    ) -> Result<Response<v1::SdkAllocateResponse>, Status> {
        let instance = self.apply(&request, SdkCall::Allocate).await?;
        Ok(Response::new(v1::SdkAllocateResponse {
            instance: Some(instance),
        }))
    }

    async fn reserve(
        &self,
        request: Request<v1::SdkReserveRequest>,
    ) -> Result<Response<v1::SdkReserveResponse>, Status> {
        let ttl = request.get_ref().ttl_seconds;
        if !(1..=MAX_RESERVE_SECS).contains(&ttl) {
            return Err(Error::InvalidArgument(format!(
                "ttl_seconds must be 1 to {MAX_RESERVE_SECS}, not {ttl}"
            ))
            .into());
        }
        let call = SdkCall::Reserve {
            ttl: std::time::Duration::from_secs(u64::from(ttl)),
        };
        let instance = self.apply(&request, call).await?;
        Ok(Response::new(v1::SdkReserveResponse {
            instance: Some(instance),
        }))
    }
}

/// Where a `WatchInstance` stream is: the first view still to send, then the caller's events.
struct WatchState {
    events: tokio::sync::broadcast::Receiver<v1::InstanceEvent>,
    id: String,
    revision: u64,
    first: Option<v1::InstanceStatus>,
    done: bool,
}

impl WatchState {
    /// The next view of the instance; `None` once it is removed or the spawner shuts down.
    async fn next(&mut self) -> Option<v1::InstanceStatus> {
        use tokio::sync::broadcast::error::RecvError;
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        if self.done {
            return None;
        }
        loop {
            match self.events.recv().await {
                Ok(v1::InstanceEvent {
                    status: Some(status),
                    removed,
                }) if status.id == self.id && status.revision > self.revision => {
                    self.revision = status.revision;
                    self.done = removed;
                    return Some(status);
                }
                Ok(_) => {}
                // A slow watcher skips views; the next one is complete anyway.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return None,
            }
        }
    }
}
