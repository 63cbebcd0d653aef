//! The one table of who may call what, and the tower layer that enforces it, counts
//! requests and writes the audit log for every mutating call.

pub mod flood;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::body::Body;

use crate::auth::Auth;
use crate::error::Error;
use crate::model::{Principal, Role};
use crate::store::{AuditRecord, Store};
use exile_api::now_unix_ms;
use exile_api::v1 as pb;

/// What a method requires of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (login, enrollment, health, reflection).
    Public,
    /// A spawner credential.
    Spawner,
    /// A person or API token with at least this role.
    Role(Role),
    /// The allocator role, or a person or token with at least the operator role.
    Allocate,
    /// Any person or API token, whatever its role (the allocator's included), never a
    /// spawner: for asking who one is, so a matchmaker can check its credential.
    SignedIn,
}

/// Access rule of one gRPC method.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// Who may call it.
    pub access: Access,
    /// Whether calls are written to the audit log.
    pub audited: bool,
    /// A long-lived answer (Watch, followed logs), counted against its caller's
    /// [`streams::MAX_STREAMS_PER_PRINCIPAL`].
    pub stream: bool,
}

const fn rule(access: Access, audited: bool) -> Rule {
    Rule {
        access,
        audited,
        stream: false,
    }
}

/// A streaming method's rule: never audited (it changes nothing), its open answers capped
/// per caller.
const fn stream(access: Access) -> Rule {
    Rule {
        access,
        audited: false,
        stream: true,
    }
}

mod revoke;
pub mod streams;

use Access::{Public, Spawner};
const VIEWER: Access = Access::Role(Role::Viewer);
const OPERATOR: Access = Access::Role(Role::Operator);
const ADMIN: Access = Access::Role(Role::Admin);

