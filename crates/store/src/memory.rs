//! The in-memory backend: the default of a lone worker, lost when the process exits.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ObjectMeta, ResultStore, StoreError, Version, now_unix_ms, validate_key};

/// A [`ResultStore`] in a sorted map.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: RwLock<BTreeMap<String, Entry>>,
    /// Numbers every write: an entry's version, so a conditional put sees any write
    /// since its read, even one that stored the same bytes again.
    writes: AtomicU64,
}

#[derive(Debug)]
struct Entry {
    value: Bytes,
    modified_unix_ms: u64,
    write: u64,
}

impl Entry {
    fn version(&self) -> Version {
        Version {
            tag: self.write.to_string(),
            object_version: None,
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn poisoned() -> StoreError {
        StoreError::Backend("memory store lock poisoned by a panic".into())
    }

    fn entry(&self, value: Bytes) -> Entry {
        Entry {
            value,
            modified_unix_ms: now_unix_ms(),
            write: self.writes.fetch_add(1, Ordering::Relaxed),
        }
    }
}

#[async_trait]
impl ResultStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        validate_key(key)?;
        let entry = self.entry(value);
        self.entries
            .write()
            .map_err(|_| Self::poisoned())?
            .insert(key.to_owned(), entry);
        Ok(())
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<(Bytes, Version)>, StoreError> {
        validate_key(key)?;
        Ok(self
            .entries
            .read()
            .map_err(|_| Self::poisoned())?
            .get(key)
            .map(|entry| (entry.value.clone(), entry.version())))
    }

    async fn put_if_unchanged(
        &self,
        key: &str,
        value: Bytes,
        expected: &Version,
    ) -> Result<bool, StoreError> {
        validate_key(key)?;
        let mut entries = self.entries.write().map_err(|_| Self::poisoned())?;
        match entries.get_mut(key) {
            Some(current) if current.version() == *expected => {
                *current = self.entry(value);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        validate_key(key)?;
        Ok(self
            .entries
            .read()
            .map_err(|_| Self::poisoned())?
            .get(key)
            .map(|entry| entry.value.clone()))
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        validate_key(key)?;
        Ok(self
            .entries
            .write()
            .map_err(|_| Self::poisoned())?
            .remove(key)
            .is_some())
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        validate_key(key)?;
        let entries = self.entries.read().map_err(|_| Self::poisoned())?;
        Ok(entries.get(key).map(|entry| meta(key, entry)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let entries = self.entries.read().map_err(|_| Self::poisoned())?;
        Ok(entries
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, entry)| meta(key, entry))
            .collect())
    }
}

fn meta(key: &str, entry: &Entry) -> ObjectMeta {
    ObjectMeta {
        key: key.to_owned(),
        size: entry.value.len() as u64,
        modified_unix_ms: entry.modified_unix_ms,
    }
}
