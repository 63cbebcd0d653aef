//! The HTTP/1.1 JSON front end of the SDK, for engines without a gRPC stack and for scripts.
//! It listens on loopback at the address handed to games as `EXILE_SDK_HTTP_ADDR`
//! (`host:port`), and every route runs the same call as its gRPC twin in `sdk.proto`.
//!
//! Every request carries `Authorization: Bearer $EXILE_SDK_TOKEN`. Bodies are JSON objects with
//! the proto's field names; a call without parameters takes no body (or `{}`), and fields the
//! call does not know are refused rather than ignored.
//!
//! | Route                | Body                               | Answer                    |
//! |----------------------|------------------------------------|---------------------------|
//! | `POST /v1/ready`     | —                                  | `{"instance":{…}}`        |
//! | `POST /v1/health`    | —                                  | `{}`                      |
//! | `POST /v1/players`   | `{"count":3,"max":16}` (max: 0 = unknown, may be left out) | `{"instance":{…}}` |
//! | `POST /v1/label`     | `{"key":"map","value":"dust"}` (empty or no value removes) | `{"instance":{…}}` |
//! | `GET  /v1/instance`  | —                                  | `{"instance":{…}}`        |
//! | `GET  /v1/watch`     | —                                  | `{"instance":{…}}` lines  |
//! | `POST /v1/shutdown`  | —                                  | `{}`                      |
//! | `POST /v1/allocate`  | —                                  | `{"instance":{…}}`        |
//! | `POST /v1/reserve`   | `{"ttl_seconds":60}` (1 to 86400)  | `{"instance":{…}}`        |
//!
//! The instance has the fields of `InstanceStatus` (`id`, `state`, `ports`, `labels`,
//! `players`, `max_players`, `revision`, …); enum values are their proto names, e.g.
//! `"state":"INSTANCE_STATE_READY"`. `GET /v1/watch` answers `application/x-ndjson`: one line
//! now, then one per change, until the instance is removed or the spawner stops.
//!
//! Errors answer `{"error":"<one sentence>"}` with a status from [`http_status`]: 400 for a
//! malformed body or argument, 401 for a missing or unknown secret, 404 for an unknown route,
//! 405 for a wrong method, 409 for a call the instance's state forbids, 413 for a body over
//! 64 KiB.

use std::net::SocketAddr;
use std::path::Path;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::json::{self, Empty, ErrorAnswer, InstanceAnswer};
use super::{Core, Who};
use crate::error::{Error, Result};
use crate::manager::Manager;

/// File in the data dir that remembers the port chosen for `--sdk-http-listen` port 0.
const PORT_FILE: &str = "sdk-http-port";

/// Largest request body; the biggest real one (a label) is well under 1 KiB.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// Binds the HTTP SDK listener; with port 0 the port of the last start is kept.
pub async fn bind(addr: SocketAddr, data_dir: &Path) -> Result<TcpListener> {
    super::bind_kept(addr, data_dir, PORT_FILE, "SDK HTTP").await
}

/// Serves the SDK over HTTP on `listener` until `shutdown` is cancelled; requests still open
/// shortly after are dropped.
pub async fn serve(
    listener: TcpListener,
    manager: Manager,
    shutdown: CancellationToken,
) -> Result<()> {
    let app = router(Core {
        manager,
        shutdown: shutdown.clone(),
    });
    super::serve_bounded(
        listener,
        app,
        exile_api::serve::Limits::sdk(),
        &shutdown,
        "SDK HTTP",
    )
    .await
}

fn router(core: Core) -> Router {
    Router::new()
        .route("/v1/ready", post(ready))
        .route("/v1/health", post(health))
        .route("/v1/players", post(players))
        .route("/v1/label", post(label))
        .route("/v1/instance", get(instance))
        .route("/v1/watch", get(watch))
        .route("/v1/shutdown", post(shutdown))
        .route("/v1/allocate", post(allocate))
        .route("/v1/reserve", post(reserve))
        // After the routes: it applies to the routes present.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(core)
}

/// The HTTP status for a gRPC code, so both front ends classify every failure alike. A call the
/// instance's state forbids is a conflict (409), told apart from a malformed request (400).
pub fn http_status(code: tonic::Code) -> StatusCode {
    use tonic::Code;
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable | Code::Cancelled => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A failed call: its status and the sentence for `{"error":…}`.
#[derive(Debug)]
struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<Error> for HttpError {
    fn from(e: Error) -> Self {
        // Through the one Error → Status mapping, which also logs internal causes.
        let status = tonic::Status::from(e);
        Self::new(http_status(status.code()), status.message())
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        answer(
            self.status,
            &ErrorAnswer {
                error: self.message,
            },
        )
    }
}

/// A JSON answer, newline-terminated so `curl` output ends its line.
fn answer(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            (status, [(header::CONTENT_TYPE, "application/json")], bytes).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "could not encode an SDK answer");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn instance_answer(status: exile_api::v1::InstanceStatus) -> Response {
    answer(StatusCode::OK, &InstanceAnswer::from(status))
}

/// The caller, by the `Authorization` value of its request.
fn auth(headers: &HeaderMap) -> Who<'_> {
    Who::Bearer(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    )
}

