//! Load shedding: a server at its limit of concurrent calls answers RESOURCE_EXHAUSTED at
//! once instead of queueing calls until memory runs out. One limit per process, shared by
//! every connection (tonic's own per-connection limit would let many connections each
//! bring their own).

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Semaphore;

use crate::BoxFuture;

/// Sheds calls beyond `limit` running at once; 0: no limit.
#[derive(Clone)]
pub struct ShedLayer {
    permits: Option<Arc<Semaphore>>,
    limit: usize,
    role: &'static str,
}

impl ShedLayer {
    pub fn new(role: &'static str, limit: usize) -> Self {
        Self {
            permits: (limit > 0).then(|| Arc::new(Semaphore::new(limit))),
            limit,
            role,
        }
    }
}

impl<S> tower::Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            layer: self.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Shed<S> {
    layer: ShedLayer,
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for Shed<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let exempt = crate::is_control_call(request.uri().path());
        let Some(permits) = self.layer.permits.as_ref().filter(|_| !exempt) else {
            return Box::pin(self.inner.call(request));
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => crate::holding(permit, self.inner.call(request)),
            Err(_) => {
                metrics::counter!("polaroid_grpc_shed_requests_total", "role" => self.layer.role)
                    .increment(1);
                let status = tonic::Status::resource_exhausted(format!(
                    "this {} is running its limit of {} calls at once; retry after a short backoff",
                    self.layer.role, self.layer.limit
                ));
                Box::pin(std::future::ready(Ok(crate::busy(status))))
            }
        }
    }
}
