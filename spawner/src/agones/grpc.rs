//! The gRPC face of an instance's Agones SDK: `agones.dev.sdk.SDK`, the player tracking of
//! `agones.dev.sdk.alpha.SDK` and the counters and lists of `agones.dev.sdk.beta.SDK` on the
//! instance's `AGONES_SDK_GRPC_PORT`. Any other method or service answers UNIMPLEMENTED with a
//! sentence saying so.

use std::pin::Pin;

use exile_api::agones as pb;
use exile_api::agones::alpha as alpha_pb;
use exile_api::agones::alpha::sdk_server::{Sdk as AlphaSdk, SdkServer as AlphaSdkServer};
use exile_api::agones::beta as beta_pb;
use exile_api::agones::beta::sdk_server::{Sdk as BetaSdk, SdkServer as BetaSdkServer};
use exile_api::agones::sdk_server::{Sdk, SdkServer};
use exile_api::counts::{CounterUpdate, ListUpdate};
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use super::Endpoint;
use crate::error::{Error, Result};

/// Serves one instance's Agones SDK over gRPC on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    endpoint: Endpoint,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut routes = tonic::service::Routes::new(SdkServer::new(Stable(endpoint.clone())))
        .add_service(AlphaSdkServer::new(Alpha(endpoint.clone())))
        .add_service(BetaSdkServer::new(Beta(endpoint)))
        .prepare();
    let router = std::mem::take(routes.axum_router_mut());
    // The counters and lists of Agones' older SDKs, on the alpha service: tonic's alpha
    // server would refuse them without a word.
    let router = OLD_ALPHA_COUNTS.iter().fold(router, |router, method| {
        let path = format!("/agones.dev.sdk.alpha.SDK/{method}");
        router.route(&path, axum::routing::any(unimplemented))
    });
    *routes.axum_router_mut() = router.fallback(unimplemented);
    let app = routes.into_axum_router();
    let limits = exile_api::serve::Limits::agones();
    crate::sdk::serve_bounded(listener, app, limits, &shutdown, "Agones SDK").await
}

/// The methods older Agones SDKs (1.31 to 1.36) call for counters and lists on the alpha
/// service, which moved to the beta one.
const OLD_ALPHA_COUNTS: [&str; 6] = [
    "GetCounter",
    "UpdateCounter",
    "GetList",
    "UpdateList",
    "AddListValue",
    "RemoveListValue",
];

/// Any method of a service not served here, and the old alpha counters and lists.
async fn unimplemented(uri: axum::http::Uri) -> axum::response::Response {
    let what = uri.path().trim_start_matches('/');
    if what.starts_with("agones.dev.sdk.alpha.SDK/") {
        return Status::unimplemented(format!(
            "{what}: counters and lists are served on agones.dev.sdk.beta.SDK, where Agones 1.37 and later SDKs call them; update the game's Agones SDK"
        ))
        .into_http();
    }
    Status::unimplemented(format!(
        "{what}: Exile's Agones SDK does not serve this call; it serves agones.dev.sdk.SDK, the player tracking of agones.dev.sdk.alpha.SDK and the counters and lists of agones.dev.sdk.beta.SDK"
    ))
    .into_http()
}

/// Admits the caller of `request` (one of the instance's processes) or refuses it.
async fn admit<T>(endpoint: &Endpoint, request: &Request<T>) -> Result<(), Status> {
    endpoint
        .admit(
            request
                .extensions()
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0),
            request
                .extensions()
                .get::<exile_api::serve::LocalAddr>()
                .map(|l| l.0),
        )
        .await
        .map_err(Status::from)
}

fn empty() -> Response<pb::Empty> {
    Response::new(pb::Empty {})
}

/// `agones.dev.sdk.SDK` for one instance.
#[derive(Debug, Clone)]
struct Stable(Endpoint);

type GameServerStream = Pin<Box<dyn Stream<Item = Result<pb::GameServer, Status>> + Send>>;

