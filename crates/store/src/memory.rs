//! The in-memory backend: the default of a lone worker, lost when the process exits.

use std::collections::BTreeMap;
use std::sync::RwLock;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ObjectMeta, ResultStore, StoreError, now_unix_ms, validate_key};

/// A [`ResultStore`] in a sorted map.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: RwLock<BTreeMap<String, (Bytes, u64)>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn poisoned() -> StoreError {
        StoreError::Backend("memory store lock poisoned by a panic".into())
    }
}

#[async_trait]
impl ResultStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        validate_key(key)?;
        self.entries
            .write()
            .map_err(|_| Self::poisoned())?
            .insert(key.to_owned(), (value, now_unix_ms()));
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        validate_key(key)?;
        Ok(self
            .entries
            .read()
            .map_err(|_| Self::poisoned())?
            .get(key)
            .map(|(value, _)| value.clone()))
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

fn meta(key: &str, (value, modified_unix_ms): &(Bytes, u64)) -> ObjectMeta {
    ObjectMeta {
        key: key.to_owned(),
        size: value.len() as u64,
        modified_unix_ms: *modified_unix_ms,
    }
}
