//! The `polaroid` binary: config → telemetry → `run(config, listener, shutdown)`.

mod job;
mod settings;
mod standalone;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use polaroid_coordinator::CoordinatorConfig;
use polaroid_observability::Listeners;
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
    /// Run Polaroid on this machine: a coordinator and N workers in one process, sharing
    /// a filesystem store. Clients connect to the coordinator's address.
    Standalone(StandaloneArgs),
    /// Run a coordinator: routes every call to a worker of the cluster.
    Coordinator(CoordinatorArgs),
    /// Run a worker: the DataFrame engine behind the polaroid.v1 gRPC service.
    Worker(WorkerArgs),
    /// Batch jobs: submit, status, watch, cancel, list.
    Job(job::JobArgs),
    /// Bearer tokens: create one for a tenant.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a new token: prints the token (for the client) and the line that grants it
    /// (for the server's tokens file). Only the line's hash is kept server-side.
    Create {
        /// The tenant whose handles and jobs the token reaches.
        #[arg(long)]
        tenant: String,
        /// `user`, or `admin` to also see the cluster's workers and every tenant's jobs.
        #[arg(long, default_value = "user")]
        role: String,
        /// A word that says whose token it is (kept in the line, for rotation).
        #[arg(long, default_value = "")]
        name: String,
        /// Append the line to this tokens file too (servers pick it up within seconds).
        #[arg(long)]
        append_to: Option<PathBuf>,
    },
}

/// Makes a token, prints it and its line, and appends the line when asked.
fn create_token(
    tenant: &str,
    role: &str,
    name: &str,
    append_to: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        polaroid_auth::valid_tenant_name(tenant),
        "tenant {tenant:?}: expected 1 to 64 of [A-Za-z0-9._-], starting with a letter or digit"
    );
    let role = polaroid_auth::Role::parse(role)
        .with_context(|| format!("role {role:?}: expected `user` or `admin`"))?;
    anyhow::ensure!(
        !name.contains(char::is_whitespace) && !name.contains('#'),
        "the name is one word, without `#`"
    );
    let token = polaroid_auth::new_token();
    let line = polaroid_auth::token_line(&token, tenant, role, name);
    if let Some(path) = append_to {
        use std::io::Write;
        // A file whose last line has no newline would otherwise merge with this one.
        let ends_open =
            std::fs::read(path).is_ok_and(|bytes| bytes.last().is_some_and(|b| *b != b'\n'));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        let separator = if ends_open { "\n" } else { "" };
        writeln!(file, "{separator}{line}")
            .with_context(|| format!("appending to {}", path.display()))?;
        file.sync_all()?;
    }
    println!("token: {token}");
    println!("line:  {line}");
    match append_to {
        Some(path) => eprintln!(
            "The line was appended to {}. Give the token to its user: it is shown only now.",
            path.display()
        ),
        None => eprintln!(
            "Add the line to the servers' tokens file (auth.tokens_file). Give the token to its user: it is shown only now."
        ),
    }
    Ok(())
}

/// Sets `target` when the flag was given.
fn set<T>(target: &mut T, flag: Option<T>) {
    if let Some(value) = flag {
        *target = value;
    }
}

#[derive(clap::Args)]
struct StandaloneArgs {
    /// TOML file with settings (see docs/configuration.md); env and flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where clients connect (POLAROID_BIND_ADDRESS).
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// HTTP address for /healthz, /readyz and /metrics (POLAROID_HTTP_ADDRESS).
    #[arg(long)]
    http_address: Option<SocketAddr>,
    /// Workers to start (POLAROID_WORKERS).
    #[arg(long)]
    workers: Option<usize>,
    /// Root of the filesystem store the workers share (POLAROID_STATE_DIR).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// A directory clients may read and write (POLAROID_DATA_ROOTS); repeat for several.
    #[arg(long = "data-root")]
    data_roots: Vec<PathBuf>,
    /// Memory for materialized results, per worker (POLAROID_CACHE_BYTES).
    #[arg(long)]
    cache_bytes: Option<usize>,
    /// Microseconds the CPUs are kept awake after a call, for the next one; 0: off
    /// (POLAROID_KEEP_WARM_MICROS).
    #[arg(long)]
    keep_warm_micros: Option<u64>,
}

