//! The game-server SDK: what a game tells its own spawner about itself, named by the
//! per-instance secret it was given in `EXILE_SDK_TOKEN`.
//!
//! Two front ends serve it on loopback, both over the one [`Core`] here so they cannot drift
//! apart: gRPC ([`grpc`], `EXILE_SDK_ADDR`) for engines with a gRPC stack and HTTP/1.1 with
//! JSON ([`http`], `EXILE_SDK_HTTP_ADDR`) for the others and for scripts.

pub mod grpc;
pub mod http;
mod json;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use exile_api::v1;
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::error::{Error, Result};
use crate::instance::{OpContext, SdkCall};
use crate::manager::Manager;
use crate::state::InstanceRecord;

/// Longest reservation a game may ask for: one day.
const MAX_RESERVE_SECS: u32 = 86_400;

/// How long calls still open at shutdown may take before they are dropped, so a game stuck
/// mid-call cannot hold the spawner up.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Unauthenticated => Status::unauthenticated(e.to_string()),
            Error::PermissionDenied(_) => Status::permission_denied(e.to_string()),
            Error::Unimplemented(_) => Status::unimplemented(e.to_string()),
            Error::NotFound(_) => Status::not_found(e.to_string()),
            Error::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
            Error::InvalidArgument(_) | Error::Config(_) => Status::invalid_argument(e.to_string()),
            Error::DeadlineExceeded => Status::deadline_exceeded(e.to_string()),
            Error::Cancelled => Status::cancelled(e.to_string()),
            Error::ManagerGone => Status::unavailable(e.to_string()),
            Error::Counts(c) => {
                use exile_api::counts::CountsError as C;
                match c {
                    C::NotFound(m) => Status::not_found(m),
                    C::OutOfRange(m) => Status::out_of_range(m),
                    C::AlreadyExists(m) => Status::already_exists(m),
                    C::InvalidArgument(m) => Status::invalid_argument(m),
                }
            }
            other => {
                tracing::error!(error = %other, "SDK call failed");
                Status::internal("internal error; see the spawner log")
            }
        }
    }
}

/// Binds an SDK listener. With port 0, the port kept in `data_dir/port_file` from an earlier
/// start is tried first (games adopted after a restart still hold its address), then a new
/// one, which is kept for next time.
async fn bind_kept(
    addr: SocketAddr,
    data_dir: &Path,
    port_file: &str,
    what: &str,
) -> Result<TcpListener> {
    let port_file = crate::layout::Layout::new(data_dir).file(port_file);
    if addr.port() == 0
        && let Some(port) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|t| t.trim().parse::<u16>().ok())
    {
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(listener) => return Ok(listener),
            Err(e) => {
                tracing::warn!(port, error = %e, "the {what} port of the last start is taken; picking a new one (games adopted from it lose the {what})");
            }
        }
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Config(format!("could not listen for the {what} on {addr}: {e}")))?;
    if addr.port() == 0 {
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("could not read the address of", &port_file, e))?
            .port();
        crate::state::write_atomic(&port_file, port.to_string().as_bytes(), 0o644)?;
    }
    Ok(listener)
}

/// Serves one front end's `app` on `listener` with `limits` (the shared listener's caps and
/// timeouts); once `shutdown` is cancelled it stops accepting and waits for the calls still
/// open, and those still open [`SHUTDOWN_GRACE`] later are dropped.
pub(crate) async fn serve_bounded(
    listener: TcpListener,
    app: axum::Router,
    limits: exile_api::serve::Limits,
    shutdown: &CancellationToken,
    what: &'static str,
) -> Result<()> {
    let server = exile_api::serve::serve(listener, app, limits, what, shutdown.clone());
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        () = server => Ok(()),
        () = grace => {
            tracing::warn!("{what} calls still open at shutdown were dropped");
            Ok(())
        }
    }
}

/// The secret in an `authorization: Bearer <secret>` value; empty (which no instance holds)
/// when the value is missing or names another scheme.
fn bearer(authorization: Option<&str>) -> &str {
    authorization
        .and_then(|v| {
            let (scheme, secret) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim())
        })
        .unwrap_or_default()
}

