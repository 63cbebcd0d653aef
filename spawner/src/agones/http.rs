//! The HTTP face of an instance's Agones SDK on its `AGONES_SDK_HTTP_PORT`: the paths, verbs
//! and JSON bodies of Agones' REST SDK, so games (and scripts) that speak it work unchanged.
//!
//! | Route                                   | Body                         | Answer               |
//! |-----------------------------------------|------------------------------|----------------------|
//! | `POST /ready`, `/allocate`, `/shutdown`, `/health` | `{}`              | `{}`                 |
//! | `POST /reserve`                         | `{"seconds":"10"}`           | `{}`                 |
//! | `PUT /metadata/label`, `/metadata/annotation` | `{"key":"k","value":"v"}` | `{}`              |
//! | `GET /gameserver`                       | —                            | GameServer           |
//! | `GET /watch/gameserver`                 | —                            | `{"result":GameServer}` lines |
//! | `POST /alpha/player/connect`, `/disconnect` | `{"playerID":"p1"}`      | `{"bool":true}`      |
//! | `PUT /alpha/player/capacity`            | `{"count":"10"}`             | `{}`                 |
//! | `GET /alpha/player/capacity`, `/count`  | —                            | `{"count":"10"}`     |
//! | `GET /alpha/player/connected/{playerID}`| —                            | `{"bool":true}`      |
//! | `GET /alpha/player/connected`           | —                            | `{"list":["p1"]}`    |
//!
//! Errors answer `{"code":<gRPC code>,"message":"<sentence>","details":[]}` as Agones' gateway
//! does, with the HTTP status of the same code: 403 for a caller outside the instance, 501 for
//! the counters and lists (`/v1beta1/…`), which Exile does not keep.

use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::Endpoint;
use super::json;
use crate::error::{Error, Result};

/// Largest request body; the biggest real one (an annotation) is well under 1 KiB.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every route gets: the instance's endpoint and our own address (for the caller check).
#[derive(Debug, Clone)]
struct Ctx {
    endpoint: Endpoint,
    local: SocketAddr,
}

/// Serves one instance's Agones SDK over HTTP on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    endpoint: Endpoint,
    shutdown: CancellationToken,
) -> Result<()> {
    let local = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("could not read the Agones HTTP address: {e}")))?;
    let app = router(Ctx { endpoint, local });
    let limits = exile_api::serve::Limits::agones();
    crate::sdk::serve_bounded(listener, app, limits, &shutdown, "Agones SDK HTTP").await
}

