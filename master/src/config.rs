//! Command-line and environment configuration of the master.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Exile master: registry, placement, command routing, auth and events on one port.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "exile-master", version, about)]
pub struct Config {
    /// Address to listen on: native gRPC, grpc-web, the dashboard, /healthz and /metrics.
    #[arg(long, env = "EXILE_MASTER_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// Directory for the database and other state.
    #[arg(
        long,
        env = "EXILE_MASTER_DATA_DIR",
        default_value = "exile-master-data"
    )]
    pub data_dir: PathBuf,
    /// Database URL; by default an SQLite file `exile.db` in the data dir.
    #[arg(long, env = "EXILE_MASTER_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Directory of the built dashboard to serve (index.html and assets).
    #[arg(long, env = "EXILE_MASTER_DASHBOARD_DIR")]
    pub dashboard_dir: Option<PathBuf>,
    /// Password of the `admin` user created on first start; when unset one is generated and
    /// written to `initial-admin-password` (mode 0600) in the data dir. On the command line it
    /// is visible to every local user: prefer the environment or --admin-password-file.
    #[arg(long, env = "EXILE_MASTER_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// File holding the first admin's password (its first line).
    #[arg(
        long,
        env = "EXILE_MASTER_ADMIN_PASSWORD_FILE",
        conflicts_with = "admin_password"
    )]
    pub admin_password_file: Option<PathBuf>,
    /// How often spawners send heartbeats, in milliseconds.
    #[arg(
        long,
        env = "EXILE_MASTER_HEARTBEAT_INTERVAL_MS",
        default_value_t = 5000
    )]
    pub heartbeat_interval_ms: u64,
    /// A spawner without a heartbeat for this long becomes Unreachable, in milliseconds.
    #[arg(long, env = "EXILE_MASTER_HEARTBEAT_TTL_MS", default_value_t = 15000)]
    pub heartbeat_ttl_ms: u64,
    /// A session unused for this long ends, in seconds.
    #[arg(long, env = "EXILE_MASTER_SESSION_IDLE_SECS", default_value_t = 12 * 3600)]
    pub session_idle_secs: u64,
    /// A session ends this long after login whatever its use, in seconds.
    #[arg(long, env = "EXILE_MASTER_SESSION_MAX_AGE_SECS", default_value_t = 7 * 86400)]
    pub session_max_age_secs: u64,
    /// How long a spawner may take to carry out a command, in seconds.
    #[arg(long, env = "EXILE_MASTER_COMMAND_TIMEOUT_SECS", default_value_t = 30)]
    pub command_timeout_secs: u64,
    /// Largest build archive an upload may send, in bytes.
    #[arg(long, env = "EXILE_MASTER_MAX_BUILD_BYTES", default_value_t = exile_api::build::DEFAULT_MAX_ARCHIVE_BYTES)]
    pub max_build_bytes: u64,
    /// How long a spawner may take to fetch and unpack a build before a spawn that needs it
    /// fails, in seconds.
    #[arg(
        long,
        env = "EXILE_MASTER_BUILD_INSTALL_TIMEOUT_SECS",
        default_value_t = 30 * 60
    )]
    pub build_install_timeout_secs: u64,
    /// Development: write a fresh one-hour enrollment token to this file at start, so a local
    /// spawner can enroll by itself.
    #[arg(long, env = "EXILE_MASTER_DEV_ENROLLMENT_TOKEN_FILE")]
    pub dev_enrollment_token_file: Option<PathBuf>,
    /// How long a fleet still counts the instances of an unreachable spawner before it
    /// places replacements elsewhere, in milliseconds.
    #[arg(
        long,
        env = "EXILE_MASTER_FLEET_UNREACHABLE_GRACE_MS",
        default_value_t = 30_000
    )]
    pub fleet_unreachable_grace_ms: u64,
    /// How often the fleet reconciler looks at every fleet (it also looks after each
    /// change), in milliseconds.
    #[arg(long, env = "EXILE_MASTER_FLEET_TICK_MS", default_value_t = 1000)]
    pub fleet_tick_ms: u64,
    /// How often the master samples its own performance for /performance (CPU, memory,
    /// request rates, latency, heartbeats), in milliseconds.
    #[arg(
        long,
        env = "EXILE_MASTER_PERFORMANCE_SAMPLE_MS",
        default_value_t = 10_000
    )]
    pub performance_sample_ms: u64,
    /// PEM file of certificates an autoscaler webhook's https certificate may chain to,
    /// trusted beside the bundled web roots (a private CA, or the webhook's own self-signed
    /// certificate).
    #[arg(long, env = "EXILE_MASTER_WEBHOOK_CA_FILE")]
    pub webhook_ca_file: Option<PathBuf>,
    /// Serve TLS with this PEM certificate chain (with --tls-key). The files are read again
    /// when they change or on SIGHUP; open connections keep going.
    #[arg(long, env = "EXILE_MASTER_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "EXILE_MASTER_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (tokens and passwords then cross the
    /// network in clear: only behind a TLS-terminating proxy or on a trusted network).
    /// Loopback addresses serve plain HTTP without it when no certificate is given.
    #[arg(
        long,
        env = "EXILE_MASTER_INSECURE_LISTEN",
        conflicts_with = "tls_cert"
    )]
    pub insecure_listen: bool,
    /// Spawner links need a client certificate naming the spawner, in addition to its
    /// credential: one the master issued at enrollment (--spawner-ca-cert/--spawner-ca-key)
    /// or one from --client-ca. Needs --tls-cert.
    #[arg(long, env = "EXILE_MASTER_SPAWNER_MTLS", requires = "tls_cert")]
    pub spawner_mtls: bool,
    /// CA certificate (PEM) the master signs spawners' client certificates with at
    /// enrollment, e.g. the `ca.pem` of `exile-master certs init`.
    #[arg(
        long,
        env = "EXILE_MASTER_SPAWNER_CA_CERT",
        requires = "spawner_ca_key"
    )]
    pub spawner_ca_cert: Option<PathBuf>,
    /// Private key of --spawner-ca-cert, e.g. the `ca-key.pem` of `exile-master certs init`.
    #[arg(
        long,
        env = "EXILE_MASTER_SPAWNER_CA_KEY",
        requires = "spawner_ca_cert"
    )]
    pub spawner_ca_key: Option<PathBuf>,
    /// The operator's own CA (PEM): client certificates it signed are accepted on spawner
    /// links too (their DNS name must be `<spawner id>.spawner.exile`).
    #[arg(long, env = "EXILE_MASTER_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Proxies (IP networks, comma-separated, e.g. 10.0.0.0/8,fd00::/8) whose
    /// X-Forwarded-For header names the client. From any other peer the header is ignored
    /// and the socket's address is the client's: for login throttling, the audit log and
    /// sessions.
    #[arg(
        long,
        env = "EXILE_MASTER_TRUSTED_PROXY",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub trusted_proxy: Vec<crate::client_addr::Cidr>,
    /// Connections the master keeps open at once; more are closed as they arrive. Keep it
    /// under the process's open-file limit.
    #[arg(long, env = "EXILE_MASTER_MAX_CONNECTIONS", default_value_t = exile_api::serve::Limits::master().max_connections)]
    pub max_connections: usize,
    /// Connections one address may keep open at once (a --trusted-proxy is not capped per
    /// address). Many spawners share one connection's link streams, so this is rarely
    /// reached honestly.
    #[arg(long, env = "EXILE_MASTER_MAX_CONNECTIONS_PER_SOURCE", default_value_t = exile_api::serve::Limits::master().max_per_source)]
    pub max_connections_per_source: usize,
    /// A connection with no request in flight this long is closed (e.g. 2m; open streams
    /// such as Watch and spawner links are requests in flight).
    #[arg(long, env = "EXILE_MASTER_IDLE_TIMEOUT", default_value = "2m", value_parser = exile_api::format::parse_duration)]
    pub idle_timeout: Duration,
    /// A TLS handshake, and an HTTP/1 request's head, must arrive within this long (slow
    /// clients are dropped).
    #[arg(long, env = "EXILE_MASTER_HEADER_TIMEOUT", default_value = "10s", value_parser = exile_api::format::parse_duration)]
    pub header_timeout: Duration,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands; without one the master serves.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// Certificates for TLS without openssl.
    #[command(subcommand)]
    Certs(CertsCommand),
}

