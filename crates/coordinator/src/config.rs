//! The coordinator's settings. Every field is a TOML key, a `POLAROID_<KEY>` environment
//! variable and a flag; docs/configuration.md lists them all.

use std::net::SocketAddr;
use std::time::Duration;

use polaroid_store::seconds;
use serde::{Deserialize, Serialize};

/// How calls are spread over workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RoutingPolicy {
    /// Consistent hashing on the handle's affinity key: a pipeline stays on one worker.
    Affinity,
    /// Each call to the next worker in turn, ignoring affinity: a baseline for comparison.
    RoundRobin,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// gRPC listen address (clients, and workers' membership reports).
    pub bind_address: SocketAddr,
    /// HTTP listen address for `/healthz`, `/readyz` and `/metrics`.
    pub http_address: SocketAddr,
    /// Membership and the batch-job queue in Redis (`redis://host:port/db`), shared by
    /// every coordinator replica and the workers. Empty: membership in this coordinator's
    /// memory, and no batch jobs.
    pub redis_url: String,
    /// Key prefix of everything in Redis.
    pub redis_prefix: String,
    /// A worker that has not reported for this long leaves the ring.
    pub worker_lease_secs: f64,
    /// How often the ring is rebuilt from the membership records.
    pub membership_refresh_secs: f64,
    pub routing: RoutingPolicy,
    /// Points per worker on the hash ring: more spread load more evenly.
    pub virtual_nodes: usize,
    /// Workers tried for one call, the first included.
    pub max_attempts: usize,
    /// Pause before the second attempt; it doubles for each further one (with jitter).
    pub retry_backoff_ms: u64,
    /// After a call, keep the machine's CPUs awake for up to this long in case the next
    /// call comes (see `polaroid_observability::keep_warm`; at most 10 ms); 0: off.
    pub keep_warm_micros: u64,
    /// Largest request message accepted from a client (and forwarded to a worker).
    pub max_request_message_bytes: usize,
    /// Largest response message forwarded; workers split results below their own limit.
    pub max_response_message_bytes: usize,
    /// Attempts of a job whose spec leaves `max_attempts` at 0.
    pub job_default_max_attempts: u32,
    /// Finished jobs are kept this long (the same as the workers' setting).
    pub job_retention_secs: f64,
    /// Calls served at once; beyond it a call is answered RESOURCE_EXHAUSTED at once
    /// rather than queued (membership reports are never refused). 0: no limit.
    pub max_concurrent_calls: usize,
    /// The longest a call may run before its answer starts, whatever deadline its client
    /// set (DEADLINE_EXCEEDED past it). 0: only the client's deadline.
    pub max_call_secs: f64,
    /// Who may call, as which tenant (`[auth]`; docs/security.md).
    pub auth: polaroid_auth::AuthConfig,
    /// What each tenant may run at once (`[quotas]`; docs/security.md).
    pub quotas: polaroid_server::QuotaConfig,
    /// TLS on the gRPC and HTTP ports, and between components (`[tls]`;
    /// docs/security.md). Empty: plaintext.
    pub tls: polaroid_auth::TlsConfig,
    /// `/readyz` answers ready with no live worker: for a pool that KEDA may scale to
    /// zero, where calls must still reach a coordinator (they are answered UNAVAILABLE,
    /// and count as load for the scaler, which brings a worker back).
    pub ready_without_workers: bool,
}

impl CoordinatorConfig {
    pub fn worker_lease(&self) -> Duration {
        seconds(self.worker_lease_secs)
    }

    /// How the queue treats jobs submitted here.
    pub fn job_queue_settings(&self) -> polaroid_jobs::QueueSettings {
        polaroid_jobs::QueueSettings {
            retention: seconds(self.job_retention_secs),
            default_max_attempts: self.job_default_max_attempts.max(1),
            ..polaroid_jobs::QueueSettings::default()
        }
    }

    pub fn keep_warm(&self) -> Duration {
        Duration::from_micros(self.keep_warm_micros)
    }

    pub fn membership_refresh(&self) -> Duration {
        seconds(self.membership_refresh_secs).max(Duration::from_millis(10))
    }
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        Self {
            bind_address: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_address: SocketAddr::from(([127, 0, 0, 1], 9090)),
            redis_url: String::new(),
            redis_prefix: "polaroid".into(),
            worker_lease_secs: 10.0,
            membership_refresh_secs: 1.0,
            routing: RoutingPolicy::Affinity,
            virtual_nodes: 128,
            max_attempts: 3,
            retry_backoff_ms: 20,
            keep_warm_micros: 200,
            max_request_message_bytes: 256 * 1024 * 1024,
            max_response_message_bytes: 256 * 1024 * 1024,
            job_default_max_attempts: 3,
            job_retention_secs: 7.0 * 24.0 * 3600.0,
            max_concurrent_calls: 2048,
            max_call_secs: 600.0,
            auth: polaroid_auth::AuthConfig::default(),
            quotas: polaroid_server::QuotaConfig::default(),
            tls: polaroid_auth::TlsConfig::default(),
            ready_without_workers: false,
        }
    }
}
