//! The bounded in-memory cache of materialized results, by plan id (LRU on bytes).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;
use polaroid_store::{PlanId, TenantId};
use polars::prelude::DataFrame;

struct Entries {
    lru: LruCache<(TenantId, PlanId), (DataFrame, usize)>,
    bytes: usize,
}

/// Materialized frames, evicted least-recently-used first once over `capacity_bytes`.
pub struct ResultCache {
    entries: Mutex<Entries>,
    capacity_bytes: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl ResultCache {
    pub fn new(capacity_bytes: usize) -> Self {
        Self {
            entries: Mutex::new(Entries {
                lru: LruCache::unbounded(),
                bytes: 0,
            }),
            capacity_bytes,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // The cache holds no invariant a panic could break halfway: recover it.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, key: &(TenantId, PlanId)) -> Option<DataFrame> {
        let found = self.lock().lru.get(key).map(|(df, _)| df.clone());
        let counter = if found.is_some() {
            metrics::counter!("polaroid_worker_cache_hits_total", "cache" => "result").increment(1);
            &self.hits
        } else {
            metrics::counter!("polaroid_worker_cache_misses_total", "cache" => "result")
                .increment(1);
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Whether `key` is cached, without counting a hit or a miss or refreshing its place.
    pub fn contains(&self, key: &(TenantId, PlanId)) -> bool {
        self.lock().lru.contains(key)
    }

    /// Keeps `df` unless it alone is larger than the whole cache.
    pub fn insert(&self, key: (TenantId, PlanId), df: DataFrame) {
        let size = df.estimated_size();
        if size > self.capacity_bytes {
            return;
        }
        let mut entries = self.lock();
        if let Some((_, old)) = entries.lru.put(key, (df, size)) {
            entries.bytes -= old;
        }
        entries.bytes += size;
        while entries.bytes > self.capacity_bytes {
            match entries.lru.pop_lru() {
                Some((_, (_, evicted))) => entries.bytes -= evicted,
                None => break,
            }
        }
    }

    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// (hits, misses) since start.
    pub fn hit_counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::*;

    fn key(i: u8) -> (TenantId, PlanId) {
        (
            TenantId::from_name("t"),
            PlanId::parse(&format!("{:064x}", i)).unwrap(),
        )
    }

    #[test]
    fn evicts_least_recently_used_past_capacity() {
        let frame = df!("a" => vec![1i64; 1000]).unwrap();
        let size = frame.estimated_size();
        let cache = ResultCache::new(size * 2 + size / 2);
        cache.insert(key(1), frame.clone());
        cache.insert(key(2), frame.clone());
        assert!(cache.get(&key(1)).is_some());
        cache.insert(key(3), frame.clone());
        assert!(cache.get(&key(2)).is_none(), "2 was least recently used");
        assert!(cache.get(&key(1)).is_some() && cache.get(&key(3)).is_some());
        assert!(cache.bytes() <= size * 2 + size / 2);
        let huge = df!("a" => vec![1i64; 10_000]).unwrap();
        cache.insert(key(4), huge);
        assert!(
            cache.get(&key(4)).is_none(),
            "larger than the cache: not kept"
        );
    }
}
