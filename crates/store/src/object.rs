//! The object-store backend (S3, GCS, Azure, local files, memory) through the
//! `object_store` crate. Each put is a single PUT of the whole object, which these
//! stores make atomic: readers see the old object or the new one.
//!
//! Conditional puts are the stores' own: a PUT with `If-Match` on the ETag read (S3 and
//! S3-compatible stores, Azure Blob, GCS, and `memory://`). object_store's local files
//! (`file://`) have none; there a conditional put compares and writes under a lock of
//! this process, so it is exact only while one process writes the directory: the
//! filesystem backend (`FsStore`) is the one for a directory several processes share.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use crate::{ObjectMeta, ResultStore, StoreError, Version, unix_ms, validate_key};

/// How many locks the local fallback of conditional puts shares between keys.
const LOCAL_LOCK_STRIPES: usize = 64;

#[derive(Debug, Clone)]
pub struct ObjectStoreBackend {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// For local files (no conditional puts of their own): the compare-and-write of a
    /// key holds its stripe's lock. `None` for every other store, where a store that
    /// turns out to have no conditional puts is an error rather than a silent downgrade.
    local_locks: Option<Arc<[tokio::sync::Mutex<()>]>>,
}

fn backend(e: object_store::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl ObjectStoreBackend {
    /// Keys live under `prefix` (no leading or trailing `/`; may be empty).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> Self {
        Self {
            store,
            prefix: prefix.trim_matches('/').to_owned(),
            local_locks: None,
        }
    }

    /// Opens `s3://bucket/prefix`, `gs://…`, `az://container/prefix`, `file:///dir` or
    /// `memory://`. `options` are object_store settings such as `aws_access_key_id` or
    /// `azure_storage_endpoint`; [`cloud_options_from_env`] reads the usual variables.
    pub fn from_url(
        url: &str,
        options: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, StoreError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| StoreError::Backend(format!("store url `{url}`: {e}")))?;
        if parsed.scheme() == "file" {
            // Create the directory, as the filesystem backend does.
            if let Ok(path) = parsed.to_file_path() {
                std::fs::create_dir_all(&path).map_err(|e| StoreError::Backend(e.to_string()))?;
            }
        }
        // For `file://` the store is rooted at `/` and the prefix is the directory.
        let (store, prefix) = object_store::parse_url_opts(&parsed, options).map_err(backend)?;
        let mut backend = Self::new(Arc::from(store), prefix.as_ref());
        if parsed.scheme() == "file" {
            backend.local_locks = Some(
                (0..LOCAL_LOCK_STRIPES)
                    .map(|_| tokio::sync::Mutex::new(()))
                    .collect(),
            );
        }
        Ok(backend)
    }

    fn path(&self, key: &str) -> Result<Path, StoreError> {
        validate_key(key)?;
        Ok(Path::from(self.under_prefix(key)))
    }

    /// `relative` below the backend's prefix.
    fn under_prefix(&self, relative: &str) -> String {
        match (self.prefix.is_empty(), relative.is_empty()) {
            (true, _) => relative.to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{relative}", self.prefix),
        }
    }

    fn meta(&self, meta: &object_store::ObjectMeta) -> ObjectMeta {
        ObjectMeta {
            key: self.key_of(&meta.location),
            size: meta.size,
            modified_unix_ms: unix_ms(meta.last_modified.into()),
        }
    }

    /// A conditional put of local files, which have none: exact within this process only.
    async fn put_if_unchanged_locally(
        &self,
        locks: &[tokio::sync::Mutex<()>],
        key: &str,
        value: Bytes,
        expected: &Version,
    ) -> Result<bool, StoreError> {
        let stripe = crc32fast::hash(key.as_bytes()) as usize % locks.len();
        let _held = locks[stripe].lock().await;
        match self.get_versioned(key).await? {
            Some((_, current)) if current == *expected => {
                self.put(key, value).await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn key_of(&self, path: &Path) -> String {
        let full = path.as_ref();
        match self.prefix.is_empty() {
            true => full.to_owned(),
            false => full
                .strip_prefix(&self.prefix)
                .map(|k| k.trim_start_matches('/'))
                .unwrap_or(full)
                .to_owned(),
        }
    }
}

/// Cloud settings from the environment variables each cloud documents (`AWS_*`,
/// `AZURE_*`, `GOOGLE_*`), as object_store option keys.
pub fn cloud_options_from_env(
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<(String, String)> {
    env.into_iter()
        .filter(|(name, _)| {
            ["AWS_", "AZURE_", "GOOGLE_"]
                .iter()
                .any(|p| name.starts_with(p))
        })
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect()
}

#[async_trait]
impl ResultStore for ObjectStoreBackend {
    fn backend(&self) -> &'static str {
        "object"
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        self.store
            .put(&path, PutPayload::from(value))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(key)?;
        match self.store.get(&path).await {
            Ok(result) => Ok(Some(result.bytes().await.map_err(backend)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<(Bytes, Version)>, StoreError> {
        let path = self.path(key)?;
        match self.store.get(&path).await {
            Ok(result) => {
                let version = Version {
                    tag: result.meta.e_tag.clone().unwrap_or_default(),
                    object_version: result.meta.version.clone(),
                };
                Ok(Some((result.bytes().await.map_err(backend)?, version)))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn put_if_unchanged(
        &self,
        key: &str,
        value: Bytes,
        expected: &Version,
    ) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        let mode = PutMode::Update(UpdateVersion {
            e_tag: Some(expected.tag.clone()).filter(|tag| !tag.is_empty()),
            version: expected.object_version.clone(),
        });
        let put = self
            .store
            .put_opts(
                &path,
                PutPayload::from(value.clone()),
                PutOptions::from(mode),
            )
            .await;
        match put {
            Ok(_) => Ok(true),
            // S3 answers a missing key with NotFound; the crate turns it into Precondition,
            // other stores may not.
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => Ok(false),
            Err(object_store::Error::NotImplemented { .. }) => match &self.local_locks {
                Some(locks) => {
                    self.put_if_unchanged_locally(locks, key, value, expected)
                        .await
                }
                None => Err(StoreError::Backend(format!(
                    "the object store has no conditional puts, which handle records need (S3: \
                     set aws_conditional_put=etag, its default; {})",
                    self.store
                ))),
            },
            Err(e) => Err(backend(e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        let existed = match self.store.head(&path).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(backend(e)),
        };
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(existed),
            Err(e) => Err(backend(e)),
        }
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path(key)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(self.meta(&meta))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        // object_store lists whole path segments: list the prefix's directory, then filter.
        let directory = prefix.rfind('/').map_or("", |slash| &prefix[..slash]);
        let base = Some(self.under_prefix(directory))
            .filter(|b| !b.is_empty())
            .map(Path::from);
        let objects: Vec<_> = self
            .store
            .list(base.as_ref())
            .try_collect()
            .await
            .map_err(backend)?;
        let mut listed: Vec<ObjectMeta> = objects
            .iter()
            .map(|meta| self.meta(meta))
            .filter(|meta| meta.key.starts_with(prefix))
            .collect();
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_url_conforms() {
        let store = ObjectStoreBackend::from_url("memory:///", []).unwrap();
        crate::conformance::run_all(Arc::new(store)).await.unwrap();
    }

    #[tokio::test]
    async fn local_file_url_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/objects", dir.path().display());
        let store = ObjectStoreBackend::from_url(&url, []).unwrap();
        crate::conformance::run_all(Arc::new(store)).await.unwrap();
        // Everything lands under the URL's directory, nowhere else.
        assert!(dir.path().join("objects/rt/a").is_file());
        assert!(!std::path::Path::new("/rt").exists());
    }

    #[test]
    fn cloud_options_come_from_the_usual_variables() {
        let env = [
            ("AWS_REGION".to_owned(), "eu".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        assert_eq!(
            cloud_options_from_env(env),
            [("aws_region".to_owned(), "eu".to_owned())]
        );
    }
}
