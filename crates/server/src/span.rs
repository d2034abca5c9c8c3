//! A tracing span per call, named by its method, that the layers inside it (the caller's
//! tenant from authentication) and the services' own events record into.

use tracing::Instrument;

#[derive(Debug, Clone, Copy)]
pub struct CallSpanLayer {
    role: &'static str,
}

impl CallSpanLayer {
    pub fn new(role: &'static str) -> Self {
        Self { role }
    }
}

impl<S> tower::Layer<S> for CallSpanLayer {
    type Service = CallSpan<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallSpan {
            role: self.role,
            inner,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CallSpan<S> {
    role: &'static str,
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for CallSpan<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = tracing::instrument::Instrumented<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let span = tracing::info_span!(
            "call",
            role = self.role,
            method = request.uri().path(),
            tenant = tracing::field::Empty,
        );
        // Entered while the inner layers take the request, so what they learn (the
        // tenant) lands in this span; the future then runs inside it.
        let call = span.in_scope(|| self.inner.call(request));
        call.instrument(span)
    }
}