/// THE table: every method of every service the master serves, with its rule. Methods not
/// listed are refused, so a new RPC cannot be reached until it is given a rule here.
#[rustfmt::skip]
pub const RULES: &[(&str, Rule)] = &[
    ("/exile.v1.AuthService/Login",                    rule(Public, true)),
    ("/exile.v1.AuthService/Logout",                   rule(VIEWER, true)),
    ("/exile.v1.AuthService/WhoAmI",                   rule(Access::SignedIn, false)),
    ("/exile.v1.AuthService/CreateUser",               rule(ADMIN, true)),
    ("/exile.v1.AuthService/ListUsers",                rule(ADMIN, false)),
    ("/exile.v1.AuthService/DeleteUser",               rule(ADMIN, true)),
    ("/exile.v1.AuthService/ChangePassword",           rule(VIEWER, true)),
    ("/exile.v1.AuthService/CreateApiToken",           rule(ADMIN, true)),
    ("/exile.v1.AuthService/ListApiTokens",            rule(ADMIN, false)),
    ("/exile.v1.AuthService/RevokeApiToken",           rule(ADMIN, true)),
    ("/exile.v1.AuthService/UpdateUser",               rule(ADMIN, true)),
    ("/exile.v1.SpawnerService/CreateEnrollmentToken", rule(ADMIN, true)),
    ("/exile.v1.SpawnerService/ListEnrollmentTokens",  rule(ADMIN, false)),
    ("/exile.v1.SpawnerService/RevokeEnrollmentToken", rule(ADMIN, true)),
    ("/exile.v1.SpawnerService/ListSpawners",          rule(VIEWER, false)),
    ("/exile.v1.SpawnerService/GetSpawner",            rule(VIEWER, false)),
    ("/exile.v1.SpawnerService/DrainSpawner",          rule(OPERATOR, true)),
    ("/exile.v1.SpawnerService/UndrainSpawner",        rule(OPERATOR, true)),
    ("/exile.v1.SpawnerService/RemoveSpawner",         rule(ADMIN, true)),
    ("/exile.v1.InstanceService/SpawnInstance",        rule(OPERATOR, true)),
    ("/exile.v1.InstanceService/ListInstances",        rule(VIEWER, false)),
    ("/exile.v1.InstanceService/GetInstance",          rule(VIEWER, false)),
    ("/exile.v1.InstanceService/StartInstance",        rule(OPERATOR, true)),
    ("/exile.v1.InstanceService/StopInstance",         rule(OPERATOR, true)),
    ("/exile.v1.InstanceService/RestartInstance",      rule(OPERATOR, true)),
    ("/exile.v1.InstanceService/RemoveInstance",       rule(OPERATOR, true)),
    // Operator: logs (an instance's output or a spawner's own log) can hold secrets.
    // Reading changes nothing, so not audited.
    ("/exile.v1.InstanceService/StreamLogs",           stream(OPERATOR)),
    ("/exile.v1.InstanceService/SendConsoleCommand",   rule(OPERATOR, true)),
    ("/exile.v1.InstanceService/RenameInstance",       rule(OPERATOR, true)),
    ("/exile.v1.BackupService/CreateBackup",           rule(OPERATOR, true)),
    ("/exile.v1.BackupService/ListBackups",            rule(VIEWER, false)),
    ("/exile.v1.BackupService/RestoreBackup",          rule(OPERATOR, true)),
    ("/exile.v1.BackupService/DeleteBackup",           rule(OPERATOR, true)),
    ("/exile.v1.EventService/Watch",                   stream(VIEWER)),
    ("/exile.v1.SystemService/GetStats",               rule(VIEWER, false)),
    ("/exile.v1.MetricsService/GetMetricsHistory",     rule(VIEWER, false)),
    ("/exile.v1.MetricsService/GetMasterHistory",      rule(VIEWER, false)),
    ("/exile.v1.SystemService/ListAuditLog",           rule(ADMIN, false)),
    ("/exile.v1.SystemService/ListErrors",             rule(OPERATOR, false)),
    ("/exile.v1.BuildService/ListBuilds",              rule(VIEWER, false)),
    ("/exile.v1.BuildService/GetBuild",                rule(VIEWER, false)),
    ("/exile.v1.BuildService/GetRollout",              rule(VIEWER, false)),
    ("/exile.v1.BuildService/ListRollouts",            rule(VIEWER, false)),
    ("/exile.v1.BuildService/UploadBuild",             rule(OPERATOR, true)),
    ("/exile.v1.BuildService/BeginUpload",             rule(OPERATOR, true)),
    // Not audited: one row per MiB would flood the log; Begin and Finish say it all.
    ("/exile.v1.BuildService/UploadPart",              rule(OPERATOR, false)),
    ("/exile.v1.BuildService/FinishUpload",            rule(OPERATOR, true)),
    ("/exile.v1.BuildService/ActivateBuild",           rule(OPERATOR, true)),
    ("/exile.v1.BuildService/StartRollout",            rule(OPERATOR, true)),
    ("/exile.v1.BuildService/CancelRollout",           rule(OPERATOR, true)),
    ("/exile.v1.BuildService/RollbackBuild",           rule(OPERATOR, true)),
    ("/exile.v1.BuildService/DeleteBuild",             rule(ADMIN, true)),
    ("/exile.v1.FleetService/CreateFleet",             rule(OPERATOR, true)),
    ("/exile.v1.FleetService/GetFleet",                rule(VIEWER, false)),
    ("/exile.v1.FleetService/ListFleets",              rule(VIEWER, false)),
    ("/exile.v1.FleetService/UpdateFleet",             rule(OPERATOR, true)),
    ("/exile.v1.FleetService/ScaleFleet",              rule(OPERATOR, true)),
    ("/exile.v1.FleetService/DeleteFleet",             rule(OPERATOR, true)),
    // Not audited per call: at thousands a second the audit log would be the bottleneck and
    // the noise; every allocation is an instance event in Watch and is logged at debug.
    ("/exile.v1.AllocationService/Allocate",           rule(Access::Allocate, false)),
    ("/exile.v1.SettingsService/ListSettings",         rule(VIEWER, false)),
    ("/exile.v1.SettingsService/GetSetting",           rule(VIEWER, false)),
    ("/exile.v1.SettingsService/GetSettingHistory",    rule(VIEWER, false)),
    ("/exile.v1.SettingsService/SetSetting",           rule(ADMIN, true)),
    ("/exile.v1.SettingsService/ResetSetting",         rule(ADMIN, true)),
    ("/exile.v1.SpawnerLink/Enroll",                   rule(Public, true)),
    ("/exile.v1.SpawnerLink/Link",                     rule(Spawner, false)),
    ("/exile.v1.SpawnerLink/GetBuildChunks",           rule(Spawner, false)),
    ("/exile.v1.SpawnerLink/FetchChunks",              rule(Spawner, false)),
];

