//! The per-tenant concurrency layer: a tenant at its quota of calls in flight gets
//! RESOURCE_EXHAUSTED at once, so one tenant's burst cannot take every slot of the
//! process-wide limit from the others.

use std::task::{Context, Poll};

use polaroid_auth::{Caller, ComponentCall};

use crate::BoxFuture;
use crate::quota::TenantCalls;

#[derive(Debug, Clone)]
pub struct TenantLimitLayer {
    calls: Option<TenantCalls>,
}

impl TenantLimitLayer {
    /// `None`: no tenant has a limit of calls, and the layer passes every call through.
    pub fn new(calls: Option<TenantCalls>) -> Self {
        Self { calls }
    }
}

impl<S> tower::Layer<S> for TenantLimitLayer {
    type Service = TenantLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantLimit {
            calls: self.calls.clone(),
            inner,
        }
    }
}

#[derive(Debug, Clone)]
pub struct TenantLimit<S> {
    calls: Option<TenantCalls>,
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for TenantLimit<S>
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
        // A coordinator's forwarded call was counted by that coordinator already.
        let tenant = match &self.calls {
            Some(calls) if request.extensions().get::<ComponentCall>().is_none() => {
                Caller::in_extensions(request.extensions())
                    .ok()
                    .map(|caller| (calls, caller.tenant.clone()))
            }
            _ => None,
        };
        let Some((calls, tenant)) = tenant else {
            return Box::pin(self.inner.call(request));
        };
        match calls.admit(&tenant) {
            Ok(permit) => crate::holding(permit, self.inner.call(request)),
            Err(exceeded) => Box::pin(std::future::ready(Ok(crate::busy(exceeded.status())))),
        }
    }
}
