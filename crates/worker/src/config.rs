//! The worker's settings. Every field is a TOML key, a `POLAROID_<KEY>` environment
//! variable and (for the common ones) a flag; docs/configuration.md lists them all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use polaroid_store::seconds;
use serde::{Deserialize, Serialize};

/// Where handle records and uploads live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HandleStoreKind {
    /// In this process's memory: lost on exit.
    Memory,
    /// Shared and durable: `store_url` when set, else the filesystem under `state_dir`.
    External,
}

/// Object-store settings, which may hold credentials: `Debug` shows the keys only.
#[derive(Clone, Default, PartialEq)]
pub struct StoreOptions(pub Vec<(String, String)>);

impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(key, _)| key))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerConfig {
    /// gRPC listen address.
    pub bind_address: SocketAddr,
    /// HTTP listen address for `/healthz`, `/readyz` and `/metrics`.
    pub http_address: SocketAddr,
    /// The coordinator this worker registers with (`http://host:port`). Empty: a lone worker.
    pub coordinator_url: String,
    /// Where the coordinator reaches this worker (`host:port`). Empty: the bound address.
    pub advertise_address: String,
    /// This worker's name in the cluster. Empty: `worker-` and random hex digits.
    pub worker_id: String,
    /// Seconds between load reports to the coordinator (which also renew the lease).
    pub load_report_interval_secs: f64,
    /// Seconds a draining worker keeps serving after leaving the ring, so that every
    /// coordinator has seen it leave (at least their `membership_refresh_secs`).
    pub drain_delay_secs: f64,
    /// After a call, keep the machine's CPUs awake for up to this long in case the next
    /// call comes (see `polaroid_observability::keep_warm`; at most 10 ms); 0: off.
    pub keep_warm_micros: u64,
    pub handle_store: HandleStoreKind,
    /// Root of the filesystem store (`handle_store = "external"` without `store_url`).
    pub state_dir: PathBuf,
    /// Object store for shared state: `s3://bucket/prefix`, `gs://…`, `az://…`,
    /// `file:///dir` or `memory://`. Empty: the filesystem under `state_dir`.
    pub store_url: String,
    /// object_store settings (credentials, endpoints) for `store_url`; the binary fills
    /// them from the usual `AWS_*`, `AZURE_*` and `GOOGLE_*` variables.
    #[serde(skip)]
    pub store_options: StoreOptions,
    /// Directories files may be read from and written to; relative paths resolve
    /// against the first. Default: the working directory.
    pub data_roots: Vec<PathBuf>,
    /// Calls served at once; beyond it a call is answered RESOURCE_EXHAUSTED at once
    /// rather than queued. 0: no limit.
    pub max_concurrent_calls: usize,
    /// With tokens, every tenant reads and writes the same data roots (one team's
    /// cluster). Off: each tenant's paths resolve in its own directory of each root,
    /// `<root>/tenants/<tenant digest>`, and other tenants' files are outside its roots.
    pub shared_data_roots: bool,
    /// URL prefixes REST sources, and streaming sources' peers (`ws(s)://`, `redis://`), may reach
    /// (on any address; redirects must stay under them). Empty: any http(s) URL, or
    /// Redis server, on a public address.
    pub rest_allowed_url_prefixes: Vec<String>,
    /// Lets REST sources reach loopback, link-local and private addresses too (a laptop,
    /// a trusted network). Off: they are refused.
    pub rest_allow_private_networks: bool,
    /// PEM files of CA certificates that outbound TLS (https REST sources, wss WebSockets)
    /// trusts besides the system's trust store: peers with a private CA's certificate.
    pub outbound_ca_files: Vec<PathBuf>,
    /// The longest a call may run before its answer starts, whatever deadline its client
    /// set (DEADLINE_EXCEEDED past it). 0: only the client's deadline.
    pub max_call_secs: f64,
    /// Who may call, as which tenant (`[auth]`; docs/security.md).
    pub auth: polaroid_auth::AuthConfig,
    /// What each tenant may store and run at once (`[quotas]`; docs/security.md).
    pub quotas: polaroid_server::QuotaConfig,
    /// TLS on the gRPC and HTTP ports, and between components (`[tls]`;
    /// docs/security.md). Empty: plaintext.
    pub tls: polaroid_auth::TlsConfig,
    /// Largest request message accepted (uploads through CreateFromArrow).
    pub max_request_message_bytes: usize,
    /// Largest response message sent; Collect splits results to fit. 4 MiB is what
    /// default gRPC clients accept.
    pub max_response_message_bytes: usize,
    /// Largest upload through the streaming `UploadArrow`.
    pub max_upload_bytes: usize,
    /// Largest answer a REST source (`ReadRestApi`) may give, all its pages together.
    pub max_rest_response_bytes: usize,
    /// Pages a REST source may read for one answer, unless its request asks for fewer
    /// (`max_pages`); an answer with more is RESOURCE_EXHAUSTED.
    pub max_rest_pages: u32,
    pub max_result_rows: usize,
    pub max_result_columns: usize,
    pub max_result_bytes: usize,
    /// Memory for materialized results (LRU).
    pub cache_bytes: usize,
    /// Plan nodes (lazy frames) kept ready in memory.
    pub plan_cache_entries: usize,
    /// Whether queries run on Polars' streaming engine; `false` runs them all on the
    /// in-memory engine.
    pub streaming_engine: bool,
    /// Steps a handle's lineage may have since its nearest source or persisted ancestor.
    pub max_lineage_depth: u32,
    /// Default rows per message of CollectStreaming and of the streaming sources.
    pub stream_batch_rows: usize,
    /// Streaming sources (`StreamRestApi`, `StreamMessageQueue`, ...) served at once; a
    /// stream beyond is RESOURCE_EXHAUSTED. 0: no limit.
    pub max_streams: usize,
    /// Rows one stream sends in all; the stream ends there with RESOURCE_EXHAUSTED.
    /// 0: no cap.
    pub stream_max_rows: u64,
    /// Arrow IPC bytes one stream sends in all; RESOURCE_EXHAUSTED past it. 0: no cap.
    pub stream_max_bytes: u64,
    /// Seconds one stream may run; DEADLINE_EXCEEDED past them. 0: no cap.
    pub stream_max_duration_secs: f64,
    /// Rows a second one stream sends at most; a faster source waits. 0: no cap.
    pub stream_max_rows_per_second: u32,
    /// Requests a second one stream makes to its peer at most (REST pages and polls),
    /// whatever its client asks. 0: no cap.
    pub stream_max_requests_per_second: u32,
    /// A handle not used (collected, derived from, heartbeated) for this long expires,
    /// unless pinned. 0: never.
    pub handle_ttl_secs: f64,
    /// How often this worker runs the store's garbage collector. 0: never.
    pub gc_interval_secs: f64,
    /// What the collector spares: handles dead for less than this, and anything written
    /// within it. Every worker sharing a store must use the same value, longer than any call.
    pub gc_grace_secs: f64,
    /// With an external store, results that took at least this long to compute are
    /// written to it in the background, so other workers load instead of recomputing.
    /// A negative value turns write-behind off.
    pub write_behind_after_secs: f64,
    /// Test hook: operations named here panic, to show panics become INTERNAL. Empty: off.
    pub debug_panic_on_operation: String,
    /// The batch-job queue in Redis (`redis://host:port/db`); empty: this worker runs no
    /// jobs (unless `polaroid standalone` hands it the embedded queue).
    pub redis_url: String,
    /// Prefix of every Redis key, the same as the coordinators'.
    pub redis_prefix: String,
    /// Jobs this worker runs at once; 0: none.
    pub job_slots: usize,
    /// A job attempt whose worker stops renewing it for this long is taken over by another.
    pub job_visibility_timeout_secs: f64,
    /// First retry delay of a failed job; doubled per attempt up to the max, with jitter.
    pub job_retry_backoff_secs: f64,
    pub job_retry_backoff_max_secs: f64,
    /// A waiting job gains one priority level per this much waiting (no starvation).
    pub job_priority_aging_secs: f64,
    /// Finished jobs are kept this long.
    pub job_retention_secs: f64,
    /// Per attempt, for jobs that set no timeout.
    pub job_default_timeout_secs: f64,
    /// On SIGTERM, how long attempts already running may go on to finish (after the
    /// worker has left the ring) before the process exits without them; 0: not at all
    /// (another worker takes them over after the visibility timeout).
    pub job_drain_secs: f64,
}

