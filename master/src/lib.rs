//! Exile master: the control plane. `main.rs` parses [`Config`] and calls [`start`]; tests
//! start the same server in-process.

pub mod access;
pub mod alloc;
pub mod auth;
pub mod builds;
pub mod certs;
pub mod client_addr;
pub mod config;
pub mod convert;
pub mod db;
pub mod error;
pub mod fleet;
pub mod metrics;
pub mod model;
pub mod perf;
pub mod registry;
pub mod rollout;
pub mod server;
pub mod service;
pub mod settings;
pub mod store;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use error::{Error, Result};

use crate::access::{AccessState, Counters};
use crate::auth::{Auth, SessionPolicy};
use crate::registry::Registry;
use crate::service::Shared;
use crate::store::Store;

/// A running master.
pub struct Master {
    /// Address it listens on.
    pub addr: SocketAddr,
    /// Whether it serves TLS (`https://`) rather than plain HTTP.
    pub tls: bool,
    /// The admin password generated on first start, to print once; None when it was given
    /// or the database had users already.
    pub generated_admin_password: Option<String>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Master {
    /// Waits until the master has stopped (after `shutdown` was cancelled).
    pub async fn wait(self) {
        self.tasks.wait().await;
    }

    /// The token that stops it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Opens the database, loads the registry and serves on `listener` until `shutdown`.
pub async fn start(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Master> {
    let addr = listener.local_addr().map_err(Error::Serve)?;
    // Before anything is created: a master that would serve secrets in clear says so and
    // does not start.
    let certs = tls_certs(&config, addr)?;
    std::fs::create_dir_all(&config.data_dir).map_err(Error::Serve)?;
    let db = db::open(&config.database_url()).await?;
    let store = Store::new(db);
    let (spawner_tls, client_roots) = spawner_tls(&config, &store).await?;
    let spawner_tls = Arc::new(spawner_tls);
    let settings = Arc::new(
        settings::Settings::load(
            store.clone(),
            &[
                (
                    "master.session_idle_timeout",
                    format!("{}s", config.session_idle_secs.max(60)),
                ),
                (
                    "master.session_max_age",
                    format!("{}s", config.session_max_age_secs.max(60)),
                ),
                (
                    "master.upload_max_bytes",
                    config.max_build_bytes.to_string(),
                ),
                (
                    "master.heartbeat_ttl",
                    format!("{}ms", config.heartbeat_ttl().as_millis()),
                ),
                (
                    exile_api::settings::HEARTBEAT_INTERVAL,
                    format!("{}ms", config.heartbeat_interval().as_millis()),
                ),
            ],
        )
        .await?,
    );
    let login_settings = settings.clone();
    let auth = Arc::new(Auth::new(
        store.clone(),
        session_policy(&settings),
        Box::new(move || login_policy(&login_settings)),
    )?);
    let given = config.admin_password().map_err(Error::InvalidArgument)?;
    let generated_admin_password = auth.bootstrap_admin(given).await?;
    if let Some(pw) = &generated_admin_password {
        // A file only the master's user reads, not the log or journal where it would stay.
        let path = config.data_dir.join(INITIAL_ADMIN_PASSWORD_FILE);
        write_private(&path, &format!("{pw}\n")).map_err(Error::Serve)?;
    }
    let (registry, persister) = Registry::load(store.clone(), config.heartbeat_ttl()).await?;
    let builds = builds::Builds::open(
        store.clone(),
        registry.clone(),
        builds::BuildsConfig {
            data_dir: config.data_dir.clone(),
            max_bytes: config.max_build_bytes,
            inspector: builds::inspect_archive,
        },
    )
    .await?;
    let counters = Arc::new(Counters::default());
    // Raw samples for 10 minutes per host and 1 minute per instance, minute means beyond
    // that. Instances are the many: 100,000 of them at one sample per 5 s hold ~13 raw
    // samples each (~50 MiB in all); ten minutes of them would take ~400 MiB.
    let metrics = Arc::new(metrics::MetricsHistory::new(
        metrics::Retention {
            window_ms: 600_000,
            max: 720,
        },
        metrics::Retention {
            window_ms: 60_000,
            max: 64,
        },
    ));
    let shared = Arc::new(Shared {
        store: store.clone(),
        auth: auth.clone(),
        registry: registry.clone(),
        metrics: metrics.clone(),
        counters: counters.clone(),
        started: Instant::now(),
        settings: settings.clone(),
        command_timeout: Duration::from_secs(config.command_timeout_secs.max(1)),
        builds: builds.clone(),
        build_install_timeout: Duration::from_secs(config.build_install_timeout_secs.max(1)),
        shutdown: shutdown.clone(),
        perf: Arc::new(perf::PerfHistory::new(Duration::from_millis(
            config.performance_sample_ms.max(100),
        ))),
        fleets: Arc::new(fleet::FleetCtl::new(
            fleet::FleetConfig {
                unreachable_grace: Duration::from_millis(config.fleet_unreachable_grace_ms),
                tick: Duration::from_millis(config.fleet_tick_ms.max(10)),
            },
            fleet::autoscale::webhook_tls(config.webhook_ca_file.as_deref())?,
        )),
        spawner_tls: spawner_tls.clone(),
    });
    fleet::load(&shared).await?;
    builds.set_max_bytes(settings.number("master.upload_max_bytes"));
    if let Some(path) = &config.dev_enrollment_token_file {
        let (_, secret) = service::spawner_api::create_enrollment_token(
            &shared,
            3600,
            "dev mode".into(),
            "dev".into(),
        )
        .await?;
        write_private(path, &secret).map_err(Error::Serve)?;
    }
    let access = Arc::new(AccessState {
        auth: auth.clone(),
        store,
        counters,
        proxies: client_addr::TrustedProxies::new(config.trusted_proxy.clone()),
        flood: Default::default(),
        streams: Default::default(),
    });
    let app = server::router(
        shared.clone(),
        access.clone(),
        config.dashboard_dir.as_deref(),
    )
    .await?;

    let tasks = TaskTracker::new();
    let sd = shutdown.clone();
    let limits = listen_limits(&config);
    match &certs {
        Some(certs) => {
            let clients = if client_roots.is_empty() {
                None
            } else {
                Some(spawner_tls.verifier(&client_roots).map_err(Error::Tls)?)
            };
            let config = tls::server_config(certs.clone(), clients).map_err(Error::Tls)?;
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
            tasks.spawn(exile_api::serve::serve_with(
                tls::PlainListener(listener),
                tls::TlsHandshake(acceptor),
                app,
                limits,
                "master",
                sd,
            ));
            tasks.spawn(certs.clone().watch(shutdown.clone()));
        }
        None => {
            let listener = tls::PlainListener(listener);
            tasks.spawn(exile_api::serve::serve(listener, app, limits, "master", sd));
        }
    }
    tasks.spawn(fleet::reconcile::run(shared.clone()));
    perf_tasks(&tasks, &shutdown, &shared);
    registry_tasks(&tasks, &shutdown, &registry, config.heartbeat_ttl());
    builds_tasks(&tasks, &shutdown, builds);
    auth_tasks(&tasks, &shutdown, auth);
    audit_tasks(&tasks, &shutdown, access);
    settings_tasks(&tasks, &shutdown, settings.clone(), &shared);
    metrics_tasks(&tasks, &shutdown, shared.store.clone(), metrics, settings);
    // The persister ends when the registry (its only sender) is dropped; do not wait on it
    // at shutdown beyond a short flush.
    let sd = shutdown.clone();
    tasks.spawn(async move {
        sd.cancelled().await;
        drop(shared);
        drop(registry);
        let _ = tokio::time::timeout(Duration::from_secs(5), persister).await;
    });
    tasks.close();
    tracing::info!(%addr, "master listening");
    Ok(Master {
        addr,
        tls: certs.is_some(),
        generated_admin_password,
        tasks,
        shutdown,
    })
}

/// Summaries of flooding anonymous failures, written once their minute is over and at
/// shutdown (see `access::flood`).
fn audit_tasks(tasks: &TaskTracker, shutdown: &CancellationToken, access: Arc<AccessState>) {
    let sd = shutdown.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(crate::access::flood::WINDOW / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = sd.cancelled() => break,
                _ = tick.tick() => access.write_flood_summaries(false).await,
            }
        }
        access.write_flood_summaries(true).await;
    });
}

