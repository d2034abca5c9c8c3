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
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutMode, PutOptions, PutPayload,
    RetryConfig, UpdateVersion,
};

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

/// How the object stores' clients retry a request that failed in a way that may pass (a
/// timeout, a dropped or refused connection, a 5xx or 429 answer): at most 4 retries,
/// waits from 100 ms doubling to 2 s, none begun past 10 s; then the operation fails
/// UNAVAILABLE, which the SDK retries. object_store's default (10 retries within 3
/// minutes, waits up to 15 s) held a call about a minute per request while a store was
/// down, and the coordinator and the SDK would each have waited that out again.
pub fn store_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: Duration::from_secs(10),
    }
}

/// An object_store error as a [`StoreError`]: [`StoreError::Unavailable`] for what may
/// pass (the backend retried it already), [`StoreError::Backend`] for the rest.
fn backend(e: object_store::Error) -> StoreError {
    if is_transient(&e) {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Backend(e.to_string())
    }
}

/// Whether `e` is a fault that may pass. object_store maps the statuses that will not
/// (404, 412, 409, 401, 403) to their own variants; the rest come as `Generic` around
/// its retry error, whose type it does not export: a connection-level cause is found by
/// type, an HTTP status by the text that error gives (checked against real servers in
/// the tests below).
fn is_transient(e: &object_store::Error) -> bool {
    let object_store::Error::Generic { source, .. } = e else {
        return false;
    };
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
    while let Some(error) = cause {
        if let Some(http) = error.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as Kind;
            return matches!(
                http.kind(),
                Kind::Connect | Kind::Request | Kind::Timeout | Kind::Interrupted
            );
        }
        let text = error.to_string();
        if let Some(at) = text.find("non-2xx status code: ") {
            let status = &text[at + "non-2xx status code: ".len()..];
            return status.starts_with('5')
                || status.starts_with("429")
                || status.starts_with("408");
        }
        // S3's error inside a 200 answer (InternalError, SlowDown), which it retried.
        if text.contains("Server returned error response") {
            return true;
        }
        cause = error.source();
    }
    false
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
        let (store, prefix) = open(&parsed, options).map_err(backend)?;
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

/// The store `url` names, as object_store's `parse_url_opts` opens it, but with
/// [`store_retry`] for the cloud stores.
fn open(
    url: &url::Url,
    options: impl IntoIterator<Item = (String, String)>,
) -> object_store::Result<(Box<dyn ObjectStore>, Path)> {
    macro_rules! cloud {
        ($builder:ty, $path:expr) => {{
            let mut builder = <$builder>::new().with_url(url.to_string());
            // Keys of other clouds are passed along too (every AWS_*, AZURE_* and
            // GOOGLE_* variable): each builder takes its own and leaves the rest.
            for (key, value) in options {
                if let Ok(parsed) = key.to_ascii_lowercase().parse() {
                    builder = builder.with_config(parsed, value);
                }
            }
            let store = builder.with_retry(store_retry()).build()?;
            Ok((Box::new(store) as Box<dyn ObjectStore>, Path::parse($path)?))
        }};
    }
    let (scheme, path) = ObjectStoreScheme::parse(url)?;
    match scheme {
        ObjectStoreScheme::AmazonS3 => cloud!(object_store::aws::AmazonS3Builder, path),
        ObjectStoreScheme::MicrosoftAzure => {
            cloud!(object_store::azure::MicrosoftAzureBuilder, path)
        }
        ObjectStoreScheme::GoogleCloudStorage => {
            cloud!(object_store::gcp::GoogleCloudStorageBuilder, path)
        }
        _ => object_store::parse_url_opts(url, options),
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

    /// An S3 backend at `port` on loopback.
    fn s3_at(port: u16) -> ObjectStoreBackend {
        let options = [
            ("aws_endpoint", format!("http://127.0.0.1:{port}")),
            ("aws_allow_http", "true".into()),
            ("aws_access_key_id", "testing".into()),
            ("aws_secret_access_key", "testing".into()),
            ("aws_region", "us-east-1".into()),
            // Another cloud's key, as the environment gives them: left alone.
            ("azure_storage_account_name", "other".into()),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        ObjectStoreBackend::from_url("s3://bucket/state", options).unwrap()
    }

    /// A server on loopback answering every request with `status`; counts the requests.
    async fn answering(status: &'static str) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = requests.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buffer = [0u8; 4096];
                    while let Ok(read) = socket.read(&mut buffer).await {
                        if read == 0 {
                            return;
                        }
                        seen.extend_from_slice(&buffer[..read]);
                        if seen.windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                    }
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let answer = format!(
                        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        (port, requests)
    }

    #[tokio::test]
    async fn faults_that_may_pass_are_retried_then_unavailable() {
        // Nothing listening: refused connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = s3_at(port).get("k").await.unwrap_err();
        assert!(matches!(refused, StoreError::Unavailable(_)), "{refused:?}");
        assert_eq!(refused.code(), polaroid_proto::ErrorCode::Unavailable);

        // A store that keeps answering 503, then one that throttles: retried within the
        // bounds, then UNAVAILABLE.
        for status in ["503 Service Unavailable", "429 Too Many Requests"] {
            let (port, requests) = answering(status).await;
            let started = std::time::Instant::now();
            let failed = s3_at(port).get("k").await.unwrap_err();
            assert!(
                matches!(failed, StoreError::Unavailable(_)),
                "{status}: {failed:?}"
            );
            let tried = requests.load(std::sync::atomic::Ordering::Relaxed);
            let retry = store_retry();
            assert_eq!(
                tried,
                retry.max_retries + 1,
                "{status}: the request and its retries"
            );
            assert!(
                started.elapsed() < retry.retry_timeout,
                "{status}: within the bound"
            );
        }
    }

    #[tokio::test]
    async fn faults_that_will_not_pass_are_not_retried() {
        let (port, requests) = answering("400 Bad Request").await;
        let failed = s3_at(port).get("k").await.unwrap_err();
        assert!(matches!(failed, StoreError::Backend(_)), "{failed:?}");
        assert_eq!(failed.code(), polaroid_proto::ErrorCode::Internal);
        assert_eq!(requests.load(std::sync::atomic::Ordering::Relaxed), 1);
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
