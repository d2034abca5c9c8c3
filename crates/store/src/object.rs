//! The object-store backend (S3, GCS, Azure, local files, memory) through the
//! `object_store` crate. Each put is a single PUT of the whole object, which these
//! stores make atomic: readers see the old object or the new one.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::{ObjectMeta, ResultStore, StoreError, unix_ms, validate_key};

#[derive(Debug, Clone)]
pub struct ObjectStoreBackend {
    store: Arc<dyn ObjectStore>,
    prefix: String,
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
        Ok(Self::new(Arc::from(store), prefix.as_ref()))
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
