//! Handle, plan and artifact records over a [`ResultStore`].
//!
//! Layout, per tenant `t`: `t/<tenant>/handles/<id>` (a [`HandleRecord`]),
//! `t/<tenant>/plans/<plan id>` (a `PlanNode`), `t/<tenant>/artifacts/<artifact id>`
//! (uploaded Arrow IPC bytes) and `t/<tenant>/results/<plan id>` (a persisted result, Arrow
//! IPC). Plans, artifacts and results are content-addressed, so the same work is recorded
//! once; handles are fresh on every call, so dropping one never affects another. A handle record
//! is written whole once, then changed only by compare-and-set ([`Catalog::update_handle`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use polaroid_proto::retry::RetryPolicy;
use polaroid_proto::v1::{HandleRecord, PlanNode};
use prost::Message;
use sha2::{Digest, Sha256};

use crate::{Handle, ResultStore, StoreError, StoredBytesQuota, TenantId, now_unix_ms};

/// The content address of a plan node: SHA-256 of its encoding.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlanId(String);

impl PlanId {
    pub fn of(node: &PlanNode) -> Self {
        Self(hex::encode(Sha256::digest(node.encode_to_vec())))
    }

    /// Parses a plan id read from a record: 64 lowercase hex digits.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        if text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(text.to_owned()))
        } else {
            Err(StoreError::Corrupt {
                key: text.to_owned(),
                reason: "not a plan id".into(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PlanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The content address of uploaded bytes: SHA-256 of the bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArtifactId(String);

impl ArtifactId {
    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    pub fn parse(text: &str) -> Result<Self, StoreError> {
        PlanId::parse(text).map(|id| Self(id.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The hash a handle record keeps of its schema: SHA-256 over the names and types.
pub fn schema_hash<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut hasher = Sha256::new();
    for (name, data_type) in fields {
        // Lengths first, so no two schemas encode alike.
        for part in [name, data_type] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
    }
    hex::encode(hasher.finalize())
}

/// Lifecycle questions about a [`HandleRecord`].
pub trait HandleRecordExt {
    /// When it expires, unless pinned or dropped.
    fn expires_unix_ms(&self) -> Option<u64>;
    /// Since when it has been dead (dropped or expired), if it is.
    fn dead_since_unix_ms(&self, now_unix_ms: u64) -> Option<u64>;
    fn is_live(&self, now_unix_ms: u64) -> bool {
        self.dead_since_unix_ms(now_unix_ms).is_none()
    }
}

impl HandleRecordExt for HandleRecord {
    fn expires_unix_ms(&self) -> Option<u64> {
        (!self.pinned && self.dropped_unix_ms.is_none())
            .then(|| self.last_access_unix_ms.saturating_add(self.ttl_ms))
    }

    fn dead_since_unix_ms(&self, now_unix_ms: u64) -> Option<u64> {
        if let Some(dropped) = self.dropped_unix_ms {
            return Some(dropped);
        }
        self.expires_unix_ms()
            .filter(|expires| *expires <= now_unix_ms)
    }
}

/// What one pass of the garbage collector did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcReport {
    pub handles_deleted: u64,
    pub plans_deleted: u64,
    pub artifacts_deleted: u64,
    pub results_deleted: u64,
    pub abandoned_writes_removed: u64,
    /// Objects and bytes left under `t/` after the pass.
    pub objects_kept: u64,
    pub bytes_kept: u64,
    /// The bytes left per tenant, by its store prefix's hex id.
    pub bytes_by_tenant: std::collections::BTreeMap<String, u64>,
}

/// Records of handles, plans, artifacts and results, namespaced by tenant.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Arc<dyn ResultStore>,
    /// Content-addressed objects older than this are rewritten when referenced again, so
    /// the collector (which spares objects younger than its grace period, twice this)
    /// never deletes one that a handle being created is about to rely on.
    refresh_after_ms: u64,
    /// Each tenant's limit of stored uploads and results; `None`: no limits.
    stored_bytes: Option<StoredBytesQuota>,
}

/// What a change to a handle record decided ([`Catalog::update_handle`]).
#[derive(Debug)]
pub enum RecordChange<T> {
    /// Write the record as the change left it, then answer `T`.
    Write(T),
    /// Leave the stored record as it is and answer `T`.
    Keep(T),
}

/// How a handle record's compare-and-set retries when another writer got there first:
/// full jitter, so writers that collided spread out. Sized on the conformance suite's
/// race, 8 writers changing one record 4 times each at once: with at most 16 attempts
/// and waits up to 20 ms, writers against Azurite (a write takes milliseconds there) ran
/// out of attempts; 32 attempts with waits up to 100 ms have not (a lone conflict still
/// waits under a millisecond).
const RECORD_UPDATE_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 32,
    first_backoff: Duration::from_millis(1),
    max_backoff: Duration::from_millis(100),
    min_jitter: 0.0,
};

/// The default grace period of the garbage collector.
pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(600);

fn tenant_prefix(tenant: TenantId) -> String {
    format!("t/{}", tenant.to_hex())
}

fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Catalog {
    /// A catalog over `store`; every operation on it, through the catalog or through
    /// [`Catalog::store`], is counted in the `polaroid_store_*` metrics.
    pub fn new(store: Arc<dyn ResultStore>) -> Self {
        Self {
            store: Arc::new(crate::metered::Metered::new(store)),
            refresh_after_ms: duration_ms(DEFAULT_GC_GRACE) / 2,
            stored_bytes: None,
        }
    }

    /// Refuses uploads and persisted results past each tenant's stored-bytes quota.
    pub fn with_stored_bytes_quota(mut self, quota: StoredBytesQuota) -> Self {
        self.stored_bytes = Some(quota);
        self
    }

    /// Sets the grace period that [`Catalog::collect_garbage`] will be called with. Every
    /// catalog over one store must use the same (or a shorter) grace period.
    pub fn with_gc_grace(mut self, grace: Duration) -> Self {
        self.refresh_after_ms = duration_ms(grace) / 2;
        self
    }

    pub fn store(&self) -> &Arc<dyn ResultStore> {
        &self.store
    }

    fn handle_key(handle: &Handle) -> String {
        format!(
            "{}/handles/{}",
            tenant_prefix(handle.tenant()),
            handle.id_hex()
        )
    }

    fn plan_key(tenant: TenantId, plan: &PlanId) -> String {
        format!("{}/plans/{}", tenant_prefix(tenant), plan.0)
    }

    fn artifact_key(tenant: TenantId, artifact: &ArtifactId) -> String {
        format!("{}/artifacts/{}", tenant_prefix(tenant), artifact.0)
    }

    fn result_key(tenant: TenantId, plan: &PlanId) -> String {
        format!("{}/results/{}", tenant_prefix(tenant), plan.0)
    }

    /// Stores content-addressed `value` unless a recent enough copy is there already,
    /// within `tenant`'s stored-bytes quota when it is one of its uploads or results.
    /// Returns the stored size.
    async fn put_content(
        &self,
        key: &str,
        value: Bytes,
        counted_for: Option<TenantId>,
    ) -> Result<u64, StoreError> {
        let existing = self.store.head(key).await?;
        if let Some(meta) = &existing
            && now_unix_ms().saturating_sub(meta.modified_unix_ms) < self.refresh_after_ms
        {
            return Ok(meta.size);
        }
        let size = value.len() as u64;
        // Rewriting an old copy (to keep it from the collector) stores nothing new.
        let added = size.saturating_sub(existing.map_or(0, |meta| meta.size));
        let reservation = match (&self.stored_bytes, counted_for) {
            (Some(quota), Some(tenant)) => {
                let prefix = tenant_prefix(tenant);
                let (artifacts, results) =
                    (format!("{prefix}/artifacts/"), format!("{prefix}/results/"));
                quota
                    .reserve(&*self.store, tenant, [&artifacts, &results], added)
                    .await?
            }
            _ => None,
        };
        self.store.put(key, value).await?;
        if let Some(reservation) = reservation {
            reservation.commit();
        }
        Ok(size)
    }

    /// Records `node` under its content address.
    pub async fn put_plan(&self, tenant: TenantId, node: &PlanNode) -> Result<PlanId, StoreError> {
        let id = PlanId::of(node);
        self.put_content(
            &Self::plan_key(tenant, &id),
            Bytes::from(node.encode_to_vec()),
            None,
        )
        .await?;
        Ok(id)
    }

    pub async fn get_plan(
        &self,
        tenant: TenantId,
        id: &PlanId,
    ) -> Result<Option<PlanNode>, StoreError> {
        let key = Self::plan_key(tenant, id);
        self.get_decoded(&key).await
    }

    async fn get_decoded<M: Message + Default>(&self, key: &str) -> Result<Option<M>, StoreError> {
        match self.store.get(key).await? {
            None => Ok(None),
            Some(bytes) => M::decode(bytes).map(Some).map_err(|e| StoreError::Corrupt {
                key: key.to_owned(),
                reason: e.to_string(),
            }),
        }
    }

    /// Stores uploaded bytes under their content address; they are durable when this returns.
    pub async fn put_artifact(
        &self,
        tenant: TenantId,
        bytes: Bytes,
    ) -> Result<ArtifactId, StoreError> {
        let id = ArtifactId::of(&bytes);
        self.put_content(&Self::artifact_key(tenant, &id), bytes, Some(tenant))
            .await?;
        Ok(id)
    }

    pub async fn get_artifact(
        &self,
        tenant: TenantId,
        id: &ArtifactId,
    ) -> Result<Option<Bytes>, StoreError> {
        self.store.get(&Self::artifact_key(tenant, id)).await
    }

    /// The store key of an artifact, as listed in [`HandleRecord::artifacts`].
    pub fn artifact_ref(tenant: TenantId, id: &ArtifactId) -> String {
        Self::artifact_key(tenant, id)
    }

    /// The store key of a persisted result, as listed in [`HandleRecord::artifacts`].
    pub fn result_ref(tenant: TenantId, plan: &PlanId) -> String {
        Self::result_key(tenant, plan)
    }

    /// Stores the materialized result of `plan` (Arrow IPC); returns its stored size.
    pub async fn put_result(
        &self,
        tenant: TenantId,
        plan: &PlanId,
        ipc: Bytes,
    ) -> Result<u64, StoreError> {
        self.put_content(&Self::result_key(tenant, plan), ipc, Some(tenant))
            .await
    }

    pub async fn get_result(
        &self,
        tenant: TenantId,
        plan: &PlanId,
    ) -> Result<Option<Bytes>, StoreError> {
        self.store.get(&Self::result_key(tenant, plan)).await
    }

    /// The stored size of `plan`'s persisted result, if there is one.
    pub async fn result_size(
        &self,
        tenant: TenantId,
        plan: &PlanId,
    ) -> Result<Option<u64>, StoreError> {
        Ok(self
            .store
            .head(&Self::result_key(tenant, plan))
            .await?
            .map(|meta| meta.size))
    }

    /// Records a new handle: one durable write. What `record.node` refers to (input
    /// plans, artifacts) must be durable already; the node itself is in the record, and
    /// its own plan record ([`Catalog::put_plan`]) is needed only once a handle derives
    /// from it.
    pub async fn create_handle(
        &self,
        handle: &Handle,
        record: &HandleRecord,
    ) -> Result<(), StoreError> {
        if record.node.is_none() {
            return Err(StoreError::Corrupt {
                key: Self::handle_key(handle),
                reason: "handle record without a plan node".into(),
            });
        }
        self.put_handle(handle, record).await?;
        metrics::counter!("polaroid_store_handle_creates_total", "backend" => self.store.backend())
            .increment(1);
        Ok(())
    }

    /// How long a content-addressed object counts as freshly written.
    pub fn refresh_after(&self) -> Duration {
        Duration::from_millis(self.refresh_after_ms)
    }

    /// Writes (or rewrites) the record of `handle`.
    async fn put_handle(&self, handle: &Handle, record: &HandleRecord) -> Result<(), StoreError> {
        self.store
            .put(
                &Self::handle_key(handle),
                Bytes::from(record.encode_to_vec()),
            )
            .await
    }

    pub async fn get_handle(&self, handle: &Handle) -> Result<Option<HandleRecord>, StoreError> {
        let record = self.get_decoded(&Self::handle_key(handle)).await;
        let outcome = match &record {
            Ok(Some(_)) => "found",
            Ok(None) => "missing",
            Err(_) => "error",
        };
        metrics::counter!(
            "polaroid_store_handle_reads_total",
            "backend" => self.store.backend(),
            "outcome" => outcome
        )
        .increment(1);
        record
    }

    /// Changes the record of `handle` by compare-and-set, so no two writers' changes (a
    /// pin racing a drop on two workers) ever lose one of them: `change` gets the record
    /// as stored and says whether to write what it made of it; when another write came
    /// in between, it is called again on the newer record. `None` when there is no record.
    pub async fn update_handle<T>(
        &self,
        handle: &Handle,
        mut change: impl FnMut(&mut HandleRecord) -> RecordChange<T>,
    ) -> Result<Option<T>, StoreError> {
        let key = Self::handle_key(handle);
        let mut attempt = 1;
        loop {
            let Some((bytes, version)) = self.store.get_versioned(&key).await? else {
                return Ok(None);
            };
            let mut record = HandleRecord::decode(bytes).map_err(|e| StoreError::Corrupt {
                key: key.clone(),
                reason: e.to_string(),
            })?;
            let answer = match change(&mut record) {
                RecordChange::Keep(answer) => return Ok(Some(answer)),
                RecordChange::Write(answer) => answer,
            };
            let value = Bytes::from(record.encode_to_vec());
            if self.store.put_if_unchanged(&key, value, &version).await? {
                return Ok(Some(answer));
            }
            metrics::counter!(
                "polaroid_store_handle_update_conflicts_total",
                "backend" => self.store.backend()
            )
            .increment(1);
            attempt += 1;
            let Some(pause) = RECORD_UPDATE_RETRY.pause(attempt) else {
                return Err(StoreError::Contended {
                    key,
                    attempts: RECORD_UPDATE_RETRY.max_attempts,
                });
            };
            tokio::time::sleep(pause).await;
        }
    }

    /// Removes the record of `handle`; returns whether it existed.
    pub async fn delete_handle(&self, handle: &Handle) -> Result<bool, StoreError> {
        self.store.delete(&Self::handle_key(handle)).await
    }

    /// One mark-and-sweep pass over every tenant.
    ///
    /// Mark: each handle record that is live, or dead for less than `grace`, marks its
    /// plan's lineage up to the nearest persisted result: plan records, uploaded
    /// artifacts and persisted results. Sweep: records of handles dead for longer than
    /// `grace`, and unmarked objects not written within `grace`, are deleted.
    ///
    /// Several workers may run this at once, and alongside calls that create handles: a
    /// call refers only to live handles (which mark what it reads) or to objects it has
    /// just written or refreshed (younger than `grace`), as long as a call takes less than
    /// `grace / 2`, the refresh age of [`Catalog::with_gc_grace`].
    pub async fn collect_garbage(&self, grace: Duration) -> Result<GcReport, StoreError> {
        let start = now_unix_ms();
        let cutoff = start.saturating_sub(duration_ms(grace));
        let objects = self.store.list("t/").await?;
        let present: std::collections::HashSet<&str> =
            objects.iter().map(|meta| meta.key.as_str()).collect();
        let mut report = GcReport::default();
        let mut marked = std::collections::HashSet::new();
        let mut pending: Vec<(String, PlanId)> = Vec::new();

        for meta in &objects {
            let Some((tenant, "handles", _)) = split_key(&meta.key) else {
                continue;
            };
            let record: HandleRecord = match self.get_decoded(&meta.key).await {
                Ok(Some(record)) => record,
                // Deleted since the listing.
                Ok(None) => continue,
                // Unreadable records are kept for a person to look at, not guessed at.
                Err(e @ StoreError::Corrupt { .. }) => {
                    tracing::warn!(key = %meta.key, error = %e, "skipping unreadable handle record");
                    continue;
                }
                // A record that could not be read marks nothing: sweeping now could take
                // what it needs.
                Err(e) => return Err(e),
            };
            let long_dead = record
                .dead_since_unix_ms(start)
                .is_some_and(|dead_since| dead_since < cutoff);
            if long_dead && meta.modified_unix_ms < cutoff {
                if self.store.delete(&meta.key).await? {
                    report.handles_deleted += 1;
                }
                continue;
            }
            marked.insert(meta.key.clone());
            if let Ok(plan) = PlanId::parse(&record.plan) {
                pending.push((tenant.to_owned(), plan));
            }
            // The record carries its node: mark what it reads even if its plan record
            // was never written (a crash between the two writes).
            if let Some(node) = &record.node {
                mark_node(tenant, node, &mut marked, &mut pending);
            }
        }

        while let Some((tenant, plan)) = pending.pop() {
            let plan_key = format!("t/{tenant}/plans/{plan}");
            if !marked.insert(plan_key.clone()) {
                continue;
            }
            let result_key = format!("t/{tenant}/results/{plan}");
            if present.contains(result_key.as_str()) {
                // Replays start from a persisted result: its lineage is not needed.
                marked.insert(result_key);
                continue;
            }
            match self.get_decoded::<PlanNode>(&plan_key).await {
                Ok(Some(node)) => mark_node(&tenant, &node, &mut marked, &mut pending),
                Ok(None) => {}
                Err(e @ StoreError::Corrupt { .. }) => {
                    tracing::warn!(key = %plan_key, error = %e, "unreadable plan record");
                }
                Err(e) => return Err(e),
            }
        }

        for meta in &objects {
            let Some((_, kind, _)) = split_key(&meta.key) else {
                continue;
            };
            let counter = match kind {
                "plans" => &mut report.plans_deleted,
                "artifacts" => &mut report.artifacts_deleted,
                "results" => &mut report.results_deleted,
                _ => continue,
            };
            if marked.contains(&meta.key) || meta.modified_unix_ms >= cutoff {
                continue;
            }
            // Past half the grace period, an object rewritten since the listing (a call
            // refreshing it for a new handle) could look old: stop, the next pass goes on.
            // (With no grace period, as in tests, the re-check below is the only guard.)
            if !grace.is_zero() && now_unix_ms().saturating_sub(start) >= duration_ms(grace) / 2 {
                tracing::info!(
                    "garbage collection pass stopped early: it ran past half the grace period"
                );
                break;
            }
            // Refreshed since the listing: someone needs it again.
            match self.store.head(&meta.key).await? {
                Some(current) if current.modified_unix_ms < cutoff => {}
                _ => continue,
            }
            if self.store.delete(&meta.key).await? {
                *counter += 1;
            }
        }
        report.abandoned_writes_removed = self.store.remove_abandoned_writes(cutoff).await?;
        let kept = self.store.list("t/").await?;
        report.objects_kept = kept.len() as u64;
        report.bytes_kept = kept.iter().map(|meta| meta.size).sum();
        for meta in &kept {
            if let Some((tenant, _, _)) = split_key(&meta.key) {
                *report.bytes_by_tenant.entry(tenant.to_owned()).or_default() += meta.size;
            }
        }
        Ok(report)
    }
}

/// `t/<tenant>/<kind>/<id>` as its three parts.
fn split_key(key: &str) -> Option<(&str, &str, &str)> {
    let mut parts = key.strip_prefix("t/")?.splitn(3, '/');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

/// Marks what `node` reads directly and queues its inputs.
fn mark_node(
    tenant: &str,
    node: &PlanNode,
    marked: &mut std::collections::HashSet<String>,
    pending: &mut Vec<(String, PlanId)>,
) {
    use polaroid_proto::v1::plan_step::Op;
    if let Some(Op::Upload(upload)) = node.step.as_ref().and_then(|s| s.op.as_ref()) {
        marked.insert(format!("t/{tenant}/artifacts/{}", upload.artifact));
    }
    for input in &node.inputs {
        if let Ok(plan) = PlanId::parse(input) {
            pending.push((tenant.to_owned(), plan));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AffinityKey, MemoryStore};
    use polaroid_proto::v1::{PlanStep, UploadedArtifact, plan_step::Op};

    fn upload_node(artifact: &ArtifactId) -> PlanNode {
        PlanNode {
            step: Some(PlanStep {
                op: Some(Op::Upload(UploadedArtifact {
                    artifact: artifact.as_str().to_owned(),
                    name: None,
                })),
            }),
            inputs: vec![],
            source: None,
        }
    }

    fn child_node(parent: &PlanId, tag: &str) -> PlanNode {
        PlanNode {
            step: None,
            inputs: vec![parent.to_string()],
            source: Some(polaroid_proto::v1::SourceFingerprint {
                path: tag.to_owned(),
                ..Default::default()
            }),
        }
    }

    fn record(node: &PlanNode, ttl_ms: u64) -> HandleRecord {
        let now = now_unix_ms();
        HandleRecord {
            plan: PlanId::of(node).to_string(),
            node: Some(node.clone()),
            created_unix_ms: now,
            last_access_unix_ms: now,
            ttl_ms,
            ..Default::default()
        }
    }

    async fn new_handle(catalog: &Catalog, node: &PlanNode, ttl_ms: u64) -> Handle {
        let tenant = TenantId::from_name("default");
        let handle = Handle::new(tenant, AffinityKey::random());
        catalog
            .create_handle(&handle, &record(node, ttl_ms))
            .await
            .unwrap();
        // As the engine does, after the record.
        catalog.put_plan(tenant, node).await.unwrap();
        handle
    }

    async fn keys(catalog: &Catalog, kind: &str) -> usize {
        let listed = catalog.store().list("t/").await.unwrap();
        listed
            .iter()
            .filter(|m| split_key(&m.key).is_some_and(|(_, k, _)| k == kind))
            .count()
    }

    /// Lets the clock move past everything written so far, so a zero grace period
    /// covers it.
    async fn age() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    #[tokio::test]
    async fn memory_backend_conforms() {
        crate::conformance::run_all(Arc::new(MemoryStore::new()))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn plans_are_content_addressed_and_handles_independent() {
        let catalog = Catalog::new(Arc::new(MemoryStore::new()));
        let tenant = TenantId::from_name("default");
        let node = PlanNode {
            step: None,
            inputs: vec!["a".into()],
            source: None,
        };
        let first = catalog.put_plan(tenant, &node).await.unwrap();
        assert_eq!(catalog.put_plan(tenant, &node).await.unwrap(), first);
        let a = new_handle(&catalog, &node, 60_000).await;
        let b = new_handle(&catalog, &node, 60_000).await;
        assert_eq!(keys(&catalog, "plans").await, 1);
        assert!(catalog.delete_handle(&a).await.unwrap());
        assert_eq!(
            catalog.get_handle(&b).await.unwrap().map(|r| r.plan),
            Some(first.to_string())
        );
        assert_eq!(catalog.get_plan(tenant, &first).await.unwrap(), Some(node));
        let other = TenantId::from_name("other");
        assert_eq!(catalog.get_plan(other, &first).await.unwrap(), None);
    }

    #[tokio::test]
    async fn lifecycle_of_a_record() {
        let node = PlanNode::default();
        let mut live = record(&node, 1_000);
        let now = live.last_access_unix_ms;
        assert!(live.is_live(now + 999));
        assert_eq!(live.dead_since_unix_ms(now + 1_000), Some(now + 1_000));
        live.pinned = true;
        assert!(live.is_live(u64::MAX));
        live.dropped_unix_ms = Some(now + 5);
        assert_eq!(live.dead_since_unix_ms(now + 6), Some(now + 5));
    }

    #[tokio::test]
    async fn collector_keeps_what_live_handles_need() {
        let catalog = Catalog::new(Arc::new(MemoryStore::new()));
        let tenant = TenantId::from_name("default");
        let kept_bytes = catalog
            .put_artifact(tenant, Bytes::from_static(b"kept"))
            .await
            .unwrap();
        let dropped_bytes = catalog
            .put_artifact(tenant, Bytes::from_static(b"dropped"))
            .await
            .unwrap();
        let kept_root = upload_node(&kept_bytes);
        let kept_root_id = catalog.put_plan(tenant, &kept_root).await.unwrap();
        let kept_child = child_node(&kept_root_id, "kept");
        let live = new_handle(&catalog, &kept_child, 60_000).await;

        let pinned_node = child_node(&kept_root_id, "pinned");
        let pinned = Handle::new(tenant, AffinityKey::random());
        let mut pinned_record = record(&pinned_node, 0);
        pinned_record.pinned = true;
        catalog
            .create_handle(&pinned, &pinned_record)
            .await
            .unwrap();
        catalog.put_plan(tenant, &pinned_node).await.unwrap();

        let dropped_root = upload_node(&dropped_bytes);
        let dropped_root_id = catalog.put_plan(tenant, &dropped_root).await.unwrap();
        let expired = new_handle(&catalog, &child_node(&dropped_root_id, "expired"), 0).await;
        let dropped = new_handle(&catalog, &dropped_root, 60_000).await;
        let mut tombstone = catalog.get_handle(&dropped).await.unwrap().unwrap();
        tombstone.dropped_unix_ms = Some(now_unix_ms());
        catalog.put_handle(&dropped, &tombstone).await.unwrap();

        // Within the grace period nothing goes.
        let report = catalog.collect_garbage(DEFAULT_GC_GRACE).await.unwrap();
        assert_eq!(report.handles_deleted + report.plans_deleted, 0);

        age().await;
        let report = catalog.collect_garbage(Duration::ZERO).await.unwrap();
        assert_eq!(report.handles_deleted, 2, "{report:?}");
        assert_eq!(report.plans_deleted, 2, "{report:?}");
        assert_eq!(report.artifacts_deleted, 1, "{report:?}");
        assert!(catalog.get_handle(&live).await.unwrap().is_some());
        assert!(catalog.get_handle(&pinned).await.unwrap().is_some());
        assert!(catalog.get_handle(&expired).await.unwrap().is_none());
        assert!(
            catalog
                .get_artifact(tenant, &kept_bytes)
                .await
                .unwrap()
                .is_some()
        );
        assert!(
            catalog
                .get_artifact(tenant, &dropped_bytes)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(keys(&catalog, "plans").await, 3, "root and two children");
        assert_eq!(report.objects_kept, 6);
        // Everything kept is this tenant's; another's appears beside it.
        assert_eq!(
            report.bytes_by_tenant.into_iter().collect::<Vec<_>>(),
            [(tenant.to_hex(), report.bytes_kept)]
        );
        let other = TenantId::from_name("other");
        catalog
            .put_artifact(other, Bytes::from_static(b"theirs"))
            .await
            .unwrap();
        let report = catalog.collect_garbage(DEFAULT_GC_GRACE).await.unwrap();
        assert_eq!(report.bytes_by_tenant.get(&other.to_hex()), Some(&6));
    }

    #[tokio::test]
    async fn a_persisted_result_cuts_the_lineage_it_replaces() {
        let catalog = Catalog::new(Arc::new(MemoryStore::new()));
        let tenant = TenantId::from_name("default");
        let bytes = catalog
            .put_artifact(tenant, Bytes::from_static(b"rows"))
            .await
            .unwrap();
        let root = catalog
            .put_plan(tenant, &upload_node(&bytes))
            .await
            .unwrap();
        let middle_node = child_node(&root, "middle");
        let middle = catalog.put_plan(tenant, &middle_node).await.unwrap();
        catalog
            .put_result(tenant, &middle, Bytes::from_static(b"result"))
            .await
            .unwrap();
        let leaf = new_handle(&catalog, &child_node(&middle, "leaf"), 60_000).await;
        age().await;
        let report = catalog.collect_garbage(Duration::ZERO).await.unwrap();
        assert_eq!(
            (report.plans_deleted, report.artifacts_deleted),
            (1, 1),
            "the root and its upload are replaced by the result: {report:?}"
        );
        assert!(catalog.get_result(tenant, &middle).await.unwrap().is_some());
        assert!(catalog.get_plan(tenant, &middle).await.unwrap().is_some());
        assert!(catalog.get_handle(&leaf).await.unwrap().is_some());
    }

    #[tokio::test]
    async fn referencing_an_old_object_refreshes_it() {
        let store = Arc::new(MemoryStore::new());
        let catalog = Catalog::new(store.clone()).with_gc_grace(Duration::from_millis(20));
        let tenant = TenantId::from_name("default");
        let id = catalog
            .put_artifact(tenant, Bytes::from_static(b"x"))
            .await
            .unwrap();
        let key = Catalog::artifact_ref(tenant, &id);
        let first = store.head(&key).await.unwrap().unwrap().modified_unix_ms;
        tokio::time::sleep(Duration::from_millis(30)).await;
        catalog
            .put_artifact(tenant, Bytes::from_static(b"x"))
            .await
            .unwrap();
        let second = store.head(&key).await.unwrap().unwrap().modified_unix_ms;
        assert!(
            second > first,
            "an object past half the grace period is rewritten"
        );
    }
}