impl StandaloneArgs {
    fn apply(self, config: &mut standalone::StandaloneConfig) {
        set(&mut config.bind_address, self.bind);
        set(&mut config.http_address, self.http_address);
        set(&mut config.workers, self.workers);
        set(&mut config.state_dir, self.state_dir);
        if !self.data_roots.is_empty() {
            config.data_roots = self.data_roots;
        }
        set(&mut config.cache_bytes, self.cache_bytes);
        set(&mut config.keep_warm_micros, self.keep_warm_micros);
    }
}

#[derive(clap::Args)]
struct CoordinatorArgs {
    /// TOML file with settings (see docs/configuration.md); env and flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address (POLAROID_BIND_ADDRESS); port 0 picks a free port.
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// HTTP address for /healthz, /readyz and /metrics (POLAROID_HTTP_ADDRESS).
    #[arg(long)]
    http_address: Option<SocketAddr>,
    /// Keep membership and the job queue in Redis, shared by replicas (POLAROID_REDIS_URL).
    #[arg(long)]
    redis_url: Option<String>,
    /// Key prefix of everything in Redis (POLAROID_REDIS_PREFIX).
    #[arg(long)]
    redis_prefix: Option<String>,
    /// Seconds a worker stays in the ring without reporting (POLAROID_WORKER_LEASE_SECS).
    #[arg(long)]
    worker_lease_secs: Option<f64>,
    /// Seconds between ring rebuilds from membership (POLAROID_MEMBERSHIP_REFRESH_SECS).
    #[arg(long)]
    membership_refresh_secs: Option<f64>,
    /// How calls are spread over workers (POLAROID_ROUTING).
    #[arg(long, value_enum)]
    routing: Option<polaroid_coordinator::RoutingPolicy>,
    /// Points per worker on the hash ring (POLAROID_VIRTUAL_NODES).
    #[arg(long)]
    virtual_nodes: Option<usize>,
    /// Workers tried per call, the first included (POLAROID_MAX_ATTEMPTS).
    #[arg(long)]
    max_attempts: Option<usize>,
    /// First pause between attempts, in milliseconds (POLAROID_RETRY_BACKOFF_MS).
    #[arg(long)]
    retry_backoff_ms: Option<u64>,
    /// Largest request message accepted (POLAROID_MAX_REQUEST_MESSAGE_BYTES).
    #[arg(long)]
    max_request_message_bytes: Option<usize>,
    /// Largest response message forwarded (POLAROID_MAX_RESPONSE_MESSAGE_BYTES).
    #[arg(long)]
    max_response_message_bytes: Option<usize>,
    /// Microseconds the CPUs are kept awake after a call, for the next one; 0: off
    /// (POLAROID_KEEP_WARM_MICROS).
    #[arg(long)]
    keep_warm_micros: Option<u64>,
}

impl CoordinatorArgs {
    fn apply(self, config: &mut CoordinatorConfig) {
        set(&mut config.bind_address, self.bind);
        set(&mut config.http_address, self.http_address);
        set(&mut config.redis_url, self.redis_url);
        set(&mut config.redis_prefix, self.redis_prefix);
        set(&mut config.worker_lease_secs, self.worker_lease_secs);
        set(
            &mut config.membership_refresh_secs,
            self.membership_refresh_secs,
        );
        set(&mut config.routing, self.routing);
        set(&mut config.virtual_nodes, self.virtual_nodes);
        set(&mut config.max_attempts, self.max_attempts);
        set(&mut config.retry_backoff_ms, self.retry_backoff_ms);
        set(&mut config.keep_warm_micros, self.keep_warm_micros);
        set(
            &mut config.max_request_message_bytes,
            self.max_request_message_bytes,
        );
        set(
            &mut config.max_response_message_bytes,
            self.max_response_message_bytes,
        );
    }
}

