//! Connection to the master: which URL and token to use, the channel, the bearer interceptor,
//! and turning gRPC statuses into one sentence a person can act on.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use exile_api::v1::{
    allocation_service_client::AllocationServiceClient, auth_service_client::AuthServiceClient,
    backup_service_client::BackupServiceClient, build_service_client::BuildServiceClient,
    event_service_client::EventServiceClient, fleet_service_client::FleetServiceClient,
    instance_service_client::InstanceServiceClient, metrics_service_client::MetricsServiceClient,
    spawner_service_client::SpawnerServiceClient, system_service_client::SystemServiceClient,
};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status};

use crate::cli::GlobalArgs;
use crate::config::Config;
use crate::exit::Failed;

/// Adds `authorization: Bearer <token>` to every call when there is a token.
#[derive(Clone)]
pub struct BearerAuth {
    header: Option<MetadataValue<Ascii>>,
}

impl BearerAuth {
    /// An interceptor for `token`; `None` sends no header (only `Login` works so).
    pub fn new(token: Option<&str>) -> Result<Self> {
        let header = token
            .map(|t| {
                format!("Bearer {t}")
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| anyhow!("the token contains characters not allowed in a header"))
            })
            .transpose()?;
        Ok(Self { header })
    }
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

/// The channel type every client uses.
pub type Authed = InterceptedService<Channel, BearerAuth>;

/// Where to connect and with what: flags and env first, then the chosen context.
#[derive(Debug, Clone)]
pub struct Target {
    pub master: String,
    pub token: Option<String>,
    /// CA file to trust instead of the system roots (https:// only).
    pub ca_file: Option<std::path::PathBuf>,
    /// Name of the stored context the values came from, if any.
    pub context: Option<String>,
}

impl Target {
    /// Resolves the master and token; fails when no master is known.
    pub fn resolve(global: &GlobalArgs, config: &Config) -> Result<Self> {
        let ctx = config.select(global.context.as_deref())?;
        let master = global
            .master
            .clone()
            .or_else(|| ctx.map(|c| c.master.clone()))
            .ok_or_else(|| {
                anyhow!("no master given: run `exilectl login --master URL` or pass --master")
            })?;
        // A context's token belongs to its own master: do not send it to another one.
        let ctx =
            ctx.filter(|c| global.master.is_none() || global.master.as_deref() == Some(&c.master));
        let token = global
            .token
            .clone()
            .or_else(|| ctx.map(|c| c.token.clone()))
            .filter(|t| !t.is_empty());
        let ca_file = global
            .ca_file
            .clone()
            .or_else(|| ctx.and_then(|c| c.ca_file.clone()));
        Ok(Self {
            master,
            token,
            ca_file,
            context: ctx.map(|c| c.name.clone()),
        })
    }
}

/// A connected master with the caller's credential.
#[derive(Clone)]
pub struct Session {
    pub master: String,
    pub context: Option<String>,
    channel: Channel,
    auth: BearerAuth,
}

