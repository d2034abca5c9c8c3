//! Where handle state lives: the `ResultStore` blob trait and its backends, the handle
//! codec, and the catalog of handle, plan and artifact records built on top of them.

mod catalog;
pub mod conformance;
mod fs;
mod handle;
mod journal;
mod memory;
mod metered;
mod object;
mod quota;

pub use catalog::{
    ArtifactId, Catalog, DEFAULT_GC_GRACE, GcReport, HandleRecordExt, PlanId, RecordChange,
    schema_hash,
};
pub use fs::FsStore;
pub use handle::{AffinityKey, Handle, HandleParseError, TenantId};
pub use memory::MemoryStore;
pub use object::{ObjectStoreBackend, cloud_options_from_env};
pub use polaroid_proto::v1::HandleRecord;
pub use quota::{LimitOf, NameOf, Reservation, StoredBytesQuota};

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
    /// A fault that may pass: the store unreachable, a timeout, a dropped connection, a
    /// 5xx or throttling answer, each already retried by the backend within its bounds.
    #[error("the store is unavailable (retry later): {0}")]
    Unavailable(String),
    #[error(
        "stored record `{key}` changed under {attempts} updates in a row (other writers won each \
         compare-and-set); try again"
    )]
    Contended { key: String, attempts: u32 },
    #[error(
        "quota stored_bytes of tenant {tenant:?}: {used} bytes in use of its limit of {limit}, \
         and this write needs {needed}; drop handles you no longer need, or ask the operator for a higher quota"
    )]
    QuotaExceeded {
        tenant: String,
        used: u64,
        limit: u64,
        needed: u64,
    },
}

impl StoreError {
    /// The row of the shared error-code table this error is.
    pub fn code(&self) -> polaroid_proto::ErrorCode {
        match self {
            Self::QuotaExceeded { .. } => polaroid_proto::ErrorCode::ResourceExhausted,
            Self::Contended { .. } => polaroid_proto::ErrorCode::Aborted,
            Self::Unavailable(_) => polaroid_proto::ErrorCode::Unavailable,
            Self::InvalidKey(_) | Self::Corrupt { .. } | Self::Backend(_) => {
                polaroid_proto::ErrorCode::Internal
            }
        }
    }
}

/// What a backend knows of a stored value without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Last write, in milliseconds since the Unix epoch; the collector's grace period
    /// counts from here.
    pub modified_unix_ms: u64,
}

/// Which write of a key a read saw, for a conditional put ([`ResultStore::put_if_unchanged`]).
/// Opaque: an object store's ETag (and object version, where the store keeps them), a
/// digest of the value for the memory and filesystem stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    tag: String,
    object_version: Option<String>,
}

impl Version {
    /// The version of a store that compares values by content.
    pub(crate) fn of_content(value: &[u8]) -> Self {
        use sha2::Digest as _;
        Self {
            tag: hex::encode(&sha2::Sha256::digest(value)[..16]),
            object_version: None,
        }
    }
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
    /// Size and last write of `key`, or `None` when there is none.
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError>;
    /// The value under `key` and the version it is at, or `None` when there is none.
    async fn get_versioned(&self, key: &str) -> Result<Option<(Bytes, Version)>, StoreError>;
    /// Replaces the value under `key` with `value` only if the key still holds the
    /// version `expected` names: a compare-and-set, atomic against every other
    /// conditional put on the key, from this process or another. `Ok(false)`, with nothing
    /// written, when another write came first or the key is gone.
    async fn put_if_unchanged(
        &self,
        key: &str,
        value: Bytes,
        expected: &Version,
    ) -> Result<bool, StoreError>;
    /// Every object whose key starts with `prefix`, in lexicographic order of key.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError>;
    /// Removes what interrupted writes left behind before `older_than_unix_ms`; returns
    /// how many. Backends whose puts leave nothing behind keep this default.
    async fn remove_abandoned_writes(&self, older_than_unix_ms: u64) -> Result<u64, StoreError> {
        let _ = older_than_unix_ms;
        Ok(0)
    }
    /// The kind of backend, the `backend` label of the `polaroid_store_*` metrics.
    fn backend(&self) -> &'static str {
        "other"
    }
}

/// Milliseconds since the Unix epoch, now.
pub fn now_unix_ms() -> u64 {
    unix_ms(std::time::SystemTime::now())
}

fn unix_ms(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
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

/// A duration setting in seconds: negative is zero, and anything past a century (or NaN)
/// is a century, which timers can still add to the clock.
pub fn seconds(value: f64) -> std::time::Duration {
    const CENTURY: std::time::Duration = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
    std::time::Duration::try_from_secs_f64(value.max(0.0)).map_or(CENTURY, |d| d.min(CENTURY))
}
