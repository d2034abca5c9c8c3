//! The Polaroid worker: a Polars engine behind the polaroid.v1 `DataFrameService`.

mod cache;
pub mod config;
pub mod dtype;
mod engine;
mod error;
pub mod expr;
mod flight;
mod flight_frames;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod ipc;
mod ipc_bounds;
mod jobs;
pub mod legacy;
mod outbound;
mod paths;
mod plan;
mod query;
mod records;
mod registration;
mod rest;
pub mod schema_json;
mod service;
mod sinks;
mod sources;
mod sql_depth;
mod stats;
mod streams;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use polaroid_jobs::JobQueue;
use polaroid_observability::keep_warm::KeepWarm;
use polaroid_observability::{GrpcMetricsLayer, Listeners, Readiness};
use polaroid_proto::v1::data_frame_service_server::DataFrameServiceServer;
use polaroid_proto::v1::job_validation_service_server::JobValidationServiceServer;
use polaroid_server::ServerLayers;
use polaroid_store::{
    AffinityKey, Catalog, FsStore, MemoryStore, ObjectStoreBackend, ResultStore, StoredBytesQuota,
    TenantId,
};
use tonic::transport::server::TcpIncoming;
use tower::ServiceExt;

pub use config::{HandleStoreKind, StoreOptions, WorkerConfig};
pub use engine::Engine;
pub use error::EngineError;

