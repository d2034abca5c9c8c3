//! The in-memory backend: the default of a lone worker, lost when the process exits.

use std::collections::BTreeMap;
use std::sync::RwLock;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ResultStore, StoreError, validate_key};

/// A [`ResultStore`] in a sorted map.
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: RwLock<BTreeMap<String, Bytes>>,
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
    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        validate_key(key)?;
        self.entries
            .write()
            .map_err(|_| Self::poisoned())?
            .insert(key.to_owned(), value);
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        validate_key(key)?;
        Ok(self
            .entries
            .read()
            .map_err(|_| Self::poisoned())?
            .get(key)
            .cloned())
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

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let entries = self.entries.read().map_err(|_| Self::poisoned())?;
        Ok(entries
            .range(prefix.to_owned()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect())
    }
}