/// Who is calling: how a front end names the caller's instance.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Who<'a> {
    /// The `authorization` value of a call to the shared endpoint: the instance whose secret
    /// it carries.
    Bearer(Option<&'a str>),
    /// The instance whose own endpoint was called, its caller already checked to be one of the
    /// instance's processes (the Agones endpoint).
    Instance(&'a str),
}

/// The SDK calls, shared by every front end (Exile's and Agones'). Each acts on the caller's
/// instance ([`Who`]), never on another.
#[derive(Debug, Clone)]
pub(crate) struct Core {
    pub(crate) manager: Manager,
    /// Ends open watches when the endpoint shuts down, so they never hold it open.
    pub(crate) shutdown: CancellationToken,
}

impl Core {
    /// The caller's instance.
    pub(crate) async fn caller(&self, who: Who<'_>) -> Result<InstanceRecord> {
        match who {
            Who::Bearer(authorization) => self.manager.by_sdk_token(bearer(authorization)).await,
            Who::Instance(id) => self.manager.get(id).await,
        }
    }

    pub(crate) async fn apply(&self, who: Who<'_>, call: SdkCall) -> Result<v1::InstanceStatus> {
        let rec = self.caller(who).await?;
        Ok(self.manager.sdk(&rec.id, call).await?.to_status())
    }

    pub(crate) async fn ready(&self, who: Who<'_>) -> Result<v1::InstanceStatus> {
        self.apply(who, SdkCall::Ready).await
    }

    pub(crate) async fn health(&self, who: Who<'_>) -> Result<()> {
        self.apply(who, SdkCall::Health).await.map(drop)
    }

    pub(crate) async fn set_players(
        &self,
        who: Who<'_>,
        count: u32,
        max: u32,
    ) -> Result<v1::InstanceStatus> {
        let rec = self.caller(who).await?;
        if max != 0 && count > max {
            return Err(Error::InvalidArgument(format!(
                "count {count} is more than max {max}"
            )));
        }
        let call = SdkCall::Players { count, max };
        Ok(self.manager.sdk(&rec.id, call).await?.to_status())
    }

    pub(crate) async fn set_label(
        &self,
        who: Who<'_>,
        key: String,
        value: String,
    ) -> Result<v1::InstanceStatus> {
        self.apply(who, SdkCall::Label { key, value }).await
    }

    pub(crate) async fn get_instance(&self, who: Who<'_>) -> Result<v1::InstanceStatus> {
        Ok(self.caller(who).await?.to_status())
    }

    /// The instance now, then after every change; ends when the instance is removed or the
    /// endpoint shuts down.
    pub(crate) async fn watch(
        &self,
        who: Who<'_>,
    ) -> Result<impl Stream<Item = v1::InstanceStatus> + Send + 'static> {
        // Subscribe before reading the current view, so no change falls in between.
        let events = self.manager.subscribe();
        let rec = self.caller(who).await?;
        let first = rec.to_status();
        let state = WatchState {
            events,
            id: rec.id,
            revision: first.revision,
            first: Some(first),
            done: false,
        };
        let views = futures::stream::unfold(state, |mut st| async move {
            let status = st.next().await?;
            Some((status, st))
        });
        Ok(views.take_until(self.shutdown.clone().cancelled_owned()))
    }

    pub(crate) async fn shutdown(&self, who: Who<'_>) -> Result<()> {
        let rec = self.caller(who).await?;
        if !rec.state.has_process() {
            return Err(Error::FailedPrecondition(format!(
                "instance {} is {}; nothing to stop",
                rec.id,
                rec.state.name()
            )));
        }
        // The stop waits for this very game to exit: answer first, stop in the background.
        let manager = self.manager.clone();
        tokio::spawn(async move {
            if let Err(e) = manager.stop(&rec.id, None, OpContext::default()).await {
                tracing::warn!(instance = %rec.id, error = %e, "stop asked by the game failed");
            }
        });
        Ok(())
    }

    pub(crate) async fn allocate(&self, who: Who<'_>) -> Result<v1::InstanceStatus> {
        self.apply(who, SdkCall::Allocate).await
    }

    /// Sets (or with an empty value removes) one annotation of the caller's instance.
    pub(crate) async fn set_annotation(
        &self,
        who: Who<'_>,
        key: String,
        value: String,
    ) -> Result<v1::InstanceStatus> {
        self.apply(who, SdkCall::Annotation { key, value }).await
    }

    pub(crate) async fn reserve(
        &self,
        who: Who<'_>,
        ttl_seconds: u32,
    ) -> Result<v1::InstanceStatus> {
        let rec = self.caller(who).await?;
        if !(1..=MAX_RESERVE_SECS).contains(&ttl_seconds) {
            return Err(Error::InvalidArgument(format!(
                "ttl_seconds must be 1 to {MAX_RESERVE_SECS}, not {ttl_seconds}"
            )));
        }
        let call = SdkCall::Reserve {
            ttl: std::time::Duration::from_secs(u64::from(ttl_seconds)),
        };
        Ok(self.manager.sdk(&rec.id, call).await?.to_status())
    }
}

/// Where a watch is: the first view still to send, then the caller's events.
struct WatchState {
    events: tokio::sync::broadcast::Receiver<v1::InstanceEvent>,
    id: String,
    revision: u64,
    first: Option<v1::InstanceStatus>,
    done: bool,
}

impl WatchState {
    /// The next view of the instance; `None` once it is removed or the manager is gone.
    pub(crate) async fn next(&mut self) -> Option<v1::InstanceStatus> {
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

#[cfg(test)]
mod tests {
    use super::bearer;

    #[test]
    fn the_secret_comes_only_from_a_bearer_value() {
        assert_eq!(bearer(Some("Bearer abc")), "abc");
        assert_eq!(bearer(Some("bearer  abc ")), "abc");
        assert_eq!(bearer(Some("Basic abc")), "");
        assert_eq!(bearer(Some("abc")), "");
        assert_eq!(bearer(None), "");
    }
}