/// The master's performance sampler (see `perf`).
fn perf_tasks(tasks: &TaskTracker, shutdown: &CancellationToken, shared: &Arc<Shared>) {
    let every = shared.perf.every();
    let (sd, perf, counters, registry) = (
        shutdown.clone(),
        shared.perf.clone(),
        shared.counters.clone(),
        shared.registry.clone(),
    );
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = sd.cancelled() => break,
                _ = tick.tick() => perf.sample(exile_api::now_unix_ms(), &counters, &registry),
            }
        }
    });
}

/// The registry's housekeeping: the heartbeat sweep, and build counts published once a
/// second.
fn registry_tasks(
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
    registry: &Arc<Registry>,
    heartbeat_ttl: Duration,
) {
    let sweep_every = (heartbeat_ttl / 4).max(Duration::from_millis(50));
    let sd = shutdown.clone();
    let reg = registry.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(sweep_every);
        loop {
            tokio::select! {
                _ = sd.cancelled() => break,
                _ = tick.tick() => reg.sweep(),
            }
        }
    });
    // Build counts change with every spawn and removal; one event per changed build a
    // second is what watchers see, not one per change.
    let (sd, reg) = (shutdown.clone(), registry.clone());
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = sd.cancelled() => break,
                _ = tick.tick() => reg.flush_build_updates(),
            }
        }
    });
}