/// `exile-master certs ...`
#[derive(clap::Subcommand, Debug, Clone)]
pub enum CertsCommand {
    /// Create a private CA (kept when DIR has one already) and a server certificate for the
    /// names the master is reached by; prints the flags to serve with.
    Init {
        /// Directory to write ca.pem, ca-key.pem, server.pem and server-key.pem to.
        #[arg(long)]
        dir: PathBuf,
        /// Host names and IP addresses clients use to reach the master, comma-separated.
        #[arg(long, required = true)]
        san: String,
    },
}

impl Config {
    /// The first admin's password, from --admin-password or --admin-password-file.
    pub fn admin_password(&self) -> Result<Option<String>, String> {
        let Some(path) = &self.admin_password_file else {
            return Ok(self.admin_password.clone());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --admin-password-file {}: {e}", path.display()))?;
        let password = text.lines().next().unwrap_or_default().to_owned();
        if password.is_empty() {
            return Err(format!("--admin-password-file {} is empty", path.display()));
        }
        Ok(Some(password))
    }

    /// Heartbeat interval.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms.max(50))
    }

    /// Heartbeat TTL.
    pub fn heartbeat_ttl(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ttl_ms.max(100))
    }

    /// The database URL in use.
    pub fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("exile.db").display()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Config::command().debug_assert();
    }

    #[test]
    fn defaults_work_on_a_laptop() {
        let c = <Config as clap::Parser>::try_parse_from(["exile-master"]).unwrap();
        assert_eq!(c.listen.port(), 7700);
        assert!(c.database_url().starts_with("sqlite://"));
        assert!(c.heartbeat_ttl() > c.heartbeat_interval());
        assert_eq!(c.max_build_bytes, 4 << 30);
        assert_eq!(c.build_install_timeout_secs, 1800);
        assert!(c.trusted_proxy.is_empty());
    }

    #[test]
    fn trusted_proxies_are_networks_and_a_bad_one_is_refused() {
        let c = <Config as clap::Parser>::try_parse_from([
            "exile-master",
            "--trusted-proxy",
            "10.0.0.0/8,127.0.0.1",
        ])
        .unwrap();
        assert_eq!(c.trusted_proxy.len(), 2);
        let e = <Config as clap::Parser>::try_parse_from([
            "exile-master",
            "--trusted-proxy",
            "10.0.0.1/8",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("10.0.0.0/8"), "{e}");
    }
}