impl WorkerConfig {
    /// The Arrow bytes one result message may carry: `max_response_message_bytes` less
    /// room for the framing around them (an `ArrowBatch` or a Flight `FlightData`).
    pub fn result_payload_bytes(&self) -> usize {
        self.max_response_message_bytes
            .saturating_sub(1024)
            .max(1024)
    }

    /// What one streaming source may do (`max_streams`, `stream_*`).
    pub fn stream_caps(&self) -> crate::streams::StreamCaps {
        let positive = |n: u32| (n > 0).then_some(n);
        crate::streams::StreamCaps {
            max_rows: self.stream_max_rows,
            max_bytes: self.stream_max_bytes,
            max_duration: (self.stream_max_duration_secs > 0.0)
                .then(|| seconds(self.stream_max_duration_secs)),
            max_rows_per_second: positive(self.stream_max_rows_per_second),
            max_requests_per_second: positive(self.stream_max_requests_per_second),
            max_streams: self.max_streams,
            batch_rows: self.stream_batch_rows.max(1),
            max_message_bytes: self.result_payload_bytes(),
        }
    }

    /// How long an unused handle lives; `None`: forever.
    pub fn handle_ttl(&self) -> Option<Duration> {
        (self.handle_ttl_secs > 0.0).then(|| seconds(self.handle_ttl_secs))
    }

