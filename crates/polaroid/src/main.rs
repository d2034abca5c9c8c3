//! The `polaroid` binary: config → telemetry → `run(config, listener, shutdown)`.

mod settings;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use polaroid_worker::{HandleStoreKind, StoreOptions, WorkerConfig};

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
    /// Where handle records live (POLAROID_HANDLE_STORE).
    #[arg(long, value_enum)]
    handle_store: Option<HandleStoreKind>,
    /// Root of the filesystem store (POLAROID_STATE_DIR).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Object store URL for shared state (POLAROID_STORE_URL).
    #[arg(long)]
    store_url: Option<String>,
    /// The tenant of every call (POLAROID_TENANT).
    #[arg(long)]
    tenant: Option<String>,
    /// Largest request message accepted (POLAROID_MAX_REQUEST_MESSAGE_BYTES).
    #[arg(long)]
    max_request_message_bytes: Option<usize>,
    /// Largest response message sent (POLAROID_MAX_RESPONSE_MESSAGE_BYTES).
    #[arg(long)]
    max_response_message_bytes: Option<usize>,
    /// Largest streaming upload (POLAROID_MAX_UPLOAD_BYTES).
    #[arg(long)]
    max_upload_bytes: Option<usize>,
    /// Rows a result may have (POLAROID_MAX_RESULT_ROWS).
    #[arg(long)]
    max_result_rows: Option<usize>,
    /// Columns a result may have (POLAROID_MAX_RESULT_COLUMNS).
    #[arg(long)]
    max_result_columns: Option<usize>,
    /// In-memory bytes a result may have (POLAROID_MAX_RESULT_BYTES).
    #[arg(long)]
    max_result_bytes: Option<usize>,
    /// Memory for materialized results (POLAROID_CACHE_BYTES).
    #[arg(long)]
    cache_bytes: Option<usize>,
    /// Plan nodes kept ready in memory (POLAROID_PLAN_CACHE_ENTRIES).
    #[arg(long)]
    plan_cache_entries: Option<usize>,
    /// Default rows per CollectStreaming message (POLAROID_STREAM_BATCH_ROWS).
    #[arg(long)]
    stream_batch_rows: Option<usize>,
    /// Seconds an unused handle lives, unless pinned; 0: forever (POLAROID_HANDLE_TTL_SECS).
    #[arg(long)]
    handle_ttl_secs: Option<f64>,
    /// Seconds between garbage-collector passes; 0: off (POLAROID_GC_INTERVAL_SECS).
    #[arg(long)]
    gc_interval_secs: Option<f64>,
    /// Seconds the collector spares dead handles and new objects (POLAROID_GC_GRACE_SECS).
    #[arg(long)]
    gc_grace_secs: Option<f64>,
    /// Results slower than this to compute are written to an external store; negative:
    /// off (POLAROID_WRITE_BEHIND_AFTER_SECS).
    #[arg(long, allow_negative_numbers = true)]
    write_behind_after_secs: Option<f64>,
    /// Test hook: this operation panics (POLAROID_DEBUG_PANIC_ON_OPERATION).
    #[arg(long, hide = true)]
    debug_panic_on_operation: Option<String>,
}

impl WorkerArgs {
    /// Flags override every other source of settings.
    fn apply(self, config: &mut WorkerConfig) {
        fn set<T>(target: &mut T, flag: Option<T>) {
            if let Some(value) = flag {
                *target = value;
            }
        }
        set(&mut config.bind_address, self.bind);
        if !self.data_roots.is_empty() {
            config.data_roots = self.data_roots;
        }
        set(&mut config.handle_store, self.handle_store);
        set(&mut config.state_dir, self.state_dir);
        set(&mut config.store_url, self.store_url);
        set(&mut config.tenant, self.tenant);
        set(
            &mut config.max_request_message_bytes,
            self.max_request_message_bytes,
        );
        set(
            &mut config.max_response_message_bytes,
            self.max_response_message_bytes,
        );
        set(&mut config.max_upload_bytes, self.max_upload_bytes);
        set(&mut config.max_result_rows, self.max_result_rows);
        set(&mut config.max_result_columns, self.max_result_columns);
        set(&mut config.max_result_bytes, self.max_result_bytes);
        set(&mut config.cache_bytes, self.cache_bytes);
        set(&mut config.plan_cache_entries, self.plan_cache_entries);
        set(&mut config.stream_batch_rows, self.stream_batch_rows);
        set(&mut config.handle_ttl_secs, self.handle_ttl_secs);
        set(&mut config.gc_interval_secs, self.gc_interval_secs);
        set(&mut config.gc_grace_secs, self.gc_grace_secs);
        set(
            &mut config.write_behind_after_secs,
            self.write_behind_after_secs,
        );
        set(
            &mut config.debug_panic_on_operation,
            self.debug_panic_on_operation,
        );
    }
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
            args.apply(&mut config);
            config.store_options =
                StoreOptions(polaroid_store::cloud_options_from_env(std::env::vars()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_settings() {
        let cli = Cli::try_parse_from([
            "polaroid",
            "worker",
            "--bind",
            "127.0.0.1:0",
            "--data-root",
            "/data",
            "--max-result-rows",
            "7",
            "--handle-store",
            "memory",
        ])
        .unwrap();
        let Command::Worker(args) = cli.command;
        let mut config = WorkerConfig {
            tenant: "from-env".into(),
            ..Default::default()
        };
        args.apply(&mut config);
        assert_eq!(config.bind_address.port(), 0);
        assert_eq!(config.data_roots, vec![PathBuf::from("/data")]);
        assert_eq!(config.max_result_rows, 7);
        assert_eq!(
            config.tenant, "from-env",
            "settings without a flag keep their value"
        );
    }
}
