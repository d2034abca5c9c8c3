//! Metrics, health and reflection shared by every Polaroid process: the Prometheus
//! recorder, the gRPC request-metrics layer, gRPC health and reflection, and the HTTP
//! admin endpoint (`/healthz`, `/readyz`, `/metrics`).

use std::collections::HashSet;
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

mod admin_tls;
mod described;
pub mod keep_warm;

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

/// Batch job attempts, in seconds: from a trivial job to the longest a job may run.
const JOB_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

/// The process-wide Prometheus recorder, installed on first use. Every component of a
/// process (a standalone process has a coordinator and workers) records into it.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|builder| {
                builder.set_buckets_for_metric(
                    Matcher::Full("polaroid_job_attempt_duration_seconds".into()),
                    JOB_BUCKETS,
                )
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only if something else installed a recorder first; this one then still
        // renders (empty) instead of taking the process down.
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed");
        }
        described::describe_all();
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

/// Serves the admin endpoint on `listener` (over TLS with `tls`) until `shutdown`
/// completes. The router (and the metrics recorder) is built at once, not when the
/// returned future is first polled.
pub fn serve_admin(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    ready: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> impl Future<Output = std::io::Result<()>> {
    let router = admin_router(ready);
    async move {
        match tls {
            None => {
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            Some(tls) => {
                axum::serve(admin_tls::TlsListener::new(listener, tls)?, router)
                    .with_graceful_shutdown(shutdown)
                    .await
            }
        }
    }
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

/// Calls being served right now (until their last response message), for load reports.
#[derive(Clone, Default, Debug)]
pub struct InFlight(Arc<AtomicU64>);

impl InFlight {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every `/package.Service/Method` path this process can serve: metric labels come only
/// from this set, so a client cannot create series with made-up paths.
fn known_methods() -> &'static HashSet<String> {
    static KNOWN: OnceLock<HashSet<String>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let sets = [
            polaroid_proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        ];
        let mut known = HashSet::new();
        for set in sets {
            let Ok(set) = <prost_types::FileDescriptorSet as prost::Message>::decode(set) else {
                continue;
            };
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        known.insert(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        known
    })
}

/// The (service, method) labels of a request path; both `unknown` for paths not served.
fn method_labels(path: &str) -> (String, String) {
    if known_methods().contains(path) {
        if let Some((service, method)) = path.trim_start_matches('/').rsplit_once('/') {
            let service = service.rsplit('.').next().unwrap_or(service);
            return (service.to_owned(), method.to_owned());
        }
    }
    ("unknown".to_owned(), "unknown".to_owned())
}

/// Records, for every call, `polaroid_grpc_requests_total{role,service,method,code}` and
/// `polaroid_grpc_request_duration_seconds{role,service,method}` when its last response
/// message is sent (the status from the trailers; `Cancelled` when the client went away
/// first), and `polaroid_grpc_in_flight_requests{role,service,method}` meanwhile.
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    role: &'static str,
    in_flight: InFlight,
}

impl GrpcMetricsLayer {
    pub fn new(role: &'static str) -> Self {
        // The recorder must be in place before the first call: the `metrics` macros
        // drop what they record while none is, so a call started then and ended after
        // would leave the in-flight gauge at -1 for good.
        prometheus();
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

/// One call being measured: recorded when dropped, at the end of its response.
struct CallRecord {
    role: &'static str,
    service: String,
    method: String,
    started: Instant,
    code: Option<tonic::Code>,
    in_flight: InFlight,
}

impl CallRecord {
    fn start(role: &'static str, path: &str, in_flight: InFlight) -> Self {
        let (service, method) = method_labels(path);
        in_flight.0.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(
            "polaroid_grpc_in_flight_requests",
            "role" => role, "service" => service.clone(), "method" => method.clone()
        )
        .increment(1.0);
        Self {
            role,
            service,
            method,
            started: Instant::now(),
            code: None,
            in_flight,
        }
    }

    fn note_status(&mut self, headers: &http::HeaderMap) {
        if let Some(code) = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
        {
            self.code = Some(tonic::Code::from_i32(code));
        }
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.in_flight.0.fetch_sub(1, Ordering::Relaxed);
        let code = format!("{:?}", self.code.unwrap_or(tonic::Code::Cancelled));
        let (service, method) = (
            std::mem::take(&mut self.service),
            std::mem::take(&mut self.method),
        );
        metrics::gauge!(
            "polaroid_grpc_in_flight_requests",
            "role" => self.role, "service" => service.clone(), "method" => method.clone()
        )
        .decrement(1.0);
        metrics::histogram!(
            "polaroid_grpc_request_duration_seconds",
            "role" => self.role, "service" => service.clone(), "method" => method.clone()
        )
        .record(self.started.elapsed().as_secs_f64());
        metrics::counter!(
            "polaroid_grpc_requests_total",
            "role" => self.role, "service" => service, "method" => method, "code" => code
        )
        .increment(1);
    }
}

pin_project_lite::pin_project! {
    /// A response body that finishes its call's record when the body ends or is dropped.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        record: Option<CallRecord>,
    }
}

impl<B> http_body::Body for MeteredBody<B>
where
    B: http_body::Body,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(record)) = (frame.trailers_ref(), this.record.as_mut())
                {
                    record.note_status(trailers);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(record) = this.record.as_mut() {
                    record.code = Some(tonic::Code::Unknown);
                }
                this.record.take();
            }
            Poll::Ready(None) => {
                if let Some(record) = this.record.as_mut() {
                    record.code.get_or_insert(tonic::Code::Ok);
                }
                this.record.take();
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = http::Response<MeteredBody<RB>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut record = CallRecord::start(self.role, request.uri().path(), self.in_flight.clone());
        let call = self.inner.call(request);
        Box::pin(async move {
            let response = call.await?;
            // A trailers-only response (an error) carries its status in the headers.
            record.note_status(response.headers());
            Ok(response.map(|inner| MeteredBody {
                inner,
                record: Some(record),
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer, ServiceExt};

    /// The in-flight gauge of `role`'s Collect calls.
    fn in_flight_now(role: &str) -> Option<String> {
        let prefix = format!("polaroid_grpc_in_flight_requests{{role=\"{role}\",");
        prometheus()
            .render()
            .lines()
            .filter(|line| line.starts_with(&prefix) && line.contains("method=\"Collect\""))
            .find_map(|line| line.rsplit_once(' ').map(|(_, value)| value.to_owned()))
    }

    #[tokio::test]
    async fn the_first_call_of_a_process_is_counted() {
        // Nothing here touches the recorder before the call: building the layer must
        // install it. This proves it only in a process of its own, as nextest (what
        // scripts/test.sh runs) gives each test; under `cargo test` another test may
        // install the recorder first.
        let layer = GrpcMetricsLayer::new("first-call");
        let service = layer.layer(tower::service_fn(|_: http::Request<()>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
        }));
        let request = http::Request::builder()
            .uri("/polaroid.v1.DataFrameService/Collect")
            .body(())
            .expect("a valid request");
        let response = service.oneshot(request).await.expect("infallible");
        assert_eq!(in_flight_now("first-call").as_deref(), Some("1"));
        drop(response);
        assert_eq!(in_flight_now("first-call").as_deref(), Some("0"));
    }

    #[test]
    fn only_served_methods_become_labels() {
        assert_eq!(
            method_labels("/polaroid.v1.DataFrameService/Collect"),
            ("DataFrameService".to_owned(), "Collect".to_owned())
        );
        assert_eq!(
            method_labels("/grpc.health.v1.Health/Check"),
            ("Health".to_owned(), "Check".to_owned())
        );
        for junk in ["/polaroid.v1.DataFrameService/Nope", "/x/y", "", "/", "//"] {
            assert_eq!(
                method_labels(junk),
                ("unknown".to_owned(), "unknown".to_owned()),
                "{junk:?}"
            );
        }
    }
}