/// Services outside exile.v1 that are public as a whole (standard health and reflection).
const PUBLIC_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The rule for a request path; None means the method is refused.
pub fn rule_for(path: &str) -> Option<Rule> {
    if PUBLIC_SERVICES.iter().any(|p| path.starts_with(p)) {
        return Some(rule(Public, false));
    }
    RULES.iter().find(|(p, _)| *p == path).map(|(_, r)| *r)
}

/// Whether `p` may read what games print: whoever may call StreamLogs. A crash message
/// carries the end of the game's output, so it is cut off for everyone else
/// ([`exile_api::state::without_game_output`]).
pub fn may_read_game_output(p: &Principal) -> bool {
    rule_for("/exile.v1.InstanceService/StreamLogs").is_some_and(|r| check(r.access, p).is_ok())
}

/// Whether a plain HTTP request (not gRPC) carries the token of a viewer or higher: what
/// /metrics asks for when it is put behind a token.
pub async fn may_view(auth: &crate::auth::Auth, headers: &http::HeaderMap) -> bool {
    let Some(token) = bearer(headers) else {
        return false;
    };
    match auth.authenticate(token).await {
        Ok(p) => check(VIEWER, &p).is_ok(),
        Err(_) => false,
    }
}

/// Per-call facts handlers read from the request extensions.
#[derive(Clone)]
pub struct CallCtx {
    /// The caller.
    pub principal: Principal,
    /// Client address: the socket's, or the one a trusted proxy forwarded.
    pub peer: String,
    audit_note: Arc<Mutex<AuditNote>>,
}

#[derive(Default)]
struct AuditNote {
    target: String,
    detail: String,
}

impl CallCtx {
    /// Names the target of the call in the audit log.
    pub fn set_target(&self, target: impl Into<String>) {
        // std Mutex: a field store, never held across an await.
        self.audit_note
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .target = target.into();
    }

    /// Adds detail to the audit entry (never a secret).
    pub fn set_detail(&self, detail: impl Into<String>) {
        self.audit_note
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .detail = detail.into();
    }
}

/// Reads the call context a request was given by the access layer.
pub fn ctx<T>(req: &tonic::Request<T>) -> Result<CallCtx, Error> {
    req.extensions()
        .get::<CallCtx>()
        .cloned()
        .ok_or_else(|| Error::Internal("request reached a handler without the access layer".into()))
}

/// Failed calls the master remembers for ListErrors (the oldest drops out first).
pub const RECENT_ERRORS: usize = 256;

/// Longest status message kept per remembered error, in bytes.
const ERROR_MESSAGE_MAX: usize = 1024;

/// Request counters for GetStats and /metrics, and the ring of recent failed calls.
#[derive(Default)]
pub struct Counters {
    /// Calls served.
    pub requests: AtomicU64,
    /// Calls that ended in an error status.
    pub errors: AtomicU64,
    /// Request body bytes received.
    pub bytes_in: AtomicU64,
    /// Response body bytes sent.
    pub bytes_out: AtomicU64,
    /// Spawner heartbeats received.
    pub heartbeats: AtomicU64,
    /// Time from a call's arrival to its response headers, for the calls that reached a
    /// handler.
    pub latency: crate::perf::Latency,
    recent: Mutex<VecDeque<pb::ServerError>>,
}

