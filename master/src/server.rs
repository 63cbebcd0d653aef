//! The one listening port: gRPC and grpc-web services behind the access layer, plus
//! /healthz, /metrics and the static dashboard.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use axum::response::IntoResponse;
use axum::routing::get;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::Layer;

use crate::access::{AccessLayer, AccessState};
use crate::error::{Error, Result};
use crate::service::SharedRef;
use crate::service::auth_api::AuthApi;
use crate::service::backup_api::BackupApi;
use crate::service::build_api::BuildApi;
use crate::service::event_api::EventApi;
use crate::service::fleet_api::{AllocationApi, FleetApi};
use crate::service::instance_api::InstanceApi;
use crate::service::link_api::LinkApi;
use crate::service::metrics_api::MetricsApi;
use crate::service::settings_api::SettingsApi;
use crate::service::spawner_api::SpawnerApi;
use crate::service::system_api::{SystemApi, stats};
use exile_api::v1::allocation_service_server::AllocationServiceServer;
use exile_api::v1::auth_service_server::AuthServiceServer;
use exile_api::v1::backup_service_server::BackupServiceServer;
use exile_api::v1::build_service_server::BuildServiceServer;
use exile_api::v1::event_service_server::EventServiceServer;
use exile_api::v1::fleet_service_server::FleetServiceServer;
use exile_api::v1::instance_service_server::InstanceServiceServer;
use exile_api::v1::metrics_service_server::MetricsServiceServer;
use exile_api::v1::settings_service_server::SettingsServiceServer;
use exile_api::v1::spawner_link_server::SpawnerLinkServer;
use exile_api::v1::spawner_service_server::SpawnerServiceServer;
use exile_api::v1::system_service_server::SystemServiceServer;

/// Largest request message accepted (bigger ones are refused before decoding).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// The gRPC routes built so far, with the names of the services they serve (what reflection
/// lists).
struct Grpc {
    router: axum::Router,
    access: AccessLayer,
    names: Vec<&'static str>,
}

impl Grpc {
    fn add<S>(mut self, svc: S) -> Self
    where
        S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        // grpc-web outside the access layer so the browser's calls are checked like native
        // ones; only on the gRPC routes, never on static files.
        let svc = tonic_web::GrpcWebLayer::new().layer(self.access.layer(svc));
        self.router = self
            .router
            .route_service(&format!("/{}/{{*rest}}", S::NAME), svc);
        self.names.push(S::NAME);
        self
    }
}

