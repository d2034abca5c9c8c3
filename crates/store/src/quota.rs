//! The stored-bytes quota: how many bytes of uploads and persisted results a tenant keeps
//! in the shared store, against its limit.
//!
//! The store itself is the count every worker shares: a tenant's usage is the size of
//! what is under its `artifacts/` and `results/` prefixes. Listing that on every write
//! would cost a round trip per object, so each process lists a tenant at most once per
//! `relist` period and adds its own writes since. Within one process the check is exact
//! (writes in flight are reserved before they start); across processes a tenant can go
//! over by what other workers stored since this one last listed, at most one `relist`
//! period of its writes elsewhere.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{ResultStore, StoreError, TenantId};

/// The limit of a tenant (`None`: unlimited), and how it is named in metrics.
pub type LimitOf = Arc<dyn Fn(TenantId) -> Option<u64> + Send + Sync>;
pub type NameOf = Arc<dyn Fn(TenantId) -> String + Send + Sync>;

/// Counts stored bytes per tenant and refuses writes past a tenant's limit.
#[derive(Clone)]
pub struct StoredBytesQuota {
    limit_of: LimitOf,
    name_of: NameOf,
    relist: Duration,
    usage: Arc<Mutex<HashMap<TenantId, Usage>>>,
}

impl std::fmt::Debug for StoredBytesQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredBytesQuota")
            .field("relist", &self.relist)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Usage {
    /// Bytes found by the last listing, and when it was made.
    listed: u64,
    listed_at: Option<Instant>,
    /// Bytes this process has written in all, and how many of them it had written when
    /// the last listing started (those are in the listing).
    written: u64,
    written_at_listing: u64,
    /// Bytes of writes under way.
    reserved: u64,
}

impl Usage {
    fn used(&self) -> u64 {
        self.listed + self.written.saturating_sub(self.written_at_listing) + self.reserved
    }
}

/// A write's place in its tenant's quota; given back when dropped unless committed.
pub struct Reservation {
    quota: StoredBytesQuota,
    tenant: TenantId,
    bytes: u64,
    committed: bool,
}

impl Reservation {
    /// The write landed: its bytes now count as stored.
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut usage = self.quota.lock();
        let entry = usage.entry(self.tenant).or_default();
        entry.reserved = entry.reserved.saturating_sub(self.bytes);
        if self.committed {
            entry.written = entry.written.saturating_add(self.bytes);
        }
        let used = entry.used();
        drop(usage);
        self.quota.record(self.tenant, used);
    }
}

impl StoredBytesQuota {
    /// Lists each tenant at most once per `relist`.
    pub fn new(limit_of: LimitOf, name_of: NameOf, relist: Duration) -> Self {
        Self {
            limit_of,
            name_of,
            relist,
            usage: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Usage>> {
        self.usage.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, tenant: TenantId, used: u64) {
        let name = (self.name_of)(tenant);
        metrics::gauge!("polaroid_quota_stored_bytes", "tenant" => name.clone()).set(used as f64);
        if let Some(limit) = (self.limit_of)(tenant) {
            metrics::gauge!("polaroid_quota_stored_limit_bytes", "tenant" => name)
                .set(limit as f64);
        }
    }

    /// Reserves `bytes` for a write of `tenant`, listing its stored objects first when the
    /// last listing is older than `relist`; [`StoreError::QuotaExceeded`] past its limit.
    pub async fn reserve(
        &self,
        store: &dyn ResultStore,
        tenant: TenantId,
        prefixes: [&str; 2],
        bytes: u64,
    ) -> Result<Option<Reservation>, StoreError> {
        let Some(limit) = (self.limit_of)(tenant).filter(|_| bytes > 0) else {
            return Ok(None);
        };
        // When a listing is due: the bytes this process had written before it starts.
        let written_before = {
            let usage = self.lock();
            let entry = usage.get(&tenant);
            let fresh = entry
                .and_then(|usage| usage.listed_at)
                .is_some_and(|at| at.elapsed() < self.relist);
            (!fresh).then(|| entry.map_or(0, |usage| usage.written))
        };
        if let Some(written_before) = written_before {
            let started = Instant::now();
            let mut listed = 0;
            for prefix in prefixes {
                listed += store
                    .list(prefix)
                    .await?
                    .iter()
                    .map(|meta| meta.size)
                    .sum::<u64>();
            }
            let mut usage = self.lock();
            let entry = usage.entry(tenant).or_default();
            // Writes that landed before the listing started are in it; those that landed
            // while it ran may be or not, and stay counted (twice at worst, until the next
            // listing), which errs on the side of the limit. Of two listings that ran at
            // once, the later-started one wins.
            if entry.listed_at.is_none_or(|at| at < started) {
                entry.listed = listed;
                entry.listed_at = Some(started);
                entry.written_at_listing = written_before;
            }
        }
        let mut usage = self.lock();
        let entry = usage.entry(tenant).or_default();
        let used = entry.used();
        if used.saturating_add(bytes) > limit {
            drop(usage);
            let name = (self.name_of)(tenant);
            metrics::counter!("polaroid_quota_refusals_total", "quota" => "stored_bytes", "tenant" => name.clone())
                .increment(1);
            self.record(tenant, used);
            return Err(StoreError::QuotaExceeded {
                tenant: name,
                used,
                limit,
                needed: bytes,
            });
        }
        entry.reserved += bytes;
        let now = entry.used();
        drop(usage);
        self.record(tenant, now);
        Ok(Some(Reservation {
            quota: self.clone(),
            tenant,
            bytes,
            committed: false,
        }))
    }
}