impl Session {
    /// Connects to `target.master`. `timeout` bounds the connection and each unary call;
    /// `streaming` leaves calls unbounded, for `watch`.
    pub async fn connect(target: &Target, timeout: Duration, streaming: bool) -> Result<Self> {
        let (master, endpoint) = endpoint(target, timeout, streaming)?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| Failed::connect(&master, &root_cause(&e)))?;
        Self::with_channel(target, master, channel)
    }

    /// A session for a long-running screen (`top`): calls are unbounded (the caller bounds
    /// each one) and the first connection is made on first use, so an unreachable master
    /// shows as a connection state rather than ending the program.
    pub fn connect_lazy(target: &Target, timeout: Duration) -> Result<Self> {
        let (master, endpoint) = endpoint(target, timeout, true)?;
        let channel = endpoint.connect_lazy();
        Self::with_channel(target, master, channel)
    }

    fn with_channel(target: &Target, master: String, channel: Channel) -> Result<Self> {
        Ok(Self {
            auth: BearerAuth::new(target.token.as_deref())?,
            context: target.context.clone(),
            master,
            channel,
        })
    }

    pub fn settings(
        &self,
    ) -> exile_api::v1::settings_service_client::SettingsServiceClient<Authed> {
        exile_api::v1::settings_service_client::SettingsServiceClient::with_interceptor(
            self.channel.clone(),
            self.auth.clone(),
        )
    }

    pub fn fleets(&self) -> FleetServiceClient<Authed> {
        FleetServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn allocations(&self) -> AllocationServiceClient<Authed> {
        AllocationServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn auth(&self) -> AuthServiceClient<Authed> {
        AuthServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn spawners(&self) -> SpawnerServiceClient<Authed> {
        SpawnerServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn instances(&self) -> InstanceServiceClient<Authed> {
        InstanceServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn events(&self) -> EventServiceClient<Authed> {
        EventServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn system(&self) -> SystemServiceClient<Authed> {
        SystemServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn backups(&self) -> BackupServiceClient<Authed> {
        BackupServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn builds(&self) -> BuildServiceClient<Authed> {
        BuildServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    pub fn metrics(&self) -> MetricsServiceClient<Authed> {
        MetricsServiceClient::with_interceptor(self.channel.clone(), self.auth.clone())
    }

    /// Turns a failed call into the sentence shown to the user.
    pub fn error(&self, status: &Status) -> anyhow::Error {
        // A connection made again later (a new stream, a reconnect) can meet a certificate
        // that is not trusted too.
        if status.code() == Code::Unavailable
            && let Some(e) = std::error::Error::source(status)
        {
            let cause = root_cause(e);
            if exile_api::tls::is_certificate_error(&cause) {
                return Failed::connect(&self.master, &cause);
            }
        }
        let code = match status.code() {
            // tonic reports its own call deadline as a cancellation.
            Code::Cancelled if status.message().contains("Timeout expired") => {
                Code::DeadlineExceeded
            }
            code => code,
        };
        anyhow::Error::new(Failed {
            code,
            message: describe(status, &self.master),
        })
    }
}

/// The endpoint for `target.master`, checked; `streaming` leaves calls without a deadline.
fn endpoint(target: &Target, timeout: Duration, streaming: bool) -> Result<(String, Endpoint)> {
    let master = target.master.trim_end_matches('/').to_owned();
    if !(master.starts_with("http://") || master.starts_with("https://")) {
        bail!("the master URL must start with http:// or https://, got `{master}`");
    }
    let endpoint = Endpoint::from_shared(master.clone())
        .map_err(|e| anyhow!("invalid master URL `{master}`: {e}"))?
        .connect_timeout(timeout);
    let tls = exile_api::tls::ClientTls::from_ca_file(target.ca_file.as_deref())
        .map_err(anyhow::Error::msg)?;
    let mut endpoint = tls
        .apply(endpoint)
        .map_err(|e| anyhow!("TLS setup for `{master}` failed: {e}"))?;
    if !streaming {
        endpoint = endpoint.timeout(timeout);
    }
    Ok((master, endpoint))
}

/// Unwraps a unary answer or turns its status into a readable error.
pub trait RpcResult<T> {
    fn or_explain(self, session: &Session) -> Result<T>;
}

impl<T> RpcResult<T> for std::result::Result<tonic::Response<T>, Status> {
    fn or_explain(self, session: &Session) -> Result<T> {
        self.map(tonic::Response::into_inner)
            .map_err(|s| session.error(&s))
    }
}

/// One sentence for a gRPC status.
pub fn describe(status: &Status, master: &str) -> String {
    let msg = status.message();
    match status.code() {
        Code::Unauthenticated => "not logged in or session expired: run `exilectl login`".into(),
        Code::PermissionDenied => format!("permission denied: {msg}"),
        // A status built on this side from a transport error carries that error as its
        // source; one the master sent (a spawner that is not connected) carries none and
        // already says what is unavailable.
        Code::Unavailable => match std::error::Error::source(status) {
            Some(e) => {
                let cause = Some(root_cause(e))
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| msg.to_owned());
                format!(
                    "cannot reach the master at {master}: {}",
                    exile_api::tls::explain_connect_error(&cause)
                )
            }
            None => format!("unavailable: {msg}"),
        },
        Code::Cancelled if msg.contains("Timeout expired") => {
            format!("the master at {master} did not answer in time (see --timeout)")
        }
        Code::DeadlineExceeded => {
            format!("the master at {master} did not answer in time (see --timeout)")
        }
        _ if msg.is_empty() => format!("the master answered {:?}", status.code()),
        _ => msg.to_owned(),
    }
}

/// The innermost cause of an error, which is the one that says what went wrong
/// ("Connection refused"), rather than "transport error".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Context;
    use crate::output::Format;

    fn global(master: Option<&str>, token: Option<&str>, context: Option<&str>) -> GlobalArgs {
        GlobalArgs {
            master: master.map(Into::into),
            token: token.map(Into::into),
            context: context.map(Into::into),
            ca_file: None,
            output: Format::Table,
            timeout: Duration::from_secs(1),
        }
    }

    fn config() -> Config {
        let mut c = Config::default();
        c.upsert(Context {
            name: "a".into(),
            master: "http://a:1".into(),
            token: "tok-a".into(),
            ca_file: None,
        });
        c.upsert(Context {
            name: "b".into(),
            master: "http://b:1".into(),
            token: String::new(),
            ca_file: None,
        });
        c.use_context("a").unwrap();
        c
    }

    #[test]
    fn target_resolution() {
        let c = config();
        let t = Target::resolve(&global(None, None, None), &c).unwrap();
        assert_eq!(
            (t.master.as_str(), t.token.as_deref()),
            ("http://a:1", Some("tok-a"))
        );
        let t = Target::resolve(&global(None, Some("x"), Some("b")), &c).unwrap();
        assert_eq!(
            (t.master.as_str(), t.token.as_deref()),
            ("http://b:1", Some("x"))
        );
        let t = Target::resolve(&global(None, None, Some("b")), &c).unwrap();
        assert_eq!(t.token, None);
        // Another master than the context's: its token is not sent there.
        let t = Target::resolve(&global(Some("http://evil:1"), None, None), &c).unwrap();
        assert_eq!((t.master.as_str(), t.token), ("http://evil:1", None));
        assert!(Target::resolve(&global(None, None, None), &Config::default()).is_err());
        assert!(Target::resolve(&global(None, None, Some("zz")), &c).is_err());
    }

    #[test]
    fn status_sentences() {
        let m = "http://m:1";
        assert_eq!(
            describe(&Status::unauthenticated("bad token"), m),
            "not logged in or session expired: run `exilectl login`"
        );
        assert_eq!(
            describe(&Status::permission_denied("needs operator"), m),
            "permission denied: needs operator"
        );
        let mut transport = Status::unavailable("transport error");
        transport.set_source(std::sync::Arc::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        )));
        assert_eq!(
            describe(&transport, m),
            "cannot reach the master at http://m:1: connection refused"
        );
        assert_eq!(
            describe(&Status::unavailable("spawner spw-1 is not connected"), m),
            "unavailable: spawner spw-1 is not connected"
        );
        assert_eq!(
            describe(&Status::not_found("no instance x"), m),
            "no instance x"
        );
    }

    #[test]
    fn bearer_header() {
        let mut a = BearerAuth::new(Some("abc")).unwrap();
        let req = a.call(Request::new(())).unwrap();
        assert_eq!(req.metadata().get("authorization").unwrap(), "Bearer abc");
        let mut none = BearerAuth::new(None).unwrap();
        assert!(
            none.call(Request::new(()))
                .unwrap()
                .metadata()
                .get("authorization")
                .is_none()
        );
        assert!(BearerAuth::new(Some("a\nb")).is_err());
    }
}