/// Why the worker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("data roots: {0}")]
    DataRoots(std::io::Error),
    #[error("handle store: {0}")]
    Store(#[from] polaroid_store::StoreError),
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("http server: {0}")]
    Http(std::io::Error),
    #[error("grpc reflection: {0}")]
    Reflection(#[from] polaroid_observability::ReflectionError),
    #[error("worker id {0:?}: expected 1 to 128 of [A-Za-z0-9._-]")]
    WorkerId(String),
    #[error("cluster settings: {0}")]
    Cluster(String),
    #[error("job queue: {0}")]
    Queue(#[from] polaroid_jobs::QueueError),
    #[error("starting the keep-warm threads: {0}")]
    KeepWarm(std::io::Error),
    #[error("authentication: {0}")]
    Auth(#[from] polaroid_auth::AuthError),
    #[error("tls: {0}")]
    Tls(#[from] polaroid_auth::TlsError),
    #[error("outbound requests: {0}")]
    Outbound(#[from] outbound::OutboundError),
    #[error("quotas: {0}")]
    Quotas(String),
}

/// How often a worker lists a tenant's stored objects to learn its stored bytes: the
/// bound on how stale another worker's writes can be in this one's quota check.
const STORED_BYTES_RELIST: std::time::Duration = std::time::Duration::from_secs(5);

/// How a tenant is named in metrics, by its id's hex: its name where the quotas know
/// it, else its store prefix (`t/<hex>`).
#[derive(Clone)]
struct TenantNames(Arc<HashMap<String, String>>);

impl TenantNames {
    fn new(quotas: &polaroid_server::QuotaConfig) -> Self {
        Self(Arc::new(
            quotas
                .tenants
                .keys()
                .map(|name| (TenantId::from_name(name).to_hex(), name.clone()))
                .collect(),
        ))
    }

    fn of(&self, hex: &str) -> String {
        self.0
            .get(hex)
            .cloned()
            .unwrap_or_else(|| format!("t/{hex}"))
    }
}

/// The stored-bytes quota of `quotas`, when any tenant has one.
fn stored_bytes_quota(quotas: &polaroid_server::QuotaConfig) -> Option<StoredBytesQuota> {
    let by_tenant: HashMap<TenantId, (String, Option<u64>)> = quotas
        .tenants
        .keys()
        .map(|name| {
            let limit = quotas.limits(name).stored_bytes;
            (TenantId::from_name(name), (name.clone(), limit))
        })
        .collect();
    let default = (quotas.stored_bytes > 0).then_some(quotas.stored_bytes);
    if default.is_none() && by_tenant.values().all(|(_, limit)| limit.is_none()) {
        return None;
    }
    let by_tenant = Arc::new(by_tenant);
    let names = TenantNames::new(quotas);
    Some(StoredBytesQuota::new(
        Arc::new(move |tenant| by_tenant.get(&tenant).map_or(default, |(_, limit)| *limit)),
        Arc::new(move |tenant| names.of(&tenant.to_hex())),
        STORED_BYTES_RELIST,
    ))
}

/// Serves the worker until `shutdown` completes, then drains: it leaves the ring, finishes
/// in-flight calls and returns. With a Redis URL it also runs batch jobs from the queue.
pub async fn run(
    config: WorkerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
    let queue = polaroid_jobs::connect(
        &config.redis_url,
        &config.redis_prefix,
        config.job_queue_settings(),
    )
    .await?;
    serve(config, listeners, shutdown, queue, None).await
}

/// [`run`] with the job queue given (`polaroid standalone` shares its embedded one).
///
/// With `in_process`, the worker also publishes its gRPC stack there, so that a coordinator
/// in the same process calls it without a socket (see `polaroid_server::InProcess`).
pub async fn serve(
    config: WorkerConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    queue: Option<Arc<dyn JobQueue>>,
    in_process: Option<polaroid_server::InProcess>,
) -> Result<(), WorkerError> {
    let bound = listeners.grpc.local_addr().map_err(WorkerError::Http)?;
    let auth = polaroid_auth::Auth::from_settings(&config.auth, &config.tls, bound)?;
    let tls = auth.tls().clone();
    let roots = paths::DataRoots::new(&config.data_roots).map_err(WorkerError::DataRoots)?;
    let store: Arc<dyn ResultStore> = match config.handle_store {
        HandleStoreKind::Memory => Arc::new(MemoryStore::new()),
        HandleStoreKind::External if config.store_url.is_empty() => {
            Arc::new(FsStore::new(&config.state_dir)?)
        }
        HandleStoreKind::External => Arc::new(ObjectStoreBackend::from_url(
            &config.store_url,
            config.store_options.0.clone(),
        )?),
    };
    tracing::info!(kind = ?config.handle_store, "handle store ready");
    let worker_id = worker_id(&config)?;
    let address = match config.advertise_address.as_str() {
        "" => listeners
            .grpc
            .local_addr()
            .map_err(WorkerError::Http)?
            .to_string(),
        advertised => advertised.to_owned(),
    };
    let grace = config.gc_grace();
    config.quotas.validate().map_err(WorkerError::Quotas)?;
    let mut catalog = Catalog::new(store).with_gc_grace(grace);
    if let Some(quota) = stored_bytes_quota(&config.quotas) {
        catalog = catalog.with_stored_bytes_quota(quota);
    }
    let tenant_names = TenantNames::new(&config.quotas);
    let collector = config.gc_interval().map(|interval| {
        tokio::spawn(collect_garbage_every(
            catalog.clone(),
            interval,
            grace,
            tenant_names,
        ))
    });
    let outbound = outbound::Outbound::new(
        &config.rest_allowed_url_prefixes,
        config.rest_allow_private_networks,
    )?
    .with_ca_files(&config.outbound_ca_files)?;
    let engine = Arc::new(Engine::new(&config, catalog, roots, Arc::new(outbound)));
    let service =
        DataFrameServiceServer::new(service::DataFrameServer::new(engine.clone(), &config))
            .max_decoding_message_size(config.max_request_message_bytes)
            .max_encoding_message_size(config.max_response_message_bytes);
    let flight = flight_frames::FlightService::new(
        flight::FlightServer::new(engine.clone(), &address, tls.serves_tls(), &config),
        &config,
    );
    let metrics = GrpcMetricsLayer::new("worker");
    let (health, health_service) = polaroid_observability::health_service();
    health
        .set_serving::<DataFrameServiceServer<service::DataFrameServer>>()
        .await;
    health.set_serving::<flight_frames::FlightService>().await;
    let reflection = polaroid_observability::reflection_service()?;
    let validation =
        JobValidationServiceServer::new(jobs::JobValidationServer::new(engine.clone()))
            .max_decoding_message_size(config.max_request_message_bytes);

    let runner = queue.filter(|_| config.job_slots > 0).map(|queue| {
        Arc::new(jobs::JobRunner::new(
            engine.clone(),
            queue,
            worker_id.clone(),
            config.job_slots,
            config.job_queue_settings().visibility_timeout,
            config.job_default_timeout(),
        ))
    });
    let jobs_running = runner
        .as_ref()
        .map_or_else(Default::default, |runner| runner.running());
    let (stop_jobs, jobs_stopped) = tokio::sync::watch::channel(false);
    let job_drain = config.job_drain();
    let job_runner = runner.map(|runner| tokio::spawn(runner.run(jobs_stopped, job_drain)));

    let registration = if config.coordinator_url.is_empty() {
        None
    } else {
        // Over TLS for an `https://` URL, presenting this worker's certificate.
        let dialing = tls.for_url(&config.coordinator_url)?;
        Some(Arc::new(registration::Registration::new(
            registration::channel(&config.coordinator_url, dialing.as_ref())?,
            worker_id.clone(),
            address.clone(),
            engine.clone(),
            metrics.in_flight(),
            jobs_running,
            polaroid_auth::WithClusterCredential(auth.cluster_credential(dialing.as_ref())?),
        )))
    };
    let (stop_reports, reports_stopped) = tokio::sync::watch::channel(false);
    let reporter = registration.clone().map(|registration| {
        tokio::spawn(registration.report_every(config.load_report_interval(), reports_stopped))
    });
    let drain_delay = config.drain_delay();
    let draining = Arc::new(AtomicBool::new(false));
    let ready: Readiness = {
        let draining = draining.clone();
        let registered = registration.as_ref().map(|r| r.registered.clone());
        Arc::new(move || {
            !draining.load(Ordering::Relaxed)
                && registered
                    .as_ref()
                    .is_none_or(|r| r.load(Ordering::Relaxed))
        })
    };

    let shutdown = shutdown.shared();
    // Draining: leave the ring first, so no new call is routed here; the server then
    // stops accepting calls and finishes the ones in flight.
    let drain = {
        let shutdown = shutdown.clone();
        let registration = registration.clone();
        async move {
            shutdown.await;
            tracing::info!("draining");
            draining.store(true, Ordering::Relaxed);
            health
                .set_service_status("", polaroid_observability::ServingStatus::NotServing)
                .await;
            health
                .set_not_serving::<DataFrameServiceServer<service::DataFrameServer>>()
                .await;
            health
                .set_not_serving::<flight_frames::FlightService>()
                .await;
            // No new jobs.
            let _ = stop_jobs.send(true);
            let _ = stop_reports.send(true);
            if let Some(reporter) = reporter {
                let _ = reporter.await;
            }
            if let Some(registration) = registration {
                registration.leave().await;
                // Coordinators that learn membership from a shared store see the departure
                // at their next refresh; until then, calls routed here are still served.
                tokio::time::sleep(drain_delay).await;
            }
            // Attempts running now may end within job_drain_secs (their leases are in the
            // queue, not the ring); past it they end with the process and are reclaimed.
            if let Some(job_runner) = job_runner {
                let _ = job_runner.await;
            }
        }
    };

    let worker_header = http::HeaderValue::from_str(&worker_id)
        .map_err(|_| WorkerError::WorkerId(worker_id.clone()))?;
    let keep_warm = KeepWarm::start(config.keep_warm()).map_err(WorkerError::KeepWarm)?;
    let quotas = Arc::new(config.quotas.clone());
    let layers = tower::ServiceBuilder::new()
        // The stack every Polaroid gRPC port runs (polaroid-server, outermost first).
        // Calls a coordinator forwards were counted against their tenant's quota there.
        .layer(ServerLayers {
            role: "worker",
            metrics,
            auth: auth.layer(),
            tenant_calls: quotas
                .limits_calls()
                .then(|| polaroid_server::TenantCalls::new(quotas.clone())),
            max_concurrent_calls: config.max_concurrent_calls,
            max_call: polaroid_server::max_call(config.max_call_secs),
        })
        // Calls that follow each other closely keep the CPUs awake for the next one.
        .layer(keep_warm.layer())
        // Names the worker that served the call, for operators and tests behind a coordinator.
        .map_response(move |mut response: http::Response<tonic::body::Body>| {
            response
                .headers_mut()
                .insert(polaroid_proto::WORKER_METADATA, worker_header.clone());
            response
        })
        // A call that starts a pipeline takes the affinity key its coordinator routed by.
        .layer(tower::layer::layer_fn(AffinityScope));

    tracing::info!(%address, worker = %worker_id, "worker serving");
    // Small request/response pairs dominate: send at once instead of coalescing packets
    // (Nagle with delayed ACKs costs ~40 ms a call).
    let incoming = TcpIncoming::from(listeners.grpc).with_nodelay(Some(true));
    let routes = tonic::service::Routes::new(health_service)
        .add_service(reflection)
        .add_service(service)
        .add_service(flight)
        .add_service(validation);
    // The same stack for a coordinator in this process; withdrawn when the port stops
    // taking calls (after the drain below).
    let published = in_process.map(|registry| {
        let stack = layers
            .clone()
            .service(routes.clone())
            .map_request(|request: http::Request<tonic::body::Body>| request)
            .map_response(|response| response.map(tonic::body::Body::new))
            .map_err(Into::into);
        registry.publish(&address, polaroid_server::InProcessService::new(stack))
    });
    let drain = async move {
        drain.await;
        drop(published);
    };
    let grpc = tls
        .server(tonic::transport::Server::builder())?
        .layer(layers)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, drain);
    let http = polaroid_observability::serve_admin(listeners.http, tls.admin(), ready, shutdown);
    let (grpc, http) = tokio::join!(grpc, http);
    if let Some(collector) = collector {
        // Each deletion is atomic on its own; stopping between two loses nothing.
        collector.abort();
    }
    grpc?;
    http.map_err(WorkerError::Http)
}

/// The configured worker id, checked, or a new random one.
fn worker_id(config: &WorkerConfig) -> Result<String, WorkerError> {
    if config.worker_id.is_empty() {
        return Ok(format!("worker-{}", &AffinityKey::random().to_hex()[..8]));
    }
    let plain = config
        .worker_id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !plain || config.worker_id.len() > 128 {
        return Err(WorkerError::WorkerId(config.worker_id.clone()));
    }
    Ok(config.worker_id.clone())
}

/// Runs each call with [`engine::REQUESTED_AFFINITY`] set from its `x-polaroid-affinity`
/// metadata (ignored unless it is 16 lowercase hex digits).
#[derive(Clone)]
struct AffinityScope<S>(S);

impl<S, B> tower::Service<http::Request<B>> for AffinityScope<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tokio::task::futures::TaskLocalFuture<Option<AffinityKey>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let requested = request
            .headers()
            .get(polaroid_proto::AFFINITY_METADATA)
            .and_then(|v| v.to_str().ok())
            .and_then(AffinityKey::from_hex);
        engine::REQUESTED_AFFINITY.scope(requested, self.0.call(request))
    }
}

/// Runs the store's mark-and-sweep collector every `interval`. Every worker does this;
/// the collector is safe to run on several at once.
/// Collects garbage every `interval`, and reports each tenant's stored bytes from the
/// listing the pass makes anyway (`polaroid_store_tenant_bytes`, with or without a quota).
async fn collect_garbage_every(
    catalog: Catalog,
    interval: Duration,
    grace: Duration,
    names: TenantNames,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported = std::collections::HashSet::new();
    loop {
        ticks.tick().await;
        match catalog.collect_garbage(grace).await {
            Ok(report) => {
                tracing::debug!(?report, "garbage collected");
                // A tenant whose last object went reads 0, not its last size.
                for gone in reported.difference(&report.bytes_by_tenant.keys().cloned().collect()) {
                    metrics::gauge!("polaroid_store_tenant_bytes", "tenant" => names.of(gone))
                        .set(0.0);
                }
                for (tenant, bytes) in &report.bytes_by_tenant {
                    metrics::gauge!("polaroid_store_tenant_bytes", "tenant" => names.of(tenant))
                        .set(*bytes as f64);
                }
                reported = report.bytes_by_tenant.into_keys().collect();
            }
            Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
        }
    }
}