#[derive(clap::Args)]
struct WorkerArgs {
    /// TOML file with settings (see docs/configuration.md); env and flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address (POLAROID_BIND_ADDRESS); port 0 picks a free port.
    #[arg(long)]
    bind: Option<SocketAddr>,
    /// HTTP address for /healthz, /readyz and /metrics (POLAROID_HTTP_ADDRESS).
    #[arg(long)]
    http_address: Option<SocketAddr>,
    /// The coordinator to register with, `http://host:port` (POLAROID_COORDINATOR_URL).
    #[arg(long)]
    coordinator_url: Option<String>,
    /// Where the coordinator reaches this worker, host:port (POLAROID_ADVERTISE_ADDRESS).
    #[arg(long)]
    advertise_address: Option<String>,
    /// This worker's name in the cluster (POLAROID_WORKER_ID).
    #[arg(long)]
    worker_id: Option<String>,
    /// Seconds between load reports to the coordinator (POLAROID_LOAD_REPORT_INTERVAL_SECS).
    #[arg(long)]
    load_report_interval_secs: Option<f64>,
    /// Seconds a draining worker keeps serving after leaving the ring (POLAROID_DRAIN_DELAY_SECS).
    #[arg(long)]
    drain_delay_secs: Option<f64>,
    /// Microseconds the CPUs are kept awake after a call, for the next one; 0: off
    /// (POLAROID_KEEP_WARM_MICROS).
    #[arg(long)]
    keep_warm_micros: Option<u64>,
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
    /// Largest request message accepted (POLAROID_MAX_REQUEST_MESSAGE_BYTES).
    #[arg(long)]
    max_request_message_bytes: Option<usize>,
    /// Largest response message sent (POLAROID_MAX_RESPONSE_MESSAGE_BYTES).
    #[arg(long)]
    max_response_message_bytes: Option<usize>,
    /// Largest streaming upload (POLAROID_MAX_UPLOAD_BYTES).
    #[arg(long)]
    max_upload_bytes: Option<usize>,
    /// Largest answer of a REST source, all pages (POLAROID_MAX_REST_RESPONSE_BYTES).
    #[arg(long)]
    max_rest_response_bytes: Option<usize>,
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
    /// Run queries on Polars' streaming engine; false: all on the in-memory engine
    /// (POLAROID_STREAMING_ENGINE).
    #[arg(long)]
    streaming_engine: Option<bool>,
    /// Steps a lineage may have since its source or nearest persisted ancestor
    /// (POLAROID_MAX_LINEAGE_DEPTH).
    #[arg(long)]
    max_lineage_depth: Option<u32>,
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
    /// Take batch jobs from the queue in Redis (POLAROID_REDIS_URL).
    #[arg(long)]
    redis_url: Option<String>,
    /// Key prefix in Redis, the coordinators' (POLAROID_REDIS_PREFIX).
    #[arg(long)]
    redis_prefix: Option<String>,
    /// Jobs run at once; 0: none (POLAROID_JOB_SLOTS).
    #[arg(long)]
    job_slots: Option<usize>,
    /// Seconds before a silent job attempt is taken over (POLAROID_JOB_VISIBILITY_TIMEOUT_SECS).
    #[arg(long)]
    job_visibility_timeout_secs: Option<f64>,
    /// First retry delay of a failed job (POLAROID_JOB_RETRY_BACKOFF_SECS).
    #[arg(long)]
    job_retry_backoff_secs: Option<f64>,
    /// On SIGTERM, seconds running jobs may take to end; 0: none (POLAROID_JOB_DRAIN_SECS).
    #[arg(long)]
    job_drain_secs: Option<f64>,
    /// Test hook: this operation panics (POLAROID_DEBUG_PANIC_ON_OPERATION).
    #[arg(long, hide = true)]
    debug_panic_on_operation: Option<String>,
}

