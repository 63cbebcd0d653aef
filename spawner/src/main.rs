//! `exile-spawner` binary: parses the configuration, sets up tracing and runs the agent until
//! SIGINT or SIGTERM.

use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Everything the spawner creates (credential, state, logs, backups, builds' cache) is its
    // own alone, whatever umask it was started with; what games must reach is opened to them
    // on purpose (see `exile_spawner::isolation`).
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let config = exile_spawner::Config::parse();
    let token_in_argv =
        exile_api::secret::given_on_command_line(std::env::args_os(), "--enrollment-token");
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    if token_in_argv {
        tracing::warn!(
            "{}",
            exile_api::secret::command_line_warning(
                "--enrollment-token",
                "with EXILE_SPAWNER_ENROLLMENT_TOKEN or --enrollment-token-file FILE (mode 0600)"
            )
        );
    }
    let shutdown = CancellationToken::new();
    tokio::spawn(wait_for_signal(shutdown.clone()));
    exile_spawner::run(config, shutdown).await?;
    Ok(())
}

async fn wait_for_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("could not install signal handlers; stop the spawner with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
    }
    shutdown.cancel();
}
