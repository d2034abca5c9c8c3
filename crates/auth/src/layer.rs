//! The tower layer that checks every gRPC call before any service sees it.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready, ready};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::{Auth, ComponentCall, Peer};

/// Checks each call with [`Auth::check`]: a refused call is answered here with its status;
/// an accepted one goes on with its [`crate::Caller`], if it has one, in its extensions.
#[derive(Clone)]
pub struct AuthLayer {
    auth: Arc<Auth>,
}

impl AuthLayer {
    pub fn new(auth: Arc<Auth>) -> Self {
        Self { auth }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authenticated<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticated {
            auth: self.auth.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct Authenticated<S> {
    auth: Arc<Auth>,
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for Authenticated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let peer = peer(request.extensions());
        match self
            .auth
            .check_peer(request.uri().path(), request.headers(), peer)
        {
            Ok(access) => {
                if let Some(caller) = access.caller {
                    tracing::Span::current().record("tenant", caller.tenant.as_str());
                    request.extensions_mut().insert(caller);
                }
                if access.internal {
                    request.extensions_mut().insert(ComponentCall);
                }
                Either::Right(self.inner.call(request))
            }
            Err(refusal) => {
                metrics::counter!("polaroid_auth_refused_calls_total", "reason" => refusal.reason())
                    .increment(1);
                tracing::debug!(path = request.uri().path(), %refusal, "call refused");
                Either::Left(ready(Ok(refusal.status().into_http())))
            }
        }
    }
}

/// Who is at the other end of the call's connection: tonic's TLS server verified any
/// client certificate against the cluster CA alone (a certificate from another CA fails
/// the handshake), so a connection that presented one is a cluster component's.
fn peer(extensions: &http::Extensions) -> Peer {
    let certified = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .is_some_and(|info| info.peer_certs().is_some_and(|chain| !chain.is_empty()));
    if certified {
        Peer::ClusterComponent
    } else {
        Peer::Anyone
    }
}