impl Counters {
    /// Counts a failed call and remembers it.
    pub fn failed(&self, method: &str, code: tonic::Code, peer: &str, message: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut message = message.to_owned();
        if message.len() > ERROR_MESSAGE_MAX {
            let mut cut = ERROR_MESSAGE_MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        let entry = pb::ServerError {
            at_unix_ms: now_unix_ms(),
            method: method.to_owned(),
            code: format!("{code:?}"),
            peer: peer.to_owned(),
            message,
        };
        let mut ring = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == RECENT_ERRORS {
            ring.pop_front();
        }
        ring.push_back(entry);
    }

    /// Remembered failed calls matching `req`'s filters, newest first.
    pub fn recent_errors(&self, req: &pb::ListErrorsRequest) -> Vec<pb::ServerError> {
        let method = req.method.to_lowercase();
        let limit = match req.limit {
            0 => RECENT_ERRORS,
            n => usize::try_from(n).unwrap_or(RECENT_ERRORS),
        };
        let ring = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter()
            .rev()
            .filter(|e| method.is_empty() || e.method.to_lowercase().contains(&method))
            .filter(|e| req.code.is_empty() || e.code.eq_ignore_ascii_case(&req.code))
            .take(limit)
            .cloned()
            .collect()
    }

    /// Wraps a body so the bytes it carries are added to `counter`.
    fn counted(body: Body, counters: &Arc<Counters>, inbound: bool) -> Body {
        use http_body_util::BodyExt as _;
        let counters = counters.clone();
        Body::new(body.map_frame(move |frame| {
            if let Some(data) = frame.data_ref() {
                let counter = if inbound {
                    &counters.bytes_in
                } else {
                    &counters.bytes_out
                };
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
            frame
        }))
    }
}

/// Shared state of the access layer.
pub struct AccessState {
    /// Authenticator.
    pub auth: Arc<Auth>,
    /// Store for the audit log.
    pub store: Store,
    /// Counters.
    pub counters: Arc<Counters>,
    /// Proxies whose X-Forwarded-For is believed.
    pub proxies: crate::client_addr::TrustedProxies,
    /// Which anonymous failures get an audit row of their own.
    pub flood: flood::FloodGate,
    /// Streams each principal holds open.
    pub streams: Arc<streams::StreamSlots>,
}

impl AccessState {
    /// Writes the summaries of anonymous failures counted rather than written, for the
    /// minutes that are over (all of them when `all`, at shutdown).
    pub async fn write_flood_summaries(&self, all: bool) {
        for s in self.flood.closed(all) {
            write_summary(self, s).await;
        }
    }
}

/// Tower layer enforcing [`RULES`].
#[derive(Clone)]
pub struct AccessLayer {
    state: Arc<AccessState>,
}

impl AccessLayer {
    /// Creates the layer.
    pub fn new(state: Arc<AccessState>) -> Self {
        AccessLayer { state }
    }
}

impl<S> tower::Layer<S> for AccessLayer {
    type Service = AccessService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AccessService {
            inner,
            state: self.state.clone(),
        }
    }
}

/// Service produced by [`AccessLayer`].
#[derive(Clone)]
pub struct AccessService<S> {
    inner: S,
    state: Arc<AccessState>,
}

fn deny(status: tonic::Status) -> http::Response<Body> {
    status.into_http()
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    let v = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let t = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))?;
    Some(t.trim())
}

