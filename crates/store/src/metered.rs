//! The one place every backend's traffic is counted: [`Metered`] wraps whichever
//! [`ResultStore`] a [`crate::Catalog`] is built over, so bytes read and written, the
//! time of each operation and its errors are recorded the same way for every backend.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{ObjectMeta, ResultStore, StoreError, Version};

/// A [`ResultStore`] that records `polaroid_store_*` metrics of the store it wraps,
/// labelled with that store's [`ResultStore::backend`].
#[derive(Debug)]
pub(crate) struct Metered {
    inner: Arc<dyn ResultStore>,
}

impl Metered {
    pub(crate) fn new(inner: Arc<dyn ResultStore>) -> Self {
        Self { inner }
    }

    /// Records one finished `operation` that started at `started`.
    fn record<T>(&self, operation: &'static str, started: Instant, result: &Result<T, StoreError>) {
        let backend = self.inner.backend();
        metrics::histogram!(
            "polaroid_store_operation_duration_seconds",
            "backend" => backend,
            "operation" => operation
        )
        .record(started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics::counter!(
                "polaroid_store_errors_total",
                "backend" => backend,
                "operation" => operation
            )
            .increment(1);
        }
    }
}

#[async_trait]
impl ResultStore for Metered {
    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        let started = Instant::now();
        let size = value.len() as u64;
        let result = self.inner.put(key, value).await;
        self.record("put", started, &result);
        if result.is_ok() {
            metrics::counter!("polaroid_store_written_bytes_total", "backend" => self.inner.backend())
                .increment(size);
        }
        result
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let started = Instant::now();
        let result = self.inner.get(key).await;
        self.record("get", started, &result);
        if let Ok(Some(value)) = &result {
            metrics::counter!("polaroid_store_read_bytes_total", "backend" => self.inner.backend())
                .increment(value.len() as u64);
        }
        result
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<(Bytes, Version)>, StoreError> {
        let started = Instant::now();
        let result = self.inner.get_versioned(key).await;
        self.record("get", started, &result);
        if let Ok(Some((value, _))) = &result {
            metrics::counter!("polaroid_store_read_bytes_total", "backend" => self.inner.backend())
                .increment(value.len() as u64);
        }
        result
    }

    async fn put_if_unchanged(
        &self,
        key: &str,
        value: Bytes,
        expected: &Version,
    ) -> Result<bool, StoreError> {
        let started = Instant::now();
        let size = value.len() as u64;
        let result = self.inner.put_if_unchanged(key, value, expected).await;
        self.record("put_if_unchanged", started, &result);
        if let Ok(true) = result {
            metrics::counter!("polaroid_store_written_bytes_total", "backend" => self.inner.backend())
                .increment(size);
        }
        result
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let started = Instant::now();
        let result = self.inner.delete(key).await;
        self.record("delete", started, &result);
        result
    }

    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        let started = Instant::now();
        let result = self.inner.head(key).await;
        self.record("head", started, &result);
        result
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let started = Instant::now();
        let result = self.inner.list(prefix).await;
        self.record("list", started, &result);
        result
    }

    async fn remove_abandoned_writes(&self, older_than_unix_ms: u64) -> Result<u64, StoreError> {
        let started = Instant::now();
        let result = self.inner.remove_abandoned_writes(older_than_unix_ms).await;
        self.record("remove_abandoned_writes", started, &result);
        result
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AffinityKey, Catalog, Handle, HandleRecord, MemoryStore, TenantId};
    use polaroid_proto::v1::PlanNode;

    /// A backend whose every operation fails.
    #[derive(Debug)]
    struct Broken;

    #[async_trait]
    impl ResultStore for Broken {
        async fn put(&self, _: &str, _: Bytes) -> Result<(), StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn get(&self, _: &str) -> Result<Option<Bytes>, StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn get_versioned(&self, _: &str) -> Result<Option<(Bytes, Version)>, StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn put_if_unchanged(
            &self,
            _: &str,
            _: Bytes,
            _: &Version,
        ) -> Result<bool, StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn delete(&self, _: &str) -> Result<bool, StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn head(&self, _: &str) -> Result<Option<ObjectMeta>, StoreError> {
            Err(StoreError::Backend("down".into()))
        }
        async fn list(&self, _: &str) -> Result<Vec<ObjectMeta>, StoreError> {
            Err(StoreError::Backend("down".into()))
        }
    }

    /// The value of the sample `series` (name and labels as rendered) in `text`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
    }

    #[test]
    fn every_operation_is_counted_once_per_backend() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(async {
                    let catalog = Catalog::new(Arc::new(MemoryStore::new()));
                    let store = catalog.store();
                    store
                        .put("a/one", Bytes::from_static(b"12345"))
                        .await
                        .unwrap();
                    store
                        .put("a/two", Bytes::from_static(b"123"))
                        .await
                        .unwrap();
                    assert!(store.get("a/one").await.unwrap().is_some());
                    assert!(store.get("a/none").await.unwrap().is_none());

                    let tenant = TenantId::from_name("default");
                    let node = PlanNode::default();
                    let record = HandleRecord {
                        node: Some(node),
                        ..Default::default()
                    };
                    let created = Handle::new(tenant, AffinityKey::random());
                    catalog.create_handle(&created, &record).await.unwrap();
                    assert!(catalog.get_handle(&created).await.unwrap().is_some());
                    let unknown = Handle::new(tenant, AffinityKey::random());
                    assert!(catalog.get_handle(&unknown).await.unwrap().is_none());

                    let broken = Catalog::new(Arc::new(Broken));
                    assert!(broken.get_handle(&created).await.is_err());
                    assert!(broken.create_handle(&created, &record).await.is_err());
                    assert!(broken.store().delete("a/one").await.is_err());
                });
        });
        let text = handle.render();
        let value =
            |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series} in\n{text}"));
        // Two puts of 5 and 3 bytes, and one handle record.
        let written = value(r#"polaroid_store_written_bytes_total{backend="memory"}"#);
        assert!(written > 8.0, "{written}");
        // One get of 5 bytes, and the handle record read back.
        let read = value(r#"polaroid_store_read_bytes_total{backend="memory"}"#);
        assert_eq!(read - 5.0, written - 8.0);
        assert_eq!(
            value(
                r#"polaroid_store_operation_duration_seconds_count{backend="memory",operation="get"}"#
            ),
            4.0
        );
        assert_eq!(
            value(
                r#"polaroid_store_operation_duration_seconds_count{backend="memory",operation="put"}"#
            ),
            3.0
        );
        assert_eq!(
            value(r#"polaroid_store_handle_creates_total{backend="memory"}"#),
            1.0
        );
        assert_eq!(
            value(r#"polaroid_store_handle_reads_total{backend="memory",outcome="found"}"#),
            1.0
        );
        assert_eq!(
            value(r#"polaroid_store_handle_reads_total{backend="memory",outcome="missing"}"#),
            1.0
        );
        assert_eq!(
            value(r#"polaroid_store_handle_reads_total{backend="other",outcome="error"}"#),
            1.0
        );
        for operation in ["get", "put", "delete"] {
            assert_eq!(
                value(&format!(
                    r#"polaroid_store_errors_total{{backend="other",operation="{operation}"}}"#
                )),
                1.0,
                "{operation}"
            );
        }
        assert!(
            sample(
                &text,
                r#"polaroid_store_handle_creates_total{backend="other"}"#
            )
            .is_none()
        );
        assert!(!text.contains(r#"polaroid_store_errors_total{backend="memory""#));
    }
}
