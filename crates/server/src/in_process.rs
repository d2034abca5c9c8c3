//! Calls between the components of one process (`polaroid standalone`) without a socket: a
//! worker publishes its whole gRPC stack (the layers and services its port serves) under
//! the address it advertises, and a coordinator in the same process calls that stack as a
//! tower service instead of over a loopback HTTP/2 connection.
//!
//! Measured on the two-vCPU machine of docs/benchmarks.md: the loopback hop cost a trivial
//! call about 150-250 µs and one or two thread switches (HTTP/2 framing on both sides, the
//! worker's connection task, then the task its server spawns per call); through the
//! published stack the worker's handler runs on the coordinator's own task. An in-memory
//! duplex stream in place of the TCP socket would have kept the framing and the tasks.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tower::util::BoxCloneSyncService;

/// A worker's gRPC stack, as its port runs it: a gRPC request in, its response out.
pub type InProcessService = BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    Box<dyn std::error::Error + Send + Sync>,
>;

/// The stacks the workers of this process have published, by advertised address.
#[derive(Clone, Default)]
pub struct InProcess {
    services: Arc<RwLock<HashMap<String, InProcessService>>>,
}

impl InProcess {
    /// Publishes `service` under `address` until the returned guard is dropped.
    pub fn publish(&self, address: &str, service: InProcessService) -> Published {
        self.write().insert(address.to_owned(), service);
        Published {
            registry: self.clone(),
            address: address.to_owned(),
        }
    }

    /// The stack published under `address`, if its worker runs in this process and
    /// serves.
    pub fn service(&self, address: &str) -> Option<InProcessService> {
        self.services
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(address)
            .cloned()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, InProcessService>> {
        self.services
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let services = self
            .services
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f.debug_set().entries(services.keys()).finish()
    }
}

/// A published stack: withdrawn when dropped (its worker drains or stops), after which
/// callers reach that address over the network, where nothing answers any more.
#[must_use = "the stack is withdrawn when this is dropped"]
pub struct Published {
    registry: InProcess,
    address: String,
}

impl Drop for Published {
    fn drop(&mut self) {
        self.registry.write().remove(&self.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answering(status: http::StatusCode) -> InProcessService {
        BoxCloneSyncService::new(tower::service_fn(
            move |_: http::Request<tonic::body::Body>| async move {
                let mut response = http::Response::new(tonic::body::Body::empty());
                *response.status_mut() = status;
                Ok(response)
            },
        ))
    }

    #[tokio::test]
    async fn a_stack_is_found_while_published_and_gone_after() {
        use tower::ServiceExt;
        let registry = InProcess::default();
        assert!(registry.service("127.0.0.1:1").is_none());
        let published = registry.publish("127.0.0.1:1", answering(http::StatusCode::OK));
        let _other = registry.publish("127.0.0.1:2", answering(http::StatusCode::IM_A_TEAPOT));
        let service = registry.service("127.0.0.1:1").expect("published");
        let response = service
            .oneshot(http::Request::new(tonic::body::Body::empty()))
            .await
            .expect("answered");
        assert_eq!(response.status(), http::StatusCode::OK);
        drop(published);
        assert!(registry.service("127.0.0.1:1").is_none());
        assert!(registry.service("127.0.0.1:2").is_some());
    }
}
