//! The tower stack every gRPC port of a coordinator or a worker runs, in one place: a span
//! and metrics per call, the decode statuses gRPC clients expect, authentication, tenant
//! and process concurrency limits, and deadlines; and the tenant quotas they enforce. And
//! the registry through which one process's coordinator calls its own workers' stacks.

mod deadline;
mod decode_status;
mod in_process;
pub mod quota;
mod shed;
mod span;
mod tenant_limit;

use std::time::Duration;

use polaroid_auth::{AuthLayer, Authenticated};
use polaroid_observability::{GrpcMetrics, GrpcMetricsLayer};
use tower::util::MapResponse;

pub use deadline::{CallDeadline, Deadline, DeadlineLayer, client_timeout};
pub use decode_status::rewrite_decode_status;
pub use in_process::{InProcess, InProcessService, Published};
pub use quota::{CallPermit, QuotaConfig, QuotaExceeded, TenantCalls, TenantLimits};
pub use shed::{Shed, ShedLayer};
pub use span::{CallSpan, CallSpanLayer};
pub use tenant_limit::{TenantLimit, TenantLimitLayer};

type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

/// Membership reports and health checks are never shed nor cut short: a coordinator at its
/// limit must not lose its workers for it.
fn is_control_call(path: &str) -> bool {
    path.starts_with("/polaroid.v1.ClusterService/") || path.starts_with("/grpc.health.v1.Health/")
}

/// `call`, with `permit` held until its response starts: a streamed body is not counted.
fn holding<P, T>(
    permit: P,
    call: impl std::future::Future<Output = T> + Send + 'static,
) -> BoxFuture<T>
where
    P: Send + 'static,
{
    Box::pin(async move {
        let response = call.await;
        drop(permit);
        response
    })
}

/// How long a client refused for being one call too many is asked to wait.
const RETRY_PUSHBACK_MS: &str = "100";

/// The answer to a call refused because too many are running: `status` with gRPC's
/// standard retry hint, so clients with a retry policy wait and try again. A limit that
/// waiting does not lift (a result too large, a full stored-bytes quota) carries none.
fn busy<R: Default>(status: tonic::Status) -> http::Response<R> {
    let mut response: http::Response<R> = status.into_http();
    response.headers_mut().insert(
        "grpc-retry-pushback-ms",
        http::HeaderValue::from_static(RETRY_PUSHBACK_MS),
    );
    response
}

type DecodeStatus = fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>;

/// The shared layers of one process, built from its settings.
#[derive(Clone)]
pub struct ServerLayers {
    pub role: &'static str,
    pub metrics: GrpcMetricsLayer,
    pub auth: AuthLayer,
    /// Calls in flight per tenant; `None` when no tenant has a limit.
    pub tenant_calls: Option<TenantCalls>,
    /// Calls served at once by the process; 0: no limit.
    pub max_concurrent_calls: usize,
    /// The longest a call may run before its response starts; `None`: no bound.
    pub max_call: Option<Duration>,
}

impl<S> tower::Layer<S> for ServerLayers {
    type Service = CallSpan<
        GrpcMetrics<MapResponse<Authenticated<TenantLimit<Shed<Deadline<S>>>>, DecodeStatus>>,
    >;

    fn layer(&self, inner: S) -> Self::Service {
        tower::ServiceBuilder::new()
            // Outermost: one span per call, so everything below, refusals included, is
            // recorded in it with the call's method and tenant.
            .layer(CallSpanLayer::new(self.role))
            // Every call is counted and timed, rejected ones included.
            .layer(self.metrics.clone())
            // A request that could not be decoded answers as gRPC clients expect: over the
            // size limit RESOURCE_EXHAUSTED, not a valid message INVALID_ARGUMENT.
            .map_response(rewrite_decode_status as DecodeStatus)
            // Who is calling: a client's token, or a component with the cluster
            // credential; refused calls end here (docs/security.md).
            .layer(self.auth.clone())
            // A tenant at its quota of calls in flight is refused before it takes a slot
            // of the process-wide limit from other tenants.
            .layer(TenantLimitLayer::new(self.tenant_calls.clone()))
            // At its limit of calls the process answers RESOURCE_EXHAUSTED at once, for the
            // client to retry later; nothing queues without bound.
            .layer(ShedLayer::new(self.role, self.max_concurrent_calls))
            // Innermost: the call's deadline (the client's, or the server's maximum call
            // time) bounds the work itself, not the time spent waiting in the layers above.
            .layer(DeadlineLayer::new(self.max_call))
            .service(inner)
    }
}

/// Seconds from a setting to a bound: 0 or not a finite positive number means none.
pub fn max_call(seconds: f64) -> Option<Duration> {
    (seconds > 0.0)
        .then(|| Duration::try_from_secs_f64(seconds).ok())
        .flatten()
}
