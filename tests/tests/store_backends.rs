//! The ResultStore conformance suite against real S3-compatible (moto) and Azure Blob
//! (Azurite) servers on loopback. (Memory, filesystem and local object store run it in
//! crates/store.)

use std::sync::Arc;

use polaroid_store::{ObjectStoreBackend, conformance};
use polaroid_tests::{azure_options, azure_server, s3_options, s3_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backend_conforms() -> anyhow::Result<()> {
    let server = s3_server("polaroid-conformance").await?;
    let store =
        ObjectStoreBackend::from_url("s3://polaroid-conformance/state", s3_options(&server))?;
    conformance::run_all(Arc::new(store))
        .await
        .map_err(anyhow::Error::msg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_backend_conforms() -> anyhow::Result<()> {
    let server = azure_server("polaroid-conformance").await?;
    let store =
        ObjectStoreBackend::from_url("az://polaroid-conformance/state", azure_options(&server))?;
    conformance::run_all(Arc::new(store))
        .await
        .map_err(anyhow::Error::msg)
}
