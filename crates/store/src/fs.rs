//! The filesystem backend: one file per key under a root directory.
//!
//! A put writes a temp file beside the target (named with a leading `.`, which no key
//! segment has), fsyncs it, renames it over the target and fsyncs the directory: readers
//! see the old value or the new one, and a crash leaves at most an invisible temp file.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ObjectMeta, ResultStore, StoreError, unix_ms, validate_key};

#[derive(Debug, Clone)]
pub struct FsStore {
    root: PathBuf,
}

fn backend(e: std::io::Error) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl FsStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        std::fs::create_dir_all(&root).map_err(backend)?;
        Ok(Self {
            root: root.canonicalize().map_err(backend)?,
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn put_sync(target: &Path, value: &[u8]) -> std::io::Result<()> {
        let directory = target.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(directory)?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temp = directory.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        let result = (|| {
            let mut file = std::fs::File::create_new(&temp)?;
            file.write_all(value)?;
            file.sync_all()?;
            std::fs::rename(&temp, target)?;
            std::fs::File::open(directory)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    /// Visits every file under the deepest directory `prefix` names, temp files included.
    fn walk(
        root: &Path,
        prefix: &str,
        mut visit: impl FnMut(&Path, &std::fs::Metadata) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let start = match prefix.rfind('/') {
            Some(slash) => root.join(&prefix[..slash]),
            None => root.to_path_buf(),
        };
        let mut pending = vec![start];
        while let Some(directory) = pending.pop() {
            let entries = match std::fs::read_dir(&directory) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let metadata = match entry.metadata() {
                    Ok(metadata) => metadata,
                    // Deleted since the directory was read.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if metadata.is_dir() {
                    pending.push(entry.path());
                } else {
                    visit(&entry.path(), &metadata)?;
                }
            }
        }
        Ok(())
    }

    fn meta(key: String, metadata: &std::fs::Metadata) -> ObjectMeta {
        ObjectMeta {
            key,
            size: metadata.len(),
            modified_unix_ms: metadata.modified().map_or(0, unix_ms),
        }
    }

    fn list_sync(root: &Path, prefix: &str) -> std::io::Result<Vec<ObjectMeta>> {
        let mut objects = Vec::new();
        Self::walk(root, prefix, |path, metadata| {
            let Ok(relative) = path.strip_prefix(root) else {
                return Ok(());
            };
            let key = relative.to_string_lossy();
            // Temp files of writes in flight (or abandoned) start with `.`: not keys.
            if key.starts_with(prefix) && !key.split('/').any(|s| s.starts_with('.')) {
                objects.push(Self::meta(key.into_owned(), metadata));
            }
            Ok(())
        })?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    fn remove_temp_files_sync(root: &Path, older_than_unix_ms: u64) -> std::io::Result<u64> {
        let mut removed = 0;
        Self::walk(root, "", |path, metadata| {
            let is_temp = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if is_temp && metadata.modified().map_or(0, unix_ms) < older_than_unix_ms {
                match std::fs::remove_file(path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(())
        })?;
        Ok(removed)
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
        .map_err(backend)
}

#[async_trait]
impl ResultStore for FsStore {
    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        let path = self.path(key)?;
        blocking(move || Self::put_sync(&path, &value)).await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let path = self.path(key)?;
        blocking(move || match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.path(key)?;
        blocking(move || match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let path = self.path(key)?;
        let key = key.to_owned();
        blocking(move || match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => Ok(Some(Self::meta(key, &metadata))),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        blocking(move || Self::list_sync(&root, &prefix)).await
    }

    async fn remove_abandoned_writes(&self, older_than_unix_ms: u64) -> Result<u64, StoreError> {
        let root = self.root.clone();
        blocking(move || Self::remove_temp_files_sync(&root, older_than_unix_ms)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn filesystem_backend_conforms() {
        let dir = tempfile::tempdir().unwrap();
        crate::conformance::run_all(Arc::new(FsStore::new(dir.path()).unwrap()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn leftovers_of_a_crashed_write_are_invisible() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path()).unwrap();
        store
            .put("t/a/1", Bytes::from_static(b"whole"))
            .await
            .unwrap();
        // What a put killed between write and rename leaves behind.
        std::fs::write(dir.path().join("t/a/.2.00000000deadbeef.tmp"), b"par").unwrap();
        let keys: Vec<String> = store
            .list("t/")
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["t/a/1"]);
        assert!(store.get("t/a/2").await.unwrap().is_none());
        // Young leftovers may be writes in flight: kept. Old ones go.
        assert_eq!(store.remove_abandoned_writes(0).await.unwrap(), 0);
        assert_eq!(store.remove_abandoned_writes(u64::MAX).await.unwrap(), 1);
        assert!(!dir.path().join("t/a/.2.00000000deadbeef.tmp").exists());
        assert_eq!(
            store.get("t/a/1").await.unwrap().as_deref(),
            Some(&b"whole"[..])
        );
    }

    #[tokio::test]
    async fn keys_never_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::new(dir.path().join("store")).unwrap();
        for key in ["../x", "a/../../x", "/etc/passwd", ".hidden", "a/.tmp"] {
            assert!(
                store.put(key, Bytes::from_static(b"x")).await.is_err(),
                "{key}"
            );
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing written beside the root"
        );
    }
}