/// The operator-facing services: sign-in, spawners, instances, events, the system,
/// backups and resource history.
fn operator_services(grpc: Grpc, shared: &SharedRef) -> Grpc {
    grpc.add(
        AuthServiceServer::new(AuthApi(shared.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
    .add(
        SpawnerServiceServer::new(SpawnerApi(shared.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
    .add(
        InstanceServiceServer::new(InstanceApi(shared.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
    .add(
        EventServiceServer::new(EventApi(shared.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
    .add(
        SystemServiceServer::new(SystemApi(shared.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
    .add(
        BackupServiceServer::new(BackupApi(shared.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
    .add(
        MetricsServiceServer::new(MetricsApi(shared.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// Uploaded builds and rollouts.
fn build_services(grpc: Grpc, shared: &SharedRef) -> Grpc {
    grpc.add(
        BuildServiceServer::new(BuildApi(shared.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// Fleets and allocations.
fn fleet_services(grpc: Grpc, shared: &SharedRef) -> Grpc {
    grpc.add(
        FleetServiceServer::new(FleetApi(shared.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
    .add(
        AllocationServiceServer::new(AllocationApi(shared.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// Settings, read and changed live.
fn settings_services(grpc: Grpc, shared: &SharedRef) -> Grpc {
    grpc.add(
        SettingsServiceServer::new(SettingsApi(shared.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// The spawners' link.
fn link_services(grpc: Grpc, shared: &SharedRef) -> Grpc {
    grpc.add(
        SpawnerLinkServer::new(LinkApi(shared.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// Every service of the master, subsystem by subsystem: the one list that the router, the
/// health service and reflection all read.
fn services(grpc: Grpc, shared: &SharedRef) -> Grpc {
    let grpc = operator_services(grpc, shared);
    let grpc = build_services(grpc, shared);
    let grpc = fleet_services(grpc, shared);
    let grpc = settings_services(grpc, shared);
    link_services(grpc, shared)
}

/// Builds the whole HTTP router.
pub async fn router(
    shared: SharedRef,
    access: Arc<AccessState>,
    dashboard_dir: Option<&Path>,
) -> Result<axum::Router> {
    let grpc = services(
        Grpc {
            router: axum::Router::new(),
            access: AccessLayer::new(access),
            names: Vec::new(),
        },
        &shared,
    );
    // Every service added above reports SERVING (the health service reports itself).
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in &grpc.names {
        reporter
            .set_service_status(*name, tonic_health::ServingStatus::Serving)
            .await;
    }
    let mut grpc = grpc.add(health);

    // The descriptor set also holds GameServerSdk, which only spawners serve: reflection lists
    // the services added above and the two reflection services, nothing else. Both builders
    // know both reflection protocols' files, so either answers for every listed service.
    let reflection = || {
        let names = grpc.names.iter().copied().chain([
            tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
            tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
        ]);
        names.fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(exile_api::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(
                    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
                ),
            |builder, name| builder.with_service_name(name),
        )
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| Error::Internal(format!("reflection: {e}")))?;
    grpc = grpc.add(reflection_v1).add(reflection_v1alpha);
    let mut r = grpc.router;

    let metrics_shared = shared.clone();
    r = r
        .route(
            "/healthz",
            get(|| async {
                (
                    [(http::header::CONTENT_TYPE, "application/json")],
                    "{\"status\":\"ok\"}",
                )
            }),
        )
        .route(
            "/metrics",
            get(move |headers: http::HeaderMap| {
                let shared = metrics_shared.clone();
                async move {
                    let gated = shared
                        .settings
                        .value(exile_api::settings::METRICS_REQUIRE_TOKEN)
                        .as_u64()
                        != 0;
                    if gated && !crate::access::may_view(&shared.auth, &headers).await {
                        return (
                            http::StatusCode::UNAUTHORIZED,
                            [
                                (http::header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                                (http::header::WWW_AUTHENTICATE, "Bearer"),
                            ],
                            "/metrics needs `Authorization: Bearer <token>` of a viewer or higher (setting master.metrics_require_token).\n",
                        )
                            .into_response();
                    }
                    metrics_text(&shared)
                }
            }),
        );
    r = match dashboard_dir {
        Some(dir) if dir.join("index.html").is_file() => {
            // Unknown paths get index.html so the dashboard's own router can handle them.
            // `cargo xtask dashboard` writes a gzip copy of each file; browsers that accept
            // gzip get it (the wasm is a third of its size), others the plain file.
            let index = tower_http::services::ServeFile::new(dir.join("index.html"))
                .precompressed_gzip();
            let files = tower_http::services::ServeDir::new(dir)
                .precompressed_gzip()
                .fallback(index);
            r.fallback_service(tower::ServiceBuilder::new().map_response(dashboard_headers).service(files))
        }
        _ => r.fallback(|| async {
            (
                http::StatusCode::NOT_FOUND,
                [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "The Exile dashboard is not built or not configured: run `cargo xtask dashboard` and start the master with --dashboard-dir.\n",
            )
                .into_response()
        }),
    };
    Ok(r)
}

/// What the dashboard's pages may load: scripts and the wasm module from this origin only
/// (`wasm-unsafe-eval` compiles the module; no inline or remote script runs), calls to this
/// origin only, no framing. Style attributes stay allowed: the dashboard sets widths of
/// progress bars and menu positions through them.
const DASHBOARD_CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
    style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
    object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers of every dashboard file: the CSP above, no MIME sniffing, no framing (for browsers
/// without frame-ancestors), no referrer. The HTML page is also `Cache-Control: no-store`: a
/// page kept in the browser's back/forward cache keeps its Watch stream open, and over
/// HTTP/1.1 a browser allows six connections to a host, so after a few page loads the
/// dashboard's next calls would queue forever. The wasm, JS and CSS stay cacheable.
fn dashboard_headers<B>(mut res: http::Response<B>) -> http::Response<B> {
    let html = res
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    let h = res.headers_mut();
    if html {
        h.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
    }
    h.insert(
        http::header::CONTENT_SECURITY_POLICY,
        http::HeaderValue::from_static(DASHBOARD_CSP),
    );
    h.insert(
        http::header::X_CONTENT_TYPE_OPTIONS,
        http::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        http::header::X_FRAME_OPTIONS,
        http::HeaderValue::from_static("DENY"),
    );
    h.insert(
        http::header::REFERRER_POLICY,
        http::HeaderValue::from_static("no-referrer"),
    );
    res
}

fn metrics_text(shared: &crate::service::Shared) -> axum::response::Response {
    let s = stats(shared);
    let body = format!(
        "# HELP exile_uptime_seconds Seconds since the master started.\n# TYPE exile_uptime_seconds gauge\nexile_uptime_seconds {}\n\
# HELP exile_spawners Spawners known.\n# TYPE exile_spawners gauge\nexile_spawners {}\n\
# HELP exile_spawners_online Spawners online or draining.\n# TYPE exile_spawners_online gauge\nexile_spawners_online {}\n\
# HELP exile_instances Instances known.\n# TYPE exile_instances gauge\nexile_instances {}\n\
# HELP exile_instances_running Instances with a live process.\n# TYPE exile_instances_running gauge\nexile_instances_running {}\n\
# HELP exile_players Players connected.\n# TYPE exile_players gauge\nexile_players {}\n\
# HELP exile_requests_total RPCs served.\n# TYPE exile_requests_total counter\nexile_requests_total {}\n\
# HELP exile_errors_total RPCs that ended in an error.\n# TYPE exile_errors_total counter\nexile_errors_total {}\n\
# HELP exile_resident_memory_bytes Resident memory of the master.\n# TYPE exile_resident_memory_bytes gauge\nexile_resident_memory_bytes {}\n\
# HELP exile_build_bytes_served_total Bytes of build chunks sent to spawners.\n# TYPE exile_build_bytes_served_total counter\nexile_build_bytes_served_total {}\n\
# HELP exile_spawner_links Spawner links open.\n# TYPE exile_spawner_links gauge\nexile_spawner_links {}\n\
# HELP exile_watch_subscribers Watch streams open.\n# TYPE exile_watch_subscribers gauge\nexile_watch_subscribers {}\n\
# HELP exile_received_bytes_total Request body bytes received.\n# TYPE exile_received_bytes_total counter\nexile_received_bytes_total {}\n\
# HELP exile_sent_bytes_total Response body bytes sent.\n# TYPE exile_sent_bytes_total counter\nexile_sent_bytes_total {}\n\
# HELP exile_password_hashes_total Password hashes run to check a password (logins, password changes).\n# TYPE exile_password_hashes_total counter\nexile_password_hashes_total {}\n\
# HELP exile_auth_throttled_total Logins and enrollments refused by the throttle.\n# TYPE exile_auth_throttled_total counter\nexile_auth_throttled_total {}\n",
        s.uptime_seconds,
        s.spawners_total,
        s.spawners_online,
        s.instances_total,
        s.instances_running,
        s.players_total,
        s.requests_total,
        s.errors_total,
        s.memory_bytes,
        shared.builds.bytes_served(),
        s.open_links,
        s.watch_subscribers,
        s.bytes_in,
        s.bytes_out,
        shared.auth.password_hashes(),
        shared.auth.throttled()
    );
    (
        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        body,
    )
        .into_response()
}
