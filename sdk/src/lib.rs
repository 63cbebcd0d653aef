//! Exile game-server SDK: what a game server links to tell its own spawner that it is ready,
//! alive, how many players it holds, and to read its own instance.
//!
//! The spawner gives every game it runs `EXILE_SDK_ADDR` (a loopback `host:port`) and
//! `EXILE_SDK_TOKEN` (the instance's own secret). [`Sdk::from_env`] reads both; outside
//! Exile it fails with [`Error::NotManaged`], so a game can run standalone:
//!
//! ```no_run
//! # async fn run() -> Result<(), exile_sdk::Error> {
//! use std::time::Duration;
//!
//! let sdk = match exile_sdk::Sdk::from_env().await {
//!     Ok(sdk) => Some(sdk),
//!     Err(exile_sdk::Error::NotManaged) => None, // started by hand: no spawner to tell
//!     Err(e) => return Err(e),
//! };
//! if let Some(sdk) = &sdk {
//!     // Bind the game's sockets first, then:
//!     sdk.ready().await?;
//!     let _health = sdk.spawn_health_loop(Duration::from_secs(1));
//!     sdk.set_players(1, 16).await?;
//!     sdk.set_label("map", "dust").await?;
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Engines without gRPC use the same calls as HTTP/JSON on `EXILE_SDK_HTTP_ADDR` with the
//! same secret; see the README's SDK section and `sdk/examples/http-game.sh`.

use std::time::Duration;

use exile_api::v1;
use exile_api::v1::game_server_sdk_client::GameServerSdkClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use exile_api::v1::{InstanceState, InstanceStatus};

/// Environment variable holding the spawner's SDK address.
pub const ADDR_ENV: &str = "EXILE_SDK_ADDR";
/// Environment variable holding the instance's SDK secret.
pub const TOKEN_ENV: &str = "EXILE_SDK_TOKEN";

/// What can go wrong talking to the spawner.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `EXILE_SDK_ADDR` or `EXILE_SDK_TOKEN` is not set: the game was not started by an
    /// Exile spawner (or by one without the SDK).
    #[error("not started by an Exile spawner ({ADDR_ENV} and {TOKEN_ENV} are not set)")]
    NotManaged,
    /// The SDK address is not a usable `host:port`.
    #[error("invalid SDK address {address}: {source}")]
    Address {
        /// The address given.
        address: String,
        /// Why it is unusable.
        #[source]
        source: tonic::codegen::http::uri::InvalidUri,
    },
    /// The secret cannot be sent as a header.
    #[error("the SDK secret holds characters that cannot be sent")]
    Token,
    /// The spawner refused or failed the call (UNAUTHENTICATED: wrong secret;
    /// FAILED_PRECONDITION: the instance is not running; UNAVAILABLE: no spawner).
    #[error("SDK call {call} failed: {source}")]
    Call {
        /// The call that failed.
        call: &'static str,
        /// The spawner's answer.
        #[source]
        source: tonic::Status,
    },
}

/// Result with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds the instance's secret to every call.
#[derive(Clone)]
struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Client = GameServerSdkClient<InterceptedService<Channel, Bearer>>;

/// A connection to the spawner running this game; cheap to clone.
#[derive(Clone)]
pub struct Sdk {
    client: Client,
}

impl std::fmt::Debug for Sdk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sdk").finish_non_exhaustive()
    }
}

fn call_error(call: &'static str) -> impl FnOnce(tonic::Status) -> Error {
    move |source| Error::Call { call, source }
}

impl Sdk {
    /// Connects with `EXILE_SDK_ADDR` and `EXILE_SDK_TOKEN`; [`Error::NotManaged`] when they
    /// are not set.
    pub async fn from_env() -> Result<Self> {
        let addr = std::env::var(ADDR_ENV).unwrap_or_default();
        let token = std::env::var(TOKEN_ENV).unwrap_or_default();
        if addr.is_empty() || token.is_empty() {
            return Err(Error::NotManaged);
        }
        Self::connect(&addr, &token).await
    }

