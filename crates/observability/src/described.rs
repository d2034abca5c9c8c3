//! The HELP text of every metric Polaroid's processes export, given to the recorder when
//! it is installed, so that `/metrics` describes each (`promtool check metrics`, and what
//! Prometheus and Grafana show). A test checks every `polaroid_…` name in the workspace's
//! sources is here.

/// What a metric is, for its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every metric: its name, kind and help.
pub const METRICS: &[(&str, Kind, &str)] = &[
    (
        "polaroid_grpc_requests_total",
        Kind::Counter,
        "gRPC calls served, by role, service, method and status code.",
    ),
    (
        "polaroid_grpc_request_duration_seconds",
        Kind::Histogram,
        "Time from a gRPC call's arrival to its last response message, by role, service and method.",
    ),
    (
        "polaroid_grpc_in_flight_requests",
        Kind::Gauge,
        "gRPC calls being served now, by role, service and method.",
    ),
    (
        "polaroid_grpc_shed_requests_total",
        Kind::Counter,
        "gRPC calls refused with RESOURCE_EXHAUSTED because max_concurrent_calls were in flight, by role.",
    ),
    (
        "polaroid_grpc_deadline_exceeded_total",
        Kind::Counter,
        "gRPC calls ended by their deadline or max_call_secs before their answer started.",
    ),
    (
        "polaroid_auth_refused_calls_total",
        Kind::Counter,
        "Calls refused by authentication or authorization, by reason.",
    ),
    (
        "polaroid_auth_token_reloads_total",
        Kind::Counter,
        "Reloads of the tokens file, by outcome (ok, error).",
    ),
    (
        "polaroid_auth_tokens",
        Kind::Gauge,
        "Bearer tokens in the tokens file last loaded.",
    ),
    (
        "polaroid_coordinator_routed_calls_total",
        Kind::Counter,
        "Calls a coordinator routed to a worker, by route (how the worker was chosen).",
    ),
    (
        "polaroid_coordinator_in_process_calls_total",
        Kind::Counter,
        "Calls a coordinator made to a worker of its own process through the worker's stack, without a socket (polaroid standalone).",
    ),
    (
        "polaroid_coordinator_retries_total",
        Kind::Counter,
        "Attempts of a call after its first, on another worker.",
    ),
    (
        "polaroid_coordinator_failovers_total",
        Kind::Counter,
        "Calls that went to another worker because theirs was unreachable.",
    ),
    (
        "polaroid_coordinator_workers_suspected_total",
        Kind::Counter,
        "Workers routed around until their next load report, after failing to answer.",
    ),
    (
        "polaroid_coordinator_workers_live",
        Kind::Gauge,
        "Workers on the coordinator's ring (live leases, not suspected).",
    ),
    (
        "polaroid_coordinator_worker_links",
        Kind::Gauge,
        "Workers the coordinator holds a connection for (those on its ring; one that left is forgotten).",
    ),
    (
        "polaroid_coordinator_worker_in_flight_calls",
        Kind::Gauge,
        "Calls in flight on each worker, from its load reports.",
    ),
    (
        "polaroid_coordinator_worker_cache_bytes",
        Kind::Gauge,
        "Bytes of materialized results each worker caches, from its load reports.",
    ),
    (
        "polaroid_coordinator_worker_cpu_cores",
        Kind::Gauge,
        "CPU cores each worker is using, from its load reports.",
    ),
    (
        "polaroid_coordinator_worker_memory_bytes",
        Kind::Gauge,
        "Resident memory of each worker, from its load reports.",
    ),
    (
        "polaroid_coordinator_jobs_submitted_total",
        Kind::Counter,
        "Batch jobs queued through this coordinator (resubmissions of an idempotency key not counted).",
    ),
    (
        "polaroid_jobs_started_total",
        Kind::Counter,
        "Batch job attempts this worker started.",
    ),
    (
        "polaroid_jobs_finished_total",
        Kind::Counter,
        "Batch job attempts this worker ended, by outcome (succeeded, retrying, failed: dead-lettered, cancelled).",
    ),
    (
        "polaroid_worker_blocking_wait_seconds",
        Kind::Histogram,
        "How long a call's Polars work waited for a thread of the worker's blocking pool, by operation: its queue time when the worker is saturated.",
    ),
    (
        "polaroid_worker_memory_bytes",
        Kind::Gauge,
        "Resident memory of this worker, as it last reported its load.",
    ),
    (
        "polaroid_worker_memory_limit_bytes",
        Kind::Gauge,
        "The memory limit of this worker's cgroup (its container's limit); absent without one.",
    ),
    (
        "polaroid_jobs_running",
        Kind::Gauge,
        "Batch job attempts running on this worker now.",
    ),
    (
        "polaroid_job_attempt_duration_seconds",
        Kind::Histogram,
        "How long batch job attempts ran on this worker, by outcome (as polaroid_jobs_finished_total).",
    ),
    (
        "polaroid_jobs_waiting",
        Kind::Gauge,
        "Batch jobs waiting in the queue for a worker, by priority (every coordinator reports the whole queue).",
    ),
    (
        "polaroid_jobs_taken",
        Kind::Gauge,
        "Batch jobs taken from the queue and not finished, by priority: running, or held by a worker that died until their visibility timeout.",
    ),
    (
        "polaroid_jobs_delayed",
        Kind::Gauge,
        "Batch job retries waiting out their backoff before they rejoin the queue, by priority.",
    ),
    (
        "polaroid_worker_cache_hits_total",
        Kind::Counter,
        "Lookups found in a worker's caches, by cache (plan, result, encoded).",
    ),
    (
        "polaroid_worker_cache_misses_total",
        Kind::Counter,
        "Lookups not found in a worker's caches, by cache (plan, result, encoded).",
    ),
    (
        "polaroid_worker_in_memory_fallbacks_total",
        Kind::Counter,
        "Queries the streaming engine refused, run on Polars' in-memory engine instead.",
    ),
    (
        "polaroid_worker_streams_active",
        Kind::Gauge,
        "Streaming sources (StreamRestApi, StreamWebSocket, StreamMessageQueue, StreamGrpc, and the ones CaptureStream reads) running now, by source.",
    ),
    (
        "polaroid_worker_stream_rows_total",
        Kind::Counter,
        "Rows streaming sources sent their clients, by source.",
    ),
    (
        "polaroid_worker_streams_ended_total",
        Kind::Counter,
        "Streaming sources ended, by source and reason (source_ended, cancelled, cap, error).",
    ),
    (
        "polaroid_worker_stream_captures_total",
        Kind::Counter,
        "CaptureStream calls ended, by why (max_rows, max_duration, idle, source_ended, error, cancelled).",
    ),
    (
        "polaroid_store_read_bytes_total",
        Kind::Counter,
        "Bytes read from the handle store (values returned by gets), by backend.",
    ),
    (
        "polaroid_store_written_bytes_total",
        Kind::Counter,
        "Bytes written to the handle store by successful puts, by backend.",
    ),
    (
        "polaroid_store_operation_duration_seconds",
        Kind::Histogram,
        "Time of each handle-store operation, successful or not, by backend and operation.",
    ),
    (
        "polaroid_store_errors_total",
        Kind::Counter,
        "Handle-store operations that failed, by backend and operation.",
    ),
    (
        "polaroid_store_handle_creates_total",
        Kind::Counter,
        "Handle records created, by backend.",
    ),
    (
        "polaroid_store_handle_reads_total",
        Kind::Counter,
        "Handle records read, by backend and outcome (found, missing, error).",
    ),
    (
        "polaroid_store_handle_update_conflicts_total",
        Kind::Counter,
        "Changes to a handle record (pin, drop, TTL refresh, persist) whose compare-and-set lost to another writer and were redone, by backend.",
    ),
    (
        "polaroid_store_tenant_bytes",
        Kind::Gauge,
        "Bytes each tenant keeps in the shared store (records, uploads, persisted results), as this worker's last garbage-collection pass listed them.",
    ),
    (
        "polaroid_quota_stored_bytes",
        Kind::Gauge,
        "Bytes a tenant keeps in the shared store, as this worker last counted them.",
    ),
    (
        "polaroid_quota_stored_limit_bytes",
        Kind::Gauge,
        "A tenant's stored_bytes quota.",
    ),
    (
        "polaroid_quota_calls_in_flight",
        Kind::Gauge,
        "A tenant's calls in flight on this process.",
    ),
    (
        "polaroid_quota_calls_elsewhere",
        Kind::Gauge,
        "A tenant's calls in flight on the other coordinators, as they last published them.",
    ),
    (
        "polaroid_quota_calls_limit",
        Kind::Gauge,
        "A tenant's concurrent_calls quota.",
    ),
    (
        "polaroid_quota_jobs_active",
        Kind::Gauge,
        "A tenant's batch jobs queued, running or waiting to retry, when a submission was refused.",
    ),
    (
        "polaroid_quota_jobs_limit",
        Kind::Gauge,
        "A tenant's active_jobs quota.",
    ),
    (
        "polaroid_quota_refusals_total",
        Kind::Counter,
        "Calls and submissions refused for a tenant's quota, by quota and tenant.",
    ),
    (
        "polaroid_runtime_keep_warm_spin_seconds",
        Kind::Histogram,
        "Time the keep-warm threads spun after a call, one observation per spin.",
    ),
];