fn router(ctx: Ctx) -> Router {
    Router::new()
        .route("/ready", post(ready))
        .route("/allocate", post(allocate))
        .route("/shutdown", post(shutdown))
        .route("/health", post(health))
        .route("/reserve", post(reserve))
        .route("/metadata/label", put(label))
        .route("/metadata/annotation", put(annotation))
        .route("/gameserver", get(game_server))
        .route("/watch/gameserver", get(watch))
        .route("/alpha/player/connect", post(player_connect))
        .route("/alpha/player/disconnect", post(player_disconnect))
        .route(
            "/alpha/player/capacity",
            put(set_capacity).get(get_capacity),
        )
        .route("/alpha/player/count", get(get_count))
        .route("/alpha/player/connected", get(connected_players))
        .route("/alpha/player/connected/{player_id}", get(is_connected))
        .fallback(not_served)
        .layer(axum::middleware::from_fn_with_state(ctx.clone(), admit))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

/// Lets a request through only from one of the instance's processes.
async fn admit(
    State(ctx): State<Ctx>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Response {
    match ctx.endpoint.admit(Some(peer), Some(ctx.local)).await {
        Ok(()) => next.run(request).await,
        Err(e) => HttpError::from(e).into_response(),
    }
}

/// A failed call, as Agones' gateway writes it.
#[derive(Debug)]
struct HttpError(tonic::Status);

impl From<Error> for HttpError {
    fn from(e: Error) -> Self {
        // Through the one Error → Status mapping, which also logs internal causes.
        Self(tonic::Status::from(e))
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: i32,
    message: &'a str,
    details: [(); 0],
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = crate::sdk::http::http_status(self.0.code());
        let body = ErrorBody {
            code: self.0.code() as i32,
            message: self.0.message(),
            details: [],
        };
        answer(status, &body)
    }
}

/// A JSON answer.
fn answer(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "could not encode an Agones SDK answer");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn ok(body: &impl Serialize) -> Answer {
    Ok(answer(StatusCode::OK, body))
}

#[derive(Serialize)]
struct Empty {}

/// Decodes a request body; a blank one counts as `{}`.
fn parse<T: DeserializeOwned>(body: &Bytes) -> Result<T, HttpError> {
    let text: &[u8] = if body.trim_ascii().is_empty() {
        b"{}"
    } else {
        body
    };
    serde_json::from_slice(text).map_err(|e| {
        HttpError(tonic::Status::invalid_argument(format!(
            "the request body does not fit this call: {e}"
        )))
    })
}

type Answer = Result<Response, HttpError>;

async fn ready(State(ctx): State<Ctx>) -> Answer {
    ctx.endpoint.ready().await?;
    ok(&Empty {})
}

async fn allocate(State(ctx): State<Ctx>) -> Answer {
    ctx.endpoint.allocate().await?;
    ok(&Empty {})
}

async fn shutdown(State(ctx): State<Ctx>) -> Answer {
    ctx.endpoint.shutdown().await?;
    ok(&Empty {})
}

async fn health(State(ctx): State<Ctx>) -> Answer {
    ctx.endpoint.health().await?;
    ok(&Empty {})
}

async fn reserve(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let json::Duration { seconds } = parse(&body)?;
    ctx.endpoint.reserve(seconds).await?;
    ok(&Empty {})
}

async fn label(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let json::KeyValue { key, value } = parse(&body)?;
    ctx.endpoint.set_label(&key, value).await?;
    ok(&Empty {})
}

async fn annotation(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let json::KeyValue { key, value } = parse(&body)?;
    ctx.endpoint.set_annotation(&key, value).await?;
    ok(&Empty {})
}

async fn game_server(State(ctx): State<Ctx>) -> Answer {
    let gs = ctx.endpoint.game_server().await?;
    ok(&json::GameServer::from(gs))
}

async fn watch(State(ctx): State<Ctx>) -> Answer {
    let views = ctx.endpoint.watch().await?;
    let lines = views.map(|gs| {
        serde_json::to_vec(&json::WatchLine { result: gs.into() }).map(|mut line| {
            line.push(b'\n');
            Bytes::from(line)
        })
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(lines),
    )
        .into_response())
}

async fn player_connect(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let json::PlayerId { player_id } = parse(&body)?;
    let added = ctx.endpoint.player_connect(player_id).await?;
    ok(&json::Bool { bool: added })
}

async fn player_disconnect(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let json::PlayerId { player_id } = parse(&body)?;
    let removed = ctx.endpoint.player_disconnect(player_id).await?;
    ok(&json::Bool { bool: removed })
}

async fn set_capacity(State(ctx): State<Ctx>, body: Bytes) -> Answer {
    let json::Count { count } = parse(&body)?;
    ctx.endpoint.set_player_capacity(count).await?;
    ok(&Empty {})
}

async fn get_capacity(State(ctx): State<Ctx>) -> Answer {
    let (count, _) = ctx.endpoint.players().await?;
    ok(&json::Count { count })
}

async fn get_count(State(ctx): State<Ctx>) -> Answer {
    let (_, ids) = ctx.endpoint.players().await?;
    let count = i64::try_from(ids.len()).unwrap_or(i64::MAX);
    ok(&json::Count { count })
}

async fn connected_players(State(ctx): State<Ctx>) -> Answer {
    let (_, list) = ctx.endpoint.players().await?;
    ok(&json::PlayerIdList { list })
}

async fn is_connected(State(ctx): State<Ctx>, Path(player_id): Path<String>) -> Answer {
    let (_, ids) = ctx.endpoint.players().await?;
    ok(&json::Bool {
        bool: ids.contains(&player_id),
    })
}

/// Paths not served: the counters and lists are UNIMPLEMENTED, anything else unknown.
async fn not_served(uri: Uri) -> HttpError {
    let path = uri.path();
    if path.starts_with("/v1beta1/") {
        HttpError(tonic::Status::unimplemented(format!(
            "{path}: Exile does not keep Agones counters and lists; track them in the game, or use labels (PUT /metadata/label)"
        )))
    } else {
        HttpError(tonic::Status::not_found(format!(
            "no Agones SDK route {path}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Agones' REST bodies as games send them, with 64-bit integers as numbers or strings.
    const SEEDS: [&str; 5] = [
        r#"{"seconds":"10"}"#,
        r#"{"seconds":10}"#,
        r#"{"key":"map","value":"dust"}"#,
        r#"{"playerID":"p1"}"#,
        r#"{"count":"8"}"#,
    ];

    fn decode_all(bytes: &[u8]) {
        let body = Bytes::copy_from_slice(bytes);
        let check = |e: HttpError| assert_eq!(e.0.code(), tonic::Code::InvalidArgument);
        let _ = parse::<json::Duration>(&body).map_err(check);
        let _ = parse::<json::KeyValue>(&body).map_err(check);
        let _ = parse::<json::PlayerId>(&body).map_err(check);
        let _ = parse::<json::Count>(&body).map_err(check);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Hostile or broken bodies decode to a value or to 400 with a sentence, never a
        /// panic (the 64-bit integer reader included).
        #[test]
        fn mutated_bodies_are_values_or_bad_requests(
            seed in 0usize..5,
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            tail in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut bytes = SEEDS[seed].as_bytes().to_vec();
            for (at, b) in edits {
                let i = at % bytes.len();
                bytes[i] = b;
            }
            bytes.extend(tail);
            decode_all(&bytes);
        }

        #[test]
        fn random_bodies_are_values_or_bad_requests(
            bytes in proptest::collection::vec(any::<u8>(), 0..128),
        ) {
            decode_all(&bytes);
        }
    }
}