/// Decodes a request body; a blank one counts as `{}`.
fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, HttpError> {
    let body = body.map_err(|rejection| match rejection {
        BytesRejection::FailedToBufferBody(ref e)
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
        {
            HttpError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is larger than {} KiB",
                    MAX_BODY_BYTES / 1024
                ),
            )
        }
        other => HttpError::new(
            StatusCode::BAD_REQUEST,
            format!("could not read the request body: {}", other.body_text()),
        ),
    })?;
    let text: &[u8] = if body.trim_ascii().is_empty() {
        b"{}"
    } else {
        &body
    };
    serde_json::from_slice(text).map_err(|e| {
        let message = if e.is_data() {
            format!("the request body does not fit this call: {e}")
        } else {
            format!("the request body is not valid JSON: {e}")
        };
        HttpError::new(StatusCode::BAD_REQUEST, message)
    })
}

type Answer = Result<Response, HttpError>;
type RawBody = Result<Bytes, BytesRejection>;

async fn ready(State(core): State<Core>, headers: HeaderMap, body: RawBody) -> Answer {
    let json::NoParams {} = parse(body)?;
    Ok(instance_answer(core.ready(auth(&headers)).await?))
}

async fn health(State(core): State<Core>, headers: HeaderMap, body: RawBody) -> Answer {
    let json::NoParams {} = parse(body)?;
    core.health(auth(&headers)).await?;
    Ok(answer(StatusCode::OK, &Empty {}))
}

async fn players(State(core): State<Core>, headers: HeaderMap, body: RawBody) -> Answer {
    let json::SetPlayers { count, max } = parse(body)?;
    Ok(instance_answer(
        core.set_players(auth(&headers), count, max).await?,
    ))
}

async fn label(State(core): State<Core>, headers: HeaderMap, body: RawBody) -> Answer {
    let json::SetLabel { key, value } = parse(body)?;
    Ok(instance_answer(
        core.set_label(auth(&headers), key, value).await?,
    ))
}

async fn instance(State(core): State<Core>, headers: HeaderMap) -> Answer {
    Ok(instance_answer(core.get_instance(auth(&headers)).await?))
}

async fn watch(State(core): State<Core>, headers: HeaderMap) -> Answer {
    let views = core.watch(auth(&headers)).await?;
    let lines = views.map(|status| {
        serde_json::to_vec(&InstanceAnswer::from(status)).map(|mut line| {
            line.push(b'\n');
            Bytes::from(line)
        })
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(lines),
    )
        .into_response())
}

async fn shutdown(State(core): State<Core>, headers: HeaderMap, body: RawBody) -> Answer {
    let json::NoParams {} = parse(body)?;
    core.shutdown(auth(&headers)).await?;
    Ok(answer(StatusCode::OK, &Empty {}))
}

async fn allocate(State(core): State<Core>, headers: HeaderMap, body: RawBody) -> Answer {
    let json::NoParams {} = parse(body)?;
    Ok(instance_answer(core.allocate(auth(&headers)).await?))
}

async fn reserve(State(core): State<Core>, headers: HeaderMap, body: RawBody) -> Answer {
    let json::Reserve { ttl_seconds } = parse(body)?;
    Ok(instance_answer(
        core.reserve(auth(&headers), ttl_seconds).await?,
    ))
}

async fn not_found(method: Method, uri: Uri) -> HttpError {
    HttpError::new(
        StatusCode::NOT_FOUND,
        format!(
            "no SDK route {method} {}; the routes are under /v1/ (ready, health, players, label, instance, watch, shutdown, allocate, reserve)",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> HttpError {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        format!(
            "{} does not take {method}; the Allow header says what it takes",
            uri.path()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_rules_are_conflicts_and_mistakes_bad_requests() {
        assert_eq!(
            http_status(tonic::Code::FailedPrecondition),
            StatusCode::CONFLICT
        );
        assert_eq!(
            http_status(tonic::Code::InvalidArgument),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            http_status(tonic::Code::Unauthenticated),
            StatusCode::UNAUTHORIZED
        );
        let e = HttpError::from(Error::Internal("disk on fire".into()));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !e.message.contains("fire"),
            "internal causes stay in the log"
        );
    }

    /// What a game sends as a body, hostile or broken: mutated valid bodies and random
    /// bytes decode to a value or to 400 Bad Request with a sentence, never a panic.
    mod hostile_bodies {
        use super::*;
        use proptest::prelude::*;

        const SEEDS: [&str; 5] = [
            r#"{"count":3,"max":16}"#,
            r#"{"key":"mode","value":"ctf"}"#,
            r#"{"ttl_seconds":30}"#,
            "{}",
            "",
        ];

        fn decode_all(bytes: &[u8]) {
            let body = || Ok(Bytes::copy_from_slice(bytes));
            let check = |e: HttpError| {
                assert_eq!(e.status, StatusCode::BAD_REQUEST);
                assert!(!e.message.is_empty());
            };
            let _ = parse::<json::NoParams>(body()).map_err(check);
            let _ = parse::<json::SetPlayers>(body()).map_err(check);
            let _ = parse::<json::SetLabel>(body()).map_err(check);
            let _ = parse::<json::Reserve>(body()).map_err(check);
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn mutated_bodies_are_values_or_bad_requests(
                seed in 0usize..5,
                edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8),
                tail in proptest::collection::vec(any::<u8>(), 0..16),
            ) {
                let mut bytes = SEEDS[seed].as_bytes().to_vec();
                for (at, b) in edits {
                    if !bytes.is_empty() {
                        let i = at % bytes.len();
                        bytes[i] = b;
                    }
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
}
