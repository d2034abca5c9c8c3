//! The Polaroid coordinator: serves the polaroid.v1 `DataFrameService` by forwarding each
//! call to the worker that owns its handle's affinity key on a consistent-hash ring of
//! live workers, failing over to the next one (Arrow Flight alike); `ClusterService`,
//! where workers register and report their load; `JobService`, which validates and
//! queues batch jobs; and KEDA's external scaler, which reads the cluster's load.

mod call_share;
mod cluster;
mod cluster_service;
pub mod config;
mod error;
mod failover;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
mod job_service;
mod link;
pub mod membership;
mod proxy;
pub mod ring;
mod routing;
pub mod scaler;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use polaroid_jobs::JobQueue;
use polaroid_observability::keep_warm::KeepWarm;
use polaroid_observability::{GrpcMetricsLayer, Listeners, Readiness, ServingStatus};
use polaroid_proto::externalscaler::external_scaler_server::ExternalScalerServer;
use polaroid_proto::v1::cluster_service_server::ClusterServiceServer;
use polaroid_proto::v1::job_service_server::JobServiceServer;
use polaroid_server::ServerLayers;
use tonic::transport::server::TcpIncoming;

pub use config::{CoordinatorConfig, RoutingPolicy};
pub use error::CoordinatorError;
pub use membership::{Membership, MemoryMembership, RedisMembership};

/// How often coordinators publish their tenants' calls in flight to each other: the
/// bound on how stale another coordinator's count is when a call is admitted.
const CALL_SHARE_INTERVAL: Duration = Duration::from_millis(100);

/// Serves the coordinator until `shutdown` completes, then finishes in-flight calls. With a
/// Redis URL, membership and the batch-job queue live in Redis.
pub async fn run(
    config: CoordinatorConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CoordinatorError> {
    let queue = polaroid_jobs::connect(
        &config.redis_url,
        &config.redis_prefix,
        config.job_queue_settings(),
    )
    .await?;
    serve(config, listeners, shutdown, queue, None).await
}

/// [`run`] with the job queue given (`polaroid standalone` shares its embedded one), and
/// the stacks its workers publish in this process (called without a socket).
pub async fn serve(
    config: CoordinatorConfig,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
    queue: Option<Arc<dyn JobQueue>>,
    in_process: Option<polaroid_server::InProcess>,
) -> Result<(), CoordinatorError> {
    let bound = listeners.grpc.local_addr()?;
    let auth = polaroid_auth::Auth::from_settings(&config.auth, &config.tls, bound)?;
    let tls = auth.tls().clone();
    // What forwarded calls, validations and reports carry to workers: the secret, and
    // this coordinator's certificate when it dials them over TLS.
    let credential = auth.cluster_credential(tls.dialing())?;
    let membership: Arc<dyn Membership> = if config.redis_url.is_empty() {
        Arc::new(MemoryMembership::default())
    } else {
        Arc::new(RedisMembership::connect(&config.redis_url, &config.redis_prefix).await?)
    };
    let mut cluster = cluster::Cluster::new(membership, &config, tls.dialing().cloned());
    if let Some(registry) = in_process {
        cluster = cluster.with_in_process(registry);
    }
    let cluster = Arc::new(cluster);
    if let Err(e) = cluster.refresh().await {
        tracing::warn!(error = %e, "reading membership failed; starting with no workers");
    }
    let queue_depth = queue.clone().map(|queue| {
        tokio::spawn(job_service::report_queue_depth_every(
            queue,
            job_service::QUEUE_DEPTH_INTERVAL,
        ))
    });
    let refresher = tokio::spawn(cluster::refresh_every(
        cluster.clone(),
        config.membership_refresh(),
    ));
    let proxy = proxy::DataFrameProxy::new(
        cluster.clone(),
        config.max_attempts,
        Duration::from_millis(config.retry_backoff_ms),
        config.max_request_message_bytes,
        config.max_response_message_bytes,
        credential.clone(),
    );
    let flight = proxy.serving::<routing::FlightRoutes>();
    let scaler = ExternalScalerServer::new(scaler::Scaler::new(cluster.clone(), queue.clone()));
    let (health, health_service) = polaroid_observability::health_service();
    for service in [
        <proxy::DataFrameProxy as tonic::server::NamedService>::NAME,
        <proxy::FlightProxy as tonic::server::NamedService>::NAME,
    ] {
        health
            .set_service_status(service, ServingStatus::Serving)
            .await;
    }
    let reflection = polaroid_observability::reflection_service()?;
    let ready: Readiness = {
        let cluster = cluster.clone();
        let without_workers = config.ready_without_workers;
        Arc::new(move || without_workers || cluster.live_workers() > 0)
    };

    let keep_warm = KeepWarm::start(config.keep_warm()).map_err(CoordinatorError::KeepWarm)?;
    config
        .quotas
        .validate()
        .map_err(CoordinatorError::InvalidQuotas)?;
    let quotas = Arc::new(config.quotas.clone());
    let tenant_calls = quotas
        .limits_calls()
        .then(|| polaroid_server::TenantCalls::new(quotas.clone()));
    // With replicas (they share Redis), each counts the others' calls too.
    let call_sharing = tenant_calls
        .clone()
        .filter(|_| !config.redis_url.is_empty())
        .map(|calls| {
            let (url, prefix) = (config.redis_url.clone(), config.redis_prefix.clone());
            tokio::spawn(async move {
                if let Err(e) = call_share::share_every(calls, url, prefix, CALL_SHARE_INTERVAL).await {
                    tracing::error!(error = %e, "cannot share calls in flight with other coordinators");
                }
            })
        });
    let layers = tower::ServiceBuilder::new()
        // The stack every Polaroid gRPC port runs (polaroid-server, outermost first).
        .layer(ServerLayers {
            role: "coordinator",
            metrics: GrpcMetricsLayer::new("coordinator"),
            auth: auth.clone().layer(),
            tenant_calls,
            max_concurrent_calls: config.max_concurrent_calls,
            max_call: polaroid_server::max_call(config.max_call_secs),
        })
        // Calls that follow each other closely keep the CPUs awake for the next one.
        .layer(keep_warm.layer());

    tracing::info!(address = ?listeners.grpc.local_addr().ok(), "coordinator serving");
    let shutdown = shutdown.shared();
    // Small request/response pairs dominate: send at once instead of coalescing packets.
    let incoming = TcpIncoming::from(listeners.grpc).with_nodelay(Some(true));
    let grpc = tls
        .server(tonic::transport::Server::builder())?
        // Results stream through two hops: windows that grow with the bandwidth keep the
        // pipe full.
        .http2_adaptive_window(Some(true))
        .layer(layers)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(ClusterServiceServer::new(
            cluster_service::ClusterServer::new(cluster.clone()),
        ))
        .add_service(proxy)
        .add_service(flight)
        .add_service(scaler)
        .add_service(
            JobServiceServer::new(job_service::JobServer::new(
                queue,
                cluster.clone(),
                config.max_attempts,
                config.max_request_message_bytes,
                credential,
                quotas,
            ))
            .max_decoding_message_size(config.max_request_message_bytes),
        )
        .serve_with_incoming_shutdown(incoming, shutdown.clone());
    let http = polaroid_observability::serve_admin(listeners.http, tls.admin(), ready, shutdown);
    let (grpc, http) = tokio::join!(grpc, http);
    refresher.abort();
    if let Some(queue_depth) = queue_depth {
        queue_depth.abort();
    }
    if let Some(sharing) = call_sharing {
        sharing.abort();
    }
    grpc?;
    http?;
    Ok(())
}
