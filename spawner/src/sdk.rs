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

/// Runs one front end's `server`, which stops accepting once `shutdown` is cancelled and then
/// waits for the calls still open; those still open [`SHUTDOWN_GRACE`] later are dropped.
async fn serve_bounded<E: std::fmt::Display>(
    server: impl Future<Output = std::result::Result<(), E>>,
    shutdown: &CancellationToken,
    what: &str,
) -> Result<()> {
    let grace = async {
        shutdown.cancelled().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        result = server => {
            result.map_err(|e| Error::Internal(format!("the {what} endpoint failed: {e}")))
        }
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

/// The SDK calls, shared by both front ends. Each takes the caller's `authorization` value and
/// acts on the instance whose secret it carries, never on another.
#[derive(Debug, Clone)]
struct Core {
    manager: Manager,
    /// Ends open watches when the endpoint shuts down, so they never hold it open.
    shutdown: CancellationToken,
}

impl Core {
    /// The caller's instance, from its bearer secret.
    async fn caller(&self, authorization: Option<&str>) -> Result<InstanceRecord> {
        self.manager.by_sdk_token(bearer(authorization)).await
    }

    async fn apply(
        &self,
        authorization: Option<&str>,
        call: SdkCall,
    ) -> Result<v1::InstanceStatus> {
        let rec = self.caller(authorization).await?;
        Ok(self.manager.sdk(&rec.id, call).await?.to_status())
    }

    async fn ready(&self, authorization: Option<&str>) -> Result<v1::InstanceStatus> {
        self.apply(authorization, SdkCall::Ready).await
    }

    async fn health(&self, authorization: Option<&str>) -> Result<()> {
        self.apply(authorization, SdkCall::Health).await.map(drop)
    }

    async fn set_players(
        &self,
        authorization: Option<&str>,
        count: u32,
        max: u32,
    ) -> Result<v1::InstanceStatus> {
        let rec = self.caller(authorization).await?;
        if max != 0 && count > max {
            return Err(Error::InvalidArgument(format!(
                "count {count} is more than max {max}"
            )));
        }
        let call = SdkCall::Players { count, max };
        Ok(self.manager.sdk(&rec.id, call).await?.to_status())
    }

    async fn set_label(
        &self,
        authorization: Option<&str>,
        key: String,
        value: String,
    ) -> Result<v1::InstanceStatus> {
        self.apply(authorization, SdkCall::Label { key, value })
            .await
    }

    async fn get_instance(&self, authorization: Option<&str>) -> Result<v1::InstanceStatus> {
        Ok(self.caller(authorization).await?.to_status())
    }

    /// The instance now, then after every change; ends when the instance is removed or the
    /// endpoint shuts down.
    async fn watch(
        &self,
        authorization: Option<&str>,
    ) -> Result<impl Stream<Item = v1::InstanceStatus> + Send + 'static> {
        // Subscribe before reading the current view, so no change falls in between.
        let events = self.manager.subscribe();
        let rec = self.caller(authorization).await?;
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

    async fn shutdown(&self, authorization: Option<&str>) -> Result<()> {
        let rec = self.caller(authorization).await?;
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

    async fn allocate(&self, authorization: Option<&str>) -> Result<v1::InstanceStatus> {
        self.apply(authorization, SdkCall::Allocate).await
    }

    async fn reserve(
        &self,
        authorization: Option<&str>,
        ttl_seconds: u32,
    ) -> Result<v1::InstanceStatus> {
        let rec = self.caller(authorization).await?;
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
