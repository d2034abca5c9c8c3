//! `polaroid standalone`: a coordinator and N workers in one process, sharing a
//! filesystem store. What a new user runs. The coordinator calls its workers through the
//! stacks they publish in the process; their ports serve Flight clients and operators.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use std::sync::Arc;

use anyhow::Context;
use futures::FutureExt;
use polaroid_auth::{AuthConfig, TlsConfig};
use polaroid_coordinator::CoordinatorConfig;
use polaroid_jobs::{JobQueue, MemoryQueue};
use polaroid_observability::Listeners;
use polaroid_worker::{HandleStoreKind, WorkerConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandaloneConfig {
    /// Where clients connect: the coordinator's gRPC address.
    pub bind_address: SocketAddr,
    /// HTTP address for `/healthz`, `/readyz` and `/metrics` (of the whole process).
    pub http_address: SocketAddr,
    /// Workers to start.
    pub workers: usize,
    /// Root of the filesystem store the workers share; handles survive restarts.
    pub state_dir: PathBuf,
    /// Directories clients may read and write.
    pub data_roots: Vec<PathBuf>,
    /// Memory for materialized results, per worker.
    pub cache_bytes: usize,
    /// After a call, keep the machine's CPUs awake for up to this long in case the next
    /// call comes; 0: off. One set of threads serves the whole process.
    pub keep_warm_micros: u64,
    /// With tokens, every tenant reads and writes the same data roots; off: each in its
    /// own directory of each root (see the worker setting).
    pub shared_data_roots: bool,
    /// URL prefixes REST sources may reach (on any address). Empty: any URL on a public
    /// address, and on loopback and private ones too while clients connect on loopback.
    pub rest_allowed_url_prefixes: Vec<String>,
    /// Lets REST sources reach loopback and private addresses even when clients connect
    /// from beyond loopback.
    pub rest_allow_private_networks: bool,
    /// Who may call, as which tenant (`[auth]`; docs/security.md). On loopback without
    /// tokens every caller is the `default` tenant; the coordinator and the workers share
    /// a cluster secret made at start unless one is set.
    pub auth: AuthConfig,
    /// What each tenant may store and run at once (`[quotas]`; docs/security.md).
    pub quotas: polaroid_server::QuotaConfig,
    /// The longest a call may run before its answer starts (the coordinator's and the
    /// workers'). 0: only the client's deadline.
    pub max_call_secs: f64,
    /// Every other setting of each worker (`[worker]`, `POLAROID_WORKER_<KEY>`): limits,
    /// TTL, garbage collection, jobs. The keys above, and those standalone sets itself
    /// (addresses, ids, the store, the queue), are refused here ([`Self::check`]).
    pub worker: WorkerConfig,
    /// Every other setting of the coordinator (`[coordinator]`,
    /// `POLAROID_COORDINATOR_<KEY>`), under the same rule.
    pub coordinator: CoordinatorConfig,
    /// TLS on the client-facing ports (`[tls]`: `cert_file`, `key_file`, and
    /// `client_ca_file`, `admin_tls`); the workers inside are reached on loopback.
    pub tls: TlsConfig,
}

/// Keys of `[worker]` and `[coordinator]` that standalone sets itself: the top-level key
/// to use instead, or `None` when standalone decides alone.
const OWNED_KEYS: &[(&str, Option<&str>)] = &[
    ("bind_address", Some("bind_address")),
    ("http_address", Some("http_address")),
    ("coordinator_url", None),
    ("advertise_address", None),
    ("worker_id", None),
    ("handle_store", None),
    ("store_url", None),
    ("state_dir", Some("state_dir")),
    ("data_roots", Some("data_roots")),
    ("cache_bytes", Some("cache_bytes")),
    ("keep_warm_micros", Some("keep_warm_micros")),
    ("shared_data_roots", Some("shared_data_roots")),
    (
        "rest_allowed_url_prefixes",
        Some("rest_allowed_url_prefixes"),
    ),
    (
        "rest_allow_private_networks",
        Some("rest_allow_private_networks"),
    ),
    ("auth", Some("auth")),
    ("tls", Some("tls")),
    ("quotas", Some("quotas")),
    ("max_call_secs", Some("max_call_secs")),
    ("redis_url", None),
    ("redis_prefix", None),
    ("worker_lease_secs", None),
    ("load_report_interval_secs", None),
];

impl StandaloneConfig {
    /// Refuses a `[worker]` or `[coordinator]` key that standalone sets itself, so that no
    /// setting is silently ignored.
    pub fn check(&self) -> anyhow::Result<()> {
        fn changed<T: Serialize + Default>(table: &str, given: &T) -> anyhow::Result<()> {
            let given = toml::Table::try_from(given)?;
            let defaults = toml::Table::try_from(T::default())?;
            for (key, instead) in OWNED_KEYS {
                if given.get(*key) != defaults.get(*key) {
                    match instead {
                        Some(top) => anyhow::bail!(
                            "[{table}] {key}: set `{top}` at the top level of standalone's settings instead"
                        ),
                        None => anyhow::bail!(
                            "[{table}] {key}: standalone sets it itself (run `polaroid {table}` processes to choose it)"
                        ),
                    }
                }
            }
            Ok(())
        }
        changed("worker", &self.worker)?;
        changed("coordinator", &self.coordinator)
    }
}

impl Default for StandaloneConfig {
    fn default() -> Self {
        let worker = WorkerConfig::default();
        Self {
            bind_address: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_address: SocketAddr::from(([127, 0, 0, 1], 9090)),
            workers: 2,
            state_dir: worker.state_dir,
            data_roots: worker.data_roots,
            cache_bytes: 512 * 1024 * 1024,
            keep_warm_micros: worker.keep_warm_micros,
            shared_data_roots: false,
            rest_allowed_url_prefixes: Vec::new(),
            rest_allow_private_networks: false,
            auth: AuthConfig::default(),
            quotas: polaroid_server::QuotaConfig::default(),
            max_call_secs: worker.max_call_secs,
            worker: WorkerConfig::default(),
            coordinator: CoordinatorConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// Serves until `shutdown` completes; then the workers drain and the coordinator stops.
pub async fn run(
    config: StandaloneConfig,
    listeners: Listeners,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    anyhow::ensure!(config.workers > 0, "standalone needs at least one worker");
    config.check()?;
    let mut coordinator_address = listeners.grpc.local_addr()?;
    if coordinator_address.ip().is_unspecified() {
        coordinator_address.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    // Checked before anything starts: a coordinator that refused to serve would leave
    // the workers running without it.
    polaroid_auth::check_exposure(&config.auth, listeners.grpc.local_addr()?)?;
    let shutdown = shutdown.shared();
    let auth = config.auth.clone().with_own_cluster_secret();
    // Callers on loopback are this machine's users, who reach its loopback and private
    // networks themselves: their REST sources may too.
    let rest_allow_private_networks =
        config.rest_allow_private_networks || listeners.grpc.local_addr()?.ip().is_loopback();
    let coordinator_config = CoordinatorConfig {
        bind_address: config.bind_address,
        http_address: config.http_address,
        // In one process a worker that stops reporting is gone: notice it quickly.
        worker_lease_secs: 3.0,
        // Every call passes through the coordinator: its threads keep the CPUs warm for
        // the whole process.
        keep_warm_micros: config.keep_warm_micros,
        auth: auth.clone(),
        quotas: config.quotas.clone(),
        max_call_secs: config.max_call_secs,
        // The client-facing port. Its workers are on loopback in this process: they are
        // dialed in plaintext, and carry the secret made above.
        tls: TlsConfig {
            ca_file: PathBuf::new(),
            client_cert_file: PathBuf::new(),
            client_key_file: PathBuf::new(),
            server_name: String::new(),
            ..config.tls.clone()
        },
        ..config.coordinator.clone()
    };
    // Workers report to the coordinator's port, TLS when clients' is; they know the very
    // certificate it serves, whatever names it carries.
    let (coordinator_url, worker_tls) = if config.tls.cert_file.as_os_str().is_empty() {
        (
            format!("http://{coordinator_address}"),
            TlsConfig::default(),
        )
    } else {
        let tls = TlsConfig {
            pinned_server_cert_file: config.tls.cert_file.clone(),
            ..TlsConfig::default()
        };
        (format!("https://{coordinator_address}"), tls)
    };
    // The embedded job queue, shared by the coordinator (which queues) and the workers.
    let queue: Arc<dyn JobQueue> = Arc::new(MemoryQueue::new(config.worker.job_queue_settings()));
    // The coordinator calls the workers' stacks directly, not over loopback sockets (their
    // ports still serve Flight clients and operators).
    let in_process = polaroid_server::InProcess::default();
    let (coordinator_stop, coordinator_stopped) = tokio::sync::oneshot::channel::<()>();
    let coordinator = tokio::spawn(polaroid_coordinator::serve(
        coordinator_config,
        listeners,
        async {
            let _ = coordinator_stopped.await;
        },
        Some(queue.clone()),
        Some(in_process.clone()),
    ));

    let mut workers = Vec::with_capacity(config.workers);
    for index in 0..config.workers {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let worker_listeners = Listeners::bind(loopback, loopback)
            .await
            .context("binding a worker")?;
        let worker = WorkerConfig {
            bind_address: loopback,
            http_address: loopback,
            coordinator_url: coordinator_url.clone(),
            tls: worker_tls.clone(),
            worker_id: format!("standalone-{index}"),
            load_report_interval_secs: 1.0,
            handle_store: HandleStoreKind::External,
            state_dir: config.state_dir.clone(),
            data_roots: config.data_roots.clone(),
            cache_bytes: config.cache_bytes,
            keep_warm_micros: 0,
            // Clients fetch large results from workers directly: the same tokens apply.
            auth: auth.clone(),
            shared_data_roots: config.shared_data_roots,
            rest_allowed_url_prefixes: config.rest_allowed_url_prefixes.clone(),
            rest_allow_private_networks,
            quotas: config.quotas.clone(),
            max_call_secs: config.max_call_secs,
            ..config.worker.clone()
        };
        workers.push(tokio::spawn(polaroid_worker::serve(
            worker,
            worker_listeners,
            shutdown.clone(),
            Some(queue.clone()),
            Some(in_process.clone()),
        )));
    }
    println!(
        "Polaroid is running with {} workers: connect to {coordinator_address} (state in {})",
        config.workers,
        config.state_dir.display()
    );

    let mut failure = None;
    for worker in workers {
        match worker.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failure = Some(anyhow::Error::from(e).context("a worker failed")),
            Err(e) => failure = Some(anyhow::Error::from(e).context("a worker panicked")),
        }
    }
    let _ = coordinator_stop.send(());
    coordinator.await.context("the coordinator panicked")??;
    failure.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn load(toml: &str, env: &[(&str, &str)]) -> anyhow::Result<StandaloneConfig> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("standalone.toml");
        std::fs::write(&file, toml)?;
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let config: StandaloneConfig = crate::settings::load(Some(&file), env)?;
        config.check()?;
        Ok(config)
    }

    #[test]
    fn every_worker_and_coordinator_setting_can_be_set() {
        let config = load(
            "[worker]\nmax_lineage_depth = 7\nhandle_ttl_secs = 60.0\n\n[coordinator]\nmax_attempts = 5\n",
            &[
                ("POLAROID_WORKER_MAX_RESULT_ROWS", "3"),
                ("POLAROID_COORDINATOR_MAX_CONCURRENT_CALLS", "9"),
                ("POLAROID_QUOTAS_ACTIVE_JOBS", "4"),
            ],
        )
        .unwrap();
        assert_eq!(config.worker.max_lineage_depth, 7);
        assert_eq!(config.worker.handle_ttl_secs, 60.0);
        assert_eq!(config.worker.max_result_rows, 3);
        assert_eq!(config.coordinator.max_attempts, 5);
        assert_eq!(config.coordinator.max_concurrent_calls, 9);
        assert_eq!(config.quotas.active_jobs, 4);
    }

    #[test]
    fn keys_standalone_sets_itself_are_refused_not_ignored() {
        let refused = load("[worker]\ncache_bytes = 5\n", &[]).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("set `cache_bytes` at the top level"),
            "{refused}"
        );
        let refused = load("", &[("POLAROID_COORDINATOR_REDIS_URL", "redis://x")]).unwrap_err();
        assert!(
            refused.to_string().contains("[coordinator] redis_url"),
            "{refused}"
        );
        let refused = load("[worker]\nworker_id = \"mine\"\n", &[]).unwrap_err();
        assert!(refused.to_string().contains("sets it itself"), "{refused}");
    }
}