/// Uploads left idle are dropped.
fn builds_tasks(tasks: &TaskTracker, shutdown: &CancellationToken, builds: Arc<builds::Builds>) {
    let sd = shutdown.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = sd.cancelled() => break,
                _ = tick.tick() => {
                    let dropped = builds.sessions.reap(builds::upload::SESSION_IDLE);
                    if dropped > 0 {
                        tracing::info!(dropped, "dropped idle uploads");
                    }
                }
            }
        }
    });
}

/// Expired sessions are swept.
fn auth_tasks(tasks: &TaskTracker, shutdown: &CancellationToken, auth: Arc<Auth>) {
    let sd = shutdown.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tokio::select! {
                _ = sd.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = auth.sweep_sessions().await {
                        tracing::warn!(error = %e, "session sweep failed");
                    }
                }
            }
        }
    });
}

/// The master's own parts that hold a setting are told when it changes.
fn settings_tasks(
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
    settings: Arc<settings::Settings>,
    shared: &Arc<Shared>,
) {
    let (sd, set, auth_s, builds_s) = (
        shutdown.clone(),
        settings,
        shared.auth.clone(),
        shared.builds.clone(),
    );
    tasks.spawn(async move {
        let mut changed = set.subscribe();
        loop {
            tokio::select! {
                _ = sd.cancelled() => break,
                r = changed.changed() => if r.is_err() { break },
            }
            auth_s.set_policy(session_policy(&set));
            builds_s.set_max_bytes(set.number("master.upload_max_bytes"));
        }
    });
}

/// Resource history: minute means persisted every 30 s (and at shutdown), old ones pruned
/// as the retention settings say.
fn metrics_tasks(
    tasks: &TaskTracker,
    shutdown: &CancellationToken,
    store_m: Store,
    hist: Arc<metrics::MetricsHistory>,
    retention: Arc<settings::Settings>,
) {
    let sd = shutdown.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        let mut ticks = 0u64;
        loop {
            let stopping = tokio::select! {
                _ = sd.cancelled() => true,
                _ = tick.tick() => false,
            };
            let now = exile_api::now_unix_ms();
            let samples = hist.drain(now, stopping);
            if !samples.is_empty()
                && let Err(e) = store_m.insert_metric_samples(samples).await
            {
                tracing::warn!(error = ?e, "could not persist metric samples");
            }
            ticks += 1;
            if ticks % 120 == 1 {
                let keep = retention.duration("master.metrics_retention");
                if let Err(e) = store_m.prune_metric_samples(now - ms(keep)).await {
                    tracing::warn!(error = ?e, "could not prune metric samples");
                }
                let keep = retention.duration("master.audit_retention");
                if !keep.is_zero()
                    && let Err(e) = store_m.prune_audit(now - ms(keep)).await
                {
                    tracing::warn!(error = ?e, "could not prune the audit log");
                }
            }
            if stopping {
                break;
            }
        }
    });
}

/// The session lifetimes the settings say.
fn session_policy(settings: &settings::Settings) -> SessionPolicy {
    SessionPolicy {
        idle_timeout: settings.duration("master.session_idle_timeout"),
        max_age: settings.duration("master.session_max_age"),
    }
}

/// The login throttle's address-and-account policy the settings say (the first wait stays
/// the fixed one).
fn login_policy(settings: &settings::Settings) -> auth::throttle::Policy {
    use exile_api::settings as decl;
    auth::throttle::Policy {
        free: u32::try_from(settings.number(decl::LOGIN_FREE_FAILURES)).unwrap_or(u32::MAX),
        decay: settings.duration(decl::LOGIN_FORGET_EVERY),
        cap: settings.duration(decl::LOGIN_MAX_WAIT),
        ..auth::throttle::policy::PAIR
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The bounds of the master's port, from its flags.
fn listen_limits(config: &Config) -> exile_api::serve::Limits {
    let proxies = client_addr::TrustedProxies::new(config.trusted_proxy.clone());
    exile_api::serve::Limits {
        max_connections: config.max_connections.max(1),
        max_per_source: config.max_connections_per_source.max(1),
        exempt: Arc::new(move |ip| proxies.trusts(ip)),
        header_timeout: config.header_timeout.max(Duration::from_millis(100)),
        idle_timeout: config.idle_timeout.max(Duration::from_millis(100)),
        ..exile_api::serve::Limits::master()
    }
}

/// The server certificate to serve with, or None for plain HTTP, which needs a loopback
/// address or --insecure-listen.
fn tls_certs(config: &Config, addr: SocketAddr) -> Result<Option<Arc<tls::CertStore>>> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(tls::CertStore::open(cert, key).map_err(Error::Tls)?)),
        _ if addr.ip().is_loopback() || config.insecure_listen => Ok(None),
        _ => Err(Error::Tls(format!(
            "refusing to serve plain HTTP on {addr}, which is not a loopback address: pass \
             --tls-cert FILE --tls-key FILE (`exile-master certs init --dir DIR --san NAMES` \
             makes them), or --insecure-listen to serve without TLS anyway"
        ))),
    }
}