impl<S> tower::Service<http::Request<Body>> for AccessService<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        // Take the instance that was polled ready, leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            let peer = req
                .extensions()
                .get::<axum::extract::ConnectInfo<crate::tls::Peer>>()
                .map(|c| {
                    state
                        .proxies
                        .client(c.0.addr.ip(), req.headers())
                        .to_string()
                })
                .unwrap_or_else(|| "unknown".into());
            state.counters.requests.fetch_add(1, Ordering::Relaxed);
            let refuse = |status: tonic::Status| {
                state
                    .counters
                    .failed(&path, status.code(), &peer, status.message());
                Ok(deny(status))
            };
            let Some(rule) = rule_for(&path) else {
                return refuse(tonic::Status::permission_denied(format!(
                    "{path} is not open to any caller"
                )));
            };
            let token = bearer(req.headers()).map(str::to_owned);
            let principal = match (rule.access, token.as_deref()) {
                (Access::Public, _) => Principal::Anonymous,
                (_, None) => {
                    return refuse(tonic::Status::unauthenticated(
                        "missing `authorization: Bearer <token>`; log in first",
                    ));
                }
                (access, Some(token)) => match state.auth.authenticate(token).await {
                    Err(e) => return refuse(e.into()),
                    Ok(p) => {
                        if let Err(status) = check(access, &p) {
                            if rule.audited {
                                write_audit(
                                    &state,
                                    &p,
                                    &path,
                                    &peer,
                                    "PERMISSION_DENIED",
                                    status.message(),
                                    "",
                                )
                                .await;
                            }
                            return refuse(status);
                        }
                        p
                    }
                },
            };
            let slot = if rule.stream && principal.role().is_some() {
                match state.streams.take(&principal) {
                    Ok(slot) => Some(slot),
                    Err(why) => return refuse(tonic::Status::resource_exhausted(why)),
                }
            } else {
                None
            };
            let note = Arc::new(Mutex::new(AuditNote::default()));
            req.extensions_mut().insert(CallCtx {
                principal: principal.clone(),
                peer: peer.clone(),
                audit_note: note.clone(),
            });
            let req = req.map(|b| Counters::counted(b, &state.counters, true));
            let started = std::time::Instant::now();
            let mut resp = inner.call(req).await?;
            state.counters.latency.record(started.elapsed());
            reshape_decode_errors(&mut resp);
            let code = resp
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .unwrap_or(0);
            let message = if code == 0 {
                String::new()
            } else {
                let message = resp
                    .headers()
                    .get("grpc-message")
                    .and_then(|v| v.to_str().ok())
                    .map(percent_decode)
                    .unwrap_or_default();
                state
                    .counters
                    .failed(&path, tonic::Code::from_i32(code), &peer, &message);
                message
            };
            let resp = resp.map(|b| {
                let b = Counters::counted(b, &state.counters, false);
                let b = match &token {
                    // A call that failed at once has nothing more to send.
                    Some(token) if code == 0 => {
                        revoke::revocable(b, &state.auth, token, &principal)
                    }
                    _ => b,
                };
                // The stream's slot is given back when its answer ends.
                match slot {
                    Some(slot) => streams::holding(b, slot),
                    None => b,
                }
            });
            if rule.audited {
                let (target, detail) = {
                    let n = note.lock().unwrap_or_else(|e| e.into_inner());
                    (n.target.clone(), n.detail.clone())
                };
                let (result, detail) = if code == 0 {
                    ("ok".to_owned(), detail)
                } else {
                    (format!("{:?}", tonic::Code::from_i32(code)), message)
                };
                write_audit(&state, &principal, &path, &peer, &result, &detail, &target).await;
            }
            Ok(resp)
        })
    }
}

/// tonic reports an undecodable request as INTERNAL and an oversized one as OUT_OF_RANGE;
/// both are the caller's mistake, so they become INVALID_ARGUMENT here, in one place.
fn reshape_decode_errors(resp: &mut http::Response<Body>) {
    let code = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok());
    let message = resp
        .headers()
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    let bad_input = match code {
        Some(c) if c == tonic::Code::Internal as i32 => message.contains("failed to decode"),
        Some(c) if c == tonic::Code::OutOfRange as i32 => {
            message.contains("message length too large")
        }
        _ => false,
    };
    if bad_input {
        let h = resp.headers_mut();
        h.insert(
            "grpc-status",
            http::HeaderValue::from(tonic::Code::InvalidArgument as i32),
        );
        let text = format!("malformed or oversized request: {message}");
        let clean: String = text
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect();
        if let Ok(v) = http::HeaderValue::from_str(&clean) {
            h.insert("grpc-message", v);
        }
    }
}

fn check(access: Access, p: &Principal) -> Result<(), tonic::Status> {
    match (access, p) {
        (Access::Public, _) => Ok(()),
        (Access::Spawner, Principal::Spawner { .. }) => Ok(()),
        (Access::Spawner, _) => Err(tonic::Status::permission_denied(
            "only spawners may call this",
        )),
        (Access::Role(_) | Access::Allocate | Access::SignedIn, Principal::Spawner { .. }) => Err(
            tonic::Status::permission_denied("spawner credentials cannot call the control API"),
        ),
        (Access::SignedIn, p) => match p.role() {
            Some(_) => Ok(()),
            None => Err(tonic::Status::permission_denied("no role")),
        },
        (Access::Allocate, p) => match p.role() {
            Some(Role::Allocator | Role::Operator | Role::Admin) => Ok(()),
            Some(have) => Err(tonic::Status::permission_denied(format!(
                "this needs the allocator or operator role; {} has {have}",
                p.actor()
            ))),
            None => Err(tonic::Status::permission_denied("no role")),
        },
        (Access::Role(need), p) => match p.role() {
            Some(have) if have >= need => Ok(()),
            Some(have) => Err(tonic::Status::permission_denied(format!(
                "this needs the {need} role; {} has {have}",
                p.actor()
            ))),
            None => Err(tonic::Status::permission_denied("no role")),
        },
    }
}

