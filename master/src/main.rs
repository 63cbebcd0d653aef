//! `exile-master` binary: parse the config, set up logging, bind, serve until Ctrl-C/SIGTERM.

use clap::Parser;
use tokio_util::sync::CancellationToken;

fn main() -> anyhow::Result<()> {
    // Everything the master creates (database, blobs, certificates, logs) is its own alone,
    // whatever umask it was started with.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
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
    if let Some(exile_master::config::Command::Certs(c)) = &config.command {
        return certs(c);
    }
    if exile_api::secret::given_on_command_line(std::env::args_os(), "--admin-password") {
        tracing::warn!(
            "{}",
            exile_api::secret::command_line_warning(
                "--admin-password",
                "with EXILE_MASTER_ADMIN_PASSWORD or --admin-password-file FILE (mode 0600)"
            )
        );
    }
    let password_file = config
        .data_dir
        .join(exile_master::INITIAL_ADMIN_PASSWORD_FILE);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let shutdown = CancellationToken::new();
    let master = exile_master::start(config, listener, shutdown.clone()).await?;
    let scheme = if master.tls { "https" } else { "http" };
    println!("Exile master listening on {scheme}://{}", master.addr);
    if master.generated_admin_password.is_some() {
        let path = std::path::absolute(&password_file).unwrap_or(password_file);
        println!(
            "Created user `admin`; its password is in {} (mode 0600).",
            path.display()
        );
        println!("Change it with `exilectl user passwd`, then delete that file.");
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

/// `exile-master certs ...`
fn certs(c: &exile_master::config::CertsCommand) -> anyhow::Result<()> {
    use exile_master::certs;
    match c {
        exile_master::config::CertsCommand::Init { dir, san } => {
            let names = certs::split_names(san);
            let p = certs::init(dir, &names).map_err(anyhow::Error::msg)?;
            let abs = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
            let url_host = names.first().map(String::as_str).unwrap_or("HOST");
            let url_host = if url_host.contains(':') {
                format!("[{url_host}]")
            } else {
                url_host.to_owned()
            };
            println!("Created a server certificate for {}.", names.join(", "));
            println!();
            println!("Start the master with:");
            println!(
                "  exile-master --listen 0.0.0.0:7700 --tls-cert {} --tls-key {}",
                abs(&p.server_cert).display(),
                abs(&p.server_key).display()
            );
            println!();
            println!(
                "Clients trust the private CA {} (copy it to them; it holds no secret):",
                abs(&p.ca_cert).display()
            );
            println!("  exilectl login --master https://{url_host}:7700 --ca-file ca.pem");
            println!("  exile-spawner --master https://{url_host}:7700 --ca-file ca.pem ...");
            println!();
            println!(
                "To issue spawners client certificates at enrollment (mTLS), add:\n  --spawner-mtls --spawner-ca-cert {} --spawner-ca-key {}",
                abs(&p.ca_cert).display(),
                abs(&p.ca_key).display()
            );
            println!(
                "Keep {} secret (mode 0600): it signs certificates clients trust.",
                abs(&p.ca_key).display()
            );
            Ok(())
        }
    }
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