    /// Connects to the SDK endpoint at `addr` (`host:port`) with the instance secret `token`.
    /// The connection is made on the first call and remade after a spawner restart.
    pub async fn connect(addr: &str, token: &str) -> Result<Self> {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .map_err(|e| Error::Address {
                address: addr.to_owned(),
                source: e,
            })?
            .connect_timeout(Duration::from_secs(5))
            .connect_lazy();
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(|_| Error::Token)?;
        Ok(Self {
            client: GameServerSdkClient::with_interceptor(channel, Bearer(bearer)),
        })
    }

    /// Tells the spawner the game accepts players: the instance becomes Ready.
    pub async fn ready(&self) -> Result<InstanceStatus> {
        let reply = self
            .client
            .clone()
            .ready(v1::SdkReadyRequest {})
            .await
            .map_err(call_error("Ready"))?;
        Ok(reply.into_inner().instance.unwrap_or_default())
    }

    /// One liveness ping.
    pub async fn health(&self) -> Result<()> {
        self.client
            .clone()
            .health(v1::SdkHealthRequest {})
            .await
            .map_err(call_error("Health"))?;
        Ok(())
    }

    /// Pings every `period` in a background task until the returned handle is aborted (or the
    /// runtime ends). A failed ping is reported on stderr and the loop goes on: the spawner
    /// may be restarting.
    pub fn spawn_health_loop(&self, period: Duration) -> tokio::task::JoinHandle<()> {
        let sdk = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = sdk.health().await {
                    eprintln!("exile-sdk: {e}");
                }
            }
        })
    }

    /// Reports `count` players connected out of `max` (0: unknown).
    pub async fn set_players(&self, count: u32, max: u32) -> Result<InstanceStatus> {
        let reply = self
            .client
            .clone()
            .set_players(v1::SdkSetPlayersRequest { count, max })
            .await
            .map_err(call_error("SetPlayers"))?;
        Ok(reply.into_inner().instance.unwrap_or_default())
    }

    /// Sets a label of the instance; an empty `value` removes it.
    pub async fn set_label(&self, key: &str, value: &str) -> Result<InstanceStatus> {
        let reply = self
            .client
            .clone()
            .set_label(v1::SdkSetLabelRequest {
                key: key.to_owned(),
                value: value.to_owned(),
            })
            .await
            .map_err(call_error("SetLabel"))?;
        Ok(reply.into_inner().instance.unwrap_or_default())
    }

    /// Marks the instance Allocated (handed to players).
    pub async fn allocate(&self) -> Result<InstanceStatus> {
        let reply = self
            .client
            .clone()
            .allocate(v1::SdkAllocateRequest {})
            .await
            .map_err(call_error("Allocate"))?;
        Ok(reply.into_inner().instance.unwrap_or_default())
    }

    /// The instance as the spawner sees it: id, port, labels, state, players.
    pub async fn instance(&self) -> Result<InstanceStatus> {
        let reply = self
            .client
            .clone()
            .get_instance(v1::SdkGetInstanceRequest {})
            .await
            .map_err(call_error("GetInstance"))?;
        Ok(reply.into_inner().instance.unwrap_or_default())
    }

    /// The instance now, then on every change: call [`Watch::next`] in a loop.
    pub async fn watch(&self) -> Result<Watch> {
        let stream = self
            .client
            .clone()
            .watch_instance(v1::SdkWatchInstanceRequest {})
            .await
            .map_err(call_error("WatchInstance"))?
            .into_inner();
        Ok(Watch { stream })
    }

    /// Asks the spawner to stop this game (SIGTERM, then SIGKILL after the grace period);
    /// the instance ends Stopped, not Crashed.
    pub async fn shutdown(&self) -> Result<()> {
        self.client
            .clone()
            .shutdown(v1::SdkShutdownRequest {})
            .await
            .map_err(call_error("Shutdown"))?;
        Ok(())
    }
}

/// The views of the instance from [`Sdk::watch`].
#[derive(Debug)]
pub struct Watch {
    stream: tonic::Streaming<v1::SdkWatchInstanceResponse>,
}

impl Watch {
    /// The next view; `None` when the instance is removed or the spawner goes away.
    pub async fn next(&mut self) -> Result<Option<InstanceStatus>> {
        let message = self
            .stream
            .message()
            .await
            .map_err(call_error("WatchInstance"))?;
        Ok(message.map(|m| m.instance.unwrap_or_default()))
    }
}