/// Gives the installed recorder the help of every metric.
pub(crate) fn describe_all() {
    for &(name, kind, help) in METRICS {
        match kind {
            Kind::Counter => metrics::describe_counter!(name, help),
            Kind::Gauge => metrics::describe_gauge!(name, help),
            Kind::Histogram => metrics::describe_histogram!(name, help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `"polaroid_…"` string in the workspace's sources that names a metric.
    fn names_in_sources() -> std::collections::BTreeSet<String> {
        let crates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut names = std::collections::BTreeSet::new();
        let mut dirs = vec![crates];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir)
                .expect("a readable source tree")
                .flatten()
            {
                let path = entry.path();
                if path.is_dir() {
                    if path.file_name().is_some_and(|n| n != "target") {
                        dirs.push(path);
                    }
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("described.rs")
                {
                    let text = std::fs::read_to_string(&path).expect("a readable source");
                    for piece in text.split('"').skip(1).step_by(2) {
                        let plain = piece
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                        if piece.starts_with("polaroid_") && plain {
                            names.insert(piece.to_owned());
                        }
                    }
                }
            }
        }
        names
    }

    #[test]
    fn every_metric_in_the_sources_is_described_once() {
        let described: std::collections::BTreeSet<String> = METRICS
            .iter()
            .map(|(name, _, _)| (*name).to_owned())
            .collect();
        assert_eq!(described.len(), METRICS.len(), "a metric described twice");
        let used = names_in_sources();
        let missing: Vec<_> = used.difference(&described).collect();
        assert!(
            missing.is_empty(),
            "metrics without help in described.rs: {missing:?}"
        );
        let unused: Vec<_> = described.difference(&used).collect();
        assert!(
            unused.is_empty(),
            "described but never recorded: {unused:?}"
        );
        for (name, kind, help) in METRICS {
            assert!(!help.is_empty() && help.ends_with('.'), "{name}");
            assert_eq!(
                name.ends_with("_total"),
                *kind == Kind::Counter,
                "{name}: counters end in _total"
            );
        }
    }
}
