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
//! | `GET /v1beta1/counters/{name}`          | —                            | Counter              |
//! | `PATCH /v1beta1/counters/{name}`        | `{"countDiff":"1"}`, `{"count":"5","capacity":"10"}` | Counter |
//! | `GET /v1beta1/lists/{name}`             | —                            | List                 |
//! | `PATCH /v1beta1/lists/{name}[?updateMask=capacity,values]` | `{"capacity":"8","values":[]}` | List |
//! | `POST /v1beta1/lists/{name}:addValue`, `:removeValue` | `{"value":"p1"}`   | List                 |
//!
//! A Counter reads `{"name":"rooms","count":"1","capacity":"10"}`, a List
//! `{"name":"players","capacity":"8","values":["p1"]}`. Without `updateMask`, a list PATCH
//! changes the fields its body holds, as Agones' gateway does.
//!
//! Errors answer `{"code":<gRPC code>,"message":"<sentence>","details":[]}` as Agones' gateway
//! does, with the HTTP status of the same code: 403 for a caller outside the instance, 404 for
//! an undeclared counter or list, 400 for a count or capacity out of range, 409 for a value
//! already in its list.

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

use exile_api::counts::{CounterUpdate, ListUpdate};

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
        .route(
            "/v1beta1/counters/{name}",
            get(get_counter).patch(update_counter),
        )
        .route(
            "/v1beta1/lists/{name}",
            get(get_list).patch(update_list).post(list_value),
        )
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

async fn get_counter(State(ctx): State<Ctx>, Path(name): Path<String>) -> Answer {
    let counter = ctx.endpoint.counter(&name).await?;
    ok(&json::BetaCounter::from(counter))
}

async fn update_counter(State(ctx): State<Ctx>, Path(name): Path<String>, body: Bytes) -> Answer {
    let json::CounterUpdateRequest {
        count,
        capacity,
        count_diff,
    } = parse(&body)?;
    let update = CounterUpdate {
        capacity,
        count,
        diff: count_diff,
    };
    let counter = ctx.endpoint.update_counter(name, update).await?;
    ok(&json::BetaCounter::from(counter))
}

async fn get_list(State(ctx): State<Ctx>, Path(name): Path<String>) -> Answer {
    let list = ctx.endpoint.list(&name).await?;
    ok(&json::BetaList::from(list))
}

/// The paths of an `updateMask` (or `update_mask`) query parameter, comma-separated.
fn mask_in_query(query: Option<&str>) -> Option<Vec<String>> {
    let query = query?;
    let value = query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        matches!(key, "updateMask" | "update_mask").then_some(value)
    })?;
    let value = value.replace("%2C", ",").replace("%2c", ",");
    Some(
        value
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

async fn update_list(
    State(ctx): State<Ctx>,
    Path(name): Path<String>,
    uri: Uri,
    body: Bytes,
) -> Answer {
    let patch: json::ListPatch = parse(&body)?;
    let paths = mask_in_query(uri.query())
        .unwrap_or_else(|| patch.mask().into_iter().map(str::to_owned).collect());
    let update = ListUpdate::from_mask(
        &paths,
        patch.capacity.unwrap_or(0),
        patch.values.unwrap_or_default(),
    )
    .map_err(Error::from)?;
    let list = ctx.endpoint.update_list(name, update).await?;
    ok(&json::BetaList::from(list))
}

/// `POST /v1beta1/lists/{name}:addValue` and `:removeValue`: the action is the segment's end.
async fn list_value(State(ctx): State<Ctx>, Path(segment): Path<String>, body: Bytes) -> Answer {
    let Some((name, action)) = segment.rsplit_once(':') else {
        return Err(no_route(&format!("/v1beta1/lists/{segment}")));
    };
    let json::ListValue { value } = parse(&body)?;
    let list = match action {
        "addValue" => ctx.endpoint.add_list_value(name.to_owned(), value).await?,
        "removeValue" => {
            ctx.endpoint
                .remove_list_value(name.to_owned(), value)
                .await?
        }
        _ => return Err(no_route(&format!("/v1beta1/lists/{segment}"))),
    };
    ok(&json::BetaList::from(list))
}

fn no_route(path: &str) -> HttpError {
    HttpError(tonic::Status::not_found(format!(
        "no Agones SDK route {path}"
    )))
}

/// Paths not served.
async fn not_served(uri: Uri) -> HttpError {
    no_route(uri.path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Agones' REST bodies as games send them, with 64-bit integers as numbers or strings.
    const SEEDS: [&str; 8] = [
        r#"{"seconds":"10"}"#,
        r#"{"seconds":10}"#,
        r#"{"key":"map","value":"dust"}"#,
        r#"{"playerID":"p1"}"#,
        r#"{"count":"8"}"#,
        r#"{"count":"5","capacity":11,"countDiff":"-2"}"#,
        r#"{"capacity":"120","values":["p3","p4"]}"#,
        r#"{"value":"player9"}"#,
    ];

    fn decode_all(bytes: &[u8]) {
        let body = Bytes::copy_from_slice(bytes);
        let check = |e: HttpError| assert_eq!(e.0.code(), tonic::Code::InvalidArgument);
        let _ = parse::<json::Duration>(&body).map_err(check);
        let _ = parse::<json::KeyValue>(&body).map_err(check);
        let _ = parse::<json::PlayerId>(&body).map_err(check);
        let _ = parse::<json::Count>(&body).map_err(check);
        let _ = parse::<json::CounterUpdateRequest>(&body).map_err(check);
        let _ = parse::<json::ListPatch>(&body).map_err(check);
        let _ = parse::<json::ListValue>(&body).map_err(check);
    }

    #[test]
    fn the_update_mask_comes_from_the_query_in_either_spelling() {
        assert_eq!(mask_in_query(None), None);
        assert_eq!(mask_in_query(Some("x=1")), None);
        assert_eq!(
            mask_in_query(Some("updateMask=capacity,values")).unwrap(),
            ["capacity", "values"]
        );
        assert_eq!(
            mask_in_query(Some("a=b&update_mask=capacity%2Cvalues")).unwrap(),
            ["capacity", "values"]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Hostile or broken bodies decode to a value or to 400 with a sentence, never a
        /// panic (the 64-bit integer reader included).
        #[test]
        fn mutated_bodies_are_values_or_bad_requests(
            seed in 0usize..8,
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