/// Spawner mTLS as configured, and the CA certificates (PEM) client certificates are
/// checked against (none: client certificates are not asked for).
async fn spawner_tls(config: &Config, store: &Store) -> Result<(tls::SpawnerTls, Vec<Vec<u8>>)> {
    let issuer = match (&config.spawner_ca_cert, &config.spawner_ca_key) {
        (Some(cert), Some(key)) => Some(certs::load_ca(cert, key).map_err(Error::Tls)?),
        _ => None,
    };
    let mut roots = Vec::new();
    if let Some(ca) = &issuer {
        roots.push(ca.cert.clone().into_bytes());
    }
    if let Some(path) = &config.client_ca {
        roots.push(
            std::fs::read(path).map_err(|e| {
                Error::Tls(format!("cannot read --client-ca {}: {e}", path.display()))
            })?,
        );
    }
    if config.spawner_mtls && roots.is_empty() {
        return Err(Error::Tls(
            "--spawner-mtls needs a CA to check spawners' certificates against: pass \
             --spawner-ca-cert FILE --spawner-ca-key FILE (the ca.pem and ca-key.pem of \
             `exile-master certs init`) or --client-ca FILE"
                .into(),
        ));
    }
    if !roots.is_empty() && config.tls_cert.is_none() {
        return Err(Error::Tls(
            "client certificates need TLS: pass --tls-cert FILE --tls-key FILE too".into(),
        ));
    }
    let revoked = if roots.is_empty() {
        Vec::new()
    } else {
        store.revoked_spawner_certs().await?
    };
    Ok((
        tls::SpawnerTls::new(config.spawner_mtls, issuer, revoked),
        roots,
    ))
}

/// Where the first admin's generated password is written, in the data dir.
pub const INITIAL_ADMIN_PASSWORD_FILE: &str = "initial-admin-password";

/// Writes a file readable by its owner only, atomically (`exile_api::fs::write_private`).
pub fn write_private(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    exile_api::fs::write_private(path, contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn plain_http_needs_loopback_or_an_explicit_flag() {
        let parse = |args: &[&str]| {
            Config::try_parse_from([&["exile-master"][..], args].concat()).expect("valid flags")
        };
        let lan: SocketAddr = "10.1.2.3:7700".parse().unwrap();
        let e = tls_certs(&parse(&[]), lan).unwrap_err().to_string();
        assert!(e.contains("--tls-cert FILE --tls-key FILE"), "{e}");
        assert!(e.contains("--insecure-listen"), "{e}");
        assert!(
            tls_certs(&parse(&["--insecure-listen"]), lan)
                .unwrap()
                .is_none()
        );
        let local: SocketAddr = "127.0.0.1:7700".parse().unwrap();
        assert!(tls_certs(&parse(&[]), local).unwrap().is_none());
        let v6: SocketAddr = "[::1]:7700".parse().unwrap();
        assert!(tls_certs(&parse(&[]), v6).unwrap().is_none());
        // A certificate that cannot be read is an error that names it, on any address.
        let e = tls_certs(
            &parse(&[
                "--tls-cert",
                "/nonexistent/c.pem",
                "--tls-key",
                "/nonexistent/k.pem",
            ]),
            local,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent/c.pem"), "{e}");
        // --tls-cert needs --tls-key.
        assert!(Config::try_parse_from(["exile-master", "--tls-cert", "c.pem"]).is_err());
    }

    #[test]
    fn served_certificates_reload_from_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = certs::init(dir.path(), &["localhost".into()]).unwrap();
        let store = tls::CertStore::open(&p.server_cert, &p.server_key).unwrap();
        let first = store.current_cert();
        certs::init(dir.path(), &["127.0.0.1".into()]).unwrap();
        store.reload().unwrap();
        assert_ne!(store.current_cert(), first);
        // A key of another certificate is refused and the served one stays.
        let second = store.current_cert();
        let ca = certs::load_ca(&p.ca_cert, &p.ca_key).unwrap();
        let other = certs::server_cert(&ca, &["localhost".into()]).unwrap();
        std::fs::write(&p.server_key, other.key).unwrap();
        let e = store.reload().unwrap_err();
        assert!(e.contains("does not belong"), "{e}");
        assert_eq!(store.current_cert(), second);
    }
}
