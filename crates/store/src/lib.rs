//! Where handle state lives: the `ResultStore` blob trait and its backends, the handle
//! codec, and the catalog of handle, plan and artifact records built on top of them.

mod catalog;
pub mod conformance;
mod fs;
mod handle;
mod memory;
mod object;

pub use catalog::{ArtifactId, Catalog, HandleRecord, PlanId};
pub use fs::FsStore;
pub use handle::{AffinityKey, Handle, HandleParseError, TenantId};
pub use memory::MemoryStore;
pub use object::{ObjectStoreBackend, cloud_options_from_env};

use async_trait::async_trait;
use bytes::Bytes;

/// Errors of a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store key `{0}` is not valid")]
    InvalidKey(String),
    #[error("stored record `{key}` is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("store backend failed: {0}")]
    Backend(String),
}

/// A flat namespace of immutable-ish blobs: the one small trait every backend implements.
///
/// Keys are `/`-separated paths of `[a-z0-9_.-]` segments built by [`Catalog`]; backends
/// never see client input. A `put` is atomic: a reader sees the old value, or the whole
/// new one, never a part.
#[async_trait]
pub trait ResultStore: Send + Sync + std::fmt::Debug + 'static {
    /// Stores `value` under `key`, replacing what was there.
    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError>;
    /// The value under `key`, or `None` when there is none.
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError>;
    /// Removes `key`; removing a missing key is not an error. Returns whether it existed.
    async fn delete(&self, key: &str) -> Result<bool, StoreError>;
    /// Every key that starts with `prefix`, in lexicographic order.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;
}

/// Checks a store key: non-empty segments of `[a-z0-9_.-]` that start with a letter or
/// digit (so never `.`, `..`, or a backend's hidden temp file).
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let ok = !key.is_empty()
        && key.split('/').all(|segment| {
            segment
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && segment
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKey(key.to_owned()))
    }
}
