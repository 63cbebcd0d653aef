//! The gRPC front end of the SDK: `exile.v1.GameServerSdk` on the loopback address handed to
//! games as `EXILE_SDK_ADDR`.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;

use exile_api::v1;
use exile_api::v1::game_server_sdk_server::{GameServerSdk, GameServerSdkServer};
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{Core, Who};
use crate::error::Result;
use crate::manager::Manager;

/// File in the data dir that remembers the port chosen for `--sdk-listen` port 0.
const PORT_FILE: &str = "sdk-port";

/// Binds the gRPC SDK listener; with port 0 the port of the last start is kept.
pub async fn bind(addr: SocketAddr, data_dir: &Path) -> Result<TcpListener> {
    super::bind_kept(addr, data_dir, PORT_FILE, "SDK").await
}

/// Serves the SDK over gRPC on `listener` until `shutdown` is cancelled; calls still open
/// shortly after are dropped.
pub async fn serve(
    listener: TcpListener,
    manager: Manager,
    shutdown: CancellationToken,
) -> Result<()> {
    let service = SdkService {
        core: Core {
            manager,
            shutdown: shutdown.clone(),
        },
    };
    let app = tonic::service::Routes::new(GameServerSdkServer::new(service))
        .prepare()
        .into_axum_router();
    super::serve_bounded(
        listener,
        app,
        exile_api::serve::Limits::sdk(),
        &shutdown,
        "SDK",
    )
    .await
}

/// The `GameServerSdk` service: decodes, calls the shared core, encodes.
#[derive(Debug, Clone)]
struct SdkService {
    core: Core,
}

/// The caller, by the `authorization` metadata of its call.
fn auth<T>(request: &Request<T>) -> Who<'_> {
    Who::Bearer(
        request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
    )
}

type WatchStream =
    Pin<Box<dyn Stream<Item = Result<v1::SdkWatchInstanceResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl GameServerSdk for SdkService {
    async fn ready(
        &self,
        request: Request<v1::SdkReadyRequest>,
    ) -> Result<Response<v1::SdkReadyResponse>, Status> {
        let instance = self.core.ready(auth(&request)).await?;
        Ok(Response::new(v1::SdkReadyResponse {
            instance: Some(instance),
        }))
    }

    async fn health(
        &self,
        request: Request<v1::SdkHealthRequest>,
    ) -> Result<Response<v1::SdkHealthResponse>, Status> {
        self.core.health(auth(&request)).await?;
        Ok(Response::new(v1::SdkHealthResponse {}))
    }

    async fn set_players(
        &self,
        request: Request<v1::SdkSetPlayersRequest>,
    ) -> Result<Response<v1::SdkSetPlayersResponse>, Status> {
        let v1::SdkSetPlayersRequest { count, max } = *request.get_ref();
        let instance = self.core.set_players(auth(&request), count, max).await?;
        Ok(Response::new(v1::SdkSetPlayersResponse {
            instance: Some(instance),
        }))
    }

    async fn set_label(
        &self,
        request: Request<v1::SdkSetLabelRequest>,
    ) -> Result<Response<v1::SdkSetLabelResponse>, Status> {
        let v1::SdkSetLabelRequest { key, value } = request.get_ref().clone();
        let instance = self.core.set_label(auth(&request), key, value).await?;
        Ok(Response::new(v1::SdkSetLabelResponse {
            instance: Some(instance),
        }))
    }

    async fn get_instance(
        &self,
        request: Request<v1::SdkGetInstanceRequest>,
    ) -> Result<Response<v1::SdkGetInstanceResponse>, Status> {
        let instance = self.core.get_instance(auth(&request)).await?;
        Ok(Response::new(v1::SdkGetInstanceResponse {
            instance: Some(instance),
        }))
    }

    type WatchInstanceStream = WatchStream;

    async fn watch_instance(
        &self,
        request: Request<v1::SdkWatchInstanceRequest>,
    ) -> Result<Response<Self::WatchInstanceStream>, Status> {
        let views = self.core.watch(auth(&request)).await?;
        let stream = views.map(|status| {
            Ok(v1::SdkWatchInstanceResponse {
                instance: Some(status),
            })
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn shutdown(
        &self,
        request: Request<v1::SdkShutdownRequest>,
    ) -> Result<Response<v1::SdkShutdownResponse>, Status> {
        self.core.shutdown(auth(&request)).await?;
        Ok(Response::new(v1::SdkShutdownResponse {}))
    }

    async fn allocate(
        &self,
        request: Request<v1::SdkAllocateRequest>,
    ) -> Result<Response<v1::SdkAllocateResponse>, Status> {
        let instance = self.core.allocate(auth(&request)).await?;
        Ok(Response::new(v1::SdkAllocateResponse {
            instance: Some(instance),
        }))
    }

    async fn reserve(
        &self,
        request: Request<v1::SdkReserveRequest>,
    ) -> Result<Response<v1::SdkReserveResponse>, Status> {
        let ttl = request.get_ref().ttl_seconds;
        let instance = self.core.reserve(auth(&request), ttl).await?;
        Ok(Response::new(v1::SdkReserveResponse {
            instance: Some(instance),
        }))
    }
}