impl WorkerArgs {
    /// Flags override every other source of settings.
    fn apply(self, config: &mut WorkerConfig) {
        set(&mut config.bind_address, self.bind);
        set(&mut config.http_address, self.http_address);
        set(&mut config.coordinator_url, self.coordinator_url);
        set(&mut config.advertise_address, self.advertise_address);
        set(&mut config.worker_id, self.worker_id);
        set(
            &mut config.load_report_interval_secs,
            self.load_report_interval_secs,
        );
        set(&mut config.drain_delay_secs, self.drain_delay_secs);
        set(&mut config.keep_warm_micros, self.keep_warm_micros);
        if !self.data_roots.is_empty() {
            config.data_roots = self.data_roots;
        }
        set(&mut config.handle_store, self.handle_store);
        set(&mut config.state_dir, self.state_dir);
        set(&mut config.store_url, self.store_url);
        set(
            &mut config.max_request_message_bytes,
            self.max_request_message_bytes,
        );
        set(
            &mut config.max_response_message_bytes,
            self.max_response_message_bytes,
        );
        set(&mut config.max_upload_bytes, self.max_upload_bytes);
        set(
            &mut config.max_rest_response_bytes,
            self.max_rest_response_bytes,
        );
        set(&mut config.max_result_rows, self.max_result_rows);
        set(&mut config.max_result_columns, self.max_result_columns);
        set(&mut config.max_result_bytes, self.max_result_bytes);
        set(&mut config.cache_bytes, self.cache_bytes);
        set(&mut config.plan_cache_entries, self.plan_cache_entries);
        set(&mut config.max_lineage_depth, self.max_lineage_depth);
        set(&mut config.streaming_engine, self.streaming_engine);
        set(&mut config.stream_batch_rows, self.stream_batch_rows);
        set(&mut config.handle_ttl_secs, self.handle_ttl_secs);
        set(&mut config.gc_interval_secs, self.gc_interval_secs);
        set(&mut config.gc_grace_secs, self.gc_grace_secs);
        set(
            &mut config.write_behind_after_secs,
            self.write_behind_after_secs,
        );
        set(&mut config.redis_url, self.redis_url);
        set(&mut config.redis_prefix, self.redis_prefix);
        set(&mut config.job_slots, self.job_slots);
        set(
            &mut config.job_visibility_timeout_secs,
            self.job_visibility_timeout_secs,
        );
        set(
            &mut config.job_retry_backoff_secs,
            self.job_retry_backoff_secs,
        );
        set(&mut config.job_drain_secs, self.job_drain_secs);
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
        Command::Standalone(args) => {
            let mut config: standalone::StandaloneConfig =
                settings::load(args.config.as_deref(), std::env::vars())?;
            args.apply(&mut config);
            init_telemetry();
            let listeners = bind("standalone", config.bind_address, config.http_address).await?;
            standalone::run(config, listeners, shutdown_signal()).await?;
        }
        Command::Coordinator(args) => {
            let mut config: CoordinatorConfig =
                settings::load(args.config.as_deref(), std::env::vars())?;
            args.apply(&mut config);
            init_telemetry();
            let listeners = bind("coordinator", config.bind_address, config.http_address).await?;
            polaroid_coordinator::run(config, listeners, shutdown_signal()).await?;
        }
        Command::Worker(args) => {
            let mut config: WorkerConfig =
                settings::load(args.config.as_deref(), std::env::vars())?;
            args.apply(&mut config);
            config.store_options =
                StoreOptions(polaroid_store::cloud_options_from_env(std::env::vars()));
            init_telemetry();
            let listeners = bind("worker", config.bind_address, config.http_address).await?;
            polaroid_worker::run(config, listeners, shutdown_signal()).await?;
        }
        Command::Job(args) => std::process::exit(job::run(args).await?),
        Command::Token(TokenCommand::Create {
            tenant,
            role,
            name,
            append_to,
        }) => create_token(&tenant, &role, &name, append_to.as_deref())?,
    }
    Ok(())
}

/// Binds the gRPC and HTTP addresses and prints them: scripts and tests read the real
/// addresses (port 0 picks one) from these two lines.
async fn bind(role: &str, grpc: SocketAddr, http: SocketAddr) -> anyhow::Result<Listeners> {
    let listeners = Listeners::bind(grpc, http)
        .await
        .with_context(|| format!("binding {grpc} and {http}"))?;
    println!(
        "polaroid {role} listening on {}",
        listeners.grpc.local_addr()?
    );
    println!("polaroid {role} http on {}", listeners.http.local_addr()?);
    Ok(listeners)
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
            "--keep-warm-micros",
            "50",
        ])
        .unwrap();
        let Command::Worker(args) = cli.command else {
            panic!("parsed as another command")
        };
        let mut config = WorkerConfig {
            redis_prefix: "from-env".into(),
            ..Default::default()
        };
        args.apply(&mut config);
        assert_eq!(config.bind_address.port(), 0);
        assert_eq!(config.data_roots, vec![PathBuf::from("/data")]);
        assert_eq!(config.max_result_rows, 7);
        assert_eq!(config.keep_warm_micros, 50);
        assert_eq!(
            config.redis_prefix, "from-env",
            "settings without a flag keep their value"
        );
    }
}