    /// Time between collector passes; `None`: the collector is off.
    pub fn gc_interval(&self) -> Option<Duration> {
        (self.gc_interval_secs > 0.0).then(|| seconds(self.gc_interval_secs))
    }

    pub fn load_report_interval(&self) -> Duration {
        seconds(self.load_report_interval_secs).max(Duration::from_millis(10))
    }

    pub fn drain_delay(&self) -> Duration {
        seconds(self.drain_delay_secs)
    }

    pub fn keep_warm(&self) -> Duration {
        Duration::from_micros(self.keep_warm_micros)
    }

    pub fn gc_grace(&self) -> Duration {
        seconds(self.gc_grace_secs)
    }

    /// How this worker's queue treats jobs; coordinators must use the same retention.
    pub fn job_queue_settings(&self) -> polaroid_jobs::QueueSettings {
        polaroid_jobs::QueueSettings {
            visibility_timeout: seconds(self.job_visibility_timeout_secs)
                .max(Duration::from_millis(100)),
            retry_backoff: seconds(self.job_retry_backoff_secs),
            retry_backoff_max: seconds(self.job_retry_backoff_max_secs),
            priority_aging: seconds(self.job_priority_aging_secs),
            retention: seconds(self.job_retention_secs),
            ..polaroid_jobs::QueueSettings::default()
        }
    }

    pub fn job_default_timeout(&self) -> Duration {
        seconds(self.job_default_timeout_secs)
    }

    /// How long a draining worker lets its running job attempts finish.
    pub fn job_drain(&self) -> Duration {
        seconds(self.job_drain_secs)
    }

    /// Compute time past which a result is written behind; `None`: never (a memory
    /// store, or a negative setting).
    pub fn write_behind_after(&self) -> Option<Duration> {
        (self.handle_store == HandleStoreKind::External && self.write_behind_after_secs >= 0.0)
            .then(|| seconds(self.write_behind_after_secs))
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            bind_address: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_address: SocketAddr::from(([127, 0, 0, 1], 9091)),
            coordinator_url: String::new(),
            advertise_address: String::new(),
            worker_id: String::new(),
            load_report_interval_secs: 2.0,
            drain_delay_secs: 1.5,
            keep_warm_micros: 200,
            handle_store: HandleStoreKind::Memory,
            state_dir: PathBuf::from("polaroid-state"),
            store_url: String::new(),
            store_options: StoreOptions::default(),
            data_roots: vec![PathBuf::from(".")],
            max_concurrent_calls: 256,
            shared_data_roots: false,
            rest_allowed_url_prefixes: Vec::new(),
            rest_allow_private_networks: false,
            outbound_ca_files: Vec::new(),
            max_call_secs: 600.0,
            auth: polaroid_auth::AuthConfig::default(),
            quotas: polaroid_server::QuotaConfig::default(),
            tls: polaroid_auth::TlsConfig::default(),
            max_request_message_bytes: 256 * 1024 * 1024,
            max_response_message_bytes: 4 * 1024 * 1024,
            max_upload_bytes: 16 * 1024 * 1024 * 1024,
            max_rest_response_bytes: 1024 * 1024 * 1024,
            max_rest_pages: 10_000,
            max_result_rows: 100_000_000,
            max_result_columns: 10_000,
            max_result_bytes: 8 * 1024 * 1024 * 1024,
            cache_bytes: 1024 * 1024 * 1024,
            plan_cache_entries: 100_000,
            max_lineage_depth: 10_000,
            streaming_engine: true,
            stream_batch_rows: 65_536,
            max_streams: 64,
            stream_max_rows: 100_000_000,
            stream_max_bytes: 64 * 1024 * 1024 * 1024,
            stream_max_duration_secs: 24.0 * 3600.0,
            stream_max_rows_per_second: 0,
            stream_max_requests_per_second: 20,
            handle_ttl_secs: 24.0 * 3600.0,
            gc_interval_secs: 60.0,
            gc_grace_secs: 600.0,
            write_behind_after_secs: 2.0,
            debug_panic_on_operation: String::new(),
            redis_url: String::new(),
            redis_prefix: "polaroid".into(),
            job_slots: 2,
            job_visibility_timeout_secs: 30.0,
            job_retry_backoff_secs: 1.0,
            job_retry_backoff_max_secs: 60.0,
            job_priority_aging_secs: 60.0,
            job_retention_secs: 7.0 * 24.0 * 3600.0,
            job_default_timeout_secs: 24.0 * 3600.0,
            job_drain_secs: 0.0,
        }
    }
}
