//! Metrics, health and reflection shared by every Polaroid process: the Prometheus
//! recorder, the gRPC request-metrics layer, gRPC health and reflection, and the HTTP
//! admin endpoint (`/healthz`, `/readyz`, `/metrics`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

pub use tonic_health::ServingStatus;
pub use tonic_health::server::HealthReporter;
pub use tonic_reflection::server::Error as ReflectionError;

/// The sockets a process serves on: gRPC, and HTTP for health checks and metrics.
pub struct Listeners {
    pub grpc: TcpListener,
    pub http: TcpListener,
}

impl Listeners {
    /// Binds both addresses (port 0 picks a free port).
    pub async fn bind(
        grpc: std::net::SocketAddr,
        http: std::net::SocketAddr,
    ) -> std::io::Result<Self> {
        Ok(Self {
            grpc: TcpListener::bind(grpc).await?,
            http: TcpListener::bind(http).await?,
        })
    }
}

/// Latency buckets, in seconds: from tens of microseconds (a cached call) to minutes.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The process-wide Prometheus recorder, installed on first use. Every component of a
/// process (a standalone process has a coordinator and workers) records into it.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if something else installed a recorder first; this one then still
        // renders (empty) instead of taking the process down.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed");
        }
        handle
    })
}

/// Whether a process can take traffic (`/readyz`); liveness (`/healthz`) is answering at all.
pub type Readiness = Arc<dyn Fn() -> bool + Send + Sync>;

/// The HTTP admin endpoint: `/healthz`, `/readyz` and `/metrics`.
pub fn admin_router(ready: Readiness) -> axum::Router {
    // Installed here too, so `/metrics` works even before the first gRPC call.
    let metrics = prometheus();
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || async move {
                if ready() {
                    (StatusCode::OK, "ready\n")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                }
            }),
        )
        .route("/metrics", get(move || async move { metrics.render() }))
}

/// Serves the admin endpoint on `listener` until `shutdown` completes.
pub async fn serve_admin(
    listener: TcpListener,
    ready: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, admin_router(ready))
        .with_graceful_shutdown(shutdown)
        .await
}

/// gRPC reflection over every polaroid.v1 service (and the health service).
pub fn reflection_service() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::Error,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(polaroid_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
}

/// The standard `grpc.health.v1.Health` service and the handle that sets its statuses.
pub fn health_service() -> (
    HealthReporter,
    tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) {
    tonic_health::server::health_reporter()
}

/// Calls being served right now, for load reports.
#[derive(Clone, Default, Debug)]
pub struct InFlight(Arc<AtomicU64>);

impl InFlight {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Records `polaroid_grpc_requests_total{role,method,code}`,
/// `polaroid_grpc_request_duration_seconds{role,method}` and
/// `polaroid_grpc_in_flight_requests{role}` for every call. The duration and code are taken
/// when the response headers are ready: the whole call for unary methods, the time to the
/// first message for streams (a status sent in a stream's trailers is not seen here).
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    role: &'static str,
    in_flight: InFlight,
}

impl GrpcMetricsLayer {
    pub fn new(role: &'static str) -> Self {
        Self {
            role,
            in_flight: InFlight::default(),
        }
    }

    pub fn in_flight(&self) -> InFlight {
        self.in_flight.clone()
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            role: self.role,
            in_flight: self.in_flight.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
    role: &'static str,
    in_flight: InFlight,
}

/// Decrements the in-flight gauge however the call ends (including cancellation).
struct InFlightGuard {
    role: &'static str,
    in_flight: InFlight,
}

impl InFlightGuard {
    fn enter(role: &'static str, in_flight: InFlight) -> Self {
        in_flight.0.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("polaroid_grpc_in_flight_requests", "role" => role).increment(1.0);
        Self { role, in_flight }
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.in_flight.0.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("polaroid_grpc_in_flight_requests", "role" => self.role).decrement(1.0);
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let role = self.role;
        let guard = InFlightGuard::enter(role, self.in_flight.clone());
        let started = Instant::now();
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await;
            drop(guard);
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map(tonic::Code::from_i32)
                    .unwrap_or(tonic::Code::Ok),
                Err(_) => tonic::Code::Unknown,
            };
            // The path is the client's: an unknown method must not become a new series.
            let method = if code == tonic::Code::Unimplemented {
                "unknown".to_owned()
            } else {
                method
            };
            let code = format!("{code:?}");
            metrics::histogram!(
                "polaroid_grpc_request_duration_seconds",
                "role" => role, "method" => method.clone()
            )
            .record(started.elapsed().as_secs_f64());
            metrics::counter!(
                "polaroid_grpc_requests_total",
                "role" => role, "method" => method, "code" => code
            )
            .increment(1);
            result
        })
    }
}
