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

use polaroid_proto::v1::data_frame_service_server::DataFrameServiceServer;
use polaroid_store::{Catalog, MemoryStore};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub use config::{HandleStoreKind, WorkerConfig};
pub use engine::Engine;
pub use error::EngineError;

/// Why the worker could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("data roots: {0}")]
    DataRoots(std::io::Error),
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
    let store = match config.handle_store {
        HandleStoreKind::Memory => Arc::new(MemoryStore::new()),
    };
    let engine = Arc::new(Engine::new(&config, Catalog::new(store), roots));
    let service = DataFrameServiceServer::new(service::DataFrameServer::new(engine, &config))
        .max_decoding_message_size(config.max_request_message_bytes)
        .max_encoding_message_size(config.max_response_message_bytes);

    tracing::info!(address = ?listener.local_addr().ok(), "worker serving");
    tonic::transport::Server::builder()
        // Small request/response pairs dominate: don't wait to coalesce packets.
        .tcp_nodelay(true)
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
