//! Exile spawner: the host agent that links to the master and runs game-server instances.
//!
//! [`run`] is the whole agent; the binary only parses [`Config`], sets up tracing and wires a
//! shutdown signal. [`Manager`] (instances, ports, persistence) is usable on its own, which is
//! how the tests drive it without a master.

pub mod agones;
mod backoff;
pub mod backup;
pub mod builds;
pub mod cgroup;
mod commands;
pub mod config;
mod disk;
pub mod enroll;
pub mod error;
pub mod health;
mod instance;
pub mod isolation;
pub mod layout;
mod link;
pub mod live;
pub mod logs;
pub mod manager;
pub mod manifest;
pub mod metrics;
pub mod own_log;
pub mod ports;
pub mod process;
pub mod restart;
pub mod sdk;
pub mod state;
pub mod supervisor;

use tokio_util::sync::CancellationToken;
use tracing::instrument::WithSubscriber;

pub use builds::{BuildError, BuildStore, BuildsConfig, InstalledBuild};
pub use config::Config;
pub use enroll::Credential;
pub use error::{Error, Result};
pub use health::{HealthCheck, UnhealthyAction};
pub use instance::{OpContext, SdkCall};
pub use layout::{InstanceDir, Layout};
pub use manager::{BuildToRun, Manager, ManagerConfig, SpawnSpec};
pub use state::{InstanceRecord, State};

/// Runs the spawner until `shutdown` is cancelled: adopts or recovers the instances in the
/// data dir, enrolls when no credential is stored, then keeps the link to the master up.
/// On shutdown it closes the link and, unless `stop_instances_on_shutdown`, leaves the
/// instances running for the next start to adopt.
///
/// Everything the spawner reports goes to its own log file in the data dir as well as to
/// the tracing dispatcher current when `run` is called (see [`own_log`]).
///
/// Errors are returned only for problems a restart cannot fix: bad configuration, an
/// unusable data dir, a refused enrollment token.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<()> {
    config.validate()?;
    // First, so a malformed build manifest stops the start before anything is touched.
    let manager_config = ManagerConfig::from_config(&config)?;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| Error::io("could not create", &config.data_dir, e))?;
    let Some(dir) = config.own_log_dir() else {
        return run_agent(config, manager_config, shutdown).await;
    };
    let outer = tracing::dispatcher::get_default(tracing::Dispatch::clone);
    let log = own_log::OwnLog::open(&dir, config.own_log_limits())?;
    let dispatch = log.dispatch(config.own_log_filter()?, outer);
    drop(log);
    run_agent(config, manager_config, shutdown)
        .with_subscriber(dispatch)
        .await
}

async fn run_agent(
    config: Config,
    mut manager_config: ManagerConfig,
    shutdown: CancellationToken,
) -> Result<()> {
    let tls = exile_api::tls::ClientTls::from_ca_file(config.ca_file.as_deref())
        .map_err(Error::Config)?;
    let endpoint = link::endpoint(&config.master, &tls)?;
    let sdk_listener = sdk::grpc::bind(config.sdk_listen, &config.data_dir).await?;
    let sdk_http_listener = sdk::http::bind(config.sdk_http_listen, &config.data_dir).await?;
    let local = |l: &tokio::net::TcpListener| {
        l.local_addr()
            .map_err(|e| Error::Config(format!("could not read the SDK address: {e}")))
    };
    let sdk_addr = local(&sdk_listener)?;
    let sdk_http_addr = local(&sdk_http_listener)?;
    manager_config.sdk_addr = Some(sdk_addr);
    manager_config.sdk_http_addr = Some(sdk_http_addr);
    let manager = Manager::open(manager_config).await?;
    // The uploaded builds the instances use, which the clean-up never removes.
    let in_use: builds::InUseFn = {
        let manager = manager.clone();
        std::sync::Arc::new(move || {
            let manager = manager.clone();
            Box::pin(async move { builds_in_use(&manager).await })
        })
    };
    let builds = BuildStore::open(
        BuildsConfig {
            live: Some(manager.live().clone()),
            ..BuildsConfig::from_config(&config)
        },
        in_use,
        shutdown.child_token(),
    )
    .await?;
    let sdk_shutdown = shutdown.child_token();
    // Both endpoints carry this spawner's log dispatcher (see `own_log`).
    let mut sdk_tasks = tokio::task::JoinSet::new();
    sdk_tasks.spawn(
        sdk::grpc::serve(sdk_listener, manager.clone(), sdk_shutdown.clone())
            .with_current_subscriber(),
    );
    sdk_tasks.spawn(
        sdk::http::serve(sdk_http_listener, manager.clone(), sdk_shutdown.clone())
            .with_current_subscriber(),
    );
    // Each instance whose build speaks the Agones SDK gets its own endpoint.
    let agones_host = agones::Host::new(
        manager.clone(),
        agones::HostSettings {
            namespace: config.region.clone(),
            address: config.advertised_address.clone(),
        },
        sdk_shutdown.clone(),
    );
    sdk_tasks.spawn(agones_host.run().with_current_subscriber());
    tracing::info!(
        name = %config.spawner_name(),
        master = %config.master,
        data_dir = %config.data_dir.display(),
        sdk = %sdk_addr,
        sdk_http = %sdk_http_addr,
        log = %config.own_log_dir().map(|d| d.join(own_log::LOG_NAME).display().to_string()).unwrap_or_else(|| "none".into()),
        "spawner started"
    );
    let result = match enroll::obtain(&config, &endpoint, &shutdown).await {
        Ok(Some(credential)) => {
            // With a client certificate from enrollment, every later connection presents it.
            let endpoint = match enroll::load_client_cert(&config.data_dir).and_then(|c| {
                c.map(|(cert, key)| link::endpoint(&config.master, &tls.with_identity(cert, key)))
                    .transpose()
            }) {
                Ok(Some(with_cert)) => with_cert,
                Ok(None) => endpoint,
                Err(e) => {
                    tracing::error!(error = %e, "cannot use the stored client certificate; connecting without it");
                    endpoint
                }
            };
            if let Err(e) = builds.connect(&endpoint, &credential) {
                tracing::error!(error = %e, "builds cannot be fetched from the master");
            }
            link::Link::new(
                config.clone(),
                endpoint,
                credential,
                manager.clone(),
                builds,
            )
            .run(shutdown)
            .await;
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    let stop = config.stop_instances_on_shutdown && result.is_ok();
    if stop {
        tracing::info!("stopping every instance before shutting down");
    }
    sdk_shutdown.cancel();
    while let Some(ended) = sdk_tasks.join_next().await {
        match ended {
            Ok(Err(e)) => tracing::error!(error = %e, "SDK endpoint ended"),
            Err(e) => tracing::error!(error = %e, "SDK endpoint panicked"),
            Ok(Ok(())) => {}
        }
    }
    manager.shutdown(stop).await?;
    tracing::info!("spawner stopped");
    result
}

/// The (name, version) pairs of the uploaded builds this spawner's instances run, in any
/// state (a stopped instance is started again with its own build).
pub async fn builds_in_use(manager: &Manager) -> std::collections::HashSet<(String, String)> {
    match manager.list().await {
        Ok(records) => records
            .into_iter()
            .filter_map(|r| {
                let name = r.build.as_ref().map(|b| b.name.clone())?;
                (!name.is_empty()).then_some((name, r.build_version))
            })
            .collect(),
        // The manager is gone (shutting down): claim nothing is free rather than everything.
        Err(_) => std::collections::HashSet::new(),
    }
}