#[tonic::async_trait]
impl Sdk for Stable {
    async fn ready(&self, request: Request<pb::Empty>) -> Result<Response<pb::Empty>, Status> {
        admit(&self.0, &request).await?;
        self.0.ready().await?;
        Ok(empty())
    }

    async fn allocate(&self, request: Request<pb::Empty>) -> Result<Response<pb::Empty>, Status> {
        admit(&self.0, &request).await?;
        self.0.allocate().await?;
        Ok(empty())
    }

    async fn shutdown(&self, request: Request<pb::Empty>) -> Result<Response<pb::Empty>, Status> {
        admit(&self.0, &request).await?;
        self.0.shutdown().await?;
        Ok(empty())
    }

    async fn health(
        &self,
        request: Request<Streaming<pb::Empty>>,
    ) -> Result<Response<pb::Empty>, Status> {
        admit(&self.0, &request).await?;
        let mut pings = request.into_inner();
        // Each message is one ping; the stream ends when the game closes it.
        while let Some(ping) = pings.next().await {
            ping?;
            self.0.health().await?;
        }
        Ok(empty())
    }

    async fn get_game_server(
        &self,
        request: Request<pb::Empty>,
    ) -> Result<Response<pb::GameServer>, Status> {
        admit(&self.0, &request).await?;
        Ok(Response::new(self.0.game_server().await?))
    }

    type WatchGameServerStream = GameServerStream;

    async fn watch_game_server(
        &self,
        request: Request<pb::Empty>,
    ) -> Result<Response<Self::WatchGameServerStream>, Status> {
        admit(&self.0, &request).await?;
        let views = self.0.watch().await?;
        Ok(Response::new(Box::pin(views.map(Ok))))
    }

    async fn set_label(
        &self,
        request: Request<pb::KeyValue>,
    ) -> Result<Response<pb::Empty>, Status> {
        admit(&self.0, &request).await?;
        let pb::KeyValue { key, value } = request.into_inner();
        self.0.set_label(&key, value).await?;
        Ok(empty())
    }

    async fn set_annotation(
        &self,
        request: Request<pb::KeyValue>,
    ) -> Result<Response<pb::Empty>, Status> {
        admit(&self.0, &request).await?;
        let pb::KeyValue { key, value } = request.into_inner();
        self.0.set_annotation(&key, value).await?;
        Ok(empty())
    }

    async fn reserve(&self, request: Request<pb::Duration>) -> Result<Response<pb::Empty>, Status> {
        admit(&self.0, &request).await?;
        self.0.reserve(request.get_ref().seconds).await?;
        Ok(empty())
    }
}

/// `agones.dev.sdk.alpha.SDK` (player tracking) for one instance.
#[derive(Debug, Clone)]
struct Alpha(Endpoint);

#[tonic::async_trait]
impl AlphaSdk for Alpha {
    async fn player_connect(
        &self,
        request: Request<alpha_pb::PlayerId>,
    ) -> Result<Response<alpha_pb::Bool>, Status> {
        admit(&self.0, &request).await?;
        let added = self
            .0
            .player_connect(request.into_inner().player_id)
            .await?;
        Ok(Response::new(alpha_pb::Bool { bool: added }))
    }

    async fn player_disconnect(
        &self,
        request: Request<alpha_pb::PlayerId>,
    ) -> Result<Response<alpha_pb::Bool>, Status> {
        admit(&self.0, &request).await?;
        let removed = self
            .0
            .player_disconnect(request.into_inner().player_id)
            .await?;
        Ok(Response::new(alpha_pb::Bool { bool: removed }))
    }

    async fn set_player_capacity(
        &self,
        request: Request<alpha_pb::Count>,
    ) -> Result<Response<alpha_pb::Empty>, Status> {
        admit(&self.0, &request).await?;
        self.0.set_player_capacity(request.get_ref().count).await?;
        Ok(Response::new(alpha_pb::Empty {}))
    }

    async fn get_player_capacity(
        &self,
        request: Request<alpha_pb::Empty>,
    ) -> Result<Response<alpha_pb::Count>, Status> {
        admit(&self.0, &request).await?;
        let (capacity, _) = self.0.players().await?;
        Ok(Response::new(alpha_pb::Count { count: capacity }))
    }