async fn write_audit(
    state: &AccessState,
    p: &Principal,
    path: &str,
    peer: &str,
    result: &str,
    detail: &str,
    target: &str,
) {
    let action = path.rsplit('/').next().unwrap_or(path).to_owned();
    if matches!(p, Principal::Anonymous) && result != "ok" {
        let source = crate::client_addr::throttle_source(peer);
        let (row, summary) = state.flood.admit(&source, &action);
        if let Some(s) = summary {
            write_summary(state, s).await;
        }
        if !row {
            return;
        }
    }
    let actor = match p {
        // A login is done by the account it names, whether or not it succeeds.
        Principal::Anonymous if action == "Login" && !target.is_empty() => target.to_owned(),
        Principal::Anonymous => "anonymous".to_owned(),
        other => other.actor(),
    };
    let rec = AuditRecord {
        at: now_unix_ms(),
        actor,
        action,
        target: target.to_owned(),
        result: result.to_owned(),
        detail: detail.to_owned(),
        peer: peer.to_owned(),
    };
    if let Err(e) = state.store.insert_audit(rec).await {
        tracing::error!(error = %e, "could not write the audit log");
    }
}

/// One audit row standing for anonymous failures that were counted, not written.
async fn write_summary(state: &AccessState, s: flood::Summary) {
    let rec = AuditRecord {
        at: now_unix_ms(),
        actor: "anonymous".to_owned(),
        detail: s.detail(),
        action: s.action,
        target: String::new(),
        result: "aggregated".to_owned(),
        peer: s.source,
    };
    if let Err(e) = state.store.insert_audit(rec).await {
        tracing::error!(error = %e, "could not write the audit log");
    }
}

/// grpc-message is percent-encoded on the wire.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%25"), "a b%");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn roles_are_ordered() {
        let op = Principal::ApiToken {
            id: "t".into(),
            name: "t".into(),
            role: Role::Operator,
            expires_at: 0,
        };
        assert!(check(VIEWER, &op).is_ok());
        assert!(check(OPERATOR, &op).is_ok());
        assert_eq!(
            check(ADMIN, &op).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            check(Spawner, &op).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
        let sp = Principal::Spawner { id: "s".into() };
        assert_eq!(
            check(VIEWER, &sp).unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn an_allocator_may_allocate_and_nothing_else() {
        let token = |role| Principal::ApiToken {
            id: "t".into(),
            name: "mm".into(),
            role,
            expires_at: 0,
        };
        let alloc = token(Role::Allocator);
        assert!(check(Access::Allocate, &alloc).is_ok());
        for need in [VIEWER, OPERATOR, ADMIN] {
            assert_eq!(
                check(need, &alloc).unwrap_err().code(),
                tonic::Code::PermissionDenied
            );
        }
        // Operators allocate too; viewers and spawners do not.
        assert!(check(Access::Allocate, &token(Role::Operator)).is_ok());
        assert!(check(Access::Allocate, &token(Role::Admin)).is_ok());
        assert!(check(Access::Allocate, &token(Role::Viewer)).is_err());
        assert!(check(Access::Allocate, &Principal::Spawner { id: "s".into() }).is_err());
        // It may ask who it is, as anyone signed in may; spawners may not.
        assert!(check(Access::SignedIn, &alloc).is_ok());
        assert!(check(Access::SignedIn, &token(Role::Viewer)).is_ok());
        assert!(check(Access::SignedIn, &Principal::Spawner { id: "s".into() }).is_err());
        // Every rule that allows the allocator role is Allocate, or WhoAmI.
        for (path, r) in RULES {
            if check(r.access, &alloc).is_ok() && r.access != Access::Public {
                assert!(
                    matches!(
                        *path,
                        "/exile.v1.AllocationService/Allocate" | "/exile.v1.AuthService/WhoAmI"
                    ),
                    "{path} is open to the allocator role"
                );
            }
        }
    }
}
