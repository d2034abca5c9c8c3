//! The `polaroid` binary: config → telemetry → `run(config, listener, shutdown)`.

mod settings;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use polaroid_worker::WorkerConfig;

#[derive(Parser)]
#[command(
    name = "polaroid",
    version,
    about = "Distributed Polars DataFrames over gRPC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a worker: the DataFrame engine behind the polaroid.v1 gRPC service.
    Worker(WorkerArgs),
}

#[derive(clap::Args)]
struct WorkerArgs {
    /// TOML file with settings (see docs/configuration.md); env and flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address (POLAROID_BIND_ADDRESS); port 0 picks a free port.
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// A directory clients may read and write (POLAROID_DATA_ROOTS); repeat for several.
    #[arg(long = "data-root")]
    data_roots: Vec<PathBuf>,
}

fn init_telemetry() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POLAROID_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Worker(args) => {
            let mut config: WorkerConfig =
                settings::load(args.config.as_deref(), std::env::vars())?;
            if let Some(bind) = args.bind {
                config.bind_address = bind;
            }
            if !args.data_roots.is_empty() {
                config.data_roots = args.data_roots;
            }
            init_telemetry();
            let listener = tokio::net::TcpListener::bind(config.bind_address)
                .await
                .with_context(|| format!("binding {}", config.bind_address))?;
            // Scripts and tests read the real address (port 0 picks one) from this line.
            println!("polaroid worker listening on {}", listener.local_addr()?);
            polaroid_worker::run(config, listener, shutdown_signal()).await?;
        }
    }
    Ok(())
}
