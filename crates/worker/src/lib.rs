//! The Polaroid worker: a Polars engine behind the polaroid.v1 `DataFrameService`.

mod cache;
pub mod config;
pub mod dtype;
mod engine;
mod error;
pub mod expr;
mod ipc;
mod paths;
mod plan;
mod service;
mod sinks;
mod sources;
mod stats;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use polaroid_proto::v1::data_frame_service_server::DataFrameServiceServer;
use polaroid_store::{Catalog, FsStore, MemoryStore, ObjectStoreBackend, ResultStore};
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

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
}

/// Serves the worker on `listener` until `shutdown` completes, then drains in-flight calls.
pub async fn run(
    config: WorkerConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WorkerError> {
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
    let grace = config.gc_grace();
    let catalog = Catalog::new(store).with_gc_grace(grace);
    let collector = config
        .gc_interval()
        .map(|interval| tokio::spawn(collect_garbage_every(catalog.clone(), interval, grace)));
    let engine = Arc::new(Engine::new(&config, catalog, roots));
    let service = DataFrameServiceServer::new(service::DataFrameServer::new(engine, &config))
        .max_decoding_message_size(config.max_request_message_bytes)
        .max_encoding_message_size(config.max_response_message_bytes);

    tracing::info!(address = ?listener.local_addr().ok(), "worker serving");
    // Small request/response pairs dominate: send at once instead of coalescing packets
    // (Nagle with delayed ACKs costs ~40 ms a call).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    if let Some(collector) = collector {
        // Each deletion is atomic on its own; stopping between two loses nothing.
        collector.abort();
    }
    Ok(())
}

/// Runs the store's mark-and-sweep collector every `interval`. Every worker does this;
/// the collector is safe to run on several at once.
async fn collect_garbage_every(catalog: Catalog, interval: Duration, grace: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match catalog.collect_garbage(grace).await {
            Ok(report) => tracing::debug!(?report, "garbage collected"),
            Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
        }
    }
}