    async fn get_player_count(
        &self,
        request: Request<alpha_pb::Empty>,
    ) -> Result<Response<alpha_pb::Count>, Status> {
        admit(&self.0, &request).await?;
        let (_, ids) = self.0.players().await?;
        let count = i64::try_from(ids.len()).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Response::new(alpha_pb::Count { count }))
    }

    async fn is_player_connected(
        &self,
        request: Request<alpha_pb::PlayerId>,
    ) -> Result<Response<alpha_pb::Bool>, Status> {
        admit(&self.0, &request).await?;
        let (_, ids) = self.0.players().await?;
        let connected = ids.contains(&request.get_ref().player_id);
        Ok(Response::new(alpha_pb::Bool { bool: connected }))
    }

    async fn get_connected_players(
        &self,
        request: Request<alpha_pb::Empty>,
    ) -> Result<Response<alpha_pb::PlayerIdList>, Status> {
        admit(&self.0, &request).await?;
        let (_, list) = self.0.players().await?;
        Ok(Response::new(alpha_pb::PlayerIdList { list }))
    }
}

/// `agones.dev.sdk.beta.SDK` (counters and lists) for one instance.
#[derive(Debug, Clone)]
struct Beta(Endpoint);

#[tonic::async_trait]
impl BetaSdk for Beta {
    async fn get_counter(
        &self,
        request: Request<beta_pb::GetCounterRequest>,
    ) -> Result<Response<beta_pb::Counter>, Status> {
        admit(&self.0, &request).await?;
        let counter = self.0.counter(&request.get_ref().name).await?;
        Ok(Response::new(counter))
    }

    async fn update_counter(
        &self,
        request: Request<beta_pb::UpdateCounterRequest>,
    ) -> Result<Response<beta_pb::Counter>, Status> {
        admit(&self.0, &request).await?;
        let Some(u) = request.into_inner().counter_update_request else {
            return Err(Status::invalid_argument(
                "counterUpdateRequest is required: name the counter and what to change",
            ));
        };
        let update = CounterUpdate {
            capacity: u.capacity,
            count: u.count,
            diff: u.count_diff,
        };
        Ok(Response::new(self.0.update_counter(u.name, update).await?))
    }

    async fn get_list(
        &self,
        request: Request<beta_pb::GetListRequest>,
    ) -> Result<Response<beta_pb::List>, Status> {
        admit(&self.0, &request).await?;
        Ok(Response::new(self.0.list(&request.get_ref().name).await?))
    }

    async fn update_list(
        &self,
        request: Request<beta_pb::UpdateListRequest>,
    ) -> Result<Response<beta_pb::List>, Status> {
        admit(&self.0, &request).await?;
        let beta_pb::UpdateListRequest { list, update_mask } = request.into_inner();
        let Some(list) = list else {
            return Err(Status::invalid_argument(
                "list is required: name the list and give the fields to change",
            ));
        };
        let paths = update_mask.map(|m| m.paths).unwrap_or_default();
        let update =
            ListUpdate::from_mask(&paths, list.capacity, list.values).map_err(Error::from)?;
        Ok(Response::new(self.0.update_list(list.name, update).await?))
    }

    async fn add_list_value(
        &self,
        request: Request<beta_pb::AddListValueRequest>,
    ) -> Result<Response<beta_pb::List>, Status> {
        admit(&self.0, &request).await?;
        let beta_pb::AddListValueRequest { name, value } = request.into_inner();
        Ok(Response::new(self.0.add_list_value(name, value).await?))
    }

    async fn remove_list_value(
        &self,
        request: Request<beta_pb::RemoveListValueRequest>,
    ) -> Result<Response<beta_pb::List>, Status> {
        admit(&self.0, &request).await?;
        let beta_pb::RemoveListValueRequest { name, value } = request.into_inner();
        Ok(Response::new(self.0.remove_list_value(name, value).await?))
    }
}
