//! `exile-master` binary: parse the config, set up logging, bind, serve until Ctrl-C/SIGTERM.

use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    // Before the runtime starts any thread: see `exile_master::alloc`.
    let tuned = exile_master::alloc::tune();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(tuned))
}

async fn run(allocator_tuned: bool) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,sea_orm=warn".into()),
        )
        .init();
    if !allocator_tuned {
        tracing::warn!("could not set the allocator's mmap threshold; idle memory will be higher");
    }
    let config = exile_master::Config::parse();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let shutdown = CancellationToken::new();
    let master = exile_master::start(config, listener, shutdown.clone()).await?;
    println!("Exile master listening on http://{}", master.addr);
    if let Some(pw) = &master.generated_admin_password {
        println!("Created user `admin` with password: {pw}");
        println!("(shown once; change it with `exilectl user passwd`)");
    }
    let sd = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        sd.cancel();
    });
    master.wait().await;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
