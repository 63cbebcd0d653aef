//! gRPC handlers: decode, call the domain, encode. Access is checked before they run.

pub mod auth_api;
pub mod backup_api;
pub mod build_api;
pub mod event_api;
pub mod fleet_api;
pub mod instance_api;
pub mod link_api;
pub mod metrics_api;
pub mod settings_api;
pub mod spawner_api;
pub mod system_api;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::access::Counters;
use crate::auth::Auth;
use crate::builds::Builds;
use crate::metrics::MetricsHistory;
use crate::registry::Registry;
use crate::store::Store;

/// What every handler shares.
pub struct Shared {
    /// Database.
    pub store: Store,
    /// Authentication.
    pub auth: Arc<Auth>,
    /// Live registry.
    pub registry: Arc<Registry>,
    /// Resource history.
    pub metrics: Arc<MetricsHistory>,
    /// Request counters.
    pub counters: Arc<Counters>,
    /// Process start.
    pub started: Instant,
    /// Run-time settings (the heartbeat interval told to spawners among them).
    pub settings: Arc<crate::settings::Settings>,
    /// How long a spawner command may take.
    pub command_timeout: Duration,
    /// Uploaded builds.
    pub builds: Arc<Builds>,
    /// How long a spawner may take to install a build.
    pub build_install_timeout: Duration,
    /// Cancelled when the master shuts down: long streams end.
    pub shutdown: CancellationToken,
    /// The master's own performance history.
    pub perf: Arc<crate::perf::PerfHistory>,
    /// Fleet operations and the reconciler's wake-up.
    pub fleets: Arc<crate::fleet::FleetCtl>,
    /// Spawner client certificates: issued at enrollment, checked on links, revoked on
    /// removal.
    pub spawner_tls: Arc<crate::tls::SpawnerTls>,
}

/// Handle to the shared state.
pub type SharedRef = Arc<Shared>;
